"""Autofocus: recover the speed of sound of simulated scans; what it cannot recover; CLI."""

import argparse
import json
from dataclasses import replace

import numpy as np
import pytest

from oatomo import Acquisition, Grid, InputError, phantoms, ring_array
from oatomo.cli import COMMAND_MODULES, main
from oatomo.cli import autofocus as cli_autofocus
from oatomo.forward import simulate
from oatomo.io import Scan, save_scan
from oatomo.recon.autofocus import autofocus, sharpness
from oatomo.recon.backprojection import backproject

GRID = Grid(64, 0.0128)  # 0.2 mm pitch: coarse and fast
RING = ring_array(64, 0.0225)
NOMINAL = Acquisition(40e6, 1400)  # speed of sound 1500 m/s: the usual wrong guess


def scan_with(c_true, phantom, seed=3):
    p0 = phantoms.make(phantom, GRID, seed)
    return simulate(p0, GRID, RING, replace(NOMINAL, speed_of_sound=c_true),
                    noise_std=0.01, seed=seed)


@pytest.mark.parametrize("c_true,phantom", [(1530.0, "vessels"), (1470.0, "disks")])
def test_recovers_speed_of_sound(c_true, phantom):
    est = autofocus(scan_with(c_true, phantom), GRID, RING, NOMINAL)
    assert abs(est["speed_of_sound"] / c_true - 1) < 0.005  # measured 0.033 %, 0.038 %
    assert not est["at_edge"]
    curve = est["curve"]
    assert len(curve["speed_of_sound"]) == 21 == len(curve["sharpness"])
    assert est["sharpness"] >= max(curve["sharpness"])
    assert est["n_evaluations"] > 21


def test_maximum_at_range_end_is_flagged():
    est = autofocus(scan_with(1530.0, "disks"), GRID, RING, NOMINAL, c_range=(1400, 1500),
                    n_coarse=5)
    assert est["at_edge"] and est["speed_of_sound"] > 1475


def test_rigid_motion_of_the_array_is_invisible():
    """Why autofocus does not fit an array offset or rotation: it only moves the image."""
    p0 = phantoms.vessels(GRID, 5)
    moved = RING.perturbed(offset=(5e-4, -3e-4), rotation=0.05)
    y = simulate(p0, GRID, moved, NOMINAL)
    nominal_img = backproject(y, GRID, RING, NOMINAL)   # assumes the unmoved array
    true_img = backproject(y, GRID, moved, NOMINAL)     # knows the motion
    assert abs(sharpness(nominal_img) / sharpness(true_img) - 1) < 0.02  # measured 0.994
    # while a 1 % error in the speed of sound is plainly visible
    blurred = backproject(y, GRID, moved, replace(NOMINAL, speed_of_sound=1515.0))
    assert sharpness(blurred) < 0.9 * sharpness(true_img)  # measured 0.85


def test_sharpness_measure():
    img = phantoms.disks(GRID, 1)
    assert sharpness(3.0 * img) == pytest.approx(sharpness(img))
    assert sharpness(np.zeros((8, 8))) == 0.0
    smooth = np.outer(np.hanning(64), np.hanning(64))
    assert sharpness(img) > sharpness(smooth)
    with pytest.raises(InputError, match="one image"):
        sharpness(np.zeros((2, 8, 8)))


@pytest.mark.parametrize("kwargs,match", [
    ({"c_range": (1600.0, 1400.0)}, "range"),
    ({"c_range": (0.0, 1400.0)}, "range"),
    ({"n_coarse": 2}, "n_coarse"),
    ({"xtol": 0.0}, "xtol"),
])
def test_bad_arguments_raise(kwargs, match):
    y = np.zeros((64, 1400), np.float32)
    with pytest.raises(InputError, match=match):
        autofocus(y, GRID, RING, NOMINAL, **kwargs)


def run_cli(argv):
    """Run ``oatomo autofocus`` through its own parser (also before it is registered)."""
    if "oatomo.cli.autofocus" in COMMAND_MODULES:
        return main(["autofocus", *argv])
    parser = argparse.ArgumentParser()
    cli_autofocus.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["autofocus", *argv])
    try:
        return args.func(args)
    except InputError:
        return 2


def test_cli_prints_and_writes_json(tmp_path, capsys):
    scan = tmp_path / "scan.h5"
    save_scan(scan, Scan(sinogram=scan_with(1530.0, "disks"), sensors=RING,
                         acquisition=NOMINAL))
    before = scan.read_bytes()
    out = tmp_path / "af.json"
    assert run_cli([str(scan), "--range", "1450:1600", "--fov", "0.0128",
                    "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "speed of sound: 153" in text and "wrote" in text
    doc = json.loads(out.read_text())
    assert abs(doc["speed_of_sound"] - 1530) < 7.7 and doc["c_range"] == [1450, 1600]
    assert scan.read_bytes() == before
    # existing JSON needs --force; bad ranges are one-line errors
    assert run_cli([str(scan), "--json", str(out)]) == 2
    assert run_cli([str(scan), "--range", "1600:1400"]) == 2
    assert run_cli([str(scan), "--range", "fast"]) == 2
    assert run_cli([str(scan), "--frame", "3"]) == 2
    assert not list(tmp_path.glob(".af.json.*"))  # no temporary files left

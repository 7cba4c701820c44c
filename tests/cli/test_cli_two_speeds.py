"""``oatomo reconstruct`` with two speeds of sound: the options, their errors, the record."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from oatomo import Acquisition, Grid, SpeedMap, phantoms, ring_array, simulate
from oatomo.cli import main
from oatomo.io import Scan, load_images, save_scan

MM = 1e-3


@pytest.fixture(scope="module")
def two_speed_scan(tmp_path_factory):
    g = Grid(64, 0.0128)
    ring = ring_array(32, 0.02)
    acq = Acquisition(40e6, 1000, 1500.0)
    X, Y = g.coordinates()
    p0 = np.exp(-((X - 3 * MM) ** 2 + Y ** 2) / (2 * (0.3 * MM) ** 2)).astype(np.float32)
    y = simulate(p0, g, ring, acq, speed_map=SpeedMap(1500.0, 1600.0, 5 * MM))
    path = tmp_path_factory.mktemp("two") / "scan.h5"
    save_scan(path, Scan(y, ring, acq))
    return path


def _peak_x(path) -> float:
    images, grid = load_images(path)
    img = images["ubp"]
    i, j = np.unravel_index(np.argmax(img), img.shape)
    return float(grid.x[j])


def test_reconstruct_with_two_speeds(two_speed_scan, capsys):
    out1, out2 = two_speed_scan.parent / "one.h5", two_speed_scan.parent / "two.h5"
    base = ["reconstruct", str(two_speed_scan), "--method", "ubp", "--no-refine",
            "--no-calibrate", "--n", "64", "--fov", "0.0128", "--png", "none", "-q"]
    assert main(base + ["-o", str(out1)]) == 0
    assert main(base + ["-o", str(out2), "--speed-of-sound", "1500",
                        "--object-speed-of-sound", "1600", "--object-radius", "0.005",
                        "--object-centre", "0", "0"]) == 0
    assert abs(_peak_x(out2) - 3 * MM) <= 0.5 * 0.2 * MM
    assert abs(_peak_x(out1) - 3 * MM) > 0.5 * 0.2 * MM
    with h5py.File(out2) as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
    text = json.dumps({k: str(v) for k, v in attrs.items()})
    assert "object_speed_of_sound" in text and "1600" in text


@pytest.mark.parametrize("extra, named", [
    (["--object-radius", "0.005"], "--object-radius needs --object-speed-of-sound"),
    (["--object-speed-of-sound", "1600"], "--object-speed-of-sound needs --object-radius"),
    (["--object-speed-of-sound", "1600", "--object-radius", "-1"],
     "--object-radius must be in (0, 10] metres"),
    (["--object-speed-of-sound", "nan", "--object-radius", "0.005"],
     "--object-speed-of-sound must be in [1, 100000] m/s"),
    (["--object-centre", "0", "0"], "--object-centre needs"),
    (["--object-speed-of-sound", "1600", "--object-radius", "0.005", "--calibrate", "yes"],
     "cannot be combined with an object speed of sound"),
])
def test_bad_two_speed_options_are_one_line(two_speed_scan, capsys, extra, named):
    out = two_speed_scan.parent / "bad.h5"
    assert main(["reconstruct", str(two_speed_scan), "--method", "das", "--no-refine",
                 "--n", "16", "-o", str(out), "--png", "none", "-q"] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err, err
    assert not out.exists()


@pytest.fixture(scope="module")
def vessel_disc_scan(tmp_path_factory):
    """Vessels seen through a disc of 1560 m/s (r 5 mm) in water at 1500 m/s, simulated
    on a grid 2x finer than the images with 1 % noise."""
    fine, ring = Grid(128, 0.0128), ring_array(48, 0.02)
    acq = Acquisition(40e6, 1000, 1500.0)
    y = simulate(phantoms.vessels(fine, 7), fine, ring, acq, thickness=0.0002,
                 noise_std=0.01, seed=7, band=(0.3e6, 6e6),
                 speed_map=SpeedMap(1500.0, 1560.0, 5 * MM))
    path = tmp_path_factory.mktemp("est") / "scan.h5"
    save_scan(path, Scan(y, ring, acq))
    return path


def test_autofocus_object_round_trip_into_reconstruct(vessel_disc_scan, capsys):
    cal = vessel_disc_scan.parent / "c.json"
    assert main(["autofocus", str(vessel_disc_scan), "--object", "--n", "64", "--fov",
                 "0.0128", "--steps", "9", "--radius-range", "0.001:0.007",
                 "--json", str(cal)]) == 0
    text = capsys.readouterr().out
    assert "object region: 15" in text and "wrote" in text
    assert "of the sensors, Wilcoxon p = " in text
    doc = json.loads(cal.read_text())
    assert 0 <= doc["wilcoxon_p"] < 0.01 and 0.5 < doc["sensors_improved"] <= 1
    assert doc["kind"] == "oatomo-calibration" and doc["speed_of_sound"] == 1500.0
    assert abs(doc["object_speed_of_sound"] - 1560.0) < 8.0
    assert abs(doc["object_radius"] - 5 * MM) < 0.35 * MM
    assert doc["units"]["object_radius"] == "m"
    out = vessel_disc_scan.parent / "rec.h5"
    assert main(["reconstruct", str(vessel_disc_scan), "--method", "ubp", "--n", "64",
                 "--fov", "0.0128", "--calibration", str(cal), "-o", str(out),
                 "--png", "none"]) == 0
    text = capsys.readouterr().out
    assert "two speeds of sound: object region of radius" in text
    assert f"{doc['object_speed_of_sound']:g} m/s" in text


@pytest.mark.parametrize("extra, named", [
    (["--fit-centre"], "--fit-centre needs --object"),
    (["--fit-speed-of-sound"], "--fit-speed-of-sound needs --object"),
    (["--speed-of-sound", "1500"], "--speed-of-sound needs --object"),
    (["--object", "--radius-range", "0.005:0.001"], "--radius-range must have RMIN < RMAX"),
    (["--object", "--radius-range", "0:0.001"], "--radius-range must be in (0, 10] metres"),
    (["--object", "--radius-range", "wide"], "--radius-range must look like RMIN:RMAX"),
    (["--object", "--object-centre", "11", "0"], "--object-centre must be two coordinates"),
    (["--object", "--speed-of-sound", "inf"], "--speed-of-sound must be in [1, 100000]"),
    (["--object", "--steps", "2"], "--steps must be in 3..1000"),
])
def test_bad_autofocus_object_options_are_one_line(vessel_disc_scan, capsys, extra, named):
    assert main(["autofocus", str(vessel_disc_scan)] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err, err

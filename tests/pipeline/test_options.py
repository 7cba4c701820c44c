"""What a user sets on a real scan (speed of sound, calibration, band,
frames and wavelengths), through ``oatomo.reconstruct`` and ``oatomo reconstruct``."""

import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

import oatomo
from oatomo.cli import main
from oatomo.errors import InputError
from oatomo.geometry import Grid
from oatomo.io import load_calibration, load_scan
from oatomo.pipeline import reconstruct, select

DATA = Path(__file__).parents[1] / "data"
PATATO = DATA / "patato_ring16.hdf5"
GRID = Grid(32, 0.012)


@pytest.fixture(scope="module")
def patato():
    return load_scan(PATATO)


def test_select_frames_and_wavelengths_against_the_file(patato):
    with h5py.File(PATATO) as f:  # PATATO: (frames, wavelengths, detectors, samples)
        raw, wl = f["raw_data"][...], f["wavelengths"][...]
    sino, kept = select(patato, frames=1, wavelengths=wl[1])
    np.testing.assert_array_equal(sino, raw[1, 1])
    assert kept.tolist() == [wl[1]]
    sino, kept = select(patato, frames=[0, 1], wavelengths=[wl[1]])
    np.testing.assert_array_equal(sino, raw[:, 1:2])
    sino, kept = select(patato, wavelengths=[wl[1], wl[0]])
    np.testing.assert_array_equal(sino, raw[:, ::-1])
    assert kept.tolist() == [wl[1], wl[0]]
    with pytest.raises(InputError, match="not in the scan"):
        select(patato, wavelengths=750e-9)
    with pytest.raises(InputError, match="out of range"):
        select(patato, frames=[2])
    with pytest.raises(InputError, match="index"):
        select(patato, frames=0.5)


def test_overrides_equal_the_library_calls(patato):
    """speed_of_sound, band and a calibration give what backproject gives with the same
    acquisition, band and positions (an independent route)."""
    y = patato.sinogram[0, 1]
    acq = replace(patato.acquisition, speed_of_sound=1480.0)
    want = oatomo.backproject(y, GRID, patato.sensors, acq, "das", band=(0.2e6, 5e6))
    got = reconstruct(PATATO, "das", GRID, frames=0, wavelengths=800e-9,
                      speed_of_sound=1480, band=(0.2e6, 5e6), refine=False)
    np.testing.assert_array_equal(got.image, want)
    assert got.provenance["speed_of_sound"] == 1480.0
    assert got.provenance["band"] == [0.2e6, 5e6]
    moved = patato.sensors.positions * 1.01
    cal = {"speed_of_sound": 1530.0, "t0": 1e-7, "positions": moved.tolist()}
    acq = replace(patato.acquisition, speed_of_sound=1530.0, t0=1e-7)
    want = oatomo.backproject(y, GRID, oatomo.SensorArray(moved), acq, "das")
    got = reconstruct(PATATO, "das", GRID, frames=0, wavelengths=800e-9, calibration=cal,
                      refine=False)
    np.testing.assert_allclose(got.image, want, rtol=0, atol=1e-6 * np.abs(want).max())
    # an explicit speed of sound wins over the calibration's
    assert reconstruct(PATATO, "das", GRID, frames=0, calibration=cal, speed_of_sound=1490,
                       refine=False).provenance["speed_of_sound"] == 1490.0


@pytest.mark.parametrize("doc, match", [
    ({}, "none of"), ({"speed_of_sound": -1}, r"'speed_of_sound' must lie in \[1, 100000\]"),
    ({"speed_of_sound": "fast"}, "number"),
    ({"positions": [[0, 1, 2]]}, r"\(N, 2\)"), ([1500], "JSON object")])
def test_bad_calibrations(doc, match):
    with pytest.raises(InputError, match=match):
        load_calibration(doc)


def test_cli_autofocus_json_feeds_reconstruct(tmp_path, capsys):
    cal, out = tmp_path / "c.json", tmp_path / "img.h5"
    assert main(["autofocus", str(PATATO), "--json", str(cal), "--steps", "3", "--n", "32",
                 "--range", "1450:1550"]) == 0
    doc = json.loads(cal.read_text())
    assert doc["kind"] == "oatomo-calibration" and doc["units"]["speed_of_sound"] == "m/s"
    assert main(["reconstruct", str(PATATO), "-o", str(out), "--calibration", str(cal),
                 "--band", "0.1e6:", "--frames", "1", "--wavelengths", "700e-9", "800e-9",
                 "--n", "32", "--png", "none", "--no-refine", "--method", "ubp", "-q"]) == 0
    assert f"c = {doc['speed_of_sound']:g} m/s" in capsys.readouterr().out
    with h5py.File(out) as f:
        assert f.attrs["speed_of_sound"] == pytest.approx(doc["speed_of_sound"])
        img = f["images/ubp"]
        assert img.shape == (1, 2, 32, 32) and img.attrs["units"] == "a.u."
        assert img.attrs["axes"] == "frame, wavelength, y, x"
        assert f["wavelengths"].attrs["units"] == "m"
        np.testing.assert_allclose(f["wavelengths"][...], [700e-9, 800e-9])


@pytest.mark.parametrize("extra, message", [
    (["--band", "low:high"], "--band must look like LOW:HIGH"),
    (["--band", "9e6:1e6"], "band lower edge"),
    (["--frames", "7"], "frames index 7 out of range"),
    (["--wavelengths", "532e-9"], "wavelength 5.32e-07 m is not in the scan"),
    (["--speed-of-sound", "-3"], "speed of sound must be > 0"),
    (["--calibration", "missing.json"], "calibration file not found")])
def test_cli_bad_options_one_line(tmp_path, capsys, extra, message):
    args = ["reconstruct", str(PATATO), "-o", str(tmp_path / "x.h5"), "--png", "none", "-q",
            "--no-refine", "--n", "16"] + extra
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x.h5").exists()


def test_readme_options_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README's option examples, on the scan that the README's quickstart makes."""
    import shlex

    text = (Path(__file__).parents[2] / "README.md").read_text()
    quick = text.split("## Quickstart")[1].split("```sh")[1].split("```")[0]
    make = [ln.split("#")[0].strip() for ln in quick.splitlines()
            if ln.strip().startswith("oatomo simulate")]
    assert len(make) == 1 and make[0].endswith("-o scan.h5")
    block = text.split("<!-- snippet:options -->")[1].split("<!-- /snippet -->")[0]
    lines = [ln.strip() for ln in block.splitlines() if ln.strip().startswith("oatomo ")]
    assert len(lines) == 3
    monkeypatch.chdir(tmp_path)
    for line in make + lines:
        assert main(shlex.split(line)[1:] + ["-q"]) == 0, (line, capsys.readouterr().err)
    assert (tmp_path / "scan_mb-tv.h5").exists() and (tmp_path / "frame0.h5").exists()

"""Presets (TOML) of reconstruction settings; explicit options win."""

import numpy as np
import pytest

import oatomo
from oatomo import Acquisition, Grid, ring_array
from oatomo.cli import main
from oatomo.errors import InputError
from oatomo.pipeline.presets import Preset, bundled_presets, load_preset
from oatomo.response import DetectorResponse, wiener_deconvolve

TOML = '''name = "mine"
method = "das"
n = 24
fov = 0.008
speed_of_sound = 1480.0
band = [0, 6e6]
deconvolve = 0.01
[detector]
centre_frequency = 3e6
bandwidth = 0.7
'''


@pytest.fixture()
def scan():
    grid, ring, acq = Grid(32, 0.008), ring_array(16, 0.01), Acquisition(20e6, 300)
    y = oatomo.simulate(oatomo.phantoms.disk(grid, 1e-3), grid, ring, acq)
    return oatomo.Scan(y, ring, acq)


def test_preset_fills_what_is_not_given(tmp_path, scan):
    path = tmp_path / "mine.toml"
    path.write_text(TOML)
    p = load_preset(path)
    assert p == Preset(name="mine", method="das", n=24, fov=0.008, speed_of_sound=1480.0,
                       band=(None, 6e6), deconvolve=0.01,
                       response=DetectorResponse(centre_frequency=3e6, bandwidth=0.7))
    # the preset's speed of sound is 1.3 % off the medium's: the position check would ask
    # for calibration, which is not what this test is about
    rec = oatomo.reconstruct(scan, preset=path, refine=False, calibrate=False)
    acq = Acquisition(20e6, 300, speed_of_sound=1480.0)
    y = wiener_deconvolve(scan.sinogram, 20e6, p.response, 0.01)
    want = oatomo.backproject(y, Grid(24, 0.008), scan.sensors, acq, "das", band=(None, 6e6))
    np.testing.assert_array_equal(rec.image, want)
    assert rec.provenance["preset"] == "mine" and rec.provenance["method"] == "das"
    # explicit keywords win
    rec = oatomo.reconstruct(scan, "ubp", preset=path, n=16, speed_of_sound=1500,
                             deconvolve=False, refine=False)
    assert rec.provenance["method"] == "ubp" and rec.grid.n == 16
    assert rec.provenance["speed_of_sound"] == 1500 and rec.provenance["deconvolution"] is None


def test_bundled_preset_and_cli(tmp_path, scan, capsys):
    assert "example-ring256-5mhz" in bundled_presets()
    assert load_preset("example-ring256-5mhz").response.centre_frequency == 5e6
    path = tmp_path / "s.h5"
    oatomo.save_scan(path, scan)
    (tmp_path / "mine.toml").write_text(TOML)
    assert main(["reconstruct", str(path), "--preset", str(tmp_path / "mine.toml"), "--png",
                 "none", "-q", "--no-refine", "--no-calibrate"]) == 0
    out = capsys.readouterr().out
    assert "with das (preset mine)" in out and "c = 1480 m/s" in out
    assert "Wiener deconvolution (lam = 0.01)" in out


@pytest.mark.parametrize("text, match", [
    ('name = "x"\ncolour = "red"\n', "unknown preset key 'colour'"),
    ('name = "x"\nn = "big"\n', "preset key 'n' has the wrong type"),
    ('name = "x"\nmethod = "magic"\n', "unknown reconstruction method 'magic'"),
    ('name = "x"\nband = [1e6]\n', "band must be \\[low, high\\]"),
    ('name = "x"\n[detector]\ncentre_frequency = 5e6\n', "bandwidth must be"),
    ('method = "das"\n', "missing required key 'name'")])
def test_bad_presets(tmp_path, text, match):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        load_preset(path)
    with pytest.raises(InputError, match="unknown preset 'nope'"):
        load_preset("nope")


def test_self_calibrated_preset(tmp_path):
    """The bundled ``self-calibrated-tv`` preset calibrates, reconstructs with TV and does
    not refine; it gives the same image as asking for all three explicitly, and an
    explicit ``--refine`` or method still wins."""
    grid, acq = Grid(32, 0.008), Acquisition(20e6, 300)
    nominal = ring_array(16, 0.01)
    true = nominal.perturbed(radial_std=0.15e-3, seed=4)
    y = oatomo.simulate(oatomo.phantoms.disks(grid, seed=2, count=4), grid, true, acq)
    scan = oatomo.Scan(y, nominal, acq)
    p = load_preset("self-calibrated-tv")
    assert (p.method, p.calibrate, p.refine, p.iters) == ("mb-tv", True, False, 50)
    kw = dict(n=32, fov=0.008)
    rec = oatomo.reconstruct(scan, preset="self-calibrated-tv", **kw)
    assert rec.provenance["method"] == "mb-tv" and not rec.refined
    assert rec.provenance["calibration"] is not None
    same = oatomo.reconstruct(scan, "mb-tv", calibrate=True, refine=False, iters=50, **kw)
    np.testing.assert_array_equal(rec.image, same.image)
    assert oatomo.reconstruct(scan, "ubp", preset="self-calibrated-tv",
                              **kw).provenance["method"] == "ubp"

"""Unit slips warn, sensors may be plain (N, 2) arrays, wrong types are
clear input errors."""

import warnings

import numpy as np
import pytest

import oatomo
from oatomo import Acquisition, Grid, ring_array
from oatomo.cli import main
from oatomo.errors import InputError, UnitWarning
from oatomo.forward import ForwardOperator


# (fs below 1 kHz and sensors beyond 10 m are errors, the physical ranges of _limits: the
# slips here stay inside them)
@pytest.mark.parametrize("make, word", [
    (lambda: Grid(128, 12.8), "field of view = 12.8 m"),
    (lambda: Acquisition(40e3, 1024), "sampling rate fs = 40000 Hz"),
    (lambda: ring_array(32, 2.25), "distance from the origin = 2.25 m"),
    (lambda: Acquisition(40e6, 1024, speed_of_sound=1.5), "speed of sound = 1.5 m/s"),
    (lambda: Acquisition(40e6, 1024, speed_of_sound=3000), "speed of sound = 3000 m/s")])
def test_unit_slips_warn(make, word):
    with pytest.warns(UnitWarning, match=word):
        make()


def test_plausible_values_are_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Grid(128, 0.0128), Grid(64, 0.5), Acquisition(1e6, 10, speed_of_sound=1000)
        Acquisition(40e6, 2030, speed_of_sound=2500), ring_array(256, 0.04), ring_array(8, 1.0)


def test_sensors_as_plain_arrays_everywhere():
    """An (N, 2) array (or list) of positions gives the same numbers as the SensorArray."""
    g, acq = Grid(24, 0.01), Acquisition(20e6, 128)
    ring = ring_array(16, 0.008)
    pos = np.array(ring.positions)
    p0 = oatomo.phantoms.disk(g, 0.002)
    y = oatomo.simulate(p0, g, ring, acq)
    np.testing.assert_array_equal(oatomo.simulate(p0, g, pos, acq), y)
    np.testing.assert_array_equal(ForwardOperator(g, pos.tolist(), acq).forward(p0), y)
    for method in ("das", "ubp", "fbp"):
        np.testing.assert_array_equal(oatomo.backproject(y, g, pos, acq, method),
                                      oatomo.backproject(y, g, ring, acq, method))
    a = oatomo.reconstruct_model_based(y, g, pos, acq, method="tv", n_iter=2)[0]
    np.testing.assert_array_equal(a, oatomo.reconstruct_model_based(
        y, g, ring, acq, method="tv", n_iter=2)[0])
    rec = oatomo.reconstruct(oatomo.Scan(y, pos, acq), "das", g, refine=False)
    np.testing.assert_array_equal(rec.image, oatomo.backproject(y, g, ring, acq))


@pytest.mark.parametrize("args, match", [
    (("grid", "sensors"), "sensors must be a SensorArray or an \\(N, 2\\) array"),
    (((24, 0.01), None), "grid must be an oatomo Grid"),
    ((None, {"fs": 20e6}), "acquisition must be an oatomo Acquisition")])
def test_wrong_types_are_input_errors(args, match):
    g, acq, ring = Grid(24, 0.01), Acquisition(20e6, 128), ring_array(16, 0.008)
    y = np.zeros((16, 128), np.float32)
    grid = g if args[0] is None or args[0] == "grid" else args[0]
    sensors = "ring" if args[1] == "sensors" else ring
    acquisition = args[1] if isinstance(args[1], dict) else acq
    for call in (lambda: oatomo.backproject(y, grid, sensors, acquisition),
                 lambda: oatomo.simulate(np.zeros((24, 24)), grid, sensors, acquisition),
                 lambda: oatomo.reconstruct_model_based(y, grid, sensors, acquisition)):
        with pytest.raises(InputError, match=match):
            call()


@pytest.mark.parametrize("make, match", [
    (lambda: Grid("128", 0.01), "grid size n must be a number"),
    (lambda: Grid(128, None), "field of view must be a number"),
    (lambda: Acquisition("fast", 10), "sampling rate fs must be a number"),
    (lambda: Acquisition(1e6, 10.5), "n_samples must be an integer"),
    (lambda: oatomo.SensorArray([["a", "b"]]), "sensor positions must be an \\(N, 2\\)")])
def test_nouns_reject_wrong_types(make, match):
    with pytest.raises(InputError, match=match):
        make()


def test_cli_warning_is_one_line(tmp_path, capsys):
    setup = tmp_path / "mm.toml"
    setup.write_text('name = "mm"\n[array]\nkind = "ring"\nn_sensors = 8\nradius = 0.01\n'
                     '[acquisition]\nfs = 20e6\nn_samples = 64\nspeed_of_sound = 1.5\n'
                     '[grid]\nn = 16\nfov = 0.008\n')
    assert main(["simulate", "--setup", str(setup), "--phantom", "disk", "-o",
                 str(tmp_path / "s.h5")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["oatomo simulate: warning: speed of sound = 1.5 m/s looks like a unit slip "
                   "(water and tissue are about 1500 m/s)"], err

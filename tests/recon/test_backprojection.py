"""Linear reconstruction: DAS against NumPy, point sources, Shepp-Logan, frames; the
deprecated top-level module paths of reconstruction."""

import importlib
import sys

import numpy as np
import pytest
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from oatomo import Acquisition, Grid, InputError, ring_array
from oatomo.forward import simulate
from oatomo.recon.backprojection import backproject


def numpy_das(sino, grid, sensors, acq):
    """Independent DAS: loop over sensors, vectorised over pixels, np.interp in time."""
    X, Y = grid.coordinates()
    img = np.zeros(grid.shape)
    for s, (sx, sy) in enumerate(sensors.positions):
        tau = np.hypot(X - sx, Y - sy) / acq.speed_of_sound
        img += np.interp(tau, acq.times, sino[s], left=0.0, right=0.0)
    return img


def test_das_matches_numpy_reference():
    grid = Grid(40, 0.008)
    sensors = ring_array(12, 0.015, arc=1.5 * np.pi).perturbed(jitter_std=2e-4, seed=2)
    acq = Acquisition(25e6, 500, speed_of_sound=1480.0, t0=1e-6)
    sino = np.random.default_rng(1).standard_normal((12, 500)).astype(np.float32)
    ours = backproject(sino, grid, sensors, acq, method="das")
    ref = numpy_das(sino, grid, sensors, acq)
    assert ours.dtype == np.float32 and ours.shape == grid.shape
    np.testing.assert_allclose(ours, ref, atol=2e-4 * np.abs(ref).max() + 1e-5)


@pytest.mark.parametrize("ij", [(40, 90), (64, 64), (100, 21)])
def test_point_source_peaks_at_nearest_pixel(ij):
    grid = Grid(128, 0.0128)
    sensors = ring_array(64, 0.0225)
    acq = Acquisition(40e6, 1400)
    x0, y0 = grid.x[ij[1]] + 0.02e-3, grid.y[ij[0]] - 0.03e-3  # slightly off the pixel
    # UBP of a simulated small source (a single-pixel bilinear basis function)
    p0 = np.zeros(grid.shape, np.float32)
    p0[ij] = 1.0
    ubp = backproject(simulate(p0, grid, sensors, acq), grid, sensors, acq, method="ubp")
    assert np.unravel_index(np.argmax(ubp), grid.shape) == ij
    # DAS of a time-of-flight impulse from (x0, y0): a unipolar point-like source
    tau = np.hypot(sensors.positions[:, 0] - x0, sensors.positions[:, 1] - y0) / 1500.0
    sino = np.zeros((64, acq.n_samples), np.float32)
    k = tau * acq.fs
    rows = np.arange(64)
    sino[rows, np.floor(k).astype(int)] = 1 - (k - np.floor(k))
    sino[rows, np.floor(k).astype(int) + 1] = k - np.floor(k)
    das = backproject(sino, grid, sensors, acq, method="das")
    assert np.unravel_index(np.argmax(das), grid.shape) == ij


def test_ubp_shepp_logan_full_ring():
    grid = Grid(128, 0.0128)
    sensors = ring_array(512, 0.0225)
    acq = Acquisition(40e6, 1400)
    p0 = resize(shepp_logan_phantom(), grid.shape, anti_aliasing=True).astype(np.float32)
    img = backproject(simulate(p0, grid, sensors, acq), grid, sensors, acq, method="ubp")
    r = np.corrcoef(img.ravel(), p0.ravel())[0, 1]
    assert r >= 0.7, r  # measured 0.760


def test_multi_frame_equals_single_frames():
    grid = Grid(48, 0.0096)
    sensors = ring_array(16, 0.015)
    acq = Acquisition(20e6, 400)
    rng = np.random.default_rng(0)
    stack = rng.standard_normal((2, 3, 16, 400)).astype(np.float32)
    for method in ("das", "ubp"):
        multi = backproject(stack, grid, sensors, acq, method=method)
        assert multi.shape == (2, 3, 48, 48)
        for a in range(2):
            for b in range(3):
                single = backproject(stack[a, b], grid, sensors, acq, method=method)
                np.testing.assert_allclose(multi[a, b], single, rtol=1e-5,
                                           atol=1e-5 * np.abs(single).max())


def test_backproject_validation_and_inputs_untouched():
    grid = Grid(16, 0.004)
    sensors = ring_array(8, 0.01)
    acq = Acquisition(20e6, 100)
    sino = np.ones((8, 100), np.float32)
    before = sino.copy()
    backproject(sino, grid, sensors, acq, method="ubp", band=(1e5, 5e6))
    assert np.array_equal(sino, before)
    with pytest.raises(InputError, match="7 rows but there are 8 sensors"):
        backproject(np.ones((7, 100)), grid, sensors, acq)
    with pytest.raises(InputError, match="NaN or Inf"):
        backproject(np.full((8, 100), np.inf), grid, sensors, acq)
    with pytest.raises(InputError, match="unknown reconstruction method"):
        backproject(sino, grid, sensors, acq, method="magic")
    with pytest.raises(InputError, match="samples"):
        backproject(np.ones((8, 99)), grid, sensors, acq)


@pytest.mark.parametrize("old, new", [
    ("oatomo.autofocus", ["oatomo.recon.autofocus"]),
    ("oatomo.methods", ["oatomo.recon.registry"]),
    ("oatomo.model_based", ["oatomo.recon.model_based", "oatomo.recon.operators"]),
    ("oatomo.exact", ["oatomo.recon.exact"]),
    ("oatomo.presets", ["oatomo.pipeline.presets"]),
])
def test_deprecated_module_paths_warn_and_give_the_same_objects(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated; use {new[0]}"):
        alias = importlib.import_module(old)
    names = [name for module in new for name in importlib.import_module(module).__all__]
    assert sorted(alias.__all__) == sorted(names)
    for module in new:
        target = importlib.import_module(module)
        for name in target.__all__:
            assert getattr(alias, name) is getattr(target, name), (old, name)

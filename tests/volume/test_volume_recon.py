"""Volume reconstruction: UBP on a closed sphere, a point source's voxel, model-based."""

import math

import numpy as np
import pytest

from oatomo import Acquisition, InputError, ring_array
from oatomo.recon.operators import tv_norm, tv_prox
from oatomo.volume import (
    VolumeGrid,
    backproject_volume,
    hemisphere_array,
    reconstruct_volume_model_based,
    simulate_volume,
    spherical_cap_array,
)

C = 1500.0


def n_wave(R, a, q, acq):
    """The uniform ball's closed-form signal, averaged over each sample."""
    u = C * (acq.t0 + (np.arange(acq.n_samples + 1) - 0.5) / acq.fs)
    F = np.where(np.abs(R - u) < a, q * (a * a - (R - u) ** 2) / (4 * R * C), 0.0)
    return np.diff(F) * acq.fs


def test_ubp_on_a_closed_sphere_recovers_a_balls_value():
    """Closed-form signals (not the forward model). Measured: the inside within 0.1 % of
    q; outside, ringing from the band edge of 5 % of q on average, 0 in the mean."""
    sensors = spherical_cap_array(512, 0.01, math.pi)
    acq = Acquisition(40e6, 600, speed_of_sound=C)
    a, q, centre = 1.5e-3, 2.0, np.array([0.5e-3, -0.3e-3, 0.2e-3])
    y = np.stack([n_wave(np.linalg.norm(p - centre), a, q, acq) for p in sensors.positions])
    grid = VolumeGrid(24, 0.0048)
    vol = backproject_volume(y.astype(np.float32), grid, sensors, acq, "ubp", band=(0, 6e6))
    Z, Y, X = grid.coordinates()
    r = np.sqrt((X - centre[0]) ** 2 + (Y - centre[1]) ** 2 + (Z - centre[2]) ** 2)
    inner = vol[r < a / 2]
    assert abs(inner.mean() / q - 1) < 0.05 and inner.std() < 0.05 * q
    outside = vol[r > a + 0.6e-3]
    assert np.abs(outside).mean() < 0.1 * q and abs(outside.mean()) < 0.01 * q


def test_a_point_source_lands_on_its_voxel():
    grid = VolumeGrid(32, 0.0064)
    sensors = hemisphere_array(128, 0.012)
    acq = Acquisition(40e6, 700, speed_of_sound=C)
    x = np.zeros(grid.shape, np.float32)
    voxel = (19, 11, 22)
    x[voxel] = 1.0
    y = simulate_volume(x, grid, sensors, acq, band=(0.3e6, 6e6))
    ubp = backproject_volume(y, grid, sensors, acq, "ubp")
    assert np.unravel_index(np.argmax(ubp), grid.shape) == voxel
    das = backproject_volume(y, grid, sensors, acq, "das")  # a bipolar pulse: peak within 1
    assert np.abs(np.subtract(np.unravel_index(np.argmax(das), grid.shape), voxel)).max() <= 1
    # several frames: the same kernel per frame, linear, deterministic
    both = backproject_volume(np.stack([y, 2 * y]), grid, sensors, acq, "ubp")
    assert both.shape == (2,) + grid.shape
    np.testing.assert_allclose(both[1], 2 * ubp, rtol=1e-5, atol=1e-6 * np.abs(ubp).max())
    assert both[0].tobytes() == ubp.tobytes()


def test_tv_beats_ubp_on_a_sparse_hemisphere():
    grid = VolumeGrid(20, 0.004)
    sensors = hemisphere_array(48, 0.01)
    acq = Acquisition(40e6, 560, speed_of_sound=C)
    Z, Y, X = grid.coordinates()
    truth = (np.sqrt(X**2 + (Y - 3e-4) ** 2 + Z**2) < 1.1e-3).astype(np.float32)
    y = simulate_volume(truth, grid, sensors, acq, noise_std=0.01, seed=1)
    tv, record = reconstruct_volume_model_based(y, grid, sensors, acq, method="tv", n_iter=15)
    ubp = backproject_volume(y, grid, sensors, acq, "ubp")

    def err(v):
        return np.linalg.norm(v - truth) / np.linalg.norm(truth)

    assert err(tv) < 0.5 * err(ubp), (err(tv), err(ubp))
    assert np.all(np.diff(record["objective"]) <= 1e-6 * record["objective"][0])
    assert record["n_frames"] == 1 and tv.min() >= 0
    tik, rec = reconstruct_volume_model_based(np.stack([y, y]), grid, sensors, acq,
                                              method="tikhonov", n_iter=8)
    assert tik.shape == (2,) + grid.shape and rec["n_frames"] == 2
    assert tik[0].tobytes() == tik[1].tobytes()
    assert err(tik[0]) < err(ubp)


def test_volume_total_variation():
    v = np.zeros((6, 5, 4))
    v[3:] = 1.0  # one interface of 5 x 4 voxels across z
    assert tv_norm(v) == pytest.approx(20.0)
    rng = np.random.default_rng(0)
    noisy = (v + 0.2 * rng.standard_normal(v.shape)).astype(np.float32)
    den = tv_prox(noisy, 0.1)
    assert tv_norm(den) < 0.5 * tv_norm(noisy) and den.min() >= 0
    assert np.linalg.norm(den - v) < np.linalg.norm(noisy - v)


def test_bad_input_is_one_line():
    grid = VolumeGrid(8, 0.004)
    sensors = hemisphere_array(4, 0.01)
    acq = Acquisition(40e6, 100)
    y = np.zeros((4, 100), np.float32)
    with pytest.raises(InputError, match="unknown volume reconstruction method"):
        backproject_volume(y, grid, sensors, acq, "fbp")
    with pytest.raises(InputError, match="SensorArray3D"):
        backproject_volume(y, grid, ring_array(4, 0.01), acq)
    with pytest.raises(InputError, match="samples"):
        backproject_volume(np.zeros((4, 50)), grid, sensors, acq)
    with pytest.raises(InputError, match="model-based"):
        reconstruct_volume_model_based(y, grid, sensors, acq, method="ubp")
    vol, rec = reconstruct_volume_model_based(y, grid, sensors, acq, method="tv")
    assert not vol.any()


def _direct_backprojection(y, grid, sensors, acq, weights):
    """Delay-and-sum written out in NumPy: every voxel and sensor, linear interpolation
    of the record at ``d / c - t0``, zero outside it; ``weights`` (N, voxels) or None."""
    Z, Y, X = (a.ravel().astype(np.float64) for a in grid.coordinates())
    pts = np.stack([X, Y, Z], axis=1)
    n_t = y.shape[-1]
    num = np.zeros(len(pts))
    den = np.zeros(len(pts))
    for s, pos in enumerate(sensors.positions):
        tau = np.linalg.norm(pts - pos, axis=1) / acq.speed_of_sound * acq.fs - acq.t0 * acq.fs
        padded = np.concatenate([y[s], [0.0]]).astype(np.float64)
        k = np.floor(tau).astype(int)
        f = tau - k
        inside = (tau >= 0) & (k < n_t)
        kk = np.clip(k, 0, n_t - 1)
        val = np.where(inside, padded[kk] + f * (padded[kk + 1] - padded[kk]), 0.0)
        w = 1.0 if weights is None else weights[s]
        num += w * val
        den += w * np.ones_like(val)
    out = num if weights is None else np.where(den > 0, num / np.maximum(den, 1e-300), 0)
    return out.reshape(grid.shape)


@pytest.mark.parametrize("n_sensors", [7, 8])
def test_das_equals_the_direct_sum_for_odd_and_even_sensor_counts(n_sensors):
    """The kernel's blocks of rows and its two sensors per pass give the plain sum."""
    rng = np.random.default_rng(3)
    sensors = hemisphere_array(n_sensors, 0.004)
    acq = Acquisition(40e6, 160, speed_of_sound=C, t0=0.5e-6)
    grid = VolumeGrid(5, 0.002, shape=(3, 5, 6))
    y = rng.standard_normal((n_sensors, acq.n_samples)).astype(np.float32)
    vol = backproject_volume(y, grid, sensors, acq, "das")
    ref = _direct_backprojection(y, grid, sensors, acq, None)
    np.testing.assert_allclose(vol, ref, rtol=0, atol=2e-5 * np.abs(ref).max())

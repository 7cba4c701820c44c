"""The joint (image, positions, speed of sound) estimate: its derivatives against an
independent finite difference, one Gauss-Newton step against a known displacement, the
array-coverage rule for the speed of sound, and a linear array."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from oatomo import Acquisition, Grid, InputError, SensorArray, ring_array
from oatomo.calibration import calibrate_sinogram, rigid_error
from oatomo.calibration.estimate import MIN_SPEED_COVERAGE, angular_coverage
from oatomo.calibration.joint import gauss_newton_step, sensor_jacobians
from oatomo.calibration.levels import schedule
from oatomo.calibration.search import local_frames
from oatomo.evaluation.metrics import affine_fit, psnr
from oatomo.forward import simulate
from oatomo.phantoms import disks
from oatomo.recon.model_based import reconstruct_model_based

GRID = Grid(64, 0.0128)
ACQ = Acquisition(20e6, 512, speed_of_sound=1500.0)
RING = ring_array(24, 0.02)


def _level():
    """The coarse level (band-limited, 0.4 mm pixels) of a noise-free scan of one small
    absorber at the centre."""
    X, Y = GRID.coordinates()
    p0 = np.exp(-(X ** 2 + Y ** 2) / (2 * 0.3e-3 ** 2)).astype(np.float32)
    y = simulate(p0, GRID, RING, ACQ)
    level = schedule(y, ACQ, GRID, 0.2e-3, 2)[0]
    coarse = np.exp(-(np.square(level.grid.coordinates()).sum(axis=0))
                    / (2 * 0.3e-3 ** 2)).astype(np.float32)
    return level, coarse


def test_jacobian_along_the_line_of_sight_is_a_time_shift() -> None:
    """For an absorber at the centre, moving a sensor towards it by d advances its record
    by d / c: the derivative along the line of sight is dP/dt / c (closed form)."""
    level, p0 = _level()
    pos = RING.positions.astype(np.float64)
    pred, jac, frames = sensor_jacobians(level, p0, pos, None, h=level.grid.dx / 8)
    dt = 1.0 / level.acquisition.fs
    ref = np.gradient(pred, dt, axis=1) / level.acquisition.speed_of_sound
    err = np.linalg.norm(jac[..., 0] - ref) / np.linalg.norm(ref)
    assert err < 0.35, err
    # across the line of sight the centred absorber is not seen at first order
    assert np.linalg.norm(jac[..., 1]) < 0.1 * np.linalg.norm(jac[..., 0])


def test_one_step_recovers_a_known_displacement() -> None:
    """With the true image, a sensor displaced along its line of sight is moved back by
    one Gauss-Newton step at least halfway (noise free, prior 0.2 mm about the displaced
    positions; the rounds repeat the step); the others stay put."""
    level, p0 = _level()
    true = RING.positions.astype(np.float64)
    frames = local_frames(true)
    shift = np.zeros_like(true)
    shift[3] = 0.1e-3 * frames[3, 0]
    new, cov, mis = gauss_newton_step(level, p0, true + shift, true + shift, 0.2e-3,
                                      None, max_step=level.grid.dx)
    assert cov.shape == (24, 2, 2) and mis.shape == (24,)
    along = np.einsum("d,d->", new[3] - true[3], frames[3, 0])
    assert abs(along) < 0.5 * 0.1e-3, along
    assert np.linalg.norm(new[3] - true[3]) < 0.6 * 0.1e-3
    others = np.setdiff1d(np.arange(24), [3])
    assert np.max(np.abs(np.einsum("nd,nd->n", new[others] - true[others],
                                   frames[others, 0]))) < 10e-6


def test_angular_coverage_closed_forms() -> None:
    assert angular_coverage(ring_array(36, 0.02).positions) == pytest.approx(
        2 * math.pi * 35 / 36)
    arc = ring_array(13, 0.02, arc=math.radians(120), start_angle=0.3).positions
    assert angular_coverage(arc) == pytest.approx(math.radians(120), rel=1e-9)
    x = np.linspace(-5e-3, 5e-3, 11)
    linear = np.stack([x, np.full(11, -1e-2)], axis=1)
    assert angular_coverage(linear) == pytest.approx(2 * math.atan(0.5))
    assert angular_coverage(linear) < MIN_SPEED_COVERAGE


def test_linear_array_runs_and_keeps_the_speed_of_sound() -> None:
    """A linear array calibrates; with ``speed_of_sound="auto"`` the file's speed of sound
    is kept (the array covers < 180 deg); the TV image with the estimate stays within
    1.5 dB of the one with the file's positions (measured: 1.0 dB below on this small
    case, 0.7 dB below with the held-out search: limited view sees positions weakly)."""
    x = (np.arange(48) - 23.5) * 0.25e-3
    nominal = SensorArray(np.stack([x, np.full(48, -8e-3)], axis=1),
                          np.tile([0.0, 1.0], (48, 1)))
    rng = np.random.default_rng(4)
    true = SensorArray(nominal.positions + rng.normal(0, 0.08e-3, (48, 2)), nominal.normals)
    acq = Acquisition(20e6, 512, speed_of_sound=1510.0)
    y = simulate(disks(GRID, seed=2, count=6), GRID, true, replace(acq, speed_of_sound=1500.0),
                 noise_std=0.005, seed=1)
    cal = calibrate_sinogram(y, nominal, acq, GRID, n_levels=2, prior_std=0.08e-3,
                             speed_of_sound="auto")
    assert cal.speed_of_sound == 1510.0
    assert np.all(np.isfinite(rigid_error(cal.sensors, true)))
    truth = disks(GRID, seed=2, count=6).astype(np.float64)

    def score(sensors: SensorArray) -> float:
        x, _ = reconstruct_model_based(y, GRID, sensors, acq, method="tv", n_iter=50)
        fit = affine_fit(x[None], truth[None])[0]
        return float(psnr(fit, truth, data_range=1.0))

    assert score(cal.sensors) >= score(nominal) - 1.5


def test_bad_options_are_one_line_errors() -> None:
    y = simulate(disks(GRID, seed=3), GRID, RING, ACQ)
    with pytest.raises(InputError, match="speed_of_sound must be"):
        calibrate_sinogram(y, RING, ACQ, GRID, speed_of_sound="yes")
    with pytest.raises(InputError, match="calibration method"):
        calibrate_sinogram(y, RING, ACQ, GRID, method="newton")


@pytest.mark.parametrize("m, n", [(32, 64), (8, 128), (30, 64)])
def test_upsample_is_scipys_bilinear_interpolation(m: int, n: int) -> None:
    """The coarse-to-fine image hand-over against SciPy's linear spline (edges held)."""
    from scipy import ndimage

    from oatomo.calibration.joint import upsample

    img = np.random.default_rng(m).random((m, m)).astype(np.float32)
    z = (np.arange(n) + 0.5) * (m / n) - 0.5
    ref = ndimage.map_coordinates(img.astype(np.float64), np.meshgrid(z, z, indexing="ij"),
                                  order=1, mode="nearest")
    np.testing.assert_allclose(upsample(img, n), ref, atol=1e-6)
    assert upsample(img, m) is img


def test_speed_search_steps_shrink_with_the_array():
    """The speed search's step is at most SPEED_STEP_PIXELS coarse pixels of common shift at
    the sensors' distance: a ring twice as large gets about twice the points."""
    from oatomo.calibration.joint import SPEED_POINTS, SPEED_STEP_PIXELS, speed_points

    grid = Grid(32, 0.0128)  # 0.4 mm pixels: a coarsest level
    level = schedule(np.zeros((8, 64), np.float32), Acquisition(40e6, 64), grid, 1e-4, 1)[0]
    for radius in (0.01, 0.02, 0.045):
        pos = ring_array(64, radius).positions
        n = speed_points(level, pos, 0.03)
        step = 0.06 / (n - 1)
        assert n % 2 == 1 and n >= SPEED_POINTS
        assert step * radius <= SPEED_STEP_PIXELS * grid.dx * (1 + 1e-9)
        # and not finer than it needs (one point fewer each side would break the bound)
        if n > SPEED_POINTS:
            assert 0.06 / (n - 3) * radius > SPEED_STEP_PIXELS * grid.dx
    assert speed_points(level, ring_array(64, 0.045).positions, 0.0) == 1
    assert speed_points(level, ring_array(64, 0.045).positions, 0.03) == 21


def test_speed_subset_keeps_small_arrays_and_spreads_large_ones_evenly():
    from oatomo.calibration.joint import SPEED_MAX_SENSORS, speed_subset

    small = ring_array(48, 0.02).positions
    np.testing.assert_array_equal(speed_subset(small), np.arange(48))
    big = ring_array(256, 0.045).positions
    sub = speed_subset(big)
    assert len(sub) == SPEED_MAX_SENSORS and len(np.unique(sub)) == len(sub)
    ang = np.sort(np.arctan2(big[sub, 1], big[sub, 0]))
    gaps = np.diff(np.concatenate([ang, ang[:1] + 2 * math.pi]))
    np.testing.assert_allclose(gaps, 2 * math.pi / SPEED_MAX_SENSORS, rtol=1e-6)

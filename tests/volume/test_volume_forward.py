"""The volume forward model: the uniform sphere's N wave, the adjoint, the thin-slab case."""

import numpy as np
import pytest

from oatomo import Acquisition, Grid, InputError, ring_array
from oatomo.forward import ForwardOperator, bandpass
from oatomo.response import DetectorResponse, convolve
from oatomo.volume import (
    SensorArray3D,
    VolumeGrid,
    VolumeOperator,
    hemisphere_array,
    simulate_volume,
)

C = 1500.0


def ball(grid, a, centre, q=1.0):
    """A ball with its edge voxels at their (linearly ramped) filled fraction."""
    Z, Y, X = grid.coordinates()
    r = np.sqrt((X - centre[0]) ** 2 + (Y - centre[1]) ** 2 + (Z - centre[2]) ** 2)
    return (q * np.clip((a - r) / grid.dx + 0.5, 0, 1)).astype(np.float32)


def n_wave(R, a, q, acq):
    """Closed form p(t) = q (R - c t) / (2R) for |R - c t| < a, averaged over each sample:
    the differences of its integral F = q (a^2 - (R - c t)^2) / (4 R c) at the edges."""
    u = C * (acq.t0 + (np.arange(acq.n_samples + 1) - 0.5) / acq.fs)
    F = np.where(np.abs(R - u) < a, q * (a * a - (R - u) ** 2) / (4 * R * C), 0.0)
    return np.diff(F) * acq.fs


@pytest.mark.parametrize("n, fov, f_high", [(80, 0.004, 4e6), (48, 0.0048, 2e6)])
def test_uniform_sphere_gives_the_n_wave_at_every_sensor(n, fov, f_high):
    """Band: up to c / (7.5 dx) (measured max error 1.2 % and 1.4 %)."""
    grid = VolumeGrid(n, fov)
    sensors = hemisphere_array(64, 0.01)
    acq = Acquisition(40e6, 400, speed_of_sound=C)
    a, q, centre = 1.5e-3, 2.0, np.array([0.3e-3, -0.2e-3, 0.25e-3])
    band = (0, f_high)
    y = simulate_volume(ball(grid, a, centre, q), grid, sensors, acq, band=band)
    errors = []
    for s in range(sensors.n_sensors):
        R = np.linalg.norm(sensors.positions[s] - centre)
        ref = bandpass(n_wave(R, a, q, acq)[None], acq.fs, band)[0]
        errors.append(np.linalg.norm(y[s] - ref) / np.linalg.norm(ref))
    assert max(errors) < 0.03, max(errors)


@pytest.mark.parametrize("sensors", [hemisphere_array(12, 0.008),
                                     SensorArray3D(np.random.default_rng(3).uniform(
                                         -0.01, 0.01, (9, 3)))])
def test_dot_product_adjoint(sensors):
    grid = VolumeGrid(20, 0.004, shape=(12, 20, 17))
    acq = Acquisition(30e6, 300, t0=1e-6, speed_of_sound=C)
    op = VolumeOperator(grid, sensors, acq)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(grid.shape).astype(np.float32)
    y = rng.standard_normal((sensors.n_sensors, acq.n_samples)).astype(np.float32)
    ax = op.forward(x).astype(np.float64)
    aty = op.adjoint(y).astype(np.float64)
    assert abs(np.vdot(ax, y) - np.vdot(x, aty)) <= 1e-4 * np.linalg.norm(ax) * np.linalg.norm(y)
    lin = op.as_linear_operator()
    np.testing.assert_allclose(lin.matvec(x.ravel().astype(np.float64)), ax.ravel(), rtol=1e-6)
    assert lin.shape == op.shape == (sensors.n_sensors * 300, 12 * 20 * 17)
    assert op.norm_sq() > 0 and op.norm_sq() == op.norm_sq()
    # from below, and as close as 60 power steps from the same start come
    v = np.random.default_rng(0).standard_normal(grid.shape).astype(np.float32)
    for _ in range(60):
        z = op.adjoint(op.forward(v / np.linalg.norm(v)))
        power, v = float(np.linalg.norm(z.astype(np.float64))), z
    assert power * (1 - 0.01) <= op.norm_sq() <= power * (1 + 0.05)


def test_one_voxel_thick_volume_is_the_2d_slab_model():
    grid2 = Grid(64, 0.0064)
    ring = ring_array(16, 0.012)
    acq = Acquisition(40e6, 500, speed_of_sound=C)
    X, Y = grid2.coordinates()
    img = np.clip((1.5e-3 - np.hypot(X - 3e-4, Y)) / grid2.dx + 0.5, 0, 1).astype(np.float32)
    slab = ForwardOperator(grid2, ring, acq).forward(img)  # thickness dx
    vol = VolumeOperator(VolumeGrid(64, 0.0064, shape=(1, 64, 64)),
                         SensorArray3D(np.c_[ring.positions, np.zeros(16)]), acq)
    band = (0, 4e6)
    a, b = bandpass(slab, acq.fs, band), bandpass(vol.forward(img[None]), acq.fs, band)
    assert np.linalg.norm(b - a) / np.linalg.norm(a) < 0.01  # measured 0.4 %


def test_response_noise_and_validation():
    grid = VolumeGrid(16, 0.0032)
    sensors = hemisphere_array(6, 0.008)
    acq = Acquisition(40e6, 300, speed_of_sound=C)
    x = ball(grid, 1e-3, (0, 0, 0))
    resp = DetectorResponse(centre_frequency=3e6, bandwidth=0.8)
    plain = simulate_volume(x, grid, sensors, acq)
    with_r = simulate_volume(x, grid, sensors, acq, response=resp)
    np.testing.assert_allclose(with_r, convolve(plain, acq.fs, resp), atol=1e-6 * abs(
        with_r).max())
    a = simulate_volume(x, grid, sensors, acq, noise_std=0.05, seed=2)
    assert a.tobytes() == simulate_volume(x, grid, sensors, acq, noise_std=0.05,
                                          seed=2).tobytes()
    assert np.std(a - plain) == pytest.approx(0.05 * np.abs(plain).max(), rel=0.1)
    op = VolumeOperator(grid, sensors, acq)
    assert not op.forward(np.zeros(grid.shape)).any()
    with pytest.raises(InputError, match="shape"):
        op.forward(np.ones((16, 16)))
    with pytest.raises(InputError, match="NaN"):
        op.forward(np.full(grid.shape, np.nan))
    with pytest.raises(InputError, match="VolumeGrid"):
        VolumeOperator(Grid(16, 0.0032), sensors, acq)
    with pytest.raises(InputError, match="rows"):
        op.adjoint(np.zeros((5, 300)))

import numpy as np
import pytest

from oatomo import Acquisition, Grid, InputError, SensorArray, ring_array


def test_ring_full_and_arc_angles():
    ring = ring_array(8, 0.02, start_angle=0.1)
    ang = np.unwrap(np.arctan2(ring.positions[:, 1], ring.positions[:, 0]))
    np.testing.assert_allclose(ang, 0.1 + 2 * np.pi * np.arange(8) / 8, atol=1e-12)
    np.testing.assert_allclose(np.hypot(*ring.positions.T), 0.02)
    arc = ring_array(5, 0.04, arc=np.pi, start_angle=0.0)
    ang = np.arctan2(arc.positions[:, 1], arc.positions[:, 0])
    np.testing.assert_allclose(ang, [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4, np.pi], atol=1e-12)
    # normals face the centre
    np.testing.assert_allclose(ring.normals, -ring.positions / 0.02, atol=1e-12)


def test_sensor_array_frozen_hashable():
    ring = ring_array(16, 0.01)
    assert ring == ring_array(16, 0.01)
    assert hash(ring) == hash(ring_array(16, 0.01))
    assert ring != ring_array(16, 0.011)
    with pytest.raises(ValueError):
        ring.positions[0, 0] = 1.0
    with pytest.raises(InputError, match="no sensors"):
        SensorArray(np.zeros((0, 2)))


def test_perturbed_seeded_and_each_kind():
    ring = ring_array(32, 0.0225)
    a = ring.perturbed(radial_std=1e-4, seed=3)
    b = ring.perturbed(radial_std=1e-4, seed=3)
    assert a == b
    assert a != ring.perturbed(radial_std=1e-4, seed=4)
    # radial error keeps the angle
    np.testing.assert_allclose(np.arctan2(a.positions[:, 1], a.positions[:, 0]),
                               np.arctan2(ring.positions[:, 1], ring.positions[:, 0]), atol=1e-12)
    # angular error keeps the radius
    c = ring.perturbed(angular_std=0.01, seed=3)
    np.testing.assert_allclose(np.hypot(*c.positions.T), 0.0225, rtol=1e-12)
    # global offset and rotation are exact
    d = ring.perturbed(offset=(1e-4, -2e-4))
    np.testing.assert_allclose(d.positions - ring.positions, [[1e-4, -2e-4]] * 32, atol=1e-15)
    e = ring.perturbed(rotation=np.pi / 16)
    np.testing.assert_allclose(e.positions, ring_array(32, 0.0225, start_angle=np.pi / 16)
                               .positions, atol=1e-15)
    # jitter statistics
    big = ring_array(20000, 0.02).perturbed(jitter_std=1e-4, seed=0)
    diff = big.positions - ring_array(20000, 0.02).positions
    assert abs(diff.std() - 1e-4) < 3e-6


def test_grid_coordinates_convention():
    g = Grid(4, 0.004)
    assert g.dx == pytest.approx(0.001)
    X, Y = g.coordinates()
    assert X[0, 0] == pytest.approx(-1.5e-3) and X[0, 3] == pytest.approx(1.5e-3)
    assert Y[0, 0] == pytest.approx(-1.5e-3) and Y[3, 0] == pytest.approx(1.5e-3)
    with pytest.raises(InputError, match="MiB"):
        Grid(100_000, 0.01)
    with pytest.raises(InputError):
        Grid(0, 0.01)


def test_acquisition():
    a = Acquisition(fs=40e6, n_samples=4, t0=1e-6)
    np.testing.assert_allclose(a.times, 1e-6 + np.arange(4) / 40e6)
    with pytest.raises(InputError, match="fs"):
        Acquisition(fs=0, n_samples=4)
    with pytest.raises(InputError, match="speed of sound"):
        Acquisition(fs=1e6, n_samples=4, speed_of_sound=-1)

"""Volume geometry: the grid's voxel positions and the 3-D sensor arrays."""

import math

import numpy as np
import pytest

from oatomo import Grid, InputError
from oatomo.volume import (
    SensorArray3D,
    VolumeGrid,
    as_sensors3d,
    hemisphere_array,
    planar_array,
    spherical_cap_array,
)


def test_voxel_positions_are_centred_like_the_2d_grid():
    g = VolumeGrid(5, 0.005)
    assert g.shape == (5, 5, 5) and g.dx == pytest.approx(0.001)
    np.testing.assert_allclose(g.z, [-0.002, -0.001, 0.0, 0.001, 0.002])
    np.testing.assert_allclose(g.x, Grid(5, 0.005).x)
    Z, Y, X = g.coordinates()
    assert (Z[3, 0, 0], Y[0, 4, 0], X[0, 0, 1]) == pytest.approx((0.001, 0.002, -0.001))
    assert g.index_of((-0.001, 0.002, 0.001)) == (3, 4, 1)
    box = VolumeGrid(8, 0.008, shape=(2, 3, 4))
    assert box.shape == (2, 3, 4) and box.n_voxels == 24
    np.testing.assert_allclose(box.z, [-0.0005, 0.0005])
    np.testing.assert_allclose(box.x, [-0.0015, -0.0005, 0.0005, 0.0015])


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0, "fov": 0.01}, "n must be an integer"),
    ({"n": 2.5, "fov": 0.01}, "n must be an integer"),
    ({"n": 8, "fov": -1}, "field of view"),
    ({"n": 8, "fov": 0.01, "shape": (8, 8)}, r"\(nz, ny, nx\)"),
    ({"n": 8, "fov": 0.01, "shape": (8, 8, 0)}, "nx"),
    ({"n": 1024, "fov": 0.01, "shape": (1024, 1024, 1024)}, "MiB"),
])
def test_grid_refuses_bad_input(kwargs, match, monkeypatch):
    monkeypatch.setenv("OATOMO_MAX_BYTES", "1G")
    with pytest.raises(InputError, match=match):
        VolumeGrid(**kwargs)


def test_hemisphere_faces_its_centre_with_equal_areas():
    s = hemisphere_array(200, 0.02)
    r = np.linalg.norm(s.positions, axis=1)
    np.testing.assert_allclose(r, 0.02)
    assert (s.positions[:, 2] < 0).all()
    np.testing.assert_allclose(s.normals, -s.positions / 0.02, atol=1e-12)
    assert s.areas.sum() == pytest.approx(2 * math.pi * 0.02**2)
    # equal-area spiral: each octant of the bowl holds about a quarter of the sensors
    quadrant = (s.positions[:, 0] > 0) & (s.positions[:, 1] > 0)
    assert abs(quadrant.sum() - 50) <= 4


def test_caps_sphere_and_axis():
    full = spherical_cap_array(500, 0.01, math.pi)
    assert np.linalg.norm(full.positions.mean(axis=0)) < 2e-4  # balanced on the sphere
    assert full.areas.sum() == pytest.approx(4 * math.pi * 1e-4)
    cap = spherical_cap_array(50, 0.01, math.radians(30), axis=(1, 0, 0))
    cos_t = cap.positions[:, 0] / 0.01
    assert cos_t.min() >= math.cos(math.radians(30)) - 1e-12
    with pytest.raises(InputError, match="half_angle"):
        spherical_cap_array(10, 0.01, 4.0)
    with pytest.raises(InputError, match="axis"):
        spherical_cap_array(10, 0.01, 1.0, axis=(0, 0, 0))


def test_planar_array():
    s = planar_array(4, 3, 1e-3, -0.01)
    assert s.n_sensors == 12
    np.testing.assert_allclose(s.positions[1], [-0.5e-3, -1e-3, -0.01])
    np.testing.assert_allclose(s.normals, np.tile([0, 0, 1.0], (12, 1)))
    np.testing.assert_allclose(s.areas, 1e-6)
    with pytest.raises(InputError, match="non-zero"):
        planar_array(2, 2, 1e-3, 0.0)


def test_arbitrary_positions_and_validation():
    s = as_sensors3d([[0.01, 0, 0], [0, 0.02, 0]])
    np.testing.assert_allclose(s.normals, [[-1, 0, 0], [0, -1, 0]])
    assert s == SensorArray3D(s.positions) and hash(s) == hash(SensorArray3D(s.positions))
    with pytest.raises(InputError, match=r"\(N, 3\)"):
        SensorArray3D(np.zeros((4, 2)))
    with pytest.raises(InputError, match="NaN"):
        SensorArray3D([[np.nan, 0, 0]])
    with pytest.raises(InputError, match="areas"):
        SensorArray3D([[0.01, 0, 0]], areas=[-1.0])
    with pytest.raises(InputError, match="SensorArray3D"):
        as_sensors3d("sensors.csv")

"""Flat square and disc elements of 3-D arrays: directivity, adjoint, the point limit."""

import math

import numpy as np
import pytest
from scipy.special import j1

from oatomo import Acquisition, InputError
from oatomo.response import DetectorResponse
from oatomo.volume import (
    SensorArray3D,
    VolumeGrid,
    VolumeOperator,
    backproject_volume,
    element_points_3d,
    hemisphere_array,
    reconstruct_volume_model_based,
    simulate_volume,
)
from oatomo.volume.elements import face_axes

C = 1500.0


def tilted_element(theta, R=0.03):
    """One element at distance R below the origin whose normal is tilted by ``theta`` in
    the x-z plane: the origin is seen at ``theta`` from the normal, along face axis t1."""
    n = np.array([[math.sin(theta), 0.0, math.cos(theta)]])
    return SensorArray3D(np.array([[0.0, 0.0, -R]]), n)


def point_source():
    grid = VolumeGrid(9, 0.0009)
    p0 = np.zeros(grid.shape, np.float32)
    p0[4, 4, 4] = 1.0
    return grid, p0


@pytest.mark.parametrize("shape", ["square", "disc"])
@pytest.mark.parametrize("theta_deg", [0.0, 20.0, 35.0])
def test_far_field_directivity_is_the_closed_form(shape, theta_deg):
    """|H_element(f) / H_point(f)| = |sinc(pi f a sin theta / c)| for a square (along a
    face axis) and |2 J1(x) / x| for a disc of diameter a, x = pi f a sin(theta) / c."""
    theta, a = math.radians(theta_deg), 1e-3
    grid, p0 = point_source()
    sensors = tilted_element(theta)
    acq = Acquisition(40e6, 1024, speed_of_sound=C, t0=0.03 / C - 5e-6)
    point = VolumeOperator(grid, sensors, acq).forward(p0)[0]
    elem = VolumeOperator(grid, sensors, acq, element_size=a,
                          element_shape=shape).forward(p0)[0]
    f = np.fft.rfftfreq(acq.n_samples, 1 / acq.fs)
    band = (f > 0.3e6) & (f < 2.6e6)
    ratio = np.abs(np.fft.rfft(elem)[band]) / np.abs(np.fft.rfft(point)[band])
    x = math.pi * f[band] * a * math.sin(theta) / C
    if shape == "square":
        expected = np.abs(np.sinc(x / math.pi))
    else:
        xs = np.where(x > 0, x, 1.0)
        expected = np.where(x > 0, np.abs(2 * j1(xs) / xs), 1.0)
    assert np.max(np.abs(ratio - expected)) < 0.02
    if theta_deg == 35.0:  # the element loses high frequencies off axis
        assert ratio[-1] < 0.6


@pytest.mark.parametrize("shape", ["square", "disc"])
def test_adjoint_is_exact_with_elements_and_a_response(shape):
    """<A x, y> = <x, A^T y>, with two blocks of elements (361 points each)."""
    grid = VolumeGrid(10, 0.002)
    sensors = hemisphere_array(12, 0.006)
    acq = Acquisition(40e6, 256, speed_of_sound=C)
    op = VolumeOperator(grid, sensors, acq, element_size=7e-4, element_shape=shape,
                        response=DetectorResponse(centre_frequency=4e6, bandwidth=0.8))
    rng = np.random.default_rng(1)
    x = rng.standard_normal(grid.shape).astype(np.float32)
    y = rng.standard_normal((12, 256)).astype(np.float32)
    ax = op.forward(x).astype(np.float64)
    lhs, rhs = np.vdot(ax, y), np.vdot(x, op.adjoint(y).astype(np.float64))
    assert abs(lhs - rhs) <= 1e-5 * np.linalg.norm(ax) * np.linalg.norm(y)


def test_tiny_elements_are_point_sensors():
    grid = VolumeGrid(12, 0.0024)
    sensors = hemisphere_array(16, 0.008)
    acq = Acquisition(20e6, 256, speed_of_sound=C)
    rng = np.random.default_rng(2)
    p0 = rng.random(grid.shape).astype(np.float32)
    point = simulate_volume(p0, grid, sensors, acq)
    for shape in ("square", "disc"):
        elem = simulate_volume(p0, grid, sensors, acq, element_size=1e-9, element_shape=shape)
        assert np.max(np.abs(elem - point)) <= 1e-4 * np.max(np.abs(point))
        for method in ("das", "ubp"):
            ref = backproject_volume(point, grid, sensors, acq, method)
            got = backproject_volume(point, grid, sensors, acq, method, element_size=1e-9,
                                     element_shape=shape)
            assert np.max(np.abs(got - ref)) <= 1e-4 * np.max(np.abs(ref))


@pytest.mark.parametrize("shape", ["square", "disc"])
def test_das_with_elements_is_the_weighted_mean_over_the_face(shape):
    """DAS of an element = sum over its points of weight x DAS of that point alone."""
    grid = VolumeGrid(8, 0.0016)
    sensors = hemisphere_array(6, 0.006)
    acq = Acquisition(20e6, 200, speed_of_sound=C)
    y = np.random.default_rng(3).standard_normal((6, 200)).astype(np.float32)
    got = backproject_volume(y, grid, sensors, acq, "das", element_size=4e-4,
                             element_shape=shape)
    pts, w = element_points_3d(sensors, 4e-4, acq, shape)
    ref = sum(wj * backproject_volume(y, grid, SensorArray3D(pts[:, j], sensors.normals),
                                      acq, "das") for j, wj in enumerate(w))
    np.testing.assert_allclose(got, ref, atol=1e-4 * np.abs(ref).max())


def test_element_points_lie_on_the_face():
    sensors = hemisphere_array(5, 0.01)
    acq = Acquisition(40e6, 64, speed_of_sound=C)
    pts, w = element_points_3d(sensors, 5e-4, acq)
    assert pts.shape == (5, 14 * 14, 3) and math.isclose(w.sum(), 1.0)
    rel = pts - sensors.positions[:, None, :]
    assert np.abs(np.einsum("smk,sk->sm", rel, sensors.normals)).max() < 1e-12
    t1, t2 = face_axes(sensors.normals)
    for t in (t1, t2):  # a square of side a centred on the element
        u = np.einsum("smk,sk->sm", rel, t)
        np.testing.assert_allclose(u.max(axis=1), 0.25e-3 - 0.5e-3 / 28)
    dpts, dw = element_points_3d(sensors, 5e-4, acq, "disc")
    r = np.linalg.norm(dpts - sensors.positions[:, None, :], axis=2)
    assert r.max() < 0.25e-3 + 0.5e-3 / 28 * math.sqrt(2) and math.isclose(dw.sum(), 1.0)
    assert math.isclose(float(np.sum(dw * r[0] ** 2)), 0.25e-3 ** 2 / 2, rel_tol=0.02)


def test_model_based_volume_uses_the_elements():
    grid = VolumeGrid(8, 0.0016)
    sensors = hemisphere_array(16, 0.006)
    acq = Acquisition(20e6, 200, speed_of_sound=C)
    p0 = np.zeros(grid.shape, np.float32)
    p0[3:5, 3:5, 3:5] = 1.0
    y = simulate_volume(p0, grid, sensors, acq, element_size=1e-3)
    fit, _ = reconstruct_volume_model_based(y, grid, sensors, acq, lam=1e-6, n_iter=20,
                                            element_size=1e-3)
    blind, _ = reconstruct_volume_model_based(y, grid, sensors, acq, lam=1e-6, n_iter=20)
    assert np.linalg.norm(fit - p0) < 0.8 * np.linalg.norm(blind - p0)


@pytest.mark.parametrize("size, shape, words", [
    (0.0, "square", "element size must be a number > 0"),
    (-1e-3, "square", "element size must be a number > 0"),
    (float("nan"), "disc", "element size must be a number > 0"),
    ("1e-3", "square", "element size must be a number > 0"),
    (20.0, "square", "at most"),
    (1e-3, "circle", "element shape must be one of square, disc"),
])
def test_bad_elements_are_one_line_errors(size, shape, words):
    grid = VolumeGrid(4, 0.001)
    with pytest.raises(InputError, match=words) as err:
        VolumeOperator(grid, hemisphere_array(4, 0.01), Acquisition(20e6, 64),
                       element_size=size, element_shape=shape)
    assert "\n" not in str(err.value)


def test_an_element_without_a_normal_is_refused():
    sensors = SensorArray3D(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.01]]))
    with pytest.raises(InputError, match="sensor 0 has no normal"):
        backproject_volume(np.zeros((2, 64), np.float32), VolumeGrid(4, 0.001), sensors,
                           Acquisition(20e6, 64), element_size=1e-3)


def test_too_many_points_per_element_are_refused():
    with pytest.raises(InputError, match="points per element"):
        element_points_3d(hemisphere_array(4, 0.01), 0.01, Acquisition(1e9, 64))

"""Two speeds of sound: the straight-ray times of flight, the operators that use them, and
the one-speed path left as it was."""

from __future__ import annotations

import math

import numpy as np
import pytest

from oatomo import Acquisition, Grid, SpeedMap, backproject, ring_array, simulate
from oatomo import kernels as K
from oatomo.errors import InputError, UnitWarning
from oatomo.forward import ForwardOperator
from oatomo.recon.model_based import reconstruct_model_based
from oatomo.speed_map import as_speed_map, ray_bending

MM = 1e-3


def test_travel_time_through_a_disc_matches_the_chord():
    m = SpeedMap(1500.0, 1540.0, 9 * MM, centre=(1 * MM, -2 * MM))
    sensor = np.array([0.03, 0.004])
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.012, 0.012, (200, 2))
    # closed form: chord of the line through the sensor and the point, cut at the point
    c = np.array(m.centre)
    u = (pts - sensor) / np.linalg.norm(pts - sensor, axis=1)[:, None]
    w = sensor - c
    b = np.sum(u * w, axis=1)
    disc = b * b - (w @ w - (9 * MM) ** 2)
    d = np.linalg.norm(pts - sensor, axis=1)
    s1 = np.clip(-b - np.sqrt(np.maximum(disc, 0)), 0, d)
    s2 = np.clip(-b + np.sqrt(np.maximum(disc, 0)), 0, d)
    inside = np.where(disc > 0, s2 - s1, 0.0)
    want = (d - inside) / 1500.0 + inside / 1540.0
    assert np.allclose(m.travel_time(pts, sensor), want, rtol=0, atol=1e-13)
    # through the centre from 30 mm: 21 mm of water, 18 mm of tissue beyond
    m0 = SpeedMap(1500.0, 1540.0, 9 * MM)
    assert m0.travel_time((0.0, 0.0), (0.03, 0.0)) == pytest.approx(21e-3 / 1500 + 9e-3 / 1540)
    assert m0.travel_time((-0.012, 0.0), (0.03, 0.0)) == pytest.approx(
        24e-3 / 1500 + 18e-3 / 1540)
    assert m0.travel_time((0.0, 0.02), (0.03, 0.02)) == pytest.approx(0.03 / 1500)


def test_ellipse_and_the_kernel_delays_agree_with_the_closed_form():
    m = SpeedMap(1500.0, 1600.0, (6 * MM, 3 * MM), centre=(1 * MM, 0.5 * MM))
    g = Grid(48, 0.0192)
    xs, ys = g.x.astype(np.float32), g.y.astype(np.float32)
    sens = np.array([[0.0, -0.025]], np.float32)
    n_t, fs = 2048, 40e6
    padded = np.zeros((1, n_t + 3), np.float32)
    padded[0, 1:n_t + 1] = np.arange(n_t)  # DAS reads back the delay in samples
    out = np.zeros(g.shape, np.float32)
    K.das_region(padded, xs, ys, sens, False, np.zeros((1, 2), np.float32), np.float32(0),
                 np.float32(fs / 1500), m.kernel_params(), out)
    X, Y = g.coordinates()
    want = m.travel_time(np.stack([X, Y], -1), sens[0].astype(float)) * fs
    assert np.abs(out - want).max() < 2e-3
    # a point at the ellipse's tip along x, seen along x, crosses 2 rx of it
    tip = SpeedMap(1500.0, 1600.0, (6 * MM, 3 * MM))
    assert tip.inside_length((-6 * MM, 0.0), (0.03, 0.0)) == pytest.approx(12 * MM)


@pytest.fixture(scope="module")
def setup():
    g = Grid(64, 0.0128)
    ring = ring_array(32, 0.02)
    acq = Acquisition(40e6, 900, 1500.0)
    return g, ring, acq, SpeedMap(1500.0, 1580.0, 4 * MM, centre=(0.5 * MM, -1 * MM))


def test_dot_product_two_speeds(setup):
    g, ring, acq, m = setup
    op = ForwardOperator(g, ring, acq, speed_map=m)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(g.shape).astype(np.float32)
    y = rng.standard_normal((32, 900)).astype(np.float32)
    a = float(np.vdot(op.forward(x).astype(np.float64), y))
    b = float(np.vdot(x.astype(np.float64), op.adjoint(y)))
    assert abs(a - b) <= 1e-4 * abs(a)


def test_equal_speeds_give_the_one_speed_model(setup):
    g, ring, acq, _ = setup
    x = np.random.default_rng(4).random(g.shape).astype(np.float32)
    one = ForwardOperator(g, ring, acq).forward(x)
    same = ForwardOperator(g, ring, acq, speed_map=SpeedMap(1500.0, 1500.0, 4 * MM)).forward(x)
    assert np.abs(same - one).max() <= 1e-5 * np.abs(one).max()


def test_without_a_map_the_one_speed_kernels_run(setup, monkeypatch):
    """No object region: the kernels of the one-speed model, so its bytes are unchanged."""
    g, ring, acq, _ = setup
    x = np.random.default_rng(5).random(g.shape).astype(np.float32)
    op = ForwardOperator(g, ring, acq)
    y = op.forward(x)
    img = op.adjoint(y)
    das = backproject(y, g, ring, acq, "ubp")

    def refuse(*args, **kwargs):
        raise AssertionError("a two-speed kernel ran without a speed map")

    for name in ("forward_edges_region", "adjoint_edges_region", "das_region",
                 "das_frames_region"):
        monkeypatch.setattr(K, name, refuse)
    op2 = ForwardOperator(g, ring, acq, speed_map=None)
    assert op2.forward(x).tobytes() == y.tobytes()
    assert op2.adjoint(y).tobytes() == img.tobytes()
    assert backproject(y, g, ring, acq, "ubp", speed_map=None).tobytes() == das.tobytes()
    backproject(np.stack([y, y]), g, ring, acq, "das")
    assert simulate(x, g, ring, acq).tobytes() == y.tobytes()


def _peak(img: np.ndarray, g: Grid) -> np.ndarray:
    """Sub-pixel peak position (m): centroid of the positive 3 x 3 around the maximum."""
    i, j = np.unravel_index(np.argmax(img), img.shape)
    win = np.clip(img[i - 1:i + 2, j - 1:j + 2], 0, None)
    ii, jj = np.mgrid[i - 1:i + 2, j - 1:j + 2]
    return np.array([g.x[0] + g.dx * (jj * win).sum() / win.sum(),
                     g.y[0] + g.dx * (ii * win).sum() / win.sum()])


def test_a_source_inside_a_faster_disc_lands_with_two_speeds_only():
    g = Grid(128, 0.0192)
    ring = ring_array(64, 0.03)
    acq = Acquisition(40e6, 1300, 1500.0)
    m = SpeedMap(1500.0, 1600.0, 9 * MM)
    X, Y = g.coordinates()
    src = np.array([6 * MM, 1.5 * MM])
    p0 = np.exp(-((X - src[0]) ** 2 + (Y - src[1]) ** 2) / (2 * (0.2 * MM) ** 2))
    y = simulate(p0.astype(np.float32), g, ring, acq, speed_map=m)
    right = _peak(backproject(y, g, ring, acq, "ubp", speed_map=m), g)
    wrong = _peak(backproject(y, g, ring, acq, "ubp"), g)
    assert np.linalg.norm(right - src) < 0.5 * g.dx
    assert np.linalg.norm(wrong - src) > 1.4 * g.dx  # 0.25 mm outwards
    x, _ = reconstruct_model_based(y, g, ring, acq, method="tv", n_iter=20, speed_map=m)
    assert np.linalg.norm(_peak(x, g) - src) < 0.5 * g.dx


def test_options_name_what_is_wrong():
    assert as_speed_map(1500.0) is None
    m = as_speed_map(1500.0, 1540.0, 0.009, [0.001, 0.0])
    assert m == SpeedMap(1500.0, 1540.0, 0.009, (0.001, 0.0))
    with pytest.raises(InputError, match="^--object-radius needs --object-speed-of-sound$"):
        as_speed_map(1500.0, None, 0.009, prefix="--")
    with pytest.raises(InputError, match="^object_speed_of_sound needs object_radius$"):
        as_speed_map(1500.0, 1540.0)
    with pytest.raises(InputError, match=r"^--object-radius must be in \(0, 10\] metres"):
        as_speed_map(1500.0, 1540.0, 0.0, prefix="--")
    with pytest.raises(InputError, match=r"^--object-speed-of-sound must be in \[1, 100000\] m/s"):
        as_speed_map(1500.0, -3.0, 0.009, prefix="--")
    with pytest.raises(InputError, match=r"^preset key object_centre must be two coordinates"):
        as_speed_map(1500.0, 1540.0, 0.009, [1, 2, 3], prefix="preset key ")
    assert as_speed_map(1500.0, 1540.0, [0.009, 0.005]).radius == (0.009, 0.005)
    with pytest.raises(InputError, match="^object_centre needs"):
        as_speed_map(1500.0, None, None, (0.0, 0.0))
    with pytest.warns(UnitWarning, match="object speed of sound = 1.54 m/s"):
        SpeedMap(1500.0, 1.54, 0.009)
    with pytest.raises(InputError, match="fbp is exact for one speed"):
        g = Grid(32, 0.0128)
        backproject(np.zeros((16, 100)), g, ring_array(16, 0.02), Acquisition(40e6, 100),
                    "fbp", speed_map=SpeedMap(1500.0, 1540.0, 0.004))


def test_ray_bending_grows_with_the_contrast():
    # Snell at both crossings; a grazing ray bends most
    assert ray_bending(1.0, 0.5) == 0.0
    low, high = ray_bending(1.03, 0.7), ray_bending(1.1, 0.7)
    assert 0 < low < high
    assert low == pytest.approx(2 * (math.asin(0.7 * 1.03) - math.asin(0.7)))


@pytest.mark.parametrize("medium", ["2d", "slab"])
@pytest.mark.parametrize("c1", [1450.0, 1545.0, 1600.0])
def test_a_source_inside_the_region_has_its_own_mediums_amplitude_times_the_transmission(
        medium, c1):
    """A blob at the centre of a disc of speed ``c1``, seen from a ring in water: the
    two-speed model's signals have the norm of the one-speed model in a medium of ``c1``
    around it (where the pressure as a function of ``c1 t`` does not depend on the speed)
    times the pressure transmission ``2 c0 / (c0 + c1)`` out of the disc. Without the
    amplitude correction of the kernels they were ``(c1 / c0)^(q + 1) (d / (c0 tau))^q``
    louder (q = 1 slab, 1/2 line sources: 4.5-16 % here)."""
    c0, radius, ring, n = 1500.0, 6 * MM, 10 * MM, 128
    grid = Grid(n, 12.8 * MM)
    x = (np.arange(n) - (n - 1) / 2) * grid.dx
    xx, yy = np.meshgrid(x, x)
    p0 = np.exp(-(xx ** 2 + yy ** 2) / (2 * (0.5 * MM) ** 2))
    sensors = ring_array(8, ring)
    kw = {"medium": "2d"} if medium == "2d" else {}
    two = ForwardOperator(grid, sensors, Acquisition(20e6, 400, c0, t0=0.0),
                          speed_map=SpeedMap(c0, c1, radius), **kw).forward(p0)
    one = ForwardOperator(grid, sensors, Acquisition(20e6, 400, c1, t0=0.0), **kw).forward(p0)
    ratio = np.linalg.norm(two, axis=1) / np.linalg.norm(one, axis=1)
    expected = 2 * c0 / (c0 + c1)
    assert np.abs(ratio / expected - 1).max() < 0.01, (ratio, expected)

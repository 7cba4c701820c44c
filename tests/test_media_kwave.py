"""oatomo's line-source (2-D) medium against a scan made by an independent simulator,
k-Wave's 2-D solver (``tests/data/kwave_2d_ring16.npz``, made by
``benchmarks/media/kwave_fixture.py``): three smooth blobs, 16 sensors on a 10 mm ring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from signal_compare import per_sensor

from oatomo import Acquisition, Grid, SensorArray
from oatomo.forward import ForwardOperator
from oatomo.media import line_to_slab

DATA = Path(__file__).parent / "data" / "kwave_2d_ring16.npz"


@pytest.fixture(scope="module")
def kwave():
    d = dict(np.load(DATA))
    grid = Grid(128, 128 * 1e-4)
    acq = Acquisition(float(d["fs"]), d["signals"].shape[1], speed_of_sound=float(d["c"]),
                      t0=float(d["t0"]))
    return (d["p0"], grid, SensorArray(d["positions"]), acq, d["signals"].astype(np.float64),
            d)


def test_the_line_source_medium_matches_k_wave_at_every_sensor(kwave) -> None:
    p0, grid, sensors, acq, ref, _ = kwave
    y = ForwardOperator(grid, sensors, acq, medium="2d").forward(p0).astype(np.float64)
    corr, amp, rel = per_sensor(y, ref)
    assert corr.min() > 0.999, corr.min()  # measured 0.99999
    assert np.abs(amp - 1).max() < 0.01, amp  # measured within 0.25 %
    assert rel.max() < 0.02, rel.max()  # measured 0.4 %


def test_the_slab_model_does_not_and_the_converter_bridges_them(kwave) -> None:
    p0, grid, sensors, acq, ref, _ = kwave
    slab = ForwardOperator(grid, sensors, acq).forward(p0).astype(np.float64)
    assert per_sensor(slab, ref)[2].min() > 0.5  # another signal shape (measured 0.99)
    converted = line_to_slab(ref.astype(np.float32), acq, thickness=grid.dx)
    corr, _, rel = per_sensor(slab, converted.astype(np.float64))
    # measured: correlation 0.9997 or more, relative L2 1.1 % (median), 2.3 % (worst)
    assert corr.min() > 0.999 and np.median(rel) < 0.03, (corr.min(), np.median(rel))


def test_two_speeds_time_a_faster_disc_as_k_wave_does(kwave) -> None:
    """The same blobs with a disc 3 % faster than the water (k-Wave refracts; oatomo's
    model uses straight two-segment rays): the two-speed model's signals keep the shape."""
    from oatomo import SpeedMap

    p0, grid, sensors, acq, _, d = kwave
    ref = d["signals_disc"].astype(np.float64)
    disc = SpeedMap(acq.speed_of_sound, float(d["c_disc"]), float(d["disc_radius"]))
    got = {}
    for name, speed_map in (("one", None), ("two", disc)):
        y = ForwardOperator(grid, sensors, acq, medium="2d", speed_map=speed_map).forward(p0)
        got[name] = per_sensor(y.astype(np.float64), ref)
    corr, amp, rel = got["two"]
    assert corr.min() > 0.999, corr.min()  # measured 0.9995; one speed 0.980
    assert got["one"][0].min() < 0.99 and rel.max() < 0.5 * got["one"][2].max()
    # with the kernels' amplitude correction (the equivalent distance's gain undone, the
    # transmission out of the disc) the amplitudes match within the 3 % asked; the rest is
    # refraction. Without it they were 5-7 % high (k-Wave 0.93-0.95 of oatomo's).
    assert np.abs(amp - 1).max() < 0.03, amp

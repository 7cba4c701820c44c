"""oatomo's line-source (2-D) medium against a scan made by an independent simulator,
k-Wave's 2-D solver (``tests/data/kwave_2d_ring16.npz``, made by
``benchmarks/media/kwave_fixture.py``): three smooth blobs, 16 sensors on a 10 mm ring;
and oatomo's power-law attenuation against k-Wave's absorbing scans of the same blobs
(``tests/data/kwave_2d_ring16_attenuation.npz``, ``kwave_fixture.py --attenuation``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from signal_compare import per_sensor

from oatomo import Acquisition, Grid, SensorArray
from oatomo.forward import ForwardOperator
from oatomo.media import Attenuation, line_to_slab

DATA = Path(__file__).parent / "data" / "kwave_2d_ring16.npz"
DATA_ATTENUATION = Path(__file__).parent / "data" / "kwave_2d_ring16_attenuation.npz"


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


@pytest.fixture(scope="module")
def kwave_absorbing():
    return dict(np.load(DATA_ATTENUATION))


def _kwave_source_gain(y: np.ndarray, acq: Acquisition, attenuation: Attenuation,
                       c0: float) -> np.ndarray:
    """``y`` filtered by ``(c(f) / c0)^2``: k-Wave starts an absorbing run from the density
    ``p0 / c0^2``, which its dispersive equation of state turns into ``c(f)^2`` times it."""
    n = 4 * y.shape[-1]
    f = np.fft.rfftfreq(n, 1 / acq.fs)
    slowness = 1 / acq.speed_of_sound + attenuation.slowness_excess(f)
    slowness[0] = 1 / c0
    return np.fft.irfft(np.fft.rfft(y, n) / (slowness * c0) ** 2, n)[..., :y.shape[-1]]


@pytest.mark.parametrize("tag", ["y150", "y120"])
def test_the_attenuation_matches_k_wave_absorption_at_every_sensor(kwave, kwave_absorbing,
                                                                   tag) -> None:
    """k-Wave's power-law absorption (0.75 dB/(MHz^y cm), y = 1.5 and 1.2): k-Wave's phase
    speed is its ``sound_speed`` at zero frequency, oatomo's the acquisition's at 1 MHz,
    so oatomo gets k-Wave's speed at 1 MHz (stored with the scan)."""
    p0, grid, sensors, acq, _, _ = kwave
    d = kwave_absorbing
    ref = d[f"signals_{tag}"].astype(np.float64)
    c0, c1 = float(d["c"]), float(d[f"c_1mhz_{tag}"])
    att = Attenuation(float(d["alpha0"]), int(tag[1:]) / 100)
    # the stored 1 MHz speed (k-Wave's exact dispersion relation) is, to first order in
    # the absorption, the one whose zero-frequency speed in oatomo's model is k-Wave's c0
    assert abs(1 / (1 / c0 - att.slowness_excess(1e-30)) - c1) < 0.2, c1
    at_c1 = Acquisition(acq.fs, acq.n_samples, speed_of_sound=c1, t0=acq.t0)
    y = ForwardOperator(grid, sensors, at_c1, medium="2d", attenuation=att).forward(p0)
    y = y.astype(np.float64)
    corr, amp, rel = per_sensor(y, ref)
    # measured (y = 1.5 / 1.2): correlation 0.99999 / 0.99999; k-Wave's amplitude 1.002-1.005
    # / 1.009-1.013 of oatomo's (k-Wave's initial pressure, below); relative L2 0.63 / 1.3 %
    assert corr.min() > 0.9999, corr.min()
    assert np.abs(amp - 1).max() < 0.02 and rel.max() < 0.025, (amp, rel.max())
    corr, amp, rel_gain = per_sensor(_kwave_source_gain(y, at_c1, att, c0), ref)
    # with k-Wave's initial-pressure gain: amplitude 0.9996-1.0028, relative L2 <= 0.44 %,
    # the level of the non-absorbing scan's agreement
    assert np.abs(amp - 1).max() < 0.006 and rel_gain.max() < 0.01, (amp, rel_gain.max())
    # without attenuation oatomo is clearly worse: at 1500 m/s (measured relative L2 3.4 /
    # 9.2 % median) and at the 1 MHz speed (2.4 / 2.5 %)
    for c in (c0, c1):
        a = Acquisition(acq.fs, acq.n_samples, speed_of_sound=c, t0=acq.t0)
        plain = ForwardOperator(grid, sensors, a, medium="2d").forward(p0).astype(np.float64)
        rel_plain = per_sensor(plain, ref)[2]
        assert np.median(rel_plain) > 4 * np.median(rel_gain), (c, np.median(rel_plain))
        assert np.median(rel_plain) > 1.5 * np.median(rel), (c, np.median(rel_plain))

"""The held-out re-seat after the finest level: the time-shifted misfits against an
independent integer-shift computation, and a sensor whose record a co-adapted image fits
at its wrong position, put back by a search against the other sensors' image."""

from __future__ import annotations

import numpy as np
import pytest

from oatomo import Acquisition, Grid, InputError, SensorArray, ring_array
from oatomo.calibration import calibrate_sinogram
from oatomo.calibration.joint import RESEAT_ROUNDS, heldout_reseat, shifted_misfits
from oatomo.calibration.levels import schedule
from oatomo.calibration.search import local_frames, predicted_records, relative_misfit
from oatomo.forward import simulate
from oatomo.phantoms import vessels
from oatomo.recon.model_based import default_lambda, reconstruct_model_based
from oatomo.recon.operators import operator_norm_sq

GRID = Grid(64, 0.0128)
ACQ = Acquisition(20e6, 512, speed_of_sound=1500.0)


def test_shifted_misfits_are_those_of_rolled_records() -> None:
    """Shifts by whole samples: the phase ramp gives the misfit of the record rolled by
    that many samples (computed directly, zeros shifted in), and 0 where the data are the
    prediction shifted so."""
    rng = np.random.default_rng(0)
    t = np.arange(256)
    pred = np.stack([np.exp(-0.5 * ((t - m) / 3.0) ** 2) * np.sin(0.7 * (t - m))
                     for m in (90, 120, 150)])
    data = np.stack([np.roll(pred[0], -5), np.roll(pred[1], 7),
                     pred[2] + 0.1 * rng.standard_normal(256)])
    fs = 40e6
    k = np.arange(-10, 11)
    got = shifted_misfits(pred, data, np.zeros(3), k / fs, fs)

    def rolled(p: np.ndarray, s: int) -> np.ndarray:  # p(t + s), zeros beyond the record
        out = np.zeros_like(p)
        if s >= 0:
            out[:len(p) - s] = p[s:]
        else:
            out[-s:] = p[:len(p) + s]
        return out

    ref = relative_misfit(np.stack([[rolled(p, int(s)) for s in k] for p in pred]), data)
    np.testing.assert_allclose(got, ref, atol=1e-9)
    # a base shift per record on top of the common ones: rolled by base + k
    base = np.array([2, -3, 4])
    moved = shifted_misfits(pred, data, base / fs, k / fs, fs)
    ref = relative_misfit(np.stack([[rolled(p, int(b + s)) for s in k]
                                    for p, b in zip(pred, base, strict=True)]), data)
    np.testing.assert_allclose(moved, ref, atol=1e-9)
    # data(t) = pred(t + 5) and pred(t - 7)
    assert got[0, k.tolist().index(5)] == pytest.approx(0.0, abs=1e-9)
    assert got[1, k.tolist().index(-7)] == pytest.approx(0.0, abs=1e-9)


def test_a_sensor_fitted_where_it_wrongly_is_is_put_back() -> None:
    """One sensor of a 32-ring 0.6 mm off along its line of sight, the others right: the TV
    image made with it where the file says fits its record there, so searching against
    that image leaves it; the re-seat, against the other sensors' image, brings it back to
    within 0.1 mm and leaves the others within a few micrometres."""
    ring = ring_array(32, 0.02)
    truth = ring.positions.astype(np.float64)
    p0 = vessels(GRID, seed=5)
    y = simulate(p0, GRID, ring, ACQ, noise_std=0.002, seed=2)
    wrong = truth.copy()
    u = local_frames(truth)[:, 0]
    wrong[9] += 0.6e-3 * u[9]
    level = schedule(y, ACQ, GRID, 0.3e-3, 2)[-1]
    lam = default_lambda("tv", level.data, level.grid, SensorArray(wrong), ACQ)
    norm = 1.1 * operator_norm_sq(level.grid, SensorArray(wrong), ACQ, n_iter=15)
    image, _ = reconstruct_model_based(level.data, level.grid, SensorArray(wrong), ACQ,
                                       method="tv", lam=lam, n_iter=60, norm_sq=norm)
    # the co-adapted image fits the misplaced record better where the sensor wrongly is
    at = predicted_records(level, image, np.stack([wrong[9], truth[9]]), None)
    mis = relative_misfit(at[:, None, :], level.data[[9, 9]])[:, 0]
    assert mis[0] < mis[1]
    out = heldout_reseat(level, image, wrong, wrong, 0.3e-3, 1.2e-3, lam, norm, None)
    assert np.linalg.norm(out[9] - truth[9]) < 0.1e-3
    others = np.delete(np.arange(32), 9)
    assert np.max(np.linalg.norm(out[others] - wrong[others], axis=1)) < 30e-6


def test_reseat_is_an_option_with_its_round_counted() -> None:
    """``reseat=True`` adds the re-seat's round to the history and the progress count; the
    default leaves the method as it was (no extra round)."""
    ring = ring_array(24, 0.02)
    y = simulate(vessels(GRID, seed=1), GRID, ring, ACQ)
    steps: list[tuple[int, int]] = []
    on = calibrate_sinogram(y, ring, ACQ, GRID, n_levels=2, prior_std=0.1e-3, reseat=True,
                            callback=lambda stage, k, n: steps.append((k, n)))
    off = calibrate_sinogram(y, ring, ACQ, GRID, n_levels=2, prior_std=0.1e-3)
    assert len(on.history) == len(off.history) + RESEAT_ROUNDS
    assert steps[-1][0] == steps[-1][1] == len(on.history)
    assert np.all(np.isfinite(on.sensors.positions))
    with pytest.raises(InputError, match="reseat applies to the joint"):
        calibrate_sinogram(y, ring, ACQ, GRID, method="search", reseat=True)

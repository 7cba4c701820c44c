"""The coarse-to-fine levels of self-calibration: per level the image grid, the record's
band limit and decimation, the candidate grid of the per-sensor search and the number of
rounds (:func:`schedule`), and the band limits themselves (:func:`band_limit`,
:func:`lowpass_fft`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from oatomo.forward import bandpass
from oatomo.geometry import Acquisition, Grid

__all__ = ["BOX_STD", "ACROSS_STD", "MAX_HALF_ACROSS", "TEFF_SCALE", "Level", "round_record",
           "lowpass_fft",
           "band_limit", "schedule"]

#: Half-width of the search box around the prior mean, in prior standard deviations.
BOX_STD = 4.0

#: Half-width of each round's search across the line of sight, around the current
#: estimate, in prior standard deviations (levels finer than the coarsest). The across
#: (tangential) coordinate is weakly seen, so a narrow search moved it by at most the
#: box each round: with +-0.2 sigma it crept 5 % per round; with +-1.6 sigma it converges
#: in a few rounds (tuning scans: mean gap recovered 0.46 -> 0.61).
ACROSS_STD = 1.6

#: Most candidates each side across the line of sight (larger priors: coarser steps).
MAX_HALF_ACROSS = 12

#: Weight of the data term against the prior: the number of independent samples of a
#: record (participation ratio of its energy times the band's share) is multiplied by
#: this (chosen on the tuning scans: 1 -> 4 gained 0.6 dB, 4 -> 16 nothing).
TEFF_SCALE = 4.0


@dataclass(frozen=True)
class Level:
    """One level of the coarse-to-fine schedule (see :func:`schedule`).

    Attributes
    ----------
    grid, acquisition
        The level's image grid and the sampling of its decimated record.
    data
        (N, T_l) band-limited, decimated record.
    band
        Band limit ``(None, f_cut)`` (Hz) of the record, None at full band.
    step, half
        Candidate spacing (m) along the line of sight and candidates each side.
    half_across
        Candidates each side across the line of sight (0: line of sight only).
    rounds
        Rounds of the per-sensor search at this level.
    t_eff
        Independent samples of a record (weight of the data term).
    step_across
        Candidate spacing across the line of sight (m).
    fft
        Low-pass in the frequency domain (:func:`lowpass_fft`: no SciPy import; the
        position check) rather than with :func:`oatomo.forward.bandpass`.
    """

    grid: Grid
    acquisition: Acquisition
    data: np.ndarray  # (N, T_l) band-limited, decimated record
    band: tuple[float | None, float | None] | None
    step: float  # candidate spacing (m)
    half: int  # candidates each side along the line of sight
    half_across: int  # candidates each side across it (0: line of sight only)
    rounds: int
    t_eff: float  # independent samples of a record
    step_across: float  # candidate spacing across the line of sight (m)
    fft: bool = False  # low-pass in the frequency domain (no SciPy import; the check)


def round_record(level: Level, index: int, round_: int, step: int, total: int,
                 misfit: np.ndarray, speed_of_sound: float, step_rms: float
                 ) -> dict[str, float]:
    """One entry of :attr:`oatomo.calibration.Calibration.history`: level ``index``, its
    round, the round's number ``step`` of ``total``, the level's pixel (m) and band (Hz,
    0 at full band), the mean relative misfit, the speed of sound after the round and the
    rms position update (m)."""
    return {"level": index, "round": round_, "step": step, "rounds_total": total,
            "pixel": level.grid.dx, "band": float(level.band[1]) if level.band else 0.0,
            "misfit": float(np.mean(misfit)), "speed_of_sound": speed_of_sound,
            "step_rms": step_rms}


def lowpass_fft(x: np.ndarray, fs: float, f_cut: float, order: int = 4) -> np.ndarray:
    """Zero-phase low-pass along the last axis with the magnitude of
    :func:`oatomo.forward.bandpass`'s forward-backward digital Butterworth filter
    (bilinear transform), ``1 / (1 + (tan(pi f / fs) / tan(pi f_cut / fs))^(2 order))``,
    applied in the frequency domain (zero-padded, so nothing wraps around)."""
    n = x.shape[-1]
    m = 1 << int(math.ceil(math.log2(2 * n)))
    f = np.fft.rfftfreq(m, 1.0 / fs)
    ratio = np.tan(np.pi * np.minimum(f / fs, 0.4999)) / math.tan(math.pi * f_cut / fs)
    gain = 1.0 / (1.0 + ratio ** (2 * order))
    return np.fft.irfft(np.fft.rfft(x, m, axis=-1) * gain, m, axis=-1)[..., :n].astype(
        np.float32)


def band_limit(level: Level, x: np.ndarray) -> np.ndarray:
    """The level's band limit (:attr:`Level.band`) applied to records ``x`` (..., T)."""
    if level.band is None:
        return x
    if level.fft:
        return lowpass_fft(x, level.acquisition.fs, float(level.band[1]))
    return bandpass(x, level.acquisition.fs, level.band)


def _decimate(y: np.ndarray, acq: Acquisition, f_cut: float | None, fft: bool = False
              ) -> tuple[np.ndarray, Acquisition, tuple[float | None, float | None] | None]:
    """Low-pass below ``f_cut`` and keep every d-th sample (d with fs/d >= 4 f_cut)."""
    if f_cut is None or f_cut >= 0.45 * acq.fs:
        return y, acq, None
    band = (None, f_cut)
    yf = lowpass_fft(y, acq.fs, f_cut) if fft else bandpass(y, acq.fs, band)
    d = max(1, int(acq.fs // (4.0 * f_cut)))
    n = acq.n_samples // d
    return (np.ascontiguousarray(yf[:, ::d][:, :n], dtype=np.float32),
            replace(acq, fs=acq.fs / d, n_samples=n), (None, f_cut * 1.0))


def schedule(y: np.ndarray, acq: Acquisition, grid: Grid, prior_std: float,
             n_levels: int, fft: bool = False, first_only: bool = False) -> list[Level]:
    """The coarse-to-fine schedule: pixel, band, candidate grid and rounds per level
    (``first_only``: the coarsest level alone)."""
    out = []
    for li in range(1 if first_only else n_levels):
        factor = 2 ** (n_levels - 1 - li)
        n = max(8, grid.n // factor)
        g = Grid(n, grid.fov)
        finest = li == n_levels - 1
        f_cut = None if finest else acq.speed_of_sound / (3.0 * g.dx)
        data, a, band = _decimate(y, acq, f_cut, fft)
        f_eff = f_cut if f_cut is not None else acq.fs / 2
        # independent samples carrying signal: the participation ratio of the record's
        # energy (median over sensors) times the band's share of the samples
        e2 = data.astype(np.float64) ** 2
        ratio = np.sum(e2, axis=1) ** 2 / np.maximum(np.sum(e2 * e2, axis=1), 1e-300)
        t_eff = max(1.0, float(np.median(ratio)) * min(1.0, 2.0 * f_eff / a.fs) * TEFF_SCALE)
        if li == 0:  # wide search: the whole prior box
            step = min(g.dx / 2, prior_std / 2)
            half = int(math.ceil(BOX_STD * prior_std / step))
        else:
            step = g.dx / 4
            half = 4
        # across the line of sight (all but the coarsest level): half-pixel steps over
        # +-ACROSS_STD prior stds around the current estimate
        step_across = max(g.dx / 2, ACROSS_STD * prior_std / MAX_HALF_ACROSS)
        half_across = (int(math.ceil(ACROSS_STD * prior_std / step_across))
                       if li > 0 or n_levels == 1 else 0)
        out.append(Level(g, a, data, band, step, half, half_across,
                         rounds=4 if li == 0 else 3, t_eff=t_eff, step_across=step_across,
                         fft=fft))
    return out

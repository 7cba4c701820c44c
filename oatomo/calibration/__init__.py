"""Self-calibration: sensor positions and speed of sound estimated from the scan itself.

A sensor's record fixes the *distances* from the sensor to the absorbers (in units of
``c t``), so per-sensor position errors are visible in the data; a rigid motion of the
whole array and a common scaling of positions and speed of sound are not (SCIENCE.md,
section 5). :func:`calibrate` estimates the visible part jointly with the image:

1. **Held-out folds against lock-in.** The sensors are split into interleaved folds (every
   ``n_folds``-th sensor in angular order). Each fold's sensors are fitted against a TV
   image reconstructed *without* them, so the image cannot explain a sensor's data at the
   sensor's current position simply because it was made from it.
2. **Per-sensor search, coarse to fine.** For each sensor, the normalised correlation
   between its (band-limited) record and the record the held-out image predicts is
   evaluated on a grid of candidate positions around the current estimate (one forward
   projection of the image onto a "virtual array" of all candidates of all sensors at
   once); a quadratic fit around the best candidate gives the sub-grid optimum and the
   curvature. Levels go from large pixels and low frequencies, where the misfit is smooth
   in the positions and the search box is wide, to the full grid and band. The coarsest
   level searches along each sensor's line of sight only (a time shift of its record,
   well seen); the finer levels also search across it, over +-:data:`ACROSS_STD` prior
   standard deviations (the across coordinate is seen only through off-centre structure,
   about object size / array radius as strongly, and converges slowly in small steps).
3. **A Gaussian prior** ``N(nominal, prior_std^2)`` per coordinate: the candidates lie
   within :data:`BOX_STD` standard deviations of the nominal position, and the selected position
   minimises the data term (Gaussian likelihood, noise level taken from the residual)
   plus the prior term (MAP).
4. **The gauge, fixed explicitly.** After every round the estimate is mapped onto the
   nominal array by the least-squares similarity transform (rotation, translation and
   scale). A rotation or translation of the array only moves the image, so it is set to
   that of the nominal array. A common scale of the positions is exchangeable with the
   speed of sound (positions, ``c`` and the image all scale together), so the scale the
   sensors ask for is moved into ``c``: this is how the speed of sound is estimated,
   after a cross-validated 1-D search that brings it within the search box first.

``t0`` is taken from the file: for a ring it trades against ``c`` and the mean radius
almost exactly (a common time shift is a common radial shift), so it is not estimated.

The uncertainty of each sensor's estimate is the Laplace approximation of the posterior
at the optimum: the inverse of the curvature of (data term + prior term), with the data
term's noise level estimated from the sensor's residual and ``T_eff``, the number of
independent samples of its band-limited record.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from oatomo._limits import check_integer
from oatomo.errors import InputError
from oatomo.forward import ForwardOperator, bandpass, check_sinogram
from oatomo.geometry import Acquisition, Grid, SensorArray, check_geometry
from oatomo.recon.operators import operator_norm_sq

logger = logging.getLogger(__name__)

__all__ = ["Calibration", "calibrate", "calibrate_sinogram", "apply_calibration",
           "check_positions", "PositionCheck", "similarity_transform", "rigid_error",
           "MIN_SENSORS"]

#: Fewest sensors self-calibration accepts (each fold must still form an image).
MIN_SENSORS = 8

#: Folds at the finest level (the held-out images cost most there).
FINE_FOLDS = 4

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

#: Median best correlation below which the data are declared to carry no usable structure.
MIN_CORRELATION = 0.2

#: Default per-coordinate prior standard deviation of the position errors, as a fraction
#: of the array's mean distance from its centroid (when neither the caller nor the
#: scan's setup says).
DEFAULT_PRIOR_REL = 0.01

#: Width of the scout search that estimates the prior from the data (``prior_std="data"``):
#: +-BOX_STD times this fraction of the radius.
SCOUT_REL = 0.03

#: Range of a prior estimated from the data, as fractions of the array's radius.
SCOUT_RANGE = (0.0025, 0.03)

#: The position check (:func:`check_positions`): held-out folds, TV iterations of each
#: held-out image and the search box, as a fraction of the array radius.
CHECK_FOLDS = 4
CHECK_ITER = 10
CHECK_BOX_REL = 0.04

#: Default threshold of the position check, in pixels of the image grid.
CHECK_PIXELS = 0.5


@dataclass(frozen=True)
class Calibration:
    """The result of :func:`calibrate`.

    Attributes
    ----------
    sensors
        Estimated sensor positions (m), in the nominal array's frame (the gauge: the
        least-squares rotation, translation and scale onto the nominal array are removed).
    speed_of_sound
        Estimated speed of sound (m/s).
    nominal_sensors, nominal_speed_of_sound
        What the scan file said.
    position_std
        (N, 2) posterior standard deviation of each coordinate (m), Laplace approximation.
    prior_std
        Per-coordinate prior standard deviation of the position errors used (m).
    prior_source
        Where it came from: ``"given"`` (the caller), ``"setup"`` (the scan's setup),
        ``"default"`` (:data:`DEFAULT_PRIOR_REL` of the radius) or ``"data"`` (estimated
        from the scan, see :func:`calibrate_sinogram`).
    history
        One dict per round: ``level``, ``round``, ``pixel`` (m), ``band`` (Hz),
        ``misfit`` (held-out relative misfit ``mean(1 - rho^2)`` at the selected
        positions), ``speed_of_sound``, ``step_rms`` (m, rms position update).
    time_s
        Wall time (s).
    """

    sensors: SensorArray
    speed_of_sound: float
    nominal_sensors: SensorArray
    nominal_speed_of_sound: float
    position_std: np.ndarray
    prior_std: float
    history: list[dict[str, float]] = field(default_factory=list)
    time_s: float = 0.0
    prior_source: str = "given"

    @property
    def displacement(self) -> np.ndarray:
        """(N, 2) estimated minus nominal positions (m)."""
        return self.sensors.positions - self.nominal_sensors.positions

    @property
    def frame_std(self) -> dict[str, float]:
        """How far the calibrated frame may lie from the true one: the gauge's uncertainty.

        The data fix the sensors only up to a rigid motion and a common scale of the whole
        array; the calibration takes the most likely one under the prior (errors of mean
        zero about the prior-mean array). With independent errors of standard deviation
        σ = :attr:`prior_std` per coordinate on N sensors at distances r_i from their
        centroid, the true array differs from that choice by a translation of standard
        deviation σ / √N per axis, a rotation of σ / √(Σ r_i²) and a relative scale of
        σ / √(Σ r_i²), which the calibration puts into the speed of sound. The image shares
        the first two: it may be shifted and rotated by about these amounts against the
        true frame, and no data can tell. A setup's random rigid motion (``offset_std``,
        ``rotation_std``) adds to them.

        Returns
        -------
        dict
            ``translation_m`` (m, per axis), ``rotation_rad`` (rad), ``scale_rel`` (the
            relative uncertainty of the speed of sound from the scale gauge); one standard
            deviation each.
        """
        p = self.nominal_sensors.positions
        spread = math.sqrt(float(np.sum((p - p.mean(axis=0)) ** 2)))
        return {"translation_m": self.prior_std / math.sqrt(len(p)),
                "rotation_rad": self.prior_std / spread, "scale_rel": self.prior_std / spread}

    def acquisition(self, acquisition: Acquisition) -> Acquisition:
        """``acquisition`` with the estimated speed of sound."""
        return replace(acquisition, speed_of_sound=self.speed_of_sound)

    def scan_record(self) -> dict[str, Any]:
        """What a calibrated scan file keeps under ``/calibration`` (see
        :attr:`oatomo.io.Scan.calibration`)."""
        return {"nominal_positions": self.nominal_sensors.positions,
                "nominal_speed_of_sound": self.nominal_speed_of_sound,
                "position_std": self.position_std, "prior_std": self.prior_std,
                "prior_source": self.prior_source, "history": self.history, "time_s": self.time_s,
                **{f"frame_std_{k}": v for k, v in self.frame_std.items()},
                "method": "oatomo.calibration: held-out folds, coarse-to-fine per-sensor "
                          "search, MAP with Gaussian prior; gauge: similarity transform "
                          "onto the prior mean array, scale moved into c"}

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (JSON-ready)."""
        return {"positions": self.sensors.positions.tolist(),
                "speed_of_sound": self.speed_of_sound,
                "nominal_positions": self.nominal_sensors.positions.tolist(),
                "nominal_speed_of_sound": self.nominal_speed_of_sound,
                "position_std": self.position_std.tolist(), "prior_std": self.prior_std,
                "prior_source": self.prior_source, "frame_std": self.frame_std,
                "history": self.history, "time_s": self.time_s}


# --- the gauge ---------------------------------------------------------------------------


def similarity_transform(src: np.ndarray, dst: np.ndarray, *, scale: bool = True
                         ) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``s, R, t`` with ``s R src_i + t ~ dst_i`` (2-D points).

    Parameters
    ----------
    src, dst
        (N, 2) point sets.
    scale
        Fit a scale; False fixes ``s = 1`` (a rigid motion).

    Returns
    -------
    s : float
    R : numpy.ndarray
        (2, 2) rotation (determinant +1).
    t : numpy.ndarray
        (2,) translation.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    # rotation angle maximising sum b . R a
    num = float(np.sum(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]))
    den = float(np.sum(a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]))
    theta = math.atan2(num, den)
    R = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    s = 1.0
    if scale:
        var = float(np.sum(a * a))
        s = (math.hypot(num, den) / var) if var > 0 else 1.0
    t = mu_d - s * (R @ mu_s)
    return s, R, t


def rigid_error(estimate: np.ndarray | SensorArray, truth: np.ndarray | SensorArray
                ) -> np.ndarray:
    """Per-sensor distance (m) between ``estimate`` and ``truth`` after the best rigid
    alignment of ``estimate`` onto ``truth`` (what the data can see)."""
    est = estimate.positions if isinstance(estimate, SensorArray) else np.asarray(estimate)
    tru = truth.positions if isinstance(truth, SensorArray) else np.asarray(truth)
    s, R, t = similarity_transform(est, tru, scale=False)
    return np.hypot(*(est @ R.T * s + t - tru).T)


# --- helpers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Level:
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


def _folds(positions: np.ndarray, n_folds: int) -> list[np.ndarray]:
    """Interleaved folds in angular order around the centroid."""
    c = positions.mean(axis=0)
    order = np.argsort(np.arctan2(positions[:, 1] - c[1], positions[:, 0] - c[0]),
                       kind="stable")
    return [np.sort(order[k::n_folds]) for k in range(n_folds)]


def _lowpass_fft(x: np.ndarray, fs: float, f_cut: float, order: int = 4) -> np.ndarray:
    """Zero-phase low-pass along the last axis with the magnitude of :func:`bandpass`'s
    forward-backward digital Butterworth filter (bilinear transform),
    ``1 / (1 + (tan(pi f / fs) / tan(pi f_cut / fs))^(2 order))``, applied in the frequency
    domain (zero-padded, so nothing wraps around)."""
    n = x.shape[-1]
    m = 1 << int(math.ceil(math.log2(2 * n)))
    f = np.fft.rfftfreq(m, 1.0 / fs)
    ratio = np.tan(np.pi * np.minimum(f / fs, 0.4999)) / math.tan(math.pi * f_cut / fs)
    gain = 1.0 / (1.0 + ratio ** (2 * order))
    return np.fft.irfft(np.fft.rfft(x, m, axis=-1) * gain, m, axis=-1)[..., :n].astype(
        np.float32)


def _filter(level: _Level, x: np.ndarray) -> np.ndarray:
    """The level's band limit applied to records ``x``."""
    if level.band is None:
        return x
    if level.fft:
        return _lowpass_fft(x, level.acquisition.fs, float(level.band[1]))
    return bandpass(x, level.acquisition.fs, level.band)


def _decimate(y: np.ndarray, acq: Acquisition, f_cut: float | None, fft: bool = False
              ) -> tuple[np.ndarray, Acquisition, tuple[float | None, float | None] | None]:
    """Low-pass below ``f_cut`` and keep every d-th sample (d with fs/d >= 4 f_cut)."""
    if f_cut is None or f_cut >= 0.45 * acq.fs:
        return y, acq, None
    band = (None, f_cut)
    yf = _lowpass_fft(y, acq.fs, f_cut) if fft else bandpass(y, acq.fs, band)
    d = max(1, int(acq.fs // (4.0 * f_cut)))
    n = acq.n_samples // d
    return (np.ascontiguousarray(yf[:, ::d][:, :n], dtype=np.float32),
            replace(acq, fs=acq.fs / d, n_samples=n), (None, f_cut * 1.0))


def _reconstruct(y: np.ndarray, grid: Grid, sensors: SensorArray, acq: Acquisition,
                 n_iter: int, x0: np.ndarray | None, norm_sq: float | None = None
                 ) -> np.ndarray:
    """TV image of a held-out subset (``norm_sq``: ``||A||^2`` of a nearby geometry,
    inflated by 10 % for safety, so that moving sensors need no new power iteration)."""
    from oatomo.recon.model_based import reconstruct_model_based

    x, _ = reconstruct_model_based(y, grid, sensors, acq, method="tv", n_iter=n_iter,
                                   x0=x0, tol=0.0,
                                   norm_sq=None if norm_sq is None else 1.1 * norm_sq)
    return x


def _local_frames(positions: np.ndarray) -> np.ndarray:
    """(N, 2, 2): per sensor the unit vectors towards the image centre (``u``, along which
    a displacement is a time shift of the record) and across it (``v``)."""
    r = np.hypot(positions[:, 0], positions[:, 1])[:, None]
    u = -positions / np.where(r > 0, r, 1.0)
    v = np.stack([-u[:, 1], u[:, 0]], axis=1)
    return np.stack([u, v], axis=1)


def _grid_1d(step: float, half: int) -> np.ndarray:
    return np.arange(-half, half + 1) * step


def _quadratic_fit(coords: np.ndarray, values: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """Fit ``v = a + g.d + 1/2 d^T H d`` (1-D or 2-D ``coords``); (minimiser, H) if H > 0."""
    if coords.shape[1] == 1:
        d = coords[:, 0]
        A = np.stack([np.ones_like(d), d, 0.5 * d * d], axis=1)
        coef, *_ = np.linalg.lstsq(A, values, rcond=None)
        if not coef[2] > 0:
            return None
        return np.array([-coef[1] / coef[2]]), np.array([[coef[2]]])
    dx, dy = coords[:, 0], coords[:, 1]
    A = np.stack([np.ones_like(dx), dx, dy, 0.5 * dx * dx, dx * dy, 0.5 * dy * dy], axis=1)
    coef, *_ = np.linalg.lstsq(A, values, rcond=None)
    g = coef[1:3]
    H = np.array([[coef[3], coef[4]], [coef[4], coef[5]]])
    if not (H[0, 0] > 0 and np.linalg.det(H) > 0):
        return None
    return -np.linalg.solve(H, g), H


def _relative_misfit(pred: np.ndarray, data: np.ndarray) -> np.ndarray:
    """``1 - rho^2`` between predictions (n, K, T) and records (n, T), shape (n, K): the
    misfit ``||a p - y||^2 / ||y||^2`` at the best amplitude ``a``."""
    p = pred.astype(np.float64)
    d = data.astype(np.float64)
    rho = np.einsum("nkt,nt->nk", p, d) / (
        (np.sqrt(np.sum(p * p, axis=2)) + 1e-30) * (np.sqrt(np.sum(d * d, axis=1)) + 1e-30)
        [:, None])
    return 1.0 - np.clip(rho, -1.0, 1.0) ** 2


def _fit_fold(level: _Level, image: np.ndarray, positions: np.ndarray,
              nominal: np.ndarray, idx: np.ndarray, prior_std: float, box: float,
              thickness: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best positions of the sensors ``idx`` against ``image`` (their held-out image).

    Candidates lie on a grid in each sensor's local frame (towards the centre, across);
    ``level.half_across = 0`` searches along the line of sight only. Returns the new
    positions (len(idx), 2), their posterior covariances in x, y (len(idx), 2, 2) and the
    relative misfit ``1 - rho^2`` at the selected positions.
    """
    a = _grid_1d(level.step, level.half)
    b = _grid_1d(level.step_across, level.half_across)
    steps = np.array([level.step, level.step_across])
    ga, gb = np.meshgrid(a, b, indexing="ij")
    local = np.stack([ga.ravel(), gb.ravel()], axis=1)  # (K, 2), index = ia * len(b) + ib
    n_k = len(local)
    frames = _local_frames(positions[idx])  # (n, 2, 2)
    cand = positions[idx][:, None, :] + np.einsum("kc,ncd->nkd", local, frames)
    lim = nominal[idx][:, None, :]
    cand = np.clip(cand, lim - box, lim + box)  # inside the prior box
    virt = SensorArray(cand.reshape(-1, 2))
    pred = ForwardOperator(level.grid, virt, level.acquisition,
                           thickness=thickness).forward(image)
    pred = _filter(level, pred).reshape(len(idx), n_k, -1)
    mis = _relative_misfit(pred, level.data[idx])
    new = np.empty((len(idx), 2))
    cov = np.empty((len(idx), 2, 2))
    best_mis = np.empty(len(idx))
    na, nb = len(a), len(b)
    dims = [0] if nb == 1 else [0, 1]
    for n in range(len(idx)):
        m = mis[n]
        # data term: Gaussian likelihood, noise variance from the best residual:
        # J = T_eff / 2 * m / m_min;  prior: |p - nominal|^2 / (2 prior^2)
        m_min = max(float(m.min()), 1e-6)
        prior = np.sum((cand[n] - nominal[idx[n]]) ** 2, axis=1) / (2 * prior_std ** 2)
        J = 0.5 * level.t_eff * m / m_min + prior
        k = int(np.argmin(J))
        ia, ib = divmod(k, nb)
        sel = [(p * nb + q) for p in range(max(ia - 1, 0), min(ia + 2, na))
               for q in range(max(ib - 1, 0), min(ib + 2, nb))]
        pos = cand[n, k]
        h_loc = np.eye(2) / prior_std ** 2
        fit = None
        if len(sel) == 3 ** len(dims):
            fit = _quadratic_fit(local[sel][:, dims] - local[k, dims], J[sel])
            if fit is not None and np.all(np.abs(fit[0]) <= steps[dims]):
                step_loc = np.zeros(2)
                step_loc[dims] = fit[0]
                pos = pos + step_loc @ frames[n]
                h_loc[np.ix_(dims, dims)] = fit[1]
            else:
                fit = None
        if fit is None and 0 < ia < na - 1:  # the line of sight alone: its curvature
            line = [(ia + d) * nb + ib for d in (-1, 0, 1)]
            fit1 = _quadratic_fit(local[line][:, :1] - local[k, :1], J[line])
            if fit1 is not None and abs(fit1[0][0]) <= level.step:
                pos = pos + fit1[0][0] * frames[n][0]
                h_loc[0, 0] = fit1[1][0, 0]
        new[n] = pos
        cov[n] = frames[n].T @ np.linalg.inv(h_loc) @ frames[n]
        best_mis[n] = m[k]
    return new, cov, best_mis


def _heldout_misfit(level: _Level, positions: np.ndarray, acq: Acquisition,
                    folds: list[np.ndarray], n_iter: int, thickness: float | None,
                    norms: list[float]) -> float:
    """Mean held-out relative misfit ``1 - rho^2`` of every fold against the image of the
    other folds (used to choose the speed of sound)."""
    total = 0.0
    for idx, norm in zip(folds, norms, strict=True):
        keep = np.setdiff1d(np.arange(len(positions)), idx)
        x = _reconstruct(level.data[keep], level.grid, SensorArray(positions[keep]), acq,
                         n_iter, None, norm)
        pred = ForwardOperator(level.grid, SensorArray(positions[idx]), acq,
                               thickness=thickness).forward(x)
        pred = _filter(replace(level, acquisition=acq), pred)
        total += float(np.sum(_relative_misfit(pred[:, None], level.data[idx])))
    return total / len(positions)


def _search_speed_of_sound(level: _Level, positions: np.ndarray, folds: list[np.ndarray],
                           c0: float, span: float, n_iter: int, thickness: float | None
                           ) -> float:
    """Cross-validated 1-D search of ``c`` over ``c0 (1 +- span)`` (7 points + parabola)."""
    rel = np.linspace(-span, span, 7)
    # ||A||^2 grows as c falls (the slab model's gain is 1 / c^2): take it at the lowest c
    slow = replace(level.acquisition, speed_of_sound=c0 * (1 - span))
    norms = [operator_norm_sq(level.grid, SensorArray(np.delete(positions, idx, axis=0)),
                              slow, n_iter=15) for idx in folds]
    vals = []
    for r in rel:
        acq = replace(level.acquisition, speed_of_sound=c0 * (1 + r))
        vals.append(_heldout_misfit(replace(level, acquisition=acq), positions, acq, folds,
                                    n_iter, thickness, norms))
    vals_a = np.asarray(vals)
    k = int(np.argmin(vals_a))
    best = rel[k]
    if 0 < k < len(rel) - 1:
        a, b, c = vals_a[k - 1], vals_a[k], vals_a[k + 1]
        den = a - 2 * b + c
        if den > 0:
            best = rel[k] + 0.5 * (a - c) / den * (rel[1] - rel[0])
    return c0 * (1 + float(best))


def _prior_from_setup(setup_toml: str | None, radius: float
                      ) -> tuple[float | None, float, tuple[float, float]]:
    """Per-coordinate position std, fixed rotation (rad) and offset (m) of a setup.

    The rotation and offset are the prior mean of the array's rigid motion (the part the
    data cannot see); the random per-scan parts (``rotation_std``, ``offset_std``) have
    zero mean and do not enter.
    """
    if not setup_toml:
        return None, 0.0, (0.0, 0.0)
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        pert = tomllib.loads(setup_toml).get("perturbation", {})
        radial = float(pert.get("radial_std", 0.0))
        angular = float(pert.get("angular_std", 0.0)) * radius
        jitter = float(pert.get("jitter_std", 0.0))
        rotation = float(pert.get("rotation", 0.0))
        off = [float(v) for v in pert.get("offset", (0.0, 0.0))]
    except (tomllib.TOMLDecodeError, AttributeError, TypeError, ValueError):
        return None, 0.0, (0.0, 0.0)
    if len(off) != 2 or not all(map(math.isfinite, [radial, angular, jitter, rotation, *off])):
        return None, 0.0, (0.0, 0.0)
    std = math.sqrt(0.5 * (radial ** 2 + angular ** 2) + jitter ** 2)
    return (std if std > 0 else None), rotation, (off[0], off[1])


# --- the public entry point ----------------------------------------------------------------


def _checked_input(sinogram: np.ndarray, sensors: SensorArray, acquisition: Acquisition,
                   grid: Grid) -> tuple[np.ndarray, SensorArray, Acquisition, Grid]:
    """Validated geometry and the (N, T) record to calibrate on (the mean of the frames);
    :class:`InputError` for too few sensors or all-zero signals."""
    grid, sensors, acquisition = check_geometry(grid, sensors, acquisition)
    y = check_sinogram(sinogram, sensors, acquisition)
    if y.ndim > 2:
        y = np.ascontiguousarray(y.reshape((-1,) + y.shape[-2:]).mean(axis=0),
                                 dtype=np.float32)
    if sensors.n_sensors < MIN_SENSORS:
        raise InputError(f"self-calibration needs at least {MIN_SENSORS} sensors, the scan "
                         f"has {sensors.n_sensors}")
    if not np.any(y):
        raise InputError("the scan's signals are all zero: nothing to calibrate on")
    return y, sensors, acquisition, grid


def calibrate_sinogram(
    sinogram: np.ndarray,
    sensors: SensorArray,
    acquisition: Acquisition,
    grid: Grid,
    *,
    prior_std: float | str | None = None,
    speed_of_sound: bool = True,
    speed_span: float = 0.03,
    n_levels: int = 3,
    n_folds: int = 8,
    n_iter: int = 30,
    thickness: float | None = None,
    setup_toml: str | None = None,
    callback: Callable[[dict[str, float], np.ndarray], Any] | None = None,
) -> Calibration:
    """Estimate per-sensor positions and the speed of sound from a scan alone.

    Parameters
    ----------
    sinogram
        (N, T) signals, or (..., N, T) for several frames (positions are shared by the
        frames; they are calibrated on the mean frame, a valid scan of the mean ``p0``).
    sensors
        Nominal sensor positions (what the file says); 2-D, any layout (ring, arc,
        arbitrary), at least :data:`MIN_SENSORS`.
    acquisition
        Sampling, nominal speed of sound and ``t0`` (``t0`` is kept).
    grid
        Image grid covering the object (the finest level uses it; coarser levels halve
        the number of pixels per side, keeping the field of view).
    prior_std
        Per-coordinate standard deviation of the position errors (m). None: from the
        scan's setup (``setup_toml``: radial, angular and jitter errors) if it declares
        them, else :data:`DEFAULT_PRIOR_REL` times the array's radius. ``"data"``:
        estimated from the scan by one scout round of the coarsest level along the lines
        of sight over a wide box (+-4 x :data:`SCOUT_REL` of the radius): the spread of
        the estimated shifts about their mean, less the fits' own posterior variance,
        clipped to :data:`SCOUT_RANGE` of the radius. It tracks the error size on disks
        and retina crops but can overestimate it on thin vessel trees with small errors
        (benchmarks/RESULTS.md, issue 9), so it is an option, not the default.
    speed_of_sound
        Estimate ``c`` (default); False keeps the file's value.
    speed_span
        Relative half-width of the initial cross-validated search of ``c``.
    n_levels
        Coarse-to-fine levels (pixel sizes ``dx 2^(n_levels - 1) ... dx``).
    n_folds
        Number of interleaved held-out folds (the finest level uses at most
        :data:`FINE_FOLDS`).
    n_iter
        TV iterations of each held-out image.
    thickness
        Slab thickness of the forward model (m), default the grid pitch.
    setup_toml
        The scan's setup (TOML text), used for the default prior.
    callback
        ``callback(record, positions)`` after each round: the round's record (see
        :attr:`Calibration.history`; ``step`` of ``rounds_total`` rounds) and
        the current (N, 2) position estimate (m).

    Returns
    -------
    Calibration

    Raises
    ------
    InputError
        Fewer than :data:`MIN_SENSORS` sensors, a record without structure (all zero, or
        held-out predictions that do not correlate with the data), bad parameters.

    Notes
    -----
    See the module docstring for the method and the gauge. The estimate is deterministic:
    no random draws are made.
    """
    t_start = time.perf_counter()
    y, sensors, acquisition, grid = _checked_input(sinogram, sensors, acquisition, grid)
    n_s = sensors.n_sensors
    for name, v, lo in (("n_levels", n_levels, 1), ("n_folds", n_folds, 2),
                        ("n_iter", n_iter, 1)):
        check_integer(v, name, lo)
    if n_folds > n_s:
        raise InputError(f"n_folds={n_folds} exceeds the number of sensors ({n_s})")
    if not (math.isfinite(speed_span) and 0 <= speed_span < 0.5):
        raise InputError(f"speed_span must be in [0, 0.5), got {speed_span}")
    drawn = sensors.positions.astype(np.float64)
    radius = float(np.mean(np.hypot(*(drawn - drawn.mean(axis=0)).T)))
    setup_std, rotation, offset = _prior_from_setup(setup_toml, radius)
    # prior mean of the true positions: the drawing moved by the setup's fixed rigid motion
    cr, sr = math.cos(rotation), math.sin(rotation)
    nominal = drawn @ np.array([[cr, sr], [-sr, cr]]) + np.asarray(offset)
    source = "given"
    if prior_std is not None and prior_std != "data" and (
            isinstance(prior_std, bool) or not isinstance(prior_std, (int, float))
            or not (math.isfinite(prior_std) and prior_std > 0)):
        raise InputError(f"prior_std must be a length > 0 m or 'data', got {prior_std!r}")
    if prior_std is None and setup_std is not None:
        prior_std, source = setup_std, "setup"
    elif prior_std is None:
        prior_std, source = DEFAULT_PRIOR_REL * radius, "default"
    if prior_std == "data":
        prior_std, source = _scout_prior(y, acquisition, grid, nominal, radius, n_levels,
                                         n_folds, n_iter, thickness), "data"
        logger.info("calibration: prior %.0f um per coordinate, estimated from the data",
                    prior_std * 1e6)
    box = BOX_STD * prior_std
    c = acquisition.speed_of_sound
    positions = nominal.copy()
    folds = _folds(nominal, n_folds)
    history: list[dict[str, float]] = []
    cov = np.tile(np.eye(2) * prior_std ** 2, (n_s, 1, 1))
    levels = _levels(y, acquisition, grid, prior_std, n_levels)
    for li, level in enumerate(levels):
        if li == 0 and speed_of_sound and speed_span > 0:
            c = _search_speed_of_sound(level, positions, folds, c, speed_span, n_iter,
                                       thickness)
            logger.info("calibration: speed of sound %.2f m/s after the 1-D search", c)
        folds = _folds(nominal, min(n_folds, FINE_FOLDS) if li == len(levels) - 1
                       else n_folds)
        images: list[np.ndarray | None] = [None] * len(folds)
        norms: list[float] = []
        for r in range(level.rounds):
            acq = replace(level.acquisition, speed_of_sound=c)
            lev = replace(level, acquisition=acq)
            new = positions.copy()
            mis = np.empty(n_s)
            for f, idx in enumerate(folds):  # Gauss-Seidel: later folds see the updates
                keep = np.setdiff1d(np.arange(n_s), idx)
                sub = SensorArray(new[keep])
                if len(norms) <= f:
                    norms.append(operator_norm_sq(level.grid, sub, acq, n_iter=15))
                # warm starts after the first round need fewer iterations
                images[f] = _reconstruct(level.data[keep], level.grid, sub, acq,
                                         n_iter if r == 0 else max(1, n_iter // 2),
                                         images[f], norms[f])
                new[idx], cov[idx], mis[idx] = _fit_fold(
                    lev, images[f], new, nominal, idx, prior_std, box, thickness)
            if li == 0 and r == 0 and float(np.median(1 - mis)) < MIN_CORRELATION ** 2:
                raise InputError("the scan's signals carry too little structure to "
                                 "calibrate on (held-out predictions do not correlate with "
                                 "the data)")
            # the gauge: similarity transform onto the nominal array; its scale goes to c
            s, R, t = similarity_transform(new, nominal, scale=speed_of_sound)
            aligned = new @ R.T * s + t
            step = float(np.sqrt(np.mean(np.sum((aligned - positions) ** 2, axis=1))))
            positions = aligned
            cov = s * s * (R @ cov @ R.T)
            if speed_of_sound:
                c *= s
            rec = {"level": li, "round": r, "step": len(history) + 1,
                   "rounds_total": sum(v.rounds for v in levels),
                   "pixel": level.grid.dx,
                   "band": float(level.band[1]) if level.band else 0.0,
                   "misfit": float(np.mean(mis)), "speed_of_sound": c, "step_rms": step}
            history.append(rec)
            logger.info("calibration level %d round %d: misfit %.4f, c %.2f m/s, step %.1f um",
                        li, r, rec["misfit"], c, step * 1e6)
            if callback is not None:
                callback(rec, positions.copy())
    std = np.sqrt(np.clip(np.stack([cov[:, 0, 0], cov[:, 1, 1]], axis=1), 0, None))
    return Calibration(sensors=SensorArray(positions, sensors.normals), speed_of_sound=c,
                       nominal_sensors=sensors,
                       nominal_speed_of_sound=acquisition.speed_of_sound,
                       position_std=std, prior_std=float(prior_std), history=history,
                       time_s=time.perf_counter() - t_start, prior_source=source)


def _scout(y: np.ndarray, acq: Acquisition, grid: Grid, nominal: np.ndarray, guess: float,
           box: float, n_levels: int, n_folds: int, n_iter: int, thickness: float | None,
           share_norm: bool = False, fft: bool = False
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One round of the coarsest level along the lines of sight, every fold fitted against
    the TV image of the others, around the nominal positions with prior ``guess`` and the
    search box +-``box``. Returns each sensor's shift along its line of sight (m), its
    posterior variance there (m^2) and its relative misfit ``1 - rho^2``. ``share_norm``:
    one power iteration for all folds (their operators differ by a few sensors); ``fft``:
    the band limit in the frequency domain (:func:`_lowpass_fft`)."""
    level = _levels(y, acq, grid, guess, n_levels, fft, first_only=True)[0]
    level = replace(level, half_across=0,
                    half=min(level.half, max(1, int(math.ceil(box / level.step)))))
    folds = _folds(nominal, n_folds)
    n_s = len(nominal)
    new = nominal.copy()
    cov = np.zeros((n_s, 2, 2))
    mis = np.zeros(n_s)
    norm = None
    for idx in folds:
        keep = np.setdiff1d(np.arange(n_s), idx)
        sub = SensorArray(nominal[keep])
        if share_norm and norm is None:
            norm = operator_norm_sq(level.grid, sub, level.acquisition, n_iter=15)
        image = _reconstruct(level.data[keep], level.grid, sub, level.acquisition, n_iter,
                             None, norm)
        new[idx], cov[idx], mis[idx] = _fit_fold(level, image, nominal, nominal, idx, guess,
                                                 box, thickness)
    u = _local_frames(nominal)[:, 0]
    along = np.einsum("nd,nd->n", new - nominal, u)
    return along, np.einsum("nd,nde,ne->n", u, cov, u), mis


def _scout_prior(y: np.ndarray, acq: Acquisition, grid: Grid, nominal: np.ndarray,
                 radius: float, n_levels: int, n_folds: int, n_iter: int,
                 thickness: float | None) -> float:
    """The per-coordinate prior std, estimated from the scan: one round of the coarsest
    level, along the lines of sight only, over a wide box (:data:`SCOUT_REL`); the rms of
    the estimated shifts about their mean (the mean is the scale gauge) less the fits' own
    posterior variance, clipped to :data:`SCOUT_RANGE` of the radius."""
    guess = SCOUT_REL * radius
    along, var, _ = _scout(y, acq, grid, nominal, guess, BOX_STD * guess, n_levels, n_folds,
                           n_iter, thickness)
    # the spread of the estimates is that of the errors plus that of the estimation
    # (each fit's posterior variance along the line of sight); the mean is the scale gauge
    noise = float(np.mean(var))
    spread = math.sqrt(max(float(np.mean((along - along.mean()) ** 2)) - noise, 0.0))
    return float(np.clip(spread, SCOUT_RANGE[0] * radius, SCOUT_RANGE[1] * radius))


@dataclass(frozen=True)
class PositionCheck:
    """The result of :func:`check_positions`: are the sensors where the file says?

    Attributes
    ----------
    spread
        Spread of the sensors' position errors along their lines of sight that the data
        show (m): the robust rms (1.4826 x median absolute deviation about the median) of
        the per-sensor shifts, less their estimation noise in quadrature; 0 when the
        shifts scatter no more than their noise.
    noise
        Rms estimation noise of a shift (m; posterior std from the misfit's curvature).
    offset
        Median of the shifts (m, positive towards the image centre): a common shift along
        the lines of sight, which a wrong speed of sound (or array radius) gives.
    n_sensors
        Number of sensors tested.
    threshold
        Spread above which calibration is asked for (m), if it also exceeds
        :attr:`noise`.
    correlation
        Median correlation of the held-out predictions with the records.
    time_s
        Wall time (s).
    reason
        Why no calibration is asked for although the spread exceeds the threshold (the
        data carry too little structure), else ``""``.
    """

    spread: float
    noise: float
    threshold: float
    correlation: float
    time_s: float
    reason: str = ""
    offset: float = 0.0
    n_sensors: int = 0

    @property
    def needs_calibration(self) -> bool:
        """True when the data show position errors above :attr:`threshold`: a spread of
        the shifts above it and above their noise, or a common shift above it and above
        three standard errors of a median (a wrong speed of sound)."""
        if self.reason:
            return False
        se = 1.2533 * self.noise / math.sqrt(max(self.n_sensors, 1))
        return (self.spread > max(self.threshold, self.noise)
                or abs(self.offset) > max(self.threshold, 3.0 * se))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (JSON-ready)."""
        return {"spread_m": self.spread, "noise_m": self.noise, "offset_m": self.offset,
                "threshold_m": self.threshold, "correlation": self.correlation,
                "needs_calibration": self.needs_calibration, "time_s": self.time_s,
                "reason": self.reason}


def check_positions(sinogram: np.ndarray, sensors: SensorArray, acquisition: Acquisition,
                    grid: Grid, *, threshold: float | None = None,
                    thickness: float | None = None) -> PositionCheck:
    """Test whether the data agree with the sensor positions the file gives (quick).

    The coarsest level of :func:`calibrate_sinogram`, once: :data:`CHECK_FOLDS` held-out
    folds, each sensor's record compared with the one the other folds' TV image
    (:data:`CHECK_ITER` iterations) predicts for candidate positions along its line of
    sight within +-:data:`CHECK_BOX_REL` of the array radius. Correct positions give
    shifts that scatter within their noise about zero; misplaced sensors give shifts that
    scatter by about their errors along the lines of sight, and a wrong speed of sound
    (or array radius) a common shift (about the relative error of ``c`` times the
    distance to the object: 0.5 % gave 130-200 um on the tuning scans). Either asks for
    calibration, which estimates ``c`` too. A rigid motion of the array is invisible to
    this test, as to calibration. It costs about two 50-iteration TV reconstructions at
    a quarter of the pixels per side.

    Parameters
    ----------
    sinogram
        (N, T) signals, or (..., N, T) for several frames (their mean is tested).
    sensors, acquisition, grid
        The scan's nominal geometry and the image grid (as for :func:`calibrate_sinogram`).
    threshold
        Spread (m) above which calibration is asked for (if the spread also exceeds its
        estimation noise); None: :data:`CHECK_PIXELS` pixels of ``grid`` (errors below
        half a pixel cost the image little).
    thickness
        Slab thickness of the forward model (m), default the grid pitch.

    Returns
    -------
    PositionCheck

    Raises
    ------
    InputError
        As :func:`calibrate_sinogram` (too few sensors, all-zero signals, bad geometry).
    """
    t_start = time.perf_counter()
    y, sensors, acquisition, grid = _checked_input(sinogram, sensors, acquisition, grid)
    if threshold is None:
        threshold = CHECK_PIXELS * grid.dx
    elif not (math.isfinite(threshold) and threshold >= 0):
        raise InputError(f"threshold must be a length >= 0 m, got {threshold!r}")
    nominal = sensors.positions.astype(np.float64)
    radius = float(np.mean(np.hypot(*(nominal - nominal.mean(axis=0)).T)))
    along, var, mis = _scout(y, acquisition, grid, nominal, SCOUT_REL * radius,
                             CHECK_BOX_REL * radius, 3, CHECK_FOLDS, CHECK_ITER, thickness,
                             share_norm=True, fft=True)
    noise = math.sqrt(float(np.median(var)))
    offset = float(np.median(along))
    spread = 1.4826 * float(np.median(np.abs(along - offset)))
    corr = math.sqrt(max(float(np.median(1.0 - mis)), 0.0))
    reason = ""
    if corr < MIN_CORRELATION:
        reason = (f"the held-out predictions do not correlate with the data (median "
                  f"{corr:.2f}): too little structure to check the positions")
    out = PositionCheck(spread, noise, float(threshold), corr,
                        time.perf_counter() - t_start, reason, offset, len(along))
    logger.info("position check: spread %.0f um, common shift %.0f um (noise %.0f um, "
                "threshold %.0f um) in %.2f s", spread * 1e6, offset * 1e6, noise * 1e6,
                threshold * 1e6, out.time_s)
    return out


def _levels(y: np.ndarray, acq: Acquisition, grid: Grid, prior_std: float,
            n_levels: int, fft: bool = False, first_only: bool = False) -> list[_Level]:
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
        out.append(_Level(g, a, data, band, step, half, half_across,
                          rounds=4 if li == 0 else 3, t_eff=t_eff, step_across=step_across,
                          fft=fft))
    return out


def calibrate(scan: Any, grid: Grid | None = None, *,
              frames: int | list[int] | None = None, prior_std: float | str | None = None,
              speed_of_sound: bool = True,
              callback: Callable[[dict[str, float], np.ndarray], Any] | None = None,
              **kwargs: Any) -> Calibration:
    """Self-calibrate a scan: its sensor positions and speed of sound from its data alone.

    Parameters
    ----------
    scan
        A :class:`oatomo.io.Scan` or the path of a scan file (oatomo, IPASC, PATATO).
    grid
        Image grid of the finest level; None: the scan's default grid
        (:func:`oatomo.io.default_grid`, as in :func:`oatomo.reconstruct`).
    frames
        Frames (leading axes flattened) to calibrate on; None: all (their mean).
    prior_std
        Per-coordinate standard deviation of the position errors (m); None: from the
        scan's setup when it carries one, else 1 % of the array radius; ``"data"``:
        estimated from the scan (see :func:`calibrate_sinogram`).
    speed_of_sound
        Estimate the speed of sound (default) or keep the file's.
    callback
        ``callback(record, positions)`` after each round.
    **kwargs
        Passed to :func:`calibrate_sinogram` (``n_levels``, ``n_folds``, ``n_iter``, ...).

    Returns
    -------
    Calibration
        Apply it with :func:`apply_calibration` (or write it with ``oatomo calibrate``).

    Examples
    --------
    >>> cal = oatomo.calibrate("scan.h5")                      # doctest: +SKIP
    >>> rec = oatomo.reconstruct(apply_calibration(scan, cal), "mb-tv")  # doctest: +SKIP
    """
    from oatomo.io import as_scan, default_grid

    data, source = as_scan(scan)
    if data.calibration:
        logger.warning("%s is already calibrated; calibrating again from its estimates",
                       source)
    if grid is None:
        grid = default_grid(data)
    sino = data.sinogram
    if frames is not None:
        sino = sino.reshape((-1,) + sino.shape[-2:])[np.asarray(frames)]
    try:
        return calibrate_sinogram(sino, data.sensors, data.acquisition, grid,
                                  prior_std=prior_std, speed_of_sound=speed_of_sound,
                                  setup_toml=data.setup_toml, callback=callback, **kwargs)
    except InputError as exc:
        if source != "<Scan>" and exc.path is None:
            raise InputError(exc.problem, source) from None
        raise


def apply_calibration(scan: Any, calibration: Calibration) -> Any:
    """A copy of ``scan`` with the estimated positions and speed of sound, keeping the
    nominal ones and the calibration record in :attr:`oatomo.io.Scan.calibration`.

    The input scan is not modified.
    """
    if calibration.sensors.n_sensors != scan.sensors.n_sensors:
        raise InputError(f"the calibration is for {calibration.sensors.n_sensors} sensors, "
                         f"the scan has {scan.sensors.n_sensors}")
    return replace(scan, sensors=calibration.sensors,
                   acquisition=calibration.acquisition(scan.acquisition),
                   calibration=calibration.scan_record())

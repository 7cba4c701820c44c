"""The per-sensor search of self-calibration against held-out images.

The sensors are split into interleaved folds (:func:`interleaved_folds`); each fold is
fitted against the TV image of the other folds (:func:`heldout_image`), so the image
cannot explain a sensor's data at its current position simply because it was made from
it. :func:`fit_fold` moves each sensor of a fold to the MAP position among candidates
around its estimate (correlation of its record with the one the image predicts, Gaussian
prior, quadratic refinement and Laplace covariance); :func:`search_speed_of_sound`
chooses ``c`` by the held-out misfit; :func:`scout` runs one round of the coarsest level
along the lines of sight (the data-driven prior and the position check build on it).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from oatomo.calibration.levels import Level, band_limit, schedule
from oatomo.forward import ForwardOperator
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.recon.model_based import reconstruct_model_based
from oatomo.recon.operators import operator_norm_sq

__all__ = ["JACOBIAN_STEP", "interleaved_folds", "heldout_image", "local_frames",
           "predicted_records", "sensor_jacobians",
           "relative_misfit", "fit_fold", "heldout_misfits", "fold_norms",
           "speed_of_sound_scan", "parabola_minimum", "search_speed_of_sound",
           "scout", "NORM_STEPS", "level_norm_sq"]

#: Lanczos steps of the calibration's ``||A||^2`` (:func:`level_norm_sq`). On the 42
#: levels of 14 tuning scans (``benchmarks/calibration/norm_steps.py``) 7 steps reach what
#: the 15 power steps used before reached (0.963 of a 40-step value on average, 0.921 at
#: the lowest, against 0.958 and 0.913), for 7 applications of ``A^T A`` instead of 15.
NORM_STEPS = 7


def level_norm_sq(grid: Grid, sensors: SensorArray, acquisition: Acquisition,
                  **kwargs: Any) -> float:
    """``||A||^2`` of a calibration level's geometry from below
    (:func:`~oatomo.recon.operators.operator_norm_sq` by :data:`NORM_STEPS` Lanczos steps;
    ``kwargs``: its model keywords). Callers inflate it for safety."""
    return operator_norm_sq(grid, sensors, acquisition, n_iter=NORM_STEPS, method="lanczos",
                            **kwargs)


def interleaved_folds(positions: np.ndarray, n_folds: int) -> list[np.ndarray]:
    """Interleaved folds in angular order around the centroid."""
    c = positions.mean(axis=0)
    order = np.argsort(np.arctan2(positions[:, 1] - c[1], positions[:, 0] - c[0]),
                       kind="stable")
    return [np.sort(order[k::n_folds]) for k in range(n_folds)]


def heldout_image(y: np.ndarray, grid: Grid, sensors: SensorArray, acq: Acquisition,
                  n_iter: int, x0: np.ndarray | None, norm_sq: float | None = None
                  ) -> np.ndarray:
    """TV image of a held-out subset (``norm_sq``: ``||A||^2`` of a nearby geometry,
    inflated by 10 % for safety, so that moving sensors need no new estimate)."""
    x, _ = reconstruct_model_based(y, grid, sensors, acq, method="tv", n_iter=n_iter,
                                   x0=x0, tol=0.0,
                                   norm_sq=None if norm_sq is None else 1.1 * norm_sq)
    return x


def local_frames(positions: np.ndarray) -> np.ndarray:
    """(N, 2, 2): per sensor the unit vectors towards the image centre (``u``, along which
    a displacement is a time shift of the record) and across it (``v``)."""
    r = np.hypot(positions[:, 0], positions[:, 1])[:, None]
    u = -positions / np.where(r > 0, r, 1.0)
    v = np.stack([-u[:, 1], u[:, 0]], axis=1)
    return np.stack([u, v], axis=1)


def _grid_1d(step: float, half: int) -> np.ndarray:
    """``2 half + 1`` offsets ``-half step ... half step``."""
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


def predicted_records(level: Level, image: np.ndarray, points: np.ndarray,
                      thickness: float | None, response: Any = None) -> np.ndarray:
    """The records (len(points), T) ``image`` predicts at ``points`` (m), band-limited as
    the level's data (float64)."""
    pred = ForwardOperator(level.grid, SensorArray(points), level.acquisition,
                           thickness=thickness, response=response).forward(image)
    return band_limit(level, pred).astype(np.float64)


#: Half-width of the central differences of the records' derivatives, in pixels of the
#: level (the records are not smooth in the position below a fraction of a sample).
JACOBIAN_STEP = 0.25

def sensor_jacobians(level: Level, image: np.ndarray, positions: np.ndarray,
                     thickness: float | None, h: float, response: Any = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The predicted records (N, T) at ``positions`` and their derivatives (N, T, 2) with
    respect to each sensor's displacement along and across its line of sight (central
    differences of half-width ``h``, m), and the local frames (N, 2, 2)."""
    n = len(positions)
    frames = local_frames(positions)
    pts = np.concatenate([positions, positions + h * frames[:, 0],
                          positions - h * frames[:, 0], positions + h * frames[:, 1],
                          positions - h * frames[:, 1]])
    pred = predicted_records(level, image, pts, thickness, response).reshape(5, n, -1)
    jac = np.stack([(pred[1] - pred[2]) / (2 * h), (pred[3] - pred[4]) / (2 * h)], axis=-1)
    return pred[0], jac, frames


def relative_misfit(pred: np.ndarray, data: np.ndarray) -> np.ndarray:
    """``1 - rho^2`` between predictions (n, K, T) and records (n, T), shape (n, K): the
    misfit ``||a p - y||^2 / ||y||^2`` at the best amplitude ``a``."""
    p = pred.astype(np.float64)
    d = data.astype(np.float64)
    rho = np.einsum("nkt,nt->nk", p, d) / (
        (np.sqrt(np.sum(p * p, axis=2)) + 1e-30) * (np.sqrt(np.sum(d * d, axis=1)) + 1e-30)
        [:, None])
    return 1.0 - np.clip(rho, -1.0, 1.0) ** 2


def fit_fold(level: Level, image: np.ndarray, positions: np.ndarray,
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
    frames = local_frames(positions[idx])  # (n, 2, 2)
    cand = positions[idx][:, None, :] + np.einsum("kc,ncd->nkd", local, frames)
    lim = nominal[idx][:, None, :]
    cand = np.clip(cand, lim - box, lim + box)  # inside the prior box
    pred = predicted_records(level, image, cand.reshape(-1, 2), thickness)
    mis = relative_misfit(pred.reshape(len(idx), n_k, -1), level.data[idx])
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


def heldout_misfits(level: Level, positions: np.ndarray, acq: Acquisition,
                    folds: list[np.ndarray], n_iter: int, thickness: float | None,
                    norms: list[float] | None = None) -> np.ndarray:
    """Per sensor, the held-out relative misfit ``1 - rho^2`` of its record against the
    one predicted by the TV image of the other folds (``norms``: ``||A||^2`` of each
    fold's complement, None: estimated)."""
    out = np.empty(len(positions))
    for f, idx in enumerate(folds):
        keep = np.setdiff1d(np.arange(len(positions)), idx)
        x = heldout_image(level.data[keep], level.grid, SensorArray(positions[keep]), acq,
                          n_iter, None, None if norms is None else norms[f])
        pred = predicted_records(replace(level, acquisition=acq), x, positions[idx],
                                 thickness)
        out[idx] = relative_misfit(pred[:, None], level.data[idx])[:, 0]
    return out


def fold_norms(level: Level, positions: np.ndarray, folds: list[np.ndarray],
               speed_of_sound: float) -> list[float]:
    """``||A||^2`` of each fold's complement (the sensors a held-out image is made from)
    on ``level`` at ``speed_of_sound`` (:func:`level_norm_sq`)."""
    acq = replace(level.acquisition, speed_of_sound=speed_of_sound)
    return [level_norm_sq(level.grid, SensorArray(np.delete(positions, idx, axis=0)), acq)
            for idx in folds]


def speed_of_sound_scan(level: Level, positions: np.ndarray, folds: list[np.ndarray],
                        c0: float, span: float, n_iter: int, thickness: float | None,
                        points: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Held-out misfits over ``points`` speeds of sound ``c0 (1 + rel)``, ``rel`` evenly
    over ``[-span, span]``: returns ``rel`` (P,) and the per-sensor misfits (P, N)."""
    rel = np.linspace(-span, span, points)
    # ||A||^2 grows as c falls (the slab model's gain is 1 / c^2): take it at the lowest c
    norms = fold_norms(level, positions, folds, c0 * (1 - span))
    mis = []
    for r in rel:
        acq = replace(level.acquisition, speed_of_sound=c0 * (1 + r))
        mis.append(heldout_misfits(replace(level, acquisition=acq), positions, acq, folds,
                                   n_iter, thickness, norms))
    return rel, np.asarray(mis)


def parabola_minimum(x: np.ndarray, values: np.ndarray) -> float:
    """The minimiser of evenly spaced samples: the best sample, refined by the parabola
    through it and its neighbours when it is inside and the parabola opens upwards."""
    k = int(np.argmin(values))
    best = float(x[k])
    if 0 < k < len(x) - 1:
        a, b, c = values[k - 1], values[k], values[k + 1]
        den = a - 2 * b + c
        if den > 0:
            best += 0.5 * (a - c) / den * float(x[1] - x[0])
    return best


def search_speed_of_sound(level: Level, positions: np.ndarray, folds: list[np.ndarray],
                          c0: float, span: float, n_iter: int, thickness: float | None
                          ) -> float:
    """Cross-validated 1-D search of ``c`` over ``c0 (1 +- span)`` (7 points + parabola)."""
    rel, mis = speed_of_sound_scan(level, positions, folds, c0, span, n_iter, thickness)
    return c0 * (1 + parabola_minimum(rel, mis.mean(axis=1)))


def scout(y: np.ndarray, acq: Acquisition, grid: Grid, nominal: np.ndarray, guess: float,
          box: float, n_levels: int, n_folds: int, n_iter: int, thickness: float | None,
          share_norm: bool = False, fft: bool = False, coarsest: Level | None = None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One round of the coarsest level along the lines of sight, every fold fitted against
    the TV image of the others, around the nominal positions with prior ``guess`` and the
    search box +-``box``. Returns each sensor's shift along its line of sight (m), its
    posterior variance there (m^2) and its relative misfit ``1 - rho^2``. ``share_norm``:
    one norm estimate for all folds (their operators differ by a few sensors); ``fft``:
    the band limit in the frequency domain (:func:`oatomo.calibration.levels.lowpass_fft`);
    ``coarsest``: that level of the schedule when the caller already made it (the same
    arguments), else it is made here."""
    level = (schedule(y, acq, grid, guess, n_levels, fft, first_only=True)[0]
             if coarsest is None else coarsest)
    level = replace(level, half_across=0,
                    half=min(level.half, max(1, int(math.ceil(box / level.step)))))
    folds = interleaved_folds(nominal, n_folds)
    n_s = len(nominal)
    new = nominal.copy()
    cov = np.zeros((n_s, 2, 2))
    mis = np.zeros(n_s)
    norm = None
    for idx in folds:
        keep = np.setdiff1d(np.arange(n_s), idx)
        sub = SensorArray(nominal[keep])
        if share_norm and norm is None:
            norm = level_norm_sq(level.grid, sub, level.acquisition)
        image = heldout_image(level.data[keep], level.grid, sub, level.acquisition, n_iter,
                              None, norm)
        new[idx], cov[idx], mis[idx] = fit_fold(level, image, nominal, nominal, idx, guess,
                                                box, thickness)
    u = local_frames(nominal)[:, 0]
    along = np.einsum("nd,nd->n", new - nominal, u)
    return along, np.einsum("nd,nde,ne->n", u, cov, u), mis

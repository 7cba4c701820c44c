"""The operators of model-based reconstruction: the forward operator, its norm, total variation.

The solvers of :mod:`oatomo.recon.model_based` only apply these:

* :func:`forward_operator`: :class:`oatomo.ForwardOperator` on a geometry, cached (model-based
  runs repeat on one geometry);
* :func:`operator_norm_sq`: ``||A||^2`` by Lanczos steps (or power iteration), cached per
  geometry, from which the solvers take their step sizes (:func:`operator_norm_sq_of` for an
  operator);
* :func:`tv_norm` and :func:`tv_prox`: the isotropic total variation of an image or a volume
  and its proximal operator (constrained TV denoising by fast dual gradient projection,
  Numba kernels).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numba as nb
import numpy as np

from oatomo.forward import ForwardOperator
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.media import DEFAULT_MEDIUM
from oatomo.speed_map import SpeedMap

__all__ = ["forward_operator", "operator_norm_sq", "operator_norm_sq_of", "vector_norm",
           "tv_norm", "tv_prox"]


def vector_norm(v: np.ndarray) -> float:
    """Euclidean norm without BLAS (whose threads fight Numba's on small vectors)."""
    v = np.asarray(v, dtype=np.float64)
    return math.sqrt(float(np.sum(v * v)))


# --- the forward operator and its norm (cached: model-based runs repeat on one geometry) ---


@functools.lru_cache(maxsize=8)
def forward_operator(grid: Grid, sensors: SensorArray, acquisition: Acquisition,
                     thickness: float | None, response: Any = None,
                     element_width: float | None = None,
                     speed_map: SpeedMap | None = None, medium: str = DEFAULT_MEDIUM,
                     attenuation: Any = None) -> ForwardOperator:
    """The :class:`oatomo.ForwardOperator` of a geometry (slab ``thickness``, detector
    ``response``, ``element_width``, ``speed_map``, ``medium`` and ``attenuation`` as its
    keywords), cached: the same object for the same arguments."""
    return ForwardOperator(grid, sensors, acquisition, thickness=thickness, response=response,
                           element_width=element_width, speed_map=speed_map, medium=medium,
                           attenuation=attenuation)


#: Default steps of :func:`operator_norm_sq`: Lanczos steps, and power steps when asked
#: for. On the full-band operators of 14 tuning scans (``benchmarks/calibration/
#: norm_steps.py --tv``) 10 Lanczos steps came as close as 30 power steps (0.986 against
#: 0.985 of a 40-step value on average, 0.959 at the lowest for both), for a third of the
#: applications of ``A^T A``.
LANCZOS_STEPS, POWER_STEPS = 10, 30


def operator_norm_sq(grid: Grid, sensors: SensorArray, acquisition: Acquisition, *,
                     thickness: float | None = None, n_iter: int | None = None,
                     response: Any = None, element_width: float | None = None,
                     speed_map: SpeedMap | None = None, medium: str = DEFAULT_MEDIUM,
                     attenuation: Any = None, method: str = "lanczos") -> float:
    """``||A||^2`` (largest eigenvalue of ``A^T A``), cached per geometry (and detector
    response, element width, speed map, medium and attenuation, which are part of ``A``
    when given).

    ``method``: ``"lanczos"`` (``n_iter`` Lanczos steps with full reorthogonalisation, the
    largest Ritz value of the tridiagonal matrix; default :data:`LANCZOS_STEPS`) or
    ``"power"`` (``n_iter`` steps of power iteration; default :data:`POWER_STEPS`). Both
    start from the same seeded random image and approach the value from below; for the
    same number of applications of ``A^T A`` Lanczos comes closer (10 Lanczos steps reach
    what 30 power steps reach on full-band scans, 7 what 15 reach on the calibration's
    band-limited levels). Callers that need an upper bound (a gradient step size) multiply
    by a safety factor.
    """
    if method not in ("power", "lanczos"):
        raise ValueError(f"method must be 'power' or 'lanczos', not {method!r}")
    if n_iter is None:
        n_iter = LANCZOS_STEPS if method == "lanczos" else POWER_STEPS
    return _norm_sq_cached(grid, sensors, acquisition, thickness, int(n_iter), response,
                           element_width, speed_map, medium, attenuation, method)


@functools.lru_cache(maxsize=8)
def _norm_sq_cached(grid: Grid, sensors: SensorArray, acquisition: Acquisition,
                    thickness: float | None, n_iter: int, response: Any = None,
                    element_width: float | None = None,
                    speed_map: SpeedMap | None = None, medium: str = DEFAULT_MEDIUM,
                    attenuation: Any = None, method: str = "lanczos") -> float:
    op = forward_operator(grid, sensors, acquisition, thickness, response, element_width,
                          speed_map, medium, attenuation)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(grid.shape).astype(np.float32)
    x /= vector_norm(x)
    top = lanczos_top_eigenvalue if method == "lanczos" else power_top_eigenvalue
    return top(lambda v: op.adjoint(op.forward(v)), x, n_iter)


def power_top_eigenvalue(apply: Callable[[np.ndarray], np.ndarray], start: np.ndarray,
                         n_steps: int) -> float:
    """The largest eigenvalue of a symmetric positive semi-definite operator, from below:
    ``||apply(x)||`` after ``n_steps`` steps of power iteration from ``start`` (float32, of
    unit norm; ``apply`` as in :func:`lanczos_top_eigenvalue`). 0 when an iterate maps to
    zero."""
    x, est = start, 0.0
    for _ in range(int(n_steps)):
        z = apply(x)
        est = vector_norm(z)
        if est == 0.0:
            return 0.0
        x = (z / est).astype(np.float32)
    return est


#: Relative size of a Lanczos step's new direction below which the steps stop: the
#: operator's float32 rounding is about 1e-7 of its output, and the largest Ritz value
#: is then within that share of its limit.
BREAKDOWN = 1e-4


def lanczos_top_eigenvalue(apply: Callable[[np.ndarray], np.ndarray], start: np.ndarray,
                           n_steps: int) -> float:
    """The largest eigenvalue of a symmetric positive semi-definite operator, from below:
    the largest Ritz value after ``n_steps`` Lanczos steps from ``start``.

    ``apply`` maps a float32 array shaped like ``start`` to one of the same shape. The
    Lanczos vectors are kept in float64 and reorthogonalised against all earlier ones (a
    handful of vectors), so the tridiagonal matrix stays that of the Krylov space; no BLAS
    call (its threads would compete with the operator's Numba threads).
    """
    shape = start.shape
    q = np.asarray(start, dtype=np.float64).ravel()
    q = q / vector_norm(q)
    basis = [q]
    alpha: list[float] = []
    beta: list[float] = []
    for _ in range(max(1, int(n_steps))):
        w = np.asarray(apply(basis[-1].reshape(shape).astype(np.float32)),
                       dtype=np.float64).ravel()
        alpha.append(float(np.sum(w * basis[-1])))
        size = vector_norm(w)
        for v in basis:  # full reorthogonalisation
            w -= float(np.sum(w * v)) * v
        b = vector_norm(w)
        if b <= BREAKDOWN * size:
            # (nearly) an invariant subspace: the Ritz values are its eigenvalues to within
            # b, and what is left of w is the float32 operator's rounding
            break
        beta.append(b)
        basis.append(w / b)
    from scipy.linalg import eigh_tridiagonal  # here: scipy.linalg is slow to import

    k = len(alpha)
    ritz = eigh_tridiagonal(np.asarray(alpha), np.asarray(beta[:k - 1]), eigvals_only=True,
                            select="i", select_range=(k - 1, k - 1))
    return max(float(ritz[0]), 0.0)


def operator_norm_sq_of(op: Any) -> float:
    """:func:`operator_norm_sq` of an operator's own geometry (``||A||^2``, from below).

    Any other operator (e.g. :class:`oatomo.volume.VolumeOperator`) is asked for its own
    ``norm_sq()``."""
    if not isinstance(op, ForwardOperator):
        return float(op.norm_sq())
    return operator_norm_sq(op.grid, op.sensors, op.acquisition, thickness=op.thickness,
                            response=op.response, element_width=op.element_width,
                            speed_map=op.speed_map, medium=op.medium,
                            attenuation=op.attenuation)


# --- total variation --------------------------------------------------------------------


def tv_norm(x: np.ndarray) -> float:
    """Isotropic total variation ``sum sqrt((x[i+1,j]-x[i,j])^2 + (x[i,j+1]-x[i,j])^2)``
    (differences past the last row/column are 0); of a volume, with the three forward
    differences under the root."""
    x = np.asarray(x, dtype=np.float64)
    sq = np.zeros_like(x)
    for axis in range(x.ndim):
        g = np.diff(x, axis=axis, append=np.take(x, [-1], axis=axis))
        sq += g * g
    return float(np.sqrt(sq).sum())


@nb.njit(cache=True, fastmath=True, inline="always")
def _primal(b, mu, nonneg, p, q, x):  # pragma: no cover - compiled
    """``x = P_C(b - mu L(p, q))`` with ``L(p, q)_ij = p_ij + q_ij - p_{i-1,j} - q_{i,j-1}``
    (``P_C``: clip at 0 when ``nonneg``): the primal point of a dual (p, q)."""
    m, n = b.shape
    for i in range(m):
        for j in range(n):
            d = p[i, j] + q[i, j]
            if i > 0:
                d -= p[i - 1, j]
            if j > 0:
                d -= q[i, j - 1]
            v = b[i, j] - mu * d
            if nonneg and v < 0:
                v = np.float32(0.0)
            x[i, j] = v


@nb.njit(cache=True, fastmath=True)
def _fgp(b, mu, nonneg, n_inner, p, q, out):  # pragma: no cover - compiled
    """FGP for ``min_x 1/2 ||x - b||^2 + mu TV(x)`` (+ ``x >= 0``), dual (p, q) in place."""
    m, n = b.shape
    rp = p.copy()
    rq = q.copy()
    pold = p.copy()
    qold = q.copy()
    x = np.empty((m, n), np.float32)
    step = np.float32(1.0 / (8.0 * mu))
    t = 1.0
    for _ in range(n_inner):
        _primal(b, mu, nonneg, rp, rq, x)
        # (p, q) = P_P[r + L^T(x) / (8 mu)], L^T(x) = (x_ij - x_{i+1,j}, x_ij - x_{i,j+1})
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        beta = np.float32((t - 1.0) / t_new)
        for i in range(m):
            for j in range(n):
                a = rp[i, j] + step * (x[i, j] - x[i + 1, j]) if i < m - 1 else 0.0
                c = rq[i, j] + step * (x[i, j] - x[i, j + 1]) if j < n - 1 else 0.0
                nrm = max(np.float32(1.0), np.float32(math.sqrt(a * a + c * c)))
                pold[i, j] = p[i, j]
                qold[i, j] = q[i, j]
                p[i, j] = a / nrm
                q[i, j] = c / nrm
                rp[i, j] = p[i, j] + beta * (p[i, j] - pold[i, j])
                rq[i, j] = q[i, j] + beta * (q[i, j] - qold[i, j])
        t = t_new
    _primal(b, mu, nonneg, p, q, out)


@nb.njit(cache=True, fastmath=True, inline="always")
def _primal3(b, mu, nonneg, p, q, r, x):  # pragma: no cover - compiled
    """:func:`_primal` of a volume: ``L(p, q, r) = p + q + r - p_{k-1} - q_{i-1} - r_{j-1}``."""
    nk, ni, nj = b.shape
    for k in range(nk):
        for i in range(ni):
            for j in range(nj):
                d = p[k, i, j] + q[k, i, j] + r[k, i, j]
                if k > 0:
                    d -= p[k - 1, i, j]
                if i > 0:
                    d -= q[k, i - 1, j]
                if j > 0:
                    d -= r[k, i, j - 1]
                v = b[k, i, j] - mu * d
                if nonneg and v < 0:
                    v = np.float32(0.0)
                x[k, i, j] = v


@nb.njit(cache=True, fastmath=True)
def _fgp3(b, mu, nonneg, n_inner, p, q, r, out):  # pragma: no cover - compiled
    """:func:`_fgp` of a volume (three dual fields; step ``1 / (12 mu)``)."""
    nk, ni, nj = b.shape
    rp = p.copy()
    rq = q.copy()
    rr = r.copy()
    x = np.empty((nk, ni, nj), np.float32)
    step = np.float32(1.0 / (12.0 * mu))
    t = 1.0
    for _ in range(n_inner):
        _primal3(b, mu, nonneg, rp, rq, rr, x)
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        beta = np.float32((t - 1.0) / t_new)
        for k in range(nk):
            for i in range(ni):
                for j in range(nj):
                    xv = x[k, i, j]
                    a = rp[k, i, j] + step * (xv - x[k + 1, i, j]) if k < nk - 1 else 0.0
                    c = rq[k, i, j] + step * (xv - x[k, i + 1, j]) if i < ni - 1 else 0.0
                    e = rr[k, i, j] + step * (xv - x[k, i, j + 1]) if j < nj - 1 else 0.0
                    nrm = max(np.float32(1.0), np.float32(math.sqrt(a * a + c * c + e * e)))
                    a, c, e = a / nrm, c / nrm, e / nrm
                    rp[k, i, j] = a + beta * (a - p[k, i, j])
                    rq[k, i, j] = c + beta * (c - q[k, i, j])
                    rr[k, i, j] = e + beta * (e - r[k, i, j])
                    p[k, i, j] = a
                    q[k, i, j] = c
                    r[k, i, j] = e
        t = t_new
    _primal3(b, mu, nonneg, p, q, r, out)


def tv_prox(b: np.ndarray, mu: float, *, nonneg: bool = True, n_inner: int = 50,
            dual: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """``argmin_x 1/2 ||x - b||^2 + mu TV(x)`` (optionally ``x >= 0``) by FGP.

    Parameters
    ----------
    b
        Image (n, m) or volume (nz, ny, nx).
    mu
        TV weight (>= 0).
    nonneg
        Constrain ``x >= 0``.
    n_inner
        FGP iterations.
    dual
        Optional float32 dual variables of b's shape, one per axis (``(p, q)`` for an
        image, ``(p, q, r)`` for a volume), used as the warm start and updated in place.

    References
    ----------
    A. Beck, M. Teboulle, "Fast gradient-based algorithms for constrained total variation
    image denoising and deblurring problems", IEEE Trans. Image Process. 18(11), 2009.
    """
    b = np.ascontiguousarray(b, dtype=np.float32)
    if mu <= 0:
        return np.maximum(b, 0) if nonneg else b.copy()
    if b.ndim not in (2, 3):
        raise ValueError(f"tv_prox takes an image or a volume, got shape {b.shape}")
    if dual is None:
        dual = tuple(np.zeros_like(b) for _ in range(b.ndim))
    out = np.empty_like(b)
    if b.ndim == 3:
        _fgp3(b, np.float32(mu), bool(nonneg), int(n_inner), dual[0], dual[1], dual[2], out)
    else:
        _fgp(b, np.float32(mu), bool(nonneg), int(n_inner), dual[0], dual[1], out)
    return out

"""The operators of model-based reconstruction: the forward operator, its norm, total variation.

The solvers of :mod:`oatomo.recon.model_based` only apply these:

* :func:`forward_operator`: :class:`oatomo.ForwardOperator` on a geometry, cached (model-based
  runs repeat on one geometry);
* :func:`operator_norm_sq`: ``||A||^2`` by power iteration, cached per geometry, from which the
  solvers take their step sizes (:func:`operator_norm_sq_of` for an operator);
* :func:`tv_norm` and :func:`tv_prox`: the isotropic total variation and its proximal operator
  (constrained TV denoising by fast dual gradient projection, Numba kernels).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numba as nb
import numpy as np

from oatomo.forward import ForwardOperator
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.media import DEFAULT_MEDIUM

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
                     element_width: float | None = None, medium: str = DEFAULT_MEDIUM,
                     attenuation: Any = None) -> ForwardOperator:
    """The :class:`oatomo.ForwardOperator` of a geometry (slab ``thickness``, detector
    ``response``, ``element_width``, ``medium`` and ``attenuation`` as its keywords),
    cached: the same object for the same arguments."""
    return ForwardOperator(grid, sensors, acquisition, thickness=thickness, response=response,
                           element_width=element_width, medium=medium,
                           attenuation=attenuation)


@functools.lru_cache(maxsize=8)
def _norm_sq_cached(grid: Grid, sensors: SensorArray, acquisition: Acquisition,
                    thickness: float | None, n_iter: int, response: Any = None,
                    element_width: float | None = None, medium: str = DEFAULT_MEDIUM,
                    attenuation: Any = None) -> float:
    op = forward_operator(grid, sensors, acquisition, thickness, response, element_width,
                          medium, attenuation)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(grid.shape).astype(np.float32)
    x /= vector_norm(x)
    est = 0.0
    for _ in range(n_iter):
        z = op.adjoint(op.forward(x))
        est = vector_norm(z)
        if est == 0.0:
            return 0.0
        x = (z / est).astype(np.float32)
    return est


def operator_norm_sq(grid: Grid, sensors: SensorArray, acquisition: Acquisition, *,
                     thickness: float | None = None, n_iter: int = 30, response: Any = None,
                     element_width: float | None = None, medium: str = DEFAULT_MEDIUM,
                     attenuation: Any = None) -> float:
    """``||A||^2`` (largest eigenvalue of ``A^T A``) by power iteration, cached per geometry
    (and detector response, element width, medium and attenuation, which are part of
    ``A``).

    Power iteration approaches the value from below; callers that need an upper bound (a
    gradient step size) multiply by a safety factor.
    """
    return _norm_sq_cached(grid, sensors, acquisition, thickness, int(n_iter), response,
                           element_width, medium, attenuation)


def operator_norm_sq_of(op: ForwardOperator) -> float:
    """:func:`operator_norm_sq` of an operator's own geometry (``||A||^2``, from below)."""
    return operator_norm_sq(op.grid, op.sensors, op.acquisition, thickness=op.thickness,
                            response=op.response, element_width=op.element_width,
                            medium=op.medium, attenuation=op.attenuation)


# --- total variation --------------------------------------------------------------------


def tv_norm(x: np.ndarray) -> float:
    """Isotropic total variation ``sum sqrt((x[i+1,j]-x[i,j])^2 + (x[i,j+1]-x[i,j])^2)``
    (differences past the last row/column are 0)."""
    x = np.asarray(x, dtype=np.float64)
    gi = np.zeros_like(x)
    gj = np.zeros_like(x)
    gi[:-1] = x[1:] - x[:-1]
    gj[:, :-1] = x[:, 1:] - x[:, :-1]
    return float(np.sqrt(gi * gi + gj * gj).sum())


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


def tv_prox(b: np.ndarray, mu: float, *, nonneg: bool = True, n_inner: int = 50,
            dual: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """``argmin_x 1/2 ||x - b||^2 + mu TV(x)`` (optionally ``x >= 0``) by FGP.

    Parameters
    ----------
    b
        Image (n, m).
    mu
        TV weight (>= 0).
    nonneg
        Constrain ``x >= 0``.
    n_inner
        FGP iterations.
    dual
        Optional float32 dual variables ``(p, q)`` of b's shape, used as the warm start
        and updated in place.

    References
    ----------
    A. Beck, M. Teboulle, "Fast gradient-based algorithms for constrained total variation
    image denoising and deblurring problems", IEEE Trans. Image Process. 18(11), 2009.
    """
    b = np.ascontiguousarray(b, dtype=np.float32)
    if mu <= 0:
        return np.maximum(b, 0) if nonneg else b.copy()
    if dual is None:
        dual = (np.zeros_like(b), np.zeros_like(b))
    out = np.empty_like(b)
    _fgp(b, np.float32(mu), bool(nonneg), int(n_inner), dual[0], dual[1], out)
    return out

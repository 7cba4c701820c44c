"""Model-based reconstruction: regularised least squares on the forward operator.

Both methods are matrix-free: they only apply :class:`oatomo.ForwardOperator` and its exact
adjoint (about a millisecond each for 128 x 128 pixels, 32 sensors, 1024 samples), so the
memory is a few images and sinograms, never a system matrix.

* ``"tikhonov"``: ``min ||A x - y||^2 + lam ||x||^2`` by LSQR (Paige & Saunders 1982), with
  optional non-negativity by projected accelerated gradient steps started from the LSQR
  solution.
* ``"tv"``: ``min 1/2 ||A x - y||^2 + lam TV(x)`` subject to ``x >= 0`` by monotone FISTA
  (Beck & Teboulle 2009) whose proximal step is the constrained TV denoising problem,
  solved by the fast dual gradient projection (FGP) of the same paper.

The operators they apply (the cached forward operator, its norm, total variation and its
proximal step) are in :mod:`oatomo.recon.operators`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from oatomo.errors import InputError
from oatomo.forward import check_sinogram
from oatomo.geometry import Acquisition, Grid, SensorArray, check_geometry
from oatomo.media import DEFAULT_MEDIUM
from oatomo.recon.operators import (
    forward_operator,
    operator_norm_sq,
    operator_norm_sq_of,
    tv_norm,
    tv_prox,
    vector_norm,
)
from oatomo.speed_map import SpeedMap

logger = logging.getLogger(__name__)

__all__ = ["reconstruct_model_based", "solve_model_based", "default_lambda", "lsqr",
           "MODEL_BASED_METHODS",
           "LAMBDA_REL", "NONNEG_STEPS", "TV_INNER", "STALL_WINDOW", "STALL_MIN_ITERS"]

#: The ``method`` names of :func:`reconstruct_model_based` (``mb-<name>`` in
#: :data:`oatomo.recon.registry.METHODS`).
MODEL_BASED_METHODS = ("tikhonov", "tv")

#: Default regularisation, relative to a data-derived scale (see :func:`default_lambda`);
#: tuned on the 32-sensor ring (r = 22.5 mm, 128 x 128 at 0.1 mm, 40 MHz) with 1 % noise.
LAMBDA_REL = {"tikhonov": 5e-3, "tv": 1e-2}

#: Projected gradient steps that enforce ``x >= 0`` after LSQR (method "tikhonov").
NONNEG_STEPS = 20

#: Inner FGP iterations per TV proximal step (warm-started from the previous step).
TV_INNER = 10

#: TV's stall test (``stall_tol``): the objective's relative decrease over the last
#: ``STALL_WINDOW`` iterations, tested from iteration ``STALL_MIN_ITERS`` on.
STALL_WINDOW, STALL_MIN_ITERS = 10, 30


def _check_method(method: str) -> None:
    """InputError unless ``method`` is one of :data:`MODEL_BASED_METHODS`."""
    if method not in MODEL_BASED_METHODS:
        raise InputError(f"unknown model-based method {method!r}; choose from "
                         f"{', '.join(MODEL_BASED_METHODS)}")


# --- default regularisation --------------------------------------------------------------


def default_lambda(method: str, sinogram: np.ndarray, grid: Grid, sensors: SensorArray,
                   acquisition: Acquisition, *, thickness: float | None = None,
                   response: Any = None, element_width: float | None = None,
                   speed_map: SpeedMap | None = None, medium: str = DEFAULT_MEDIUM,
                   attenuation: Any = None) -> float:
    """The default regularisation weight, scaled to the data.

    * Tikhonov: ``lam = 5e-3 * ||A||^2``, so the damping acts on the same singular values
      whatever the units or the slab thickness (the solution's filter factors
      ``s^2 / (s^2 + lam)`` depend only on ``s / ||A||``).
    * TV: ``lam = 1e-2 * ||A^T y||_inf``: the objective scales with the data
      ``y -> a y`` (then ``x -> a x``) and with the operator ``A -> a A`` (then
      ``x -> x / a``), and so does ``||A^T y||_inf``, the size of the gradient at ``x = 0``.

    The factors (:data:`LAMBDA_REL`) were tuned on the 32-sensor ring with 1 % noise
    (``benchmarks/bench_mb.py``).
    """
    _check_method(method)
    if method == "tikhonov":
        return LAMBDA_REL["tikhonov"] * operator_norm_sq(
            grid, sensors, acquisition, thickness=thickness, response=response,
            element_width=element_width, speed_map=speed_map, medium=medium,
            attenuation=attenuation)
    op = forward_operator(grid, sensors, acquisition, thickness, response, element_width,
                          speed_map, medium, attenuation)
    return LAMBDA_REL["tv"] * float(np.abs(op.adjoint(sinogram)).max())


# --- LSQR --------------------------------------------------------------------------------


def lsqr(matvec: Callable[[np.ndarray], np.ndarray],
         rmatvec: Callable[[np.ndarray], np.ndarray], b: np.ndarray, *, damp: float = 0.0,
         n_iter: int = 50, tol: float = 1e-4,
         on_iteration: Callable[[int, np.ndarray, float], Any] | None = None
         ) -> tuple[np.ndarray, int]:
    """LSQR (Paige & Saunders 1982) for ``min ||A x - b||^2 + damp^2 ||x||^2``.

    The algorithm of :func:`scipy.sparse.linalg.lsqr` (same recurrences and stopping
    tests, ``atol = btol = tol``), written out so that each iterate can be reported:
    ``on_iteration(k, x, r1norm)`` with the estimate ``r1norm = ||b - A x||``.

    Returns
    -------
    x, n_iter
        The solution (float64) and the iterations done.
    """
    b = np.asarray(b, dtype=np.float64).ravel()
    u = b.copy()
    beta = vector_norm(u)
    x = np.zeros(0)
    if beta > 0:
        u /= beta
        v = np.asarray(rmatvec(u), dtype=np.float64)
        x = np.zeros_like(v)
        alpha = vector_norm(v)
    else:
        v = np.asarray(rmatvec(u), dtype=np.float64)
        return np.zeros_like(v), 0
    if alpha == 0:
        return x, 0
    v /= alpha
    w = v.copy()
    rhobar, phibar = alpha, beta
    bnorm = beta
    anorm = 0.0
    res2 = 0.0
    xxnorm = 0.0
    z = 0.0
    cs2, sn2 = -1.0, 0.0
    k = 0
    for k in range(1, n_iter + 1):
        u = np.asarray(matvec(v), dtype=np.float64) - alpha * u
        beta = vector_norm(u)
        if beta > 0:
            u /= beta
            anorm = math.sqrt(anorm**2 + alpha**2 + beta**2 + damp**2)
            v = np.asarray(rmatvec(u), dtype=np.float64) - beta * v
            alpha = vector_norm(v)
            if alpha > 0:
                v /= alpha
        rhobar1 = math.hypot(rhobar, damp)
        cs1, sn1 = rhobar / rhobar1, damp / rhobar1
        psi = sn1 * phibar
        phibar = cs1 * phibar
        rho = math.hypot(rhobar1, beta)
        cs, sn = rhobar1 / rho, beta / rho
        theta = sn * alpha
        rhobar = -cs * alpha
        phi = cs * phibar
        phibar = sn * phibar
        x += (phi / rho) * w
        w = v - (theta / rho) * w
        # norm estimates (as scipy's lsqr)
        delta = sn2 * rho
        gambar = -cs2 * rho
        rhs = phi - delta * z
        zbar = rhs / gambar if gambar != 0 else 0.0
        xnorm = math.sqrt(xxnorm + zbar**2)
        gamma = math.hypot(gambar, theta)
        cs2, sn2 = gambar / gamma, theta / gamma
        z = rhs / gamma
        xxnorm += z * z
        res2 += psi**2
        rnorm = math.sqrt(phibar**2 + res2)
        r1norm = math.sqrt(abs(rnorm**2 - damp**2 * xxnorm))
        arnorm = alpha * abs(sn * phi)
        if on_iteration is not None:
            on_iteration(k, x, r1norm)
        test1 = rnorm / bnorm
        test2 = arnorm / (anorm * rnorm) if anorm * rnorm > 0 else 0.0
        if tol > 0 and (test1 <= tol + tol * anorm * xnorm / bnorm or test2 <= tol
                        or alpha == 0 or beta == 0):
            break
    return x, k


# --- the public entry point --------------------------------------------------------------


def _check_args(method: str, lam: float | None, n_iter: int, tol: float,
                x0: np.ndarray | None, grid: Any, stall_tol: float = 0.0,
                stall_from: int = STALL_MIN_ITERS) -> np.ndarray | None:
    _check_method(method)
    if not (math.isfinite(stall_tol) and stall_tol >= 0):
        raise InputError(f"stall_tol must be >= 0, got {stall_tol}")
    if isinstance(stall_from, bool) or int(stall_from) != stall_from or stall_from < 1:
        raise InputError(f"stall_from must be a positive integer, got {stall_from!r}")
    if lam is not None and not (math.isfinite(lam) and lam >= 0):
        raise InputError(f"lam must be a finite number >= 0, got {lam}")
    if isinstance(n_iter, bool) or int(n_iter) != n_iter or n_iter < 1:
        raise InputError(f"n_iter must be a positive integer, got {n_iter!r}")
    if not (math.isfinite(tol) and tol >= 0):
        raise InputError(f"tol must be >= 0, got {tol}")
    if x0 is None:
        return None
    x0 = np.asarray(x0)
    if x0.shape != grid.shape:
        raise InputError(f"x0 has shape {x0.shape}, the grid is {grid.shape}")
    if not np.all(np.isfinite(x0)):
        raise InputError("x0 contains NaN or Inf")
    return np.ascontiguousarray(x0, dtype=np.float32)


def reconstruct_model_based(
    sinogram: np.ndarray,
    grid: Grid,
    sensors: SensorArray,
    acquisition: Acquisition,
    *,
    method: str = "tikhonov",
    lam: float | None = None,
    n_iter: int = 50,
    nonneg: bool = True,
    x0: np.ndarray | None = None,
    on_iteration: Callable[[int, np.ndarray], Any] | None = None,
    tol: float = 1e-4,
    thickness: float | None = None,
    norm_sq: float | None = None,
    response: Any = None,
    element_width: float | None = None,
    speed_map: SpeedMap | None = None,
    medium: str = DEFAULT_MEDIUM,
    attenuation: Any = None,
    stall_tol: float = 0.0,
    stall_from: int = STALL_MIN_ITERS,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Model-based reconstruction with Tikhonov or total-variation regularisation.

    Parameters
    ----------
    sinogram
        (N, T) signals (Pa), one frame.
    grid, sensors, acquisition
        The geometry assumed for the reconstruction (the forward model
        :class:`oatomo.ForwardOperator` on it is ``A``).
    method
        ``"tikhonov"``: ``min ||A x - y||^2 + lam ||x||^2`` (LSQR, damping ``sqrt(lam)``).
        ``"tv"``: ``min 1/2 ||A x - y||^2 + lam TV(x)``, isotropic TV, by monotone FISTA.
    lam
        Regularisation weight; None: :func:`default_lambda` (scaled to the data).
    n_iter
        Maximum iterations (LSQR iterations, or FISTA iterations for TV). Each costs one
        forward and one adjoint application.
    nonneg
        Constrain ``x >= 0``. TV: exactly, inside every proximal step. Tikhonov: LSQR
        cannot carry a constraint, so the LSQR solution is clipped at 0 and then refined
        by up to :data:`NONNEG_STEPS` projected accelerated gradient (FISTA) steps on the
        same objective; with ``nonneg=False`` the result is the plain LSQR iterate.
    x0
        Starting image (TV only; LSQR starts at 0 and ignores it).
    on_iteration
        ``on_iteration(k, x)`` after each iteration ``k`` (1-based) with the current image
        (float32 (n, n); do not modify it): an observer of the iterates, not a progress
        report (:data:`oatomo.progress.Callback` is that, through the method registry).
    tol
        Stop early when the relative change of the image in one step (TV, and the
        projected steps) falls below ``tol``, or on LSQR's own tests with
        ``atol = btol = tol``. 0: always run ``n_iter`` iterations.
    thickness
        Slab thickness of the forward model (m), default ``grid.dx``.
    response, element_width
        The sensors' impulse response (:class:`oatomo.response.DetectorResponse`) and the
        width (m) of flat elements, made part of the forward operator (so the solution
        accounts for them instead of needing a deconvolution first).
    speed_map
        Two speeds of sound (:class:`oatomo.speed_map.SpeedMap`) in the forward operator;
        its ``c0`` replaces the acquisition's speed. None: one speed.
    medium, attenuation
        The propagation medium (``"slab"`` or ``"2d"``) and its
        :class:`oatomo.media.Attenuation` (None: none), made part of the forward operator
        (see :class:`oatomo.ForwardOperator`): the solution is compensated for them.
    norm_sq
        TV only: a known ``||A||^2`` (e.g. of a nearby geometry), which skips the power
        iteration; None: estimated and cached per geometry.
    stall_tol
        TV only: stop once the objective fell by less than ``stall_tol`` (relative) over
        the last :data:`STALL_WINDOW` iterations, tested from iteration ``stall_from``
        on (``record["stalled"]``). 0 (default): no such test.
    stall_from
        The first iteration the stall test is made at (default :data:`STALL_MIN_ITERS`;
        never before iteration ``STALL_WINDOW + 1``).

    Returns
    -------
    image : numpy.ndarray
        float32 (n, n), in Pa.
    record : dict
        ``"residual"``: relative data misfit ``||A x - y|| / ||y||`` per iteration (for
        LSQR iterations, LSQR's own estimate of it); ``"objective"``: the minimised
        objective per iteration (Tikhonov with ``nonneg``: the constrained steps start
        above the unconstrained LSQR minimum); ``"n_iter"`` (Tikhonov also
        ``"n_iter_lsqr"`` and ``"n_iter_projected"``);
        ``"lam"``; ``"method"``; ``"time_s"``; ``"converged"`` (stopped by ``tol``);
        ``"lipschitz"`` (``||A||^2`` estimate, TV and projected steps).

    Notes
    -----
    TV uses MFISTA (Beck & Teboulle 2009): the accepted iterate is the better of the new
    proximal point and the previous iterate, so the recorded objective never increases.
    The step is ``1 / (1.05 ||A||^2)`` with ``||A||^2`` from 10 Lanczos steps
    (:func:`~oatomo.recon.operators.operator_norm_sq`), cached per geometry. The proximal
    step (TV denoising with ``x >= 0``) runs :data:`TV_INNER` FGP iterations warm-started
    from the previous dual variables.
    """
    x0c = _check_args(method, lam, n_iter, tol, x0, grid, stall_tol, stall_from)
    grid, sensors, acquisition = check_geometry(grid, sensors, acquisition)
    y = check_sinogram(sinogram, sensors, acquisition, allow_frames=False)
    t_start = time.perf_counter()
    op = forward_operator(grid, sensors, acquisition, thickness, response, element_width,
                          speed_map, medium, attenuation)
    if lam is None:
        lam = default_lambda(method, y, grid, sensors, acquisition, thickness=thickness,
                             response=response, element_width=element_width,
                             speed_map=speed_map, medium=medium, attenuation=attenuation)
    x, record = solve_model_based(op, y, method=method, lam=lam, n_iter=n_iter,
                                  nonneg=nonneg, x0=x0c, on_iteration=on_iteration, tol=tol,
                                  norm_sq=norm_sq, stall_tol=stall_tol,
                                  stall_from=stall_from)
    record["time_s"] = time.perf_counter() - t_start
    return x, record


def solve_model_based(
    op: Any,
    y: np.ndarray,
    *,
    method: str = "tikhonov",
    lam: float | None = None,
    n_iter: int = 50,
    nonneg: bool = True,
    x0: np.ndarray | None = None,
    on_iteration: Callable[[int, np.ndarray], Any] | None = None,
    tol: float = 1e-4,
    norm_sq: float | None = None,
    stall_tol: float = 0.0,
    stall_from: int = STALL_MIN_ITERS,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The solvers of :func:`reconstruct_model_based` on any linear operator.

    Parameters
    ----------
    op
        The operator ``A``: ``op.forward(x)`` (unknown of shape ``op.grid.shape`` ->
        signals), its exact adjoint ``op.adjoint(y)``, ``op.as_linear_operator()`` and,
        unless it is an :class:`oatomo.ForwardOperator`, ``op.norm_sq()`` (``||A||^2``).
        The unknown may be an image or a volume (e.g. :class:`oatomo.volume.VolumeOperator`).
    y
        Validated float32 signals of the operator's output shape.
    method, lam, n_iter, nonneg, x0, on_iteration, tol, norm_sq, stall_tol, stall_from
        As :func:`reconstruct_model_based`; ``lam`` None: ``5e-3 ||A||^2`` (Tikhonov) or
        ``1e-2 ||A^T y||_inf`` (TV), as :func:`default_lambda`.

    Returns
    -------
    image, record
        As :func:`reconstruct_model_based`.
    """
    x0c = _check_args(method, lam, n_iter, tol, x0, op.grid, stall_tol, stall_from)
    t_start = time.perf_counter()
    if lam is None:
        lam = LAMBDA_REL[method] * (operator_norm_sq_of(op) if method == "tikhonov"
                                    else float(np.abs(op.adjoint(y)).max()))
    lam = float(lam)
    ynorm = vector_norm(y.astype(np.float64))
    record: dict[str, Any] = {"method": method, "lam": lam, "residual": [], "objective": [],
                              "n_iter": 0, "converged": False, "stalled": False}
    if ynorm == 0.0:
        x = np.zeros(op.grid.shape, np.float32)
    elif method == "tikhonov":
        if x0c is not None:
            logger.warning("model-based tikhonov: LSQR starts at 0; x0 is ignored")
        x = _tikhonov(op, y, lam, n_iter, nonneg, tol, on_iteration, record, ynorm)
    else:
        if norm_sq is not None and not (math.isfinite(norm_sq) and norm_sq >= 0):
            raise InputError(f"norm_sq must be a finite number >= 0, got {norm_sq}")
        x = _tv(op, y, lam, n_iter, nonneg, x0c, tol, on_iteration, record, ynorm, norm_sq,
                stall_tol, stall_from)
    record["time_s"] = time.perf_counter() - t_start
    logger.info("model-based %s: lam=%.3g, %d iterations, residual %.4g, %.3f s", method,
                lam, record["n_iter"], record["residual"][-1] if record["residual"] else 0,
                record["time_s"])
    return np.ascontiguousarray(x, dtype=np.float32), record


def _tikhonov(op: Any, y: np.ndarray, lam: float, n_iter: int, nonneg: bool,
              tol: float, on_iteration: Callable[[int, np.ndarray], Any] | None,
              record: dict[str, Any], ynorm: float) -> np.ndarray:
    shape = op.grid.shape
    lin = op.as_linear_operator()

    def report(k: int, x: np.ndarray, r1norm: float) -> None:
        record["residual"].append(r1norm / ynorm)
        record["objective"].append(r1norm**2 + lam * float(np.sum(x * x)))
        record["n_iter"] = k
        if on_iteration is not None:
            on_iteration(k, x.reshape(shape).astype(np.float32))

    x, k = lsqr(lin.matvec, lin.rmatvec, y.ravel(), damp=math.sqrt(lam), n_iter=n_iter,
                tol=tol, on_iteration=report)
    record["n_iter_lsqr"] = k
    record["converged"] = k < n_iter
    x = x.reshape(shape).astype(np.float32)
    if not nonneg:
        return x
    # projected accelerated gradient on ||A x - y||^2 + lam ||x||^2 from the clipped LSQR
    # solution: gradient 2 (A^T (A x - y) + lam x), Lipschitz constant 2 (||A||^2 + lam)
    lip = 1.05 * operator_norm_sq_of(op) + lam
    record["lipschitz"] = lip
    x = np.maximum(x, 0)
    z, t = x.copy(), 1.0
    steps = 0
    for _ in range(NONNEG_STEPS):
        steps += 1
        r = op.forward(z) - y
        grad = op.adjoint(r) + lam * z
        x_new = np.maximum(z - grad / lip, 0).astype(np.float32)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        change = vector_norm(x_new - x) / max(vector_norm(x_new), 1e-30)
        z = (x_new + ((t - 1) / t_new) * (x_new - x)).astype(np.float32)
        x, t = x_new, t_new
        res = vector_norm(op.forward(x) - y)
        record["residual"].append(res / ynorm)
        record["objective"].append(res**2 + lam * float(np.sum(x.astype(np.float64) ** 2)))
        record["n_iter"] += 1
        if on_iteration is not None:
            on_iteration(record["n_iter"], x)
        if tol > 0 and change < tol:
            break
    record["n_iter_projected"] = steps
    return x


def _tv(op: Any, y: np.ndarray, lam: float, n_iter: int, nonneg: bool,
        x0: np.ndarray | None, tol: float, on_iteration: Callable[[int, np.ndarray], Any] | None,
        record: dict[str, Any], ynorm: float, norm_sq: float | None = None,
        stall_tol: float = 0.0, stall_from: int = STALL_MIN_ITERS) -> np.ndarray:
    if norm_sq is None:
        norm_sq = operator_norm_sq_of(op)
    lip = 1.05 * norm_sq
    record["lipschitz"] = lip
    if lip == 0:
        return np.zeros(op.grid.shape, np.float32)
    mu = lam / lip
    x = np.zeros(op.grid.shape, np.float32) if x0 is None else x0.copy()
    if nonneg:
        x = np.maximum(x, 0)
    ax = op.forward(x)

    def objective(ax_: np.ndarray, x_: np.ndarray) -> tuple[float, float]:
        res = vector_norm((ax_ - y).astype(np.float64))
        return 0.5 * res**2 + lam * tv_norm(x_), res

    f_x, _ = objective(ax, x)
    x_prev, ax_prev = x, ax
    v, av = x, ax  # extrapolated point and its image under A
    t = 1.0
    dual = tuple(np.zeros(op.grid.shape, np.float32) for _ in op.grid.shape)
    for k in range(1, n_iter + 1):
        grad = op.adjoint(av - y)
        z = tv_prox(v - grad / lip, mu, nonneg=nonneg, n_inner=TV_INNER, dual=dual)
        az = op.forward(z)
        f_z, res_z = objective(az, z)
        change = vector_norm(z - v) / max(vector_norm(z), 1e-30)
        x_prev, ax_prev = x, ax
        if f_z <= f_x:
            x, ax, f_x, res = z, az, f_z, res_z
        else:
            res = vector_norm((ax - y).astype(np.float64))
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        a, b = t / t_new, (t - 1) / t_new
        v = (x + a * (z - x) + b * (x - x_prev)).astype(np.float32)
        av = (ax + a * (az - ax) + b * (ax - ax_prev)).astype(np.float32)
        t = t_new
        record["residual"].append(res / ynorm)
        record["objective"].append(f_x)
        record["n_iter"] = k
        if on_iteration is not None:
            on_iteration(k, x)
        if tol > 0 and k > 1 and change < tol:
            record["converged"] = True
            break
        if (stall_tol > 0 and k >= max(stall_from, STALL_WINDOW + 1)
                and record["objective"][-1 - STALL_WINDOW] - f_x <= stall_tol * f_x):
            record["stalled"] = True
            break
    return x

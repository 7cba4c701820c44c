"""One Gauss-Newton step on every unknown at once: image, sensor gains, positions and the
speed of sound.

The alternating scheme of :mod:`oatomo.calibration.joint` moves each sensor against an
image made from the same sensors, so the image absorbs part of every sensor's error and
each round recovers only part of what is left. This step linearises the records about
the current geometry and image,

.. math::

    y \\approx a_s (A x)_s + (A\\,\\delta x)_s + \\delta a_s (A x)_s
        + a_s J_s \\delta p_s + a_s (\\partial_{\\ln c} A x)_s\\,\\delta \\ln c ,

and solves the linear least-squares problem for ``delta x`` (free on the grid, as the
information bound of the calibration counts it), the gains ``delta a``, the displacements
``delta p`` (along and across each line of sight, under the positions' Gaussian prior
about the file's) and ``delta ln c`` together, by LSQR on the stacked system. Changes of
the image can no longer mimic a sensor's move, because they are estimated with it: this is
the variable-projection (Gauss-Newton) step on the positions with the image eliminated.
Its noise variance is the residual's mean square at the current image after each sensor's
gain (an over-estimate: the prior weighs a little more). One step ends the level before the
finest, on every array (:data:`oatomo.calibration.joint.COARSE_JOINT_ITERS`), and one the
finest, on arrays that surround the object
(:data:`oatomo.calibration.joint.JOINT_STEP_COVERAGE`); further steps, each about the image
made again, gained 0.1 dB or less on average on the tuning scans. With the positions held
(``move_sensors=False``) the step estimates the speed of sound alone with the image and the
gains (measured on short apertures, not used by default).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator, lsqr

from oatomo.calibration.levels import Level
from oatomo.calibration.search import (
    JACOBIAN_STEP,
    local_frames,
    predicted_records,
    sensor_jacobians,
)
from oatomo.forward import ForwardOperator
from oatomo.geometry import SensorArray

__all__ = ["JOINT_STEP_ITERS", "stacked_system", "joint_gauss_newton_step"]

#: LSQR iterations of the joint step (each one forward and one adjoint projection of the
#: image and the per-sensor columns: about the cost of as many TV iterations). Tuning
#: scans (``benchmarks/calibration/joint_gauss_newton.py``): 100 iterations gained about
#: 0.1 dB more than 50 on a 160- and a 36-sensor ring, nothing on a 300 degree arc, for
#: twice the time.
JOINT_STEP_ITERS = 50

#: Relative step of the central difference in the speed of sound (the positions' is
#: :data:`~oatomo.calibration.search.JACOBIAN_STEP`, as the per-sensor steps').
SPEED_STEP = 1e-3


def stacked_system(level: Level, image: np.ndarray, positions: np.ndarray,
                   prior_mean: np.ndarray, prior_std: float, norm_sq: float,
                   thickness: float | None, response: Any = None,
                   speed_of_sound: bool = True, image_damping: float = 0.0,
                   move_sensors: bool = True
                   ) -> tuple[LinearOperator, np.ndarray, Any, np.ndarray]:
    """The joint step's linear least-squares problem ``min ||L z - b||``.

    ``z`` stacks the image change (n*n), then per sensor the gain change (N), the
    displacements along and across its line of sight (N each) and, with
    ``speed_of_sound``, ``delta ln c``; each block is scaled so that its columns have
    about unit norm (the image's by ``sqrt(norm_sq)``, a bound on ``||A||``). The rows
    are the records (N*T, in Pa), then the prior on the displacements (2N, weighted by the
    noise's standard deviation over ``prior_std``), then, with ``image_damping`` > 0,
    ``image_damping`` times the scaled image change (n*n rows: a Tikhonov term that keeps
    the image from absorbing what the sensors' moves should explain). Without
    ``move_sensors`` the displacements and their prior rows are left out (the positions
    are held; ``unpack`` returns zero displacements).

    Returns
    -------
    L : scipy.sparse.linalg.LinearOperator
    b : numpy.ndarray
    unpack : callable
        ``unpack(z) -> (dx (n, n), da (N,), dp_local (N, 2), dlnc)`` in physical units.
    misfit : numpy.ndarray
        (N,) relative misfit ``||y - a P||^2 / ||y||^2`` of each record at the
        linearisation point (its best gain ``a``).
    """
    n, t = level.data.shape
    grid = level.grid
    y = level.data.astype(np.float64)
    if move_sensors:
        pred, jac, frames = sensor_jacobians(level, image, positions, thickness,
                                             JACOBIAN_STEP * grid.dx, response)
    else:
        pred = predicted_records(level, image, positions, thickness, response)
    pp = np.einsum("nt,nt->n", pred, pred)
    a = np.einsum("nt,nt->n", pred, y) / np.maximum(pp, 1e-300)
    cols = ([jac[..., 0] * a[:, None], jac[..., 1] * a[:, None]] if move_sensors else [])
    c = level.acquisition.speed_of_sound
    if speed_of_sound:
        up, down = (replace(level, acquisition=replace(level.acquisition,
                                                       speed_of_sound=c * (1 + s)))
                    for s in (SPEED_STEP, -SPEED_STEP))
        d_c = (predicted_records(up, image, positions, thickness, response)
               - predicted_records(down, image, positions, thickness, response)
               ) / (2 * SPEED_STEP) * a[:, None]
    r = y - a[:, None] * pred
    misfit = np.einsum("nt,nt->n", r, r) / np.maximum(np.einsum("nt,nt->n", y, y), 1e-300)
    sigma = math.sqrt(max(float(np.mean(r * r)), 1e-300))
    op = ForwardOperator(grid, SensorArray(positions), level.acquisition,
                         thickness=thickness, response=response)
    m = grid.n ** 2
    s_x = math.sqrt(norm_sq)
    s_amp = np.sqrt(pp) + 1e-300
    s_p = [np.sqrt(np.einsum("nt,nt->n", j, j)) + 1e-300 for j in cols]
    s_c = math.sqrt(float(np.sum(d_c * d_c))) + 1e-300 if speed_of_sound else 1.0
    n_c = 1 if speed_of_sound else 0
    n_p = 2 * n if move_sensors else 0  # displacement unknowns, and their prior rows
    w = sigma / prior_std
    # the displacements' prior rows: -w times the offset from the prior mean
    prior_b = ([-w * o for o in np.einsum("nd,ncd->cn", positions - prior_mean, frames)]
               if move_sensors else [])

    def unpack(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        dp = (np.stack([z[m + n:m + 2 * n] / s_p[0], z[m + 2 * n:m + 3 * n] / s_p[1]], 1)
              if move_sensors else np.zeros((n, 2)))
        dlnc = float(z[-1] / s_c) if speed_of_sound else 0.0
        return z[:m].reshape(grid.n, grid.n) / s_x, z[m:m + n] / s_amp, dp, dlnc

    def matvec(z: np.ndarray) -> np.ndarray:
        dx, da, dp, dlnc = unpack(z)
        d = op.forward(dx.astype(np.float32)).astype(np.float64)
        if move_sensors:
            d += da[:, None] * pred + dp[:, :1] * cols[0] + dp[:, 1:] * cols[1]
        else:
            d += da[:, None] * pred
        if speed_of_sound:
            d += dlnc * d_c
        rows = [d.ravel()] + ([w * dp[:, 0], w * dp[:, 1]] if move_sensors else [])
        if image_damping > 0:
            rows.append(image_damping * z[:m])
        return np.concatenate(rows)

    def rmatvec(v: np.ndarray) -> np.ndarray:
        d = v[:n * t].reshape(n, t)
        prior = (v[n * t:n * t + n], v[n * t + n:n * t + 2 * n]) if move_sensors else ()
        gx = op.adjoint(d.astype(np.float32)).astype(np.float64).ravel() / s_x
        if image_damping > 0:
            gx = gx + image_damping * v[n * t + n_p:]
        out = [gx, np.einsum("nt,nt->n", d, pred) / s_amp]
        out += [(np.einsum("nt,nt->n", d, j) + w * q) / s for j, q, s in
                zip(cols, prior, s_p, strict=True)]
        if speed_of_sound:
            out.append(np.array([float(np.sum(d * d_c)) / s_c]))
        return np.concatenate(out)

    n_damp = m if image_damping > 0 else 0
    L = LinearOperator((n * t + n_p + n_damp, m + n + n_p + n_c), matvec=matvec,
                       rmatvec=rmatvec, dtype=np.float64)
    b = np.concatenate([r.ravel(), *prior_b, np.zeros(n_damp)])
    return L, b, unpack, misfit


def joint_gauss_newton_step(level: Level, image: np.ndarray, positions: np.ndarray,
                            prior_mean: np.ndarray, prior_std: float, norm_sq: float,
                            thickness: float | None, response: Any = None,
                            speed_of_sound: bool = True, max_step: float | None = None,
                            n_iter: int = JOINT_STEP_ITERS, image_damping: float = 0.0,
                            move_sensors: bool = True
                            ) -> tuple[np.ndarray, float, dict[str, Any]]:
    """One joint Gauss-Newton step (see the module docstring) at ``level`` (its records,
    grid and speed of sound), linearised about ``image`` and ``positions``.

    Parameters
    ----------
    level
        The finest level of the schedule (full band).
    image
        (n, n) image the records are linearised about (Pa).
    positions, prior_mean
        (N, 2) current positions and the prior mean (the file's), m.
    prior_std
        Per-coordinate standard deviation of the prior (m).
    norm_sq
        A bound on ``||A||^2`` (scales the image block).
    thickness, response
        As the forward model.
    speed_of_sound
        Estimate ``delta ln c`` too.
    max_step
        Displacements are shortened to at most this (m); None: no limit.
    n_iter
        LSQR iterations.
    image_damping
        Tikhonov weight on the (scaled) image change, see :func:`stacked_system`
        (0: none, the default; on the tuning scans' 200 degree arc it is measured in
        ``benchmarks/calibration/joint_gauss_newton.py``, configs ``...d<weight>``).
    move_sensors
        Estimate the displacements too; False holds the positions (the speed-of-sound
        step of :func:`oatomo.calibration.joint.joint_calibration`).

    Returns
    -------
    positions : numpy.ndarray
        (N, 2) moved positions (not mapped onto the gauge).
    c : float
        The speed of sound times ``exp(delta ln c)``.
    info : dict
        ``step_rms`` (m), ``lsqr_iters``, ``relative_residual`` (of the stacked system),
        ``misfit`` (N,) as :func:`stacked_system`'s, ``image_change`` (n, n) the
        step's image change (Pa).
    """
    L, b, unpack, misfit = stacked_system(level, image, positions, prior_mean, prior_std,
                                          norm_sq, thickness, response, speed_of_sound,
                                          image_damping, move_sensors)
    out = lsqr(L, b, atol=0.0, btol=0.0, iter_lim=n_iter)
    dx, _, dp, dlnc = unpack(out[0])
    if max_step is not None:
        length = np.hypot(dp[:, 0], dp[:, 1])
        dp *= np.minimum(1.0, max_step / np.maximum(length, 1e-30))[:, None]
    frames = local_frames(positions)
    new = positions + np.einsum("nc,ncd->nd", dp, frames)
    c = level.acquisition.speed_of_sound * math.exp(dlnc)
    info = {"step_rms": float(np.sqrt(np.mean(np.sum(dp * dp, axis=1)))),
            "lsqr_iters": int(out[2]),
            "relative_residual": float(out[3] / max(np.linalg.norm(b), 1e-300)),
            "misfit": misfit, "image_change": dx}
    return new, c, info

"""Joint estimation of the image, the sensor positions and the speed of sound by
alternating minimisation, coarse to fine.

At each level of the schedule (:func:`oatomo.calibration.levels.schedule`) the image and
the geometry take turns on one objective, the data misfit ``||A(p, c) x - y||^2`` plus
the image's TV and the positions' Gaussian prior:

* **image step**: a few TV (FISTA) iterations with every sensor at its current estimate,
  warm-started from the previous image, with a TV weight :data:`IMAGE_LAM_SCALE` times
  the reconstruction's default (a smoother image absorbs less of the sensors' errors);
* **geometry step**: one damped Gauss-Newton step per sensor on its own record, with the
  image fixed. A sensor's record depends on its own position only, so the Jacobian of all
  sensors comes from one forward projection of the image onto a virtual array of
  ``5 N`` points (each sensor and four displaced copies, both ways along and across its
  line of sight: :func:`sensor_jacobians`); each sensor then solves a 3 x 3 system (its
  amplitude and its two coordinates, under the prior);
* **gauge**: the estimate is mapped onto the prior mean array by the least-squares
  similarity transform; its scale goes into ``c`` (a common scale of positions and speed
  of sound is invisible in the data).

Before the first round, a cross-validated search of ``c`` at the coarsest level
(:func:`~oatomo.calibration.search.speed_of_sound_scan`) brings a speed of sound that is
off by a few percent within reach; its held-out misfits also tell a scan without usable
structure. The first geometry step of the coarsest level is a 1-D search along every line
of sight over the prior box (:func:`line_search`), which brings large errors inside the
Gauss-Newton step's reach.

The level before the finest ends with a **joint Gauss-Newton step** on image, gains,
positions and ``c`` at once (:func:`~oatomo.calibration.gauss_newton.joint_gauss_newton_step`,
:data:`COARSE_JOINT_ITERS` LSQR iterations), linearised about the last image step's image,
which the per-sensor steps cannot do: there the image stays fixed and keeps explaining
part of each sensor's error, most of all of the array's smooth deformations, which an
image made from the same sensors follows. On arrays that surround the object
(:data:`JOINT_STEP_COVERAGE`) the finest level ends with :data:`JOINT_STEPS` more.

With ``reseat=True`` the finest level ends with a **held-out re-seat**
(:func:`heldout_reseat`): the image made from the same sensors it corrects can fit a
misplaced sensor's record where that sensor wrongly is (each sensor's data add structure
along its own arcs), so a sensor can end a millimetre off, or stay where the file put it,
with a record that matches. Against a TV image of the *other* sensors
(:data:`RESEAT_FOLDS` interleaved folds), every sensor is searched again along its line
of sight over the prior box; it moves where its record fits that image better, and
:data:`RESEAT_ROUNDS` more rounds of the finest level follow. It costs about a quarter
more time and is not the default (held-out scans: positions 5-10 % closer, images
+0.02-0.05 dB; ``benchmarks/calibration/reseat.py``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from oatomo.calibration.gauge import to_gauge
from oatomo.calibration.gauss_newton import JOINT_STEP_ITERS, joint_gauss_newton_step
from oatomo.calibration.levels import BOX_STD, Level, round_record
from oatomo.calibration.search import (
    JACOBIAN_STEP,
    fold_norms,
    heldout_misfits,
    interleaved_folds,
    level_norm_sq,
    local_frames,
    parabola_minimum,
    predicted_records,
    relative_misfit,
    sensor_jacobians,
    speed_of_sound_scan,
)
from oatomo.errors import InputError
from oatomo.geometry import SensorArray
from oatomo.recon.model_based import default_lambda, reconstruct_model_based

__all__ = ["JACOBIAN_STEP", "MOVE_MARGIN", "ROUNDS", "IMAGE_ITERS", "IMAGE_LAM_SCALE",
           "RELAX", "RESEAT_FOLDS", "RESEAT_ITERS", "RESEAT_ROUNDS", "JOINT_STEPS",
           "COARSE_JOINT_ITERS", "JOINT_STEP_COVERAGE", "heldout_reseat", "shifted_misfits",
           "SPEED_STEP_PIXELS", "SPEED_MAX_SENSORS", "sensor_jacobians", "gauss_newton_step",
           "line_search", "speed_points", "speed_subset", "subset_speed_scan", "upsample",
           "speed_step", "speed_probe", "SPEED_PROBE_ITERS",
           "SpeedNotIdentified", "joint_calibration"]


class SpeedNotIdentified(Exception):
    """Raised by :func:`joint_calibration` when the speed of sound has moved further than
    its ``speed_limit`` after the coarsest level; ``change`` is the relative move."""

    def __init__(self, change: float) -> None:
        super().__init__(f"the speed of sound moved {100 * change:+.1f} %")
        self.change = change


def gauss_newton_step(level: Level, image: np.ndarray, positions: np.ndarray,
                      prior_mean: np.ndarray, prior_std: float, thickness: float | None,
                      max_step: float, response: Any = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One damped Gauss-Newton (MAP) step of every sensor's position against ``image``.

    Per sensor, the record is modelled as ``a (P + J d)`` with ``P`` the predicted record,
    ``J`` its derivative along/across the line of sight, ``a`` a free amplitude and ``d``
    the displacement. The noise variance is the residual's energy over ``level.t_eff``
    independent samples; the prior is ``N(prior_mean, prior_std^2)`` per coordinate.
    Displacements are shortened to at most ``max_step`` (m).

    Returns
    -------
    positions : numpy.ndarray
        (N, 2) updated positions.
    cov : numpy.ndarray
        (N, 2, 2) posterior covariance of each position (x, y), Laplace approximation.
    misfit : numpy.ndarray
        (N,) relative misfit ``||y - a P||^2 / ||y||^2`` at the current positions.
    """
    y = level.data.astype(np.float64)
    h = level.grid.dx * JACOBIAN_STEP
    pred, jac, frames = sensor_jacobians(level, image, positions, thickness, h, response)
    pp = np.einsum("nt,nt->n", pred, pred)
    a = np.einsum("nt,nt->n", pred, y) / np.maximum(pp, 1e-300)
    r = y - a[:, None] * pred
    yy = np.maximum(np.einsum("nt,nt->n", y, y), 1e-300)
    misfit = np.einsum("nt,nt->n", r, r) / yy
    # columns: amplitude change, displacement along, across (scaled by the amplitude)
    cols = np.concatenate([pred[..., None], a[:, None, None] * jac], axis=-1)  # (N, T, 3)
    sigma2 = np.maximum(np.einsum("nt,nt->n", r, r), 1e-6 * yy) / level.t_eff
    H = np.einsum("nti,ntj->nij", cols, cols) / sigma2[:, None, None]
    g = np.einsum("nti,nt->ni", cols, r) / sigma2[:, None]
    w = 1.0 / prior_std ** 2
    offset = np.einsum("nd,ncd->nc", positions - prior_mean, frames)  # local coordinates
    H[:, 1:, 1:] += w * np.eye(2)
    g[:, 1:] -= w * offset
    H[:, 0, 0] += 1e-9 * np.maximum(H[:, 0, 0], 1e-300)
    delta = np.einsum("nij,nj->ni", np.linalg.inv(H), g)
    d_local = delta[:, 1:]
    length = np.hypot(d_local[:, 0], d_local[:, 1])
    d_local *= np.minimum(1.0, max_step / np.maximum(length, 1e-30))[:, None]
    new = positions + np.einsum("nc,ncd->nd", d_local, frames)
    # posterior covariance of the displacement: Schur complement of the amplitude
    S = H[:, 1:, 1:] - H[:, 1:, :1] @ H[:, :1, 1:] / H[:, :1, :1]
    cov_local = np.linalg.inv(S)
    cov = np.einsum("nci,ncd,nde->nie", frames, cov_local, frames)
    return new, cov, misfit


def line_search(level: Level, image: np.ndarray, positions: np.ndarray,
                prior_mean: np.ndarray, prior_std: float, box: float,
                thickness: float | None, response: Any = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Every sensor moved along its line of sight to the MAP position among candidates
    spaced ``level.step`` over +-``box`` around ``prior_mean`` (correlation of its record
    with the one ``image`` predicts, Gaussian prior, parabolic refinement). Returns the
    positions (N, 2) and the relative misfit (N,) at them."""
    n = len(positions)
    half = max(1, int(math.ceil(box / level.step)))
    offs = np.arange(-half, half + 1) * level.step
    u = local_frames(prior_mean)[:, 0]
    cand = prior_mean[:, None, :] + offs[None, :, None] * u[:, None, :]
    pred = predicted_records(level, image, cand.reshape(-1, 2), thickness, response)
    mis = relative_misfit(pred.reshape(n, len(offs), -1), level.data)
    m_min = np.maximum(mis.min(axis=1, keepdims=True), 1e-6)
    J = 0.5 * level.t_eff * mis / m_min + offs[None, :] ** 2 / (2 * prior_std ** 2)
    shift = np.array([parabola_minimum(offs, row) for row in J])
    return prior_mean + shift[:, None] * u, mis[np.arange(n), np.argmin(J, axis=1)]


#: The held-out re-seat after the finest level (``reseat=True``, :func:`heldout_reseat`):
#: interleaved folds, FISTA iterations of each fold's held-out image (warm-started at the
#: last image) and the finest level's rounds that follow it. Chosen on the tuning scans of
#: the held-out calibration benchmark (seeds 2000-2001; ``benchmarks/calibration/reseat.py``).
RESEAT_FOLDS = 4
RESEAT_ITERS = 6
RESEAT_ROUNDS = 1


def shifted_misfits(pred: np.ndarray, data: np.ndarray, base: np.ndarray,
                    shifts: np.ndarray, fs: float) -> np.ndarray:
    """``1 - rho^2`` of each record ``data[n]`` against its prediction ``pred[n]`` advanced
    by ``base[n] + shifts[k]`` seconds, ``p(t + tau)`` (a sensor moved towards the sources
    by ``c tau``), as :func:`~oatomo.calibration.search.relative_misfit` (n, K). The shift
    is a phase ramp of the zero-padded spectra (exact for a band-limited record that stays
    inside the padded window): one matrix product for all records and shifts."""
    m = 2 * pred.shape[-1]
    P = np.fft.rfft(pred.astype(np.float64), n=m)
    Y = np.fft.rfft(data.astype(np.float64), n=m)
    w = np.full(P.shape[-1], 2.0)
    w[0] = 1.0
    if m % 2 == 0:
        w[-1] = 1.0
    f = np.fft.rfftfreq(m, 1.0 / fs)
    cross = w * np.conj(Y) * P * np.exp(2j * np.pi * f[None, :] * np.asarray(base)[:, None])
    corr = (cross @ np.exp(2j * np.pi * np.outer(f, shifts))).real / m
    norm = np.sqrt(np.sum(pred.astype(np.float64) ** 2, axis=-1)
                   * np.sum(data.astype(np.float64) ** 2, axis=-1)) + 1e-300
    return 1.0 - np.clip(corr / norm[:, None], -1.0, 1.0) ** 2


def heldout_reseat(level: Level, image: np.ndarray, positions: np.ndarray,
                   prior_mean: np.ndarray, prior_std: float, box: float, lam: float,
                   norm_sq: float, thickness: float | None, response: Any = None,
                   n_folds: int = RESEAT_FOLDS, n_iter: int = RESEAT_ITERS) -> np.ndarray:
    """Every sensor searched again along its line of sight against a held-out image.

    Per fold of ``n_folds`` interleaved folds: the TV image of the other sensors
    (``n_iter`` FISTA iterations from ``image``, weight ``lam``, step from ``norm_sq``, a
    bound on ``||A||^2`` of the whole array, which holds for any subset of it);
    each of the fold's sensors is compared with that image's prediction at candidates
    spaced ``level.step`` over +-``box`` about the point of its line of sight nearest the
    prior mean (the prediction at its current position, shifted in time:
    :func:`shifted_misfits`), under the Gaussian prior about ``prior_mean``, as
    :func:`line_search`. A sensor moves to the best candidate only where its record fits
    the held-out prediction there better than at its current position.

    Returns
    -------
    numpy.ndarray
        (N, 2) positions.
    """
    n_s = len(positions)
    c = level.acquisition.speed_of_sound
    half = max(1, int(math.ceil(box / level.step)))
    offs = np.arange(-half, half + 1) * level.step
    u = local_frames(positions)[:, 0]
    # each line of sight's point nearest the prior mean, as an offset from the position
    base = np.einsum("nd,nd->n", prior_mean - positions, u)
    out = positions.copy()
    for idx in interleaved_folds(positions, n_folds):
        keep = np.setdiff1d(np.arange(n_s), idx)
        held, _ = reconstruct_model_based(level.data[keep], level.grid,
                                          SensorArray(positions[keep]), level.acquisition,
                                          method="tv", lam=lam, n_iter=n_iter, x0=image,
                                          tol=0.0, norm_sq=norm_sq, thickness=thickness,
                                          response=response)
        pred = predicted_records(level, held, positions[idx], thickness, response)
        mis = shifted_misfits(pred, level.data[idx], base[idx] / c, offs / c,
                              level.acquisition.fs)
        now = relative_misfit(pred[:, None, :], level.data[idx])[:, 0]
        shift = base[idx, None] + offs[None, :]  # (n, K) along u, from the position
        cand = positions[idx, None, :] + shift[..., None] * u[idx, None, :]
        m_min = np.maximum(mis.min(axis=1, keepdims=True), 1e-6)
        J = 0.5 * level.t_eff * mis / m_min + np.sum(
            (cand - prior_mean[idx, None, :]) ** 2, axis=-1) / (2 * prior_std ** 2)
        best = np.argmin(J, axis=1)
        better = mis[np.arange(len(idx)), best] < now
        step = np.array([parabola_minimum(offs, row) for row in J]) + base[idx]
        moved = positions[idx] + step[:, None] * u[idx]
        out[idx[better]] = moved[better]
    return out


def upsample(image: np.ndarray, n: int) -> np.ndarray:
    """``image`` (m, m) resampled to (n, n) over the same field of view (bilinear, edge
    values held beyond the outer pixel centres; values kept: images are in Pa, not per
    pixel)."""
    m = image.shape[0]
    if m == n:
        return image
    w = _linear_weights(m, n)
    out = w @ image.astype(np.float64) @ w.T
    return np.maximum(out, 0).astype(np.float32)


def _linear_weights(m: int, n: int) -> np.ndarray:
    """(n, m) linear interpolation from m pixel centres to n over the same interval."""
    z = np.clip((np.arange(n) + 0.5) * (m / n) - 0.5, 0, m - 1)  # in units of old pixels
    lo = np.minimum(np.floor(z).astype(int), m - 2) if m > 1 else np.zeros(n, int)
    frac = z - lo
    w = np.zeros((n, m))
    w[np.arange(n), lo] = 1 - frac
    if m > 1:
        w[np.arange(n), lo + 1] += frac
    return w


#: Rounds (image step + geometry step) per level, coarsest first; the finest level's
#: count is repeated for more levels.
ROUNDS = (4, 4, 4)

#: Factor on each level's estimate of ``||A||^2`` (Lanczos steps at 3 % below the speed of
#: sound the level starts at) that bounds the TV steps of the level while the sensors and
#: the speed of sound move. The bound handed to the TV after the calibration
#: (:attr:`~oatomo.calibration.Calibration.operator_norm_sq`, at the final geometry, which
#: no longer moves) leaves it out: measured on the tuning scans (seed 2000 of the held-out
#: benchmark's generator: 160- and 36-sensor rings, 300 and 200 degree arcs, four phantom
#: kinds), that bound is then 1.00-1.08 times the TV's own 10-step estimate at the
#: calibrated geometry (1.10-1.19 with it), and the warm TV's 85 iterations (its cap then)
#: gain 0.13 dB on average (textures +0.47, up to +0.94; vessel trees -0.01; disks -0.07
#: to +0.46).
MOVE_MARGIN = 1.1

#: FISTA iterations of the image step in each round (warm-started).
IMAGE_ITERS = 10

#: TV weight of the image step, in units of the reconstruction's default
#: (:func:`~oatomo.recon.model_based.default_lambda`, computed once per level). The image
#: is made from the same sensors whose positions it then corrects, so it partly explains
#: their errors (a blurred or doubled edge fits a misplaced sensor); a stronger TV leaves
#: less room for that. Chosen on the tuning scans (seed 2000 of the held-out benchmark's
#: generator, 10 geometry/phantom pairs): mean position error ratio 0.52 at 1x, 0.46 at
#: 2x, 0.43 at 3x, 0.45 at 5x; at 10x the finest level loses the thin structures and the
#: positions diverge.
IMAGE_LAM_SCALE = 3.0

#: Adaptive over-relaxation of the geometry step: growth factor and largest factor. The
#: image step partly absorbs a sensor's error (the image was made from that sensor too),
#: so each round recovers only part of the remaining error, least across the line of
#: sight, where the data see a sensor weakly. Per sensor and coordinate (along, across),
#: the step is multiplied by a factor that grows by the first number while successive
#: steps keep their sign (the estimate creeps) and falls back to 1 when the sign flips
#: or the sensor's misfit grew (it overshot).
RELAX = (1.5, 4.0)

#: Joint Gauss-Newton steps after the finest level
#: (:func:`~oatomo.calibration.gauss_newton.joint_gauss_newton_step`), on arrays covering
#: at least :data:`JOINT_STEP_COVERAGE` (rad, seen from the image centre:
#: :func:`~oatomo.calibration.estimate.angular_coverage`). Chosen on tuning
#: scans (seeds 2000-2001 of the held-out benchmark's generator, four phantom kinds, arrays
#: no report set has; ``benchmarks/calibration/joint_gauss_newton.py``): one step of 50
#: LSQR iterations changed the registered PSNR by +0.81 dB on average on a 160-sensor ring
#: (-0.06 to +4.60), +0.03 dB on a 36-sensor ring (-0.46 to +0.47), +0.59 dB on a 300
#: degree arc (-0.25 to +3.50) and -0.10 dB on a 200 degree arc (-0.72 to +0.73), where
#: the image's own freedom mimics more of a sensor's move. More steps, each linearised
#: about the image made again at the last step's geometry, gained +0.06 (two) and +0.11
#: dB (three) on average over the 160- and 36-sensor rings and the 300 degree arc (-0.37
#: to +1.16; ``benchmarks/calibration/joint_gauss_newton_refit.md``) for 0.45 and 0.9 of
#: a TV more. Forced on arcs of 230, 255 and 285 degrees (seeds 2000-2001, four kinds;
#: ``benchmarks/calibration/coverage_arcs_tuning.md``) the step changed the PSNR by +0.02,
#: -0.01 and +0.10 dB on average and left the positions further off on all three.
JOINT_STEPS = 1
JOINT_STEP_COVERAGE = math.radians(300.0)

#: LSQR iterations of the joint Gauss-Newton step that ends the level before the finest
#: (on every array; 0: none). That level has a quarter of the pixels and half the band, so
#: its iterations cost about a third of the finest's; what the step moves there are the
#: array's smooth deformations, the directions in which LSQR converges last (on a report
#: scan, the 270 degree arc's thick vessel tree, 93 % and 82 % of what the finest level's
#: step moved between 50 and 200 iterations lay in polynomials of degree 4 or less of the
#: sensors' coordinates; a Fourier preconditioner of the image block and redundant
#: smooth-mode columns did not speed it up). Chosen on tuning scans (seeds 2000-2001 of
#: the held-out benchmark's generator, four phantom kinds, arrays no report set has;
#: ``benchmarks/calibration/coarse_joint_step_tuning.md``): with 100 iterations the
#: registered PSNR changed by +1.25 dB on average on a 36-sensor ring (+0.02 to +3.66),
#: +0.07 on a 160-sensor ring, +0.52 on a 300 degree arc, +0.37 on a 200 degree arc, +0.02,
#: +0.42 and +0.11 on 100 and 150 degree arcs and a 96-element linear array (56 scans:
#: +0.39, worst -0.65); on the first four arrays 50 iterations gained less (+0.34 on the
#: 32 scans, one -4.0), 200 as much as 100 (+0.55 both) for about a fifth more
#: calibration time.
COARSE_JOINT_ITERS = 100

#: Held-out folds, TV iterations and the fewest points of the cross-validated search of
#: the speed of sound at the coarsest level, before the first round
#: (:func:`~oatomo.calibration.search.speed_of_sound_scan`; :func:`speed_points`).
SPEED_FOLDS, SPEED_ITERS, SPEED_POINTS = 2, 12, 5

#: Largest step of that search, as the common shift it makes at the sensors' mean distance
#: from the image centre, in pixels of the coarsest level. The held-out misfit's dip at
#: the right speed is about a pixel of that shift wide, so it narrows as the array grows:
#: with a fixed 1.5 % step the search jumped over it on 128- and 256-sensor rings
#: (r 38-45 mm) and took the speed of sound further from the truth than the file's.
SPEED_STEP_PIXELS = 0.35

#: Most sensors the speed search uses (evenly spaced in angle about the centroid): its
#: cost grows with the points times the sensors.
SPEED_MAX_SENSORS = 64


def speed_subset(positions: np.ndarray) -> np.ndarray:
    """Indices (sorted) of the at most :data:`SPEED_MAX_SENSORS` sensors the speed search
    uses: evenly spaced in angle about the centroid."""
    n = len(positions)
    order = np.argsort(np.arctan2(*(positions - positions.mean(axis=0)).T[::-1]),
                       kind="stable")
    return np.sort(order[np.linspace(0, n, min(n, SPEED_MAX_SENSORS),
                                     endpoint=False).astype(int)])


def subset_speed_scan(level: Level, positions: np.ndarray, c: float, span: float,
                      thickness: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The cross-validated speed search of ``level`` (its relative speeds and per-sensor
    held-out misfits, :func:`~oatomo.calibration.search.speed_of_sound_scan`) on the
    sensors of :func:`speed_subset`, in :data:`SPEED_FOLDS` interleaved folds, with
    :data:`SPEED_ITERS` iterations and :func:`speed_points` points."""
    sub = speed_subset(positions)
    if len(sub) < len(positions):
        level = replace(level, data=level.data[sub])
    return speed_of_sound_scan(level, positions[sub],
                               interleaved_folds(positions[sub], SPEED_FOLDS), c, span,
                               SPEED_ITERS, thickness, speed_points(level, positions, span))


def speed_points(level: Level, positions: np.ndarray, span: float) -> int:
    """Points of the speed search over ``c (1 +- span)`` (odd, at least
    :data:`SPEED_POINTS`): steps of at most :data:`SPEED_STEP_PIXELS` coarsest pixels of
    common shift at the sensors' mean distance from the image centre; 1 when ``span`` is 0."""
    if span <= 0:
        return 1
    centre = np.array([float(np.mean(level.grid.x)), float(np.mean(level.grid.y))])
    distance = float(np.mean(np.hypot(*(np.asarray(positions) - centre).T)))
    step = SPEED_STEP_PIXELS * level.grid.dx / max(distance, 1e-12)
    half = max((SPEED_POINTS - 1) // 2, math.ceil(span / step - 1e-9))
    return 2 * half + 1

#: Median held-out correlation (squared: ``1 - misfit``) below which the data are
#: declared to carry no usable structure.
MIN_CORRELATION = 0.2


#: LSQR iterations of :func:`speed_probe`: the joint step's. On the tuning scans of
#: ``benchmarks/calibration/speed_step.py`` 20 iterations cost a third as much but
#: shrank the two run-off calibrations' answers from 1.55 and 1.01 % to 1.20 and 0.55 %,
#: where the others' largest is 0.36 % (0.27 %).
SPEED_PROBE_ITERS = JOINT_STEP_ITERS


def speed_step(level: Level, image: np.ndarray, positions: np.ndarray,
               nominal: np.ndarray, prior_std: float, norm_sq: float, c: float,
               thickness: float | None, response: Any = None, **step_kw: Any
               ) -> tuple[float, dict[str, Any]]:
    """One speed step at ``level`` and speed of sound ``c``: the image change, the gains
    and ``ln c`` by LSQR with the positions held
    (:func:`~oatomo.calibration.gauss_newton.joint_gauss_newton_step` with
    ``move_sensors=False``, ``step_kw`` passed on). Returns the new ``c`` and the step's
    ``info``."""
    lev = replace(level, acquisition=replace(level.acquisition, speed_of_sound=c))
    _, c_new, info = joint_gauss_newton_step(lev, image, positions, nominal, prior_std,
                                             norm_sq, thickness, response, True,
                                             move_sensors=False, **step_kw)
    return c_new, info


def speed_probe(level: Level, image: np.ndarray, positions: np.ndarray,
                nominal: np.ndarray, prior_std: float, norm_sq: float, c: float,
                thickness: float | None, response: Any = None,
                n_iter: int = SPEED_PROBE_ITERS) -> float:
    """The relative change of the speed of sound ``c`` that one :func:`speed_step` asks
    for at a calibration's end (``level``: the finest, its ``image`` and ``norm_sq``). A
    calibration whose ``c`` ran off along with the array's shape asks for a large one (the
    tuning scans of ``benchmarks/calibration/speed_step.py``); ``n_iter`` LSQR
    iterations."""
    c_new, _ = speed_step(level, image, positions, nominal, prior_std, norm_sq, c,
                          thickness, response, n_iter=n_iter)
    return c_new / c - 1


def joint_calibration(levels: list[Level], nominal: np.ndarray, c: float, prior_std: float,
                      *, speed_of_sound: bool = True, thickness: float | None = None,
                      response: Any = None, rounds: tuple[int, ...] = ROUNDS,
                      image_iters: int = IMAGE_ITERS,
                      image_lam: float = IMAGE_LAM_SCALE,
                      relax: tuple[float, float] = RELAX,
                      speed_span: float = 0.03, on_round: Any = None,
                      speed_limit: float | None = None, reseat: bool = False,
                      joint_steps: int = JOINT_STEPS, speed_steps: int = 0,
                      coarse_joint_iters: int = COARSE_JOINT_ITERS
                      ) -> tuple[np.ndarray, float, np.ndarray, list[dict[str, float]],
                                 np.ndarray, float, dict[str, float]]:
    """Alternate image and geometry steps on every level (see the module docstring).

    Parameters
    ----------
    levels
        The coarse-to-fine schedule (:func:`oatomo.calibration.levels.schedule`).
    nominal
        (N, 2) prior mean positions (m).
    c
        Starting speed of sound (m/s).
    prior_std
        Per-coordinate prior standard deviation of the positions (m).
    speed_of_sound
        Search ``c`` over ``c (1 +- speed_span)`` first and move the gauge's scale into it
        (False: keep ``c``, fix the scale of the array).
    thickness, response
        Slab thickness and the detector response of the forward model.
    rounds, image_iters, image_lam, relax
        See :data:`ROUNDS`, :data:`IMAGE_ITERS`, :data:`IMAGE_LAM_SCALE`, :data:`RELAX`.
    on_round
        ``on_round(record)`` after every round (the record appended to ``history``).
    speed_limit
        With ``speed_of_sound``: stop after the coarsest level when ``c`` has moved
        further than this (relative) from the starting ``c`` (None: never).
    reseat
        End the finest level with the held-out re-seat (:func:`heldout_reseat`) and
        :data:`RESEAT_ROUNDS` more rounds.
    joint_steps
        Joint Gauss-Newton steps on image, gains, positions and ``c`` after the finest
        level (:func:`~oatomo.calibration.gauss_newton.joint_gauss_newton_step`,
        linearised about the last image step's image; each further step about the image
        made again, warm, at the step's geometry); see :data:`JOINT_STEPS`.
    speed_steps
        With ``speed_of_sound``: then Gauss-Newton steps on the image, the gains and
        ``c`` with the positions held (``move_sensors=False``), each followed by the
        image made again at the new ``c``; 0 (default): none. Measured on short
        apertures and not adopted (``benchmarks/calibration/speed_step.py``).
    coarse_joint_iters
        LSQR iterations of the joint Gauss-Newton step that ends the level before the
        finest (see :data:`COARSE_JOINT_ITERS`); 0: none.

    Returns
    -------
    positions : numpy.ndarray
        (N, 2) estimate, in the gauge of ``nominal``.
    c : float
        Speed of sound (m/s).
    cov : numpy.ndarray
        (N, 2, 2) posterior covariance of each position from the last geometry step.
    history : list of dict
        Per round: level, round, pixel, band, misfit, speed_of_sound, step_rms.
    image : numpy.ndarray
        The last image step's TV image (float32, on the finest level's grid).
    norm_sq : float
        The finest level's bound on ``||A||^2`` (Lanczos steps at 3 % below the speed
        of sound it started with, times 1.1 for the sensors' moves), which the image
        steps used as their Lipschitz constant.
    heldout : dict
        ``file`` and ``calibrated``: the mean held-out misfit ``1 - rho^2`` at the
        coarsest level of every sensor's record against the one the TV image of the
        other folds predicts (the speed search's folds and iterations), with the
        starting positions and speed of sound and with the estimate
        (:func:`~oatomo.calibration.search.heldout_misfits`). A geometry the data
        identify predicts sensors it was not fitted to better than the file's.

    Raises
    ------
    SpeedNotIdentified
        ``c`` moved further than ``speed_limit`` over the speed search and the coarsest
        level.
    """
    box = BOX_STD * prior_std
    pos = nominal.copy()
    c_start = c
    n_s = len(pos)
    cov = np.tile(np.eye(2) * prior_std ** 2, (n_s, 1, 1))
    history: list[dict[str, float]] = []
    reseat_rounds = RESEAT_ROUNDS if reseat else 0
    total = sum(rounds[min(li, len(rounds) - 1)] for li in range(len(levels))) \
        + reseat_rounds + joint_steps + (speed_steps if speed_of_sound else 0) \
        + (1 if coarse_joint_iters and len(levels) > 1 else 0)
    x: np.ndarray | None = None

    def image_step(level: Level, pos: np.ndarray, c: float, x: np.ndarray | None,
                   lam: float, norm: float) -> np.ndarray:
        """The TV image of ``level``'s records at ``pos`` and ``c``, warm from ``x``."""
        acq = replace(level.acquisition, speed_of_sound=c)
        return reconstruct_model_based(level.data, level.grid, SensorArray(pos), acq,
                                       method="tv", lam=lam, n_iter=image_iters, x0=x,
                                       tol=0.0, norm_sq=norm, thickness=thickness,
                                       response=response)[0]

    def record(li: int, r: int, misfit: np.ndarray, c: float, step: float) -> None:
        """Round ``r`` of level ``li`` into the history (and to ``on_round``)."""
        rec = round_record(levels[li], li, r, len(history) + 1, total, misfit, c, step)
        if on_round is not None:
            on_round(rec)
        history.append(rec)

    def joint_step(level: Level, x: np.ndarray, pos: np.ndarray, c: float,
                   cov: np.ndarray, norm: float, **step_kw: Any
                   ) -> tuple[np.ndarray, float, np.ndarray, float, np.ndarray]:
        """One joint Gauss-Newton step at ``level`` from ``pos`` and ``c``, mapped onto
        the gauge: ``(pos, c, cov, step, misfit)``."""
        lev = replace(level, acquisition=replace(level.acquisition, speed_of_sound=c))
        new, c_new, info = joint_gauss_newton_step(lev, x, pos, nominal, prior_std, norm,
                                                   thickness, response, speed_of_sound,
                                                   max_step=box, **step_kw)
        pos, cov, s, step = to_gauge(new, pos, nominal, cov, scale=True)
        return pos, c_new * s if speed_of_sound else c, cov, step, info["misfit"]

    # the speed of sound, cross-validated; its held-out misfits also test the structure
    span = speed_span if speed_of_sound else 0.0
    folds = interleaved_folds(nominal, SPEED_FOLDS)
    # on at most SPEED_MAX_SENSORS sensors (evenly in angle): the search needs many points
    # on a large array (speed_points), and the dip's width does not depend on the count
    rel, held = subset_speed_scan(levels[0], pos, c, span, thickness)
    if held.shape[1] == n_s:
        heldout = {"file": float(held[int(np.argmin(np.abs(rel)))].mean())}
    else:  # every sensor, as the calibrated geometry's below
        acq0 = replace(levels[0].acquisition, speed_of_sound=c)
        heldout = {"file": float(heldout_misfits(
            replace(levels[0], acquisition=acq0), pos, acq0, folds, SPEED_ITERS, thickness,
            fold_norms(levels[0], pos, folds, c * (1 - span))).mean())}
    # at the best of the speeds tried: thin structures decorrelate a few % off in c
    if float(np.max(np.median(1 - held, axis=1))) < MIN_CORRELATION ** 2:
        raise InputError("the scan's signals carry too little structure to calibrate on "
                         "(held-out predictions do not correlate with the data)")
    if span > 0:
        c *= 1 + parabola_minimum(rel, held.mean(axis=1))
    for li, level in enumerate(levels):
        gain = np.ones((n_s, 2))
        last: np.ndarray | None = None
        last_mis = np.full(n_s, np.inf)
        if x is not None:
            x = upsample(x, level.grid.n)
        # ||A||^2 once per level, at the lowest speed it may reach (the gain is 1 / c^2),
        # inflated for the sensors' moves
        slow = replace(level.acquisition, speed_of_sound=c * 0.97)
        norm = MOVE_MARGIN * level_norm_sq(level.grid, SensorArray(pos), slow,
                                           thickness=thickness, response=response)
        lam = image_lam * default_lambda(
            "tv", level.data, level.grid, SensorArray(pos),
            replace(level.acquisition, speed_of_sound=c), thickness=thickness,
            response=response)
        n_rounds = rounds[min(li, len(rounds) - 1)]
        finest = li == len(levels) - 1
        for r in range(n_rounds + (reseat_rounds if finest else 0)):
            if r == n_rounds:  # the re-seat, then its rounds, with no over-relaxation
                acq = replace(level.acquisition, speed_of_sound=c)
                pos = heldout_reseat(replace(level, acquisition=acq), x, pos, nominal,
                                     prior_std, box, lam, norm, thickness, response,
                                     n_folds=RESEAT_FOLDS, n_iter=RESEAT_ITERS)
                last, gain = None, np.ones((n_s, 2))
            lev = replace(level, acquisition=replace(level.acquisition, speed_of_sound=c))
            x = image_step(level, pos, c, x, lam, norm)
            if li == 0 and r == 0:
                new, mis = line_search(lev, x, pos, nominal, prior_std, box, thickness,
                                       response)
            else:
                new, cov, mis = gauss_newton_step(lev, x, pos, nominal, prior_std,
                                                  thickness, level.grid.dx, response)
                frames = local_frames(pos)
                d = np.einsum("nd,ncd->nc", new - pos, frames)
                if last is not None:
                    same = np.sign(d) == np.sign(last)
                    gain = np.where(same, np.minimum(gain * relax[0], relax[1]), 1.0)
                    # a sensor whose misfit grew since the last step went too far
                    gain[mis > last_mis] = 1.0
                last, last_mis = d, mis
                new = pos + np.einsum("nc,ncd->nd", d * gain, frames)
            pos, cov, s, step = to_gauge(new, pos, nominal, cov, scale=True)
            if speed_of_sound:
                c *= s
            record(li, r, mis, c, step)
        if li == 0 and speed_of_sound and speed_limit is not None \
                and abs(c / c_start - 1) > speed_limit:
            raise SpeedNotIdentified(c / c_start - 1)
        if coarse_joint_iters and li == len(levels) - 2:
            # the joint step where its iterations are cheap (a quarter of the pixels): it
            # moves the array's smooth deformations, which the per-sensor steps leave
            pos, c, cov, step, mis = joint_step(level, x, pos, c, cov, norm,
                                                n_iter=coarse_joint_iters)
            record(li, n_rounds, mis, c, step)
    assert x is not None
    level = levels[-1]
    for k in range(joint_steps):
        pos, c, cov, step, mis = joint_step(level, x, pos, c, cov, norm)
        if k + 1 < joint_steps:  # the next step is linearised about the image made here
            x = image_step(level, pos, c, x, lam, norm)
        record(len(levels) - 1, n_rounds + reseat_rounds + k, mis, c, step)
    for k in range(speed_steps if speed_of_sound else 0):
        # the speed of sound with the image and the gains, the positions held; then the
        # image again at the new speed (warm, as a round's)
        c, info = speed_step(level, x, pos, nominal, prior_std, norm, c, thickness,
                             response)
        x = image_step(level, pos, c, x, lam, norm)
        record(len(levels) - 1, n_rounds + reseat_rounds + joint_steps + k, info["misfit"],
               c, 0.0)
    # as the speed search computed the file's: each fold's ||A||^2 at the lowest speed
    norms = fold_norms(levels[0], pos, folds, c * (1 - span))
    acq = replace(levels[0].acquisition, speed_of_sound=c)
    heldout["calibrated"] = float(heldout_misfits(replace(levels[0], acquisition=acq), pos,
                                                  acq, folds, SPEED_ITERS, thickness,
                                                  norms).mean())
    return pos, c, cov, history, x, norm, heldout

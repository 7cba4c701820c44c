"""The self-calibration driver: :func:`calibrate_sinogram` (arrays) and :func:`calibrate`
(a scan or scan file), which run the coarse-to-fine per-sensor search of
:mod:`oatomo.calibration.search` under the prior of :mod:`oatomo.calibration.prior`, fixing
the gauge after every round (see :mod:`oatomo.calibration` for the method)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any

import numpy as np

from oatomo._blas import one_blas_thread
from oatomo._limits import check_integer
from oatomo.calibration.gauge import to_gauge
from oatomo.calibration.joint import (
    COARSE_JOINT_ITERS,
    JOINT_STEP_COVERAGE,
    JOINT_STEPS,
    MIN_CORRELATION,
    MOVE_MARGIN,
    SpeedNotIdentified,
    joint_calibration,
    speed_probe,
)
from oatomo.calibration.levels import BOX_STD, round_record, schedule
from oatomo.calibration.prior import position_prior
from oatomo.calibration.result import Calibration
from oatomo.calibration.search import (
    fit_fold,
    heldout_image,
    interleaved_folds,
    level_norm_sq,
    search_speed_of_sound,
)
from oatomo.errors import InputError
from oatomo.forward import check_sinogram
from oatomo.geometry import Acquisition, Grid, SensorArray, check_geometry, resample
from oatomo.io import as_scan, default_grid, require_plane
from oatomo.io.grid import OBJECT_MARGIN, object_extent
from oatomo.progress import Callback

logger = logging.getLogger(__name__)

__all__ = ["MIN_SENSORS", "FINE_FOLDS", "MIN_CORRELATION", "MIN_SPEED_COVERAGE",
           "MAX_SPEED_CHANGE", "EARLY_SPEED_FACTOR", "NOTE_RECORD", "SPARSE_PITCH",
           "OBJECT_COVER", "OBJECT_GRID_MAX", "calibration_grid", "angular_coverage",
           "angular_pitch",
           "identifiability_notes", "checked_input",
           "calibrate_sinogram", "calibrate"]

#: Attribute set on the log records of :attr:`Calibration.notes` (logged as warnings for
#: library users; the command line drops them from its log, as its report prints them).
NOTE_RECORD = "calibration_note"

#: Fewest sensors self-calibration accepts (each fold must still form an image).
MIN_SENSORS = 8

#: On an array covering less than :data:`MIN_SPEED_COVERAGE`, an estimate of the speed of
#: sound that moves further than this (relative) from the file's is taken as not
#: identified: the file's is kept and the positions are calibrated again at it. On a short
#: aperture this calibration tells ``c`` from the array's scale and the object's depth
#: poorly (the records themselves hold it to about 0.1 %:
#: ``benchmarks/calibration/identifiability_bound.py``); on the
#: tuning scans of ``benchmarks/calibration/identifiability.py`` (seeds 3000 and 3100:
#: 90-150 deg arcs and 64/96-element linear arrays, five phantom kinds, the file's ``c``
#: off by up to 2 %) every calibration that ended below TV with the file's geometry on such
#: an array had moved ``c`` by 2.6-5.8 %; the largest move among those that gained was
#: 2.4 %.
MAX_SPEED_CHANGE = 0.025

#: On a short aperture, a calibration whose ``c`` moved less than ``max_speed_change``
#: can be tested by one speed step at its end (:func:`~oatomo.calibration.joint.speed_probe`,
#: the positions held); when that step asks for a relative change above this, ``c`` is
#: taken to have run off with the array's shape and the file's is kept, as above. None
#: (the default): no test. Measured and not adopted (``benchmarks/calibration/
#: speed_step.py``, config ``p0.6``): on the tuning scans (100 and 150 degree arcs, a
#: 96-element linear array, seeds 2000-2001, four phantom kinds; 23 calibrations that
#: kept their estimate) the probe asked for at most 0.36 % on 21 and for 1.55 and 1.01 %
#: on the two whose ``c`` had run off (-3.8 and -2.7 % from the truth, scale gauge
#: removed), which at the file's ``c`` gained 1.07 and 1.00 dB; with 0.006 it fired on
#: none of the 18 held-out short-aperture scans of ``heldout_default.py`` (a 135 degree
#: arc's texture, whose ``c`` ran off to -2.0 %, asked for -0.03 %), for about a third to
#: half a 50-iteration TV more on each.
SPEED_PROBE_LIMIT: float | None = None

#: A calibration whose ``c`` has moved more than this factor times ``max_speed_change``
#: by the end of its coarsest level is stopped there and run at the file's ``c`` at once,
#: instead of at the end of its finest level (the same estimate, one schedule less). On the
#: tuning scans of the rule above (seeds 3000 and 3100, short apertures, 40 scans) every
#: move beyond 3 % after the coarsest level ended beyond 2.5 % (three scans), while moves
#: of 2.5-3 % ended at 1.3-2.1 % on three others: the factor keeps every decision of the
#: rule as it was (``benchmarks/calibration/speed_rule.py --early``).
EARLY_SPEED_FACTOR = 1.2

#: Median angular pitch (rad) from which an array's sensor positions are reported as
#: weakly identifiable (:func:`identifiability_notes`): 15 deg, 24 sensors on a full ring.
#: On the tuning scans of ``benchmarks/calibration/identifiability.py`` the calibrated
#: positions of 12-, 16- and 24-sensor rings ended at a median 0.9 of the file's error
#: (0.07-1.45) against 0.3 on denser arrays.
SPARSE_PITCH = math.radians(15.0)

#: A grid whose field of view is less than this fraction of the object's extent seen in
#: the data (:func:`oatomo.io.grid.object_fov`) cuts the object, whatever its shape: that
#: extent is :data:`~oatomo.io.grid.OBJECT_MARGIN` times the diameter of the circle the
#: object reaches, and the smallest square holding such an object (a square object) has
#: that diameter over sqrt(2) as its side. An object cut by the image's border ruins a
#: calibration (records the image cannot explain move the sensors), so :func:`calibrate`
#: then calibrates on a grid of the object's extent (:func:`calibration_grid`). On the
#: tuning scans of ``benchmarks/calibration/joint_objective.py fov`` (seeds 2000 and
#: 2001, the phantoms filling the benchmark's 12.8 mm field of view) a grid 15 % smaller
#: than the object cost 5.2 dB on average against one that just holds it, one 25 % larger
#: 1.3 dB (``benchmarks/calibration/object_grid.py`` measures the rule).
OBJECT_COVER = 1.0 / (OBJECT_MARGIN * math.sqrt(2.0))

#: Most pixels per side of a widened calibration grid (:func:`calibration_grid`): the
#: default image grid's (:func:`oatomo.io.default_grid`).
OBJECT_GRID_MAX = 256

#: Folds at the finest level (the held-out images cost most there).
FINE_FOLDS = 4

#: Angular coverage of the array around the grid's centre (rad) from which ``c`` is
#: estimated by default (``speed_of_sound="auto"``).
MIN_SPEED_COVERAGE = math.pi


def angular_coverage(positions: np.ndarray) -> float:
    """The angle (rad) the sensors span around the origin (the grid's centre): 2 pi less
    the largest angular gap between neighbouring sensors."""
    ang = np.sort(np.arctan2(positions[:, 1], positions[:, 0]))
    gaps = np.diff(np.concatenate([ang, ang[:1] + 2 * math.pi]))
    return float(2 * math.pi - gaps.max())




def checked_input(sinogram: np.ndarray, sensors: SensorArray, acquisition: Acquisition,
                  grid: Grid) -> tuple[np.ndarray, SensorArray, Acquisition, Grid]:
    """Validated geometry and the (N, T) record to calibrate on (the mean of the frames);
    :class:`~oatomo.errors.InputError` for bad geometry, too few sensors
    (:data:`MIN_SENSORS`) or all-zero signals."""
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


@one_blas_thread
def calibrate_sinogram(
    sinogram: np.ndarray,
    sensors: SensorArray,
    acquisition: Acquisition,
    grid: Grid,
    *,
    prior_std: float | str | None = None,
    speed_of_sound: bool | str = True,
    speed_span: float = 0.03,
    n_levels: int = 3,
    n_folds: int = 8,
    n_iter: int = 30,
    thickness: float | None = None,
    setup_toml: str | None = None,
    callback: Callback | None = None,
    method: str = "joint",
    response: Any = None,
    max_speed_change: float | None = MAX_SPEED_CHANGE,
    reseat: bool = False,
    joint_steps: int | None = None,
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
        them, else :data:`~oatomo.calibration.prior.DEFAULT_PRIOR_REL` times the array's
        radius. ``"data"``: estimated from the scan by one scout round of the coarsest
        level along the lines of sight over a wide box (+-4 x
        :data:`~oatomo.calibration.prior.SCOUT_REL` of the radius): the spread of the
        estimated shifts about their mean, less the fits' own posterior variance, clipped
        to :data:`~oatomo.calibration.prior.SCOUT_RANGE` of the radius. It tracks the error
        size on disks and retina crops but can overestimate it on thin vessel trees with
        small errors (docs/results/calibration.rst), so it is an option, not the default.
    speed_of_sound
        True (default): estimate ``c``; False: keep the file's; ``"auto"``: estimate it
        only when the array surrounds the image over at least :data:`MIN_SPEED_COVERAGE`
        (seen from the grid's centre). Measured on the held-out benchmark, keeping ``c``
        on a 120 deg arc and a linear array lost 2-4 dB against estimating it, so
        ``"auto"`` is not the default.
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
        Progress (:data:`oatomo.progress.Callback`): ``callback("calibrate", step,
        rounds_total)`` after each round; each round's record is kept in
        :attr:`Calibration.history`.
    method
        ``"joint"`` (default): image, positions and speed of sound by alternating TV and
        per-sensor Gauss-Newton steps (:mod:`oatomo.calibration.joint`); ``"search"``: the
        per-sensor candidate search against held-out images
        (:mod:`oatomo.calibration.search`; ``n_folds`` and ``speed_span`` apply to it).
    response
        The detector's impulse response (:class:`oatomo.response.DetectorResponse`), made
        part of the forward model of the joint method; None: point sensors of flat band.
    max_speed_change
        On an array covering less than :data:`MIN_SPEED_COVERAGE` (joint method,
        ``speed_of_sound=True``): the largest relative change of ``c`` from the file's that
        is taken as identified; an estimate beyond it is replaced by a calibration at the
        file's ``c`` (:data:`MAX_SPEED_CHANGE`, and :attr:`Calibration.notes` says so).
        None: any estimate stands.
    reseat
        Joint method: end with a held-out re-seat (every sensor searched again along its
        line of sight against an image of the other sensors, then one more round of the
        finest level: :func:`oatomo.calibration.joint.heldout_reseat`). It catches a
        sensor that the image holds at a wrong position, about a quarter more time; on
        held-out scans the positions ended 5-10 % closer to the truth and the images
        within +0.05 dB (docs/results/calibration.rst).
    joint_steps
        Joint method: Gauss-Newton steps on the image, the sensors' gains, positions and
        the speed of sound together after the finest level
        (:func:`oatomo.calibration.gauss_newton.joint_gauss_newton_step`; 0: none). None
        (default): :data:`~oatomo.calibration.joint.JOINT_STEPS` on an array covering at
        least :data:`~oatomo.calibration.joint.JOINT_STEP_COVERAGE` (300 deg) seen from
        the image centre, else none (on a 200 deg arc the step did not pay on the tuning
        scans); and on every array one joint step of
        :data:`~oatomo.calibration.joint.COARSE_JOINT_ITERS` LSQR iterations at the end
        of the level before the finest. 0: no joint step at all; a positive count: that
        many after the finest level, and the one before it.

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
    See :mod:`oatomo.calibration` for the method and the gauge. The estimate is deterministic:
    no random draws are made.
    """
    t_start = time.perf_counter()
    y, sensors, acquisition, grid = checked_input(sinogram, sensors, acquisition, grid)
    n_s = sensors.n_sensors
    for name, v, lo in (("n_levels", n_levels, 1), ("n_folds", n_folds, 2),
                        ("n_iter", n_iter, 1)):
        check_integer(v, name, lo)
    if joint_steps is not None:
        check_integer(joint_steps, "joint_steps", 0)
    if n_folds > n_s:
        raise InputError(f"n_folds={n_folds} exceeds the number of sensors ({n_s})")
    if not (math.isfinite(speed_span) and 0 <= speed_span < 0.5):
        raise InputError(f"speed_span must be in [0, 0.5), got {speed_span}")
    if max_speed_change is not None and not (
            isinstance(max_speed_change, (int, float)) and 0 < max_speed_change < 0.5):
        raise InputError(f"max_speed_change must be in (0, 0.5) or None, got "
                         f"{max_speed_change!r}")
    coverage = angular_coverage(sensors.positions)
    coarse_iters = COARSE_JOINT_ITERS if joint_steps != 0 else 0
    if joint_steps is None:
        joint_steps = JOINT_STEPS if coverage >= JOINT_STEP_COVERAGE else 0
    if speed_of_sound == "auto":
        speed_of_sound = coverage >= MIN_SPEED_COVERAGE
        logger.info("calibration: %s the speed of sound (array coverage %.0f deg)",
                    "estimating" if speed_of_sound else "keeping", math.degrees(coverage))
    elif not isinstance(speed_of_sound, bool):
        raise InputError(f"speed_of_sound must be True, False or 'auto', got "
                         f"{speed_of_sound!r}")
    if method not in ("joint", "search"):
        raise InputError(f"calibration method must be 'joint' or 'search', got {method!r}")
    if reseat and method != "joint":
        raise InputError("reseat applies to the joint calibration method, not 'search' "
                         "(which fits every sensor against held-out images already)")
    nominal, prior_std, source = position_prior(
        y, acquisition, grid, sensors.positions.astype(np.float64), prior_std, setup_toml,
        n_levels, n_folds, n_iter, thickness)
    if method == "joint":
        # the records' band limits in the frequency domain: the same filter as the
        # Butterworth band-pass without SciPy's signal module, whose import alone costs
        # about a third of a 64-sensor TV reconstruction
        levels = schedule(y, acquisition, grid, prior_std, n_levels, fft=True)

        def on_round(rec: dict[str, Any]) -> None:
            logger.info("calibration level %d round %d: misfit %.4f, c %.2f m/s, "
                        "step %.1f um", rec["level"], rec["round"], rec["misfit"],
                        rec["speed_of_sound"], rec["step_rms"] * 1e6)
            if callback is not None:
                callback("calibrate", rec["step"], rec["rounds_total"])

        short = coverage < MIN_SPEED_COVERAGE
        limit = max_speed_change if speed_of_sound and short else None

        def run(estimate_c: bool) -> tuple[Any, ...]:
            return joint_calibration(levels, nominal, acquisition.speed_of_sound, prior_std,
                                     speed_of_sound=estimate_c, thickness=thickness,
                                     response=response, speed_span=speed_span,
                                     on_round=on_round, speed_limit=None if limit is None
                                     else EARLY_SPEED_FACTOR * limit,
                                     reseat=bool(reseat), joint_steps=joint_steps,
                                     coarse_joint_iters=coarse_iters)

        notes = identifiability_notes(sensors.positions.astype(np.float64))
        probe = None
        try:
            positions, c, cov, history, image, norm_sq, heldout = run(speed_of_sound)
            change = c / acquisition.speed_of_sound - 1
            if limit is not None and abs(change) <= limit and SPEED_PROBE_LIMIT is not None:
                probe = speed_probe(levels[-1], image, positions, nominal, prior_std,
                                    norm_sq, c, thickness, response)
        except SpeedNotIdentified as stop:
            change = stop.change
        why = None
        if probe is not None and abs(probe) > SPEED_PROBE_LIMIT:
            why = f"and the records ask for {100 * probe:+.1f} % more"
        elif limit is not None and abs(change) > limit:
            why = f"more than {100 * limit:g} %"
        if why is not None:
            notes.append(f"the speed of sound is not identifiable from this aperture (the "
                         f"estimate moved {100 * change:+.1f} % from the file's, {why}): "
                         f"the file's is kept and the positions are calibrated at it")
            positions, c, cov, history, image, norm_sq, heldout = run(False)
        for note in notes:  # marked: the CLI prints the notes in its own report
            logger.warning("calibration: %s", note, extra={NOTE_RECORD: True})
        # the TV after the calibration runs at the final geometry: no margin for moves
        return _result(positions, c, cov, sensors, acquisition, prior_std, history,
                       t_start, source, *((image, norm_sq / MOVE_MARGIN)
                                          if levels[-1].grid.n == grid.n else (None, None)),
                       heldout=heldout, notes=notes)
    box = BOX_STD * prior_std
    c = acquisition.speed_of_sound
    positions = nominal.copy()
    folds = interleaved_folds(nominal, n_folds)
    history: list[dict[str, float]] = []
    cov = np.tile(np.eye(2) * prior_std ** 2, (n_s, 1, 1))
    levels = schedule(y, acquisition, grid, prior_std, n_levels)
    for li, level in enumerate(levels):
        if li == 0 and speed_of_sound and speed_span > 0:
            c = search_speed_of_sound(level, positions, folds, c, speed_span, n_iter,
                                      thickness)
            logger.info("calibration: speed of sound %.2f m/s after the 1-D search", c)
        folds = interleaved_folds(nominal, min(n_folds, FINE_FOLDS)
                                  if li == len(levels) - 1 else n_folds)
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
                    norms.append(level_norm_sq(level.grid, sub, acq))
                # warm starts after the first round need fewer iterations
                images[f] = heldout_image(level.data[keep], level.grid, sub, acq,
                                          n_iter if r == 0 else max(1, n_iter // 2),
                                          images[f], norms[f])
                new[idx], cov[idx], mis[idx] = fit_fold(
                    lev, images[f], new, nominal, idx, prior_std, box, thickness)
            if li == 0 and r == 0 and float(np.median(1 - mis)) < MIN_CORRELATION ** 2:
                raise InputError("the scan's signals carry too little structure to "
                                 "calibrate on (held-out predictions do not correlate with "
                                 "the data)")
            # the gauge: similarity transform onto the nominal array; its scale goes to c
            positions, cov, s, step = to_gauge(new, positions, nominal, cov,
                                               scale=speed_of_sound)
            if speed_of_sound:
                c *= s
            rec = round_record(level, li, r, len(history) + 1,
                               sum(v.rounds for v in levels), mis, c, step)
            history.append(rec)
            logger.info("calibration level %d round %d: misfit %.4f, c %.2f m/s, step %.1f um",
                        li, r, rec["misfit"], c, step * 1e6)
            if callback is not None:
                callback("calibrate", rec["step"], rec["rounds_total"])
    return _result(positions, c, cov, sensors, acquisition, prior_std, history, t_start,
                   source)


def _result(positions: np.ndarray, c: float, cov: np.ndarray, sensors: SensorArray,
            acquisition: Acquisition, prior_std: float, history: list[dict[str, float]],
            t_start: float, source: str, image: np.ndarray | None = None,
            norm_sq: float | None = None, heldout: dict[str, float] | None = None,
            notes: list[str] | None = None) -> Calibration:
    """The :class:`Calibration` of an estimate (standard deviations from ``cov``)."""
    std = np.sqrt(np.clip(np.stack([cov[:, 0, 0], cov[:, 1, 1]], axis=1), 0, None))
    return Calibration(sensors=SensorArray(positions, sensors.normals), speed_of_sound=c,
                       nominal_sensors=sensors,
                       nominal_speed_of_sound=acquisition.speed_of_sound,
                       position_std=std, prior_std=float(prior_std), history=history,
                       time_s=time.perf_counter() - t_start, prior_source=source,
                       image=image, operator_norm_sq=norm_sq, heldout_misfit=heldout,
                       notes=tuple(notes or ()))


def angular_pitch(positions: np.ndarray) -> float:
    """The median angle (rad) between neighbouring sensors seen from the origin (the
    grid's centre): ``2 pi / N`` on a full ring of N."""
    ang = np.sort(np.arctan2(positions[:, 1], positions[:, 0]))
    gaps = np.diff(np.concatenate([ang, ang[:1] + 2 * math.pi]))
    gaps = np.delete(gaps, np.argmax(gaps)) if angular_coverage(positions) < 2 * math.pi \
        - 1e-9 else gaps
    return float(np.median(gaps))


def identifiability_notes(positions: np.ndarray) -> list[str]:
    """What the array's layout lets the data identify, as notes for the user: the sensors
    of a sparse array (median angular pitch at least :data:`SPARSE_PITCH`) are weakly
    identifiable."""
    pitch = angular_pitch(positions)
    if pitch < SPARSE_PITCH * (1 - 1e-6):  # 24 sensors on a ring are sparse
        return []
    return [f"the sensors are {math.degrees(pitch):.0f} deg apart: their positions are "
            f"weakly identifiable from the data (on rings of 12-24 sensors the calibrated "
            f"positions were about as far from the truth as the file's, while the speed of "
            f"sound and the image still improved)"]


def calibration_grid(scan: Any, grid: Grid) -> tuple[Grid, str | None]:
    """The grid to calibrate a scan on when its image is to be made on ``grid``.

    ``grid`` itself, unless its field of view is less than :data:`OBJECT_COVER` times the
    object's extent seen in the scan's first arrivals (:func:`oatomo.io.grid.object_fov`):
    then the object reaches well beyond the image, whose model cannot explain the records
    of what lies outside, and the calibration runs on a grid of the object's extent at
    ``grid``'s pixel pitch (at most :data:`OBJECT_GRID_MAX` pixels per side, or
    ``grid.n`` if that is more: a coarser pitch then). When the first arrivals do not bound
    the object inside the array (the extent is the inscribed circle's diameter, where
    :func:`~oatomo.io.grid.object_fov` caps it: signals from the first samples on, as an
    early artefact of the laser or the electronics makes them), the extent is unknown and
    ``grid`` is kept. Returns the grid and, when it was widened, a note saying so (None
    otherwise).
    """
    seen = object_extent(scan)
    if seen is None or seen[1] or grid.fov >= OBJECT_COVER * seen[0]:
        return grid, None
    extent = seen[0]
    n = max(grid.n, min(math.ceil(extent / grid.dx), OBJECT_GRID_MAX))
    return Grid(n, extent), (
        f"the image grid ({1e3 * grid.fov:.1f} mm) cuts the object seen in the data "
        f"(about {1e3 * extent:.1f} mm across): calibrated on a grid of "
        f"{1e3 * extent:.1f} mm, {n} pixels per side")


def calibrate(scan: Any, grid: Grid | None = None, *,
              frames: int | list[int] | None = None, prior_std: float | str | None = None,
              speed_of_sound: bool | str = True,
              callback: Callback | None = None,
              object_grid: bool = True,
              **kwargs: Any) -> Calibration:
    """Self-calibrate a scan: its sensor positions and speed of sound from its data alone.

    Parameters
    ----------
    scan
        A :class:`oatomo.io.Scan` or the path of a scan file (oatomo, IPASC, PATATO).
    grid
        Image grid of the finest level; None: the scan's default grid
        (:func:`oatomo.io.default_grid`, as in :func:`oatomo.reconstruct`). A grid that
        cuts the object seen in the data is widened to it (``object_grid``).
    frames
        Frames (leading axes flattened) to calibrate on; None: all (their mean).
    prior_std
        Per-coordinate standard deviation of the position errors (m); None: from the
        scan's setup when it carries one, else 1 % of the array radius; ``"data"``:
        estimated from the scan (see :func:`calibrate_sinogram`).
    speed_of_sound
        True (default): estimate the speed of sound; False: keep the file's; ``"auto"``:
        estimate it only when the array surrounds the image over at least half a turn.
    callback
        Progress: ``callback("calibrate", step, rounds_total)`` after each round.
    object_grid
        True (default): calibrate on :func:`calibration_grid` (a grid less than
        :data:`OBJECT_COVER` of the object's extent is widened to it at the same pixel
        pitch, so the calibration costs more; its ``notes`` say so, and its ``image`` is
        resampled onto ``grid``, with ``operator_norm_sq`` of ``grid``); False: on ``grid`` as
        given.
    **kwargs
        Passed to :func:`calibrate_sinogram` (``n_levels``, ``n_folds``, ``n_iter``, ...).

    Returns
    -------
    Calibration
        Apply it with :func:`~oatomo.calibration.apply_calibration` (or write it with
        ``oatomo calibrate``).

    Examples
    --------
    >>> cal = oatomo.calibrate("scan.h5")                      # doctest: +SKIP
    >>> rec = oatomo.reconstruct(apply_calibration(scan, cal), "mb-tv")  # doctest: +SKIP
    """
    data, source = as_scan(scan)
    require_plane(data, "self-calibration", None if source == "<Scan>" else source)
    if data.calibration:
        logger.warning("%s is already calibrated; calibrating again from its estimates",
                       source)
    asked = default_grid(data) if grid is None else grid
    grid, note = calibration_grid(data, asked) if object_grid else (asked, None)
    sino = data.sinogram
    if frames is not None:
        sino = sino.reshape((-1,) + sino.shape[-2:])[np.asarray(frames)]
    kwargs.setdefault("response", data.response)
    try:
        cal = calibrate_sinogram(sino, data.sensors, data.acquisition, grid,
                                 prior_std=prior_std, speed_of_sound=speed_of_sound,
                                 setup_toml=data.setup_toml, callback=callback, **kwargs)
    except InputError as exc:
        if source != "<Scan>" and exc.path is None:
            raise InputError(exc.problem, source) from None
        raise
    if note is None:
        return cal
    logger.warning("calibration: %s", note, extra={NOTE_RECORD: True})
    # its last image, resampled onto the caller's grid, still starts a TV there, with a
    # bound on ||A||^2 of that grid made as the calibration makes its levels' (Lanczos
    # steps, with the margin; the widened grid's own would be up to 5x too large)
    if cal.image is None:
        return replace(cal, operator_norm_sq=None, notes=cal.notes + (note,))
    norm_sq = MOVE_MARGIN * level_norm_sq(asked, cal.sensors,
                                          cal.acquisition(data.acquisition),
                                          thickness=kwargs.get("thickness"),
                                          response=kwargs["response"])
    return replace(cal, image=resample(cal.image, grid, asked), operator_norm_sq=norm_sq,
                   notes=cal.notes + (note,))

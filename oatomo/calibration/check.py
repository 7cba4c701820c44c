"""The position check: do the data agree with the sensor positions the file gives?

A quick test (:func:`check_positions`) of whether a scan needs self-calibration: one scout
round of the coarsest level along the lines of sight (:func:`oatomo.calibration.search.scout`),
summarised as a :class:`PositionCheck`; on arcs, also the held-out speed-of-sound search of
calibration (a wrong speed of sound shifts every sensor alike, which an arc's own image
absorbs, so the scout's common shift does not show it there).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from oatomo._blas import one_blas_thread
from oatomo.calibration.estimate import MIN_CORRELATION, angular_coverage, checked_input
from oatomo.calibration.gauge import array_radius
from oatomo.calibration.levels import Level, schedule
from oatomo.calibration.prior import SCOUT_REL
from oatomo.calibration.search import scout
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray

logger = logging.getLogger(__name__)

__all__ = ["CHECK_FOLDS", "CHECK_ITER", "CHECK_BOX_REL", "CHECK_PIXELS",
           "CHECK_SPEED_COVERAGE", "CHECK_SPEED_DROP", "PositionCheck", "check_positions"]

#: The position check (:func:`check_positions`): held-out folds, TV iterations of each
#: held-out image and the search box, as a fraction of the array radius.
CHECK_FOLDS = 4
CHECK_ITER = 10
CHECK_BOX_REL = 0.04

#: Arcs whose speed of sound the check also tests: angular coverage (rad) from
#: ``CHECK_SPEED_COVERAGE[0]`` up to, not including, ``CHECK_SPEED_COVERAGE[1]`` (fuller
#: arrays show a wrong speed as a common shift: 4 of 4 speed-only tuning files of a 270
#: degree arc, 2 of 4 of a 200 degree one; on shorter arcs and linear arrays the held-out
#: misfit also drops for correct files). Chosen on tuning files (seeds 6000-6003: 90-270
#: degree arcs and linear arrays, correct and speed-only).
CHECK_SPEED_COVERAGE = (math.radians(150.0), math.radians(240.0))

#: Relative drop of the mean held-out misfit, from the file's speed of sound to the best
#: of the trial speeds, above which the check asks for calibration (tuning files: 0.000 on
#: all 8 correct files of the 150 and 200 degree arcs, 0.04-0.64 on 7 of 8 speed-only
#: ones).
CHECK_SPEED_DROP = 0.02

#: Default threshold of the position check, in pixels of the image grid (chosen by what its
#: false alarms and misses cost the image on tuning files; half a pixel missed errors
#: whose calibration gains several dB).
CHECK_PIXELS = 0.25


@dataclass(frozen=True)
class PositionCheck:
    """The result of :func:`check_positions`: are the sensors where the file says?

    Attributes
    ----------
    spread
        Spread of the sensors' position errors along their lines of sight that the data
        show (m): the robust rms (1.4826 x median absolute deviation about the median) of
        the per-sensor shifts. It asks for calibration only above both the threshold and
        :attr:`noise` (:attr:`needs_calibration`).
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
    speed_drop
        On arcs (:data:`CHECK_SPEED_COVERAGE`): the relative drop of the mean held-out
        misfit from the file's speed of sound to the best trial speed within +-3 %
        (calibration's speed search); None on other arrays.
    """

    spread: float
    noise: float
    threshold: float
    correlation: float
    time_s: float
    reason: str = ""
    offset: float = 0.0
    n_sensors: int = 0
    speed_drop: float | None = None

    @property
    def needs_calibration(self) -> bool:
        """True when the data show position errors above :attr:`threshold`: a spread of
        the shifts above it and above their noise, or a common shift above it and above
        three standard errors of a median (a wrong speed of sound), or, on arcs, a held-out
        misfit that another speed of sound lowers by more than :data:`CHECK_SPEED_DROP`."""
        if self.reason:
            return False
        se = 1.2533 * self.noise / math.sqrt(max(self.n_sensors, 1))
        return (self.spread > max(self.threshold, self.noise)
                or abs(self.offset) > max(self.threshold, 3.0 * se)
                or (self.speed_drop is not None and self.speed_drop > CHECK_SPEED_DROP))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (JSON-ready)."""
        return {"spread_m": self.spread, "noise_m": self.noise, "offset_m": self.offset,
                "threshold_m": self.threshold, "correlation": self.correlation,
                "needs_calibration": self.needs_calibration, "time_s": self.time_s,
                "reason": self.reason, "speed_drop": self.speed_drop}


@one_blas_thread
def check_positions(sinogram: np.ndarray, sensors: SensorArray, acquisition: Acquisition,
                    grid: Grid, *, threshold: float | None = None,
                    thickness: float | None = None) -> PositionCheck:
    """Test whether the data agree with the sensor positions the file gives (quick).

    The coarsest level of :func:`~oatomo.calibration.calibrate_sinogram`, once:
    :data:`CHECK_FOLDS` held-out folds, each sensor's record compared with the one the
    other folds' TV image (:data:`CHECK_ITER` iterations) predicts for candidate positions
    along its line of sight within +-:data:`CHECK_BOX_REL` of the array radius. Correct
    positions give shifts that scatter within their noise about zero; misplaced sensors
    give shifts that scatter by about their errors along the lines of sight, and a wrong
    speed of sound (or array radius) a common shift (about the relative error of ``c``
    times the distance to the object: 0.5 % gave 130-200 um on the tuning scans). Either
    asks for calibration, which estimates ``c`` too. A rigid motion of the array is
    invisible to this test, as to calibration. It costs about two 50-iteration TV
    reconstructions at a quarter of the pixels per side.

    Parameters
    ----------
    sinogram
        (N, T) signals, or (..., N, T) for several frames (their mean is tested).
    sensors, acquisition, grid
        The scan's nominal geometry and the image grid (as for
        :func:`~oatomo.calibration.calibrate_sinogram`).
    threshold
        Spread (m) above which calibration is asked for (if the spread also exceeds its
        estimation noise); None: :data:`CHECK_PIXELS` pixels of ``grid`` (a quarter of a
        pixel: on tuning files the decisions of this rule cost the image 6 dB in all,
        those of half a pixel 71 dB, mostly in missed errors).
    thickness
        Slab thickness of the forward model (m), default the grid pitch.

    Returns
    -------
    PositionCheck

    Raises
    ------
    InputError
        As :func:`~oatomo.calibration.calibrate_sinogram` (too few sensors, all-zero
        signals, bad geometry).
    """
    t_start = time.perf_counter()
    y, sensors, acquisition, grid = checked_input(sinogram, sensors, acquisition, grid)
    if threshold is None:
        threshold = CHECK_PIXELS * grid.dx
    elif not (math.isfinite(threshold) and threshold >= 0):
        raise InputError(f"threshold must be a length >= 0 m, got {threshold!r}")
    nominal = sensors.positions.astype(np.float64)
    radius = array_radius(nominal)
    # the coarsest level, decimated once for the scout and, on arcs, the speed test
    coarsest = schedule(y, acquisition, grid, SCOUT_REL * radius, 3, fft=True,
                        first_only=True)[0]
    along, var, mis = scout(y, acquisition, grid, nominal, SCOUT_REL * radius,
                            CHECK_BOX_REL * radius, 3, CHECK_FOLDS, CHECK_ITER, thickness,
                            share_norm=True, fft=True, coarsest=coarsest)
    noise = math.sqrt(float(np.median(var)))
    offset = float(np.median(along))
    spread = 1.4826 * float(np.median(np.abs(along - offset)))
    corr = math.sqrt(max(float(np.median(1.0 - mis)), 0.0))
    speed_drop = None
    if CHECK_SPEED_COVERAGE[0] <= angular_coverage(nominal) < CHECK_SPEED_COVERAGE[1]:
        speed_drop = _speed_drop(coarsest, nominal, acquisition.speed_of_sound, thickness)
    reason = ""
    if corr < MIN_CORRELATION:
        reason = (f"the held-out predictions do not correlate with the data (median "
                  f"{corr:.2f}): too little structure to check the positions")
    out = PositionCheck(spread, noise, float(threshold), corr,
                        time.perf_counter() - t_start, reason, offset, len(along), speed_drop)
    logger.info("position check: spread %.0f um, common shift %.0f um (noise %.0f um, "
                "threshold %.0f um) in %.2f s", spread * 1e6, offset * 1e6, noise * 1e6,
                threshold * 1e6, out.time_s)
    return out


def _speed_drop(level: Level, nominal: np.ndarray, c: float, thickness: float | None
                ) -> float:
    """Relative drop of the mean held-out misfit from the file's speed of sound ``c`` to
    the best of calibration's trial speeds on the coarsest ``level`` (its records and
    grid; calibration's folds, iterations and points)."""
    from oatomo.calibration.joint import subset_speed_scan

    rel, held = subset_speed_scan(level, nominal, c, 0.03, thickness)
    mean = held.mean(axis=1)
    at_file = float(mean[int(np.argmin(np.abs(rel)))])
    return (at_file - float(mean.min())) / max(at_file, 1e-12)

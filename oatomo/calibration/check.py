"""The position check: do the data agree with the sensor positions the file gives?

A quick test (:func:`check_positions`) of whether a scan needs self-calibration: one scout
round of the coarsest level along the lines of sight (:func:`oatomo.calibration.search.scout`),
summarised as a :class:`PositionCheck`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from oatomo.calibration.estimate import MIN_CORRELATION, checked_input
from oatomo.calibration.gauge import array_radius
from oatomo.calibration.prior import SCOUT_REL
from oatomo.calibration.search import scout
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray

logger = logging.getLogger(__name__)

__all__ = ["CHECK_FOLDS", "CHECK_ITER", "CHECK_BOX_REL", "CHECK_PIXELS", "PositionCheck",
           "check_positions"]

#: The position check (:func:`check_positions`): held-out folds, TV iterations of each
#: held-out image and the search box, as a fraction of the array radius.
CHECK_FOLDS = 4
CHECK_ITER = 10
CHECK_BOX_REL = 0.04

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
    along, var, mis = scout(y, acquisition, grid, nominal, SCOUT_REL * radius,
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

"""Linear reconstruction: delay-and-sum (DAS) and universal backprojection (UBP).

Both run the same Numba kernel (rows of the image in parallel, then sensors, then pixels
innermost, float32, linear interpolation in time). Multi-frame sinograms (frames, N, T)
compute each delay once for all frames.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np

from oatomo.errors import InputError
from oatomo.forward import bandpass, check_sinogram
from oatomo.geometry import Acquisition, Grid, SensorArray, check_geometry
from oatomo.media import DEFAULT_MAX_GAIN, DEFAULT_MEDIUM, check_medium, compensate, line_to_slab
from oatomo.recon.exact import fbp_validated
from oatomo.recon.summation import delay_and_sum
from oatomo.response import element_points
from oatomo.speed_map import SpeedMap

logger = logging.getLogger(__name__)

__all__ = ["backproject", "ubp_filter", "BACKPROJECTION_METHODS"]

#: The ``method`` names of :func:`backproject` (registered under the same names in
#: :data:`oatomo.recon.registry.METHODS`).
BACKPROJECTION_METHODS = ("das", "ubp", "fbp")


def ubp_filter(sinogram: np.ndarray, acquisition: Acquisition) -> np.ndarray:
    """The UBP back-projection term ``b(t) = 2 p(t) - 2 t dp/dt`` (Xu & Wang 2005).

    The time derivative uses second-order central differences (one-sided at the ends).
    """
    t = acquisition.times.astype(np.float32)
    b = np.gradient(sinogram, 1.0 / acquisition.fs, axis=-1).astype(np.float32, copy=False)
    b *= -2.0 * t  # in place: one signal-sized array besides the gradient's own work
    b += 2.0 * sinogram
    return b


def _sensor_arc_lengths(sensors: SensorArray) -> np.ndarray:
    """Arc length each sensor stands for: half the distance to each angular neighbour."""
    pos = sensors.positions
    n = len(pos)
    if n == 1:
        return np.ones(1)
    centre = pos.mean(axis=0) if n > 2 else np.zeros(2)
    ang = np.arctan2(pos[:, 1] - centre[1], pos[:, 0] - centre[0])
    order = np.argsort(ang)
    p = pos[order]
    gaps = np.linalg.norm(np.roll(p, -1, axis=0) - p, axis=1)
    span = np.sort(np.diff(np.sort(ang)))
    closed = (2 * math.pi - (ang.max() - ang.min())) < 2.5 * (span[-1] if len(span) else 0)
    if not closed:  # open arc: no gap between the ends
        gaps[-1] = 0.0
    arc = 0.5 * (gaps + np.roll(gaps, 1))
    if not closed:
        arc[0], arc[-1] = gaps[0], gaps[-2] if n > 2 else gaps[0]
    out = np.empty(n)
    out[order] = arc
    return out


def backproject(
    sinogram: np.ndarray,
    grid: Grid,
    sensors: SensorArray,
    acquisition: Acquisition,
    method: str = "das",
    band: tuple[float | None, float | None] | None = None,
    *,
    speed_of_sound: float | None = None,
    element_width: float | None = None,
    speed_map: SpeedMap | None = None,
    medium: str = DEFAULT_MEDIUM,
    attenuation: Any = None,
    max_gain: float = DEFAULT_MAX_GAIN,
) -> np.ndarray:
    """Reconstruct an image from a sinogram by delay-and-sum or universal backprojection.

    Parameters
    ----------
    sinogram
        (N, T) signals, or (..., N, T) for several frames/wavelengths.
    grid
        Output image grid.
    sensors
        Sensor positions assumed for the reconstruction (usually the nominal ones).
    acquisition
        Sampling of the signals.
    method
        ``"das"``: ``img(r) = sum_s p_s(|r - r_s| / c)``, linear interpolation in time.
        ``"ubp"``: universal backprojection of ``b = 2p - 2t dp/dt`` with the in-plane
        solid-angle weight of each sensor ``dl_s cos(theta) / |r - r_s|`` normalised by the
        total angle ``2 pi``, scaled so that images come out in units of ``p0`` (Pa).
        ``"fbp"``: exact filtered backprojection for full circular arrays
        (:func:`oatomo.recon.exact.fbp_circular`).
    band
        Optional ``(f_low, f_high)`` Butterworth band-pass applied first (Hz).
    speed_of_sound
        Override the acquisition's speed of sound (m/s), e.g. for autofocus.
    element_width
        Width (m) of flat sensor elements: each signal is backprojected from points across
        its element's face and averaged (:func:`oatomo.response.element_points`), the
        adjoint of the forward model's finite element, so the element's directivity
        weights every pixel. Not with ``fbp`` (point sensors).
    speed_map
        Two speeds of sound (:class:`oatomo.speed_map.SpeedMap`): das and ubp delay each
        signal by the straight two-segment time of flight (the weights stay those of the
        straight ray); its ``c0`` replaces the acquisition's speed (give one or the other).
        Not with ``fbp`` (exact in one speed only).
    medium
        The medium that made the signals: ``"slab"`` (default) or ``"2d"`` (line
        sources), which are first brought to the slab model
        (:func:`oatomo.media.line_to_slab`, slab thickness ``grid.dx``).
    attenuation
        The medium's :class:`oatomo.media.Attenuation`: the signals are first compensated
        for it (:func:`oatomo.media.compensate`, gain at most ``max_gain``).
    max_gain
        Largest gain of the attenuation compensation (default 10, i.e. 20 dB).

    Returns
    -------
    numpy.ndarray
        float32 (n, n), or (..., n, n) for multi-frame input.

    Notes
    -----
    UBP is exact for closed measurement surfaces in 3-D; for a ring of point sensors
    recording a thin slab it is an approximation (Pearson correlation 0.7-0.8 against a
    noise-free Shepp-Logan phantom). Its amplitude: the 3-D formula applied to the slab
    model of :func:`oatomo.simulate` is not amplitude-exact in 2-D: the reconstructed value
    of a uniform disk falls roughly as the inverse of its radius. One constant
    (``_UBP_GAIN``) is calibrated so that a disk of radius 4 mm reconstructs to its value
    at the centre; use ``method="fbp"`` for quantitative amplitudes.
    """
    if method not in BACKPROJECTION_METHODS:
        raise InputError(f"unknown reconstruction method {method!r}; choose from "
                         f"{', '.join(BACKPROJECTION_METHODS)}")
    grid, sensors, acquisition = check_geometry(grid, sensors, acquisition)
    y = check_sinogram(sinogram, sensors, acquisition)
    if speed_map is not None:
        if not isinstance(speed_map, SpeedMap):
            raise InputError(f"speed_map must be an oatomo SpeedMap, got "
                             f"{type(speed_map).__name__}")
        if speed_of_sound is not None:
            raise InputError("give the speed of sound in the speed map (its c0), not both")
        if method == "fbp":
            raise InputError("fbp is exact for one speed of sound; use das, ubp or a "
                             "model-based method with an object speed of sound")
        speed_of_sound = speed_map.c0
    check_medium(medium)
    if speed_of_sound is not None:
        if not (speed_of_sound > 0 and math.isfinite(speed_of_sound)):
            raise InputError(f"speed of sound must be > 0 m/s, got {speed_of_sound}")
        acquisition = replace(acquisition, speed_of_sound=float(speed_of_sound))
    if attenuation is not None:
        y = compensate(y, acquisition, attenuation, max_gain=max_gain)
    if medium == "2d":
        y = line_to_slab(y, acquisition, thickness=grid.dx)
    y = bandpass(y, acquisition.fs, band)
    if method == "fbp":
        if element_width is not None:
            raise InputError("fbp inverts circular means of point sensors; use das or ubp "
                             "with an element width")
        return fbp_validated(y, grid, sensors, acquisition)
    lead = y.shape[:-2]
    n_s, n_t = y.shape[-2:]
    frames = y.reshape((-1, n_s, n_t))
    if method == "ubp":
        frames = ubp_filter(frames, acquisition)
    c = acquisition.speed_of_sound
    if method == "ubp":
        # weight dl_s * cos / d applied inside the kernel; the per-sensor arc length and
        # the normalisation are folded into the signals
        gain = _sensor_arc_lengths(sensors) * _UBP_GAIN / (2 * math.pi) * (
            4 * math.pi * c / grid.dx)
        frames = (frames * gain[None, :, None].astype(np.float32)).astype(np.float32)
    points = sensors
    if element_width is not None:
        points, m = element_points(sensors, element_width, acquisition)
        frames = np.repeat(frames / np.float32(m), m, axis=1)
    out = delay_and_sum(np.asarray(frames, np.float32), grid, points, acquisition,
                        obliquity=method == "ubp", speed_map=speed_map)
    return out.reshape(lead + grid.shape)


#: Calibration of the UBP amplitude (see :func:`backproject`, Notes): measured centre value
#: 1.53e6 of a 3.84 mm-radius unit disk (128 x 128 at 0.1 mm, 256 sensors) without it.
_UBP_GAIN = 1.0 / 1.53e6

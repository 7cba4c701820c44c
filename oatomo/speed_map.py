"""Two speeds of sound: a coupling medium and an object region with its own speed.

A :class:`SpeedMap` is the coupling medium's speed ``c0`` (water) and an elliptical object
region (a disc when both radii are equal; axes along x and y) of speed ``c1``. Times of
flight follow straight rays in two segments::

    tau(r, r_s) = L_out / c0 + L_in / c1

where ``L_in`` is the length of the straight segment from the sensor ``r_s`` to the point
``r`` inside the region (a line-ellipse intersection, in closed form) and
``L_out = |r - r_s| - L_in``. The kernels of :mod:`oatomo.kernels` work with the
*equivalent distance* ``c0 tau = |r - r_s| - (1 - c0 / c1) L_in``, the distance the same
time of flight covers in the coupling medium.

Approximations (where the operators of :mod:`oatomo.forward` and
:mod:`oatomo.recon.backprojection` take a map): rays are straight (refraction at the
region's boundary is ignored; see the user guide for where that stops being adequate).

Amplitudes. Binned by equivalent distance, a homogeneous kernel would give each pixel the
amplitude of a source at distance ``c0 tau`` in water: spreading taken at ``c0 tau``
instead of the distance ``d`` along the straight ray, and, for a source inside the region,
its shape compressed by ``c0 / c1`` along the time axis -- louder than the physics by
``(c1 / c0)^(q + 1) (d / (c0 tau))^q`` (``q`` = 1 in the slab model, 1/2 with line sources;
4.5-6 % with line sources at 3 % contrast). The forward model (and its adjoint) therefore
weights each pixel by ``(c0 tau / d)^q``, and a pixel inside the region by
``(c0 / c1)^(q + 1) * 2 c0 / (c0 + c1)`` more: the inverse of that gain, and the pressure
transmission ``2 Z0 / (Z0 + Z1)`` out of the region for equal densities (``Z = rho c``;
the two crossings of a ray from outside, ``4 Z0 Z1 / (Z0 + Z1)^2``, differ from 1 by
less than 2e-4 at 3 % contrast and are left out). What remains against a full-wave
simulator is refraction (see the media results page). Delay-and-sum and UBP keep the
homogeneous weights along the straight ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from oatomo._limits import MAX_POSITION, SPEED_RANGE, check_option, check_range
from oatomo.errors import InputError, warn_units
from oatomo.geometry import PLAUSIBLE

__all__ = ["SpeedMap", "as_speed_map", "check_object_options", "OBJECT_OPTIONS", "ray_bending"]


def _speed(value: Any, what: str) -> float:
    c = check_range(value, what, *SPEED_RANGE, unit="m/s")
    lo, hi = PLAUSIBLE["speed_of_sound"]
    if not lo <= c <= hi:
        warn_units(f"{what} = {c:g} m/s looks like a unit slip (water and tissue are "
                   f"about 1500 m/s)", stacklevel=5)
    return c


def _pair(value: Any, what: str) -> tuple[Any, Any]:
    """A number (both axes) or two numbers, as a pair (checked by the caller)."""
    if np.ndim(value) == 0:
        return value, value
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != 2 \
            or np.ndim(value) != 1:
        raise InputError(f"{what} must be a number or two numbers in metres, got {value!r}")
    return value[0], value[1]


@dataclass(frozen=True)
class SpeedMap:
    """A coupling medium of speed ``c0`` with an elliptical object region of speed ``c1``.

    Parameters
    ----------
    c0
        Speed of sound of the coupling medium (m/s).
    c1
        Speed of sound inside the object region (m/s).
    radius
        The region's radius (m): one number for a disc, ``(rx, ry)`` for an ellipse with
        its axes along x and y.
    centre
        The region's centre ``(x, y)`` (m), in the image's coordinates.

    Notes
    -----
    Hashable (it keys the cache of forward operators). When an operator is given a map,
    its ``c0`` replaces the acquisition's speed of sound.

    Examples
    --------
    >>> m = SpeedMap(1500.0, 1540.0, 0.009)
    >>> round(m.travel_time((0.0, 0.0), (0.03, 0.0)) * 1e6, 4)  # 21 mm of water, 9 of tissue
    19.8442
    """

    c0: float
    c1: float
    radius: Any
    centre: Any = (0.0, 0.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "c0", _speed(self.c0, "speed of sound"))
        object.__setattr__(self, "c1", _speed(self.c1, "object speed of sound"))
        radii = _pair(self.radius, "object radius")
        radii = tuple(check_range(r, "object radius", 0.0, MAX_POSITION, unit="m")
                      for r in radii)
        if min(radii) <= 0:
            raise InputError(f"object radius must be > 0 m, got {self.radius!r}")
        centre = _pair(self.centre, "object centre")
        centre = tuple(check_range(v, "object centre", -MAX_POSITION, MAX_POSITION, unit="m")
                       for v in centre)
        object.__setattr__(self, "radius", radii)
        object.__setattr__(self, "centre", centre)

    @property
    def is_disc(self) -> bool:
        """Whether the region is a disc (equal radii)."""
        return self.radius[0] == self.radius[1]

    def kernel_params(self, medium: str = "slab") -> np.ndarray:
        """``[cx, cy, 1/rx, 1/ry, 1 - c0/c1, q, g_in]`` as float32, what the kernels take.

        The last two are the forward model's amplitude correction (delays use the first
        five): a pixel at distance ``d`` and equivalent distance ``de`` from a sensor is
        weighted by ``(de / d)^q``, and by ``g_in = (c0 / c1)^(q + 1) * 2 c0 / (c0 + c1)``
        more when it lies inside the region, with ``q`` = 1 in the slab model and 1/2 with
        line sources (``medium="2d"``): see the module docstring.
        """
        q = 0.5 if medium == "2d" else 1.0
        g_in = (self.c0 / self.c1) ** (q + 1.0) * 2.0 * self.c0 / (self.c0 + self.c1)
        return np.array([self.centre[0], self.centre[1], 1.0 / self.radius[0],
                         1.0 / self.radius[1], 1.0 - self.c0 / self.c1, q, g_in],
                        np.float32)

    def inside_length(self, points: Any, sensor: Any) -> np.ndarray:
        """Length (m) of the straight segment from ``sensor`` to each point inside the region.

        Parameters
        ----------
        points
            (..., 2) positions (m).
        sensor
            (2,) position (m).

        Returns
        -------
        numpy.ndarray
            float64, the shape of ``points`` without its last axis.
        """
        p = np.asarray(points, dtype=np.float64)
        s = np.asarray(sensor, dtype=np.float64)
        r = np.asarray(self.radius)
        a = (s - np.asarray(self.centre)) / r
        b = (p - s) / r
        qa = np.sum(b * b, axis=-1)
        qb = np.sum(a * b, axis=-1)
        qc = float(a @ a) - 1.0
        disc = np.maximum(qb * qb - qa * qc, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = np.maximum((-qb - np.sqrt(disc)) / qa, 0.0)
            t2 = np.minimum((-qb + np.sqrt(disc)) / qa, 1.0)
        frac = np.where(qa > 0, np.maximum(t2 - t1, 0.0), 0.0)
        return frac * np.linalg.norm(p - s, axis=-1)

    def travel_time(self, points: Any, sensor: Any) -> np.ndarray | float:
        """Straight-ray time of flight ``L_out / c0 + L_in / c1`` (s) from ``sensor`` to each
        point (a float for one point)."""
        p = np.asarray(points, dtype=np.float64)
        d = np.linalg.norm(p - np.asarray(sensor, dtype=np.float64), axis=-1)
        inside = self.inside_length(p, sensor)
        tau = (d - inside) / self.c0 + inside / self.c1
        return float(tau) if np.ndim(tau) == 0 else tau

    def equivalent_distance(self, points: Any, sensor: Any) -> np.ndarray | float:
        """``c0 * tau``: the distance the time of flight covers in the coupling medium (m)."""
        tau = self.travel_time(points, sensor)
        return self.c0 * tau

    def to_dict(self) -> dict[str, Any]:
        """The keys of presets and calibration files: ``speed_of_sound``,
        ``object_speed_of_sound``, ``object_radius`` (a number for a disc),
        ``object_centre``."""
        radius = self.radius[0] if self.is_disc else list(self.radius)
        return {"speed_of_sound": self.c0, "object_speed_of_sound": self.c1,
                "object_radius": radius, "object_centre": list(self.centre)}


OBJECT_OPTIONS = ("object_speed_of_sound", "object_radius", "object_centre")


def check_object_options(object_speed_of_sound: Any = None, object_radius: Any = None,
                         object_centre: Any = None, *, prefix: str = "",
                         path: Any = None) -> bool:
    """Check the flat options of an object region (command line, presets, calibration
    files) against :func:`oatomo._limits.check_option`; whether a region is given.

    ``object_speed_of_sound`` and ``object_radius`` come together; ``object_centre``
    (default: the origin) needs them. ``prefix`` is how the message names the options:
    ``"--"`` gives ``--object-radius``, ``"preset key "`` gives ``preset key
    object_radius``. One-line :class:`InputError` naming the option otherwise.
    """
    def name(key: str) -> str:
        return prefix + key.replace("_", "-") if prefix == "--" else prefix + key

    values = dict(zip(OBJECT_OPTIONS, (object_speed_of_sound, object_radius, object_centre),
                      strict=True))
    if values["object_centre"] is not None and values["object_radius"] is None \
            and values["object_speed_of_sound"] is None:
        raise InputError(f"{name('object_centre')} needs {name('object_speed_of_sound')} "
                         f"and {name('object_radius')}", path)
    for key, other in (("object_speed_of_sound", "object_radius"),
                       ("object_radius", "object_speed_of_sound")):
        if values[key] is not None and values[other] is None:
            raise InputError(f"{name(key)} needs {name(other)}", path)
    for key, value in values.items():
        if value is not None:
            check_option(key, list(value) if isinstance(value, (tuple, np.ndarray))
                         else value, name(key), path)
    return values["object_speed_of_sound"] is not None


def as_speed_map(c0: float, object_speed_of_sound: Any = None, object_radius: Any = None,
                 object_centre: Any = None, *, prefix: str = "") -> SpeedMap | None:
    """The :class:`SpeedMap` of the flat options (command line, presets, calibration files)
    with the coupling medium's speed ``c0``; None without an object region. The options
    are checked by :func:`check_object_options` (errors name them, with ``prefix``)."""
    if not check_object_options(object_speed_of_sound, object_radius, object_centre,
                                prefix=prefix):
        return None
    return SpeedMap(c0, object_speed_of_sound, object_radius,
                    (0.0, 0.0) if object_centre is None else tuple(object_centre))


def ray_bending(contrast: float, impact: float) -> float:
    """Deviation (rad) of a ray through a disc of relative speed ``contrast = c1 / c0`` at
    normalised impact parameter ``impact = b / R`` (Snell's law at both crossings).

    Used by the user guide's estimate of when straight rays stop being adequate.
    """
    if not 0 <= impact < 1:
        return 0.0
    theta_i = math.asin(impact)
    s = impact * contrast
    if s >= 1:  # total reflection: the ray does not enter
        return math.nan
    theta_t = math.asin(s)
    return 2.0 * abs(theta_t - theta_i)

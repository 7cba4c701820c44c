"""Finite, flat elements of 3-D arrays: the points that stand for each element's face.

A flat element records the average of the pressure over its face. In 3-D the face is a
square of side ``a`` or a disc of diameter ``d`` in the plane through the element centre
perpendicular to its normal; :func:`element_points_3d` spreads it into point sensors on a
square mesh of that plane (midpoint rule, spacing at most ``c / fs``) with one weight per
point (its cell's share of the face; equal for a square, the cell's area inside the disc
for a disc), and the volume operators average the points with those weights (the adjoint
repeats). Averaging gives the element its directivity: a wave arriving at angle ``theta``
from the normal, in the plane of the normal and one face axis, is smeared over
``a sin(theta) / c`` in time, and its far-field response at frequency ``f`` is

- square: ``sinc(pi f a sin(theta) / c)`` (``sinc(x) = sin(x) / x``);
- disc: ``2 J1(x) / x`` with ``x = pi f d sin(theta) / c``.

The face axes are ``t1 = n x e / |n x e|``, with ``e`` the coordinate axis least aligned
with the normal ``n`` (the first such axis on a tie), and ``t2 = n x t1``: for a planar
array (normals along z) the square's edges lie along y and x.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from oatomo._limits import MAX_POSITION, check_bytes
from oatomo.errors import InputError, warn_units

__all__ = ["ELEMENT_SHAPES", "MAX_ELEMENT_POINTS", "check_element", "element_points_3d",
           "face_axes"]

#: The shapes of a flat 3-D element: ``size`` is the side of a square or the diameter of
#: a disc.
ELEMENT_SHAPES = ("square", "disc")

#: Most points per element (a 128 x 128 mesh of the face).
MAX_ELEMENT_POINTS = 128 * 128

#: Sub-cells per mesh cell side used to measure a cell's area inside a disc.
_SUB = 16


def check_element(size: Any, shape: Any = "square") -> tuple[float, str]:
    """``(size, shape)`` validated: a size in metres > 0 and a shape of
    :data:`ELEMENT_SHAPES`.

    Raises
    ------
    InputError
        A size that is not a finite number in ``(0, MAX_POSITION]`` or an unknown shape.
    """
    if isinstance(size, bool) or not isinstance(size, (int, float, np.floating, np.integer)) \
            or not (math.isfinite(size) and size > 0):
        raise InputError(f"element size must be a number > 0 metres, got {size!r}")
    if size > MAX_POSITION:
        raise InputError(f"element size must be at most {MAX_POSITION:g} metres, got "
                         f"{size!r}")
    if shape not in ELEMENT_SHAPES:
        raise InputError(f"element shape must be one of {', '.join(ELEMENT_SHAPES)}, got "
                         f"{shape!r}")
    if size > 0.05:
        warn_units(f"element size = {size:g} m looks like a unit slip (metres: 0.5 mm is "
                   f"5e-4)")
    return float(size), str(shape)


def face_axes(normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two unit tangent vectors ``(t1, t2)`` (each (N, 3)) of faces with these unit
    normals: ``t1 = n x e / |n x e|`` with ``e`` the coordinate axis least aligned with
    ``n``, ``t2 = n x t1``.

    Raises
    ------
    InputError
        A zero normal (a sensor at the origin facing nowhere).
    """
    n = np.asarray(normals, dtype=np.float64)
    bad = np.flatnonzero(np.linalg.norm(n, axis=1) < 0.5)
    if bad.size:
        raise InputError(f"sensor {int(bad[0])} has no normal (it sits at the origin): a "
                         f"finite element needs the direction it faces")
    e = np.zeros_like(n)
    e[np.arange(len(n)), np.argmin(np.abs(n), axis=1)] = 1.0
    t1 = np.cross(n, e)
    t1 /= np.linalg.norm(t1, axis=1)[:, None]
    return t1, np.cross(n, t1)


def element_points_3d(sensors: Any, size: float, acquisition: Any, shape: str = "square",
                      n_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The points and weights that stand for flat elements of a 3-D array.

    Parameters
    ----------
    sensors
        The element centres and normals (:class:`oatomo.volume.SensorArray3D`).
    size
        Side of a square element or diameter of a disc, in metres (> 0).
    acquisition
        Its sampling: by default the mesh spacing ``size / n_side`` is at most ``c / fs``.
    shape
        ``"square"`` or ``"disc"``.
    n_side
        Mesh points along each face axis (default ``max(2, ceil(size fs / c))``).

    Returns
    -------
    positions : numpy.ndarray
        float64 (N, m, 3): the ``m`` points of each element (on its face).
    weights : numpy.ndarray
        float64 (m,), summing to 1: each point's share of the face, the same for every
        element (a disc's mesh cells wholly outside it are left out).
    """
    size, shape = check_element(size, shape)
    spacing = acquisition.speed_of_sound / acquisition.fs
    n = n_side if n_side is not None else max(2, int(math.ceil(size / spacing)))
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise InputError(f"n_side must be a positive integer, got {n_side!r}")
    n = int(n)
    if n * n > MAX_ELEMENT_POINTS:
        raise InputError(f"element size {size:g} m needs {n} x {n} points per element at "
                         f"c/fs = {spacing:.3g} m; at most {MAX_ELEMENT_POINTS} per element")
    u = ((np.arange(n) + 0.5) / n - 0.5) * size  # cell centres along one face axis
    uu, vv = (g.reshape(-1) for g in np.meshgrid(u, u, indexing="ij"))
    if shape == "square":
        weights = np.full(n * n, 1.0 / (n * n))
    else:  # each cell's area inside the disc, from a _SUB x _SUB sub-mesh of the cell
        s = ((np.arange(_SUB) + 0.5) / _SUB - 0.5) * (size / n)
        su, sv = np.meshgrid(s, s, indexing="ij")
        inside = ((uu[:, None, None] + su) ** 2 + (vv[:, None, None] + sv) ** 2
                  <= (0.5 * size) ** 2)
        frac = inside.mean(axis=(1, 2))  # the cells next to the centre are never empty
        keep = frac > 0
        uu, vv, weights = uu[keep], vv[keep], frac[keep] / frac[keep].sum()
    m = len(weights)
    check_bytes(24.0 * sensors.n_sensors * m, "the element points")
    t1, t2 = face_axes(sensors.normals)
    pos = (sensors.positions[:, None, :] + uu[None, :, None] * t1[:, None, :]
           + vv[None, :, None] * t2[:, None, :])
    return pos, weights

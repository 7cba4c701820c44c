"""What each pixel sees of the sensor array: the view channels of a geometry-aware refiner.

A limited view (an arc shorter than 180°, a linear array) leaves, at each pixel, the
image's edges whose normals point away from every sensor out of the data: a wavefront
leaves an edge along its normal, and no sensor lies in that direction. Which directions are
missing differs from pixel to pixel and from array to array, and a network that sees only
the images has to guess them from the artefacts. The view channels tell it.

For a pixel ``p`` and the directions ``phi_s`` from ``p`` to the sensors ``s``, the channels
are the mean harmonics of twice and four times those angles (an edge and its opposite are
the same edge, so directions count modulo 180°)::

    c2 = mean_s cos(2 phi_s),   s2 = mean_s sin(2 phi_s),
    c4 = mean_s cos(4 phi_s),   s4 = mean_s sin(4 phi_s).

A pixel inside a full ring, or at the centre of a half ring, has ``c2 = s2 = 0`` (every
edge direction is seen); under a narrow array ``|(c2, s2)|`` approaches 1 and points along
the direction the sensors lie in. The channels are dimensionless (in [-1, 1]), depend on
the geometry only, and are not scaled with the images (so ``refine(a x) = a refine(x)``
still holds).

``phi`` is measured from the +x axis towards +y, and pixel ``image[i, j]`` sits at
``x = x_j``, ``y = y_i`` (:class:`oatomo.geometry.Grid`). Rotating the image stack by 90°
(``numpy.rot90`` over the last two axes) negates ``c2`` and ``s2`` and keeps ``c4`` and
``s4``; mirroring it (reversing either axis) negates ``s2`` and ``s4``:
:data:`VIEW_SIGNS` holds those signs, which a trainer that rotates and mirrors its crops
applies to the view channels (:func:`oatomo.learn.patches.patch_batch`).
"""

from __future__ import annotations

import numpy as np

from oatomo._limits import check_bytes
from oatomo.geometry import Grid, SensorArray

__all__ = ["VIEW_NAMES", "VIEW_SIGNS", "channel_signs", "view_channels"]

#: Names of the view channels, in order.
VIEW_NAMES = ("view_c2", "view_s2", "view_c4", "view_s4")

#: Per view channel: its sign under a 90° rotation of the image and under a mirror.
VIEW_SIGNS = np.array([[-1.0, 1.0], [-1.0, -1.0], [1.0, 1.0], [1.0, -1.0]], np.float32)


def channel_signs(n_images: int) -> np.ndarray:
    """The (n_images + 4, 2) signs of a view model's input under a turn and a mirror:
    ``n_images`` image channels (unchanged), then the view channels (:data:`VIEW_SIGNS`);
    :func:`oatomo.learn.augment.turn_factors` turns them into factors."""
    return np.concatenate([np.ones((n_images, 2), np.float32), VIEW_SIGNS])


def view_channels(sensors: SensorArray, grid: Grid) -> np.ndarray:
    """The (4, n, n) view channels of ``sensors`` on ``grid`` (float32; see the module
    docstring): mean cos/sin of 2 and 4 times the pixel-to-sensor directions."""
    from oatomo.kernels import view_harmonics  # lazy: Numba compiles on first use

    pos = np.ascontiguousarray(sensors.positions, np.float64)
    n = grid.n
    check_bytes(4.0 * 4 * n * n, f"the view channels of a {n}x{n} grid")
    out = np.empty((4, n, n), np.float32)
    view_harmonics(pos[:, 0].copy(), pos[:, 1].copy(), np.ascontiguousarray(grid.x),
                   np.ascontiguousarray(grid.y), out)
    return out

"""The default image grid of a scan: its truth grid, or a field of view fitted to the
object seen in the data."""

from __future__ import annotations

from typing import Any

import numpy as np

from oatomo.geometry import Grid
from oatomo.io.scan import require_plane

__all__ = ["OBJECT_MARGIN", "default_grid", "object_fov", "object_extent"]

#: :func:`object_fov`'s half-width over the farthest reach of the object seen in the data.
OBJECT_MARGIN = 1.15


def default_grid(scan: Any, n: int | None = None, fov: float | None = None) -> Grid:
    """The image grid: the scan's truth grid, else ``n`` (256) pixels over ``fov``: the
    object's extent seen in the data (:func:`object_fov`), at most the diameter of the
    sensors' inscribed circle (1.3 x the median array radius when the data show nothing).
    """
    require_plane(scan, "the default image grid")
    truth = getattr(scan, "grid", None)
    if n is None and fov is None and truth is not None:
        return truth
    radius = float(np.median(np.hypot(*scan.sensors.positions.T)))
    if fov is None:
        fov = truth.fov if truth is not None else object_fov(scan)
        if fov is None:
            fov = 1.3 * radius
    if n is None:
        n = truth.n if truth is not None else 256
    return Grid(n, fov)


def object_fov(scan: Any, *, threshold: float = 0.2,
               margin: float = OBJECT_MARGIN) -> float | None:
    """A field of view (m) that holds the object, from the first arrivals in the data.

    Each sensor's first sample above ``threshold`` x the scan's peak (all frames) puts the
    nearest absorber at distance ``d_s = c t`` from it, so nothing lies farther than
    ``|r_s| - d_s`` from the origin in that sensor's direction; the largest such reach,
    times ``margin``, is the half-width. Capped at the inscribed circle (the smallest
    sensor distance from the origin); None when no sensor sees a signal.
    """
    extent = object_extent(scan, threshold=threshold, margin=margin)
    return None if extent is None else extent[0]


def object_extent(scan: Any, *, threshold: float = 0.2,
                  margin: float = OBJECT_MARGIN) -> tuple[float, bool] | None:
    """:func:`object_fov` and whether the inscribed circle capped it (True: the first
    arrivals do not bound the object inside the array, as when every sensor carries
    signal from its first samples on); None as :func:`object_fov`."""
    require_plane(scan, "the field of view from the first arrivals")
    y = np.abs(np.asarray(scan.sinogram, np.float32))
    y = y.reshape((-1,) + y.shape[-2:]).max(axis=0)
    level = threshold * float(y.max())
    seen = y.max(axis=1) >= level
    if level <= 0 or not np.any(seen):
        return None
    first = np.argmax(y[seen] >= level, axis=1)
    acq = scan.acquisition
    dist = acq.speed_of_sound * np.maximum(acq.t0 + first / acq.fs, 0.0)
    r_s = np.hypot(*scan.sensors.positions.T)
    reach = float(np.max(r_s[seen] - dist))
    inscribed = float(r_s.min())
    if reach <= 0 or inscribed <= 0:
        return None
    return 2 * min(margin * reach, inscribed), margin * reach >= inscribed

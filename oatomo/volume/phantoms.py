"""Volume phantoms: a uniform ball and a branching 3-D vessel tree on a :class:`VolumeGrid`.

Every phantom is float32 (nz, ny, nx), non-negative, maximum 1, drawn from a seed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from oatomo.errors import InputError
from oatomo.volume.geometry import VolumeGrid

__all__ = ["VOLUME_PHANTOMS", "ball", "vessels3d", "make_volume", "check_volume_phantom"]

#: Names of the volume phantoms (``oatomo simulate --phantom`` on a 3-D array).
VOLUME_PHANTOMS = ("ball", "vessels3d")


def ball(grid: VolumeGrid, radius: float | None = None,
         centre: Any = (0.0, 0.0, 0.0)) -> np.ndarray:
    """A uniform ball of value 1, anti-aliased over one voxel at its surface.

    Parameters
    ----------
    grid
        The volume grid.
    radius
        Radius in metres (default a quarter of the grid's side).
    centre
        (x, y, z) of its centre in metres.

    Examples
    --------
    >>> g = VolumeGrid(16, 0.016)
    >>> b = ball(g, 0.004)
    >>> float(b.max()), b.shape
    (1.0, (16, 16, 16))
    """
    r = grid.fov / 4 if radius is None else float(radius)
    if not (math.isfinite(r) and r > 0):
        raise InputError(f"ball radius must be > 0 metres, got {radius!r}")
    cx, cy, cz = (float(v) for v in centre)
    z, y, x = grid.z[:, None, None], grid.y[None, :, None], grid.x[None, None, :]
    d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2)
    return np.clip((r - d) / grid.dx + 0.5, 0.0, 1.0).astype(np.float32)


def _rotate_about(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """``v`` rotated by ``angle`` about the unit ``axis`` (Rodrigues)."""
    c, s = math.cos(angle), math.sin(angle)
    return v * c + np.cross(axis, v) * s + axis * float(axis @ v) * (1 - c)


def _perpendicular(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random unit vector perpendicular to the unit vector ``v``."""
    while True:
        u = np.cross(v, rng.standard_normal(3))
        n = float(np.linalg.norm(u))
        if n > 1e-6:
            return u / n


def vessels3d(grid: VolumeGrid, seed: int | None = 0, depth: int = 5, *,
              trees: int = 2, width: float | None = None) -> np.ndarray:
    """Synthetic branching 3-D vessel trees (seeded), maximum 1.

    Each tree's root vessel enters from a random direction at 0.45 of the side from the centre and
    heads inwards; each segment splits in two, turning by 25 to 50 degrees each way in a
    random plane, with 0.75 of the parent's length and 0.79 of its width (Murray's
    ratio), ``depth`` levels in all. Segments are capsules (distance to the segment below
    half the width), anti-aliased over one voxel, each with a value drawn in 0.6..1; where
    vessels cross the larger value wins.

    Parameters
    ----------
    grid
        The volume grid.
    seed
        Seed of every draw.
    depth
        Levels of branching (1: the root alone).
    trees
        Number of trees, 1..8.
    width
        The roots' width in metres (default 6 % of the side); the tree keeps its shape in
        metres whatever the pitch, so the same seed on a finer grid is the same object.

    Examples
    --------
    >>> v = vessels3d(VolumeGrid(24, 0.012), seed=1)
    >>> v.shape, float(v.max()) == 1.0, bool(0.005 < (v > 0.5).mean() < 0.3)
    ((24, 24, 24), True, True)
    """
    if not (isinstance(depth, int) and 1 <= depth <= 8):
        raise InputError(f"vessel tree depth must be an integer in 1..8, got {depth!r}")
    if not (isinstance(trees, int) and 1 <= trees <= 8):
        raise InputError(f"number of vessel trees must be an integer in 1..8, got {trees!r}")
    rng = np.random.default_rng(seed)
    side = grid.dx * max(grid.shape)
    w0 = 0.06 * side if width is None else float(width)
    if not (math.isfinite(w0) and w0 > 0):
        raise InputError(f"vessel width must be > 0 metres, got {width!r}")
    vol = np.zeros(grid.shape, np.float32)
    zs, ys, xs = grid.z, grid.y, grid.x
    stack = []
    for _ in range(trees):
        entry = rng.standard_normal(3)
        entry /= np.linalg.norm(entry)
        heading = -entry + 0.3 * rng.standard_normal(3)
        heading /= np.linalg.norm(heading)
        stack.append((0.45 * side * entry, heading, 0.42 * side, w0, 1))
    while stack:
        p, h, length, w, level = stack.pop()
        q = p + length * h
        _draw_capsule(vol, xs, ys, zs, p, q, w / 2, grid.dx, float(rng.uniform(0.6, 1.0)))
        if level >= depth:
            continue
        plane = _perpendicular(h, rng)
        for sign in (1.0, -1.0):
            turn = sign * math.radians(float(rng.uniform(25, 50)))
            child = _rotate_about(h, plane, turn)
            stack.append((q, child / np.linalg.norm(child), 0.75 * length, 0.79 * w,
                          level + 1))
    peak = float(vol.max())
    return vol / peak if peak > 0 else vol


def _draw_capsule(vol: np.ndarray, xs: np.ndarray, ys: np.ndarray, zs: np.ndarray,
                  p: np.ndarray, q: np.ndarray, radius: float, dx: float,
                  value: float) -> None:
    """Set ``vol`` to the maximum of itself and the anti-aliased capsule of radius
    ``radius`` round the segment ``p``-``q`` (x, y, z in metres) at ``value``, over the
    capsule's bounding box only."""
    lo = np.minimum(p, q) - radius - dx
    hi = np.maximum(p, q) + radius + dx
    sel = [np.flatnonzero((a >= lo[k]) & (a <= hi[k])) for k, a in enumerate((xs, ys, zs))]
    if any(s.size == 0 for s in sel):
        return
    ix, iy, iz = sel
    X = xs[ix][None, None, :] - p[0]
    Y = ys[iy][None, :, None] - p[1]
    Z = zs[iz][:, None, None] - p[2]
    d = q - p
    dd = float(d @ d)
    t = np.clip((X * d[0] + Y * d[1] + Z * d[2]) / dd, 0.0, 1.0) if dd > 0 else 0.0
    dist = np.sqrt((X - t * d[0]) ** 2 + (Y - t * d[1]) ** 2 + (Z - t * d[2]) ** 2)
    cap = (value * np.clip((radius - dist) / dx + 0.5, 0.0, 1.0)).astype(np.float32)
    block = vol[iz[0]:iz[-1] + 1, iy[0]:iy[-1] + 1, ix[0]:ix[-1] + 1]
    np.maximum(block, cap, out=block)


def check_volume_phantom(name: str, what: str = "--phantom") -> None:
    """Raise :class:`InputError` unless ``name`` is one of :data:`VOLUME_PHANTOMS`."""
    if name not in VOLUME_PHANTOMS:
        raise InputError(f"{what}: {name!r} is not a volume phantom; a 3-D array takes "
                         f"{' or '.join(VOLUME_PHANTOMS)}")


def make_volume(name: str, grid: VolumeGrid, seed: int | None = 0) -> np.ndarray:
    """The volume phantom ``name`` (one of :data:`VOLUME_PHANTOMS`) on ``grid``."""
    check_volume_phantom(name, "phantom")
    if name == "ball":
        return ball(grid)
    return vessels3d(grid, seed)

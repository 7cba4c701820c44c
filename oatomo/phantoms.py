"""Initial-pressure phantoms on an image grid.

Every phantom is a float32 (n, n) array, non-negative; the random ones take a seed and
the same seed gives the same bytes.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np

from .errors import InputError
from .geometry import Grid

__all__ = ["disk", "disks", "shepp_logan", "vessels", "vessel_tree", "load_image", "make",
           "NAMES"]

#: Phantom names understood by :func:`make` (besides a path to a .png/.npy file).
NAMES = ("vessels", "vessel-tree", "disk", "disks", "shepp-logan")


def disk(grid: Grid, radius: float, center: tuple[float, float] = (0.0, 0.0),
         value: float = 1.0, supersample: int = 8) -> np.ndarray:
    """A uniform disk, anti-aliased by the fraction of each pixel's area it covers.

    Parameters
    ----------
    grid
        Image grid.
    radius
        Disk radius (m).
    center
        Disk centre (x, y) in metres.
    value
        Value inside the disk (Pa).
    supersample
        Sub-samples per pixel side used to estimate the covered area.
    """
    X, Y = grid.coordinates()
    off = ((np.arange(supersample) + 0.5) / supersample - 0.5) * grid.dx
    cover = np.zeros(grid.shape)
    for ox in off:
        for oy in off:
            cover += (X + ox - center[0]) ** 2 + (Y + oy - center[1]) ** 2 <= radius**2
    return (value * cover / supersample**2).astype(np.float32)


def disks(grid: Grid, seed: int | None = 0, count: int = 5) -> np.ndarray:
    """Several non-negative disks of random radius, position and value (seeded)."""
    rng = np.random.default_rng(seed)
    img = np.zeros(grid.shape, np.float32)
    half = grid.fov / 2
    for _ in range(count):
        r = rng.uniform(0.03, 0.12) * grid.fov
        c = rng.uniform(-half + r, half - r, size=2)
        img += disk(grid, r, (c[0], c[1]), rng.uniform(0.3, 1.0), supersample=4)
    return (img / img.max()).astype(np.float32)


def shepp_logan(grid: Grid) -> np.ndarray:
    """The Shepp–Logan phantom (scikit-image's) resampled to the grid, max 1."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    img = resize(shepp_logan_phantom(), grid.shape, anti_aliasing=True, order=1)
    img = np.clip(img, 0, None)
    return (img / img.max()).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _retina_vesselness() -> np.ndarray:
    """Vesselness (Sato filter) of scikit-image's bundled retina image, at 512 x 512."""
    from skimage.data import retina
    from skimage.filters import sato
    from skimage.transform import resize

    green = retina()[..., 1].astype(np.float64) / 255.0
    green = resize(green, (512, 512), anti_aliasing=True)
    ves = sato(green, sigmas=(1.0, 2.0, 3.0), black_ridges=True)
    # the field-of-view rim of the fundus photo is not a vessel
    yy, xx = np.mgrid[:512, :512]
    ves[np.hypot(yy - 255.5, xx - 255.5) > 225] = 0
    ves = np.clip(ves / np.percentile(ves, 99.5), 0, 1)
    ves[ves < 0.15] = 0
    return ves.astype(np.float32)


def vessels(grid: Grid, seed: int | None = 0) -> np.ndarray:
    """A blood-vessel phantom cropped from the retina image bundled with scikit-image.

    The vesselness map (Sato filter, computed once per process) is cropped at a random
    position and size, rotated by a random angle, randomly flipped, resampled to the grid
    and min–max normalised; all draws come from ``seed``.
    """
    from skimage.transform import resize, rotate

    rng = np.random.default_rng(seed)
    ves = _retina_vesselness()
    for _ in range(20):  # avoid near-empty crops
        size = int(rng.integers(128, 257))
        i0, j0 = (int(v) for v in rng.integers(40, 512 - 40 - size, size=2))
        crop = ves[i0:i0 + size, j0:j0 + size]
        if crop.mean() > 0.04:
            break
    crop = rotate(crop, float(rng.uniform(0, 360)), order=1, mode="constant")
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1, :]
    img = resize(crop, grid.shape, anti_aliasing=True, order=1)
    lo, hi = float(img.min()), float(img.max())
    return ((img - lo) / (hi - lo) if hi > lo else img * 0).astype(np.float32)


def vessel_tree(grid: Grid, seed: int | None = 0, depth: int = 6) -> np.ndarray:
    """A synthetic branching vessel tree (seeded), max 1.

    A root vessel enters from a random side; each segment splits in two with random
    angles, shorter length and thinner width (Murray-like ratio 0.79), ``depth`` levels.
    Segments are drawn as anti-aliased capsules (distance to the segment < width / 2).
    """
    rng = np.random.default_rng(seed)
    X, Y = grid.coordinates()
    img = np.zeros(grid.shape, np.float64)
    half = grid.fov / 2
    side = rng.uniform(0, 2 * math.pi)
    start = np.array([math.cos(side), math.sin(side)]) * half * 0.95
    heading = side + math.pi + rng.normal(0, 0.3)
    stack = [(start, heading, 0.45 * grid.fov, max(0.012 * grid.fov, 2.2 * grid.dx), 0)]
    while stack:
        p, ang, length, width, level = stack.pop()
        q = p + length * np.array([math.cos(ang), math.sin(ang)])
        d = _segment_distance(X, Y, p, q)
        img = np.maximum(img, np.clip((width / 2 - d) / grid.dx + 0.5, 0, 1)
                         * rng.uniform(0.6, 1.0))
        if level < depth:
            for sgn in (-1, 1):
                stack.append((q, ang + sgn * rng.uniform(0.3, 0.8), length * rng.uniform(0.55, 0.8),
                              max(width * 0.79, 1.2 * grid.dx), level + 1))
    return (img / img.max()).astype(np.float32)


def _segment_distance(X: np.ndarray, Y: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    v = q - p
    t = np.clip(((X - p[0]) * v[0] + (Y - p[1]) * v[1]) / max(v @ v, 1e-30), 0, 1)
    return np.hypot(X - p[0] - t * v[0], Y - p[1] - t * v[1])


def load_image(path: str | os.PathLike, grid: Grid) -> np.ndarray:
    """A user image (.png or .npy) resampled to the grid, non-negative, max 1."""
    from skimage.transform import resize

    p = Path(path)
    if not p.exists():
        raise InputError("phantom file not found", p)
    try:
        if p.suffix.lower() == ".npy":
            img = np.load(p, allow_pickle=False)
        elif p.suffix.lower() == ".png":
            import matplotlib.image as mpimg

            img = mpimg.imread(p)
        else:
            raise InputError("phantom must be a .png or .npy file", p)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file
        raise InputError(f"cannot read image ({exc.__class__.__name__})", p) from None
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1)
    if img.ndim != 2 or min(img.shape) < 2:
        raise InputError(f"phantom must be a 2-D image, got shape {img.shape}", p)
    if not np.all(np.isfinite(img)):
        raise InputError("phantom contains NaN or Inf", p)
    img = np.clip(resize(img, grid.shape, anti_aliasing=True, order=1), 0, None)
    return (img / img.max() if img.max() > 0 else img).astype(np.float32)


def make(name: str, grid: Grid, seed: int | None = 0) -> np.ndarray:
    """A phantom by name (see :data:`NAMES`) or from a .png/.npy path."""
    if name == "vessels":
        return vessels(grid, seed)
    if name == "vessel-tree":
        return vessel_tree(grid, seed)
    if name == "disk":
        return disk(grid, 0.2 * grid.fov, (0.07 * grid.fov, -0.05 * grid.fov))
    if name == "disks":
        return disks(grid, seed)
    if name == "shepp-logan":
        return shepp_logan(grid)
    if name.lower().endswith((".png", ".npy")):
        return load_image(name, grid)
    raise InputError(f"unknown phantom {name!r}; choose from {', '.join(NAMES)} or a "
                     ".png/.npy path")

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

from oatomo._atomic import check_input_file
from oatomo._limits import check_bytes
from oatomo.errors import InputError
from oatomo.geometry import Grid

__all__ = ["disk", "disks", "shepp_logan", "vessels", "vessel_tree", "load_image", "make",
           "NAMES", "vessel_forest", "vessel_walk", "blobs", "texture", "mixture",
           "TRAIN_TEXTURES", "HELDOUT_TEXTURES"]

#: Phantom names understood by :func:`make` (besides a path to a .png/.npy file).
NAMES = ("vessels", "vessel-tree", "disk", "disks", "shepp-logan", "vessel-forest",
         "vessel-walk", "blobs", "texture", "texture-heldout", "mixture")

#: scikit-image images (bundled with the package, no download) used for training textures.
TRAIN_TEXTURES = ("astronaut", "brick", "camera", "chelsea", "coffee", "grass", "gravel",
                  "rocket", "text")
#: scikit-image images kept out of training (held-out texture kind).
HELDOUT_TEXTURES = ("coins", "moon", "horse")


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
    from skimage.data import shepp_logan_phantom  # lazy: scikit-image
    from skimage.transform import resize  # lazy: scikit-image

    img = resize(shepp_logan_phantom(), grid.shape, anti_aliasing=True, order=1)
    img = np.clip(img, 0, None)
    return (img / img.max()).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _retina_vesselness() -> np.ndarray:
    """Vesselness (Sato filter) of scikit-image's bundled retina image, at 512 x 512."""
    from skimage.data import retina  # lazy: scikit-image
    from skimage.filters import sato  # lazy: scikit-image
    from skimage.transform import resize  # lazy: scikit-image

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
    from skimage.transform import resize, rotate  # lazy: scikit-image

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


def vessel_tree(grid: Grid, seed: int | None = 0, depth: int = 6, *,
                width: float | None = None) -> np.ndarray:
    """A synthetic branching vessel tree (seeded), max 1.

    A root vessel enters from a random side; each segment splits in two with random
    angles, shorter length and thinner width (Murray-like ratio 0.79), ``depth`` levels.
    Segments are drawn as anti-aliased capsules (distance to the segment < width / 2).
    ``width`` is the root vessel's width in metres (default ``max(1.2 % of the FOV,
    2.2 pixels)``).
    """
    rng = np.random.default_rng(seed)
    X, Y = grid.coordinates()
    img = np.zeros(grid.shape, np.float64)
    half = grid.fov / 2
    side = rng.uniform(0, 2 * math.pi)
    start = np.array([math.cos(side), math.sin(side)]) * half * 0.95
    heading = side + math.pi + rng.normal(0, 0.3)
    w0 = max(0.012 * grid.fov, 2.2 * grid.dx) if width is None else float(width)
    stack = [(start, heading, 0.45 * grid.fov, w0, 0)]
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


def vessel_forest(grid: Grid, seed: int | None = 0) -> np.ndarray:
    """One to three vessel trees of different scales (root width 1.2 to 8 pixels), max 1.

    The multi-scale training kind: thin capillary-like trees next to thick vessels.
    """
    rng = np.random.default_rng(seed)
    img = np.zeros(grid.shape, np.float32)
    for _ in range(int(rng.integers(1, 4))):
        width = grid.dx * float(np.exp(rng.uniform(np.log(1.2), np.log(8.0))))
        tree = vessel_tree(grid, int(rng.integers(2**31)), depth=int(rng.integers(3, 7)),
                           width=width)
        img = np.maximum(img, tree * rng.uniform(0.4, 1.0))
    return (img / img.max()).astype(np.float32)


def vessel_walk(grid: Grid, seed: int | None = 0, count: int = 4) -> np.ndarray:
    """Tortuous vessels: smooth random walks of random width (seeded), max 1.

    Unlike :func:`vessel_tree` nothing branches and every vessel curls; this kind is kept
    out of the refiner's training data and used to evaluate it on unseen structure.
    """
    rng = np.random.default_rng(seed)
    X, Y = grid.coordinates()
    img = np.zeros(grid.shape, np.float64)
    half = grid.fov / 2
    for _ in range(count):
        width = grid.dx * rng.uniform(1.2, 5.0)
        p = rng.uniform(-half, half, size=2) * 0.8
        ang, turn = rng.uniform(0, 2 * math.pi), 0.0
        step = 0.04 * grid.fov
        value = rng.uniform(0.5, 1.0)
        for _ in range(int(rng.integers(12, 30))):
            turn = 0.7 * turn + rng.normal(0, 0.35)
            ang += turn
            q = p + step * np.array([math.cos(ang), math.sin(ang)])
            d = _segment_distance(X, Y, p, q)
            img = np.maximum(img, np.clip((width / 2 - d) / grid.dx + 0.5, 0, 1) * value)
            p = q
    return (img / img.max() if img.max() > 0 else img).astype(np.float32)


def blobs(grid: Grid, seed: int | None = 0) -> np.ndarray:
    """A sum of 3 to 12 anisotropic Gaussian blobs of random size and value (seeded), max 1."""
    rng = np.random.default_rng(seed)
    X, Y = grid.coordinates()
    img = np.zeros(grid.shape, np.float64)
    half = grid.fov / 2
    for _ in range(int(rng.integers(3, 13))):
        c = rng.uniform(-half, half, size=2) * 0.8
        sx, sy = rng.uniform(0.01, 0.12, size=2) * grid.fov + grid.dx
        th = rng.uniform(0, math.pi)
        u = (X - c[0]) * math.cos(th) + (Y - c[1]) * math.sin(th)
        v = -(X - c[0]) * math.sin(th) + (Y - c[1]) * math.cos(th)
        img += rng.uniform(0.2, 1.0) * np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return (img / img.max()).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _skimage_gray(name: str) -> np.ndarray:
    """A scikit-image bundled image as float grey levels in [0, 1]."""
    from skimage import data  # lazy: scikit-image

    img = np.asarray(getattr(data, name)(), np.float64)
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1)
    return img / max(float(img.max()), 1e-12)


def texture(grid: Grid, seed: int | None = 0, images: tuple[str, ...] = TRAIN_TEXTURES
            ) -> np.ndarray:
    """A textured natural image: a random crop of a scikit-image bundled image, max 1.

    The crop (a quarter to the whole of the shorter side, not flat) is rotated by a multiple of 90
    degrees, possibly flipped, resampled to the grid, optionally inverted, and half the
    time windowed by a soft disk so the absorber does not fill the field of view.
    """
    from skimage.transform import resize  # lazy: scikit-image

    rng = np.random.default_rng(seed)
    src = _skimage_gray(images[int(rng.integers(len(images)))])
    side = min(src.shape)
    for _ in range(20):  # avoid flat crops (a uniform patch of sky or background)
        size = int(rng.integers(side // 4, side + 1))
        i0 = int(rng.integers(0, src.shape[0] - size + 1))
        j0 = int(rng.integers(0, src.shape[1] - size + 1))
        crop = np.rot90(src[i0:i0 + size, j0:j0 + size], int(rng.integers(4)))
        if crop.std() > 0.02:
            break
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    img = resize(crop, grid.shape, anti_aliasing=True, order=1)
    if rng.random() < 0.3:
        img = 1.0 - img
    lifted = np.clip(img - np.percentile(img, rng.uniform(0, 30)), 0, None)
    img = lifted if lifted.max() > 1e-3 * max(float(img.max()), 1e-12) else img
    if rng.random() < 0.5:
        X, Y = grid.coordinates()
        r = rng.uniform(0.25, 0.5) * grid.fov
        img = img / (1 + np.exp((np.hypot(X, Y) - r) / (0.03 * grid.fov)))
    return (img / img.max() if img.max() > 0 else img).astype(np.float32)


#: The kinds a :func:`mixture` combines (all of them training kinds).
_MIXABLE = ("vessel-forest", "blobs", "disks", "texture", "vessels")


def mixture(grid: Grid, seed: int | None = 0) -> np.ndarray:
    """Two training kinds combined: the maximum of a weighted pair (seeded), max 1."""
    rng = np.random.default_rng(seed)
    a, b = rng.choice(len(_MIXABLE), size=2, replace=False)
    img = np.maximum(make(_MIXABLE[a], grid, int(rng.integers(2**31))),
                     rng.uniform(0.3, 1.0) * make(_MIXABLE[b], grid, int(rng.integers(2**31))))
    return (img / img.max()).astype(np.float32)


def load_image(path: str | os.PathLike, grid: Grid) -> np.ndarray:
    """A user image (.png or .npy) resampled to the grid, non-negative, max 1."""
    from skimage.transform import resize  # lazy: scikit-image

    p = check_input_file(path, "phantom file")
    _check_image_size(p)
    try:
        if p.suffix.lower() == ".npy":
            img = np.load(p, allow_pickle=False)
        elif p.suffix.lower() == ".png":
            import matplotlib.image as mpimg  # lazy: matplotlib

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


def _check_image_size(p: Path) -> None:
    """Refuse an image whose declared size (PNG header, .npy header) exceeds the memory
    limit before it is decoded (a small compressed PNG can decode to gigabytes)."""
    with open(p, "rb") as f:
        head = f.read(32)
        if p.suffix.lower() == ".png":
            if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
                raise InputError("not a PNG file", p)
            shape: tuple[int, ...] = (int.from_bytes(head[16:20], "big"),
                                      int.from_bytes(head[20:24], "big"), 4)
        elif p.suffix.lower() == ".npy":
            f.seek(0)
            fmt = np.lib.format
            try:
                version = fmt.read_magic(f)
                read = {(1, 0): fmt.read_array_header_1_0,
                        (2, 0): fmt.read_array_header_2_0}.get(version)
                if read is None:
                    raise ValueError(f"unsupported .npy version {version}")
                shape, _, dtype = read(f)
            except (ValueError, OSError) as exc:
                raise InputError(f"not a .npy file ({exc})", p) from None
            if dtype.kind not in "biuf":
                raise InputError(f"phantom array has dtype {dtype}, not a number", p)
        else:
            return
    check_bytes(8.0 * float(np.prod(shape, dtype=np.float64)), f"the image {shape}", p)


def check_name(name: str) -> None:
    """Raise :class:`InputError` unless ``name`` is a phantom :func:`make` knows (a name of
    :data:`NAMES` or a .png/.npy path); cheap, for checking before any work."""
    if name not in NAMES and not name.lower().endswith((".png", ".npy")):
        raise InputError(f"unknown phantom {name!r}; choose from {', '.join(NAMES)} or a "
                         ".png/.npy path")


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
    simple = {"vessel-forest": vessel_forest, "vessel-walk": vessel_walk, "blobs": blobs,
              "texture": texture, "mixture": mixture}
    if name in simple:
        return simple[name](grid, seed)
    if name == "texture-heldout":
        return texture(grid, seed, HELDOUT_TEXTURES)
    check_name(name)
    return load_image(name, grid)

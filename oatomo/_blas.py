"""How many threads NumPy's OpenBLAS uses, for a block of code.

Parallel BLAS on small matrices costs more than it saves when the machine is busy: its
threads spin while they wait for cores. With two other jobs on a 2-core machine, the NumPy
inference of one 128² refinement took 3.6 s on two BLAS threads and 1.0 s on one
(docs/results/speed.rst, ``oatomo reconstruct`` end to end). :func:`blas_threads` sets the
count through OpenBLAS's own ``openblas_set_num_threads`` (found in the library NumPy's
wheel bundles) and restores it afterwards; with another BLAS (MKL, Accelerate) or none
found it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy

logger = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = ["blas_threads", "one_blas_thread", "openblas"]

#: (setter, getter) symbol names of the OpenBLAS builds NumPy wheels ship, newest first.
_SYMBOLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
            ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
            ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
            ("openblas_set_num_threads", "openblas_get_num_threads"))


def _candidates() -> list[Path]:
    root = Path(numpy.__file__).parent
    out: list[Path] = []
    for d in (root.parent / "numpy.libs", root / ".dylibs", root / ".libs"):
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if "openblas" in p.name.lower())
    return out


@functools.cache
def openblas() -> tuple[Any, Any] | None:
    """The (set, get) thread-count functions of NumPy's bundled OpenBLAS, or None."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(str(path))  # the library NumPy loaded: same handle
        except OSError:
            continue
        for setter, getter in _SYMBOLS:
            if hasattr(lib, setter) and hasattr(lib, getter):
                get = getattr(lib, getter)
                get.restype = ctypes.c_int
                put = getattr(lib, setter)
                put.argtypes = [ctypes.c_int]
                put.restype = None
                return put, get
    logger.debug("no OpenBLAS thread control found beside NumPy")
    return None


#: The blocks of :func:`blas_threads` now open, oldest first (``(token, count)``; any
#: thread), and the count before the first of them: the count is the newest block's while
#: any is open and goes back to that one when the last closes, in whatever order blocks
#: in several threads close.
_open: list[tuple[object, int]] = []
_before: list[int] = []
_lock = threading.Lock()


@contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` OpenBLAS threads (``None``: leave the count alone).

    Blocks nest, and blocks opened in several threads at once leave the count as they
    found it once the last one closes (the count is process-wide: while blocks overlap,
    the newest still open sets it).
    """
    funcs = openblas() if n is not None else None
    if funcs is None:
        yield
        return
    put, get = funcs
    entry = (object(), int(n))
    with _lock:
        if not _open:
            _before[:] = [int(get())]
        _open.append(entry)
        put(int(n))
    try:
        yield
    finally:
        with _lock:
            del _open[next(i for i, e in enumerate(_open) if e is entry)]
            put(_open[-1][1] if _open else _before[0])


def one_blas_thread(fn: _F) -> _F:
    """Decorator: every call of ``fn`` runs with one OpenBLAS thread (:func:`blas_threads`).

    For code whose heavy work is Numba's parallel kernels with NumPy's vector algebra
    between them (self-calibration, the position check): OpenBLAS's threads, woken by a
    norm or a dot product of a long vector, spin for a while afterwards and take the cores
    the next kernel needs. Measured on a 2-core machine with the thread counts left at
    their defaults: ``oatomo.calibrate`` of a 64-sensor ring took 3.4-3.7 s, and 2.0 s with
    one BLAS thread (128-sensor ring 6.1 -> 3.7 s, 270 degree arc 2.7-2.9 -> 1.8 s).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with blas_threads(1):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy

logger = logging.getLogger(__name__)

__all__ = ["blas_threads", "openblas"]

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


@contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` OpenBLAS threads (``None``: leave the count alone)."""
    funcs = openblas() if n is not None else None
    if funcs is None:
        yield
        return
    put, get = funcs
    before = int(get())
    put(int(n))
    try:
        yield
    finally:
        put(before)

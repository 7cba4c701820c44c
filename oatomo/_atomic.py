"""Atomic file output: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

__all__ = ["atomic_path", "check_output_path"]


def check_output_path(path: str | os.PathLike, *, force: bool = False,
                      inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Validate an output path before any work is done.

    Raises :class:`InputError` if the directory is missing, the path is one of the
    ``inputs`` (inputs are never overwritten), or the file exists and ``force`` is False.
    """
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output directory {str(parent)!r} does not exist", out)
    for inp in inputs:
        if Path(inp).exists() and out.exists() and os.path.samefile(out, inp):
            raise InputError("refusing to overwrite the input file", out)
    if out.exists() and not force:
        raise InputError("output file exists (use --force to overwrite)", out)
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Examples
    --------
    >>> with atomic_path("out.h5") as tmp:            # doctest: +SKIP
    ...     h5py.File(tmp, "w").close()
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                               dir=target.parent if str(target.parent) else ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the usual permissions (umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise

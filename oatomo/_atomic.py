"""File guards: inputs that are regular files, outputs that are checked once and written
atomically (a temporary file beside the target, then a rename)."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from oatomo.errors import InputError

__all__ = ["atomic_path", "check_output_path", "check_outputs", "check_input_file",
           "check_free_space", "forget_outputs", "publish", "hdf5_for_writing",
           "hdf5_broken"]

#: Outputs that did not exist when checked without ``force``: their final rename must not
#: replace a file (another run may have created it meanwhile). Keyed by real path.
_EXCLUSIVE: set[str] = set()


def _real(path: str | os.PathLike) -> str:
    return os.path.realpath(os.fspath(path))


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (same real path, or same inode)."""
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a :class:`~pathlib.Path` if it names an existing regular file.

    Raises :class:`InputError` (naming ``path``) for a missing file, a directory, or a
    FIFO, device or socket (reading one could block forever or never end). ``what`` names
    the expected kind of file in the message.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError("file not found", p) from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", p) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"is a directory, not a {what}", p)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"not a regular file (a FIFO, device or socket), not a {what}", p)
    return p


def check_outputs(outputs: Iterable[str | os.PathLike | None], *, force: bool = False,
                  inputs: Iterable[str | os.PathLike | None] = ()) -> list[Path]:
    """Validate every output of one command before any work is done.

    Parameters
    ----------
    outputs
        The files the command will write (``None`` entries are skipped): main output,
        figure, JSON sidecar, ...
    force
        Whether existing outputs may be replaced.
    inputs
        The files the command reads; names that are not existing files (a bundled setup's
        name) are ignored.

    Returns
    -------
    list of Path
        The outputs, in order, ``None`` entries dropped.

    Raises
    ------
    InputError
        The output directory is missing; an output is an input (through any link or
        spelling) or the same file as another output; an output exists and is not a
        regular file; an output exists and ``force`` is False.

    Notes
    -----
    An output that does not exist yet and is checked without ``force`` is written by
    :func:`atomic_path` with an exclusive final step: a file that appeared meanwhile (a
    concurrent run) is never replaced.
    """
    outs = [Path(o) for o in outputs if o is not None]
    ins = [Path(i) for i in inputs if i is not None and Path(i).exists()]
    for k, out in enumerate(outs):
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir():
            raise InputError(f"output directory {str(parent)!r} does not exist", out)
        for inp in ins:
            if _same(out, inp):
                raise InputError("refusing to overwrite the input file", out)
        for other in outs[:k]:
            if _same(out, other):
                raise InputError(f"is also another output of this command ({other})", out)
        if out.is_dir():
            raise InputError("output is a directory", out)
        if out.exists() or out.is_symlink():
            if out.exists() and not out.is_file():
                raise InputError("output exists and is not a regular file", out)
            if not force:
                raise InputError("output file exists (use --force to overwrite)", out)
            _EXCLUSIVE.discard(_real(out))
        elif not force:
            _EXCLUSIVE.add(_real(out))
    return outs


def check_output_path(path: str | os.PathLike, *, force: bool = False,
                      inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """:func:`check_outputs` for a command with a single output."""
    return check_outputs([path], force=force, inputs=inputs)[0]


def check_free_space(path: str | os.PathLike, n_bytes: float) -> None:
    """Raise :class:`InputError` unless the file system of ``path`` (an output file) has
    ``n_bytes`` free: for files HDF5 writes in place (datasets), where a full disk
    mid-write leaves the library in a state that can crash the interpreter."""
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    free = shutil.disk_usage(parent).free
    if n_bytes > free:
        raise InputError(f"needs about {n_bytes / 2**20:.3g} MiB of disk space, "
                         f"{free / 2**20:.3g} MiB are free", out)


def forget_outputs() -> None:
    """Forget the outputs registered by :func:`check_outputs` (start of a command)."""
    _EXCLUSIVE.clear()


def _clean_stale(directory: Path, name: str) -> None:
    """Remove temporary files of ``name`` left by runs that were killed (their process is
    gone); the files of running processes are left alone."""
    for tmp in directory.glob(f".{glob.escape(name)}.*.tmp"):
        pid = tmp.name[len(name) + 2:].split(".", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                tmp.unlink()
        except OSError:
            pass


def publish(tmp: Path, target: Path) -> None:
    """Move the finished file ``tmp`` onto ``target`` (same directory); exclusively, never
    replacing a file, when ``target`` was registered as new by :func:`check_outputs`."""
    key = _real(target)
    if key not in _EXCLUSIVE:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails if the target appeared meanwhile
    except FileExistsError:
        raise InputError("output file appeared while this command ran (another run?); "
                         "not replaced (use --force to overwrite)", target) from None
    except OSError:  # no hard links on this file system: the next best check
        if os.path.lexists(target):
            raise InputError("output file appeared while this command ran (another run?); "
                             "not replaced (use --force to overwrite)", target) from None
        os.replace(tmp, target)
    else:
        tmp.unlink()
    _EXCLUSIVE.discard(key)  # written by us: later writes of this run replace it


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; move it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was.
    Temporary files of killed runs are removed on the next write of the same target. A
    target registered as new by :func:`check_outputs` is never replaced: if it appeared
    meanwhile, :class:`InputError` is raised and the temporary file removed.

    Examples
    --------
    >>> with atomic_path("out.h5") as tmp:            # doctest: +SKIP
    ...     h5py.File(tmp, "w").close()
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    _clean_stale(directory, target.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp",
                               dir=directory)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the usual permissions (umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        publish(tmp_path, target)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if exc.filename is None or str(exc.filename) == str(tmp_path):
            # a full disk while writing: name the output, not its temporary file
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(target)) from None
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


#: HDF5 files whose write failed. The HDF5 library can neither close such a file (a second
#: attempt crashes) nor shut down cleanly with it open (the interpreter crashes at exit),
#: so the file objects are kept here, unclosed, and the CLI ends the process without the
#: library's shutdown (:func:`hdf5_broken`).
_BROKEN_HDF5: list = []


def _from_h5py(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if f"{os.sep}h5py{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


@contextlib.contextmanager
def hdf5_for_writing(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """``h5py.File(path, mode)`` for writing, whose failure (full disk, file too large, an
    I/O error) is one :class:`OSError` naming ``path``.

    After a failed write the file is left unclosed (see :data:`_BROKEN_HDF5`): what it
    holds on disk is whatever the library had written, and :func:`hdf5_broken` is True for
    the rest of the process. Errors that do not come from HDF5 close the file normally and
    propagate unchanged.
    """
    import h5py  # lazy: h5py only for HDF5 writes

    previous, previous_except = sys.unraisablehook, sys.excepthook

    def release_error(exc: BaseException | None) -> bool:
        return str(exc).startswith("Can't decrement id ref count")

    # a failed write also fails the release of the objects it used, and each prints a
    # traceback from a destructor (through both hooks); the OSError below says it once
    def quiet(unraisable: Any) -> None:
        if not release_error(unraisable.exc_value):
            previous(unraisable)

    def quiet_except(kind: Any, value: BaseException, tb: Any) -> None:
        if not release_error(value):
            previous_except(kind, value, tb)

    def broken(exc: BaseException, what: str) -> None:
        _BROKEN_HDF5.append(f)
        said = " ".join(str(exc).split()).split(" (file write failed")[0][:120]
        raise OSError(errno.EIO, f"{what} (full disk, file too large or an I/O error; HDF5: "
                      f"{said})", str(path)) from None

    f = h5py.File(path, mode)
    sys.unraisablehook, sys.excepthook = quiet, quiet_except
    try:
        try:
            yield f
        except (RuntimeError, OSError) as exc:
            if not _from_h5py(exc):
                f.close()
                raise
            broken(exc, "could not write")
        except BaseException:
            f.close()
            raise
        try:
            f.close()
        except (RuntimeError, OSError) as exc:
            broken(exc, "could not finish writing")
    finally:
        if not _BROKEN_HDF5:
            sys.unraisablehook, sys.excepthook = previous, previous_except


def hdf5_broken() -> bool:
    """Whether an HDF5 write failed in this process (the library cannot shut down cleanly
    then: end the process with ``os._exit`` once the error is reported)."""
    return bool(_BROKEN_HDF5)

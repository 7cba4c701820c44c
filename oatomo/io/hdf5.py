"""HDF5 plumbing shared by the file formats: opening, checked reads, atomic writes.

Every reader here raises :class:`oatomo.InputError` naming the file (or a plain
``ValueError`` that :func:`oatomo.io.formats.load_scan` turns into one) instead of
letting a malformed file reach the numerics.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from oatomo._atomic import atomic_path, check_input_file
from oatomo._documents import MAX_DOCUMENT_BYTES, parse_json
from oatomo._limits import check_bytes, check_range
from oatomo.errors import InputError

__all__ = ["open_hdf5", "check_self_contained", "check_metadata_size", "write_hdf5",
           "scalar_value", "number_value", "integer_value", "ranged_value", "text_value",
           "json_value", "from_key", "read_array", "numeric_dataset", "missing_filters",
           "sensor_positions", "group_to_json", "json_to_group", "MAX_METADATA_BYTES"]

#: Most values :func:`group_to_json` reads from one metadata tree (about 64 MiB as JSON).
MAX_METADATA_VALUES = 4_000_000
#: Most links :func:`open_hdf5` inspects in one file before refusing it.
MAX_LINKS = 200_000
#: Most bytes a file may hold outside its datasets' raw data (attributes, variable-length
#: strings, the file's own structure): everything there may be read as metadata.
MAX_METADATA_BYTES = MAX_DOCUMENT_BYTES
#: Largest value (bytes) :func:`scalar_value` reads from a dataset.
MAX_VALUE_BYTES = 1 << 20


def open_hdf5(path: str | os.PathLike) -> h5py.File:
    """Open an HDF5 file read-only, after checking that it is a readable file.

    The file must be self-contained (see :func:`check_self_contained`): nothing in it may
    steer a read outside it.

    Its metadata must be small enough to read (see :func:`check_metadata_size`).

    Raises
    ------
    InputError
        Missing or unreadable file, a FIFO or device (also when swapped in after the
        check), a file that is not HDF5, a truncated/corrupt one, one that is not
        self-contained, or one with too much metadata.
    """
    p = check_input_file(path, "scan file")
    try:
        f = h5py.File(p, "r")
    except OSError:
        with open(p, "rb") as fh:
            magic = fh.read(8)
        if magic == b"\x89HDF\r\n\x1a\n":
            raise InputError("HDF5 file is truncated or corrupt", p) from None
        raise InputError("not an HDF5 file", p) from None
    try:
        # the path may have been swapped for a FIFO or device since it was checked
        if not stat.S_ISREG(os.fstat(f.id.get_vfd_handle()).st_mode):
            raise InputError("not a regular file (a FIFO, device or socket), not a scan file",
                             p)
        check_metadata_size(f, p, check_self_contained(f, p))
    except BaseException:
        f.close()
        raise
    return f


def check_self_contained(f: h5py.File, path: Any) -> int:
    """Refuse an HDF5 file whose reading could leave it, before anything is read; return
    the bytes of raw data its datasets store in it.

    Every link of the file is visited (each object once, so hard-link cycles end) without
    following any: external links (to another file, a FIFO or a device), soft links that
    do not resolve inside the file (loops, missing targets), virtual datasets (whose
    sources are other datasets or files, possibly the dataset itself) and datasets whose
    raw data is stored in external files are all refused.

    Raises
    ------
    InputError
        One of the above, naming the object, or more than :data:`MAX_LINKS` links.
    """
    seen: set[int] = set()
    todo: list[h5py.Group] = [f]
    n_links = stored = 0
    while todo:
        group = todo.pop()
        for name in group:
            n_links += 1
            if n_links > MAX_LINKS:
                raise InputError(f"has more than {MAX_LINKS} HDF5 links", path)
            where = f"{group.name.rstrip('/')}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise InputError(f"{where} is an HDF5 external link (to {link.filename}:"
                                 f"{link.path}); oatomo reads only the file it is given", path)
            try:
                info = h5py.h5o.get_info(group.id, name.encode("utf-8", "surrogateescape"))
            except (RuntimeError, KeyError, OSError):
                raise InputError(f"{where} is an HDF5 link that does not resolve inside the "
                                 f"file (a soft-link loop or a missing target)", path) from None
            if not isinstance(link, h5py.HardLink) or info.addr in seen:
                continue  # a soft link's target is an object reached by hard links too
            seen.add(info.addr)
            if info.type == h5py.h5o.TYPE_GROUP:
                todo.append(group[name])
            elif info.type == h5py.h5o.TYPE_DATASET:
                dset = group[name]
                if dset.is_virtual:
                    raise InputError(f"{where} is an HDF5 virtual dataset (its data lives in "
                                     f"other datasets or files); oatomo reads only plain "
                                     f"datasets", path)
                if dset.external:
                    raise InputError(f"{where} stores its data in external files "
                                     f"({dset.external[0][0]}); oatomo reads only the file it "
                                     f"is given", path)
                stored += dset.id.get_storage_size()
    return stored


def check_metadata_size(f: h5py.File, path: Any, stored: int) -> None:
    """Refuse an HDF5 file that holds more than :data:`MAX_METADATA_BYTES` outside its
    datasets' raw data (``stored`` bytes, from :func:`check_self_contained`), or more than
    ``OATOMO_MAX_BYTES`` allows to read, before any attribute or string is read.

    Attributes and variable-length strings live there (their size is not known before
    they are read), so this bounds every metadata read of the file. Space left unused by
    deleted objects counts too (``h5repack`` reclaims it).
    """
    outside = max(0, int(f.id.get_filesize()) - int(stored))
    if outside > MAX_METADATA_BYTES:
        raise InputError(f"holds {outside / 2**20:.0f} MiB outside its datasets' data "
                         f"(attributes, variable-length strings or unused space), more than "
                         f"the {MAX_METADATA_BYTES >> 20} MiB of metadata oatomo reads "
                         f"(h5repack reclaims unused space)", path)
    # read as bytes, then decoded to text: twice its size (a document parsed from it is
    # checked again by the parser)
    check_bytes(2.0 * outside, f"reading the file's metadata ({outside} bytes of "
                f"attributes and strings)", path)


def write_hdf5(out: Path, fill: Callable[[h5py.File], Any]) -> None:
    """Build an HDF5 file in memory with ``fill(f)``, then write its bytes atomically.

    The HDF5 library never writes to the disk itself: a full disk or a read-only
    directory is then a plain :class:`OSError` from Python, not an HDF5 failure inside
    the library (which left corrupt state behind and crashed the interpreter at exit).
    """
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        fill(f)
    with atomic_path(out) as tmp:
        tmp.write_bytes(buf.getbuffer())


def scalar_value(v: Any) -> Any:
    """A Python scalar from an attribute or a small dataset (bytes decoded to text).

    Raises
    ------
    ValueError
        ``v`` is a group, or a dataset of more than 64 values (never read).
    """
    if isinstance(v, h5py.Dataset):
        if v.size is None or v.size > 64:  # a value, not an array: never read a big one
            raise ValueError(f"{v.name} holds {v.size} values where one number belongs")
        if v.size * v.dtype.itemsize > MAX_VALUE_BYTES:  # e.g. a 300 MB fixed-length string
            raise ValueError(f"{v.name} holds {v.size * v.dtype.itemsize} bytes where one "
                             f"value belongs")
        v = v[()]
    if isinstance(v, h5py.Group):
        raise ValueError(f"{v.name} is a group where a value belongs")
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, np.ndarray) and v.size == 1:
        return v.reshape(()).item()
    if isinstance(v, np.generic):
        return v.item()
    return v


def number_value(v: Any, what: str, path: Any) -> float:
    """The attribute or dataset ``v`` as a float; an :class:`InputError` naming ``what``."""
    v = scalar_value(v)
    if isinstance(v, (str, bytes)):
        raise InputError(f"{what} is not a number ({v!r})", path)
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} is not a number ({v!r})", path) from None


def ranged_value(v: Any, key: str, lo: float, hi: float, path: Any, *, unit: str = ""
                 ) -> float:
    """The attribute or dataset ``v``, stored under the HDF5 key ``key``, as a float in
    ``[lo, hi]``; an :class:`InputError` naming the file and the key otherwise."""
    what = f"HDF5 key {key!r}"
    try:
        x = number_value(v, what, path)
    except ValueError as exc:  # a group, or an array where one value belongs
        raise InputError(f"{what}: {exc}", path) from None
    return check_range(x, what, lo, hi, path, unit=unit)


@contextmanager
def from_key(key: str, path: Any) -> Iterator[None]:
    """Report an :class:`InputError` raised inside (a geometry noun checking a value read
    from the HDF5 key ``key``) with the file and the key."""
    try:
        yield
    except InputError as exc:
        raise InputError(f"HDF5 key {key!r}: {exc.problem}", path) from None


def integer_value(v: Any, what: str, path: Any) -> int:
    """The attribute or dataset ``v`` as an int (not a bool, not a float)."""
    v = scalar_value(v)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise InputError(f"{what} is not an integer ({v!r})", path)
    return int(v)


def text_value(v: Any, what: str, path: Any) -> str | None:
    """The attribute or dataset ``v`` as text; None when absent or empty."""
    v = scalar_value(v)
    if v is None or isinstance(v, str):
        return v or None
    raise InputError(f"{what} is not text ({type(v).__name__})", path)


def json_value(v: Any, what: str, path: Any) -> Any:
    """The JSON text in the attribute or dataset ``v``, decoded (``{}`` when empty)."""
    return parse_json(text_value(v, what, path) or "{}", what, path)


def read_array(f: h5py.Group, name: str, path: Any, *, lazy: bool = False) -> np.ndarray:
    """Read the numeric dataset ``name`` after checking its kind, dtype and declared size.

    With ``lazy`` only the shape is read: the result is a zero-filled read-only view of
    that shape that takes no memory (for ``oatomo info``).
    """
    d = numeric_dataset(f, name, path)
    shape = d.shape
    n = float(np.prod(shape, dtype=np.float64))
    if lazy:
        return np.broadcast_to(np.zeros((), np.float32), shape)
    check_bytes(n * (d.dtype.itemsize + 4), f"reading {name} {shape}", path)
    return d[()]


def numeric_dataset(f: h5py.Group, name: str, path: Any) -> h5py.Dataset:
    """The dataset ``name`` after checking that it is a real numeric array."""
    d = f.get(name)
    if not isinstance(d, h5py.Dataset):
        raise InputError(f"{name} is a group, not a dataset", path)
    dt = d.dtype
    if dt.kind == "c":
        raise InputError(f"{name} is complex ({dt}); oatomo needs real samples", path)
    if dt.kind not in "iuf" or dt.fields is not None or h5py.check_vlen_dtype(dt):
        raise InputError(f"{name} has dtype {dt}; a numeric array is needed", path)
    if d.shape is None:  # HDF5 null dataspace
        raise InputError(f"{name} is empty (null dataspace)", path)
    missing = missing_filters(d)
    if missing:
        raise InputError(f"{name} is compressed with HDF5 filter {', '.join(missing)}, which "
                         "this installation cannot decode (install its plugin, e.g. "
                         "hdf5plugin, or rewrite the file without it)", path)
    return d


def missing_filters(d: h5py.Dataset) -> list[str]:
    """The HDF5 filters of dataset ``d`` that are not available here (id and name)."""
    plist = d.id.get_create_plist()
    out = []
    for i in range(plist.get_nfilters()):
        code, _, _, label = plist.get_filter(i)
        if not h5py.h5z.filter_avail(code):
            text = label.decode("ascii", "replace") if isinstance(label, bytes) else str(label)
            out.append(f"{code}" + (f" ({text})" if text else ""))
    return out


def sensor_positions(pos: np.ndarray, path: Any) -> np.ndarray:
    """Sensor positions (N, 2) or (N, 3) as float64: (N, 2) in the imaging plane, or (N, 3)
    when some z is not 0 (a 3-D array; z is kept exactly).

    A z column that is 0 everywhere is dropped: such files are 2-D scans.
    """
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[0] == 0 or pos.shape[1] not in (2, 3):
        raise InputError(f"no sensors (positions of shape {pos.shape})", path)
    if pos.shape[1] == 3 and not np.any(pos[:, 2] != 0):
        pos = pos[:, :2]
    return pos


def group_to_json(g: h5py.Group, path: Any, *, skip: Any = (), depth: int = 8,
                  budget: list[int] | None = None) -> dict[str, Any]:
    """The datasets under ``g`` as a JSON value tree: a dict per group, text as str, numbers
    as int/float/bool, arrays as nested lists (their shape kept).

    ``skip`` names members of ``g`` itself to leave out. Datasets of other kinds (compound,
    references, ...) are left out with a warning.

    Raises
    ------
    InputError
        Deeper than ``depth`` groups, more than :data:`MAX_METADATA_VALUES` values, or
        more than :data:`MAX_METADATA_BYTES` stored in the datasets (both checked before
        a dataset is read).
    """
    budget = [MAX_METADATA_VALUES, MAX_METADATA_BYTES] if budget is None else budget
    if depth < 0:
        raise InputError(f"{g.name} is nested too deep for metadata", path)
    out: dict[str, Any] = {}
    for key, item in g.items():
        if key in skip:
            continue
        if isinstance(item, h5py.Group):
            out[key] = group_to_json(item, path, depth=depth - 1, budget=budget)
            continue
        if not isinstance(item, h5py.Dataset) or item.shape is None:
            continue
        size = int(np.prod(item.shape, dtype=np.int64))
        budget[0] -= max(1, size)
        budget[1] -= size * item.dtype.itemsize  # variable-length: bounded by open_hdf5
        if budget[0] < 0:
            raise InputError(f"metadata has more than {MAX_METADATA_VALUES} values (at "
                             f"{item.name})", path)
        if budget[1] < 0:
            raise InputError(f"metadata holds more than {MAX_METADATA_BYTES >> 20} MiB (at "
                             f"{item.name})", path)
        dt = item.dtype
        if h5py.check_string_dtype(dt) is not None:
            v = item.asstr(errors="replace")[()]
        elif dt.kind in "iufb" and dt.fields is None:
            v = item[()]
        else:
            warnings.warn(f"{path}: metadata field {item.name} of dtype {dt} is not carried",
                          stacklevel=3)
            continue
        out[key] = v.tolist() if isinstance(v, (np.ndarray, np.generic)) else v
    return out


def json_to_group(f: h5py.Group, name: str, tree: dict[str, Any]) -> None:
    """Write the JSON value tree ``tree`` (see :func:`group_to_json`) as the group ``name``:
    dicts as groups, text as strings, None as the text ``"None"`` (PACFISH's convention),
    numbers and nested lists as datasets (an int list stays int).

    Raises
    ------
    InputError
        A ragged list or a value of another type.
    """
    g = f.require_group(name)
    for key, value in tree.items():
        if isinstance(value, dict):
            json_to_group(g, key, value)
        elif value is None:
            g[key] = "None"
        elif isinstance(value, str):
            g[key] = value
        elif isinstance(value, (bool, int, float, np.generic, list, tuple, np.ndarray)):
            try:
                arr = np.asarray(value)
            except ValueError:
                raise InputError(f"metadata field {g.name}/{key} is a ragged list") from None
            if arr.dtype.kind == "U":
                g.create_dataset(key, data=arr.astype(object), dtype=h5py.string_dtype())
            elif arr.dtype.kind in "iufb":
                g[key] = arr
            else:
                raise InputError(f"metadata field {g.name}/{key} is neither numbers nor text")
        else:
            raise InputError(f"metadata field {g.name}/{key} has type {type(value).__name__}")

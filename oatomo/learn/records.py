"""Model records: weights archives and the refiner metadata of a checkpoint.

A *weights archive* (``.npz``) is a checkpoint without training state: the JSON record of
a ``.pt`` checkpoint (format ``"oatomo-model"``, class, config, step, training settings,
history) as the member ``__meta__`` and one float32 array per entry of the model's state
dict. It is read with ``np.load(allow_pickle=False)``: it never runs code, and its
uncompressed size is checked against ``OATOMO_MAX_BYTES`` before anything is read. The
bytes depend only on the content (fixed member order and time stamps).

A refiner's checkpoint also carries, under ``train["oatomo_family_refiner"]``, what
inference needs (:func:`family_record`). Both checkpoints (:mod:`oatomo.learn.checkpoint`)
and the NumPy inference engine (:mod:`oatomo.refine.weights`) read records through this
module, which does not import PyTorch.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from oatomo._atomic import atomic_path, check_input_file
from oatomo._documents import parse_json
from oatomo._limits import check_bytes
from oatomo.errors import InputError
from oatomo.scanners import FAMILY_KEY

__all__ = ["META_KEY", "RECORD_FORMAT", "RECORD_VERSION", "TRAIN_COMMAND", "check_record",
           "family_record", "is_weights_archive", "read_weights", "write_weights"]

#: Archive member holding the JSON record (UTF-8 bytes as a uint8 array).
META_KEY = "__meta__"
#: The record's ``format`` and the newest ``version`` read (checkpoints share them).
RECORD_FORMAT = "oatomo-model"
RECORD_VERSION = 1
_EPOCH = (1980, 1, 1, 0, 0, 0)

#: The commands that train a current refiner (named in the error for a checkpoint without
#: the scanner-family metadata).
TRAIN_COMMAND = ("oatomo refiner data -o DATA && "
                 "oatomo refiner train --data DATA -o MODEL.pt")


#: The kinds of uncertainty map of a refiner (:attr:`oatomo.refine.Refiner.uncertainty`).
UNCERTAINTY_MODES = ("posterior", "decoders", "both", "decoders-edges", "ensemble-edges")


def is_weights_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip archive with a ``__meta__.npy`` member (a weights
    archive rather than a PyTorch checkpoint)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return f"{META_KEY}.npy" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def write_weights(path: str | os.PathLike, meta: dict[str, Any],
                  state: dict[str, np.ndarray]) -> Path:
    """Write a weights archive atomically (see the module docstring).

    Parameters
    ----------
    path
        The ``.npz`` file.
    meta
        The checkpoint's JSON record (format, version, model_class, config, ...).
    state
        The model's state dict as arrays (floating point stored as float32).
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        members = {META_KEY: np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8),
                   **{k: _stored(v) for k, v in state.items()}}
        for name, arr in members.items():
            body = io.BytesIO()
            np.lib.format.write_array(body, arr, allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH), body.getvalue())
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return Path(path)


def _stored(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    return np.ascontiguousarray(arr, np.float32 if arr.dtype.kind == "f" else None)


def _declared_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                    path: str | os.PathLike) -> int:
    """Bytes of the array a ``.npy`` member declares in its header (read alone)."""
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise InputError(f"member {info.filename!r}: unsupported .npy version {version}",
                             path)
    if dtype.hasobject:
        raise InputError(f"member {info.filename!r} holds Python objects (would need pickle)",
                         path)
    return math.prod(int(n) for n in shape) * dtype.itemsize


def read_weights(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a weights archive: its JSON record and its arrays (float32).

    Raises
    ------
    InputError
        Missing file, not a weights archive, larger than ``OATOMO_MAX_BYTES`` unpacked, a
        record that is not an oatomo model, or a newer version.
    """
    path = check_input_file(path, "model weights archive")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            check_bytes(sum(i.file_size for i in infos), "loading the model weights", path)
            # what np.load allocates is what each member's header declares, whatever the
            # member holds: check that before anything is read
            declared = sum(_declared_bytes(archive, i, path) for i in infos)
    except InputError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise InputError("not an oatomo weights archive (not a zip file of .npy arrays)",
                         path) from None
    check_bytes(declared, "loading the model weights", path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = parse_json(arrays.pop(META_KEY).tobytes(), f"{META_KEY} member", path)
    except InputError:
        raise
    except KeyError:
        raise InputError(f"not an oatomo weights archive (no {META_KEY} member)",
                         path) from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise InputError(f"not an oatomo weights archive ({type(exc).__name__}: {first})",
                         path) from None
    check_record(meta, path)
    bad = [k for k, v in arrays.items() if v.dtype.kind not in "fiub"]
    if bad:
        raise InputError(f"weight {bad[0]!r} is not a number array", path)
    return meta, {k: v.astype(np.float32, copy=False) if v.dtype.kind == "f" else v
                  for k, v in arrays.items()}


def check_record(record: Any, path: str | os.PathLike | None, *,
                 model_class: str | type | None = None,
                 keys: tuple[str, ...] = ("model_class", "config")) -> dict[str, Any]:
    """Check a model record (a checkpoint or an archive's ``__meta__``): the format, a
    version this oatomo reads, the ``keys`` present and, if given, the model class.

    Raises
    ------
    InputError
        Naming ``path`` and the problem.
    """
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise InputError(f"not an oatomo model checkpoint (format must be "
                         f"{RECORD_FORMAT!r})", path)
    version = record.get("version")
    if not isinstance(version, int) or version > RECORD_VERSION:
        raise InputError(f"checkpoint version {version!r} is not supported by this oatomo "
                         f"(reads up to {RECORD_VERSION})", path)
    for key in keys:
        if key not in record:
            raise InputError(f"checkpoint lacks {key!r}", path)
    if model_class is not None:
        want = model_class if isinstance(model_class, str) else model_class.__name__
        if record["model_class"] != want:
            raise InputError(f"checkpoint holds a {record['model_class']}, expected a {want}",
                             path)
    return record


def family_record(train: dict[str, Any] | None, path: str | os.PathLike) -> dict[str, Any]:
    """The scanner-family metadata of a checkpoint's ``train`` record.

    Raises
    ------
    InputError
        The checkpoint has none: it is an older refiner format (the message names the
        commands that train a current one, :data:`TRAIN_COMMAND`).
    """
    meta = (train or {}).get(FAMILY_KEY)
    if not meta:
        raise InputError(f"checkpoint is an older refiner format (no scanner-family "
                         f"metadata); train a current one: {TRAIN_COMMAND}", path)
    return dict(meta)

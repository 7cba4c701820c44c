"""The one reader of each text format (JSON, TOML): size and nesting limits before parsing.

Every JSON document (calibration files, sidecars, manifests, metadata stored in scans)
and every TOML document (setups, presets, a setup embedded in a scan) goes through
:func:`parse_json` / :func:`parse_toml` (or :func:`read_json` / :func:`read_toml` for a
file). A document larger than :data:`MAX_DOCUMENT_BYTES` (or ``OATOMO_MAX_BYTES``) or
nested deeper than :data:`MAX_DEPTH` is refused with an :class:`~oatomo.errors.InputError`
naming its source, before the parser (which recurses) sees it; the parsed tree's depth is
checked again without recursion (TOML's dotted keys nest without brackets).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np

from oatomo._atomic import check_input_file
from oatomo._limits import check_bytes
from oatomo.errors import InputError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["MAX_DEPTH", "MAX_DOCUMENT_BYTES", "parse_json", "parse_toml", "read_json",
           "read_toml", "check_depth", "toml_text"]

#: Deepest nesting of arrays and objects/tables a document may have.
MAX_DEPTH = 64
#: Largest document read (bytes); ``OATOMO_MAX_BYTES`` applies too.
MAX_DOCUMENT_BYTES = 64 << 20

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_TOML_SKIP = re.compile(rb'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|'
                        rb"'[^'\n]*'|#[^\n]*", re.S)


def _bracket_depth(data: bytes) -> int:
    """Deepest ``[``/``{`` nesting of ``data`` (strings and comments already blanked)."""
    b = np.frombuffer(data, np.uint8)
    if b.size == 0:
        return 0
    step = (np.isin(b, (ord("["), ord("{"))).astype(np.int64)
            - np.isin(b, (ord("]"), ord("}"))).astype(np.int64))
    return int(np.cumsum(step).max(initial=0))


def _check_text(data: bytes, what: str, path: Any, skip: re.Pattern[bytes]) -> None:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InputError(f"{what} is {len(data) / 2**20:.0f} MiB, more than the "
                         f"{MAX_DOCUMENT_BYTES >> 20} MiB a document may have", path)
    check_bytes(8.0 * len(data), f"reading the {what}", path)
    depth = _bracket_depth(skip.sub(b"", data))
    if depth > MAX_DEPTH:
        raise InputError(f"{what} is nested {depth} levels deep (at most {MAX_DEPTH})", path)


def check_depth(tree: Any, what: str, path: Any = None) -> Any:
    """``tree`` (a parsed document) unchanged if it nests at most :data:`MAX_DEPTH` dicts
    and lists (checked without recursion); else an :class:`InputError`."""
    todo = [(tree, 0)]
    while todo:
        node, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"{what} is nested more than {MAX_DEPTH} levels deep", path)
        if isinstance(node, dict):
            todo.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            todo.extend((v, depth + 1) for v in node)
    return tree


def _as_bytes(text: str | bytes) -> bytes:
    return text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)


def parse_json(text: str | bytes, what: str, path: Any = None) -> Any:
    """The JSON document ``text``; an :class:`InputError` naming ``what`` (and ``path``)
    when it is too large, too deep, not JSON, or holds a number beyond float range."""
    data = _as_bytes(text)
    _check_text(data, what, path, _JSON_STRING)

    def finite(s: str) -> float:
        v = float(s)
        if not np.isfinite(v):
            raise ValueError(f"number {s[:20]} is beyond the float range")
        return v

    def refuse(s: str) -> float:
        raise ValueError(f"{s} is not a JSON number")

    def integer(s: str) -> int:
        if len(s.lstrip("-")) > 40:
            raise ValueError(f"integer {s[:20]}... is beyond any range oatomo accepts")
        return int(s)

    try:
        tree = json.loads(data.decode("utf-8"), parse_float=finite, parse_int=integer,
                          parse_constant=refuse)
    except UnicodeDecodeError:
        raise InputError(f"{what} is not UTF-8 text", path) from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise InputError(f"{what} is nested too deep", path) from None
    except ValueError as exc:
        raise InputError(f"{what} is not valid JSON ({' '.join(str(exc).split())[:100]})",
                         path) from None
    return check_depth(tree, what, path)


def parse_toml(text: str | bytes, what: str, path: Any = None) -> dict[str, Any]:
    """The TOML document ``text``; an :class:`InputError` naming ``what`` (and ``path``)
    when it is too large, too deep or not TOML."""
    data = _as_bytes(text)
    _check_text(data, what, path, _TOML_SKIP)
    try:
        tree = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{what} is not UTF-8 text", path) from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise InputError(f"{what} is nested too deep", path) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({' '.join(str(exc).split())[:120]})",
                         path) from None
    return check_depth(tree, what, path)


def _read(path: str | os.PathLike, what: str) -> bytes:
    p = Path(path)
    if not os.path.lexists(p):
        raise InputError(f"{what} not found", p)
    check_input_file(p, what)  # FIFOs and devices would block or never end
    size = p.stat().st_size
    if size > MAX_DOCUMENT_BYTES:
        raise InputError(f"{what} is {size / 2**20:.0f} MiB, more than the "
                         f"{MAX_DOCUMENT_BYTES >> 20} MiB a document may have", p)
    check_bytes(8.0 * size, f"reading the {what}", p)  # before a byte is read
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the check
            raise InputError(f"not a regular file (a FIFO, device or socket), not a {what}", p)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_DOCUMENT_BYTES + 1)
    finally:
        os.close(fd)


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """The JSON document of the file ``path`` (see :func:`parse_json`); ``what`` names the
    kind of file in messages."""
    return parse_json(_read(path, what), what, path)


def read_toml(path: str | os.PathLike, what: str = "TOML file") -> dict[str, Any]:
    """The TOML document of the file ``path`` (see :func:`parse_toml`)."""
    return parse_toml(_read(path, what), what, path)


def toml_text(doc: dict[str, Any]) -> str:
    """``doc`` as TOML text, NumPy scalars and arrays written as Python numbers and lists
    (``tomli_w`` takes neither)."""
    import tomli_w  # lazy: only writers need it

    return tomli_w.dumps(_plain(doc))


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    return v.item() if isinstance(v, np.generic) else v

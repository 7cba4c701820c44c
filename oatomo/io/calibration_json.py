"""Calibration JSON files (``oatomo autofocus --json``, ``oatomo calibrate --json``):
speed of sound, ``t0`` and sensor positions (and an object region of its own speed of
sound), read by ``oatomo reconstruct --calibration``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from oatomo._atomic import atomic_path, check_input_file
from oatomo._documents import read_json
from oatomo._limits import MAX_T0, SPEED_RANGE, check_range
from oatomo.errors import InputError
from oatomo.speed_map import OBJECT_OPTIONS, check_object_options

__all__ = ["CALIBRATION_KIND", "save_calibration", "load_calibration"]


#: ``kind`` of a calibration JSON file (``oatomo autofocus --json``, ``oatomo calibrate
#: --json``), read by ``oatomo reconstruct --calibration``.
CALIBRATION_KIND = "oatomo-calibration"


def save_calibration(path: str | os.PathLike, doc: dict[str, Any]) -> Path:
    """Write a calibration JSON file atomically (``kind`` and ``units`` added).

    ``doc`` holds ``speed_of_sound`` (m/s) and optionally ``t0`` (s), ``positions``
    ((N, 2) m), an object region (``object_speed_of_sound`` m/s, ``object_radius`` m,
    ``object_centre`` m) and anything else worth keeping (search curve, history).
    """
    load_calibration(doc)  # refuse to write what could not be read back
    units = {"speed_of_sound": "m/s", "t0": "s", "positions": "m",
             "object_speed_of_sound": "m/s", "object_radius": "m", "object_centre": "m"}
    out = Path(path)
    full = {"kind": CALIBRATION_KIND, "format_version": 1, **doc,
            "units": {k: v for k, v in units.items() if k in doc}}
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(full, indent=2) + "\n")
    return out


def load_calibration(source: str | os.PathLike | dict[str, Any] | Any) -> dict[str, Any]:
    """The speed of sound, ``t0`` and sensor positions of a calibration (file or dict).

    Returns
    -------
    dict
        The keys present among ``speed_of_sound`` (float, m/s), ``t0`` (float, s),
        ``positions`` (float64 (N, 2), m) and the object region's
        ``object_speed_of_sound`` (m/s), ``object_radius`` (m, one or two radii) and
        ``object_centre`` ((x, y), m), which come together
        (:func:`oatomo.speed_map.check_object_options`).

    Raises
    ------
    InputError
        Not JSON, none of the three keys, or values that are not what they should be.
    """
    path = None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not os.path.lexists(path):
            raise InputError("calibration file not found", path)
        check_input_file(path, "calibration file")
        source = read_json(path, "calibration file")
    if isinstance(source, Mapping):
        source = dict(source)
    if not isinstance(source, dict):
        raise InputError(f"a calibration must be a JSON object or dict, got "
                         f"{type(source).__name__}", path)
    out: dict[str, Any] = {}
    for key, (low, high), unit in (("speed_of_sound", SPEED_RANGE, "m/s"),
                                   ("t0", (-MAX_T0, MAX_T0), "s")):
        if source.get(key) is not None:
            v = source[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InputError(f"calibration key {key!r} must be a number, got {v!r}", path)
            out[key] = check_range(v, f"calibration key {key!r}", low, high, path, unit=unit)
    if source.get("positions") is not None:
        try:
            pos = np.asarray(source["positions"], np.float64)
        except (TypeError, ValueError):
            pos = np.zeros((0,))
        if pos.ndim != 2 or pos.shape[1] != 2 or not np.all(np.isfinite(pos)):
            raise InputError(f"calibration positions must be finite (N, 2) metres, got "
                             f"shape {pos.shape}", path)
        out["positions"] = pos
    region = {k: source.get(k) for k in OBJECT_OPTIONS}
    if check_object_options(**region, prefix="calibration key ", path=path):
        out.update({k: v for k, v in region.items() if v is not None})
    if not out:
        raise InputError("calibration has none of speed_of_sound, t0, positions", path)
    return out

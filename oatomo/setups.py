"""Experimental setups: the environments of setup-invariant learning.

A :class:`Setup` is a nominal sensor array, an acquisition, an image grid and a
*distribution* of sensor-position errors (plus noise level and bandwidth). Each scan of a
setup draws its true sensor positions from that distribution (:meth:`Setup.draw`);
reconstructing with the nominal positions leaves setup-specific artifacts.

TOML layout (every key optional unless marked)::

    name = "ring32_radial"                 # required
    description = "..."
    [array]                                # required
    kind = "ring"                          # "ring" or "positions"
    n_sensors = 32                         # ring: required
    radius = 0.0225                        # ring: required, metres
    arc = 6.283185307179586                # radians (full ring by default)
    start_angle = 0.0                      # radians
    positions = [[x, y], ...]              # kind = "positions": metres
    [acquisition]                          # required
    fs = 40e6                              # Hz, required
    n_samples = 1024                       # required
    speed_of_sound = 1500.0                # m/s
    t0 = 0.0                               # s
    [grid]                                 # required
    n = 128
    fov = 0.0128                           # metres
    [perturbation]
    radial_std = 0.0                       # m, per sensor
    angular_std = 0.0                      # rad, per sensor
    jitter_std = 0.0                       # m, per sensor and axis
    offset = [0.0, 0.0]                    # m, fixed global shift
    offset_std = 0.0                       # m, random global shift per scan (per axis)
    rotation = 0.0                         # rad, fixed global rotation
    rotation_std = 0.0                     # rad, random global rotation per scan
    [noise]
    relative_std = 0.005                   # sigma / max|sinogram|
    [band]
    low = 0.1e6                            # Hz (0: low-pass only)
    high = 8e6                             # Hz
    [slab]
    thickness = 1e-4                       # m (default: grid pitch)
    [detector]                             # the sensors' impulse response (simulate)
    centre_frequency = 5e6                 # Hz, Gaussian band ...
    bandwidth = 0.8                        # ... fractional FWHM of |H|
    impulse_response = [0.0, 1.0, 0.0]     # or measured, at acquisition.fs, t = 0 at len // 2
    element_width = 5e-4                   # m: flat elements (directivity); default points
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oatomo._documents import read_toml as read_document
from oatomo._documents import toml_text
from oatomo._limits import MAX_PERTURBATION, MAX_POSITION, check_bytes, check_range
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray, ring_array
from oatomo.resources import SETUPS, resource_path
from oatomo.response import DetectorResponse

__all__ = ["Setup", "load_setup", "bundled_setups", "describe_bundled_setups",
           "SIMULATIONS_DIR"]

#: Directory of the setups shipped inside the package (``oatomo/resources/setups``).
SIMULATIONS_DIR = resource_path(SETUPS)

_NUM = (int, float)
_SCHEMA: dict[str, dict[str, Any]] = {
    "": {"name": str, "description": str, "array": dict, "acquisition": dict, "grid": dict,
         "perturbation": dict, "noise": dict, "band": dict, "slab": dict, "detector": dict},
    "array": {"kind": str, "n_sensors": int, "radius": _NUM, "arc": _NUM,
              "start_angle": _NUM, "positions": list},
    "acquisition": {"fs": _NUM, "n_samples": int, "speed_of_sound": _NUM, "t0": _NUM},
    "grid": {"n": int, "fov": _NUM},
    "perturbation": {"radial_std": _NUM, "angular_std": _NUM, "jitter_std": _NUM,
                     "offset": list, "offset_std": _NUM, "rotation": _NUM,
                     "rotation_std": _NUM},
    "noise": {"relative_std": _NUM},
    "band": {"low": _NUM, "high": _NUM},
    "slab": {"thickness": _NUM},
    "detector": {"centre_frequency": _NUM, "bandwidth": _NUM, "impulse_response": list,
                 "element_width": _NUM},
}
#: Upper limits of the non-negative setup parameters (m, rad or a fraction).
_RANGES = {"radial_std": MAX_PERTURBATION, "angular_std": 2 * math.pi,
           "jitter_std": MAX_PERTURBATION, "offset_std": MAX_PERTURBATION,
           "rotation_std": 2 * math.pi, "noise": 1e3}
_REQUIRED = {"": ("name", "array", "acquisition", "grid"), "acquisition": ("fs", "n_samples"),
             "grid": ("n", "fov")}


def _type_name(t: Any) -> str:
    return "number" if t == _NUM else {str: "string", int: "integer", list: "array",
                                       dict: "table"}[t]


def _validate(doc: dict[str, Any], path: str | None) -> None:
    for section, schema in _SCHEMA.items():
        table = doc if section == "" else doc.get(section, {})
        for key, value in table.items():
            full = f"{section}.{key}" if section else key
            if key not in schema:
                raise InputError(f"unknown key {full!r}", path)
            want = schema[key]
            ok = isinstance(value, want) and not isinstance(value, bool)
            if not ok:
                raise InputError(f"key {full!r} must be a {_type_name(want)}, got "
                                 f"{type(value).__name__} {value!r}", path)
        for key in _REQUIRED.get(section, ()):
            if key not in table:
                where = f"[{section}]" if section else "the top level"
                raise InputError(f"missing required key {key!r} in {where}", path)


@dataclass(frozen=True)
class Setup:
    """An experimental setup: nominal geometry, acquisition and error distribution.

    Parameters
    ----------
    name
        Short identifier (the environment's name).
    array
        Nominal sensor array (what the drawing says).
    acquisition
        Temporal sampling and speed of sound.
    grid
        Image grid for simulation and reconstruction.
    radial_std, angular_std, jitter_std
        Per-sensor position errors: radial (m), angular (rad), isotropic jitter (m).
    offset, rotation
        Fixed global shift (m) and rotation (rad) of the true array.
    offset_std, rotation_std
        Random global shift (m, per axis) and rotation (rad) drawn per scan.
    noise
        Relative noise level: sigma as a fraction of max|sinogram|.
    band
        Optional sensor band ``(f_low, f_high)`` in Hz (Butterworth).
    thickness
        Slab thickness (m); None means the grid pitch.
    response
        The sensors' impulse response (:class:`oatomo.response.DetectorResponse`), applied
        by ``oatomo simulate``; None: ideal sensors.
    element_width
        Width (m) of flat sensor elements (their directivity, in ``oatomo simulate``);
        None: point sensors.
    description
        Free text.
    """

    name: str
    array: SensorArray
    acquisition: Acquisition
    grid: Grid
    radial_std: float = 0.0
    angular_std: float = 0.0
    jitter_std: float = 0.0
    offset: tuple[float, float] = (0.0, 0.0)
    rotation: float = 0.0
    offset_std: float = 0.0
    rotation_std: float = 0.0
    noise: float = 0.0
    band: tuple[float, float] | None = None
    thickness: float | None = None
    response: DetectorResponse | None = None
    element_width: float | None = None
    description: str = ""
    _ring: tuple[int, float, float, float] | None = None

    def __post_init__(self) -> None:
        for key, hi in _RANGES.items():
            v = check_range(getattr(self, key), f"setup {self.name!r}: {key}", 0.0, hi)
            object.__setattr__(self, key, v)
        offset = tuple(self.offset)
        if len(offset) != 2:
            raise InputError(f"setup {self.name!r}: offset must be [dx, dy] in metres")
        object.__setattr__(self, "offset", tuple(
            check_range(v, f"setup {self.name!r}: offset", -MAX_POSITION, MAX_POSITION,
                        unit="m") for v in offset))
        object.__setattr__(self, "rotation", check_range(
            self.rotation, f"setup {self.name!r}: rotation", -1e3, 1e3, unit="rad"))
        if self.thickness is not None:
            t = check_range(self.thickness, f"setup {self.name!r}: slab thickness", 0.0,
                            MAX_POSITION, unit="m")
            if t == 0:
                raise InputError(f"setup {self.name!r}: slab thickness must be > 0 m")
        check_bytes(4.0 * self.array.n_sensors * self.acquisition.n_samples,
                    f"one sinogram of setup {self.name!r}")
        if self.element_width is not None:
            w = check_range(self.element_width, f"setup {self.name!r}: element_width", 0.0,
                            MAX_POSITION, unit="m")
            if w == 0:
                raise InputError(f"setup {self.name!r}: element_width must be > 0 m, got 0")
            object.__setattr__(self, "element_width", w)
        if self.response is not None and self.response.fs is not None \
                and self.response.fs != self.acquisition.fs:
            raise InputError(f"setup {self.name!r}: the impulse response is sampled at "
                             f"{self.response.fs:g} Hz, the acquisition at "
                             f"{self.acquisition.fs:g} Hz")
        if self.band is not None:
            object.__setattr__(self, "band", (float(self.band[0]), float(self.band[1])))
            lo, hi = self.band
            if not (0 <= lo < hi < self.acquisition.fs / 2):
                raise InputError(f"setup {self.name!r}: band must satisfy 0 <= low < high < "
                                 f"fs/2, got {self.band}")

    @classmethod
    def from_dict(cls, doc: dict[str, Any], path: str | os.PathLike | None = None) -> Setup:
        """Build a setup from the TOML document structure (see the module docstring)."""
        p = None if path is None else str(path)
        _validate(doc, p)
        try:
            return cls._from_checked(doc)
        except InputError as exc:
            raise InputError(exc.problem, p) from None
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"invalid setup ({exc})", p) from None

    @classmethod
    def _from_checked(cls, doc: dict[str, Any]) -> Setup:
        """:meth:`from_dict` after the schema check; errors get the path from the caller."""
        arr = doc["array"]
        kind = arr.get("kind", "ring")
        ring = None
        if kind == "ring":
            for key in ("n_sensors", "radius"):
                if key not in arr:
                    raise InputError(f"missing required key {key!r} in [array]")
            ring = (arr["n_sensors"], float(arr["radius"]), float(arr.get("arc", 2 * math.pi)),
                    float(arr.get("start_angle", 0.0)))
            array = ring_array(*ring)
        elif kind == "positions":
            if "positions" not in arr:
                raise InputError("missing required key 'positions' in [array]")
            try:
                pos = np.asarray(arr["positions"], dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError("array.positions must be a list of [x, y] numbers") from None
            array = SensorArray(pos)
        else:
            raise InputError(f"array.kind must be 'ring' or 'positions', got {kind!r}")
        pert = doc.get("perturbation", {})
        band = doc.get("band")
        det = dict(doc.get("detector") or {})
        width = det.pop("element_width", None)
        return cls(
            name=doc["name"],
            description=doc.get("description", ""),
            array=array,
            acquisition=Acquisition(**doc["acquisition"]),
            grid=Grid(**doc["grid"]),
            radial_std=float(pert.get("radial_std", 0.0)),
            angular_std=float(pert.get("angular_std", 0.0)),
            jitter_std=float(pert.get("jitter_std", 0.0)),
            offset=tuple(pert.get("offset", (0.0, 0.0))),
            rotation=float(pert.get("rotation", 0.0)),
            offset_std=float(pert.get("offset_std", 0.0)),
            rotation_std=float(pert.get("rotation_std", 0.0)),
            noise=float(doc.get("noise", {}).get("relative_std", 0.0)),
            band=None if band is None else (float(band.get("low", 0.0)),
                                            float(band["high"])),
            thickness=doc.get("slab", {}).get("thickness"),
            element_width=None if width is None else float(width),
            response=None if not det else DetectorResponse(
                **det, **({"fs": doc["acquisition"]["fs"]} if "impulse_response" in det
                          else {})),
            _ring=ring,
        )

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> Setup:
        """Read a setup TOML file; unknown keys and wrong types are errors naming the key."""
        return cls.from_dict(read_toml(path, "setup"), path)

    def draw(self, seed: int | np.random.Generator | None = None) -> SensorArray:
        """The true sensor array of one scan of this setup (seeded).

        Per-sensor errors come from :meth:`SensorArray.perturbed`; random global
        offset/rotation (``offset_std``, ``rotation_std``) are drawn after them from the
        same generator.
        """
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        sub = np.random.default_rng(rng.integers(2**63))
        g_off = rng.standard_normal(2) * self.offset_std
        g_rot = rng.standard_normal() * self.rotation_std
        return self.array.perturbed(
            radial_std=self.radial_std, angular_std=self.angular_std,
            jitter_std=self.jitter_std, offset=tuple(np.asarray(self.offset) + g_off),
            rotation=self.rotation + g_rot, seed=sub)

    def to_dict(self) -> dict[str, Any]:
        """The TOML document structure of this setup (round-trips through from_dict)."""
        if self._ring is not None:
            n, r, arc, start = self._ring
            array: dict[str, Any] = {"kind": "ring", "n_sensors": n, "radius": r, "arc": arc,
                                     "start_angle": start}
        else:
            array = {"kind": "positions", "positions": self.array.positions.tolist()}
        doc: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "array": array,
            "acquisition": self.acquisition.to_dict(),
            "grid": self.grid.to_dict(),
            "perturbation": {"radial_std": self.radial_std, "angular_std": self.angular_std,
                             "jitter_std": self.jitter_std, "offset": list(self.offset),
                             "offset_std": self.offset_std, "rotation": self.rotation,
                             "rotation_std": self.rotation_std},
            "noise": {"relative_std": self.noise},
        }
        if self.band is not None:
            doc["band"] = {"low": self.band[0], "high": self.band[1]}
        if self.thickness is not None:
            doc["slab"] = {"thickness": float(self.thickness)}
        if self.response is not None:
            doc["detector"] = {k: v for k, v in self.response.to_dict().items() if k != "fs"}
        if self.element_width is not None:
            doc.setdefault("detector", {})["element_width"] = self.element_width
        return doc

    def to_toml_string(self) -> str:
        """Serialise to TOML text (:meth:`to_dict` through ``tomli_w``)."""
        return toml_text(self.to_dict())


def bundled_setups() -> list[str]:
    """Names of the setups shipped with the package (``oatomo/resources/setups``)."""
    if not SIMULATIONS_DIR.is_dir():
        return []
    return sorted(p.stem for p in SIMULATIONS_DIR.glob("*.toml"))


def describe_bundled_setups() -> dict[str, str]:
    """Each bundled setup's name and the one-line ``description`` of its TOML file."""
    return {name: load_setup(name).description for name in bundled_setups()}


def read_toml(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A TOML file's document; a missing, invalid, too large or too deeply nested file is an
    :class:`InputError` (``what``: the kind of file, for the message)."""
    return read_document(path, f"{what} file")


def find_toml(name_or_path: str | os.PathLike, directory: Path, what: str) -> Path:
    """The TOML file of a path, or of a name bundled in ``directory``."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists() or os.sep in str(name_or_path):
        return p
    candidate = directory / f"{name_or_path}.toml"
    if candidate.exists():
        return candidate
    names = ", ".join(sorted(q.stem for q in directory.glob("*.toml"))) or "none found"
    raise InputError(f"unknown {what} {str(name_or_path)!r} (bundled: {names})")


def load_setup(name_or_path: str | os.PathLike) -> Setup:
    """Load a setup from a TOML path or by the name of a bundled setup.

    Examples
    --------
    >>> load_setup("ring32_r22").array.n_sensors      # doctest: +SKIP
    32
    """
    return Setup.from_toml(find_toml(name_or_path, SIMULATIONS_DIR, "setup"))

"""Volume setups: a 3-D array, its acquisition and volume grid, and the distribution of its
sensor-position errors in three dimensions, in TOML like the 2-D setups
(:mod:`oatomo.setups`).

TOML layout (every key optional unless marked)::

    name = "hemi128_jitter"                # required
    dimensions = 3                         # required: marks a volume setup
    description = "..."
    [array]                                # required
    kind = "hemisphere"                    # hemisphere, cap, planar or positions
    n_sensors = 128                        # hemisphere, cap: required
    radius = 0.02                          # hemisphere, cap: required, metres
    half_angle = 1.2                       # cap: required, radians
    axis = [0.0, 0.0, -1.0]                # hemisphere, cap: direction of the pole
    n_x = 32                               # planar: required (n_y: default n_x)
    pitch = 2e-4                           # planar: required, metres
    z = -0.005                             # planar: required, metres
    positions = [[x, y, z], ...]           # positions: required, metres
    normals = [[nx, ny, nz], ...]          # positions: default facing the origin
    [acquisition]                          # required
    fs = 40e6                              # Hz, required
    n_samples = 1024                       # required
    speed_of_sound = 1500.0                # m/s
    t0 = 0.0                               # s
    [grid]                                 # required
    n = 64
    fov = 0.0128                           # metres
    [perturbation]
    normal_std = 0.0                       # m, per sensor, along its normal
    tangential_std = 0.0                   # m, per sensor and tangential axis
    offset = [0.0, 0.0, 0.0]               # m, fixed global shift
    offset_std = 0.0                       # m, random global shift per scan (per axis)
    rotation = [0.0, 0.0, 0.0]             # rad, fixed global rotation vector (axis x angle)
    rotation_std = 0.0                     # rad, random rotation vector per scan (per axis)
    [noise]
    relative_std = 0.01                    # sigma / max|sinogram|
    [band]
    low = 0.3e6                            # Hz
    high = 6e6                             # Hz
    [detector]
    centre_frequency = 3e6                 # Hz, Gaussian band ...
    bandwidth = 1.0                        # ... fractional FWHM of |H|
    impulse_response = [0.0, 1.0, 0.0]     # or measured, at acquisition.fs
    element_width = 5e-4                   # m: flat elements (side); default points
    element_shape = "square"               # or "disc" (element_width its diameter)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from oatomo._documents import read_toml, toml_text
from oatomo._limits import MAX_PERTURBATION, MAX_POSITION, check_bytes, check_range
from oatomo.errors import InputError
from oatomo.geometry import Acquisition
from oatomo.response import DetectorResponse
from oatomo.volume.elements import check_element
from oatomo.volume.geometry import (
    SensorArray3D,
    VolumeGrid,
    planar_array,
    spherical_cap_array,
)

__all__ = ["VolumeSetup", "load_volume_setup", "is_volume_setup", "perturb_array",
           "rotation_matrix"]

_NUM = (int, float)
_SCHEMA: dict[str, dict[str, Any]] = {
    "": {"name": str, "dimensions": int, "description": str, "array": dict,
         "acquisition": dict, "grid": dict, "perturbation": dict, "noise": dict,
         "band": dict, "detector": dict},
    "array": {"kind": str, "n_sensors": int, "radius": _NUM, "half_angle": _NUM,
              "axis": list, "n_x": int, "n_y": int, "pitch": _NUM, "z": _NUM,
              "positions": list, "normals": list},
    "acquisition": {"fs": _NUM, "n_samples": int, "speed_of_sound": _NUM, "t0": _NUM},
    "grid": {"n": int, "fov": _NUM, "shape": list},
    "perturbation": {"normal_std": _NUM, "tangential_std": _NUM, "offset": list,
                     "offset_std": _NUM, "rotation": list, "rotation_std": _NUM},
    "noise": {"relative_std": _NUM},
    "band": {"low": _NUM, "high": _NUM},
    "detector": {"centre_frequency": _NUM, "bandwidth": _NUM, "impulse_response": list,
                 "element_width": _NUM, "element_shape": str},
}
_REQUIRED = {"": ("name", "dimensions", "array", "acquisition", "grid"),
             "acquisition": ("fs", "n_samples"), "grid": ("n", "fov")}
_ARRAY_KEYS = {"hemisphere": ("n_sensors", "radius"),
               "cap": ("n_sensors", "radius", "half_angle"),
               "planar": ("n_x", "pitch", "z"), "positions": ("positions",)}


def _type_name(t: Any) -> str:
    return "number" if t == _NUM else {str: "string", int: "integer", list: "array",
                                       dict: "table"}[t]


def _validate(doc: dict[str, Any]) -> None:
    """Unknown keys, wrong types and missing required keys are errors naming the key."""
    for section, schema in _SCHEMA.items():
        table = doc if section == "" else doc.get(section, {})
        for key, value in table.items():
            full = f"{section}.{key}" if section else key
            if key not in schema:
                raise InputError(f"unknown key {full!r}")
            want = schema[key]
            if not isinstance(value, want) or isinstance(value, bool):
                raise InputError(f"key {full!r} must be a {_type_name(want)}, got "
                                 f"{type(value).__name__} {value!r}")
        for key in _REQUIRED.get(section, ()):
            if key not in table:
                where = f"[{section}]" if section else "the top level"
                raise InputError(f"missing required key {key!r} in {where}")
    if doc["dimensions"] != 3:
        raise InputError(f"a volume setup has dimensions = 3, got {doc['dimensions']}")
    kind = doc["array"].get("kind")
    if kind not in _ARRAY_KEYS:
        raise InputError(f"array.kind must be one of {', '.join(_ARRAY_KEYS)}, got {kind!r}")
    for key in _ARRAY_KEYS[kind]:
        if key not in doc["array"]:
            raise InputError(f"missing required key {key!r} in [array] (kind {kind!r})")


def _vector(value: Any, what: str, hi: float) -> tuple[float, float, float]:
    """Three finite numbers within ``[-hi, hi]``."""
    try:
        v = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be three numbers [x, y, z], got {value!r}") from None
    if v.shape != (3,):
        raise InputError(f"{what} must be three numbers [x, y, z], got {value!r}")
    return tuple(check_range(float(x), what, -hi, hi) for x in v)  # type: ignore[return-value]


def rotation_matrix(vector: Any) -> np.ndarray:
    """The rotation by ``|vector|`` radians about ``vector``'s direction (Rodrigues)."""
    r = np.asarray(vector, dtype=np.float64).reshape(3)
    angle = float(np.linalg.norm(r))
    if angle == 0:
        return np.eye(3)
    k = r / angle
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * (K @ K)


def _tangents(normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors per sensor spanning the plane perpendicular to its normal (any
    fixed pair for a sensor with a zero normal)."""
    n = np.where(np.linalg.norm(normals, axis=1, keepdims=True) > 0, normals,
                 [0.0, 0.0, 1.0])
    helper = np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    t1 = np.cross(n, helper)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    return t1, np.cross(n, t1)


def perturb_array(array: SensorArray3D, *, normal_std: float = 0.0,
                  tangential_std: float = 0.0, offset: Any = (0.0, 0.0, 0.0),
                  rotation: Any = (0.0, 0.0, 0.0),
                  seed: int | np.random.Generator | None = None) -> SensorArray3D:
    """A perturbed copy of a 3-D array: per-sensor errors, then a global rigid motion.

    Each sensor moves by ``normal_std * g0`` along its normal and ``tangential_std *
    (g1 t1 + g2 t2)`` in its tangent plane (``g`` standard normal draws, ``t1, t2`` an
    orthonormal pair perpendicular to the normal); then the whole array is rotated about
    the origin by the rotation vector ``rotation`` (rad; axis times angle) and shifted by
    ``offset`` (m). The normals turn with the array; the areas are kept.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    pos, nrm = array.positions, array.normals
    g = rng.standard_normal((array.n_sensors, 3))
    t1, t2 = _tangents(nrm)
    moved = (pos + normal_std * g[:, :1] * nrm
             + tangential_std * (g[:, 1:2] * t1 + g[:, 2:] * t2))
    R = rotation_matrix(rotation)
    return SensorArray3D(moved @ R.T + np.asarray(offset, np.float64), nrm @ R.T,
                         array.areas)


def is_volume_setup(name_or_path: str | os.PathLike) -> bool:
    """Whether ``name_or_path`` is a TOML file with ``dimensions = 3`` (a volume setup);
    False for a bundled setup's name or a file that is not there."""
    p = os.fspath(name_or_path)
    if not p.endswith(".toml") or not os.path.isfile(p):
        return False
    return read_toml(p, "setup file").get("dimensions") == 3


@dataclass(frozen=True)
class VolumeSetup:
    """A 3-D experimental setup: nominal array, acquisition, volume grid, error
    distribution, noise, band and detector response.

    Parameters
    ----------
    name
        Short identifier.
    array
        The nominal :class:`SensorArray3D`.
    acquisition
        Temporal sampling and speed of sound.
    grid
        The :class:`VolumeGrid` to simulate and reconstruct on.
    normal_std, tangential_std
        Per-sensor position errors (m): along each sensor's normal, and per axis in its
        tangent plane.
    offset, rotation
        Fixed global shift (m, x y z) and rotation vector (rad, axis times angle).
    offset_std, rotation_std
        Random global shift (m, per axis) and rotation vector (rad, per axis) per scan.
    noise
        Relative noise: sigma over max|sinogram|.
    band
        ``(f_low, f_high)`` Butterworth band in Hz, or None.
    response
        The sensors' impulse response, or None.
    element_width, element_shape
        Flat elements (their directivity, in ``oatomo simulate``): the side of a square
        (``"square"``) or the diameter of a disc (``"disc"``) in metres
        (:mod:`oatomo.volume.elements`); None: point sensors.
    description
        Free text.
    """

    name: str
    array: SensorArray3D
    acquisition: Acquisition
    grid: VolumeGrid
    normal_std: float = 0.0
    tangential_std: float = 0.0
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    offset_std: float = 0.0
    rotation_std: float = 0.0
    noise: float = 0.0
    band: tuple[float, float] | None = None
    response: DetectorResponse | None = None
    element_width: float | None = None
    element_shape: str = "square"
    description: str = ""
    array_spec: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.array, SensorArray3D):
            raise InputError(f"setup {self.name!r}: the array must be a SensorArray3D")
        if not isinstance(self.grid, VolumeGrid):
            raise InputError(f"setup {self.name!r}: the grid must be a VolumeGrid")
        for key, hi in (("normal_std", MAX_PERTURBATION), ("tangential_std", MAX_PERTURBATION),
                        ("offset_std", MAX_PERTURBATION), ("rotation_std", 2 * math.pi),
                        ("noise", 1e3)):
            object.__setattr__(self, key, check_range(getattr(self, key),
                                                      f"setup {self.name!r}: {key}", 0.0, hi))
        object.__setattr__(self, "offset", _vector(self.offset, f"setup {self.name!r}: "
                                                   "offset", MAX_POSITION))
        object.__setattr__(self, "rotation", _vector(self.rotation, f"setup {self.name!r}: "
                                                     "rotation", 1e3))
        check_bytes(4.0 * self.array.n_sensors * self.acquisition.n_samples,
                    f"one sinogram of setup {self.name!r}")
        if self.band is not None:
            lo, hi = (float(v) for v in self.band)
            if not (0 <= lo < hi < self.acquisition.fs / 2):
                raise InputError(f"setup {self.name!r}: band must satisfy 0 <= low < high < "
                                 f"fs/2, got {self.band}")
            object.__setattr__(self, "band", (lo, hi))
        if self.element_width is None and self.element_shape != "square":
            raise InputError(f"setup {self.name!r}: element_shape goes with element_width "
                             f"(the element's size)")
        if self.element_width is not None:
            try:
                w, _ = check_element(self.element_width, self.element_shape)
            except InputError as err:
                raise InputError(f"setup {self.name!r}: {err}") from None
            object.__setattr__(self, "element_width", w)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], path: str | os.PathLike | None = None
                  ) -> VolumeSetup:
        """Build a volume setup from the TOML document structure (module docstring)."""
        p = None if path is None else str(path)
        try:
            _validate(doc)
            return cls._from_checked(doc)
        except InputError as exc:
            raise InputError(exc.problem, p) from None
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"invalid volume setup ({exc})", p) from None

    @classmethod
    def _from_checked(cls, doc: dict[str, Any]) -> VolumeSetup:
        spec = dict(doc["array"])
        kind = spec["kind"]
        axis = spec.get("axis", [0.0, 0.0, -1.0])
        if kind in ("hemisphere", "cap"):
            half = math.pi / 2 if kind == "hemisphere" else float(spec["half_angle"])
            array = spherical_cap_array(spec["n_sensors"], float(spec["radius"]), half,
                                        axis=axis)
        elif kind == "planar":
            array = planar_array(spec["n_x"], spec.get("n_y", spec["n_x"]),
                                 float(spec["pitch"]), float(spec["z"]))
        else:
            array = SensorArray3D(spec["positions"], spec.get("normals"))
            spec = None
        pert = doc.get("perturbation", {})
        band = doc.get("band")
        det = dict(doc.get("detector") or {})
        width = det.pop("element_width", None)
        shape = det.pop("element_shape", "square")
        grid = dict(doc["grid"])
        if "shape" in grid:
            grid["shape"] = tuple(grid["shape"])
        return cls(
            name=doc["name"], description=doc.get("description", ""), array=array,
            acquisition=Acquisition(**doc["acquisition"]), grid=VolumeGrid(**grid),
            normal_std=float(pert.get("normal_std", 0.0)),
            tangential_std=float(pert.get("tangential_std", 0.0)),
            offset=tuple(pert.get("offset", (0.0, 0.0, 0.0))),
            rotation=tuple(pert.get("rotation", (0.0, 0.0, 0.0))),
            offset_std=float(pert.get("offset_std", 0.0)),
            rotation_std=float(pert.get("rotation_std", 0.0)),
            noise=float(doc.get("noise", {}).get("relative_std", 0.0)),
            band=None if band is None else (float(band.get("low", 0.0)), float(band["high"])),
            response=None if not det else DetectorResponse(
                **det, **({"fs": doc["acquisition"]["fs"]} if "impulse_response" in det
                          else {})),
            element_width=None if width is None else float(width), element_shape=shape,
            array_spec=spec)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> VolumeSetup:
        """Read a volume setup TOML file; unknown keys and wrong types name the key."""
        return cls.from_dict(read_toml(path, "setup file"), path)

    def draw(self, seed: int | np.random.Generator | None = None) -> SensorArray3D:
        """The true array of one scan (seeded): per-sensor errors along the normal and
        tangentially, then the fixed and the random global rotation and shift
        (:func:`perturb_array`)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        sub = np.random.default_rng(rng.integers(2**63))
        g_off = rng.standard_normal(3) * self.offset_std
        g_rot = rng.standard_normal(3) * self.rotation_std
        return perturb_array(self.array, normal_std=self.normal_std,
                             tangential_std=self.tangential_std,
                             offset=np.asarray(self.offset) + g_off,
                             rotation=np.asarray(self.rotation) + g_rot, seed=sub)

    def to_dict(self) -> dict[str, Any]:
        """The TOML document structure (round-trips through :meth:`from_dict`)."""
        array = dict(self.array_spec) if self.array_spec is not None else {
            "kind": "positions", "positions": self.array.positions.tolist(),
            "normals": self.array.normals.tolist()}
        grid: dict[str, Any] = {"n": self.grid.n, "fov": self.grid.fov}
        if self.grid.shape != (self.grid.n,) * 3:
            grid["shape"] = list(self.grid.shape)
        doc: dict[str, Any] = {
            "name": self.name, "dimensions": 3, "description": self.description,
            "array": array, "acquisition": self.acquisition.to_dict(), "grid": grid,
            "perturbation": {"normal_std": self.normal_std,
                             "tangential_std": self.tangential_std,
                             "offset": list(self.offset), "offset_std": self.offset_std,
                             "rotation": list(self.rotation),
                             "rotation_std": self.rotation_std},
            "noise": {"relative_std": self.noise}}
        if self.band is not None:
            doc["band"] = {"low": self.band[0], "high": self.band[1]}
        if self.response is not None:
            doc["detector"] = {k: v for k, v in self.response.to_dict().items() if k != "fs"}
        if self.element_width is not None:
            doc.setdefault("detector", {}).update(element_width=self.element_width,
                                                  element_shape=self.element_shape)
        return doc

    def to_toml_string(self) -> str:
        """Serialise to TOML text."""
        return toml_text(self.to_dict())


def load_volume_setup(path: str | os.PathLike) -> VolumeSetup:
    """Load a volume setup TOML file (``dimensions = 3``)."""
    return VolumeSetup.from_toml(path)

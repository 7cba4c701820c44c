"""Reconstruction presets: the settings a scanner set-up always wants, in a TOML file.

A preset names the method, grid, band, speed of sound and detector response that suit one
scanner, so ``oatomo reconstruct scan.h5 --preset my_scanner.toml`` (or
``oatomo.reconstruct(scan, preset="my_scanner.toml")``) need not repeat them. Anything given
explicitly wins over the preset. Users write their own; an example ships with oatomo
(``oatomo/resources/presets``), usable by name.

TOML layout (every key optional but ``name``; SI units)::

    name = "ring256-5mhz"
    description = "..."
    method = "ubp"               # a name of oatomo.recon.registry.METHODS
    n = 256                      # pixels per side
    fov = 0.03                   # field of view (m)
    speed_of_sound = 1520.0      # m/s
    object_speed_of_sound = 1540.0  # an object region of its own speed (m/s) ...
    object_radius = 0.009        # ... a disc of this radius (m), or [rx, ry] an ellipse
    object_centre = [0.0, 0.0]   # ... centred here (m; default the origin)
    band = [0.1e6, 8e6]          # Hz; 0 for an open lower edge
    deconvolve = true            # or the Wiener regularisation, e.g. 1e-3
    iters = 50                   # model-based iterations
    lam = 1e-3                   # model-based regularisation weight
    calibrate = true             # estimate positions and c from the data first
    refine = false               # refine with the learned model (default: when it applies)
    medium = "slab"              # or "2d": the medium that made the scans (line sources)
    attenuation = 0.75           # dB/(MHz^y cm) at 1 MHz, or a name ("soft-tissue", ...)
    attenuation_power = 1.0      # y of the power law (default 1, or the named medium's)
    [detector]                   # the sensors' response (for deconvolve)
    centre_frequency = 5e6       # Hz
    bandwidth = 0.8              # fractional
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from oatomo._limits import SPEED_RANGE, check_option, check_range
from oatomo.errors import InputError, blame
from oatomo.geometry import MAX_GRID_SIDE
from oatomo.media import ATTENUATION_PRESETS, Attenuation, check_medium
from oatomo.recon.registry import get_method
from oatomo.resources import resource_path
from oatomo.response import DetectorResponse
from oatomo.setups import find_toml, read_toml
from oatomo.speed_map import OBJECT_OPTIONS, check_object_options

__all__ = ["Preset", "load_preset", "bundled_presets", "describe_bundled_presets",
           "PRESETS_DIR"]

#: Directory of the presets shipped inside the package.
PRESETS_DIR = resource_path("presets")

_NUM = (int, float)
_KEYS: dict[str, Any] = {"name": str, "description": str, "method": str, "n": int,
                         "fov": _NUM, "speed_of_sound": _NUM,
                         "object_speed_of_sound": _NUM, "object_radius": (int, float, list),
                         "object_centre": list, "band": list,
                         "deconvolve": (bool, int, float), "iters": int, "lam": _NUM,
                         "calibrate": bool, "refine": bool, "detector": dict,
                         "medium": str, "attenuation": (str, int, float),
                         "attenuation_power": _NUM}


@dataclass(frozen=True)
class Preset:
    """Settings of :func:`oatomo.reconstruct` for one scanner set-up (None: not set).

    Attributes
    ----------
    name, description
        What the preset is for.
    method, n, fov, speed_of_sound, band, deconvolve, iters, lam, calibrate, refine
        As the keywords of :func:`oatomo.reconstruct` (SI units).
    object_speed_of_sound, object_radius, object_centre
        An object region with its own speed of sound (m/s): a disc (or an ellipse with
        two radii, m) centred at ``object_centre`` (m, default the origin). ``calibrate = true``
        applies unless the caller calibrates anyway; ``refine`` replaces ``"auto"``.
    response
        The sensors' impulse response (used when deconvolving).
    medium, attenuation
        The medium that made the scans (``"slab"`` or ``"2d"``) and its
        :class:`oatomo.media.Attenuation`.
    """

    name: str
    description: str = ""
    method: str | None = None
    n: int | None = None
    fov: float | None = None
    speed_of_sound: float | None = None
    object_speed_of_sound: float | None = None
    object_radius: float | tuple[float, float] | None = None
    object_centre: tuple[float, float] | None = None
    band: tuple[float | None, float | None] | None = None
    deconvolve: bool | float | None = None
    iters: int | None = None
    lam: float | None = None
    response: DetectorResponse | None = None
    calibrate: bool | None = None
    refine: bool | None = None
    medium: str | None = None
    attenuation: Attenuation | None = None

    @classmethod
    def from_dict(cls, doc: dict[str, Any], path: str | os.PathLike | None = None) -> Preset:
        """Build a preset from the TOML document (see the module docstring)."""
        for key, value in doc.items():
            if key not in _KEYS:
                raise InputError(f"unknown preset key {key!r} (known: {', '.join(_KEYS)})",
                                 path)
            want = _KEYS[key]
            wanted = want if isinstance(want, tuple) else (want,)
            if not isinstance(value, want) or (isinstance(value, bool) and
                                               bool not in wanted):
                raise InputError(f"preset key {key!r} has the wrong type "
                                 f"({type(value).__name__} {value!r})", path)
        if "name" not in doc:
            raise InputError("missing required key 'name'", path)
        _check_values(doc, path)
        band = doc.get("band")
        if band is not None and (len(band) != 2 or not all(
                isinstance(b, _NUM) and not isinstance(b, bool) for b in band)):
            raise InputError(f"preset band must be [low, high] in Hz, got {band!r}", path)
        try:
            response = None if "detector" not in doc else DetectorResponse(**doc["detector"])
        except TypeError as exc:
            raise InputError(f"preset [detector]: {exc}", path) from None
        except InputError as exc:
            raise InputError(f"preset [detector]: {exc.problem}", path) from None
        if "method" in doc:
            try:
                get_method(doc["method"])
            except InputError as exc:
                raise InputError(exc.problem, path) from None
        return cls(name=doc["name"], description=doc.get("description", ""),
                   method=doc.get("method"), n=doc.get("n"), fov=doc.get("fov"),
                   speed_of_sound=doc.get("speed_of_sound"),
                   object_speed_of_sound=doc.get("object_speed_of_sound"),
                   object_radius=_tuple(doc.get("object_radius")),
                   object_centre=_tuple(doc.get("object_centre")),
                   band=None if band is None else (float(band[0]) or None, float(band[1])),
                   deconvolve=doc.get("deconvolve"), iters=doc.get("iters"),
                   lam=doc.get("lam"), response=response, calibrate=doc.get("calibrate"),
                   refine=doc.get("refine"), medium=doc.get("medium"),
                   attenuation=_attenuation(doc, path))

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> Preset:
        """Read a preset TOML file (unknown keys and wrong types are errors)."""
        return cls.from_dict(read_toml(path, "preset"), path)

    def settings(self) -> dict[str, Any]:
        """The keywords of :func:`oatomo.reconstruct` this preset sets."""
        keys = ("method", "n", "fov", "speed_of_sound", "object_speed_of_sound",
                "object_radius", "object_centre", "band", "deconvolve", "iters", "lam",
                "response", "calibrate", "refine", "medium", "attenuation")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


def _attenuation(doc: dict[str, Any], path: str | os.PathLike | None) -> Attenuation | None:
    """The preset's ``attenuation`` (a number or a named medium) and ``attenuation_power``."""
    alpha, power = doc.get("attenuation"), doc.get("attenuation_power")
    if alpha is None:
        if power is not None:
            raise InputError("preset key 'attenuation_power' needs 'attenuation'", path)
        return None
    if power is not None:
        check_option("attenuation_power", power, "preset key 'attenuation_power'", path)
    if isinstance(alpha, str):
        if alpha not in ATTENUATION_PRESETS:
            raise InputError(f"preset key 'attenuation' must be a number or one of "
                             f"{', '.join(ATTENUATION_PRESETS)}, got {alpha!r}", path)
        alpha, named = ATTENUATION_PRESETS[alpha]
        power = named if power is None else power
    else:
        check_option("attenuation", alpha, "preset key 'attenuation'", path)
    return Attenuation(float(alpha), 1.0 if power is None else float(power))


def _check_values(doc: dict[str, Any], path: str | os.PathLike | None) -> None:
    """Every number of a preset in the range of the option it sets (the command line's,
    :func:`oatomo._limits.check_option`; the grid's side and the speed of sound as
    :class:`~oatomo.geometry.Grid` and :class:`~oatomo.geometry.Acquisition` accept them),
    checked where the preset is read so that an error names the file and the key."""
    for key in ("iters", "lam", "fov", "deconvolve"):
        if key in doc and doc[key] is not False:
            check_option(key, doc[key], f"preset key {key!r}", path)
    check_object_options(*(doc.get(k) for k in OBJECT_OPTIONS), prefix="preset key ",
                         path=path)
    if "medium" in doc:
        with blame(path):
            check_medium(doc["medium"], "preset key 'medium'")
    for key, (lo, hi) in (("n", (1, MAX_GRID_SIDE)), ("speed_of_sound", SPEED_RANGE)):
        if key in doc:
            check_range(doc[key], f"preset key {key!r}", lo, hi, path)
    band = doc.get("band")
    if band is not None:
        for edge in band:
            if isinstance(edge, _NUM) and not isinstance(edge, bool):
                check_range(edge, "preset key 'band'", 0.0, 1e12, path)


def _tuple(value: Any) -> Any:
    """A TOML list as a tuple (presets are hashable values); anything else as given."""
    return tuple(value) if isinstance(value, list) else value


def bundled_presets() -> list[str]:
    """Names of the presets shipped with oatomo."""
    if not PRESETS_DIR.is_dir():
        return []
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def describe_bundled_presets() -> dict[str, str]:
    """Each bundled preset's name and the ``description`` of its TOML file."""
    return {name: " ".join(load_preset(name).description.split())
            for name in bundled_presets()}


def load_preset(preset: str | os.PathLike | Preset) -> Preset:
    """A :class:`Preset` as given, from a TOML path, or by the name of a bundled one."""
    if isinstance(preset, Preset):
        return preset
    if not isinstance(preset, (str, os.PathLike)):
        raise InputError(f"preset must be a Preset, a TOML path or a bundled name, got "
                         f"{type(preset).__name__}")
    return Preset.from_toml(find_toml(preset, PRESETS_DIR, "preset"))

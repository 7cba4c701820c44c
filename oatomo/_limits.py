"""Physical ranges and the memory limit that every input is checked against.

The limits are generous for real optoacoustic systems and small enough that every value
derived from them (times of flight in samples, array sizes) stays finite in float32 and
fits in memory, so nothing that passes them can crash a kernel or exhaust the machine.

Memory limit
------------
``OATOMO_MAX_BYTES`` (environment variable, bytes; suffixes ``K``, ``M``, ``G`` accepted)
bounds any single array a reader or generator is about to allocate from a declared size
(a sinogram in a file, a setup's record, a dataset's item count). Default: 4 GiB.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from oatomo.errors import InputError

__all__ = ["MAX_POSITION", "MAX_SENSORS", "MAX_SAMPLES", "FS_RANGE", "SPEED_RANGE", "MAX_T0",
           "MAX_PERTURBATION", "MAX_COUNT", "MAX_POSTERIOR_SAMPLES", "DEFAULT_MAX_BYTES",
           "MAX_ITERS", "ATTENUATION_RANGE", "ATTENUATION_POWER_RANGE", "MAX_BATCH",
           "MAX_CHANNELS", "MAX_DEPTH_BLOCKS", "max_bytes",
           "check_bytes", "check_range", "check_seed", "check_option"]

#: Largest distance of a sensor (or of the field of view's edge) from the origin (m).
MAX_POSITION = 10.0
#: Most sensors in an array.
MAX_SENSORS = 1 << 16
#: Most samples per sensor.
MAX_SAMPLES = 1 << 20
#: Accepted sampling rates (Hz).
FS_RANGE = (1e3, 1e12)
#: Accepted speeds of sound (m/s).
SPEED_RANGE = (1.0, 1e5)
#: Largest |t0| (s).
MAX_T0 = 1.0
#: Largest per-sensor or global position perturbation (m).
MAX_PERTURBATION = 1.0
#: Largest count of items, steps or shards a command accepts.
MAX_COUNT = 10_000_000
#: Most posterior samples of one refined image.
MAX_POSTERIOR_SAMPLES = 1024
#: Most iterations of a model-based method.
MAX_ITERS = 100_000
#: Accepted acoustic attenuation at 1 MHz, dB/(MHz^y cm) (tissue 0.5-0.75, water 0.002).
ATTENUATION_RANGE = (0.0, 100.0)
#: Accepted exponents ``y`` of a power-law attenuation ``alpha0 (f / 1 MHz)^y``.
ATTENUATION_POWER_RANGE = (0.5, 2.0)
#: Largest batch a model is trained on.
MAX_BATCH = 1 << 16
#: Largest width (channels at half resolution) and latent channels of a trained model.
MAX_CHANNELS = 256
#: Most residual blocks at quarter resolution of a trained model.
MAX_DEPTH_BLOCKS = 16
#: Default of ``OATOMO_MAX_BYTES``.
DEFAULT_MAX_BYTES = 4 << 30

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def max_bytes() -> int:
    """The memory limit in bytes: ``OATOMO_MAX_BYTES`` or 4 GiB."""
    text = os.environ.get("OATOMO_MAX_BYTES", "").strip().upper().removesuffix("B")
    if not text:
        return DEFAULT_MAX_BYTES
    num, unit = (text[:-1], text[-1]) if text[-1] in _SUFFIX else (text, "")
    try:
        value = int(float(num) * _SUFFIX[unit])  # inf: OverflowError, nan: ValueError
    except (ValueError, OverflowError):
        raise InputError(f"OATOMO_MAX_BYTES must be a number of bytes (e.g. 4G), got "
                         f"{os.environ['OATOMO_MAX_BYTES']!r}") from None
    if value < 1:
        raise InputError("OATOMO_MAX_BYTES must be positive")
    return value


def check_bytes(n_bytes: float, what: str, path: Any = None) -> None:
    """Raise :class:`InputError` when ``what`` would need more than :func:`max_bytes`."""
    limit = max_bytes()
    if not n_bytes <= limit:
        raise InputError(f"{what} would need {n_bytes / 2**20:.0f} MiB, more than the "
                         f"limit of {limit / 2**20:.0f} MiB (set OATOMO_MAX_BYTES to raise it)",
                         path)


def check_integer(value: Any, what: str, lo: int = 1) -> None:
    """Raise :class:`InputError` unless ``value`` is an integer (not a bool) ``>= lo``."""
    if isinstance(value, bool) or int(value) != value or value < lo:
        raise InputError(f"{what} must be an integer >= {lo}, got {value!r}")


def check_seed(value: Any, what: str = "seed") -> int:
    """``value`` as an int if it is an integer seed in ``[0, 2**64)`` (what NumPy's
    generators and the files' ``uint64`` fields hold), else an :class:`InputError` naming
    ``what`` (an option such as ``--seed``)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or not 0 <= int(value) < 1 << 64:
        raise InputError(f"{what} must be an integer in [0, 2**64), got {value!r}")
    return int(value)


def check_range(value: Any, what: str, lo: float, hi: float, path: Any = None, *,
                unit: str = "") -> float:
    """``value`` as a float if it is a finite number in ``[lo, hi]``, else InputError."""
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} must be a number, got {value!r}", path) from None
    if not (math.isfinite(v) and lo <= v <= hi):
        u = f" {unit}" if unit else ""
        raise InputError(f"{what} must lie in [{lo:g}, {hi:g}]{u}, got {value!r}", path)
    return v


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and math.isfinite(v)


def _integer_in(lo: int, hi: int) -> tuple[Any, str]:
    return (lambda v: _finite(v) and int(v) == v and lo <= v <= hi, f"an integer in {lo}..{hi}")


#: The ranges of the numeric options, one place for the command line, presets and the
#: library: :func:`oatomo.reconstruct`'s (``iters``, ``lam``, ``fov``, ``deconvolve``) and
#: training's (``epochs``, ``batch_size``, ``lr``, ``width``, ``depth``, ``latent``,
#: ``snapshot_every``, ``max_target``): option -> (test, what the error says it must be).
_OPTIONS: dict[str, tuple[Any, str]] = {
    "iters": (lambda v: _finite(v) and int(v) == v and 1 <= v <= MAX_ITERS,
              f"in 1..{MAX_ITERS}"),
    "lam": (lambda v: _finite(v) and (v == 0 or 1e-30 <= v <= 1e30),
            "0 or a number in [1e-30, 1e30]"),
    "fov": (lambda v: _finite(v) and 0 < v <= 2 * MAX_POSITION,
            f"in (0, {2 * MAX_POSITION:g}] metres"),
    "deconvolve": (lambda v: v is True or (_finite(v) and 0 < v <= 1e30),
                   "a finite number > 0"),
    "object_speed_of_sound": (lambda v: _finite(v) and SPEED_RANGE[0] <= v <= SPEED_RANGE[1],
                              f"in [{SPEED_RANGE[0]:g}, {SPEED_RANGE[1]:g}] m/s"),
    "element_width": (lambda v: _finite(v) and 0 < v <= MAX_POSITION,
                      f"in (0, {MAX_POSITION:g}] metres"),
    "object_radius": (lambda v: _finite(v) and 0 < v <= MAX_POSITION
                      or (isinstance(v, (list, tuple)) and len(v) == 2
                          and all(_finite(r) and 0 < r <= MAX_POSITION for r in v)),
                      f"in (0, {MAX_POSITION:g}] metres (or two such radii)"),
    "object_centre": (lambda v: isinstance(v, (list, tuple)) and len(v) == 2
                      and all(_finite(x) and abs(x) <= MAX_POSITION for x in v),
                      f"two coordinates x y within {MAX_POSITION:g} metres of the origin"),
    "attenuation": (lambda v: _finite(v)
                    and ATTENUATION_RANGE[0] <= v <= ATTENUATION_RANGE[1],
                    f"in [{ATTENUATION_RANGE[0]:g}, {ATTENUATION_RANGE[1]:g}] dB/(MHz^y cm)"),
    "attenuation_power": (lambda v: _finite(v) and ATTENUATION_POWER_RANGE[0] <= v
                          <= ATTENUATION_POWER_RANGE[1],
                          f"in [{ATTENUATION_POWER_RANGE[0]:g}, "
                          f"{ATTENUATION_POWER_RANGE[1]:g}]"),
    "epochs": _integer_in(1, MAX_COUNT),
    "batch_size": _integer_in(1, MAX_BATCH),
    "lr": (lambda v: _finite(v) and 0 < v <= 10, "a number in (0, 10]"),
    "width": _integer_in(1, MAX_CHANNELS),
    "depth": _integer_in(0, MAX_DEPTH_BLOCKS),
    "latent": _integer_in(1, MAX_CHANNELS),
    "snapshot_every": _integer_in(0, MAX_COUNT),
    "max_target": (lambda v: _finite(v) and 0 < v <= 1e6, "a number in (0, 1e6]"),
}


def check_option(key: str, value: Any, name: str, path: Any = None) -> None:
    """Raise :class:`InputError` unless ``value`` lies in the range of the option ``key``
    (a key of the table above: ``iters``, ``lam``, ..., ``object_radius``, ``attenuation``,
    ``batch_size``, ``latent``); ``name`` is how the message names it (``--lam``, a
    preset's key)."""
    ok, want = _OPTIONS[key]
    if not ok(value):
        raise InputError(f"{name} must be {want}, got {value}", path)

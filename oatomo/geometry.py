"""Geometry nouns: sensor arrays, image grids and acquisition parameters.

All lengths are in metres, times in seconds, frequencies in hertz and speeds in m/s.
The imaging plane has its origin at the image centre; ``x`` grows with the column index
``j`` and ``y`` with the row index ``i`` of an image array ``image[i, j]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from oatomo._limits import (
    FS_RANGE,
    MAX_PERTURBATION,
    MAX_POSITION,
    MAX_SAMPLES,
    MAX_SENSORS,
    MAX_T0,
    SPEED_RANGE,
    check_range,
)
from oatomo.errors import InputError, warn_units

__all__ = ["SensorArray", "ring_array", "Grid", "Acquisition", "as_sensors", "check_geometry",
           "sensor_coordinates", "resample", "MAX_GRID_SIDE", "PLAUSIBLE"]

#: Largest image side accepted by :class:`Grid` (a 8192 x 8192 float32 image is 256 MiB;
#: a reconstruction holds a few of them, and several frames multiply that).
MAX_GRID_SIDE = 8192


#: Values outside these ranges are almost surely in the wrong unit and give a
#: :class:`~oatomo.errors.UnitWarning`: field of view (m), sensor distance from the
#: origin (m), sampling rate (Hz) and speed of sound (m/s).
PLAUSIBLE = {"fov": (0.0, 0.5), "radius": (0.0, 1.0), "fs": (1e6, np.inf),
             "speed_of_sound": (1000.0, 2500.0)}


def _real(value: Any, what: str) -> float:
    """``value`` as a float, or an :class:`InputError` naming ``what``."""
    if isinstance(value, (bool, str, bytes)):
        raise InputError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {type(value).__name__} "
                         f"{value!r}") from None


def _integer(value: Any, what: str) -> int:
    """``value`` as an int (integral floats allowed), or an :class:`InputError`."""
    v = _real(value, what)
    if not (np.isfinite(v) and v == int(v)):
        raise InputError(f"{what} must be an integer, got {value!r}")
    return int(v)


def _check_plausible(key: str, value: float, what: str, unit: str, hint: str) -> None:
    lo, hi = PLAUSIBLE[key]
    if not lo <= value <= hi:
        warn_units(f"{what} = {value:g} {unit} looks like a unit slip ({hint})", stacklevel=4)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


def sensor_coordinates(positions: Any, dims: int) -> np.ndarray:
    """``positions`` as an (N, ``dims``) float64 array of sensor coordinates (m), checked:
    a number array of that shape, 1 to :data:`MAX_SENSORS` sensors, finite, within
    :data:`MAX_POSITION` of the origin (one-line :class:`InputError` otherwise)."""
    try:
        pos = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"sensor positions must be an (N, {dims}) array of numbers in "
                         f"metres, got {type(positions).__name__}") from None
    if pos.ndim != 2 or pos.shape[1] != dims:
        raise InputError(f"{'3-D ' if dims == 3 else ''}sensor positions must have shape "
                         f"(N, {dims}), got {pos.shape}")
    if pos.shape[0] == 0:
        raise InputError("the sensor array has no sensors")
    if pos.shape[0] > MAX_SENSORS:
        raise InputError(f"{pos.shape[0]} sensors; at most {MAX_SENSORS} are accepted")
    if not np.all(np.isfinite(pos)):
        raise InputError("sensor positions contain NaN or Inf")
    if np.abs(pos).max() > MAX_POSITION:
        raise InputError(f"sensor positions must lie within {MAX_POSITION:g} m of the "
                         f"origin, got {np.abs(pos).max():.3g} m")
    return pos


@dataclass(frozen=True, eq=False)
class SensorArray:
    """Point sensors in the imaging plane.

    Parameters
    ----------
    positions
        Array of shape (N, 2): x, y of each sensor in metres, origin at the image centre.
    normals
        Optional (N, 2) unit vectors, the direction each sensor faces. By default each
        sensor faces the origin (the centre of a ring array).

    Notes
    -----
    The array is immutable and hashable (it hashes its coordinates), so it can key caches.
    """

    positions: np.ndarray
    normals: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        pos = sensor_coordinates(self.positions, 2)
        _check_plausible("radius", float(np.hypot(pos[:, 0], pos[:, 1]).max()),
                         "largest sensor distance from the origin", "m",
                         "positions are in metres: 40 mm is 0.04")
        if self.normals is None:
            norm = np.hypot(pos[:, 0], pos[:, 1])[:, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                nrm = np.where(norm > 0, -pos / np.where(norm > 0, norm, 1.0), 0.0)
        else:
            nrm = np.asarray(self.normals, dtype=np.float64)
            if nrm.shape != pos.shape:
                raise InputError(f"normals must have shape {pos.shape}, got {nrm.shape}")
            if not np.all(np.isfinite(nrm)) or np.abs(nrm).max() > 1e150:
                raise InputError("sensor normals contain NaN, Inf or huge values")
            length = np.hypot(nrm[:, 0], nrm[:, 1])[:, None]
            if np.any(np.abs(length - 1) > 1e-12):
                nrm = np.where(length > 0, nrm / np.where(length > 0, length, 1.0), 0.0)
        object.__setattr__(self, "positions", _readonly(pos))
        object.__setattr__(self, "normals", _readonly(nrm))

    @property
    def n_sensors(self) -> int:
        """Number of sensors."""
        return int(self.positions.shape[0])

    def __len__(self) -> int:
        return self.n_sensors

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SensorArray):
            return NotImplemented
        return bool(
            np.array_equal(self.positions, other.positions)
            and np.array_equal(self.normals, other.normals)
        )

    def __hash__(self) -> int:
        return hash((self.positions.tobytes(), self.normals.tobytes()))

    def __repr__(self) -> str:
        r = np.hypot(self.positions[:, 0], self.positions[:, 1])
        return (
            f"SensorArray(n_sensors={self.n_sensors}, "
            f"radius={r.min() * 1e3:.3f}..{r.max() * 1e3:.3f} mm)"
        )

    def perturbed(
        self,
        *,
        radial_std: float = 0.0,
        angular_std: float = 0.0,
        jitter_std: float = 0.0,
        offset: tuple[float, float] = (0.0, 0.0),
        rotation: float = 0.0,
        seed: int | np.random.Generator | None = None,
    ) -> SensorArray:
        """The true positions of one scan, drawn around these nominal positions.

        Parameters
        ----------
        radial_std
            Standard deviation of a per-sensor error along the radius (m).
        angular_std
            Standard deviation of a per-sensor error in polar angle (rad).
        jitter_std
            Standard deviation of an isotropic per-sensor displacement (m), per axis.
        offset
            Global shift (dx, dy) of the whole array (m), applied last.
        rotation
            Global rotation of the whole array about the origin (rad).
        seed
            Seed or generator; the same seed gives the same positions.

        Returns
        -------
        SensorArray
            The perturbed array; normals are rotated with the array.

        Notes
        -----
        The three per-sensor errors are always drawn (radial, angular, then jitter, in that
        order) so a given seed gives the same draw of each kind whichever are non-zero.
        """
        for name, v, hi in (("radial_std", radial_std, MAX_PERTURBATION),
                            ("angular_std", angular_std, 2 * np.pi),
                            ("jitter_std", jitter_std, MAX_PERTURBATION)):
            check_range(v, name, 0.0, hi)
        rotation = check_range(rotation, "rotation", -1e3, 1e3, unit="rad")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        n = self.n_sensors
        dr = rng.standard_normal(n) * radial_std
        dth = rng.standard_normal(n) * angular_std
        jit = rng.standard_normal((n, 2)) * jitter_std
        if radial_std == 0 and angular_std == 0 and rotation == 0:
            pos = self.positions + jit  # exact: no round trip through polar coordinates
        else:
            x, y = self.positions[:, 0], self.positions[:, 1]
            r = np.hypot(x, y) + dr
            th = np.arctan2(y, x) + dth + rotation
            pos = np.stack([r * np.cos(th), r * np.sin(th)], axis=1) + jit
        pos = pos + np.asarray(offset, dtype=np.float64)[None, :]
        c, s = np.cos(rotation + dth), np.sin(rotation + dth)
        nx, ny = self.normals[:, 0], self.normals[:, 1]
        normals = np.stack([c * nx - s * ny, s * nx + c * ny], axis=1)
        return SensorArray(pos, normals)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists of floats) for JSON/TOML."""
        return {"positions": self.positions.tolist(), "normals": self.normals.tolist()}


def ring_array(
    n_sensors: int, radius: float, arc: float = 2 * np.pi, start_angle: float = 0.0
) -> SensorArray:
    """Sensors evenly spaced on a circle (or an arc of it) centred on the origin.

    Parameters
    ----------
    n_sensors
        Number of sensors.
    radius
        Ring radius in metres.
    arc
        Angular extent in radians. A full ring (``arc >= 2*pi``) places sensor k at
        ``start_angle + arc*k/N``; a partial arc places them at
        ``start_angle + arc*k/(N-1)``, both endpoints included.
    start_angle
        Angle of the first sensor (rad), measured from the +x axis towards +y.

    Returns
    -------
    SensorArray
        Sensors facing the ring centre.

    Examples
    --------
    >>> ring_array(4, 0.01).positions.round(6).tolist()
    [[0.01, 0.0], [0.0, 0.01], [-0.01, 0.0], [-0.0, -0.01]]
    """
    try:
        n = int(n_sensors)
    except (TypeError, ValueError, OverflowError):
        n = 0
    if n < 1 or n != n_sensors or n > MAX_SENSORS:
        raise InputError(f"n_sensors must be an integer in [1, {MAX_SENSORS}], got "
                         f"{n_sensors!r}")
    radius = check_range(radius, "radius", 0.0, MAX_POSITION, unit="m")
    if radius == 0:
        raise InputError("radius must be > 0 metres, got 0")
    arc = check_range(arc, "arc", 0.0, 1e3, unit="rad")
    if arc == 0:
        raise InputError("arc must be > 0 radians, got 0")
    start_angle = check_range(start_angle, "start_angle", -1e3, 1e3, unit="rad")
    full = arc >= 2 * np.pi - 1e-12
    k = np.arange(n, dtype=np.float64)
    if full:
        th = start_angle + arc * k / n
    else:
        th = start_angle + (arc * k / (n - 1) if n > 1 else 0.0 * k)
    pos = radius * np.stack([np.cos(th), np.sin(th)], axis=1)
    return SensorArray(pos)


@dataclass(frozen=True)
class Grid:
    """A square image grid centred on the origin.

    Parameters
    ----------
    n
        Pixels per side.
    fov
        Field of view (side length) in metres; the pixel pitch is ``dx = fov / n``.

    Notes
    -----
    Pixel ``image[i, j]`` sits at ``x = (j - (n-1)/2) * dx``, ``y = (i - (n-1)/2) * dx``.
    """

    n: int
    fov: float

    def __post_init__(self) -> None:
        n = _integer(self.n, "grid size n")
        if n < 1:
            raise InputError(f"grid size n must be a positive integer, got {self.n!r}")
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "fov", _real(self.fov, "field of view"))
        if self.n > MAX_GRID_SIDE:
            mib = self.n * self.n * 4 / 2**20
            raise InputError(
                f"grid of {self.n}x{self.n} pixels would need {mib:.0f} MiB per image; "
                f"the limit is {MAX_GRID_SIDE} pixels per side"
            )
        if not (np.isfinite(self.fov) and 0 < self.fov <= 2 * MAX_POSITION):
            raise InputError(f"field of view must be > 0 and at most {2 * MAX_POSITION:g} "
                             f"metres, got {self.fov!r}")
        _check_plausible("fov", self.fov, "field of view", "m",
                         "Grid(n, fov) takes metres: 12.8 mm is 0.0128")

    @property
    def dx(self) -> float:
        """Pixel pitch in metres."""
        return self.fov / self.n

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape ``(n, n)``."""
        return (self.n, self.n)

    @property
    def x(self) -> np.ndarray:
        """x coordinate of each column (m), shape (n,)."""
        return (np.arange(self.n, dtype=np.float64) - (self.n - 1) / 2) * self.dx

    @property
    def y(self) -> np.ndarray:
        """y coordinate of each row (m), shape (n,)."""
        return self.x

    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates ``(X, Y)``, each of shape (n, n), in metres."""
        return np.meshgrid(self.x, self.y, indexing="xy")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON/TOML."""
        return {"n": self.n, "fov": self.fov}


@dataclass(frozen=True)
class Acquisition:
    """Temporal sampling of the recorded signals.

    Parameters
    ----------
    fs
        Sampling rate in Hz.
    n_samples
        Samples per sensor.
    speed_of_sound
        Speed of sound of the medium in m/s.
    t0
        Time of the first sample after the laser pulse (s).
    """

    fs: float
    n_samples: int
    speed_of_sound: float = 1500.0
    t0: float = 0.0

    def __post_init__(self) -> None:
        for name, what in (("fs", "sampling rate fs"), ("speed_of_sound", "speed of sound"),
                           ("t0", "t0")):
            object.__setattr__(self, name, _real(getattr(self, name), what))
        n = _integer(self.n_samples, "n_samples")
        if not 1 <= n <= MAX_SAMPLES:
            raise InputError(f"n_samples must be an integer in [1, {MAX_SAMPLES}], got "
                             f"{self.n_samples!r}")
        fs = check_range(self.fs, "sampling rate fs", *FS_RANGE, unit="Hz")
        c = check_range(self.speed_of_sound, "speed of sound", *SPEED_RANGE, unit="m/s")
        t0 = check_range(self.t0, "t0", -MAX_T0, MAX_T0, unit="s")
        _check_plausible("fs", fs, "sampling rate fs", "Hz", "fs is in hertz: 40 MHz is 40e6")
        _check_plausible("speed_of_sound", c, "speed of sound", "m/s",
                         "water and tissue are about 1500 m/s")
        object.__setattr__(self, "fs", fs)
        object.__setattr__(self, "n_samples", n)
        object.__setattr__(self, "speed_of_sound", c)
        object.__setattr__(self, "t0", t0)

    @property
    def dt(self) -> float:
        """Sampling interval (s)."""
        return 1.0 / self.fs

    @property
    def times(self) -> np.ndarray:
        """Sample times ``t0 + arange(n_samples) / fs`` (s)."""
        return self.t0 + np.arange(self.n_samples, dtype=np.float64) / self.fs

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON/TOML."""
        return {"fs": self.fs, "n_samples": self.n_samples,
                "speed_of_sound": self.speed_of_sound, "t0": self.t0}


def as_sensors(sensors: Any, what: str = "sensors") -> SensorArray:
    """A :class:`SensorArray` as given, or one built from (N, 2) positions in metres.

    Raises
    ------
    InputError
        Anything else, naming what was expected.
    """
    if isinstance(sensors, SensorArray):
        return sensors
    try:
        shape = np.shape(getattr(sensors, "positions", sensors))
    except ValueError:  # ragged lists: SensorArray says what is wrong
        shape = ()
    if len(shape) == 2 and shape[1] == 3:
        raise InputError(f"{what} are 3-D ({shape[0]} positions x, y, z): this 2-D operation "
                         f"takes (N, 2) sensors in the imaging plane; volumes are imaged "
                         f"with oatomo.volume (or oatomo reconstruct on the scan file)")
    if isinstance(sensors, (np.ndarray, list, tuple)):
        return SensorArray(sensors)
    raise InputError(f"{what} must be a SensorArray or an (N, 2) array of positions in "
                     f"metres, got {type(sensors).__name__}")


def check_geometry(grid: Any, sensors: Any, acquisition: Any
                   ) -> tuple[Any, SensorArray, Acquisition]:
    """Validate the types of the three geometry nouns of a public call.

    ``grid`` may be None (the callee's default); ``sensors`` may be (N, 2) positions.
    Returns ``(grid, sensors, acquisition)`` with the sensors as a :class:`SensorArray`.
    """
    if grid is not None and not isinstance(grid, Grid):
        raise InputError(f"grid must be an oatomo Grid(n, fov), got {type(grid).__name__}")
    if not isinstance(acquisition, Acquisition):
        raise InputError(f"acquisition must be an oatomo Acquisition(fs, n_samples, ...), "
                         f"got {type(acquisition).__name__}")
    return grid, as_sensors(sensors), acquisition


def resample(image: np.ndarray, src: Grid, dst: Grid) -> np.ndarray:
    """Bilinear resampling of (..., n, n) images between centred grids (zero outside)."""
    from scipy.ndimage import map_coordinates  # lazy: scipy.ndimage costs at import

    img = np.asarray(image, np.float32)
    if src == dst:
        return img.copy()
    # pixel i of a grid sits at (i - (n - 1) / 2) * dx
    idx = (dst.x / src.dx) + (src.n - 1) / 2
    ii, jj = np.meshgrid(idx, idx, indexing="ij")
    flat = img.reshape((-1,) + img.shape[-2:])
    out = np.stack([map_coordinates(a, [ii, jj], order=1, mode="constant", cval=0.0)
                    for a in flat])
    return out.reshape(img.shape[:-2] + dst.shape).astype(np.float32)

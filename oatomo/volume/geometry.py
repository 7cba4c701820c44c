"""Volume geometry: a voxel grid and sensor arrays in three dimensions.

All lengths are in metres. A volume ``vol[k, i, j]`` has its axes in the order z, y, x;
voxel ``[k, i, j]`` sits at ``z, y, x = ((k, i, j) - (n - 1) / 2) * pitch``, each axis
centred on the origin as the 2-D :class:`oatomo.Grid` is (its ``image[i, j]`` is the
slice ``k = (nz - 1) / 2`` of a volume with the same pitch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from oatomo._limits import MAX_POSITION, MAX_SENSORS, check_bytes, check_range
from oatomo.errors import InputError, warn_units
from oatomo.geometry import PLAUSIBLE, sensor_coordinates

__all__ = ["VolumeGrid", "SensorArray3D", "as_sensors3d", "hemisphere_array",
           "spherical_cap_array", "planar_array", "MAX_VOLUME_SIDE"]

#: Largest number of voxels along one axis of a :class:`VolumeGrid` (a 1024^3 float32
#: volume is 4 GiB, the default ``OATOMO_MAX_BYTES``).
MAX_VOLUME_SIDE = 1024


def _count(value: Any, what: str, hi: int) -> int:
    """``value`` as an int in ``[1, hi]`` (integral floats allowed), else InputError."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise InputError(f"{what} must be an integer in [1, {hi}], got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} must be an integer in [1, {hi}], got {value!r}") from None
    if not (math.isfinite(v) and v == int(v) and 1 <= v <= hi):
        raise InputError(f"{what} must be an integer in [1, {hi}], got {value!r}")
    return int(v)


@dataclass(frozen=True)
class VolumeGrid:
    """A box of voxels at one pitch, centred on the origin.

    Parameters
    ----------
    n
        Voxels per side of the cube (and the count the pitch is defined by).
    fov
        Side of the cube in metres; the pitch is ``dx = fov / n``.
    shape
        Optional ``(nz, ny, nx)``: a box of that many voxels at the same pitch ``fov / n``
        (e.g. a thin slab ``(8, n, n)``). Default ``(n, n, n)``.

    Notes
    -----
    Voxel ``vol[k, i, j]`` sits at ``z = (k - (nz-1)/2) dx``, ``y = (i - (ny-1)/2) dx``,
    ``x = (j - (nx-1)/2) dx``. The volume is expanded in the trilinear (hat) basis of
    the grid: a voxel value is the value of ``p0`` at the voxel centre.

    Examples
    --------
    >>> g = VolumeGrid(4, 0.004)
    >>> g.shape, g.dx, g.z.tolist()
    ((4, 4, 4), 0.001, [-0.0015, -0.0005, 0.0005, 0.0015])
    """

    n: int
    fov: float
    shape: tuple[int, int, int] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = _count(self.n, "volume grid size n", MAX_VOLUME_SIDE)
        fov = check_range(self.fov, "field of view", 0.0, 2 * MAX_POSITION, unit="m")
        if fov == 0:
            raise InputError("field of view must be > 0 metres, got 0")
        lo, hi = PLAUSIBLE["fov"]
        if not lo <= fov <= hi:
            warn_units(f"field of view = {fov:g} m looks like a unit slip (VolumeGrid(n, "
                       f"fov) takes metres: 12.8 mm is 0.0128)")
        if self.shape is None:
            shape = (n, n, n)
        else:
            try:
                dims = tuple(self.shape)
            except TypeError:
                raise InputError(f"volume shape must be (nz, ny, nx), got "
                                 f"{self.shape!r}") from None
            if len(dims) != 3:
                raise InputError(f"volume shape must be (nz, ny, nx), got {self.shape!r}")
            shape = tuple(_count(v, f"volume shape {a}", MAX_VOLUME_SIDE)
                          for a, v in zip(("nz", "ny", "nx"), dims, strict=True))
        check_bytes(4.0 * shape[0] * shape[1] * shape[2], f"a float32 volume of {shape}")
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "fov", fov)
        object.__setattr__(self, "shape", shape)

    @property
    def dx(self) -> float:
        """Voxel pitch in metres (the same along every axis)."""
        return self.fov / self.n

    @property
    def n_voxels(self) -> int:
        """Number of voxels."""
        return self.shape[0] * self.shape[1] * self.shape[2]

    def _axis(self, m: int) -> np.ndarray:
        return (np.arange(m, dtype=np.float64) - (m - 1) / 2) * self.dx

    @property
    def z(self) -> np.ndarray:
        """z of each slice ``k`` (m)."""
        return self._axis(self.shape[0])

    @property
    def y(self) -> np.ndarray:
        """y of each row ``i`` (m)."""
        return self._axis(self.shape[1])

    @property
    def x(self) -> np.ndarray:
        """x of each column ``j`` (m)."""
        return self._axis(self.shape[2])

    def coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel-centre coordinates ``(Z, Y, X)``, each of the volume's shape (m)."""
        return np.meshgrid(self.z, self.y, self.x, indexing="ij")

    def index_of(self, point: Any) -> tuple[int, int, int]:
        """The ``(k, i, j)`` of the voxel nearest to ``point = (x, y, z)`` (m), clipped
        into the grid."""
        p = np.asarray(point, dtype=np.float64)
        out = []
        for coord, m in ((p[2], self.shape[0]), (p[1], self.shape[1]), (p[0], self.shape[2])):
            out.append(int(np.clip(round(coord / self.dx + (m - 1) / 2), 0, m - 1)))
        return tuple(out)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for JSON/TOML."""
        return {"n": self.n, "fov": self.fov, "shape": list(self.shape)}


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class SensorArray3D:
    """Point sensors in space, each with the direction it faces and the area it stands for.

    Parameters
    ----------
    positions
        (N, 3): x, y, z of each sensor in metres, origin at the volume centre.
    normals
        Optional (N, 3) unit vectors, the direction each sensor faces (normalised here).
        By default each sensor faces the origin.
    areas
        Optional (N,) surface area (m^2) each sensor stands for on the measurement
        surface: the weights of universal backprojection. Default: all equal (UBP then
        normalises by the solid angle the sensors subtend at each voxel, so the common
        value does not matter).

    Notes
    -----
    Immutable and hashable (it hashes its coordinates), so it can key caches.
    """

    positions: np.ndarray
    normals: np.ndarray = field(default=None)  # type: ignore[assignment]
    areas: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        pos = sensor_coordinates(self.positions, 3)
        r_max = float(np.linalg.norm(pos, axis=1).max())
        if r_max > PLAUSIBLE["radius"][1]:
            warn_units(f"largest sensor distance from the origin = {r_max:g} m looks like a "
                       f"unit slip (positions are in metres: 40 mm is 0.04)")
        if self.normals is None:
            nrm = -pos
        else:
            try:
                nrm = np.asarray(self.normals, dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError("sensor normals must be an (N, 3) array of numbers") from None
            if nrm.shape != pos.shape:
                raise InputError(f"normals must have shape {pos.shape}, got {nrm.shape}")
            if not np.all(np.isfinite(nrm)) or np.abs(nrm).max() > 1e150:
                raise InputError("sensor normals contain NaN, Inf or huge values")
        length = np.linalg.norm(nrm, axis=1)[:, None]
        nrm = np.where(length > 0, nrm / np.where(length > 0, length, 1.0), 0.0)
        if self.areas is None:
            areas = np.ones(pos.shape[0])
        else:
            try:
                areas = np.asarray(self.areas, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise InputError("sensor areas must be N numbers in m^2") from None
            if areas.shape != (pos.shape[0],):
                raise InputError(f"sensor areas must have {pos.shape[0]} values, got "
                                 f"{areas.size}")
            if not (np.all(np.isfinite(areas)) and np.all(areas > 0)):
                raise InputError("sensor areas must be finite and > 0 m^2")
        object.__setattr__(self, "positions", _readonly(pos))
        object.__setattr__(self, "normals", _readonly(nrm))
        object.__setattr__(self, "areas", _readonly(areas))

    @property
    def n_sensors(self) -> int:
        """Number of sensors."""
        return int(self.positions.shape[0])

    def __len__(self) -> int:
        return self.n_sensors

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SensorArray3D):
            return NotImplemented
        return bool(np.array_equal(self.positions, other.positions)
                    and np.array_equal(self.normals, other.normals)
                    and np.array_equal(self.areas, other.areas))

    def __hash__(self) -> int:
        return hash((self.positions.tobytes(), self.normals.tobytes(), self.areas.tobytes()))

    def __repr__(self) -> str:
        r = np.linalg.norm(self.positions, axis=1)
        return (f"SensorArray3D(n_sensors={self.n_sensors}, "
                f"distance={r.min() * 1e3:.3f}..{r.max() * 1e3:.3f} mm)")

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (lists of floats) for JSON/TOML."""
        return {"positions": self.positions.tolist(), "normals": self.normals.tolist(),
                "areas": self.areas.tolist()}


def as_sensors3d(sensors: Any, what: str = "sensors") -> SensorArray3D:
    """A :class:`SensorArray3D` as given, or one built from (N, 3) positions in metres."""
    if isinstance(sensors, SensorArray3D):
        return sensors
    if isinstance(sensors, (np.ndarray, list, tuple)):
        return SensorArray3D(sensors)
    raise InputError(f"{what} must be a SensorArray3D or an (N, 3) array of positions in "
                     f"metres, got {type(sensors).__name__}")


_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def spherical_cap_array(n_sensors: int, radius: float, half_angle: float, *,
                        axis: Any = (0.0, 0.0, -1.0)) -> SensorArray3D:
    """Sensors on a spherical cap centred on the origin, on a Fibonacci spiral.

    Parameters
    ----------
    n_sensors
        Number of sensors.
    radius
        Sphere radius in metres.
    half_angle
        Angle (rad) between the cap's axis and its rim, in ``(0, pi]``: ``pi / 2`` is a
        hemisphere, ``pi`` the whole sphere.
    axis
        Direction from the origin to the cap's pole (normalised). Default ``-z``: a bowl
        below the volume, looking up.

    Returns
    -------
    SensorArray3D
        Sensors facing the centre; each stands for an equal share of the cap's area
        ``2 pi R^2 (1 - cos(half_angle))``.

    Notes
    -----
    Sensor ``k`` sits at ``cos(theta_k) = 1 - (k + 1/2) (1 - cos(half_angle)) / N`` from the
    axis and at azimuth ``k`` times the golden angle: equal areas, no clustering at the pole.
    """
    n = _count(n_sensors, "n_sensors", MAX_SENSORS)
    radius = check_range(radius, "radius", 0.0, MAX_POSITION, unit="m")
    if radius == 0:
        raise InputError("radius must be > 0 metres, got 0")
    half_angle = check_range(half_angle, "half_angle", 0.0, math.pi, unit="rad")
    if half_angle == 0:
        raise InputError("half_angle must be > 0 radians, got 0")
    a = np.asarray(axis, dtype=np.float64).reshape(-1)
    if a.shape != (3,) or not np.all(np.isfinite(a)) or np.linalg.norm(a) == 0:
        raise InputError(f"axis must be a non-zero 3-vector, got {axis!r}")
    a = a / np.linalg.norm(a)
    k = np.arange(n, dtype=np.float64)
    span = 1.0 - math.cos(half_angle)
    cos_t = 1.0 - (k + 0.5) * span / n
    sin_t = np.sqrt(np.clip(1.0 - cos_t**2, 0.0, None))
    phi = k * _GOLDEN_ANGLE
    local = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)
    # an orthonormal frame (u, v, a)
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(a, helper)
    u /= np.linalg.norm(u)
    v = np.cross(a, u)
    pos = radius * (local[:, :1] * u + local[:, 1:2] * v + local[:, 2:] * a)
    areas = np.full(n, 2 * math.pi * radius**2 * span / n)
    return SensorArray3D(pos, -pos, areas)


def hemisphere_array(n_sensors: int, radius: float, *,
                     axis: Any = (0.0, 0.0, -1.0)) -> SensorArray3D:
    """Sensors on a hemisphere of ``radius`` (m) around the origin, facing its centre:
    :func:`spherical_cap_array` with a half-angle of ``pi / 2``.

    Examples
    --------
    >>> s = hemisphere_array(128, 0.02)
    >>> s.n_sensors, bool((s.positions[:, 2] < 0).all())
    (128, True)
    """
    return spherical_cap_array(n_sensors, radius, math.pi / 2, axis=axis)


def planar_array(n_x: int, n_y: int, pitch: float, z: float) -> SensorArray3D:
    """A rectangular grid of elements in the plane at height ``z`` (m), centred on the
    z axis, facing the plane ``z = 0`` (a planar or Fabry-Perot scanner).

    Parameters
    ----------
    n_x, n_y
        Elements along x and y.
    pitch
        Element spacing (m); each element stands for ``pitch^2`` of the plane.
    z
        Height of the plane (m), non-zero.

    Returns
    -------
    SensorArray3D
        Element ``iy * n_x + ix`` at ``x = (ix - (n_x-1)/2) pitch``,
        ``y = (iy - (n_y-1)/2) pitch``.
    """
    nx = _count(n_x, "n_x", MAX_SENSORS)
    ny = _count(n_y, "n_y", MAX_SENSORS)
    if nx * ny > MAX_SENSORS:
        raise InputError(f"{nx} x {ny} elements; at most {MAX_SENSORS} are accepted")
    pitch = check_range(pitch, "pitch", 0.0, MAX_POSITION, unit="m")
    if pitch == 0:
        raise InputError("pitch must be > 0 metres, got 0")
    z = check_range(z, "z", -MAX_POSITION, MAX_POSITION, unit="m")
    if z == 0:
        raise InputError("the plane's height z must be non-zero (it faces z = 0)")
    x = (np.arange(nx) - (nx - 1) / 2) * pitch
    y = (np.arange(ny) - (ny - 1) / 2) * pitch
    X, Y = np.meshgrid(x, y, indexing="xy")
    pos = np.stack([X.ravel(), Y.ravel(), np.full(X.size, z)], axis=1)
    normals = np.zeros_like(pos)
    normals[:, 2] = -math.copysign(1.0, z)
    return SensorArray3D(pos, normals, np.full(len(pos), pitch * pitch))

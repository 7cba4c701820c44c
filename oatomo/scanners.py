"""A family of 2-D scanners: the environments of the setup-invariant refiner.

A :class:`ScannerFamily` bounds what the shipped refiner was trained on (full rings and
arcs of at least 180 degrees, 32 to 512 sensors, radii 15 to 50 mm, speed-of-sound
mismatch up to 2 %, an image pitch the model can resample from); :meth:`ScannerFamily.
compatible` tells whether a scan lies inside, and exactly why not.

An :class:`Environment` is one *kind* of scanner: a geometry class (sparse rings, dense
rings, arcs) crossed with a perturbation kind (none, radial, angular, jitter, mixed; the
held-out kinds ``global`` -- a shift and rotation of the whole array -- and ``large`` --
position errors beyond the training range). :func:`draw_scan` draws one concrete scanner
of an environment from a seed: nominal and true sensor arrays, acquisition (sampling
window covering the field of view), noise level, band and the true speed of sound.

Every item is drawn on the canonical grid (``CANONICAL_PITCH`` = 0.1 mm) at a random
position inside the array: the arrays are shifted so that the image crop sits off centre
by up to 35 % of the radius, which is how a crop of a larger field of view looks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray, ring_array

__all__ = ["CANONICAL_PITCH", "FAMILY_KEY", "ScannerFamily", "GeometryKind", "PerturbationKind",
           "Environment", "ScanDraw", "draw_scan", "FAMILY", "GEOMETRIES", "PERTURBATIONS",
           "TRAIN_ENVIRONMENTS", "HELDOUT_PERTURBATIONS", "EVAL_GEOMETRIES", "environment",
           "array_shape", "line_shape", "LINE_TOLERANCE", "TV_ENVIRONMENTS", "FAMILY_TV"]

#: Pixel pitch of the refiner's training images (m).
CANONICAL_PITCH = 1e-4
#: Key of a family refiner's metadata inside a checkpoint's ``train`` record.
FAMILY_KEY = "oatomo_family_refiner"


@dataclass(frozen=True)
class ScannerFamily:
    """Bounds of the scanners a refiner was trained on (SI units).

    Parameters
    ----------
    sensors
        Smallest and largest number of sensors.
    radius
        Smallest and largest array radius (m).
    min_coverage
        Smallest angular coverage of the array (rad); a full ring covers 2 pi.
    pitch
        Smallest and largest image pixel pitch the refiner accepts (m); images are
        resampled to :data:`CANONICAL_PITCH`.
    speed_of_sound
        Range of nominal speeds of sound (m/s).
    ring_tolerance
        Largest relative spread of the sensors' distances to the centre that still counts
        as a ring or arc.
    linear
        Also accept linear arrays (sensors on a straight line, the image on one side of
        it); the radius and coverage bounds apply to rings and arcs only.
    """

    sensors: tuple[int, int] = (32, 512)
    radius: tuple[float, float] = (0.015, 0.050)
    min_coverage: float = math.pi
    pitch: tuple[float, float] = (0.025e-3, 0.4e-3)
    speed_of_sound: tuple[float, float] = (1400.0, 1650.0)
    ring_tolerance: float = 0.05
    linear: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (``linear`` only when true: older readers' form)."""
        out: dict[str, Any] = {"sensors": list(self.sensors), "radius": list(self.radius),
                               "min_coverage": self.min_coverage, "pitch": list(self.pitch),
                               "speed_of_sound": list(self.speed_of_sound),
                               "ring_tolerance": self.ring_tolerance}
        if self.linear:
            out["linear"] = True
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScannerFamily:
        """Inverse of :meth:`to_dict`."""
        return cls(sensors=tuple(int(v) for v in d["sensors"]),  # type: ignore[arg-type]
                   radius=tuple(float(v) for v in d["radius"]),  # type: ignore[arg-type]
                   min_coverage=float(d["min_coverage"]),
                   pitch=tuple(float(v) for v in d["pitch"]),  # type: ignore[arg-type]
                   speed_of_sound=tuple(float(v) for v in d["speed_of_sound"]),  # type: ignore[arg-type]
                   ring_tolerance=float(d["ring_tolerance"]),
                   linear=bool(d.get("linear", False)))

    def compatible(self, sensors: SensorArray, acquisition: Acquisition,
                   grid: Grid) -> tuple[bool, str]:
        """Whether a scan (its nominal sensors, acquisition, image grid) is in the family.

        Returns
        -------
        (bool, str)
            True and a summary, or False and the first reason the scan lies outside, with
            the measured value and the bound (e.g. ``"the array covers 120 degrees; the
            model was trained on rings and arcs of at least 180"``).
        """
        n = sensors.n_sensors
        if not (self.sensors[0] <= n <= self.sensors[1]):
            return False, (f"the scan has {n} sensors; the model was trained on "
                           f"{self.sensors[0]} to {self.sensors[1]}")
        if self.linear and line_shape(sensors)["spread"] <= LINE_TOLERANCE:
            return self._compatible_linear(sensors, acquisition, grid)
        shape = array_shape(sensors)
        r = shape["radius"]
        if shape["spread"] > self.ring_tolerance:
            return False, (f"the sensors are not on a ring or arc (their distances to the "
                           f"best-fitting circle's centre vary by "
                           f"{min(shape['spread'], 9.99) * 100:.0f} %, at most "
                           f"{self.ring_tolerance * 100:.0f} % allowed)")
        if not (self.radius[0] * 0.98 <= r <= self.radius[1] * 1.02):
            return False, (f"the array radius is {r * 1e3:.1f} mm; the model was trained on "
                           f"{self.radius[0] * 1e3:.0f} to {self.radius[1] * 1e3:.0f} mm")
        cov = shape["coverage"]
        if cov < self.min_coverage - 1e-6:
            return False, (f"the array covers {math.degrees(cov):.0f} degrees; the model was "
                           f"trained on rings and arcs of at least "
                           f"{math.degrees(self.min_coverage):.0f}")
        if why := self._pitch_problem(grid):
            return False, why
        if math.hypot(shape["cx"], shape["cy"]) + grid.fov / math.sqrt(2) >= r:
            return False, (f"the image (field of view {grid.fov * 1e3:.1f} mm) reaches past "
                           f"the array (radius {r * 1e3:.1f} mm)")
        if why := self._speed_problem(acquisition):
            return False, why
        kind = "ring" if cov > 2 * math.pi - 1e-6 else f"{math.degrees(cov):.0f}-degree arc"
        return True, (f"{n}-sensor {kind} of radius {r * 1e3:.1f} mm, pitch "
                      f"{grid.dx * 1e3:.3f} mm: inside the trained family")

    def _pitch_problem(self, grid: Grid) -> str:
        """Why the image pitch is outside the family ("" when inside)."""
        if self.pitch[0] <= grid.dx <= self.pitch[1]:
            return ""
        return (f"the image pitch is {grid.dx * 1e3:.3f} mm; the model accepts "
                f"{self.pitch[0] * 1e3:.3g} to {self.pitch[1] * 1e3:.3g} mm")

    def _speed_problem(self, acquisition: Acquisition) -> str:
        """Why the speed of sound is outside the family ("" when inside)."""
        c = acquisition.speed_of_sound
        if self.speed_of_sound[0] <= c <= self.speed_of_sound[1]:
            return ""
        return (f"the speed of sound is {c:.0f} m/s; the model was trained on "
                f"{self.speed_of_sound[0]:.0f} to {self.speed_of_sound[1]:.0f} m/s")

    def _compatible_linear(self, sensors: SensorArray, acquisition: Acquisition,
                           grid: Grid) -> tuple[bool, str]:
        """:meth:`compatible` for a linear array (the sensor count already checked)."""
        shape = line_shape(sensors)
        if why := self._pitch_problem(grid):
            return False, why
        if shape["distance"] - grid.fov / math.sqrt(2) <= 0:
            return False, (f"the image (field of view {grid.fov * 1e3:.1f} mm) reaches the "
                           f"line of the array ({shape['distance'] * 1e3:.1f} mm from the "
                           f"image centre)")
        if why := self._speed_problem(acquisition):
            return False, why
        return True, (f"{sensors.n_sensors}-sensor linear array ({shape['length'] * 1e3:.1f} "
                      f"mm long, {shape['distance'] * 1e3:.1f} mm from the image centre), "
                      f"pitch {grid.dx * 1e3:.3f} mm: inside the trained family")


#: Largest spread of the sensors across their best-fitting line, relative to the array's
#: length, that counts as a linear array.
LINE_TOLERANCE = 0.05


def line_shape(sensors: SensorArray) -> dict[str, float]:
    """Line fitted to the sensors (total least squares): ``length`` (m, extent along it),
    ``spread`` (largest distance across it over the length; ``inf`` for fewer than two
    sensors) and ``distance`` (m) from the origin (the image centre) to the line."""
    pos = np.asarray(sensors.positions, float)
    if len(pos) < 2:
        return {"length": 0.0, "spread": math.inf, "distance": 0.0}
    mean = pos.mean(0)
    _, _, vt = np.linalg.svd(pos - mean, full_matrices=False)
    along, across = (pos - mean) @ vt[0], (pos - mean) @ vt[1]
    length = float(along.max() - along.min())
    spread = float(np.abs(across).max() / length) if length > 0 else math.inf
    return {"length": length, "spread": spread, "distance": float(abs(mean @ vt[1]))}


def array_shape(sensors: SensorArray) -> dict[str, float]:
    """Circle fitted to the sensors: centre, radius, relative radial spread, coverage.

    The circle is the algebraic least-squares fit (Kasa); coverage is 2 pi minus the
    largest angular gap between neighbouring sensors seen from its centre, or exactly 2 pi
    for an evenly spaced full ring (largest gap < 1.5 typical gaps).
    """
    pos = sensors.positions
    if len(pos) < 3:
        r = float(np.median(np.hypot(pos[:, 0], pos[:, 1])))
        return {"radius": r, "spread": math.inf, "coverage": 0.0, "cx": 0.0, "cy": 0.0}
    A = np.column_stack([2 * pos, np.ones(len(pos))])
    sol = np.linalg.lstsq(A, (pos ** 2).sum(1), rcond=None)[0]
    cx, cy = float(sol[0]), float(sol[1])
    rel = pos - [cx, cy]
    d = np.hypot(rel[:, 0], rel[:, 1])
    r = float(np.median(d))
    spread = float(np.max(np.abs(d - r)) / r) if r > 0 else math.inf
    th = np.sort(np.mod(np.arctan2(rel[:, 1], rel[:, 0]), 2 * math.pi))
    gaps = np.diff(np.concatenate([th, th[:1] + 2 * math.pi]))
    largest, typical = float(gaps.max()), float(np.median(gaps))
    cov = 2 * math.pi if largest < 1.5 * typical else 2 * math.pi - largest
    return {"radius": r, "spread": spread, "coverage": cov, "cx": cx, "cy": cy}


#: The shipped family.
FAMILY = ScannerFamily()


@dataclass(frozen=True)
class GeometryKind:
    """A class of array geometries: ranges of sensor count, radius (m) and arc (rad).

    ``layout`` ``"linear"``: a straight array instead, ``radius`` the range of its
    distance to the image centre and ``pitch`` that of its element pitch (m).
    """

    name: str
    sensors: tuple[int, int]
    radius: tuple[float, float]
    arc: tuple[float, float] = (2 * math.pi, 2 * math.pi)
    layout: str = "ring"
    pitch: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class PerturbationKind:
    """A class of sensor-position errors; each draw picks its sizes in these ranges (m).

    ``tangential`` is along the array (converted to an angle by the radius); ``offset`` a
    random shift of the whole array per axis; ``rotation`` (rad) of the whole array.
    """

    name: str
    radial: tuple[float, float] = (0.0, 0.0)
    tangential: tuple[float, float] = (0.0, 0.0)
    jitter: tuple[float, float] = (0.0, 0.0)
    offset: tuple[float, float] = (0.0, 0.0)
    rotation: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Environment:
    """One training (or evaluation) environment: a geometry kind x a perturbation kind."""

    geometry: GeometryKind
    perturbation: PerturbationKind

    @property
    def name(self) -> str:
        return f"{self.geometry.name}/{self.perturbation.name}"


GEOMETRIES = {
    "ring-sparse": GeometryKind("ring-sparse", (32, 64), (0.015, 0.050)),
    "ring-dense": GeometryKind("ring-dense", (65, 512), (0.015, 0.050)),
    "arc": GeometryKind("arc", (32, 512), (0.015, 0.050), (math.pi, 1.75 * math.pi)),
    # limited view (the TV refiner's family)
    "arc-short": GeometryKind("arc-short", (32, 256), (0.015, 0.050),
                              (0.5 * math.pi, math.pi)),
    "linear": GeometryKind("linear", (64, 256), (0.008, 0.020), layout="linear",
                           pitch=(0.1e-3, 0.3e-3)),
}

_MM = 1e-3
PERTURBATIONS = {
    "none": PerturbationKind("none"),
    "radial": PerturbationKind("radial", radial=(0.05 * _MM, 0.3 * _MM)),
    "angular": PerturbationKind("angular", tangential=(0.05 * _MM, 0.4 * _MM)),
    "jitter": PerturbationKind("jitter", jitter=(0.05 * _MM, 0.25 * _MM)),
    "mixed": PerturbationKind("mixed", radial=(0.03 * _MM, 0.15 * _MM),
                              tangential=(0.03 * _MM, 0.15 * _MM),
                              jitter=(0.03 * _MM, 0.15 * _MM)),
    # held out: kinds never seen in training
    "global": PerturbationKind("global", jitter=(0.03 * _MM, 0.06 * _MM),
                               offset=(0.1 * _MM, 0.3 * _MM),
                               rotation=(math.radians(0.3), math.radians(1.5))),
    "large": PerturbationKind("large", radial=(0.3 * _MM, 0.45 * _MM),
                              jitter=(0.15 * _MM, 0.25 * _MM)),
}

#: Perturbation kinds kept out of training.
HELDOUT_PERTURBATIONS = ("global", "large")

#: The training environments, in the order of the model's variant decoders.
TRAIN_ENVIRONMENTS = tuple(Environment(GEOMETRIES[g], PERTURBATIONS[p])
                           for g in ("ring-sparse", "ring-dense", "arc")
                           for p in ("none", "radial", "angular", "jitter", "mixed"))

#: The training environments of the TV refiner (rings, arcs of 90 to 360 degrees and
#: linear arrays, with correct and with slightly wrong positions).
TV_ENVIRONMENTS = tuple(f"{g}/{p}" for g in ("ring-sparse", "ring-dense", "arc", "arc-short",
                                             "linear")
                        for p in ("none", "mixed"))

#: The scanners of the TV refiner: rings, arcs of at least 90 degrees, linear arrays.
FAMILY_TV = ScannerFamily(min_coverage=0.5 * math.pi, linear=True)

#: Fixed geometries of the evaluation (each a single point of its geometry kind).
EVAL_GEOMETRIES = {
    "ring32-r22.5": GeometryKind("ring32-r22.5", (32, 32), (0.0225, 0.0225)),
    "ring128-r40": GeometryKind("ring128-r40", (128, 128), (0.040, 0.040)),
    "arc270-r30": GeometryKind("arc270-r30", (128, 128), (0.030, 0.030),
                               (1.5 * math.pi, 1.5 * math.pi)),
}


def environment(name: str) -> Environment:
    """An environment by ``"<geometry>/<perturbation>"`` (training or evaluation names)."""
    geo, _, pert = name.partition("/")
    kinds = {**GEOMETRIES, **EVAL_GEOMETRIES}
    if geo not in kinds or pert not in PERTURBATIONS:
        raise InputError(f"unknown environment {name!r}: geometry one of {sorted(kinds)}, "
                         f"perturbation one of {sorted(PERTURBATIONS)}")
    return Environment(kinds[geo], PERTURBATIONS[pert])


@dataclass(frozen=True, eq=False)
class ScanDraw:
    """One concrete scanner of an environment.

    ``nominal`` and ``true`` are in the coordinates of the image crop (the crop centre is
    the origin); ``acquisition`` carries the *nominal* speed of sound, ``true_speed`` the one
    the simulation uses.
    """

    nominal: SensorArray
    true: SensorArray
    acquisition: Acquisition
    true_speed: float
    noise: float
    band: tuple[float, float]
    info: dict[str, float]


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    if hi <= 0:
        return 0.0
    lo = max(lo, hi * 1e-3)
    return float(np.exp(rng.uniform(math.log(lo), math.log(hi))))


def draw_scan(env: Environment, grid: Grid, seed: int, *,
              family: ScannerFamily = FAMILY) -> ScanDraw:
    """Draw one scanner of an environment for an image on ``grid`` (seeded).

    Draws, in this order from ``numpy.random.default_rng(seed)``: sensor count, radius,
    arc and start angle; crop offset inside the array; perturbation sizes and the
    per-sensor errors; sampling rate, band, noise level and speed-of-sound mismatch.
    """
    rng = np.random.default_rng(seed)
    geo, pert = env.geometry, env.perturbation
    if geo.layout == "linear":
        return _finish_draw(rng, *_draw_linear(geo, pert, grid, rng), grid, family)
    n = int(rng.integers(geo.sensors[0], geo.sensors[1] + 1))
    radius = float(rng.uniform(*geo.radius))
    arc = float(rng.uniform(*geo.arc))
    start = float(rng.uniform(0, 2 * math.pi))
    nominal = ring_array(n, radius, arc, start)
    # the crop sits anywhere inside 35 % of the radius (but fully inside the array)
    half_diag = grid.fov / math.sqrt(2)
    max_off = max(0.0, min(0.35 * radius, radius - half_diag - 2e-3))
    rho, phi = max_off * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
    centre = np.array([rho * math.cos(phi), rho * math.sin(phi)])
    sizes = {k: _loguniform(rng, *getattr(pert, k))
             for k in ("radial", "tangential", "jitter", "offset", "rotation")}
    true = nominal.perturbed(radial_std=sizes["radial"],
                             angular_std=sizes["tangential"] / radius,
                             jitter_std=sizes["jitter"],
                             offset=tuple(rng.standard_normal(2) * sizes["offset"]),
                             rotation=float(rng.standard_normal() * sizes["rotation"]),
                             seed=rng)
    nominal = SensorArray(nominal.positions - centre, nominal.normals)
    true = SensorArray(true.positions - centre, true.normals)
    info = {"n_sensors": n, "radius": radius, "arc": arc, "offset_x": float(centre[0]),
            "offset_y": float(centre[1]), **sizes}
    return _finish_draw(rng, nominal, true, info, grid, family)


def _draw_linear(geo: GeometryKind, pert: PerturbationKind, grid: Grid,
                 rng: np.random.Generator) -> tuple[SensorArray, SensorArray, dict[str, Any]]:
    """Nominal and true positions of a linear array (any side of the image, shifted
    along itself by up to a quarter of its length): ``radial`` errors are across the
    array, ``tangential`` along it, then isotropic jitter."""
    n = int(rng.integers(geo.sensors[0], geo.sensors[1] + 1))
    distance = float(rng.uniform(*geo.radius))
    distance = max(distance, grid.fov / math.sqrt(2) + 1e-3)
    pitch = float(rng.uniform(*geo.pitch))
    angle = float(rng.uniform(0, 2 * math.pi))
    shift = float(rng.uniform(-0.25, 0.25)) * n * pitch
    sizes = {k: _loguniform(rng, *getattr(pert, k))
             for k in ("radial", "tangential", "jitter", "offset", "rotation")}
    along = (np.arange(n) - (n - 1) / 2) * pitch + shift
    local = np.stack([along, np.full(n, -distance)], axis=1)
    err = np.stack([rng.standard_normal(n) * sizes["tangential"],
                    rng.standard_normal(n) * sizes["radial"]], axis=1) \
        + rng.standard_normal((n, 2)) * sizes["jitter"]
    cos, sin = math.cos(angle), math.sin(angle)
    rot = np.array([[cos, -sin], [sin, cos]])
    normals = np.tile(rot @ [0.0, 1.0], (n, 1))
    nominal = SensorArray(local @ rot.T, normals)
    true = SensorArray((local + err) @ rot.T, normals)
    info = {"n_sensors": n, "radius": distance, "arc": 0.0, "offset_x": shift,
            "offset_y": 0.0, "pitch": pitch, "angle": angle, **sizes}
    return nominal, true, info


def _finish_draw(rng: np.random.Generator, nominal: SensorArray, true: SensorArray,
                 info: dict[str, Any], grid: Grid, family: ScannerFamily) -> ScanDraw:
    """The acquisition, band, noise and speeds of a drawn array (the draw's last part)."""
    half_diag = grid.fov / math.sqrt(2)
    fs = float(rng.choice([20e6, 40e6, 50e6]))
    high = float(rng.uniform(3e6, min(12e6, 0.45 * fs)))
    low = float(rng.uniform(0.0, 0.5e6))
    noise = _loguniform(rng, 1e-3, 2e-2)
    c = float(np.clip(1500.0, *family.speed_of_sound))
    mismatch = float(rng.uniform(-0.02, 0.02))
    true_c = c * (1 + mismatch)
    # sampling window: every pixel at every true or nominal sensor, for both speeds
    d = np.hypot(*np.concatenate([nominal.positions, true.positions]).T)
    d_min, d_max = float(d.min()) - half_diag - 1e-3, float(d.max()) + half_diag + 1e-3
    c_lo, c_hi = min(c, true_c), max(c, true_c)
    t0 = max(0.0, math.floor(d_min / c_hi * fs) / fs)
    n_samples = int(math.ceil((d_max / c_lo - t0) * fs / 64.0) * 64)
    acq = Acquisition(fs=fs, n_samples=n_samples, speed_of_sound=c, t0=t0)
    info = {**info, "fs": fs, "band_low": low, "band_high": high, "noise": noise,
            "speed_mismatch": mismatch}
    return ScanDraw(nominal, true, acq, true_c, noise, (low, high), info)

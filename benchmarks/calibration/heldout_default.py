"""The default self-calibration of ``oatomo reconstruct`` on held-out setups and phantom
kinds, without the inverse crime: a baseline for later work on the calibration method.

Protocol
--------
Data. The truth ``p0`` is drawn on a grid 2x finer than the image grid (256 x 256 at
0.05 mm, the same 12.8 mm field of view) and the scan is simulated there with oatomo's own
forward model (:func:`oatomo.forward.simulate`, slab thickness the image pitch) at the TRUE
sensor positions and the TRUE speed of sound, with a Gaussian detector band
(:class:`oatomo.response.DetectorResponse`: centre ``4 MHz x 0.1 mm / pitch`` = 4 MHz, 120 %
fractional bandwidth, i.e. half maximum at 1.6-6.4 MHz and 29 % left at 0 Hz: the band the
image grid can carry, up to its Nyquist frequency c / (2 dx) = 7.5 MHz, well below the fine
grid's 15 MHz; a 5 MHz, 80 % band left TV with the true geometry at 14-17 dB on thick
vessels, disks and textures, too blurred for position errors to show) and white noise of
1-2 % (drawn) of the largest clean sample, sampled at 40 MHz. The file (the
:class:`oatomo.Scan` handed to the pipeline) holds the NOMINAL positions and the file's
speed of sound, the true one times ``1 + U(-2 %, 2 %)`` (true ``c`` drawn from
U(1480, 1560) m/s), and the detector response (self-calibration models it; the default's
final TV too since ``model_response="auto"``; ``--model-response off`` leaves it out of
the final TVs as before, the protocol of ``heldout_joint_v3.json``). The
truth used for scoring is the fine ``p0`` block-averaged (2 x 2) onto the image grid and
normalised to maximum 1.

Per scan, on the image grid (128 x 128 at 0.1 mm for every geometry; every array lies
outside the field of view's circumscribed circle or, for the linear array, below it):

* ``TV file``: ``oatomo.reconstruct(scan, "mb-tv", calibrate=False, refine=False)`` with
  the file's positions and ``c`` (the default's TV: the response in the operator, 100
  iterations; with ``--model-response off``: without it, ``iters=50``);
* ``default``: ``oatomo.reconstruct(scan, grid=grid)``, everything at its default
  (position check, self-calibration when the check asks for it and then ``mb-tv``;
  otherwise the default method, TV, refined only when asked),
  timed;
* ``TV true``: as ``TV file`` on a scan holding the true positions and ``c``.

Both TV calls are timed; the faster is the TV50 time of the ratios (the machine is
shared), except on a correct file, where the second call reuses the first's geometry
(cached operator) and the first is taken. With the response in the operator the TV50 time
is the faster of two extra 50-iteration TVs of the file's scan (the same operator).

Each image gets its best affine fit to the truth, then PSNR (data range 1): ``raw``; and
``reg``, after the best rigid registration of the image to the truth (rotation about the
image centre + 2-D shift, cubic-spline resampling, Powell from zero and two restarts; the
objective is the mean squared error after the affine fit), because a rigid motion of the
whole array moves the image and no data can see it. Also: the rms sensor-position error
after the best rigid alignment to the truth (:func:`oatomo.calibration.rigid_error`) of
the file and of the positions the default reconstructed with (the calibrated ones when it
calibrated: the provenance keeps the calibrated ``c`` but not the positions, so
:func:`oatomo.calibrate` is run again on the same scan and grid, deterministic, and not
counted in the default's time; the JSON records that its ``c`` equals the provenance's);
the relative error of the default's ``c``, raw and with the scale gauge removed (the
calibrated array scaled onto the truth by its least-squares similarity transform, that
scale applied to ``c``, as ``bench_calibration.py``); the default's time and the
position check's time over the TV50 time (all three calls of a scan start with cold
operator caches: each has its own geometry and ``c``); and whether the check asked for
calibration.

False alarms. Per geometry, scans whose file is CORRECT (true positions and ``c`` in the
file; phantom kinds in rotation): whether the check asks for calibration, and the
default's PSNR against TV with the true geometry (which is the file's here).

Geometries (held out: no setup, scanner family evaluation geometry or calibration
benchmark/tuning scan of the repository has these count/radius pairs; the calibration's
constants were tuned on 32/64-sensor rings of 22.5/30 mm and a 48-sensor 270 deg arc of 25
mm; the refiner's training families draw counts and radii from ranges that cover the rings
and the 270 deg arc): rings of 32 (r 21 mm), 64 (r 28 mm), 128 (r 38 mm) and 256 (r 45 mm)
sensors, an 80-sensor 270 deg arc (r 24 mm), a 64-sensor 120 deg arc (r 26 mm), both
centred below the image, and a linear array of 128 point elements at 0.2 mm pitch, 10 mm
below the image centre, facing it. Per-sensor errors drawn per scan: rings and arcs radial
sigma U(0.20, 0.25) mm and angular sigma U(0.40, 0.50) deg; the linear array sigma 0.1 mm
along and across; all plus isotropic jitter sigma U(0.03, 0.05) mm. No global motion
beyond the rigid part of these errors.

Phantom kinds (the calibration was tuned on retina crops, ``vessel-tree``, ``disks`` and
``blobs`` at other seeds; ``disks`` and vessel trees are also refiner training kinds, the
textures and points are not): ``vessels-thin`` (a vessel tree with root width 0.2 mm,
branches down to 0.06 mm, depth 6), ``vessels-thick`` (root 0.6 mm, depth 4), ``disks``
(:func:`oatomo.phantoms.disks`), ``texture`` (``texture-heldout``: crops of scikit-image's
coins, moon, horse) and ``points`` (6-12 isotropic Gaussian blobs of sigma 0.05-0.12 mm,
built here).

Seeds 1000 and up; each case draws everything from ``default_rng([seed, crc32(geometry),
crc32(phantom), correct file])``. No constant of this benchmark or of the method was
tuned on them.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/heldout_default.py \\
        --out benchmarks/calibration/heldout_default.json
    .venv/bin/python benchmarks/calibration/heldout_default.py \\
        --out benchmarks/calibration/heldout_default.json --table

``--quick``: 2 geometries x 2 phantoms; ``--geometries``, ``--phantoms`` (comma lists);
``--seeds N`` (seeds 1000 ... 1000 + N - 1); ``--out`` resumes (finished cases are kept
and skipped); ``--table`` prints the markdown tables from the JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage, optimize

import oatomo
from oatomo.calibration import rigid_error, similarity_transform
from oatomo.evaluation.metrics import affine_fit, psnr
from oatomo.forward import simulate
from oatomo.geometry import Acquisition, Grid, SensorArray, ring_array
from oatomo.io import Scan
from oatomo.phantoms import _segment_distance, disks, make, vessel_tree
from oatomo.response import DetectorResponse

ROOT = Path(__file__).resolve().parents[2]
DEG = math.pi / 180
MM = 1e-3

#: Image grid (every geometry) and the simulation's 2x finer grid over the same field.
N_IMAGE, FOV = 128, 12.8 * MM
FS = 40e6
#: Gaussian detector band: centre at this frequency for a 0.1 mm pitch (scaled by
#: 0.1 mm / pitch), fractional bandwidth (FWHM / centre).
BAND_CENTRE_AT_01MM, BANDWIDTH = 4e6, 1.2
NOISE = (0.01, 0.02)
C_TRUE = (1480.0, 1560.0)
C_FILE_REL = 0.02
RADIAL, ANGULAR_DEG, JITTER = (0.20 * MM, 0.25 * MM), (0.40, 0.50), (0.03 * MM, 0.05 * MM)
LINEAR_STD = 0.1 * MM
TV_ITERS = 50
FIRST_SEED = 1000


@dataclass(frozen=True)
class Geometry:
    """A nominal array: ``kind`` ring (also arcs) or linear."""

    kind: str
    n: int
    radius: float = 0.0
    arc: float = 2 * math.pi
    pitch: float = 0.0

    def nominal(self) -> SensorArray:
        """The nominal (file) positions."""
        if self.kind == "linear":
            x = (np.arange(self.n) - (self.n - 1) / 2) * self.pitch
            pos = np.stack([x, np.full(self.n, -self.radius)], axis=1)
            return SensorArray(pos, np.tile([0.0, 1.0], (self.n, 1)))
        start = 0.0 if self.arc >= 2 * math.pi else -math.pi / 2 - self.arc / 2
        return ring_array(self.n, self.radius, self.arc, start)

    def perturbed(self, nominal: SensorArray, rng: np.random.Generator
                  ) -> tuple[SensorArray, dict[str, float]]:
        """True positions of one scan and the drawn error sizes (m, rad)."""
        jitter = float(rng.uniform(*JITTER))
        if self.kind == "linear":
            d = rng.standard_normal((self.n, 2)) * LINEAR_STD \
                + rng.standard_normal((self.n, 2)) * jitter
            return (SensorArray(nominal.positions + d, nominal.normals),
                    {"along_across_m": LINEAR_STD, "jitter_m": jitter})
        radial = float(rng.uniform(*RADIAL))
        angular = float(rng.uniform(*ANGULAR_DEG)) * DEG
        true = nominal.perturbed(radial_std=radial, angular_std=angular, jitter_std=jitter,
                                 seed=rng)
        return true, {"radial_m": radial, "angular_rad": angular, "jitter_m": jitter}


GEOMETRIES = {
    "ring32": Geometry("ring", 32, 21 * MM),
    "ring64": Geometry("ring", 64, 28 * MM),
    "ring128": Geometry("ring", 128, 38 * MM),
    "ring256": Geometry("ring", 256, 45 * MM),
    "arc270": Geometry("ring", 80, 24 * MM, 270 * DEG),
    "arc120": Geometry("ring", 64, 26 * MM, 120 * DEG),
    "linear128": Geometry("linear", 128, 10 * MM, pitch=0.2 * MM),
}

PHANTOMS = ("vessels-thin", "vessels-thick", "disks", "texture", "points")

#: The fresh set (``--fresh``): arrays of counts and radii no other benchmark or tuning set
#: of the repository names (a 40-, 96- and 192-sensor ring, a 240 and a 135 deg arc, a
#: 160-element linear array at 0.15 mm pitch; the refiner's training family draws counts and
#: radii at random from ranges that cover them), the same perturbation model.
FRESH_GEOMETRIES = {
    "ring40": Geometry("ring", 40, 23 * MM),
    "ring96": Geometry("ring", 96, 33 * MM),
    "ring192": Geometry("ring", 192, 41 * MM),
    "arc240": Geometry("ring", 90, 27 * MM, 240 * DEG),
    "arc135": Geometry("ring", 60, 24 * MM, 135 * DEG),
    "linear160": Geometry("linear", 160, 11 * MM, pitch=0.15 * MM),
}
#: Phantom kinds of the fresh set: thin vessel trees, and two kinds built here that no
#: training, tuning or report set has (hollow vessel cross-sections; short thin capillary
#: segments), and the held-out textures.
FRESH_PHANTOMS = ("vessels-thin", "annuli", "capillaries", "texture")
FRESH_SEED = 1500
_ALL_GEOMETRIES = {**GEOMETRIES, **FRESH_GEOMETRIES}
_ALL_PHANTOMS = tuple(dict.fromkeys(PHANTOMS + FRESH_PHANTOMS))
QUICK = (("ring32", "arc120"), ("vessels-thin", "disks"))


def points(grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """6-12 isotropic Gaussian blobs of sigma 0.05-0.12 mm and value 0.5-1, max 1."""
    X, Y = grid.coordinates()
    img = np.zeros(grid.shape)
    half = grid.fov / 2
    for _ in range(int(rng.integers(6, 13))):
        cx, cy = rng.uniform(-0.8 * half, 0.8 * half, size=2)
        s = rng.uniform(0.05, 0.12) * MM
        img += rng.uniform(0.5, 1.0) * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * s * s))
    return (img / img.max()).astype(np.float32)


def annuli(grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """3-7 hollow rings (vessel cross-sections): outer radius 0.3-1.5 mm, wall 0.08-0.3 mm,
    value 0.4-1, anti-aliased over the pixel; max 1."""
    X, Y = grid.coordinates()
    img = np.zeros(grid.shape)
    half = grid.fov / 2
    for _ in range(int(rng.integers(3, 8))):
        r_out = rng.uniform(0.3, 1.5) * MM
        wall = min(rng.uniform(0.08, 0.3) * MM, 0.6 * r_out)
        cx, cy = rng.uniform(-0.8 * half + r_out, 0.8 * half - r_out, size=2)
        d = np.hypot(X - cx, Y - cy)
        inside = np.clip((r_out - d) / grid.dx + 0.5, 0, 1)
        hole = np.clip((r_out - wall - d) / grid.dx + 0.5, 0, 1)
        img = np.maximum(img, rng.uniform(0.4, 1.0) * (inside - hole))
    return (img / img.max()).astype(np.float32)


def capillaries(grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """20-40 short thin curved segments (capillaries): length 1-3 mm, width (Gaussian
    sigma) 0.03-0.06 mm, value 0.3-1; max 1."""
    X, Y = grid.coordinates()
    img = np.zeros(grid.shape)
    half = grid.fov / 2
    for _ in range(int(rng.integers(20, 41))):
        n = 12
        length = rng.uniform(1.0, 3.0) * MM
        heading = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, 0.15, n))
        steps = length / n * np.stack([np.cos(heading), np.sin(heading)], axis=1)
        pts = rng.uniform(-0.8 * half, 0.8 * half, size=2) + np.cumsum(steps, axis=0)
        s = rng.uniform(0.03, 0.06) * MM
        d = np.full(grid.shape, np.inf)
        for p, q in zip(pts[:-1], pts[1:], strict=True):
            d = np.minimum(d, _segment_distance(X, Y, p, q))
        img = np.maximum(img, rng.uniform(0.3, 1.0) * np.exp(-d ** 2 / (2 * s * s)))
    return (img / img.max()).astype(np.float32)


def phantom(kind: str, grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """A phantom of one of :data:`PHANTOMS` on ``grid`` (the fine grid), max 1."""
    seed = int(rng.integers(2**31))
    if kind == "vessels-thin":
        return vessel_tree(grid, seed, depth=6, width=0.2 * MM)
    if kind == "vessels-thick":
        return vessel_tree(grid, seed, depth=4, width=0.6 * MM)
    if kind == "disks":
        return disks(grid, seed)
    if kind == "texture":
        return make("texture-heldout", grid, seed)
    if kind == "points":
        return points(grid, rng)
    if kind == "annuli":
        return annuli(grid, rng)
    if kind == "capillaries":
        return capillaries(grid, rng)
    raise ValueError(f"unknown phantom kind {kind!r}; choose from {', '.join(_ALL_PHANTOMS)}")


def block_mean(img: np.ndarray, k: int = 2) -> np.ndarray:
    """``img`` averaged over k x k blocks."""
    n = img.shape[0] // k
    return img.reshape(n, k, n, k).mean(axis=(1, 3))


def acquisition_for(arrays: list[SensorArray], grid: Grid, speeds: list[float]
                    ) -> Acquisition:
    """40 MHz sampling whose window holds every pixel at every given array and speed."""
    half_diag = grid.fov / math.sqrt(2)
    d = np.hypot(*np.concatenate([a.positions for a in arrays]).T)
    d_min, d_max = float(d.min()) - half_diag - MM, float(d.max()) + half_diag + MM
    t0 = max(0.0, math.floor(d_min / max(speeds) * FS) / FS)
    n_t = int(math.ceil((d_max / min(speeds) - t0) * FS / 64.0) * 64)
    return Acquisition(FS, n_t, speed_of_sound=1500.0, t0=t0)


# --- scoring -------------------------------------------------------------------------


def score(img: np.ndarray, truth: np.ndarray) -> float:
    """PSNR (dB, data range 1) of the best affine fit of ``img`` to ``truth``."""
    fit = affine_fit(img[None], truth[None])[0]
    return float(psnr(fit, truth, data_range=1.0))


def _moved(img: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``img`` rotated by ``p[0]`` degrees about its centre and shifted by ``p[1:]`` pixels."""
    th = p[0] * DEG
    R = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    c = (np.asarray(img.shape, float) - 1) / 2
    # output[o] = input[R^T (o - c - s) + c]
    return ndimage.affine_transform(img, R.T, offset=c - R.T @ (c + p[1:]), order=3,
                                    mode="constant", cval=0.0)


_STARTS = (np.zeros(3), np.array([0.8, 0.7, -0.7]), np.array([-0.8, -0.7, 0.7]))
_BOUNDS = [(-3.0, 3.0), (-4.0, 4.0), (-4.0, 4.0)]


def register(img: np.ndarray, truth: np.ndarray) -> tuple[float, list[float]]:
    """PSNR after the best rigid registration of ``img`` to ``truth`` (then the affine fit),
    and the motion (degrees, pixels along rows and columns)."""
    img = np.asarray(img, np.float64)
    t = np.asarray(truth, np.float64)

    def misfit(p: np.ndarray) -> float:
        fit = affine_fit(_moved(img, p)[None], t[None])[0]
        return float(np.mean((fit - t) ** 2))

    best = None
    for x0 in _STARTS:
        r = optimize.minimize(misfit, x0, method="Powell", bounds=_BOUNDS,
                              options={"xtol": 1e-3, "ftol": 1e-7})
        if best is None or r.fun < best.fun:
            best = r
    assert best is not None
    if misfit(np.zeros(3)) <= best.fun:
        return score(img, t), [0.0, 0.0, 0.0]
    return score(_moved(img, best.x), t), [float(v) for v in best.x]


def rms_um(est: SensorArray, true: SensorArray) -> float:
    """Rms position error (um) after the best rigid alignment onto the truth."""
    return float(np.sqrt(np.mean(rigid_error(est, true) ** 2))) * 1e6


# --- one case ------------------------------------------------------------------------


#: ``"auto"``: the pipeline's default for a file that carries its detector response (the
#: response in the operator of the default's final TV and of the TV references, with the
#: default's iterations); False: the protocol before that default (the response left out
#: of every final TV, 50 iterations), which reproduces ``heldout_joint_v3.json``. Set by
#: ``--model-response``.
MODEL_RESPONSE: bool | str = "auto"


def _tv(scan: Scan, grid: Grid, iters: int | None = None) -> tuple[np.ndarray, float]:
    """TV with the file's geometry: the default's TV (``iters`` None) or ``iters``."""
    if MODEL_RESPONSE is False and iters is None:
        iters = TV_ITERS
    t = time.perf_counter()
    rec = oatomo.reconstruct(scan, "mb-tv", grid=grid, calibrate=False, refine=False,
                             iters=iters, model_response=MODEL_RESPONSE)
    return np.asarray(rec.image, np.float64), time.perf_counter() - t


@dataclass(frozen=True)
class Case:
    """One simulated scan of the benchmark and what scoring needs."""

    grid: Grid
    truth: np.ndarray  # fine p0 block-averaged onto the image grid, max 1
    nominal: SensorArray
    true: SensorArray
    c_true: float
    c_file: float
    noise: float
    sizes: dict[str, float]
    scan: Scan  # what the file says (nominal positions, file's c)
    scan_true: Scan  # the same records with the true positions and c


def make_case(geometry: str, kind: str, seed: int, correct: bool = False,
              noise_scale: float = 1.0, image_grid: bool = False) -> Case:
    """The scan of (geometry, kind, seed) as this benchmark draws it (see the module);
    ``noise_scale`` multiplies the drawn noise level (the same draws otherwise);
    ``image_grid``: the records simulated from the phantom block-averaged onto the image
    grid, by the reconstruction's own model (an inverse crime: diagnostics only)."""
    # looked up at the call: other benchmarks add their arrays to GEOMETRIES
    geo = {**GEOMETRIES, **FRESH_GEOMETRIES}[geometry]
    rng = np.random.default_rng([seed, zlib.crc32(geometry.encode()),
                                 zlib.crc32(kind.encode()), int(correct)])
    grid = Grid(N_IMAGE, FOV)
    fine = Grid(2 * N_IMAGE, FOV)
    p0_fine = phantom(kind, fine, rng)
    truth = block_mean(p0_fine.astype(np.float64))
    truth /= truth.max()
    nominal = geo.nominal()
    true, sizes = geo.perturbed(nominal, rng)
    c_true = float(rng.uniform(*C_TRUE))
    c_file = c_true * (1 + float(rng.uniform(-C_FILE_REL, C_FILE_REL)))
    noise = float(rng.uniform(*NOISE))
    if correct:
        nominal, c_file = true, c_true
    acq = acquisition_for([nominal, true], grid, [c_true, c_file])
    acq_true, acq_file = (replace(acq, speed_of_sound=c) for c in (c_true, c_file))
    response = DetectorResponse(centre_frequency=BAND_CENTRE_AT_01MM * 0.1 * MM / grid.dx,
                                bandwidth=BANDWIDTH)
    noise *= noise_scale
    if image_grid:
        p0_fine, fine = block_mean(p0_fine.astype(np.float64)).astype(np.float32), grid
    y = simulate(p0_fine, fine, true, acq_true, thickness=grid.dx, noise_std=noise,
                 response=response, seed=int(rng.integers(2**63)))
    return Case(grid, truth, nominal, true, c_true, c_file, noise, sizes,
                Scan(y, nominal, acq_file, response=response),
                Scan(y, true, acq_true, response=response))


def run_case(geometry: str, kind: str, seed: int, correct: bool = False) -> dict[str, Any]:
    """Simulate one scan and reconstruct it three ways; the metrics (see the module)."""
    case = make_case(geometry, kind, seed, correct)
    grid, truth, nominal, true = case.grid, case.truth, case.nominal, case.true
    c_true, c_file, noise, sizes = case.c_true, case.c_file, case.noise, case.sizes
    scan, scan_true = case.scan, case.scan_true
    acq = scan.acquisition

    row: dict[str, Any] = {"geometry": geometry, "phantom": kind, "seed": seed,
                           "correct_file": correct, "c_true": c_true, "c_file": c_file,
                           "noise": noise, "n_samples": acq.n_samples, **sizes}
    # the default first: every call below starts with cold operator caches (own geometry)
    t = time.perf_counter()
    rec = oatomo.reconstruct(scan, grid=grid, model_response=MODEL_RESPONSE)
    row["t_default"] = time.perf_counter() - t
    row["model_response"] = MODEL_RESPONSE
    x_default = np.asarray(rec.image, np.float64)
    prov = rec.provenance
    check = dict(prov.get("position_check") or {})
    row["check"] = {k: check.get(k) for k in ("spread_m", "offset_m", "noise_m",
                                              "threshold_m", "correlation", "reason")}
    row["check_asked"] = bool(check.get("needs_calibration"))
    row["calibrated"] = prov.get("calibration") is not None
    row["default_method"] = prov["method"]
    row["default_refined"] = rec.refined
    row["t_check"] = float(prov["timings"].get("check", math.nan))
    row["c_default"] = float(prov["speed_of_sound"])
    x_file, row["t_tv"] = _tv(scan, grid)
    x_true, row["t_tv_true"] = _tv(scan_true, grid)

    images = [("tv_file", x_file), ("default", x_default), ("tv_true", x_true)]
    if rec.refined:  # the physics image the default refined (calibrated TV, or TV)
        images.append(("default_physics", np.asarray(rec.images[prov["method"]], np.float64)))
    for name, x in images:
        row[f"psnr_{name}"] = score(x, truth)
        row[f"psnr_{name}_reg"], row[f"motion_{name}"] = register(x, truth)

    row["pos_err_file_um"] = rms_um(nominal, true)
    sensors = nominal
    if row["calibrated"]:
        cal = oatomo.calibrate(scan, grid)  # the provenance has no positions: again
        sensors = cal.sensors
        row["cal_c_matches_default"] = bool(abs(cal.speed_of_sound - row["c_default"])
                                            <= 1e-6 * row["c_default"])
    row["pos_err_default_um"] = rms_um(sensors, true)
    scale = similarity_transform(sensors.positions, true.positions, scale=True)[0]
    row["c_err_file_pct"] = 100 * (c_file / c_true - 1)
    row["c_err_default_pct"] = 100 * (row["c_default"] / c_true - 1)
    row["c_err_default_gauge_pct"] = 100 * (scale * row["c_default"] / c_true - 1)
    # one TV50: the faster of the two cold TV calls of the same size (machine load); on a
    # correct file the second call reuses the first's cached operator
    row["t_tv50"] = row["t_tv"] if correct else min(row["t_tv"], row["t_tv_true"])
    if MODEL_RESPONSE is not False:  # the references ran the default's iterations
        row["t_tv50"] = min(_tv(scan, grid, TV_ITERS)[1], _tv(scan, grid, TV_ITERS)[1])
    row["time_ratio"] = row["t_default"] / row["t_tv50"]
    row["check_ratio"] = row["t_check"] / row["t_tv50"]
    return row


def region_of_interest(grid: Grid, truth: np.ndarray, scale: float
                       ) -> tuple[Grid, np.ndarray]:
    """A centred region of interest of ``scale`` times ``grid``'s field of view (the same
    pitch, a multiple of 4 pixels per side) and ``truth`` cropped to it."""
    n = 4 * round(scale * grid.n / 4)
    c0 = (grid.n - n) // 2
    return Grid(n, n * grid.dx), truth[c0:c0 + n, c0:c0 + n]


def enable_reseat() -> None:
    """Make every calibration of this process end with the held-out re-seat
    (``oatomo.calibrate(..., reseat=True)``), the pipeline's included: the benchmarks'
    ``--reseat``."""
    import functools

    from oatomo.calibration import estimate

    estimate.calibrate_sinogram = functools.partial(estimate.calibrate_sinogram, reseat=True)


def finest_joint_steps(count: int) -> None:
    """Make every calibration of this process take ``count`` joint Gauss-Newton steps after
    the finest level where the default takes :data:`oatomo.calibration.joint.JOINT_STEPS`
    (the coarse step before it unchanged): the benchmark's ``--finest-joint-steps``."""
    from oatomo.calibration import estimate

    estimate.JOINT_STEPS = count


def warm_up() -> None:
    """Compile the kernels (numba) and load the refiner once, outside every timing."""
    grid = Grid(32, 3.2 * MM)
    sensors = ring_array(32, 8 * MM)
    acq = Acquisition(FS, 512)
    p0 = disks(grid, 0)
    y = simulate(p0, grid, sensors, acq, noise_std=0.01, seed=0)
    scan = Scan(y, sensors, acq)
    oatomo.reconstruct(scan, grid=grid)
    oatomo.reconstruct(scan, "mb-tv", grid=grid, calibrate=False, refine=False, iters=5)
    oatomo.reconstruct(scan, grid=grid, calibrate=True)


# --- tables --------------------------------------------------------------------------


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    vals = [float(r[key]) for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else math.nan


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The tables: by geometry and phantom kind (means over seeds), and the false alarms."""
    wrong = [r for r in rows if not r["correct_file"]]
    right = [r for r in rows if r["correct_file"]]
    geos = [g for g in _ALL_GEOMETRIES if any(r["geometry"] == g for r in rows)]
    kinds = [k for k in _ALL_PHANTOMS if any(r["phantom"] == k for r in rows)]
    lines = ["PSNR (dB) after the best affine fit, raw / after the best rigid registration. "
             "gap: TV true minus default, registered. Position error: rms after rigid "
             "alignment, file -> default (ratio). Absolute c error: file -> default, then the "
             "default's with the scale gauge removed. Means over the scans, except the "
             "times: medians of the default's and the position check's time over one TV50 "
             "on the same scan.",
             "",
             "| geometry | phantom | n | check asked | TV file | default | TV true | gap (dB) "
             "| pos. error (um) | c error (%) | default / TV50 | check / TV50 |",
             "|" + "---|" * 12]
    groups = [(g, k) for g in geos for k in kinds]
    groups += [(g, "all") for g in geos] + [("all", "all")]
    for g, k in groups:
        sel = [r for r in wrong if g in ("all", r["geometry"]) and k in ("all", r["phantom"])]
        if not sel:
            continue
        m = {key: _mean(sel, key) for key in (
            "psnr_tv_file", "psnr_tv_file_reg", "psnr_default", "psnr_default_reg",
            "psnr_tv_true", "psnr_tv_true_reg", "pos_err_file_um", "pos_err_default_um")}
        # times: medians (a shared machine's load makes single timings jump)
        m.update({key: float(np.median([r[key] for r in sel]))
                  for key in ("time_ratio", "check_ratio")})
        abs_c = {key: float(np.mean([abs(r[key]) for r in sel])) for key in (
            "c_err_file_pct", "c_err_default_pct", "c_err_default_gauge_pct")}
        asked = sum(r["check_asked"] for r in sel)
        gap = m["psnr_tv_true_reg"] - m["psnr_default_reg"]
        name = f"**{g}**" if k == "all" else g
        lines.append(
            f"| {name} | {k} | {len(sel)} | {asked}/{len(sel)} "
            f"| {m['psnr_tv_file']:.1f} / {m['psnr_tv_file_reg']:.1f} "
            f"| {m['psnr_default']:.1f} / {m['psnr_default_reg']:.1f} "
            f"| {m['psnr_tv_true']:.1f} / {m['psnr_tv_true_reg']:.1f} | {gap:.1f} "
            f"| {m['pos_err_file_um']:.0f} -> {m['pos_err_default_um']:.0f} "
            f"({m['pos_err_default_um'] / m['pos_err_file_um']:.2f}) "
            f"| {abs_c['c_err_file_pct']:.2f} -> {abs_c['c_err_default_pct']:.2f}; "
            f"{abs_c['c_err_default_gauge_pct']:.2f} "
            f"| {m['time_ratio']:.1f} | {m['check_ratio']:.2f} |")
    refined = [r for r in wrong if r.get("psnr_default_physics_reg") is not None]
    if refined:
        lines += ["", "The refinement step of the default on the calibrated scans: what it "
                  "returns minus the calibrated TV image it refined (registered PSNR, dB; "
                  "the guard's rejections count as 0).", "",
                  "| geometry | scans | refined (guard passed) | mean | worst |",
                  "|---|---|---|---|---|"]
        for g in geos + ["all"]:
            sel = [r for r in wrong if g in ("all", r["geometry"]) and r["calibrated"]]
            if not sel:
                continue
            d = [r["psnr_default_reg"] - r.get("psnr_default_physics_reg",
                                                r["psnr_default_reg"]) for r in sel]
            n_ref = sum(r["default_refined"] for r in sel)
            lines.append(f"| {g} | {len(sel)} | {n_ref} | {np.mean(d):+.2f} "
                         f"| {min(d):+.2f} |")
    if right:
        lines += ["", "Correct files (true positions and c in the file): false alarms of "
                  "the position check, and the default against TV with the true geometry "
                  "(PSNR raw / registered).", "",
                  "| geometry | phantom | seed | check asked (false alarm) | spread / common "
                  "shift / threshold (um) | default path | default | TV true | default - TV "
                  "true, reg. (dB) | default / TV50 |",
                  "|" + "---|" * 10]
        for r in sorted(right, key=lambda r: (list(_ALL_GEOMETRIES).index(r["geometry"]),
                                              r["seed"])):
            c = r["check"]
            um = [f"{1e6 * c[k]:.0f}" if c.get(k) is not None else "-"
                  for k in ("spread_m", "offset_m", "threshold_m")]
            path = r["default_method"] + (" + refiner" if r["default_refined"] else "") \
                + (" (calibrated)" if r["calibrated"] else "")
            lines.append(
                f"| {r['geometry']} | {r['phantom']} | {r['seed']} "
                f"| {'yes' if r['check_asked'] else 'no'} | {' / '.join(um)} | {path} "
                f"| {r['psnr_default']:.1f} / {r['psnr_default_reg']:.1f} "
                f"| {r['psnr_tv_true']:.1f} / {r['psnr_tv_true_reg']:.1f} "
                f"| {r['psnr_default_reg'] - r['psnr_tv_true_reg']:+.1f} "
                f"| {r['time_ratio']:.1f} |")
        n_fa = sum(r["check_asked"] for r in right)
        lines += ["", f"False alarms: {n_fa} / {len(right)}."]
    return "\n".join(lines)


# --- driver --------------------------------------------------------------------------


def cases(geometries: list[str], phantoms: list[str], n_seeds: int,
          first_seed: int = FIRST_SEED) -> list[tuple[str, str, str, int, bool]]:
    """(key, geometry, phantom, seed, correct file) of every case, in run order.

    The correct-file scans take the phantom kinds in rotation by the geometry's place in
    :data:`GEOMETRIES` and the seed (the same cases whatever the order asked for)."""
    kinds = [k for k in _ALL_PHANTOMS if k in phantoms]
    out = []
    for g in geometries:
        gi = list(_ALL_GEOMETRIES).index(g) % len(GEOMETRIES)
        for s in range(n_seeds):
            seed = first_seed + s
            for k in phantoms:
                out.append((f"{g}/{k}/{seed}", g, k, seed, False))
            k = kinds[(gi + s) % len(kinds)]
            out.append((f"{g}/correct/{k}/{seed}", g, k, seed, True))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 geometries x 2 phantoms")
    ap.add_argument("--geometries", help="comma list (default: every one of the set)")
    ap.add_argument("--phantoms", help="comma list (default: every one of the set)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per (geometry, phantom)")
    ap.add_argument("--out", default=str(ROOT / "out" / "heldout_default.json"))
    ap.add_argument("--table", action="store_true", help="print the tables from --out")
    ap.add_argument("--fresh", action="store_true",
                    help="the fresh set: FRESH_GEOMETRIES x FRESH_PHANTOMS, seeds from "
                    f"{FRESH_SEED} (--geometries/--phantoms choose among them)")
    ap.add_argument("--correct-only", action="store_true",
                    help="only the correct files (the false-alarm and correct-file table)")
    ap.add_argument("--model-response", choices=("auto", "off"), default="auto",
                    help="auto: the pipeline's default (the file's detector response in the "
                    "final TV's operator); off: left out, 50 iterations (the protocol of "
                    "heldout_joint_v3.json)")
    ap.add_argument("--reseat", action="store_true",
                    help="every calibration with the held-out re-seat (reseat=True)")
    ap.add_argument("--finest-joint-steps", type=int, default=None,
                    help="joint steps after the finest level where the default takes "
                         "JOINT_STEPS (0: the coarse joint step only)")
    args = ap.parse_args(argv)
    if args.reseat:
        enable_reseat()
    if args.finest_joint_steps is not None:
        finest_joint_steps(args.finest_joint_steps)
    global MODEL_RESPONSE
    MODEL_RESPONSE = "auto" if args.model_response == "auto" else False
    out = Path(args.out)
    done: dict[str, dict[str, Any]] = json.loads(out.read_text()) if out.exists() else {}
    if args.table:
        print(to_markdown(list(done.values())))
        return 0
    first_seed = FRESH_SEED if args.fresh else FIRST_SEED
    geometries = (args.geometries.split(",") if args.geometries
                  else list(FRESH_GEOMETRIES if args.fresh else GEOMETRIES))
    phantoms = (args.phantoms.split(",") if args.phantoms
                else list(FRESH_PHANTOMS if args.fresh else PHANTOMS))
    if args.quick:
        geometries, phantoms = list(QUICK[0]), list(QUICK[1])
    for name in geometries:
        if name not in _ALL_GEOMETRIES:
            ap.error(f"unknown geometry {name!r}; choose from {', '.join(_ALL_GEOMETRIES)}")
    for name in phantoms:
        if name not in _ALL_PHANTOMS:
            ap.error(f"unknown phantom {name!r}; choose from {', '.join(_ALL_PHANTOMS)}")
    todo = [c for c in cases(geometries, phantoms, args.seeds, first_seed)
            if c[0] not in done and (c[4] or not args.correct_only)]
    out.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    if todo:
        warm_up()
    for key, g, k, seed, correct in todo:
        t = time.perf_counter()
        row = run_case(g, k, seed, correct)
        row["t_case"] = time.perf_counter() - t
        done[key] = row
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(done, indent=1))
        tmp.replace(out)
        print(f"{key}: check {'asks' if row['check_asked'] else 'no'}; TV file "
              f"{row['psnr_tv_file_reg']:.1f}, default {row['psnr_default_reg']:.1f}, TV true "
              f"{row['psnr_tv_true_reg']:.1f} dB (reg.); pos {row['pos_err_file_um']:.0f} -> "
              f"{row['pos_err_default_um']:.0f} um; c {row['c_err_file_pct']:+.2f} -> "
              f"{row['c_err_default_pct']:+.2f} %; default {row['t_default']:.1f} s = "
              f"{row['time_ratio']:.1f} TV50; case {row['t_case']:.0f} s", flush=True)
    print(to_markdown([done[c[0]] for c in cases(geometries, phantoms, args.seeds, first_seed)
                       if c[0] in done]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does the data's objective prefer the true positions to the calibration's estimate?

Two measurements on tuning scans of the held-out benchmark's generator (``heldout_default.py``;
seeds 2000 and 2001, none of them in its report tables):

* ``path``: the default calibration's estimate (positions and speed of sound) and the truth,
  similarity-aligned onto the estimate (a rigid motion and a common scale of positions and
  ``c`` are invisible in the data), joined by a straight line. At its ends and midpoint the
  image is re-fitted (TV, 200 FISTA iterations, cold start) at three TV weights (0.3, 1 and
  3 x the reconstruction's default; 3 x is the calibration's image steps') and the objective
  ``0.5 ||A x - y||^2 + lam TV(x)`` recorded with its misfit part, the held-out misfit of the
  finest level (4 folds, 20 iterations: every sensor against the image of the others) and
  the registered PSNR of the default TV. A method that minimises any of these can reach
  the truth only where it is lower there than at the estimate.
* ``noise``: the default calibration on the same scans with the drawn noise level times
  1, 0.3, 0.1 and 0 (the same phantom, positions, band and speed of sound): the registered
  PSNR of the default TV at the estimate against TV at the true positions, and the position
  error after rigid alignment against the file's. If the gap closes as the noise falls,
  the information in the data, not the optimiser, is what limits the estimate. With
  ``--image-grid`` the records come from the reconstruction's own model on the image grid
  (an inverse crime, as a diagnostic: does the model's mismatch with finer-grid records
  hold the estimate back?).
* ``descent``: from the default's estimate, four steps of descent on the reduced objective
  at 0.3 x the TV weight (the image re-fitted at every trial geometry, 150 iterations warm
  started): the direction is every sensor's Gauss-Newton step against the current image
  (no prior), the step length the best of 1, 4, 16 and 64 times it (or none); the first
  four scans. It moves many sensors at once and scores each move with the image
  re-fitted, which the alternating scheme does not.

* ``prior``: the same straight line (ends and midpoint), each point's image made as the
  default makes it (TV at the reconstruction's weight, then the shipped TV refiner, a
  learned prior of the object class, its guard off): does the refined image's misfit
  ``||A x_r - y|| / ||y||``, how far the refiner moves TV (``||x_r - x|| / ||x||``), or
  the sharpness of UBP, TV or the refined image (the normalised fourth moment
  ``n sum x^4 / (sum x^2)^2``, an autofocus measure) prefer the truth? A criterion that
  does not cannot lead a calibration there either.
* ``offsets``: the default calibration of the same records with the whole array moved by
  half a coarsest-level pixel in x, y or both (a rigid motion the data cannot see, moved
  back afterwards; at the finer levels the move is a whole pixel): how much of the
  estimate's error depends on where the coarsest grid's pixels fall, and does averaging
  the four estimates (similarity-aligned) help? Then the unshifted and the y-shifted
  calibration on a grid of the same pitch padded by ``OFFSET_PAD`` pixels on every side
  (a shift can push the edge of an object that reaches the image's border out of the
  image). The vessel trees and the disks of ``joint_floor.py`` and six scans of seed 2001.
* ``fov``: the default calibration of the same twelve scans on image grids of the same
  pitch and other fields of view: the benchmark's (which the phantoms fill), 15 % smaller
  (the object's border outside the image), 25 % larger, and what ``oatomo reconstruct``
  takes without ``--fov`` (:func:`oatomo.io.grid.object_fov`, from the first arrivals);
  the registered PSNR of the default TV on the benchmark's grid at each estimate.

Run (each mode appends to its JSON and skips what it holds; ``--table`` prints it)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/joint_objective.py path \\
        [--noise-scale 0] [--image-grid] --out benchmarks/calibration/joint_objective_path.json
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/joint_objective.py noise \\
        [--image-grid] --out benchmarks/calibration/joint_objective_noise.json
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/joint_objective.py descent \\
        [--noise-scale 0] --out benchmarks/calibration/joint_objective_descent.json
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/joint_objective.py prior \\
        --out benchmarks/calibration/joint_objective_prior.json
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/joint_objective.py offsets \\
        --out benchmarks/calibration/joint_objective_offsets.json
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/joint_objective.py fov \\
        --out benchmarks/calibration/joint_objective_fov.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402

import oatomo  # noqa: E402
from oatomo.calibration.gauge import similarity_transform  # noqa: E402
from oatomo.calibration.joint import gauss_newton_step  # noqa: E402
from oatomo.calibration.levels import schedule  # noqa: E402
from oatomo.calibration.search import heldout_misfits, interleaved_folds  # noqa: E402
from oatomo.geometry import Grid, SensorArray  # noqa: E402
from oatomo.io.grid import object_fov  # noqa: E402
from oatomo.recon.model_based import default_lambda, reconstruct_model_based  # noqa: E402
from oatomo.refine.guard import check_refined  # noqa: E402

CASES = (("ring32", "vessels-thin", 2000), ("ring64", "vessels-thin", 2000),
         ("arc270", "vessels-thin", 2000), ("ring64", "vessels-thick", 2000),
         ("ring128", "vessels-thin", 2000), ("ring32", "disks", 2000),
         ("ring32", "texture", 2001), ("arc270", "points", 2001))
OFFSET_CASES = (("ring32", "vessels-thin", 2000), ("ring64", "vessels-thin", 2000),
                ("ring128", "vessels-thin", 2000), ("arc270", "vessels-thin", 2000),
                ("arc270", "vessels-thick", 2000), ("ring32", "disks", 2000),
                ("ring32", "vessels-thin", 2001), ("ring64", "vessels-thick", 2001),
                ("ring128", "vessels-thin", 2001), ("arc270", "vessels-thin", 2001),
                ("ring32", "vessels-thick", 2001), ("ring64", "vessels-thin", 2001))
OFFSET_PAD = 16  # offsets: pixels added on every side of the padded grid
TV_WEIGHTS = (0.3, 1.0, 3.0)
NOISE_SCALES = (1.0, 0.3, 0.1, 0.0)


def scan_at(case: H.Case, positions: np.ndarray, speed: float) -> H.Scan:
    """``case``'s records with other sensor positions and speed of sound."""
    return H.Scan(case.scan.sinogram, SensorArray(positions),
                  replace(case.scan.acquisition, speed_of_sound=speed),
                  response=case.scan.response)


def tv_psnr(case: H.Case, positions: np.ndarray, speed: float, grid: Grid | None = None,
            truth: np.ndarray | None = None) -> float:
    """Registered PSNR of the default TV of ``case``'s records at a geometry (on ``grid``
    against ``truth``; default: the case's)."""
    rec = oatomo.reconstruct(scan_at(case, positions, speed), "mb-tv",
                             grid=case.grid if grid is None else grid, calibrate=False,
                             refine=False)
    return H.register(np.asarray(rec.image, np.float64),
                      case.truth if truth is None else truth)[0]


def objective(case: H.Case, positions: np.ndarray, speed: float, lam: float
              ) -> tuple[float, float]:
    """The TV objective at a geometry (image re-fitted, 200 iterations) and its misfit."""
    y = case.scan.sinogram.astype(np.float32)
    acq = replace(case.scan.acquisition, speed_of_sound=speed)
    _, rec = reconstruct_model_based(y, case.grid, SensorArray(positions), acq, method="tv",
                                     lam=lam, n_iter=200, tol=0.0,
                                     response=case.scan.response)
    misfit = 0.5 * (rec["residual"][-1] * float(np.linalg.norm(y.astype(np.float64)))) ** 2
    return float(rec["objective"][-1]), misfit


def aligned_truth(case: H.Case, est: np.ndarray) -> tuple[np.ndarray, float]:
    """The true positions and speed of sound similarity-aligned onto an estimate (the rigid
    motion and the common scale of positions and ``c`` the data cannot see)."""
    s, rot, t = similarity_transform(case.true.positions.astype(np.float64), est)
    return (s * (rot @ case.true.positions.T)).T + t, s * case.c_true


def path_row(geometry: str, kind: str, seed: int, scale: float = 1.0,
             image_grid: bool = False) -> dict[str, Any]:
    case = H.make_case(geometry, kind, seed, noise_scale=scale, image_grid=image_grid)
    cal = oatomo.calibrate(case.scan, case.grid)
    est = cal.sensors.positions.astype(np.float64)
    true, c_true = aligned_truth(case, est)
    lam1 = default_lambda("tv", case.scan.sinogram, case.grid, case.nominal,
                          case.scan.acquisition, response=case.scan.response)
    level = schedule(case.scan.sinogram.astype(np.float32), case.scan.acquisition, case.grid,
                     2e-4, 3, fft=True)[-1]
    folds = interleaved_folds(est, 4)
    row: dict[str, Any] = {"geometry": geometry, "phantom": kind, "seed": seed,
                           "path_noise_scale": scale, "image_grid": image_grid,
                           "file_um": H.rms_um(case.nominal, case.true),
                           "estimate_um": H.rms_um(cal.sensors, case.true), "points": []}
    for frac in (0.0, 0.5, 1.0):
        pos = est + frac * (true - est)
        speed = cal.speed_of_sound + frac * (c_true - cal.speed_of_sound)
        point: dict[str, Any] = {"t": frac, "psnr": tv_psnr(case, pos, speed)}
        for w in TV_WEIGHTS:
            point[f"objective_{w}"], point[f"misfit_{w}"] = objective(case, pos, speed,
                                                                      w * lam1)
        acq = replace(level.acquisition, speed_of_sound=speed)
        point["heldout"] = float(heldout_misfits(replace(level, acquisition=acq), pos, acq,
                                                 folds, 20, None).mean())
        row["points"].append(point)
    return row


def noise_row(geometry: str, kind: str, seed: int, scale: float, image_grid: bool = False
              ) -> dict[str, Any]:
    case = H.make_case(geometry, kind, seed, noise_scale=scale, image_grid=image_grid)
    cal = oatomo.calibrate(case.scan, case.grid)
    file_um = H.rms_um(case.nominal, case.true)
    est_um = H.rms_um(cal.sensors, case.true)
    return {"geometry": geometry, "phantom": kind, "seed": seed, "noise_scale": scale,
            "image_grid": image_grid,
            "noise": case.noise, "file_um": file_um, "estimate_um": est_um,
            "ratio": est_um / file_um,
            "c_error_rel": cal.speed_of_sound / case.c_true - 1,
            "psnr_default": tv_psnr(case, cal.sensors.positions, cal.speed_of_sound),
            "psnr_tv_true": tv_psnr(case, case.true.positions, case.c_true)}


def path_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per scan, each criterion at the truth minus at the estimate (relative)."""
    head = ["scan", "records", "file / estimate (um)", "PSNR est / mid / true"]
    head += [f"objective {w}x" for w in TV_WEIGHTS] + [f"misfit {w}x" for w in TV_WEIGHTS]
    head += ["held-out misfit"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        p = r["points"]

        def rel(key: str, p: list[dict[str, Any]] = p) -> str:
            e, m, t = (q[key] for q in p)
            return f"{100 * (m / e - 1):+.2f} / {100 * (t / e - 1):+.2f} %"

        grid = "image grid" if r.get("image_grid") else "2x finer"
        cells = [f"{r['geometry']} {r['phantom']} ({r['seed']})",
                 f"{grid}, noise x{r.get('path_noise_scale', 1.0):g}",
                 f"{r['file_um']:.0f} / {r['estimate_um']:.0f}",
                 " / ".join(f"{q['psnr']:.1f}" for q in p)]
        cells += [rel(f"objective_{w}") for w in TV_WEIGHTS]
        cells += [rel(f"misfit_{w}") for w in TV_WEIGHTS] + [rel("heldout")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def descent_row(geometry: str, kind: str, seed: int, scale: float = 1.0) -> dict[str, Any]:
    case = H.make_case(geometry, kind, seed, noise_scale=scale)
    cal = oatomo.calibrate(case.scan, case.grid)
    pos, speed = cal.sensors.positions.astype(np.float64), cal.speed_of_sound
    lam = 0.3 * default_lambda("tv", case.scan.sinogram, case.grid, case.nominal,
                               case.scan.acquisition, response=case.scan.response)
    level = schedule(case.scan.sinogram.astype(np.float32), case.scan.acquisition,
                     case.grid, 2e-4, 3, fft=True)[-1]
    level = replace(level, acquisition=replace(level.acquisition, speed_of_sound=speed))
    y = case.scan.sinogram.astype(np.float32)
    acq = replace(case.scan.acquisition, speed_of_sound=speed)

    def solve(p: np.ndarray, x0: np.ndarray | None) -> tuple[np.ndarray, float]:
        x, rec = reconstruct_model_based(y, case.grid, SensorArray(p), acq, method="tv",
                                         lam=lam, n_iter=150, tol=0.0, x0=x0,
                                         response=case.scan.response)
        return x, float(rec["objective"][-1])

    steps = [{"um": H.rms_um(cal.sensors, case.true), "psnr": tv_psnr(case, pos, speed),
              "length": 0.0}]
    x, f = solve(pos, None)
    for _ in range(4):
        new, _, _ = gauss_newton_step(level, x, pos, pos, 1.0, None, case.grid.dx,
                                      case.scan.response)
        best = (f, 0.0, x)
        for length in (1.0, 4.0, 16.0, 64.0):
            xa, fa = solve(pos + length * (new - pos), x)
            if fa < best[0]:
                best = (fa, length, xa)
        f, length, x = best
        pos = pos + length * (new - pos)
        steps.append({"um": H.rms_um(SensorArray(pos), case.true),
                      "psnr": tv_psnr(case, pos, speed), "length": length})
    return {"geometry": geometry, "phantom": kind, "seed": seed, "descent_noise_scale": scale,
            "file_um": H.rms_um(case.nominal, case.true), "steps": steps}


def descent_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per scan, position error and registered PSNR after each step."""
    lines = ["| scan | noise x | step lengths | position error (um) | PSNR (dB) |",
             "|---|---|---|---|---|"]
    for r in rows:
        st = r["steps"]
        lines.append(f"| {r['geometry']} {r['phantom']} ({r['seed']}) | "
                     f"{r['descent_noise_scale']:g} | "
                     + ", ".join(f"{q['length']:g}" for q in st[1:]) + " | "
                     + " -> ".join(f"{q['um']:.0f}" for q in st) + " | "
                     + " -> ".join(f"{q['psnr']:.2f}" for q in st) + " |")
    return "\n".join(lines)


def noise_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per simulation grid and noise scale, gap to TV with the true positions and
    position ratio."""
    lines = ["| records | noise x | gap to TV true (dB): mean, per scan | position ratio: "
             "mean, per scan |", "|---|---|---|---|"]
    for crime, scale in [(c, s) for c in (False, True) for s in NOISE_SCALES]:
        sel = [r for r in rows if r["noise_scale"] == scale
               and r.get("image_grid", False) == crime]
        if not sel:
            continue
        gaps = [r["psnr_tv_true"] - r["psnr_default"] for r in sel]
        ratios = [r["ratio"] for r in sel]
        lines.append(f"| {'image grid' if crime else '2x finer grid'} | {scale:g} | "
                     f"{np.mean(gaps):.2f}: "
                     + ", ".join(f"{g:.1f}" for g in gaps)
                     + f" | {np.mean(ratios):.2f}: " + ", ".join(f"{v:.2f}" for v in ratios)
                     + " |")
    return "\n".join(lines)


def sharpness(image: np.ndarray) -> float:
    """Normalised fourth moment ``n sum x^4 / (sum x^2)^2`` (1 for a flat image; larger for
    a sparser, better focused one)."""
    x = np.asarray(image, np.float64)
    return float(x.size * np.sum(x ** 4) / np.sum(x * x) ** 2)


def prior_row(geometry: str, kind: str, seed: int) -> dict[str, Any]:
    case = H.make_case(geometry, kind, seed)
    cal = oatomo.calibrate(case.scan, case.grid)
    est = cal.sensors.positions.astype(np.float64)
    true, c_true = aligned_truth(case, est)
    row: dict[str, Any] = {"geometry": geometry, "phantom": kind, "seed": seed,
                           "file_um": H.rms_um(case.nominal, case.true),
                           "estimate_um": H.rms_um(cal.sensors, case.true), "points": []}
    for frac in (0.0, 0.5, 1.0):
        scan = scan_at(case, est + frac * (true - est),
                       cal.speed_of_sound + frac * (c_true - cal.speed_of_sound))
        sensors, acq = scan.sensors, scan.acquisition
        rec = oatomo.reconstruct(scan, "mb-tv", grid=case.grid, calibrate=False, refine=True,
                                 guard=False, samples=0)
        tv, refined = (np.asarray(rec.images[k], np.float64) for k in ("mb-tv", "refined"))
        ubp = oatomo.reconstruct(scan, "ubp", grid=case.grid, calibrate=False,
                                 refine=False).image
        numbers = check_refined(refined, tv, case.scan.sinogram, case.grid, sensors, acq,
                                response=case.scan.response).numbers
        row["points"].append({
            "t": frac, "psnr_tv": H.register(tv, case.truth)[0],
            "psnr_refined": H.register(refined, case.truth)[0],
            "residual_tv": float(numbers["residual_physics"]),
            "residual_refined": float(numbers["residual_refined"]),
            "refiner_change": float(np.linalg.norm(refined - tv) / np.linalg.norm(tv)),
            "sharpness_ubp": sharpness(ubp), "sharpness_tv": sharpness(tv),
            "sharpness_refined": sharpness(refined)})
    return row


def prior_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per scan, each criterion at the midpoint and the truth relative to the
    estimate; a criterion prefers the truth where its residual or change is lower there, or
    its sharpness higher."""
    keys = ("residual_refined", "residual_tv", "refiner_change", "sharpness_ubp",
            "sharpness_tv", "sharpness_refined")
    head = ["scan", "file / estimate (um)", "PSNR TV est / mid / true",
            "PSNR refined est / mid / true"] + [k.replace("_", " ") for k in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        p = r["points"]
        cells = [f"{r['geometry']} {r['phantom']} ({r['seed']})",
                 f"{r['file_um']:.0f} / {r['estimate_um']:.0f}",
                 " / ".join(f"{q['psnr_tv']:.1f}" for q in p),
                 " / ".join(f"{q['psnr_refined']:.1f}" for q in p)]
        for k in keys:
            e, m, t = (q[k] for q in p)
            cells.append(f"{100 * (m / e - 1):+.1f} / {100 * (t / e - 1):+.1f} %")
        lines.append("| " + " | ".join(cells) + " |")
    lower = ("residual_refined", "residual_tv", "refiner_change")
    prefer = {k: sum((r["points"][2][k] < r["points"][0][k]) == (k in lower) for r in rows)
              for k in keys}
    lines.append("")
    lines.append("Scans on which the criterion prefers the truth to the estimate: "
                 + ", ".join(f"{k.replace('_', ' ')} {v}/{len(rows)}"
                             for k, v in prefer.items()) + ".")
    return "\n".join(lines)


def offsets_row(geometry: str, kind: str, seed: int) -> dict[str, Any]:
    case = H.make_case(geometry, kind, seed)
    nominal = case.scan.sensors.positions.astype(np.float64)
    half = 0.5 * case.grid.fov / schedule(case.scan.sinogram, case.scan.acquisition,
                                          case.grid, 2e-4, 3, first_only=True)[0].grid.n
    estimates, speeds = [], []
    for shift in ((0.0, 0.0), (half, 0.0), (0.0, half), (half, half)):
        d = np.asarray(shift)
        scan = H.Scan(case.scan.sinogram, SensorArray(nominal + d), case.scan.acquisition,
                      response=case.scan.response)
        cal = oatomo.calibrate(scan, case.grid)
        estimates.append(cal.sensors.positions.astype(np.float64) - d)
        speeds.append(cal.speed_of_sound)
    aligned = []
    for est, c in zip(estimates, speeds, strict=True):  # onto the unshifted estimate (the gauge)
        s, rot, t = similarity_transform(est, estimates[0])
        aligned.append(((s * (rot @ est.T)).T + t, s * c))
    mean = np.mean([a for a, _ in aligned], axis=0)
    c_mean = float(np.mean([c for _, c in aligned]))
    # the same calibrations with OFFSET_PAD more pixels of the same pitch on every side
    # (nothing of the object outside the image any more), unshifted and shifted in y
    n_pad = case.grid.n + 2 * OFFSET_PAD
    padded = []
    for shift in ((0.0, 0.0), (0.0, half)):
        d = np.asarray(shift)
        scan = H.Scan(case.scan.sinogram, SensorArray(nominal + d), case.scan.acquisition,
                      response=case.scan.response)
        cal = oatomo.calibrate(scan, Grid(n_pad, case.grid.dx * n_pad))
        est = cal.sensors.positions.astype(np.float64) - d
        padded.append((H.rms_um(SensorArray(est), case.true),
                       tv_psnr(case, est, cal.speed_of_sound)))
    return {"geometry": geometry, "phantom": kind, "seed": seed, "half_pixel_m": half,
            "file_um": H.rms_um(case.nominal, case.true),
            "each_um": [H.rms_um(SensorArray(e), case.true) for e in estimates],
            "each_psnr": [tv_psnr(case, e, c) for e, c in zip(estimates, speeds, strict=True)],
            "mean_um": H.rms_um(SensorArray(mean), case.true),
            "mean_psnr": tv_psnr(case, mean, c_mean),
            "true_psnr": tv_psnr(case, case.true.positions, case.c_true),
            "padded_um": [u for u, _ in padded], "padded_psnr": [q for _, q in padded]}


def offsets_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per scan, position error and registered PSNR of the default TV for each
    shift of the array, their average, and TV with the true positions."""
    lines = ["| scan | file (um) | per shift: error (um) | per shift: PSNR (dB) | average of "
             "the four: error, PSNR | padded grid, unshifted / y: error (um), PSNR (dB) | "
             "TV true (dB) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['geometry']} {r['phantom']} ({r['seed']}) | {r['file_um']:.0f} | "
                     + " / ".join(f"{v:.0f}" for v in r["each_um"]) + " | "
                     + " / ".join(f"{v:.1f}" for v in r["each_psnr"])
                     + f" | {r['mean_um']:.0f}, {r['mean_psnr']:.1f} | "
                     + " / ".join(f"{u:.0f}, {q:.1f}" for u, q in zip(
                         r["padded_um"], r["padded_psnr"], strict=True))
                     + f" | {r['true_psnr']:.1f} |")
    return "\n".join(lines)


FOV_SCALES = (1.0, 0.85, 1.25)  # fov: fields of view relative to the benchmark's


def fov_row(geometry: str, kind: str, seed: int) -> dict[str, Any]:
    case = H.make_case(geometry, kind, seed)
    fovs = {f"x{f:g}": f * case.grid.fov for f in FOV_SCALES}
    fovs["object_fov"] = object_fov(case.scan)
    row: dict[str, Any] = {"geometry": geometry, "phantom": kind, "seed": seed,
                           "file_um": H.rms_um(case.nominal, case.true),
                           "true_psnr": tv_psnr(case, case.true.positions, case.c_true),
                           "grids": {}}
    for name, fov in fovs.items():
        n = 4 * max(1, round(fov / case.grid.dx / 4))  # the same pitch, n a multiple of 4
        cal = oatomo.calibrate(case.scan, Grid(n, n * case.grid.dx))
        row["grids"][name] = {"fov_m": n * case.grid.dx,
                              "um": H.rms_um(cal.sensors, case.true),
                              "psnr": tv_psnr(case, cal.sensors.positions,
                                              cal.speed_of_sound)}
    return row


def fov_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per scan and field of view, position error and registered PSNR of the
    default TV at the estimate; the last line their means."""
    names = list(rows[0]["grids"]) if rows else []
    head = ["scan", "file (um)"] + [f"{k}: fov (mm), error (um), PSNR (dB)" for k in names]
    lines = ["| " + " | ".join(head + ["TV true (dB)"]) + " |",
             "|" + "---|" * (len(head) + 1)]
    for r in rows:
        cells = [f"{r['geometry']} {r['phantom']} ({r['seed']})", f"{r['file_um']:.0f}"]
        cells += [f"{g['fov_m'] * 1e3:.1f}, {g['um']:.0f}, {g['psnr']:.1f}"
                  for g in r["grids"].values()]
        lines.append("| " + " | ".join(cells + [f"{r['true_psnr']:.1f}"]) + " |")
    if rows:
        mean = [f"{np.mean([r['grids'][k]['um'] for r in rows]):.0f}, "
                f"{np.mean([r['grids'][k]['psnr'] for r in rows]):.2f}" for k in names]
        lines.append("| mean | | " + " | ".join(mean) + " | "
                     f"{np.mean([r['true_psnr'] for r in rows]):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("path", "noise", "descent", "prior", "offsets", "fov"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", default=None,
                    help="comma list geometry:phantom:seed (default: the module's)")
    ap.add_argument("--table", action="store_true", help="print the table and stop")
    ap.add_argument("--noise-scale", type=float, default=1.0,
                    help="path, descent: the drawn noise level times this")
    ap.add_argument("--image-grid", action="store_true",
                    help="noise: records simulated on the image grid by the reconstruction's "
                    "own model (an inverse crime: is the model's mismatch the limit?)")
    args = ap.parse_args(argv)
    default = {"descent": CASES[:4], "offsets": OFFSET_CASES,
               "fov": OFFSET_CASES}.get(args.mode, CASES)
    cases = default if args.cases is None else tuple(
        (g, k, int(s)) for g, k, s in (c.split(":") for c in args.cases.split(",")))
    out = Path(args.out)
    rows: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
    table = {"path": path_table, "noise": noise_table, "descent": descent_table,
             "prior": prior_table, "offsets": offsets_table, "fov": fov_table}[args.mode]
    if not args.table and args.mode in ("descent", "prior", "offsets", "fov"):
        H.warm_up()
        for g, k, seed in cases:
            if any((r["geometry"], r["phantom"], r["seed"], r.get("descent_noise_scale"))
                   == (g, k, seed, args.noise_scale if args.mode == "descent" else None)
                   for r in rows):
                continue
            rows.append(descent_row(g, k, seed, args.noise_scale) if args.mode == "descent"
                        else {"prior": prior_row, "offsets": offsets_row,
                              "fov": fov_row}[args.mode](g, k, seed))
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(rows, indent=1))
            tmp.replace(out)
            print(f"{g} {k} {seed}: done", flush=True)
    elif not args.table:
        H.warm_up()
        for g, k, seed in cases:
            for scale in (NOISE_SCALES if args.mode == "noise" else (None,)):
                key = (g, k, seed, scale, args.image_grid,
                       args.noise_scale if scale is None else None)
                if any((r["geometry"], r["phantom"], r["seed"], r.get("noise_scale"),
                        r.get("image_grid", False),
                        r.get("path_noise_scale", 1.0) if "points" in r else None) == key
                       for r in rows):
                    continue
                row = path_row(g, k, seed, args.noise_scale, args.image_grid) \
                    if scale is None else noise_row(g, k, seed, scale, args.image_grid)
                rows.append(row)
                tmp = out.with_suffix(".tmp")
                tmp.write_text(json.dumps(rows, indent=1))
                tmp.replace(out)
                print(f"{g} {k} {seed} {scale}: done", flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

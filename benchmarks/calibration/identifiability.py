"""When are the sensor positions and the speed of sound identifiable from the data?
Self-calibration on arrays that are sparse, short or otherwise weak.

Data: the held-out calibration benchmark's protocol (``heldout_default.py``): oatomo's
forward model on a 2x finer grid at the true positions and speed of sound, Gaussian
detector band, 1-2 % noise; the file holds the nominal positions and a speed of sound off
by up to 2 %. Registered PSNR (dB) against the truth.

Two modes:

* ``--mode explore`` (the tuning tables; the identifiability rules switched off,
  ``max_speed_change=None``): TV with the file's, the calibrated and the true geometry,
  TV at the file's positions with the calibrated ``c``, and on arrays covering less than
  half a turn TV at a calibration that keeps the file's ``c``; the position and ``c``
  errors; and statistics a truth-free rule could use: the mean held-out misfit
  ``1 - rho^2`` with the file's and the calibrated geometry at the middle level (four
  folds, 15 iterations) and at the coarsest level (the speed search's two folds and 12
  iterations, what :attr:`oatomo.calibration.Calibration.heldout_misfit` holds), the
  median posterior std over the prior's, the position check's spread.
* ``--mode default`` (the report tables): TV with the file's and the true geometry and
  the default of ``oatomo.reconstruct`` (position check, self-calibration with its rules,
  TV; not refined), its notes, position and ``c`` errors, and its time over one
  50-iteration TV of the same scan.

Geometries (none is in another benchmark or setup of the repository): rings of 12 (r 19
mm), 16 (r 20 mm) and 24 (r 24 mm) sensors, 48 sensors on a 90 deg arc (r 22 mm), 56 on a
150 deg arc (r 23 mm), linear arrays of 64 elements at 0.3 mm pitch (10 mm below the
image centre) and 96 at 0.15 mm (9 mm); denser controls: a 48-ring (r 27 mm) and 72
sensors on a 200 deg arc (r 25 mm); and a dense 512-ring (r 42 mm, ``--geometries
ring512``, report seed 3200 only, not in the tuning set). Phantom kinds: the held-out
benchmark's five.
Seeds 3000 and 3100 are the tuning set of the rules (:data:`oatomo.calibration.estimate.
MAX_SPEED_CHANGE`, :data:`oatomo.calibration.result.NO_BETTER`,
:data:`oatomo.calibration.estimate.SPARSE_PITCH`); 3200 and 3300 the report set.

Run (resumable)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/identifiability.py \
        --mode explore --seed 3000 --out benchmarks/calibration/identifiability_tune.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/identifiability.py \
        --seed 3200 --out benchmarks/calibration/identifiability_report.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402
from heldout_prediction import misfit  # noqa: E402

import oatomo  # noqa: E402
from oatomo.calibration import apply_calibration  # noqa: E402
from oatomo.calibration.estimate import angular_coverage  # noqa: E402
from oatomo.calibration.levels import schedule  # noqa: E402
from oatomo.calibration.search import interleaved_folds  # noqa: E402
from oatomo.errors import InputError  # noqa: E402

MM, DEG = H.MM, H.DEG
GEOMETRIES = {
    "ring12": H.Geometry("ring", 12, 19 * MM),
    "ring16": H.Geometry("ring", 16, 20 * MM),
    "ring24": H.Geometry("ring", 24, 24 * MM),
    "arc90": H.Geometry("ring", 48, 22 * MM, 90 * DEG),
    "linear64": H.Geometry("linear", 64, 10 * MM, pitch=0.3 * MM),
    "arc150": H.Geometry("ring", 56, 23 * MM, 150 * DEG),
    "linear96": H.Geometry("linear", 96, 9 * MM, pitch=0.15 * MM),
    "ring48": H.Geometry("ring", 48, 27 * MM),
    "ring512": H.Geometry("ring", 512, 42 * MM),
    "arc200": H.Geometry("ring", 72, 25 * MM, 200 * DEG),
}
H.GEOMETRIES.update(GEOMETRIES)


def run(geometry: str, kind: str, seed: int) -> dict[str, Any]:
    case = H.make_case(geometry, kind, seed)
    grid, truth, scan = case.grid, case.truth, case.scan
    row: dict[str, Any] = {"geometry": geometry, "phantom": kind, "seed": seed}
    x_file, t_tv = H._tv(scan, grid)
    x_true, _ = H._tv(case.scan_true, grid)
    row["t_tv"] = t_tv
    check = oatomo.check_positions(scan.sinogram, scan.sensors, scan.acquisition, grid)
    row["check_spread_um"] = check.spread * 1e6
    row["check_asked"] = bool(check.needs_calibration)
    row["pos_err_file_um"] = H.rms_um(case.nominal, case.true)
    for name, x in (("tv_file", x_file), ("tv_true", x_true)):
        row[f"psnr_{name}_reg"] = H.register(x, truth)[0]
    t = time.perf_counter()
    try:
        cal = oatomo.calibrate(scan, grid, max_speed_change=None)
    except InputError as exc:
        row["refused"] = exc.problem
        return row
    row["t_cal"] = time.perf_counter() - t
    rec = oatomo.reconstruct(apply_calibration(scan, cal), "mb-tv",
                             grid=grid, calibrate=False, refine=False)
    row["psnr_tv_cal_reg"] = H.register(np.asarray(rec.image, np.float64), truth)[0]
    row["pos_err_cal_um"] = H.rms_um(cal.sensors, case.true)
    row["c_err_file_pct"] = 100 * (case.c_file / case.c_true - 1)
    row["c_err_cal_pct"] = 100 * (cal.speed_of_sound / case.c_true - 1)
    row["heldout_misfit"] = cal.heldout_misfit
    row["std_ratio"] = float(np.median(cal.position_std) / cal.prior_std)
    row["misfit_by_level"] = [float(h["misfit"]) for h in cal.history
                              if h["round"] == max(g["round"] for g in cal.history
                                                   if g["level"] == h["level"])]
    # the file's positions with the calibrated speed of sound
    keep_pos = replace(scan, acquisition=replace(scan.acquisition,
                                                 speed_of_sound=cal.speed_of_sound))
    x_c, _ = H._tv(keep_pos, grid)
    row["psnr_tv_file_pos_cal_c_reg"] = H.register(x_c, truth)[0]
    acq = scan.acquisition
    level = schedule(scan.sinogram.astype(np.float32), acq, grid, cal.prior_std, 3,
                     fft=True)[1]
    folds = interleaved_folds(case.nominal.positions, 4)
    t = time.perf_counter()
    row["heldout_file"] = misfit(level, case.nominal.positions.astype(np.float64),
                                  acq.speed_of_sound, folds)
    row["t_heldout"] = time.perf_counter() - t
    row["heldout_cal"] = misfit(level, cal.sensors.positions.astype(np.float64),
                                 cal.speed_of_sound, folds)
    # the same at the coarsest level, two folds, 12 iterations (the speed search's)
    coarse = schedule(scan.sinogram.astype(np.float32), acq, grid, cal.prior_std, 3,
                      fft=True)[0]
    folds2 = interleaved_folds(case.nominal.positions, 2)
    t = time.perf_counter()
    row["coarse_file"] = misfit(coarse, case.nominal.positions.astype(np.float64),
                                 acq.speed_of_sound, folds2, 12)
    row["coarse_cal"] = misfit(coarse, cal.sensors.positions.astype(np.float64),
                                cal.speed_of_sound, folds2, 12)
    row["t_coarse"] = time.perf_counter() - t
    if angular_coverage(
            case.nominal.positions.astype(np.float64)) < math.pi:
        fixed = oatomo.calibrate(scan, grid, speed_of_sound=False, max_speed_change=None)
        rec = oatomo.reconstruct(apply_calibration(scan, fixed), "mb-tv",
                                 grid=grid, calibrate=False, refine=False)
        row["psnr_tv_cal_fixed_c_reg"] = H.register(np.asarray(rec.image, np.float64),
                                                    truth)[0]
        row["pos_err_cal_fixed_c_um"] = H.rms_um(fixed.sensors, case.true)
    return row


def run_default(geometry: str, kind: str, seed: int) -> dict[str, Any]:
    """The report protocol: TV with the file's and the true geometry, and the default
    (position check, self-calibration with its identifiability rules, TV; not refined),
    timed against one 50-iteration TV of the same scan."""
    case = H.make_case(geometry, kind, seed)
    grid, truth, scan = case.grid, case.truth, case.scan
    row: dict[str, Any] = {"geometry": geometry, "phantom": kind, "seed": seed}
    t = time.perf_counter()
    rec = oatomo.reconstruct(scan, grid=grid, refine=False)
    row["t_default"] = time.perf_counter() - t
    prov = rec.provenance
    check = dict(prov.get("position_check") or {})
    row["check_asked"] = bool(check.get("needs_calibration"))
    row["why_not"] = check.get("why_not")
    row["calibrated"] = prov.get("calibration") is not None
    row["notes"] = list((prov.get("calibration") or {}).get("notes", []))
    row["heldout_misfit"] = (prov.get("calibration") or {}).get("heldout_misfit")
    x_file, _ = H._tv(scan, grid)
    x_true, _ = H._tv(case.scan_true, grid)
    row["t_tv50"] = min(H._tv(scan, grid, H.TV_ITERS)[1] for _ in range(2))
    for name, x in (("tv_file", x_file), ("default", np.asarray(rec.image, np.float64)),
                    ("tv_true", x_true)):
        row[f"psnr_{name}_reg"] = H.register(x, truth)[0]
    row["pos_err_file_um"] = H.rms_um(case.nominal, case.true)
    sensors = case.nominal
    if row["calibrated"]:
        cal = oatomo.calibrate(scan, grid)  # deterministic: the default's calibration
        sensors = cal.sensors
    row["pos_err_default_um"] = H.rms_um(sensors, case.true)
    row["c_err_file_pct"] = 100 * (case.c_file / case.c_true - 1)
    row["c_err_default_pct"] = 100 * (float(prov["speed_of_sound"]) / case.c_true - 1)
    row["time_ratio"] = row["t_default"] / row["t_tv50"]
    return row


def report_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: the default per geometry (means of registered PSNR over the scans)."""
    lines = ["| geometry | scans | TV, file | default | TV, true | default - file: mean, worst "
             "| below file by > 0.1 dB | file kept (no better fit) | c kept (short aperture) "
             "| position error ratio (median) | default / TV50 (median) |",
             "|" + "---|" * 11]
    for g in list(dict.fromkeys(r["geometry"] for r in rows)) + ["all"]:
        sel = [r for r in rows if g in ("all", r["geometry"])]
        gain = [r["psnr_default_reg"] - r["psnr_tv_file_reg"] for r in sel]
        ratio = [r["pos_err_default_um"] / r["pos_err_file_um"] for r in sel]
        kept = sum(bool(r["why_not"]) for r in sel)
        ckept = sum(any("speed of sound is not identifiable" in n for n in r["notes"])
                    for r in sel)
        mean = {k: float(np.mean([r[k] for r in sel]))
                for k in ("psnr_tv_file_reg", "psnr_default_reg", "psnr_tv_true_reg")}
        name = f"**{g}**" if g == "all" else g
        lines.append(
            f"| {name} | {len(sel)} | {mean['psnr_tv_file_reg']:.1f} "
            f"| {mean['psnr_default_reg']:.1f} | {mean['psnr_tv_true_reg']:.1f} "
            f"| {np.mean(gain):+.1f}, {min(gain):+.1f} | {sum(x < -0.1 for x in gain)} "
            f"| {kept} | {ckept} | {np.median(ratio):.2f} "
            f"| {np.median([r['time_ratio'] for r in sel]):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=3000)
    ap.add_argument("--geometries", default=",".join(g for g in GEOMETRIES if g != "ring512"))
    ap.add_argument("--phantoms", default=",".join(H.PHANTOMS))
    ap.add_argument("--mode", choices=("explore", "default"), default="default",
                    help="explore: the candidate statistics (the tuning tables); default: "
                         "the default pipeline (the report tables)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--table", action="store_true",
                    help="print the report table of a --mode default JSON and stop")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.table:
        print(report_table(json.loads(out.read_text())))
        return 0
    rows = json.loads(out.read_text()) if out.exists() else []
    done = {(r["geometry"], r["phantom"], r["seed"]) for r in rows}
    H.warm_up()
    for g in args.geometries.split(","):
        for k in args.phantoms.split(","):
            if (g, k, args.seed) in done:
                continue
            if args.mode == "default":
                row = run_default(g, k, args.seed)
                rows.append(row)
                out.write_text(json.dumps(rows, indent=1))
                print(f"{g} {k}: TV file {row['psnr_tv_file_reg']:.1f}, default "
                      f"{row['psnr_default_reg']:.1f} "
                      f"({row['psnr_default_reg'] - row['psnr_tv_file_reg']:+.1f}), true "
                      f"{row['psnr_tv_true_reg']:.1f}; pos {row['pos_err_file_um']:.0f} -> "
                      f"{row['pos_err_default_um']:.0f} um; c {row['c_err_file_pct']:+.2f} "
                      f"-> {row['c_err_default_pct']:+.2f} %; {row['time_ratio']:.1f} TV50; "
                      f"{row['why_not'] or ''} {' | '.join(row['notes'])}", flush=True)
                continue
            row = run(g, k, args.seed)
            rows.append(row)
            out.write_text(json.dumps(rows, indent=1))
            gain = row.get("psnr_tv_cal_reg", math.nan) - row["psnr_tv_file_reg"]
            print(f"{g} {k}: TV file {row['psnr_tv_file_reg']:.1f}, cal "
                  f"{row.get('psnr_tv_cal_reg', math.nan):.1f} ({gain:+.1f}), true "
                  f"{row['psnr_tv_true_reg']:.1f}; pos {row['pos_err_file_um']:.0f} -> "
                  f"{row.get('pos_err_cal_um', math.nan):.0f} um; held-out "
                  f"{row.get('heldout_file', math.nan):.3f} -> "
                  f"{row.get('heldout_cal', math.nan):.3f}; std ratio "
                  f"{row.get('std_ratio', math.nan):.2f}; check "
                  f"{row['check_spread_um']:.0f} um {row.get('refused', '')}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Self-calibration on an image grid that cuts the object: the grid widened to the object.

A user who reconstructs a region of interest asks for a field of view smaller than the
object. The records then hold signals of absorbers outside the image, which the model on
that grid cannot explain, and a calibration on it moves the sensors to explain them.
:func:`oatomo.calibrate` now calibrates on a grid of the object's extent seen in the
first arrivals (:func:`oatomo.calibration.calibration_grid`, same pixel count) when the
image grid is less than :data:`oatomo.calibration.OBJECT_COVER` of it.

Per scan of the held-out benchmark's generator (``heldout_default.py``: oatomo's model on
the 2x finer grid, a detector band and 1-2 % noise, the file's positions and speed of
sound off) and per image field of view (the benchmark's 12.8 mm, which the phantoms fill,
and 0.6 of it, a centred region of interest), on that image grid (0.1 mm pixels) and
against the truth cropped to it (registered PSNR, dB):

* ``TV file`` / ``TV true``: TV with the file's and with the true geometry;
* ``before``: TV at the estimate of ``oatomo.calibrate(scan, grid, object_grid=False)``
  (the calibration on the image grid, as before);
* ``after``: TV at the estimate of ``oatomo.calibrate(scan, grid)`` (widened when the
  rule says so; ``widened`` records whether it did);
* ``default``: what ``oatomo.reconstruct(scan, grid=grid)`` returns now (check, the
  calibration, TV, refinement);
* ``check asked``: the position check on the image grid (``before``) and on the grid the
  calibration takes (``after``, what the pipeline runs now); on the correct files of the
  same scans (true positions and speed of sound in the file) that is a false alarm.

Sets: ``tuning`` (the cases of ``joint_objective.py offsets``, seeds 2000 and 2001,
rings of 32/64/128 sensors and a 270 deg arc; the rule's constant was argued, then checked
there) and ``report`` (the fresh geometries and phantom kinds of ``heldout_default.py
--fresh``, seed 1500: rings of 40/96/192, arcs of 240/135 deg, a 160-element linear
array; thin vessels, textures, annuli, capillaries; none of them used to choose anything).

Run (appends to ``--out`` and skips what it holds; ``--table`` prints the table)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/object_grid.py tuning \\
        --out benchmarks/calibration/object_grid_tuning.json
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/object_grid.py report \\
        --out benchmarks/calibration/object_grid_report.json

``--default-only``: what the default returns on the report set's wrong files at 0.6 of
the field of view, nothing else (to compare two versions of the pipeline).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402
from joint_objective import OFFSET_CASES, tv_psnr  # noqa: E402

import oatomo  # noqa: E402
from oatomo.calibration import calibration_grid, check_positions  # noqa: E402
from oatomo.errors import InputError  # noqa: E402

FOV_SCALES = (1.0, 0.6)
REPORT_SEED = 1500


def cases(which: str) -> list[tuple[str, str, int]]:
    """The (geometry, phantom, seed) of a set."""
    if which == "tuning":
        return list(OFFSET_CASES)
    return [(g, k, REPORT_SEED) for g in H.FRESH_GEOMETRIES for k in H.FRESH_PHANTOMS]


def row(geometry: str, kind: str, seed: int, scale: float, correct: bool = False
        ) -> dict[str, Any]:
    case = H.make_case(geometry, kind, seed, correct=correct)
    grid, truth = H.region_of_interest(case.grid, case.truth, scale)

    out: dict[str, Any] = {
        "geometry": geometry, "phantom": kind, "seed": seed, "fov_scale": scale,
        "correct": correct,
        "fov_m": grid.fov, "file_um": H.rms_um(case.nominal, case.true),
        "tv_file": tv_psnr(case, case.scan.sensors.positions, case.c_file, grid, truth),
        "tv_true": tv_psnr(case, case.true.positions, case.c_true, grid, truth)}
    wide_grid, note = calibration_grid(case.scan, grid)
    out["widened"] = note is not None
    for name, g in (("before", grid), ("after", wide_grid)):
        check = check_positions(case.scan.sinogram, case.scan.sensors,
                                case.scan.acquisition, g)
        out[f"{name}_check_asks"] = bool(check.needs_calibration)
        if correct:
            continue
        t = time.perf_counter()
        try:
            cal = oatomo.calibrate(case.scan, grid, object_grid=name == "after")
        except InputError as exc:  # the pipeline keeps the file's geometry then
            out[f"{name}_refused"] = exc.problem
            out[name], out[f"{name}_um"] = out["tv_file"], out["file_um"]
        else:
            out[name] = tv_psnr(case, cal.sensors.positions, cal.speed_of_sound, grid,
                                truth)
            out[f"{name}_um"] = H.rms_um(cal.sensors, case.true)
        out[f"{name}_s"] = time.perf_counter() - t
    out["default"] = H.register(oatomo.reconstruct(case.scan, grid=grid).image, truth)[0]
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per wrong file, then the means per field of view; then the position
    check on the correct files."""
    wrong = [r for r in rows if not r.get("correct")]
    head = ["scan", "fov (mm)", "widened", "TV file", "before", "after", "default",
            "TV true", "after - before", "position error (um): file / before / after"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in wrong:
        refused = "".join(" (refused)" for k in ("before", "after") if f"{k}_refused" in r)
        lines.append(
            f"| {r['geometry']} {r['phantom']} ({r['seed']}){refused} | "
            f"{1e3 * r['fov_m']:.1f} | {'yes' if r['widened'] else 'no'} | "
            f"{r['tv_file']:.1f} | {r['before']:.1f} | {r['after']:.1f} | "
            f"{r['default']:.1f} | {r['tv_true']:.1f} | {r['after'] - r['before']:+.2f} | "
            f"{r['file_um']:.0f} / {r['before_um']:.0f} / {r['after_um']:.0f} |")
    lines += ["", "| fov scale | wrong files | widened | check asked: before / after | "
              "TV file | before | after | default | TV true | after - before: mean, worst |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for scale in sorted({r["fov_scale"] for r in wrong}, reverse=True):
        sel = [r for r in wrong if r["fov_scale"] == scale]
        d = [r["after"] - r["before"] for r in sel]

        def mean(key: str, sel: list[dict[str, Any]] = sel) -> str:
            return f"{np.mean([r[key] for r in sel]):.2f}"

        lines.append(f"| {scale:g} | {len(sel)} | {sum(r['widened'] for r in sel)} | "
                     f"{sum(r['before_check_asks'] for r in sel)} / "
                     f"{sum(r['after_check_asks'] for r in sel)} | "
                     f"{mean('tv_file')} | {mean('before')} | {mean('after')} | "
                     f"{mean('default')} | {mean('tv_true')} | {np.mean(d):+.2f}, "
                     f"{min(d):+.2f} |")
    right = [r for r in rows if r.get("correct")]
    if right:
        lines += ["", "| fov scale | correct files | widened | false alarms: before / after "
                  "| default - TV true (dB): mean, worst |", "|---|---|---|---|---|"]
        for scale in sorted({r["fov_scale"] for r in right}, reverse=True):
            sel = [r for r in right if r["fov_scale"] == scale]
            d = [r["default"] - r["tv_true"] for r in sel]
            lines.append(f"| {scale:g} | {len(sel)} | {sum(r['widened'] for r in sel)} | "
                         f"{sum(r['before_check_asks'] for r in sel)} / "
                         f"{sum(r['after_check_asks'] for r in sel)} | {np.mean(d):+.2f}, "
                         f"{min(d):+.2f} |")
    return "\n".join(lines)


def default_row(geometry: str, kind: str, seed: int, scale: float = 0.6
                ) -> dict[str, Any]:
    """What ``oatomo.reconstruct(scan, grid=grid)`` returns on a wrong file's region of
    interest: registered PSNR, whether the calibration grid was widened, whether the
    image was refined."""
    case = H.make_case(geometry, kind, seed)
    grid, truth = H.region_of_interest(case.grid, case.truth, scale)
    rec = oatomo.reconstruct(case.scan, grid=grid)
    notes = (rec.provenance.get("calibration") or {}).get("notes", [])
    row = {"geometry": geometry, "phantom": kind, "seed": seed, "fov_scale": scale,
           "default": H.register(rec.image, truth)[0],
           "widened": any("cuts the object" in note for note in notes),
           "refined": bool(rec.refined)}
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", choices=("tuning", "report"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--table", action="store_true", help="print the table and stop")
    ap.add_argument("--default-only", action="store_true",
                    help="only what the default returns on the wrong files of the region "
                    "of interest (0.6), its registered PSNR and decisions: two versions "
                    "compared by running it with each on the path")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.default_only:
        H.warm_up()
        rows = [default_row(g, k, seed) for g, k, seed in cases(args.set)]
        out.write_text(json.dumps(rows, indent=1))
        return 0
    rows: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
    if not args.table:
        H.warm_up()
        for correct in (False, True):
            for g, k, seed in cases(args.set):
                for scale in FOV_SCALES:
                    if any((r["geometry"], r["phantom"], r["seed"], r["fov_scale"],
                            r.get("correct", False)) == (g, k, seed, scale, correct)
                           for r in rows):
                        continue
                    rows.append(row(g, k, seed, scale, correct))
                    tmp = out.with_suffix(".tmp")
                    tmp.write_text(json.dumps(rows, indent=1))
                    tmp.replace(out)
                    print(f"{g} {k} {seed} x{scale:g}{' correct' if correct else ''}: done",
                          flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

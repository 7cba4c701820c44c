"""The position check of ``oatomo reconstruct``'s default (``calibrate="auto"``): how often
it asks for calibration when the file is wrong, and when it is right.

For every scan of one or more family evaluation sets (``oatomo family evalset`` or the
``evalset`` folders that ``bench_calibrated_inputs.py`` writes: held-out phantom kinds,
noise, band limits, the scanners' speed-of-sound mismatch), the check
(:func:`oatomo.calibration.check_positions`) is run twice:

* with the file's geometry (nominal positions and speed of sound): the scan as a user has it;
* with the true positions and speed of sound: the same data with a file that is right.

The first measures detection, the second false alarms. The check's constants (folds,
iterations, box, the threshold of half a pixel and the noise guard) were chosen on the
calibration benchmark's tuning scans (32/64-sensor rings and a 270 degree arc with `vessels` seed 1,
`vessel-tree` seed 3, `disks` seed 7 and `blobs` seed 2), not on these.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/bench_position_check.py
out/calibrated_inputs/evalset out/calibrated_inputs_none/evalset ...``
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from oatomo.calibration import check_positions  # noqa: E402
from oatomo.evaluation.refiners import eval_acquisition, eval_files  # noqa: E402
from oatomo.geometry import SensorArray  # noqa: E402


def rows_of(evalset: Path) -> list[dict]:
    """One row per scan: the check with the file's and with the true geometry."""
    rows = []
    for d, grid in eval_files(evalset):
        for i in range(len(d["truth"])):
            acq = eval_acquisition(d, i)
            sino = d["sinogram"][i][:, :acq.n_samples]
            row = {"geometry": str(d["geometry"]), "perturbation": str(d["perturbation"]),
                   "item": i}
            for name, sensors, a in (
                    ("file", SensorArray(d["nominal"][i]), acq),
                    ("true", SensorArray(d["true"][i]),
                     replace(acq, speed_of_sound=float(d["true_speed"][i])))):
                chk = check_positions(sino, sensors, a, grid)
                row[f"{name}_spread_um"] = chk.spread * 1e6
                row[f"{name}_offset_um"] = chk.offset * 1e6
                row[f"{name}_cal"] = chk.needs_calibration
                row[f"{name}_s"] = chk.time_s
            rows.append(row)
            print(row, flush=True)
    return rows


def to_markdown(rows: list[dict]) -> str:
    lines = ["| geometry | perturbation | n | calibrates, file's geometry | median spread (um) "
             "| median abs. common shift (um) | calibrates, true geometry (false alarms) "
             "| median spread (um) | median abs. common shift (um) |",
             "|---|---|---|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r["geometry"], r["perturbation"]) for r in rows))
    for g, p in [*keys, ("all", "")]:
        sel = [r for r in rows if g == "all" or (r["geometry"], r["perturbation"]) == (g, p)]
        cells = []
        for name in ("file", "true"):
            cells.append(f"{sum(r[name + '_cal'] for r in sel)} / {len(sel)}")
            cells.append(f"{np.median([r[name + '_spread_um'] for r in sel]):.0f}")
            cells.append(f"{np.median([abs(r[name + '_offset_um']) for r in sel]):.0f}")
        lines.append(f"| {g} | {p} | {len(sel)} | " + " | ".join(cells) + " |")
    t = np.median([r["file_s"] for r in rows])
    lines.append("")
    lines.append(f"Median time of a check: {t:.2f} s.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("evalsets", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="write the table here (markdown)")
    args = ap.parse_args(argv)
    rows = [r for e in args.evalsets for r in rows_of(e)]
    md = to_markdown(rows)
    if args.out:
        args.out.write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

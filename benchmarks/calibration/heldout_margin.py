"""Does the held-out misfit tell a calibration that loses against TV with the file's
geometry?

The default pipeline keeps the file's geometry when the calibrated one predicts held-out
records no better (:attr:`oatomo.calibration.Calibration.improves_on_file`). This
benchmark asks whether a margin on that test -- a ratio of the calibrated geometry's
held-out misfit to the file's above some value -- would catch the calibrations that end
below TV with the file's geometry. On each scan of the tuning arrays (``speed_step.py``'s
and ``joint_gauss_newton.py``'s: 100, 150, 200 and 300 degree arcs, a 96-element linear
array, a 36-sensor ring; their phantom kinds; ``heldout_default.py``'s generator) it
records the registered PSNR of the default's TV with the calibrated and with the file's
geometry and the two held-out misfits.

Run::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/calibration/heldout_margin.py --seed 2000 \\
        --out benchmarks/calibration/heldout_margin.json      # and --seed 2001
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402
import joint_gauss_newton as G  # noqa: E402
import speed_step as S  # noqa: E402  (adds its tuning arrays)

import oatomo  # noqa: E402
from oatomo._atomic import atomic_path  # noqa: E402
from oatomo.calibration import apply_calibration  # noqa: E402

GEOMETRIES = ("arc100", "arc150", "linear96", "arc200", "ring36", "arc300")


def run(geometry: str, kind: str, seed: int) -> dict[str, Any]:
    """One scan: TV with the calibrated and with the file's geometry, held-out misfits."""
    case = H.make_case(geometry, kind, seed)
    cal = oatomo.calibrate(case.scan, case.grid)
    img, _ = H._tv(apply_calibration(case.scan, cal), case.grid)
    img_file, _ = H._tv(case.scan, case.grid)
    held = cal.heldout_misfit or {}
    return {"geometry": geometry, "phantom": kind, "seed": seed,
            "psnr_cal": H.register(img, case.truth)[0],
            "psnr_file": H.register(img_file, case.truth)[0],
            "held_cal": held.get("calibrated"), "held_file": held.get("file"),
            "notes": list(cal.notes)}


def table(rows: list[dict[str, Any]]) -> str:
    """The scans by held-out ratio, and which of them lost against the file's geometry."""
    lines = ["| array | phantom | seed | held-out misfit, calibrated / file's | "
             "TV calibrated - TV file's (dB, registered) |", "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["held_cal"] / r["held_file"]):
        lines.append(f"| {r['geometry']} | {r['phantom']} | {r['seed']} | "
                     f"{r['held_cal'] / r['held_file']:.3f} | "
                     f"{r['psnr_cal'] - r['psnr_file']:+.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--table", action="store_true", help="print the table and stop")
    a = ap.parse_args(argv)
    out = Path(a.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    if not a.table:
        H.warm_up()
        phantoms = tuple(dict.fromkeys(S.TUNING_PHANTOMS + G.TUNING_PHANTOMS))
        for geo in GEOMETRIES:
            for kind in phantoms:
                if any((r["geometry"], r["phantom"], r["seed"]) == (geo, kind, a.seed)
                       for r in rows):
                    continue
                rows.append(run(geo, kind, a.seed))
                print(json.dumps(rows[-1]), flush=True)
                with atomic_path(out) as tmp:
                    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows))
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())

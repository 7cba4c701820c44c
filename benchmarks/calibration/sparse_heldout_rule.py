"""A stricter held-out rule on sparse rings: what keeping the file's geometry more often
would save on correct files and cost on wrong ones.

The default keeps a calibration only when its geometry predicts held-out records better
than the file's (:attr:`oatomo.calibration.Calibration.improves_on_file`: misfit ratio
below 0.95). On 12-24-sensor rings, where the position check asks on many correct files,
a few of those calibrations pass the rule and make the image worse (2.2-2.9 dB on three
report files). Per file of ``check_rates.py`` on those rings (correct, and positions off
by a quarter, half and all of the held-out benchmark's errors; the check's own decision
kept), this script records the held-out misfit ratio of ``oatomo.calibrate`` and the gain
of TV at the estimate over TV at the file's geometry (registered PSNR, dB), then tabulates
for ratio thresholds X what the default would return (the estimate's gain when the ratio
is below X, else 0), summed over the files.

Run (``tuning``: seeds 6000-6003 of ``check_rates_tuning.json``; ``report``: seeds
5000-5007 of ``check_rates.json``)::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/calibration/sparse_heldout_rule.py tuning \\
        --out benchmarks/calibration/sparse_heldout_rule_tuning.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_costs as CC  # noqa: E402
import check_rates as CR  # noqa: E402
import heldout_default as H  # noqa: E402

import oatomo  # noqa: E402
from oatomo.calibration import apply_calibration  # noqa: E402

THRESHOLDS = (0.95, 0.92, 0.9, 0.88, 0.85, 0.8)


def row(r: dict[str, Any]) -> dict[str, Any]:
    scan, grid, _, truth = CR.scan_of(r["geometry"], r["kind"], r["phantom"], r["seed"])

    def tv(s: Any) -> float:
        image = oatomo.reconstruct(s, "mb-tv", grid=grid, calibrate=False, refine=False).image
        return H.register(np.asarray(image, np.float64), truth)[0]

    cal = oatomo.calibrate(scan, grid)
    held = cal.heldout_misfit
    return {"geometry": r["geometry"], "kind": r["kind"], "phantom": r["phantom"],
            "seed": r["seed"], "check_asked": r["asked"],
            "ratio": held["calibrated"] / held["file"],
            "gain": tv(apply_calibration(scan, cal)) - tv(scan)}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| ratio below | sum over the files (dB) | correct files calibrated (their "
             "loss, dB) | wrong files kept (the gain lost, dB) |", "|---|---|---|---|"]
    asked = [r for r in rows if r["check_asked"]]
    for x in THRESHOLDS:
        kept = [r for r in asked if r["ratio"] < x]
        fa = [r for r in kept if r["kind"] == "correct"]
        lost = [r for r in asked if r["kind"] != "correct" and r["ratio"] >= x]
        lines.append(f"| {x} | {sum(r['gain'] for r in kept):+.1f} | {len(fa)} "
                     f"({sum(min(r['gain'], 0.0) for r in fa):.1f}) | {len(lost)} "
                     f"({sum(max(r['gain'], 0.0) for r in lost):.1f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", choices=("tuning", "report"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--table", action="store_true", help="print the table and stop")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not args.table:
        name = "check_rates_tuning.json" if args.set == "tuning" else "check_rates.json"
        rates = json.loads((Path(__file__).parent / name).read_text())
        H.warm_up()
        sparse = {g for g in {r["geometry"] for r in rates} if CC.is_sparse(g)}
        rows = [row(r) for r in rates
                if r["geometry"] in sparse and r["kind"] != "speed only"]
        out.write_text(json.dumps(rows, indent=1))
    print(table(json.loads(out.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Do the calibrated positions predict the data better than the file's? Held-out misfit of
the default's calibration against the file's geometry, on the held-out benchmark's scans.

Per wrong-file scan of ``heldout_default.py`` (seed 1000): :func:`oatomo.calibrate` as the
default runs it, then at the schedule's middle level (64 x 64 on the 128 x 128 grid, the
records band-limited to ``c / (3 dx)``) the mean held-out misfit ``1 - rho^2`` of every
sensor's record against the record that the TV image of the other three interleaved folds
predicts (:func:`oatomo.calibration.search.heldout_misfits`, 15 iterations), once with
the file's positions and speed of sound and once with the calibration's. A calibration
that had only fitted noise would not predict the held-out sensors better.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/heldout_prediction.py \\
        --out benchmarks/calibration/heldout_prediction.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402

import oatomo  # noqa: E402
from oatomo.calibration.levels import schedule  # noqa: E402
from oatomo.calibration.search import heldout_misfits, interleaved_folds  # noqa: E402


def misfit(level, positions: np.ndarray, c: float, folds: list[np.ndarray],
           iters: int = 15) -> float:
    """Mean held-out misfit at ``positions`` and speed ``c`` on ``level`` (TV images of
    ``iters`` iterations)."""
    acq = replace(level.acquisition, speed_of_sound=c)
    return float(heldout_misfits(replace(level, acquisition=acq), positions, acq, folds,
                                 iters, None).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=H.FIRST_SEED)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rows = []
    for g in H.GEOMETRIES:
        for k in H.PHANTOMS:
            case = H.make_case(g, k, args.seed)
            cal = oatomo.calibrate(case.scan, case.grid)
            acq = case.scan.acquisition
            level = schedule(case.scan.sinogram.astype(np.float32), acq, case.grid,
                             cal.prior_std, 3, fft=True)[1]
            folds = interleaved_folds(case.nominal.positions, 4)
            row = {"geometry": g, "phantom": k, "seed": args.seed,
                   "misfit_file": misfit(level, case.nominal.positions.astype(np.float64),
                                         acq.speed_of_sound, folds),
                   "misfit_calibrated": misfit(level, cal.sensors.positions.astype(
                       np.float64), cal.speed_of_sound, folds)}
            rows.append(row)
            print(f"{g} {k}: held-out misfit, file {row['misfit_file']:.3f}, calibrated "
                  f"{row['misfit_calibrated']:.3f}", flush=True)
    better = sum(r["misfit_calibrated"] < r["misfit_file"] for r in rows)
    print(f"calibrated predicts better on {better} of {len(rows)} scans")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

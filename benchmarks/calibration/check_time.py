"""Time of the position check against one 50-iteration TV of the same scan, side by side.

On the held-out benchmark's perturbed scans (``heldout_default.py``: its seven arrays,
seed 1000, phantom kinds in rotation), each timed twice in one process after a warm-up and
the faster kept: :func:`oatomo.check_positions` and the default's TV with 50 iterations.

Run::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/check_time.py \\
        --out benchmarks/calibration/check_time.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402

import oatomo  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    H.warm_up()
    rows = []
    for i, geometry in enumerate(H.GEOMETRIES):
        kind = H.PHANTOMS[i % len(H.PHANTOMS)]
        case = H.make_case(geometry, kind, H.FIRST_SEED)
        scan = case.scan
        checks, tvs = [], []
        for _ in range(2):
            t = time.perf_counter()
            check = oatomo.check_positions(scan.sinogram, scan.sensors, scan.acquisition,
                                           case.grid)
            checks.append(time.perf_counter() - t)
            tvs.append(H._tv(scan, case.grid, H.TV_ITERS)[1])
        row = {"geometry": geometry, "phantom": kind, "check_s": min(checks),
               "tv50_s": min(tvs), "ratio": min(checks) / min(tvs),
               "asked": bool(check.needs_calibration)}
        rows.append(row)
        print(f"{geometry} {kind}: check {row['check_s']:.3f} s, TV50 {row['tv50_s']:.3f} s, "
              f"ratio {row['ratio']:.2f}, asked {row['asked']}", flush=True)
    ratios = [r["ratio"] for r in rows]
    print(f"check / TV50: median {np.median(ratios):.2f}, max {np.max(ratios):.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

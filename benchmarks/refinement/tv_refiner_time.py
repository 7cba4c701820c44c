"""Time of the TV refiner's step against one 50-iteration TV of the same scan.

Per scan of the refinement report set (the cached scans of ``tv_residual.py cache``: the
geometries of ``tv_refiner.py`` plus ``ring64``, a vessel tree each, seed 1000), in one
process, side by side: one TV50 (``oatomo.reconstruct(scan, "mb-tv", iters=50,
refine=False)``), then the default ``oatomo.reconstruct(scan)`` of the correct file, whose
provenance times its refinement step (the model with its uncertainty map -- the shipped
mode: the variant decoders' spread -- and the guard; ``--model``: another archive). Each
measured twice, the faster kept. Reports refinement / TV50 per scan and the median. A
scan the cache lacks is simulated as ``tv_refiner.py`` simulates it (the same records).
Run it alone on the machine::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/refinement/tv_refiner_time.py \\
        out/tv_refiner/report --json benchmarks/refinement/tv_refiner_time.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "refinement"))

GEOMETRIES = ("ring32", "ring64", "ring256", "arc270", "arc120", "linear128")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache")
    ap.add_argument("--json")
    ap.add_argument("--model", default=None,
                    help="a refiner archive instead of the shipped one")
    args = ap.parse_args(argv)
    import tv_refiner as T

    import oatomo
    from oatomo.io import Scan

    rows = []
    for g in GEOMETRIES:
        draws = T.draw_case(g, "vessels-thick", 1000)
        grid, _, _, _, true, acq, response, *_ = draws
        stored = Path(args.cache) / f"{g}_vessels-thick_1000.npz"
        # not cached: the same records, simulated as tv_refiner.run_case does
        y = np.load(stored)["y"] if stored.exists() else T.simulated_records(draws)
        scan = Scan(y, true, acq, response=response)
        tv50, refine, total, guard = [], [], [], []
        for _ in range(2):
            t = time.perf_counter()
            oatomo.reconstruct(scan, "mb-tv", grid=grid, iters=50, refine=False,
                               calibrate=False)
            tv50.append(time.perf_counter() - t)
            t = time.perf_counter()
            rec = oatomo.reconstruct(scan, grid=grid, model=args.model)
            total.append(time.perf_counter() - t)
            refine.append(rec.provenance["timings"]["refine"])
            guard.append(rec.provenance["refinement"]["guard"]["time_s"])
        row = {"geometry": g, "sensors": len(true.positions), "tv50_s": min(tv50),
               "refine_s": min(refine), "guard_s": min(guard), "default_s": min(total),
               "refined": bool(rec.refined)}
        row["refine_over_tv50"] = row["refine_s"] / row["tv50_s"]
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                          for k, v in row.items()}), flush=True)
    ratios = [r["refine_over_tv50"] for r in rows]
    print(f"refinement (guard included) / TV50: median {np.median(ratios):.2f}, "
          f"max {max(ratios):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

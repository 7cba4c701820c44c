"""Two TV refiners side by side on the images the default pipeline refines on correct files.

For each cached scan (``tv_residual.py cache``: the record, UBP, TV100 and the truth; the
scans of ``tv_refiner.py``: oatomo's model on the 2x finer grid, detector band, 1-2 %
noise) the TV the default hands the refiner is made again: TV from zero with the detector
response in its operator, run for the number of iterations the default's rule
(``100+stall150`` of ``cold_stall.py``: 100 iterations, then on to 150 while the objective
falls by more than 0.1 % over 10) stopped at, read from that benchmark's JSON of the same
cache (its TV PSNR there must be reproduced: checked). Each refiner archive then refines
that image (:meth:`oatomo.refine.Refiner.refine_scan`, as ``mb-tv``) and the guard judges
it as the pipeline does (:func:`oatomo.refine.guard.check_refined`); PSNR (dB, data range
1, best affine fit) of UBP, TV, each refined image and what each returns.

Run (``--models``: comma list; ``shipped`` is the package's archive)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/refinement/compare_refiners.py \\
        out/tv_refiner/report benchmarks/refinement/cold_stall_report.json \\
        --models shipped,out/tv_refiner/candidate.npz --out compare_report.json
    .venv/bin/python benchmarks/refinement/compare_refiners.py --table --out compare_report.json

``--out`` resumes (finished scans are kept).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "calibration"))
import heldout_default as H  # noqa: E402
import tv_refiner as T  # noqa: E402
from cold_stall import groups, returned  # noqa: E402

from oatomo._atomic import atomic_path  # noqa: E402
from oatomo.recon.model_based import reconstruct_model_based  # noqa: E402
from oatomo.refine import load_refiner  # noqa: E402
from oatomo.resources import default_model_path  # noqa: E402

#: The default's rule on correct files, as ``cold_stall.py`` names it.
RULE = "100+stall150"


def run_scan(refiners: dict[str, Any], geometry: str, kind: str, seed: int, z: Any,
             truth: np.ndarray, iters: int, psnr_tv: float) -> dict[str, Any]:
    """One cached scan: the default's TV made again, each refiner's refined and returned
    images scored."""
    grid, _, _, _, true, acq, response, _, _ = T.draw_case(geometry, kind, seed)
    y = z["y"]
    tv, _ = reconstruct_model_based(y, grid, true, acq, method="tv", n_iter=iters,
                                    response=response)
    row: dict[str, Any] = {"geometry": geometry, "phantom": kind, "seed": seed,
                           "iters": iters, "psnr_ubp": H.score(z["ubp"].astype(np.float64),
                                                               truth),
                           "psnr_tv": H.score(tv.astype(np.float64), truth)}
    row["reproduces_tv"] = bool(abs(row["psnr_tv"] - psnr_tv) < 1e-9)
    for name, refiner in refiners.items():
        row[name] = returned(refiner, tv, y, grid, true, acq, response, truth)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    """Per geometry and per kind: each refiner's returned image minus TV and minus the best
    physics image (max of UBP and TV), the mean and the worst scan, and its guard's
    rejections; the later refiners' returned image minus the first's."""
    models = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    head = " | ".join(f"{m}: returned - TV / - best (worst) / rejected" for m in models)
    out = [f"| group | n | {head} | " + " | ".join(f"{m} - {models[0]} (worst)"
                                                  for m in models[1:]) + " |",
           "|---|---|" + "---|" * (2 * len(models) - 1)]
    for name, rs in groups(rows):
        cells = []
        for m in models:
            ret = np.array([r[m]["psnr_returned"] for r in rs])
            tv = np.array([r["psnr_tv"] for r in rs])
            best = np.maximum(tv, [r["psnr_ubp"] for r in rs])
            rej = sum(not r[m]["guard_passed"] for r in rs)
            cells.append(f"{np.mean(ret - tv):+.2f} / {np.mean(ret - best):+.2f} "
                         f"({np.min(ret - best):+.2f}) / {rej}")
        for m in models[1:]:
            d = np.array([r[m]["psnr_returned"] - r[models[0]]["psnr_returned"] for r in rs])
            cells.append(f"{d.mean():+.2f} ({d.min():+.2f})")
        out.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    same = sum(r["reproduces_tv"] for r in rows)
    out += ["", f"the default's TV reproduced on {same} of {len(rows)} scans"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", nargs="?", help="a tv_residual.py cache directory")
    ap.add_argument("stall", nargs="?", help="cold_stall.py's JSON of the same cache")
    ap.add_argument("--models", default="shipped",
                    help="comma list of refiner archives (shipped: the package's)")
    ap.add_argument("--out", required=True, help="JSON of the rows (resumed)")
    ap.add_argument("--geometries", default="", help="comma list (default: all)")
    ap.add_argument("--table", action="store_true", help="print the table of --out")
    a = ap.parse_args(argv)
    out = Path(a.out)
    rows: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
    if a.table:
        print(table(rows))
        return 0
    if a.cache is None or a.stall is None:
        ap.error("a cache directory and cold_stall.py's JSON are needed unless --table")
    stall = {(r["geometry"], r["phantom"], r["seed"]): r[RULE]
             for r in json.loads(Path(a.stall).read_text())}
    refiners = {}
    for m in a.models.split(","):
        path = default_model_path("mb-tv") if m == "shipped" else Path(m)
        refiners[m if m == "shipped" else Path(m).stem] = load_refiner(path)
    done = {(r["geometry"], r["phantom"], r["seed"]) for r in rows}
    keep = {g for g in a.geometries.split(",") if g}
    for geo, kind, seed, z, truth in T.cached_scans(Path(a.cache)):
        key = (geo, kind, seed)
        if key in done or (keep and geo not in keep) or key not in stall:
            continue
        row = run_scan(refiners, geo, kind, seed, z, truth, stall[key]["iters"],
                       stall[key]["psnr_tv"])
        rows.append(row)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(rows, indent=1))
        print(f"{geo}/{kind}/{seed}: {row['iters']} it, TV {row['psnr_tv']:.2f} "
              f"(reproduced {row['reproduces_tv']}); " + ", ".join(
                  f"{m} {row[m]['psnr_returned']:.2f}"
                  f"{'' if row[m]['guard_passed'] else ' (guard)'}"
                  for m in refiners), flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The TV of a correct file run past 100 iterations with the stall test, before the refiner.

On a scan whose positions are right the default ran TV from zero with the detector
response in its operator for :data:`~oatomo.pipeline.options.RESPONSE_ITERS` (100)
iterations and refined it (the rule ``100`` below); it now runs the rule ``100+stall150``
(:data:`~oatomo.pipeline.options.RESPONSE_MAX_ITERS`), chosen here. After self-calibration
the TV instead stops when its objective stalls
(:data:`~oatomo.pipeline.policy.WARM_STALL_TOL`: less than 0.1 % decrease over 10
iterations, tested from iteration 30) or at :data:`~oatomo.pipeline.policy.WARM_ITERS`
(120): the disks and textures whose TV is still converging gain, the vessel trees stop
early. This benchmark measures the same rule on correct files, through the refiner and its
guard, so that what the default returns is compared, not the TV alone.

Per cached scan (``tv_residual.py cache``: the record, UBP, the pipeline's TV100 and the
truth; the scans of ``tv_refiner.py``, oatomo's model on the 2x finer grid, detector band,
1-2 % noise): TV from zero to ``--cap`` iterations with every iterate kept (its iterate at
100 must equal the cached TV100 to the bit: checked); then for each rule -- 100 iterations
(the default before), the stall test under caps 120, 150 and ``--cap``, and the same tested
only from iteration 100 on (``100+stall``: never fewer than before) -- the iterate it stops
at, refined by the shipped TV refiner (:meth:`oatomo.refine.Refiner.refine_scan` with that
image as ``mb-tv``) and judged by the guard as the pipeline does
(:func:`oatomo.refine.guard.check_refined`, the rule for a TV image): PSNR (dB, data range
1, best affine fit) of the TV, of the refined image and of what is returned (the refined
image when the guard passes it, else the TV), and the iterations.

Tuning set (``out/tv_refiner/tuning``: a 48-ring and a 200 deg arc, thick vessels and
disks, seeds 2000-2001; ``out/tv_refiner/tuning_wide``: the same arrays and seeds with
thin vessels, textures and points): where the rule was chosen. Report set
(``out/tv_refiner/report``: rings of 32, 64 and 256 sensors, 270 and 120 deg arcs, a
128-element linear array; thin and thick vessel trees, disks, textures, points; seeds
1000-1001): where it is measured.

Run::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python \\
        benchmarks/refinement/tv_residual.py cache out/tv_refiner/tuning --tuning
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python \\
        benchmarks/refinement/tv_residual.py cache out/tv_refiner/tuning_wide --tuning \\
        --kinds vessels-thin,texture,points
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python \\
        benchmarks/refinement/tv_residual.py cache out/tv_refiner/report \\
        --geometries ring32,ring64,ring256,arc270,arc120,linear128
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/refinement/cold_stall.py \\
        out/tv_refiner/tuning --out benchmarks/refinement/cold_stall_tuning.json
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/refinement/cold_stall.py \\
        out/tv_refiner/tuning_wide --out benchmarks/refinement/cold_stall_tuning_wide.json
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/refinement/cold_stall.py \\
        out/tv_refiner/report --out benchmarks/refinement/cold_stall_report.json
    .venv/bin/python benchmarks/refinement/cold_stall.py --table \\
        --out benchmarks/refinement/cold_stall_report.json

``--out`` resumes (finished scans are kept); ``--geometries`` picks among the cache's.
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
from warm_stall import stop_at  # noqa: E402

from oatomo._atomic import atomic_path  # noqa: E402
from oatomo.pipeline.options import RESPONSE_ITERS  # noqa: E402
from oatomo.pipeline.policy import WARM_STALL_TOL  # noqa: E402
from oatomo.recon.model_based import (  # noqa: E402
    STALL_MIN_ITERS,
    STALL_WINDOW,
    reconstruct_model_based,  # noqa: E402
)
from oatomo.refine import load_refiner  # noqa: E402
from oatomo.refine.guard import check_refined, guard_rule  # noqa: E402
from oatomo.resources import default_model_path  # noqa: E402

#: Caps of the stall-test rules besides ``--cap`` (the default's 100 without the test is
#: always scored).
CAPS = (120, 150)


def run_scan(refiner: Any, geometry: str, kind: str, seed: int, z: Any, truth: np.ndarray,
             cap: int) -> dict[str, Any]:
    """One cached scan: the TV trajectory to ``cap`` and each rule's returned image."""
    grid, _, _, _, true, acq, response, _, _ = T.draw_case(geometry, kind, seed)
    y = z["y"]
    iterates: dict[int, np.ndarray] = {}
    image, record = reconstruct_model_based(
        y, grid, true, acq, method="tv", n_iter=cap, response=response,
        on_iteration=lambda k, x: iterates.__setitem__(k, x.copy()))
    if record["n_iter"] < cap:  # the solver's own convergence test ended it
        for k in range(record["n_iter"] + 1, cap + 1):
            iterates[k] = image
    same = bool(np.array_equal(iterates[RESPONSE_ITERS], z["tv"]))
    row: dict[str, Any] = {"geometry": geometry, "phantom": kind, "seed": seed,
                           "reproduces_tv100": same, "n_iter_run": record["n_iter"],
                           "objective": [float(v) for v in record["objective"]]}
    rules = {"100": RESPONSE_ITERS}
    for c in (*CAPS, cap):
        rules[f"stall{c}"] = stop_at(record["objective"], WARM_STALL_TOL, STALL_MIN_ITERS,
                                     STALL_WINDOW, cap=c)
    for c in (*CAPS, cap):  # the 100 iterations kept, the test only beyond them
        rules[f"100+stall{c}"] = stop_at(record["objective"], WARM_STALL_TOL,
                                         RESPONSE_ITERS, STALL_WINDOW, cap=c)
    for name, k in rules.items():
        tv = iterates[min(k, len(iterates))]
        row[name] = {"iters": int(k), "psnr_tv": H.score(tv.astype(np.float64), truth),
                     **returned(refiner, tv, y, grid, true, acq, response, truth)}
    return row


def returned(refiner: Any, tv: np.ndarray, y: np.ndarray, grid: Any, true: Any, acq: Any,
             response: Any, truth: np.ndarray) -> dict[str, Any]:
    """``tv`` refined as the pipeline refines a correct file's TV and judged by its
    guard: the refined image's PSNR, the guard's verdict and the PSNR of what is returned
    (the refined image when it passed, else ``tv``)."""
    refined = refiner.refine_scan(y, true, acq, grid, n_samples=0, check=False,
                                  images={"mb-tv": tv}).refined
    verdict = check_refined(refined, tv, y, grid, true, acq, response=response,
                            rule=guard_rule("mb-tv"))
    kept = refined if verdict.passed else tv
    return {"psnr_refined": H.score(np.asarray(refined, np.float64), truth),
            "guard_passed": bool(verdict.passed),
            "psnr_returned": H.score(np.asarray(kept, np.float64), truth)}


def groups(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The tables' groups: every row, then the rows of each geometry and of each phantom
    kind, in their first appearance's order."""
    out = [("all", rows)]
    for field in ("geometry", "phantom"):
        for g in dict.fromkeys(r[field] for r in rows):
            out.append((g, [r for r in rows if r[field] == g]))
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """Per geometry and per kind: each rule's returned PSNR minus the default's (mean,
    worst) and its mean iterations; the TV's change alone beside it."""
    rules = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    out = ["| group | n | " + " | ".join(f"{r}: returned d (worst) / TV d / iters"
                                         for r in rules[1:]) + " |",
           "|---|---|" + "---|" * (len(rules) - 1)]
    for name, rs in groups(rows):
        cells = []
        for rule in rules[1:]:
            d = np.array([r[rule]["psnr_returned"] - r["100"]["psnr_returned"] for r in rs])
            dtv = np.mean([r[rule]["psnr_tv"] - r["100"]["psnr_tv"] for r in rs])
            it = np.mean([r[rule]["iters"] for r in rs])
            cells.append(f"{d.mean():+.2f} ({d.min():+.2f}) / {dtv:+.2f} / {it:.0f}")
        out.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    base = np.mean([r["100"]["psnr_returned"] - r["100"]["psnr_tv"] for r in rows])
    out += ["", f"returned - TV100 under the default (100 iterations): {base:+.2f} dB; "
            f"TV at 100 reproduces the cache on {sum(r['reproduces_tv100'] for r in rows)} "
            f"of {len(rows)} scans"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", nargs="?", help="a tv_residual.py cache directory")
    ap.add_argument("--out", required=True, help="JSON of the rows (resumed)")
    ap.add_argument("--cap", type=int, default=200, help="the longest run recorded")
    ap.add_argument("--geometries", default="", help="comma list (default: all)")
    ap.add_argument("--table", action="store_true", help="print the table of --out")
    a = ap.parse_args(argv)
    out = Path(a.out)
    rows: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
    if a.table:
        print(table(rows))
        return 0
    if a.cache is None:
        ap.error("a cache directory is needed unless --table")
    if a.cap < max(RESPONSE_ITERS, *CAPS):
        ap.error(f"--cap must be at least {max(RESPONSE_ITERS, *CAPS)}")
    done = {(r["geometry"], r["phantom"], r["seed"]) for r in rows}
    keep = {g for g in a.geometries.split(",") if g}
    refiner = load_refiner(default_model_path("mb-tv"))
    for geo, kind, seed, z, truth in T.cached_scans(Path(a.cache)):
        if (geo, kind, seed) in done or (keep and geo not in keep):
            continue
        row = run_scan(refiner, geo, kind, seed, z, truth, a.cap)
        rows.append(row)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(rows, indent=1))
        print(f"{geo}/{kind}/{seed}: reproduces TV100 {row['reproduces_tv100']}; " + ", ".join(
            f"{r} {row[r]['iters']} it TV {row[r]['psnr_tv']:.2f} returned "
            f"{row[r]['psnr_returned']:.2f}{'' if row[r]['guard_passed'] else ' (guard)'}"
            for r in row if isinstance(row[r], dict)), flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

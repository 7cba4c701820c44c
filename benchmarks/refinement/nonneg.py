"""The refined image kept non-negative: the TV refiner's answer against the same answer
with its negative pixels set to 0, on correct files.

For each scan of one or more caches (``tv_refiner.py --cache``: the record, UBP, the
pipeline's TV and the truth beside it): the refiner's answer as the pipeline computes it
(:meth:`oatomo.refine.Refiner.refine_scan` of the cached TV image, its test-time
augmentation), the refinement guard's verdict on it (the rule for a TV image), and PSNR
(dB, range 1, after the best affine fit) of TV, the answer and the answer clipped at 0;
``kept``/``kept_clipped``: what the pipeline returns with the guard judging the answer
(TV when it fails). Prints per cache the clipped minus the raw answer (mean, worst,
best) and the same for what is kept.

``--family EVAL_DIR``: the same for the scanner-family refiner of UBP and DAS images
(``model`` its archive) on an evaluation set of ``oatomo refiner eval-set`` (nominal
positions, the set's band; PSNR of the model's answer and of it clipped at 0).

Run::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/refinement/nonneg.py \\
        oatomo/resources/models/tv_refiner.npz out/tv_refiner/tuning \\
        --json benchmarks/refinement/nonneg_tuning.json
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/refinement/nonneg.py \\
        oatomo/resources/models/tv_refiner.npz out/tv_refiner/report,out/tv_refiner/fresh \\
        --json benchmarks/refinement/nonneg_heldout.json
    .venv/bin/oatomo refiner eval-set -o out/refiner/eval --seed 2
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/refinement/nonneg.py \\
        oatomo/resources/models/family_refiner.npz --family out/refiner/eval \\
        --json benchmarks/refinement/nonneg_family.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks" / "calibration"),
                str(ROOT / "benchmarks" / "refinement")]

import heldout_default as H  # noqa: E402
import identifiability  # noqa: E402, F401  (registers the short arrays of map_tuning)
import tv_refiner as T  # noqa: E402

from oatomo.refine import load_refiner  # noqa: E402
from oatomo.refine.guard import check_refined, guard_rule  # noqa: E402


def family(ref: Any, eval_dir: str) -> list[dict[str, Any]]:
    """``--family``: the scanner-family refiner's answer and the answer clipped at 0 on
    every scan of an evaluation set."""
    from oatomo.evaluation.refiners import eval_acquisition, eval_files
    from oatomo.geometry import SensorArray

    rows = []
    for data, grid in eval_files(eval_dir):
        for i in range(len(data["truth"])):
            acq = eval_acquisition(data, i)
            raw = ref.refine_scan(data["sinogram"][i][:, :acq.n_samples],
                                  SensorArray(data["nominal"][i]), acq, grid,
                                  band=tuple(float(v) for v in data["band"][i]),
                                  n_samples=0, check=False).refined
            truth = data["truth"][i].astype(np.float64)
            rows.append({"geometry": str(data["geometry"]),
                         "perturbation": str(data["perturbation"]), "item": i,
                         "phantom": str(data["kind"][i]),
                         "refined": H.score(raw.astype(np.float64), truth),
                         "clipped": H.score(np.maximum(raw, 0).astype(np.float64), truth)})
    d = np.array([r["clipped"] - r["refined"] for r in rows])
    print(f"{eval_dir} ({len(rows)} scans): clipped - refined mean {d.mean():+.3f} dB, "
          f"worst {d.min():+.3f}, best {d.max():+.3f}; below {int((d < 0).sum())}")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("caches", nargs="?", help="cache directories, comma-separated")
    ap.add_argument("--family", metavar="EVAL_DIR",
                    help="the scanner-family refiner on this evaluation set instead")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    ref = load_refiner(args.model)
    if args.family:
        rows = family(ref, args.family)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return 0
    if not args.caches:
        ap.error("give the caches, or --family EVAL_DIR")
    rows: list[dict[str, Any]] = []
    for cache in args.caches.split(","):
        for geo, kind, seed, z, truth in T.cached_scans(Path(cache)):
            grid, _, _, _, true, acq, response, _, _ = T.draw_case(geo, kind, seed)
            raw = ref.refine_scan(z["y"], true, acq, grid, n_samples=0, check=False,
                                  images={"mb-tv": z["tv"]}).refined
            passed = check_refined(raw, z["tv"], z["y"], grid, true, acq, response=response,
                                   rule=guard_rule("mb-tv")).passed
            row = {"cache": cache, "geometry": geo, "phantom": kind, "seed": seed,
                   "guard_passed": bool(passed),
                   "tv": H.score(z["tv"].astype(np.float64), truth),
                   "refined": H.score(raw.astype(np.float64), truth),
                   "clipped": H.score(np.maximum(raw, 0).astype(np.float64), truth),
                   "below_share": float(np.sum(np.minimum(raw, 0.0) ** 2)
                                        / np.sum(raw.astype(np.float64) ** 2))}
            row["kept"] = row["refined"] if passed else row["tv"]
            row["kept_clipped"] = row["clipped"] if passed else row["tv"]
            rows.append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                              for k, v in row.items()}), flush=True)
    for cache in args.caches.split(","):
        rs = [r for r in rows if r["cache"] == cache]
        for a, b in (("clipped", "refined"), ("kept_clipped", "kept")):
            d = np.array([r[a] - r[b] for r in rs])
            print(f"{cache} ({len(rs)} scans): {a} - {b} mean {d.mean():+.3f} dB, worst "
                  f"{d.min():+.3f}, best {d.max():+.3f}; below {int((d < 0).sum())}")
        for label, pick in (("vessel kinds", True), ("other kinds", False)):
            sel = [r for r in rs if r["phantom"].startswith("vessels") == pick]
            if sel:
                print(f"  {label}: kept - TV {np.mean([r['kept'] - r['tv'] for r in sel]):+.2f}"
                      f" -> {np.mean([r['kept_clipped'] - r['tv'] for r in sel]):+.2f} dB")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

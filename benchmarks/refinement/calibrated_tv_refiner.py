"""The TV refiner on self-calibrated scans: does refining calibrated TV help?

Data: the wrong-file scans of ``benchmarks/calibration/heldout_default.py`` (seed 1000: 7
geometries x 5 phantom kinds; oatomo's forward model on a grid 2x finer than the 128 x 128,
0.1 mm image grid, a Gaussian detector band, 1-2 % noise, per-sensor position errors and
the file's speed of sound off by up to 2 %). Per scan: :func:`oatomo.calibrate` as the
default runs it, the calibration applied to the scan
(:func:`oatomo.calibration.apply_calibration`), then ``oatomo.reconstruct`` of that
calibrated scan with ``refine=True`` and the refiner given (TV with the calibrated
positions and speed of sound, the pipeline's defaults, then the refiner and its guard).
Scores: PSNR (dB, range 1) after the best rigid registration and affine fit (the array's
rigid motion is invisible to any method) of calibrated TV and of what the guard keeps,
and TV with the true positions for reference.

Run (resumable with ``--out``)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refinement/calibrated_tv_refiner.py \\
        oatomo/resources/models/tv_refiner.npz \\
        --out benchmarks/refinement/calibrated_tv_refiner.json
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
sys.path.insert(0, str(ROOT / "benchmarks" / "calibration"))

import heldout_default as H  # noqa: E402


def map_correlation(refined: np.ndarray, std: np.ndarray, truth: np.ndarray
                    ) -> dict[str, float]:
    """Pearson correlation of the uncertainty map with the absolute error of the refined
    image after its affine fit (``r_raw``), and after moving image and map by the image's
    best rigid registration to the truth (``r_reg``: the array's rigid motion, which no
    data can see, is not an error the map could know)."""
    from oatomo.evaluation.metrics import affine_fit, pearson

    def r(img: np.ndarray, m: np.ndarray) -> float:
        return float(pearson(m, np.abs(affine_fit(img[None], truth[None])[0] - truth)))

    img, m = np.asarray(refined, np.float64), np.asarray(std, np.float64)
    motion = np.asarray(H.register(img, truth)[1])
    return {"r_raw": r(img, m), "r_reg": r(H._moved(img, motion), H._moved(m, motion))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=H.FIRST_SEED)
    ap.add_argument("--geometries", default=",".join(H.GEOMETRIES))
    ap.add_argument("--phantoms", default=",".join(H.PHANTOMS))
    ap.add_argument("--no-guard", action="store_true",
                    help="keep every refined image (what the guard would have rejected too)")
    ap.add_argument("--uncertainty", action="store_true",
                    help="also the uncertainty map (the pipeline's default samples) and its "
                    "Pearson correlation with the refined image's absolute error, raw and "
                    "with image and map moved by the image's best rigid registration")
    ap.add_argument("--cache", help="directory keeping each case's calibrated scan file and "
                    "its TV with the true geometry, so that another model is scored without "
                    "calibrating again")
    args = ap.parse_args(argv)

    import oatomo
    from oatomo.calibration import apply_calibration
    from oatomo.io import load_scan, save_scan

    cache = Path(args.cache) if args.cache else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)

    out = Path(args.out) if args.out else None
    rows = json.loads(out.read_text()) if out and out.exists() else []
    done = {(r["geometry"], r["phantom"]) for r in rows}
    for g in args.geometries.split(","):
        for k in args.phantoms.split(","):
            if (g, k) in done:
                continue
            case = H.make_case(g, k, args.seed)
            t = time.perf_counter()
            kept = cache / f"{g}_{k}_{args.seed}.h5" if cache else None
            if kept is not None and kept.exists():
                scan = load_scan(kept)
                true_tv = np.load(kept.with_suffix(".npy"))
            else:
                cal = oatomo.calibrate(case.scan, case.grid)
                scan = apply_calibration(case.scan, cal)
                true_tv = oatomo.reconstruct(case.scan_true, "mb-tv", grid=case.grid,
                                             calibrate=False, refine=False).image
                if kept is not None:
                    np.save(kept.with_suffix(".npy"), true_tv)
                    save_scan(kept, scan)
            rec = oatomo.reconstruct(scan, "mb-tv", grid=case.grid, refine=True, model=args.model,
                                     guard=not args.no_guard,
                                     **({} if args.uncertainty else {"samples": 0}))
            how = rec.provenance["refinement"]
            row = {"geometry": g, "phantom": k, "seed": args.seed,
                   "guard_passed": bool(how.get("guard", {}).get("passed")),
                   "applied": bool(how["applied"]), "reason": how.get("reason"),
                   "seconds": time.perf_counter() - t,
                   "tv_cal_reg": H.register(rec.images["mb-tv"], case.truth)[0],
                   "kept_reg": H.register(rec.image, case.truth)[0],
                   "tv_true_reg": H.register(true_tv, case.truth)[0]}
            if "refined" in rec.images:
                row["refined_reg"] = row["kept_reg"]
            if args.uncertainty and "uncertainty" in rec.images:
                row.update(map_correlation(rec.images["refined"], rec.images["uncertainty"],
                                           case.truth))
            frames = how.get("guard", {}).get("frames") or [{}]
            row["guard"] = {k2: v for k2, v in frames[0].items()
                            if isinstance(v, (int, float))}
            rows.append(row)
            print(json.dumps({k2: round(v, 2) if isinstance(v, float) else v
                              for k2, v in row.items() if k2 != "reason"}), flush=True)
            if out:
                tmp = out.with_suffix(".tmp")
                tmp.write_text(json.dumps(rows, indent=1))
                tmp.replace(out)
    gains = np.array([r["kept_reg"] - r["tv_cal_reg"] for r in rows])
    print(f"kept - calibrated TV (registered): mean {gains.mean():+.2f} dB, worst "
          f"{gains.min():+.2f}, {len(rows)} scans")
    for g in dict.fromkeys(r["geometry"] for r in rows):
        sel = [r["kept_reg"] - r["tv_cal_reg"] for r in rows if r["geometry"] == g]
        print(f"  {g}: {np.mean(sel):+.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

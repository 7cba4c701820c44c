"""A data-consistency step after a refiner: TV warm-started at the refined image.

For each scan of a cache (``tv_residual.py cache`` or ``tv_refiner.py --cache``: y, UBP,
TV and the truth): the model of ``tv_residual.py`` refines TV and UBP (invariant decoder);
then :func:`oatomo.recon.model_based.reconstruct_model_based` (TV, the default lambda, the
scan's detector response in the operator, no early stop) runs ``k`` iterations started at
the refined image, for each ``k`` asked; the refinement guard (the rule for a TV image)
judges each result against the TV image. Prints, for vessel kinds and the other kinds,
refined - TV and, per ``k``, result - TV and guarded - TV (mean and worst scan).

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refinement/data_consistency.py \\
        out/tv_refiner/lv_vessels.pt out/tv_refiner/report_lv 20,30,50 \\
        benchmarks/refinement/data_consistency_report.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks" / "calibration"),
                str(ROOT / "benchmarks" / "refinement")]

import heldout_default as H  # noqa: E402
import tv_refiner as T  # noqa: E402
import tv_residual as R  # noqa: E402

from oatomo.recon.model_based import reconstruct_model_based  # noqa: E402
from oatomo.refine.guard import check_refined, guard_rule  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    import torch

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        raise SystemExit(__doc__)
    model_path, cache, iters, out = args[0], Path(args[1]), [int(v) for v in
                                                             args[2].split(",")], args[3]
    torch.set_num_threads(1)
    ck = torch.load(model_path, weights_only=True, map_location="cpu")
    model = R.vae_of_checkpoint(ck, ck.get("arch", "skip-ivae")).eval()
    rows = []
    for geo, kind, seed, z, truth in T.cached_scans(cache):
        xn, s = R.inputs_of(z["tv"], z["ubp"], "skip-ivae")
        with torch.no_grad():
            ref = model.reconstruct(torch.from_numpy(xn[None]))[0, 0].numpy() * s
        grid, _, _, _, true, acq, response, _, _ = T.draw_case(geo, kind, seed)
        row = {"geometry": geo, "phantom": kind, "seed": seed,
               "tv": H.score(z["tv"].astype(np.float64), truth),
               "refined": H.score(ref.astype(np.float64), truth)}
        for k in iters:
            x, _ = reconstruct_model_based(z["y"], grid, true, acq, method="tv", n_iter=k,
                                           x0=ref.astype(np.float32), response=response,
                                           tol=0)
            row[f"dc{k}"] = H.score(x.astype(np.float64), truth)
            verdict = check_refined(x, z["tv"], z["y"], grid, true, acq, response=response,
                                    rule=guard_rule("mb-tv"))
            row[f"guarded{k}"] = row[f"dc{k}"] if verdict.passed else row["tv"]
        rows.append(row)
    Path(out).write_text(json.dumps(rows, indent=1))
    for label, pick in (("vessels", True), ("others", False)):
        rs = [r for r in rows if r["phantom"].startswith("vessels") == pick]
        if not rs:
            continue
        parts = [f"refined - TV {np.mean([r['refined'] - r['tv'] for r in rs]):+.2f} "
                 f"(worst {min(r['refined'] - r['tv'] for r in rs):+.2f})"]
        for k in iters:
            d = [r[f"dc{k}"] - r["tv"] for r in rs]
            g = [r[f"guarded{k}"] - r["tv"] for r in rs]
            parts.append(f"TV{k} from refined - TV {np.mean(d):+.2f} (worst {min(d):+.2f}), "
                         f"guarded {np.mean(g):+.2f} (worst {min(g):+.2f})")
        print(f"{label} ({len(rs)}): " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

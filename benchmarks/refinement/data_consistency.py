"""A data-consistency step after a refiner: TV warm-started at the refined image, or least
squares anchored at it.

For each scan of a cache (``tv_residual.py cache`` or ``tv_refiner.py --cache``: y, UBP,
TV and the truth): the model of ``tv_residual.py`` refines TV and UBP (invariant decoder,
one pass); then, for each ``k`` asked, started at the refined image ``x_r``:

* ``tv`` (default): :func:`oatomo.recon.model_based.reconstruct_model_based` (TV, the
  default lambda, the scan's detector response in the operator, no early stop) runs ``k``
  iterations;
* ``--least-squares``: ``k`` projected gradient steps (step ``1 / (L + mu)``, ``L`` the
  power iteration's ``||A||^2`` times 1.05, the image kept >= 0) on
  ``1/2 ||A x - y||^2 + mu/2 ||x - x_r||^2`` with ``mu = anchor x L`` for each
  ``--anchor`` (0: plain Landweber from the refined image, which only adds what the data
  see to it);

the refinement guard (the rule for a TV image) judges each result against the TV image.
Prints, for vessel kinds and the other kinds, refined - TV and, per ``k``, result - TV and
guarded - TV (mean and worst scan).

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refinement/data_consistency.py \\
        out/tv_refiner/lv_vessels.pt out/tv_refiner/report_lv 20,30,50 \\
        benchmarks/refinement/data_consistency_report.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refinement/data_consistency.py \\
        out/capacity/c48.pt out/tv_refiner/tuning 3,10,30 \\
        benchmarks/refinement/least_squares_tuning.json --least-squares --anchor 0,0.3,1
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
import tv_residual as R  # noqa: E402

from oatomo.recon.model_based import reconstruct_model_based  # noqa: E402
from oatomo.recon.operators import forward_operator, operator_norm_sq  # noqa: E402
from oatomo.refine.guard import check_refined, guard_rule  # noqa: E402


def least_squares(op: Any, y: np.ndarray, start: np.ndarray, norm_sq: float, mu_rel: float,
                  iters: list[int]) -> dict[int, np.ndarray]:
    """The projected gradient iterates of ``1/2 ||A x - y||^2 + mu/2 ||x - start||^2``
    (``mu = mu_rel x L``, ``x >= 0``) after each number of steps in ``iters``."""
    lip = 1.05 * norm_sq
    mu = mu_rel * lip
    x = start.astype(np.float32).copy()
    out, done = {}, 0
    for k in sorted(iters):
        while done < k:
            grad = op.adjoint(op.forward(x) - y) + mu * (x - start)
            x = np.maximum(x - grad / (lip + mu), 0).astype(np.float32)
            done += 1
        out[k] = x.copy()
    return out


def judged(row: dict[str, Any], name: str, x: np.ndarray, ctx: tuple) -> None:
    """Score ``x`` into ``row[name]`` and what the guard keeps into ``row["guarded_"+name]``
    (``ctx``: the truth, the cached arrays, the grid, true sensors, acquisition, response)."""
    truth, z, grid, true, acq, response = ctx
    row[name] = H.score(x.astype(np.float64), truth)
    verdict = check_refined(x, z["tv"], z["y"], grid, true, acq, response=response,
                            rule=guard_rule("mb-tv"))
    row[f"guarded_{name}"] = row[name] if verdict.passed else row["tv"]


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("cache", type=Path)
    ap.add_argument("iters", help="numbers of iterations, comma-separated")
    ap.add_argument("out")
    ap.add_argument("--least-squares", action="store_true",
                    help="anchored least squares instead of TV (see above)")
    ap.add_argument("--anchor", default="0", help="mu / L values, comma-separated")
    args = ap.parse_args(argv)
    iters = [int(v) for v in args.iters.split(",")]
    anchors = [float(v) for v in args.anchor.split(",")]
    torch.set_num_threads(1)
    ck = torch.load(args.model, weights_only=True, map_location="cpu")
    model = R.vae_of_checkpoint(ck, ck.get("arch", "skip-ivae")).eval()
    rows = []
    for geo, kind, seed, z, truth in T.cached_scans(args.cache):
        xn, s = R.inputs_of(z["tv"], z["ubp"], "skip-ivae")
        with torch.no_grad():
            ref = model.reconstruct(torch.from_numpy(xn[None]))[0, 0].numpy() * s
        grid, _, _, _, true, acq, response, _, _ = T.draw_case(geo, kind, seed)
        row: dict[str, Any] = {"geometry": geo, "phantom": kind, "seed": seed,
                               "tv": H.score(z["tv"].astype(np.float64), truth),
                               "refined": H.score(ref.astype(np.float64), truth)}

        ctx = (truth, z, grid, true, acq, response)
        judged(row, "refined", ref, ctx)
        if args.least_squares:
            op = forward_operator(grid, true, acq, None, response)
            norm_sq = operator_norm_sq(grid, true, acq, response=response)
            for mu_rel in anchors:
                for k, x in least_squares(op, z["y"].astype(np.float32), ref, norm_sq,
                                          mu_rel, iters).items():
                    judged(row, f"ls{k}_mu{mu_rel:g}", x, ctx)
        else:
            for k in iters:
                x, _ = reconstruct_model_based(z["y"], grid, true, acq, method="tv",
                                               n_iter=k, x0=ref.astype(np.float32),
                                               response=response, tol=0)
                judged(row, f"dc{k}", x, ctx)
        rows.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v
                          for k, v in row.items()}), flush=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    names = [k for k in rows[0] if k not in ("geometry", "phantom", "seed", "tv")
             and not k.startswith("guarded_")]
    for label, pick in (("vessels", True), ("others", False)):
        rs = [r for r in rows if r["phantom"].startswith("vessels") == pick]
        if not rs:
            continue
        parts = []
        for name in names:
            d = [r[name] - r["tv"] for r in rs]
            g = [r[f"guarded_{name}"] - r["tv"] for r in rs]
            passed = sum(r[f"guarded_{name}"] == r[name] for r in rs)
            parts.append(f"{name} - TV {np.mean(d):+.2f} (worst {min(d):+.2f}), guarded "
                         f"{np.mean(g):+.2f} (worst {min(g):+.2f}, {passed} passed)")
        print(f"{label} ({len(rs)}):\n  " + "\n  ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Which physics image a scan that carries its detector response should get by default.

The refinement benchmarks' scans (``tv_refiner.py``'s tuning and report sets; oatomo's own
forward model on a grid 2x finer than the image grid, Gaussian detector response, white
noise) carry their detector response in the scan, as a user's file can. The pipeline's
default TV ignores it. Compared per scan (PSNR after the best affine fit; times on the
machine as it was):

* ``tv``: the pipeline's default ``mb-tv`` (50 iterations, the response ignored; cached);
* ``dec-tv50``: Wiener deconvolution (:func:`oatomo.response.wiener_deconvolve`, default
  regularisation) then TV, 50 iterations;
* ``op-tvK``: the response inside the forward operator, TV with ``K`` iterations;
* ``dec+op-tvK``: ``op`` TV with ``K`` iterations started at ``dec-tv50``;
* ``dec-ubp``: UBP of the deconvolved signals.

Run::

    PYTHONPATH=. .venv/bin/python benchmarks/refinement/physics_response.py \\
        out/tv_refiner/tuning --json out/physics_tune.json
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
sys.path.insert(0, str(ROOT / "benchmarks" / "refinement"))

import heldout_default as H  # noqa: E402
import tv_refiner as T  # noqa: E402

from oatomo.recon.backprojection import backproject  # noqa: E402
from oatomo.recon.model_based import default_lambda, solve_model_based  # noqa: E402
from oatomo.recon.operators import forward_operator, operator_norm_sq  # noqa: E402
from oatomo.response import wiener_deconvolve  # noqa: E402


def run(cache: Path) -> list[dict]:
    rows = []
    for geo, kind, seed, z, truth in T.cached_scans(cache):
        y = z["y"].astype(np.float32)
        grid, _, _, _, true, acq, response, _, _ = T.draw_case(geo, kind, int(seed))
        def sc(im: np.ndarray, truth: np.ndarray = truth) -> float:
            return H.score(np.asarray(im, np.float64), truth)

        row = {"geometry": geo, "kind": kind, "seed": int(seed), "ubp": sc(z["ubp"]),
               "tv": sc(z["tv"]), "t_tv": float(z["t_tv"])}
        t0 = time.perf_counter()
        yd = wiener_deconvolve(y, acq.fs, response)
        op0 = forward_operator(grid, true, acq, None)
        L0 = operator_norm_sq(grid, true, acq)
        lam0 = default_lambda("tv", yd, grid, true, acq)
        dec, _ = solve_model_based(op0, yd, method="tv", lam=lam0, n_iter=50, nonneg=True,
                                   norm_sq=L0)
        row["dec-tv50"], row["t_dec-tv50"] = sc(dec), time.perf_counter() - t0
        row["dec-ubp"] = sc(backproject(yd, grid, true, acq, method="ubp"))
        op = forward_operator(grid, true, acq, None, response)
        L = operator_norm_sq(grid, true, acq, response=response)
        lam = default_lambda("tv", y, grid, true, acq, response=response)
        t0 = time.perf_counter()
        done = 0
        x = None
        for k in (50, 100, 200):
            x, _ = solve_model_based(op, y, method="tv", lam=lam, n_iter=k - done,
                                     nonneg=True, x0=x, tol=0.0, norm_sq=L)
            done = k
            row[f"op-tv{k}"], row[f"t_op-tv{k}"] = sc(x), time.perf_counter() - t0
        t0 = time.perf_counter()
        x = dec
        done = 0
        for k in (25, 50):
            x, _ = solve_model_based(op, y, method="tv", lam=lam, n_iter=k - done,
                                     nonneg=True, x0=x, tol=0.0, norm_sq=L)
            done = k
            row[f"dec+op-tv{k}"] = sc(x)
            row[f"t_dec+op-tv{k}"] = time.perf_counter() - t0 + row["t_dec-tv50"]
        rows.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v
                          for k, v in row.items()}), flush=True)
    return rows


KEYS = ("ubp", "tv", "dec-ubp", "dec-tv50", "op-tv50", "op-tv100", "op-tv200", "dec+op-tv25",
        "dec+op-tv50")


def summary(rows: list[dict]) -> str:
    lines = ["| geometry | n | " + " | ".join(KEYS) + " |", "|---" * (len(KEYS) + 2) + "|"]
    for g in sorted({r["geometry"] for r in rows}) + ["all"]:
        sel = [r for r in rows if g in ("all", r["geometry"])]
        lines.append(f"| {g} | {len(sel)} | "
                     + " | ".join(f"{np.mean([r[k] for r in sel]):.2f}" for k in KEYS) + " |")
    tk = [k for k in KEYS if f"t_{k}" in rows[0]]
    lines.append("| time / TV (median) | | "
                 + " | ".join(f"{np.median([r['t_' + k] / r['t_tv'] for r in rows]):.1f}"
                              if k in tk else "" for k in KEYS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cache")
    p.add_argument("--json")
    a = p.parse_args(argv)
    rows = run(Path(a.cache))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    print(summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

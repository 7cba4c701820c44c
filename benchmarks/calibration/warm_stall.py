"""The TV of a self-calibrated scan: where along its iterations to stop.

The default reconstructs a self-calibrated scan with TV started at the calibration's last
image (:func:`oatomo.pipeline.policy.warm_start`), at most
:data:`~oatomo.pipeline.policy.WARM_ITERS` iterations. This benchmark runs that TV to the
end with the stall test off and records, per scan, the objective after every iteration and
the registered PSNR (as ``heldout_default.py``) every 5 iterations; ``--rules`` then
replays stall tests on the recorded objectives -- stop at the first iteration ``k >= kmin``
whose objective fell by at most ``eps`` (relative) over the last 10 -- and prints, per
rule, the PSNR at the stop minus the PSNR after every iteration (mean and worst over the
scans) and the iterations run.

Tuning set: ``joint_gauss_newton.py``'s (a 160-sensor ring, a 72-sensor 200 degree arc, a
36-sensor ring, a 90-sensor 300 degree arc; its four phantom kinds; seeds 2000 and 2001 of
``heldout_default.py``'s generator: its perturbations, band, noise and 2x finer
simulation grid). Run::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/calibration/warm_stall.py --seed 2000 \\
        --out benchmarks/calibration/warm_stall_tuning.json      # and --seed 2001
    .venv/bin/python benchmarks/calibration/warm_stall.py \\
        --out benchmarks/calibration/warm_stall_tuning.json --rules

``--cap N`` records the TV to ``N`` iterations instead of ``WARM_ITERS`` (a separate
``--out``), and ``--rules`` then also replays the adopted stall test under the caps of
:data:`CAPS` that the trajectories reach::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/calibration/warm_stall.py --seed 2000 --cap 200 \\
        --out benchmarks/calibration/warm_stall_cap200.json      # and --seed 2001
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402
import joint_gauss_newton as G  # noqa: E402

import oatomo  # noqa: E402
import oatomo.pipeline.options as O  # noqa: E402
import oatomo.pipeline.policy as P  # noqa: E402
import oatomo.recon.model_based as MB  # noqa: E402
from oatomo._atomic import atomic_path  # noqa: E402

#: Stall tests replayed by ``--rules``: (relative decrease over 10 iterations, first
#: iteration tested).
RULES = ((3e-4, 30), (1e-3, 30), (1e-3, 40), (2e-3, 30), (5e-3, 30))
#: The iterate scored every this many iterations.
EVERY = 5
#: Iteration caps the adopted stall test is replayed under (``--rules``).
CAPS = (85, 120, 150, 200)


def trajectory(geometry: str, kind: str, seed: int) -> dict[str, Any]:
    """The warm TV of one scan, run to :data:`WARM_ITERS` (or its own convergence test)."""
    case = H.make_case(geometry, kind, seed)
    snaps: dict[int, np.ndarray] = {}
    trace: dict[str, Any] = {}
    solve = MB.solve_model_based

    def observed(op: Any, y: np.ndarray, **kw: Any) -> Any:
        if kw.get("x0") is None or kw.get("n_iter") != P.WARM_ITERS:
            return solve(op, y, **kw)  # the calibration's own image steps

        def keep(k: int, x: np.ndarray) -> None:
            if k % EVERY == 0:
                snaps[k] = np.array(x, np.float64)
        img, rec = solve(op, y, **{**kw, "on_iteration": keep})
        trace["objective"] = rec["objective"]
        return img, rec

    MB.solve_model_based = observed
    try:
        oatomo.reconstruct(case.scan, "mb-tv", grid=case.grid, calibrate=True, refine=False)
    finally:
        MB.solve_model_based = solve
    return {"geometry": geometry, "phantom": kind, "seed": seed,
            "objective": trace["objective"],
            "psnr": {str(k): H.register(v, case.truth)[0] for k, v in snaps.items()}}


def stop_at(objective: list[float], eps: float, kmin: int, window: int = 10,
            cap: int | None = None) -> int:
    """The iteration a stall test ``(eps, kmin)`` stops at on a recorded objective (at
    most ``cap``)."""
    last = len(objective) if cap is None else min(cap, len(objective))
    for k in range(max(kmin, window + 1), last + 1):
        if objective[k - 1 - window] - objective[k - 1] <= eps * objective[k - 1]:
            return k
    return last


def psnr_at(row: dict[str, Any], k: int) -> float:
    """A recorded scan's PSNR at the scored iterate nearest iteration ``k``."""
    ps = {int(j): v for j, v in row["psnr"].items()}
    return ps[min(ps, key=lambda j: (abs(j - k), -j))]


def _rule_line(label: str, rows: list[dict[str, Any]], stop: Any, base: Any) -> str:
    """One table line: PSNR at ``stop(row)`` minus at ``base(row)`` over the scans (mean,
    worst, per kind) and the iterations ``stop`` runs."""
    diffs, its, kinds = [], [], {}
    for r in rows:
        k = stop(r)
        d = psnr_at(r, k) - psnr_at(r, base(r))
        diffs.append(d)
        its.append(k)
        kinds.setdefault(r["phantom"], []).append(d)
    per_kind = ", ".join(f"{k} {np.mean(v):+.2f}" for k, v in kinds.items())
    return (f"| {label} | {np.mean(diffs):+.2f} / {min(diffs):+.2f} | {per_kind} | "
            f"{np.mean(its):.1f} / {np.median(its):.0f} |")


def rules_table(rows: list[dict[str, Any]]) -> str:
    """Per rule: PSNR at the stop (the nearest scored iterate) minus after every
    iteration, over the scans and per phantom kind, and the iterations run; then the
    adopted test under each cap of :data:`CAPS` the trajectories reach, against it under
    ``WARM_ITERS``."""
    lines = ["| stall test (eps, first k) | PSNR at stop - at the end (dB): mean / worst | "
             "per kind | iterations: mean / median |", "|---|---|---|---|"]

    def last(r: dict[str, Any]) -> int:
        return max(int(j) for j in r["psnr"])

    for eps, kmin in RULES:
        lines.append(_rule_line(f"{eps:g}, {kmin}", rows,
                                lambda r, e=eps, m=kmin: stop_at(r["objective"], e, m), last))

    def adopted(r: dict[str, Any], cap: int) -> int:
        return stop_at(r["objective"], P.WARM_STALL_TOL, MB.STALL_MIN_ITERS, cap=cap)

    longest = max(len(r["objective"]) for r in rows)
    for cap in CAPS:
        if cap != P.WARM_ITERS and cap <= longest:
            lines.append(_rule_line(f"adopted test, cap {cap} (vs cap {P.WARM_ITERS})", rows,
                                    lambda r, c=cap: adopted(r, c),
                                    lambda r: adopted(r, P.WARM_ITERS)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=2000)
    ap.add_argument("--geometries", default=",".join(G.TUNING_GEOMETRIES))
    ap.add_argument("--rules", action="store_true", help="replay the stall tests and stop")
    ap.add_argument("--cap", type=int, default=None,
                    help="record this many iterations instead of WARM_ITERS")
    a = ap.parse_args(argv)
    out = Path(a.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    if not a.rules:
        if a.cap:
            P.WARM_ITERS, O.RESPONSE_ITERS = a.cap, max(a.cap, O.RESPONSE_ITERS)
        P.WARM_STALL_TOL = 0.0  # every iteration, to replay the tests on
        H.warm_up()
        for geo in a.geometries.split(","):
            for kind in G.TUNING_PHANTOMS:
                if any((r["geometry"], r["phantom"], r["seed"]) == (geo, kind, a.seed)
                       for r in rows):
                    continue
                rows.append(trajectory(geo, kind, a.seed))
                print(geo, kind, a.seed, flush=True)
                with atomic_path(out) as tmp:
                    tmp.write_text(json.dumps(rows) + "\n")
    print(rules_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

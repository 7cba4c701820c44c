"""The default's time on a perturbed scan over one 50-iteration TV of the same scan, on a
quiet machine: one process, each call repeated and the fastest kept.

The held-out benchmark (``heldout_default.py``) times every case once, often with another
benchmark process beside it; its ratios move by 1-2 TV50 with the machine's load. This
script measures the ratio alone, on four of its scans (seed 1000: ring32 thick vessels,
ring64 disks, arc270 texture, ring128 points; ``--cases`` names others), in the same run
for whatever ``oatomo`` is on the path, so two versions are compared by running it
twice::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/default_time.py \\
        --out benchmarks/calibration/default_time.json
    git worktree add /tmp/before <commit>
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/before .venv/bin/python \\
        benchmarks/calibration/default_time.py --label before --out ...

Without ``OMP_NUM_THREADS=1`` it measures what a user's environment gives (the thread
counts left at their defaults; ``default_time_blas_threads.json``).

``--fov-scale 0.6``: on a centred region of interest of 0.6 of the field of view (the
calibration then runs on a grid widened to the object, ``object_grid.py``)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/default_time.py \\
        --fov-scale 0.6 --out benchmarks/calibration/default_time_zoomed.json

``--kernel-work``: instead of timing, the work of the forward and adjoint kernels each call
runs (pixel-sensor pairs summed over its applications of ``A`` and ``A^T``; one call each),
as a ratio: what the default's kernels do over what TV50's do. It does not move with the
machine's load, and it is most of the time ratio (the rest is NumPy between the kernels,
the check's and the refiner's own work)::

    .venv/bin/python benchmarks/calibration/default_time.py --kernel-work \
        --label "7 Lanczos steps" --out benchmarks/calibration/default_time_norm_steps.json

Per case: the default ``oatomo.reconstruct(scan)`` (check, calibration, TV with the
response) and ``oatomo.reconstruct(scan, "mb-tv", calibrate=False, iters=50)``, each run
``--repeats`` times with cold operator caches (each call builds its operators and their
norms, as a user's first command does; a warm-up scan compiles the kernels first), the
fastest of each kept; the step timings of the default's last run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402

import oatomo  # noqa: E402

#: Seconds of idle before each timed call.
PAUSE_S = 1.0

CASES = (("ring32", "vessels-thick"), ("ring64", "disks"), ("arc270", "texture"),
         ("ring128", "points"))


def cold_caches() -> None:
    """Empty the operator and operator-norm caches, as a user's first command finds them."""
    from oatomo.recon import operators

    operators.forward_operator.cache_clear()
    operators._norm_sq_cached.cache_clear()


def fastest(fn: Any, repeats: int) -> tuple[float, Any]:
    """The fastest wall time of ``repeats`` calls of ``fn`` and the last result, each call
    with cold operator caches (as a user's first command: operators and their norms are
    built again) and after :data:`PAUSE_S` of idle."""
    best, out = float("inf"), None
    for _ in range(repeats):
        cold_caches()
        # the thread pools of a previous call (the refiner's) spin for a while after it and
        # slow the next call's first parallel kernels (measured: the position check 0.02 s
        # alone, 0.055 s right after a refined reconstruction); a user's command starts idle
        time.sleep(PAUSE_S)
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def kernel_work(fn: Any) -> tuple[float, Any]:
    """Pixel-sensor pairs of every forward and adjoint application during ``fn()`` (cold
    operator caches, as :func:`fastest`) and its result."""
    from oatomo.forward import ForwardOperator

    cold_caches()
    work = [0.0]
    originals = {name: getattr(ForwardOperator, name) for name in ("forward", "adjoint")}

    def counted(name: str) -> Any:
        def apply(self: ForwardOperator, *a: Any, **k: Any) -> Any:
            work[0] += float(self.grid.n) ** 2 * len(self.sensors.positions)
            return originals[name](self, *a, **k)
        return apply

    try:
        for name in originals:
            setattr(ForwardOperator, name, counted(name))
        out = fn()
    finally:
        for name, original in originals.items():
            setattr(ForwardOperator, name, original)
    return work[0], out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--label", default="current")
    ap.add_argument("--out", default=None, help="JSON to add this run to (by --label)")
    ap.add_argument("--seed", type=int, default=H.FIRST_SEED,
                    help=f"the cases' seed (default {H.FIRST_SEED}; the fresh set's: "
                    f"{H.FRESH_SEED})")
    ap.add_argument("--cases", default=None,
                    help="geometry:phantom pairs, comma-separated (default: the four above)")
    ap.add_argument("--fov-scale", type=float, default=1.0,
                    help="the image grid's field of view over the benchmark's (a centred "
                    "region of interest below 1; the same pixel pitch)")
    ap.add_argument("--kernel-work", action="store_true",
                    help="count the kernels' pixel-sensor pairs instead of timing")
    ap.add_argument("--reseat", action="store_true",
                    help="the calibration with the held-out re-seat (reseat=True)")
    args = ap.parse_args(argv)
    if args.reseat:
        H.enable_reseat()
    cases = CASES if args.cases is None else tuple(
        tuple(pair.split(":")) for pair in args.cases.split(","))
    H.warm_up()
    rows = []
    for g, k in cases:
        case = H.make_case(g, k, args.seed)
        scan, (grid, _) = case.scan, H.region_of_interest(case.grid, case.truth,
                                                          args.fov_scale)
        measure = (kernel_work if args.kernel_work
                   else lambda fn: fastest(fn, args.repeats))
        t_def, rec = measure(lambda s=scan, gr=grid: oatomo.reconstruct(s, grid=gr))
        t50, _ = measure(lambda s=scan, gr=grid: oatomo.reconstruct(
            s, "mb-tv", grid=gr, calibrate=False, refine=False, iters=50))
        row = {"geometry": g, "phantom": k, "seed": args.seed, "fov_m": grid.fov,
               "t_default": t_def, "t_tv50": t50,
               "ratio": t_def / t50, "iters": rec.provenance.get("iters"),
               "refined": bool(rec.refined),
               "steps": {s: round(v, 3) for s, v in rec.provenance["timings"].items()}}
        rows.append(row)
        unit = "pixel-sensor pairs" if args.kernel_work else "s"
        if args.kernel_work:
            row["measure"] = "kernel work (pixel-sensor pairs)"
        print(f"{g} {k}: default {t_def:.4g} {unit}, TV50 {t50:.4g} {unit}, ratio "
              f"{row['ratio']:.2f} (steps {row['steps']})", flush=True)
    print(f"median ratio {float(np.median([r['ratio'] for r in rows])):.2f}")
    if args.out:
        out = Path(args.out)
        done = json.loads(out.read_text()) if out.exists() else {}
        done[args.label] = rows
        out.write_text(json.dumps(done, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

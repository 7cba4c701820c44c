"""One application of the forward model and its adjoint, ``A^T A x``, with the scan's
detector response in the operator, on the scans of ``calibration/default_time.py``: the
unit of work of every TV iteration and calibration step.

Per case (seed 1000 of the held-out benchmark's generator; 128² at 0.1 mm, 40 MHz): the
median and the first quartile of ``--repeats`` calls, after one warm-up call. Compare two
versions by running it for each, alternately, in one sitting::

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before .venv/bin/python /tmp/before/benchmarks/speed/bench_operator.py
    .venv/bin/python benchmarks/speed/bench_operator.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "calibration"))
import heldout_default as H  # noqa: E402

from oatomo.forward import ForwardOperator  # noqa: E402

CASES = (("ring32", "vessels-thick"), ("ring64", "disks"), ("ring128", "points"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=100)
    args = ap.parse_args(argv)
    for g, k in CASES:
        case = H.make_case(g, k, H.FIRST_SEED)
        scan = case.scan
        op = ForwardOperator(case.grid, scan.sensors, scan.acquisition,
                             response=scan.response)
        x = np.random.default_rng(0).random(case.grid.shape).astype(np.float32)
        op.adjoint(op.forward(x))
        ts = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            op.adjoint(op.forward(x))
            ts.append(time.perf_counter() - t)
        print(f"{g} {k}: A^T A x median {np.median(ts) * 1e3:.3f} ms, first quartile "
              f"{np.percentile(ts, 25) * 1e3:.3f} ms ({scan.sensors.n_sensors} sensors x "
              f"{scan.acquisition.n_samples} samples)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

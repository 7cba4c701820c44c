"""Where each level of the joint calibration leaves the sensors: the rms position error
(after the best rigid alignment to the truth) after every round, from the file's positions
and from the true ones, at the default schedule and with more rounds.

Tuning scans only: seed 2000 of the held-out benchmark's generator (``heldout_default.py``:
oatomo's own model on the 2x finer grid, detector band, 1-2 % noise, the file's speed of
sound off by up to 2 %); none of them is in its report tables. The default's schedule
(:data:`oatomo.calibration.joint.ROUNDS`) or ``--rounds``; ``--from truth`` starts at the
true positions and speed of sound (the prior centred on them).

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/level_trajectory.py \\
        --out benchmarks/calibration/level_trajectory.json
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402

import oatomo  # noqa: E402
import oatomo.calibration.estimate as estimate  # noqa: E402
import oatomo.calibration.joint as joint  # noqa: E402
from oatomo.calibration.gauge import rigid_error  # noqa: E402

SEED = 2000
CASES = (("ring32", "vessels-thin"), ("ring64", "vessels-thin"), ("ring128", "vessels-thin"),
         ("ring256", "vessels-thin"), ("arc270", "vessels-thin"), ("arc270", "vessels-thick"),
         ("ring32", "disks"), ("ring64", "vessels-thick"))


def trajectory(case: H.Case, start: str, rounds: tuple[int, ...] | None
               ) -> dict[str, Any]:
    """Calibrate ``case`` (from the file or the truth) and record the rms position error
    (um) after every round, with its level."""
    seen: list[np.ndarray] = []
    to_gauge = joint.to_gauge

    def recording(*args: Any, **kwargs: Any) -> Any:
        out = to_gauge(*args, **kwargs)
        seen.append(out[0].copy())
        return out

    run = joint.joint_calibration
    joint.to_gauge = recording
    if rounds is not None:
        estimate.joint_calibration = functools.partial(run, rounds=rounds)
    try:
        t = time.perf_counter()
        cal = oatomo.calibrate(case.scan if start == "file" else case.scan_true, case.grid)
        seconds = time.perf_counter() - t
    finally:
        joint.to_gauge = to_gauge
        estimate.joint_calibration = run
    errors = [float(np.sqrt(np.mean(rigid_error(p, case.true) ** 2)) * 1e6) for p in seen]
    return {"levels": [int(h["level"]) for h in cal.history], "error_um": errors,
            "file_um": H.rms_um(case.nominal, case.true),
            "final_um": H.rms_um(cal.sensors, case.true),
            "c_error_pct": 100 * (cal.speed_of_sound / case.c_true - 1), "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--runs", default="file:default,truth:default,file:8-8-8,file:4-4-8",
                    help="comma list of START:ROUNDS (START file or truth; ROUNDS default "
                    "or per-level counts joined by '-')")
    args = ap.parse_args(argv)
    rows = []
    for g, k in CASES:
        case = H.make_case(g, k, SEED)
        for spec in args.runs.split(","):
            start, sched = spec.split(":")
            rounds = None if sched == "default" else tuple(int(v) for v in sched.split("-"))
            row = {"geometry": g, "phantom": k, "start": start, "rounds": sched,
                   **trajectory(case, start, rounds)}
            rows.append(row)
            marks = " ".join(f"L{lv}:{e:.0f}"
                             for lv, e in zip(row["levels"], row["error_um"], strict=True))
            print(f"{g} {k} from {start}, rounds {sched}: file {row['file_um']:.0f} um; "
                  f"{marks}; final {row['final_um']:.0f} um "
                  f"({row['final_um'] / row['file_um']:.2f})", flush=True)
    for spec in args.runs.split(","):
        start, sched = spec.split(":")
        sel = [r for r in rows if r["start"] == start and r["rounds"] == sched]
        ratio = [r["final_um"] / r["file_um"] for r in sel]
        seconds = np.median([r["seconds"] for r in sel])
        print(f"from {start}, rounds {sched}: mean ratio {np.mean(ratio):.3f}, "
              f"max {np.max(ratio):.3f}, median time {seconds:.1f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

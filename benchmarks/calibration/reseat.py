"""The held-out re-seat at the end of self-calibration, on and off.

``oatomo.calibrate(..., reseat=True)`` ends the joint method's finest level with a held-out
re-seat (:func:`oatomo.calibration.joint.heldout_reseat`): every sensor searched again
along its line of sight against a TV image of the other sensors, then
:data:`~oatomo.calibration.joint.RESEAT_ROUNDS` more rounds of the finest level. This
script calibrates the same scans without it (the default) and with it, in one run, and
records per scan the position error after rigid alignment (um), TV at the estimate
(registered PSNR, dB), the speed of sound's error and the calibration's wall time.

Scans: the held-out benchmark's generator (``heldout_default.py``: oatomo's forward model
on a 2x finer grid, a Gaussian detector band, 1-2 % noise, the file's positions and speed
of sound off). ``tuning``: the twelve cases of ``joint_objective.py offsets`` (seeds 2000
and 2001), on which the re-seat's constants were chosen.

Run (``--cases`` for others, as ``ring64:vessels-thin:2000,...``)::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/calibration/reseat.py --out benchmarks/calibration/reseat_tuning.json
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
from joint_objective import OFFSET_CASES, tv_psnr  # noqa: E402

import oatomo  # noqa: E402


def run(geometry: str, kind: str, seed: int, reseat: bool) -> dict[str, Any]:
    """One calibration of one scan, with or without the re-seat."""
    case = H.make_case(geometry, kind, seed)
    kwargs = {"reseat": reseat}
    t = time.perf_counter()
    cal = oatomo.calibrate(case.scan, case.grid, **kwargs)
    dt = time.perf_counter() - t
    return {"geometry": geometry, "phantom": kind, "seed": seed, "reseat": reseat,
            "time_s": dt, "file_um": H.rms_um(case.nominal, case.true),
            "um": H.rms_um(cal.sensors, case.true),
            "psnr": tv_psnr(case, cal.sensors.positions, cal.speed_of_sound),
            "c_err_pct": 100 * (cal.speed_of_sound / case.c_true - 1)}


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per scan, without and with the re-seat."""
    by = {(r["geometry"], r["phantom"], r["seed"], r["reseat"]): r for r in rows}
    lines = ["| scan | file (um) | error off / on (um) | TV at the estimate off / on (dB) | "
             "time on / off |", "|---|---|---|---|---|"]
    gains, ratios, times = [], [[], []], []
    for (g, k, s, on), r in by.items():
        if on or (g, k, s, True) not in by:
            continue
        o = by[(g, k, s, True)]
        gains.append(o["psnr"] - r["psnr"])
        ratios[0].append(r["um"] / r["file_um"])
        ratios[1].append(o["um"] / o["file_um"])
        times.append(o["time_s"] / r["time_s"])
        lines.append(f"| {g} {k} {s} | {r['file_um']:.0f} | {r['um']:.0f} / {o['um']:.0f} | "
                     f"{r['psnr']:.2f} / {o['psnr']:.2f} ({gains[-1]:+.2f}) | "
                     f"{times[-1]:.2f} |")
    if gains:
        lines.append(f"| **mean** ({len(gains)}) | | ratio {np.mean(ratios[0]):.2f} / "
                     f"{np.mean(ratios[1]):.2f} | {np.mean(gains):+.2f} (worst "
                     f"{min(gains):+.2f}) | median {np.median(times):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", default=None)
    ap.add_argument("--table", action="store_true", help="print the table and stop")
    args = ap.parse_args(argv)
    cases = list(OFFSET_CASES) if args.cases is None else [
        (g, k, int(s)) for g, k, s in (c.split(":") for c in args.cases.split(","))]
    out = Path(args.out)
    rows: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
    if not args.table:
        H.warm_up()
        for g, k, seed in cases:
            for reseat in (False, True):
                if any((r["geometry"], r["phantom"], r["seed"], r["reseat"])
                       == (g, k, seed, reseat) for r in rows):
                    continue
                rows.append(run(g, k, seed, reseat))
                tmp = out.with_suffix(".tmp")
                tmp.write_text(json.dumps(rows, indent=1))
                tmp.replace(out)
                print(f"{g} {k} {seed} reseat={reseat}: done", flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

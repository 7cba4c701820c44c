"""What a decision of the position check costs the image: for every file of
``check_rates.py`` (correct, and sensors off by a quarter or half of the held-out
benchmark's errors), TV with the file's geometry (what the default returns when the check
passes the file) and the default when the check asks for calibration (self-calibration, the
held-out rule that keeps the file's geometry when the data do not identify a better one,
then TV), both scored by registered PSNR against the truth.

A miss costs the second minus the first on a wrong file; a false alarm costs the same on a
correct file (usually nothing: the held-out rule keeps the file's geometry). With the
per-file spread, noise and common shift of ``check_rates.json``, any rule's false alarms,
misses and their cost follow without running the check again (``--table``).

Run (resumable; ``--part K/M`` runs every M-th file from the K-th, for parallel
processes writing to separate files)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/check_costs.py \\
        --out benchmarks/calibration/check_costs.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_rates as CR  # noqa: E402
import heldout_default as H  # noqa: E402

import oatomo  # noqa: E402
from oatomo.calibration.check import CHECK_SPEED_DROP  # noqa: E402
from oatomo.calibration.estimate import identifiability_notes  # noqa: E402
from oatomo.pipeline import policy  # noqa: E402

KINDS = ("correct", "positions x0.25", "positions x0.5")

#: The rules tabulated: (threshold in pixels, factor on the noise). The check's own is
#: (:data:`oatomo.calibration.check.CHECK_PIXELS`, 1): a quarter of a pixel, chosen with
#: this table on the tuning files (seeds 6000+); half a pixel was the former default.
RULES = ((0.5, 1.0), (0.5, 1.5), (0.35, 1.0), (0.25, 1.0), (0.25, 0.75), (0.15, 0.75),
         (0.15, 0.5))

#: Rules whose noise factor applies on sparse arrays only (median angular pitch at least
#: :data:`oatomo.calibration.estimate.SPARSE_PITCH`, where calibration itself says the
#: positions are weakly identifiable: the 12-, 16- and 24-sensor rings here), the quarter
#: pixel and a factor of 1 elsewhere.
SPARSE_RULES = ((0.25, 1.25), (0.25, 1.5), (0.25, 1.75), (0.25, 2.0))


def is_sparse(geometry: str) -> bool:
    """Whether calibration calls a benchmark array's positions weakly identifiable
    (:func:`oatomo.calibration.estimate.identifiability_notes` has a note for it)."""
    return bool(identifiability_notes(H.GEOMETRIES[geometry].nominal().positions
                                      .astype(np.float64)))


def asked_default(scan: Any, grid: Any) -> np.ndarray:
    """The default's image when the position check asks for calibration."""
    real = policy.check_positions

    def asking(*args: Any, **kwargs: Any) -> Any:
        check = real(*args, **kwargs)
        return dataclasses.replace(check, spread=max(check.spread, 1.0), reason="")

    policy.check_positions = asking
    try:
        return np.asarray(oatomo.reconstruct(scan, grid=grid, refine=False).image, np.float64)
    finally:
        policy.check_positions = real


def rows_to_run(rates: list[dict[str, Any]], part: tuple[int, int],
                kinds: tuple[str, ...] = KINDS) -> list[dict[str, Any]]:
    todo = [r for r in rates if r["kind"] in kinds]
    return todo[part[0]::part[1]]


def decide(r: dict[str, Any], threshold_px: float, factor: float) -> bool:
    """A check rule on a row of ``check_rates.json``: spread above ``threshold_px`` pixels
    and ``factor`` x its noise, or a common shift above the threshold and three standard
    errors, or on arcs a speed search's drop (the rule of
    :class:`oatomo.calibration.PositionCheck` at
    :data:`~oatomo.calibration.check.CHECK_PIXELS` and 1)."""
    thr = threshold_px * H.FOV / H.N_IMAGE * 1e6
    n = H.GEOMETRIES[r["geometry"]].n
    se = 1.2533 * r["noise_um"] / math.sqrt(n)
    return (r["spread_um"] > max(thr, factor * r["noise_um"])
            or abs(r["offset_um"]) > max(thr, 3 * se)
            or (r.get("speed_drop") is not None and r["speed_drop"] > CHECK_SPEED_DROP))


def table(rates: list[dict[str, Any]], costs: list[dict[str, Any]]) -> str:
    """Markdown: per rule, false alarms and misses with what they cost."""
    key = {(c["geometry"], c["kind"], c["phantom"], c["seed"]): c for c in costs}
    lines = ["| threshold (px) | noise factor | false alarms | their cost (dB, sum) | "
             "misses x0.25 | misses x0.5 | their cost (dB, sum) | total (dB) |",
             "|---|---|---|---|---|---|---|---|"]
    sparse = {g: is_sparse(g) for g in {r["geometry"] for r in rates}}
    for thr, factor, sparse_only in ([(t, f, False) for t, f in RULES]
                                     + [(t, f, True) for t, f in SPARSE_RULES]):
        fa = cost_fa = cost_miss = 0.0
        miss = {"positions x0.25": 0, "positions x0.5": 0}
        n_fa = 0
        for r in rates:
            c = key.get((r["geometry"], r["kind"], r["phantom"], r["seed"]))
            if c is None:
                continue
            asked = decide(r, thr, factor if sparse[r["geometry"]] or not sparse_only
                           else 1.0)
            gain = c["psnr_asked"] - c["psnr_tv_file"]
            if r["kind"] == "correct":
                n_fa += 1
                if asked:
                    fa += 1
                    cost_fa += min(gain, 0.0)
            elif not asked:
                miss[r["kind"]] += 1
                cost_miss -= max(gain, 0.0)
        label = f"{factor} (sparse arrays)" if sparse_only else f"{factor}"
        lines.append(f"| {thr} | {label} | {int(fa)}/{n_fa} | {cost_fa:.1f} | "
                     f"{miss['positions x0.25']} | {miss['positions x0.5']} | "
                     f"{cost_miss:.1f} | {cost_fa + cost_miss:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default=str(Path(__file__).parent / "check_rates.json"))
    ap.add_argument("--out", required=True, help="comma list of files with --table")
    ap.add_argument("--part", default="0/1")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="kinds of file to run (e.g. 'speed only': what a miss of a wrong "
                    "speed of sound costs)")
    args = ap.parse_args(argv)
    rates = json.loads(Path(args.rates).read_text())
    if args.table:
        costs = [c for f in args.out.split(",") for c in json.loads(Path(f).read_text())]
        print(table(rates, costs))
        return 0
    k, m = (int(v) for v in args.part.split("/"))
    out = Path(args.out)
    done = json.loads(out.read_text()) if out.exists() else []
    seen = {(c["geometry"], c["kind"], c["phantom"], c["seed"]) for c in done}
    H.warm_up()
    for r in rows_to_run(rates, (k, m), tuple(args.kinds.split(","))):
        if (r["geometry"], r["kind"], r["phantom"], r["seed"]) in seen:
            continue
        scan, grid, _, truth = CR.scan_of(r["geometry"], r["kind"], r["phantom"], r["seed"])
        plain = oatomo.reconstruct(scan, "mb-tv", grid=grid, calibrate=False, refine=False)
        row = {"geometry": r["geometry"], "kind": r["kind"], "phantom": r["phantom"],
               "seed": r["seed"],
               "psnr_tv_file": H.register(np.asarray(plain.image, np.float64), truth)[0],
               "psnr_asked": H.register(asked_default(scan, grid), truth)[0]}
        done.append(row)
        out.write_text(json.dumps(done, indent=1))
        print(f"{row['geometry']} {row['kind']} {row['phantom']} {row['seed']}: TV file "
              f"{row['psnr_tv_file']:.2f}, asked {row['psnr_asked']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

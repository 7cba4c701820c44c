"""The refinement guard (:mod:`oatomo.refine.guard`): its rule, tuned on one set of scans and
reported on others, without the inverse crime.

Protocol
--------
Data: as ``benchmarks/calibration/heldout_default.py`` (whose phantoms, band and
acquisition this script reuses): the truth is drawn on a grid 2x finer than the image grid
(256 x 256 at 0.05 mm, 12.8 mm field of view) and simulated there with oatomo's own
forward model (:func:`oatomo.forward.simulate`, slab thickness the image pitch) with a
Gaussian detector band (centre 4 MHz, 120 % fractional bandwidth) and white noise of 1-2 %
(drawn) of the largest clean sample, at 40 MHz; the file's positions and speed of sound
are the true ones (this measures the refiner, not the calibration). The truth for scoring
is the fine p0 block-averaged (2 x 2) onto the 128 x 128 image grid, maximum 1.

Per scan: UBP (the pipeline's default physics image), the refined image (the shipped
refiner's :meth:`~oatomo.refine.Refiner.refine_scan` on the image grid, ``check=False`` so
that scans outside the family, the linear array, are refined too) and its guard numbers
(:func:`oatomo.refine.guard.check_refined` against the UBP image), and TV with 50
iterations (``oatomo.reconstruct(..., "mb-tv", refine=False, calibrate=False)``). PSNR
(data range 1) after the best affine fit to the truth. Times: refinement + guard, and
the TV call.

Sets. Tuning (the rule's constants were chosen on these only): a 48-sensor ring
(r 25 mm) and a 48-sensor 200 deg arc (r 25 mm), phantoms ``vessels-thick`` and
``disks``, seeds 1000-1003. Report: rings of 32 (r 21 mm) and 256 (r 45 mm) sensors, an
80-sensor 270 deg arc (r 24 mm), a 128-element linear array (0.2 mm pitch, 10 mm below:
outside the refiner's family) with phantoms ``vessels-thin``, ``texture``, ``points``,
``checker`` (a 1 mm checkerboard, a kind the refiner never saw) and ``noise`` (a record of
pure noise, no p0), seeds 2000-2001.

Run (resumable: finished cases in the JSON are kept)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refinement/guard.py \\
        --out benchmarks/refinement/guard.json
    .venv/bin/python benchmarks/refinement/guard.py --out benchmarks/refinement/guard.json \\
        --table

``--quick``: one seed per set.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

import oatomo
from oatomo.forward import simulate
from oatomo.geometry import Grid
from oatomo.io import Scan
from oatomo.refine import load_refiner
from oatomo.refine.guard import GUARD_RULE, GuardRule, check_refined
from oatomo.resources import default_model_path
from oatomo.response import DetectorResponse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "calibration"))
import heldout_default as H  # noqa: E402 - the shared simulation of the held-out benchmark

MM = 1e-3
DEG = math.pi / 180
GEOMETRIES = {
    "ring48": H.Geometry("ring", 48, 25 * MM),
    "arc200": H.Geometry("ring", 48, 25 * MM, 200 * DEG),
    "ring32": H.GEOMETRIES["ring32"], "ring256": H.GEOMETRIES["ring256"],
    "arc270": H.GEOMETRIES["arc270"], "linear128": H.GEOMETRIES["linear128"],
}
TUNING = (("ring48", "arc200"), ("vessels-thick", "disks"), range(1000, 1004))
REPORT = (("ring32", "ring256", "arc270", "linear128"),
          ("vessels-thin", "texture", "points", "checker", "noise"), range(2000, 2002))


def checker(grid: Grid) -> np.ndarray:
    """A checkerboard of 1 mm squares over the field of view, values 0 and 1."""
    k = np.floor((grid.x + grid.fov / 2) / MM).astype(int)
    return ((k[:, None] + k[None, :]) % 2).astype(np.float32)


def run_case(geometry: str, kind: str, seed: int, refiner: Any) -> dict[str, Any]:
    """Simulate one scan; UBP, refined (+ guard) and TV50 with their PSNRs and times."""
    geo = GEOMETRIES[geometry]
    rng = np.random.default_rng([seed, zlib.crc32(geometry.encode()), zlib.crc32(kind.encode())])
    grid, fine = Grid(H.N_IMAGE, H.FOV), Grid(2 * H.N_IMAGE, H.FOV)
    sensors = geo.nominal()
    c = float(rng.uniform(*H.C_TRUE))
    acq = H.acquisition_for([sensors], grid, [c])
    acq = acq.__class__(acq.fs, acq.n_samples, speed_of_sound=c, t0=acq.t0)
    response = DetectorResponse(centre_frequency=H.BAND_CENTRE_AT_01MM * 0.1 * MM / grid.dx,
                                bandwidth=H.BANDWIDTH)
    noise = float(rng.uniform(*H.NOISE))
    if kind == "noise":
        p0_fine = np.zeros(fine.shape, np.float32)
        y = rng.standard_normal((sensors.n_sensors, acq.n_samples)).astype(np.float32)
    else:
        p0_fine = checker(fine) if kind == "checker" else H.phantom(kind, fine, rng)
        y = simulate(p0_fine, fine, sensors, acq, thickness=grid.dx, noise_std=noise,
                     response=response, seed=int(rng.integers(2**63)))
    truth = H.block_mean(p0_fine.astype(np.float64))
    scan = Scan(y, sensors, acq, response=response)
    ubp = np.asarray(oatomo.reconstruct(scan, "ubp", grid=grid, refine=False,
                                        calibrate=False).image)
    t = time.perf_counter()
    res = refiner.refine_scan(y, sensors, acq, grid, check=False)
    verdict = check_refined(res.refined, ubp, y, grid, sensors, acq, response=response)
    t_refine = time.perf_counter() - t
    t = time.perf_counter()
    tv = oatomo.reconstruct(scan, "mb-tv", grid=grid, refine=False, calibrate=False,
                            iters=H.TV_ITERS).image
    t_tv = time.perf_counter() - t
    row = {"geometry": geometry, "phantom": kind, "seed": seed, "noise": noise,
           "in_family": refiner.compatible(sensors, acq, grid)[0],
           "t_refine_guard": t_refine, "t_tv50": t_tv, **verdict.numbers}
    if truth.max() > 0:
        truth = truth / truth.max()
        row.update(psnr_ubp=H.score(ubp, truth), psnr_refined=H.score(res.refined, truth),
                   psnr_tv=H.score(np.asarray(tv), truth))
    return row


def passes(row: dict[str, Any], rule: GuardRule) -> bool:
    """The rule of :func:`oatomo.refine.guard.check_refined` on a row's numbers."""
    return (row["snr"] >= rule.min_snr and row["explained_refined"] > 0
            and row["explained_refined"] >= rule.min_ratio * row["explained_physics"])


def guarded_psnr(row: dict[str, Any], rule: GuardRule) -> float:
    """The PSNR of what the pipeline keeps: refined when it passes, else UBP."""
    return row["psnr_refined"] if passes(row, rule) else row["psnr_ubp"]


def tune(rows: list[dict[str, Any]]) -> list[tuple[float, float, float, float]]:
    """(mean guarded PSNR, fallback rate, min_ratio) over a grid of rules, best first
    (ties: the strictest rule, the largest ratio)."""
    out = []
    for ratio in np.round(np.arange(0.0, 1.01, 0.05), 2):
        rule = GuardRule(GUARD_RULE.min_snr, float(ratio))
        psnr = float(np.mean([guarded_psnr(r, rule) for r in rows]))
        fall = float(np.mean([not passes(r, rule) for r in rows]))
        out.append((psnr, fall, float(ratio)))
    return sorted(out, key=lambda v: (-round(v[0], 2), -v[2]))


def chosen(rows: list[dict[str, Any]], tolerance: float = 0.1) -> float:
    """The tuning criterion: the largest ``min_ratio`` whose mean guarded PSNR on the
    tuning rows is within ``tolerance`` dB of the best rule's (the tuning scans are all in
    the family, where the refiner helps: the guard must not cost there)."""
    rules = tune(rows)
    best = max(v[0] for v in rules)
    return max(v[2] for v in rules if v[0] >= best - tolerance)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per (set, geometry, phantom) the fallback rate and mean PSNRs."""
    lines = ["| set | geometry | phantom | n | fallback | UBP | refined | default | TV50 | "
             "refine+guard / TV50 time |", "|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["set"], r["geometry"], r["phantom"]) for r in rows},
                  key=lambda k: (k[0] != "tuning", k))
    for key in keys:
        sel = [r for r in rows if (r["set"], r["geometry"], r["phantom"]) == key]
        fall = np.mean([not passes(r, GUARD_RULE) for r in sel])

        def mean(name: str, sel: list = sel) -> str:
            v = [r[name] for r in sel if name in r]
            return f"{np.mean(v):.1f}" if v else "-"
        default = ([guarded_psnr(r, GUARD_RULE) for r in sel] if "psnr_ubp" in sel[0] else [])
        ratio = np.median([r["t_refine_guard"] / r["t_tv50"] for r in sel])
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {len(sel)} | {fall:.0%} | "
                     f"{mean('psnr_ubp')} | {mean('psnr_refined')} | "
                     f"{np.mean(default):.1f} | {mean('psnr_tv')} | {ratio:.2f} |"
                     if default else
                     f"| {key[0]} | {key[1]} | {key[2]} | {len(sel)} | {fall:.0%} | - | - | "
                     f"- | - | {ratio:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="JSON of the rows (resumes)")
    ap.add_argument("--table", action="store_true", help="print the tables from the JSON")
    ap.add_argument("--quick", action="store_true", help="one seed per set")
    args = ap.parse_args()
    out = Path(args.out)
    rows: list[dict[str, Any]] = json.loads(out.read_text()) if out.is_file() else []
    if not args.table:
        refiner = load_refiner(default_model_path())
        done = {(r["geometry"], r["phantom"], r["seed"]) for r in rows}
        for name, (geos, kinds, seeds) in (("tuning", TUNING), ("report", REPORT)):
            for seed in list(seeds)[:1] if args.quick else seeds:
                for g in geos:
                    for k in kinds:
                        if (g, k, seed) in done:
                            continue
                        rows.append({"set": name, **run_case(g, k, seed, refiner)})
                        tmp = out.with_suffix(".tmp")
                        tmp.write_text(json.dumps(rows, indent=1))
                        tmp.replace(out)
                        print(f"{name} {g} {k} {seed}: {rows[-1].get('psnr_refined', 0):.1f} "
                              f"dB refined, guard {passes(rows[-1], GUARD_RULE)}", flush=True)
    tuning = [r for r in rows if r["set"] == "tuning"]
    print(f"rule: {asdict(GUARD_RULE)}\n")
    if tuning:
        print("tuning set, best rules (mean guarded PSNR, fallback rate, min_ratio):")
        for v in tune(tuning)[:8]:
            print(f"  {v[0]:.2f} dB, {v[1]:.0%}, {v[2]:g}")
        print(f"chosen (strictest within 0.1 dB of the best): min_ratio = {chosen(tuning):g}")
        print()
    print(table(rows))


if __name__ == "__main__":
    main()

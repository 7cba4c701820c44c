"""False alarms and misses of the position check on held-out scans, by error size.

:func:`oatomo.check_positions` (what ``calibrate="auto"`` runs first) on scans of the
held-out calibration benchmark's protocol (``heldout_default.py``: oatomo's forward model
on a 2x finer grid, Gaussian detector band, 1-2 % noise, 128 x 128 image grid at 0.1 mm)
whose file is right, or wrong by a known amount:

* ``correct``: the file holds the true positions and speed of sound (a calibration here
  is a false alarm);
* ``positions x F``: per-sensor errors of the held-out benchmark's sizes (rings and arcs:
  radial 0.20-0.25 mm, angular 0.40-0.50 deg, jitter 0.03-0.05 mm; linear arrays 0.1 mm
  along and across plus jitter) times F = 0.25, 0.5 or 1, the speed of sound right;
* ``speed only``: the positions right, the file's speed of sound off by 0.5-1 % (either
  sign).

Geometries: the held-out benchmark's seven arrays and the identifiability benchmark's
(``identifiability.py``: rings of 12-48 sensors, 90-200 deg arcs, linear arrays of 64 and
96 elements); phantom kinds: the held-out benchmark's five, one per scan in rotation.
The check's constants were chosen long before on other scans
(``tune_position_check.py``); none of these scans was used to choose anything.

Rates come with exact (Clopper-Pearson) 95 % intervals (:func:`scipy.stats.binomtest`).

Run (resumable)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/check_rates.py --seeds 8 \\
        --out benchmarks/calibration/check_rates.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402
import identifiability  # noqa: E402, F401  (registers its geometries)

import oatomo  # noqa: E402
from oatomo.calibration.check import CHECK_PIXELS  # noqa: E402
from oatomo.forward import simulate  # noqa: E402
from oatomo.geometry import Grid, SensorArray  # noqa: E402
from oatomo.response import DetectorResponse  # noqa: E402

KINDS = ("correct", "positions x0.25", "positions x0.5", "positions x1", "speed only")
FIRST_SEED = 5000


def scan_of(geometry: str, kind: str, phantom: str, seed: int
            ) -> tuple[H.Scan, Grid, float, np.ndarray]:
    """The file of one case, the rms position error it carries (m) and the truth on the
    image grid (max 1)."""
    geo = H.GEOMETRIES[geometry]
    rng = np.random.default_rng([seed, zlib.crc32(geometry.encode()),
                                 zlib.crc32(kind.encode())])
    grid, fine = Grid(H.N_IMAGE, H.FOV), Grid(2 * H.N_IMAGE, H.FOV)
    p0 = H.phantom(phantom, fine, rng)
    nominal = geo.nominal()
    c_true = float(rng.uniform(*H.C_TRUE))
    c_file, true = c_true, nominal
    if kind.startswith("positions"):
        f = float(kind.split("x")[1])
        if geo.kind == "linear":
            jitter = float(rng.uniform(*H.JITTER))
            d = rng.standard_normal((geo.n, 2)) * H.LINEAR_STD \
                + rng.standard_normal((geo.n, 2)) * jitter
            true = SensorArray(nominal.positions + f * d, nominal.normals)
        else:
            true = nominal.perturbed(radial_std=f * float(rng.uniform(*H.RADIAL)),
                                     angular_std=f * float(rng.uniform(*H.ANGULAR_DEG))
                                     * H.DEG,
                                     jitter_std=f * float(rng.uniform(*H.JITTER)), seed=rng)
    elif kind == "speed only":
        c_file = c_true * (1 + float(rng.choice([-1, 1])) * float(rng.uniform(0.005, 0.01)))
    acq = H.acquisition_for([nominal, true], grid, [c_true, c_file])
    response = DetectorResponse(centre_frequency=H.BAND_CENTRE_AT_01MM * 0.1 * H.MM / grid.dx,
                                bandwidth=H.BANDWIDTH)
    y = simulate(p0, fine, true, replace(acq, speed_of_sound=c_true), thickness=grid.dx,
                 noise_std=float(rng.uniform(*H.NOISE)), response=response,
                 seed=int(rng.integers(2**63)))
    err = H.rms_um(nominal, true) * 1e-6 if true is not nominal else 0.0
    truth = H.block_mean(p0.astype(np.float64))
    return (H.Scan(y, nominal, replace(acq, speed_of_sound=c_file), response=response),
            grid, err, truth / truth.max())


def run(geometry: str, kind: str, phantom: str, seed: int) -> dict[str, Any]:
    scan, grid, err, truth = scan_of(geometry, kind, phantom, seed)
    t = time.perf_counter()
    check = oatomo.check_positions(scan.sinogram, scan.sensors, scan.acquisition, grid)
    row = {"geometry": geometry, "kind": kind, "phantom": phantom, "seed": seed,
           "rms_error_um": err * 1e6, "asked": bool(check.needs_calibration),
           "spread_um": check.spread * 1e6, "offset_um": check.offset * 1e6,
           "noise_um": check.noise * 1e6, "threshold_um": check.threshold * 1e6,
           "speed_drop": check.speed_drop,
           "t_check": time.perf_counter() - t}
    if kind == "correct" and row["asked"]:  # what the false alarm costs the default
        rec = oatomo.reconstruct(scan, grid=grid, refine=False)
        row["default_calibrated"] = rec.provenance["calibration"] is not None
        row["why_not"] = rec.provenance["position_check"].get("why_not")
        plain = oatomo.reconstruct(scan, "mb-tv", grid=grid, calibrate=False, refine=False)
        row["psnr_default_reg"] = H.register(np.asarray(rec.image, np.float64), truth)[0]
        row["psnr_tv_file_reg"] = H.register(np.asarray(plain.image, np.float64), truth)[0]
    return row


def asked(row: dict[str, Any]) -> bool:
    """Whether the check as it is now asks for calibration on ``row``: its rule
    (:class:`oatomo.PositionCheck`) on the stored spread, noise and common shift with
    today's threshold (:data:`~oatomo.calibration.check.CHECK_PIXELS`), so that rows
    measured under another threshold need not be run again. A row the check declined for
    lack of structure although its rule said yes stays declined."""
    dx = H.FOV / H.N_IMAGE
    now = oatomo.PositionCheck(row["spread_um"] * 1e-6, row["noise_um"] * 1e-6,
                               CHECK_PIXELS * dx, 1.0, 0.0, "", row["offset_um"] * 1e-6,
                               H.GEOMETRIES[row["geometry"]].n, row.get("speed_drop"))
    then = replace(now, threshold=row["threshold_um"] * 1e-6)
    declined = then.needs_calibration and not row["asked"]
    return now.needs_calibration and not declined


def rate(k: int, n: int) -> str:
    """``k/n (p %, 95 % CI lo-hi %)``."""
    if n == 0:
        return "-"
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return f"{k}/{n} ({100 * k / n:.1f} %; 95 % CI {100 * ci.low:.1f}-{100 * ci.high:.1f} %)"


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: calibration asked, by kind of file (all geometries), and per geometry."""
    lines = [f"Threshold {CHECK_PIXELS} px ({CHECK_PIXELS * H.FOV / H.N_IMAGE * 1e6:.0f} um).",
             "", "| file | calibration asked | median spread (um) |", "|---|---|---|"]
    for kind in KINDS:
        sel = [r for r in rows if r["kind"] == kind]
        if sel:
            lines.append(f"| {kind} | {rate(sum(asked(r) for r in sel), len(sel))} "
                         f"| {np.median([r['spread_um'] for r in sel]):.0f} |")
    alarms = [r for r in rows if r["kind"] == "correct" and asked(r)]
    if alarms:
        kept = [r for r in alarms if not r.get("default_calibrated", True)]
        loss = [r["psnr_default_reg"] - r["psnr_tv_file_reg"] for r in alarms]
        lines += ["", f"False alarms: the default kept the file's geometry on {len(kept)} of "
                      f"{len(alarms)}; default minus TV with the file's geometry "
                      f"{min(loss):+.2f} to {max(loss):+.2f} dB (registered)."]
        lines += [f"- {r['geometry']} {r['phantom']}: {r.get('why_not')}" for r in alarms]
    lines += ["", "| geometry | false alarms (correct files) | misses (positions x1) "
              "| misses (x0.5) | misses (x0.25) | misses (speed only) |",
              "|---|---|---|---|---|---|"]
    for g in dict.fromkeys(r["geometry"] for r in rows):
        cells = []
        for kind in KINDS:
            sel = [r for r in rows if r["geometry"] == g and r["kind"] == kind]
            k = sum(asked(r) for r in sel) if kind == "correct" else \
                sum(not asked(r) for r in sel)
            cells.append(f"{k}/{len(sel)}")
        lines.append(f"| {g} | " + " | ".join([cells[0], cells[3], cells[2], cells[1],
                                                  cells[4]]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--geometries",
                    default=",".join(g for g in H.GEOMETRIES if g != "ring512"))
    ap.add_argument("--seeds", type=int, default=2, help="scans per geometry and kind")
    ap.add_argument("--out", required=True)
    ap.add_argument("--table", action="store_true", help="print the tables and stop")
    ap.add_argument("--first-seed", type=int, default=FIRST_SEED,
                    help="seeds from this one (6000: tuning files, none of them reported)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    if args.table:
        print(table(rows))
        return 0
    done = {(r["geometry"], r["kind"], r["seed"]) for r in rows}
    for g in args.geometries.split(","):
        for kind in KINDS:
            for i in range(args.seeds):
                seed = args.first_seed + i
                if (g, kind, seed) in done:
                    continue
                phantom = H.PHANTOMS[(i + KINDS.index(kind)) % len(H.PHANTOMS)]
                row = run(g, kind, phantom, seed)
                rows.append(row)
                out.write_text(json.dumps(rows, indent=1))
                print(f"{g} {kind} {phantom}: asked {row['asked']}, spread "
                      f"{row['spread_um']:.0f} um (error {row['rms_error_um']:.0f} um)",
                      flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

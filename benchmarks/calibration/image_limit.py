"""What stops the joint calibration short of the true positions: the sensors or the image?

From the default calibration's estimate of a tuning scan (seed 2000 of the held-out
benchmark's generator, ``heldout_default.py``; none of these scans is in its report
tables), every sensor is moved once more against a FIXED image, by a grid search over
its own record (9 x 17 candidates 0.25 pixel apart along x across its line of sight,
correlation with the predicted record at the best amplitude) and then Gauss-Newton steps
(:func:`oatomo.calibration.joint.gauss_newton_step`), with images of four kinds:

* ``truth``: the true image (the fine phantom block-averaged onto the image grid), in its
  own frame (the estimate is not mapped back into the file's gauge, which would move it
  against that image);
* ``tv``: the default TV at the estimate (what the calibration's last rounds see, with
  the reconstruction's weight);
* ``refined``: that TV refined by the shipped TV refiner (the guard may keep TV);
* ``folds K``: for each of K interleaved folds, TV of the OTHER folds' records at the
  current estimate (a sensor's own record does not shape the image it is placed
  against), two rounds.

Each is scored by the rms position error after rigid alignment and the registered PSNR of
the default TV at the new positions.

Run::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/image_limit.py \\
        --out benchmarks/calibration/image_limit.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402
from joint_floor import tv_psnr  # noqa: E402

import oatomo  # noqa: E402
from oatomo.calibration.gauge import to_gauge  # noqa: E402
from oatomo.calibration.joint import gauss_newton_step  # noqa: E402
from oatomo.calibration.levels import schedule  # noqa: E402
from oatomo.calibration.search import (  # noqa: E402
    interleaved_folds,
    local_frames,
    predicted_records,
    relative_misfit,
)
from oatomo.geometry import SensorArray  # noqa: E402

SEED = 2000
CASES = (("ring32", "vessels-thin"), ("ring64", "vessels-thin"), ("ring64", "vessels-thick"),
         ("arc270", "vessels-thin"))
ALONG, ACROSS, STEP, GN_STEPS = 4, 8, 0.25, 3


def grid_fit(level: Any, image: np.ndarray, pos: np.ndarray, idx: np.ndarray,
             response: Any) -> np.ndarray:
    """Sensors ``idx`` moved to their best candidate against ``image``."""
    fr = local_frames(pos[idx])
    dx = level.grid.dx
    a, c = np.meshgrid(np.arange(-ALONG, ALONG + 1) * STEP * dx,
                       np.arange(-ACROSS, ACROSS + 1) * STEP * dx, indexing="ij")
    a, c = a.ravel(), c.ravel()
    cand = (pos[idx][:, None, :] + a[None, :, None] * fr[:, None, 0, :]
            + c[None, :, None] * fr[:, None, 1, :])
    pred = predicted_records(level, image, cand.reshape(-1, 2), None, response)
    mis = relative_misfit(pred.reshape(len(idx), len(a), -1), level.data[idx])
    return cand[np.arange(len(idx)), np.argmin(mis, axis=1)]


def move(level: Any, image: np.ndarray, pos: np.ndarray, idx: np.ndarray, nominal: np.ndarray,
         prior_std: float, c: float, response: Any) -> np.ndarray:
    """Grid search, then Gauss-Newton steps, of sensors ``idx`` against ``image``."""
    lev = replace(level, acquisition=replace(level.acquisition, speed_of_sound=c))
    p = pos.copy()
    p[idx] = grid_fit(lev, image, pos, idx, response)
    sub = replace(lev, data=lev.data[idx])
    for _ in range(GN_STEPS):
        p[idx] = gauss_newton_step(sub, image, p[idx], nominal[idx], prior_std, None,
                                   level.grid.dx, response)[0]
    return p[idx]


def image_at(case: H.Case, pos: np.ndarray, normals: np.ndarray, c: float, keep: Any = None,
             refine: bool = False) -> np.ndarray:
    """The default TV (or its refinement) of ``case``'s records at ``pos`` and ``c``."""
    keep = slice(None) if keep is None else keep
    scan = H.Scan(case.scan.sinogram[keep], SensorArray(pos[keep], normals[keep]),
                  replace(case.scan.acquisition, speed_of_sound=c),
                  response=case.scan.response)
    rec = oatomo.reconstruct(scan, None if refine else "mb-tv", grid=case.grid,
                             calibrate=False, refine=refine)
    return np.asarray(rec.image, np.float32)


def run(geometry: str, kind: str, mode: str) -> dict[str, Any]:
    case = H.make_case(geometry, kind, SEED)
    cal = oatomo.calibrate(case.scan, case.grid)
    nominal = case.scan.sensors.positions.astype(np.float64)
    pos, c, normals = cal.sensors.positions.astype(np.float64), cal.speed_of_sound, \
        cal.sensors.normals
    level = schedule(case.scan.sinogram.astype(np.float32), case.scan.acquisition,
                     case.grid, cal.prior_std, 3, fft=True)[-1]
    n = len(pos)
    every = np.arange(n)
    t = time.perf_counter()
    if mode == "truth":  # the true image's frame: no gauge
        pos = move(level, case.truth.astype(np.float32), pos, every, nominal, cal.prior_std,
                   c, case.scan.response)
    else:
        folds = interleaved_folds(nominal, int(mode.split()[1])) \
            if mode.startswith("folds") else [every]
        for _ in range(2 if mode.startswith("folds") else 1):
            new = pos.copy()
            for idx in folds:
                keep = np.setdiff1d(every, idx) if len(folds) > 1 else None
                img = image_at(case, pos, normals, c, keep, refine=mode == "refined")
                new[idx] = move(level, img, pos, idx, nominal, cal.prior_std, c,
                                case.scan.response)
            pos, _, s, _ = to_gauge(new, pos, nominal, np.tile(np.eye(2), (n, 1, 1)),
                                    scale=True)
            c *= s
    sensors = SensorArray(pos, normals)
    return {"geometry": geometry, "phantom": kind, "mode": mode,
            "pos_err_cal_um": H.rms_um(cal.sensors, case.true),
            "pos_err_um": H.rms_um(sensors, case.true),
            "psnr_cal": tv_psnr(case, cal.sensors, cal.speed_of_sound),
            "psnr": tv_psnr(case, sensors, c),
            "psnr_true": tv_psnr(case, case.true, case.c_true),
            "t_s": time.perf_counter() - t}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="truth,tv,refined,folds 4,folds 16")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    out = Path(args.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    done = {(r["geometry"], r["phantom"], r["mode"]) for r in rows}
    for mode in args.modes.split(","):
        for g, k in CASES:
            if (g, k, mode) in done:
                continue
            row = run(g, k, mode)
            rows.append(row)
            out.write_text(json.dumps(rows, indent=1))
            print(f"{mode:9s} {g} {k}: {row['pos_err_cal_um']:.0f} -> {row['pos_err_um']:.0f} "
                  f"um, TV {row['psnr_cal']:.2f} -> {row['psnr']:.2f} dB (true positions "
                  f"{row['psnr_true']:.2f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

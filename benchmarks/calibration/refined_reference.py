"""Would the refined image make a better reference for the sensor positions than
calibrated TV? An exploratory check on tuning scans (not a shipped benchmark).

Per scan (``heldout_default.make_case``, tuning seed 2000): the default calibration, its
calibrated TV image and the TV refiner's image of it; then, at the finest level (the
image grid, full band), a few damped Gauss-Newton steps of every sensor's position
(:func:`oatomo.calibration.joint.gauss_newton_step`, the prior centred on the calibrated
positions) against a FIXED reference image: calibrated TV, the refined image, or the
truth (an oracle). Reports the rms position error after rigid alignment to the truth
before and after, and, for the refined reference, the TV and refined images at the moved
positions (registered PSNR).

Run::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/refined_reference.py \\
        --out benchmarks/calibration/refined_reference.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402

import oatomo  # noqa: E402
from oatomo.calibration import apply_calibration  # noqa: E402
from oatomo.calibration.joint import gauss_newton_step  # noqa: E402
from oatomo.calibration.levels import schedule  # noqa: E402
from oatomo.geometry import SensorArray  # noqa: E402
from oatomo.io import Scan  # noqa: E402

CASES = (("ring32", "vessels-thin"), ("ring64", "vessels-thin"), ("ring64", "vessels-thick"),
         ("arc270", "vessels-thick"), ("ring128", "vessels-thin"), ("ring32", "disks"))
SEED = 2000
ROUNDS = 6
PRIOR_STD = 0.15 * H.MM


def moved(level, image, start, thickness, response) -> np.ndarray:
    pos = start.copy()
    for _ in range(ROUNDS):
        pos, _, _ = gauss_newton_step(level, image, pos, start, PRIOR_STD, thickness,
                                      0.5 * level.grid.dx, response)
    return pos


def run(g: str, k: str) -> dict:
    case = H.make_case(g, k, SEED)
    grid, truth = case.grid, case.truth
    cal = oatomo.calibrate(case.scan, grid)
    cs = apply_calibration(case.scan, cal)
    rec = oatomo.reconstruct(cs, "mb-tv", grid=grid, refine=True, samples=0)
    tv = np.asarray(rec.images["mb-tv"], np.float64)
    refined = np.asarray(rec.images.get("refined", tv), np.float64)
    start = cal.sensors.positions[:, :2].astype(np.float64)
    y = np.asarray(case.scan.sinogram, np.float64)
    level = schedule(y, cs.acquisition, grid, PRIOR_STD, 1)[0]
    row = {"geometry": g, "phantom": k, "refined": bool(rec.refined),
           "err_file_um": H.rms_um(case.nominal, case.true),
           "err_cal_um": H.rms_um(cal.sensors, case.true),
           "psnr_tv_cal": H.register(tv, truth)[0],
           "psnr_refined_cal": H.register(refined, truth)[0]}
    for name, ref in (("tv", tv), ("refined", refined), ("truth", truth)):
        pos = moved(level, ref, start, grid.dx, case.scan.response)
        sensors = SensorArray(pos.astype(np.float32), cal.sensors.normals)
        row[f"err_{name}_um"] = H.rms_um(sensors, case.true)
        if name == "refined":
            again = Scan(cs.sinogram, sensors, cs.acquisition, response=cs.response)
            r2 = oatomo.reconstruct(again, "mb-tv", grid=grid, refine=True, samples=0)
            row["psnr_tv_moved"] = H.register(np.asarray(r2.images["mb-tv"], np.float64),
                                              truth)[0]
            row["psnr_refined_moved"] = H.register(np.asarray(r2.image, np.float64),
                                                   truth)[0]
    print(json.dumps({a: round(b, 2) if isinstance(b, float) else b for a, b in row.items()}),
          flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    rows = [run(g, k) for g, k in CASES]
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

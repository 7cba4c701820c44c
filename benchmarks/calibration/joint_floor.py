"""Where the joint calibration's remaining error comes from: started at the true positions,
how far does it walk, and what do its positions cost the image?

On tuning scans of the held-out benchmark's generator (seed 2000; none of them in its
report tables), four estimates of the positions, each scored by the rms error after rigid
alignment and by the registered PSNR of the default TV (response in the operator, 100
iterations) at those positions and the estimate's speed of sound:

* ``oracle``: the finest level's Gauss-Newton step (:func:`oatomo.calibration.joint.
  gauss_newton_step`) repeated 6 times with the TRUE image (the fine phantom block-averaged
  onto the image grid) at the true speed of sound, started at the true positions, no
  prior: the error that the data's noise and the model's mismatch (2x finer simulation
  grid, slab thickness) alone leave;
* ``joint, from truth``: :func:`oatomo.calibrate` on the scan holding the TRUE positions
  and speed of sound (the prior centred on them), the default three levels;
* ``finest level, from truth``: the same with ``n_levels=1`` (no coarse levels; from the
  nominal positions this fails: the thin structures decorrelate at full resolution);
* ``joint, from file``: the default on the file (nominal positions, file's speed).

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/joint_floor.py \\
        --out benchmarks/calibration/joint_floor.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402

import oatomo  # noqa: E402
from oatomo.calibration.joint import gauss_newton_step  # noqa: E402
from oatomo.calibration.levels import schedule  # noqa: E402

SEED = 2000
CASES = (("ring32", "vessels-thin"), ("ring64", "vessels-thin"), ("ring128", "vessels-thin"),
         ("arc270", "vessels-thin"), ("arc270", "vessels-thick"), ("ring32", "disks"))


def tv_psnr(c: H.Case, sensors: Any, speed: float) -> float:
    """Registered PSNR of the default TV of ``c``'s records at ``sensors`` and ``speed``."""
    scan = H.Scan(c.scan.sinogram, sensors,
                  replace(c.scan.acquisition, speed_of_sound=speed), response=c.scan.response)
    rec = oatomo.reconstruct(scan, "mb-tv", grid=c.grid, calibrate=False, refine=False)
    return H.register(np.asarray(rec.image, np.float64), c.truth)[0]


def oracle(c: H.Case) -> Any:
    """Positions from 6 Gauss-Newton steps against the true image, from the truth."""
    acq = c.scan_true.acquisition  # the true speed of sound
    level = schedule(c.scan.sinogram.astype(np.float32), acq, c.grid, 2e-4, 3, fft=True)[-1]
    level = replace(level, acquisition=replace(level.acquisition,
                                               speed_of_sound=c.c_true))
    pos = c.true.positions.astype(np.float64)
    start = pos.copy()
    for _ in range(6):
        pos, _, _ = gauss_newton_step(level, c.truth.astype(np.float32), pos, start, 1.0,
                                      None, c.grid.dx, c.scan.response)
    return H.SensorArray(pos, c.true.normals)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rows = []
    for g, k in CASES:
        c = H.make_case(g, k, SEED)
        row: dict[str, Any] = {"geometry": g, "phantom": k,
                               "file_um": H.rms_um(c.nominal, c.true),
                               "tv_true": tv_psnr(c, c.true, c.c_true)}
        est = oracle(c)
        row["oracle"] = {"um": H.rms_um(est, c.true), "tv": tv_psnr(c, est, c.c_true)}
        for name, scan, levels in (("joint_from_truth", c.scan_true, 3),
                                   ("finest_from_truth", c.scan_true, 1),
                                   ("joint_from_file", c.scan, 3)):
            cal = oatomo.calibrate(scan, c.grid, n_levels=levels)
            row[name] = {"um": H.rms_um(cal.sensors, c.true),
                         "tv": tv_psnr(c, cal.sensors, cal.speed_of_sound)}
        rows.append(row)
        print(f"{g} {k}: file {row['file_um']:.0f} um; TV true {row['tv_true']:.2f} dB; "
              + "; ".join(f"{n} {row[n]['um']:.0f} um {row[n]['tv']:.2f} dB"
                          for n in ("oracle", "joint_from_truth", "finest_from_truth",
                                    "joint_from_file")), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

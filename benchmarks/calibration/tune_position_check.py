"""Tuning scans of the position check (``oatomo.calibration.check_positions``).

The calibration benchmark's setups (32- and 64-sensor rings, a 270 degree arc of 48; 128 x
128 at 0.1 mm, 40 MHz, 1 % noise) with three error sizes: none, small (radial 0.08 mm,
angular 0.2 deg) and the benchmark's (radial 0.25 mm, angular 0.6 / 0.45 deg), each on the
tuning phantoms `vessels` seed 1, `vessel-tree` seed 3, `disks` seed 7 and `blobs` seed 2;
the speed of sound is the file's (``--c-error``: drawn 1 % off, clipped to 2 %, as in the
benchmark).
Prints one JSON line per scan: the true rms position error after rigid alignment, the
check's spread, common shift, noise, held-out correlation, time and verdict.
``--response FC:BW`` passes the records through a Gaussian-band detector response first
(``--deconvolve``: and Wiener-deconvolves them again, as ``oatomo reconstruct
--deconvolve`` does before the check). The threshold (half a pixel,
and above the noise) was chosen from these lines; the reported numbers are in
``benchmarks/calibration/position_check.md`` (held-out scans).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/tune_position_check.py``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from oatomo import calibration as C
from oatomo.forward import simulate  # noqa: E402
from oatomo.phantoms import make  # noqa: E402
from oatomo.setups import Setup  # noqa: E402

DEG = math.pi / 180
GEOMETRIES = {"ring32": (32, 0.0225, 1024, 0.6, 2 * math.pi),
              "ring64": (64, 0.030, 1280, 0.45, 2 * math.pi),
              "arc270": (48, 0.025, 1280, 0.6, 1.5 * math.pi)}
PHANTOMS = (("vessels", 1), ("vessel-tree", 3), ("disks", 7), ("blobs", 2))


def setup(kind: str, errors: str) -> Setup:
    n, r, n_t, ang, arc = GEOMETRIES[kind]
    pert = {"none": {}, "small": {"radial_std": 0.08e-3, "angular_std": 0.2 * DEG},
            "bench": {"radial_std": 0.25e-3, "angular_std": ang * DEG}}[errors]
    return Setup.from_dict({
        "name": kind, "array": {"kind": "ring", "n_sensors": n, "radius": r, "arc": arc},
        "acquisition": {"fs": 40e6, "n_samples": n_t, "speed_of_sound": 1500.0},
        "grid": {"n": 128, "fov": 0.0128}, "perturbation": pert,
        "noise": {"relative_std": 0.01}})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--geometries", default="ring32,ring64,arc270")
    ap.add_argument("--errors", default="none,small,bench")
    ap.add_argument("--c-error", action="store_true")
    ap.add_argument("--response", help="FC:BW, a detector response (Hz, fraction)")
    ap.add_argument("--deconvolve", action="store_true")
    args = ap.parse_args(argv)
    response = None
    if args.response:
        from oatomo.response import DetectorResponse

        fc, bw = (float(v) for v in args.response.split(":"))
        response = DetectorResponse(centre_frequency=fc, bandwidth=bw)
    for kind in args.geometries.split(","):
        for errors in args.errors.split(","):
            for phantom, seed in PHANTOMS:
                s = setup(kind, errors)
                rng = np.random.default_rng(seed)
                p0 = make(phantom, s.grid, seed)
                true = s.draw(int(rng.integers(2**63)))
                c = 1500.0 * (1 + float(np.clip(rng.normal(0, 0.01), -0.02, 0.02)))
                acq = replace(s.acquisition, speed_of_sound=c if args.c_error else 1500.0)
                y = simulate(p0, s.grid, true, acq, noise_std=s.noise,
                             seed=int(rng.integers(2**63)))
                if response is not None:
                    from oatomo.response import convolve, wiener_deconvolve

                    y = convolve(y, acq.fs, response)
                    if args.deconvolve:
                        y = wiener_deconvolve(y, acq.fs, response)
                err = float(np.sqrt(np.mean(C.rigid_error(s.array, true) ** 2))) * 1e6
                chk = C.check_positions(y, s.array, s.acquisition, s.grid)
                print(json.dumps({"geometry": kind, "errors": errors, "phantom": phantom,
                                  "true_um": round(err), "spread_um": round(chk.spread * 1e6, 1),
                                  "offset_um": round(chk.offset * 1e6, 1),
                                  "noise_um": round(chk.noise * 1e6, 1),
                                  "correlation": round(chk.correlation, 2),
                                  "time_s": round(chk.time_s, 2),
                                  "calibrate": chk.needs_calibration}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The best any self-calibration can do, given that the gauge cannot be seen.

A rigid motion of the whole array (and a common scale of positions and speed of sound) does
not change the data, so a calibration fixes it by convention: ``oatomo.calibration`` maps
its estimate onto the prior-mean array by the least-squares similarity transform and puts
the scale into c. Applied to a *perfect* estimate, that convention gives the true positions
moved by the similarity transform onto the prior-mean array, with the true c times its
scale. TV with that geometry is the upper bound of "TV with the calibrated positions" on a
raw image (no alignment to the truth): whatever the method, its image is off by the array's
own random rigid motion, which no data can reveal.

Two sets of scans, the same as the benchmarks that report the calibrated numbers:

* ``bench``: the cases of ``benchmarks/calibration/bench_calibration.py`` (its setups, vessel trees
  and disks, seeds 100-107; TV 50 iterations, ``tol=0``), one JSON per case;
* ``evalset DIR``: a family evaluation set (``oatomo family evalset``, e.g. the 32-ring one
  of ``benchmarks/refinement/bench_calibrated_inputs.py``), TV 50 as there.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/gauge_bound.py bench \\
        --setups ring32,ring64,arc270 --out out/gauge_bound_bench.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/gauge_bound.py evalset \\
        out/calibrated_inputs/evalset --out out/gauge_bound_evalset.json

Prints one line per scan and the mean PSNR (best affine fit) per group.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "calibration"))

from oatomo.calibration import similarity_transform  # noqa: E402
from oatomo.calibration.prior import prior_from_setup  # noqa: E402
from oatomo.geometry import SensorArray  # noqa: E402
from oatomo.recon.model_based import reconstruct_model_based  # noqa: E402


def gauge_oracle(true: np.ndarray, prior_mean: np.ndarray, c_true: float
                 ) -> tuple[SensorArray, float]:
    """A perfect estimate after the calibration's gauge fixing: positions and c."""
    s, R, t = similarity_transform(true, prior_mean, scale=True)
    return SensorArray(true @ R.T * s + t), c_true * s


def bench_cases(setups: list[str]) -> dict[str, float]:
    import bench_calibration as B

    from oatomo.forward import simulate
    from oatomo.phantoms import make

    out = {}
    for sname in setups:
        setup = B.SETUPS[sname]
        drawn = setup.array.positions
        radius = float(np.mean(np.hypot(*(drawn - drawn.mean(axis=0)).T)))
        _, rot, off = prior_from_setup(setup.to_toml_string(), radius)
        cr, sr = math.cos(rot), math.sin(rot)
        prior_mean = drawn @ np.array([[cr, sr], [-sr, cr]]) + np.asarray(off)
        for kind in ("vessel-tree", "disks"):
            for seed in range(100, 108):  # the draws of bench_calibration.run_case
                rng = np.random.default_rng(seed)
                grid, acq = setup.grid, setup.acquisition
                p0 = make(kind, grid, seed)
                true = setup.draw(int(rng.integers(2**63)))
                c_true = 1500.0 * (1 + float(np.clip(rng.normal(0, 0.01), -0.02, 0.02)))
                y = simulate(p0, grid, true, replace(acq, speed_of_sound=c_true),
                             noise_std=setup.noise, seed=int(rng.integers(2**63)))
                sensors, c = gauge_oracle(true.positions, prior_mean, c_true)
                x, _ = reconstruct_model_based(y, grid, sensors,
                                               replace(acq, speed_of_sound=c),
                                               method="tv", n_iter=50, tol=0)
                key = f"{sname}/{kind}/{seed}"
                out[key] = B._quality(x, p0)[0]
                print(f"{key}: {out[key]:.2f} dB", flush=True)
    return out


def evalset_cases(directory: Path) -> dict[str, float]:
    from oatomo.evaluation import metrics as M
    from oatomo.evaluation.metrics import affine_fit
    from oatomo.evaluation.refiners import eval_acquisition, eval_files

    out = {}
    for data, grid in eval_files(directory):
        for i in range(len(data["truth"])):
            # an evaluation scan has no setup: the prior mean is the nominal array
            sensors, c = gauge_oracle(data["true"][i], data["nominal"][i],
                                      float(data["true_speed"][i]))
            acq = replace(eval_acquisition(data, i), speed_of_sound=c)
            x, _ = reconstruct_model_based(data["sinogram"][i][:, :acq.n_samples], grid,
                                           sensors, acq, method="tv", n_iter=50)
            truth = data["truth"][i]
            fit = affine_fit(x[None], truth[None])[0]
            key = f"{data['geometry']}/{data['perturbation']}/{i}"
            out[key] = float(M.psnr(fit, truth, data_range=1.0))
            print(f"{key}: {out[key]:.2f} dB", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("which", choices=("bench", "evalset"))
    ap.add_argument("evalset", nargs="?", type=Path, help="evalset: the evaluation set")
    ap.add_argument("--setups", default="ring32,ring64,arc270")
    ap.add_argument("--out", type=Path, help="JSON of the PSNR per scan")
    args = ap.parse_args(argv)
    if args.which == "evalset" and args.evalset is None:
        ap.error("evalset needs the evaluation set directory")
    res = (bench_cases(args.setups.split(",")) if args.which == "bench"
           else evalset_cases(args.evalset))
    groups: dict[str, list[float]] = {}
    for key, v in res.items():
        groups.setdefault(key.rsplit("/", 1)[0], []).append(v)
    for g, v in groups.items():
        print(f"{g}: mean {np.mean(v):.2f} dB over {len(v)} scans")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1) + "\n")
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

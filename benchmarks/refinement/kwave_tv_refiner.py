"""The residual TV refiner on scans of an independent full-wave simulator (k-Wave).

Data: the k-Wave scans of ``benchmarks/media/kwave_check.py`` (k-wave-python on its NumPy
backend, 2-D, a 64-sensor ring of radius 21 mm, the phantom on a 0.075 mm grid, water at
1500 m/s), every one with its TRUE sensor positions (a correct file): ``ring`` (a vessel
tree), ``tune-water`` (a thick vessel tree), and the true positions of the three
self-calibration cases ``cal-vessels``, ``cal-thick`` and ``cal-disks`` (run ``python
benchmarks/media/kwave_check.py simulate --cases ...`` in k-Wave's environment first). As
in ``kwave_check.py``: the signals convolved with the Gaussian detector response (2.67 MHz,
120 %), 1 % white noise, converted to the slab model by :func:`oatomo.media.line_to_slab`;
image grid 128 x 128 at 0.15 mm; truth: the fine ``p0`` averaged 2 x 2.

Per scan: UBP and TV as the pipeline makes them (``oatomo.reconstruct(scan, "ubp" /
"mb-tv", calibrate=False, refine=False)``: TV with the response in its operator, 100
iterations) and the refiner of ``tv_residual.py`` given those two images. The refiner was
trained at 0.1 mm pitch on oatomo's own simulations; the 0.15 mm grid with a 2.67 MHz band
looks, in pixels, like a 4 MHz band at 0.1 mm, so it is applied on the image grid as it is.
PSNR (dB, data range 1) after the best affine fit.

Run::

    PYTHONPATH=. .venv/bin/python benchmarks/refinement/kwave_tv_refiner.py MODEL \\
        --json benchmarks/refinement/kwave_tv_refiner.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "refinement"))

CASES = ("ring", "tune-water", "cal-vessels", "cal-thick", "cal-disks")


def _kwave_check():
    spec = importlib.util.spec_from_file_location(
        "kwave_check", ROOT / "benchmarks" / "media" / "kwave_check.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a checkpoint written by tv_residual.py train")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    import torch
    import tv_residual as T

    import oatomo
    from oatomo.evaluation.metrics import affine_fit, psnr
    from oatomo.geometry import Acquisition, Grid, SensorArray
    from oatomo.io import Scan
    from oatomo.media import line_to_slab
    from oatomo.response import DetectorResponse, convolve

    K = _kwave_check()
    grid = Grid(K.N_IMAGE, K.FOV)
    acq = Acquisition(K.FS, K.N_SAMPLES, K.C0)
    response = DetectorResponse(centre_frequency=4e6 * 0.1e-3 / grid.dx, bandwidth=1.2)
    ck = torch.load(args.model, weights_only=True, map_location="cpu")
    arch, model = T.model_of_checkpoint(ck)
    run = model if arch == "resunet" else model.reconstruct

    def score(img: np.ndarray, truth: np.ndarray) -> float:
        fit = affine_fit(np.asarray(img, np.float64)[None], truth[None])[0]
        return float(psnr(fit, truth, data_range=1.0))

    rows = []
    for name in CASES:
        path = K.OUT / f"{name}.npz"
        if not path.exists():
            print(f"{name}: not simulated ({path})", flush=True)
            continue
        d = dict(np.load(path))
        truth = T.H.block_mean(d["p0"])
        truth = truth / truth.max()
        yb = np.asarray(convolve(d["signals"], K.FS, response), np.float64)
        rng = np.random.default_rng(K.CASES[name][1])
        y = yb + K.NOISE * np.abs(yb).max() * rng.standard_normal(yb.shape)
        xy = d["true"]
        sensors = SensorArray(xy, -xy / np.linalg.norm(xy, axis=1, keepdims=True))
        scan = Scan(line_to_slab(y, acq, thickness=grid.dx).astype(np.float32), sensors, acq,
                    response=response)
        ubp = oatomo.reconstruct(scan, "ubp", grid=grid, calibrate=False, refine=False).image
        tv = oatomo.reconstruct(scan, "mb-tv", grid=grid, calibrate=False,
                                refine=False).image
        xn, s = T.inputs_of(tv, ubp, arch)
        with torch.no_grad():
            ref = run(torch.from_numpy(xn[None]))[0, 0].numpy() * s
        row = {"case": name, "phantom": K.CASES[name][0], "ubp": score(ubp, truth),
               "tv": score(tv, truth), "refined": score(ref, truth)}
        row["refined_minus_tv"] = row["refined"] - row["tv"]
        rows.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v
                          for k, v in row.items()}), flush=True)
    if rows:
        gains = np.array([r["refined_minus_tv"] for r in rows])
        print(f"refined - TV: mean {gains.mean():+.2f} dB, worst {gains.min():+.2f}, "
              f"{len(rows)} k-Wave scans")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

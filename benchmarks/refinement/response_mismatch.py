"""How much a wrong detector response in the forward operator costs, against ignoring it.

The default TV puts the response a scan carries into its forward operator. A file's
response is a measurement or a datasheet's band, not the truth: here the operator gets
the true response with its centre frequency off by -15 % / +15 % or its fractional
bandwidth off by -25 % / +25 %, and TV (100 iterations, the default with a response) is
compared with TV that ignores the response (50 iterations, the old default) and with the
exact response. Scans: ``tv_refiner.py``'s tuning set (oatomo's own forward model on a
grid 2x finer than the image grid, Gaussian response, white noise), cached by
``tv_residual.py cache``. PSNR after the best affine fit.

Run::

    PYTHONPATH=. .venv/bin/python benchmarks/refinement/response_mismatch.py \\
        out/tv_refiner/tuning
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "calibration"))
sys.path.insert(0, str(ROOT / "benchmarks" / "refinement"))

import heldout_default as H  # noqa: E402
import tv_refiner as T  # noqa: E402

from oatomo.recon.model_based import reconstruct_model_based  # noqa: E402
from oatomo.response import DetectorResponse  # noqa: E402

CASES = {"exact": (1.0, 1.0), "fc -15 %": (0.85, 1.0), "fc +15 %": (1.15, 1.0),
         "bw -25 %": (1.0, 0.75), "bw +25 %": (1.0, 1.25)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cache")
    a = p.parse_args(argv)
    rows = []
    for f in sorted(Path(a.cache).glob("truth_*.npy")):
        name = f.stem[len("truth_"):]
        geo, kind, seed = name.rsplit("_", 2)
        z = np.load(Path(a.cache) / f"{name}.npz")
        truth = np.load(f)
        y = z["y"].astype(np.float32)
        grid, _, _, _, true, acq, response, _, _ = T.draw_case(geo, kind, int(seed))
        row = {"scan": name, "ignored": H.score(z["tv"].astype(np.float64), truth)}
        for label, (kf, kb) in CASES.items():
            r = DetectorResponse(centre_frequency=response.centre_frequency * kf,
                                 bandwidth=response.bandwidth * kb)
            x, _ = reconstruct_model_based(y, grid, true, acq, method="tv", n_iter=100,
                                           response=r)
            row[label] = H.score(x.astype(np.float64), truth)
        rows.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v
                          for k, v in row.items()}), flush=True)
    keys = ["ignored", *CASES]
    print("| | " + " | ".join(keys) + " |\n" + "|---" * (len(keys) + 1) + "|")
    print("| mean | " + " | ".join(f"{np.mean([r[k] for r in rows]):.2f}" for k in keys)
          + " |")
    print("| worst - ignored | " + " | ".join(
        f"{min(r[k] - r['ignored'] for r in rows):+.2f}" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

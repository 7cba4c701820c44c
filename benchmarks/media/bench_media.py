"""Attenuation compensation and the 2-D line-source medium, measured without the inverse
crime.

Data. The truth ``p0`` (vessel trees, thin and thick; held-out seeds) is drawn on a grid
2x finer than the image grid (256 x 256 at 0.05 mm, 12.8 mm field of view) and simulated
there by oatomo's forward model (:func:`oatomo.forward.simulate`, slab thickness the image
pitch) for a 64-sensor ring of radius 30 mm, 40 MHz sampling, a Gaussian detector band
(4 MHz, 120 % fractional bandwidth) and 1 % white noise. The truth used for scoring is the
fine ``p0`` block-averaged 2 x 2 onto the image grid (128 x 128 at 0.1 mm), max 1; each
image gets its best affine fit to it before PSNR (data range 1).

Attenuation: the same phantom simulated without and with 0.75 dB/(MHz cm), y = 1
(paths 24-36 mm). TV (mb-tv, 50 iterations, the detector response in the operator) and UBP
on the attenuating scan without compensation and with it (TV: attenuation in the operator;
UBP: :func:`oatomo.media.compensate`, gain at most 10), and on the scan without
attenuation (the reference). "recovered" = (with - without) / (reference - without).

2-D medium: the same phantom simulated with ``medium="2d"`` (line sources) and
reconstructed by TV and UBP with the slab model and with the 2-D model (TV: in the
operator; UBP: :func:`oatomo.media.line_to_slab` first); the reference is TV/UBP with the
slab model on the slab scan of the same phantom.

Usage::

    python benchmarks/media/bench_media.py [--cases 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from oatomo import Acquisition, Grid, ring_array
from oatomo.evaluation.metrics import affine_fit, psnr
from oatomo.forward import simulate
from oatomo.media import Attenuation
from oatomo.phantoms import vessel_tree
from oatomo.recon.registry import reconstruct_sinogram
from oatomo.response import DetectorResponse

MM = 1e-3
N_IMAGE, FOV = 128, 12.8 * MM
RING = ring_array(64, 30 * MM)
ACQ = Acquisition(40e6, 640, 1500.0, t0=12e-6)
RESPONSE = DetectorResponse(centre_frequency=4e6, bandwidth=1.2)
ATT = Attenuation(0.75, 1.0)
NOISE = 0.01
ITERS = 50


def phantom(case: int, fine: Grid) -> np.ndarray:
    """Held-out vessel trees: thin (0.2 mm) and thick (0.5 mm) in turn."""
    width = (0.2, 0.5)[case % 2] * MM
    return vessel_tree(fine, 9000 + case, depth=5 + case % 2, width=width)


def score(img: np.ndarray, truth: np.ndarray) -> float:
    """PSNR (dB, range 1) of the best affine fit of ``img`` to ``truth``."""
    fit = affine_fit(np.asarray(img, np.float64)[None], truth[None])[0]
    return float(psnr(fit, truth, data_range=1.0))


def run_case(case: int) -> dict[str, float]:
    grid, fine = Grid(N_IMAGE, FOV), Grid(2 * N_IMAGE, FOV)
    p0 = phantom(case, fine)
    truth = p0.astype(np.float64).reshape(N_IMAGE, 2, N_IMAGE, 2).mean(axis=(1, 3))
    truth /= truth.max()

    def scan(**kw: object) -> np.ndarray:
        return simulate(p0, fine, RING, ACQ, thickness=grid.dx, noise_std=NOISE,
                        response=RESPONSE, seed=100 + case, **kw)

    def tv(y: np.ndarray, **kw: object) -> float:
        return score(reconstruct_sinogram(y, grid, RING, ACQ, "mb-tv", iters=ITERS,
                                          response=RESPONSE, **kw), truth)

    def ubp(y: np.ndarray, **kw: object) -> float:
        return score(reconstruct_sinogram(y, grid, RING, ACQ, "ubp", **kw), truth)

    row: dict[str, float] = {"case": case}
    t = time.perf_counter()
    clean, att, line = scan(), scan(attenuation=ATT), scan(medium="2d")
    row["tv_reference"], row["ubp_reference"] = tv(clean), ubp(clean)
    row["tv_att_plain"], row["tv_att_comp"] = tv(att), tv(att, attenuation=ATT)
    row["ubp_att_plain"], row["ubp_att_comp"] = ubp(att), ubp(att, attenuation=ATT)
    row["tv_2d_slab_model"], row["tv_2d_2d_model"] = tv(line), tv(line, medium="2d")
    row["ubp_2d_slab_model"], row["ubp_2d_2d_model"] = ubp(line), ubp(line, medium="2d")
    row["time_s"] = time.perf_counter() - t
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = []
    for case in range(args.cases):
        rows.append(run_case(case))
        print(json.dumps({k: round(v, 2) for k, v in rows[-1].items()}), flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "case"}
    for m in ("tv", "ubp"):
        lost = mean[f"{m}_reference"] - mean[f"{m}_att_plain"]
        gained = mean[f"{m}_att_comp"] - mean[f"{m}_att_plain"]
        mean[f"{m}_recovered"] = gained / lost if lost > 0 else float("nan")
    print("mean", json.dumps({k: round(v, 2) for k, v in mean.items()}))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "mean": mean}, fh, indent=1)


if __name__ == "__main__":
    main()

"""Detector response and Wiener deconvolution: image quality with and without.

Scans of a 64-sensor ring (r = 22.5 mm, 40 MHz, 1400 samples, 128 x 128 at 0.1 mm, 0.5 %
noise) are simulated with a Gaussian-band detector response (``oatomo.simulate(...,
response=...)``) and reconstructed through ``oatomo.reconstruct`` as recorded
(``deconvolve=False``) and after Wiener deconvolution (``deconvolve=lam``), by UBP and by
TV (50 iterations). Images get their best affine fit to the truth before PSNR (data range
1, the truth is min-max normalised) and Pearson r; the table gives means over the phantoms
(``vessel-tree`` and ``disks``, seeds 100-103) and the mean paired PSNR gain.

Run: ``.venv/bin/python benchmarks/physics/bench_response.py`` (``--quick``: 2 phantoms, UBP only;
``--bands 2e6:0.8,5e6:0.8``; ``--lams 1e-3,1e-2,1e-1``; ``--out results.json``;
``--in-operator 50,200``: TV with the response inside the forward operator against
deconvolution then TV).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import oatomo  # noqa: E402
from oatomo.evaluation import metrics as M
from oatomo.evaluation.metrics import affine_fit  # noqa: E402
from oatomo.response import DetectorResponse  # noqa: E402

GRID = oatomo.Grid(128, 0.0128)
RING = oatomo.ring_array(64, 0.0225)
ACQ = oatomo.Acquisition(40e6, 1400)
NOISE = 0.005


def _quality(img: np.ndarray, p0: np.ndarray) -> tuple[float, float]:
    fit = affine_fit(img[None], p0[None])[0]
    return float(M.psnr(fit, p0, data_range=1.0)), float(M.pearson(fit, p0))


def _cases(response: DetectorResponse, phantoms: list[tuple[str, int]]
           ) -> list[tuple[oatomo.Scan, np.ndarray]]:
    """Simulated scans (with the response and noise) and their min-max normalised truths."""
    out = []
    for kind, seed in phantoms:
        p0 = oatomo.phantoms.make(kind, GRID, seed)
        p0 = (p0 - p0.min()) / (p0.max() - p0.min())
        y = oatomo.simulate(p0, GRID, RING, ACQ, noise_std=NOISE, response=response,
                            seed=seed)
        out.append((oatomo.Scan(y, RING, ACQ, response=response), p0))
    return out


def run(bands: list[tuple[float, float]], lams: list[float], methods: list[str],
        phantoms: list[tuple[str, int]]) -> list[dict[str, object]]:
    """One row per (band, method, lam or None): mean PSNR, Pearson and paired gain."""
    rows = []
    for fc, bw in bands:
        scans = _cases(DetectorResponse(centre_frequency=fc, bandwidth=bw), phantoms)
        for method in methods:
            base = None
            for lam in [None, *lams]:
                q = np.array([_quality(oatomo.reconstruct(
                    s, method, GRID, refine=False, calibrate=False,
                    deconvolve=False if lam is None else lam,
                    iters=50).image, p0) for s, p0 in scans])
                if base is None:
                    base = q
                rows.append({"centre_frequency": fc, "bandwidth": bw, "method": method,
                             "lam": lam, "psnr": float(q[:, 0].mean()),
                             "pearson": float(q[:, 1].mean()),
                             "gain_db": float((q[:, 0] - base[:, 0]).mean()),
                             "gain_se": float((q[:, 0] - base[:, 0]).std(ddof=1)
                                              / np.sqrt(len(q))) if len(q) > 1 else 0.0})
                r = rows[-1]
                print(f"{fc / 1e6:g} MHz {bw:.0%}  {method:6s} "
                      f"{'none' if lam is None else f'{lam:g}':>6s}  PSNR {r['psnr']:.2f} dB  "
                      f"r {r['pearson']:.3f}  gain {r['gain_db']:+.2f} +- {r['gain_se']:.2f} dB",
                      flush=True)
    return rows


def run_in_operator(bands: list[tuple[float, float]], iters: list[int],
                    phantoms: list[tuple[str, int]]) -> list[dict[str, object]]:
    """TV with the response inside the forward operator (``model_response=True``) against
    Wiener deconvolution (default lam) then TV, at each iteration count."""
    rows = []
    for fc, bw in bands:
        cases = _cases(DetectorResponse(centre_frequency=fc, bandwidth=bw), phantoms)
        for n_iter in iters:
            for how, kw in (("deconvolve", {"deconvolve": True}),
                            ("in operator", {"model_response": True})):
                t = time.perf_counter()
                q = np.array([_quality(oatomo.reconstruct(s, "mb-tv", GRID, refine=False,
                                                          calibrate=False, iters=n_iter,
                                                          **kw).image, p0)
                              for s, p0 in cases])
                dt = (time.perf_counter() - t) / len(cases)
                rows.append({"centre_frequency": fc, "bandwidth": bw, "iters": n_iter,
                             "how": how, "psnr": float(q[:, 0].mean()),
                             "pearson": float(q[:, 1].mean()), "time_s": dt})
                print(f"{fc / 1e6:g} MHz {bw:.0%}  TV {n_iter:4d} it  {how:11s}  PSNR "
                      f"{q[:, 0].mean():.2f} dB  r {q[:, 1].mean():.3f}  {dt:.1f} s/image",
                      flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--bands", default="2e6:0.8,5e6:0.8")
    ap.add_argument("--lams", default="1e-3,1e-2,1e-1")
    ap.add_argument("--methods", default="ubp,mb-tv")
    ap.add_argument("--in-operator", metavar="ITERS", help="instead: TV with the response in "
                    "the operator against deconvolution, at these iteration counts (e.g. "
                    "50,200)")
    ap.add_argument("--out")
    args = ap.parse_args()
    bands = [tuple(float(v) for v in b.split(":")) for b in args.bands.split(",")]
    lams = [float(v) for v in args.lams.split(",")]
    phantoms = [(k, s) for k in ("vessel-tree", "disks") for s in range(100, 104)]
    methods = args.methods.split(",")
    if args.quick:
        phantoms, methods = phantoms[::4], ["ubp"]
    if args.in_operator:
        rows = run_in_operator(bands, [int(v) for v in args.in_operator.split(",")], phantoms)
    else:
        rows = run(bands, lams, methods, phantoms)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

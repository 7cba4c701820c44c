"""Two speeds of sound: reconstructions with the file's one speed against the right two.

Protocol
--------
Medium: water at 1500 m/s with a tissue disc of radius 9 mm at 1540 m/s, centred on the
image (``--contrast`` changes the disc's speed). Array: 64-sensor ring of radius 30 mm,
sensors at their exact positions (only the medium is wrong in the file). Phantoms: vessel
trees (:func:`oatomo.phantoms.vessel_tree`, depth 5, seeds 2600 and up, none used for
tuning anything), drawn on a grid 2x finer than the image grid (256 x 256 at 0.075 mm over
a 19.2 mm field that holds the disc).

Data: simulated by oatomo's own two-speed forward model
(:func:`oatomo.simulate` with a :class:`oatomo.SpeedMap`: straight two-segment rays, no
refraction) on the fine grid, slab thickness the image pitch, 40 MHz, with a Gaussian
detector band (:class:`oatomo.response.DetectorResponse`, centre 2.67 MHz, 120 %
fractional bandwidth) and white noise of 1 % of the largest clean sample. The file says
1500 m/s. A homogeneous scan of the same phantom (water only) is simulated the same way
as the reference.

Reconstructions on the image grid (128 x 128 at 0.15 mm): UBP and TV (``mb-tv``, 50
iterations, default weight, detector response in the operator) with

* ``one``: the file's speed, 1500 m/s;
* ``autofocus``: the sharpest single speed (:func:`oatomo.recon.autofocus.autofocus`,
  1450-1600 m/s);
* ``two``: the right two speeds (:class:`oatomo.SpeedMap` of the simulation);
* ``water``: the homogeneous scan with 1500 m/s (what the phantom gives without the disc).

Score: PSNR (data range 1) of the best affine fit of each image to the truth (the fine
phantom block-averaged 2 x 2, maximum 1).

Run::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/media/two_speeds.py
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from oatomo import Acquisition, Grid, SpeedMap, backproject, ring_array, simulate
from oatomo.evaluation.metrics import affine_fit, psnr
from oatomo.phantoms import vessel_tree
from oatomo.recon.autofocus import autofocus
from oatomo.recon.registry import reconstruct_sinogram
from oatomo.response import DetectorResponse

MM = 1e-3
N_IMAGE, FOV = 128, 19.2 * MM
C0, RADIUS, RING_R, N_SENSORS = 1500.0, 9 * MM, 30 * MM, 64
FS, N_SAMPLES = 40e6, 1250
TV_ITERS = 50


def block_mean(img: np.ndarray, k: int = 2) -> np.ndarray:
    """``img`` averaged over k x k blocks."""
    n = img.shape[0] // k
    return img.reshape(n, k, n, k).mean(axis=(1, 3))


def score(img: np.ndarray, truth: np.ndarray) -> float:
    """PSNR (data range 1) of the best affine fit of ``img`` to ``truth``."""
    return float(psnr(affine_fit(img, truth), truth, data_range=1.0))


def run_case(seed: int, c1: float) -> dict:
    """One phantom: simulate the two-speed and the water scans, reconstruct, score."""
    grid, fine = Grid(N_IMAGE, FOV), Grid(2 * N_IMAGE, FOV)
    ring = ring_array(N_SENSORS, RING_R)
    acq = Acquisition(FS, N_SAMPLES, C0)
    medium = SpeedMap(C0, c1, RADIUS)
    response = DetectorResponse(centre_frequency=4e6 * 0.1 * MM / grid.dx, bandwidth=1.2)
    p0 = vessel_tree(fine, seed, depth=5)
    truth = block_mean(p0.astype(np.float64))
    truth /= truth.max()
    row: dict = {"seed": seed, "c1": c1}
    scans = {}
    for name, sm in (("two_speed_scan", medium), ("water_scan", None)):
        scans[name] = simulate(p0, fine, ring, acq, thickness=grid.dx, noise_std=0.01,
                               response=response, seed=seed, speed_map=sm)
    y = scans["two_speed_scan"]
    t = time.perf_counter()
    af = autofocus(y, grid, ring, acq, c_range=(1450.0, 1600.0), n_coarse=16)
    row["autofocus_c"] = af["speed_of_sound"]
    row["t_autofocus"] = time.perf_counter() - t
    cases = {"one": (y, acq, None), "autofocus": (y, Acquisition(FS, N_SAMPLES,
                                                                 af["speed_of_sound"]), None),
             "two": (y, acq, medium), "water": (scans["water_scan"], acq, None)}
    for label, (sino, a, sm) in cases.items():
        for method in ("ubp", "mb-tv"):
            extra = {"response": response} if method == "mb-tv" else {}
            t = time.perf_counter()
            img = reconstruct_sinogram(sino, grid, ring, a, method, iters=TV_ITERS,
                                       speed_map=sm, **extra)
            row[f"t_{method}_{label}"] = time.perf_counter() - t
            row[f"{method}_{label}"] = score(img, truth)
    return row


def das_timing(repeats: int = 15) -> dict:
    """Seconds per DAS image (median of ``repeats``, one speed and two interleaved) on a
    256 x 256 grid over the same field."""
    grid, ring = Grid(2 * N_IMAGE, FOV), ring_array(N_SENSORS, RING_R)
    acq = Acquisition(FS, N_SAMPLES, C0)
    y = np.random.default_rng(0).standard_normal((N_SENSORS, N_SAMPLES)).astype(np.float32)
    maps = {"one": None, "two": SpeedMap(C0, 1540.0, RADIUS)}
    times: dict[str, list[float]] = {k: [] for k in maps}
    for sm in maps.values():
        backproject(y, grid, ring, acq, "das", speed_map=sm)  # compile / load the cache
    for _ in range(repeats):
        for label, sm in maps.items():
            t = time.perf_counter()
            backproject(y, grid, ring, acq, "das", speed_map=sm)
            times[label].append(time.perf_counter() - t)
    out = {f"das_{k}_s": float(np.median(v)) for k, v in times.items()}
    out["ratio"] = out["das_two_s"] / out["das_one_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4, help="phantoms (seeds 2600, ...)")
    ap.add_argument("--contrast", type=float, default=1540.0, help="disc speed (m/s)")
    ap.add_argument("--out", default=None, help="JSON of the rows")
    args = ap.parse_args()
    print("DAS time:", {k: round(v, 5) for k, v in das_timing().items()}, flush=True)
    rows = []
    for k in range(args.seeds):
        row = run_case(2600 + k, args.contrast)
        rows.append(row)
        print(json.dumps({key: round(v, 3) if isinstance(v, float) else v
                          for key, v in row.items()}), flush=True)
    keys = [k for k in rows[0] if k.startswith(("ubp_", "mb-tv_"))]
    print("mean PSNR (dB):", {k: round(float(np.mean([r[k] for r in rows])), 2) for k in keys})
    print("autofocus c (m/s):", [round(r["autofocus_c"], 1) for r in rows])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

"""Two speeds of sound estimated from the data: the object's speed, radius and centre.

Protocol
--------
:func:`oatomo.recon.autofocus.autofocus_two_speeds` (held-out data misfit, the water's
speed fixed at the file's 1500 m/s) on held-out cases: vessel trees
(:func:`oatomo.phantoms.vessel_tree`, depth 5, seeds 2700 and up) and geometries none of
which was used for tuning. Tuning (the coarse low-pass ``c0 / (8 dx)``, the grid sizes,
the Nelder-Mead stages) used only seeds 2600-2601, a 64-sensor ring of 30 mm and a
centred disc of 9 mm at 1560 m/s; the region threshold used a homogeneous scan of seed 2601;
the coarse search of the centre (``centre_steps``, ``centre_span``) used only the tuning
cases ``T`` (1560 m/s, 8 mm, centre (-1.2, 1.8) mm) and ``T2`` (1590 m/s, 6 mm, centre
(-2.0, -1.5) mm) on seeds 2600-2601 (``--tune``), 64-sensor ring of 30 mm, centre fitted.

Cases (disc speed, radius, centre, array):

* ``A``: 1540 m/s, 9 mm, centred, 64-sensor ring of 30 mm;
* ``B``: 1580 m/s, 7 mm, centre (1.5, -1.0) mm, 64-sensor ring of 30 mm, centre fitted;
* ``C``: 1550 m/s, 8 mm, centred, 96-sensor ring of 25 mm;
* ``D``: 1530 m/s, 6 mm, centred, 270 degree arc of 64 sensors, 30 mm;
* ``E``: water only (no region should be found).

Data: simulated by oatomo's own two-speed forward model (:func:`oatomo.simulate` with a
:class:`oatomo.SpeedMap`: straight two-segment rays, no refraction) on a grid 2x finer
than the image grid (256 x 256 at 0.075 mm over 19.2 mm), slab thickness the image pitch,
40 MHz, Gaussian detector band (centre 2.67 MHz, 120 % fractional bandwidth) and white
noise of 1 % of the largest clean sample.

Reported per case: the estimate and its errors; the same search with DAS sharpness as the
criterion (``criterion="sharpness"``); TV (``mb-tv``, 50 iterations, response in the
operator) PSNR with the estimated region, the true one and the best single speed
(:func:`oatomo.recon.autofocus.autofocus`). Score: PSNR (data range 1) of the best
affine fit to the block-averaged truth.

Run (``--cases B``: one case; ``--tune``: the tuning cases instead)::

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python benchmarks/media/estimate_speeds.py
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from oatomo import Acquisition, Grid, SpeedMap, ring_array, simulate
from oatomo.evaluation.metrics import affine_fit, psnr
from oatomo.phantoms import vessel_tree
from oatomo.recon.autofocus import autofocus, autofocus_two_speeds
from oatomo.recon.registry import reconstruct_sinogram
from oatomo.response import DetectorResponse

MM = 1e-3
N_IMAGE, FOV, C0 = 128, 19.2 * MM, 1500.0
FS, N_SAMPLES, TV_ITERS = 40e6, 1250, 50

#: name -> (c1 or None, radius, centre, sensors, ring radius, arc, fit centre)
CASES = {
    "A": (1540.0, 9 * MM, (0.0, 0.0), 64, 30 * MM, 2 * np.pi, False),
    "B": (1580.0, 7 * MM, (1.5 * MM, -1.0 * MM), 64, 30 * MM, 2 * np.pi, True),
    "C": (1550.0, 8 * MM, (0.0, 0.0), 96, 25 * MM, 2 * np.pi, False),
    "D": (1530.0, 6 * MM, (0.0, 0.0), 64, 30 * MM, 1.5 * np.pi, False),
    "E": (None, 0.0, (0.0, 0.0), 64, 30 * MM, 2 * np.pi, False),
}
#: tuning cases (``--tune``, seeds 2600-2601 only): an off-centre disc for the coarse
#: search of the centre (``centre_steps``, ``centre_span``)
TUNING = {
    "T": (1560.0, 8 * MM, (-1.2 * MM, 1.8 * MM), 64, 30 * MM, 2 * np.pi, True),
    "T2": (1590.0, 6 * MM, (-2.0 * MM, -1.5 * MM), 64, 30 * MM, 2 * np.pi, True),
    # the region rule's own-model tuning scans (with --statistics-only): the centred disc
    # the first threshold was set on, and water
    "T0": (1560.0, 9 * MM, (0.0, 0.0), 64, 30 * MM, 2 * np.pi, False),
    "W": (None, 0.0, (0.0, 0.0), 64, 30 * MM, 2 * np.pi, False),
}


def score(img: np.ndarray, truth: np.ndarray) -> float:
    """PSNR (data range 1) of the best affine fit of ``img`` to ``truth``."""
    return float(psnr(affine_fit(img, truth), truth, data_range=1.0))


def run_case(name: str, seed: int, statistics_only: bool = False) -> dict:
    c1, radius, centre, n_sensors, ring_r, arc, fit_centre = {**CASES, **TUNING}[name]
    grid, fine = Grid(N_IMAGE, FOV), Grid(2 * N_IMAGE, FOV)
    ring = ring_array(n_sensors, ring_r, arc=arc)
    acq = Acquisition(FS, N_SAMPLES, C0)
    true = None if c1 is None else SpeedMap(C0, c1, radius, centre)
    response = DetectorResponse(centre_frequency=4e6 * 0.1 * MM / grid.dx, bandwidth=1.2)
    p0 = vessel_tree(fine, seed, depth=5)
    truth = p0.astype(np.float64).reshape(N_IMAGE, 2, N_IMAGE, 2).mean(axis=(1, 3))
    truth /= truth.max()
    y = simulate(p0, fine, ring, acq, thickness=grid.dx, noise_std=0.01, response=response,
                 seed=seed, speed_map=true)
    row: dict = {"case": name, "seed": seed, "c1": c1, "radius_mm": radius / MM,
                 "centre_mm": [v / MM for v in centre]}
    for crit in ("heldout",) if statistics_only else ("heldout", "sharpness"):
        t = time.perf_counter()
        est = autofocus_two_speeds(y, grid, ring, acq, fit_centre=fit_centre, criterion=crit)
        key = "" if crit == "heldout" else "sharp_"
        row[f"{key}time_s"] = time.perf_counter() - t
        row[f"{key}found"] = est["region_found"]
        row[f"{key}c1_est"] = est["object_speed_of_sound"]
        row[f"{key}radius_est_mm"] = est["object_radius"] / MM
        row[f"{key}centre_est_mm"] = [v / MM for v in est["object_centre"]]
        if crit == "heldout":
            estimated = est["speed_map"]
            row["gain"] = 1 - est["misfit"] / est["misfit_one_speed"]
            row["sensors_improved"] = est["sensors_improved"]
            row["wilcoxon_p"] = est["wilcoxon_p"]
    if statistics_only:
        return row
    af = autofocus(y, grid, ring, acq, c_range=(1450.0, 1620.0), n_coarse=18)
    row["autofocus_c"] = af["speed_of_sound"]
    media = {"estimated": (acq, estimated), "true": (acq, true),
             "one_autofocus": (Acquisition(FS, N_SAMPLES, af["speed_of_sound"]), None)}
    for label, (a, sm) in media.items():
        img = reconstruct_sinogram(y, grid, ring, a, "mb-tv", iters=TV_ITERS, speed_map=sm,
                                   response=response)
        row[f"tv_{label}"] = score(img, truth)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=None,
                    help="which cases (names; default: every held-out case, or with --tune "
                         "every tuning case)")
    ap.add_argument("--out", default=None, help="JSON of the rows")
    ap.add_argument("--tune", action="store_true",
                    help="the tuning cases on the tuning seeds 2600-2601 instead")
    ap.add_argument("--statistics-only", action="store_true",
                    help="only the held-out estimate and its region statistics (gain, "
                    "sensors improved, Wilcoxon p), no TV")
    args = ap.parse_args()
    rows = []
    names = args.cases or list(TUNING if args.tune else CASES)
    unknown = set(names) - set(TUNING if args.tune else CASES)
    if unknown:
        ap.error(f"--cases: no case {', '.join(sorted(unknown))}")
    jobs = ([(name, seed) for name in names for seed in (2600, 2601)] if args.tune else
            [(name, 2700 + list(CASES).index(name)) for name in names])
    for name, seed in jobs:
        row = run_case(name, seed, args.statistics_only)
        rows.append(row)
        print(json.dumps({key: round(v, 4) if isinstance(v, float) else v
                          for key, v in row.items()}), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

"""What invariance buys on a scanner family never seen in training: the invariant
multi-decoder VAE against the pooled beta-VAE and the pooled U-Net, at equal budget,
paired by scan.

All three models are trained on the same data (``oatomo refiner data --family tv``
without the linear arrays: sparse and dense rings, arcs of 180-315 deg and of 90-180 deg,
correct and ``mixed`` positions; 100 scans per environment at 64^2), for the same number
of steps, batch, width and seed; then scored by ``tv_refiner.py`` on its report set with
the TV input the models were trained on (``--model-response off``: 50 iterations, no
detector response in the operator). The report set's linear array (128 elements, 0.2 mm
pitch) is the held-out family; its rings and arcs are in distribution (their count/radius
pairs are not in training, their kinds are).

Per group (held-out family, in distribution): each model's mean PSNR of the refined image
minus TV's (the input), and the paired differences between the models, mean and standard
error over scans (:func:`scipy.stats.sem`).

Run (after training; see docs/results/refinement.rst for the training commands)::

    .venv/bin/python benchmarks/refinement/heldout_family.py \\
        invariant=out/family/inv.json beta-vae=out/family/bvae.json \\
        unet=out/family/unet.json > benchmarks/refinement/heldout_family.md
"""

from __future__ import annotations

import json
import sys
from itertools import combinations

import numpy as np
from scipy import stats

HELD_OUT = ("linear128",)


def load(spec: str) -> tuple[str, dict[tuple[str, str, int], dict]]:
    """``label=path`` of a ``tv_refiner.py`` JSON: the label and its rows by scan."""
    label, _, path = spec.partition("=")
    rows = json.load(open(path))
    return label, {(r["geometry"], r["phantom"], r["seed"]): r for r in rows}


def cell(values: list[float]) -> str:
    """``mean ± SE (n)``."""
    v = np.asarray(values, float)
    return f"{v.mean():+.2f} ± {stats.sem(v):.2f} (n {len(v)})"


def gap(rows: dict[tuple[str, str, int], dict], keys: list[tuple[str, str, int]]) -> float:
    """Mean refined − TV PSNR (dB) over ``keys``."""
    return float(np.mean([rows[k]["psnr_refined"] - rows[k]["psnr_tv"] for k in keys]))


def main(specs: list[str]) -> int:
    runs = [load(s) for s in specs]
    keys = sorted(set.intersection(*(set(r) for _, r in runs)))
    groups = {"held-out family (linear array)": [k for k in keys if k[0] in HELD_OUT],
              "in distribution (rings, arcs)": [k for k in keys if k[0] not in HELD_OUT]}
    print("| refined − TV input (dB) | " + " | ".join(groups) + " |")
    print("|---" * (len(groups) + 1) + "|")
    for label, rows in runs:
        print(f"| {label} | " + " | ".join(
            cell([rows[k]["psnr_refined"] - rows[k]["psnr_tv"] for k in g])
            for g in groups.values()) + " |")
    print()
    print("| paired difference (dB) | " + " | ".join(groups) + " |")
    print("|---" * (len(groups) + 1) + "|")
    for (la, a), (lb, b) in combinations(runs, 2):
        print(f"| {la} − {lb} | " + " | ".join(
            cell([a[k]["psnr_refined"] - b[k]["psnr_refined"] for k in g])
            for g in groups.values()) + " |")
    print()
    held, seen = groups.values()
    print("Refined − TV on the held-out family minus the same in distribution (negative: the "
          "model loses more to TV on the family it never saw): " + "; ".join(
              f"{label} {gap(rows, held) - gap(rows, seen):+.2f} dB" for label, rows in runs)
          + ".")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""What invariance buys the TV refiner: a held-out family at equal budget.

Three models trained on the TV refiner's training scans WITHOUT the linear arrays (``train
... --exclude linear --max-items 2400``: 982 scans of rings and arcs), the same 1000 steps
of 16 crops, seed 0, the same loss (the profiled likelihood, or its gradient's twin
``--loss logratio`` for the U-Net):

* ``skip-ivae``: the skip-connected invariant VAE (three environments: full rings, wide
  and short arcs), scored with its invariant decoder;
* ``skip-bvae``: the same network pooled (one decoder, no environments): a beta-VAE;
* ``resunet``: the residual U-Net of ``tv_residual.py`` (32/64/128 channels), pooled.

Scored (``tv_residual.py score ... --json``) on the refinement report set: the 128-element
linear array is the held-out family (10 scans), the rings and arcs are in distribution
(50 scans; their geometries are not training ones either). Paired by scan: the difference
of refined PSNR between two models, mean and standard error.

Run::

    for a in skip-ivae skip-bvae resunet; do
      .venv/bin/python benchmarks/refinement/tv_residual.py train DATA out/fam/$a.pt \\
          --steps 1000 --arch $a --beta 0.01 --max-items 2400 --exclude linear
      # (the U-Net with --loss logratio)
      .venv/bin/python benchmarks/refinement/tv_residual.py score out/fam/$a.pt CACHE \\
          --json benchmarks/refinement/heldout_family_tv_$a.json
    done
    .venv/bin/python benchmarks/refinement/heldout_family_tv.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = ("skip-ivae", "skip-bvae", "resunet")
HELD_OUT = "linear128"


def main() -> int:
    runs = {m: {(r[0], r[1], r[2]): r for r in json.loads(
        (HERE / f"heldout_family_tv_{m}.json").read_text())} for m in MODELS}
    keys = sorted(runs[MODELS[0]])

    def stats(v: list[float]) -> str:
        a = np.asarray(v)
        return f"{a.mean():+.2f} ± {a.std(ddof=1) / np.sqrt(len(a)):.2f}"

    print("| model | held-out family (linear128): refined - TV | in distribution: "
          "refined - TV |")
    print("|---|---|---|")
    for m in MODELS:
        held = [runs[m][k][5] - runs[m][k][4] for k in keys if k[0] == HELD_OUT]
        seen = [runs[m][k][5] - runs[m][k][4] for k in keys if k[0] != HELD_OUT]
        print(f"| {m} | {stats(held)} | {stats(seen)} |")
    print()
    print("| paired | held-out family | in distribution |")
    print("|---|---|---|")
    for other in MODELS[1:]:
        held = [runs["skip-ivae"][k][5] - runs[other][k][5] for k in keys if k[0] == HELD_OUT]
        seen = [runs["skip-ivae"][k][5] - runs[other][k][5] for k in keys if k[0] != HELD_OUT]
        print(f"| skip-ivae - {other} | {stats(held)} | {stats(seen)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

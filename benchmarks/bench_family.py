"""Scanner-family refiner: inference time on a 256 x 256 image against one DAS.

Times, in one run and interleaved, the refinement of a 256 x 256 canonical image (the
model only, without and with 16 posterior samples for the uncertainty map) and the DAS of
a 256 x 256 image with 256 sensors x 2030 samples (issue 10 target: refinement no slower
than that DAS). Uses the shipped family refiner, or an untrained model of the same
architecture when it is missing.

Run: ``.venv/bin/python benchmarks/bench_family.py [model.pt]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def run(model: str | None = None, quick: bool = False) -> list[dict]:
    import torch
    from bench_core import median_time

    from oatomo import Acquisition, Grid, ring_array
    from oatomo.family_refine import FamilyRefiner, load_family_refiner
    from oatomo.learn.family import build_family_model
    from oatomo.recon import backproject

    torch.set_num_threads(2)
    reps = 5 if quick else 11
    if model is not None and Path(model).exists():
        ref, label = load_family_refiner(model), Path(model).name
    else:
        ref = FamilyRefiner(build_family_model("multi-decoder", 15, 2), "multi-decoder",
                            env_names=tuple(f"e{k}" for k in range(15)))
        label = "untrained model of the default architecture"
    x = np.random.default_rng(0).standard_normal((2, 256, 256)).astype(np.float32)
    grid, sensors, acq = Grid(256, 0.0256), ring_array(256, 0.04), Acquisition(40e6, 2030)
    y = np.random.default_rng(1).standard_normal((256, 2030)).astype(np.float32)
    t_das = median_time(lambda: backproject(y, grid, sensors, acq), reps)
    t_inf = median_time(lambda: ref.refine_images(x, n_samples=0), reps)
    t_unc = median_time(lambda: ref.refine_images(x, n_samples=16), max(3, reps // 3))
    t_das2 = median_time(lambda: backproject(y, grid, sensors, acq), reps)
    das = min(t_das, t_das2)
    return [dict(name=f"refine one 256² image ({label})", value=t_inf * 1e3, unit="ms",
                 reference="DAS 256²×256×2030", ratio=t_inf / das, target="<= 1× DAS",
                 ok=t_inf <= das),
            dict(name="refine + 16 posterior samples", value=t_unc * 1e3, unit="ms",
                 reference="DAS 256²×256×2030", ratio=t_unc / das, target="", ok=True),
            dict(name="DAS 256²×256×2030 (same run, best of two)", value=das * 1e3,
                 unit="ms", reference="", ratio=float("nan"), target="", ok=True)]


if __name__ == "__main__":
    for row in run(sys.argv[1] if len(sys.argv) > 1 else None):
        print(f"{row['name']}: {row['value']:.1f} {row['unit']}"
              + (f" ({row['ratio']:.1f}x {row['reference']})" if row["reference"] else ""))

"""Learning benchmark: refinement inference per image and training throughput.

Inference of the shipped model (``oatomo/resources/models/refiner.pt``; a freshly initialised
model of the same architecture if it is missing) on one 128 x 128 image, against the DAS time of a
256 x 256 image with 256 sensors x 2030 samples measured in the same run (target:
inference below that DAS time). Training throughput in images per second for the
multi-decoder model on CPU (2 threads).

Run: ``.venv/bin/python benchmarks/refinement/bench_learn.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "speed"))


def run(quick: bool = False) -> list[dict]:
    import time

    import torch
    from bench_core import median_time

    from oatomo import Acquisition, Grid, ring_array
    from oatomo.learn.fit import build_refiner_model
    from oatomo.learn.train import train
    from oatomo.recon.backprojection import backproject
    from oatomo.refine.legacy import Refiner, load_refiner
    from oatomo.resources import legacy_model_path

    torch.set_num_threads(2)
    reps = 5 if quick else 15
    shipped = legacy_model_path()  # the single-geometry refiner
    if shipped.exists():
        ref = load_refiner(shipped)
        label = "shipped single-geometry model"
    else:
        ref = Refiner(build_refiner_model("multi-decoder", 128, 4), Grid(128, 0.0128),
                      ["a", "b", "c", "d"], [{}], "ubp")
        label = "untrained model of the default architecture"
    img = np.random.default_rng(0).standard_normal((128, 128)).astype(np.float32)
    t_inf = median_time(lambda: ref.refine(img, n_samples=0), reps)
    t_unc = median_time(lambda: ref.refine(img, n_samples=16), max(3, reps // 3))
    grid, sensors, acq = Grid(256, 0.0256), ring_array(256, 0.04), Acquisition(40e6, 2030)
    y = np.random.default_rng(1).standard_normal((256, 2030)).astype(np.float32)
    t_das = median_time(lambda: backproject(y, grid, sensors, acq), reps)
    rows = [dict(name=f"refine one 128² image ({label})", value=t_inf * 1e3, unit="ms",
                 reference="DAS 256²×256×2030", ratio=t_inf / t_das, target="< 1× DAS",
                 ok=t_inf < t_das),
            dict(name="refine + 16 posterior samples (uncertainty)", value=t_unc * 1e3,
                 unit="ms", reference="DAS 256²×256×2030", ratio=t_unc / t_das, target="",
                 ok=True),
            dict(name="DAS 256²×256×2030 (same run)", value=t_das * 1e3, unit="ms",
                 reference="", ratio=float("nan"), target="", ok=True)]
    model = build_refiner_model("multi-decoder", 128, 4)
    rng = np.random.default_rng(0)
    envs = [(rng.standard_normal((64, 1, 128, 128)).astype(np.float32),
             rng.random((64, 1, 128, 128)).astype(np.float32)) for _ in range(4)]
    t = time.perf_counter()
    res = train(model, envs, epochs=1 if quick else 2, batch_size=32, device="cpu")
    dt = time.perf_counter() - t
    rows.append(dict(name="training throughput, multi-decoder 128² (CPU)",
                     value=res.step * 32 / dt, unit="images/s", reference="",
                     ratio=float("nan"), target="", ok=True))
    return rows


if __name__ == "__main__":
    from bench_core import to_markdown

    print(to_markdown(run(quick="--quick" in sys.argv)))

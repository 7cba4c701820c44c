"""Learning benchmark: training throughput of the refiner.

Images per second while training the multi-decoder refiner of the default architecture
(``oatomo refiner train``: 96 x 96 images, UBP and DAS channels, four environments) on the
CPU with two threads. Inference time is measured by
``benchmarks/refinement/bench_refiner.py``.

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

    from oatomo.learn.refiner import build_refiner_model
    from oatomo.learn.train import train

    torch.set_num_threads(2)
    model = build_refiner_model("multi-decoder", 4, 2)
    rng = np.random.default_rng(0)
    envs = [(rng.standard_normal((32, 2, 96, 96)).astype(np.float32),
             rng.random((32, 1, 96, 96)).astype(np.float32)) for _ in range(4)]
    t = time.perf_counter()
    res = train(model, envs, epochs=1 if quick else 2, batch_size=32, device="cpu")
    dt = time.perf_counter() - t
    return [dict(name="training throughput, multi-decoder refiner 96² (CPU)",
                 value=res.step * 32 / dt, unit="images/s", reference="",
                 ratio=float("nan"), target="", ok=True)]


if __name__ == "__main__":
    from bench_core import to_markdown

    print(to_markdown(run(quick="--quick" in sys.argv)))

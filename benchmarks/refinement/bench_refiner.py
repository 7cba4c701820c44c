"""Scanner-family refiner: inference time on a 256 x 256 image against one DAS.

Times, in one run and interleaved, the refinement of a 256 x 256 canonical image by the
shipped family refiner with each inference engine -- NumPy (what ``oatomo reconstruct``
uses up to 256² pixels: no PyTorch import) and PyTorch -- without and with the uncertainty
map (16 posterior samples and the variant decoders), and the DAS of a 256 x 256 image with
256 sensors x 2030 samples (target: refinement no slower than that DAS). Two
threads for everything. Uses the shipped model, or an untrained model of the default
architecture when it is missing.

Run: ``.venv/bin/python benchmarks/refinement/bench_refiner.py [model.npz]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "speed"))


def _refiners(model: str | None) -> tuple[dict, str]:
    """The refiner on each engine, and a label."""
    from oatomo.learn.refiner import build_refiner_model
    from oatomo.refine import Refiner, load_refiner
    from oatomo.refine.weights import NumpyConvVAE
    from oatomo.resources import MODELS, resource_path

    path = Path(model) if model else Path(resource_path(MODELS, "family_refiner.npz"))
    if path.exists():
        return ({"numpy": load_refiner(path, backend="numpy"),
                 "torch": load_refiner(path, backend="torch")}, path.name)
    net = build_refiner_model("multi-decoder", 15, 2)
    envs = tuple(f"e{k}" for k in range(15))
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    fast = NumpyConvVAE("ConvMultiDecoderIVAE", net.config.to_dict(), state)
    return ({"numpy": Refiner(fast, "multi-decoder", env_names=envs,
                              uncertainty="both"),
             "torch": Refiner(net, "multi-decoder", env_names=envs,
                              uncertainty="both")},
            "untrained model of the default architecture")


def run(model: str | None = None, quick: bool = False) -> list[dict]:
    import torch
    from bench_core import median_time

    from oatomo import Acquisition, Grid, ring_array
    from oatomo.recon.backprojection import backproject

    torch.set_num_threads(2)
    reps = 5 if quick else 15
    refs, label = _refiners(model)
    x = np.random.default_rng(0).standard_normal((2, 256, 256)).astype(np.float32)
    grid, sensors, acq = Grid(256, 0.0256), ring_array(256, 0.04), Acquisition(40e6, 2030)
    y = np.random.default_rng(1).standard_normal((256, 2030)).astype(np.float32)
    das_times = [median_time(lambda: backproject(y, grid, sensors, acq), reps)]
    t_inf, t_unc = {}, {}
    for engine, ref in refs.items():
        t_inf[engine] = median_time(lambda r=ref: r.refine_images(x, n_samples=0), reps)
        das_times.append(median_time(lambda: backproject(y, grid, sensors, acq), reps))
        t_unc[engine] = median_time(lambda r=ref: r.refine_images(x, n_samples=16),
                                    max(3, reps // 3))
    das = float(np.median(das_times))
    rows = []
    for engine in refs:
        rows.append(dict(name=f"refine one 256² image, {engine} ({label})",
                         value=t_inf[engine] * 1e3, unit="ms", reference="DAS 256²×256×2030",
                         ratio=t_inf[engine] / das, target="<= 1× DAS",
                         ok=t_inf[engine] <= das))
        rows.append(dict(name=f"refine + uncertainty map, {engine}",
                         value=t_unc[engine] * 1e3, unit="ms",
                         reference="DAS 256²×256×2030", ratio=t_unc[engine] / das, target="",
                         ok=True))
    rows.append(dict(name="DAS 256²×256×2030 (same run, median of three)", value=das * 1e3,
                     unit="ms", reference="", ratio=float("nan"), target="", ok=True))
    return rows


if __name__ == "__main__":
    for row in run(sys.argv[1] if len(sys.argv) > 1 else None):
        print(f"{row['name']}: {row['value']:.1f} {row['unit']}"
              + (f" ({row['ratio']:.2f}x {row['reference']})" if row["reference"] else ""))

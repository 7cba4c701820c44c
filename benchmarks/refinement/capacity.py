"""The TV refiner's capacity: quality against the model's size and its training cost.

Each model is one training run of ``tv_residual.py train`` (the same 1255 training scans,
loss, beta and batches; ``--channels`` sets the three levels' channels), with its
snapshots every 500 steps and its learning curve (``<model>.curve.json``, whose ``s`` is
the training wall time). Every snapshot is scored on the tuning cache with one pass of the
invariant decoder (``tv_residual.py score``: refined - TV in dB, mean over the cache's
scans); the table gives, per model and step, that gain, the training time so far, the
number of parameters and the size of the float32 weights the package would ship; the
figure plots the gain against steps, and at the last step against the parameters. (The
training time is the curve's wall time: it counts whatever else the machine ran.)

Run::

    .venv/bin/python benchmarks/refinement/capacity.py out/tv_refiner/tuning \\
        c16=out/capacity/c16.pt c32=out/ensemble/member1.pt c48=out/capacity/c48.pt \\
        --json benchmarks/refinement/capacity_tuning.json \\
        --figure docs/results/figures/tv_refiner_capacity.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

import tv_residual as R  # noqa: E402


def snapshots(model: str) -> list[tuple[int, str]]:
    """(step, path) of a run's snapshots ``<stem>_<step>.pt`` and its last checkpoint."""
    import torch

    p = Path(model)
    out = {int(f.stem.rsplit("_", 1)[1]): str(f) for f in p.parent.glob(f"{p.stem}_*.pt")
           if f.stem.rsplit("_", 1)[1].isdigit()}
    if p.exists():
        out[int(torch.load(p, weights_only=True, map_location="cpu")["step"])] = str(p)
    return sorted(out.items())


def size_of(path: str) -> tuple[int, list[int]]:
    """Parameters of a checkpoint's model and its level channels."""
    import torch

    ck = torch.load(path, weights_only=True, map_location="cpu")
    n = sum(int(np.prod(v.shape)) for v in ck["model"].values() if v.dtype.is_floating_point)
    return n, list(ck.get("channels", R.SKIP_CHANNELS))


def train_seconds(model: str, step: int) -> float | None:
    """Training wall time up to ``step`` from the run's learning curve."""
    curve = Path(model + ".curve.json")
    if not curve.exists():
        return None
    rows = [r for r in json.loads(curve.read_text()) if r["step"] <= step and "s" in r]
    return float(rows[-1]["s"]) if rows else None


def measure(cache: Path, models: dict[str, str]) -> list[dict]:
    """One row per (model, snapshot)."""
    rows = []
    for name, model in models.items():
        steps = snapshots(model)
        if not steps:
            raise SystemExit(f"{model}: no checkpoint or snapshot")
        params, channels = size_of(steps[-1][1])
        for step, path in steps:
            scored = R.score(path, cache)
            gain = np.array([r[5] - r[4] for r in scored])
            rows.append({"model": name, "channels": channels, "parameters": params,
                         "float32_mb": params * 4 / 1e6, "step": step,
                         "train_s": train_seconds(model, step), "n": len(scored),
                         "gain_db": float(gain.mean()), "worst_db": float(gain.min())})
            print(f"{name} step {step}: refined - TV {gain.mean():+.2f} dB "
                  f"(worst {gain.min():+.2f}) on {len(scored)} scans", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | channels | parameters (M) | weights (MB) | step | training (min) "
             "| refined - TV (dB) | worst |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = "" if r["train_s"] is None else f"{r['train_s'] / 60:.1f}"
        lines.append(f"| {r['model']} | {'/'.join(map(str, r['channels']))} | "
                     f"{r['parameters'] / 1e6:.2f} | {r['float32_mb']:.1f} | {r['step']} | {t} "
                     f"| {r['gain_db']:+.2f} | {r['worst_db']:+.2f} |")
    return "\n".join(lines)


def figure(rows: list[dict], path: str) -> None:
    """The gain against training steps per model, and at the last step against the
    number of parameters (runs of one size, e.g. two seeds: points, and their mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    last = []
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == name]
        label = f"{name} ({rs[0]['parameters'] / 1e6:.2f} M)"
        axes[0].plot([r["step"] for r in rs], [r["gain_db"] for r in rs], "o-", label=label)
        last.append(rs[-1])
    # every run a point, the line through the mean of the runs of each size
    sizes = sorted({r["parameters"] for r in last})
    means = [np.mean([r["gain_db"] for r in last if r["parameters"] == n]) for n in sizes]
    axes[1].plot([n / 1e6 for n in sizes], means, "-", color="k")
    axes[1].plot([r["parameters"] / 1e6 for r in last], [r["gain_db"] for r in last], "o",
                 color="k")
    for n, m in zip(sizes, means, strict=True):
        mb = next(r["float32_mb"] for r in last if r["parameters"] == n)
        axes[1].annotate(f"{mb:.0f} MB", (n / 1e6, m), textcoords="offset points",
                         xytext=(4, -12), fontsize=8)
    axes[0].set_xlabel("training steps (16 crops of 96 x 96)")
    axes[1].set_xlabel(f"parameters (M), at step {last[0]['step']}")
    axes[0].set_ylabel("refined - TV on the tuning scans (dB)")
    axes[0].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", help="a tv_refiner.py cache (the tuning scans)")
    ap.add_argument("models", nargs="+", help="NAME=PATH of each run's last checkpoint")
    ap.add_argument("--json")
    ap.add_argument("--figure")
    a = ap.parse_args(argv)
    models = dict(m.split("=", 1) for m in a.models)
    rows = measure(Path(a.cache), models)
    print(table(rows))
    if a.json:
        tmp = Path(a.json + ".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        os.replace(tmp, a.json)
    if a.figure:
        figure(rows, a.figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Progress of an ``oatomo cmnist`` run: how far each training is and its learning curve.

Reads the JSON sidecars of the checkpoints (``checkpoints/seed<s>/<model>.json``), so it
works while the run goes on or after it was stopped::

    python benchmarks/cmnist/progress.py out/cmnist_full          # markdown to stdout
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MODELS = ("beta_vae", "multi_decoder", "multi_encoder")


def progress(outdir: Path, every: int = 5) -> str:
    """A markdown summary: per seed and model, epochs done and the total loss every
    ``every`` epochs (the per-epoch mean of the training objective, nats per image)."""
    lines = ["| seed | model | epochs done | total loss by epoch |", "|---|---|---|---|"]
    for seed_dir in sorted((outdir / "checkpoints").glob("seed*")):
        for model in MODELS:
            side = seed_dir / f"{model}.json"
            if not side.is_file():
                continue
            meta = json.loads(side.read_text())
            hist = meta.get("history", [])
            epochs = meta.get("train", {}).get("epochs", "?")
            curve = ", ".join(f"{h['epoch']}: {h['total']:.1f}" for h in hist
                              if h["epoch"] % every == 0 or h["epoch"] == 1
                              or h is hist[-1])
            lines.append(f"| {seed_dir.name[4:]} | {model} | {len(hist)} / {epochs} | "
                         f"{curve} |")
    partial = outdir / "results_partial.json"
    if partial.is_file():
        data = json.loads(partial.read_text())
        lines += ["", "| seed | model | MSE | RKL | RKL k-NN | E_rel | E_rel paired |",
                  "|---|---|---|---|---|---|---|"]
        for row in data["per_seed"]:
            for model in MODELS:
                if model in row:
                    r = row[model]
                    lines.append(f"| {row['seed']} | {model} | {r['mse']:.2f} | "
                                 f"{r['rkl']:.3f} | {r['rkl_knn']:.2f} | {r['e_rel']:.3f} | "
                                 f"{r['e_rel_paired']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="the --out directory of oatomo cmnist")
    parser.add_argument("--every", type=int, default=5, help="loss every N epochs")
    args = parser.parse_args()
    print(progress(args.outdir, args.every))


if __name__ == "__main__":
    main()

"""Learning curves of scanner-family refiners as a Markdown table.

Reads the ``<checkpoint>.curve.jsonl`` files written by ``oatomo family train`` and prints,
every ``--every`` steps, the mean over the steps before of the sum of squared errors per
image (the VAEs' Gaussian negative log-likelihood with its constant removed, times 2σ²;
the U-Net's loss, which is that sum). For a
multi-decoder model the column is its invariant decoder (the ``invariance`` term, the
invariant decoder's likelihood); for the pooled models the ``reconstruction`` term.

Run: ``.venv/bin/python benchmarks/refinement/learning_curves.py LABEL=CURVE.jsonl ...
[--every 384]``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def sse_per_image(curve: Path, *, sigma: float, pixels: int, every: int,
                  term: str | None = None) -> dict[int, float]:
    """Mean SSE per image over each block of ``every`` steps, keyed by the block's end."""
    rows = [json.loads(line) for line in curve.read_text().splitlines() if line.strip()]
    if term is None:
        term = "invariance" if any(r.get("invariance", 0) for r in rows) else "reconstruction"
    # a U-Net's loss is the SSE itself (no KL); the VAEs' is the Gaussian NLL
    vae = any(r.get("kl", 0) for r in rows)
    const = pixels * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
    out: dict[int, float] = {}
    for end in range(every, rows[-1]["step"] + 1, every):
        block = [r[term] for r in rows if end - every < r["step"] <= end]
        if block:
            mean = sum(block) / len(block)
            out[end] = (mean - const) * 2 * sigma ** 2 if vae else mean
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("curves", nargs="+", help="LABEL=PATH of curve.jsonl files")
    ap.add_argument("--every", type=int, default=384)
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--size", type=int, default=96, help="training crop side (pixels)")
    a = ap.parse_args()
    cols = {}
    for spec in a.curves:
        label, _, path = spec.rpartition("=")
        cols[label or Path(path).stem] = sse_per_image(Path(path), sigma=a.sigma,
                                                       pixels=a.size ** 2, every=a.every)
    steps = sorted({s for c in cols.values() for s in c})
    print("| step | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for s in steps:
        print(f"| {s} | " + " | ".join(f"{c[s]:.0f}" if s in c else "" for c in cols.values())
              + " |")


if __name__ == "__main__":
    main()

"""Colored MNIST sweep: E_rel of every model at several training
environments and γ, with its uncertainty, from finished or unfinished ``oatomo cmnist``
runs.

Each run directory is one point of the sweep, given as ``LABEL=DIR``; its ``stats.json``
(written by ``oatomo cmnist``, or by ``oatomo cmnist --stats-only --out DIR`` for a run
still going) holds E_rel per seed, the standard error over seeds and the bootstrap
interval over test images::

    python benchmarks/cmnist/sweep.py "e 0.2/0.1, γ 1=out/cmnist_full" \\
        "e 0.05/0.4, γ 1=out/cmnist_sweep_e05_40" --out benchmarks/cmnist/sweep

writes ``sweep.md`` (the tables: E_rel per model and point; each invariant model's E_rel
minus the β-VAE's, paired) and ``sweep.png`` (left: E_rel ± standard error over seeds per
model and point, bootstrap intervals as thin bars; right: the paired differences with their
bootstrap 95 % intervals over test images: below zero, the invariant model removes more of
the colour bias than the β-VAE).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MODELS = {"beta_vae": "β-VAE", "multi_decoder": "multiple decoders",
          "multi_encoder": "multiple encoders"}


def load_point(directory: Path) -> dict[str, dict]:
    """E_rel statistics per model of one run (models not evaluated yet are absent), and
    under ``"vs_beta_vae"`` the paired comparisons of each invariant model's E_rel with the
    β-VAE's."""
    stats = directory / "stats.json"
    if not stats.is_file():
        raise SystemExit(f"{stats}: not found (run oatomo cmnist --stats-only --out "
                         f"{directory})")
    doc = json.loads(stats.read_text())
    unc = doc["uncertainty"]
    out: dict[str, dict] = {m: unc[m]["e_rel"] for m in MODELS if m in unc}
    out["vs_beta_vae"] = {c["a"]: c for c in doc.get("comparisons", [])
                          if c["metric"] == "e_rel" and c["b"] == "beta_vae"}
    return out


def table(points: dict[str, dict[str, dict]]) -> str:
    lines = ["| point | model | seeds | E_rel mean | SE over seeds | bootstrap 95 % |",
             "|---|---|---|---|---|---|"]
    for label, models in points.items():
        for m, s in models.items():
            if m not in MODELS:
                continue
            se = s["se_seeds"]
            se_text = f"{se:.4f}" if se == se else "– (one seed)"
            lines.append(f"| {label} | {MODELS[m]} | {len(s['per_seed'])} | "
                         f"{s['mean']:.4f} | {se_text} | "
                         f"{s['boot_low']:.4f} – {s['boot_high']:.4f} |")
    lines += ["", "Paired: each invariant model's E_rel minus the β-VAE's (the same seeds and "
              "test images; negative = less colour bias than the β-VAE):", "",
              "| point | model | E_rel − β-VAE | bootstrap 95 % (images) | p (images) | "
              "p (seeds, paired t) | significant |", "|---|---|---|---|---|---|---|"]
    for label, models in points.items():
        for m, c in models.get("vs_beta_vae", {}).items():
            p_seeds = c.get("seeds_p")
            p_text = f"{p_seeds:.3f}" if p_seeds is not None and p_seeds == p_seeds else "–"
            lines.append(f"| {label} | {MODELS[m]} | {c['diff']:+.4f} | "
                         f"{c['boot_low']:+.4f} – {c['boot_high']:+.4f} | "
                         f"{c['boot_p']:.3f} | {p_text} | "
                         f"{'yes' if c['significant'] else 'no'} |")
    return "\n".join(lines) + "\n"


def figure(points: dict[str, dict[str, dict]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2 * max(4.5, 1.8 + 1.6 * len(points)), 3.4), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    width = 0.8 / len(MODELS)
    for k, (m, name) in enumerate(MODELS.items()):
        xs, ys, se, lo, hi = [], [], [], [], []
        for i, models in enumerate(points.values()):
            if m in models:
                s = models[m]
                xs.append(i + (k - 1) * width)
                ys.append(s["mean"])
                se.append(s["se_seeds"] if s["se_seeds"] == s["se_seeds"] else 0.0)
                lo.append(s["mean"] - s["boot_low"])
                hi.append(s["boot_high"] - s["mean"])
        ax.bar(xs, ys, width, yerr=se, capsize=3, label=name)
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor="k", elinewidth=0.6)
    ax.set_xticks(range(len(points)), list(points), fontsize=8)
    ax.set_ylabel("E_rel (test environment, e = 0.9)")
    ax.set_title("mean ± SE over seeds; thin bars: bootstrap 95 %", fontsize=9)
    ax.legend(fontsize=8)
    width = 0.8 / (len(MODELS) - 1)
    for k, m in enumerate(m for m in MODELS if m != "beta_vae"):
        xs, ys, lo, hi = [], [], [], []
        for i, models in enumerate(points.values()):
            c = models.get("vs_beta_vae", {}).get(m)
            if c is not None:
                xs.append(i + (k - 0.5) * width)
                ys.append(c["diff"])
                lo.append(c["diff"] - c["boot_low"])
                hi.append(c["boot_high"] - c["diff"])
        ax2.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, label=MODELS[m],
                     color=f"C{k + 1}")
    ax2.axhline(0.0, color="k", lw=0.8)
    ax2.set_xticks(range(len(points)), list(points), fontsize=8)
    ax2.set_xlim(-0.6, len(points) - 0.4)
    ax2.set_ylabel("E_rel − E_rel(β-VAE), paired")
    ax2.set_title("below 0: less colour bias than the β-VAE (bootstrap 95 %)", fontsize=9)
    ax2.legend(fontsize=8)
    fig.savefig(path, dpi=120)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("points", nargs="+", help="LABEL=DIR, one per sweep point")
    ap.add_argument("--out", type=Path, help="write OUT.md and OUT.png (else print)")
    args = ap.parse_args(argv)
    points = {}
    for spec in args.points:
        label, sep, directory = spec.rpartition("=")
        if not sep or not label:
            ap.error(f"{spec!r}: expected LABEL=DIR")
        points[label] = load_point(Path(directory))
    text = table(points)
    if args.out is None:
        print(text, end="")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    figure(points, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

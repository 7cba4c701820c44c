"""Uncertainty of the Colored MNIST metrics and the paired comparisons between the models.

Two sources of uncertainty are reported separately:

* **training** (seeds): the standard error of the mean over seeds,
  ``std(ddof=1) / sqrt(n)``, and for a difference between two models a paired t-test over
  the seeds (the same seed gives both models the same environments);
* **test set** (images): a bootstrap over the test images. One replicate draws the test
  images with replacement (the same draw for every seed and every model: the test images
  are the same digits in every seed, only their colours differ) and, for RKL, the generated
  samples with replacement; the metric is recomputed and averaged over the seeds. The 2.5 %
  and 97.5 % quantiles give the 95 % interval; for a difference between two models the
  same draw is applied to both (a paired bootstrap), and its two-sided p-value is
  ``2 * min(P(d <= 0), P(d >= 0))`` over the replicates (floored at ``1 / n_boot``).

For the MSE, whose per-image errors are paired between models, the paired t-test and the
Wilcoxon signed-rank test over the test images (per-image errors averaged over the seeds)
are given too.

A difference is called **significant** when both the bootstrap over test images and the
t-test over seeds give p < 0.05; **significant (test images only)** when only the first
does. A published comparison is **reproduced** when the difference is significant in the
published direction.

The tests themselves are :mod:`oatomo.evaluation.stats`; everything random comes from
``numpy.random.default_rng(seed)``: the same seed gives the same intervals, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from oatomo.errors import InputError
from oatomo.evaluation.stats import (
    bootstrap_ci,
    paired_bootstrap,
    paired_t_test,
    standard_error,
    wilcoxon_test,
)
from oatomo.validation.cmnist.metrics import class_histogram, histogram_kl

__all__ = ["ALPHA", "metric_mse", "metric_e_rel", "metric_rkl", "Comparison", "COMPARISONS",
           "load_per_image", "compare_models", "model_uncertainty", "format_stats", "verdict",
           "comparisons_json"]

#: Significance level of every statement.
ALPHA = 0.05
_METRICS = ("mse", "rkl", "e_rel")
_NAMES = {"beta_vae": "β-VAE", "multi_decoder": "multiple decoders",
          "multi_encoder": "multiple encoders"}

#: The comparisons the published table makes: (model A, model B, metric, published sign of
#: A - B: -1 A lower, +1 A higher, 0 no published claim).
COMPARISONS: tuple[tuple[str, str, str, int], ...] = (
    ("multi_decoder", "multi_encoder", "mse", +1),     # 14.7 vs 12.8
    ("multi_decoder", "multi_encoder", "rkl", -1),     # 1.957 vs 2.839
    ("multi_decoder", "multi_encoder", "e_rel", -1),   # 0.100 vs 0.121
    ("multi_decoder", "beta_vae", "e_rel", -1),        # the invariant models' purpose
    ("multi_encoder", "beta_vae", "e_rel", -1),
    ("multi_decoder", "beta_vae", "mse", 0),
    ("multi_encoder", "beta_vae", "mse", 0),
    ("multi_decoder", "beta_vae", "rkl", 0),
    ("multi_encoder", "beta_vae", "rkl", 0),
)



# --- the three metrics from per-image data ------------------------------------------------


def metric_mse(d: dict[str, np.ndarray], idx: np.ndarray) -> float:
    """MSE (mean per-image sum of squared errors) of the test images ``idx``."""
    return float(d["sse"][idx].mean())


def metric_e_rel(d: dict[str, np.ndarray], idx: np.ndarray) -> float:
    """E_rel = (MSE_hard - MSE_easy) / MSE_easy of the test images ``idx``."""
    sse, easy = d["sse"][idx], d["easy"][idx]
    m_easy = sse[easy].mean() if easy.any() else np.nan
    m_hard = sse[~easy].mean() if (~easy).any() else np.nan
    return float((m_hard - m_easy) / m_easy)


def metric_rkl(d: dict[str, np.ndarray], idx: np.ndarray, gen_idx: np.ndarray | None = None
               ) -> float:
    """Histogram RKL D(q_gen || p_test) over the 20 (digit x colour) classes of the test
    images ``idx`` and the generated samples ``gen_idx`` (default: the same indices)."""
    g = idx if gen_idx is None else gen_idx
    p = class_histogram(d["test_pred"][idx], d["test_color"][idx])
    q = class_histogram(d["gen_pred"][g], d["gen_color"][g])
    return histogram_kl(q, p)


_METRIC_FN = {"mse": metric_mse, "e_rel": metric_e_rel, "rkl": metric_rkl}


# --- reading a run and comparing its models ----------------------------------------------


def load_per_image(outdir: str | Path) -> dict[str, list[dict[str, np.ndarray]]]:
    """The per-image evaluations ``per_image/seed<s>_<model>.npz`` of an ``oatomo cmnist``
    run: ``{model: [seed 0, seed 1, ...]}``, only seeds finished for *every* model."""
    outdir = Path(outdir)
    found: dict[str, dict[int, dict[str, np.ndarray]]] = {k: {} for k in _NAMES}
    for path in sorted((outdir / "per_image").glob("seed*_*.npz")):
        seed_part, _, model = path.stem.partition("_")
        if model not in found or not seed_part[4:].isdigit():
            continue
        with np.load(path) as npz:
            found[model][int(seed_part[4:])] = {k: npz[k] for k in npz.files}
    seeds = sorted(set.intersection(*(set(v) for v in found.values())))
    if not seeds:
        raise InputError("no seed has per-image evaluations of all three models yet",
                         outdir / "per_image")
    return {m: [found[m][s] for s in seeds] for m in _NAMES}


def _seed_mean(metric: str, runs: list[dict[str, np.ndarray]]) -> Callable[..., float]:
    """A statistic of one index draw: the metric averaged over the seeds (for RKL a second
    index array draws the generated samples)."""
    fn = _METRIC_FN[metric]

    def stat(idx: np.ndarray, gen_idx: np.ndarray | None = None) -> float:
        if metric == "rkl":
            return float(np.mean([metric_rkl(r, idx, gen_idx) for r in runs]))
        return float(np.mean([fn(r, idx) for r in runs]))

    return stat


def _sizes(metric: str, runs: list[dict[str, np.ndarray]]) -> tuple[int, int | None]:
    return len(runs[0]["sse"]), (len(runs[0]["gen_pred"]) if metric == "rkl" else None)


def model_uncertainty(per_image: dict[str, list[dict[str, np.ndarray]]], *,
                      n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per model and metric: per-seed values, mean, standard error over seeds and the
    bootstrap 95 % interval (over test images) of the seed mean."""
    out: dict[str, dict[str, Any]] = {}
    for model, runs in per_image.items():
        n = len(runs[0]["sse"])
        out[model] = {}
        for metric in _METRICS:
            full = np.arange(n)
            vals = [(_METRIC_FN[metric](r, full)) for r in runs]
            n, m = _sizes(metric, runs)
            boot = bootstrap_ci(_seed_mean(metric, runs), n, m=m, n_boot=n_boot, seed=seed)
            out[model][metric] = {"per_seed": vals, "mean": float(np.mean(vals)),
                                  "se_seeds": standard_error(vals),
                                  "boot_low": boot["low"], "boot_high": boot["high"],
                                  "boot_se": boot["se"]}
    return out


@dataclass(frozen=True)
class Comparison:
    """One paired comparison of model ``a`` against model ``b`` on one metric."""

    a: str
    b: str
    metric: str
    published_sign: int
    diff: float
    boot_low: float
    boot_high: float
    boot_p: float
    seeds_t: float
    seeds_p: float
    n_seeds: int
    images_t_p: float | None = None
    wilcoxon_p: float | None = None

    @property
    def significant(self) -> bool:
        """Bootstrap over test images and t-test over seeds both at p < 0.05."""
        return bool(self.boot_p < ALPHA) and bool(self.seeds_p < ALPHA)

    @property
    def reproduced(self) -> bool | None:
        """Significant in the published direction; ``None`` without a published claim."""
        if self.published_sign == 0:
            return None
        return self.significant and bool(np.sign(self.diff) == self.published_sign)


def verdict(c: Comparison) -> str:
    """The plain statement for one comparison."""
    if c.significant:
        sig = "significant"
    elif c.boot_p < ALPHA and not np.isfinite(c.seeds_p):
        sig = "significant over test images (one seed: no test over seeds)"
    elif c.boot_p < ALPHA:
        sig = "significant over test images only (not over seeds)"
    else:
        sig = "not significant"
    if c.published_sign == 0:
        return sig
    want = "lower" if c.published_sign < 0 else "higher"
    if c.reproduced:
        return f"reproduced ({want}, {sig})"
    if c.significant:
        return f"not reproduced: significantly the other way ({sig})"
    return f"not reproduced ({sig}; published: {want})"


def compare_models(per_image: dict[str, list[dict[str, np.ndarray]]], *, n_boot: int = 1000,
                   seed: int = 0) -> list[Comparison]:
    """Every comparison of :data:`COMPARISONS` with its paired tests."""
    out = []
    for a, b, metric, sign in COMPARISONS:
        ra, rb = per_image[a], per_image[b]
        n = len(ra[0]["sse"])
        full = np.arange(n)
        va = [_METRIC_FN[metric](r, full) for r in ra]
        vb = [_METRIC_FN[metric](r, full) for r in rb]
        n, m = _sizes(metric, ra)
        boot = paired_bootstrap(_seed_mean(metric, ra), _seed_mean(metric, rb), n, m=m,
                                n_boot=n_boot, seed=seed)
        t, p = paired_t_test(va, vb)
        extra: dict[str, float] = {}
        if metric == "mse":
            sa = np.mean([r["sse"] for r in ra], axis=0)
            sb = np.mean([r["sse"] for r in rb], axis=0)
            extra = {"images_t_p": paired_t_test(sa, sb)[1], "wilcoxon_p": wilcoxon_test(sa, sb)}
        out.append(Comparison(a, b, metric, sign, boot["estimate"], boot["low"], boot["high"],
                              boot["p"], t, p, len(va), **extra))
    return out


def _fmt(v: float, digits: int) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _p(v: float | None) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    return "≤ 0.001" if v <= 0.001 else f"{v:.3f}"


_DIGITS = {"mse": 2, "rkl": 3, "e_rel": 3}
_LABEL = {"mse": "MSE", "rkl": "RKL (histogram)", "e_rel": "E_rel"}


def format_stats(uncertainty: dict[str, dict[str, Any]], comparisons: list[Comparison],
                 *, poster: dict[str, tuple[float, float]] | None = None) -> str:
    """Two markdown tables: every metric with its uncertainties, every comparison with its
    tests and statement."""
    n_seeds = len(next(iter(uncertainty.values()))["mse"]["per_seed"])
    head = ["metric", *(_NAMES[m] for m in uncertainty)]
    if poster:
        head += ["poster: multiple decoders", "poster: multiple encoders"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in _METRICS:
        d = _DIGITS[metric]
        cells = [f"{_fmt(u[metric]['mean'], d)} ± {_fmt(u[metric]['se_seeds'], d)} "
                 f"[{_fmt(u[metric]['boot_low'], d)}, {_fmt(u[metric]['boot_high'], d)}]"
                 for u in uncertainty.values()]
        row = f"| {_LABEL[metric]} | " + " | ".join(cells)
        if poster:
            row += " | " + " | ".join(f"{v:g}" for v in poster[metric])
        lines.append(row + " |")
    lines += ["", f"Mean over {n_seeds} seed(s) ± standard error over seeds "
              "[95 % bootstrap interval over test images of the seed mean].", "",
              "| comparison | metric | difference A − B [95 % bootstrap] | p (bootstrap, "
              "images) | p (t-test, seeds) | p (t / Wilcoxon, images) | statement |",
              "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        d = _DIGITS[c.metric]
        img = "–" if c.images_t_p is None else f"{_p(c.images_t_p)} / {_p(c.wilcoxon_p)}"
        lines.append(f"| {_NAMES[c.a]} vs {_NAMES[c.b]} | {_LABEL[c.metric]} | "
                     f"{c.diff:+.{d}f} [{c.boot_low:+.{d}f}, {c.boot_high:+.{d}f}] | "
                     f"{_p(c.boot_p)} | {_p(c.seeds_p)} | {img} | {verdict(c)} |")
    lines += ["", "Significant: p < 0.05 in both the paired bootstrap over test images and "
              "the paired t-test over seeds. Reproduced: significant in the published "
              "direction."]
    return "\n".join(lines)


def comparisons_json(comparisons: list[Comparison]) -> list[dict[str, Any]]:
    """The comparisons as JSON-ready dicts (with ``significant``, ``reproduced``,
    ``statement``)."""
    return [{**asdict(c), "significant": c.significant, "reproduced": c.reproduced,
             "statement": verdict(c)} for c in comparisons]

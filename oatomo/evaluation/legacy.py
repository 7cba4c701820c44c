"""Evaluation of linear reconstructions and refiners on in-distribution and held-out setups.

For every setup of a test dataset: PSNR, SSIM, RMSE and Pearson correlation of DAS, UBP and
each model against p0; the uncertainty–error correlation of models with posterior samples;
a figure grid (truth, linear reconstruction, each model's output) for one scan per setup.

Scaling (documented so comparisons are fair): p0 has maximum 1. Linear images are scored
twice: min–max normalised to [0, 1] (the convention of the group's published pipeline,
rows ``UBP (min-max)``) and with their best affine fit to the truth (least-squares
``a * image + b``, rows ``UBP (affine)``), the most favourable scaling a linear
reconstruction can get, so gains over it are conservative. Model outputs are used as they
come (they are trained to p0's scale), clipped to [0, 1]. PSNR and SSIM use a data range
of 1.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from oatomo.errors import InputError
from oatomo.evaluation import metrics as M
from oatomo.recon.registry import Callback

logger = logging.getLogger(__name__)

__all__ = ["evaluate", "minmax", "affine_fit", "image_metrics"]


def minmax(images: np.ndarray) -> np.ndarray:
    """Min–max normalise each image (last two axes) to [0, 1]."""
    a = np.asarray(images, np.float32)
    lo = a.min(axis=(-2, -1), keepdims=True)
    hi = a.max(axis=(-2, -1), keepdims=True)
    return ((a - lo) / np.where(hi > lo, hi - lo, 1)).astype(np.float32)


def affine_fit(images: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per image, the least-squares ``a * image + b`` closest to ``truth``."""
    x = np.asarray(images, np.float64)
    t = np.asarray(truth, np.float64)
    xm = x.mean(axis=(-2, -1), keepdims=True)
    tm = t.mean(axis=(-2, -1), keepdims=True)
    cov = ((x - xm) * (t - tm)).sum(axis=(-2, -1), keepdims=True)
    var = ((x - xm) ** 2).sum(axis=(-2, -1), keepdims=True)
    a = cov / np.where(var > 0, var, 1)
    return (a * (x - xm) + tm).astype(np.float32)


def image_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean PSNR (dB), SSIM, RMSE and Pearson over a stack of images."""
    return {"psnr": float(np.mean(M.psnr(pred, truth, data_range=1.0))),
            "ssim": float(np.mean(M.ssim(pred, truth, data_range=1.0))),
            "rmse": float(np.mean(M.rmse(pred, truth))),
            "pearson": float(np.mean(M.pearson(pred, truth)))}


def evaluate(data: str | os.PathLike, models: dict[str, str | os.PathLike], *,
             out: str | os.PathLike | None = None, limit: int | None = None,
             n_samples: int = 8, with_das: bool = True, callback: Callback | None = None
             ) -> dict[str, Any]:
    """Evaluate linear reconstructions and models on every setup of a test dataset.

    Parameters
    ----------
    data
        Dataset file (``oatomo dataset``), e.g. from ``simulations/exp_heldout.toml``.
    models
        Label -> checkpoint path (each written by ``oatomo train``).
    out
        Directory for ``evaluation.md`` and ``evaluation.json`` (the figure:
        :func:`oatomo.figures.evaluation_figure` of the returned ``examples``).
    limit
        Items per setup (default: all).
    n_samples
        Posterior samples for the uncertainty maps.
    with_das
        Also regenerate DAS images from the items' seeds (deterministic) and score them.

    Returns
    -------
    dict
        ``rows``: one dict per (setup, method) with the metrics and ``in_distribution``;
        ``summary``: per method, mean PSNR in and out of distribution and the drop;
        ``examples``: per setup, the first image of each method (for the figure).
    """
    from oatomo.datasets.legacy import load_training_data, make_item
    from oatomo.refine.legacy import load_refiner
    from oatomo.setups import Setup

    td = load_training_data(data, limit=limit)
    refiners = {label: load_refiner(p) for label, p in models.items()}
    for label, r in refiners.items():
        if r.grid != td.grid:
            raise InputError(f"model {label} works on {r.grid}, the data on {td.grid}",
                             models[label])
    train_names = set().union(*(r.env_names for r in refiners.values())) if refiners else set()
    rows: list[dict[str, Any]] = []
    examples: dict[str, dict[str, np.ndarray]] = {}
    for e, name in enumerate(td.names):
        if callback is not None:
            callback("setups", e, len(td.names))
        x, t = td.environments[e]
        truth = t[:, 0]
        lin = td.method.upper()
        outputs = {f"{lin} (min-max)": minmax(x[:, 0]),
                   f"{lin} (affine)": affine_fit(x[:, 0], truth)}
        if with_das and td.method != "das":
            setup = Setup.from_dict(td.setups[e])
            das = np.stack([make_item(setup, td.phantom, "das", int(s))["input"]
                            for s in td.item_seeds[e]])
            outputs["DAS (min-max)"] = minmax(das)
            outputs["DAS (affine)"] = affine_fit(das, truth)
        uncert: dict[str, float] = {}
        for label, ref in refiners.items():
            refined, std = ref.refine(x[:, 0], n_samples=n_samples, seed=e)
            refined = np.clip(refined, 0, 1)
            outputs[label] = refined
            if std is not None:
                err = np.abs(refined - truth)
                uncert[label] = float(np.nanmean(M.pearson(std, err)))
                examples.setdefault(name, {})[f"{label} std"] = std[0]
        for method, img in outputs.items():
            row = {"setup": name, "method": method, "in_distribution": name in train_names,
                   "n": len(truth), **image_metrics(img, truth)}
            if method in uncert:
                row["uncertainty_error_corr"] = uncert[method]
            rows.append(row)
        examples.setdefault(name, {}).update({"truth": truth[0],
                                               **{k: v[0] for k, v in outputs.items()}})
    summary = _summary(rows)
    result = {"rows": rows, "summary": summary, "data": str(data),
              "models": {k: str(v) for k, v in models.items()}}
    if out is not None:
        _write(Path(out), result)
    result["examples"] = examples
    return result


def _summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        ind = [r["psnr"] for r in rows if r["method"] == method and r["in_distribution"]]
        held = [r["psnr"] for r in rows if r["method"] == method and not r["in_distribution"]]
        s = {"psnr_in": float(np.mean(ind)) if ind else float("nan"),
             "psnr_heldout": float(np.mean(held)) if held else float("nan")}
        s["drop_db"] = s["psnr_in"] - s["psnr_heldout"]
        u = [r["uncertainty_error_corr"] for r in rows
             if r["method"] == method and "uncertainty_error_corr" in r]
        if u:
            s["uncertainty_error_corr"] = float(np.mean(u))
        out[method] = s
    return out


def to_markdown(result: dict[str, Any]) -> str:
    """The evaluation as markdown tables (per setup, then the summary)."""
    lines = ["| setup | in training | method | PSNR (dB) | SSIM | RMSE | Pearson | unc.–err. r |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        u = r.get("uncertainty_error_corr")
        lines.append(f"| {r['setup']} | {'yes' if r['in_distribution'] else 'no'} | "
                     f"{r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['rmse']:.4f} | "
                     f"{r['pearson']:.3f} | {'' if u is None else f'{u:.2f}'} |")
    lines += ["", "| method | PSNR in distribution | PSNR held-out | drop (dB) | unc.–err. r |",
              "|---|---|---|---|---|"]
    for m, s in result["summary"].items():
        u = s.get("uncertainty_error_corr")
        lines.append(f"| {m} | {s['psnr_in']:.2f} | {s['psnr_heldout']:.2f} | "
                     f"{s['drop_db']:.2f} | {'' if u is None else f'{u:.2f}'} |")
    return "\n".join(lines)


def _write(out: Path, result: dict[str, Any]) -> None:
    from oatomo._atomic import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "evaluation.md") as tmp:
        tmp.write_text(to_markdown(result) + "\n")
    with atomic_path(out / "evaluation.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")

"""Evaluation of refiners on held-out scanners and phantoms.

The evaluation set (:func:`make_eval_set`) holds, for each fixed geometry of
:data:`oatomo.scanners.EVAL_GEOMETRIES` (a 32-sensor ring of radius 22.5 mm, a 128-sensor
ring of radius 40 mm, a 270-degree 128-sensor arc of radius 30 mm) and each perturbation
kind -- two seen in training (``radial``, ``jitter``: *in distribution*) and the two held-out
kinds (``global``, ``large``) -- scans of held-out phantom kinds (``vessel-walk``,
``texture-heldout``), with the classical answers computed once: UBP and DAS with the
nominal positions, TV with the nominal positions and TV with the true positions and speed
of sound (the oracle). One ``.npz`` file per (geometry, perturbation), written atomically,
so an interrupted run resumes.

:func:`evaluate_refiners` refines every scan with each model (through
:meth:`oatomo.refine.Refiner.refine_scan`, the path users take) and scores
everything after its best affine fit to the truth (the most favourable scaling, the same
for all methods): PSNR, SSIM, and for models with posterior samples the Pearson correlation
between the uncertainty map and the absolute error, plus a calibration curve (binned
predicted standard deviation against the RMS error in the bin).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from oatomo._atomic import atomic_path
from oatomo._limits import check_integer
from oatomo.datasets.generate import HELDOUT_PHANTOMS, item_seed, job_directory, make_item
from oatomo.errors import InputError
from oatomo.evaluation import metrics as M
from oatomo.evaluation.stats import standard_error
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.progress import Callback
from oatomo.refine.refiner import load_refiner, resample
from oatomo.scanners import CANONICAL_PITCH, EVAL_GEOMETRIES, PERTURBATIONS, Environment

logger = logging.getLogger(__name__)

__all__ = ["EVAL_PERTURBATIONS", "make_eval_set", "eval_paths", "eval_files", "eval_acquisition",
           "evaluate_refiners", "paired_drops", "to_markdown"]

#: Perturbation kinds of the evaluation: (name, held out?).
EVAL_PERTURBATIONS = (("radial", False), ("jitter", False), ("global", True),
                      ("large", True))


def make_eval_set(out: str | os.PathLike, *, count: int = 8, seed: int = 2, size: int = 128,
                  tv_iter: int = 50, geometries: Sequence[str] | None = None,
                  perturbations: Sequence[str] | None = None,
                  callback: Callback | None = None) -> Path:
    """Simulate the evaluation scans and their classical reconstructions (resumable).

    One file ``<geometry>__<perturbation>.npz`` per pair; ``callback("evaluation set",
    done, total)`` (:data:`oatomo.progress.Callback`) after each file.
    """
    for name, v in (("count", count), ("tv_iter", tv_iter), ("size", size)):
        check_integer(v, name)
    root = Path(out)
    grid = Grid(size, size * CANONICAL_PITCH)
    geos = list(geometries or EVAL_GEOMETRIES)
    perts = list(perturbations or [p for p, _ in EVAL_PERTURBATIONS])
    manifest = {"format": "oatomo-family-evalset", "version": 1, "count": count,
                "seed": seed, "size": size, "tv_iter": tv_iter, "geometries": geos,
                "perturbations": perts}
    with job_directory(root, manifest):
        for gi, g in enumerate(geos):
            for pi, p in enumerate(perts):
                path = root / f"{g}__{p}.npz"
                if not path.exists():  # finished files of an interrupted run are kept
                    _simulate_eval_file(path, g, p, 100 * gi + pi, grid, count=count,
                                        seed=seed, tv_iter=tv_iter)
                if callback is not None:
                    callback("evaluation set", gi * len(perts) + pi + 1,
                             len(geos) * len(perts))
    return root


def _simulate_eval_file(path: Path, g: str, p: str, env_index: int, grid: Grid, *,
                        count: int, seed: int, tv_iter: int) -> None:
    """Simulate the ``count`` scans of one (geometry, perturbation) pair, reconstruct them
    (UBP, DAS, TV with the nominal and with the true geometry) and write ``path``."""
    # lazy: the numba kernels compile on first import
    from oatomo.recon.backprojection import backproject
    from oatomo.recon.model_based import reconstruct_model_based

    size = grid.n
    env = Environment(EVAL_GEOMETRIES[g], PERTURBATIONS[p])
    rec: dict[str, list[Any]] = {k: [] for k in (
        "truth", "sinogram", "nominal", "true", "acq", "band", "true_speed", "ubp",
        "das", "tv_nominal", "tv_true", "kind", "seconds_tv")}
    for i in range(count):
        it = make_item(env, grid, item_seed(seed, env_index, i), phantoms=HELDOUT_PHANTOMS,
                       inputs=("ubp",), keep_scan=True)
        d = it["draw"]
        acq = d.acquisition
        sino = it["sinogram"]
        rec["truth"].append(it["target"][0])
        rec["sinogram"].append(sino)
        rec["nominal"].append(d.nominal.positions)
        rec["true"].append(d.true.positions)
        rec["acq"].append([acq.fs, acq.n_samples, acq.speed_of_sound, acq.t0])
        rec["band"].append(list(d.band))
        rec["true_speed"].append(d.true_speed)
        rec["kind"].append(it["kind"])
        for m in ("ubp", "das"):
            rec[m].append(backproject(sino, grid, d.nominal, acq, method=m, band=d.band))
        t0 = time.perf_counter()
        tv, _ = reconstruct_model_based(sino, grid, d.nominal, acq, method="tv",
                                        n_iter=tv_iter)
        rec["seconds_tv"].append(time.perf_counter() - t0)
        rec["tv_nominal"].append(tv)
        true_acq = Acquisition(acq.fs, acq.n_samples, d.true_speed, acq.t0)
        tv, _ = reconstruct_model_based(sino, grid, d.true, true_acq, method="tv",
                                        n_iter=tv_iter)
        rec["tv_true"].append(tv)
    # sampling windows differ between draws: pad the scans (acq holds each length)
    longest = max(len(v[0]) for v in rec["sinogram"])
    rec["sinogram"] = [np.pad(v, ((0, 0), (0, longest - v.shape[1]))) for v in rec["sinogram"]]
    arrays = {k: np.asarray(v) for k, v in rec.items()}
    arrays["kind"] = np.asarray(rec["kind"], "<U16")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays, geometry=g, perturbation=p, pitch=CANONICAL_PITCH,
                 size=size, tv_iter=tv_iter)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images (:func:`oatomo.evaluation.metrics.pearson`); 0 where
    one of them is constant."""
    if float(np.ptp(a)) == 0.0 or float(np.ptp(b)) == 0.0:
        return 0.0
    return float(M.pearson(a, b))


def eval_paths(eval_dir: str | os.PathLike) -> list[Path]:
    """The files of an evaluation set (:func:`make_eval_set`), in name order."""
    return sorted(Path(eval_dir).glob("*__*.npz"))


def eval_files(eval_dir: str | os.PathLike) -> Iterator[tuple[dict[str, np.ndarray], Grid]]:
    """Each file of an evaluation set (:func:`make_eval_set`), in name order: its arrays and
    its image grid."""
    for f in eval_paths(eval_dir):
        with np.load(f, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        size = int(data["size"])
        yield data, Grid(size, size * float(data["pitch"]))


def eval_acquisition(data: dict[str, np.ndarray], i: int) -> Acquisition:
    """The acquisition of scan ``i`` of an evaluation-set file, with the file's speed of
    sound (the true one is ``data["true_speed"][i]``)."""
    fs, ns, c, t0 = data["acq"][i]
    return Acquisition(float(fs), int(ns), float(c), float(t0))


def evaluate_refiners(eval_dir: str | os.PathLike, models: dict[str, str | os.PathLike], *,
                      out: str | os.PathLike | None = None, n_samples: int = 8,
                      uncertainty_modes: Sequence[str] = (), device: str = "cpu",
                      callback: Callback | None = None) -> dict[str, Any]:
    """Score classical reconstructions and refiners on an evaluation set.

    ``models``: label -> refiner checkpoint (:func:`oatomo.refine.load_refiner`).
    ``device``: the PyTorch device of the models (:func:`oatomo.refine.load_refiner`).
    ``callback("evaluate", done, total)`` (:data:`oatomo.progress.Callback`) after each
    file of the set.
    ``uncertainty_modes``: for multi-decoder refiners, also the uncertainty-error
    correlation of these modes of :attr:`oatomo.refine.Refiner.uncertainty`
    (``unc_corr_<mode>``).

    Returns
    -------
    dict
        ``rows``: per (geometry, perturbation, method) mean PSNR, SSIM (and their standard
        errors), uncertainty-error correlation; ``summary``: per method the mean over
        in-distribution and held-out perturbations and the drop (with standard errors);
        ``paired_drop``: the first model's drop against every other model's, paired by
        scan (:func:`paired_drops`); ``calibration``: per model binned (predicted std,
        RMS error); ``timing``.
        With ``out``, also ``evaluation.json``, ``evaluation.md`` and ``evaluation.png``.
    """
    reserved = {"ubp", "das", "tv_nominal", "tv_true", "truth"}
    clash = sorted(reserved & set(models))
    if clash:
        raise InputError(f"model label {clash[0]!r} is the name of a classical "
                         f"reconstruction; choose another label")
    refiners = {name: load_refiner(p, device=device) for name, p in models.items()}
    held = dict(EVAL_PERTURBATIONS)
    per_item: list[dict[str, Any]] = []
    calib: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {n: [] for n in refiners}
    examples: dict[str, dict[str, np.ndarray]] = {}
    timing: dict[str, list[float]] = {n: [] for n in refiners}
    n_files = len(eval_paths(eval_dir))
    for done, (data, grid) in enumerate(eval_files(eval_dir), 1):
        g, p = str(data["geometry"]), str(data["perturbation"])
        for i in range(len(data["truth"])):
            truth = data["truth"][i]
            acq = eval_acquisition(data, i)
            nominal = SensorArray(data["nominal"][i])
            band = tuple(float(v) for v in data["band"][i])
            preds = {m: data[m][i] for m in ("ubp", "das", "tv_nominal", "tv_true")}
            stds: dict[str, np.ndarray | None] = {}
            extra_corr: dict[str, dict[str, float]] = {}
            for name, ref in refiners.items():
                t_start = time.perf_counter()
                sino = data["sinogram"][i][:, :acq.n_samples]
                r = ref.refine_scan(sino, nominal, acq, grid, band=band,
                                    n_samples=n_samples, seed=i)
                timing[name].append(time.perf_counter() - t_start)
                # scored on the model's relative answer (the truth has maximum 1)
                rel = 1.0 / r.scale if r.scale > 0 else 1.0
                preds[name] = r.refined * rel
                stds[name] = None if r.std is None else r.std * rel
                if ref.kind == "multi-decoder":
                    configured = ref.uncertainty
                    for mode in uncertainty_modes:
                        ref.uncertainty = mode
                        again = ref.refine_images(
                            np.stack([ref.linear_inputs(sino, nominal, acq, r.canonical,
                                                        band=band)[m] for m in ref.inputs]),
                            n_samples=n_samples, seed=i,
                            view=ref.view_inputs(nominal, r.canonical))
                        s_mode = again.std / again.scale if again.scale > 0 else again.std
                        extra_corr.setdefault(name, {})[mode] = _correlation(
                            resample(s_mode, r.canonical, grid), np.abs(preds[name] - truth))
                    ref.uncertainty = configured
            for m, img in preds.items():
                fit = M.affine_fit(img, truth)
                row = {"geometry": g, "perturbation": p, "held_out": bool(held.get(p, True)),
                       "method": m, "item": i, "kind": str(data["kind"][i]),
                       "psnr": float(M.psnr(fit, truth, data_range=1.0)),
                       "ssim": float(M.ssim(fit, truth, data_range=1.0))}
                s = stds.get(m)
                if s is not None:
                    err = np.abs(img - truth)
                    row["unc_corr"] = _correlation(s, err)
                    calib[m].append((s.ravel(), (img - truth).ravel()))
                for mode, v in extra_corr.get(m, {}).items():
                    row[f"unc_corr_{mode}"] = v
                per_item.append(row)
            if i == 0 and p == "large":
                examples[g] = {"truth": truth, **preds,
                               **{f"{m} std": s for m, s in stds.items() if s is not None}}
        if callback is not None:
            callback("evaluate", done, n_files)
    learned = list(refiners)
    result = {"rows": _rows(per_item), "summary": _summary(per_item),
              "paired_drop": [paired_drops(per_item, learned[0], m) for m in learned[1:]],
              "calibration": _calibration(calib),
              "timing": {n: float(np.median(v)) if v else None for n, v in timing.items()},
              "n_samples": n_samples, "models": {n: str(p) for n, p in models.items()},
              "items": per_item}
    if out is not None:
        _write(Path(out), result, examples)
    return result


def _mean_se(v: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (:func:`oatomo.evaluation.stats.standard_error`; 0 for one
    value)."""
    return float(np.mean(v)), standard_error(v) if len(v) > 1 else 0.0


def _rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = sorted({(r["geometry"], r["perturbation"], r["method"]) for r in items},
                  key=lambda k: (k[0], k[1]))
    rows = []
    for g, p, m in keys:
        sel = [r for r in items if (r["geometry"], r["perturbation"], r["method"]) == (g, p, m)]
        row: dict[str, Any] = {"geometry": g, "perturbation": p, "method": m,
                               "held_out": sel[0]["held_out"], "n": len(sel)}
        for k in ("psnr", "ssim", "unc_corr"):
            vals = [r[k] for r in sel if k in r]
            if vals:
                row[k], row[k + "_se"] = _mean_se(vals)
        rows.append(row)
    return rows


def _summary(items: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for m in dict.fromkeys(r["method"] for r in items):
        sel = [r for r in items if r["method"] == m]
        ind = [r["psnr"] for r in sel if not r["held_out"]]
        ho = [r["psnr"] for r in sel if r["held_out"]]
        s: dict[str, float] = {}
        if ind:
            s["psnr_in"], s["psnr_in_se"] = _mean_se(ind)
        if ho:
            s["psnr_held_out"], s["psnr_held_out_se"] = _mean_se(ho)
        if ind and ho:
            s["drop"] = s["psnr_in"] - s["psnr_held_out"]
            s["drop_se"] = float(np.hypot(s["psnr_in_se"], s["psnr_held_out_se"]))
        for g in dict.fromkeys(r["geometry"] for r in sel):
            s[f"psnr[{g}]"] = float(np.mean([r["psnr"] for r in sel if r["geometry"] == g]))
        for key in sorted({k for r in sel for k in r if k.startswith("unc_corr")}):
            cors = [r[key] for r in sel if key in r and r["held_out"]]
            if cors:
                s[f"{key}_held_out"] = float(np.mean(cors))
        out[m] = s
    return out


def paired_drops(items: list[dict[str, Any]], reference: str, other: str
                 ) -> dict[str, Any]:
    """Is ``reference``'s drop from in-distribution to held-out scans smaller than
    ``other``'s? Paired by scan, so that what the scans share cancels.

    With d = PSNR(other) − PSNR(reference) on each scan, drop(other) − drop(reference) =
    mean of d over in-distribution scans − mean of d over held-out scans; its standard
    error combines the two means' standard errors. Positive: ``reference`` drops less.

    Returns
    -------
    dict
        ``reference``, ``other``, ``difference`` (dB), ``se`` (dB), ``n_in``, ``n_held_out``
        (paired scans), ``z`` (difference / se), ``significant`` (``|z| > 1.96``).
    """
    psnr: dict[str, dict[tuple[str, str, int], tuple[float, bool]]] = {reference: {},
                                                                       other: {}}
    for r in items:
        if r["method"] in psnr:
            psnr[r["method"]][(r["geometry"], r["perturbation"], r["item"])] = (
                r["psnr"], r["held_out"])
    common = sorted(set(psnr[reference]) & set(psnr[other]))
    d_in = [psnr[other][k][0] - psnr[reference][k][0] for k in common if not psnr[other][k][1]]
    d_ho = [psnr[other][k][0] - psnr[reference][k][0] for k in common if psnr[other][k][1]]
    out: dict[str, Any] = {"reference": reference, "other": other, "n_in": len(d_in),
                           "n_held_out": len(d_ho)}
    if len(d_in) > 1 and len(d_ho) > 1:
        (m_in, se_in), (m_ho, se_ho) = _mean_se(d_in), _mean_se(d_ho)
        diff, se = m_in - m_ho, float(np.hypot(se_in, se_ho))
        z = diff / se if se > 0 else float("inf") * np.sign(diff)
        out.update(difference=diff, se=se, z=float(z), significant=bool(abs(z) > 1.96))
    return out


def _calibration(calib: dict[str, list[tuple[np.ndarray, np.ndarray]]], bins: int = 12
                 ) -> dict[str, dict[str, list[float]]]:
    out = {}
    for m, parts in calib.items():
        if not parts:
            continue
        s = np.concatenate([a for a, _ in parts])
        e = np.concatenate([b for _, b in parts])
        edges = np.quantile(s, np.linspace(0, 1, bins + 1))
        idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
        pred = [float(s[idx == k].mean()) for k in range(bins) if np.any(idx == k)]
        obs = [float(np.sqrt((e[idx == k] ** 2).mean())) for k in range(bins) if np.any(idx == k)]
        out[m] = {"predicted_std": pred, "rms_error": obs}
    return out


def to_markdown(result: dict[str, Any]) -> str:
    """The evaluation tables (by geometry and perturbation; summary) as Markdown."""
    methods = list(result["summary"])
    lines = ["| geometry | perturbation | " + " | ".join(methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for r in result["rows"]:
        key = (r["geometry"], r["perturbation"] + (" (held out)" if r["held_out"] else ""))
        txt = f"{r['psnr']:.1f} / {r['ssim']:.2f}"
        if "unc_corr" in r:
            txt += f" / r={r['unc_corr']:.2f}"
        cells.setdefault(key, {})[r["method"]] = txt
    for (g, p), c in cells.items():
        lines.append(f"| {g} | {p} | " + " | ".join(c.get(m, "") for m in methods) + " |")
    lines += ["", "PSNR (dB) / SSIM after the best affine fit; r = Pearson correlation of the "
              "uncertainty map with |error|.", "",
              "| method | PSNR in distribution | PSNR held-out | drop (dB) | held-out "
              "unc.-error r |", "|---|---|---|---|---|"]
    for m, s in result["summary"].items():
        vals = [f"{s[k]:.2f} ± {s[k + '_se']:.2f}" if k in s else ""
                for k in ("psnr_in", "psnr_held_out", "drop")]
        unc = f"{s['unc_corr_held_out']:.2f}" if "unc_corr_held_out" in s else ""
        lines.append(f"| {m} | " + " | ".join(vals) + f" | {unc} |")
    paired = [p for p in result.get("paired_drop", []) if "difference" in p]
    if paired:
        lines += ["", "| drop of | minus drop of | difference (dB), paired by scan | scans "
                  "(in / held out) | significant (|z| > 1.96) |", "|---|---|---|---|---|"]
        for p in paired:
            lines.append(f"| {p['other']} | {p['reference']} | {p['difference']:+.2f} ± "
                         f"{p['se']:.2f} | {p['n_in']} / {p['n_held_out']} | "
                         f"{'yes' if p['significant'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _write(out: Path, result: dict[str, Any], examples: dict[str, dict[str, np.ndarray]]
           ) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "evaluation.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    with atomic_path(out / "evaluation.md") as tmp:
        tmp.write_text(to_markdown(result))
    from matplotlib.figure import Figure  # lazy: matplotlib is slow to import

    cols = max((len(v) for v in examples.values()), default=1) + 1
    fig = Figure(figsize=(2.2 * cols, 2.3 * max(len(examples), 1)))
    axes = fig.subplots(len(examples) or 1, cols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (g, ims) in enumerate(examples.items()):
        for k, (name, im) in enumerate(ims.items()):
            axes[r, k].imshow(im, cmap="magma" if "std" in name else "gray", origin="lower")
            axes[r, k].set_title(f"{g}: {name}" if k == 0 else name, fontsize=7)
    ax = axes[0, -1]
    ax.axis("on")
    for m, c in result["calibration"].items():
        ax.plot(c["predicted_std"], c["rms_error"], "o-", ms=3, label=m)
    hi = max([max(c["predicted_std"] + c["rms_error"]) for c in result["calibration"].values()]
             or [1.0])
    ax.plot([0, hi], [0, hi], "k:", lw=1)
    ax.set_xlabel("predicted std", fontsize=7)
    ax.set_ylabel("RMS error", fontsize=7)
    ax.set_title("calibration", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(out / "evaluation.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")

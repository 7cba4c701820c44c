"""Figures: a scan's sinogram beside its reconstruction, with a scale bar in mm."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path
from .geometry import Acquisition, Grid

__all__ = ["scan_figure", "reconstruction_figure", "add_scale_bar", "evaluation_figure",
           "cmnist_figures"]


def _subplots(nrows: int, ncols: int, **kw: Any) -> tuple[Any, Any]:
    """A figure and its axes without pyplot (no GUI backend, no global state; faster)."""
    from matplotlib.figure import Figure

    figsize = kw.pop("figsize", None)
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def add_scale_bar(ax: object, grid: Grid, *, color: str = "white") -> None:
    """Draw a scale bar of a round length (about a fifth of the field of view) in mm."""
    fov_mm = grid.fov * 1e3
    nice = np.array([0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100])
    length = float(nice[np.argmin(np.abs(nice - fov_mm / 5))])
    px = length / (grid.dx * 1e3)
    x0, y0 = 0.06 * grid.n, 0.06 * grid.n  # images are drawn with origin="lower"
    ax.plot([x0, x0 + px], [y0, y0], color=color, lw=3)  # type: ignore[attr-defined]
    ax.text(x0 + px / 2, y0 + 0.025 * grid.n, f"{length:g} mm", color=color,  # type: ignore
            ha="center", va="bottom", fontsize=9)


def scan_figure(path: str | os.PathLike, sinogram: np.ndarray, acquisition: Acquisition,
                image: np.ndarray, grid: Grid, *, title: str = "",
                truth: np.ndarray | None = None, extra: dict[str, np.ndarray] | None = None
                ) -> Path:
    """Save a PNG: sinogram (sensor x time), the image(s) and the truth when known.

    Written atomically; returns the path.
    """
    panels = [("reconstruction", image)] + list((extra or {}).items())
    if truth is not None:
        panels.append(("truth p0", truth))
    fig, axes = _subplots(1, 1 + len(panels), figsize=(4.2 * (1 + len(panels)), 4.2))
    t_us = acquisition.times * 1e6
    v = float(np.percentile(np.abs(sinogram), 99.5)) or 1.0
    axes[0].imshow(sinogram, aspect="auto", cmap="RdBu_r", vmin=-v, vmax=v,
                   extent=(t_us[0], t_us[-1], sinogram.shape[0] - 0.5, -0.5),
                   interpolation="nearest")
    axes[0].set_xlabel("time (µs)")
    axes[0].set_ylabel("sensor")
    axes[0].set_title("sinogram")
    for ax, (name, img) in zip(axes[1:], panels, strict=True):
        lo, hi = np.percentile(img, [0.5, 99.8])
        ax.imshow(img, cmap="inferno", vmin=lo, vmax=hi if hi > lo else lo + 1,
                  origin="lower", interpolation="nearest")
        add_scale_bar(ax, grid)
        ax.set_title(name)
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return out


def reconstruction_figure(path: str | os.PathLike, rec: Any, sinogram: np.ndarray,
                          acquisition: Acquisition, *, title: str = "") -> Path:
    """:func:`scan_figure` of a :class:`oatomo.pipeline.Reconstruction`: the first frame's
    sinogram, the linear image, the refined image and uncertainty when present, the truth."""

    def first(a: np.ndarray) -> np.ndarray:
        return np.asarray(a).reshape((-1,) + np.shape(a)[-2:])[0]

    extra = {k: first(rec.images[k]) for k in ("refined", "uncertainty") if k in rec.images}
    truth = rec.images.get("truth")
    return scan_figure(path, first(sinogram), acquisition, first(rec.linear), rec.grid,
                       title=title, truth=None if truth is None else first(truth),
                       extra=extra)


def evaluation_figure(path: str | os.PathLike, examples: dict[str, dict[str, np.ndarray]]
                      ) -> Path:
    """One row per setup, one column per method (truth first, uncertainty maps last)."""
    names = list(examples)
    cols = list(dict.fromkeys(k for ex in examples.values() for k in ex))
    cols = sorted(cols, key=lambda c: (c != "truth", c.endswith(" std")))  # stable
    fig, axes = _subplots(len(names), len(cols), figsize=(2.2 * len(cols),
                                                             2.3 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            ax.set_axis_off()
            if col in examples[name]:
                img = examples[name][col]
                ax.imshow(img, cmap="viridis" if "std" in col else "inferno", origin="lower",
                          vmin=0, vmax=None if "std" in col else 1)
            if i == 0:
                ax.set_title(col, fontsize=8)
            if j == 0:
                ax.text(-0.05, 0.5, name, transform=ax.transAxes, rotation=90, ha="right",
                        va="center", fontsize=8)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    return Path(path)


def _to_rgb(images: np.ndarray) -> np.ndarray:
    """(N, 2, H, W) red/green -> (N, H, W, 3) RGB."""
    rgb = np.zeros((len(images), *images.shape[2:], 3), np.float32)
    rgb[..., 0], rgb[..., 1] = images[:, 0], images[:, 1]
    return np.clip(rgb, 0.0, 1.0)


def _mosaic(images: np.ndarray, cols: int) -> np.ndarray:
    rgb = _to_rgb(images)
    n, h, w, _ = rgb.shape
    rows = -(-n // cols)
    canvas = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, 3), 0.35, np.float32)
    for i, img in enumerate(rgb):
        r, c = divmod(i, cols)
        canvas[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + c * (w + 1): 1 + c * (w + 1) + w] = img
    return canvas


def cmnist_figures(outdir: str | os.PathLike, test: Any, figures: dict[str, Any],
                   models: list[tuple[str, str]], *, n_show: int = 10) -> list[Path]:
    """``reconstructions.png`` (easy vs hard test digits, original and each model's invariant
    reconstruction) and ``samples.png`` (generated samples of each model).

    ``test``, ``figures`` and ``models`` as returned by
    :func:`oatomo.learn.cmnist_experiment.run_experiment` under ``"figures"``.
    """
    outdir = Path(outdir)
    paths = []
    easy_idx = np.flatnonzero(test.easy)[:n_show]
    hard_idx = np.flatnonzero(test.hard)[:n_show]
    fig, axes = _subplots(len(models) + 1, 2, figsize=(12, 0.62 * (len(models) + 1) + 0.9))
    for col, (idx, title) in enumerate(((easy_idx, "easy: green 0-4, red 5-9"),
                                        (hard_idx, "hard: red 0-4, green 5-9"))):
        rows = [("test image", test.images[idx])]
        rows += [(name, figures[key][0][idx]) for key, name in models if key in figures]
        for r, (label, imgs) in enumerate(rows):
            ax = axes[r, col]
            ax.imshow(_mosaic(imgs, n_show), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
            if r == 0:
                ax.set_title(title, fontsize=10)
    fig.suptitle("Colored MNIST test environment (e = 0.9): invariant-path reconstructions",
                 fontsize=11)
    paths.append(_save_png(fig, outdir / "reconstructions.png"))

    fig, axes = _subplots(1, len(models), figsize=(4 * len(models), 4.4))
    for ax, (key, name) in zip(axes, models, strict=True):
        if key in figures:
            ax.imshow(_mosaic(figures[key][1][:64], 8), interpolation="nearest")
        ax.set_title(f"{name}: samples", fontsize=10)
        ax.axis("off")
    fig.suptitle("Generated samples: z ~ N(0, I) through the invariant decoder", fontsize=11)
    paths.append(_save_png(fig, outdir / "samples.png"))
    return paths


def _save_png(fig: Any, path: Path) -> Path:
    """Lay out, write atomically as PNG, close."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path

"""Figures: a scan's sinogram beside its reconstruction, with a scale bar in mm."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._atomic import atomic_path
from .geometry import Acquisition, Grid

__all__ = ["scan_figure", "add_scale_bar"]


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("reconstruction", image)] + list((extra or {}).items())
    if truth is not None:
        panels.append(("truth p0", truth))
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(4.2 * (1 + len(panels)), 4.2))
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
    plt.close(fig)
    return out

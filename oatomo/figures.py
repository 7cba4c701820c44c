"""Figures: a scan's sinogram beside its reconstruction, with a scale bar in mm; maximum-
intensity projections of volumes."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np

from oatomo._atomic import atomic_path
from oatomo._limits import check_bytes
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid

__all__ = ["scan_figure", "reconstruction_figure", "volume_figure", "add_scale_bar",
           "cmnist_figures", "figure_format", "check_dpi", "is_bipolar", "FIGURE_FORMATS",
           "FIGURE_DPI", "DPI_RANGE", "BIPOLAR_FRACTION", "figure_bytes", "check_figure_memory"]

#: Figure file formats, by file suffix (the format of a figure is its path's suffix).
FIGURE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}

#: Resolution of :func:`scan_figure` and :func:`reconstruction_figure` (dots per inch;
#: also that of the images embedded in SVG and PDF figures), and the range accepted.
FIGURE_DPI = 150
DPI_RANGE = (10, 600)

#: An image whose minimum is below ``-BIPOLAR_FRACTION`` times its maximum is bipolar
#: (delay-and-sum and backprojection images): it is drawn with a diverging colour map
#: centred on zero.
BIPOLAR_FRACTION = 0.05


def figure_format(path: str | os.PathLike, option: str = "figure path") -> str:
    """The file format of a figure path, from its suffix (``png``, ``svg`` or ``pdf``).

    Parameters
    ----------
    path
        The figure's path.
    option
        What names the path in the error message (e.g. ``--png``).

    Raises
    ------
    InputError
        The suffix is none of :data:`FIGURE_FORMATS`.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise InputError(f"{option} must end in {', '.join(FIGURE_FORMATS)} (the figure's "
                         f"format), got {suffix or 'no suffix'!r}", path)
    return FIGURE_FORMATS[suffix]


def check_dpi(dpi: int, option: str = "dpi") -> int:
    """``dpi`` if it is an integer in :data:`DPI_RANGE`, else :class:`InputError`."""
    lo, hi = DPI_RANGE
    if isinstance(dpi, bool) or not isinstance(dpi, (int, np.integer)) or not lo <= dpi <= hi:
        raise InputError(f"{option} must be an integer in {lo}..{hi}, got {dpi!r}")
    return int(dpi)


def is_bipolar(image: np.ndarray) -> bool:
    """Whether an image has substantial negative values: ``min < -BIPOLAR_FRACTION * max``
    (a non-negative image, or one with negative ripples only, is not)."""
    a = np.asarray(image)
    if a.size == 0:
        return False
    return bool(np.nanmin(a) < -BIPOLAR_FRACTION * np.nanmax(a))


def _subplots(nrows: int, ncols: int, **kw: Any) -> tuple[Any, Any]:
    """A figure and its axes without pyplot (no GUI backend, no global state; faster)."""
    from matplotlib.figure import Figure  # lazy: matplotlib

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


#: Frames drawn by :func:`reconstruction_figure` (one row each); the title says how many
#: more there are.
MAX_FRAME_ROWS = 4

# fixed layout in inches (no tight_layout: it draws the figure twice)
_IMG, _CBAR, _GAP_CBAR, _COL, _LEFT, _TOP, _BOTTOM, _ROW = 2.5, 0.11, 0.06, 3.55, 0.95, \
    0.55, 0.45, 3.0

#: Bytes per value matplotlib's normalised copy of a drawn panel takes (float64).
_BYTES_PER_DRAWN_VALUE = 8


def figure_bytes(n_rows: int, n_image_columns: int, image_pixels: float,
                 sinogram_values: float, dpi: int) -> float:
    """What :func:`scan_figure` holds at once to draw ``n_rows`` rows of a sinogram of
    ``sinogram_values`` values and ``n_image_columns`` images of ``image_pixels`` pixels
    each at ``dpi`` (bytes): the canvas (RGBA), which lives through the drawing, and the
    normalised copy of the largest panel (panels are drawn one at a time)."""
    width = _LEFT + (1 + n_image_columns) * _COL
    height = _TOP + n_rows * _ROW + _BOTTOM
    canvas = 4.0 * width * height * float(dpi) ** 2
    return canvas + _BYTES_PER_DRAWN_VALUE * max(float(image_pixels), float(sinogram_values))


def check_figure_memory(n_rows: int, n_image_columns: int, image_pixels: float,
                        sinogram_values: float, dpi: int, path: Any = None,
                        what: str = "the figure") -> None:
    """Raise :class:`InputError` when :func:`figure_bytes` is over ``OATOMO_MAX_BYTES``
    (before anything is drawn)."""
    side = int(round(float(image_pixels) ** 0.5))
    check_bytes(figure_bytes(n_rows, n_image_columns, image_pixels, sinogram_values, dpi),
                f"{what} ({n_rows} row(s) of {n_image_columns} {side}x{side} image(s) at "
                f"{dpi} dpi)", path)


def _layout(n_rows: int, n_cols: int) -> tuple[Any, list[list[tuple[Any, Any]]]]:
    """A figure of ``n_rows`` x ``n_cols`` square panels, each with a colourbar axis."""
    from matplotlib.figure import Figure  # lazy: matplotlib

    width = _LEFT + n_cols * _COL
    height = _TOP + n_rows * _ROW + _BOTTOM
    fig = Figure(figsize=(width, height))
    rows = []
    for i in range(n_rows):
        y0 = _BOTTOM + (n_rows - 1 - i) * _ROW + (_ROW - _IMG) / 2
        row = []
        for j in range(n_cols):
            x0 = _LEFT + j * _COL
            ax = fig.add_axes((x0 / width, y0 / height, _IMG / width, _IMG / height))
            cax = fig.add_axes(((x0 + _IMG + _GAP_CBAR) / width, y0 / height, _CBAR / width,
                                _IMG / height))
            row.append((ax, cax))
        rows.append(row)
    return fig, rows


def _colourbar(fig: Any, im: Any, cax: Any, label: str) -> None:
    from matplotlib.ticker import MaxNLocator  # lazy: matplotlib

    cb = fig.colorbar(im, cax=cax, ticks=MaxNLocator(4))  # few ticks: ticks cost the time
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)


def _title(fig: Any, ax: Any, text: str) -> None:
    """A panel title as figure text (``ax.set_title`` re-lays out every draw)."""
    box = ax.get_position()
    fig.text(box.x0 + box.width / 2, box.y1 + 0.06 / fig.get_figheight(), text,
             ha="center", va="bottom", fontsize=9)


def _sinogram_panel(fig: Any, ax: Any, cax: Any, sinogram: np.ndarray,
                    acquisition: Acquisition, vmax: float, ylabel: str) -> None:
    t_us = acquisition.times * 1e6
    im = ax.imshow(sinogram, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                   extent=(t_us[0], t_us[-1], sinogram.shape[0] - 0.5, -0.5),
                   interpolation="nearest")
    ax.set_xlabel("time (µs)", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    _colourbar(fig, im, cax, "Pa")


def _image_panel(fig: Any, ax: Any, cax: Any, img: np.ndarray, grid: Grid,
                 limits: tuple[float, float], label: str, *, cmap: str = "inferno") -> None:
    im = ax.imshow(img, cmap=cmap, vmin=limits[0], vmax=limits[1], origin="lower",
                   interpolation="nearest")
    # a diverging map is white about zero, where a white bar would vanish
    add_scale_bar(ax, grid, color="black" if cmap == "RdBu_r" else "white")
    ax.set_axis_off()
    _colourbar(fig, im, cax, label)


def _limits(stack: np.ndarray, *, from_zero: bool = False,
            symmetric: bool = False) -> tuple[float, float]:
    """Colour limits of a panel column: robust percentiles; from zero (uncertainty) or
    symmetric about zero (bipolar images)."""
    if symmetric:
        hi = float(np.percentile(np.abs(stack), 99.8)) or 1.0
        return -hi, hi
    lo, hi = (0.0, float(np.percentile(stack, 99.8))) if from_zero else (
        float(v) for v in np.percentile(stack, [0.5, 99.8]))
    return lo, hi if hi > lo else lo + (abs(lo) or 1.0)


def _save(fig: Any, path: str | os.PathLike, dpi: int = FIGURE_DPI) -> Path:
    """Write a figure atomically in the format its suffix names."""
    out = Path(path)
    fmt = figure_format(out)
    dpi = check_dpi(dpi)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt)
    return out


def scan_figure(path: str | os.PathLike, sinogram: np.ndarray, acquisition: Acquisition,
                image: np.ndarray, grid: Grid, *, title: str = "",
                truth: np.ndarray | None = None, extra: dict[str, np.ndarray] | None = None,
                units: dict[str, str] | None = None, row_labels: list[str] | None = None,
                dpi: int = FIGURE_DPI) -> Path:
    """Save a figure: per frame a row of the sinogram (sensor x time), the image(s) and
    the truth when known (first row), each with a colourbar in its units.

    ``sinogram`` (K, N, T) or (N, T); ``image`` and every ``extra`` image (K, n, n) or
    (n, n), with the same K. Each column shares one colour scale across rows; an
    ``"uncertainty"`` panel has its own scale from zero (``viridis``); a bipolar column
    (:func:`is_bipolar`) is drawn with ``RdBu_r`` on limits symmetric about zero, the
    others with ``inferno``. ``units`` maps panel names (``"reconstruction"``, the keys of
    ``extra``, ``"truth p0"``) to units (default ``Pa``); ``row_labels`` names the rows
    (default ``frame k``). The format is the suffix of ``path`` (:data:`FIGURE_FORMATS`),
    ``dpi`` its resolution (:data:`DPI_RANGE`). Written atomically.
    """
    figure_format(path)
    check_dpi(dpi)
    units = units or {}
    image = np.asarray(image)
    frames = image.reshape((-1,) + image.shape[-2:])
    sino = np.asarray(sinogram).reshape((-1,) + np.shape(sinogram)[-2:])
    n_rows = len(frames)
    columns = [("reconstruction", frames)] + [
        (k, np.asarray(v).reshape((-1,) + np.shape(v)[-2:])) for k, v in (extra or {}).items()]
    if truth is not None:
        columns.append(("truth p0", np.asarray(truth)[None]))
    labels = row_labels or ([f"frame {k}" for k in range(n_rows)] if n_rows > 1 else [""])
    check_figure_memory(n_rows, len(columns), max(float(np.prod(s.shape[-2:])) for _, s in
                                                  columns), sino[0].size, dpi, path)
    fig, rows = _layout(n_rows, 1 + len(columns))
    vmax = float(np.percentile(np.abs(sino), 99.5)) or 1.0
    cmaps = {name: "viridis" if name == "uncertainty" else
             "RdBu_r" if is_bipolar(stack) else "inferno" for name, stack in columns}
    lims = {name: _limits(stack, from_zero=name == "uncertainty",
                          symmetric=cmaps[name] == "RdBu_r") for name, stack in columns}
    for i, row in enumerate(rows):
        ax, cax = row[0]
        _sinogram_panel(fig, ax, cax, sino[min(i, len(sino) - 1)], acquisition, vmax,
                        f"{labels[i]}\nsensor".strip())
        if i == 0:
            _title(fig, ax, "sinogram")
        for (ax, cax), (name, stack) in zip(row[1:], columns, strict=True):
            if i >= len(stack):
                ax.set_axis_off()
                cax.set_axis_off()
                continue
            _image_panel(fig, ax, cax, stack[i], grid, lims[name],
                         units.get(name, "Pa"), cmap=cmaps[name])
            if i == 0:
                _title(fig, ax, name)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.15 / fig.get_figheight())
    return _save(fig, path, dpi)


def _frame_labels(lead: tuple[int, ...], provenance: Any) -> list[str]:
    """``frame k`` / ``frame k, 800 nm`` for the flattened leading axes of an image."""
    axes = list(provenance.get("axes") or ["frame"] * len(lead))
    wl = provenance.get("wavelengths")
    if len(axes) != len(lead):
        axes = ["frame"] * len(lead)
    out = []
    for idx in itertools.product(*(range(d) for d in lead)):
        parts = []
        for name, k in zip(axes, idx, strict=True):
            if name == "wavelength" and wl is not None and k < len(wl):
                parts.append(f"{wl[k] * 1e9:g} nm")
            else:
                parts.append(f"{name} {k}")
        out.append(", ".join(parts) if parts else "")
    return out


def reconstruction_figure(path: str | os.PathLike, rec: Any, sinogram: np.ndarray,
                          acquisition: Acquisition, *, title: str = "",
                          dpi: int = FIGURE_DPI) -> Path:
    """:func:`scan_figure` of a :class:`oatomo.pipeline.Reconstruction`: one row per frame
    (at most :data:`MAX_FRAME_ROWS`, labelled with frame and wavelength) of the sinogram,
    the linear image, the refined image and its uncertainty when present; the truth.

    ``sinogram`` holds the frames that were reconstructed, (..., N, T). The format is the
    suffix of ``path`` (``.png``, ``.svg``, ``.pdf``), ``dpi`` its resolution.
    """
    linear = np.asarray(rec.linear)
    lead = linear.shape[:-2]
    labels = _frame_labels(lead, rec.provenance)
    k = min(len(labels), MAX_FRAME_ROWS)

    def rows(a: np.ndarray) -> np.ndarray:
        return np.asarray(a).reshape((-1,) + np.shape(a)[-2:])[:k]

    extra = {name: rows(rec.images[name]) for name in ("refined", "uncertainty")
             if name in rec.images}
    truth = rec.images.get("truth")
    units = {"reconstruction": rec.units.get(rec.provenance["method"], "Pa"),
             "truth p0": rec.units.get("truth", "Pa"),
             **{name: rec.units.get(name, "") for name in extra}}
    if len(labels) > k:
        title = f"{title} (first {k} of {len(labels)} frames)".strip()
    return scan_figure(path, rows(sinogram), acquisition, rows(linear), rec.grid,
                       title=title, truth=None if truth is None else rows(truth)[0],
                       extra=extra, units=units, row_labels=labels[:k] if lead else None,
                       dpi=dpi)


#: The three maximum-intensity projections of :func:`volume_figure`: the volume axis
#: projected along (z, y, x = 0, 1, 2) and the panel's title.
MIP_VIEWS = ((0, "MIP along z (x-y)"), (1, "MIP along y (x-z)"), (2, "MIP along x (y-z)"))


def volume_figure(path: str | os.PathLike, rec: Any, *, title: str = "",
                  dpi: int = FIGURE_DPI) -> Path:
    """Maximum-intensity projections of a volume reconstruction along z, y and x.

    One row per frame (at most :data:`MAX_FRAME_ROWS`, labelled with frame and
    wavelength) of the method's volume, and a last row of the truth when known; each panel
    with a scale bar in mm and a colourbar in the volume's units, one colour scale per
    row kind (the method's rows share theirs). A bipolar volume (:func:`is_bipolar`, e.g.
    delay-and-sum) is projected by the largest absolute value, its sign kept, and drawn
    with ``RdBu_r`` about zero. Panels show x to the right in the x-y and x-z views, y in
    the y-z view, and z (x-y: y) upwards.

    Parameters
    ----------
    path
        Output figure; its suffix is the format (``.png``, ``.svg``, ``.pdf``).
    rec
        A :class:`oatomo.pipeline.volume.VolumeReconstruction` (its ``images``,
        ``grid``, ``units``, ``provenance``).
    title
        Figure title.
    dpi
        Resolution (:data:`DPI_RANGE`).
    """
    figure_format(path)
    check_dpi(dpi)
    method = rec.provenance["method"]
    vol = np.asarray(rec.images[method])
    lead = vol.shape[:-3]
    labels = _frame_labels(lead, rec.provenance)
    k = min(len(labels), MAX_FRAME_ROWS)
    stack = vol.reshape((-1,) + vol.shape[-3:])[:k]
    bipolar = is_bipolar(stack)
    unit = rec.units.get(method, "Pa")
    rows = [(f"{method}, {labels[i]}" if lead else method,
             [_mip(stack[i], axis, bipolar) for axis, _ in MIP_VIEWS], bipolar, unit)
            for i in range(k)]
    method_lims = _limits(np.concatenate([m.ravel() for r in rows for m in r[1]]),
                          symmetric=bipolar)
    lims = [method_lims] * len(rows)
    if "truth" in rec.images:
        truth = np.asarray(rec.images["truth"])
        mips = [_mip(truth, axis, False) for axis, _ in MIP_VIEWS]
        rows.append(("truth p0", mips, False, rec.units.get("truth", "Pa")))
        lims.append(_limits(np.concatenate([m.ravel() for m in mips])))
    fig, panels = _layout(len(rows), len(MIP_VIEWS))
    for i, ((name, mips, bip, unit), row) in enumerate(zip(rows, panels, strict=True)):
        for (ax, cax), mip, (_, view) in zip(row, mips, MIP_VIEWS, strict=True):
            _image_panel(fig, ax, cax, mip, rec.grid, lims[i], unit,
                         cmap="RdBu_r" if bip else "inferno")
            if i == 0:
                _title(fig, ax, view)
        box = row[0][0].get_position()
        fig.text(0.3 / fig.get_figwidth(), box.y0 + box.height / 2, name, rotation=90,
                 ha="center", va="center", fontsize=8)
    if len(labels) > k:
        title = f"{title} (first {k} of {len(labels)} frames)".strip()
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.15 / fig.get_figheight())
    return _save(fig, path, dpi)


def _mip(vol: np.ndarray, axis: int, bipolar: bool) -> np.ndarray:
    """The projection of ``vol`` (z, y, x) along ``axis``: its maximum, or for a bipolar
    volume the value of largest magnitude (sign kept). Rows of the result run along the
    first remaining axis (drawn upwards), columns along the second."""
    if not bipolar:
        return vol.max(axis=axis)
    idx = np.expand_dims(np.abs(vol).argmax(axis=axis), axis)
    return np.take_along_axis(vol, idx, axis=axis).squeeze(axis)


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
    :func:`oatomo.validation.cmnist.experiment.run_experiment` under ``"figures"``.
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


def cmnist_stats_figure(outdir: str | os.PathLike, uncertainty: dict[str, dict[str, Any]],
                        names: dict[str, str], *,
                        poster: dict[str, tuple[float, float]] | None = None,
                        note: str = "") -> Path:
    """``metrics.png``: MSE, RKL and E_rel per model with their uncertainties.

    Each bar is the mean over seeds; the thick error bar is ± one standard error over seeds,
    the thin one the 95 % bootstrap interval over test images of the seed mean; dots are
    the single seeds; crosses the poster's values (multiple decoders, multiple encoders).

    Parameters
    ----------
    uncertainty
        :func:`oatomo.validation.cmnist.stats.model_uncertainty`'s result.
    names
        Display name of each model key.
    poster
        The published values per metric, ``(multiple decoders, multiple encoders)``.
    note
        Added to the title (``oatomo cmnist --quick`` marks its figure as a smoke test).
    """
    models = list(uncertainty)
    fig, axes = _subplots(1, 3, figsize=(12, 3.8))
    for ax, (metric, label) in zip(axes, (("e_rel", "E_rel (hard vs easy)"), ("mse", "MSE"),
                                          ("rkl", "RKL, histogram (nats)")), strict=True):
        x = np.arange(len(models))
        u = [uncertainty[m][metric] for m in models]
        mean = np.array([v["mean"] for v in u])
        se = np.nan_to_num(np.array([v["se_seeds"] for v in u]))
        low = mean - np.array([v["boot_low"] for v in u])
        high = np.array([v["boot_high"] for v in u]) - mean
        ax.bar(x, mean, color=["0.6", "tab:blue", "tab:orange"][:len(models)], width=0.6)
        ax.errorbar(x - 0.08, mean, yerr=se, fmt="none", ecolor="k", elinewidth=3, capsize=0,
                    label="± SE over seeds")
        ax.errorbar(x + 0.08, mean, yerr=[np.maximum(low, 0), np.maximum(high, 0)],
                    fmt="none", ecolor="k", elinewidth=1, capsize=4,
                    label="95 % bootstrap (test images)")
        for k, v in enumerate(u):
            ax.plot(np.full(len(v["per_seed"]), k + 0.2), v["per_seed"], "o", ms=3,
                    color="k", alpha=0.6)
        if poster is not None and metric in poster:
            for key, val in zip(("multi_decoder", "multi_encoder"), poster[metric],
                                strict=True):
                if key in models:
                    ax.plot(models.index(key), val, "x", color="tab:red", ms=9, mew=2,
                            label="poster" if key == "multi_decoder" else None)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xticks(x, [names.get(m, m) for m in models], fontsize=8)
        ax.set_title(label, fontsize=10)
    axes[2].legend(fontsize=7, loc="center right")  # the RKL panel has room
    fig.suptitle("Colored MNIST test environment: mean over seeds with uncertainties"
                 + (f"\n{note}" if note else ""), fontsize=11,
                 color="tab:red" if note else "k")
    return _save_png(fig, Path(outdir) / "metrics.png")


def _save_png(fig: Any, path: Path) -> Path:
    """Lay out, write atomically as PNG, close."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path

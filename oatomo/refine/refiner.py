"""Refining any 2-D ring or arc scan with a scanner-family model (one model, any geometry).

A :class:`Refiner` is a trained model together with what it was trained on (the scanner
family's bounds, the canonical pitch, the input channels, the training environments); a
model trained on one environment (one setup) is the same thing with one environment.
:func:`load_refiner` reads one from a ``.pt`` checkpoint or a ``.npz`` weights archive.

The model was trained on linear reconstructions at the canonical pitch (0.1 mm) of scans
from a family of scanners (:mod:`oatomo.scanners`). For a scan on any grid:

1. :meth:`Refiner.compatible` checks the scan against the family bounds and says
   exactly why it lies outside (sensor count, ring/arc shape, coverage, radius, pitch,
   field of view, speed of sound);
2. the input channels (UBP, DAS or the TV image ``mb-tv`` with the nominal positions)
   are reconstructed from the sinogram on a canonical grid covering the user's field of
   view (size rounded up to a multiple of 4), each divided by its maximum absolute
   value (what the model was trained on);
3. the fully convolutional model runs on the whole canonical image, or on overlapping
   tiles (blended with a tapered window) when it is larger than ``tile`` pixels;
4. the model's output (relative initial pressure: its training targets have maximum 1) is
   multiplied by the input's scale ``s`` (the maximum absolute value of the first input
   channel, in Pa) and the model's gain ``g`` (:attr:`Refiner.gain`), so the refined
   image and its uncertainty are in Pa, and ``refine(a * x) == a * refine(x)`` for every
   ``a > 0`` (to float rounding): frames and wavelengths keep their ratios;
5. the refined image and the uncertainty map (standard deviation over posterior samples)
   are resampled back onto the user's grid (bilinear).

Every refinement returns a :class:`RefinedScan`: :meth:`Refiner.refine_scan` on the user's
grid, :meth:`Refiner.refine_images` (the model's input channels given directly) on the
canonical grid.

Units: a refined image has the units of the refiner's first input channel
(:attr:`Refiner.units`: ``"a.u."`` for UBP, whose values are proportional to p0 only up to
an unknown factor; Pa for a model-based input). The refined
image is ``s * g * f(x / s_c)``: ``f`` the model on the channels ``x`` each divided by its
own maximum ``s_c`` (scale-free), ``s`` the first channel's maximum. With the default gain
``g = 1`` the refined image's peak is the input image's peak (the UBP image's, for the
shipped model); a gain recorded in the model's metadata (``gain``: the mean ratio of the
true maximum p0 to the first channel's maximum on the model's training scans) puts it on
the true p0 scale instead.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from oatomo._limits import MAX_POSTERIOR_SAMPLES, check_bytes
from oatomo.datasets.generate import input_images
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray, resample
from oatomo.learn.records import (
    TRAIN_COMMAND,
    UNCERTAINTY_MODES,
    family_record,
    is_weights_archive,
    read_weights,
)
from oatomo.refine.weights import NUMPY_CLASSES, NumpyEngine, NumpySkipVAE, numpy_model
from oatomo.scanners import CANONICAL_PITCH, FAMILY, ScannerFamily
from oatomo.units import UNITS_PA

logger = logging.getLogger(__name__)

__all__ = ["Refiner", "RefinedScan", "load_refiner", "family_record", "posterior_noise",
           "NUMPY_MAX_PIXELS", "SMALL_PIXELS", "few_threads", "to_canonical_grid", "model_grid",
           "resample", "edge_weighted", "UNCERTAINTY_MODES", "TTA_PASSES",
           "UNITS_REFINED", "UNITS_PA", "TRAIN_COMMAND"]

#: ``units`` attribute of linear and model-based images.
#: ``units`` of a refined image (and its uncertainty) whose input reads the initial
#: pressure; a refiner takes the units of its first input channel
#: (:attr:`Refiner.units`): ``"a.u."`` for UBP.
UNITS_REFINED = UNITS_PA

#: Inputs of at most this many pixels (all images together) are refined on one thread.
SMALL_PIXELS = 2 * 128 * 128

#: The turned and mirrored inputs of test-time augmentation, ``(quarter turns, mirrored)``,
#: by the number of passes a model's metadata ``tta`` asks for (:attr:`Refiner.tta_passes`):
#: every count is a group of the square's symmetries, so the mean is equivariant under it.
TTA_PASSES: dict[int, list[tuple[int, bool]]] = {
    1: [(0, False)],
    2: [(0, False), (2, False)],
    4: [(k, False) for k in range(4)],
    8: [(k, flip) for k in range(4) for flip in (False, True)],
}


#: Up to this many canonical pixels (all frames) the pipeline refines with the NumPy back
#: end; above, with PyTorch. With the shipped model and its uncertainty map (16 posterior
#: samples and the variant decoders), a 256² image took 0.21 s with NumPy and 0.11 s with
#: PyTorch plus 0.9-1.4 s to import it; 512² 1.2 s against 0.6 s (quiet 2-core machine).
NUMPY_MAX_PIXELS = 256 * 256


@contextmanager
def few_threads(n_pixels: int) -> Iterator[None]:
    """Run PyTorch on one CPU thread while refining at most :data:`SMALL_PIXELS` pixels.

    Parallel convolutions of one small image cost more than they save: on a busy 2-core
    machine one 128² refinement took 100x longer on two threads than on one.
    """
    import torch  # lazy: the NumPy back end refines without PyTorch

    threads = torch.get_num_threads()
    if n_pixels <= SMALL_PIXELS:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pass_workers(n_passes: int) -> int:
    """How many passes of test-time augmentation the NumPy back end runs at once: the CPUs
    this process may use, at most ``OMP_NUM_THREADS`` when that is set, at most
    ``n_passes``."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        cpus = min(cpus, max(1, int(os.environ.get("OMP_NUM_THREADS", cpus))))
    except ValueError:
        pass
    return max(1, min(cpus, n_passes))


def to_canonical_grid(grid: Grid, pitch: float = CANONICAL_PITCH, step: int = 4) -> Grid:
    """The grid at ``pitch`` that covers ``grid``'s field of view, size a multiple of step."""
    n = int(math.ceil(grid.fov / pitch / step - 1e-9) * step)
    return Grid(max(n, step), max(n, step) * pitch)


def model_grid(grid: Grid, pitch: float, native: bool) -> Grid:
    """The grid a refiner refines a scan of ``grid`` on: ``grid`` itself for a model that
    refines on the user's grid (``native``), else the canonical grid at ``pitch`` covering
    it."""
    return grid if native else to_canonical_grid(grid, pitch)


def _window(n: int, overlap: int) -> np.ndarray:
    ramp = np.ones(n, np.float32)
    if overlap > 0:
        t = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        ramp[:overlap] = t
        ramp[-overlap:] = t[::-1]
    return np.outer(ramp, ramp)


@dataclass
class RefinedScan:
    """The result of every refinement: the refined image, its uncertainty and the inputs.

    :meth:`Refiner.refine_scan` gives it on the user's grid (``grid``), resampled from the
    canonical grid the model ran on (``canonical``); :meth:`Refiner.refine_images` on the
    canonical grid (then ``grid == canonical``).

    Attributes
    ----------
    refined, std
        Refined image and pixel-wise uncertainty (None without an uncertainty map: a
        deterministic model or fewer than two samples), in Pa (:data:`UNITS_REFINED`).
    linear
        The model's input channels by method name, in Pa (as given to
        :meth:`Refiner.refine_images`).
    grid, canonical
        The grid of the images above and the canonical grid the model ran on.
    units
        ``units`` of every image above, by name (``refined``, ``std``, the channels).
    reason
        The compatibility summary (empty when the scan's geometry was not checked).
    scale
        The factor (Pa) the model's relative output was multiplied by: the first input
        channel's maximum absolute value times the model's gain; ``refined / scale`` is the
        model's own answer (maximum about 1, the scale of its training targets).
    """

    refined: np.ndarray
    std: np.ndarray | None
    linear: dict[str, np.ndarray]
    grid: Grid
    canonical: Grid
    units: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    scale: float = 1.0


@dataclass
class Refiner:
    """A scanner-family model and what it needs to refine any compatible scan.

    Attributes
    ----------
    model
        A fully convolutional oatomo model (:mod:`oatomo.learn.conv`), or its NumPy
        inference (:class:`oatomo.refine.weights.NumpyConvVAE`, no PyTorch).
    kind
        ``"multi-decoder"``, ``"beta-vae"`` or ``"unet"``.
    family
        The bounds of the training scanners.
    pitch
        Canonical pixel pitch (m).
    inputs
        Reconstructions fed as channels (``"ubp"``, ``"das"``, ``"mb-tv"``).
    env_names
        Training environments (variant decoders of a multi-decoder model).
    meta
        Everything else the checkpoint recorded.
    gain
        The gain ``g`` of the refined image (see the module docstring): the model's
        metadata ``gain`` when recorded, else 1 (the refined image carries the first input
        channel's peak).
    uncertainty
        What the uncertainty map is: ``"posterior"``, the standard deviation of the decoded
        image over posterior samples z ~ q(z | x); ``"decoders"`` (multi-decoder models),
        the standard deviation over the per-environment variant decoders at the posterior
        mean -- how much the answer depends on which training scanner it is read as;
        ``"both"``, the square root of the sum of the two variances; ``"decoders-edges"``,
        the geometric mean of the decoders' spread and the edge strength of the refined
        image (:func:`edge_weighted`), which ranks the pixels by their error better (its
        errors sit at edges), plus, where a pixel sees the array from one side only, the
        smoothed spread (:meth:`refine_scan` passes the scan's view channels);
        ``"ensemble-edges"`` (with :attr:`members`), the same with
        the spread of the networks' answers added to the decoders' (variances summed).
    members
        Further networks of the same architecture and inputs, trained by the same recipe
        from other initial weights (an ensemble; the archive's metadata ``members``): the
        refined image is the mean of every network's answers. The uncertainty map comes
        from :attr:`model`.
    """

    model: Any
    kind: str
    family: ScannerFamily = FAMILY
    pitch: float = CANONICAL_PITCH
    inputs: tuple[str, ...] = ("ubp", "das")
    env_names: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    uncertainty: str = "posterior"
    gain: float = 1.0
    members: tuple[Any, ...] = ()
    _stacked: Any = field(default=None, repr=False, compare=False)

    @property
    def units(self) -> str:
        """Units of the refined image and its uncertainty: those of the first input
        channel (:func:`oatomo.recon.registry.image_units`)."""
        from oatomo.recon.registry import image_units  # lazy: the registry loads Numba

        return image_units(self.inputs[0])

    def compatible(self, sensors: SensorArray, acquisition: Acquisition,
                   grid: Grid) -> tuple[bool, str]:
        """Whether the scan lies inside the trained family, and exactly why not."""
        return self.family.compatible(sensors, acquisition, grid)

    @property
    def native_grid(self) -> bool:
        """Whether the model refines on the user's grid as it is (a model trained on
        images of one pitch whose band, in pixels, covers the user's; its family bounds
        the pitch) instead of resampling to :attr:`pitch`."""
        return bool(self.meta.get("native_grid", False))

    @property
    def tta(self) -> bool:
        """Whether the refined image is the mean of the model's answers to several turns
        (and mirrors) of the input (test-time augmentation; the model's metadata ``tta``,
        :attr:`tta_passes` of them). The uncertainty map comes from the plain input. With
        :attr:`members` and the metadata ``tta_shared``, the passes are shared out among
        the networks (network ``m`` of ``M`` takes the passes ``m, m + M, ...``), so an
        ensemble costs what one network with test-time augmentation costs."""
        return self.tta_passes > 1

    @property
    def tta_passes(self) -> int:
        """How many turned or mirrored inputs the refined image averages: the metadata
        ``tta`` as a count -- 8 (``true``: the four quarter turns, each also mirrored), 4
        (the four quarter turns), 2 (the input and its half turn) -- or 1 (``false``, null
        or absent: the plain input only)."""
        value = self.meta.get("tta")
        if value is None or isinstance(value, bool):
            n = 8 if value else 1
        else:
            try:
                n = int(value) if float(value) == int(value) else -1
            except (TypeError, ValueError, OverflowError):
                n = -1
        if n not in TTA_PASSES:
            raise InputError(f"the model's metadata 'tta' must be true, false or one of "
                             f"{', '.join(map(str, sorted(TTA_PASSES)))}, got {value!r}")
        return n

    def passes(self) -> list[tuple[int, int, bool]]:
        """The network passes whose mean is the refined image: ``(network, quarter turns,
        mirrored)``, network 0 being :attr:`model` and ``1...`` the :attr:`members`; the
        first pass is the plain input through :attr:`model`."""
        turns = TTA_PASSES[self.tta_passes]
        n = 1 + len(self.members)
        if self.tta and n > 1 and self.meta.get("tta_shared", False):
            return [(i % n, k, flip) for i, (k, flip) in enumerate(turns)]
        return [(m, k, flip) for m in range(n) for k, flip in turns]

    @property
    def view(self) -> bool:
        """Whether the model also takes the view channels of the scan's sensors
        (:func:`oatomo.refine.view.view_channels`: which directions each pixel sees),
        after the image channels."""
        return bool(self.meta.get("view_channels"))

    def view_inputs(self, sensors: SensorArray, grid: Grid) -> np.ndarray | None:
        """The view channels this model takes for ``sensors`` on ``grid`` (the model's grid),
        or None for a model that takes none (:attr:`view`)."""
        if not self.view:
            return None
        from oatomo.refine.view import view_channels  # lazy: only view models

        return view_channels(sensors, grid)

    def model_grid(self, grid: Grid) -> Grid:
        """The grid the model refines a scan of ``grid`` on (:func:`model_grid`)."""
        return model_grid(grid, self.pitch, self.native_grid)

    def env_index(self, name: str | None) -> int | None:
        """Variant decoder of a training environment (None: the invariant decoder)."""
        if name is None:
            return None
        if name not in self.env_names:
            raise InputError(f"{name!r} is not a training environment of the model "
                             f"({', '.join(self.env_names)})")
        return self.env_names.index(name) if self.kind == "multi-decoder" else None

    def linear_inputs(self, sinogram: np.ndarray, sensors: SensorArray,
                      acquisition: Acquisition, grid: Grid, *,
                      band: tuple[float, float] | None = None,
                      images: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The model's input channels (Pa) of one (N, T) sinogram on ``grid``.

        Each is computed as the training data's were
        (:func:`oatomo.datasets.generate.input_images`: UBP and DAS by backprojection, the
        ``mb-tv`` image by the method registry, 50 iterations), except those given in
        ``images`` (already reconstructed on ``grid`` by the same code, e.g. the pipeline's
        own ``mb-tv`` image), which are taken as they are.
        """
        given = dict(images or {})
        todo = [m for m in self.inputs if m not in given]
        made = input_images(todo, sinogram, grid, sensors, acquisition, band=band)
        return {m: np.asarray(given[m], np.float32) if m in given else made[m]
                for m in self.inputs}

    def refine_images(self, channels: np.ndarray, *, env: str | None = None,
                      n_samples: int = 16, seed: int = 0, tile: int = 512,
                      overlap: int = 64, view: np.ndarray | None = None,
                      map_view: np.ndarray | None = None) -> RefinedScan:
        """Refine (C, n, n) input channels on the model's grid (:meth:`model_grid`).

        ``view``: the (4, n, n) view channels of the scan's sensors on that grid
        (:func:`oatomo.refine.view.view_channels`), required by a model that takes them
        (:attr:`view`), ignored otherwise; they are geometry, not images, and are not
        scaled. ``map_view``: the same channels for the uncertainty map's limited-view
        term (modes ``"decoders-edges"`` and ``"ensemble-edges"``, :func:`edge_weighted`);
        None: ``view`` when given, else the map goes without it
        (:meth:`refine_scan` always passes them).

        Each channel is divided by its maximum absolute value first; the model's output
        is multiplied by the first channel's maximum and :attr:`gain`, so the images come
        back in the channels' units (Pa) and scaling the channels by ``a > 0`` scales them
        by ``a``. Returns a :class:`RefinedScan` on the canonical grid: the refined image
        and the uncertainty map over ``n_samples`` posterior samples (see
        :attr:`uncertainty`; None for a deterministic model or ``n_samples < 2``). Images
        larger than ``tile`` pixels are refined in tiles overlapping by ``overlap`` pixels.
        """
        if not 0 <= n_samples <= MAX_POSTERIOR_SAMPLES:
            raise InputError(f"n_samples must be in 0..{MAX_POSTERIOR_SAMPLES}, got {n_samples}")
        x = np.asarray(channels, np.float32)
        if x.ndim != 3 or x.shape[0] != len(self.inputs) or x.shape[1] != x.shape[2]:
            raise InputError(f"channels must be ({len(self.inputs)}, n, n), got {x.shape}")
        geometry = None
        if self.view:
            from oatomo.refine.view import VIEW_NAMES  # lazy: only view models

            if view is None:
                raise InputError("this refiner takes the view channels of the scan's "
                                 "sensors: pass view=view_channels(sensors, grid)")
            geometry = np.asarray(view, np.float32)
            if geometry.shape != (len(VIEW_NAMES),) + x.shape[1:]:
                raise InputError(f"view must be ({len(VIEW_NAMES)}, {x.shape[1]}, "
                                 f"{x.shape[2]}), got {geometry.shape}")
        refined, std, scale = self._refine_tiles(x, env, n_samples, seed, tile, overlap,
                                                 geometry)
        if std is not None and self.uncertainty in EDGE_MODES:
            std = edge_weighted(std, refined, view=map_view if map_view is not None
                                else geometry)
        canon = Grid(x.shape[1], x.shape[1] * self.pitch)
        from oatomo.recon.registry import image_units  # lazy: the registry loads Numba

        units = {"refined": self.units, **{m: image_units(m) for m in self.inputs}}
        if std is not None:
            units["std"] = self.units
        return RefinedScan(refined=refined, std=std,
                           linear=dict(zip(self.inputs, x, strict=True)),
                           grid=canon, canonical=canon, units=units, scale=scale)

    def _refine_tiles(self, x: np.ndarray, env: str | None, n_samples: int, seed: int,
                      tile: int, overlap: int, geometry: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None, float]:
        """The refined image and uncertainty map (Pa) of (C, n, n) channels, tile by tile,
        and the scale they were multiplied by (``geometry``: channels appended unscaled)."""
        scale = np.abs(x).reshape(len(x), -1).max(1)
        x = x / np.where(scale > 0, scale, 1)[:, None, None]
        if geometry is not None:
            x = np.concatenate([x, geometry])
        # positively homogeneous of degree 1: refine(a x) = a refine(x) for a > 0
        out_scale = float(scale[0]) * float(self.gain)
        refined, std = self._refine_normalised(x, env, n_samples, seed, tile, overlap)
        refined = (refined * out_scale).astype(np.float32)
        return (refined, None if std is None else (std * out_scale).astype(np.float32),
                out_scale)

    def _refine_normalised(self, x: np.ndarray, env: str | None, n_samples: int, seed: int,
                           tile: int, overlap: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The model's output (relative units) on normalised channels, tile by tile."""
        n = x.shape[1]
        if n <= tile:
            return self._run(x, env, n_samples, seed)
        step = tile - overlap
        starts = list(range(0, n - tile, step)) + [n - tile]
        acc = np.zeros((n, n), np.float32)
        acc2 = np.zeros((n, n), np.float32)
        wsum = np.zeros((n, n), np.float32)
        w = _window(tile, overlap)
        has_std = False
        for i in starts:
            for j in starts:
                r, s = self._run(x[:, i:i + tile, j:j + tile], env, n_samples, seed)
                acc[i:i + tile, j:j + tile] += w * r
                if s is not None:
                    has_std = True
                    acc2[i:i + tile, j:j + tile] += w * s
                wsum[i:i + tile, j:j + tile] += w
        return acc / wsum, (acc2 / wsum if has_std else None)

    def _run(self, x: np.ndarray, env: str | None, n_samples: int, seed: int
             ) -> tuple[np.ndarray, np.ndarray | None]:
        mode = self.uncertainty
        if mode not in UNCERTAINTY_MODES:
            raise InputError(f"uncertainty must be one of {', '.join(UNCERTAINTY_MODES)}, "
                             f"got {mode!r}")
        e = self.env_index(env)
        step = int(getattr(self.model, "size_step", 4))  # sizes the model takes
        n0, n1 = x.shape[-2:]
        if n0 % step or n1 % step:  # zero rows and columns beyond the image, cut after
            pad = ((0, 0), (0, -n0 % step), (0, -n1 % step))
            r, s = self._run(np.pad(x, pad), env, n_samples, seed)
            return r[:n0, :n1], None if s is None else s[:n0, :n1]
        passes = self.passes()
        if len(passes) == 1:
            return self._run_once(x, e, n_samples, seed)
        # test-time augmentation (the mean over the turns and mirrors of the input: the
        # model was trained on turned and mirrored crops) and the ensemble's members; the
        # map from the plain pass
        signs = None
        if self.view:
            from oatomo.learn.augment import turn_factors  # lazy: only view models
            from oatomo.refine.view import channel_signs

            signs = channel_signs(len(self.inputs))
        models = (self.model, *self.members)
        jobs = [(x, n_samples, self.model)]
        for m, k, flip in passes[1:]:
            xt = np.rot90(x, k, (1, 2))
            xt = np.ascontiguousarray(xt[..., ::-1] if flip else xt)
            if signs is not None:
                xt *= turn_factors(signs, k, flip)[:, None, None]
            jobs.append((xt, 0, models[m]))
        answers = self._run_passes(jobs, e, seed)
        refined, std = answers[0]
        # each network's sum of answers, and how many it gave (summed in the passes' order:
        # the same bytes however many passes ran at once)
        sums = np.zeros((len(models),) + refined.shape)
        counts = np.zeros(len(models))
        sums[0], counts[0] = refined, 1
        for (m, k, flip), (r, _) in zip(passes[1:], answers[1:], strict=True):
            sums[m] += np.rot90(r[..., ::-1] if flip else r, -k, (0, 1))
            counts[m] += 1
        if std is not None and self.uncertainty == "ensemble-edges" and len(models) > 1:
            # the networks' disagreement: the spread of their mean answers
            spread = (sums / counts[:, None, None]).var(axis=0)
            std = np.sqrt(std.astype(np.float64) ** 2 + spread).astype(np.float32)
        return (sums.sum(axis=0) / len(passes)).astype(np.float32), std

    def _run_passes(self, jobs: list[tuple[np.ndarray, int, Any]], e: int | None, seed: int
                    ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """The answers to several passes ``(channels, n_samples, model)``, in order.

        NumPy networks on a small image run up to :func:`pass_workers` passes at once, each
        on one BLAS thread (NumPy's matrix products release the GIL; the image is too small
        for BLAS's own threads to pay off, see :data:`SMALL_PIXELS`); the answers are the
        ones the passes give one after the other, to the bit. Otherwise one at a time.
        """
        small = jobs[0][0].shape[-1] * jobs[0][0].shape[-2] <= SMALL_PIXELS
        workers = pass_workers(len(jobs))
        if workers < 2 or not small or not all(isinstance(m, NumpyEngine)
                                                for _, _, m in jobs):
            return [self._run_once(xt, e, ns, seed, m) for xt, ns, m in jobs]
        from concurrent.futures import ThreadPoolExecutor

        from oatomo._blas import blas_threads  # lazy: reads the BLAS library on use

        with blas_threads(1), ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda j: self._run_numpy(j[0], e, j[1], seed, j[2]),
                                 jobs))

    def _run_once(self, x: np.ndarray, e: int | None, n_samples: int, seed: int,
                  model: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        """One pass of ``model`` (default :attr:`model`; NumPy or PyTorch) on (C, n, n)
        channels whose sides the model takes."""
        model = self.model if model is None else model
        if isinstance(model, NumpyEngine):
            from oatomo._blas import blas_threads  # lazy: reads the BLAS library on use

            # one 128² tile: one BLAS thread (spinning threads cost seconds when busy)
            with blas_threads(1 if x.shape[-1] * x.shape[-2] <= SMALL_PIXELS else None):
                return self._run_numpy(x, e, n_samples, seed, model)

        with few_threads(x.shape[-1] * x.shape[-2]):  # one 128² tile: one thread
            return self._run_torch(x, e, n_samples, seed, model)

    def _wants(self, n_samples: int) -> tuple[bool, bool]:
        """Whether the uncertainty map takes posterior samples, and the variant decoders."""
        mode = self.uncertainty
        return (n_samples >= 2 and mode in ("posterior", "both"),
                n_samples >= 2 and mode in ("decoders", "both", "decoders-edges",
                                            "ensemble-edges"))

    def _run_numpy(self, x: np.ndarray, e: int | None, n_samples: int, seed: int,
                   model: Any) -> tuple[np.ndarray, np.ndarray | None]:
        posterior, decoders = self._wants(n_samples)
        if isinstance(model, NumpySkipVAE):  # its decoders also take the encoder's skips
            mu, logvar, skips = model.features(x[None], logvar=posterior)

            def decode(z: np.ndarray, k: int | None) -> np.ndarray:
                return model.likelihood_mean(model.decode(z, skips, k))
        else:
            mu, logvar = model.encode(x[None], logvar=posterior)

            def decode(z: np.ndarray, k: int | None) -> np.ndarray:
                return model.likelihood_mean(model.decode(z, k))
        out = decode(mu, e)[0, 0]
        if model.residual:
            out = out + x[0]
        if not (posterior or decoders):
            return out.astype(np.float32), None
        var = np.zeros_like(out)
        if posterior:
            z = mu + np.exp(0.5 * logvar) * posterior_noise(seed, n_samples, mu.shape[1:])
            # a few samples per call: the columns of a convolution grow with the batch
            step = max(1, (1 << 16) // (x.shape[-1] * x.shape[-2] // 4))
            draws = np.concatenate([decode(z[i:i + step], e)
                                    for i in range(0, n_samples, step)])[:, 0]
            var += draws.var(0)
        if decoders and model.n_envs:
            per_env = np.stack([decode(mu, k)[0, 0] for k in range(model.n_envs)])
            var += per_env.var(0)
        return out.astype(np.float32), np.sqrt(var).astype(np.float32)

    def _run_torch(self, x: np.ndarray, e: int | None, n_samples: int, seed: int,
                   model: Any) -> tuple[np.ndarray, np.ndarray | None]:
        import torch  # lazy: the NumPy back end refines without PyTorch

        model = model.eval()
        xt = torch.from_numpy(np.ascontiguousarray(x))[None].to(model.device)
        with torch.no_grad():
            posterior, decoders = self._wants(n_samples)
            if not (posterior or decoders) or not hasattr(model, "encode"):
                out = model.reconstruct(xt, e)[0, 0].cpu().numpy()
                return out.astype(np.float32), None
            if hasattr(model, "features"):  # skip-connected VAEs: decoders take skips
                return self._run_skip(model, xt, e, n_samples, seed, posterior, decoders)
            # the posterior serves the refined image and the uncertainty map: encode once
            mu, logvar = model.encode(xt)
            # the invariant decoder, or the variant decoder of a training environment
            decoder = model.decoder if e is None else model.variant_decoders[e]
            out = (model.likelihood_mean(decoder(mu)) + model.base(xt))[0, 0].cpu().numpy()
            var = torch.zeros_like(xt[0, 0])
            if posterior:
                eps = torch.from_numpy(posterior_noise(seed, n_samples, tuple(mu.shape[1:])))
                # all samples in one batch: one decoder call instead of n_samples
                draws = model.likelihood_mean(decoder(
                    mu + torch.exp(0.5 * logvar) * eps.to(mu.device)))[:, 0]
                var += draws.var(0, unbiased=False)
            if decoders and hasattr(model, "variant_decoders"):
                per_env = model.likelihood_mean(self._all_variant_decoders(mu))[:, 0, 0]
                var += per_env.var(0, unbiased=False)
        return out.astype(np.float32), var.sqrt().cpu().numpy()

    @staticmethod
    def _run_skip(model: Any, xt: Any, e: int | None, n_samples: int, seed: int,
                  posterior: bool, decoders: bool) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_run_torch` for the skip-connected VAEs (:mod:`oatomo.learn.skipvae`),
        whose decoders also take the encoder's features (encoded once): the same images
        and map as the NumPy engine."""
        import torch  # lazy: the NumPy back end refines without PyTorch

        mu, logvar, skips = model.features(xt)
        base = model.base(xt)[0, 0]

        def decode(z: Any, k: int | None) -> Any:
            env = None if k is None else torch.full((len(z),), k, device=z.device)
            batch = [s.expand(len(z), *s.shape[1:]) for s in skips]
            return model.likelihood_mean(model.decode(z, batch, env))[:, 0]

        out = decode(mu, e)[0] + base
        var = torch.zeros_like(out)
        if posterior:
            eps = torch.from_numpy(posterior_noise(seed, n_samples, tuple(mu.shape[1:])))
            var += decode(mu + torch.exp(0.5 * logvar) * eps.to(mu.device), e).var(
                0, unbiased=False)
        if decoders and len(model.variant_decoders):
            var += torch.cat([decode(mu, k) for k in range(len(model.variant_decoders))]
                             ).var(0, unbiased=False)
        return (out.cpu().numpy().astype(np.float32),
                var.sqrt().cpu().numpy().astype(np.float32))

    def _all_variant_decoders(self, z: Any) -> Any:
        """Every variant decoder applied to ``z`` in one vectorised call (E, B, C, H, W)."""
        # lazy: the NumPy back end refines without PyTorch
        from torch.func import functional_call, stack_module_state, vmap

        decoders = list(self.model.variant_decoders)
        key = id(self.model)
        if self._stacked is None or self._stacked[0] != key:
            params, buffers = stack_module_state(decoders)
            self._stacked = (key, params, buffers, copy.deepcopy(decoders[0]).to("meta"))
        _, params, buffers, base = self._stacked

        def run(p: Any, b: Any, x: Any) -> Any:
            return functional_call(base, (p, b), (x,))

        return vmap(run, in_dims=(0, 0, None))(params, buffers, z)

    def refine_scan(self, sinogram: np.ndarray, sensors: SensorArray,
                    acquisition: Acquisition, grid: Grid, *,
                    band: tuple[float, float] | None = None, env: str | None = None,
                    n_samples: int = 16, seed: int = 0, check: bool = True,
                    images: dict[str, np.ndarray] | None = None) -> RefinedScan:
        """Refine one scan (N, T) onto ``grid`` (see the module docstring).

        ``images``: input channels already reconstructed on ``grid`` by the training
        data's code (:meth:`linear_inputs`), used instead of reconstructing them again
        when ``grid`` is the canonical grid (else ignored).

        Returns
        -------
        RefinedScan
            The refined image, its uncertainty and the input channels on ``grid``.

        Raises
        ------
        InputError
            The scan lies outside the trained family (the message says why), unless
            ``check=False``.
        """
        sino = np.asarray(sinogram, np.float32)
        if sino.ndim != 2:
            raise InputError(f"refine one sinogram (N, T) at a time, got {sino.shape}")
        ok, reason = self.compatible(sensors, acquisition, grid)
        if check and not ok:
            raise InputError(f"cannot refine: {reason}")
        canon = self.model_grid(grid)
        lin = self.linear_inputs(sino, sensors, acquisition, canon, band=band,
                                 images=images if canon == grid else None)
        view = self.view_inputs(sensors, canon)
        map_view = None
        if (view is None and n_samples >= 2
                and self.uncertainty in EDGE_MODES):
            from oatomo.refine.view import view_channels  # lazy: Numba

            map_view = view_channels(sensors, canon)
        r = self.refine_images(np.stack([lin[m] for m in self.inputs]), env=env,
                               n_samples=n_samples, seed=seed, view=view,
                               map_view=map_view)
        return RefinedScan(
            refined=resample(r.refined, canon, grid),
            std=None if r.std is None else resample(r.std, canon, grid),
            linear={m: resample(v, canon, grid) for m, v in lin.items()},
            grid=grid, canonical=canon, units=r.units, reason=reason, scale=r.scale)


#: The uncertainty modes whose map is :func:`edge_weighted`.
EDGE_MODES = ("decoders-edges", "ensemble-edges")

#: Width (pixels) of the Gaussian that spreads the decoders' disagreement over the
#: structures a limited view leaves out (:func:`edge_weighted` with ``view``).
LIMITED_VIEW_SIGMA = 2.0


def edge_weighted(spread: np.ndarray, image: np.ndarray, sigma: float = 1.0,
                  view: np.ndarray | None = None) -> np.ndarray:
    """The uncertainty map ``"decoders-edges"``: ``G_sigma * sqrt(spread * |grad image|)``,
    plus a limited-view term when ``view`` is given.

    ``|grad image|`` is the Sobel estimate of the gradient's magnitude per pixel (the Sobel
    filters divided by 8), ``G_sigma`` a Gaussian of ``sigma`` pixels. The map has the
    units of its inputs (Pa) and scales with them. The refined image's errors sit at its
    edges (where a boundary a pixel off costs the most), weighted by how much the variant
    decoders disagree there: on the TV refiner's tuning scans this ranked pixels by error
    better than the spread alone (median Pearson correlation 0.66 against 0.50).

    Under a limited view the largest errors are structures the data do not hold, which
    leave no edge in the refined image. ``view``, the (4, n, n) view channels of the
    scan's sensors on the image's grid (:func:`oatomo.refine.view.view_channels`), adds
    ``R * G_2 * spread`` scaled to the edge term's maximum, where ``R = |(c2, s2)|`` is
    how one-sided the pixel's view is (0 inside a full ring, towards 1 under a narrow
    array) and ``G_2`` a Gaussian of :data:`LIMITED_VIEW_SIGMA` pixels: where every
    direction is seen the map is the edge term alone. Chosen on a limited-view tuning
    set (90° and 150° arcs, 64- and 96-element linear arrays; median correlation 0.54
    against 0.44 for the edge term alone).
    """
    from scipy import ndimage  # lazy: scipy.ndimage costs at import

    img = np.asarray(image, np.float64)
    sp = np.maximum(np.asarray(spread, np.float64), 0.0)
    grad = np.hypot(ndimage.sobel(img, -2), ndimage.sobel(img, -1)) / 8.0
    edges = ndimage.gaussian_filter(np.sqrt(sp * grad), sigma, axes=(-2, -1))
    if view is None:
        return edges.astype(np.float32)
    v = np.asarray(view, np.float64)
    if v.ndim != 3 or v.shape[0] < 2 or v.shape[1:] != img.shape[-2:]:
        raise InputError(f"view must be (4, {img.shape[-2]}, {img.shape[-1]}), got {v.shape}")
    one_sided = np.hypot(v[0], v[1])
    wide = ndimage.gaussian_filter(sp, LIMITED_VIEW_SIGMA, axes=(-2, -1))
    top_e = edges.max(axis=(-2, -1), keepdims=True)
    top_w = wide.max(axis=(-2, -1), keepdims=True)
    k = np.where((top_e > 0) & (top_w > 0), top_e / np.where(top_w > 0, top_w, 1.0), 1.0)
    return (edges + one_sided * wide * k).astype(np.float32)


def posterior_noise(seed: int, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """The standard normal draws behind the posterior samples of the uncertainty map
    (NumPy's generator, so both inference back ends draw the same samples)."""
    check_bytes(4.0 * int(n) * float(np.prod(shape, dtype=np.float64)),
                f"{int(n)} posterior samples of the uncertainty map")
    return np.random.default_rng(int(seed)).standard_normal((int(n), *shape), np.float32)


def load_refiner(path: str | os.PathLike, *, device: str = "cpu",
                 backend: str = "auto") -> Refiner:
    """Load a refiner written by :func:`oatomo.learn.refiner.train_refiner` or
    :func:`oatomo.learn.refiner.export_refiner`.

    Parameters
    ----------
    path
        A ``.pt`` checkpoint or a ``.npz`` weights archive.
    device
        PyTorch device of the model (the PyTorch back end).
    backend
        ``"numpy"``: run the model with NumPy (:class:`oatomo.refine.weights.NumpyConvVAE`;
        weights archives of VAE models only; PyTorch is not imported); ``"torch"``: with
        PyTorch; ``"auto"`` (default): NumPy for a weights archive of a VAE on the CPU,
        else PyTorch. Both give the same images to float32 rounding.

    Notes
    -----
    The last :data:`REFINER_CACHE_SIZE` refiners read are kept (by the file's real path,
    modification time and size, the device and the back end): loading one again returns a
    copy of its record, whose fields may be changed, sharing its networks. A file
    rewritten on disk is read again.

    Raises
    ------
    InputError
        Not a refiner, or a checkpoint without the scanner-family metadata (an older
        refiner format).
    """
    if backend not in ("auto", "numpy", "torch"):
        raise InputError(f"backend must be 'auto', 'numpy' or 'torch', got {backend!r}")
    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_mtime_ns, st.st_size, str(device), backend)
    except (OSError, TypeError, ValueError):  # read it, to say what is wrong with it
        return _read_refiner(path, device, backend)
    ref = _cached_refiner(key)
    # a copy of the record (the networks shared): a caller may set its fields
    return replace(ref, meta=dict(ref.meta), _stacked=None)


#: Refiners kept read by :func:`load_refiner` (a script refining scan after scan reads the
#: model once: the shipped archive takes about 0.05 s to read, a quarter of its
#: refinement step on a 128² image).
REFINER_CACHE_SIZE = 4


@functools.lru_cache(maxsize=REFINER_CACHE_SIZE)
def _cached_refiner(key: tuple[str, int, int, str, str]) -> Refiner:
    """The refiner of ``key`` = (real path, modification time, size, device, back end):
    a file changed on disk is read again."""
    return _read_refiner(key[0], key[3], key[4])


def _read_refiner(path: str | os.PathLike, device: str, backend: str) -> Refiner:
    """:func:`load_refiner` without its cache."""
    archive = is_weights_archive(path)
    if backend == "numpy" and not archive:
        raise InputError("the NumPy back end reads weights archives (.npz) only", path)
    # an archive is read once, whichever back end runs it
    model, ckpt = _model_of(path, read_weights(path) if archive else None, device, backend)
    meta = family_record(ckpt.get("train"), path)
    return Refiner(model=model, kind=str(meta["kind"]),
                   family=ScannerFamily.from_dict(meta["family"]),
                   pitch=float(meta["pitch"]), inputs=tuple(meta["inputs"]),
                   env_names=tuple(meta["env_names"]), meta=dict(meta),
                   uncertainty=str(meta.get("uncertainty", "posterior")),
                   gain=_gain(meta.get("gain", 1.0), path),
                   members=_members(meta, ckpt, path, device, backend))


def _model_of(path: str | os.PathLike,
              weights: tuple[dict[str, Any], dict[str, np.ndarray]] | None, device: str,
              backend: str) -> tuple[Any, dict[str, Any]]:
    """The model of a checkpoint (``weights`` None) or of a weights archive already read
    (its record and arrays), on the back end :func:`load_refiner` chooses, and its
    record."""
    if weights is not None and (backend == "numpy" or (
            backend == "auto" and device == "cpu" and weights[0]["model_class"]
            in NUMPY_CLASSES)):
        return numpy_model(weights[0], weights[1], path), weights[0]
    from oatomo.learn.checkpoint import (  # lazy: PyTorch
        checkpoint_from_weights,
        load_checkpoint,
        model_from_checkpoint,
    )

    ckpt = (checkpoint_from_weights(weights[0], weights[1], path) if weights is not None
            else load_checkpoint(path, map_location="cpu"))
    return model_from_checkpoint(ckpt, path=path, map_location=device), ckpt


def _members(meta: dict[str, Any], ckpt: dict[str, Any], path: str | os.PathLike,
             device: str, backend: str) -> tuple[Any, ...]:
    """The ensemble's further networks (:attr:`Refiner.members`): the metadata ``members``
    names weights archives beside ``path``, each of the same model class and inputs and
    with no members of its own."""
    names = meta.get("members") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError("the model's 'members' must be a list of file names", path)
    out = []
    for name in names:
        if os.path.basename(name) != name or not name.endswith(".npz"):
            raise InputError(f"ensemble member {name!r} must be a .npz file name beside "
                             "the model", path)
        other = os.path.join(os.path.dirname(os.fspath(path)), name)
        if not os.path.exists(other):
            raise InputError(f"ensemble member {name!r} is missing", path)
        weights = read_weights(other)
        sub = family_record(weights[0].get("train"), other)
        if sub.get("members"):
            raise InputError("an ensemble member must not have members of its own", other)
        if (weights[0]["model_class"] != ckpt["model_class"]
                or list(sub["inputs"]) != list(meta["inputs"])):
            raise InputError("an ensemble member must be the model's architecture with "
                             "its inputs", other)
        out.append(_model_of(other, weights, device, backend)[0])  # read once
    return tuple(out)


def _gain(value: Any, path: str | os.PathLike) -> float:
    """The model's ``gain`` metadata, checked: a finite number > 0."""
    try:
        g = float(value)
    except (TypeError, ValueError):
        g = math.nan
    if not (math.isfinite(g) and g > 0):
        raise InputError(f"the model's gain must be a finite number > 0, got {value!r}", path)
    return g


#: The scanner-family names of :class:`Refiner` and :func:`load_refiner`.
FamilyRefiner = Refiner
load_family_refiner = load_refiner

"""The registry of reconstruction methods: one name, one function, what it needs.

Every caller (:func:`oatomo.reconstruct`, ``oatomo reconstruct --method``, ``oatomo
dataset``, the benchmarks, the README) takes the method names from :data:`METHODS`.
Adding a method is one function with the signature of :attr:`MethodSpec.run` and one
line in :data:`METHODS` (README, developer notes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from oatomo.errors import InputError
from oatomo.forward import bandpass, check_sinogram
from oatomo.geometry import Acquisition, Grid, SensorArray, check_geometry
from oatomo.media import DEFAULT_MEDIUM, check_medium
from oatomo.progress import Callback
from oatomo.recon.backprojection import backproject
from oatomo.recon.model_based import STALL_MIN_ITERS, reconstruct_model_based
from oatomo.speed_map import SpeedMap
from oatomo.units import UNITS_ARBITRARY, UNITS_PA

__all__ = ["Callback", "MethodSpec", "METHODS", "UNITS_PA", "UNITS_ARBITRARY", "get_method",
           "linear_methods", "reconstruct_sinogram", "image_units"]



@dataclass(frozen=True)
class MethodSpec:
    """A reconstruction method and what it needs.

    Attributes
    ----------
    name
        The name users type (``--method``).
    run
        ``run(sinogram, grid, sensors, acquisition, *, band, lam, iters, callback,
        element_width, response, speed_map, medium, attenuation)``: (..., N, T) signals in
        Pa -> (..., n, n) float32 images in Pa (``element_width``: flat elements of that
        width in m, or None for points; ``response``: a detector response to model,
        iterative methods only; ``speed_map``: two speeds of sound; ``medium``: ``"slab"``
        or ``"2d"``; ``attenuation``: an :class:`oatomo.media.Attenuation`, modelled by
        iterative methods and compensated before the others; each is passed only when set).
    description
        One line for ``--help`` and the README.
    full_ring
        Needs sensors on a (nearly) full circle around the origin.
    iterative
        Takes ``iters`` iterations and a regularisation weight ``lam``.
    units
        :data:`UNITS_PA` when the image reads the initial pressure, else
        :data:`UNITS_ARBITRARY`.
    """

    name: str
    run: Callable[..., np.ndarray]
    description: str
    full_ring: bool = False
    iterative: bool = False
    units: str = UNITS_PA


def _backproject(kind: str, sinogram: np.ndarray, grid: Grid, sensors: SensorArray,
                 acquisition: Acquisition, *,
                 band: tuple[float | None, float | None] | None = None,
                 lam: float | None = None, iters: int = 50,
                 callback: Callback | None = None,
                 element_width: float | None = None, response: Any = None,
                 speed_map: SpeedMap | None = None, medium: str = DEFAULT_MEDIUM,
                 attenuation: Any = None) -> np.ndarray:
    """:func:`oatomo.backproject` with ``method=kind`` (one pass; lam, iters unused)."""
    if response is not None:
        raise InputError(f"{kind} cannot model the detector response; deconvolve it first "
                         f"or use a model-based method")
    return backproject(sinogram, grid, sensors, acquisition, method=kind, band=band,
                       element_width=element_width, speed_map=speed_map, medium=medium,
                       attenuation=attenuation)


def _model_based(kind: str, sinogram: np.ndarray, grid: Grid, sensors: SensorArray,
                 acquisition: Acquisition, *,
                 band: tuple[float | None, float | None] | None = None,
                 lam: float | None = None, iters: int = 50,
                 callback: Callback | None = None,
                 element_width: float | None = None, response: Any = None,
                 speed_map: SpeedMap | None = None, medium: str = DEFAULT_MEDIUM,
                 attenuation: Any = None, x0: np.ndarray | None = None,
                 norm_sq: float | None = None, stall_tol: float = 0.0,
                 stall_from: int = STALL_MIN_ITERS,
                 records: list[dict[str, Any]] | None = None) -> np.ndarray:
    """:func:`oatomo.reconstruct_model_based` with ``method=kind``, frame by frame (the
    detector response, element width, medium and attenuation inside the forward
    operator), each frame started at ``x0`` (n, n) scaled by the frame's least-squares
    amplitude against the frames' mean (``x0`` is an image of the mean frame; a frame
    that is ``a`` times another starts ``a`` times as high), or at zero; ``norm_sq``: a
    bound on ``||A||^2`` in place of the solver's own estimate; ``stall_tol``: the TV's
    stall test and ``stall_from`` its first iteration
    (:func:`oatomo.reconstruct_model_based`); ``records``: a list each frame's solver record
    is appended to."""
    y = bandpass(check_sinogram(sinogram, sensors, acquisition), acquisition.fs, band)
    frames = y.reshape((-1,) + y.shape[-2:])
    starts: list[np.ndarray | None] = [None] * len(frames)
    if x0 is not None:
        ref = frames.mean(axis=0, dtype=np.float64)
        ref_e = float(np.vdot(ref, ref))
        starts = [np.float32(max(float(np.vdot(f, ref)) / ref_e, 0.0) if ref_e > 0 else 0.0)
                  * x0 for f in frames]
    out = []
    for i, f in enumerate(frames):
        def step(k: int, _x: np.ndarray, i: int = i) -> None:
            if callback is not None:
                callback(f"mb-{kind}", i * iters + k, len(frames) * iters)

        image, record = reconstruct_model_based(f, grid, sensors, acquisition, method=kind,
                                                lam=lam, n_iter=iters, on_iteration=step,
                                                x0=starts[i], norm_sq=norm_sq,
                                                stall_tol=stall_tol,
                                                stall_from=stall_from, response=response,
                                                element_width=element_width,
                                                speed_map=speed_map, medium=medium,
                                                attenuation=attenuation)
        out.append(image)
        if records is not None:
            records.append(record)
    return np.stack(out).reshape(y.shape[:-2] + grid.shape)


#: Every reconstruction method, by name (the order of ``--help``).
METHODS: dict[str, MethodSpec] = {s.name: s for s in (
    MethodSpec("das", partial(_backproject, "das"), "delay-and-sum", units=UNITS_ARBITRARY),
    MethodSpec("ubp", partial(_backproject, "ubp"), "universal backprojection",
               units=UNITS_ARBITRARY),
    MethodSpec("fbp", partial(_backproject, "fbp"), "exact filtered backprojection",
               full_ring=True),
    MethodSpec("mb-tikhonov", partial(_model_based, "tikhonov"),
               "model-based, Tikhonov (LSQR, x >= 0)", iterative=True),
    MethodSpec("mb-tv", partial(_model_based, "tv"),
               "model-based, total variation (FISTA, x >= 0)", iterative=True),
)}


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of a name (InputError naming the choices otherwise)."""
    spec = METHODS.get(name)
    if spec is None:
        raise InputError(f"unknown reconstruction method {name!r}; choose from "
                         f"{', '.join(METHODS)}")
    return spec


def linear_methods() -> tuple[str, ...]:
    """Methods that are one linear, non-iterative pass for any array (refiner inputs)."""
    return tuple(n for n, s in METHODS.items() if not s.iterative and not s.full_ring)


def reconstruct_sinogram(sinogram: np.ndarray, grid: Grid, sensors: SensorArray,
                         acquisition: Acquisition, method: str = "ubp", *,
                         band: tuple[float | None, float | None] | None = None,
                         lam: float | None = None, iters: int = 50,
                         callback: Callback | None = None,
                         element_width: float | None = None,
                         response: Any = None,
                         speed_map: SpeedMap | None = None, medium: str = DEFAULT_MEDIUM,
                         attenuation: Any = None, x0: np.ndarray | None = None,
                         norm_sq: float | None = None, stall_tol: float = 0.0,
                         stall_from: int | None = None,
                         records: list[dict[str, Any]] | None = None) -> np.ndarray:
    """Step 3: every frame of a sinogram with one registered method.

    Parameters
    ----------
    sinogram
        (..., N, T) signals in Pa.
    grid, sensors, acquisition
        Output grid, sensor positions and sampling.
    method
        A name of :data:`oatomo.recon.registry.METHODS`.
    band
        Optional ``(f_low, f_high)`` band-pass (Hz) applied first.
    lam, iters
        Regularisation weight (None: from the data) and iterations of iterative methods.
    callback
        ``callback(what, done, total)`` as the work progresses.
    element_width
        Width (m) of flat sensor elements, weighting the backprojection with their
        directivity (das, ubp) or inside the model-based operator; None: point sensors.
    response
        A detector response to include in the model-based operator (iterative methods).
    speed_map
        Two speeds of sound (:class:`oatomo.speed_map.SpeedMap`) for every method but
        ``fbp``; None: the acquisition's one speed.
    medium
        The medium that made the signals, ``"slab"`` (default) or ``"2d"`` (line sources):
        in the model-based operator, or converted to the slab model before the others.
    attenuation
        The medium's :class:`oatomo.media.Attenuation`: in the model-based operator, or
        compensated before the others (:func:`oatomo.media.compensate`).
    x0
        A starting image (n, n) of the frames' mean for ``mb-tv`` (each frame starts at it
        times its amplitude against the mean); None: zero. Other methods refuse it.
    norm_sq
        For ``mb-tv``: an upper bound on ``||A||^2`` of this geometry (e.g.
        :attr:`oatomo.calibration.Calibration.operator_norm_sq`), used as the step size
        instead of the solver's estimate (Lanczos steps); None: that estimate.
    stall_tol
        For ``mb-tv``: stop a frame's iterations once its objective stalls (the relative
        decrease over the last iterations, :func:`oatomo.reconstruct_model_based`); 0: no
        such test.
    stall_from
        For ``mb-tv``: the first iteration the stall test is made at; None: the solver's
        default (:data:`oatomo.recon.model_based.STALL_MIN_ITERS`).
    records
        For iterative methods: a list each frame's solver record
        (:func:`oatomo.reconstruct_model_based`'s: ``n_iter`` run, ``stalled``,
        ``residual``, ...) is appended to; other methods leave it as it is.

    Returns
    -------
    numpy.ndarray
        float32 (..., n, n) in Pa.
    """
    spec = get_method(method)
    if (x0 is not None or norm_sq is not None or stall_tol or stall_from is not None) \
            and spec.name != "mb-tv":
        raise InputError(f"a starting image, operator-norm bound or stall test is for "
                         f"mb-tv, not {spec.name}")
    if norm_sq is not None and not (math.isfinite(norm_sq) and norm_sq > 0):
        raise InputError(f"norm_sq must be a positive number, got {norm_sq!r}")
    grid, sensors, acquisition = check_geometry(grid, sensors, acquisition)
    check_medium(medium)
    extra = {k: v for k, v in (("element_width", element_width), ("response", response),
                               ("speed_map", speed_map), ("attenuation", attenuation),
                               ("x0", x0), ("norm_sq", norm_sq),
                               ("stall_tol", stall_tol or None),
                               ("stall_from", stall_from))
             if v is not None}
    if medium != DEFAULT_MEDIUM:
        extra["medium"] = medium
    if records is not None and spec.iterative:
        extra["records"] = records
    return spec.run(sinogram, grid, sensors, acquisition, band=band, lam=lam, iters=iters,
                    callback=callback, **extra)


def image_units(name: str) -> str:
    """Units of the image of method ``name`` (a name of :data:`METHODS`, or an input
    channel name such as ``"ubp"``); :data:`UNITS_ARBITRARY` for names it does not know."""
    spec = METHODS.get(name)
    return UNITS_ARBITRARY if spec is None else spec.units

"""The reconstruction of a scan with 3-D sensor positions: volumes.

:func:`reconstruct_volume_scan` is what :func:`oatomo.reconstruct` (and ``oatomo
reconstruct``) run on a scan whose sensors are a :class:`~oatomo.volume.SensorArray3D`:
the same first steps (load, geometry overrides, frames and wavelengths, deconvolution),
then DAS, UBP, Tikhonov or TV on a :class:`~oatomo.volume.VolumeGrid`
(:mod:`oatomo.volume`). The position check and self-calibration are 2-D this round, and
the learned refinement was trained on 2-D images: a 3-D scan gets neither, and its
provenance says so.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from oatomo._limits import check_option
from oatomo.errors import InputError
from oatomo.forward import bandpass
from oatomo.io import as_scan
from oatomo.pipeline.frames import deconvolve_signals, override_geometry, select
from oatomo.progress import Callback
from oatomo.units import UNITS_PA
from oatomo.volume import (
    ELEMENT_SHAPES,
    VolumeGrid,
    backproject_volume,
    reconstruct_volume_model_based,
)

logger = logging.getLogger(__name__)

__all__ = ["VOLUME_RECON_METHODS", "VolumeReconstruction", "reconstruct_volume_scan",
           "default_volume_grid", "NOT_CALIBRATED", "NOT_REFINED"]

#: The methods of a volume reconstruction (the names of :data:`oatomo.recon.registry.METHODS`
#: that have a 3-D counterpart), each with its units.
VOLUME_RECON_METHODS = {"das": "a.u.", "ubp": UNITS_PA, "mb-tikhonov": UNITS_PA,
                        "mb-tv": UNITS_PA}

#: Default method of a volume reconstruction.
DEFAULT_VOLUME_METHOD = "mb-tv"

#: Voxels per side of the default volume grid (when the scan has no truth grid).
DEFAULT_VOLUME_N = 64

#: Why a 3-D scan is neither checked nor calibrated (in its provenance and the log).
NOT_CALIBRATED = ("position check and self-calibration are 2-D this round: the 3-D scan's "
                  "sensor positions are used as given")

#: Why a 3-D scan is not refined (its provenance's ``refinement["reason"]``).
NOT_REFINED = "the learned refinement was trained on 2-D images: a 3-D scan is not refined"

#: Keywords of :func:`oatomo.reconstruct` that have no 3-D counterpart yet, with their
#: command-line names; given (not None/False/default), a 3-D scan is refused.
TWO_D_ONLY = {"object_speed_of_sound": "--object-speed-of-sound",
              "object_radius": "--object-radius", "object_centre": "--object-centre",
              "calibration": "--calibration",
              "attenuation": "--attenuation", "preset": "--preset", "model": "--model",
              "setup": "--setup"}


@dataclass(frozen=True, eq=False)
class VolumeReconstruction:
    """Named volumes on one :class:`~oatomo.volume.VolumeGrid`, with units and provenance.

    Attributes
    ----------
    images
        Name -> float32 (..., nz, ny, nx): the method's (e.g. ``"mb-tv"``), and
        ``"truth"`` for a simulated scan whose truth is on the same grid.
    grid
        The grid of every volume.
    units
        Name -> units (``"Pa"``; ``"a.u."`` for DAS).
    provenance
        As :class:`oatomo.pipeline.Reconstruction`'s, with ``dimensions`` 3, ``grid``
        (``n``, ``fov``, ``shape``), ``axes`` (the leading axes; the volume's are z, y,
        x), ``position_check`` and ``refinement`` saying why neither ran.
    """

    images: Mapping[str, np.ndarray]
    grid: VolumeGrid
    units: Mapping[str, str]
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", MappingProxyType(dict(self.images)))
        object.__setattr__(self, "units", MappingProxyType(dict(self.units)))
        object.__setattr__(self, "provenance", MappingProxyType(dict(self.provenance)))

    @property
    def refined(self) -> bool:
        """Always False: volumes are not refined."""
        return False

    @property
    def image(self) -> np.ndarray:
        """The method's volume(s)."""
        return self.images[self.provenance["method"]]

    @property
    def linear(self) -> np.ndarray:
        """The method's volume(s) (as :attr:`image`)."""
        return self.image

    def attrs(self) -> dict[str, Any]:
        """Provenance and units as file attributes (for :func:`oatomo.io.save_images`)."""
        return {**self.provenance, "units": dict(self.units)}


def default_volume_grid(scan: Any, n: int | None = None, fov: float | None = None
                        ) -> VolumeGrid:
    """The volume grid of a 3-D scan: its truth grid when neither ``n`` nor ``fov`` is
    given; else a cube of ``n`` voxels per side (the truth's, else 64) and side ``fov``
    (the truth's, else the largest cube centred on the origin inside the sphere through
    the nearest sensor, ``2 r_min / sqrt(3)``)."""
    truth = getattr(scan, "grid", None)
    if not isinstance(truth, VolumeGrid):
        truth = None
    if n is None and fov is None and truth is not None:
        return truth
    if fov is None:
        if truth is not None:
            fov = truth.fov
        else:
            r_min = float(np.linalg.norm(scan.sensors.positions, axis=1).min())
            if r_min <= 0:
                raise InputError("a sensor sits at the origin: give the field of view "
                                 "(--fov)")
            fov = 2 * r_min / math.sqrt(3)
    if n is None:
        n = truth.n if truth is not None else DEFAULT_VOLUME_N
    return VolumeGrid(n, fov)


def _refuse_two_d_options(options: Mapping[str, Any]) -> None:
    """One-line InputError for the first 2-D-only option given for a 3-D scan."""
    for key, flag in TWO_D_ONLY.items():
        if options.get(key) is not None:
            raise InputError(f"{flag} is 2-D only; this scan has 3-D sensor positions")
    if options.get("medium") not in (None, "slab"):
        raise InputError("--medium 2d is 2-D only (line sources); this scan has 3-D sensor "
                         "positions")
    if options.get("refine") is True:
        raise InputError(f"--refine: {NOT_REFINED}")
    if options.get("calibrate") is True:
        raise InputError(f"--calibrate: {NOT_CALIBRATED}")
    if options.get("model_response") and options.get("deconvolve"):
        raise InputError("--model-response and --deconvolve both remove the detector "
                         "response: give one")


def reconstruct_volume_scan(scan: Any, method: str | None = None,
                            grid: VolumeGrid | None = None, *, n: int | None = None,
                            fov: float | None = None,
                            frames: int | Sequence[int] | None = None,
                            wavelengths: float | Sequence[float] | None = None,
                            speed_of_sound: float | None = None,
                            band: tuple[float | None, float | None] | None = None,
                            deconvolve: bool | float | None = None, response: Any = None,
                            model_response: bool = False, lam: float | None = None,
                            iters: int | None = None, element_width: float | None = None,
                            element_shape: str | None = None,
                            callback: Callback | None = None,
                            **two_d: Any) -> VolumeReconstruction:
    """Reconstruct a scan with 3-D sensor positions into volumes.

    Parameters
    ----------
    scan
        A :class:`oatomo.io.Scan` with :attr:`~oatomo.io.Scan.is_3d`, or its file.
    method
        ``das``, ``ubp``, ``mb-tikhonov`` or ``mb-tv`` (default).
    grid
        The :class:`~oatomo.volume.VolumeGrid`; None: :func:`default_volume_grid` with
        ``n`` and ``fov`` (an ``n``^3 cube of side ``fov`` centred on the origin).
    frames, wavelengths, speed_of_sound, band, deconvolve, response, lam, iters
        As :func:`oatomo.reconstruct` (``iters`` default 50).
    model_response
        Model-based methods: the detector response (``response``, else the scan's) in
        the operator.
    element_width
        Flat elements (m): the side of a square face, or the diameter of a disc one with
        ``element_shape="disc"``; das and ubp weight the backprojection with their
        directivity, model-based methods put them in the operator
        (:mod:`oatomo.volume.elements`). None: point sensors.
    element_shape
        ``"square"`` (default) or ``"disc"``; only with ``element_width``.
    callback
        ``callback(what, done, total)`` after each step and model-based iteration.
    two_d
        The other keywords of :func:`oatomo.reconstruct`: those without a 3-D counterpart
        (two speeds of sound, calibration files, attenuation, a 2-D
        medium, presets, refinement models, ``refine=True``, ``calibrate=True``) are
        refused with one line; ``"auto"`` and False are accepted and recorded.

    Returns
    -------
    VolumeReconstruction
    """
    _refuse_two_d_options(two_d)
    unknown = set(two_d) - set(TWO_D_ONLY) - {"medium", "refine", "calibrate", "samples",
                                              "device", "guard"}
    if unknown:
        raise InputError(f"unknown keyword {sorted(unknown)[0]!r}")
    method = DEFAULT_VOLUME_METHOD if method is None else method
    if element_width is not None:
        check_option("element_width", element_width, "--element-width")
    elif element_shape is not None:
        raise InputError("--element-shape goes with --element-width (the element's size)")
    shape = "square" if element_shape is None else element_shape
    if shape not in ELEMENT_SHAPES:
        raise InputError(f"--element-shape must be one of {', '.join(ELEMENT_SHAPES)}, got "
                         f"{shape!r}")
    if method not in VOLUME_RECON_METHODS:
        raise InputError(f"method {method!r} has no volume counterpart; a 3-D scan is "
                         f"reconstructed with {', '.join(VOLUME_RECON_METHODS)}")
    t = time.perf_counter()
    data, source = as_scan(scan)
    if not data.is_3d:
        raise InputError("reconstruct_volume_scan takes a scan with 3-D sensor positions; "
                         "this one is 2-D (use oatomo.reconstruct)",
                         None if source == "<Scan>" else source)
    if getattr(data, "medium", "slab") != "slab" or getattr(data, "attenuation", None):
        raise InputError("the scan names a 2-D medium or an attenuation, which the volume "
                         "model does not have", None if source == "<Scan>" else source)
    data = override_geometry(data, speed_of_sound=speed_of_sound)
    sino, kept_wl = select(data, frames, wavelengths)
    in_model = None
    if model_response and method.startswith("mb-"):
        in_model = response if response is not None else data.response
        if in_model is None:
            raise InputError("--model-response: the scan has no detector response (give "
                             "one with --response)")
    sino, deconv = deconvolve_signals(sino, data, deconvolve, response)
    timings = {"load": time.perf_counter() - t}
    if callback is not None:
        callback("load", 1, 1)
    if grid is None:
        grid = default_volume_grid(data, n, fov)
    elif not isinstance(grid, VolumeGrid):
        raise InputError(f"grid must be a VolumeGrid for a 3-D scan, got "
                         f"{type(grid).__name__}")
    t = time.perf_counter()
    acq, sensors = data.acquisition, data.sensors
    if method in ("das", "ubp"):
        vol = backproject_volume(sino, grid, sensors, acq, method, band=band,
                                 element_size=element_width, element_shape=shape)
    else:
        y = bandpass(sino, acq.fs, band) if band is not None else sino
        n_iter = 50 if iters is None else int(iters)
        step = {"k": 0}

        def progress(_k: int, _x: np.ndarray) -> None:
            step["k"] += 1
            if callback is not None:
                callback(method, step["k"], n_iter * max(1, int(np.prod(y.shape[:-2]))))

        vol, record = reconstruct_volume_model_based(
            y, grid, sensors, acq, method=method.removeprefix("mb-"), lam=lam,
            n_iter=n_iter, response=in_model, element_size=element_width,
            element_shape=shape, on_iteration=progress)
        lam = record["lam"]
    timings[method] = time.perf_counter() - t
    if callback is not None:
        callback(method, 1, 1)
    if not np.all(np.isfinite(vol)):
        raise InputError(f"the {method} volume is not finite: the scan's values are out of "
                         f"range for this method", None if source == "<Scan>" else source)
    images = {method: vol}
    units = {method: VOLUME_RECON_METHODS[method]}
    if data.p0 is not None and data.grid == grid:
        images["truth"] = data.p0
        units["truth"] = UNITS_PA
    lead = sino.shape[:-2]
    axes = ["frame"] * len(lead)
    if lead and kept_wl is not None and kept_wl.size > 1 and lead[-1] == kept_wl.size:
        axes[-1] = "wavelength"
    logger.info("%s: %s", source, NOT_CALIBRATED)
    logger.info("reconstructed %s with %s on %s voxels (%s)", source, method,
                "x".join(str(m) for m in grid.shape), NOT_REFINED)
    prov = {
        "method": method, "source": source, "format": data.source_format,
        "dimensions": 3, "n_sensors": sensors.n_sensors,
        "speed_of_sound": acq.speed_of_sound, "speed_map": None,
        "grid": grid.to_dict(),
        "n_frames": int(np.prod(lead, dtype=int)), "by_frame": False, "axes": axes,
        "wavelengths": None if kept_wl is None else kept_wl.tolist(),
        "band": None if band is None else [None if b is None else float(b) for b in band],
        "deconvolution": deconv, "preset": None,
        "element_width": None if element_width is None else float(element_width),
        "element_shape": None if element_width is None else shape, "medium": "slab",
        "attenuation": None, "model_response": in_model is not None,
        "lam": None if lam is None else float(lam), "iters": iters,
        "detector_response": None if data.response is None else repr(data.response),
        "timings": timings,
        "refinement": {"applied": False, "model": "", "reason": NOT_REFINED},
        "calibration": None,
        "position_check": {"needs_calibration": False, "reason": NOT_CALIBRATED},
        "calibrated_file": False}
    return VolumeReconstruction(images, grid, units, prov)

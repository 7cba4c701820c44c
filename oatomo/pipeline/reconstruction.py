"""The reconstruction of a scan: :func:`reconstruct` and its result, :class:`Reconstruction`.

:func:`reconstruct` reads as its steps, each a call into its room: the options
(:mod:`oatomo.pipeline.options`), the signals (:mod:`oatomo.pipeline.frames`), whether to
calibrate and the geometry (:mod:`oatomo.pipeline.policy`), the method
(:func:`oatomo.recon.registry.reconstruct_sinogram`, or frame by frame), the learned
refinement (:mod:`oatomo.pipeline.refinement`) and the provenance.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from oatomo._limits import check_bytes
from oatomo.datasets.generate import TV_ITERS
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.io import is_volume_scan, load_calibration, load_scan
from oatomo.media import DEFAULT_MEDIUM, Attenuation, check_medium
from oatomo.pipeline.frames import (
    Signals,
    frame_selection,
    image_grid,
    load_signals,
    reconstruct_by_frame,
)
from oatomo.pipeline.options import (
    ReconstructOptions,
    operator_response,
    resolve_options,
    resolve_response,
)
from oatomo.pipeline.policy import (
    calibrated_geometry,
    decide_calibration,
    note_iterations,
    scan_geometry,
    warm_start,
)
from oatomo.pipeline.refinement import refine_images
from oatomo.pipeline.volume import VolumeReconstruction, reconstruct_volume_scan
from oatomo.progress import Callback
from oatomo.recon.registry import get_method, image_units, reconstruct_sinogram
from oatomo.refine.refiner import UNITS_PA, UNITS_REFINED
from oatomo.speed_map import OBJECT_OPTIONS, SpeedMap, as_speed_map, check_object_options

logger = logging.getLogger(__name__)

__all__ = ["Reconstruction", "reconstruct", "UNITS_PA", "UNITS_REFINED"]



@dataclass(frozen=True, eq=False)
class Reconstruction:
    """Named images on one grid, with their units and where they came from.

    Attributes
    ----------
    images
        Name -> float32 (..., n, n): the method's name (e.g. ``"ubp"``), and when refined
        ``"refined"`` and ``"uncertainty"``; ``"truth"`` for simulated scans.
    grid
        The grid of every image.
    units
        Name -> units: ``"Pa"`` where the image reads the initial pressure (FBP, the
        model-based methods, the truth), ``"a.u."`` where it is proportional to it only up
        to an unknown factor (UBP, DAS); refined images take their input's.
    provenance
        ``method``, ``source``, ``format``, ``n_sensors``, ``speed_of_sound``,
        ``speed_map`` (the object region and its speed,
        :meth:`oatomo.SpeedMap.to_dict`; None for one speed), ``n_frames``, ``iters``
        (the iterations allowed an iterative method) and ``iterations_run`` (per frame,
        for a TV started at the calibration's image or allowed past
        :data:`~oatomo.pipeline.options.RESPONSE_ITERS` with a stall test; else None),
        ``timings`` (s per step) and ``refinement`` (``applied``, ``reason``, ``model``,
        ``compatible`` when checked; when the model ran, its ``input`` (e.g.
        ``"ubp+das"``, the refiner's own reconstructions), ``method``, grid, decoder and
        ``guard``, the check of the refined image against the data, and ``nonneg``,
        the share of a TV refiner's answer below zero that was set to 0:
        :func:`oatomo.pipeline.refinement.refine_images`).
    """

    images: Mapping[str, np.ndarray]
    grid: Grid
    units: Mapping[str, str]
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", MappingProxyType(dict(self.images)))
        object.__setattr__(self, "units", MappingProxyType(dict(self.units)))
        object.__setattr__(self, "provenance", MappingProxyType(dict(self.provenance)))

    @property
    def refined(self) -> bool:
        """Whether the learned refinement ran."""
        return "refined" in self.images

    @property
    def image(self) -> np.ndarray:
        """The final image: the refined one when refined, else the method's."""
        return self.images["refined" if self.refined else self.provenance["method"]]

    @property
    def linear(self) -> np.ndarray:
        """The linear/model-based image shown beside the refinement."""
        return self.images[self.provenance["method"]]

    def attrs(self) -> dict[str, Any]:
        """Provenance and units as file attributes (for :func:`oatomo.io.save_images`)."""
        return {**self.provenance, "units": dict(self.units)}


def reconstruct(scan: Any, method: str | None = None, grid: Grid | None = None, *,
                n: int | None = None, fov: float | None = None,
                frames: int | Sequence[int] | None = None,
                wavelengths: float | Sequence[float] | None = None,
                speed_of_sound: float | None = None,
                object_speed_of_sound: float | None = None,
                object_radius: float | Sequence[float] | None = None,
                object_centre: Sequence[float] | None = None,
                calibration: str | os.PathLike | Mapping[str, Any] | None = None,
                band: tuple[float | None, float | None] | None = None,
                deconvolve: bool | float | None = None, response: Any = None,
                model_response: bool | Literal["auto"] = "auto",
                element_width: float | None = None,
                element_shape: str | None = None, medium: str | None = None,
                attenuation: Any = None,
                preset: Any = None,
                refine: bool | Literal["auto"] = "auto",
                model: str | os.PathLike | None = None, setup: str | None = None,
                samples: int = 16, lam: float | None = None, iters: int | None = None,
                calibrate: bool | Literal["auto"] = "auto", device: str = "cpu",
                guard: bool = True, callback: Callback | None = None
                ) -> Reconstruction | VolumeReconstruction:
    """Reconstruct a scan: load, linear or model-based image, learned refinement.

    A scan with 3-D sensor positions (:attr:`oatomo.io.Scan.is_3d`) is reconstructed
    into volumes instead (:func:`oatomo.pipeline.volume.reconstruct_volume_scan`: das,
    ubp, mb-tikhonov, mb-tv on an ``n``^3 cube of side ``fov``; a
    :class:`~oatomo.pipeline.volume.VolumeReconstruction`); the keywords without a 3-D
    counterpart are refused there with one line, and the position check, self-calibration
    and refinement are skipped, the provenance saying why.

    Parameters
    ----------
    scan
        A :class:`oatomo.io.Scan` or the path of a scan file (oatomo, IPASC, PATATO).
    method
        A name of :data:`oatomo.recon.registry.METHODS` (``das``, ``ubp``, ``fbp``, ``mb-tv``, ...);
        None: the preset's, else ``mb-tv`` (TV, the best physics image measured), or
        ``ubp``, the refiner's input, when ``refine`` is True.
    grid
        The image grid; None: :func:`default_grid` with ``n`` and ``fov``.
    n, fov
        Pixels per side and field of view (m) of the default grid.
    frames
        Index or indices of the frames to reconstruct; None: all (see :func:`select`).
    wavelengths
        Wavelength(s) to reconstruct, in metres (e.g. ``800e-9``); None: all.
    speed_of_sound
        The medium's speed of sound (m/s), instead of the file's.
    object_speed_of_sound, object_radius, object_centre
        Two speeds of sound: an object region (a disc of radius ``object_radius`` m, or an
        ellipse with two radii, centred at ``object_centre`` (x, y) m, default the origin)
        whose speed is ``object_speed_of_sound`` (m/s), in the coupling medium of
        ``speed_of_sound`` (or the file's): every method but ``fbp`` uses the straight-ray
        two-segment times of flight (:class:`oatomo.SpeedMap`). Given, the position check,
        the self-calibration (one speed) and the learned refinement (trained on one speed)
        are skipped; ``calibrate=True`` or ``refine=True`` are errors. A ``calibration``
        file's object region fills these when they are not given.
    calibration
        A calibration JSON file (``oatomo autofocus --json``, ``oatomo calibrate --json``)
        or its contents: its speed of sound (and ``t0``, sensor positions when present)
        replace the file's; ``speed_of_sound`` wins over it.
    band
        ``(f_low, f_high)`` band-pass in Hz applied to the signals first (None or 0 for an
        open edge).
    deconvolve
        Remove the detector response (the file's, or ``response``) by Wiener deconvolution
        first (:func:`oatomo.response.wiener_deconvolve`); a number is the regularisation
        ``lam`` (``True``: :data:`oatomo.response.DEFAULT_WIENER`).
    response
        A :class:`oatomo.response.DetectorResponse` to use instead of the file's.
    model_response
        Model-based methods only: put the detector response (the file's, or ``response``)
        into the forward operator instead of deconvolving it first. ``"auto"`` (default):
        whenever the scan carries a response (or one is given), the method is
        model-based and ``deconvolve`` is not asked for; it then runs
        :data:`oatomo.pipeline.options.RESPONSE_ITERS` iterations unless ``iters`` (or the
        preset) says otherwise, and TV goes on from there while its objective still falls
        (at most :data:`oatomo.pipeline.options.RESPONSE_MAX_ITERS`; after
        self-calibration, :data:`oatomo.pipeline.policy.WARM_ITERS` from the
        calibration's image). ``True``: always (an error without a response);
        ``False``: never. 3-D scans: ``"auto"`` means ``False``.
    element_width
        Width (m) of flat sensor elements: das and ubp weight the backprojection with
        their directivity (:func:`oatomo.backproject`), model-based methods put it in the
        operator; None: point sensors. For a 3-D scan, the side of square elements (or
        the diameter of disc ones, ``element_shape``).
    element_shape
        3-D scans only: the face of flat elements, ``"square"`` (default) or ``"disc"``.
    medium
        The medium that made the signals, ``"slab"`` or ``"2d"`` (line sources, e.g. 2-D
        k-Wave); None: the scan's (:attr:`oatomo.io.Scan.medium`, slab when it names
        none). Model-based methods model it, the others convert the signals to the slab
        first (:func:`oatomo.media.line_to_slab`).
    attenuation
        An :class:`oatomo.media.Attenuation` to compensate; None: the scan's, if any.
        Model-based methods model it, the others compensate the signals first
        (:func:`oatomo.media.compensate`). With either not the default, the position
        check is skipped (it models the slab without attenuation), ``calibrate=True`` is
        refused and the scan is not refined.
    preset
        A :class:`oatomo.pipeline.presets.Preset`, a preset TOML file or a bundled preset's
        name: its settings fill every keyword left at None here (explicit values win).
    refine
        ``"auto"``: refine when the shipped model for the method (the TV refiner for
        ``mb-tv``, the scanner-family refiner for ``ubp`` and ``das``) or ``model`` fits
        the scan's geometry and takes the method's image, and record why not otherwise;
        ``True``: refine or raise :class:`InputError`;
        ``False``: never.
    model
        A refinement checkpoint (default: the model shipped with oatomo for the method,
        :func:`oatomo.resources.default_model_path`).
    setup
        The scan's known training setup: refine with that setup's variant decoder.
    samples
        Posterior samples for the uncertainty map.
    lam, iters
        Regularisation weight and iterations of model-based methods (default 50, or 100
        with the detector response in the operator, see ``model_response``).
    calibrate
        ``True``: estimate the sensor positions and speed of sound from the data first
        (:func:`oatomo.calibrate`) and reconstruct with the estimates; the provenance's
        ``calibration`` entry summarises them. ``"auto"`` (default): first test whether
        the data agree with the file's positions (:func:`oatomo.calibration.check_positions`,
        about two TV reconstructions at a quarter of the pixels per side; the provenance's
        ``position_check`` entry) and calibrate only when they do not. A scan calibrated
        that way is reconstructed with ``mb-tv`` unless ``method`` is given, and its TV
        image refined by the TV refiner like any other (the guard keeping calibrated TV
        when the refined image disagrees with the data). A scan reconstructed with
        estimated positions (self-calibrated, ``calibrate=True``, or a file written by
        ``oatomo calibrate``) with another method or a user's ``model`` is not refined
        unless ``refine=True`` (that refiner was trained on nominal-position images); with
        ``refine=True`` and such a method the check is made and reported but the scan is
        not calibrated.
        Files that are already calibrated, a ``calibration`` given, scans too large for
        memory and arrays that cannot be calibrated (3-D, fewer than 8 sensors) are not
        tested. ``False``: never.
    callback
        ``callback(what, done, total)`` after each step (``"load"``, ``method``,
        ``"refine"``) and during iterative methods.

    guard
        Check the refined image against the data and keep the method's image when it
        fails (:func:`oatomo.refine.guard.check_refined`; the provenance's
        ``refinement["guard"]`` has the verdict and its numbers). False: keep the refined
        image unchecked.
    device
        PyTorch device of the refinement model (``"cpu"``, ``"cuda"``, ``"cuda:1"``,
        ``"auto"``: CUDA when present); not ``"cpu"``: the PyTorch back end.

    Returns
    -------
    Reconstruction
        Images in Pa (method, truth, refined, uncertainty) on one grid, with provenance.

    Examples
    --------
    >>> rec = oatomo.reconstruct("scan.h5", "ubp")            # doctest: +SKIP
    >>> rec.image.shape, rec.units["refined"], rec.provenance["refinement"]["reason"]
    """
    if _is_volume(scan):
        return reconstruct_volume_scan(
            scan, method, grid, n=n, fov=fov, frames=frames, wavelengths=wavelengths,
            speed_of_sound=speed_of_sound, band=band, deconvolve=deconvolve,
            response=response, model_response=model_response is True, lam=lam,
            iters=iters, callback=callback, object_speed_of_sound=object_speed_of_sound,
            object_radius=object_radius, object_centre=object_centre,
            calibration=calibration, element_width=element_width,
            element_shape=element_shape, attenuation=attenuation,
            preset=preset, model=model, setup=setup, medium=medium, refine=refine,
            calibrate=calibrate)
    if element_shape is not None:
        raise InputError("--element-shape is for 3-D arrays (square or disc faces); a 2-D "
                         "element is its width (--element-width)")
    # the steps: options, signals, grid, calibration decision, geometry, method, refinement
    options = resolve_options(ReconstructOptions(
        method=method, n=n, fov=fov, frames=frames, wavelengths=wavelengths,
        speed_of_sound=speed_of_sound, object_speed_of_sound=object_speed_of_sound,
        object_radius=object_radius, object_centre=object_centre,
        calibration=calibration, band=band,
        deconvolve=deconvolve, response=response, model_response=model_response,
        element_width=element_width, medium=medium, attenuation=attenuation, preset=preset,
        refine=refine, model=model, setup=setup,
        samples=samples, lam=lam, iters=iters, calibrate=calibrate, device=device,
        guard=bool(guard)))
    timer = _StepTimer(callback)
    t = time.perf_counter()
    signals = load_signals(scan, options)
    options = _with_media(options, signals.data)
    timer.done("load", t)
    if grid is None:
        grid = image_grid(signals, options.n, options.fov)
    check_image_memory(signals, grid)
    options, check_record, refine_reason = _two_speed_policy(options)
    if check_record is None:
        options, check_record, refine_reason = decide_calibration(signals, grid, options,
                                                                  timer.done)
    t = time.perf_counter()
    sensors, acquisition, cal_record, calibration = scan_geometry(
        signals.data, calibrate=options.calibrate, grid=grid, callback=callback,
        check=check_record if check_record and check_record.get("needs_calibration")
        else None)
    if check_record and check_record.get("calibrated") is False and refine_reason:
        refine_reason = ("the file's positions disagree with its data and self-calibration "
                         "was not possible (see the position check)")
    if options.calibrate:
        timer.done("calibrate", t)
    t = time.perf_counter()
    method_name = get_method(options.method).name
    speed_map = as_speed_map(acquisition.speed_of_sound,
                             *(getattr(options, k) for k in OBJECT_OPTIONS))
    options = resolve_response(options, signals.data)
    options, start = warm_start(options, calibration, signals, cal_record)
    image, lead, signals = _method_images(signals, grid, sensors, acquisition, options,
                                          callback, speed_map, start)
    iterations_run = note_iterations(start, cal_record)
    timer.done(method_name, t)
    t = time.perf_counter()
    if refine_reason is None:
        refine_reason = calibrated_geometry(signals.data, options)
    images, record = _refined_images(image, method_name, signals, grid, sensors,
                                     acquisition, options, refine_reason)
    if record["applied"] or "guard" in record:  # the model ran (the guard may reject it)
        timer.done("refine", t)
    images, units = _with_truth(images, signals, grid, method_name, record)
    logger.info("reconstructed %s with %s on %dx%d (%s)", signals.source, method_name, grid.n,
                grid.n, "refined" if record["applied"] else record["reason"])
    return Reconstruction(images, grid, units, _provenance(
        method_name, signals, options, sensors, acquisition, lead, speed_map,
        timings=timer.timings,
        refinement=record, calibration=cal_record, position_check=check_record,
        iterations_run=iterations_run))


def _is_volume(scan: Any) -> bool:
    """Whether ``scan`` (a Scan or a scan file) has 3-D sensor positions."""
    if isinstance(scan, (str, os.PathLike)):
        return load_scan(scan, metadata_only=True).is_3d
    return is_volume_scan(scan)


def _with_media(options: ReconstructOptions, scan: Any) -> ReconstructOptions:
    """``options`` with the scan's medium and attenuation where none was given, checked."""
    medium = check_medium(options.medium if options.medium is not None
                          else getattr(scan, "medium", DEFAULT_MEDIUM), "medium")
    attenuation = options.attenuation if options.attenuation is not None \
        else getattr(scan, "attenuation", None)
    if attenuation is not None and not isinstance(attenuation, Attenuation):
        raise InputError(f"attenuation must be an oatomo.media.Attenuation, got "
                         f"{type(attenuation).__name__}")
    return replace(options, medium=medium, attenuation=attenuation)


class _StepTimer:
    """Seconds per step of one reconstruction; each finished step is also reported to the
    callback as ``callback(step, 1, 1)``."""

    def __init__(self, callback: Callback | None) -> None:
        self.timings: dict[str, float] = {}
        self.callback = callback

    def done(self, step: str, t: float) -> None:
        """Record that ``step``, started at ``time.perf_counter()`` ``t``, is done."""
        self.timings[step] = time.perf_counter() - t
        if self.callback is not None:
            self.callback(step, 1, 1)


def _two_speed_policy(options: ReconstructOptions
                      ) -> tuple[ReconstructOptions, dict[str, Any] | None, str | None]:
    """With an object region (the options' or the calibration file's): the options with
    ``calibrate`` and ``refine`` off, the position check's record (not run) and why the
    scan is not refined; without one, the options unchanged and two Nones.

    Raises
    ------
    InputError
        For ``calibrate=True`` or ``refine=True`` with an object region.
    """
    if options.calibration is not None:
        cal = load_calibration(options.calibration)
        options = replace(options, **{k: cal[k] for k in OBJECT_OPTIONS
                                      if k in cal and getattr(options, k) is None})
    if not check_object_options(*(getattr(options, k) for k in OBJECT_OPTIONS)):
        return options, None, None
    if options.calibrate is True:
        raise InputError("calibrate: the self-calibration models one speed of sound; it "
                         "cannot be combined with an object speed of sound")
    if options.refine is True:
        raise InputError("refine: the refiner was trained on one speed of sound; it cannot "
                         "be combined with an object speed of sound")
    why = "an object region of its own speed of sound is given (the check models one speed)"
    options = replace(options, calibrate=False, refine=False)
    return (options, {"needs_calibration": False, "reason": why},
            "two speeds of sound: the refiner was trained on one")


def _require_finite(image: np.ndarray, problem: str, path: Any) -> None:
    """Raise :class:`InputError` (naming ``path``) unless every pixel is finite."""
    if not np.all(np.isfinite(image)):
        raise InputError(problem, None if path in (None, "<Scan>") else path)


#: Bytes per pixel and frame a reconstruction holds at once: the method's image and its
#: accumulator, the truth on the same grid, the finiteness check's mask.
IMAGE_BYTES_PER_PIXEL = 16


def check_image_memory(signals: Signals, grid: Grid) -> None:
    """Raise :class:`InputError` when the images of every selected frame on ``grid`` would
    need more than ``OATOMO_MAX_BYTES`` (checked before any work; a scan reconstructed
    frame by frame is checked by :func:`oatomo.pipeline.frames.frame_selection`)."""
    if signals.by_frame or signals.sinogram is None:
        return
    frames = int(np.prod(signals.sinogram.shape[:-2], dtype=np.int64))
    check_bytes(float(IMAGE_BYTES_PER_PIXEL) * frames * grid.n ** 2,
                f"reconstructing {frames} frame(s) on {grid.n}x{grid.n} pixels",
                None if signals.source in (None, "<Scan>") else signals.source)


def _method_images(signals: Signals, grid: Grid, sensors: SensorArray,
                   acquisition: Acquisition, options: ReconstructOptions,
                   callback: Callback | None, speed_map: SpeedMap | None = None,
                   start: dict[str, Any] | None = None
                   ) -> tuple[np.ndarray, tuple[int, ...], Signals]:
    """Step 3: the method's images of every selected frame, in memory or (a scan too
    large for memory) frame by frame; with the images' leading axes and the signals (for
    frame by frame, with the wavelengths kept and the deconvolution's record). With
    ``speed_map``, in two speeds of sound; ``start``, ``norm_sq``: the TV's starting image
    and step-size bound (in memory only, see :func:`~oatomo.pipeline.policy.warm_start`)."""
    spec = get_method(options.method)
    in_model = operator_response(options, signals.data)
    if signals.by_frame:
        index, kept_wl = frame_selection(signals.data, options.frames, options.wavelengths,
                                         grid, signals.source)
        image, deconv_record = reconstruct_by_frame(
            signals.scan, index, grid, sensors, acquisition, spec.name, scan=signals.data,
            deconvolve=options.deconvolve, response=options.response, band=options.band,
            lam=options.lam, iters=options.iters, callback=callback,
            element_width=options.element_width, in_model=in_model, speed_map=speed_map,
            medium=options.medium, attenuation=options.attenuation)
        lead = index.shape
        signals = replace(signals, wavelengths=kept_wl, deconvolution=deconv_record)
    else:
        image = reconstruct_sinogram(signals.sinogram, grid, sensors, acquisition, spec.name,
                                     band=options.band, lam=options.lam, iters=options.iters,
                                     callback=callback, element_width=options.element_width,
                                     response=in_model, speed_map=speed_map,
                                     medium=options.medium, attenuation=options.attenuation,
                                     **(start or {}))
        lead = signals.sinogram.shape[:-2]
    _require_finite(image, f"the {spec.name} image is not finite: the scan's values (sample "
                    f"scale, t0, sensor geometry) are out of range for this method",
                    signals.source)
    return image, tuple(lead), signals


def _refined_images(image: np.ndarray, method: str, signals: Signals, grid: Grid,
                    sensors: SensorArray, acquisition: Acquisition,
                    options: ReconstructOptions, refine_reason: str | None
                    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Step 4: the method's image with the learned refinement's, when it applies.

    Returns the named images and the refinement record (``applied``, ``reason``,
    ``model``, ...). ``refine_reason``: why the scan is not refined, decided before (None:
    :func:`oatomo.pipeline.refinement.refine_images` decides).
    """
    images: dict[str, np.ndarray] = {method: image}
    if signals.by_frame:
        refine_reason = ("the scan is larger than OATOMO_MAX_BYTES and was reconstructed "
                         "frame by frame")
    if options.medium != DEFAULT_MEDIUM or options.attenuation is not None:
        if options.refine is True:
            raise InputError("the refiner was trained on slab scans without attenuation; "
                             "reconstruct this scan without refine")
        refine_reason = ("the refiner was trained on slab scans without attenuation, and "
                         "this one names another medium or attenuation")
    if refine_reason is not None:
        return images, {"applied": False, "model": str(options.model or ""),
                        "reason": refine_reason}
    extra, record = refine_images(grid, signals.sinogram, sensors, acquisition,
                                  model=options.model, refine=options.refine,
                                  setup=options.setup, samples=options.samples,
                                  physics=image, method=method, band=options.band,
                                  response=_record_response(signals, options),
                                  element_width=options.element_width,
                                  device=options.device, guard=options.guard,
                                  reuse=_default_settings(options, signals),
                                  pipeline_default=_pipeline_default(options, signals))
    for key, img in extra.items():
        _require_finite(img, f"the {key} image is not finite: the refinement model's "
                        f"weights hold NaN or Inf", record.get("model"))
    images.update(extra)
    return images, record


def _default_settings(options: ReconstructOptions, signals: Signals) -> bool:
    """Whether the method's image was made with the settings a refiner's input of the same
    name is made with (default weight and iterations, point sensors, no response in the
    operator), so step 4 may take it as that input."""
    return (options.lam is None and options.iters in (None, TV_ITERS)
            and options.element_width is None
            and operator_response(options, signals.data) is None)


def _pipeline_default(options: ReconstructOptions, signals: Signals) -> bool:
    """Whether the method's image was made as the pipeline makes it by default (no weight,
    iterations, band, element width or response given, signals not deconvolved, the scan's
    own detector response, if any, in the operator): the images a refiner of the
    pipeline's own image was trained on."""
    return (options.lam is None and not options.iters_given
            and options.element_width is None and options.response is None
            and options.band is None and signals.deconvolution is None
            and operator_response(options, signals.data) is getattr(signals.data,
                                                                    "response", None))


def _record_response(signals: Signals, options: ReconstructOptions) -> Any:
    """The detector response the signals still carry (the one given, else the scan's;
    None once deconvolved): the refinement guard puts it into its forward operator."""
    if signals.deconvolution is not None:
        return None
    return (options.response if options.response is not None
            else getattr(signals.data, "response", None))


def _with_truth(images: dict[str, np.ndarray], signals: Signals, grid: Grid,
                method: str, refinement: dict[str, Any]
                ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The images with the scan's truth when it is on their grid (``"truth"``), and the
    units of each: the method's (:attr:`oatomo.recon.registry.MethodSpec.units`); the
    refined image and its uncertainty those of the refiner's first input channel."""
    units = {method: get_method(method).units}
    refined_units = image_units(str(refinement.get("input", "")).split("+")[0])
    units.update({k: refined_units for k in ("refined", "uncertainty") if k in images})
    truth = getattr(signals.data, "p0", None)
    if truth is not None and signals.data.grid == grid:
        images["truth"] = truth
        units["truth"] = UNITS_PA
    return images, units


def _axes(lead: tuple[int, ...], wavelengths: np.ndarray | None) -> list[str]:
    """Names of an image's leading axes: ``wavelength`` last when there is a wavelength
    axis, ``frame`` before it."""
    names = ["frame"] * len(lead)
    if lead and wavelengths is not None and wavelengths.size > 1 \
            and lead[-1] == wavelengths.size:
        names[-1] = "wavelength"
    return names


def _provenance(method: str, signals: Signals, options: ReconstructOptions,
                sensors: SensorArray, acquisition: Acquisition, lead: tuple[int, ...],
                speed_map: SpeedMap | None, *,
                timings: dict[str, float], refinement: dict[str, Any],
                calibration: dict[str, Any] | None,
                position_check: dict[str, Any] | None,
                iterations_run: list[int] | None = None) -> dict[str, Any]:
    """The provenance of a :class:`Reconstruction` (see there)."""
    data, kept_wl, band = signals.data, signals.wavelengths, options.band
    return {
        "method": method, "source": signals.source,
        "format": getattr(data, "source_format", "oatomo"), "n_sensors": sensors.n_sensors,
        "speed_of_sound": acquisition.speed_of_sound,
        "speed_map": None if speed_map is None else speed_map.to_dict(),
        "n_frames": int(np.prod(lead, dtype=int)), "by_frame": signals.by_frame,
        "axes": _axes(lead, kept_wl),
        "wavelengths": None if kept_wl is None else kept_wl.tolist(),
        "band": None if band is None else [None if b is None else float(b) for b in band],
        "deconvolution": signals.deconvolution, "preset": options.preset_name,
        "element_width": options.element_width,
        "medium": options.medium,
        "attenuation": None if options.attenuation is None else options.attenuation.to_dict(),
        "model_response": options.model_response is True,
        "iters": options.iters if get_method(method).iterative else None,
        "iterations_run": iterations_run,
        "detector_response": None if getattr(data, "response", None) is None
        else repr(data.response),
        "timings": timings, "refinement": refinement, "calibration": calibration,
        "position_check": position_check,
        "calibrated_file": bool(getattr(data, "calibration", None))}

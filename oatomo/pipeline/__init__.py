"""The reconstruction pipeline every caller uses: scan in, named images out.

:func:`reconstruct` runs the steps in order, each a plain function a user can also call:

1. :func:`load` — a :class:`~oatomo.io.Scan` or a scan file;
2. :func:`scan_geometry` — the sensors and acquisition to reconstruct with: the scan's
   own, or (``calibrate=True``) those estimated from the data (:mod:`oatomo.calibration`);
3. :func:`reconstruct_sinogram` — the linear or model-based method of
   :data:`oatomo.recon.registry.METHODS`, all frames;
4. :func:`refine_images` — the learned refinement, when a model applies.

The command line (``oatomo reconstruct``), ``oatomo dataset``, ``oatomo evaluate`` and the
benchmarks call these functions; none keeps its own copy.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from oatomo._limits import check_bytes, max_bytes
from oatomo.calibration import MIN_SENSORS, check_positions
from oatomo.calibration import calibrate as run_calibration
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray, check_geometry
from oatomo.io import as_scan, default_grid, load_scan
from oatomo.pipeline.refinement import refine_images
from oatomo.recon.registry import Callback, get_method, reconstruct_sinogram
from oatomo.refine.refiner import UNITS_PA, UNITS_REFINED

logger = logging.getLogger(__name__)

__all__ = ["Reconstruction", "reconstruct", "reconstruct_sinogram", "default_grid", "load",
           "scan_geometry", "override_geometry", "select", "refine_images", "UNITS_PA",
           "UNITS_REFINED"]


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """Named images on one grid, with their units and where they came from.

    Attributes
    ----------
    images
        Name -> float32 (..., n, n): the method's name (e.g. ``"ubp"``), and when refined
        ``"refined"`` and ``"uncertainty"`` (plus ``"linear"``, the model's own input, when
        the model works on another grid or method); ``"truth"`` for simulated scans.
    grid
        The grid of every image.
    units
        Name -> units (``"Pa"`` or ``"fraction of max p0"``).
    provenance
        ``method``, ``source``, ``format``, ``n_sensors``, ``speed_of_sound``, ``n_frames``,
        ``timings`` (s per step) and ``refinement`` (``applied``, ``reason``, ``model``,
        ``compatible`` when checked, and the model's input, grid and decoder when applied).
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
        key = "linear" if "linear" in self.images else self.provenance["method"]
        return self.images[key]

    def attrs(self) -> dict[str, Any]:
        """Provenance and units as file attributes (for :func:`oatomo.io.save_images`)."""
        return {**self.provenance, "units": dict(self.units)}


def load(scan: Any) -> tuple[Any, str]:
    """Step 1: a :class:`~oatomo.io.Scan` as given, or the scan file at a path."""
    return as_scan(scan)


def override_geometry(scan: Any, *, speed_of_sound: float | None = None,
                      calibration: str | os.PathLike | Mapping[str, Any] | None = None
                      ) -> Any:
    """Step 1b: the scan with a speed of sound and/or geometry the user knows better.

    Parameters
    ----------
    scan
        A :class:`~oatomo.io.Scan` (not modified).
    speed_of_sound
        The medium's speed of sound (m/s); wins over ``calibration``'s.
    calibration
        A calibration JSON file (as ``oatomo autofocus --json`` or ``oatomo calibrate
        --json`` write) or its contents: ``speed_of_sound`` (m/s), optionally ``t0`` (s)
        and ``positions`` ((N, 2), m); see :func:`oatomo.io.load_calibration`.

    Returns
    -------
    Scan
        A copy with the new acquisition and sensors (the scan itself when nothing changes).
    """
    from dataclasses import replace

    from oatomo.io import load_calibration

    if speed_of_sound is None and calibration is None:
        return scan
    acq, sensors = scan.acquisition, scan.sensors
    if calibration is not None:
        cal = load_calibration(calibration)
        if "positions" in cal:
            if len(cal["positions"]) != sensors.n_sensors:
                raise InputError(f"the calibration is for {len(cal['positions'])} sensors, "
                                 f"the scan has {sensors.n_sensors}")
            sensors = SensorArray(cal["positions"])
        acq = replace(acq, **{k: cal[k] for k in ("speed_of_sound", "t0") if k in cal})
    if speed_of_sound is not None:
        acq = replace(acq, speed_of_sound=_speed(speed_of_sound))
    return replace(scan, sensors=sensors, acquisition=acq)


def _speed(c: Any) -> float:
    try:
        c = float(c)
    except (TypeError, ValueError):
        raise InputError(f"speed of sound must be a number in m/s, got {c!r}") from None
    if not (np.isfinite(c) and c > 0):
        raise InputError(f"speed of sound must be > 0 m/s, got {c!r}")
    return c


def _indices(what: str, idx: Any, size: int) -> np.ndarray | int:
    """Validated index (int) or indices (1-D int array) into an axis of ``size``."""
    arr = np.asarray(idx)
    if arr.dtype.kind not in "iu" or arr.ndim > 1 or arr.size == 0:
        raise InputError(f"{what} must be an index or a list of indices, got {idx!r}")
    bad = arr[(arr < -size) | (arr >= size)]
    if bad.size:
        raise InputError(f"{what} index {int(bad[0])} out of range: the scan has {size}")
    return int(arr) if arr.ndim == 0 else arr


def select(scan: Any, frames: int | Sequence[int] | None = None,
           wavelengths: float | Sequence[float] | None = None
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """Step 1c: the frames and wavelengths of a scan to reconstruct.

    When the scan has several wavelengths (``scan.wavelengths`` matches the sinogram's
    third-last axis) the sinogram is ``(frames, wavelengths, N, T)`` (the frame axis may be
    absent): ``frames`` index the frame axis and ``wavelengths`` (in metres, matched to
    within 0.5 nm) the wavelength axis. Otherwise ``frames`` index the leading axes
    flattened. An integer keeps no axis; a list keeps one.

    Returns
    -------
    tuple
        The sinogram (..., N, T) and the wavelengths it keeps (m; None without any).
    """
    sino = scan.sinogram
    wl = None if scan.wavelengths is None else np.atleast_1d(
        np.asarray(scan.wavelengths, np.float64))
    has_axis = wl is not None and wl.size > 1 and sino.ndim >= 3 and sino.shape[-3] == wl.size
    if wavelengths is not None:
        want = np.asarray(wavelengths, np.float64)
        if want.ndim > 1 or want.size == 0 or not np.all(np.isfinite(want)):
            raise InputError(f"wavelengths must be one or more numbers in metres, got "
                             f"{wavelengths!r}")
        if wl is None:
            raise InputError("the scan has no wavelengths to select from")
        idx = np.abs(wl[None, :] - np.atleast_1d(want)[:, None]).argmin(axis=1)
        off = np.abs(wl[idx] - np.atleast_1d(want)) > 0.5e-9
        if np.any(off):
            raise InputError(f"wavelength {np.atleast_1d(want)[off][0]:g} m is not in the scan "
                             f"({', '.join(f'{w:g}' for w in wl)} m)")
        if has_axis:
            sel = int(idx[0]) if want.ndim == 0 else idx
            sino = sino[..., sel, :, :]
            wl = wl[idx]
            has_axis = want.ndim == 1
    if frames is not None:
        lead = sino.shape[:-3] if has_axis else sino.shape[:-2]
        stack = sino.reshape((-1,) + sino.shape[len(lead):])
        sino = stack[_indices("frames", frames, len(stack))]
    return sino, wl


def scan_geometry(scan: Any, *, calibrate: bool = False, grid: Grid | None = None,
                  callback: Callback | None = None) -> tuple[SensorArray, Acquisition,
                                                            dict[str, Any] | None]:
    """Step 2: the sensors and acquisition to reconstruct with.

    The scan's own (the nominal ones, or the estimates of a calibrated scan file), or with
    ``calibrate=True`` those estimated from the data by :func:`oatomo.calibrate`.
    Returns ``(sensors, acquisition, record)``; ``record`` summarises the calibration
    (None without one).
    """
    if not calibrate:
        return scan.sensors, scan.acquisition, None
    def report(rec: dict[str, float], _: np.ndarray) -> None:
        if callback is not None:
            callback("calibrate", int(rec["step"]), int(rec["rounds_total"]))

    cal = run_calibration(scan, grid, callback=report)
    shift = np.hypot(*cal.displacement.T)
    record = {"speed_of_sound": cal.speed_of_sound,
              "nominal_speed_of_sound": cal.nominal_speed_of_sound,
              "rms_shift_m": float(np.sqrt(np.mean(shift ** 2))),
              "max_shift_m": float(shift.max()), "prior_std_m": cal.prior_std,
              "frame_std": cal.frame_std,
              "misfit": [h["misfit"] for h in cal.history], "time_s": cal.time_s}
    return cal.sensors, cal.acquisition(scan.acquisition), record


def _check_positions(data: Any, sino: np.ndarray | None, grid: Grid, by_frame: bool,
                     calibration: Any) -> dict[str, Any]:
    """``calibrate="auto"``: the position check's record (``needs_calibration``), or why
    the scan was not checked (``reason``, ``needs_calibration`` False)."""
    positions = np.asarray(data.sensors.positions)
    why = None
    if by_frame:
        why = "the scan is larger than OATOMO_MAX_BYTES"
    elif getattr(data, "calibration", None):
        why = "the file is already calibrated"
    elif calibration is not None:
        why = "a calibration was given"
    elif positions.ndim != 2 or positions.shape[1] != 2:
        why = "only 2-D sensor arrays can be calibrated"
    elif len(positions) < MIN_SENSORS:
        why = f"fewer than {MIN_SENSORS} sensors"
    if why is None:
        try:
            check = check_positions(sino, data.sensors, data.acquisition, grid)
        except InputError as exc:
            why = exc.problem
        else:
            out = check.to_dict()
            if check.reason:
                logger.info("position check: %s", check.reason)
            elif check.needs_calibration:
                logger.info("the data disagree with the file's sensor positions (spread "
                            "%.0f um > %.0f um): self-calibrating", check.spread * 1e6,
                            check.threshold * 1e6)
            return out
    logger.info("position check skipped: %s", why)
    return {"needs_calibration": False, "reason": why}


def _too_big_for_memory(scan: Any) -> bool:
    """Whether ``scan`` is a multi-frame scan file whose sinogram exceeds the memory limit
    (:func:`oatomo._limits.max_bytes`): it is then reconstructed frame by frame."""
    if not isinstance(scan, (str, os.PathLike)):
        return False
    meta = load_scan(scan, metadata_only=True)
    return meta.n_frames > 1 and 8.0 * meta.sinogram.size > max_bytes()


def _frame_selection(scan: Any, frames: Any, wavelengths: Any, grid: Grid, path: Any
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`select` on the frame indices of a scan file's metadata (its sinogram is
    not read): the flat indices of the frames to reconstruct, shaped as the selection's
    leading axes, and the wavelengths kept."""
    from dataclasses import replace

    lead = tuple(scan.sinogram.shape[:-2])
    total = int(np.prod(lead, dtype=np.int64))
    if frames is None and wavelengths is None:  # all of them: the images are the limit
        check_bytes(4.0 * total * grid.n ** 2, f"{total} reconstructed frames", path)
    check_bytes(8.0 * total, f"the indices of {total} frames", path)
    index = np.arange(total, dtype=np.int64).reshape(lead + (1, 1))
    sel, kept_wl = select(replace(scan, sinogram=index), frames, wavelengths)
    return np.asarray(sel)[..., 0, 0], kept_wl


def _reconstruct_by_frame(path: Any, index: np.ndarray, grid: Grid, sensors: SensorArray,
                          acquisition: Acquisition, method: str, *, scan: Any,
                          deconvolve: bool | float, response: Any,
                          band: tuple[float | None, float | None] | None,
                          lam: float | None, iters: int, callback: Callback | None,
                          element_width: float | None, in_model: Any
                          ) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Reconstruct the frames ``index`` (flat indices, any shape) of a scan file one at a
    time, each read alone from the file (and deconvolved when asked); the images are
    (``index.shape`` + grid) float32, with the deconvolution record."""
    from oatomo.io import read_frame

    flat = np.asarray(index, np.int64).reshape(-1)
    check_bytes(4.0 * len(flat) * grid.n ** 2, f"{len(flat)} reconstructed frames", path)
    out = np.empty((len(flat),) + grid.shape, np.float32)
    record = None
    for j, k in enumerate(flat):
        frame, record = _deconvolve(read_frame(path, int(k)), scan, deconvolve, response)
        out[j] = reconstruct_sinogram(frame, grid, sensors, acquisition, method, band=band,
                                      lam=lam, iters=iters, element_width=element_width,
                                      response=in_model)
        if callback is not None:
            callback(method, j + 1, len(flat))
    return out.reshape(np.shape(index) + grid.shape), record


def _require_finite(image: np.ndarray, problem: str, path: Any) -> None:
    """Raise :class:`InputError` (naming ``path``) unless every pixel is finite."""
    if not np.all(np.isfinite(image)):
        raise InputError(problem, None if path in (None, "<Scan>") else path)


def _deconvolve(sino: np.ndarray, scan: Any, deconvolve: bool | float, response: Any
                ) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Step 1d: the signals with the detector response removed, when asked."""
    from oatomo.response import DEFAULT_WIENER, DetectorResponse, wiener_deconvolve

    if response is not None and not isinstance(response, DetectorResponse):
        raise InputError(f"response must be a DetectorResponse, got {type(response).__name__}")
    if deconvolve is False or deconvolve is None:
        return sino, None
    response = response if response is not None else getattr(scan, "response", None)
    if response is None:
        raise InputError("cannot deconvolve: the scan has no detector response (give one, "
                         "e.g. --response 5e6:0.8 for a 5 MHz, 80 % Gaussian band)")
    lam = DEFAULT_WIENER if deconvolve is True else deconvolve
    if isinstance(lam, bool) or not isinstance(lam, (int, float)):
        raise InputError(f"deconvolve must be True, False or a regularisation > 0, got "
                         f"{deconvolve!r}")
    out = wiener_deconvolve(sino, scan.acquisition.fs, response, float(lam))
    return out, {"response": response.to_dict() if response.impulse_response is None
                 else repr(response), "lam": float(lam)}


def _axes(lead: tuple[int, ...], wavelengths: np.ndarray | None) -> list[str]:
    """Names of an image's leading axes: ``wavelength`` last when there is a wavelength
    axis, ``frame`` before it."""
    names = ["frame"] * len(lead)
    if lead and wavelengths is not None and wavelengths.size > 1 \
            and lead[-1] == wavelengths.size:
        names[-1] = "wavelength"
    return names


def reconstruct(scan: Any, method: str | None = None, grid: Grid | None = None, *,
                n: int | None = None, fov: float | None = None,
                frames: int | Sequence[int] | None = None,
                wavelengths: float | Sequence[float] | None = None,
                speed_of_sound: float | None = None,
                calibration: str | os.PathLike | Mapping[str, Any] | None = None,
                band: tuple[float | None, float | None] | None = None,
                deconvolve: bool | float | None = None, response: Any = None,
                model_response: bool = False, element_width: float | None = None,
                preset: Any = None,
                refine: bool | Literal["auto"] = "auto",
                model: str | os.PathLike | None = None, setup: str | None = None,
                samples: int = 16, lam: float | None = None, iters: int | None = None,
                calibrate: bool | Literal["auto"] = "auto",
                callback: Callback | None = None) -> Reconstruction:
    """Reconstruct a scan: load, linear or model-based image, learned refinement.

    Parameters
    ----------
    scan
        A :class:`oatomo.io.Scan` or the path of a scan file (oatomo, IPASC, PATATO).
    method
        A name of :data:`oatomo.recon.registry.METHODS` (``das``, ``ubp``, ``fbp``, ``mb-tv``, ...);
        None: the preset's, else ``ubp``.
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
        into the forward operator instead of deconvolving it first.
    element_width
        Width (m) of flat sensor elements: das and ubp weight the backprojection with
        their directivity (:func:`oatomo.backproject`), model-based methods put it in the
        operator; None: point sensors.
    preset
        A :class:`oatomo.pipeline.presets.Preset`, a preset TOML file or a bundled preset's name: its
        settings fill every keyword left at None here (explicit values win).
    refine
        ``"auto"``: refine when the shipped model (or ``model``) fits the scan's geometry,
        and record why not otherwise; ``True``: refine or raise :class:`InputError`;
        ``False``: never.
    model
        A refinement checkpoint (default: the model shipped with oatomo).
    setup
        The scan's known training setup: refine with that setup's variant decoder.
    samples
        Posterior samples for the uncertainty map.
    lam, iters
        Regularisation weight and iterations (default 50) of model-based methods.
    calibrate
        ``True``: estimate the sensor positions and speed of sound from the data first
        (:func:`oatomo.calibrate`) and reconstruct with the estimates; the provenance's
        ``calibration`` entry summarises them. ``"auto"`` (default): first test whether
        the data agree with the file's positions (:func:`oatomo.calibration.check_positions`,
        about two TV reconstructions at a quarter of the pixels per side; the provenance's
        ``position_check`` entry) and calibrate only when they do not. A scan calibrated
        that way is reconstructed with ``mb-tv`` unless ``method`` is given, and not
        refined (the refiner was trained on nominal-position images and does worse on
        calibrated ones; calibrated TV is the better image, benchmarks/RESULTS.md, issue
        10); with ``refine=True`` the check is made and reported but the scan is not
        calibrated.
        Files that are already calibrated, a ``calibration`` given, scans too large for
        memory and arrays that cannot be calibrated (3-D, fewer than 8 sensors) are not
        tested. ``False``: never.
    callback
        ``callback(what, done, total)`` after each step (``"load"``, ``method``,
        ``"refine"``) and during iterative methods.

    Returns
    -------
    Reconstruction
        Images in Pa (method, truth) and in fractions of the maximum p0 (refined,
        uncertainty) on one grid, with provenance.

    Examples
    --------
    >>> rec = oatomo.reconstruct("scan.h5", "ubp")            # doctest: +SKIP
    >>> rec.image.shape, rec.units["refined"], rec.provenance["refinement"]["reason"]
    """
    if refine not in (True, False, "auto"):
        raise InputError(f"refine must be True, False or 'auto', got {refine!r}")
    if calibrate not in (True, False, "auto"):
        raise InputError(f"calibrate must be True, False or 'auto', got {calibrate!r}")
    preset_name = None
    if preset is not None:
        from oatomo.pipeline.presets import load_preset

        chosen = load_preset(preset)
        preset_name = chosen.name
        # None: not given explicitly (calibrate="auto" and refine="auto" are the defaults)
        given = {"method": method, "n": n, "fov": fov, "speed_of_sound": speed_of_sound,
                 "band": band, "deconvolve": deconvolve, "iters": iters, "lam": lam,
                 "response": response, "calibrate": None if calibrate == "auto" else calibrate,
                 "refine": None if refine == "auto" else refine}
        given.update({k: v for k, v in chosen.settings().items() if given[k] is None})
        (method, n, fov, speed_of_sound, band, deconvolve, iters, lam, response, calibrate,
         refine) = (given[k] for k in ("method", "n", "fov", "speed_of_sound", "band",
                                       "deconvolve", "iters", "lam", "response",
                                       "calibrate", "refine"))
        calibrate = "auto" if calibrate is None else bool(calibrate)
        refine = "auto" if refine is None else refine
    method_given = method is not None
    method = "ubp" if method is None else method
    iters = 50 if iters is None else iters
    spec = get_method(method)
    timings: dict[str, float] = {}

    def done(step: str, t: float) -> None:
        timings[step] = time.perf_counter() - t
        if callback is not None:
            callback(step, 1, 1)

    t = time.perf_counter()
    by_frame = _too_big_for_memory(scan)
    if by_frame:
        if calibrate is True or refine is True:
            raise InputError("the scan is larger than OATOMO_MAX_BYTES: it is reconstructed "
                             "frame by frame, without calibration or refinement (raise the "
                             "limit for those)", scan)
        data, source = load_scan(scan, metadata_only=True), str(scan)
    else:
        data, source = load(scan)
    data = override_geometry(data, speed_of_sound=speed_of_sound, calibration=calibration)
    deconvolve = False if deconvolve is None else deconvolve
    if by_frame:
        sino, deconv_record = None, None
        _deconvolve(np.zeros((1, 1), np.float32), data, False, response)  # checks its type
    else:
        sino, kept_wl = select(data, frames, wavelengths)
        sino, deconv_record = _deconvolve(sino, data, deconvolve, response)
    done("load", t)
    if grid is None and by_frame:  # the object's extent from the first frame alone
        from dataclasses import replace

        from oatomo.io import read_frame

        grid = default_grid(replace(data, sinogram=read_frame(scan, 0)), n, fov)
    elif grid is None:
        grid = default_grid(data, n, fov)
    check_record, refine_reason = None, None
    if calibrate == "auto":
        t = time.perf_counter()
        check_record = _check_positions(data, sino, grid, by_frame, calibration)
        calibrate = bool(check_record.get("needs_calibration"))
        if "time_s" in check_record:
            done("check", t)
        if calibrate and refine is True:
            # measured: the refiner does worse on calibrated inputs than on the nominal
            # ones it was trained on (benchmarks/RESULTS.md, issue 10)
            calibrate = False
            check_record["calibrated"] = False
            check_record["why_not"] = ("refinement was asked for, and the refiner takes "
                                       "nominal-position images (--calibrate yes, "
                                       "calibrate=True, calibrates anyway)")
            logger.info("not calibrating: %s", check_record["why_not"])
        if calibrate:
            if not method_given:
                method = "mb-tv"
                spec = get_method(method)
            if refine == "auto":
                refine = False
                refine_reason = ("the scan was self-calibrated: calibrated TV is the better "
                                 "image (the refiner was trained on nominal-position images)")
    t = time.perf_counter()
    sensors, acquisition, cal_record = scan_geometry(data, calibrate=calibrate, grid=grid,
                                                     callback=callback)
    if calibrate:
        done("calibrate", t)
    t = time.perf_counter()
    in_model = None
    if model_response:
        in_model = response if response is not None else getattr(data, "response", None)
        if in_model is None:
            raise InputError("model_response: the scan has no detector response (give one)")
        if not spec.iterative:
            raise InputError(f"{spec.name} cannot model the detector response; use "
                             f"deconvolve or a model-based method")
        if deconvolve is not False:
            raise InputError("deconvolve and model_response both remove the response; "
                             "choose one")
    if by_frame:
        index, kept_wl = _frame_selection(data, frames, wavelengths, grid, source)
        image, deconv_record = _reconstruct_by_frame(
            scan, index, grid, sensors, acquisition, spec.name, scan=data,
            deconvolve=deconvolve, response=response, band=band, lam=lam, iters=iters,
            callback=callback, element_width=element_width, in_model=in_model)
        lead = index.shape
    else:
        image = reconstruct_sinogram(sino, grid, sensors, acquisition, spec.name, band=band,
                                     lam=lam, iters=iters, callback=callback,
                                     element_width=element_width, response=in_model)
        lead = sino.shape[:-2]
    _require_finite(image, f"the {spec.name} image is not finite: the scan's values (sample "
                    f"scale, t0, sensor geometry) are out of range for this method", source)
    done(spec.name, t)
    images: dict[str, np.ndarray] = {spec.name: image}
    t = time.perf_counter()
    if by_frame:
        extra, model_grid = {}, None
        record = {"applied": False, "model": str(model or ""), "reason": "the scan is larger "
                  "than OATOMO_MAX_BYTES and was reconstructed frame by frame"}
    elif refine_reason is not None:
        extra, model_grid = {}, None
        record = {"applied": False, "model": str(model or ""), "reason": refine_reason}
    else:
        extra, model_grid, record = refine_images(image, spec.name, grid, sino, sensors,
                                                  acquisition, model=model, refine=refine,
                                                  setup=setup, samples=samples)
    if record["applied"]:
        for key, img in extra.items():
            _require_finite(img, f"the {key} image is not finite: the refinement model's "
                            f"weights hold NaN or Inf", record.get("model"))
        done("refine", t)
        if model_grid != grid:
            images = {}
            grid = model_grid
        images.update(extra)
    units = {k: UNITS_REFINED if k in ("refined", "uncertainty") else UNITS_PA
             for k in images}
    truth = getattr(data, "p0", None)
    if truth is not None and data.grid == grid:
        images["truth"] = truth
        units["truth"] = UNITS_PA
    logger.info("reconstructed %s with %s on %dx%d (%s)", source, spec.name, grid.n, grid.n,
                "refined" if record["applied"] else record["reason"])
    return Reconstruction(images, grid, units, {
        "method": spec.name, "source": source,
        "format": getattr(data, "source_format", "oatomo"), "n_sensors": sensors.n_sensors,
        "speed_of_sound": acquisition.speed_of_sound,
        "n_frames": int(np.prod(lead, dtype=int)), "by_frame": by_frame,
        "axes": _axes(tuple(lead), kept_wl),
        "wavelengths": None if kept_wl is None else kept_wl.tolist(),
        "band": None if band is None else [None if b is None else float(b) for b in band],
        "deconvolution": deconv_record, "preset": preset_name,
        "element_width": element_width, "model_response": bool(model_response),
        "detector_response": None if getattr(data, "response", None) is None
        else repr(data.response),
        "timings": timings, "refinement": record, "calibration": cal_record,
        "position_check": check_record,
        "calibrated_file": bool(getattr(data, "calibration", None))})

"""The signals a reconstruction works on: the scan, its geometry overrides, the frames and
wavelengths selected, the detector response removed; scans too large for memory frame by
frame.

Steps 1 to 1d of :func:`oatomo.reconstruct`, each a plain function a user can also call
(:func:`load`, :func:`override_geometry`, :func:`select`, :func:`deconvolve_signals`);
:func:`load_signals` runs them for :func:`oatomo.reconstruct`. A multi-frame scan file
whose sinogram exceeds the memory limit (:func:`too_big_for_memory`) is not read whole: the
frames to reconstruct are chosen on its metadata (:func:`frame_selection`) and each is read
and reconstructed alone (:func:`reconstruct_by_frame`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from oatomo._limits import check_bytes, max_bytes
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.io import as_scan, default_grid, load_calibration, load_scan, read_frame
from oatomo.pipeline.options import ReconstructOptions
from oatomo.progress import Callback
from oatomo.recon.registry import reconstruct_sinogram
from oatomo.response import DEFAULT_WIENER, DetectorResponse, wiener_deconvolve
from oatomo.speed_map import SpeedMap

__all__ = ["Signals", "load", "override_geometry", "select", "deconvolve_signals",
           "load_signals", "image_grid", "too_big_for_memory", "frame_selection",
           "reconstruct_by_frame"]


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
    """A speed of sound given by the user, as a float (InputError unless finite and > 0)."""
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


def deconvolve_signals(sino: np.ndarray, scan: Any, deconvolve: bool | float | None,
                       response: Any) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Step 1d: the signals with the detector response removed, when asked.

    Parameters
    ----------
    sino
        (..., N, T) signals of ``scan``.
    scan
        The scan: its sampling rate, and its detector response when ``response`` is None.
    deconvolve
        False or None: the signals as they are; True: Wiener deconvolution with
        :data:`oatomo.response.DEFAULT_WIENER`; a number: with that regularisation.
    response
        A :class:`~oatomo.response.DetectorResponse` to remove instead of the scan's
        (checked even when not deconvolving).

    Returns
    -------
    tuple
        The signals and the deconvolution's record (``response``, ``lam``; None without).
    """
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


def too_big_for_memory(scan: Any) -> bool:
    """Whether ``scan`` is a multi-frame scan file whose sinogram exceeds the memory limit
    (:func:`oatomo._limits.max_bytes`): it is then reconstructed frame by frame."""
    if not isinstance(scan, (str, os.PathLike)):
        return False
    meta = load_scan(scan, metadata_only=True)
    return meta.n_frames > 1 and 8.0 * meta.sinogram.size > max_bytes()


@dataclass(frozen=True)
class Signals:
    """The signals of one reconstruction, as :func:`load_signals` prepares them.

    Attributes
    ----------
    scan
        What the caller gave: a :class:`~oatomo.io.Scan` or a scan file's path.
    data
        The scan with the geometry overrides (its metadata alone when ``by_frame``).
    source
        The scan file's path as text, or ``"<Scan>"``.
    sinogram
        The selected, deconvolved (..., N, T) signals; None when ``by_frame``.
    wavelengths
        The wavelengths the selection keeps (m; None without any, or not yet selected).
    deconvolution
        The deconvolution's record (None without one, or not yet done).
    by_frame
        Whether the scan is too large for memory: its frames are then selected, read and
        reconstructed one at a time (:func:`reconstruct_by_frame`).
    """

    scan: Any
    data: Any
    source: str
    sinogram: np.ndarray | None
    wavelengths: np.ndarray | None
    deconvolution: dict[str, Any] | None
    by_frame: bool


def load_signals(scan: Any, options: ReconstructOptions) -> Signals:
    """Steps 1 to 1d for :func:`oatomo.reconstruct`: load the scan (its metadata alone when
    it is too large for memory), override its geometry, select the frames and wavelengths
    and remove the detector response as ``options`` ask.

    Raises
    ------
    InputError
        Also when a scan too large for memory is to be calibrated or refined.
    """
    by_frame = too_big_for_memory(scan)
    if by_frame:
        if options.calibrate is True or options.refine is True:
            raise InputError("the scan is larger than OATOMO_MAX_BYTES: it is reconstructed "
                             "frame by frame, without calibration or refinement (raise the "
                             "limit for those)", scan)
        data, source = load_scan(scan, metadata_only=True), str(scan)
    else:
        data, source = load(scan)
    data = override_geometry(data, speed_of_sound=options.speed_of_sound,
                             calibration=options.calibration)
    if by_frame:  # the frames are selected and deconvolved as they are read
        deconvolve_signals(np.zeros((1, 1), np.float32), data, False, options.response)
        return Signals(scan, data, source, None, None, None, by_frame=True)
    sino, kept_wl = select(data, options.frames, options.wavelengths)
    sino, record = deconvolve_signals(sino, data, options.deconvolve, options.response)
    return Signals(scan, data, source, sino, kept_wl, record, by_frame=False)


def image_grid(signals: Signals, n: int | None, fov: float | None) -> Grid:
    """:func:`oatomo.io.default_grid` of the signals' scan (for a scan too large for memory,
    the object's extent is taken from its first frame alone)."""
    if signals.by_frame:
        return default_grid(replace(signals.data, sinogram=read_frame(signals.scan, 0)), n, fov)
    return default_grid(signals.data, n, fov)


def frame_selection(scan: Any, frames: Any, wavelengths: Any, grid: Grid, path: Any
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`select` on the frame indices of a scan file's metadata (its sinogram is
    not read).

    Parameters
    ----------
    scan
        The scan file's metadata (:func:`oatomo.io.load_scan` with ``metadata_only``).
    frames, wavelengths
        As for :func:`select`.
    grid
        The image grid: with every frame selected, the images must fit in memory.
    path
        The scan file, named in the errors.

    Returns
    -------
    tuple
        The flat indices of the frames to reconstruct (:func:`oatomo.io.read_frame`),
        shaped as the selection's leading axes, and the wavelengths kept.
    """
    lead = tuple(scan.sinogram.shape[:-2])
    total = int(np.prod(lead, dtype=np.int64))
    if frames is None and wavelengths is None:  # all of them: the images are the limit
        check_bytes(4.0 * total * grid.n ** 2, f"{total} reconstructed frames", path)
    check_bytes(8.0 * total, f"the indices of {total} frames", path)
    index = np.arange(total, dtype=np.int64).reshape(lead + (1, 1))
    sel, kept_wl = select(replace(scan, sinogram=index), frames, wavelengths)
    return np.asarray(sel)[..., 0, 0], kept_wl


def reconstruct_by_frame(path: Any, index: np.ndarray, grid: Grid, sensors: SensorArray,
                         acquisition: Acquisition, method: str, *, scan: Any,
                         deconvolve: bool | float, response: Any,
                         band: tuple[float | None, float | None] | None,
                         lam: float | None, iters: int, callback: Callback | None,
                         element_width: float | None, in_model: Any,
                          speed_map: SpeedMap | None = None,
                          medium: str = "slab", attenuation: Any = None
                         ) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Reconstruct the frames ``index`` (flat indices, any shape) of a scan file one at a
    time, each read alone from the file (and deconvolved when asked); the images are
    (``index.shape`` + grid) float32, with the deconvolution record.

    ``scan`` is the file's metadata (with the geometry overrides), ``response`` the
    response to deconvolve, ``in_model`` the one to model, ``speed_map`` two speeds of
    sound, ``medium`` and ``attenuation`` the scan's propagation (see
    :func:`oatomo.recon.registry.reconstruct_sinogram`).
    """
    flat = np.asarray(index, np.int64).reshape(-1)
    check_bytes(4.0 * len(flat) * grid.n ** 2, f"{len(flat)} reconstructed frames", path)
    out = np.empty((len(flat),) + grid.shape, np.float32)
    record = None
    for j, k in enumerate(flat):
        frame, record = deconvolve_signals(read_frame(path, int(k)), scan, deconvolve,
                                           response)
        out[j] = reconstruct_sinogram(frame, grid, sensors, acquisition, method, band=band,
                                      lam=lam, iters=iters, element_width=element_width,
                                      response=in_model, speed_map=speed_map,
                                      medium=medium, attenuation=attenuation)
        if callback is not None:
            callback(method, j + 1, len(flat))
    return out.reshape(np.shape(index) + grid.shape), record

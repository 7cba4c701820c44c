"""The :class:`Scan` type: one recorded or simulated scan with its geometry."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray, as_sensors, check_geometry
from oatomo.media import DEFAULT_MEDIUM, Attenuation, check_medium
from oatomo.response import DetectorResponse
from oatomo.volume.geometry import SensorArray3D, VolumeGrid, as_sensors3d

__all__ = ["Scan", "MAX_PRESSURE", "check_samples", "is_volume_scan", "require_plane"]

#: Largest sample magnitude accepted (Pa): far above any physical pressure, far enough
#: below the float32 maximum that sums of squares over a scan stay finite.
MAX_PRESSURE = 1e15


def check_samples(y: np.ndarray, path: Any) -> None:
    """Raise :class:`InputError` for NaN/Inf samples or samples beyond MAX_PRESSURE."""
    if not np.all(np.isfinite(y)):
        raise InputError("sinogram contains NaN or Inf samples", path)
    if y.size and float(np.abs(y).max()) > MAX_PRESSURE:
        raise InputError(f"sinogram samples exceed {MAX_PRESSURE:g} Pa in magnitude (a "
                         f"reconstruction would overflow float32)", path)


def _three_columns(sensors: Any) -> bool:
    """Whether ``sensors`` are 3-D: a :class:`SensorArray3D` or an (N, 3) array."""
    if isinstance(sensors, SensorArray3D):
        return True
    if isinstance(sensors, (np.ndarray, list, tuple)):
        shape = np.shape(sensors)
        return len(shape) == 2 and shape[1] == 3
    return False


def is_volume_scan(scan: Any) -> bool:
    """Whether ``scan`` (a :class:`Scan`) has 3-D sensor positions."""
    return isinstance(getattr(scan, "sensors", None), SensorArray3D)


def require_plane(scan: Any, what: str, path: Any = None) -> None:
    """Raise a one-line :class:`InputError` when ``scan`` has 3-D sensor positions:
    ``what`` (e.g. ``"oatomo calibrate"``) works in the imaging plane only, and a 3-D
    scan is never projected onto it."""
    if is_volume_scan(scan):
        z = np.abs(scan.sensors.positions[:, 2]).max()
        raise InputError(f"{what} works on 2-D scans; this scan has 3-D sensor positions "
                         f"({scan.sensors.n_sensors} sensors, |z| up to {z * 1e3:.3g} mm), "
                         f"which are never projected onto a plane (reconstruct it into a "
                         f"volume: oatomo reconstruct, oatomo.volume)", path)


@dataclass
class Scan:
    """One recorded (or simulated) scan.

    Parameters
    ----------
    sinogram
        float32 (N, T), or (..., N, T) with leading frame/wavelength axes, in Pa.
    sensors
        Sensor positions to reconstruct with (the nominal ones for a simulated scan): a
        :class:`~oatomo.SensorArray` (N, 2) in the imaging plane, or for a 3-D array a
        :class:`~oatomo.volume.SensorArray3D` (an (N, 3) array is taken as one). A 3-D
        scan is reconstructed into volumes; every 2-D-only operation refuses it
        (:func:`require_plane`).
    acquisition
        Sampling rate, samples, speed of sound, start time.
    p0
        Ground-truth initial pressure (simulations only): (n, n), or (nz, ny, nx) for a
        3-D scan.
    grid
        Grid of ``p0``: a :class:`~oatomo.Grid`, or a :class:`~oatomo.volume.VolumeGrid`
        for a 3-D scan.
    true_sensors
        The true (perturbed) sensor positions of a simulated scan (as ``sensors``).
    setup_name, setup_toml
        The setup the scan was simulated from (name and full TOML text).
    seed
        Seed of the simulation.
    wavelengths
        Acquisition wavelengths (m), if any.
    metadata
        Free JSON-serialisable metadata. A scan read from a file keeps the file's here:
        ``uuid``, ``ipasc`` (acquisition fields) and ``ipasc_device`` (device fields) of an
        IPASC file, written back by an IPASC export; ``scan_name`` of a PATATO file.
    calibration
        For a self-calibrated scan (``oatomo calibrate``): ``nominal_positions`` (N, 2),
        ``nominal_speed_of_sound``, ``position_std`` (N, 2), ``prior_std``, ``history``
        (list of per-round records) and ``time_s``; ``sensors`` and the acquisition's
        speed of sound are then the estimates. Stored under ``/calibration``.
    source_format
        Format the scan was read from (``"oatomo"``, ``"ipasc"``, ``"patato"``).
    response
        The sensors' impulse response (:class:`oatomo.response.DetectorResponse`), when
        known: a simulated scan's, or a PATATO file's ``irf``. Stored under ``/detector``.
    medium
        The propagation medium that made the signals: ``"slab"`` (default; a thin slab in
        3-D) or ``"2d"`` (line sources, the 2-D wave equation, e.g. 2-D k-Wave).
    attenuation
        The medium's acoustic attenuation (:class:`oatomo.media.Attenuation`), when known.
    """

    sinogram: np.ndarray
    sensors: SensorArray | SensorArray3D
    acquisition: Acquisition
    p0: np.ndarray | None = None
    grid: Grid | VolumeGrid | None = None
    true_sensors: SensorArray | SensorArray3D | None = None
    setup_name: str | None = None
    setup_toml: str | None = None
    seed: int | None = None
    wavelengths: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    source_format: str = "oatomo"
    response: DetectorResponse | None = None
    medium: str = DEFAULT_MEDIUM
    attenuation: Attenuation | None = None

    def __post_init__(self) -> None:
        self.medium = check_medium(self.medium, "the scan's medium")
        if self.attenuation is not None and not isinstance(self.attenuation, Attenuation):
            raise InputError(f"the scan's attenuation must be an Attenuation, got "
                             f"{type(self.attenuation).__name__}")
        if _three_columns(self.sensors):
            self.sensors = as_sensors3d(self.sensors, "the scan's sensors")
            if not isinstance(self.acquisition, Acquisition):
                raise InputError(f"acquisition must be an oatomo Acquisition(fs, n_samples, "
                                 f"...), got {type(self.acquisition).__name__}")
            if self.grid is not None and not isinstance(self.grid, VolumeGrid):
                raise InputError(f"the truth grid of a scan with 3-D sensors must be a "
                                 f"VolumeGrid, got {type(self.grid).__name__}")
            if self.true_sensors is not None:
                self.true_sensors = as_sensors3d(self.true_sensors, "true_sensors")
            return
        _, self.sensors, self.acquisition = check_geometry(self.grid, self.sensors,
                                                           self.acquisition)
        if self.true_sensors is not None:
            self.true_sensors = as_sensors(self.true_sensors, "true_sensors")

    @property
    def is_3d(self) -> bool:
        """Whether the sensors are a 3-D array (:class:`~oatomo.volume.SensorArray3D`)."""
        return isinstance(self.sensors, SensorArray3D)

    @property
    def n_frames(self) -> int:
        """Number of (frame, wavelength) sinograms in the scan."""
        return int(np.prod(self.sinogram.shape[:-2], dtype=np.int64))

    def validate(self, path: str | os.PathLike | None = None, *, values: bool = True) -> None:
        """Check shapes and (with ``values``) samples; raise :class:`InputError` naming
        ``path``."""
        y = self.sinogram
        if y.ndim < 2:
            raise InputError(f"sinogram must have at least 2 dimensions, got {y.shape}", path)
        if 0 in y.shape[:-2]:
            raise InputError(f"the scan has no frames (sinogram shape {y.shape})", path)
        if y.shape[-2] != self.sensors.n_sensors:
            raise InputError(f"sinogram has {y.shape[-2]} rows but there are "
                             f"{self.sensors.n_sensors} sensors", path)
        if y.shape[-1] != self.acquisition.n_samples:
            raise InputError(f"sinogram has {y.shape[-1]} samples but the acquisition says "
                             f"{self.acquisition.n_samples}", path)
        if values:
            if y.shape[-1] < 2:
                raise InputError(f"sinogram has {y.shape[-1]} sample per sensor; the "
                                 f"reconstructions need at least 2", path)
            check_samples(y, path)
        if self.p0 is not None and (self.grid is None or self.p0.shape != self.grid.shape):
            raise InputError("truth image does not match its grid", path)
        if values and self.p0 is not None and not np.all(np.isfinite(self.p0)):
            raise InputError("truth image holds NaN or Inf values", path)
        if self.wavelengths is not None:
            wl = np.asarray(self.wavelengths)
            if wl.dtype.kind not in "iuf" or not np.all(np.isfinite(wl)) or np.any(wl <= 0):
                raise InputError("wavelengths must be finite and > 0 (NaN, Inf or <= 0 "
                                 "found)", path)

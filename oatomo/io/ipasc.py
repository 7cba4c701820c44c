"""IPASC (PACFISH) HDF5 scan files: reader and writer.

Layout: ``/binary_time_series_data`` [detectors, samples, wavelengths, frames];
``/meta_data`` (sampling rate, speed of sound, wavelengths, gains, ...);
``/meta_data_device`` (one group per detector: position, orientation, responses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from oatomo._limits import check_bytes
from oatomo.errors import InputError, blame
from oatomo.geometry import Acquisition, SensorArray
from oatomo.io.hdf5 import number_value, plane_positions, read_array, text_value
from oatomo.io.scan import Scan
from oatomo.response import DetectorResponse

__all__ = ["IPASC_UNKNOWN", "is_ipasc", "read_ipasc", "write_ipasc"]


#: IPASC fields oatomo cannot know for any scan (nothing in a scan says them); PACFISH's
#: completeness check lists these as missing in an oatomo export, and nothing else.
IPASC_UNKNOWN = ("pulse_energy", "temperature_control", "acoustic_coupling_agent",
                 "regions_of_interest", "measurement_timestamps", "measurement_spatial_poses",
                 "frequency_domain_filter")


def is_ipasc(f: h5py.File) -> bool:
    """Whether the open HDF5 file is an IPASC scan (it has ``binary_time_series_data``)."""
    return "binary_time_series_data" in f


def read_ipasc(f: h5py.File, path: Path, lazy: bool = False) -> Scan:
    """The scan in an open IPASC file (samples zero-filled with ``lazy``)."""
    data = f["binary_time_series_data"]
    if not isinstance(data, h5py.Dataset) or data.ndim < 2:
        raise InputError(f"binary_time_series_data must be [detectors, samples, ...], got "
                         f"shape {data.shape}", path)
    md = f.get("meta_data")
    if md is None or "ad_sampling_rate" not in md:
        raise InputError("meta_data/ad_sampling_rate missing", path)
    fs = number_value(md["ad_sampling_rate"], "ad_sampling_rate", path)
    c = number_value(md["speed_of_sound"], "speed_of_sound", path) if "speed_of_sound" in md \
        else 1500.0
    det = f.get("meta_data_device/detectors")
    if not isinstance(det, h5py.Group) or len(det) == 0:
        raise InputError("no sensors (meta_data_device/detectors is empty)", path)
    check_bytes(2e3 * len(det), f"{len(det)} detector groups", path)
    ids = sorted(det.keys())
    if not all(isinstance(det[i], h5py.Group) for i in ids):
        raise InputError("meta_data_device/detectors holds a dataset where a detector group "
                         "belongs", path)
    pos = np.stack([read_array(det[i], "detector_position", path).reshape(-1)[:3] for i in ids])
    orient = None
    if all("detector_orientation" in det[i] for i in ids):
        orient = np.stack([read_array(det[i], "detector_orientation", path).reshape(-1)[:2]
                           for i in ids])
    raw = read_array(f, "binary_time_series_data", path, lazy=lazy)
    # [detectors, samples, wavelengths, frames] -> (frames, wavelengths, detectors, samples)
    sino = np.moveaxis(raw, (0, 1), (-2, -1))
    sino = np.moveaxis(sino, tuple(range(sino.ndim - 2)), tuple(reversed(range(sino.ndim - 2))))
    wl = read_array(md, "acquisition_wavelengths", path) if "acquisition_wavelengths" in md \
        else None
    if wl is not None and np.size(wl) == 0:
        wl = None
    with blame(path):
        sensors = SensorArray(plane_positions(pos, path),
                              None if orient is None or not np.any(orient) else orient)
        acq = Acquisition(fs=fs, n_samples=sino.shape[-1], speed_of_sound=c)
        response = _ipasc_response(det[ids[0]], fs, path)
    meta = {"uuid": text_value(md["uuid"], "uuid", path) if "uuid" in md else None}
    return Scan(sinogram=sino, sensors=sensors, acquisition=acq, wavelengths=wl,
                metadata=meta, source_format="ipasc", response=response)


def _ipasc_response(detector: h5py.Group, fs: float, path: Path,
                    n_taps: int = 255) -> DetectorResponse | None:
    """A detector's IPASC ``frequency_response`` ([frequencies (Hz), |H|]) as a zero-phase
    measured response (``n_taps`` samples at ``fs``, time zero in the middle); None when
    absent or flat. IPASC gives a magnitude only: the phase is taken as zero."""
    if "frequency_response" not in detector:
        return None
    fr = np.asarray(read_array(detector, "frequency_response", path), np.float64)
    if fr.ndim != 2 or fr.shape[0] != 2 or fr.shape[1] < 2 or not np.all(np.isfinite(fr)):
        raise InputError(f"frequency_response must be [frequencies, response], got shape "
                         f"{fr.shape}", path)
    order = np.argsort(fr[0])
    f_axis, gain = fr[0][order], np.abs(fr[1][order])
    if np.allclose(gain, gain[0], rtol=1e-6):
        return None
    n_fft = 4 * n_taps
    grid = np.fft.rfftfreq(n_fft, 1.0 / fs)
    h = np.fft.fftshift(np.fft.irfft(np.interp(grid, f_axis, gain, right=0.0), n_fft))
    mid = n_fft // 2
    taps = h[mid - n_taps // 2: mid + n_taps // 2 + 1]
    return DetectorResponse(impulse_response=taps, fs=fs)


def _ipasc_start_pad(acq: Acquisition) -> int:
    """Zero samples to put before the data so that they start at the laser pulse (IPASC has
    no start-time field); an InputError when ``t0`` is not a whole number of samples."""
    shift = acq.t0 * acq.fs
    k = int(round(shift))
    if acq.t0 < 0 or abs(shift - k) > 1e-6 * max(1.0, abs(shift)):
        raise InputError(f"IPASC time series start at the laser pulse and have no start-time "
                         f"field: t0 = {acq.t0:g} s is not a whole number of samples (at "
                         f"{acq.fs:g} Hz) after it; keep the oatomo format or resample")
    return k


def _write_ipasc_extra(f: h5py.File, md: str, extra: Any) -> None:
    """The user's values of :data:`IPASC_UNKNOWN` fields (``Scan.metadata["ipasc"]``)."""
    if not isinstance(extra, dict):
        raise InputError("metadata['ipasc'] must map IPASC field names to values")
    for key, value in extra.items():
        if key not in IPASC_UNKNOWN:
            raise InputError(f"metadata['ipasc'] may set {', '.join(IPASC_UNKNOWN)}; got "
                             f"{key!r}")
        if isinstance(value, dict):
            for name, v in value.items():
                f[f"{md}{key}/{name}"] = np.asarray(v, np.float64)
        else:
            f[md + key] = value if isinstance(value, str) else np.asarray(value, np.float64)


def write_ipasc(f: h5py.File, scan: Scan) -> None:
    """Fill the empty HDF5 file ``f`` with ``scan`` in the IPASC layout (see
    :func:`oatomo.io.formats.save_scan`)."""
    y = np.asarray(scan.sinogram, np.float32)
    wl = None if scan.wavelengths is None else np.atleast_1d(scan.wavelengths)
    if y.ndim == 2:
        y = y[None, None]
    elif y.ndim == 3 and wl is not None and wl.size > 1 and y.shape[0] == wl.size:
        y = y[None]  # (wavelengths, N, T): one frame
    elif y.ndim == 3:  # (frames, N, T)
        y = y[:, None]
    y = y.reshape((-1,) + y.shape[-3:])  # (frames, wavelengths, N, T)
    pad = _ipasc_start_pad(scan.acquisition)
    if pad:  # t0 > 0: the samples before it are zeros, so every time stays where it was
        y = np.concatenate([np.zeros(y.shape[:-1] + (pad,), np.float32), y], axis=-1)
    data = np.ascontiguousarray(np.transpose(y, (2, 3, 1, 0)))  # [det, samples, wl, frames]
    f.create_dataset("binary_time_series_data", data=data)
    md = "/meta_data/"
    f[md + "uuid"] = str(scan.metadata.get("uuid") or "oatomo-scan")
    f[md + "data_type"] = "float32"
    f[md + "dimensionality"] = "time"
    f[md + "sizes"] = np.asarray(data.shape, np.int64)
    f[md + "encoding"] = "raw"
    f[md + "compression"] = "none"
    f[md + "ad_sampling_rate"] = float(scan.acquisition.fs)
    f[md + "speed_of_sound"] = float(scan.acquisition.speed_of_sound)
    if wl is not None:
        f[md + "acquisition_wavelengths"] = np.asarray(wl, np.float64)
    else:  # no wavelength recorded: the field is still written, empty (PACFISH: present)
        f[md + "acquisition_wavelengths"] = np.zeros(0)
    device_id = f"oatomo-device-{scan.setup_name or 'scan'}"
    # what oatomo knows of every scan: its signals are in Pa, ungained and without TGC, all
    # channels recorded at once, one measurement per image
    f[md + "photoacoustic_imaging_device_reference"] = device_id
    f[md + "overall_gain"] = 1.0
    f[md + "element_dependent_gain"] = np.ones(data.shape[0])
    f[md + "time_gain_compensation"] = np.ones(data.shape[1])
    f[md + "scanning_method"] = "full_scan"
    f[md + "measurements_per_image"] = 1
    _write_ipasc_extra(f, md, scan.metadata.get("ipasc") or {})
    dev = "/meta_data_device/"
    pos = scan.sensors.positions
    half = float(np.abs(pos).max())
    f[dev + "general/unique_identifier"] = device_id
    f[dev + "general/field_of_view"] = np.array([-half, half, -half, half, 0.0, 0.0])
    f[dev + "general/num_detectors"] = int(len(pos))
    f[dev + "general/num_illuminators"] = 0
    f.create_group(dev + "illuminators")  # none known (a simulation has no laser)
    freq = np.fft.rfftfreq(256, 1.0 / scan.acquisition.fs)
    gain = np.ones_like(freq) if scan.response is None else np.abs(
        scan.response.frequency_response(freq))
    freq_resp = np.stack([freq, gain])
    angles = np.linspace(-np.pi / 2, np.pi / 2, 19)
    ang_resp = np.stack([angles, np.ones_like(angles)])  # point sensors: no directivity
    for k, (p, n) in enumerate(zip(pos, scan.sensors.normals, strict=True)):
        g = f"{dev}detectors/{k:010d}/"
        f[g + "detector_position"] = np.array([p[0], p[1], 0.0])
        f[g + "detector_orientation"] = np.array([n[0], n[1], 0.0])
        f[g + "detector_geometry_type"] = "CIRCULAR"
        f[g + "detector_geometry"] = 0.0  # radius: oatomo's sensors are points
        f[g + "frequency_response"] = freq_resp
        f[g + "angular_response"] = ang_resp

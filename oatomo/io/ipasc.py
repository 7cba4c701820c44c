"""IPASC (PACFISH) HDF5 scan files: reader and writer.

Layout: ``/binary_time_series_data`` [detectors, samples, wavelengths, frames];
``/meta_data`` (sampling rate, speed of sound, wavelengths, gains, ...);
``/meta_data_device`` (``general``, ``illuminators``, and one group per detector:
position, orientation, responses).

A scan read from an IPASC file carries the file's metadata in ``Scan.metadata`` (the
acquisition fields under ``"ipasc"``, the device under ``"ipasc_device"``, as JSON values),
and :func:`write_ipasc` writes them back: an IPASC -> oatomo -> IPASC round trip keeps
every field.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from oatomo._limits import FS_RANGE, SPEED_RANGE, check_bytes
from oatomo.errors import InputError, blame
from oatomo.geometry import Acquisition, SensorArray
from oatomo.io.hdf5 import (
    from_key,
    group_to_json,
    json_to_group,
    ranged_value,
    read_array,
    sensor_positions,
    text_value,
)
from oatomo.io.scan import Scan
from oatomo.response import DetectorResponse
from oatomo.volume.geometry import SensorArray3D

__all__ = ["IPASC_UNKNOWN", "IPASC_FROM_SCAN", "is_ipasc", "read_ipasc", "write_ipasc"]


#: IPASC fields oatomo cannot know for any scan (nothing in a scan says them); PACFISH's
#: completeness check lists these as missing in an oatomo export, and nothing else.
IPASC_UNKNOWN = ("pulse_energy", "temperature_control", "acoustic_coupling_agent",
                 "regions_of_interest", "measurement_timestamps", "measurement_spatial_poses",
                 "frequency_domain_filter")

#: IPASC acquisition fields written from the scan itself (its samples, sampling rate,
#: speed of sound, wavelengths; ``uuid`` is ``Scan.metadata["uuid"]``): never carried in
#: ``Scan.metadata["ipasc"]``.
IPASC_FROM_SCAN = ("uuid", "data_type", "dimensionality", "sizes", "encoding", "compression",
                   "ad_sampling_rate", "speed_of_sound", "acquisition_wavelengths")

#: Acquisition fields with one value per detector, per sample, or per measurement
#: (wavelength, frame): the binary data's axis (in ``sizes``) each depends on.
_SIZED_FIELDS = {"element_dependent_gain": (0,), "time_gain_compensation": (1,),
                 "pulse_energy": (2, 3), "measurement_timestamps": (2, 3),
                 "measurement_spatial_poses": (2, 3), "temperature_control": (2, 3)}


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
    fs = ranged_value(md["ad_sampling_rate"], "meta_data/ad_sampling_rate", *FS_RANGE, path,
                      unit="Hz")
    c = ranged_value(md["speed_of_sound"], "meta_data/speed_of_sound", *SPEED_RANGE, path,
                     unit="m/s") if "speed_of_sound" in md else 1500.0
    det = f.get("meta_data_device/detectors")
    if not isinstance(det, h5py.Group) or len(det) == 0:
        raise InputError("no sensors (meta_data_device/detectors is empty)", path)
    check_bytes(2e3 * len(det), f"{len(det)} detector groups", path)
    ids = sorted(det.keys())
    if not all(isinstance(det[i], h5py.Group) for i in ids):
        raise InputError("meta_data_device/detectors holds a dataset where a detector group "
                         "belongs", path)
    pos = sensor_positions(np.stack([read_array(det[i], "detector_position", path)
                                     .reshape(-1)[:3] for i in ids]), path)
    orient = None
    if all("detector_orientation" in det[i] for i in ids):
        orient = np.stack([read_array(det[i], "detector_orientation", path)
                           .reshape(-1)[:pos.shape[1]] for i in ids])
    raw = read_array(f, "binary_time_series_data", path, lazy=lazy)
    # [detectors, samples, wavelengths, frames] -> (frames, wavelengths, detectors, samples)
    sino = np.moveaxis(raw, (0, 1), (-2, -1))
    sino = np.moveaxis(sino, tuple(range(sino.ndim - 2)), tuple(reversed(range(sino.ndim - 2))))
    wl = read_array(md, "acquisition_wavelengths", path) if "acquisition_wavelengths" in md \
        else None
    if wl is not None and np.size(wl) == 0:
        wl = None
    with from_key("meta_data_device/detectors/*/detector_position", path):
        pos = sensor_positions(pos, path)
        kind = SensorArray3D if pos.shape[1] == 3 else SensorArray
        sensors = kind(pos)
    with from_key("meta_data_device/detectors/*/detector_orientation", path):
        sensors = kind(sensors.positions,
                       None if orient is None or not np.any(orient) else orient)
    with blame(path):
        acq = Acquisition(fs=fs, n_samples=sino.shape[-1], speed_of_sound=c)
    with from_key(f"meta_data_device/detectors/{ids[0]}/frequency_response", path):
        response = _ipasc_response(det[ids[0]], fs, path)
    meta = {"uuid": text_value(md["uuid"], "uuid", path) if "uuid" in md else None,
            # every other field, written back by write_ipasc (sizes: the source's, to tell
            # which per-detector/sample/measurement fields still fit the data)
            "ipasc": group_to_json(md, path, skip=IPASC_FROM_SCAN),
            "ipasc_device": group_to_json(f["meta_data_device"], path)}
    meta["ipasc"]["sizes"] = [int(n) for n in raw.shape]
    return Scan(sinogram=sino, sensors=sensors, acquisition=acq, wavelengths=wl,
                metadata=meta, source_format="ipasc", response=response)


def _ipasc_response(detector: h5py.Group, fs: float, path: Any) -> DetectorResponse | None:
    """A detector's IPASC ``frequency_response`` as a response (see :func:`_magnitude_response`);
    None when absent."""
    if "frequency_response" not in detector:
        return None
    return _magnitude_response(read_array(detector, "frequency_response", path), fs, path)


def _magnitude_response(fr: Any, fs: float, path: Any,
                        n_taps: int = 255) -> DetectorResponse | None:
    """An IPASC ``frequency_response`` ([frequencies (Hz), |H|]) as a zero-phase measured
    response (``n_taps`` samples at ``fs``, time zero in the middle); None when flat. IPASC
    gives a magnitude only: the phase is taken as zero."""
    fr = np.asarray(fr, np.float64)
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


def _carried_acquisition(extra: Any, data_shape: tuple[int, ...]) -> dict[str, Any]:
    """The acquisition fields of ``Scan.metadata["ipasc"]`` to write: all of them, less the
    per-detector/sample/measurement fields whose axis no longer has the size it had in the
    source (its ``sizes``), with a warning."""
    if not isinstance(extra, dict):
        raise InputError("metadata['ipasc'] must map IPASC field names to values")
    out = dict(extra)
    source = out.pop("sizes", None)
    for key in out:
        if key in IPASC_FROM_SCAN:
            raise InputError(f"metadata['ipasc'] sets {key!r}, which is written from the scan "
                             f"({', '.join(IPASC_FROM_SCAN)})")
    if source is not None and list(source) != list(data_shape):
        padded = (list(source) + [1] * 4)[:4]  # [detectors, samples] is one measurement
        changed = {i for i, (a, b) in enumerate(zip(padded, data_shape, strict=True))
                   if a != b}
        dropped = sorted(k for k, axes in _SIZED_FIELDS.items()
                         if k in out and changed.intersection(axes))
        for key in dropped:
            del out[key]
        if dropped:
            warnings.warn(f"IPASC fields {', '.join(dropped)} left out: the data's shape "
                          f"{list(data_shape)} is not the source's {list(source)}",
                          stacklevel=4)
    return out


def _detectors(scan: Scan, fs: float, carried: Any) -> dict[str, Any]:
    """The ``detectors`` group: the source's detectors (its ids and fields) when the scan
    has as many sensors, with the scan's position/orientation where they changed and the
    scan's frequency response where it is not the source's; else oatomo's point sensors."""
    pos, normals = scan.sensors.positions, scan.sensors.normals
    dim = pos.shape[1]  # 2: in the plane z = 0; 3: a 3-D array, written as it is
    if isinstance(carried, dict) and len(carried) == len(pos) and all(
            isinstance(v, dict) for v in carried.values()):
        freq_resp = None if scan.response is None else _response_table(scan.response, fs)
        out = {}
        for k, key in enumerate(sorted(carried)):
            d = dict(carried[key])
            old = np.asarray(d.get("detector_position", []), np.float64).reshape(-1)
            moved = old.size < dim or not np.allclose(old[:dim], pos[k], rtol=0, atol=1e-12)
            if moved:
                d["detector_position"] = [float(v) for v in pos[k]] if dim == 3 else \
                    [float(pos[k, 0]), float(pos[k, 1]), float(old[2]) if old.size > 2 else 0.0]
            o = np.asarray(d.get("detector_orientation", []), np.float64).reshape(-1)
            if o.size >= dim:  # as read: the direction; none (0) faces the origin
                length = np.linalg.norm(o[:dim])
                same = np.allclose(o[:dim] / length, normals[k], atol=1e-9) if length > 0 \
                    else not moved
                if not same:
                    d["detector_orientation"] = _vector3(normals[k])
            if freq_resp is not None and not _same_response(d.get("frequency_response"),
                                                            scan.response, fs):
                d["frequency_response"] = freq_resp.tolist()
            out[key] = d
        return out
    if carried:
        warnings.warn(f"the scan has {len(pos)} sensors, the IPASC source "
                      f"{len(carried) if isinstance(carried, dict) else 0} detectors: the "
                      f"source's detector fields are left out", stacklevel=4)
    freq_resp = _response_table(scan.response, fs)
    angles = np.linspace(-np.pi / 2, np.pi / 2, 19)
    ang_resp = np.stack([angles, np.ones_like(angles)]).tolist()  # points: no directivity
    return {f"{k:010d}": {"detector_position": _vector3(p),
                          "detector_orientation": _vector3(n),
                          "detector_geometry_type": "CIRCULAR",
                          "detector_geometry": 0.0,  # radius: oatomo's sensors are points
                          "frequency_response": freq_resp.tolist(),
                          "angular_response": ang_resp}
            for k, (p, n) in enumerate(zip(pos, normals, strict=True))}


def _vector3(v: np.ndarray) -> list[float]:
    """An (x, y) or (x, y, z) vector as IPASC's three floats (z = 0 in the plane)."""
    return [float(v[0]), float(v[1]), float(v[2]) if len(v) > 2 else 0.0]


def _response_table(response: DetectorResponse | None, fs: float) -> np.ndarray:
    """[frequencies (Hz), |H|] of ``response`` (flat when None), 129 frequencies to fs/2."""
    freq = np.fft.rfftfreq(256, 1.0 / fs)
    gain = np.ones_like(freq) if response is None else np.abs(response.frequency_response(freq))
    return np.stack([freq, gain])


def _same_response(table: Any, response: DetectorResponse, fs: float) -> bool:
    """Whether ``response`` is the one read from the IPASC ``frequency_response`` ``table``."""
    if table is None:
        return False
    try:
        read = _magnitude_response(table, fs, None)
    except InputError:
        return False
    return (read is not None and read.impulse_response is not None
            and response.impulse_response is not None
            and read.impulse_response.shape == response.impulse_response.shape
            and np.allclose(read.impulse_response, response.impulse_response))


def write_ipasc(f: h5py.File, scan: Scan) -> None:
    """Fill the empty HDF5 file ``f`` with ``scan`` in the IPASC layout (see
    :func:`oatomo.io.formats.save_scan`).

    The data fields (samples, ``sizes``, sampling rate, speed of sound, wavelengths, sensor
    positions, ``num_detectors``) come from the scan. A scan read from IPASC gets the
    rest of its source's metadata back (``scan.metadata["ipasc"]`` and
    ``["ipasc_device"]``): its device identifier, field of view, illuminators, detector
    fields and acquisition fields; per-detector/sample/measurement fields are left out (with
    a warning) when that axis of the data changed size. Any other scan gets what oatomo
    knows of every scan -- signals in Pa, ungained and without TGC, all channels at once,
    one measurement per image, point sensors with the frequency response of
    ``scan.response`` -- plus the fields given in ``scan.metadata["ipasc"]``.
    """
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
    fs = float(scan.acquisition.fs)
    device = scan.metadata.get("ipasc_device")
    if device is not None and not isinstance(device, dict):
        raise InputError("metadata['ipasc_device'] must map IPASC device groups to values")
    acq: dict[str, Any] = {}
    general: dict[str, Any] = {}
    if device is None:  # what oatomo knows of every scan it makes
        device_id = f"oatomo-device-{scan.setup_name or 'scan'}"
        half = float(np.abs(scan.sensors.positions).max())
        half_z = half if scan.sensors.positions.shape[1] == 3 else 0.0
        acq = {"photoacoustic_imaging_device_reference": device_id, "overall_gain": 1.0,
               "element_dependent_gain": np.ones(data.shape[0]).tolist(),
               "time_gain_compensation": np.ones(data.shape[1]).tolist(),
               "scanning_method": "full_scan", "measurements_per_image": 1}
        general = {"unique_identifier": device_id,
                   "field_of_view": [-half, half, -half, half, -half_z, half_z],
                   "num_illuminators": 0}  # a simulation has no laser
        device = {}
    acq.update(_carried_acquisition(scan.metadata.get("ipasc") or {}, data.shape))
    acq.update({"uuid": str(scan.metadata.get("uuid") or "oatomo-scan"),
                "data_type": "float32", "dimensionality": "time",
                "sizes": list(data.shape), "encoding": "raw", "compression": "none",
                "ad_sampling_rate": fs,
                "speed_of_sound": float(scan.acquisition.speed_of_sound),
                # no wavelength recorded: the field is still written, empty (PACFISH: present)
                "acquisition_wavelengths": [] if wl is None else [float(w) for w in wl]})
    json_to_group(f, "meta_data", acq)
    general.update(device.get("general") or {})
    general["num_detectors"] = int(data.shape[0])
    dev = {key: value for key, value in device.items() if key not in ("general", "detectors")}
    dev.setdefault("illuminators", {})
    dev["general"] = general
    dev["detectors"] = _detectors(scan, fs, device.get("detectors"))
    json_to_group(f, "meta_data_device", dev)

"""Scan and image files: oatomo's own HDF5 layout, IPASC/PACFISH and PATATO HDF5.

All file I/O of the toolkit lives here. Files are opened read-only; outputs are written
to a temporary file and renamed into place. Every problem with a file raises
:class:`oatomo.InputError` with a one-line message that starts with the file name.

oatomo scan layout (``oatomo_format = "scan"``, ``format_version = 1``)::

    /sinogram                float32 (..., N, T) in Pa; leading axes = frames/wavelengths
    /sensors/positions       float64 (N, 2) nominal positions (m)
    /sensors/normals         float64 (N, 2)
    /acquisition             group; attrs fs (Hz), n_samples, speed_of_sound (m/s), t0 (s)
    /truth/p0                float32 (n, n), attrs grid_n, grid_fov (m)   [optional]
    /truth/true_positions    float64 (N, 2) (m)                           [optional]
    /truth/true_normals      float64 (N, 2)                               [optional]
    /wavelengths             float64 (W,) (m)                              [optional]
    /detector                group; attrs centre_frequency (Hz), bandwidth (fraction), or a
                             dataset impulse_response (attrs fs, time_zero_index)   [optional]
    root attrs: setup (TOML text), setup_name, seed, metadata (JSON), created_by
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from oatomo._atomic import atomic_path, check_input_file
from oatomo._limits import check_bytes
from oatomo.errors import InputError
from oatomo.errors import blame as _blame
from oatomo.geometry import Acquisition, Grid, SensorArray, as_sensors, check_geometry
from oatomo.response import DetectorResponse

logger = logging.getLogger(__name__)

__all__ = ["Scan", "as_scan", "default_grid", "object_fov", "IPASC_UNKNOWN", "load_scan",
           "read_frame", "save_scan", "save_images", "save_patato",
           "load_images", "detect_format", "load_calibration", "save_calibration",
           "SCAN_FORMAT_VERSION", "CALIBRATION_KIND"]

SCAN_FORMAT_VERSION = 1
#: Largest sample magnitude accepted (Pa): far above any physical pressure, far enough
#: below the float32 maximum that sums of squares over a scan stay finite.
MAX_PRESSURE = 1e15
IMAGE_FORMAT_VERSION = 1


def _check_samples(y: np.ndarray, path: Any) -> None:
    """Raise :class:`InputError` for NaN/Inf samples or samples beyond MAX_PRESSURE."""
    if not np.all(np.isfinite(y)):
        raise InputError("sinogram contains NaN or Inf samples", path)
    if y.size and float(np.abs(y).max()) > MAX_PRESSURE:
        raise InputError(f"sinogram samples exceed {MAX_PRESSURE:g} Pa in magnitude (a "
                         f"reconstruction would overflow float32)", path)


@dataclass
class Scan:
    """One recorded (or simulated) scan.

    Parameters
    ----------
    sinogram
        float32 (N, T), or (..., N, T) with leading frame/wavelength axes, in Pa.
    sensors
        Sensor positions to reconstruct with (the nominal ones for a simulated scan).
    acquisition
        Sampling rate, samples, speed of sound, start time.
    p0
        Ground-truth initial pressure (simulations only).
    grid
        Grid of ``p0``.
    true_sensors
        The true (perturbed) sensor positions of a simulated scan.
    setup_name, setup_toml
        The setup the scan was simulated from (name and full TOML text).
    seed
        Seed of the simulation.
    wavelengths
        Acquisition wavelengths (m), if any.
    metadata
        Free JSON-serialisable metadata.
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
    """

    sinogram: np.ndarray
    sensors: SensorArray
    acquisition: Acquisition
    p0: np.ndarray | None = None
    grid: Grid | None = None
    true_sensors: SensorArray | None = None
    setup_name: str | None = None
    setup_toml: str | None = None
    seed: int | None = None
    wavelengths: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    source_format: str = "oatomo"
    response: DetectorResponse | None = None

    def __post_init__(self) -> None:
        _, self.sensors, self.acquisition = check_geometry(self.grid, self.sensors,
                                                           self.acquisition)
        if self.true_sensors is not None:
            self.true_sensors = as_sensors(self.true_sensors, "true_sensors")

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
        if y.shape[-2] != self.sensors.n_sensors:
            raise InputError(f"sinogram has {y.shape[-2]} rows but there are "
                             f"{self.sensors.n_sensors} sensors", path)
        if y.shape[-1] != self.acquisition.n_samples:
            raise InputError(f"sinogram has {y.shape[-1]} samples but the acquisition says "
                             f"{self.acquisition.n_samples}", path)
        if values:
            _check_samples(y, path)
        if self.p0 is not None and (self.grid is None or self.p0.shape != self.grid.shape):
            raise InputError("truth image does not match its grid", path)


def _open(path: str | os.PathLike) -> h5py.File:
    p = check_input_file(path, "scan file")
    try:
        return h5py.File(p, "r")
    except OSError:
        with open(p, "rb") as f:
            magic = f.read(8)
        if magic == b"\x89HDF\r\n\x1a\n":
            raise InputError("HDF5 file is truncated or corrupt", p) from None
        raise InputError("not an HDF5 file", p) from None


def detect_format(f: h5py.File) -> str | None:
    """``"oatomo"``, ``"ipasc"``, ``"patato"`` or None for an open HDF5 file."""
    if f.attrs.get("oatomo_format") == "scan":
        return "oatomo"
    if "binary_time_series_data" in f:
        return "ipasc"
    if "raw_data" in f and ("GEOMETRY" in f or "fs" in f.attrs):
        return "patato"
    return None


def _scalar(v: Any) -> Any:
    if isinstance(v, h5py.Dataset):
        if v.size is None or v.size > 64:  # a value, not an array: never read a big one
            raise ValueError(f"{v.name} holds {v.size} values where one number belongs")
        v = v[()]
    if isinstance(v, h5py.Group):
        raise ValueError(f"{v.name} is a group where a value belongs")
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, np.ndarray) and v.size == 1:
        return v.reshape(()).item()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _number(v: Any, what: str, path: Any) -> float:
    v = _scalar(v)
    if isinstance(v, (str, bytes)):
        raise InputError(f"{what} is not a number ({v!r})", path)
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} is not a number ({v!r})", path) from None


def _integer(v: Any, what: str, path: Any) -> int:
    v = _scalar(v)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise InputError(f"{what} is not an integer ({v!r})", path)
    return int(v)


def _text(v: Any, what: str, path: Any) -> str | None:
    v = _scalar(v)
    if v is None or isinstance(v, str):
        return v or None
    raise InputError(f"{what} is not text ({type(v).__name__})", path)


def _json(v: Any, what: str, path: Any) -> Any:
    text = _text(v, what, path)
    try:
        return json.loads(text or "{}")
    except (json.JSONDecodeError, RecursionError):
        raise InputError(f"{what} is not valid JSON", path) from None


def _array(f: h5py.Group, name: str, path: Any, *, lazy: bool = False) -> np.ndarray:
    """Read the numeric dataset ``name`` after checking its kind, dtype and declared size.

    With ``lazy`` only the shape is read: the result is a zero-filled read-only view of
    that shape that takes no memory (for ``oatomo info``).
    """
    d = _numeric_dataset(f, name, path)
    shape = d.shape
    n = float(np.prod(shape, dtype=np.float64))
    if lazy:
        return np.broadcast_to(np.zeros((), np.float32), shape)
    check_bytes(n * (d.dtype.itemsize + 4), f"reading {name} {shape}", path)
    return d[()]


def _numeric_dataset(f: h5py.Group, name: str, path: Any) -> h5py.Dataset:
    """The dataset ``name`` after checking that it is a real numeric array."""
    d = f.get(name)
    if not isinstance(d, h5py.Dataset):
        raise InputError(f"{name} is a group, not a dataset", path)
    dt = d.dtype
    if dt.kind == "c":
        raise InputError(f"{name} is complex ({dt}); oatomo needs real samples", path)
    if dt.kind not in "iuf" or dt.fields is not None or h5py.check_vlen_dtype(dt):
        raise InputError(f"{name} has dtype {dt}; a numeric array is needed", path)
    if d.shape is None:  # HDF5 null dataspace
        raise InputError(f"{name} is empty (null dataspace)", path)
    return d


def _positions_2d(pos: np.ndarray, path: Any) -> np.ndarray:
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[0] == 0 or pos.shape[1] not in (2, 3):
        raise InputError(f"no sensors (positions of shape {pos.shape})", path)
    if pos.shape[1] == 3:
        if np.any(np.abs(pos[:, 2]) > 1e-9):
            msg = (f"{path}: sensor positions have z != 0 (up to "
                   f"{np.abs(pos[:, 2]).max() * 1e3:.3g} mm); projected onto the imaging plane")
            warnings.warn(msg, stacklevel=3)  # the CLI logs warnings (one line each)
        pos = pos[:, :2]
    return pos


def _read_oatomo(f: h5py.File, path: Path, lazy: bool = False) -> Scan:
    version = _integer(f.attrs.get("format_version", 0), "format_version", path)
    if version > SCAN_FORMAT_VERSION:
        raise InputError(f"scan format version {version} is newer than this oatomo "
                         f"understands ({SCAN_FORMAT_VERSION})", path)
    if "sinogram" not in f:
        raise InputError("no sinogram in this oatomo scan file", path)
    if "sensors/positions" not in f:
        raise InputError("no sensors in this scan file", path)
    acq_attrs = f["acquisition"].attrs if "acquisition" in f else {}
    for key in ("fs", "n_samples"):
        if key not in acq_attrs:
            raise InputError(f"acquisition attribute {key!r} missing", path)
    sino = _array(f, "sinogram", path, lazy=lazy)
    with _blame(path):
        pos = _positions_2d(_array(f, "sensors/positions", path), path)
        normals = _array(f, "sensors/normals", path) if "sensors/normals" in f else None
        sensors = SensorArray(pos, normals)
        acq = Acquisition(
            fs=_number(acq_attrs["fs"], "fs", path),
            n_samples=_integer(acq_attrs["n_samples"], "n_samples", path),
            speed_of_sound=_number(acq_attrs.get("speed_of_sound", 1500.0), "speed of sound",
                                   path),
            t0=_number(acq_attrs.get("t0", 0.0), "t0", path))
        p0 = grid = true = None
        if "truth/p0" in f:
            d = f["truth/p0"]
            grid = Grid(_integer(d.attrs["grid_n"], "truth/p0 grid_n", path),
                        _number(d.attrs["grid_fov"], "truth/p0 grid_fov", path))
            p0 = _array(f, "truth/p0", path).astype(np.float32)
        if "truth/true_positions" in f:
            true = SensorArray(_array(f, "truth/true_positions", path),
                               _array(f, "truth/true_normals", path)
                               if "truth/true_normals" in f else None)
    meta = _json(f.attrs.get("metadata", "{}"), "metadata", path)
    if not isinstance(meta, dict):
        raise InputError("metadata is not a JSON object", path)
    seed = f.attrs.get("seed")
    return Scan(sinogram=sino, sensors=sensors, acquisition=acq, p0=p0, grid=grid,
                true_sensors=true, setup_name=_text(f.attrs.get("setup_name"), "setup_name",
                                                    path),
                setup_toml=_text(f.attrs.get("setup"), "setup", path),
                seed=None if seed is None else _integer(seed, "seed", path),
                wavelengths=_array(f, "wavelengths", path) if "wavelengths" in f else None,
                metadata=meta, source_format="oatomo", response=_read_response(f, path),
                calibration=(_read_calibration(f["calibration"], sensors.n_sensors, path)
                             if "calibration" in f else None))


def _read_ipasc(f: h5py.File, path: Path, lazy: bool = False) -> Scan:
    data = f["binary_time_series_data"]
    if not isinstance(data, h5py.Dataset) or data.ndim < 2:
        raise InputError(f"binary_time_series_data must be [detectors, samples, ...], got "
                         f"shape {data.shape}", path)
    md = f.get("meta_data")
    if md is None or "ad_sampling_rate" not in md:
        raise InputError("meta_data/ad_sampling_rate missing", path)
    fs = _number(md["ad_sampling_rate"], "ad_sampling_rate", path)
    c = _number(md["speed_of_sound"], "speed_of_sound", path) if "speed_of_sound" in md \
        else 1500.0
    det = f.get("meta_data_device/detectors")
    if not isinstance(det, h5py.Group) or len(det) == 0:
        raise InputError("no sensors (meta_data_device/detectors is empty)", path)
    check_bytes(2e3 * len(det), f"{len(det)} detector groups", path)
    ids = sorted(det.keys())
    if not all(isinstance(det[i], h5py.Group) for i in ids):
        raise InputError("meta_data_device/detectors holds a dataset where a detector group "
                         "belongs", path)
    pos = np.stack([_array(det[i], "detector_position", path).reshape(-1)[:3] for i in ids])
    orient = None
    if all("detector_orientation" in det[i] for i in ids):
        orient = np.stack([_array(det[i], "detector_orientation", path).reshape(-1)[:2]
                           for i in ids])
    raw = _array(f, "binary_time_series_data", path, lazy=lazy)
    # [detectors, samples, wavelengths, frames] -> (frames, wavelengths, detectors, samples)
    sino = np.moveaxis(raw, (0, 1), (-2, -1))
    sino = np.moveaxis(sino, tuple(range(sino.ndim - 2)), tuple(reversed(range(sino.ndim - 2))))
    wl = _array(md, "acquisition_wavelengths", path) if "acquisition_wavelengths" in md \
        else None
    if wl is not None and np.size(wl) == 0:
        wl = None
    with _blame(path):
        sensors = SensorArray(_positions_2d(pos, path),
                              None if orient is None or not np.any(orient) else orient)
        acq = Acquisition(fs=fs, n_samples=sino.shape[-1], speed_of_sound=c)
        response = _ipasc_response(det[ids[0]], fs, path)
    meta = {"uuid": _text(md["uuid"], "uuid", path) if "uuid" in md else None}
    return Scan(sinogram=sino, sensors=sensors, acquisition=acq, wavelengths=wl,
                metadata=meta, source_format="ipasc", response=response)


def _ipasc_response(detector: h5py.Group, fs: float, path: Path,
                    n_taps: int = 255) -> DetectorResponse | None:
    """A detector's IPASC ``frequency_response`` ([frequencies (Hz), |H|]) as a zero-phase
    measured response (``n_taps`` samples at ``fs``, time zero in the middle); None when
    absent or flat. IPASC gives a magnitude only: the phase is taken as zero."""
    if "frequency_response" not in detector:
        return None
    fr = np.asarray(_array(detector, "frequency_response", path), np.float64)
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


def _read_patato(f: h5py.File, path: Path, lazy: bool = False) -> Scan:
    raw = f["raw_data"]
    if not isinstance(raw, h5py.Dataset):
        raise InputError("raw_data is a group, not a dataset", path)
    fs = raw.attrs.get("fs", f.attrs.get("fs"))
    if fs is None:
        raise InputError("sampling frequency attribute 'fs' missing", path)
    c = raw.attrs.get("speedofsound", f.attrs.get("speedofsound", 1500.0))
    if "GEOMETRY" not in f:
        raise InputError("no sensors (dataset GEOMETRY missing)", path)
    sino = _array(f, "raw_data", path, lazy=lazy)  # (frames, wavelengths, detectors, samples)
    with _blame(path):
        sensors = SensorArray(_positions_2d(_array(f, "GEOMETRY", path), path))
        acq = Acquisition(fs=_number(fs, "fs", path), n_samples=sino.shape[-1],
                          speed_of_sound=_number(c, "speedofsound", path))
    wl = _array(f, "wavelengths", path) if "wavelengths" in f else None
    if wl is not None and np.size(wl) and float(np.max(wl)) > 1e-4:  # PATATO/iThera: nm
        wl = np.asarray(wl, np.float64) * 1e-9
    name = _text(f.attrs.get("name", ""), "name", path)
    response = None
    if "irf" in f:  # PATATO: time-domain impulse response (n,), time zero at n // 2
        with _blame(path):
            response = DetectorResponse(impulse_response=_array(f, "irf", path), fs=acq.fs)
    return Scan(sinogram=sino, sensors=sensors, acquisition=acq, wavelengths=wl,
                metadata={"scan_name": name} if name else {}, source_format="patato",
                response=response)


def as_scan(scan: Any) -> tuple[Scan, str]:
    """A :class:`Scan` as given, or the scan file at a path; with its source's name."""
    if isinstance(scan, (str, os.PathLike)):
        return load_scan(scan), str(scan)
    if not hasattr(scan, "sinogram"):
        raise InputError(f"expected a Scan or a scan file path, got {type(scan).__name__}")
    return scan, "<Scan>"


def default_grid(scan: Any, n: int | None = None, fov: float | None = None) -> Grid:
    """The image grid: the scan's truth grid, else ``n`` (256) pixels over ``fov``: the
    object's extent seen in the data (:func:`object_fov`), at most the diameter of the
    sensors' inscribed circle (1.3 x the median array radius when the data show nothing).
    """
    truth = getattr(scan, "grid", None)
    if n is None and fov is None and truth is not None:
        return truth
    radius = float(np.median(np.hypot(*scan.sensors.positions.T)))
    if fov is None:
        fov = truth.fov if truth is not None else object_fov(scan)
        if fov is None:
            fov = 1.3 * radius
    if n is None:
        n = truth.n if truth is not None else 256
    return Grid(n, fov)


def object_fov(scan: Any, *, threshold: float = 0.2, margin: float = 1.15) -> float | None:
    """A field of view (m) that holds the object, from the first arrivals in the data.

    Each sensor's first sample above ``threshold`` x the scan's peak (all frames) puts the
    nearest absorber at distance ``d_s = c t`` from it, so nothing lies farther than
    ``|r_s| - d_s`` from the origin in that sensor's direction; the largest such reach,
    times ``margin``, is the half-width. Capped at the inscribed circle (the smallest
    sensor distance from the origin); None when no sensor sees a signal.
    """
    y = np.abs(np.asarray(scan.sinogram, np.float32))
    y = y.reshape((-1,) + y.shape[-2:]).max(axis=0)
    level = threshold * float(y.max())
    seen = y.max(axis=1) >= level
    if level <= 0 or not np.any(seen):
        return None
    first = np.argmax(y[seen] >= level, axis=1)
    acq = scan.acquisition
    dist = acq.speed_of_sound * np.maximum(acq.t0 + first / acq.fs, 0.0)
    r_s = np.hypot(*scan.sensors.positions.T)
    reach = float(np.max(r_s[seen] - dist))
    inscribed = float(r_s.min())
    if reach <= 0 or inscribed <= 0:
        return None
    return 2 * min(margin * reach, inscribed)


#: ``kind`` of a calibration JSON file (``oatomo autofocus --json``, ``oatomo calibrate
#: --json``), read by ``oatomo reconstruct --calibration``.
CALIBRATION_KIND = "oatomo-calibration"


def save_calibration(path: str | os.PathLike, doc: dict[str, Any]) -> Path:
    """Write a calibration JSON file atomically (``kind`` and ``units`` added).

    ``doc`` holds ``speed_of_sound`` (m/s) and optionally ``t0`` (s), ``positions``
    ((N, 2) m) and anything else worth keeping (search curve, history).
    """
    load_calibration(doc)  # refuse to write what could not be read back
    units = {"speed_of_sound": "m/s", "t0": "s", "positions": "m"}
    out = Path(path)
    full = {"kind": CALIBRATION_KIND, "format_version": 1, **doc,
            "units": {k: v for k, v in units.items() if k in doc}}
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(full, indent=2) + "\n")
    return out


def load_calibration(source: str | os.PathLike | dict[str, Any] | Any) -> dict[str, Any]:
    """The speed of sound, ``t0`` and sensor positions of a calibration (file or dict).

    Returns
    -------
    dict
        The keys present among ``speed_of_sound`` (float, m/s), ``t0`` (float, s) and
        ``positions`` (float64 (N, 2), m).

    Raises
    ------
    InputError
        Not JSON, none of the three keys, or values that are not what they should be.
    """
    path = None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not os.path.lexists(path):
            raise InputError("calibration file not found", path)
        check_input_file(path, "calibration file")
        check_bytes(8.0 * path.stat().st_size, "reading the calibration file", path)
        try:
            source = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            raise InputError("not a JSON calibration file", path) from None
    if isinstance(source, Mapping):
        source = dict(source)
    if not isinstance(source, dict):
        raise InputError(f"a calibration must be a JSON object or dict, got "
                         f"{type(source).__name__}", path)
    out: dict[str, Any] = {}
    for key, low, high in (("speed_of_sound", 0.0, np.inf), ("t0", -np.inf, np.inf)):
        if source.get(key) is not None:
            v = source[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) \
                    or not (low < v < high) or not np.isfinite(v):
                raise InputError(f"calibration {key} must be a finite number"
                                 f"{' > 0' if low == 0 else ''}, got {v!r}", path)
            out[key] = float(v)
    if source.get("positions") is not None:
        try:
            pos = np.asarray(source["positions"], np.float64)
        except (TypeError, ValueError):
            pos = np.zeros((0,))
        if pos.ndim != 2 or pos.shape[1] != 2 or not np.all(np.isfinite(pos)):
            raise InputError(f"calibration positions must be finite (N, 2) metres, got "
                             f"shape {pos.shape}", path)
        out["positions"] = pos
    if not out:
        raise InputError("calibration has none of speed_of_sound, t0, positions", path)
    return out


def load_scan(path: str | os.PathLike, *, metadata_only: bool = False) -> Scan:
    """Read a scan file, detecting its format (oatomo, IPASC/PACFISH or PATATO HDF5).

    Singleton frame/wavelength axes are squeezed, so a single-frame scan has a
    (N, T) sinogram. Sensor positions with z != 0 are projected onto the imaging plane
    with a warning. Every dataset's dtype and declared size are checked before it is
    read: numeric only, at most ``OATOMO_MAX_BYTES`` (see :mod:`oatomo._limits`).

    Parameters
    ----------
    path
        The scan file.
    metadata_only
        Read no samples: the sinogram (and truth image) are zero-filled read-only views
        of the declared shapes that take no memory (what ``oatomo info`` needs).

    Raises
    ------
    InputError
        Missing, non-HDF5, truncated or malformed files; no sinogram; no sensors; rows
        that do not match the sensors; NaN/Inf samples; fs or speed of sound <= 0.
    """
    p = Path(path)
    with _open(p) as f:
        try:
            fmt = detect_format(f)
            if fmt is None:
                raise InputError("no sinogram found (not an oatomo, IPASC or PATATO scan file)",
                                 p)
            scan = {"oatomo": _read_oatomo, "ipasc": _read_ipasc,
                    "patato": _read_patato}[fmt](f, p, metadata_only)
        except InputError:
            raise
        except (OSError, KeyError, RuntimeError) as exc:
            raise InputError(f"HDF5 file is truncated or corrupt ({exc.__class__.__name__})",
                             p) from None
        except (TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
            first = " ".join(str(exc).split())[:120]
            raise InputError(f"malformed scan file ({exc.__class__.__name__}: {first})",
                             p) from None
    y = scan.sinogram
    if y.ndim < 2:
        raise InputError(f"sinogram must have at least 2 dimensions, got {y.shape}", p)
    y = y.reshape(tuple(d for d in y.shape[:-2] if d != 1) + y.shape[-2:])
    if metadata_only:
        scan.sinogram = y
        scan.validate(p, values=False)
        return scan
    y = np.asarray(y, dtype=np.float32)
    scan.sinogram = np.ascontiguousarray(y)
    scan.validate(p)
    return scan


def read_frame(path: str | os.PathLike, index: int) -> np.ndarray:
    """One (N, T) float32 frame of a scan file's sinogram, read alone from the file.

    ``index`` counts the frames with the leading (frame, wavelength) axes flattened in the
    order of :func:`load_scan`'s sinogram. Used to reconstruct scans too large to hold in
    memory frame by frame; the frame is checked as :func:`load_scan` checks a sinogram.
    """
    p = Path(path)
    with _open(p) as f:
        fmt = detect_format(f)
        name = {"oatomo": "sinogram", "ipasc": "binary_time_series_data",
                "patato": "raw_data"}.get(fmt or "")
        if name is None:
            raise InputError("no sinogram found (not an oatomo, IPASC or PATATO scan file)", p)
        d = _numeric_dataset(f, name, p)
        if d.ndim < 2:
            raise InputError(f"{name} must have at least 2 dimensions, got {d.shape}", p)
        # IPASC: [detectors, samples, wavelengths, frames]; the others (..., N, T)
        lead = d.shape[2:][::-1] if fmt == "ipasc" else d.shape[:-2]
        n_frames = int(np.prod(lead, dtype=np.int64))
        if not 0 <= index < n_frames:
            raise InputError(f"frame {index} out of range (the scan has {n_frames})", p)
        idx = tuple(int(i) for i in np.unravel_index(index, lead))
        sel = (slice(None), slice(None)) + idx[::-1] if fmt == "ipasc" else idx
        n_st = d.shape[:2] if fmt == "ipasc" else d.shape[-2:]
        check_bytes(float(n_st[0]) * n_st[1] * (d.dtype.itemsize + 4),
                    f"reading one frame {n_st} of {name}", p)
        y = np.ascontiguousarray(d[sel], dtype=np.float32)
    _check_samples(y, p)
    return y


def save_scan(path: str | os.PathLike, scan: Scan, format: str = "oatomo") -> Path:
    """Write a scan atomically in oatomo's layout or as an IPASC (PACFISH-readable) file.

    The IPASC form keeps sinogram, sensors, sampling rate, speed of sound and wavelengths;
    truth, setup and seed are oatomo-only. IPASC signals start at the laser pulse: a scan
    with ``t0 > 0`` gets ``t0 * fs`` zero samples in front (an :class:`InputError` when that
    is not a whole number, or ``t0 < 0``). It also writes the detector fields PACFISH checks
    (point geometry, flat angular response, the frequency response of :attr:`Scan.response`
    or a flat one) and the gains (1, no TGC); the fields in :data:`IPASC_UNKNOWN` and the
    illumination are not known for an oatomo scan and are left out, unless given in
    ``scan.metadata["ipasc"]`` (field name -> value in SI units).
    """
    if format not in ("oatomo", "ipasc"):
        raise InputError(f"unknown scan format {format!r} (choose oatomo or ipasc)")
    out = Path(path)
    scan.validate()
    _write_h5(out, lambda f: (_write_oatomo if format == "oatomo" else _write_ipasc)(f, scan))
    return out


def _write_h5(out: Path, fill: Any) -> None:
    """Build an HDF5 file in memory with ``fill(f)``, then write its bytes atomically.

    The HDF5 library never writes to the disk itself: a full disk or a read-only
    directory is then a plain :class:`OSError` from Python, not an HDF5 failure inside
    the library (which left corrupt state behind and crashed the interpreter at exit).
    """
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        fill(f)
    with atomic_path(out) as tmp:
        tmp.write_bytes(buf.getbuffer())


def _write_oatomo(f: h5py.File, scan: Scan) -> None:
    from oatomo import __version__

    f.attrs["oatomo_format"] = "scan"
    f.attrs["format_version"] = SCAN_FORMAT_VERSION
    f.attrs["created_by"] = f"oatomo {__version__}"
    d = f.create_dataset("sinogram", data=np.asarray(scan.sinogram, np.float32),
                         compression="gzip", compression_opts=4, shuffle=True)
    d.attrs["units"] = "Pa"
    d.attrs["axes"] = "(..., sensor, sample)"
    f.create_dataset("sensors/positions", data=scan.sensors.positions)
    f.create_dataset("sensors/normals", data=scan.sensors.normals)
    g = f.create_group("acquisition")
    for k, v in scan.acquisition.to_dict().items():
        g.attrs[k] = v
    if scan.p0 is not None and scan.grid is not None:
        t = f.create_dataset("truth/p0", data=np.asarray(scan.p0, np.float32),
                             compression="gzip", shuffle=True)
        t.attrs["grid_n"] = scan.grid.n
        t.attrs["grid_fov"] = scan.grid.fov
    if scan.true_sensors is not None:
        f.create_dataset("truth/true_positions", data=scan.true_sensors.positions)
        f.create_dataset("truth/true_normals", data=scan.true_sensors.normals)
    if scan.wavelengths is not None:
        f.create_dataset("wavelengths", data=np.asarray(scan.wavelengths, np.float64))
    if scan.setup_name:
        f.attrs["setup_name"] = scan.setup_name
    if scan.setup_toml:
        f.attrs["setup"] = scan.setup_toml
    if scan.seed is not None:
        f.attrs["seed"] = int(scan.seed)
    f.attrs["metadata"] = json.dumps(scan.metadata)
    if scan.calibration:
        _write_calibration(f.create_group("calibration"), scan.calibration)
    if scan.response is not None:
        _write_response(f.create_group("detector"), scan.response)


def _write_response(g: h5py.Group, r: DetectorResponse) -> None:
    if r.impulse_response is None:
        g.attrs["centre_frequency"] = r.centre_frequency
        g.attrs["bandwidth"] = r.bandwidth
        g.attrs["units"] = json.dumps({"centre_frequency": "Hz", "bandwidth": "fraction"})
        return
    d = g.create_dataset("impulse_response", data=r.impulse_response)
    d.attrs["fs"] = r.fs
    d.attrs["time_zero_index"] = r.impulse_response.size // 2


def _read_response(f: h5py.File, path: Path) -> DetectorResponse | None:
    if "detector" not in f:
        return None
    g = f["detector"]
    if not isinstance(g, h5py.Group):
        raise InputError("detector is a dataset, not a group", path)
    with _blame(path):
        if "impulse_response" in g:
            h = _array(g, "impulse_response", path)
            return DetectorResponse(impulse_response=h, fs=_number(
                g["impulse_response"].attrs.get("fs"), "detector fs", path))
        return DetectorResponse(
            centre_frequency=_number(g.attrs.get("centre_frequency"), "centre_frequency",
                                     path),
            bandwidth=_number(g.attrs.get("bandwidth"), "bandwidth", path))


#: Datasets of ``/calibration`` (arrays); everything else there is an attribute.
_CAL_ARRAYS = ("nominal_positions", "position_std")


def _write_calibration(g: h5py.Group, cal: dict[str, Any]) -> None:
    for key in _CAL_ARRAYS:
        d = g.create_dataset(key, data=np.asarray(cal[key], np.float64))
        d.attrs["units"] = "m"
    hist = cal.get("history", [])
    g.attrs["history"] = json.dumps(hist)
    if hist:  # the misfit history also as a plain dataset, for h5dump and plots
        g.create_dataset("misfit", data=np.asarray([h["misfit"] for h in hist], np.float64))
    for key, v in cal.items():
        if key not in _CAL_ARRAYS and key != "history":
            g.attrs[key] = v


def _read_calibration(g: h5py.Group, n_sensors: int, path: Path) -> dict[str, Any]:
    cal: dict[str, Any] = {k: _scalar(v) for k, v in g.attrs.items() if k != "history"}
    for key in _CAL_ARRAYS:
        if key not in g or g[key].shape != (n_sensors, 2):
            raise InputError(f"calibration/{key} missing or not ({n_sensors}, 2)", path)
        cal[key] = g[key][...]
    try:
        cal["history"] = json.loads(_scalar(g.attrs.get("history", "[]")) or "[]")
    except json.JSONDecodeError:
        raise InputError("calibration/history is not valid JSON", path) from None
    return cal


#: IPASC fields oatomo cannot know for any scan (nothing in a scan says them); PACFISH's
#: completeness check lists these as missing in an oatomo export, and nothing else.
IPASC_UNKNOWN = ("pulse_energy", "temperature_control", "acoustic_coupling_agent",
                 "regions_of_interest", "measurement_timestamps", "measurement_spatial_poses",
                 "frequency_domain_filter")


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


def _write_ipasc(f: h5py.File, scan: Scan) -> None:
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


def save_patato(path: str | os.PathLike, scan: Scan, images: np.ndarray, grid: Grid, *,
                algorithm: str, wavelengths: Any = None) -> Path:
    """Write a scan and its reconstruction in PATATO's HDF5 layout, for PATATO's spectral
    unmixing (``patato.PAData.from_hdf5(path).get_scan_reconstructions()``).

    Root attrs ``fs`` (Hz), ``speedofsound`` (m/s), ``name``; datasets ``raw_data``
    (frames, wavelengths, detectors, samples; ``fs`` and ``speedofsound`` again as its
    attributes, where PATATO reads them), ``GEOMETRY`` (detectors, 3) in m,
    ``wavelengths`` in nm (PATATO's spectra are tabulated in nm), ``irf`` when the scan has
    a measured response; and ``recons/<algorithm>/0`` of shape
    (frames, wavelengths, nx, ny, 1) with the ``RECONSTRUCTION_*`` field-of-view (m) and
    pixel attributes.

    Parameters
    ----------
    path
        Output file (written atomically).
    scan
        The scan (its frames/wavelengths must match ``images``).
    images
        (n, n), (wavelengths, n, n) or (frames, wavelengths, n, n) in Pa, oatomo's
        ``image[y, x]`` order (transposed to PATATO's x, y here).
    grid
        Their grid.
    algorithm
        Name of the reconstruction group (e.g. ``"ubp"``).
    wavelengths
        The images' wavelengths (m); default the scan's.
    """
    img = np.asarray(images, np.float32)
    wl = np.atleast_1d(np.asarray(scan.wavelengths if wavelengths is None else wavelengths,
                                  np.float64)) if (wavelengths is not None or
                                                   scan.wavelengths is not None) else None
    n_wl = 1 if wl is None else wl.size
    if img.size % (n_wl * grid.n * grid.n):
        img = img[None]  # fails the shape check below
    elif img.ndim == 2 or (img.ndim == 3 and n_wl > 1 and img.shape[0] == n_wl):
        img = img.reshape((1, n_wl) + img.shape[-2:])
    elif img.ndim == 3:
        img = img[:, None]
    if img.ndim != 4 or img.shape[1] != n_wl or img.shape[-2:] != grid.shape:
        raise InputError(f"images of shape {np.shape(images)} do not match {n_wl} "
                         f"wavelength(s) on a {grid.n}x{grid.n} grid")
    raw = np.asarray(scan.sinogram, np.float32)
    raw = raw.reshape((-1, n_wl) + raw.shape[-2:])
    out = Path(path)

    def fill(f: h5py.File) -> None:
        f.attrs["fs"] = scan.acquisition.fs
        f.attrs["speedofsound"] = scan.acquisition.speed_of_sound
        f.attrs["name"] = str(scan.metadata.get("scan_name") or scan.setup_name or
                              "oatomo scan")
        d = f.create_dataset("raw_data", data=raw)
        # PATATO 0.7 reads the sampling rate and speed of sound from raw_data's attributes
        d.attrs["fs"] = scan.acquisition.fs
        d.attrs["speedofsound"] = scan.acquisition.speed_of_sound
        f["GEOMETRY"] = np.c_[scan.sensors.positions, np.zeros(scan.sensors.n_sensors)]
        d = f.create_dataset("wavelengths", data=np.zeros(1) if wl is None else wl * 1e9)
        d.attrs["units"] = "nm"
        if scan.response is not None and scan.response.impulse_response is not None:
            f["irf"] = scan.response.impulse_response
        r = f.create_dataset(f"recons/{algorithm}/0",
                             data=np.swapaxes(img, -1, -2)[..., None])
        for axis in ("X", "Y"):
            r.attrs[f"RECONSTRUCTION_FIELD_OF_VIEW_{axis}"] = grid.fov
            r.attrs[f"RECONSTRUCTION_N{axis}"] = grid.n
        r.attrs["RECONSTRUCTION_FIELD_OF_VIEW_Z"] = 0.0
        r.attrs["RECONSTRUCTION_NZ"] = 1
        r.attrs["RECONSTRUCTION_ALGORITHM"] = algorithm
        r.attrs["units"] = "Pa"
        if wl is not None:
            r.attrs["wavelengths"] = wl * 1e9

    _write_h5(out, fill)
    return out


def save_images(path: str | os.PathLike, images: dict[str, np.ndarray], grid: Grid, *,
                attrs: dict[str, Any] | None = None) -> Path:
    """Write reconstructed images atomically (``oatomo_format = "image"``).

    Layout: ``/images/<name>`` float32 (..., n, n); root attrs ``grid_n``, ``grid_fov`` (m),
    ``format_version`` and the given ``attrs`` (JSON-encoded when not scalar). When
    ``attrs["units"]`` maps image names to units, each image dataset also carries its own
    ``units`` attribute; every image dataset carries ``axes`` (its leading axes named by
    ``attrs["axes"]``, e.g. ``frame, wavelength``, then ``y, x``) and ``pixel_size`` (m).
    ``attrs["wavelengths"]`` (m) is also written as the dataset ``/wavelengths``.
    """
    from oatomo import __version__

    out = Path(path)

    def fill(f: h5py.File) -> None:
        f.attrs["oatomo_format"] = "image"
        f.attrs["format_version"] = IMAGE_FORMAT_VERSION
        f.attrs["created_by"] = f"oatomo {__version__}"
        f.attrs["grid_n"] = grid.n
        f.attrs["grid_fov"] = grid.fov
        for k, v in (attrs or {}).items():
            f.attrs[k] = v if isinstance(v, (str, int, float)) else json.dumps(v)
        units = (attrs or {}).get("units")
        lead = list((attrs or {}).get("axes") or [])
        for name, img in images.items():
            ds = f.create_dataset(f"images/{name}", data=np.asarray(img, np.float32),
                                  compression="gzip", shuffle=True)
            if isinstance(units, dict) and name in units:
                ds.attrs["units"] = str(units[name])
            names = (lead if len(lead) == ds.ndim - 2 else
                     ["frame"] * (ds.ndim - 2)) + ["y", "x"]
            ds.attrs["axes"] = ", ".join(names)
            ds.attrs["pixel_size"] = grid.dx
        wl = (attrs or {}).get("wavelengths")
        if wl is not None:
            d = f.create_dataset("wavelengths", data=np.asarray(wl, np.float64))
            d.attrs["units"] = "m"

    _write_h5(out, fill)
    return out


def load_images(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], Grid]:
    """Read an image file written by :func:`save_images`."""
    p = Path(path)
    with _open(p) as f:
        if f.attrs.get("oatomo_format") != "image" or "images" not in f:
            raise InputError("not an oatomo image file", p)
        images = {k: f["images"][k][...] for k in f["images"]}
        grid = Grid(int(f.attrs["grid_n"]), float(f.attrs["grid_fov"]))
    return images, grid

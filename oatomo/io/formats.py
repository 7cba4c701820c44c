"""Scan-file formats: the registry, format detection, and the format-independent
:func:`load_scan`, :func:`read_frame`, :func:`save_scan` and :func:`as_scan`.

A format is one module (detect, read and optionally write functions) and one
:class:`ScanFormat` line in :data:`SCAN_FORMATS`; detection tries the formats in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from oatomo._limits import check_bytes
from oatomo.errors import InputError
from oatomo.io.hdf5 import numeric_dataset, open_hdf5, write_hdf5
from oatomo.io.ipasc import is_ipasc, read_ipasc, write_ipasc
from oatomo.io.oatomo_hdf5 import is_oatomo_scan, read_oatomo, write_oatomo
from oatomo.io.patato import is_patato, read_patato
from oatomo.io.scan import Scan, check_samples

__all__ = ["ScanFormat", "SCAN_FORMATS", "detect_format", "load_scan", "read_frame",
           "save_scan", "as_scan"]


@dataclass(frozen=True)
class ScanFormat:
    """One scan-file format.

    Parameters
    ----------
    name
        Its name (:attr:`Scan.source_format`, ``save_scan(format=...)``).
    label
        Its name in messages.
    detect
        Whether an open HDF5 file is in this format.
    read
        ``read(f, path, lazy)``: the :class:`Scan` of an open file; with ``lazy`` the
        samples are a zero-filled view of their declared shape (see
        :func:`oatomo.io.hdf5.read_array`).
    samples
        The dataset holding the sinogram (read one frame at a time by :func:`read_frame`).
    detectors_first
        The samples dataset is [detectors, samples, wavelengths, frames] (IPASC) rather
        than (..., detectors, samples).
    write
        ``write(f, scan)``: fill an empty HDF5 file; None for a format oatomo reads only.
    """

    name: str
    label: str
    detect: Callable[[h5py.File], bool]
    read: Callable[[h5py.File, Path, bool], Scan]
    samples: str
    detectors_first: bool = False
    write: Callable[[h5py.File, Scan], None] | None = None


#: The scan-file formats, in the order they are detected.
SCAN_FORMATS = (
    ScanFormat("oatomo", "oatomo", is_oatomo_scan, read_oatomo, "sinogram", write=write_oatomo),
    ScanFormat("ipasc", "IPASC", is_ipasc, read_ipasc, "binary_time_series_data",
               detectors_first=True, write=write_ipasc),
    ScanFormat("patato", "PATATO", is_patato, read_patato, "raw_data"),
)


def _find_format(f: h5py.File) -> ScanFormat | None:
    """The first format of :data:`SCAN_FORMATS` that the open file is in."""
    return next((spec for spec in SCAN_FORMATS if spec.detect(f)), None)


def _no_format(path: Path) -> InputError:
    """The error for an HDF5 file in none of the formats."""
    labels = [spec.label for spec in SCAN_FORMATS]
    names = ", ".join(labels[:-1]) + " or " + labels[-1]
    return InputError(f"no sinogram found (not an {names} scan file)", path)


def detect_format(f: h5py.File) -> str | None:
    """``"oatomo"``, ``"ipasc"``, ``"patato"`` or None for an open HDF5 file."""
    spec = _find_format(f)
    return None if spec is None else spec.name


def load_scan(path: str | os.PathLike, *, metadata_only: bool = False) -> Scan:
    """Read a scan file, detecting its format (oatomo, IPASC/PACFISH or PATATO HDF5).

    Singleton frame/wavelength axes are squeezed, so a single-frame scan has a
    (N, T) sinogram. Sensor positions with some z != 0 are a 3-D array, kept as they are
    (a :class:`~oatomo.volume.SensorArray3D`; :attr:`Scan.is_3d`); (N, 3) positions
    that all have z = 0 are read as a 2-D scan in that plane (in oatomo's own layout, (N,
    3) positions are always 3-D). Every dataset's dtype and declared size are checked before it is
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
    with open_hdf5(p) as f:
        try:
            spec = _find_format(f)
            if spec is None:
                raise _no_format(p)
            scan = spec.read(f, p, metadata_only)
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
    with open_hdf5(p) as f:
        spec = _find_format(f)
        if spec is None:
            raise _no_format(p)
        name, flip = spec.samples, spec.detectors_first
        d = numeric_dataset(f, name, p)
        if d.ndim < 2:
            raise InputError(f"{name} must have at least 2 dimensions, got {d.shape}", p)
        # detectors first: [detectors, samples, wavelengths, frames]; else (..., N, T)
        lead = d.shape[2:][::-1] if flip else d.shape[:-2]
        n_frames = int(np.prod(lead, dtype=np.int64))
        if not 0 <= index < n_frames:
            raise InputError(f"frame {index} out of range (the scan has {n_frames})", p)
        idx = tuple(int(i) for i in np.unravel_index(index, lead))
        sel = (slice(None), slice(None)) + idx[::-1] if flip else idx
        n_st = d.shape[:2] if flip else d.shape[-2:]
        check_bytes(float(n_st[0]) * n_st[1] * (d.dtype.itemsize + 4),
                    f"reading one frame {n_st} of {name}", p)
        y = np.ascontiguousarray(d[sel], dtype=np.float32)
    check_samples(y, p)
    return y


def save_scan(path: str | os.PathLike, scan: Scan, format: str = "oatomo") -> Path:
    """Write a scan atomically in oatomo's layout or as an IPASC (PACFISH-readable) file.

    The IPASC form keeps sinogram, sensors, sampling rate, speed of sound and wavelengths;
    truth, setup and seed are oatomo-only. IPASC signals start at the laser pulse: a scan
    with ``t0 > 0`` gets ``t0 * fs`` zero samples in front (an :class:`InputError` when that
    is not a whole number, or ``t0 < 0``). It also writes the detector fields PACFISH checks
    (point geometry, flat angular response, the frequency response of :attr:`Scan.response`
    or a flat one) and the gains (1, no TGC); the fields in
    :data:`~oatomo.io.ipasc.IPASC_UNKNOWN` and the illumination are not known for an oatomo
    scan and are left out, unless given in ``scan.metadata["ipasc"]`` (field name -> value
    in SI units).
    """
    writers = [spec for spec in SCAN_FORMATS if spec.write is not None]
    write = next((spec.write for spec in writers if spec.name == format), None)
    if write is None:
        names = " or ".join(spec.name for spec in writers)
        raise InputError(f"unknown scan format {format!r} (choose {names})")
    out = Path(path)
    scan.validate()
    write_hdf5(out, lambda f: write(f, scan))
    return out


def as_scan(scan: Any) -> tuple[Scan, str]:
    """A :class:`Scan` as given, or the scan file at a path; with its source's name."""
    if isinstance(scan, (str, os.PathLike)):
        return load_scan(scan), str(scan)
    if not hasattr(scan, "sinogram"):
        raise InputError(f"expected a Scan or a scan file path, got {type(scan).__name__}")
    return scan, "<Scan>"

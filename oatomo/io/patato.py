"""PATATO HDF5 files: scan reader, and a writer of a scan with its reconstruction.

Layout: root attrs ``fs`` (Hz), ``speedofsound`` (m/s), ``name``; ``/raw_data`` (frames,
wavelengths, detectors, samples), ``/GEOMETRY`` (detectors, 3) in m, ``/wavelengths`` (nm),
``/irf`` (time-domain impulse response), per-measurement records (``RUN``, ``Z-POS``, ...,
each (frames, wavelengths)) and ``/recons/<algorithm>/<i>`` (frames, wavelengths, z, y, x).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from oatomo._limits import FS_RANGE, SPEED_RANGE
from oatomo.errors import InputError, blame
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.io.hdf5 import (
    from_key,
    ranged_value,
    read_array,
    sensor_positions,
    text_value,
    write_hdf5,
)
from oatomo.io.scan import Scan, is_volume_scan
from oatomo.response import DetectorResponse
from oatomo.units import UNITS_PA
from oatomo.volume.geometry import SensorArray3D, VolumeGrid

__all__ = ["is_patato", "read_patato", "save_patato"]


def is_patato(f: h5py.File) -> bool:
    """Whether the open HDF5 file is a PATATO scan (``raw_data`` with geometry or ``fs``)."""
    return "raw_data" in f and ("GEOMETRY" in f or "fs" in f.attrs)


def read_patato(f: h5py.File, path: Path, lazy: bool = False) -> Scan:
    """The scan in an open PATATO file (samples zero-filled with ``lazy``)."""
    raw = f["raw_data"]
    if not isinstance(raw, h5py.Dataset):
        raise InputError("raw_data is a group, not a dataset", path)
    fs_key = "raw_data/fs" if "fs" in raw.attrs else "fs"
    fs = raw.attrs.get("fs", f.attrs.get("fs"))
    if fs is None:
        raise InputError("sampling frequency attribute 'fs' missing", path)
    c_key = "raw_data/speedofsound" if "speedofsound" in raw.attrs else "speedofsound"
    c = raw.attrs.get("speedofsound", f.attrs.get("speedofsound", 1500.0))
    if "GEOMETRY" not in f:
        raise InputError("no sensors (dataset GEOMETRY missing)", path)
    sino = read_array(f, "raw_data", path, lazy=lazy)  # (frames, wavelengths, detectors, samples)
    with from_key("GEOMETRY", path):
        pos = sensor_positions(read_array(f, "GEOMETRY", path), path)
        sensors = SensorArray3D(pos) if pos.shape[1] == 3 else SensorArray(pos)
    with blame(path):
        acq = Acquisition(fs=ranged_value(fs, fs_key, *FS_RANGE, path, unit="Hz"),
                          n_samples=sino.shape[-1],
                          speed_of_sound=ranged_value(c, c_key, *SPEED_RANGE, path,
                                                      unit="m/s"))
    wl = read_array(f, "wavelengths", path) if "wavelengths" in f else None
    if wl is not None and (np.size(wl) == 0 or not np.any(wl)):  # 0: none recorded
        wl = None
    if wl is not None and np.size(wl) and float(np.max(wl)) > 1e-4:  # PATATO/iThera: nm
        wl = np.asarray(wl, np.float64) * 1e-9
    name = text_value(f.attrs.get("name", ""), "name", path)
    response = None
    if "irf" in f:  # PATATO: time-domain impulse response (n,), time zero at n // 2
        with from_key("irf", path):
            response = DetectorResponse(impulse_response=read_array(f, "irf", path), fs=acq.fs)
    return Scan(sinogram=sino, sensors=sensors, acquisition=acq, wavelengths=wl,
                metadata={"scan_name": name} if name else {}, source_format="patato",
                response=response)


def save_patato(path: str | os.PathLike, scan: Scan, images: np.ndarray,
                grid: Grid | VolumeGrid, *,
                algorithm: str = "oatomo", wavelengths: Any = None,
                units: str = UNITS_PA) -> Path:
    """Write a scan and its reconstruction in PATATO's HDF5 layout, for PATATO's spectral
    unmixing (``patato.PAData.from_hdf5(path)``, ``patato-unmix path``).

    Root attrs ``fs`` (Hz), ``speedofsound`` (m/s), ``name``, ``comment``; datasets
    ``raw_data`` (frames, wavelengths, detectors, samples; ``fs``, ``speedofsound`` and
    ``name`` again as its attributes, where PATATO reads them), ``GEOMETRY`` (detectors, 3)
    in m, ``wavelengths`` in nm (PATATO's spectra are tabulated in nm), ``irf`` when the
    scan has a measured response; the per-measurement records PATATO indexes its frames
    with, each (frames, wavelengths): ``RUN`` and ``REPETITION`` (0 and the frame index),
    ``Z-POS`` (0 m: one slice), ``TEMPERATURE`` (NaN: not known), ``timestamp`` (0, in
    PATATO's 100 ns ticks) and ``OverallCorrectionFactor`` (1: the samples are already in
    Pa); and ``recons/<algorithm>/0`` of shape (frames, wavelengths, 1, ny, nx) -- PATATO's
    (z, y, x) image axes, ``image[y, x]`` as oatomo's -- with the ``RECONSTRUCTION_*``
    attributes. PATATO places the pixel centres evenly from ``-fov/2`` to ``+fov/2``, so its
    field of view is the span between the outer pixel centres, ``(n - 1) * grid.dx``: its
    pixels then sit where oatomo's do.

    A 3-D scan (:attr:`Scan.is_3d`) is written with its (N, 3) positions in ``GEOMETRY``
    and its volumes, on a :class:`~oatomo.volume.VolumeGrid`, as ``recons/<algorithm>/0``
    of shape (frames, wavelengths, nz, ny, nx), the same axes, with
    ``RECONSTRUCTION_NZ`` and ``RECONSTRUCTION_FIELD_OF_VIEW_Z`` set as for x and y.

    Parameters
    ----------
    path
        Output file (written atomically).
    scan
        The scan (its frames/wavelengths must match ``images``).
    images
        (n, n), (wavelengths, n, n) or (frames, wavelengths, n, n) in Pa, oatomo's
        ``image[y, x]`` order; for a 3-D scan the same with a volume (nz, ny, nx) in
        place of each image.
    grid
        Their grid (a :class:`~oatomo.volume.VolumeGrid` for a 3-D scan).
    algorithm
        Name of the reconstruction group (e.g. the method, ``"ubp"``).
    wavelengths
        The images' wavelengths (m); default the scan's.
    units
        The images' units (the reconstruction's ``units``: ``"Pa"``, or ``"a.u."`` for
        UBP and DAS), written as the reconstruction's ``units`` attribute.

    Returns
    -------
    Path
        The file written.
    """
    img = np.asarray(images, np.float32)
    wl = np.atleast_1d(np.asarray(scan.wavelengths if wavelengths is None else wavelengths,
                                  np.float64)) if (wavelengths is not None or
                                                   scan.wavelengths is not None) else None
    if not isinstance(algorithm, str) or not algorithm or "/" in algorithm:
        raise InputError(f"algorithm must be a non-empty name without '/', got {algorithm!r}")
    volume = isinstance(grid, VolumeGrid)
    if volume != is_volume_scan(scan):
        raise InputError("a 3-D scan's reconstructions are volumes on a VolumeGrid, a 2-D "
                         "scan's images on a Grid; got " + ("a VolumeGrid for a 2-D scan"
                                                           if volume else "a Grid for a 3-D "
                                                           "scan"))
    n_wl = 1 if wl is None else wl.size
    dims = len(grid.shape)
    per_image = int(np.prod(grid.shape))
    if img.size % (n_wl * per_image):
        img = img[None]  # fails the shape check below
    elif img.ndim == dims or (img.ndim == dims + 1 and n_wl > 1 and img.shape[0] == n_wl):
        img = img.reshape((1, n_wl) + img.shape[-dims:])
    elif img.ndim == dims + 1:
        img = img[:, None]
    if img.ndim != dims + 2 or img.shape[1] != n_wl or img.shape[-dims:] != grid.shape:
        size = "x".join(str(v) for v in grid.shape)
        raise InputError(f"images of shape {np.shape(images)} do not match {n_wl} "
                         f"wavelength(s) on a {size} grid")
    raw = np.asarray(scan.sinogram, np.float32)
    raw = raw.reshape((-1, n_wl) + raw.shape[-2:])
    if raw.shape[0] != img.shape[0]:
        raise InputError(f"images of shape {np.shape(images)} have {img.shape[0]} frame(s), "
                         f"the scan {raw.shape[0]}")
    out = Path(path)
    name = str(scan.metadata.get("scan_name") or scan.setup_name or "oatomo scan")
    per_measurement = raw.shape[:2]  # (frames, wavelengths)
    # between the outer pixel centres, per axis z, y, x
    spans = [(m - 1) * grid.dx for m in (grid.shape if volume else (1,) + grid.shape)]

    def fill(f: h5py.File) -> None:
        f.attrs["fs"] = scan.acquisition.fs
        f.attrs["speedofsound"] = scan.acquisition.speed_of_sound
        f.attrs["name"] = name
        f.attrs["comment"] = f"written by oatomo ({algorithm})"
        d = f.create_dataset("raw_data", data=raw)
        # PATATO 0.7 reads the sampling rate, speed of sound and name from raw_data's attrs
        d.attrs["fs"] = scan.acquisition.fs
        d.attrs["speedofsound"] = scan.acquisition.speed_of_sound
        d.attrs["name"] = name
        f["GEOMETRY"] = scan.sensors.positions if volume else \
            np.c_[scan.sensors.positions, np.zeros(scan.sensors.n_sensors)]
        d = f.create_dataset("wavelengths", data=np.zeros(1) if wl is None else wl * 1e9)
        d.attrs["units"] = "nm"
        if scan.response is not None and scan.response.impulse_response is not None:
            f["irf"] = scan.response.impulse_response
        frame_index = np.broadcast_to(np.arange(per_measurement[0])[:, None], per_measurement)
        f["RUN"] = np.zeros(per_measurement, np.int64)
        f["REPETITION"] = np.array(frame_index, np.int64)
        f["Z-POS"] = np.zeros(per_measurement)
        f["TEMPERATURE"] = np.full(per_measurement, np.nan)
        f["timestamp"] = np.zeros(per_measurement, np.int64)
        f["OverallCorrectionFactor"] = np.ones(per_measurement)
        r = f.create_dataset(f"recons/{algorithm}/0", data=img if volume else img[:, :, None])
        for axis, m, span in zip("ZYX", r.shape[-3:], spans, strict=True):
            r.attrs[f"RECONSTRUCTION_FIELD_OF_VIEW_{axis}"] = span
            r.attrs[f"RECONSTRUCTION_N{axis}"] = m
        r.attrs["RECONSTRUCTION_ALGORITHM"] = algorithm
        r.attrs["units"] = units
        if wl is not None:
            r.attrs["wavelengths"] = wl * 1e9

    write_hdf5(out, fill)
    return out

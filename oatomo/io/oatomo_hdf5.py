"""oatomo's own scan layout (``oatomo_format = "scan"``, ``format_version = 1``)::

    /sinogram                float32 (..., N, T) in Pa; leading axes = frames/wavelengths
    /sensors/positions       float64 (N, 2) nominal positions (m); (N, 3) x, y, z for a
                             3-D array (a volume scan)
    /sensors/normals         float64 (N, 2) or (N, 3)
    /sensors/areas           float64 (N,) m^2, the UBP weights of a 3-D array  [3-D only]
    /acquisition             group; attrs fs (Hz), n_samples, speed_of_sound (m/s), t0 (s)
    /truth/p0                float32 (n, n), attrs grid_n, grid_fov (m)   [optional]
                             3-D: (nz, ny, nx), attrs also grid_shape, axes "z, y, x"
    /truth/true_positions    float64 (N, 2) or (N, 3) (m)                 [optional]
    /truth/true_normals      float64 (N, 2) or (N, 3)                     [optional]
    /wavelengths             float64 (W,) (m)                              [optional]
    /detector                group; attrs centre_frequency (Hz), bandwidth (fraction), or a
                             dataset impulse_response (attrs fs, time_zero_index)   [optional]
    /calibration             group; a self-calibrated scan's record              [optional]
    /attenuation             group; attrs alpha0 (dB/(MHz^y cm)), power (y)      [optional]
    root attrs: setup (TOML text), setup_name, seed, metadata (JSON), created_by,
                medium ("slab" or "2d"; absent: "slab")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from oatomo import __version__
from oatomo._limits import (
    ATTENUATION_POWER_RANGE,
    ATTENUATION_RANGE,
    FS_RANGE,
    MAX_POSITION,
    MAX_SAMPLES,
    MAX_T0,
    SPEED_RANGE,
    check_seed,
)
from oatomo.errors import InputError, blame
from oatomo.geometry import MAX_GRID_SIDE, Acquisition, Grid, SensorArray
from oatomo.io.hdf5 import (
    from_key,
    integer_value,
    json_value,
    ranged_value,
    read_array,
    scalar_value,
    sensor_positions,
    text_value,
)
from oatomo.io.scan import Scan
from oatomo.media import DEFAULT_MEDIUM, Attenuation, check_medium
from oatomo.response import DetectorResponse
from oatomo.volume.geometry import SensorArray3D, VolumeGrid

__all__ = ["SCAN_FORMAT_VERSION", "is_oatomo_scan", "read_oatomo", "write_oatomo"]


SCAN_FORMAT_VERSION = 1


def is_oatomo_scan(f: h5py.File) -> bool:
    """Whether the open HDF5 file is in oatomo's scan layout."""
    return f.attrs.get("oatomo_format") == "scan"


def read_oatomo(f: h5py.File, path: Path, lazy: bool = False) -> Scan:
    """The scan in an open file of oatomo's layout (samples zero-filled with ``lazy``)."""
    version = integer_value(f.attrs.get("format_version", 0), "format_version", path)
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
    sino = read_array(f, "sinogram", path, lazy=lazy)
    # every value is checked as it is read, and a bad one is reported with its HDF5 key
    with from_key("sensors/positions", path):
        raw_pos = read_array(f, "sensors/positions", path)
        three = np.ndim(raw_pos) == 2 and np.shape(raw_pos)[1] == 3  # oatomo: (N, 3) is 3-D
        pos = np.asarray(raw_pos, np.float64) if three else sensor_positions(raw_pos, path)
        if not three:
            SensorArray(pos)
    with from_key("sensors/normals", path):
        normals = read_array(f, "sensors/normals", path) if "sensors/normals" in f else None
        if three:
            sensors = SensorArray3D(pos, normals, read_array(f, "sensors/areas", path)
                                    if "sensors/areas" in f else None)
        else:
            sensors = SensorArray(pos, normals)
    with from_key("acquisition/n_samples", path):
        n_samples = integer_value(acq_attrs["n_samples"], "n_samples", path)
        if not 1 <= n_samples <= MAX_SAMPLES:
            raise InputError(f"n_samples must be an integer in [1, {MAX_SAMPLES}], got "
                             f"{n_samples}")
    with blame(path):
        acq = Acquisition(
            fs=ranged_value(acq_attrs["fs"], "acquisition/fs", *FS_RANGE, path, unit="Hz"),
            n_samples=n_samples,
            speed_of_sound=ranged_value(acq_attrs.get("speed_of_sound", 1500.0),
                                        "acquisition/speed_of_sound", *SPEED_RANGE, path,
                                        unit="m/s"),
            t0=ranged_value(acq_attrs.get("t0", 0.0), "acquisition/t0", -MAX_T0, MAX_T0,
                            path, unit="s"))
    p0 = grid = true = None
    if "truth/p0" in f:
        d = f["truth/p0"]
        with from_key("truth/p0/grid_n", path):
            n = integer_value(d.attrs.get("grid_n"), "grid_n", path)
            if not 1 <= n <= MAX_GRID_SIDE:
                raise InputError(f"grid_n must be an integer in [1, {MAX_GRID_SIDE}], got {n}")
        fov = ranged_value(d.attrs.get("grid_fov"), "truth/p0/grid_fov", 0.0, 2 * MAX_POSITION,
                           path, unit="m")
        with from_key("truth/p0", path):
            if three:
                shape = np.ravel(d.attrs.get("grid_shape", d.shape))
                if shape.size != 3:
                    raise InputError(f"truth/p0 grid_shape must be (nz, ny, nx), got "
                                     f"{shape.tolist()}")
                grid = VolumeGrid(n, fov, shape=tuple(
                    integer_value(v, "truth/p0 grid_shape", path) for v in shape))
            else:
                grid = Grid(n, fov)
        p0 = read_array(f, "truth/p0", path).astype(np.float32)
    if "truth/true_positions" in f:
        with from_key("truth/true_positions", path):
            kind = SensorArray3D if three else SensorArray
            true = kind(read_array(f, "truth/true_positions", path),
                        read_array(f, "truth/true_normals", path)
                        if "truth/true_normals" in f else None)
    meta = json_value(f.attrs.get("metadata", "{}"), "metadata", path)
    if not isinstance(meta, dict):
        raise InputError("metadata is not a JSON object", path)
    seed = f.attrs.get("seed")
    if seed is not None:
        with from_key("seed", path):
            seed = check_seed(integer_value(seed, "seed", path), "seed")
    return Scan(sinogram=sino, sensors=sensors, acquisition=acq, p0=p0, grid=grid,
                true_sensors=true,
                setup_name=text_value(f.attrs.get("setup_name"), "setup_name", path),
                setup_toml=text_value(f.attrs.get("setup"), "setup", path),
                seed=seed,
                wavelengths=read_array(f, "wavelengths", path) if "wavelengths" in f else None,
                metadata=meta, source_format="oatomo", response=_read_response(f, path),
                calibration=(_read_calibration(f["calibration"], sensors.n_sensors, path)
                             if "calibration" in f else None),
                medium=_read_medium(f, path), attenuation=_read_attenuation(f, path))


def write_oatomo(f: h5py.File, scan: Scan) -> None:
    """Fill the empty HDF5 file ``f`` with ``scan`` in oatomo's layout."""
    f.attrs["oatomo_format"] = "scan"
    f.attrs["format_version"] = SCAN_FORMAT_VERSION
    f.attrs["created_by"] = f"oatomo {__version__}"
    d = f.create_dataset("sinogram", data=np.asarray(scan.sinogram, np.float32),
                         compression="gzip", compression_opts=4, shuffle=True)
    d.attrs["units"] = "Pa"
    d.attrs["axes"] = "(..., sensor, sample)"
    f.create_dataset("sensors/positions", data=scan.sensors.positions).attrs["units"] = "m"
    f.create_dataset("sensors/normals", data=scan.sensors.normals)
    if isinstance(scan.sensors, SensorArray3D):
        f.create_dataset("sensors/areas", data=scan.sensors.areas).attrs["units"] = "m^2"
    g = f.create_group("acquisition")
    for k, v in scan.acquisition.to_dict().items():
        g.attrs[k] = v
    if scan.p0 is not None and scan.grid is not None:
        t = f.create_dataset("truth/p0", data=np.asarray(scan.p0, np.float32),
                             compression="gzip", shuffle=True)
        t.attrs["grid_n"] = scan.grid.n
        t.attrs["grid_fov"] = scan.grid.fov
        t.attrs["units"] = "Pa"
        if isinstance(scan.grid, VolumeGrid):
            t.attrs["grid_shape"] = np.asarray(scan.grid.shape, np.int64)
            t.attrs["axes"] = "z, y, x"
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
    f.attrs["medium"] = scan.medium
    if scan.attenuation is not None:
        g = f.create_group("attenuation")
        g.attrs["alpha0"] = scan.attenuation.alpha0
        g.attrs["power"] = scan.attenuation.power
        g.attrs["units"] = json.dumps({"alpha0": "dB/(MHz^power cm)", "power": "1"})


def _read_medium(f: h5py.File, path: Path) -> str:
    """The root ``medium`` attribute (absent: the slab)."""
    value = text_value(f.attrs.get("medium"), "medium", path)
    with blame(path):
        return check_medium(DEFAULT_MEDIUM if value is None else value, "medium")


def _read_attenuation(f: h5py.File, path: Path) -> Attenuation | None:
    """The attenuation of ``/attenuation``; None when absent."""
    if "attenuation" not in f:
        return None
    g = f["attenuation"]
    if not isinstance(g, h5py.Group):
        raise InputError("attenuation is a dataset, not a group", path)
    with blame(path):
        return Attenuation(
            ranged_value(g.attrs.get("alpha0"), "attenuation/alpha0", *ATTENUATION_RANGE,
                         path, unit="dB/(MHz^y cm)"),
            ranged_value(g.attrs.get("power"), "attenuation/power", *ATTENUATION_POWER_RANGE,
                         path))


def _write_response(g: h5py.Group, r: DetectorResponse) -> None:
    """The detector response into ``/detector``."""
    if r.impulse_response is None:
        g.attrs["centre_frequency"] = r.centre_frequency
        g.attrs["bandwidth"] = r.bandwidth
        g.attrs["units"] = json.dumps({"centre_frequency": "Hz", "bandwidth": "fraction"})
        return
    d = g.create_dataset("impulse_response", data=r.impulse_response)
    d.attrs["fs"] = r.fs
    d.attrs["time_zero_index"] = r.impulse_response.size // 2


def _read_response(f: h5py.File, path: Path) -> DetectorResponse | None:
    """The detector response of ``/detector``; None when absent."""
    if "detector" not in f:
        return None
    g = f["detector"]
    if not isinstance(g, h5py.Group):
        raise InputError("detector is a dataset, not a group", path)
    if "impulse_response" in g:
        h = read_array(g, "impulse_response", path)
        fs = ranged_value(g["impulse_response"].attrs.get("fs"), "detector/impulse_response/fs",
                          *FS_RANGE, path, unit="Hz")
        with from_key("detector/impulse_response", path):
            return DetectorResponse(impulse_response=h, fs=fs)
    fc = ranged_value(g.attrs.get("centre_frequency"), "detector/centre_frequency", 0.0,
                      FS_RANGE[1], path, unit="Hz")
    bw = ranged_value(g.attrs.get("bandwidth"), "detector/bandwidth", 0.0, 1e3, path)
    with from_key("detector", path):
        return DetectorResponse(centre_frequency=fc, bandwidth=bw)


#: Datasets of ``/calibration`` (arrays); everything else there is an attribute.
_CAL_ARRAYS = ("nominal_positions", "position_std")


def _write_calibration(g: h5py.Group, cal: dict[str, Any]) -> None:
    """A self-calibration record (:attr:`Scan.calibration`) into ``/calibration``."""
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
    """The self-calibration record of ``/calibration`` (``n_sensors`` sensors)."""
    cal: dict[str, Any] = {k: scalar_value(v) for k, v in g.attrs.items() if k != "history"}
    for key in _CAL_ARRAYS:
        if key not in g or g[key].shape != (n_sensors, 2):
            raise InputError(f"calibration/{key} missing or not ({n_sensors}, 2)", path)
        cal[key] = g[key][...]
    cal["history"] = json_value(g.attrs.get("history", "[]"), "calibration/history", path)
    return cal

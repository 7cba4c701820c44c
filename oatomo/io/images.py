"""Reconstructed image files (``oatomo_format = "image"``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from oatomo import __version__
from oatomo.errors import InputError
from oatomo.geometry import Grid
from oatomo.io.hdf5 import (
    integer_value,
    json_value,
    number_value,
    numeric_dataset,
    open_hdf5,
    scalar_value,
    text_value,
    write_hdf5,
)
from oatomo.volume.geometry import VolumeGrid

__all__ = ["IMAGE_FORMAT_VERSION", "save_images", "load_images", "read_image_info"]


IMAGE_FORMAT_VERSION = 1


def save_images(path: str | os.PathLike, images: dict[str, np.ndarray],
                grid: Grid | VolumeGrid, *, attrs: dict[str, Any] | None = None) -> Path:
    """Write reconstructed images atomically (``oatomo_format = "image"``).

    Layout: ``/images/<name>`` float32 (..., n, n); root attrs ``grid_n``, ``grid_fov`` (m),
    ``format_version`` and the given ``attrs`` (JSON-encoded when not scalar). When
    ``attrs["units"]`` maps image names to units, each image dataset also carries its own
    ``units`` attribute; every image dataset carries ``axes`` (its leading axes named by
    ``attrs["axes"]``, e.g. ``frame, wavelength``, then ``y, x``) and ``pixel_size`` (m).
    ``attrs["wavelengths"]`` (m) is also written as the dataset ``/wavelengths``.

    Volumes (``grid`` a :class:`~oatomo.volume.VolumeGrid`): ``/images/<name>`` float32
    (..., nz, ny, nx), axes ``frame, z, y, x``, ``voxel_size`` (m) in place of
    ``pixel_size``; root attrs also ``grid_shape`` (nz, ny, nx) and ``dimensions`` 3.
    """
    out = Path(path)
    volume = isinstance(grid, VolumeGrid)
    spatial = ["z", "y", "x"] if volume else ["y", "x"]
    for name, img in images.items():
        if np.shape(img)[-len(spatial):] != grid.shape:
            raise InputError(f"image {name!r} of shape {np.shape(img)} is not on the "
                             f"{'x'.join(str(m) for m in grid.shape)} grid")

    def fill(f: h5py.File) -> None:
        f.attrs["oatomo_format"] = "image"
        f.attrs["format_version"] = IMAGE_FORMAT_VERSION
        f.attrs["created_by"] = f"oatomo {__version__}"
        f.attrs["grid_n"] = grid.n
        f.attrs["grid_fov"] = grid.fov
        if volume:
            f.attrs["grid_shape"] = np.asarray(grid.shape, np.int64)
            f.attrs["dimensions"] = 3
        for k, v in (attrs or {}).items():
            f.attrs[k] = v if isinstance(v, (str, int, float)) else json.dumps(v)
        units = (attrs or {}).get("units")
        lead = list((attrs or {}).get("axes") or [])
        for name, img in images.items():
            ds = f.create_dataset(f"images/{name}", data=np.asarray(img, np.float32),
                                  compression="gzip", shuffle=True)
            if isinstance(units, dict) and name in units:
                ds.attrs["units"] = str(units[name])
            n_lead = ds.ndim - len(spatial)
            names = (lead if len(lead) == n_lead else ["frame"] * n_lead) + spatial
            ds.attrs["axes"] = ", ".join(names)
            ds.attrs["voxel_size" if volume else "pixel_size"] = grid.dx
        wl = (attrs or {}).get("wavelengths")
        if wl is not None:
            d = f.create_dataset("wavelengths", data=np.asarray(wl, np.float64))
            d.attrs["units"] = "m"

    write_hdf5(out, fill)
    return out


def load_images(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], Grid | VolumeGrid]:
    """Read an image file written by :func:`save_images` (a :class:`~oatomo.volume.
    VolumeGrid` for volumes)."""
    p = Path(path)
    with open_hdf5(p) as f:
        if f.attrs.get("oatomo_format") != "image" or "images" not in f:
            raise InputError("not an oatomo image file", p)
        images = {k: f["images"][k][...] for k in f["images"]}
        grid = _grid(f, p)
    return images, grid


def _grid(f: h5py.File, path: Path) -> Grid | VolumeGrid:
    """The grid of an open image file: a VolumeGrid when it has ``grid_shape``."""
    n = integer_value(f.attrs.get("grid_n"), "grid_n", path)
    fov = number_value(f.attrs.get("grid_fov"), "grid_fov", path)
    if "grid_shape" not in f.attrs:
        return Grid(n, fov)
    shape = np.ravel(f.attrs["grid_shape"])
    if shape.size != 3:
        raise InputError(f"grid_shape must be (nz, ny, nx), got {shape.tolist()}", path)
    return VolumeGrid(n, fov, shape=tuple(integer_value(v, "grid_shape", path)
                                          for v in shape))


def read_image_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """The grid, the images (``name shape (axes) in units``, one string each) and the
    provenance of an oatomo image file, reading no pixels; None for any other file."""
    path = Path(path)
    with open_hdf5(path) as f:
        def attr(key: str) -> Any:  # a number or text; None when absent or else
            v = scalar_value(f.attrs.get(key))
            return v if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None

        if attr("oatomo_format") != "image":
            return None
        group = f.get("images")
        if not isinstance(group, h5py.Group):
            raise InputError("oatomo image file without an /images group", path)
        try:
            grid = _grid(f, path)
        except InputError as exc:
            raise InputError(f"bad image grid: {exc.problem}", path) from None
        images = []
        for name in group:
            d = numeric_dataset(group, name, path)
            units = text_value(d.attrs.get("units"), f"images/{name} units", path)
            axes = text_value(d.attrs.get("axes"), f"images/{name} axes", path)
            images.append(f"{name} {'x'.join(str(k) for k in d.shape)}"
                          + (f" ({axes})" if axes else "") + f" in {units or '?'}")
        prov = {k: attr(k) for k in ("method", "source", "format", "n_sensors",
                                     "speed_of_sound", "created_by", "format_version")}
        # entries that are neither numbers nor text are stored as JSON text (None: "null")
        for key in ("refinement", "calibration", "wavelengths"):
            v = attr(key)
            prov[key] = json_value(v, key, path) if isinstance(v, str) else None
        prov["preset"] = None if attr("preset") == "null" else attr("preset")
    return {"grid": grid, "images": images, "provenance": prov}

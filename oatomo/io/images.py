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

__all__ = ["IMAGE_FORMAT_VERSION", "save_images", "load_images", "read_image_info"]


IMAGE_FORMAT_VERSION = 1


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

    write_hdf5(out, fill)
    return out


def load_images(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], Grid]:
    """Read an image file written by :func:`save_images`."""
    p = Path(path)
    with open_hdf5(p) as f:
        if f.attrs.get("oatomo_format") != "image" or "images" not in f:
            raise InputError("not an oatomo image file", p)
        images = {k: f["images"][k][...] for k in f["images"]}
        grid = Grid(int(f.attrs["grid_n"]), float(f.attrs["grid_fov"]))
    return images, grid


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
            grid = Grid(integer_value(f.attrs.get("grid_n"), "grid_n", path),
                        number_value(f.attrs.get("grid_fov"), "grid_fov", path))
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

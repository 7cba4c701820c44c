"""Scan and image files: oatomo's own HDF5 layout, IPASC/PACFISH and PATATO HDF5.

All file I/O of the toolkit lives in this package. Files are opened read-only; outputs
are written to a temporary file and renamed into place. Every problem with a file raises
:class:`oatomo.InputError` with a one-line message that starts with the file name.

Modules
-------
scan
    The :class:`Scan` type.
formats
    The registry of scan-file formats (:data:`SCAN_FORMATS`), format detection,
    :func:`load_scan`, :func:`read_frame`, :func:`save_scan` and :func:`as_scan`.
oatomo_hdf5, ipasc, patato
    One scan-file format each: detection, reader and writer.
images
    Reconstructed image files (:func:`save_images`, :func:`load_images`,
    :func:`read_image_info`).
calibration_json
    Calibration JSON files (:func:`save_calibration`, :func:`load_calibration`).
grid
    The default image grid of a scan (:func:`default_grid`, :func:`object_fov`).
hdf5
    HDF5 plumbing shared by the formats (checked reads, atomic writes).

Adding a scan-file format: one module ``oatomo/io/<format>.py`` with ``is_<format>(f)``,
``read_<format>(f, path, lazy)`` and, if oatomo writes it, ``write_<format>(f, scan)``
(built on :mod:`oatomo.io.hdf5`), and one :class:`ScanFormat` line in
:data:`oatomo.io.formats.SCAN_FORMATS`.
"""

from oatomo.io.calibration_json import CALIBRATION_KIND, load_calibration, save_calibration
from oatomo.io.formats import (
    SCAN_FORMATS,
    ScanFormat,
    as_scan,
    detect_format,
    load_scan,
    read_frame,
    save_scan,
)
from oatomo.io.grid import default_grid, object_fov
from oatomo.io.images import IMAGE_FORMAT_VERSION, load_images, read_image_info, save_images
from oatomo.io.ipasc import IPASC_UNKNOWN
from oatomo.io.oatomo_hdf5 import SCAN_FORMAT_VERSION
from oatomo.io.patato import save_patato
from oatomo.io.scan import MAX_PRESSURE, Scan, is_volume_scan, require_plane

__all__ = ["Scan", "as_scan", "default_grid", "object_fov", "IPASC_UNKNOWN", "load_scan",
           "read_frame", "save_scan", "save_images", "save_patato", "read_image_info",
           "load_images", "detect_format", "load_calibration", "save_calibration",
           "SCAN_FORMAT_VERSION", "CALIBRATION_KIND", "MAX_PRESSURE", "IMAGE_FORMAT_VERSION",
           "ScanFormat", "SCAN_FORMATS", "is_volume_scan", "require_plane"]

"""The reconstruction pipeline every caller uses: scan in, named images out.

:func:`reconstruct` runs the steps in order, each a plain function a user can also call:

1. :func:`load` — a :class:`~oatomo.io.Scan` or a scan file, with :func:`override_geometry`
   and :func:`select` (frames, wavelengths) (:mod:`oatomo.pipeline.frames`);
2. :func:`scan_geometry` — the sensors and acquisition to reconstruct with: the scan's
   own, or (``calibrate=True``) those estimated from the data (:mod:`oatomo.calibration`;
   the ``calibrate="auto"`` decision in :mod:`oatomo.pipeline.policy`);
3. :func:`reconstruct_sinogram` — the linear or model-based method of
   :data:`oatomo.recon.registry.METHODS`, all frames;
4. :func:`refine_images` — the learned refinement, when a model applies
   (:mod:`oatomo.pipeline.refinement`).

A scan with 3-D sensor positions is reconstructed into volumes by
:func:`reconstruct_volume_scan` (:mod:`oatomo.pipeline.volume`), which
:func:`reconstruct` calls for it.

Its keywords and presets are resolved in :mod:`oatomo.pipeline.options`, and it and its
result, :class:`Reconstruction`, are in :mod:`oatomo.pipeline.reconstruction`.

The command line (``oatomo reconstruct``), ``oatomo dataset``, ``oatomo evaluate`` and the
benchmarks call these functions; none keeps its own copy.
"""

from oatomo.io import default_grid
from oatomo.pipeline.frames import (
    frame_selection,
    load,
    override_geometry,
    reconstruct_by_frame,
    select,
)
from oatomo.pipeline.options import ReconstructOptions, resolve_options
from oatomo.pipeline.policy import scan_geometry
from oatomo.pipeline.reconstruction import (
    UNITS_PA,
    UNITS_REFINED,
    Reconstruction,
    reconstruct,
)
from oatomo.pipeline.refinement import refine_images
from oatomo.pipeline.volume import VolumeReconstruction, reconstruct_volume_scan
from oatomo.recon.registry import reconstruct_sinogram

__all__ = ["Reconstruction", "reconstruct", "reconstruct_sinogram", "default_grid", "load",
           "scan_geometry", "override_geometry", "select", "refine_images", "UNITS_PA",
           "UNITS_REFINED", "frame_selection", "reconstruct_by_frame", "ReconstructOptions",
           "resolve_options", "VolumeReconstruction", "reconstruct_volume_scan"]

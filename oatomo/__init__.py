"""oatomo: optoacoustic tomography with setup-perturbed simulation, fast reconstruction
and setup-invariant learned refinement.

The public API is re-exported here. Submodules are imported lazily, so ``import oatomo``
stays fast and does not import PyTorch until a learning feature is used.
"""

from __future__ import annotations

from oatomo._lazy import lazy_exports
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray, ring_array

__version__ = "0.1.0"

_LAZY = {
    "Setup": "oatomo.setups",
    "load_setup": "oatomo.setups",
    "simulate": "oatomo.forward",
    "ForwardOperator": "oatomo.forward",
    "SpeedMap": "oatomo.speed_map",
    "backproject": "oatomo.recon.backprojection",
    "reconstruct": "oatomo.pipeline",
    "Reconstruction": "oatomo.pipeline",
    "METHODS": "oatomo.recon.registry",
    "reconstruct_model_based": "oatomo.recon.model_based",
    "calibrate": "oatomo.calibration",
    "apply_calibration": "oatomo.calibration",
    "Calibration": "oatomo.calibration",
    "check_positions": "oatomo.calibration",
    "PositionCheck": "oatomo.calibration",
    "DetectorResponse": "oatomo.response",
    "load_preset": "oatomo.pipeline.presets",
    "Scan": "oatomo.io",
    "load_scan": "oatomo.io",
    "save_scan": "oatomo.io",
    "phantoms": "oatomo.phantoms",
    "metrics": "oatomo.evaluation.metrics",
    "cmnist": "oatomo.validation.cmnist",
    "stats": "oatomo.evaluation.stats",
    "learn": "oatomo.learn",
}

__all__ = [
    "Acquisition",
    "Grid",
    "InputError",
    "SensorArray",
    "ring_array",
    "__version__",
    *_LAZY,
]


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)

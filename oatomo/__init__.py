"""oatomo: optoacoustic tomography with setup-perturbed simulation, fast reconstruction
and setup-invariant learned refinement.

The public API is re-exported here. Submodules are imported lazily, so ``import oatomo``
stays fast and does not import PyTorch until a learning feature is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import InputError
from .geometry import Acquisition, Grid, SensorArray, ring_array

__version__ = "0.1.0"

_LAZY = {
    "Setup": "oatomo.setups",
    "load_setup": "oatomo.setups",
    "simulate": "oatomo.forward",
    "ForwardOperator": "oatomo.forward",
    "backproject": "oatomo.recon",
    "reconstruct": "oatomo.pipeline",
    "Reconstruction": "oatomo.pipeline",
    "METHODS": "oatomo.methods",
    "reconstruct_model_based": "oatomo.model_based",
    "Scan": "oatomo.io",
    "load_scan": "oatomo.io",
    "save_scan": "oatomo.io",
    "phantoms": "oatomo.phantoms",
    "metrics": "oatomo.metrics",
    "cmnist": "oatomo.cmnist",
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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'oatomo' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module.rsplit(".", 1)[-1] == name else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

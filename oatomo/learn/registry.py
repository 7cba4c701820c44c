"""The registries of learning: model classes (for checkpoints) and refinement model kinds.

No PyTorch import here, so the command line can offer the kinds (``oatomo refiner train
--model``) and their default architecture without loading it. Adding a kind of refinement
model is one class decorated with :func:`register_model` and one line in
:data:`MODEL_KINDS` (and its construction in :func:`oatomo.learn.refiner.build_refiner_model`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, TypeVar

from oatomo.errors import InputError

__all__ = ["register_model", "model_classes", "ModelKind", "MODEL_KINDS", "get_kind",
           "DEFAULT_ARCH"]

_REGISTRY: dict[str, Any] = {}
#: Modules whose classes register themselves when imported.
_BUILTIN_MODULES = ("oatomo.learn.models", "oatomo.learn.unet", "oatomo.learn.conv",
                    "oatomo.learn.skipvae")
M = TypeVar("M")


def register_model(cls: M) -> M:
    """Class decorator: make a model class loadable by name from checkpoints."""
    _REGISTRY[cls.__name__] = cls  # type: ignore[attr-defined]
    return cls


def model_classes() -> dict[str, Any]:
    """The registered model classes by name (oatomo's own ones always included)."""
    for name in _BUILTIN_MODULES:
        importlib.import_module(name)
    return dict(_REGISTRY)


@dataclass(frozen=True)
class ModelKind:
    """A kind of refinement model that ``oatomo refiner train --model`` can build.

    Attributes
    ----------
    name
        The name users type.
    model_class
        The registered class name (see :func:`model_classes`).
    pooled
        Trained without environment information (all environments as one).
    vae
        Built from a :class:`~oatomo.learn.conv.ConvVAEConfig` (else a U-Net config).
    description
        One line for ``--help`` and the README.
    """

    name: str
    model_class: str
    pooled: bool
    vae: bool
    description: str


#: Every refinement model kind, by name.
MODEL_KINDS: dict[str, ModelKind] = {k.name: k for k in (
    ModelKind("multi-decoder", "ConvMultiDecoderIVAE", False, True,
              "invariant VAE, one variant decoder per training environment"),
    ModelKind("beta-vae", "ConvBetaVAE", True, True, "pooled beta-VAE baseline"),
    ModelKind("unet", "ConvUNet", True, False, "pooled deterministic U-Net baseline"),
)}

#: Default architecture of the refinement models (``oatomo refiner train``): light enough
#: that refining a 256² image costs no more than one 256² x 256-sensor DAS on two CPU
#: cores (a width of 32 costs 8x that DAS).
DEFAULT_ARCH: dict[str, int] = {"width": 8, "depth": 2, "latent": 16}


def get_kind(name: str) -> ModelKind:
    """The :class:`ModelKind` of a name (InputError naming the choices otherwise)."""
    kind = MODEL_KINDS.get(name)
    if kind is None:
        raise InputError(f"unknown model kind {name!r}; choose from {', '.join(MODEL_KINDS)}")
    return kind

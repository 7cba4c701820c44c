"""Learning: the invariant VAE family, its training loop and checkpoints (PyTorch).

* :class:`BetaVAE`, :class:`MultiDecoderIVAE`, :class:`MultiEncoderIVAE` -- one interface:
  ``loss(x, env, target=None)``, ``reconstruct(x, env=None)``, ``sample(n)``, ``encode(x)``;
  built from a :class:`VAEConfig` (input shape, flat or spatial latent, Bernoulli or
  Gaussian likelihood, β, γ).
* :func:`train` -- balanced environments, Adam, seeded, checkpoints, ``resume=True``.
* :func:`load_model` / :func:`save_checkpoint` -- one ``.pt`` file (``weights_only=True``)
  plus a JSON sidecar.
* :class:`UNetDenoiser` -- the deterministic pooled baseline of the optoacoustic refinement.
* :data:`MODEL_KINDS` -- the refinement model kinds (:mod:`oatomo.learn.registry`).

Names are imported on first use, so ``oatomo.learn.registry`` is available without PyTorch.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from oatomo._lazy import lazy_exports

_LAZY = {
    "OatomoModel": "base", "model_classes": "registry", "register_model": "registry",
    "MODEL_KINDS": "registry", "ModelKind": "registry", "VAEConfig": "blocks",
    "CHECKPOINT_FORMAT": "checkpoint", "CHECKPOINT_VERSION": "checkpoint",
    "build_model": "checkpoint", "load_checkpoint": "checkpoint", "load_model": "checkpoint",
    "save_checkpoint": "checkpoint", "BetaVAE": "models",
    "MultiDecoderIVAE": "models", "MultiEncoderIVAE": "models", "kl_normal": "models",
    "TrainResult": "train", "resolve_device": "train", "train": "train",
    "UNetConfig": "unet", "UNetDenoiser": "unet",
    "SkipVAEConfig": "skipvae", "SkipBetaVAE": "skipvae", "SkipMultiDecoderIVAE": "skipvae",
}

__all__ = [
    "BetaVAE",
    "SkipBetaVAE",
    "SkipMultiDecoderIVAE",
    "SkipVAEConfig",
    "MultiDecoderIVAE",
    "MultiEncoderIVAE",
    "UNetDenoiser",
    "UNetConfig",
    "VAEConfig",
    "OatomoModel",
    "kl_normal",
    "train",
    "TrainResult",
    "resolve_device",
    "load_model",
    "load_checkpoint",
    "save_checkpoint",
    "build_model",
    "register_model",
    "model_classes",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "MODEL_KINDS",
    "ModelKind",
]


__getattr__, __dir__ = lazy_exports(globals(), {k: f"{__name__}.{v}" for k, v in _LAZY.items()})


class _Package(types.ModuleType):
    """Keeps ``oatomo.learn.train`` the function when its submodule of the same name loads
    (the import system binds a loaded submodule to the package's attribute)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

"""Learning: the invariant VAE family, its training loop and checkpoints (PyTorch).

* :class:`BetaVAE`, :class:`MultiDecoderIVAE`, :class:`MultiEncoderIVAE` -- one interface:
  ``loss(x, env, target=None)``, ``reconstruct(x, env=None)``, ``sample(n)``, ``encode(x)``;
  built from a :class:`VAEConfig` (input shape, flat or spatial latent, Bernoulli or
  Gaussian likelihood, β, γ).
* :func:`train` -- balanced environments, Adam, seeded, checkpoints, ``resume=True``.
* :func:`load_model` / :func:`save_checkpoint` -- one ``.pt`` file (``weights_only=True``)
  plus a JSON sidecar.
* :class:`DigitClassifier` -- the colour-blind classifier behind the RKL metric.
* :class:`UNetDenoiser` -- the deterministic pooled baseline of the optoacoustic refinement.
"""

from .base import OatomoModel, model_classes, register_model
from .blocks import VAEConfig
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    build_model,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from .classifier import ClassifierConfig, DigitClassifier, predict_batched
from .models import BetaVAE, MultiDecoderIVAE, MultiEncoderIVAE, kl_normal
from .train import TrainResult, resolve_device, train
from .unet import UNetConfig, UNetDenoiser

__all__ = [
    "BetaVAE",
    "MultiDecoderIVAE",
    "MultiEncoderIVAE",
    "UNetDenoiser",
    "UNetConfig",
    "VAEConfig",
    "OatomoModel",
    "DigitClassifier",
    "ClassifierConfig",
    "predict_batched",
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
]

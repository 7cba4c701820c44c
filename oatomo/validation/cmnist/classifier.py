"""A small CNN digit classifier: the measuring instrument of the RKL generation metric.

It is **colour-blind** by construction: the channels are summed before the first layer, so
the digit it reports cannot depend on the red / green colouring (colour is read separately
from channel energy, :func:`oatomo.validation.cmnist.metrics.color_of`). It trains with the
same loop as the VAEs (:func:`oatomo.learn.train`, target = the true digit) and saves to the
same checkpoint format; :func:`load_classifier` reads such a checkpoint back. The class
registers itself for checkpoints (:func:`oatomo.learn.register_model`) when this module is
imported.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oatomo.errors import InputError
from oatomo.learn.base import OatomoModel, register_model
from oatomo.learn.blocks import config_from_dict
from oatomo.learn.checkpoint import load_model

__all__ = ["ClassifierConfig", "DigitClassifier", "predict_batched", "load_classifier"]


@dataclass(frozen=True)
class ClassifierConfig:
    """Input shape (C, H, W) (channels are summed), number of classes, layer widths."""

    in_shape: tuple[int, int, int] = (2, 28, 28)
    n_classes: int = 10
    channels: tuple[int, int] = (16, 32)
    hidden: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        object.__setattr__(self, "channels", tuple(int(v) for v in self.channels))
        if len(self.in_shape) != 3 or len(self.channels) != 2 or self.n_classes < 2:
            raise InputError("ClassifierConfig needs in_shape (C, H, W), two channel widths "
                             "and n_classes >= 2")
        if self.in_shape[1] < 4 or self.in_shape[2] < 4:
            raise InputError(f"images of {self.in_shape[1:]} are too small (>= 4x4)")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierConfig:
        return config_from_dict(cls, data)


@register_model
class DigitClassifier(OatomoModel):
    """Colour-blind CNN: sum of channels -> conv5-pool-conv5-pool -> fc -> logits."""

    config_class = ClassifierConfig

    def _build(self) -> None:
        c1, c2 = self.config.channels
        _, h, w = self.config.in_shape
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * (h // 4) * (w // 4), self.config.hidden), nn.ReLU(),
        )
        self.head = nn.Linear(self.config.hidden, self.config.n_classes)

    def _check_x(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.config.in_shape:
            raise InputError(f"x must have shape (B, {', '.join(map(str, self.config.in_shape))})"
                             f", got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (B, hidden)."""
        self._check_x(x)
        return self.body(x.sum(1, keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes)."""
        return self.head(self.features(x))

    def loss(self, x: torch.Tensor, env: Any = None, target: torch.Tensor | None = None, *,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Cross-entropy against ``target`` (class indices); ``env`` is ignored."""
        if target is None:
            raise InputError("DigitClassifier.loss needs target (the digits)")
        logits = self(x)
        target = target.long().reshape(-1)
        ce = F.cross_entropy(logits, target)
        acc = (logits.argmax(1) == target).float().mean()
        return {"cross_entropy": ce, "accuracy": acc.detach(), "total": ce}


@torch.no_grad()
def predict_batched(classifier: DigitClassifier, images: np.ndarray | torch.Tensor, *,
                    batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Predicted classes (N,) and logits (N, n_classes) of many images, in batches."""
    device = next(classifier.parameters()).device
    x = torch.as_tensor(images, dtype=torch.float32)
    logits = [classifier(x[i:i + batch_size].to(device)).cpu()
              for i in range(0, len(x), batch_size)]
    out = torch.cat(logits) if logits else torch.zeros((0, classifier.config.n_classes))
    return out.argmax(1).numpy(), out.numpy()



def load_classifier(path: str | os.PathLike, *, map_location: str | torch.device = "cpu"
                    ) -> DigitClassifier:
    """The :class:`DigitClassifier` of a checkpoint (InputError if it holds another model)."""
    return load_model(path, model_class=DigitClassifier, map_location=map_location)

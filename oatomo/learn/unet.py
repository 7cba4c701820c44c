"""A deterministic convolutional denoiser (U-Net style): the pooled baseline of refinement.

It has the same interface as the VAE family (``loss``, ``reconstruct``), so the training
loop, checkpoints and evaluation treat it alike; it ignores the environment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oatomo.errors import InputError
from oatomo.learn.base import OatomoModel, register_model

__all__ = ["UNetConfig", "UNetDenoiser"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNetDenoiser`.

    Parameters
    ----------
    in_shape
        (C, H, W) of the input; H and W divisible by ``2 ** (len(channels) - 1)``.
    channels
        Channels per resolution level (the first at 1 / ``shuffle`` of full resolution).
    out_channels
        Channels of the output image.
    shuffle
        The image is folded into ``shuffle**2`` channels first (pixel unshuffle) and unfolded
        at the end, which makes the network about ``shuffle**2`` times cheaper.
    """

    in_shape: tuple[int, int, int] = (1, 128, 128)
    channels: tuple[int, ...] = (12, 24, 48)
    out_channels: int = 1
    shuffle: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        object.__setattr__(self, "channels", tuple(int(v) for v in self.channels))
        step = 2 ** (len(self.channels) - 1) * self.shuffle
        if len(self.in_shape) != 3 or self.in_shape[1] % step or self.in_shape[2] % step:
            raise InputError(f"in_shape {self.in_shape} must be (C, H, W) with H, W divisible "
                             f"by {step}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown UNetConfig keys {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.out_channels, *self.in_shape[1:])


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(4, c_out),
                         nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1), nn.SiLU())


@register_model
class UNetDenoiser(OatomoModel):
    """Image-to-image U-Net: the deterministic pooled baseline (MSE loss).

    ``loss`` returns ``reconstruction`` (per-image sum of squared errors, batch mean) and
    ``total`` (the same); ``reconstruct(x, env=None)`` returns the denoised image. The
    output is the input plus a learned residual.
    """

    config_class = UNetConfig

    def _build(self) -> None:
        ch = self.config.channels
        r2 = self.config.shuffle ** 2
        c_in = self.config.in_shape[0] * r2
        self.down = nn.ModuleList()
        for c in ch:
            self.down.append(_block(c_in, c))
            c_in = c
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for c in reversed(ch[:-1]):
            self.up.append(nn.ConvTranspose2d(c_in, c, 2, stride=2))
            self.merge.append(_block(2 * c, c))
            c_in = c
        self.head = nn.Conv2d(c_in, self.config.out_channels * r2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        r = self.config.shuffle
        h = F.pixel_unshuffle(x, r) if r > 1 else x
        for k, block in enumerate(self.down):
            h = block(h)
            if k < len(self.down) - 1:
                skips.append(h)
                h = F.avg_pool2d(h, 2)
        for up, merge in zip(self.up, self.merge, strict=True):
            h = merge(torch.cat([up(h), skips.pop()], dim=1))
        out = self.head(h)
        if r > 1:
            out = F.pixel_shuffle(out, r)
        if self.config.out_channels == x.shape[1]:
            out = out + x
        return out

    def _check_x(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.config.in_shape:
            raise InputError(f"x must have shape (B, {self.config.in_shape}), got "
                             f"{tuple(x.shape)}")

    def loss(self, x: torch.Tensor, env: Any = None, target: torch.Tensor | None = None, *,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Squared error to ``target`` (or to ``x``), summed per image, batch mean."""
        self._check_x(x)
        tgt = x if target is None else target
        rec = (self(x) - tgt).pow(2).flatten(1).sum(1).mean()
        zero = rec.new_zeros(())
        return {"reconstruction": rec, "kl": zero, "invariance": zero, "total": rec}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, env: Any = None) -> torch.Tensor:
        """The denoised image; ``env`` is ignored (the model is environment-blind)."""
        self._check_x(x)
        return self(x)

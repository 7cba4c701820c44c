"""Fully convolutional members of the VAE family and of the U-Net baseline: any image size.

The models of :mod:`oatomo.learn.models` are built for one input shape; these accept any
``(B, C, H, W)`` with H and W divisible by 4 (the refiner pads to that). Same losses and
interface (they subclass :class:`~oatomo.learn.models.BetaVAE`,
:class:`~oatomo.learn.models.MultiDecoderIVAE` and :class:`~oatomo.learn.unet.UNetDenoiser`),
different trunks:

* encoder: 2x2 pixel unshuffle, a 3x3 convolution, a residual block, a stride-2
  convolution, ``depth`` residual blocks; two 3x3 heads give the mean and log-variance of a
  spatial latent of ``latent_dim`` channels at H/4 x W/4;
* decoder (invariant and each variant one alike): a 3x3 convolution, ``depth`` residual
  blocks, a stride-2 transposed convolution, a residual block, a 3x3 convolution to 4
  channels and a 2x2 pixel shuffle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oatomo.errors import InputError
from oatomo.learn.base import register_model
from oatomo.learn.blocks import LIKELIHOODS, config_from_dict
from oatomo.learn.models import BetaVAE, MultiDecoderIVAE
from oatomo.learn.unet import UNetConfig, UNetDenoiser

__all__ = ["ConvVAEConfig", "ConvBetaVAE", "ConvMultiDecoderIVAE", "ConvUNet", "SIZE_STEP"]

#: Image sizes must be multiples of this.
SIZE_STEP = 4


@dataclass(frozen=True)
class ConvVAEConfig:
    """Architecture and loss weights of the fully convolutional VAEs.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the input (e.g. UBP and DAS images) and of the output (p0).
    width
        Channels at half resolution; twice that at quarter resolution.
    depth
        Residual blocks at quarter resolution in the encoder and in every decoder.
    latent_dim
        Channels of the spatial latent (at H/4 x W/4).
    likelihood, obs_sigma, beta, gamma, n_envs
        As in :class:`oatomo.learn.VAEConfig`.
    example_size
        Image size used by :meth:`sample` when none is given.
    residual
        True: the decoders give a correction that is added to the first input channel
        (the image being refined); the likelihood is that of the sum. The decoders' last
        layers start at zero, so the untrained model returns its first input.
    """

    in_channels: int = 2
    out_channels: int = 1
    width: int = 32
    depth: int = 2
    latent_dim: int = 16
    likelihood: str = "gaussian"
    obs_sigma: float = 0.05
    beta: float = 1.0
    gamma: float = 1.0
    n_envs: int = 2
    example_size: int = 96
    residual: bool = False

    def __post_init__(self) -> None:
        if min(self.in_channels, self.out_channels, self.width, self.latent_dim,
               self.n_envs) < 1 or self.depth < 0:
            raise InputError("channels, width, latent_dim and n_envs must be >= 1, depth >= 0")
        if self.likelihood not in LIKELIHOODS:
            raise InputError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if not (self.obs_sigma > 0 and self.beta >= 0 and self.gamma >= 0):
            raise InputError("obs_sigma must be > 0, beta and gamma >= 0")
        if self.example_size % SIZE_STEP:
            raise InputError(f"example_size must be a multiple of {SIZE_STEP}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        s = self.example_size // SIZE_STEP
        return (self.latent_dim, s, s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConvVAEConfig:
        return config_from_dict(cls, data)


class _Res(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(F.silu(self.a(F.silu(x))))


class ConvEncoder(nn.Module):
    """Image -> features at quarter resolution (2 * width channels)."""

    def __init__(self, cfg: ConvVAEConfig) -> None:
        super().__init__()
        w = cfg.width
        self.net = nn.Sequential(
            nn.PixelUnshuffle(2), nn.Conv2d(4 * cfg.in_channels, w, 3, padding=1), _Res(w),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),
            *[_Res(2 * w) for _ in range(cfg.depth)], nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Spatial latent -> image (likelihood parameters), four times the latent's size."""

    def __init__(self, cfg: ConvVAEConfig) -> None:
        super().__init__()
        w = cfg.width
        self.net = nn.Sequential(
            nn.Conv2d(cfg.latent_dim, 2 * w, 3, padding=1),
            *[_Res(2 * w) for _ in range(cfg.depth)], nn.SiLU(),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), _Res(w), nn.SiLU(),
            nn.Conv2d(w, 4 * cfg.out_channels, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class _ConvMixin:
    """Builds the convolutional trunk and relaxes the shape checks to any H, W."""

    config_class = ConvVAEConfig
    config: ConvVAEConfig
    #: Image sizes must be multiples of this (the Refiner pads to it).
    size_step = SIZE_STEP

    def _build_shared(self) -> None:
        cfg = self.config
        self.encoder = ConvEncoder(cfg)
        self.mu_head = nn.Conv2d(2 * cfg.width, cfg.latent_dim, 3, padding=1)
        self.logvar_head = nn.Conv2d(2 * cfg.width, cfg.latent_dim, 3, padding=1)
        self.decoder = ConvDecoder(cfg)

    def _start_residual(self) -> None:
        """A residual model starts as the identity: every decoder's last layer at zero."""
        if self.config.residual:
            for dec in [self.decoder, *getattr(self, "variant_decoders", [])]:
                nn.init.zeros_(dec.net[-2].weight)
                nn.init.zeros_(dec.net[-2].bias)

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """What the decoders' output is added to: the first input channel of a residual
        model, else zero."""
        if not self.config.residual:
            return x.new_zeros((len(x), self.config.out_channels, *x.shape[2:]))
        return x[:, :self.config.out_channels]

    def reconstruct(self, x: torch.Tensor, env: Any = None) -> torch.Tensor:
        """The likelihood mean from the posterior mean, plus :meth:`base`."""
        return super().reconstruct(x, env) + self.base(x)

    @torch.no_grad()
    def posterior_samples(self, x: torch.Tensor, n: int, env: Any = None, *,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws from the posterior decoded, plus :meth:`base` (see the parent)."""
        return super().posterior_samples(x, n, env, generator=generator) + self.base(x)

    def _check_x(self, x: torch.Tensor) -> None:
        c = self.config.in_channels
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != c \
                or x.shape[2] % SIZE_STEP or x.shape[3] % SIZE_STEP:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"x must be a tensor (B, {c}, H, W) with H, W multiples of "
                             f"{SIZE_STEP}, got {got}")

    def _check(self, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        self._check_x(x)
        want = (len(x), self.config.out_channels, *x.shape[2:])
        if target is None:
            if self.config.out_channels != self.config.in_channels:
                raise InputError("this model outputs another number of channels: give a "
                                 "target")
            target = x
        elif tuple(target.shape) != want:
            raise InputError(f"target must have shape {want}, got {tuple(target.shape)}")
        # a residual model's decoders are fitted to what the first channel lacks
        return target - self.base(x) if self.config.residual else target


@register_model
class ConvBetaVAE(_ConvMixin, BetaVAE):
    """Pooled β-VAE baseline, fully convolutional (see the module docstring)."""

    def _build(self) -> None:
        self._build_shared()
        self._start_residual()


@register_model
class ConvMultiDecoderIVAE(_ConvMixin, MultiDecoderIVAE):
    """Invariant VAE with multiple decoders, fully convolutional: one encoder, the invariant
    decoder f and one variant decoder g(., e) per training environment (same loss as
    :class:`~oatomo.learn.models.MultiDecoderIVAE`)."""

    def _build(self) -> None:
        self._build_shared()
        self.variant_decoders = nn.ModuleList(ConvDecoder(self.config)
                                              for _ in range(self.config.n_envs))
        self._start_residual()


@dataclass(frozen=True)
class ConvUNetConfig(UNetConfig):
    """:class:`~oatomo.learn.unet.UNetConfig` whose ``in_shape`` only fixes the channels
    (H and W there are the size of training crops; any multiple of the step works)."""


@register_model
class ConvUNet(UNetDenoiser):
    """The U-Net baseline on any image size (H, W multiples of its step)."""

    config_class = ConvUNetConfig

    @property
    def size_step(self) -> int:
        """Image sizes must be multiples of this (the Refiner pads to it)."""
        return 2 ** (len(self.config.channels) - 1) * self.config.shuffle

    def _check_x(self, x: torch.Tensor) -> None:
        cfg = self.config
        step = self.size_step
        if x.ndim != 4 or x.shape[1] != cfg.in_shape[0] or x.shape[2] % step \
                or x.shape[3] % step:
            raise InputError(f"x must be (B, {cfg.in_shape[0]}, H, W) with H, W multiples of "
                             f"{step}, got {tuple(x.shape)}")

"""Invariant VAEs with skip connections: the multi-decoder model shaped like a U-Net.

The convolutional VAEs of :mod:`oatomo.learn.conv` pass everything through a latent at a
quarter of the resolution; for refining an image that is already good (a TV
reconstruction at 30-45 dB) that bottleneck loses the detail the correction needs. These
models keep the method -- one encoder, an invariant decoder f and one variant decoder
g(., e) per training environment, trained on the same loss as
:class:`~oatomo.learn.models.MultiDecoderIVAE` -- and give every decoder the encoder's
features at 1/2 and 1/4 of the resolution (skip connections). The variational latent sits
at 1/8 of the resolution and carries what the skips do not: the image's context.

Shapes: input (B, C, H, W) with H and W multiples of 8; 2x2 pixel unshuffle, then three
levels of ``channels`` (each two 3x3 convolutions with group norm and SiLU), average
pooling between them; the latent's mean and log-variance are 3x3 convolutions of the
deepest level to ``latent_dim`` channels. Every decoder: a 3x3 convolution of the latent
back to the deepest level's channels, then per level a stride-2 transposed convolution,
concatenation with the encoder's features there and two 3x3 convolutions, a 1x1
convolution to 4 channels and a pixel shuffle.

``residual=True`` (the refiner's setting): the decoders give a correction added to the
first input channel, and their last layers start at zero, so the untrained model returns
that channel. The likelihood is that of the sum (:data:`oatomo.learn.blocks.LIKELIHOODS`;
the refiner uses ``"profiled"``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from oatomo.errors import InputError
from oatomo.learn.base import OatomoModel, register_model
from oatomo.learn.blocks import LIKELIHOODS
from oatomo.learn.models import (
    LOGVAR_RANGE,
    env_tensor,
    kl_normal,
    likelihood_mean,
    negative_log_likelihood,
    sample_z,
)

__all__ = ["SkipVAEConfig", "SkipBetaVAE", "SkipMultiDecoderIVAE", "SKIP_SIZE_STEP"]

#: Image sizes must be multiples of this.
SKIP_SIZE_STEP = 8


@dataclass(frozen=True)
class SkipVAEConfig:
    """Architecture and loss weights of the skip-connected VAEs.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the input (e.g. the TV and UBP images) and of the output.
    channels
        Channels of the three levels (1/2, 1/4 and 1/8 of the resolution).
    latent_dim
        Channels of the latent at 1/8 of the resolution.
    likelihood, obs_sigma, beta, gamma, n_envs
        As in :class:`oatomo.learn.VAEConfig`.
    residual
        The decoders' output is added to the first input channel(s).
    """

    in_channels: int = 2
    out_channels: int = 1
    channels: tuple[int, int, int] = (32, 64, 128)
    latent_dim: int = 32
    likelihood: str = "profiled"
    obs_sigma: float = 0.05
    beta: float = 0.01
    gamma: float = 1.0
    n_envs: int = 1
    residual: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) != 3 or min(self.channels) < 4 or \
                any(c % 4 for c in self.channels):
            raise InputError(f"channels must be three multiples of 4, got {self.channels}")
        if min(self.in_channels, self.out_channels, self.latent_dim, self.n_envs) < 1:
            raise InputError("in_channels, out_channels, latent_dim and n_envs must be >= 1")
        if self.residual and self.out_channels > self.in_channels:
            raise InputError("a residual model cannot output more channels than it takes")
        if self.likelihood not in LIKELIHOODS:
            raise InputError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if not (self.obs_sigma > 0 and self.beta >= 0 and self.gamma >= 0):
            raise InputError("obs_sigma must be > 0, beta and gamma >= 0")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SkipVAEConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"unknown SkipVAEConfig keys {sorted(unknown)}")
        return cls(**data)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(4, c_out),
                         nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1), nn.SiLU())


class SkipEncoder(nn.Module):
    """Image -> the features of the three levels (1/2, 1/4, 1/8 of the resolution)."""

    def __init__(self, cfg: SkipVAEConfig) -> None:
        super().__init__()
        c1, c2, c3 = cfg.channels
        self.levels = nn.ModuleList([_block(4 * cfg.in_channels, c1), _block(c1, c2),
                                     _block(c2, c3)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = F.pixel_unshuffle(x, 2)
        out = []
        for k, level in enumerate(self.levels):
            h = level(h if k == 0 else F.avg_pool2d(h, 2))
            out.append(h)
        return out


class SkipDecoder(nn.Module):
    """Latent and the encoder's two upper levels -> the output (correction or image)."""

    def __init__(self, cfg: SkipVAEConfig) -> None:
        super().__init__()
        c1, c2, c3 = cfg.channels
        self.inp = nn.Sequential(nn.Conv2d(cfg.latent_dim, c3, 3, padding=1), nn.SiLU())
        self.up = nn.ModuleList([nn.ConvTranspose2d(c3, c2, 2, stride=2),
                                 nn.ConvTranspose2d(c2, c1, 2, stride=2)])
        self.merge = nn.ModuleList([_block(2 * c2, c2), _block(2 * c1, c1)])
        self.head = nn.Conv2d(c1, 4 * cfg.out_channels, 1)

    def forward(self, z: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        h = self.inp(z)
        for up, merge, skip in zip(self.up, self.merge, (skips[1], skips[0]), strict=True):
            h = merge(torch.cat([up(h), skip], 1))
        return F.pixel_shuffle(self.head(h), 2)


class _SkipVAE(OatomoModel):
    """The encoder, the latent heads, the invariant decoder and the shared interface."""

    config_class: ClassVar[Any] = SkipVAEConfig
    has_variant_parts: ClassVar[bool] = False
    #: Image sizes must be multiples of this (the Refiner pads to it).
    size_step: ClassVar[int] = SKIP_SIZE_STEP

    def _build(self) -> None:
        cfg = self.config
        self.encoder = SkipEncoder(cfg)
        self.mu_head = nn.Conv2d(cfg.channels[2], cfg.latent_dim, 3, padding=1)
        self.logvar_head = nn.Conv2d(cfg.channels[2], cfg.latent_dim, 3, padding=1)
        self.decoder = SkipDecoder(cfg)
        self.variant_decoders = nn.ModuleList(
            SkipDecoder(cfg) for _ in range(cfg.n_envs if self.has_variant_parts else 0))
        if cfg.residual:  # the untrained model returns its first input channel(s)
            for dec in [self.decoder, *self.variant_decoders]:
                nn.init.zeros_(dec.head.weight)
                nn.init.zeros_(dec.head.bias)

    @property
    def env_count(self) -> int | None:
        return self.config.n_envs if self.has_variant_parts else None

    # -- checks and helpers ---------------------------------------------------------------

    def _check_x(self, x: torch.Tensor) -> None:
        c = self.config.in_channels
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != c \
                or x.shape[2] % SKIP_SIZE_STEP or x.shape[3] % SKIP_SIZE_STEP:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"x must be a tensor (B, {c}, H, W) with H, W multiples of "
                             f"{SKIP_SIZE_STEP}, got {got}")

    def _env(self, env: Any, batch: int) -> torch.Tensor | None:
        return None if env is None else env_tensor(env, batch, self.env_count, self.device)

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """What the decoders' output is added to: the first input channel(s) of a
        residual model, else zero."""
        c = self.config.out_channels
        return x[:, :c] if self.config.residual else x.new_zeros((len(x), c, *x.shape[2:]))

    def nll(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample negative log-likelihood (see :data:`~oatomo.learn.blocks.LIKELIHOODS`)."""
        return negative_log_likelihood(self.config.likelihood, self.config.obs_sigma, out,
                                       target)

    def likelihood_mean(self, out: torch.Tensor) -> torch.Tensor:
        """Sigmoid of logits (Bernoulli likelihood) or the output itself."""
        return likelihood_mean(self.config.likelihood, out)

    # -- the interface --------------------------------------------------------------------

    def features(self, x: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """The posterior's mean and log-variance (B, latent_dim, H/8, W/8) and the skips."""
        self._check_x(x)
        levels = self.encoder(x)
        h = levels[-1]
        return (self.mu_head(h), self.logvar_head(h).clamp(*LOGVAR_RANGE), levels[:2])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Invariant posterior q(z | x): (mean, log-variance)."""
        mu, logvar, _ = self.features(x)
        return mu, logvar

    def decode(self, z: torch.Tensor, skips: list[torch.Tensor],
               env: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder output (before :meth:`base` is added): the invariant decoder
        (``env=None``) or, per sample, the variant decoder of its environment."""
        if env is None or not len(self.variant_decoders):
            return self.decoder(z, skips)
        out = None
        for e in torch.unique(env).tolist():
            mask = env == e
            y = self.variant_decoders[e](z[mask], [s[mask] for s in skips])
            if out is None:
                out = y.new_empty((len(z), *y.shape[1:]))
            out[mask] = y
        assert out is not None
        return out

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, env: Any = None) -> torch.Tensor:
        """The likelihood mean from the posterior mean (plus :meth:`base`): the invariant
        path (``env=None``) or the variant decoder of a training environment."""
        mu, _, skips = self.features(x)
        out = self.decode(mu, skips, self._env(env, len(x)))
        return self.likelihood_mean(out) + self.base(x)

    @torch.no_grad()
    def posterior_samples(self, x: torch.Tensor, n: int, env: Any = None, *,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws z ~ q(z | x) decoded by the path of ``env`` (plus :meth:`base`):
        (n, B, out_channels, H, W)."""
        mu, logvar, skips = self.features(x)
        env_t = self._env(env, len(x))
        base = self.base(x)
        return torch.stack([self.likelihood_mean(self.decode(
            sample_z(mu, logvar, generator), skips, env_t)) + base for _ in range(int(n))])

    def _target(self, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        self._check_x(x)
        want = (len(x), self.config.out_channels, *x.shape[2:])
        if target is None:
            target = x[:, :self.config.out_channels]
        if tuple(target.shape) != want:
            raise InputError(f"target must have shape {want}, got {tuple(target.shape)}")
        return target - self.base(x)


@register_model
class SkipBetaVAE(_SkipVAE):
    """Pooled β-VAE with skip connections (the baseline): one encoder, one decoder.

    Loss per sample: ``-log p(target | z) + β KL(q(z|x) || N(0, I))``; ``env`` is ignored.
    """

    config_unused: ClassVar[frozenset[str]] = frozenset({"gamma", "n_envs"})

    def loss(self, x: torch.Tensor, env: Any = None, target: torch.Tensor | None = None, *,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        target = self._target(x, target)
        mu, logvar, skips = self.features(x)
        z = sample_z(mu, logvar, generator)
        rec = self.nll(self.decoder(z, skips), target).mean()
        kl = kl_normal(mu, logvar).mean()
        zero = rec.new_zeros(())
        return {"reconstruction": rec, "kl": kl, "invariance": zero,
                "total": rec + self.config.beta * kl}


@register_model
class SkipMultiDecoderIVAE(_SkipVAE):
    """Invariant VAE with multiple decoders and skip connections.

    For a sample of environment e and one draw z ~ q(z|x)::

        reconstruction = -log p_g(target | z, e)   (variant decoder of the sample's environment)
        kl             = KL(q(z|x) || N(0, I))
        invariance     = -log p_f(target | z)       (invariant decoder, same z and skips)
        total          = reconstruction + β kl + γ invariance
    """

    has_variant_parts: ClassVar[bool] = True

    def loss(self, x: torch.Tensor, env: Any = None, target: torch.Tensor | None = None, *,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        target = self._target(x, target)
        env_t = self._env(env, len(x))
        if env_t is None:
            raise InputError("SkipMultiDecoderIVAE.loss needs the environment of each "
                             "sample (env)")
        mu, logvar, skips = self.features(x)
        z = sample_z(mu, logvar, generator)
        rec = self.nll(self.decode(z, skips, env_t), target).mean()
        inv = self.nll(self.decoder(z, skips), target).mean()
        kl = kl_normal(mu, logvar).mean()
        cfg = self.config
        return {"reconstruction": rec, "kl": kl, "invariance": inv,
                "total": rec + cfg.beta * kl + cfg.gamma * inv}

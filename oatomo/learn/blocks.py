"""Building blocks shared by every model of the VAE family: config, encoder, decoder.

One convolutional trunk halves the image ``len(channels)`` times (4x4 convolutions, stride 2);
the decoder mirrors it with transposed convolutions. The latent is either

* **flat** (``spatial_latent=False``): the feature map is flattened, passed through one
  fully connected layer of ``hidden`` units (0: none) and mapped to ``latent_dim`` numbers
  -- for 28x28 digits;
* **spatial** (``spatial_latent=True``): a ``latent_dim``-channel map at the trunk's
  resolution (H / 2^L, W / 2^L) -- for 128x128 optoacoustic images, where a flat bottleneck
  would throw away where things are.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from oatomo.errors import InputError

__all__ = ["VAEConfig", "Encoder", "Decoder", "config_from_dict"]

#: Likelihoods of the VAE family: ``"bernoulli"`` (logits), ``"gaussian"`` (fixed
#: ``obs_sigma``) and ``"profiled"``: Gaussian with each image's noise variance unknown and
#: set to its maximum-likelihood value (the image's own mean squared error), which leaves
#: ``P/2 log(SSE / P)`` per image of ``P`` pixels -- every image counts by its error in dB
#: whatever its contrast.
LIKELIHOODS = ("bernoulli", "gaussian", "profiled")


def _shape(value: Any, name: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be (C, H, W), got {value!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"{name} must be three positive integers (C, H, W), got {value!r}")
    return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class VAEConfig:
    """Architecture and loss weights of a model of the VAE family (JSON-able via ``to_dict``).

    Parameters
    ----------
    in_shape
        (C, H, W) of the encoder's input ``x``. H and W must be divisible by 2^len(channels).
    latent_dim
        Size of a flat latent, or number of channels of a spatial one.
    spatial_latent
        False: flat latent vector; True: latent map at (H, W) / 2^len(channels).
    channels
        Channels of the trunk's stride-2 convolutions (the decoder mirrors them).
    hidden
        Flat latent only: width of the fully connected layer next to the latent (0: none).
    likelihood
        ``"bernoulli"`` (decoder outputs logits; targets in [0, 1]), ``"gaussian"``
        (decoder outputs the mean of N(mean, obs_sigma^2 I)) or ``"profiled"`` (the same
        with each image's variance at its maximum-likelihood value; see
        :data:`LIKELIHOODS`).
    obs_sigma
        Standard deviation of the Gaussian likelihood (the poster's N(f(z), I) is 1; images
        scaled to [0, 1] usually want a smaller value, which weighs reconstruction up).
    beta
        Weight of KL(q(z|x) || N(0, I)).
    gamma
        Weight of the invariance term (invariant models only).
    n_envs
        Number of training environments (variant decoders / encoders of invariant models).
    target_shape
        (C, H, W) of the decoder's output when it differs from ``in_shape`` in channels
        (denoising: the encoder sees ``x``, the decoders produce ``target``); ``None``: same.
    """

    in_shape: tuple[int, int, int] = (2, 28, 28)
    latent_dim: int = 16
    spatial_latent: bool = False
    channels: tuple[int, ...] = (32, 64)
    hidden: int = 256
    likelihood: str = "bernoulli"
    obs_sigma: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    n_envs: int = 2
    target_shape: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "in_shape", _shape(self.in_shape, "in_shape"))
        if self.target_shape is not None:
            set_(self, "target_shape", _shape(self.target_shape, "target_shape"))
            if self.target_shape[1:] != self.in_shape[1:]:
                raise InputError(f"target_shape {self.target_shape} must have the same H, W "
                                 f"as in_shape {self.in_shape}")
        set_(self, "channels", tuple(int(c) for c in self.channels))
        if not self.channels or min(self.channels) < 1:
            raise InputError(f"channels must be positive integers, got {self.channels!r}")
        step = 2 ** len(self.channels)
        if self.in_shape[1] % step or self.in_shape[2] % step:
            raise InputError(f"image size {self.in_shape[1:]} must be divisible by 2^"
                             f"{len(self.channels)} = {step} (one halving per trunk layer)")
        if self.latent_dim < 1 or self.hidden < 0 or self.n_envs < 1:
            raise InputError("latent_dim and n_envs must be >= 1 and hidden >= 0")
        if self.likelihood not in LIKELIHOODS:
            raise InputError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if not (self.obs_sigma > 0 and self.beta >= 0 and self.gamma >= 0):
            raise InputError("obs_sigma must be > 0, beta and gamma >= 0")

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the decoder's output: ``target_shape`` or ``in_shape``."""
        return self.target_shape or self.in_shape

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the trunk's output feature map."""
        step = 2 ** len(self.channels)
        return (self.channels[-1], self.in_shape[1] // step, self.in_shape[2] // step)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent sample: (latent_dim,) or (latent_dim, H', W')."""
        if self.spatial_latent:
            return (self.latent_dim, *self.feature_shape[1:])
        return (self.latent_dim,)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        """Inverse of :meth:`to_dict`."""
        return config_from_dict(cls, data)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a frozen config dataclass from ``to_dict()`` output; unknown keys are an error."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _act() -> nn.Module:
    return nn.ReLU()


class Encoder(nn.Module):
    """Trunk (+ flattening neck for a flat latent) producing features ``h``; ``head()`` makes
    a fresh map from ``h`` to one latent-shaped tensor (a mean or a log-variance)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        prev = config.in_shape[0]
        for c in config.channels:
            layers += [nn.Conv2d(prev, c, 4, stride=2, padding=1), _act()]
            prev = c
        if not config.spatial_latent:
            layers.append(nn.Flatten())
            if config.hidden:
                layers += [nn.Linear(math.prod(config.feature_shape), config.hidden), _act()]
        self.trunk = nn.Sequential(*layers)

    def head(self) -> nn.Module:
        cfg = self.config
        if cfg.spatial_latent:
            return nn.Conv2d(cfg.channels[-1], cfg.latent_dim, 3, padding=1)
        width = cfg.hidden or math.prod(cfg.feature_shape)
        return nn.Linear(width, cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)


class Decoder(nn.Module):
    """Latent -> likelihood parameters of shape ``config.out_shape`` (logits or means)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        feat = config.feature_shape
        layers: list[nn.Module]
        if config.spatial_latent:
            layers = [nn.Conv2d(config.latent_dim, feat[0], 3, padding=1), _act()]
        else:
            layers = []
            width = config.latent_dim
            if config.hidden:
                layers += [nn.Linear(width, config.hidden), _act()]
                width = config.hidden
            layers += [nn.Linear(width, math.prod(feat)), _act(), nn.Unflatten(1, feat)]
        chans = [*reversed(config.channels[:-1])]
        prev = config.channels[-1]
        for c in chans:
            layers += [nn.ConvTranspose2d(prev, c, 4, stride=2, padding=1), _act()]
            prev = c
        layers.append(nn.ConvTranspose2d(prev, config.out_shape[0], 4, stride=2, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

"""The VAE family: β-VAE, invariant VAE with multiple decoders, with multiple encoders.

All three share the encoder / decoder blocks of :mod:`oatomo.learn.blocks`, a Gaussian
encoder, the prior N(0, I) and one interface:

``loss(x, env, target=None, *, generator=None) -> dict``
    named scalar terms ``reconstruction``, ``kl``, ``invariance`` and ``total`` (the one to
    minimise), each a mean over the batch of per-sample sums. ``env`` is an int or a (B,)
    integer tensor (environment of each sample). ``target`` given = denoising: the encoder
    sees ``x`` and the likelihood is evaluated on ``target``; ``None`` = ``x``.
``reconstruct(x, env=None)``
    decoder mean at the posterior mean; ``env=None`` uses the invariant path (the one to use
    on a setup never seen in training), an ``env`` the matching variant path.
``sample(n)``
    z ~ N(0, I) through the invariant decoder, returned as likelihood means.
``encode(x) -> (mu, logvar)``
    the (invariant) posterior q(z | x).

Outputs of ``reconstruct`` and ``sample`` are likelihood means: sigmoid(logits) for the
Bernoulli likelihood, the mean for the Gaussian one. Negative log-likelihoods are exact
(Bernoulli: binary cross-entropy with logits; Gaussian: including log sigma + log(2 pi) / 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from oatomo.errors import InputError
from oatomo.learn.base import OatomoModel, register_model
from oatomo.learn.blocks import Decoder, Encoder, VAEConfig

__all__ = ["BetaVAE", "MultiDecoderIVAE", "MultiEncoderIVAE", "kl_normal", "VAEConfig"]

Env = int | torch.Tensor | None

#: Log-variances are clamped to this range (exp(-20) ~ 2e-9, exp(10) ~ 2e4) for stability.
LOGVAR_RANGE = (-20.0, 10.0)

#: Floor of the mean squared error of the ``"profiled"`` likelihood (images are scaled to a
#: peak of about 1: 1e-10 is 100 dB below it).
PROFILED_FLOOR = 1e-10


def env_tensor(env: Env, batch: int, n_envs: int | None, device: Any) -> torch.Tensor:
    """``env`` (an int or one per sample) as a (batch,) long tensor, checked against the
    model's ``n_envs`` environments (None: any)."""
    env_t = torch.as_tensor(env, device=device).long()
    if env_t.ndim == 0:
        env_t = env_t.expand(batch)
    if env_t.shape != (batch,):
        raise InputError(f"env must be an int or have shape ({batch},), "
                         f"got {tuple(env_t.shape)}")
    n = n_envs
    if n is not None and batch and (int(env_t.min()) < 0 or int(env_t.max()) >= n):
        raise InputError(f"env must lie in 0..{n - 1} (the model has {n} environments)")
    return env_t


def negative_log_likelihood(likelihood: str, obs_sigma: float, out: torch.Tensor,
                            target: torch.Tensor) -> torch.Tensor:
    """Per-sample negative log-likelihood of ``target`` given decoder output ``out`` under
    ``likelihood`` (:data:`~oatomo.learn.blocks.LIKELIHOODS`; ``obs_sigma`` for the fixed
    Gaussian)."""
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(out, target, reduction="none")
    elif likelihood == "profiled":
        # the noise variance of each image at its maximum-likelihood value, the mean
        # squared error (floored: an exact fit must not give -inf)
        sq = (target - out).pow(2).flatten(1)
        p = sq.shape[1]
        mse = sq.mean(1) + PROFILED_FLOOR
        return 0.5 * p * (torch.log(mse) + 1.0 + math.log(2 * math.pi))
    else:
        s = obs_sigma
        nll = 0.5 * ((target - out) / s).pow(2) + (math.log(s) + 0.5 * math.log(2 * math.pi))
    return nll.flatten(1).sum(1)


def likelihood_mean(likelihood: str, out: torch.Tensor) -> torch.Tensor:
    """Mean of the likelihood given the decoder output (sigmoid of logits, or identity)."""
    return torch.sigmoid(out) if likelihood == "bernoulli" else out


def sample_z(mu: torch.Tensor, logvar: torch.Tensor,
             generator: torch.Generator | None) -> torch.Tensor:
    """One draw of N(mu, diag exp(logvar)) (reparameterised)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag exp(logvar)) || N(0, I) ) per sample (summed over all but dim 0)."""
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(1)


def _dispatch(modules: Sequence[nn.Module], inp: torch.Tensor, env: torch.Tensor
              ) -> torch.Tensor:
    """Apply ``modules[env[i]]`` to ``inp[i]`` for every sample (one call per environment)."""
    out: torch.Tensor | None = None
    for e, module in enumerate(modules):
        mask = env == e
        if not bool(mask.any()):
            continue
        y = module(inp[mask])
        if out is None:
            out = y.new_empty((len(inp), *y.shape[1:]))
        out[mask] = y
    return modules[0](inp) if out is None else out  # None only for an empty batch


class _VAE(OatomoModel):
    """Shared machinery: the common layers, likelihood, reparameterisation, input checks and
    the interface. Subclasses add their variant parts in ``_build`` after ``super()._build()``.
    """

    config_class = VAEConfig
    #: Whether the model has parts per training environment (then env_count = n_envs).
    has_variant_parts = False

    def _build(self) -> None:
        self.encoder = Encoder(self.config)
        self.mu_head = self.encoder.head()
        self.logvar_head = self.encoder.head()
        self.decoder = Decoder(self.config)

    @property
    def env_count(self) -> int | None:
        return self.config.n_envs if self.has_variant_parts else None

    # -- helpers --------------------------------------------------------------------------

    def _check_x(self, x: torch.Tensor) -> None:
        shape = self.config.in_shape
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"x must be a tensor of shape (B, {', '.join(map(str, shape))}),"
                             f" got {got}")

    def _check(self, x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """Check ``x`` and ``target``; return the tensor the likelihood is evaluated on."""
        cfg = self.config
        self._check_x(x)
        if target is None:
            if cfg.out_shape != cfg.in_shape:
                raise InputError(f"this model outputs {cfg.out_shape}: give a target")
            return x
        if tuple(target.shape) != (len(x), *cfg.out_shape):
            raise InputError(f"target must have shape (B, {', '.join(map(str, cfg.out_shape))}),"
                             f" got {tuple(target.shape)}")
        return target

    def _env(self, env: Env, batch: int, *, required: bool) -> torch.Tensor | None:
        if env is None:
            if required:
                raise InputError(f"{type(self).__name__}.loss needs the environment of each "
                                 "sample (env)")
            return None
        return env_tensor(env, batch, self.env_count, self.device)

    def _sample_z(self, mu: torch.Tensor, logvar: torch.Tensor,
                  generator: torch.Generator | None) -> torch.Tensor:
        return sample_z(mu, logvar, generator)

    def nll(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample negative log-likelihood of ``target`` given decoder output ``out``."""
        return negative_log_likelihood(self.config.likelihood, self.config.obs_sigma, out,
                                       target)

    def likelihood_mean(self, out: torch.Tensor) -> torch.Tensor:
        """Mean of the likelihood given the decoder output (sigmoid of logits, or identity)."""
        return likelihood_mean(self.config.likelihood, out)

    def _terms(self, rec: torch.Tensor, kl: torch.Tensor, inv: torch.Tensor | None = None,
               **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        inv_t = rec.new_zeros(()) if inv is None else inv
        total = rec + cfg.beta * kl + (0.0 if inv is None else cfg.gamma * inv_t)
        return {"reconstruction": rec, "kl": kl, "invariance": inv_t, **extra, "total": total}

    # -- the interface --------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Invariant posterior q(z | x): (mean, log-variance), each (B, *latent_shape)."""
        self._check_x(x)
        h = self.encoder(x)
        return self.mu_head(h), self.logvar_head(h).clamp(*LOGVAR_RANGE)

    def _decode(self, z: torch.Tensor, env: torch.Tensor | None) -> torch.Tensor:
        return self.decoder(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, env: Env = None) -> torch.Tensor:
        """Likelihood mean decoded from the posterior mean (no gradients).

        ``env=None``: the invariant path; an int or (B,) tensor: the variant path of that
        training environment (multiple decoders: its decoder; see each class).
        """
        mu, _ = self.encode(x)
        return self.likelihood_mean(self._decode(mu, self._env(env, len(x), required=False)))

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws z ~ N(0, I) decoded by the invariant decoder (likelihood means)."""
        z = torch.randn((int(n), *self.config.latent_shape), generator=generator,
                        device=self.device)
        return self.likelihood_mean(self.decoder(z))

    @torch.no_grad()
    def posterior_samples(self, x: torch.Tensor, n: int, env: Env = None, *,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws z ~ q(z | x) decoded by the path of ``env`` (likelihood means).

        ``env=None``: the invariant path, as in :meth:`reconstruct`. Returns
        (n, B, *out_shape); their spread is the pixel-wise uncertainty of the output.
        """
        mu, logvar = self.encode(x)
        env_t = self._env(env, len(x), required=False)
        return torch.stack([self.likelihood_mean(self._decode(
            self._sample_z(mu, logvar, generator), env_t)) for _ in range(int(n))])

    def loss(self, x: torch.Tensor, env: Env = None, target: torch.Tensor | None = None, *,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover


@register_model
class BetaVAE(_VAE):
    """β-VAE (Higgins et al. 2017), the baseline: one encoder, one decoder.

    Loss per sample: E[-log p(x | Z)] + β KL(q(z|x) || N(0, I)). ``env`` is accepted for a
    uniform interface and ignored; ``invariance`` is 0.

    Examples
    --------
    >>> model = BetaVAE(VAEConfig(in_shape=(2, 28, 28), latent_dim=16, beta=1.0), seed=0)
    >>> terms = model.loss(torch.rand(4, 2, 28, 28), env=0)
    >>> sorted(terms)
    ['invariance', 'kl', 'reconstruction', 'total']
    """

    #: Config fields this model does not use (no invariance term): a checkpoint trained with
    #: another γ is the same model, so :func:`oatomo.learn.train.train` resumes from it.
    config_unused: ClassVar[frozenset[str]] = frozenset({"gamma"})

    def loss(self, x: torch.Tensor, env: Env = None, target: torch.Tensor | None = None, *,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        target = self._check(x, target)
        self._env(env, len(x), required=False)
        mu, logvar = self.encode(x)
        z = self._sample_z(mu, logvar, generator)
        rec = self.nll(self.decoder(z), target).mean()
        return self._terms(rec, kl_normal(mu, logvar).mean())


@register_model
class MultiDecoderIVAE(_VAE):
    """Invariant VAE with multiple decoders (the poster's first model).

    One encoder q(z|x); one invariant decoder f(z) (``decoder``); one variant decoder g(z, e)
    per training environment (``variant_decoders[e]``). For a sample x of environment e and
    one draw z ~ q(z|x)::

        reconstruction = -log p_g(x | z, e)      (variant decoder of the sample's environment)
        kl             = KL(q(z|x) || N(0, I))
        invariance     = -log p_f(x | z)          (invariant decoder, same z)
        total          = reconstruction + β kl + γ invariance

    ``reconstruct(x, env)`` with ``env`` given decodes with that environment's variant
    decoder (a scan from a known setup); ``env=None`` and ``sample`` use f.
    """

    has_variant_parts = True

    def _build(self) -> None:
        super()._build()
        self.variant_decoders = nn.ModuleList(Decoder(self.config)
                                              for _ in range(self.config.n_envs))

    def _decode(self, z: torch.Tensor, env: torch.Tensor | None) -> torch.Tensor:
        if env is None:
            return self.decoder(z)
        return _dispatch(self.variant_decoders, z, env)

    def loss(self, x: torch.Tensor, env: Env = None, target: torch.Tensor | None = None, *,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        target = self._check(x, target)
        env_t = self._env(env, len(x), required=True)
        mu, logvar = self.encode(x)
        z = self._sample_z(mu, logvar, generator)
        rec = self.nll(_dispatch(self.variant_decoders, z, env_t), target).mean()
        inv = self.nll(self.decoder(z), target).mean()
        return self._terms(rec, kl_normal(mu, logvar).mean(), inv)


@register_model
class MultiEncoderIVAE(_VAE):
    """Invariant VAE with multiple encoders (the poster's second model).

    An invariant encoder mean μ(x) shared by all environments (``mu_head``), an invariant
    log-variance log σ²(x) (``logvar_head``), one variant log-variance log s²(x, e) per
    training environment (``variant_logvar_heads[e]``), all on one trunk; one decoder f(z).
    For a sample x of environment e, with independent draws ε, ε' ~ N(0, I)::

        z_e   = μ(x) + s(x, e) ε                       (variant encoder, as the poster says)
        z_inv = μ(x) + σ(x) ε'                         (invariant encoder)
        reconstruction = -log p_f(x | z_e)
        kl             = KL(N(μ, s²(x, e)) || N(0, I))
        invariance     = -log p_f(x | z_inv) + β KL(N(μ, σ²(x)) || N(0, I))
        total          = reconstruction + β kl + γ invariance

    Choice of the invariance term (the poster does not spell it out): the *whole* β-VAE
    objective evaluated under the invariant encoder, i.e. "the same terms under N(μ, σ²)".
    Reasons: (1) it mirrors the multiple-decoder model, whose γ term is the likelihood under
    the invariant path, so γ means the same thing in both models; (2) the invariant path is
    the one used at test time (``reconstruct(x)``, and ``sample`` draws from the prior that
    the KL pulls q towards), so it must itself be a trained VAE posterior: with only the
    likelihood term, nothing would stop σ(x) -> 0 (a deterministic autoencoder whose codes
    need not match N(0, I)); (3) the mean μ(x) receives gradients from both paths, so what
    the environments share is forced into μ while environment-specific uncertainty can go
    into s(x, e). A separate ε' keeps the two Monte-Carlo terms independent.

    ``reconstruct(x, env)`` decodes the posterior mean μ(x), which all encoders share, so
    ``env`` does not change it (it is checked and accepted for the uniform interface).
    """

    has_variant_parts = True

    def _build(self) -> None:
        super()._build()
        self.variant_logvar_heads = nn.ModuleList(self.encoder.head()
                                                  for _ in range(self.config.n_envs))

    def encode_variant(self, x: torch.Tensor, env: Env) -> tuple[torch.Tensor, torch.Tensor]:
        """Variant posterior N(μ(x), s²(x, e)): (mean, log-variance)."""
        self._check_x(x)
        env_t = self._env(env, len(x), required=True)
        h = self.encoder(x)
        return self.mu_head(h), _dispatch(self.variant_logvar_heads, h, env_t).clamp(*LOGVAR_RANGE)

    def loss(self, x: torch.Tensor, env: Env = None, target: torch.Tensor | None = None, *,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        target = self._check(x, target)
        env_t = self._env(env, len(x), required=True)
        h = self.encoder(x)
        mu = self.mu_head(h)
        logvar_inv = self.logvar_head(h).clamp(*LOGVAR_RANGE)
        logvar_env = _dispatch(self.variant_logvar_heads, h, env_t).clamp(*LOGVAR_RANGE)
        z_env = self._sample_z(mu, logvar_env, generator)
        z_inv = self._sample_z(mu, logvar_inv, generator)
        rec = self.nll(self.decoder(z_env), target).mean()
        kl = kl_normal(mu, logvar_env).mean()
        inv_rec = self.nll(self.decoder(z_inv), target).mean()
        inv_kl = kl_normal(mu, logvar_inv).mean()
        inv = inv_rec + self.config.beta * inv_kl
        return self._terms(rec, kl, inv, invariance_reconstruction=inv_rec,
                           invariance_kl=inv_kl)

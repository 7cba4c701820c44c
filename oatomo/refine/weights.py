"""Inference of the convolutional VAEs without PyTorch.

:class:`NumpyConvVAE` runs the fully convolutional VAEs of :mod:`oatomo.learn.conv`
(:class:`~oatomo.learn.conv.ConvBetaVAE` and
:class:`~oatomo.learn.conv.ConvMultiDecoderIVAE`) from a weights archive
(:mod:`oatomo.learn.records`) with NumPy alone, so refining a scan with the shipped model
does not import PyTorch (which takes longer than the whole rest of ``oatomo reconstruct``).
It computes what the PyTorch model computes -- the test suite compares the two to float32
rounding -- and nothing else: no training, no other model classes.

This module does not import PyTorch.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from oatomo.errors import InputError
from oatomo.learn.records import read_weights

__all__ = ["NUMPY_CLASSES", "NumpyEngine", "NumpyConvVAE", "NumpySkipVAE", "numpy_model"]

#: Model classes :class:`NumpyConvVAE` can run.
CONV_CLASSES = ("ConvBetaVAE", "ConvMultiDecoderIVAE")
#: Model classes :class:`NumpySkipVAE` can run.
NUMPY_SKIP_CLASSES = ("SkipBetaVAE", "SkipMultiDecoderIVAE")
#: Model classes that run without PyTorch (:func:`numpy_model`).
NUMPY_CLASSES = CONV_CLASSES + NUMPY_SKIP_CLASSES
_LOGVAR_RANGE = (-20.0, 10.0)  # as oatomo.learn.models (kept equal by a test)


# -- the layers (NCHW, float32, PyTorch's conventions) -------------------------------------

def _silu(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return x / (1.0 + np.exp(-x))


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """``torch.nn.functional.conv2d``.

    A stride-1 convolution that keeps the size (odd kernel, ``pad = (k - 1) // 2``) is one
    matrix product of all taps' weights with the flattened, zero-padded image, whose shifted
    rows are summed (no k² copy of the input as im2col makes); others use im2col columns.
    """
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    if stride == 1 and k % 2 and pad == (k - 1) // 2:
        hp, wp = h + 2 * pad, wd + 2 * pad
        flat = np.zeros((n, c, hp * wp + k), np.float32)  # k spare: the last shifts' tail
        flat[:, :, :hp * wp].reshape(n, c, hp, wp)[:, :, pad:pad + h, pad:pad + wd] = x
        taps = np.ascontiguousarray(w.transpose(2, 3, 0, 1), np.float32).reshape(k * k * o, c)
        rows = h * wp  # output on the padded width; the last 2 * pad columns are dropped
        out = np.empty((n, o, rows), np.float32)
        for i in range(n):
            tap = np.matmul(taps, flat[i]).reshape(k, k, o, -1)
            acc = out[i]
            acc[:] = b[:, None]
            for ky in range(k):
                for kx in range(k):
                    acc += tap[ky, kx, :, ky * wp + kx:ky * wp + kx + rows]
        return out.reshape(n, o, h, wp)[:, :, :, :wd]
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))
    win = win[:, :, ::stride, ::stride][:, :, :ho, :wo]              # (n, c, ho, wo, k, k)
    cols = win.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * k * k, ho * wo)
    out = np.matmul(w.reshape(o, c * k * k), cols)
    out += b[None, :, None]
    return out.reshape(n, o, ho, wo)


def _conv_transpose(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int,
                    pad: int) -> np.ndarray:
    """``torch.nn.functional.conv_transpose2d`` (weights (in, out, k, k))."""
    n, c, h, wd = x.shape
    _, o, k, _ = w.shape
    taps = np.matmul(w.reshape(c, o * k * k).T, x.reshape(n, c, h * wd))
    taps = taps.reshape(n, o, k, k, h, wd)
    full = np.zeros((n, o, (h - 1) * stride + k, (wd - 1) * stride + k), np.float32)
    for i in range(k):
        for j in range(k):
            full[:, :, i:i + stride * (h - 1) + 1:stride,
                 j:j + stride * (wd - 1) + 1:stride] += taps[:, :, i, j]
    ho, wo = (h - 1) * stride - 2 * pad + k, (wd - 1) * stride - 2 * pad + k
    out = full[:, :, pad:pad + ho, pad:pad + wo]
    return out + b[None, :, None, None]


def _unshuffle(x: np.ndarray, r: int = 2) -> np.ndarray:
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // r, r, w // r, r).transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(n, c * r * r, h // r, w // r)


def _shuffle(x: np.ndarray, r: int = 2) -> np.ndarray:
    n, c, h, w = x.shape
    x = x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // (r * r), h * r, w * r)


class NumpyEngine:
    """What the NumPy inference engines share: the config fields the Refiner reads, the
    check of the weights against the config's layer names, the choice of a decoder, the
    likelihood's mean, the residual base, and reading a weights archive.

    Subclasses set :attr:`classes` (the model classes they run) and :attr:`size_step`
    (image sizes must be multiples of it) and define ``_names`` (every weight's name).
    """

    device = "cpu"
    classes: tuple[str, ...] = ()
    size_step = 4

    def _read_config(self, model_class: str, config: dict[str, Any],
                     state: dict[str, np.ndarray], variant_class: str) -> None:
        """The fields every engine reads from the config (a one-line error otherwise)."""
        if model_class not in self.classes:
            raise InputError(f"{model_class} cannot run without PyTorch (NumPy inference "
                             f"covers {', '.join(NUMPY_CLASSES)})")
        try:
            self.in_channels = int(config["in_channels"])
            self.out_channels = int(config.get("out_channels", 1))
            self.likelihood = str(config["likelihood"])
            self.residual = bool(config.get("residual", False))
            self.n_envs = int(config["n_envs"]) if model_class == variant_class else 0
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"invalid {model_class} config ({exc})") from None
        self.model_class = model_class
        self.config = dict(config)
        self.state = state

    def _names(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_state(self) -> None:
        """The weights hold exactly the config's layers."""
        names = self._names()
        missing = [k for k in names if k not in self.state]
        extra = sorted(set(self.state) - set(names))
        if missing or extra:
            what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
            raise InputError(f"weights do not fit the {self.model_class} config ({what})")

    def _decoder(self, env: int | None) -> str:
        """The weights' prefix of the invariant decoder (``env=None``) or of the variant
        decoder of training environment ``env``."""
        if env is None:
            return "decoder"
        if not self.n_envs:
            raise InputError(f"a {self.model_class} has no variant decoders (env must be None)")
        if 0 <= int(env) < self.n_envs:
            return f"variant_decoders.{int(env)}"
        raise InputError(f"env must lie in 0..{self.n_envs - 1} (the model has "
                         f"{self.n_envs} environments), got {env}")

    def likelihood_mean(self, out: np.ndarray) -> np.ndarray:
        """Sigmoid of logits (Bernoulli likelihood) or the output itself (Gaussian)."""
        if self.likelihood == "bernoulli":
            with np.errstate(over="ignore"):
                return 1.0 / (1.0 + np.exp(-out))
        return out

    def base(self, x: np.ndarray) -> np.ndarray:
        """What the decoder's output is added to: the first channel(s) of ``x`` for a
        residual model, else zero."""
        x = np.asarray(x, np.float32)
        c = self.out_channels
        return x[:, :c] if self.residual else np.zeros((len(x), c, *x.shape[2:]), np.float32)

    @classmethod
    def load(cls, path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
        """The model of a weights archive and the archive's JSON record."""
        meta, state = read_weights(path)
        return cls.from_record(meta, state, path), meta

    @classmethod
    def from_record(cls, meta: dict[str, Any], state: dict[str, np.ndarray],
                    path: str | os.PathLike | None = None) -> Any:
        """The model of an archive already read by :func:`read_weights` (``path`` only
        names the file in errors)."""
        try:
            return cls(str(meta["model_class"]), meta["config"], state)
        except InputError as exc:
            raise InputError(exc.problem, path) from None
        except (KeyError, TypeError) as exc:
            raise InputError(f"invalid weights record ({exc})", path) from None


class NumpyConvVAE(NumpyEngine):
    """Inference of a fully convolutional VAE from its weights, with NumPy.

    Mirrors the PyTorch model's inference interface: :meth:`encode`, :meth:`decode`,
    :meth:`reconstruct` and :meth:`likelihood_mean`, on float32 arrays ``(B, C, H, W)``.

    Parameters
    ----------
    model_class
        One of :data:`CONV_CLASSES`.
    config
        The model's config (as in the checkpoint record).
    state
        The state dict (name -> array).
    """

    classes = CONV_CLASSES

    def __init__(self, model_class: str, config: dict[str, Any],
                 state: dict[str, np.ndarray]) -> None:
        self._read_config(model_class, config, state, "ConvMultiDecoderIVAE")
        try:
            self.depth = int(config["depth"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"invalid {model_class} config ({exc})") from None
        if not (0 <= self.depth <= len(state) and 0 <= self.n_envs <= len(state)):
            # every block has weights: a larger count cannot fit (and is not enumerated)
            raise InputError(f"weights do not fit the {model_class} config (depth "
                             f"{self.depth}, n_envs {self.n_envs}, {len(state)} weights)")
        self._check_state()

    def _names(self) -> list[str]:
        d = self.depth

        def conv(p: str) -> list[str]:
            return [f"{p}.weight", f"{p}.bias"]

        def res(p: str) -> list[str]:
            return conv(f"{p}.a") + conv(f"{p}.b")

        enc = conv("encoder.net.1") + res("encoder.net.2") + conv("encoder.net.3")
        for i in range(d):
            enc += res(f"encoder.net.{4 + i}")
        names = enc + conv("mu_head") + conv("logvar_head")
        for prefix in ["decoder"] + [f"variant_decoders.{e}" for e in range(self.n_envs)]:
            names += conv(f"{prefix}.net.0")
            for i in range(d):
                names += res(f"{prefix}.net.{1 + i}")
            names += conv(f"{prefix}.net.{d + 2}") + res(f"{prefix}.net.{d + 3}")
            names += conv(f"{prefix}.net.{d + 5}")
        return names

    # -- building blocks ----------------------------------------------------------------

    def _c(self, x: np.ndarray, p: str, stride: int = 1, pad: int = 1) -> np.ndarray:
        return _conv(x, self.state[f"{p}.weight"], self.state[f"{p}.bias"], stride, pad)

    def _res(self, x: np.ndarray, p: str) -> np.ndarray:
        return x + self._c(_silu(self._c(_silu(x), f"{p}.a")), f"{p}.b")

    # -- the interface ------------------------------------------------------------------

    def encode(self, x: np.ndarray, logvar: bool = True
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """Posterior mean and log-variance of ``x`` (B, C, H, W), each (B, L, H/4, W/4)
        (the log-variance None when ``logvar`` is False)."""
        x = np.asarray(x, np.float32)
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % 4 or x.shape[3] % 4:
            raise InputError(f"x must be (B, {self.in_channels}, H, W) with H, W multiples "
                             f"of 4, got {x.shape}")
        h = self._c(_unshuffle(x), "encoder.net.1")
        h = self._res(h, "encoder.net.2")
        h = self._c(h, "encoder.net.3", stride=2, pad=1)
        for i in range(self.depth):
            h = self._res(h, f"encoder.net.{4 + i}")
        h = _silu(h)
        mu = self._c(h, "mu_head")
        if not logvar:
            return mu, None
        return mu, np.clip(self._c(h, "logvar_head"), *_LOGVAR_RANGE)

    def decode(self, z: np.ndarray, env: int | None = None) -> np.ndarray:
        """Decoder output for latents ``z``: the invariant decoder (``env=None``) or the
        variant decoder of training environment ``env``."""
        prefix = self._decoder(env)
        d = self.depth
        h = self._c(np.asarray(z, np.float32), f"{prefix}.net.0")
        for i in range(d):
            h = self._res(h, f"{prefix}.net.{1 + i}")
        h = _silu(h)
        w, b = self.state[f"{prefix}.net.{d + 2}.weight"], self.state[f"{prefix}.net.{d + 2}.bias"]
        h = _conv_transpose(h, w, b, stride=2, pad=1)
        h = _silu(self._res(h, f"{prefix}.net.{d + 3}"))
        return _shuffle(self._c(h, f"{prefix}.net.{d + 5}"))

    def reconstruct(self, x: np.ndarray, env: int | None = None) -> np.ndarray:
        """Likelihood mean decoded from the posterior mean, plus :meth:`base`."""
        mu, _ = self.encode(x, logvar=False)
        return self.likelihood_mean(self.decode(mu, env)) + self.base(x)


_GROUPS, _GN_EPS = 4, 1e-5  # as oatomo.learn.skipvae's blocks (kept equal by a test)


def _group_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``torch.nn.GroupNorm(4, C)``."""
    n, c, h, wd = x.shape
    g = x.reshape(n, _GROUPS, -1).astype(np.float64)
    g = (g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + _GN_EPS)
    return (g.reshape(n, c, h, wd) * w[None, :, None, None]
            + b[None, :, None, None]).astype(np.float32)


class NumpySkipVAE(NumpyEngine):
    """Inference of a skip-connected VAE (:mod:`oatomo.learn.skipvae`) with NumPy.

    The interface :class:`oatomo.refine.Refiner` uses: :meth:`features` (the posterior's
    mean and log-variance and the encoder's skips), :meth:`decode` (a decoder's output for
    latents and skips), :meth:`likelihood_mean` and :meth:`reconstruct`, on float32
    arrays ``(B, C, H, W)`` with H and W multiples of 8.
    """

    classes = NUMPY_SKIP_CLASSES
    size_step = 8  # oatomo.learn.skipvae.SKIP_SIZE_STEP (kept equal by a test)

    def __init__(self, model_class: str, config: dict[str, Any],
                 state: dict[str, np.ndarray]) -> None:
        self._read_config(model_class, config, state, "SkipMultiDecoderIVAE")
        if not 0 <= self.n_envs <= len(state):
            raise InputError(f"weights do not fit the {model_class} config (n_envs "
                             f"{self.n_envs}, {len(state)} weights)")
        self._check_state()

    def _names(self) -> list[str]:
        def wb(p: str) -> list[str]:
            return [f"{p}.weight", f"{p}.bias"]

        def block(p: str) -> list[str]:
            return wb(f"{p}.0") + wb(f"{p}.1") + wb(f"{p}.3")

        names = [n for k in range(3) for n in block(f"encoder.levels.{k}")]
        names += wb("mu_head") + wb("logvar_head")
        for prefix in ["decoder"] + [f"variant_decoders.{e}" for e in range(self.n_envs)]:
            names += wb(f"{prefix}.inp.0") + wb(f"{prefix}.up.0") + wb(f"{prefix}.up.1")
            names += block(f"{prefix}.merge.0") + block(f"{prefix}.merge.1")
            names += wb(f"{prefix}.head")
        return names

    def _c(self, x: np.ndarray, p: str, pad: int = 1) -> np.ndarray:
        return _conv(x, self.state[f"{p}.weight"], self.state[f"{p}.bias"], 1, pad)

    def _block(self, x: np.ndarray, p: str) -> np.ndarray:
        h = _group_norm(self._c(x, f"{p}.0"), self.state[f"{p}.1.weight"],
                        self.state[f"{p}.1.bias"])
        return _silu(self._c(_silu(h), f"{p}.3"))

    def features(self, x: np.ndarray, logvar: bool = True
                 ) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
        """Posterior mean and log-variance (B, L, H/8, W/8) of ``x`` and the encoder's
        features at 1/2 and 1/4 of the resolution (the log-variance None when ``logvar``
        is False)."""
        x = np.asarray(x, np.float32)
        s = self.size_step
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[2] % s or x.shape[3] % s:
            raise InputError(f"x must be (B, {self.in_channels}, H, W) with H, W multiples "
                             f"of {s}, got {x.shape}")
        levels = []
        h = _unshuffle(x)
        for k in range(3):
            if k:
                n, c, hh, ww = h.shape
                h = h.reshape(n, c, hh // 2, 2, ww // 2, 2).mean(axis=(3, 5))
            h = self._block(h, f"encoder.levels.{k}")
            levels.append(h)
        mu = self._c(h, "mu_head")
        lv = np.clip(self._c(h, "logvar_head"), *_LOGVAR_RANGE) if logvar else None
        return mu, lv, levels[:2]

    def decode(self, z: np.ndarray, skips: list[np.ndarray], env: int | None = None
               ) -> np.ndarray:
        """Decoder output for latents ``z`` (B, L, h, w) and skips of batch 1 or B: the
        invariant decoder (``env=None``) or the variant decoder of training environment
        ``env`` (before the first channel of a residual model is added)."""
        p = self._decoder(env)
        n = len(z)
        h = _silu(self._c(np.asarray(z, np.float32), f"{p}.inp.0"))
        for k, skip in enumerate((skips[1], skips[0])):
            up = _conv_transpose(h, self.state[f"{p}.up.{k}.weight"],
                                 self.state[f"{p}.up.{k}.bias"], stride=2, pad=0)
            skip = np.broadcast_to(skip, (n, *skip.shape[1:]))
            h = self._block(np.concatenate([up, skip], axis=1), f"{p}.merge.{k}")
        return _shuffle(self._c(h, f"{p}.head", pad=0))

    def reconstruct(self, x: np.ndarray, env: int | None = None) -> np.ndarray:
        """Likelihood mean decoded from the posterior mean, plus :meth:`base`."""
        mu, _, skips = self.features(x, logvar=False)
        return self.likelihood_mean(self.decode(mu, skips, env)) + self.base(x)


def numpy_model(meta: dict[str, Any], state: dict[str, np.ndarray],
                path: str | os.PathLike | None = None) -> NumpyEngine:
    """The NumPy inference of a weights archive already read by :func:`read_weights`: a
    :class:`NumpySkipVAE` for the skip-connected VAEs, else a :class:`NumpyConvVAE`
    (``path`` only names the file in errors)."""
    skip = isinstance(meta, dict) and meta.get("model_class") in NUMPY_SKIP_CLASSES
    return (NumpySkipVAE if skip else NumpyConvVAE).from_record(meta, state, path)

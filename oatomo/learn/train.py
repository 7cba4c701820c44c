"""The training loop shared by every model: balanced environments, Adam, checkpoints, resume.

Environments are given as a list, one entry per training environment, each either

* a tensor (or NumPy array) ``x`` of shape (N, ...) -- the model reconstructs ``x``;
* a pair ``(x, target)`` of such arrays -- denoising (or a classifier's labels);
* a ``torch.utils.data.Dataset`` whose items are ``x`` or ``(x, target)``.

Every batch holds ``batch_size // n_envs`` samples of each environment, with the
environment index of each sample passed to ``model.loss(x, env, target, generator=...)``.
Each environment is read in a seeded random order, a fresh permutation per pass
(``numpy.random.default_rng([seed, env, pass])``), so which samples form step s is a pure
function of (seed, s): a run resumed from a checkpoint at step s draws exactly the batches
the uninterrupted run would have, and the noise generator's state is restored from the
checkpoint. On the CPU, resumed and uninterrupted runs agree to the bit (with the same
number of PyTorch threads: a different thread count changes the order of floating-point sums).

An *epoch* is ``ceil(max_e N_e / per_env)`` steps: every sample of the largest environment
is seen once; smaller environments start a new permutation when exhausted.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from oatomo.errors import InputError
from oatomo.learn.base import OatomoModel
from oatomo.learn.checkpoint import load_checkpoint, save_checkpoint
from oatomo.progress import Callback

logger = logging.getLogger(__name__)

__all__ = ["train", "TrainResult", "resolve_device", "steps_per_epoch", "LossModule", "dist_info"]


@dataclass
class TrainResult:
    """What :func:`train` did: per-epoch mean loss terms, steps, time, where it saved."""

    history: list[dict[str, float]]
    step: int
    steps_per_epoch: int
    seconds: float
    device: str
    checkpoint: Path | None = None
    resumed_from: int | None = field(default=None)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else CPU; anything else is passed to torch.device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"unknown device {device!r} ({exc})") from None
    if dev.type not in ("cpu", "cuda") and not (
            dev.type == "mps" and torch.backends.mps.is_available()):
        raise InputError(f"device {device!r} cannot train or run a model here (cpu, cuda or "
                         f"auto)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} is not available (this PyTorch has no CUDA "
                         f"device)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {device!r} is not available ({torch.cuda.device_count()} "
                         f"CUDA devices)")
    return dev


def dist_info() -> tuple[int, int]:
    """This process's rank and the number of processes (torchrun's environment: ``RANK``,
    ``WORLD_SIZE``; 0 and 1 outside torchrun)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class LossModule(nn.Module):
    """Exposes ``model.loss`` as ``forward`` so that
    :class:`torch.nn.parallel.DistributedDataParallel` can wrap it (distributed training
    averages the gradients of the loss across processes)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, env: Any, target: Any, generator: Any = None) -> Any:
        return self.model.loss(x, env, target, generator=generator)


def steps_per_epoch(env_sizes: Sequence[int], batch_size: int) -> int:
    """Steps of one epoch: the largest environment seen once at ``batch_size // n_envs``
    samples per environment and step."""
    per_env = batch_size // len(env_sizes)
    if per_env < 1:
        raise InputError(f"batch_size {batch_size} is smaller than the number of "
                         f"environments ({len(env_sizes)})")
    return math.ceil(max(env_sizes) / per_env)


class _Source:
    """Uniform indexed access to one environment's data."""

    def __init__(self, item: Any, k: int) -> None:
        self.dataset = None
        self.x: torch.Tensor | None = None
        self.target: torch.Tensor | None = None
        if isinstance(item, (torch.Tensor, np.ndarray)):
            self.x = torch.as_tensor(item)
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            self.x, self.target = torch.as_tensor(item[0]), torch.as_tensor(item[1])
            if len(self.target) != len(self.x):
                raise InputError(f"environment {k}: x has {len(self.x)} items, target "
                                 f"{len(self.target)}")
        elif hasattr(item, "__getitem__") and hasattr(item, "__len__"):
            self.dataset = item
        else:
            raise InputError(f"environment {k}: expected a tensor, an (x, target) pair or a "
                             f"Dataset, got {type(item).__name__}")
        self.n = len(self.dataset) if self.dataset is not None else len(self.x)  # type: ignore
        if self.n == 0:
            raise InputError(f"environment {k} is empty")
        self.has_target = self.target is not None or (
            self.dataset is not None and isinstance(self.dataset[0], (tuple, list)))

    def get(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.dataset is None:
            ti = torch.from_numpy(idx)
            return self.x[ti], None if self.target is None else self.target[ti]  # type: ignore
        items = [self.dataset[int(i)] for i in idx]
        if self.has_target:
            return (torch.stack([torch.as_tensor(a) for a, _ in items]),
                    torch.stack([torch.as_tensor(b) for _, b in items]))
        return torch.stack([torch.as_tensor(a) for a in items]), None


class _IndexStream:
    """Indices of one environment for step s: a fresh seeded permutation per pass."""

    def __init__(self, n: int, per: int, seed: int, k: int) -> None:
        self.n, self.per, self.seed, self.k = n, per, seed, k
        self._cache: dict[int, np.ndarray] = {}

    def _perm(self, cycle: int) -> np.ndarray:
        if cycle not in self._cache:
            if len(self._cache) > 2:
                self._cache.clear()
            rng = np.random.default_rng([self.seed, self.k, cycle])
            self._cache[cycle] = rng.permutation(self.n)
        return self._cache[cycle]

    def at(self, step: int) -> np.ndarray:
        pos, parts, need = step * self.per, [], self.per
        while need:
            cycle, off = divmod(pos, self.n)
            take = min(need, self.n - off)
            parts.append(self._perm(cycle)[off:off + take])
            pos, need = pos + take, need - take
        return np.concatenate(parts)


def train(model: OatomoModel, environments: Sequence[Any], *, epochs: int = 10,
          batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
          device: str | torch.device = "auto",
          checkpoint: str | os.PathLike | None = None, checkpoint_every: int | None = None,
          resume: bool = False,
          on_step: Callable[[int, dict[str, float]], None] | None = None,
          callback: Callback | None = None,
          loss_fn: Callable[..., dict[str, torch.Tensor]] | None = None) -> TrainResult:
    """Train ``model`` on several environments with Adam; optionally checkpoint and resume.

    Parameters
    ----------
    model
        Any oatomo model with ``loss(x, env, target, generator=...) -> dict`` whose
        ``"total"`` entry is minimised (the VAE family, :class:`DigitClassifier`).
    environments
        One entry per training environment (see the module doc). A model with variant
        parts (``model.env_count``) needs exactly that many.
    epochs
        Total epochs, counted from the start of the run (a resumed run continues to it).
    batch_size
        Samples per step, split equally across environments (``batch_size // n_envs`` each).
    lr
        Adam learning rate.
    seed
        Seeds the order of the data and the noise of the reparameterisation. (The initial
        weights are seeded where the model is built: ``BetaVAE(config, seed=...)``.)
    device
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ...
    checkpoint
        A ``.pt`` path: written (atomically, plus a JSON sidecar) every ``checkpoint_every``
        steps (default: every epoch, see :func:`steps_per_epoch`) and at the end.
    resume
        If ``checkpoint`` exists, continue from it. It must hold the same model class and
        config and the same training settings (batch size, lr, seed, environment sizes).
    on_step
        Called after each step as ``on_step(step, terms)`` with the step's loss terms as
        floats (learning curves); an exception raised there stops training (after that
        step's checkpoint).
    callback
        Progress (:data:`oatomo.progress.Callback`): ``callback("train", step, total)``
        after each step, ``total = epochs * steps_per_epoch``.
    loss_fn
        Called as ``loss_fn(x, env, target, generator=...)`` instead of ``model.loss``: a
        :class:`torch.nn.parallel.DistributedDataParallel` wrapper of the model's loss
        (see :mod:`oatomo.learn.refiner`), so that gradients are averaged across processes.

    Returns
    -------
    TrainResult
        ``history``: one dict per finished epoch with the mean of every loss term.

    Examples
    --------
    >>> from oatomo.learn import MultiDecoderIVAE, VAEConfig, train       # doctest: +SKIP
    >>> model = MultiDecoderIVAE(VAEConfig(in_shape=(2, 28, 28)), seed=0)  # doctest: +SKIP
    >>> train(model, [env0_images, env1_images], epochs=20, checkpoint="md.pt", resume=True)
    ... # doctest: +SKIP
    """
    if not isinstance(model, OatomoModel) or not callable(getattr(model, "loss", None)):
        raise InputError("train needs an oatomo model with a loss(x, env, target) method")
    if not environments:
        raise InputError("train needs at least one environment")
    if epochs < 0 or batch_size < 1 or not lr > 0 or seed < 0:
        raise InputError("epochs must be >= 0, batch_size >= 1, lr > 0 and seed >= 0")
    n_envs = len(environments)
    if model.env_count is not None and model.env_count != n_envs:
        raise InputError(f"{type(model).__name__} has {model.env_count} environments, "
                         f"got data for {n_envs}")
    sources = [_Source(item, k) for k, item in enumerate(environments)]
    if len({s.has_target for s in sources}) > 1:
        raise InputError("either every environment has targets or none has")
    spe = steps_per_epoch([s.n for s in sources], batch_size)
    per_env = batch_size // n_envs
    streams = [_IndexStream(s.n, per_env, seed, k) for k, s in enumerate(sources)]
    total = epochs * spe
    every = checkpoint_every or spe
    env_ids = torch.arange(n_envs).repeat_interleave(per_env)

    dev = resolve_device(device)
    model.to(dev).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator(device=dev)
    generator.manual_seed(seed)
    settings = {"batch_size": batch_size, "lr": lr, "seed": seed,
                "env_sizes": [s.n for s in sources], "epochs": epochs}
    step, history, acc, resumed_from = 0, [], {}, None
    ckpt_path = None if checkpoint is None else Path(checkpoint)
    if resume and ckpt_path is not None and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path, model_class=type(model))
        unused = type(model).config_unused
        if ({k: v for k, v in ck["config"].items() if k not in unused}
                != {k: v for k, v in model.config.to_dict().items() if k not in unused}):
            raise InputError("checkpoint was trained with another model config", ckpt_path)
        for key in ("batch_size", "lr", "seed", "env_sizes"):
            if ck["train"].get(key) != settings[key]:
                raise InputError(f"cannot resume: checkpoint has {key}="
                                 f"{ck['train'].get(key)!r}, this run {settings[key]!r}",
                                 ckpt_path)
        model.load_state_dict(ck["state_dict"])
        if ck["optimizer"] is not None:
            optimizer.load_state_dict(ck["optimizer"])
        if "noise" in ck["rng"]:
            generator.set_state(ck["rng"]["noise"])
        step, history, acc = int(ck["step"]), list(ck["history"]), dict(ck["epoch_acc"])
        resumed_from = step
        logger.info("resumed %s from step %d", ckpt_path, step)

    def save() -> None:
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, model, optimizer=optimizer, step=step,
                            rng={"noise": generator.get_state()}, train=settings,
                            history=history, epoch_acc=acc)

    t0 = time.perf_counter()
    while step < total:
        parts = [src.get(stream.at(step)) for src, stream in zip(sources, streams, strict=True)]
        xs, ts = [p[0] for p in parts], [p[1] for p in parts]
        x = torch.cat(xs).to(dev)
        target = None if ts[0] is None else torch.cat(ts).to(dev)
        terms = (loss_fn or model.loss)(x, env_ids.to(dev), target, generator=generator)
        loss = terms["total"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {float(loss)} at step {step}: lower the "
                                     "learning rate or check the data")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        values = {k: float(v.detach()) for k, v in terms.items()}
        for k, v in values.items():
            acc[k] = acc.get(k, 0.0) + v
        acc["_count"] = acc.get("_count", 0) + 1
        if step % spe == 0:
            n = acc.pop("_count")
            record = {"epoch": step // spe, "step": step,
                      **{k: v / n for k, v in acc.items()}}
            history.append(record)
            acc = {}
            logger.info("epoch %d: %s", record["epoch"], ", ".join(
                f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch", "step")))
        if step % every == 0 or step == total:
            save()
        if on_step is not None:
            on_step(step, values)
        if callback is not None:
            callback("train", step, total)
    model.eval()
    return TrainResult(history, step, spe, time.perf_counter() - t0, str(dev),
                       ckpt_path, resumed_from)

"""Training a refiner on random patches of whole images (the TV refiner's loop).

:func:`train_on_patches` trains any model of the VAE family (``loss(x, env, target,
generator=)`` and ``reconstruct(x)``, e.g. :class:`oatomo.learn.SkipMultiDecoderIVAE`) on
pairs of physics images and truths held in memory: at every step a batch of items is drawn
at random, one random ``patch`` x ``patch`` window is cut from all of them at the same place,
rotated by a random multiple of 90 degrees and flipped at random (the refiner must not
prefer a direction: a scanner can sit on any side of the object). AdamW with a cosine decay
of the learning rate to 0 over ``steps``.

Unlike :func:`oatomo.learn.train` (whole images, balanced environments, epochs), the items'
environments are drawn in their proportions in the data, the data can grow while training
runs (``load`` is called again every ``reload_every`` steps, so a generator writing items
beside the trainer feeds it), and the batches are a pure function of the step number: a run
resumed from its checkpoint draws the same batches as one that was not interrupted.

Distributed training: under ``torchrun --nproc-per-node N`` (``WORLD_SIZE > 1``) the model's
loss is wrapped in :class:`torch.nn.parallel.DistributedDataParallel` (gloo on CPU, nccl on
CUDA, each rank on the GPU of its ``LOCAL_RANK``), every rank draws ``batch_size / N`` items
of its own per step, the gradients are averaged, so every rank holds the same weights; rank 0
writes the checkpoints and the learning curve, and every rank resumes from them.

The checkpoint (``out``) is a plain ``torch.save`` dict (``model``, ``opt``, ``step`` and
the caller's ``extra`` entries), read back with ``weights_only=True``; every
``snapshot_every`` steps a copy of the weights is also kept as ``<out stem>_<step>.pt``
(for a tuning set to choose among), and the learning curve is ``<out>.curve.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from oatomo._atomic import atomic_path
from oatomo.errors import InputError
from oatomo.learn.augment import turn_factors
from oatomo.learn.train import LossModule, dist_info, resolve_device
from oatomo.progress import Callback

logger = logging.getLogger(__name__)

__all__ = ["patch_batch", "train_on_patches"]

# (inputs, targets, environments): (n, C, H, W) and (n, 1, H, W) float32 arrays in the
# model's units and (n,) environment indices.
PatchData = tuple[np.ndarray, np.ndarray, np.ndarray]


def patch_batch(data: PatchData, step: int, batch_size: int, patch: int, rank: int = 0,
                signs: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The batch of step ``step`` on ``rank``: ``batch_size`` items drawn with replacement,
    one ``patch`` window at a common random place, a common random rotation by a multiple
    of 90 degrees and a random flip; a pure function of ``(step, rank)`` and the data.

    ``signs`` (C, 2): per input channel, the factor a rotation by 90 degrees and a flip
    multiply its values by (channels that are directions rather than images, e.g. the view
    channels of :mod:`oatomo.refine.view`); None: 1 for every channel."""
    x, y, e = data
    n, _, h, w = x.shape
    rng = np.random.default_rng([step, rank, 7310])
    idx = rng.integers(0, n, batch_size)
    i0 = int(rng.integers(0, h - patch + 1))
    j0 = int(rng.integers(0, w - patch + 1))
    xb = x[idx, :, i0:i0 + patch, j0:j0 + patch]
    yb = y[idx, :, i0:i0 + patch, j0:j0 + patch]
    k = int(rng.integers(4))
    xb, yb = np.rot90(xb, k, (2, 3)), np.rot90(yb, k, (2, 3))
    flip = bool(rng.integers(2))
    if flip:
        xb, yb = xb[..., ::-1], yb[..., ::-1]
    xb = np.ascontiguousarray(xb)
    if signs is not None:
        xb *= turn_factors(signs, k, flip).reshape(1, -1, 1, 1)
    return xb, np.ascontiguousarray(yb), e[idx]


def _checked(data: PatchData, patch: int) -> PatchData:
    x, y, e = data
    if x.ndim != 4 or y.ndim != 4 or len(x) != len(y) or len(x) != len(e) or not len(x) \
            or x.shape[2:] != y.shape[2:]:
        raise InputError(f"patch training needs inputs (n, C, H, W), targets (n, 1, H, W) "
                         f"and n environments, n >= 1; got {x.shape}, {y.shape}, "
                         f"{np.shape(e)}")
    if min(x.shape[2:]) < patch:
        raise InputError(f"patch {patch} is larger than the images {x.shape[2:]}")
    return x, y, np.asarray(e, np.int64)


def train_on_patches(model: nn.Module, load: Callable[[], PatchData],
                     out: str | os.PathLike, *, steps: int, batch_size: int = 16,
                     patch: int = 96, lr: float = 1e-3, weight_decay: float = 1e-4,
                     seed: int = 0, device: str = "cpu", resume: bool = True,
                     snapshot_every: int = 500, reload_every: int = 500,
                     log_every: int = 100, extra: dict[str, Any] | None = None,
                     callback: Callback | None = None,
                     signs: np.ndarray | None = None) -> list[dict[str, float]]:
    """Train ``model`` on random patches of the items ``load()`` returns (module doc).

    Parameters
    ----------
    model
        A model of the VAE family with ``loss(x, env=, target=, generator=)`` (its
        ``"total"`` is minimised, divided by the patch's pixels) and ``reconstruct(x)``;
        built (and seeded) by the caller.
    load
        Returns the training items ``(inputs, targets, environments)``: (n, C, H, W) and
        (n, 1, H, W) float32 arrays in the model's units and (n,) environment indices;
        called at the start and again every ``reload_every`` steps (items written
        meanwhile join the training).
    out
        The checkpoint; with ``resume`` an existing one is continued to ``steps``.
    steps, batch_size, patch, lr, weight_decay
        Total steps (the learning rate's cosine decay spans them), items per step (over
        all ranks; divisible by the number of ranks), patch side (pixels), AdamW settings.
    seed
        Seeds the reparameterisation noise (reseeded at every step from ``seed``, the rank
        and the step); the batches depend on the step and rank only (:func:`patch_batch`).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; an unavailable device is an
        :class:`~oatomo.errors.InputError` before anything is read.
    snapshot_every, log_every
        Checkpoint (and keep a snapshot of the weights) every this many steps; append a
        learning-curve point (mean loss, mean squared error of the refined patch and of the
        first input channel, and the mean gain in dB of the one over the other) every
        ``log_every`` steps.
    extra
        More entries of every checkpoint and snapshot (e.g. the architecture's name).
    callback
        Progress (:data:`oatomo.progress.Callback`): ``callback("train", step, steps)``
        after every step, on rank 0.
    signs
        (C, 2) factors of the input channels under a rotation and a flip of the crops
        (:func:`patch_batch`); None: every channel is an image.

    Returns
    -------
    list of dict
        The learning curve (every rank returns rank 0's points of this run and the
        resumed ones).
    """
    if steps < 1 or batch_size < 1 or patch < 1 or log_every < 1 or snapshot_every < 1 \
            or reload_every < 1:
        raise InputError("steps, batch_size, patch, log_every, snapshot_every and "
                         "reload_every must be >= 1")
    rank, world = dist_info()
    if batch_size % world:
        raise InputError(f"batch_size {batch_size} is not divisible by the {world} processes")
    dev = resolve_device(device)  # before anything is read: a wrong device fails at once
    out = Path(out)
    loss_fn: Callable[..., Any] = model.loss
    if world > 1:
        import torch.distributed as dist  # lazy: only under torchrun

        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    model.to(dev)
    if world > 1:
        # a batch need not hold every environment: its variant decoders then get no gradient
        loss_fn = nn.parallel.DistributedDataParallel(LossModule(model),
                                                      find_unused_parameters=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    step, curve = 0, []
    curve_path = Path(f"{out}.curve.json")
    if resume and out.exists():
        ck = torch.load(out, weights_only=True, map_location=dev)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = int(ck["step"])
        curve = json.loads(curve_path.read_text()) if curve_path.exists() else []
        logger.info("resumed %s at step %d", out, step)
    gen = torch.Generator(device=dev)
    data = _checked(load(), patch)
    per = batch_size // world
    acc = np.zeros(3)
    t0 = time.time()
    while step < steps:
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        gen.manual_seed((seed + 1000 * rank) * 10**8 + step)  # resumes exactly
        xb, yb, eb = (torch.from_numpy(a).to(dev)
                      for a in patch_batch(data, step, per, patch, rank, signs))
        terms = loss_fn(xb, env=eb, target=yb, generator=gen)
        loss = terms["total"] / (patch * patch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            err = (model.reconstruct(xb) - yb).pow(2).flatten(1).sum(1)
            err0 = (xb[:, :1] - yb).pow(2).flatten(1).sum(1)
            floor = 1e-6 * yb.pow(2).flatten(1).sum(1) + 1e-8
            gain = 10 * torch.log10((err0 + floor) / (err + floor))
        acc += (float(loss.detach()), float(err.mean()), float(gain.mean()))
        step += 1
        if step % log_every == 0:
            curve.append({"step": step, "loss": float(acc[0] / log_every),
                          "sse": float(acc[1] / log_every),
                          "gain_db": float(acc[2] / log_every),
                          "s": round(time.time() - t0, 2)})
            acc[:] = 0
            if rank == 0:
                logger.info("step %d: loss %.4f, gain over the input %.2f dB", step,
                            curve[-1]["loss"], curve[-1]["gain_db"])
        if step % snapshot_every == 0 or step == steps:
            if rank == 0:
                _save(out, {"model": model.state_dict(), "opt": opt.state_dict(),
                            "step": step, **(extra or {})})
                with atomic_path(curve_path) as tmp:
                    tmp.write_text(json.dumps(curve))
                if step < steps:
                    _save(out.with_name(f"{out.stem}_{step}{out.suffix}"),
                          {"model": model.state_dict(), "step": step, **(extra or {})})
        if step % reload_every == 0 and step < steps:
            data = _checked(load(), patch)
        if callback is not None and rank == 0:
            callback("train", step, steps)
    if world > 1:
        import torch.distributed as dist  # lazy: only under torchrun

        dist.barrier()
    return curve


def _save(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)

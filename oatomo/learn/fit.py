"""Training a refiner from a dataset file: model choice, pooling, distributed data parallel.

:func:`train_refiner` builds the model for the dataset's grid and environments, trains it
with :func:`oatomo.learn.train` and records the training geometry in the checkpoint so that
``oatomo reconstruct`` and ``oatomo evaluate`` know what the model applies to.

Distributed training: under ``torchrun --nproc-per-node N`` (``WORLD_SIZE > 1``) every rank
builds the same model from the same seed, draws its own batches (the data order is seeded
with ``seed + 1000 * rank``) and the model is wrapped in
:class:`torch.nn.parallel.DistributedDataParallel` (gloo on CPU, nccl on GPU), which
averages the gradients, so all ranks hold identical weights. Only rank 0 writes files.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from oatomo.learn.blocks import VAEConfig
from oatomo.learn.registry import get_kind, model_classes
from oatomo.learn.unet import UNetConfig
from oatomo.recon.registry import Callback

logger = logging.getLogger(__name__)

__all__ = ["build_refiner_model", "train_refiner", "attach_metadata"]


def build_refiner_model(kind: str, n: int, n_envs: int, *, latent: int = 8,
                        beta: float = 1.0, gamma: float = 1.0, obs_sigma: float = 0.1,
                        channels: tuple[int, ...] = (16, 32, 64), seed: int = 0
                        ) -> nn.Module:
    """The model of a kind for n x n single-channel images and ``n_envs`` environments.

    VAEs: spatial latent (``latent`` channels at n / 2**len(channels)), trunk ``channels``,
    Gaussian likelihood with std ``obs_sigma``; the pooled ``beta-vae`` has one environment.
    """
    spec = get_kind(kind)
    cls = model_classes()[spec.model_class]
    if not spec.vae:
        return cls(UNetConfig(in_shape=(1, n, n)), seed=seed)
    cfg = VAEConfig(in_shape=(1, n, n), target_shape=(1, n, n), latent_dim=latent,
                    spatial_latent=True, channels=channels, likelihood="gaussian",
                    obs_sigma=obs_sigma, beta=beta, gamma=gamma,
                    n_envs=1 if spec.pooled else n_envs)
    return cls(cfg, seed=seed)


class _LossModule(nn.Module):
    """Exposes ``model.loss`` as ``forward`` so DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, env: Any, target: Any, generator: Any = None) -> Any:
        return self.model.loss(x, env, target, generator=generator)


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def attach_metadata(path: str | os.PathLike, key: str, value: dict[str, Any]) -> None:
    """Add ``value`` under ``train[key]`` of an existing checkpoint (atomic rewrite)."""
    import json

    from oatomo._atomic import atomic_path
    from oatomo.learn.checkpoint import load_checkpoint, sidecar_path, write_checkpoint_bytes

    ckpt = load_checkpoint(path)
    ckpt["train"] = {**(ckpt.get("train") or {}), key: value}
    write_checkpoint_bytes(path, ckpt)
    side = Path(sidecar_path(path))
    meta = json.loads(side.read_text()) if side.exists() else {}
    meta["train"] = ckpt["train"]
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")


def train_refiner(data: str | os.PathLike, kind: str, out: str | os.PathLike, *,
                  epochs: int = 20, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                  latent: int = 8, beta: float = 1.0, gamma: float = 1.0,
                  obs_sigma: float = 0.1, channels: tuple[int, ...] = (16, 32, 64),
                  limit: int | None = None, device: str = "auto", resume: bool = False,
                  callback: Callback | None = None) -> tuple[nn.Module, Any]:
    """Train a refinement model of ``kind`` on a dataset file; write the checkpoint ``out``.

    Invariant models get one environment per training setup; the pooled baselines
    (``beta-vae``, ``unet``) see all setups as one environment. Returns the trained model
    and the :class:`oatomo.learn.TrainResult` (on every rank). ``callback(what, step,
    total)`` reports the training steps (on rank 0).
    """
    from oatomo.datasets.legacy import load_training_data
    from oatomo.learn.train import resolve_device, steps_per_epoch, train
    from oatomo.refine.legacy import REFINER_KEY

    td = load_training_data(data, limit=limit)
    envs = td.environments
    if get_kind(kind).pooled:
        envs = [(np.concatenate([x for x, _ in envs]), np.concatenate([t for _, t in envs]))]
    model = build_refiner_model(kind, td.grid.n, len(td.environments), latent=latent,
                                beta=beta, gamma=gamma, obs_sigma=obs_sigma,
                                channels=channels, seed=seed)
    rank, world = _dist_info()
    loss_fn = None
    if world > 1:
        import torch.distributed as dist

        dev = resolve_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        model.to(dev)
        ddp = nn.parallel.DistributedDataParallel(_LossModule(model))
        loss_fn = ddp
        device = str(dev)
        seed = seed + 1000 * rank
    total = epochs * steps_per_epoch([len(x) for x, _ in envs], batch_size)
    result = train(model, envs, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                   device=device, checkpoint=out if rank == 0 else None, resume=resume,
                   callback=None if callback is None or rank else
                   lambda step, _terms: callback(f"train {kind}", step, total),
                   loss_fn=loss_fn)
    if rank == 0:
        attach_metadata(out, REFINER_KEY, {
            "grid": td.grid.to_dict(), "env_names": td.names, "setups": td.setups,
            "method": td.method, "kind": kind, "data": str(data),
            "metrics": {"final_loss": result.history[-1] if result.history else {}}})
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return model, result

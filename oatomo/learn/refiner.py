"""Training the refiner and its pooled baselines at equal budget; the shipped form.

``train_refiner(data, kind, out)`` reads a dataset (:mod:`oatomo.datasets`), builds one of
the kinds of :data:`oatomo.learn.registry.MODEL_KINDS`

* ``"multi-decoder"``: :class:`~oatomo.learn.conv.ConvMultiDecoderIVAE` with one variant
  decoder per training environment;
* ``"beta-vae"``: :class:`~oatomo.learn.conv.ConvBetaVAE`, all environments pooled;
* ``"unet"``: :class:`~oatomo.learn.conv.ConvUNet`, all environments pooled;

and trains it with :func:`oatomo.learn.train` (seeded, checkpointed, resumable). A dataset
of one environment (one setup) gives a single-setup refiner by the same code. Equal budget
means the same number of steps of the same batch size over the same items. The
checkpoint records, under ``train["oatomo_family_refiner"]``, what the refiner needs at
inference: the scanner family, the canonical pitch, the input channels and the
environment names (:func:`family_metadata`).

Distributed training: under ``torchrun --nproc-per-node N`` (``WORLD_SIZE > 1``) every rank
builds the same model from the same seed, draws its own batches (the data order is seeded
with ``seed + 1000 * rank``) and the model is wrapped in
:class:`torch.nn.parallel.DistributedDataParallel` (gloo on CPU, nccl on GPU), which
averages the gradients, so all ranks hold identical weights. Rank 0 writes the checkpoint,
its snapshots and the learning curve; every other rank ``k`` keeps its own training state
(its noise generator differs) in ``<out stem>.rank<k>.pt`` beside it, so that a run under
the same number of processes resumes exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from oatomo._atomic import atomic_path
from oatomo._documents import read_json
from oatomo._limits import check_bytes
from oatomo.datasets.generate import load_dataset, read_manifest
from oatomo.errors import InputError
from oatomo.geometry import MAX_GRID_SIDE
from oatomo.learn.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    sidecar_path,
    write_checkpoint_bytes,
)
from oatomo.learn.conv import (
    ConvUNetConfig,
    ConvVAEConfig,
)
from oatomo.learn.records import UNCERTAINTY_MODES, family_record
from oatomo.learn.registry import DEFAULT_ARCH, MODEL_KINDS, get_kind, model_classes
from oatomo.learn.train import LossModule, TrainResult, dist_info, resolve_device, train
from oatomo.progress import Callback
from oatomo.scanners import CANONICAL_PITCH, FAMILY, FAMILY_KEY

__all__ = ["DEFAULT_ARCH", "FAMILY_KEY", "KINDS", "build_refiner_model", "train_refiner",
           "export_refiner", "family_metadata", "attach_metadata", "rank_checkpoint"]

#: Model kinds of :func:`build_refiner_model` (the names of ``MODEL_KINDS``).
KINDS = tuple(MODEL_KINDS)


def build_refiner_model(kind: str, n_envs: int, in_channels: int, *,
                        width: int = DEFAULT_ARCH["width"], depth: int = DEFAULT_ARCH["depth"],
                        latent: int = DEFAULT_ARCH["latent"], beta: float = 1.0,
                        gamma: float = 1.0, obs_sigma: float = 0.05, size: int = 96,
                        seed: int | None = 0) -> nn.Module:
    """A fresh model of ``kind`` with seeded initial weights: the registered class that
    :data:`oatomo.learn.registry.MODEL_KINDS` names for it, built from a VAE or a U-Net
    config."""
    spec = get_kind(kind)
    cls = model_classes()[spec.model_class]
    if not spec.vae:
        return cls(ConvUNetConfig(in_shape=(in_channels, size, size),
                                  channels=(width, 2 * width, 4 * width)), seed=seed)
    cfg = ConvVAEConfig(in_channels=in_channels, width=width, depth=depth, latent_dim=latent,
                        obs_sigma=obs_sigma, beta=beta, gamma=gamma,
                        n_envs=1 if spec.pooled else n_envs, example_size=size)
    return cls(cfg, seed=seed)


def _activation_floats(in_channels: int, width: int, depth: int, latent: int) -> int:
    """Activation floats one training item holds per pixel of its input, forward and
    backward (an upper estimate for the VAEs and the U-Net): ``8 * in_channels + 8 * width
    + width * depth + latent``, times two for the gradients."""
    return 2 * (8 * in_channels + 8 * width + width * depth + latent)


def training_bytes(kind: str, n_envs: int, in_channels: int, *, size: int, batch_size: int,
                   width: int = DEFAULT_ARCH["width"], depth: int = DEFAULT_ARCH["depth"],
                   latent: int = DEFAULT_ARCH["latent"]) -> float:
    """Memory (bytes) training a refiner of ``kind`` needs: its weights with their
    gradients and the optimiser's two moments (counted on PyTorch's ``meta`` device,
    nothing allocated), and one batch of ``batch_size`` items of ``size`` x ``size``
    pixels through the network (:func:`_activation_floats` per pixel)."""
    with torch.device("meta"):
        shape_only = build_refiner_model(kind, n_envs, in_channels, size=size, width=width,
                                         depth=depth, latent=latent, seed=None)
    weights = sum(p.numel() for p in shape_only.parameters())
    batch = float(batch_size) * size * size * _activation_floats(in_channels, width, depth,
                                                                  latent)
    return 4.0 * (4.0 * weights + batch)


def check_training_memory(data: str | os.PathLike, kind: str, n_channels: int, *,
                          batch_size: int, model_args: dict[str, Any] | None = None,
                          what: str = "") -> None:
    """Raise :class:`InputError` when :func:`training_bytes` for the dataset ``data`` is
    over ``OATOMO_MAX_BYTES``, before the dataset is read; ``what`` names the options in
    the message (default: the batch size and architecture)."""
    man = read_manifest(data)
    size, envs, where = man.get("size"), man.get("environments"), Path(data) / "manifest.json"
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_GRID_SIDE:
        raise InputError(f"manifest key 'size' must be an integer in 1..{MAX_GRID_SIDE}, got "
                         f"{size!r}", where)
    if not isinstance(envs, list) or not envs:
        raise InputError("manifest key 'environments' must be a non-empty list", where)
    n_envs = len(envs)
    args = {**DEFAULT_ARCH, **(model_args or {})}
    need = training_bytes(kind, n_envs, n_channels, size=size, batch_size=batch_size, **args)
    check_bytes(need, what or f"training {kind} on batches of {batch_size} items of "
                f"{size}x{size} pixels (width {args['width']}, depth {args['depth']}, latent "
                f"{args['latent']})")


def rank_checkpoint(out: str | os.PathLike, rank: int) -> Path:
    """Where a rank keeps its training state: ``out`` itself on rank 0, else
    ``<out stem>.rank<k><suffix>`` beside it."""
    out = Path(out)
    return out if rank == 0 else out.with_name(f"{out.stem}.rank{rank}{out.suffix}")


def attach_metadata(path: str | os.PathLike, key: str, value: dict[str, Any]) -> None:
    """Add ``value`` under ``train[key]`` of an existing checkpoint (atomic rewrite)."""
    ckpt = load_checkpoint(path)
    ckpt["train"] = {**(ckpt.get("train") or {}), key: value}
    write_checkpoint_bytes(path, ckpt)
    side = Path(sidecar_path(path))
    meta = read_json(side, "model sidecar") if side.exists() else {}
    meta["train"] = ckpt["train"]
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")


def train_refiner(data: str | os.PathLike, kind: str, out: str | os.PathLike, *,
                  epochs: int = 3, batch_size: int = 30, lr: float = 1e-3,
                  seed: int = 0, channels: tuple[int, ...] = (0, 1),
                  limit: int | None = None, max_target: float | None = None,
                  device: str = "cpu", resume: bool = False,
                  snapshot_every: int = 0, log: str | os.PathLike | None = None,
                  model_args: dict[str, Any] | None = None,
                  callback: Callback | None = None
                  ) -> tuple[nn.Module, TrainResult]:
    """Train a refiner of ``kind`` on a dataset; checkpoint to ``out``.

    Parameters
    ----------
    data
        Dataset directory (:func:`oatomo.datasets.generate_dataset`).
    kind
        ``"multi-decoder"``, ``"beta-vae"`` or ``"unet"``.
    out
        Checkpoint path (resumable with ``resume=True``).
    epochs, batch_size, lr, seed
        As in :func:`oatomo.learn.train`; pooled models draw ``batch_size`` items per step
        from all environments together.
    channels
        Input channels of the dataset to use, indices into its manifest's ``inputs`` (0:
        UBP, 1: DAS as generated by ``make model``). With targets stored relative to the
        first input's scale (``target="input"``) the first channel must be the dataset's
        first input.
    limit
        Items per environment (the first ones).
    max_target
        Leave out the items whose target peak exceeds this (for targets relative to the
        input's scale: scans whose input lost most of the object's amplitude, whose
        squared errors would otherwise dominate the loss); None: keep all.
    device
        ``"cpu"`` (default), ``"cuda"``, ``"auto"`` (CUDA when present); under torchrun
        on CUDA each rank takes the GPU of its ``LOCAL_RANK``.
    resume
        Continue from the checkpoint(s) of an interrupted run (see the module doc).
    snapshot_every
        Also keep a copy ``<out stem>.step<k>.pt`` every this many steps (equal-budget
        comparisons); 0: none.
    log
        JSON-lines learning curve: one line per step with the loss terms and wall time.
    model_args
        Keyword arguments of :func:`build_refiner_model`.
    callback
        Progress (:data:`oatomo.progress.Callback`): ``callback(f"train {kind}", step,
        total)`` after every step, on rank 0; an exception raised there stops training
        after that step's checkpoint.

    Returns
    -------
    model, TrainResult
        The trained model and the training record (on every rank).
    """
    if channels:
        check_training_memory(data, kind, len(channels), batch_size=batch_size,
                              model_args=model_args)
    envs, man = load_dataset(data, limit=limit, channels=channels)
    names = list(man["environments"])
    if not channels or any(not 0 <= c < len(man["inputs"]) for c in channels):
        raise InputError(f"channels must index the dataset's inputs {man['inputs']}, got "
                         f"{channels}", data)
    if man.get("target") == "input" and channels[0] != 0:
        raise InputError(f"the targets are relative to the first input "
                         f"({man['inputs'][0]}): the first channel must be 0, got {channels}",
                         data)
    if max_target is not None:
        keep = [t.reshape(len(t), -1).max(1) <= max_target for _, t in envs]
        if not all(k.any() for k in keep):
            raise InputError(f"max_target {max_target} leaves an environment empty", data)
        envs = [(x[k], t[k]) for (x, t), k in zip(envs, keep, strict=True)]
        man = {**man, "max_target": float(max_target),
               "kept": [int(k.sum()) for k in keep]}
    if get_kind(kind).pooled:
        envs = [(np.concatenate([x for x, _ in envs]), np.concatenate([t for _, t in envs]))]
    model = build_refiner_model(kind, len(names), len(channels), size=int(man["size"]),
                                seed=seed, **(model_args or {}))
    out = Path(out)
    rank, world = dist_info()
    dev = resolve_device(device)
    loss_fn = None
    if world > 1:
        if resume and out.exists():
            missing = [k for k in range(1, world) if not rank_checkpoint(out, k).exists()]
            if missing:
                raise InputError(f"cannot resume under {world} processes: the training "
                                 f"state of rank {missing[0]} is missing "
                                 f"({rank_checkpoint(out, missing[0]).name})", out)
        import torch.distributed as dist  # lazy: only under torchrun

        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        model.to(dev)
        loss_fn = nn.parallel.DistributedDataParallel(LossModule(model))
        seed = seed + 1000 * rank
    t0 = time.perf_counter()
    # a run that fails before its first step must not leave an empty curve behind (the
    # next run would refuse to overwrite it): remember whether this run created the file
    new_log = log is not None and not rank and not Path(log).exists()
    logf = None if log is None or rank else open(log, "a")  # noqa: SIM115 - closed below

    def cb(step: int, terms: dict[str, float]) -> None:
        if logf is not None:
            logf.write(json.dumps({"step": step, "time": round(time.perf_counter() - t0, 2),
                                   **{k: round(v, 5) for k, v in terms.items()}}) + "\n")
            logf.flush()
        if snapshot_every and step % snapshot_every == 0 and out.exists():
            snap = out.with_name(f"{out.stem}.step{step}.pt")
            shutil.copyfile(out, snap)
            attach_metadata(snap, FAMILY_KEY, family_metadata(
                man, kind, channels, data, step, time.perf_counter() - t0))

    try:
        result = train(model, envs, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                       device=dev, checkpoint=rank_checkpoint(out, rank), resume=resume,
                       on_step=None if rank else cb,
                       callback=None if rank or callback is None else
                       lambda _what, done, total: callback(f"train {kind}", done, total),
                       checkpoint_every=snapshot_every or None, loss_fn=loss_fn)
    finally:
        if logf is not None:
            logf.close()
            if new_log and Path(log).stat().st_size == 0:
                Path(log).unlink()
    if rank == 0:
        attach_metadata(out, FAMILY_KEY, family_metadata(man, kind, channels, data,
                                                         result.step, result.seconds))
    if world > 1:
        import torch.distributed as dist  # lazy: only under torchrun

        dist.barrier()
    return model, result


def family_metadata(manifest: dict[str, Any], kind: str, channels: tuple[int, ...],
                    data: str | os.PathLike, steps: int, seconds: float) -> dict[str, Any]:
    """What a refiner checkpoint records for inference (see the module doc): the family
    of the dataset's manifest (the default family when it names none) and, for targets
    stored relative to the first input's scale, ``target`` ``"input"`` (the model's output
    times that scale is in Pa: gain 1)."""
    extra = {k: manifest[k] for k in ("target", "max_target", "kept") if k in manifest}
    return {"kind": kind, "family": manifest.get("family", FAMILY.to_dict()),
            "pitch": CANONICAL_PITCH, **extra,
            "inputs": [manifest["inputs"][c] for c in channels],
            "env_names": list(manifest["environments"]), "data": str(data),
            "size": int(manifest["size"]), "phantoms": list(manifest["phantoms"]),
            "steps": int(steps), "seconds": float(seconds)}


def export_refiner(src: str | os.PathLike, dst: str | os.PathLike, *,
                   metrics: dict[str, Any] | None = None,
                   uncertainty: str | None = None) -> Path:
    """Copy a trained refiner without its training state (the shipped form).

    Keeps the weights, config, learning-curve history and the family metadata (plus
    ``metrics``, and ``uncertainty``: the default mode of the uncertainty map, see
    :class:`oatomo.refine.Refiner`); drops the optimizer state, which is twice the
    weights' size. ``dst`` ending in ``.npz`` is a weights archive
    (:mod:`oatomo.learn.records`).
    """
    if uncertainty is not None and uncertainty not in UNCERTAINTY_MODES:
        raise InputError(f"uncertainty must be one of {', '.join(UNCERTAINTY_MODES)}, got "
                         f"{uncertainty!r}")
    ckpt = load_checkpoint(src)
    meta = family_record(ckpt.get("train"), src)
    model = model_from_checkpoint(ckpt, path=src)
    meta = {**meta, "metrics": dict(metrics or meta.get("metrics", {}))}
    if uncertainty is not None:
        meta["uncertainty"] = uncertainty
    return save_checkpoint(dst, model, step=int(ckpt.get("step", 0)),
                           train={FAMILY_KEY: meta}, history=ckpt.get("history"))

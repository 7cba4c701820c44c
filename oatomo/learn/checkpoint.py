"""Model checkpoints: one ``.pt`` file loadable with ``torch.load(..., weights_only=True)``.

Format (``version`` 1), a dict of tensors, dicts, lists, numbers, strings and None only::

    {"format": "oatomo-model", "version": 1,
     "model_class": "MultiDecoderIVAE",          # a name registered with register_model
     "config": {...},                            # the model's config.to_dict(), JSON-able
     "state_dict": {...},                        # model weights (CPU tensors)
     "optimizer": {...} | None,                  # Adam state, for resuming
     "step": int,                                # optimisation steps done
     "rng": {"noise": ByteTensor} | {},          # generator state, for resuming bit for bit
     "train": {...},                             # training settings (JSON-able)
     "history": [...], "epoch_acc": {...}}       # per-epoch mean loss terms

A sidecar ``<name>.json`` holds everything but the tensors (format, class, config, step,
training settings, history) for people and for other tools. Both files are written
atomically (temporary file + rename), so an interrupted write never leaves half a checkpoint.

:func:`load_checkpoint` also reads a *weights archive* (``.npz``, :mod:`oatomo.learn.records`):
the same record and weights without training state, the form the shipped models take.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from oatomo._atomic import atomic_path, check_input_file
from oatomo._limits import check_bytes
from oatomo.errors import InputError
from oatomo.learn.base import OatomoModel
from oatomo.learn.records import (
    RECORD_FORMAT,
    RECORD_VERSION,
    check_record,
    is_weights_archive,
    read_weights,
    write_weights,
)
from oatomo.learn.registry import model_classes

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "model_from_checkpoint",
    "checkpoint_from_weights",
    "build_model",
    "sidecar_path",
]

CHECKPOINT_FORMAT = RECORD_FORMAT
CHECKPOINT_VERSION = RECORD_VERSION
_KEYS = ("model_class", "config", "state_dict")
#: Largest integer a model config may hold (layers, channels, image side, environments).
MAX_CONFIG_INT = 1 << 16

def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON file written beside a checkpoint: ``model.pt`` -> ``model.json``."""
    return Path(path).with_suffix(".json")


def save_checkpoint(path: str | os.PathLike, model: OatomoModel, *,
                    optimizer: torch.optim.Optimizer | None = None, step: int = 0,
                    rng: dict[str, torch.Tensor] | None = None,
                    train: dict[str, Any] | None = None,
                    history: list[dict[str, Any]] | None = None,
                    epoch_acc: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (and optionally the training state) to ``path`` plus a JSON sidecar.

    A ``path`` ending in ``.npz`` gets a weights archive (:mod:`oatomo.learn.records`:
    no training state, readable without PyTorch). Returns the checkpoint path.
    """
    path = Path(path)
    name = type(model).__name__
    if name not in model_classes():
        raise InputError(f"model class {name!r} is not registered (use @register_model)")
    config = model.config.to_dict()
    meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model_class": name,
            "config": config, "step": int(step), "train": dict(train or {}),
            "history": list(history or [])}
    payload = {
        **meta,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": None if optimizer is None else _to_cpu(optimizer.state_dict()),
        "rng": dict(rng or {}),
        "epoch_acc": dict(epoch_acc or {}),
    }
    if path.suffix == ".npz":
        if optimizer is not None or rng or epoch_acc:
            raise InputError("a weights archive holds no training state: write a .pt "
                             "checkpoint to resume from", path)
        write_weights(path, meta, {k: v.numpy() for k, v in payload["state_dict"].items()})
    else:
        write_checkpoint_bytes(path, payload)
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def write_checkpoint_bytes(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """``torch.save`` into memory, then write the bytes atomically.

    Saving to a buffer gives the archive a fixed inner name (a file path would put the
    temporary file's random name into it), so equal payloads give equal bytes.
    """
    buf = io.BytesIO()
    torch.save(payload, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def load_checkpoint(path: str | os.PathLike, *, model_class: str | type | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint (``weights_only=True``: a checkpoint never runs code).

    Parameters
    ----------
    path
        The ``.pt`` file (or a ``.npz`` weights archive).
    model_class
        If given (a name or a class), the checkpoint must hold that class.

    Raises
    ------
    InputError
        Missing file, not an oatomo checkpoint, a newer version, or another model class.
    """
    path = check_input_file(path, "checkpoint")
    if is_weights_archive(path):
        return checkpoint_from_weights(*read_weights(path), path, model_class=model_class)
    # what torch.load would allocate: the archive's members, uncompressed (a tensor's
    # storage is one member), checked before anything is read
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        raise InputError("not an oatomo model checkpoint (not a PyTorch zip archive)",
                         path) from None
    check_bytes(unpacked, "loading the checkpoint", path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError,
            ValueError, AttributeError, TypeError, KeyError, IndexError,
            UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise InputError(f"not an oatomo model checkpoint ({type(exc).__name__}"
                         f"{': ' + first[:120] if first else ''})", path) from None
    return check_record(ckpt, path, model_class=model_class, keys=_KEYS)


def checkpoint_from_weights(meta: dict[str, Any], state: dict[str, Any],
                            path: str | os.PathLike | None = None, *,
                            model_class: str | type | None = None) -> dict[str, Any]:
    """The checkpoint record of a weights archive already read by
    :func:`oatomo.learn.records.read_weights` (its arrays as CPU tensors), checked as
    :func:`load_checkpoint` checks one."""
    ckpt = {**meta, "state_dict": {k: torch.from_numpy(v) for k, v in state.items()}}
    return check_record(ckpt, path, model_class=model_class, keys=_KEYS)


def build_model(model_class: str, config: dict[str, Any], *, seed: int | None = None,
                path: str | os.PathLike | None = None) -> OatomoModel:
    """Instantiate a registered model class from a config dict."""
    classes = model_classes()
    cls = classes.get(model_class)
    if cls is None:
        raise InputError(f"unknown model class {model_class!r} (known: "
                         f"{', '.join(sorted(classes))})", path)
    big = [k for k, v in (config.items() if isinstance(config, dict) else ())
           if any(isinstance(n, int) and not isinstance(n, bool) and n > MAX_CONFIG_INT
                  for n in (v if isinstance(v, (list, tuple)) else [v]))]
    if big:
        raise InputError(f"invalid {model_class} config: {big[0]} exceeds {MAX_CONFIG_INT}",
                         path)
    try:
        cfg = cls.config_class.from_dict(config)
    except (TypeError, InputError) as exc:
        raise InputError(f"invalid {model_class} config: {exc}", path) from None
    # the weights this config needs, counted without allocating them, before building it
    with torch.device("meta"):
        shape_only = cls(cfg, seed=None)
    check_bytes(4 * sum(p.numel() for p in shape_only.parameters()),
                f"building the {model_class}", path)
    return cls(cfg, seed=seed)


def load_model(path: str | os.PathLike, *, model_class: str | type | None = None,
               map_location: str | torch.device = "cpu") -> OatomoModel:
    """Rebuild a model from a checkpoint: its class and config, then its weights.

    Examples
    --------
    >>> from oatomo.learn import load_model, MultiDecoderIVAE     # doctest: +SKIP
    >>> model = load_model("out/cmnist/checkpoints/seed0/multi_decoder.pt")  # doctest: +SKIP
    >>> model = load_model("model.pt", model_class=MultiDecoderIVAE)  # doctest: +SKIP
    """
    ckpt = load_checkpoint(path, model_class=model_class, map_location=map_location)
    return model_from_checkpoint(ckpt, path=path, map_location=map_location)


def model_from_checkpoint(ckpt: dict[str, Any], *, path: str | os.PathLike | None = None,
                          map_location: str | torch.device = "cpu") -> OatomoModel:
    """The model of a checkpoint already read by :func:`load_checkpoint` (no second read;
    ``path`` only names the file in errors)."""
    model = build_model(ckpt["model_class"], ckpt["config"], path=path)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise InputError(f"weights do not fit the {ckpt['model_class']} config "
                         f"({str(exc).splitlines()[0][:120]})", path) from None
    return model.to(map_location)

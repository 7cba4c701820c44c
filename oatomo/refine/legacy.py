"""Learned refinement of linear reconstructions: data, models with their geometry, inference.

A *refiner* is a trained model (the invariant denoising VAE, or a baseline) together with
what it was trained on: the image grid, the training setups (environments) and the linear
reconstruction method of its inputs. It refines a linear image of a scan whose geometry
matches, and gives a pixel-wise uncertainty from posterior samples.

Normalisation (the same in training, evaluation and inference): the network input is the
linear image divided by its maximum absolute value; the target is p0 with maximum 1 (as the
phantoms are made). Refined images are therefore in units of "fraction of the maximum
initial pressure".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oatomo.errors import InputError
from oatomo.geometry import Grid

logger = logging.getLogger(__name__)

__all__ = ["normalise", "check_compatible", "Refiner", "load_refiner", "save_refiner",
           "REFINER_KEY"]

#: Inputs of at most this many images are refined on one CPU thread.
SMALL_BATCH = 2

#: Inputs of at most this many pixels (all images together) are refined on one thread.
SMALL_PIXELS = SMALL_BATCH * 128 * 128


@contextmanager
def few_threads(n_pixels: int) -> Iterator[None]:
    """Run PyTorch on one CPU thread while refining at most :data:`SMALL_PIXELS` pixels.

    Parallel convolutions of one small image cost more than they save: on a busy 2-core
    machine one 128² refinement took 100x longer on two threads than on one.
    """
    import torch

    threads = torch.get_num_threads()
    if n_pixels <= SMALL_PIXELS:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)

#: Key of the refinement metadata inside a checkpoint's ``train`` record.
REFINER_KEY = "oatomo_refiner"


def normalise(images: np.ndarray) -> np.ndarray:
    """Divide each image (last two axes) by its maximum absolute value (float32)."""
    a = np.asarray(images, np.float32)
    m = np.abs(a).reshape(a.shape[:-2] + (-1,)).max(-1)[..., None, None]
    return (a / np.where(m > 0, m, 1)).astype(np.float32)


def check_compatible(setups: list[dict[str, Any]], sensors: Any,
                     acquisition: Any) -> tuple[bool, str]:
    """Whether a scan's nominal geometry matches training setups (TOML dicts), and why not.

    Compares the number of sensors, the ring radius (2 %) and the speed of sound (30 m/s)
    with the first training setup.
    """
    ref = setups[0]
    arr, acq = ref["array"], ref["acquisition"]
    n = arr.get("n_sensors", len(arr.get("positions", [])))
    if sensors.n_sensors != n:
        return False, f"the model was trained for {n} sensors, the scan has " \
                      f"{sensors.n_sensors}"
    if "radius" in arr:
        r = float(np.median(np.hypot(*sensors.positions.T)))
        if abs(r - arr["radius"]) > 0.02 * arr["radius"]:
            return False, (f"the model was trained for a ring of radius "
                           f"{arr['radius'] * 1e3:.2f} mm, the scan's is {r * 1e3:.2f} mm")
    if abs(acquisition.speed_of_sound - acq.get("speed_of_sound", 1500.0)) > 30:
        return False, "the scan's speed of sound differs from the training data's by " \
                      "more than 30 m/s"
    return True, "geometry matches the model's training geometry"


@dataclass
class Refiner:
    """A trained model and the geometry it was trained for.

    Attributes
    ----------
    model
        An oatomo model with ``reconstruct(x, env)`` (and ``posterior_samples`` for
        uncertainty).
    grid
        The image grid of the training data.
    env_names
        Names of the training setups, in the order of the model's variant parts.
    setups
        The training setups as TOML-structured dicts.
    method
        Linear reconstruction of the inputs (``"ubp"`` or ``"das"``).
    metrics
        Whatever was recorded at training/evaluation time.
    """

    model: Any
    grid: Grid
    env_names: list[str]
    setups: list[dict[str, Any]]
    method: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def env_index(self, name: str | None) -> int | None:
        """The variant index of a training setup's name (None: the invariant path)."""
        if name is None:
            return None
        if name not in self.env_names:
            raise InputError(f"setup {name!r} is not one of the model's training setups "
                             f"({', '.join(self.env_names)})")
        if getattr(self.model, "env_count", None) is None:
            return None
        return self.env_names.index(name)

    def compatible(self, sensors: Any, acquisition: Any) -> tuple[bool, str]:
        """Whether a scan's nominal geometry matches the training geometry, and why not."""
        return check_compatible(self.setups, sensors, acquisition)

    def refine(self, image: np.ndarray, *, env: str | None = None, n_samples: int = 16,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """Refine linear images (..., n, n) on :attr:`grid`.

        Returns the refined image(s) and the pixel-wise standard deviation over
        ``n_samples`` posterior samples (None for deterministic models or n_samples < 2).
        """
        import torch

        img = np.asarray(image, np.float32)
        if img.shape[-2:] != self.grid.shape:
            raise InputError(f"image is {img.shape[-2:]}, the model works on {self.grid.shape}")
        lead = img.shape[:-2]
        x = torch.from_numpy(normalise(img).reshape((-1, 1) + self.grid.shape))
        model = self.model.eval()
        e = self.env_index(env)
        with few_threads(x.numel()):
            return self._refine(model, x, e, lead, n_samples, seed)

    def _refine(self, model: Any, x: Any, e: int | None, lead: tuple[int, ...],
                n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        with torch.no_grad():
            x = x.to(model.device)
            out = model.reconstruct(x, e).cpu().numpy()
            std = None
            if n_samples >= 2 and hasattr(model, "posterior_samples"):
                gen = torch.Generator(device=x.device).manual_seed(seed)
                draws = model.posterior_samples(x, n_samples, e, generator=gen).cpu().numpy()
                std = np.std(draws, axis=0).reshape(lead + self.grid.shape)
        return out.reshape(lead + self.grid.shape).astype(np.float32), \
            None if std is None else std.astype(np.float32)


def save_refiner(path: str | os.PathLike, refiner: Refiner, *,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write the model and its training geometry to one checkpoint (+ JSON sidecar)."""
    from oatomo.learn.checkpoint import save_checkpoint

    meta = {REFINER_KEY: {"grid": refiner.grid.to_dict(), "env_names": refiner.env_names,
                          "setups": refiner.setups, "method": refiner.method,
                          "metrics": refiner.metrics}}
    meta.update(extra or {})
    return save_checkpoint(path, refiner.model, train=meta)


def load_refiner(path: str | os.PathLike, *, device: str = "cpu") -> Refiner:
    """Load a refiner written by :func:`save_refiner` or by ``oatomo train``."""
    from oatomo.learn.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(path, map_location="cpu")
    meta = (ckpt.get("train") or {}).get(REFINER_KEY)
    if not meta:
        raise InputError("checkpoint has no training geometry (not made by 'oatomo train')",
                         path)
    model = model_from_checkpoint(ckpt, path=path, map_location=device)
    g = meta["grid"]
    return Refiner(model=model, grid=Grid(int(g["n"]), float(g["fov"])),
                   env_names=list(meta["env_names"]), setups=list(meta["setups"]),
                   method=str(meta["method"]), metrics=dict(meta.get("metrics", {})))

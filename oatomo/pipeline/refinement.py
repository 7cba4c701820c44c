"""Step 4 of the pipeline: the learned refinement of a linear image, when a model applies."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.learn.records import family_record
from oatomo.refine.refiner import (
    NUMPY_MAX_PIXELS,
    RefinedScan,
    load_refiner,
    to_canonical_grid,
)
from oatomo.refine.weights import NumpyConvVAE
from oatomo.resources import default_model_path
from oatomo.scanners import FAMILY_KEY, ScannerFamily

__all__ = ["refine_images"]


def _model_meta(path: Path) -> dict[str, Any]:
    """The scanner-family metadata of a refiner, from its JSON sidecar when there is one
    (no PyTorch import), else from the checkpoint itself (:func:`family_record`: an
    older refiner format is an :class:`InputError` naming the commands that train a
    current one)."""
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            train = json.loads(sidecar.read_text()).get("train") or {}
        except (ValueError, OSError):
            train = {}
        if train.get(FAMILY_KEY):
            return dict(train[FAMILY_KEY])
    from oatomo.learn.checkpoint import load_checkpoint  # lazy: PyTorch

    return family_record(load_checkpoint(path).get("train"), path)


def refine_images(grid: Grid, sinogram: np.ndarray, sensors: SensorArray,
                  acquisition: Acquisition, *, model: str | os.PathLike | None = None,
                  refine: bool | Literal["auto"] = "auto", setup: str | None = None,
                  samples: int = 16) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Step 4: the learned refinement of a scan, when a model applies.

    The refiner (:class:`oatomo.refine.Refiner`) reconstructs its own input channels from
    the sinogram (not the pipeline's image) and refines every frame on ``grid``. Returns
    the new images (``refined`` and, with posterior samples, ``uncertainty``; none when it
    did not refine) and a record (``applied``, ``reason``, ``model``, ...). With
    ``refine=True`` a model that is missing or does not fit the scan is an
    :class:`InputError`; with ``"auto"`` the record says why it skipped.
    """
    path = Path(model) if model is not None else default_model_path()
    record: dict[str, Any] = {"applied": False, "model": str(path)}
    if refine is False:
        record["reason"] = "refinement not requested"
        return {}, record
    if not path.is_file():
        if refine is True or model is not None:
            raise InputError("refinement model not found", path)
        record["reason"] = "no refinement model installed"
        return {}, record
    try:
        family = _model_meta(path)
        ok, why = ScannerFamily.from_dict(family["family"]).compatible(
            sensors, acquisition, grid)
    except InputError as exc:
        raise InputError(exc.problem, exc.path or path) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InputError(f"malformed refinement metadata ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:100]})", path) from None
    record["compatible"] = ok
    if not ok:
        if refine is True:
            raise InputError(f"cannot refine this scan: {why}", path)
        record["reason"] = why
        return {}, record
    return _refine_frames(path, float(family["pitch"]), grid, sinogram, sensors,
                          acquisition, setup=setup, samples=samples,
                          record={**record, "reason": why})


def _refine_frames(path: Path, pitch: float, grid: Grid, sinogram: np.ndarray,
                   sensors: SensorArray, acquisition: Acquisition, *, setup: str | None,
                   samples: int, record: dict[str, Any]
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Step 4 with a refiner (the scan is inside its family): every frame refined on the
    user's grid (:meth:`oatomo.refine.Refiner.refine_scan`)."""
    frames = sinogram.reshape((-1,) + sinogram.shape[-2:])
    # many pixels: PyTorch is faster, once imported (``pitch``: the model's canonical one)
    big = len(frames) * to_canonical_grid(grid, pitch).n ** 2 > NUMPY_MAX_PIXELS
    ref = load_refiner(path, backend="torch" if big else "auto")
    env = setup if setup in ref.env_names else None
    results: list[RefinedScan] = [
        ref.refine_scan(frame, sensors, acquisition, grid, env=env, n_samples=samples,
                        check=False) for frame in frames]
    lead = sinogram.shape[:-2]
    out = {"refined": np.stack([r.refined for r in results]).reshape(lead + grid.shape)}
    stds = [r.std for r in results if r.std is not None]
    if stds:
        out["uncertainty"] = np.stack(stds).reshape(lead + grid.shape)
    r = results[-1]
    record.update(applied=True, input="+".join(ref.inputs),
                  backend="numpy" if isinstance(ref.model, NumpyConvVAE) else "torch",
                  grid=r.canonical.to_dict(), samples=samples, uncertainty=ref.uncertainty,
                  decoder=f"variant decoder of {env}" if env else "invariant decoder")
    return out, record

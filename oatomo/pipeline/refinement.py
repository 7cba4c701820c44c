"""Step 4 of the pipeline: the learned refinement of a linear image, when a model applies."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.recon.registry import reconstruct_sinogram

__all__ = ["refine_images"]


def _model_meta(path: Path) -> dict[str, Any]:
    """The refiner metadata of a checkpoint, from its JSON sidecar when there is one
    (no PyTorch import), else from the checkpoint itself. A scanner-family refiner's
    metadata is returned under the key ``"family_refiner"``."""
    import json

    from oatomo.refine.legacy import REFINER_KEY
    from oatomo.scanners import FAMILY_KEY

    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            train = json.loads(sidecar.read_text()).get("train") or {}
        except (ValueError, OSError):
            train = {}
        if train.get(FAMILY_KEY):
            return {"family_refiner": dict(train[FAMILY_KEY])}
        if train.get(REFINER_KEY):
            return dict(train[REFINER_KEY])
    from oatomo.learn.checkpoint import load_checkpoint

    train = load_checkpoint(path).get("train") or {}
    if train.get(FAMILY_KEY):
        return {"family_refiner": dict(train[FAMILY_KEY])}
    from oatomo.refine.legacy import load_refiner

    ref = load_refiner(path)
    return {"setups": ref.setups, "grid": ref.grid.to_dict(), "method": ref.method}


def refine_images(image: np.ndarray, method: str, grid: Grid, sinogram: np.ndarray,
                  sensors: SensorArray, acquisition: Acquisition, *,
                  model: str | os.PathLike | None = None,
                  refine: bool | Literal["auto"] = "auto", setup: str | None = None,
                  samples: int = 16) -> tuple[dict[str, np.ndarray], Grid | None,
                                              dict[str, Any]]:
    """Step 4: the learned refinement of a linear image, when a model applies.

    Returns the new images (``refined``, ``uncertainty`` and, when the model needs its
    own input, ``linear``), the model's grid (None when it did not refine) and a record
    (``applied``, ``reason``, ``model``, ...). With ``refine=True`` a model that is missing
    or does not fit the scan is an :class:`InputError`; with ``"auto"`` the record says why
    it skipped.
    """
    from oatomo.refine.legacy import check_compatible
    from oatomo.resources import default_model_path

    path = Path(model) if model is not None else default_model_path()
    record: dict[str, Any] = {"applied": False, "model": str(path)}
    if refine is False:
        record["reason"] = "refinement not requested"
        return {}, None, record
    if not path.is_file():
        if refine is True or model is not None:
            raise InputError("refinement model not found", path)
        record["reason"] = "no refinement model installed"
        return {}, None, record
    try:
        meta = _model_meta(path)
        family = meta.get("family_refiner")
        if family is not None:
            from oatomo.scanners import ScannerFamily

            ok, why = ScannerFamily.from_dict(family["family"]).compatible(
                sensors, acquisition, grid)
        else:
            ok, why = check_compatible(meta["setups"], sensors, acquisition)
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
        return {}, None, record
    if family is not None:
        return _refine_family(path, float(family["pitch"]), grid, sinogram, sensors,
                              acquisition, setup=setup,
                              samples=samples, record={**record, "reason": why})
    from oatomo.refine.legacy import load_refiner

    refiner = load_refiner(path)
    out: dict[str, np.ndarray] = {}
    if method == refiner.method and grid == refiner.grid:
        linear = image
    else:  # the model needs its own linear input on its own grid
        linear = reconstruct_sinogram(sinogram, refiner.grid, sensors, acquisition,
                                      refiner.method)
        out["linear"] = linear
    refined, std = refiner.refine(linear, env=setup, n_samples=samples)
    out["refined"] = refined
    if std is not None:
        out["uncertainty"] = std
    record.update(applied=True, reason=why, input=refiner.method,
                  grid=refiner.grid.to_dict(), samples=samples,
                  decoder=f"variant decoder of {setup}" if setup else "invariant decoder")
    return out, refiner.grid, record


def _refine_family(path: Path, pitch: float, grid: Grid, sinogram: np.ndarray,
                   sensors: SensorArray, acquisition: Acquisition, *, setup: str | None,
                   samples: int, record: dict[str, Any]
                   ) -> tuple[dict[str, np.ndarray], Grid, dict[str, Any]]:
    """Step 4 with a scanner-family refiner (the scan is inside its family): refined on
    the user's grid (:mod:`oatomo.refine.refiner`), every frame."""
    from oatomo.refine.refiner import NUMPY_MAX_PIXELS, load_family_refiner, to_canonical_grid
    from oatomo.refine.weights import NumpyConvVAE

    frames = sinogram.reshape((-1,) + sinogram.shape[-2:])
    # many pixels: PyTorch is faster, once imported (``pitch``: the model's canonical one)
    big = len(frames) * to_canonical_grid(grid, pitch).n ** 2 > NUMPY_MAX_PIXELS
    ref = load_family_refiner(path, backend="torch" if big else "auto")
    env = setup if setup in ref.env_names else None
    refined, stds, linear = [], [], []
    for frame in frames:
        r = ref.refine_scan(frame, sensors, acquisition, grid, env=env, n_samples=samples,
                            check=False)
        refined.append(r.refined)
        linear.append(np.stack([r.linear[m] for m in ref.inputs]))
        if r.std is not None:
            stds.append(r.std)
    lead = sinogram.shape[:-2]
    out = {"refined": np.stack(refined).reshape(lead + grid.shape)}
    if stds:
        out["uncertainty"] = np.stack(stds).reshape(lead + grid.shape)
    record.update(applied=True, input="+".join(ref.inputs),
                  backend="numpy" if isinstance(ref.model, NumpyConvVAE) else "torch",
                  grid=r.canonical.to_dict(), samples=samples, uncertainty=ref.uncertainty,
                  decoder=f"variant decoder of {env}" if env else "invariant decoder")
    return out, grid, record

"""Step 4 of the pipeline: the learned refinement of a linear image, when a model applies."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from oatomo._documents import read_json
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.learn.records import family_record
from oatomo.refine.guard import check_refined, guard_rule
from oatomo.refine.refiner import (
    NUMPY_MAX_PIXELS,
    RefinedScan,
    load_refiner,
    model_grid,
)
from oatomo.refine.weights import NumpyEngine
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
            train = read_json(sidecar, "model sidecar").get("train") or {}
        except (InputError, AttributeError, OSError):
            train = {}
        if train.get(FAMILY_KEY):
            return dict(train[FAMILY_KEY])
    from oatomo.learn.checkpoint import load_checkpoint  # lazy: PyTorch

    return family_record(load_checkpoint(path).get("train"), path)


def refine_images(grid: Grid, sinogram: np.ndarray, sensors: SensorArray,
                  acquisition: Acquisition, *, model: str | os.PathLike | None = None,
                  refine: bool | Literal["auto"] = "auto", setup: str | None = None,
                  samples: int = 16, physics: np.ndarray | None = None,
                  method: str | None = None,
                  band: tuple[float | None, float | None] | None = None,
                  response: Any = None, element_width: float | None = None,
                  device: str = "cpu", guard: bool = True, reuse: bool = False,
                  pipeline_default: bool = False
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Step 4: the learned refinement of a scan, when a model applies.

    The refiner (:class:`oatomo.refine.Refiner`) reconstructs its own input channels (for
    the shipped model UBP and DAS with the scan's positions, in ``band``) from the
    sinogram, not from the pipeline's image, and refines every frame on ``grid``, in Pa.
    With ``guard`` every refined frame is then checked against its record and
    ``physics``, the method's image (:func:`oatomo.refine.guard.check_refined` with the
    method's rule, :func:`oatomo.refine.guard.guard_rule`, and
    ``response``, the detector response the signals carry, and ``element_width`` in its
    forward operator); when a frame fails, no frame is refined and the record says why.

    Returns the new images (``refined`` and, with posterior samples, ``uncertainty``; none
    when it did not refine) and a record: ``applied``, ``reason``, ``model``,
    ``compatible`` when checked; when the model ran, ``input`` (the physics images the
    refiner's input was, e.g. ``"ubp+das"``), ``method`` (the pipeline's method),
    ``input_note`` when the method is not one of the inputs, ``gain`` and ``guard``
    (``passed``, ``why``, ``rule`` and per frame the numbers). With ``refine=True`` a
    model that is missing or does not fit the scan is an :class:`InputError`; with
    ``"auto"`` the record says why it skipped. ``device``: the
    PyTorch device of the model (not ``"cpu"``: the PyTorch back end). ``reuse``: the
    method's image ``physics`` was computed exactly as the refiner's input of the same
    name (default settings); when the method is one of the refiner's inputs and ``grid``
    is the model's canonical grid it is taken as that input instead of being
    reconstructed again (the record's ``input_reused``). A refiner of the pipeline's own
    image (metadata ``input_from_pipeline``, the TV refiner) refines ``physics`` itself,
    and only when ``pipeline_default`` says it was made with the pipeline's default
    settings, the ones its training images were made with (else, with ``"auto"``, the
    record says why not; with True, an :class:`InputError`). Its refined image keeps
    that TV image's constraint ``p0 >= 0``: the pixels below zero are set to 0 after the
    guard (the record's ``nonneg``: the share of the energy that was below zero).
    """
    path = Path(model) if model is not None else default_model_path(method)
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
    takes = tuple(family.get("inputs", ()))  # the physics images the refiner was trained on
    if refine == "auto" and method is not None and takes and method not in takes:
        # measured on held-out scans: TV beats the UBP+DAS refiner by 3-15 dB
        record["reason"] = (f"the refiner takes {'+'.join(takes)} images, not {method} "
                            f"ones: the {method} image is kept (refine=True refines anyway)")
        return {}, record
    given = physics if reuse and method in takes else None
    if family.get("input_from_pipeline"):
        if not (pipeline_default and physics is not None and method == takes[0]):
            why = (f"the refiner refines the pipeline's own {takes[0]} image made with the "
                   f"default settings (as its training images were); this "
                   f"{method or 'physics'} image was made otherwise")
            if refine is True:
                raise InputError(f"cannot refine: {why}", path)
            record["reason"] = why
            return {}, record
        given = physics
    canon = model_grid(grid, float(family["pitch"]), bool(family.get("native_grid")))
    out, record = _refine_frames(path, canon, grid, sinogram, sensors, acquisition,
                                 setup=setup, samples=samples, band=band,
                                 device=device, record={**record, "reason": why},
                                 given=None if given is None else (str(method), given))
    for key, img in out.items():  # before the guard, which would call it a misfit
        if not np.all(np.isfinite(img)):
            raise InputError(f"the {key} image is not finite: the refinement model's "
                             f"weights hold NaN or Inf", path)
    record["method"] = method
    inputs = record["input"].split("+")
    if method is not None and method not in inputs:
        record["input_note"] = (f"the refiner's input is its own {record['input']} "
                                f"reconstruction of the sinogram, not the {method} image")
    if not guard or physics is None:
        record["guard"] = {"passed": None, "why": "not checked"}
        return _nonneg(out, record, bool(family.get("input_from_pipeline")))
    t = time.perf_counter()
    verdict = _guard(out["refined"], physics, sinogram, grid, sensors, acquisition,
                     band=band, response=response, element_width=element_width,
                     rule=guard_rule(method))
    verdict["time_s"] = time.perf_counter() - t
    record["guard"] = verdict
    if not verdict["passed"]:
        record.update(applied=False, reason=f"refined, then rejected by the guard: "
                      f"{verdict['why']}; the {method or 'physics'} image is kept")
        return {}, record
    return _nonneg(out, record, bool(family.get("input_from_pipeline")))


def _nonneg(out: dict[str, np.ndarray], record: dict[str, Any], constrained: bool
            ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The refined image of a refiner of the pipeline's own TV image, which is constrained
    to ``p0 >= 0``, under the same constraint: its negative pixels set to 0 (after the
    guard, which judges the network's own answer; the uncertainty map is left as it is).
    Positively homogeneous, so units, scale equivariance and frame ratios are kept.
    Measured with the shipped TV refiner on correct files (docs/results/refinement.rst,
    "The refined image kept non-negative"): +0.32 dB on the tuning scans, +0.18 and +0.05
    on two held-out sets, no scan more than 0.02 dB lower. The record's ``nonneg``: the
    share of the refined image's energy that was below zero (None: not constrained)."""
    if not constrained or "refined" not in out:
        record["nonneg"] = None
        return out, record
    img = out["refined"]
    total = float(np.sum(np.square(img, dtype=np.float64)))
    below = float(np.sum(np.square(np.minimum(img, 0), dtype=np.float64)))
    record["nonneg"] = below / total if total > 0 else 0.0
    return {**out, "refined": np.maximum(img, 0).astype(img.dtype, copy=False)}, record


def _guard(refined: np.ndarray, physics: np.ndarray, sinogram: np.ndarray, grid: Grid,
           sensors: SensorArray, acquisition: Acquisition, **kw: Any) -> dict[str, Any]:
    """The guard's record over every frame: passed when every frame passes; ``why`` that
    of the first frame that failed (else of the last); ``frames`` the numbers of each."""
    shape = grid.shape
    sinos = sinogram.reshape((-1,) + sinogram.shape[-2:])
    phys = np.asarray(physics).reshape((-1,) + shape)
    refs = np.asarray(refined).reshape((-1,) + shape)
    results = [check_refined(r, p, y, grid, sensors, acquisition, **kw)
               for r, p, y in zip(refs, phys, sinos, strict=True)]
    rule = kw["rule"]
    failed = [k for k, res in enumerate(results) if not res.passed]
    first = results[failed[0]] if failed else results[-1]
    why = (f"frame {failed[0]}: {first.why}" if failed and len(results) > 1 else first.why)
    return {"passed": not failed, "why": why, "rule": asdict(rule),
            "frames": [res.numbers for res in results]}


def _refine_frames(path: Path, canon: Grid, grid: Grid, sinogram: np.ndarray,
                   sensors: SensorArray, acquisition: Acquisition, *, setup: str | None,
                   samples: int, band: tuple[float | None, float | None] | None,
                   device: str, record: dict[str, Any],
                   given: tuple[str, np.ndarray] | None = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Step 4 with a refiner (the scan is inside its family): every frame refined on the
    user's grid (:meth:`oatomo.refine.Refiner.refine_scan`); ``canon``: the grid the model
    refines on (:func:`oatomo.refine.refiner.model_grid`); ``given``: one input's name and
    its images of every frame, already reconstructed on ``grid``."""
    frames = sinogram.reshape((-1,) + sinogram.shape[-2:])
    # many pixels: PyTorch is faster, once imported (``canon``: the grid the model refines on)
    big = len(frames) * canon.n ** 2 > NUMPY_MAX_PIXELS
    ref = load_refiner(path, device=device,
                       backend="torch" if big or device != "cpu" else "auto")
    reused = given is not None and canon == grid
    given_frames = (np.asarray(given[1]).reshape((-1,) + grid.shape) if reused and given
                    else [None] * len(frames))
    env = setup if setup in ref.env_names else None
    results: list[RefinedScan] = [
        ref.refine_scan(frame, sensors, acquisition, grid, band=band, env=env,
                        n_samples=samples, check=False,
                        images=None if img is None or given is None else {given[0]: img})
        for frame, img in zip(frames, given_frames, strict=True)]
    lead = sinogram.shape[:-2]
    out = {"refined": np.stack([r.refined for r in results]).reshape(lead + grid.shape)}
    stds = [r.std for r in results if r.std is not None]
    if stds:
        out["uncertainty"] = np.stack(stds).reshape(lead + grid.shape)
    r = results[-1]
    record.update(applied=True, input="+".join(ref.inputs), gain=ref.gain,
                  input_reused=reused, view_channels=ref.view,
                  backend="numpy" if isinstance(ref.model, NumpyEngine) else "torch",
                  grid=r.canonical.to_dict(), samples=samples, uncertainty=ref.uncertainty,
                  decoder=f"variant decoder of {env}" if env else "invariant decoder")
    return out, record

"""The options of :func:`oatomo.reconstruct`: their checks, and which wins over a preset.

:class:`ReconstructOptions` holds every keyword of :func:`oatomo.reconstruct` (None: not
given); :func:`resolve_options` checks them and fills those left at None from the preset
(explicit keywords win) and then from the defaults. :func:`operator_response` checks the
``model_response`` request against the scan and the method.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from oatomo._limits import max_bytes
from oatomo.errors import InputError
from oatomo.pipeline.presets import load_preset
from oatomo.recon.registry import get_method

__all__ = ["ReconstructOptions", "resolve_options", "operator_response", "check_device",
           "PRESET_KEYWORDS",
           "DEFAULT_METHOD", "REFINE_METHOD", "DEFAULT_ITERS", "RESPONSE_ITERS",
           "RESPONSE_MAX_ITERS",
           "default_method", "resolve_response"]

logger = logging.getLogger(__name__)

#: The method of a reconstruction that names none (neither keyword nor preset): TV, the
#: best physics image on every held-out geometry and phantom kind measured (3-15 dB above
#: UBP; docs/results/refinement.rst), and the input of the shipped TV refiner.
DEFAULT_METHOD = "mb-tv"
#: The method when refinement is asked for (``refine=True``) and none is named: the TV
#: refiner's input, so that the refined image and its input agree.
REFINE_METHOD = "mb-tv"
#: Iterations of model-based methods when neither keyword nor preset sets them.
DEFAULT_ITERS = 50
#: The same with the detector response inside the forward operator: the band-limited
#: operator is ill-conditioned and first-order TV converges slowly (on the refinement
#: benchmark's tuning scans TV gained 3.7 dB from 50 to 100 iterations and 0.9 dB more
#: to 200; docs/results/refinement.rst, "The detector response the scan carries").
RESPONSE_ITERS = 100
#: With the response in the operator and no iterations given, TV from zero (the scan's
#: positions right, or not checked) runs :data:`RESPONSE_ITERS` iterations and then on,
#: to at most this many, while its objective still falls by more than
#: :data:`oatomo.pipeline.policy.WARM_STALL_TOL` over 10 iterations (the stall test of the
#: TV after self-calibration, tested only from iteration :data:`RESPONSE_ITERS` on).
#: Chosen on the tuning scans of the refinement benchmark (48-sensor ring and 200 degree
#: arc, every phantom kind, seeds 2000-2001, 20 correct files; ``cold_stall.py``): what the
#: default returns, refined and guarded, +0.49 and +1.36 dB on average over the two
#: tuning caches, lower on no scan, textures +4.1 dB; caps of 150 and 200 measured the
#: same, 120 less. Disks and textures under sparse or one-sided arrays are still
#: converging at 100; vessel trees and points stall by then and are unchanged. (A scan
#: too large for memory, reconstructed frame by frame, runs :data:`RESPONSE_ITERS`.)
RESPONSE_MAX_ITERS = 150
#: The keywords a preset may set (:meth:`oatomo.pipeline.presets.Preset.settings`).
PRESET_KEYWORDS = ("method", "n", "fov", "speed_of_sound", "object_speed_of_sound",
                   "object_radius", "object_centre", "band", "deconvolve", "iters",
                   "lam", "response", "calibrate", "refine", "medium", "attenuation")


@dataclass(frozen=True)
class ReconstructOptions:
    """The keywords of :func:`oatomo.reconstruct` (see there for each), as one value.

    As given, None means "not given"; :func:`resolve_options` returns them resolved:
    ``method`` a registered name, ``iters`` a number, ``deconvolve`` False or the
    regularisation, ``calibrate`` and ``refine`` True, False or ``"auto"``, with
    ``method_given`` (whether the keyword or the preset named the method) and
    ``preset_name`` (the preset's name, None without one) filled in.
    """

    method: str | None = None
    n: int | None = None
    fov: float | None = None
    frames: int | Sequence[int] | None = None
    wavelengths: float | Sequence[float] | None = None
    speed_of_sound: float | None = None
    object_speed_of_sound: float | None = None
    object_radius: float | Sequence[float] | None = None
    object_centre: Sequence[float] | None = None
    calibration: str | os.PathLike | Mapping[str, Any] | None = None
    band: tuple[float | None, float | None] | None = None
    deconvolve: bool | float | None = None
    response: Any = None
    model_response: bool | Literal["auto"] = "auto"
    element_width: float | None = None
    medium: str | None = None
    attenuation: Any = None
    preset: Any = None
    refine: bool | Literal["auto"] = "auto"
    model: str | os.PathLike | None = None
    setup: str | None = None
    samples: int = 16
    lam: float | None = None
    iters: int | None = None
    calibrate: bool | Literal["auto"] = "auto"
    device: str = "cpu"
    guard: bool = True
    method_given: bool = False
    iters_given: bool = False
    preset_name: str | None = None


def _check_choices(options: ReconstructOptions) -> None:
    """InputError unless ``refine``, ``calibrate`` and ``model_response`` are True, False
    or ``"auto"``."""
    if options.model_response not in (True, False, "auto"):
        raise InputError(f"model_response must be True, False or 'auto', got "
                         f"{options.model_response!r}")
    if options.refine not in (True, False, "auto"):
        raise InputError(f"refine must be True, False or 'auto', got {options.refine!r}")
    if options.calibrate not in (True, False, "auto"):
        raise InputError(f"calibrate must be True, False or 'auto', got "
                         f"{options.calibrate!r}")


def check_device(device: str, option: str) -> str:
    """The PyTorch device ``device`` names on this machine (``"auto"``: CUDA when present,
    else ``"cpu"``); ``"cpu"`` is accepted without importing PyTorch.

    Raises
    ------
    InputError
        Naming ``option``, for a device this machine does not have (e.g. ``"cuda"``
        without CUDA) or a name PyTorch does not know.
    """
    if device == "cpu":
        return device
    if not isinstance(device, str):
        raise InputError(f"{option} must be a device name such as 'cpu' or 'cuda', got "
                         f"{device!r}")
    try:
        from oatomo.learn.train import resolve_device  # lazy: PyTorch
    except ImportError:
        raise InputError(f"{option} {device!r} needs PyTorch, which is not installed; "
                         f"use cpu") from None
    try:
        return str(resolve_device(device))
    except InputError as exc:
        raise InputError(f"{option}: {exc.problem}") from None


def _with_preset(options: ReconstructOptions) -> ReconstructOptions:
    """``options`` with the preset's settings in every keyword left at None (``"auto"`` for
    ``calibrate`` and ``refine``, their defaults): explicit keywords win."""
    if options.preset is None:
        return options
    chosen = load_preset(options.preset)
    given = {k: getattr(options, k) for k in PRESET_KEYWORDS}
    given["calibrate"] = None if options.calibrate == "auto" else options.calibrate
    given["refine"] = None if options.refine == "auto" else options.refine
    given.update({k: v for k, v in chosen.settings().items() if given[k] is None})
    given["calibrate"] = "auto" if given["calibrate"] is None else bool(given["calibrate"])
    given["refine"] = "auto" if given["refine"] is None else given["refine"]
    return replace(options, preset_name=chosen.name, **given)


def default_method(refine: object) -> str:
    """The method of a reconstruction that names none: :data:`REFINE_METHOD` when
    refinement is asked for (``refine`` True), else :data:`DEFAULT_METHOD`."""
    return REFINE_METHOD if refine is True else DEFAULT_METHOD


def resolve_options(options: ReconstructOptions) -> ReconstructOptions:
    """The options checked, with the preset's settings and then the defaults filled in.

    Raises
    ------
    InputError
        For a ``refine`` or ``calibrate`` that is not True, False or ``"auto"``, a preset
        that cannot be read, or a method that is not registered.
    """
    _check_choices(options)
    options = replace(options, device=check_device(options.device, "device"))
    options = _with_preset(options)
    resolved = replace(
        options, method_given=options.method is not None,
        iters_given=options.iters is not None,
        method=default_method(options.refine) if options.method is None else options.method,
        iters=DEFAULT_ITERS if options.iters is None else options.iters)
    get_method(resolved.method)  # an unknown method fails before the scan is read
    return replace(resolved, deconvolve=False if resolved.deconvolve is None
                   else resolved.deconvolve)


def operator_response(options: ReconstructOptions, scan: Any) -> Any:
    """The detector response to put inside the forward operator: with ``model_response``
    the one given (``options.response``) or else the scan's; None without (``"auto"`` is
    decided first, :func:`resolve_response`).

    Raises
    ------
    InputError
        With ``model_response=True``: when the scan has no response to model, the method
        is not iterative, or the signals are also to be deconvolved.
    """
    if options.model_response == "auto":
        options = resolve_response(options, scan)
    if not options.model_response:
        return None
    in_model = _response_of(options, scan)
    if in_model is None:
        raise InputError("model_response: the scan has no detector response (give one)")
    spec = get_method(options.method)
    if not spec.iterative:
        raise InputError(f"{spec.name} cannot model the detector response; use "
                         f"deconvolve or a model-based method")
    if options.deconvolve is not False:
        raise InputError("deconvolve and model_response both remove the response; "
                         "choose one")
    return in_model


def resolve_response(options: ReconstructOptions, scan: Any) -> ReconstructOptions:
    """``options`` with ``model_response`` decided for ``scan`` and the model-based
    method's iterations for it.

    ``"auto"`` becomes True when there is a response to model (given, or carried by the
    scan), the method is iterative, ``deconvolve`` is not asked for and the response's
    support fits ``OATOMO_MAX_BYTES`` (else it is left out, with a warning), and False
    otherwise. With the response in the operator and no iterations given (keyword or
    preset), the method runs :data:`RESPONSE_ITERS`.
    """
    if options.model_response == "auto":
        in_model = _response_of(options, scan)
        use = (in_model is not None and get_method(options.method).iterative
               and options.deconvolve is False)
        if use and not _affordable(in_model, scan):
            logger.warning("the detector response %r is too long to put in the forward "
                           "operator within OATOMO_MAX_BYTES; reconstructing without it "
                           "(model_response=True asks for it and says what it needs)",
                           in_model)
            use = False
        options = replace(options, model_response=use)
    if not options.iters_given and operator_response(options, scan) is not None:
        options = replace(options, iters=RESPONSE_ITERS)
    return options


def _response_of(options: ReconstructOptions, scan: Any) -> Any:
    """The detector response given (``options.response``), else the scan's (or None)."""
    return options.response if options.response is not None \
        else getattr(scan, "response", None)


def _affordable(response: Any, scan: Any) -> bool:
    """Whether filtering every sensor's record by the response (what the operator with
    the response allocates, checked there against ``OATOMO_MAX_BYTES``) fits."""
    acquisition, sensors = getattr(scan, "acquisition", None), getattr(scan, "sensors", None)
    if acquisition is None or sensors is None:
        return True  # the operator's own check decides
    return response.filter_bytes(acquisition.fs, sensors.n_sensors) <= max_bytes()

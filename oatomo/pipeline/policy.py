"""Whether to calibrate, and the geometry to reconstruct with (step 2 of
:func:`oatomo.reconstruct`).

With ``calibrate="auto"`` the scan's data are first tested against its sensor positions
(:func:`oatomo.calibration.check_positions`); when they disagree the scan is calibrated
and reconstructed with ``mb-tv`` unless a method was named; that TV image is then refined
by the TV refiner like any other, its guard keeping calibrated TV when the refined image
disagrees with the data (:func:`refines_calibrated`). With ``ubp``/``das`` or a user's
model the calibrated image is not refined by default, and asked to refine
(``refine=True``) such a scan is refined on the nominal positions instead, as the refiner
of UBP images was trained on them (:func:`decide_calibration`).
:func:`scan_geometry` then gives the sensors and acquisition: the scan's own, or the
calibration's estimates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from oatomo.calibration import MIN_SENSORS, Calibration, calibration_grid, check_positions
from oatomo.calibration import calibrate as calibrate_scan
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.pipeline.frames import Signals
from oatomo.pipeline.options import (
    RESPONSE_ITERS,
    RESPONSE_MAX_ITERS,
    ReconstructOptions,
    operator_response,
)
from oatomo.progress import Callback
from oatomo.recon.registry import get_method
from oatomo.speed_map import OBJECT_OPTIONS

logger = logging.getLogger(__name__)

__all__ = ["WARM_ITERS", "WARM_STALL_TOL", "scan_geometry", "warm_start",
           "cold_stall", "note_iterations", "position_check",
           "decide_calibration", "calibrated_geometry", "refines_calibrated",
           "CALIBRATED_METHOD"]

#: Iterations of the TV of a self-calibrated scan started at the calibration's last image
#: (:func:`warm_start`) with the detector response in the operator, when none were asked
#: for; the stall test (:data:`WARM_STALL_TOL`) ends most of them sooner. Chosen on the
#: tuning scans (seeds 2000 and 2001 of the held-out calibration benchmark's generator,
#: 32 scans): with the stall test, a cap of 120 gains 0.24 dB on average over the former
#: 85 and loses on no scan (textures +0.84 dB: their objective still falls by 2-15 % per
#: 10 iterations at 85 and stalls by 120), for 62 iterations on average instead of 59;
#: caps of 150 and 200 measured the same. (Before the stall test, 85 were the fewest
#: that matched 100 from zero.) Without the response in the operator the TV keeps its
#: own count (:data:`oatomo.pipeline.options.DEFAULT_ITERS`).
WARM_ITERS = 120

#: The TV of a self-calibrated scan stops before :data:`WARM_ITERS` once its objective
#: fell by less than this fraction over the last 10 iterations (tested from iteration
#: 30 on; :func:`oatomo.reconstruct_model_based`'s ``stall_tol``). Started at the
#: calibration's image, the TV of a vessel tree reaches its best PSNR after 20-40
#: iterations and then loses up to 1 dB while its objective falls by less than 0.1 % per
#: 10 iterations; that of a disk or a texture still falls by 2-15 % per 10 at 60-85.
WARM_STALL_TOL = 1e-3

#: The method of a scan calibrated by ``calibrate="auto"`` when none was named.
CALIBRATED_METHOD = "mb-tv"


def scan_geometry(scan: Any, *, calibrate: bool = False, grid: Grid | None = None,
                  callback: Callback | None = None, check: dict[str, Any] | None = None
                  ) -> tuple[SensorArray, Acquisition, dict[str, Any] | None,
                             Calibration | None]:
    """Step 2: the sensors and acquisition to reconstruct with.

    The scan's own (the nominal ones, or the estimates of a calibrated scan file), or with
    ``calibrate=True`` those estimated from the data by :func:`oatomo.calibrate`.
    Returns ``(sensors, acquisition, record, calibration)``; ``record`` summarises the
    calibration for the provenance, ``calibration`` is the
    :class:`~oatomo.calibration.Calibration` itself (both None without one).

    ``check``: the position check's record when the check decided to calibrate
    (``calibrate="auto"``). Then a scan the calibration cannot work on (its signals carry
    too little structure for the positions to be estimated, see
    :func:`oatomo.calibrate`), or whose calibrated geometry predicts held-out records no
    better than the file's (:attr:`~oatomo.calibration.Calibration.improves_on_file`
    False: the data do not identify it), keeps its own geometry, and the record says why
    (``calibrated`` False, ``why_not``); asked for explicitly, the calibration's error
    stands and a calibration no better than the file's is used, with a warning.
    """
    if not calibrate:
        return scan.sensors, scan.acquisition, None, None

    def keep_the_file_s(why: str) -> tuple[SensorArray, Acquisition, None, None]:
        assert check is not None
        check["calibrated"] = False
        check["why_not"] = why
        logger.warning("%s; reconstructing with the file's positions and speed of sound",
                       why)
        return scan.sensors, scan.acquisition, None, None

    try:
        cal = calibrate_scan(scan, grid, callback=callback)
    except InputError as exc:
        if check is None:
            raise
        return keep_the_file_s(f"self-calibration was not possible: {exc.problem}")
    if check is not None and cal.improves_on_file is False:
        h = cal.heldout_misfit or {}
        return keep_the_file_s(f"the data do not identify a better geometry than the "
                               f"file's (held-out misfit {h['calibrated']:.3f} "
                               f"calibrated, {h['file']:.3f} with the file's)")
    if cal.improves_on_file is False:
        logger.warning("the calibrated geometry predicts held-out records no better than "
                       "the file's (held-out misfit %.3f against %.3f)",
                       cal.heldout_misfit["calibrated"], cal.heldout_misfit["file"])
    shift = np.hypot(*cal.displacement.T)
    record = {"speed_of_sound": cal.speed_of_sound,
              "nominal_speed_of_sound": cal.nominal_speed_of_sound,
              "rms_shift_m": float(np.sqrt(np.mean(shift ** 2))),
              "max_shift_m": float(shift.max()), "prior_std_m": cal.prior_std,
              "frame_std": cal.frame_std,
              "misfit": [h["misfit"] for h in cal.history], "time_s": cal.time_s,
              "heldout_misfit": cal.heldout_misfit, "notes": list(cal.notes)}
    return cal.sensors, cal.acquisition(scan.acquisition), record, cal


def warm_start(options: ReconstructOptions, calibration: Calibration | None,
               signals: Signals, record: dict[str, Any] | None
               ) -> tuple[ReconstructOptions, dict[str, Any]]:
    """Whether the TV of a self-calibrated scan starts at the calibration's last image.

    It does for ``mb-tv`` on a scan held in memory; then, unless iterations were asked
    for, it runs at most :data:`WARM_ITERS` of them with the response in the operator (its
    own count without) and stops earlier once its objective stalls
    (:data:`WARM_STALL_TOL`), and when its forward model is the calibration's (the
    same detector response, no element width, one speed of sound) it takes the
    calibration's bound on ``||A||^2`` as its step size instead of an estimate of its
    own. ``record`` (the calibration's provenance) notes it.

    Returns
    -------
    tuple
        The options, and the keywords of
        :func:`~oatomo.recon.registry.reconstruct_sinogram` that start the TV (``x0``,
        ``norm_sq``, ``stall_tol``, and the list ``records`` its solver records go to,
        for :func:`note_iterations`; empty: from zero, with its own estimate of
        ``||A||^2``, every iteration run).
    """
    if signals.by_frame or get_method(options.method).name != "mb-tv":
        return options, {}
    if calibration is None or calibration.image is None:
        return cold_stall(options, signals)
    start: dict[str, Any] = {"x0": calibration.image, "records": []}
    in_model = operator_response(options, signals.data)
    if not options.iters_given:
        start["stall_tol"] = WARM_STALL_TOL
        if in_model is not None:
            options = replace(options, iters=WARM_ITERS)
    same_model = (in_model is signals.data.response
                  and options.element_width is None and options.attenuation is None
                  and options.medium in (None, "slab")
                  and all(getattr(options, k) is None for k in OBJECT_OPTIONS))
    own_step = not same_model or calibration.operator_norm_sq is None
    if not own_step:
        start["norm_sq"] = calibration.operator_norm_sq
    if record is not None:
        record["tv_started_at_calibration_image"] = True
        record["tv_step_from_calibration"] = not own_step
        record["tv_stall_tol"] = float(start.get("stall_tol", 0.0))
    return options, start


def cold_stall(options: ReconstructOptions, signals: Signals
               ) -> tuple[ReconstructOptions, dict[str, Any]]:
    """When the TV from zero (no calibration image to start at) goes on past
    :data:`~oatomo.pipeline.options.RESPONSE_ITERS`: with the detector response in its
    operator and no iterations asked for, it runs at least that many, then stops once its
    objective stalls (:data:`WARM_STALL_TOL`, tested from that iteration on) or at
    :data:`~oatomo.pipeline.options.RESPONSE_MAX_ITERS`. Returns the options and the
    keywords of :func:`~oatomo.recon.registry.reconstruct_sinogram` (``stall_tol``,
    ``stall_from``, ``records``; empty when the rule does not apply)."""
    if options.iters_given or operator_response(options, signals.data) is None:
        return options, {}
    return (replace(options, iters=RESPONSE_MAX_ITERS),
            {"stall_tol": WARM_STALL_TOL, "stall_from": RESPONSE_ITERS, "records": []})


def note_iterations(start: dict[str, Any], record: dict[str, Any] | None
                    ) -> list[int] | None:
    """The iterations each frame's TV ran, from the solver records ``start["records"]``
    collected (the keywords of :func:`warm_start` or :func:`cold_stall`; None: none were
    collected). A TV started at the calibration's image also notes them in ``record``
    (the calibration's provenance): ``tv_iterations_run`` and whether the stall test
    ended them, ``tv_stalled``."""
    runs = start.get("records")
    if not runs:
        return None
    counts = [int(r["n_iter"]) for r in runs]
    if record is not None and "x0" in start:
        record["tv_iterations_run"] = counts
        record["tv_stalled"] = [bool(r["stalled"]) for r in runs]
    return counts


def _not_checkable(signals: Signals, calibration: Any, media: bool = False) -> str | None:
    """Why the scan's positions cannot or need not be checked (None: check them);
    ``media``: the scan's medium is not the slab or it attenuates."""
    positions = np.asarray(signals.data.sensors.positions)
    if media:
        return ("the position check models the slab medium without attenuation (the scan "
                "or the options name another)")
    if signals.by_frame:
        return "the scan is larger than OATOMO_MAX_BYTES"
    if getattr(signals.data, "calibration", None):
        return "the file is already calibrated"
    if calibration is not None:
        return "a calibration was given"
    if positions.ndim != 2 or positions.shape[1] != 2:
        return "only 2-D sensor arrays can be calibrated"
    if len(positions) < MIN_SENSORS:
        return f"fewer than {MIN_SENSORS} sensors"
    return None


def position_check(signals: Signals, grid: Grid, calibration: Any,
                   media: bool = False) -> dict[str, Any]:
    """The position check's record (:meth:`oatomo.calibration.PositionCheck.to_dict`, with
    ``needs_calibration``), or why the scan was not checked (``reason``,
    ``needs_calibration`` False).

    ``calibration`` is the calibration given by the user (a scan with one is not checked);
    ``media``: the reconstruction uses the 2-D medium or attenuation (not checked). The
    check runs on the grid the calibration would take
    (:func:`oatomo.calibration.calibration_grid`): a grid that cuts the object leaves
    records its image cannot explain, which look like misplaced sensors.
    """
    why = _not_checkable(signals, calibration, media)
    if why is None:
        data = signals.data
        try:
            check = check_positions(signals.sinogram, data.sensors, data.acquisition,
                                    calibration_grid(data, grid)[0])
        except InputError as exc:
            why = exc.problem
        else:
            out = check.to_dict()
            if check.reason:
                logger.info("position check: %s", check.reason)
            elif check.needs_calibration:
                logger.info("the data disagree with the file's sensor positions (spread "
                            "%.0f um > %.0f um): self-calibrating", check.spread * 1e6,
                            check.threshold * 1e6)
            return out
    logger.info("position check skipped: %s", why)
    return {"needs_calibration": False, "reason": why}


def refines_calibrated(options: ReconstructOptions) -> bool:
    """Whether ``refine="auto"`` refines an image made with estimated positions (a scan
    self-calibrated by the position check or ``calibrate=True``, or a file written by
    ``oatomo calibrate``): for the shipped TV refiner's input, ``mb-tv``, it does.

    The TV refiner was trained on TV images made with the true positions; a calibrated TV
    image is closer to those than the file's. Measured on self-calibrated held-out scans
    (docs/results/refinement.rst, "Refining self-calibrated scans by default"): what the
    guard keeps is above calibrated TV on average and on almost every scan. The refiner of
    UBP and DAS images, and a user's model, were trained on nominal-position images and are
    not run on calibrated ones unless asked.
    """
    return options.model is None and get_method(options.method).name == "mb-tv"


def _refines_nominal(options: ReconstructOptions) -> bool:
    """Whether the refiner that ``refine=True`` runs takes images made with the file's
    (nominal) positions: the scanner-family refiner of UBP and DAS images (trained on
    them) or a user's model. The shipped TV refiner, for the default method, was trained
    on images made with the true positions, so a scan that fails the check is calibrated
    first (measured: refined calibrated TV +1.05 dB over calibrated TV on held-out scans,
    docs/results/refinement.rst)."""
    return options.model is not None or (options.method_given and options.method != "mb-tv")


def decide_calibration(signals: Signals, grid: Grid, options: ReconstructOptions,
                       done: Callable[[str, float], None]
                       ) -> tuple[ReconstructOptions, dict[str, Any] | None, str | None]:
    """Resolve ``calibrate="auto"``: run the position check and decide.

    Parameters
    ----------
    signals, grid
        The signals and the image grid.
    options
        The resolved options (:func:`oatomo.pipeline.options.resolve_options`).
    done
        ``done(step, t_start)``: called with ``"check"`` when a check ran.

    Returns
    -------
    tuple
        The options with ``calibrate`` True or False (and, for a calibrated scan,
        ``method`` :data:`CALIBRATED_METHOD` unless one was named and ``refine`` False
        in place of ``"auto"``), the check's record (None when ``calibrate`` was not
        ``"auto"``) and why the scan is not refined (None: the refinement step decides).
    """
    media = options.medium not in (None, "slab") or options.attenuation is not None
    if options.calibrate is True and media:
        raise InputError("calibration models the slab medium without attenuation; "
                         "reconstruct this scan without --calibrate")
    if options.calibrate != "auto":
        return options, None, None
    t = time.perf_counter()
    record = position_check(signals, grid, options.calibration, media)
    calibrate = bool(record.get("needs_calibration"))
    if "time_s" in record:
        done("check", t)
    if calibrate and options.refine is True and _refines_nominal(options):
        # measured: the refiner of UBP images does worse on calibrated inputs than on the
        # nominal ones it was trained on
        calibrate = False
        record["calibrated"] = False
        record["why_not"] = ("refinement was asked for, and the refiner takes "
                             "nominal-position images (--calibrate yes, "
                             "calibrate=True, calibrates anyway)")
        logger.info("not calibrating: %s", record["why_not"])
    options = replace(options, calibrate=calibrate)
    if not calibrate:
        return options, record, None
    if not options.method_given:
        options = replace(options, method=CALIBRATED_METHOD)
    refine_reason = None
    if options.refine == "auto" and not refines_calibrated(options):
        options = replace(options, refine=False)
        refine_reason = (f"the scan was self-calibrated: the refiner of {options.method} "
                         "images was trained on nominal-position images (refine=True, "
                         "--refine, refines it on the file's positions instead)")
    return options, record, refine_reason


def calibrated_geometry(scan: Any, options: ReconstructOptions) -> str | None:
    """Why a scan reconstructed with estimated positions is not refined (None: the
    refinement step decides).

    With ``refine="auto"`` a file written by ``oatomo calibrate`` and a scan calibrated with
    ``calibrate=True`` are refined when their method's image is the TV refiner's input
    (:func:`refines_calibrated`); with another method or a user's model they are not (the
    refiner of UBP images was trained on nominal-position images and does worse on
    calibrated ones); ``refine=True`` refines them anyway.
    """
    if options.refine != "auto" or refines_calibrated(options):
        return None
    why = ("calibrated images are refined by default only with mb-tv (the refiner of other "
           "images was trained on nominal-position images; --refine to force)")
    if options.calibrate is True:
        return f"the scan was calibrated: {why}"
    if getattr(scan, "calibration", None):
        return f"the file is calibrated: {why}"
    return None

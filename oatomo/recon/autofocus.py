"""Autofocus: estimate the speed of sound from image sharpness.

A scan reconstructed with the wrong speed of sound is blurred: every structure is smeared
along arcs. The speed that gives the sharpest delay-and-sum image is the estimate.

Sharpness measure: the normalised gradient energy of the DAS image,
``S = sum |grad I|^2 / sum I^2``, the squared mean spatial frequency of the image. It does
not depend on the image's amplitude (which itself drifts with the assumed speed), needs
no positivity (DAS images of bipolar pressure signals have both signs), and on simulated
64-sensor ring scans of vessel and disk phantoms with 1 % noise it peaked at the true
speed on a 5 m/s grid in all four cases tried, where the Brenner gradient missed by up to
10 m/s and the normalised variance and negative entropy by up to 45 m/s
(``docs/results/physics.rst``).

What autofocus cannot estimate: a rigid motion (shift or rotation) of the whole array.
The data of an array moved by a rigid motion ``T`` equal those of the object moved by
``T^-1`` seen from the nominal array, so the reconstruction is the same sharp image,
moved: no image-based criterion can detect it (``tests/recon/test_autofocus.py`` checks this).
The same holds for a common scaling of the array radius and the speed of sound. An error
in the acquisition start time ``t0`` trades off against the speed of sound along a ridge
of almost equal sharpness (for a 22.5 mm ring, 0.1 us of delay ~ 10 m/s; measured in
``docs/results/physics.rst``), so the two cannot be fitted jointly either: the estimate
is only as good as the recorded ``t0`` and array radius.

Two speeds of sound (:func:`autofocus_two_speeds`): the object region's speed ``c1`` and
radius (and centre) with the coupling medium's ``c0`` fixed. Sharpness is too weak a
criterion there: the delay a ray picks up in the region grows with both ``c1`` and the
radius, so the sharpness surface is a flat ridge whose maximum missed the truth (on a
64-sensor ring, disc r 9 mm at 1560 m/s in 1500 m/s: sharpest at r 13 mm, 1530 m/s,
within 1 % of the truth's sharpness; ``docs/results/media.rst``). The criterion used
instead is a held-out data misfit: the UBP image of half of the sensors (interleaved
around the array) predicts the records of the other half through the two-speed forward
model, scored by ``1 - rho^2`` (rho: Pearson correlation per held-out sensor), both
halves in turn. It is searched coarse to fine: a grid over (c1, radius) on low-passed
data (smooth, one basin), then Nelder-Mead on wider and then the full band.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any

import numpy as np

from oatomo._limits import SPEED_RANGE, check_option, check_range
from oatomo.errors import InputError
from oatomo.forward import bandpass, check_sinogram, simulate
from oatomo.geometry import Acquisition, Grid, SensorArray, check_geometry
from oatomo.media import DEFAULT_MEDIUM, check_medium
from oatomo.recon.backprojection import backproject
from oatomo.recon.operators import forward_operator
from oatomo.speed_map import SpeedMap

logger = logging.getLogger(__name__)

__all__ = ["autofocus", "autofocus_two_speeds", "heldout_misfit", "sharpness"]


def sharpness(image: np.ndarray) -> float:
    """Normalised gradient energy ``sum |grad I|^2 / sum I^2`` (per pixel^2).

    Central differences inside the image (``numpy.gradient``); 0 for an all-zero image.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise InputError(f"sharpness needs one image (n, m), got shape {img.shape}")
    energy = float(np.sum(img * img))
    if energy == 0.0:
        return 0.0
    gy, gx = np.gradient(img)
    return float(np.sum(gx * gx + gy * gy)) / energy


def autofocus(
    sinogram: np.ndarray,
    grid: Grid,
    sensors: SensorArray,
    acquisition: Acquisition,
    *,
    c_range: tuple[float, float] = (1400.0, 1600.0),
    n_coarse: int = 21,
    xtol: float = 0.1,
    band: tuple[float | None, float | None] | None = None,
) -> dict[str, Any]:
    """Estimate the speed of sound that gives the sharpest delay-and-sum image.

    Parameters
    ----------
    sinogram
        (N, T) signals, or (..., N, T): several frames are summed into one image per
        trial speed (they share the geometry and the medium).
    grid
        Image grid of the trial reconstructions, over the object. Keep its pitch near that
        of a final reconstruction: on a 32-sensor ring (22.5 mm) 0.1 mm pixels gave errors
        of at most 0.17 % over six scans, 0.2 mm pixels up to 0.65 % (the streaks of a sparse
        array alias); with 64 sensors 0.2 mm was within 0.04 %.
    sensors
        Sensor positions.
    acquisition
        Sampling; its ``speed_of_sound`` is ignored (it is what is estimated).
    c_range
        ``(c_min, c_max)`` in m/s searched.
    n_coarse
        Points of the coarse grid over ``c_range``; the best one (not at the ends of the
        range unless the maximum is there) is refined by bounded Brent search
        (:func:`scipy.optimize.minimize_scalar`) between its neighbours.
    xtol
        Absolute tolerance of the refinement (m/s).
    band
        Optional band-pass (Hz) applied to the signals first (see
        :func:`oatomo.backproject`).

    Returns
    -------
    dict
        ``speed_of_sound`` (m/s), ``sharpness`` (at the estimate), ``curve``:
        ``{"speed_of_sound": [...], "sharpness": [...]}`` (the coarse grid),
        ``n_evaluations``, ``at_edge`` (True when the maximum is at an end of
        ``c_range``: widen the range), ``time_s``.

    Notes
    -----
    See the module docstring for the sharpness measure and for what cannot be
    estimated (a rigid motion of the whole array; ``t0`` jointly with the speed).
    Cost: ``n_coarse`` + about 10 delay-and-sum images (0.5 s for 64 x 64 pixels,
    64 sensors, 1400 samples on 2 cores).

    Examples
    --------
    >>> from oatomo import Grid, Acquisition, ring_array, simulate, phantoms
    >>> g, ring = Grid(64, 0.0128), ring_array(64, 0.0225)
    >>> true = Acquisition(40e6, 1400, speed_of_sound=1530.0)
    >>> y = simulate(phantoms.disks(g, 3), g, ring, true)
    >>> est = autofocus(y, g, ring, Acquisition(40e6, 1400))
    >>> abs(est["speed_of_sound"] - 1530) < 5
    True
    """
    from scipy.optimize import minimize_scalar  # lazy: scipy.optimize is slow to import

    lo, hi = (float(v) for v in c_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise InputError(f"speed-of-sound range must be 0 < c_min < c_max, got {c_range}")
    if int(n_coarse) != n_coarse or n_coarse < 3:
        raise InputError(f"n_coarse must be an integer >= 3, got {n_coarse!r}")
    if not (xtol > 0 and math.isfinite(xtol)):
        raise InputError(f"xtol must be > 0 m/s, got {xtol}")
    grid, sensors, acquisition = check_geometry(grid, sensors, acquisition)
    y = check_sinogram(sinogram, sensors, acquisition)
    y = bandpass(y, acquisition.fs, band)
    t_start = time.perf_counter()
    n_eval = 0

    def score(c: float) -> float:
        nonlocal n_eval
        n_eval += 1
        acq = replace(acquisition, speed_of_sound=float(c))
        img = backproject(y, grid, sensors, acq, method="das")
        if img.ndim > 2:
            img = img.reshape((-1,) + grid.shape).sum(axis=0)
        return sharpness(img)

    cs = np.linspace(lo, hi, int(n_coarse))
    curve = np.array([score(c) for c in cs])
    best = int(np.argmax(curve))
    at_edge = best in (0, len(cs) - 1)
    a, b = cs[max(best - 1, 0)], cs[min(best + 1, len(cs) - 1)]
    res = minimize_scalar(lambda c: -score(c), bounds=(a, b), method="bounded",
                          options={"xatol": xtol})
    c_hat, s_hat = (float(res.x), -float(res.fun)) if -res.fun >= curve[best] else (
        float(cs[best]), float(curve[best]))
    result = {
        "speed_of_sound": c_hat,
        "sharpness": s_hat,
        "curve": {"speed_of_sound": cs.tolist(), "sharpness": curve.tolist()},
        "n_evaluations": n_eval,
        "at_edge": bool(at_edge),
        "time_s": time.perf_counter() - t_start,
    }
    if at_edge:
        logger.warning("autofocus: sharpest image at the end of the range %g..%g m/s",
                       lo, hi)
    logger.info("autofocus: c = %.2f m/s, %d DAS images, %.2f s", c_hat, n_eval,
                result["time_s"])
    return result


def _interleaved_halves(positions: np.ndarray) -> list[np.ndarray]:
    """Sensor indices in two folds, alternating in angle around the array's centroid."""
    c = positions.mean(axis=0)
    order = np.argsort(np.arctan2(positions[:, 1] - c[1], positions[:, 0] - c[0]),
                       kind="stable")
    return [np.sort(order[0::2]), np.sort(order[1::2])]


def heldout_misfit(sinogram: np.ndarray, grid: Grid, sensors: SensorArray,
                   acquisition: Acquisition, speed_map: SpeedMap | None = None, *,
                   per_sensor: bool = False, medium: str = DEFAULT_MEDIUM
                   ) -> float | np.ndarray:
    """Held-out data misfit of a medium: how badly half of the sensors predict the rest.

    For each of two interleaved halves of the array, the UBP image of the other half
    (:func:`oatomo.backproject` with ``speed_map``) is projected by the forward model
    (:func:`oatomo.simulate`, same map) onto the held-out sensors, and each held-out
    record is scored by ``1 - rho^2`` (rho: Pearson correlation with the measured
    record, so no amplitude calibration is needed). Returns the mean over all sensors,
    in [0, 1]; lower is better.

    With ``medium="2d"`` the held-out image is instead the adjoint of the line-source
    forward model (same map) applied to the records' second time derivative (a
    ramp-like filter): UBP would first convert the records to the slab
    (:func:`oatomo.media.line_to_slab`), whose time-to-distance mapping assumes one
    speed. On k-Wave's 2-D two-speed scans the adjoint image moved the estimated object
    speed from +0.36 % to +0.24 % on the tuning scan (1560 m/s) and from +0.29 % to
    +0.09 % at 1580 m/s (``docs/results/media.rst``).

    Parameters
    ----------
    sinogram
        (N, T) signals (band-pass them first as wanted).
    grid, sensors, acquisition
        Image grid of the held-out images, sensor positions and sampling (its speed of
        sound is the coupling medium's when ``speed_map`` is None).
    speed_map
        Two speeds of sound, or None for the acquisition's one speed.
    per_sensor
        Return each sensor's ``1 - rho^2`` (float64 (N,)) instead of their mean.
    medium
        The medium of the records (``"slab"`` or ``"2d"``, line sources): the held-out
        predictions are made in it, so 2-D records are compared as they are.
    """
    y = np.asarray(sinogram, dtype=np.float32)
    pos = sensors.positions
    if len(pos) < 4:
        raise InputError(f"the held-out misfit needs at least 4 sensors, got {len(pos)}")
    rho2 = np.empty(len(pos))
    for held in _interleaved_halves(pos):
        keep = np.setdiff1d(np.arange(len(pos)), held)
        if medium == "2d":
            op = forward_operator(grid, SensorArray(pos[keep]), acquisition, None,
                                  speed_map=speed_map, medium=medium)
            img = op.adjoint(np.ascontiguousarray(
                np.gradient(np.gradient(y[keep], axis=1), axis=1), dtype=np.float32))
        else:
            img = backproject(y[keep], grid, SensorArray(pos[keep]), acquisition, "ubp",
                              speed_map=speed_map, medium=medium)
        pred = simulate(img, grid, SensorArray(pos[held]), acquisition,
                        speed_map=speed_map, medium=medium).astype(np.float64)
        d = y[held].astype(np.float64)
        num = np.sum(pred * d, axis=1)
        den = np.sqrt(np.sum(pred * pred, axis=1) * np.sum(d * d, axis=1))
        rho2[held] = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0) ** 2
    return 1.0 - rho2 if per_sensor else float(np.mean(1.0 - rho2))


def _check_interval(value: Any, what: str, lo: float, hi: float, unit: str
                    ) -> tuple[float, float]:
    try:
        a, b = value
    except (TypeError, ValueError):
        raise InputError(f"{what} must be two numbers (min, max) in {unit}, got "
                         f"{value!r}") from None
    a = check_range(a, what, lo, hi, unit=unit)
    b = check_range(b, what, lo, hi, unit=unit)
    if not a < b:
        raise InputError(f"{what} must have min < max, got {value!r}")
    return a, b


def _sensor_statistics(drop: np.ndarray) -> dict[str, Any]:
    """Per sensor, whether the region lowers the held-out misfit of one speed (``drop``:
    one speed's misfit minus the region's, per sensor): the fraction of sensors it lowers
    (``sensors_improved``) and the one-sided Wilcoxon signed-rank p-value of the
    decreases (``wilcoxon_p``)."""
    from scipy.stats import wilcoxon  # lazy: scipy.stats is slow to import

    p = float(wilcoxon(drop, alternative="greater").pvalue) if np.any(drop != 0) else 1.0
    return {"sensors_improved": float(np.mean(drop > 0)), "wilcoxon_p": p}


#: The held-out criterion reports a region when the per-sensor decreases of the held-out
#: misfit (one speed minus the region) pass a one-sided Wilcoxon signed-rank test at this
#: level. Chosen on tuning scans only (``docs/results/media.rst``, "When a region is
#: reported"): p = 1.7e-6 (k-Wave, disc of 1560 m/s, r 7 mm) and below 1e-15 (oatomo's
#: model, 1560 m/s, r 9 mm) with a disc; 0.08-0.16 on three water scans (k-Wave and
#: oatomo's). The test does not depend on the misfit's floor, which the model's error
#: raises on data from another simulator (there the relative gain of the right region was
#: 0.8-1.0 %, under the 3 % of the first rule).
REGION_MAX_P = 0.01
#: Improvement of the criterion over one speed (relative) below which the sharpness
#: criterion reports no region (the held-out criterion uses :data:`REGION_MAX_P`).
REGION_MIN_GAIN = 0.03


def autofocus_two_speeds(
    sinogram: np.ndarray,
    grid: Grid,
    sensors: SensorArray,
    acquisition: Acquisition,
    *,
    c0: float | None = None,
    c1_range: tuple[float, float] = (1400.0, 1700.0),
    radius_range: tuple[float, float] | None = None,
    centre: tuple[float, float] = (0.0, 0.0),
    fit_centre: bool = False,
    fit_c0: bool = False,
    steps: tuple[int, int] = (13, 9),
    band: tuple[float | None, float | None] | None = None,
    coarse_frequency: float | None = None,
    criterion: str = "heldout",
    max_evaluations: int = 200,
    centre_steps: int = 5,
    centre_span: float = 0.3,
    medium: str = DEFAULT_MEDIUM,
) -> dict[str, Any]:
    """Estimate an object region's speed of sound and radius (and centre) from a scan.

    The coupling medium's speed ``c0`` is fixed (the water's speed is known from its
    temperature; or estimate it first with :func:`autofocus` on a scan of water alone).
    The region is a disc. Search, coarse to fine:

    1. a ``steps[0] x steps[1]`` grid over ``c1_range`` x ``radius_range`` on data
       low-passed at ``coarse_frequency`` and images of half the pixels per side; with
       ``fit_centre``, then for each radius, at its best c1, a ``centre_steps x
       centre_steps`` grid of centres around ``centre``, and the (c1, radius) grid again
       at the best centre;
    2. Nelder-Mead (:func:`scipy.optimize.minimize`) from the best grid point on data
       low-passed at twice that frequency, then on the full band, over (c1, radius) and,
       with ``fit_centre``, the centre too.

    Parameters
    ----------
    sinogram
        (N, T) signals, or (..., N, T): frames are summed (they share the medium).
    grid
        Image grid of the trial images, holding the region (pitch near that of a final
        reconstruction).
    sensors, acquisition
        Sensor positions and sampling; the acquisition's speed is ``c0`` unless given.
    c0
        The coupling medium's speed (m/s); None: the acquisition's.
    c1_range
        Object speeds searched (m/s).
    radius_range
        Radii searched (m); None: 10 % to 125 % of half the grid's field of view.
    centre
        The region's centre (m), or the start of its search with ``fit_centre``.
    fit_centre
        Also estimate the centre (in the Nelder-Mead stages).
    fit_c0
        Also estimate the coupling medium's speed (in the Nelder-Mead stages, from ``c0``):
        the sensors' positions fix the scale, so a file's ``c0`` that is off is seen in
        the data.
    steps
        Points of the coarse grid along c1 and along the radius (each >= 3).
    band
        Optional band-pass (Hz) applied to the signals first.
    coarse_frequency
        Low-pass (Hz) of the coarse grid; None: ``c0 / (8 dx)`` (a wavelength of 8
        pixels), which made the coarse surface one smooth valley.
    criterion
        ``"heldout"`` (:func:`heldout_misfit`, minimised) or ``"sharpness"``
        (:func:`sharpness` of the DAS image, maximised; kept for comparison: it is a
        weak criterion here, see the module docstring).
    max_evaluations
        Most criterion evaluations of each Nelder-Mead stage.
    centre_steps, centre_span
        With ``fit_centre``: points per axis of the coarse grid of centres (odd, >= 3; it
        holds ``centre``) and its half-width as a fraction of half the grid's field of
        view.
    medium
        The medium of the records: ``"2d"`` for line-source (2-D) records such as 2-D
        k-Wave's, estimated as they are; converting them to the slab first
        (:func:`oatomo.media.line_to_slab` maps time to distance with one speed) biased
        the object's speed by up to 0.6 % (``docs/results/media.rst``); see
        :func:`heldout_misfit` for the held-out image of 2-D records.

    Returns
    -------
    dict
        ``speed_of_sound`` (c0), ``object_speed_of_sound``, ``object_radius``,
        ``object_centre`` ([x, y]), ``speed_map`` (a :class:`oatomo.SpeedMap`, None when
        no region was found), ``region_found`` (False unless the best region lowers the
        held-out misfit of one speed sensor by sensor beyond chance: a one-sided
        Wilcoxon signed-rank test at :data:`REGION_MAX_P`; with ``"sharpness"``, by at
        least :data:`REGION_MIN_GAIN`, relative: then report one speed),
        ``sensors_improved`` (the fraction of sensors whose held-out misfit the region
        lowers) and ``wilcoxon_p`` (NaN for ``"sharpness"``),
        ``misfit`` and ``misfit_one_speed`` (full band; for
        ``"sharpness"`` the negated sharpness), ``curve``: ``{"object_speed_of_sound":
        [...], "object_radius": [...], "score": [[...]]}`` (the coarse grid, rows along
        c1), ``at_edge`` (a region found within half a coarse step of the ends of the
        ranges, or beyond them: widen the ranges),
        ``n_evaluations``, ``time_s``.

    Notes
    -----
    Cost: the coarse grid (117 points by default; with ``fit_centre`` twice that plus
    ``steps[1] * (centre_steps**2 - 1)``, 459 in all) plus at most twice
    ``max_evaluations``; each evaluation is two UBP images and two forward projections
    (about 0.1 s for 128 x 128 pixels and 64 sensors on 2 cores). Straight rays: see
    :mod:`oatomo.speed_map` for where refraction makes them inadequate.
    """
    from scipy.optimize import minimize  # lazy: scipy.optimize is slow to import

    grid, sensors, acquisition = check_geometry(grid, sensors, acquisition)
    medium = check_medium(medium)
    c0 = acquisition.speed_of_sound if c0 is None else check_range(
        c0, "speed of sound", *SPEED_RANGE, unit="m/s")
    c_lo, c_hi = _check_interval(c1_range, "object speed-of-sound range", *SPEED_RANGE,
                                 "m/s")
    half = grid.fov / 2
    r_lo, r_hi = _check_interval((0.1 * half, 1.25 * half) if radius_range is None
                                 else radius_range, "object radius range", 0.0, 10.0, "m")
    check_option("object_radius", r_lo, "object radius range")
    check_option("object_centre", list(centre), "object centre")
    if criterion not in ("heldout", "sharpness"):
        raise InputError(f"criterion must be 'heldout' or 'sharpness', got {criterion!r}")
    for k, what in ((steps[0], "c1 steps"), (steps[1], "radius steps"),
                    (max_evaluations, "max_evaluations")):
        if isinstance(k, bool) or int(k) != k or not 3 <= k <= 1000:
            raise InputError(f"{what} must be an integer in 3..1000, got {k!r}")
    if isinstance(centre_steps, bool) or int(centre_steps) != centre_steps \
            or not 3 <= centre_steps <= 21 or centre_steps % 2 == 0:
        raise InputError(f"centre_steps must be an odd integer in 3..21, got "
                         f"{centre_steps!r}")
    centre_span = check_range(centre_span, "centre_span", 0.0, 1.0)
    acq = replace(acquisition, speed_of_sound=float(c0))
    y = check_sinogram(sinogram, sensors, acq)
    y = y.reshape((-1,) + y.shape[-2:]).sum(axis=0)
    y = bandpass(y, acq.fs, band)
    f_coarse = c0 / (8 * grid.dx) if coarse_frequency is None else check_range(
        coarse_frequency, "coarse frequency", 1.0, acq.fs / 2, unit="Hz")
    t_start = time.perf_counter()
    n_eval = 0
    coarse_grid = Grid(max(grid.n // 2, 8), grid.fov)

    def make_score(data: np.ndarray, g: Grid) -> Any:
        def score(c1: float, radius: float, cx: float, cy: float, cw: float = c0) -> float:
            nonlocal n_eval
            n_eval += 1
            sm = SpeedMap(float(np.clip(cw, *SPEED_RANGE)), float(np.clip(c1, *SPEED_RANGE)),
                          float(max(radius, 1e-6)), (float(cx), float(cy)))
            if criterion == "sharpness":
                return -sharpness(backproject(data, g, sensors, acq, "das", speed_map=sm,
                                              medium=medium))
            return heldout_misfit(data, g, sensors, acq, sm, medium=medium)
        return score

    lowpass = bandpass(y, acq.fs, (None, f_coarse))
    coarse = make_score(lowpass, coarse_grid)
    cs = np.linspace(c_lo, c_hi, int(steps[0]))
    rs = np.linspace(r_lo, r_hi, int(steps[1]))
    table = np.array([[coarse(c, r, *centre) for r in rs] for c in cs])
    i, j = np.unravel_index(int(np.argmin(table)), table.shape)
    centre = (float(centre[0]), float(centre[1]))
    if fit_centre:
        # the (c1, radius) grid alone lands in a wrong basin when the region is off the
        # starting centre (a larger disc around the start covers it): for each radius,
        # at its best c1, search a grid of centres; then the (c1, radius) grid again at
        # the best centre
        offsets = np.linspace(-centre_span * half, centre_span * half, int(centre_steps))
        trials = [(centre[0] + ox, centre[1] + oy) for oy in offsets for ox in offsets
                  if ox != 0 or oy != 0]
        best_value, best_centre = table[i, j], centre
        for jj in range(len(rs)):
            ii = int(np.argmin(table[:, jj]))
            for xy in trials:
                v = coarse(cs[ii], rs[jj], *xy)
                if v < best_value:
                    best_value, best_centre = v, xy
        if best_centre != centre:
            centre = best_centre
            table = np.array([[coarse(c, r, *centre) for r in rs] for c in cs])
            i, j = np.unravel_index(int(np.argmin(table)), table.shape)
    # x: c1, radius, centre x, y, c0; the steps of the simplex (c0: a third of c1's)
    scale = np.array([cs[1] - cs[0], rs[1] - rs[0], rs[1] - rs[0], rs[1] - rs[0],
                      (cs[1] - cs[0]) / 3])
    x = np.array([cs[i], rs[j], *centre, c0], dtype=np.float64)
    free = np.array([0, 1] + ([2, 3] if fit_centre else []) + ([4] if fit_c0 else []))
    n_free = len(free)
    for freq, step in ((2 * f_coarse, 0.5), (None, 0.25)):
        data = y if freq is None or freq >= acq.fs / 2 else bandpass(y, acq.fs, (None, freq))
        score = make_score(data, grid)

        def objective(u: np.ndarray, x_fixed: np.ndarray = x, score: Any = score) -> float:
            full = x_fixed.copy()
            full[free] = x_fixed[free] + u * scale[free]
            return score(*full)

        u0 = np.zeros(n_free)
        simplex = np.vstack([u0] + [step * np.eye(n_free)[k] for k in range(n_free)])
        res = minimize(objective, u0, method="Nelder-Mead",
                       options={"initial_simplex": simplex, "xatol": 0.01, "fatol": 1e-5,
                                "maxfev": int(max_evaluations)})
        x = x.copy()
        x[free] = x[free] + res.x * scale[free]
    c0 = float(np.clip(x[4], *SPEED_RANGE))
    if criterion == "heldout":  # per sensor, for the test; the means are the misfits
        centre_xy = (float(x[2]), float(x[3]))
        r_best = float(max(x[1], 1e-6))
        each = [heldout_misfit(y, grid, sensors, acq, SpeedMap(c0, c, r_best, centre_xy),
                               per_sensor=True, medium=medium)
                for c in (float(np.clip(x[0], *SPEED_RANGE)), c0)]
        n_eval += 2
        best, one = (float(np.mean(e)) for e in each)
        stats = _sensor_statistics(each[1] - each[0])
    else:
        final = make_score(y, grid)
        best = final(*x[:4], c0)
        one = final(c0, x[1], *x[2:4], c0)
        stats = {"sensors_improved": math.nan, "wilcoxon_p": math.nan}
    gain = (one - best) / abs(one) if one != 0 else 0.0
    found = bool(x[1] > 0 and (gain > 0 and stats["wilcoxon_p"] < REGION_MAX_P
                               if criterion == "heldout" else gain >= REGION_MIN_GAIN))
    c1, radius = float(x[0]), float(x[1])
    at_edge = found and not (c_lo + scale[0] / 2 < c1 < c_hi - scale[0] / 2
                             and r_lo + scale[1] / 2 < radius < r_hi - scale[1] / 2)
    result = {
        "speed_of_sound": float(c0),
        "object_speed_of_sound": c1,
        "object_radius": radius,
        "object_centre": [float(x[2]), float(x[3])],
        "speed_map": SpeedMap(c0, c1, radius, (float(x[2]), float(x[3]))) if found else None,
        "region_found": found,
        "criterion": criterion,
        "misfit": float(best),
        "misfit_one_speed": float(one),
        **stats,
        "curve": {"object_speed_of_sound": cs.tolist(), "object_radius": rs.tolist(),
                  "score": table.tolist()},
        "at_edge": bool(at_edge),
        "n_evaluations": n_eval,
        "time_s": time.perf_counter() - t_start,
    }
    if at_edge:
        logger.warning("autofocus: the region found is at the end of the searched ranges")
    logger.info("autofocus: c0 = %.1f, c1 = %.2f m/s, radius %.3f mm, region %s, %d "
                "evaluations, %.1f s", c0, c1, radius * 1e3, "found" if found else "not found",
                n_eval, result["time_s"])
    return result

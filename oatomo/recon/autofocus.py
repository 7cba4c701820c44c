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
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Any

import numpy as np

from oatomo.errors import InputError
from oatomo.forward import bandpass, check_sinogram
from oatomo.geometry import Acquisition, Grid, SensorArray, check_geometry
from oatomo.recon.backprojection import backproject

logger = logging.getLogger(__name__)

__all__ = ["autofocus", "sharpness"]


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

"""A truth-free check of a refined image against the data it was refined from.

The refiner is a learned prior: on a scan unlike its training scans it can draw structures
the data do not hold. :func:`check_refined` measures, with oatomo's own forward operator
``A`` (:func:`oatomo.recon.operators.forward_operator`), how much of the recorded signal a
refined image explains, against the physics image it would replace and against the noise
level estimated from the record itself (:func:`noise_level`); :data:`GUARD_RULE` turns the
numbers into passed or failed, with the reason.

The numbers, per frame (``y`` the record, in the band the image was made in; ``M`` its
number of samples; ``sigma`` its noise level):

* ``noise_energy = M sigma^2``; ``snr = ||y||^2 / noise_energy``;
* for an image ``x``: the scale fit ``a = max(<A x, y>, 0) / ||A x||^2`` and its residual
  ``r = ||y - a A x||`` (the scale is fitted because the refined image's gain is not known
  exactly, see :attr:`oatomo.refine.Refiner.gain`);
* ``explained(x) = 1 - max(r^2 - noise_energy, 0) / (||y||^2 - noise_energy)``, clipped
  to [0, 1]: the fraction of the signal energy above the noise that ``x`` accounts for
  (1: all of it, down to the noise; 0: none, e.g. an image whose best scale is 0).

The rule (:data:`GUARD_RULE`, chosen on a tuning set, docs/results/refinement.rst): the
refined image passes when the record holds signal above the noise
(``snr >= min_snr``) and the refined image explains more than 0 and at least
``min_ratio`` times the signal the physics image explains. The ratio is far below 1: the
refiner trades data fit for a cleaner image (on the tuning scans, where it gains 1-7 dB of
PSNR over UBP, it often explains less than half of what UBP explains), so the rule
catches images that lost the data (the inverted or blank answers to scans unlike its
training scans), not images that merely fit the data less closely. ``min_ratio`` is the
strictest value that costs at most 0.1 dB of mean PSNR on the tuning set.

A model-based method image (``mb-tv``) fits the data by construction and explains nearly
all of the signal; its rule (:data:`GUARD_RULE_MODEL_BASED`, :func:`guard_rule`) asks the
refined image for a much larger share of what it explains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from oatomo.forward import bandpass
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.recon.operators import forward_operator
from oatomo.recon.registry import METHODS

__all__ = ["noise_level", "GuardResult", "GuardRule", "GUARD_RULE", "GUARD_RULE_MODEL_BASED",
           "guard_rule", "check_refined", "discrepancy"]

#: MAD of a normal distribution over its standard deviation.
_MAD_TO_STD = 1.482602218505602
#: Fewer signal-free samples than this: the noise is estimated from sample differences.
_MIN_QUIET = 256


def _arrival_windows(sensors: SensorArray, acquisition: Acquisition, grid: Grid,
                     margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Per sensor, the first and last sample time (s) at which a source in the field of
    view can be heard, widened by ``margin`` (s) on both sides."""
    pos = np.asarray(sensors.positions, np.float64)[:, :2]
    half = grid.fov / 2
    # nearest point of the square field of view, and its farthest corner
    near = np.clip(pos, -half, half)
    d_min = np.hypot(*(pos - near).T)
    d_max = np.hypot(np.abs(pos[:, 0]) + half, np.abs(pos[:, 1]) + half)
    c = acquisition.speed_of_sound
    return d_min / c - margin, d_max / c + margin


def noise_level(sinogram: np.ndarray, sensors: SensorArray, acquisition: Acquisition,
                grid: Grid) -> tuple[float, str]:
    """The noise standard deviation of a record (N, T), estimated from the record alone.

    The samples no source inside the field of view can reach (before the first and after
    the last arrival from the field-of-view square at each sensor, with a margin of
    0.5 mm of travel plus 8 samples for the pulse's length) hold noise only: the estimate
    is their median absolute deviation about the median, times 1.4826 (the normal
    distribution's ratio). When fewer than 256 such samples exist (a sampling window cut
    to the field of view), it is the same robust estimate from the differences of
    successive samples divided by sqrt(2), which removes slowly varying signal
    (exact for white noise; an overestimate where a steep signal fills most samples).

    Returns
    -------
    tuple
        ``(sigma, how)``: the estimate (in the record's units) and ``"quiet samples"`` or
        ``"sample differences"``.
    """
    y = np.asarray(sinogram, np.float64)
    t = acquisition.t0 + np.arange(acquisition.n_samples) / acquisition.fs
    margin = 0.5e-3 / acquisition.speed_of_sound + 8 / acquisition.fs
    lo, hi = _arrival_windows(sensors, acquisition, grid, margin)
    quiet = (t[None, :] < lo[:, None]) | (t[None, :] > hi[:, None])
    if int(quiet.sum()) >= _MIN_QUIET:
        v = y[quiet]
        how = "quiet samples"
    else:
        v = np.diff(y, axis=-1).ravel() / math.sqrt(2)
        how = "sample differences"
    return float(_MAD_TO_STD * np.median(np.abs(v - np.median(v)))), how


def discrepancy(model_data: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The scale fit of ``model_data`` (``A x``) to ``y``: ``(scale, residual norm)``,
    the scale ``max(<A x, y>, 0) / ||A x||^2`` (0 for ``A x = 0``)."""
    ax = np.asarray(model_data, np.float64).ravel()
    yy = np.asarray(y, np.float64).ravel()
    den = float(ax @ ax)
    a = max(float(ax @ yy), 0.0) / den if den > 0 else 0.0
    return a, float(np.linalg.norm(yy - a * ax))


@dataclass(frozen=True)
class GuardRule:
    """The pass rule of :func:`check_refined` (see the module docstring)."""

    #: The least ``||y||^2 / (M sigma^2)`` at which the record counts as holding signal.
    min_snr: float
    #: The least ratio of the signal the refined image explains to the physics image's.
    min_ratio: float


#: The rule of the pipeline's refinement step (tuned: docs/results/refinement.rst).
GUARD_RULE = GuardRule(min_snr=1.5, min_ratio=0.05)
#: The rule when the method's image is model-based (``mb-tv``, ``mb-tikhonov``): such an
#: image fits the data by construction, so a refined image that explains less than nearly
#: all of what it explains has drawn something the data do not hold. 0.975: the strictest
#: of 0.75, 0.9, 0.95, 0.96, 0.97, 0.975, 0.98 and 0.99 that costs at most 0.1 dB of mean
#: PSNR on the shipped TV refiner's tuning set (docs/results/refinement.rst).
GUARD_RULE_MODEL_BASED = GuardRule(min_snr=1.5, min_ratio=0.975)


def guard_rule(method: str | None) -> GuardRule:
    """The guard's rule for a method's image: :data:`GUARD_RULE_MODEL_BASED` for the
    iterative methods of :data:`oatomo.recon.registry.METHODS`, else :data:`GUARD_RULE`."""
    spec = METHODS.get(method or "")
    return GUARD_RULE_MODEL_BASED if spec is not None and spec.iterative else GUARD_RULE


@dataclass(frozen=True)
class GuardResult:
    """The guard's verdict on one frame, with its numbers (see the module docstring)."""

    passed: bool
    why: str
    numbers: dict[str, float | str]

    def to_dict(self) -> dict[str, Any]:
        """``passed``, ``why`` and the numbers, as a plain dict (the provenance's form)."""
        return {"passed": self.passed, "why": self.why, **self.numbers}


def check_refined(refined: np.ndarray, physics: np.ndarray, sinogram: np.ndarray,
                  grid: Grid, sensors: SensorArray, acquisition: Acquisition, *,
                  band: tuple[float | None, float | None] | None = None,
                  response: Any = None, element_width: float | None = None,
                  rule: GuardRule = GUARD_RULE) -> GuardResult:
    """Check one frame's refined image against its record (N, T) and the physics image.

    Parameters
    ----------
    refined, physics
        (n, n) images on ``grid``: the refined one and the one it would replace.
    sinogram
        The record the images were made from (before ``band``).
    grid, sensors, acquisition
        The geometry the images were made with.
    band
        The band the images were made in: applied to the record and to ``A x``.
    response, element_width
        A detector response and a flat-element width to make part of ``A`` (the record's
        own, when it was not removed).
    rule
        The pass rule.

    Returns
    -------
    GuardResult
        Passed or failed, why, and the numbers: ``snr``, ``noise_std`` and how it was
        estimated, the relative residuals ``residual_refined`` and ``residual_physics``
        (``r / ||y||``), ``explained_refined``, ``explained_physics`` and the ``bound``
        on the first (``min_ratio`` times the second).
    """
    op = forward_operator(grid, sensors, acquisition, None, response, element_width)
    fs = acquisition.fs
    y = bandpass(np.asarray(sinogram, np.float32), fs, band).astype(np.float64)
    sigma, how = noise_level(y, sensors, acquisition, grid)
    energy = float(np.sum(y * y))
    noise_energy = sigma * sigma * y.size
    signal = max(energy - noise_energy, 0.0)
    snr = min(energy / noise_energy, 1e12) if noise_energy > 0 else 1e12
    numbers: dict[str, float | str] = {"noise_std": sigma, "noise_from": how, "snr": snr}
    explained = {}
    for name, img in (("refined", refined), ("physics", physics)):
        ax = bandpass(op.forward(np.asarray(img, np.float32)), fs, band)
        _, r = discrepancy(ax, y)
        numbers[f"residual_{name}"] = r / math.sqrt(energy) if energy > 0 else 0.0
        explained[name] = (1.0 - min(max(r * r - noise_energy, 0.0) / signal, 1.0)
                           if signal > 0 else 0.0)
        numbers[f"explained_{name}"] = explained[name]
    bound = rule.min_ratio * explained["physics"]
    numbers["bound"] = bound
    if not snr >= rule.min_snr:
        return GuardResult(False, f"the record holds no signal above its noise (energy "
                           f"{snr:.2f} x the noise's, below {rule.min_snr:g}): nothing "
                           f"to check the refined image against", numbers)
    told = (f"the refined image explains {explained['refined']:.0%} of the signal, the "
            f"physics image {explained['physics']:.0%} (at least {bound:.0%} needed)")
    if not (explained["refined"] >= bound and explained["refined"] > 0):
        return GuardResult(False, f"{told}: it disagrees with the data", numbers)
    return GuardResult(True, told, numbers)

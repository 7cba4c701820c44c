"""The prior of self-calibration: a Gaussian ``N(mean, prior_std^2)`` per coordinate of
each sensor's position.

Its mean is the nominal array moved by the setup's fixed rigid motion; its standard
deviation is the caller's, the setup's (:func:`prior_from_setup`), a default fraction of
the array radius, or estimated from the scan by a scout round (:func:`scout_prior`).
:func:`position_prior` chooses among them.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from oatomo._documents import parse_toml
from oatomo._limits import MAX_PERTURBATION
from oatomo.calibration.gauge import array_radius
from oatomo.calibration.levels import BOX_STD
from oatomo.calibration.search import scout
from oatomo.errors import InputError
from oatomo.geometry import Acquisition, Grid

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_PRIOR_REL", "SCOUT_REL", "SCOUT_RANGE", "prior_from_setup",
           "scout_prior", "position_prior"]

#: Default per-coordinate prior standard deviation of the position errors, as a fraction
#: of the array's mean distance from its centroid (when neither the caller nor the
#: scan's setup says).
DEFAULT_PRIOR_REL = 0.01

#: Width of the scout search that estimates the prior from the data (``prior_std="data"``):
#: +-:data:`~oatomo.calibration.levels.BOX_STD` times this fraction of the radius.
SCOUT_REL = 0.03

#: Range of a prior estimated from the data, as fractions of the array's radius.
SCOUT_RANGE = (0.0025, 0.03)


def prior_from_setup(setup_toml: str | None, radius: float
                     ) -> tuple[float | None, float, tuple[float, float]]:
    """Per-coordinate position std, fixed rotation (rad) and offset (m) of a setup.

    The rotation and offset are the prior mean of the array's rigid motion (the part the
    data cannot see); the random per-scan parts (``rotation_std``, ``offset_std``) have
    zero mean and do not enter.

    Parameters
    ----------
    setup_toml
        The setup (TOML text) with a ``[perturbation]`` table (``radial_std``,
        ``angular_std`` (rad), ``jitter_std``, ``rotation``, ``offset``); None or empty:
        no setup.
    radius
        The array's radius (m), converting the angular std into a length.

    Returns
    -------
    std : float or None
        Per-coordinate std (m): ``sqrt((radial^2 + (angular radius)^2) / 2 + jitter^2)``;
        None without a setup, with an unreadable one or with no position errors.
    rotation : float
        Fixed rotation of the array (rad), 0 without a setup.
    offset : tuple of float
        Fixed offset of the array (m), ``(0, 0)`` without a setup.
    """
    if not setup_toml:
        return None, 0.0, (0.0, 0.0)
    try:
        pert = parse_toml(setup_toml, "setup stored in the scan").get("perturbation", {})
        radial = float(pert.get("radial_std", 0.0))
        angular = float(pert.get("angular_std", 0.0)) * radius
        jitter = float(pert.get("jitter_std", 0.0))
        rotation = float(pert.get("rotation", 0.0))
        off = [float(v) for v in pert.get("offset", (0.0, 0.0))]
    except (InputError, AttributeError, TypeError, ValueError, OverflowError) as exc:
        logger.warning("the setup stored in the scan is not used as the position prior "
                       "(its [perturbation] table cannot be read: %s)",
                       " ".join(str(exc).split())[:120])
        return None, 0.0, (0.0, 0.0)
    values = [radial, angular, jitter, *off]
    if len(off) != 2 or not all(math.isfinite(v) and abs(v) <= MAX_PERTURBATION
                                for v in values) or not math.isfinite(rotation):
        logger.warning("the setup stored in the scan is not used as the position prior: "
                       "its [perturbation] values must be finite, errors at most %g m "
                       "(radial_std %g, angular_std x radius %g, jitter_std %g, offset %s)",
                       MAX_PERTURBATION, radial, angular, jitter, off)
        return None, 0.0, (0.0, 0.0)
    std = math.sqrt(0.5 * (radial ** 2 + angular ** 2) + jitter ** 2)
    return (std if std > 0 else None), rotation, (off[0], off[1])


def scout_prior(y: np.ndarray, acq: Acquisition, grid: Grid, nominal: np.ndarray,
                radius: float, n_levels: int, n_folds: int, n_iter: int,
                thickness: float | None) -> float:
    """The per-coordinate prior std, estimated from the scan: one round of the coarsest
    level, along the lines of sight only, over a wide box (:data:`SCOUT_REL`); the rms of
    the estimated shifts about their mean (the mean is the scale gauge) less the fits' own
    posterior variance, clipped to :data:`SCOUT_RANGE` of the radius."""
    guess = SCOUT_REL * radius
    along, var, _ = scout(y, acq, grid, nominal, guess, BOX_STD * guess, n_levels, n_folds,
                          n_iter, thickness)
    # the spread of the estimates is that of the errors plus that of the estimation
    # (each fit's posterior variance along the line of sight); the mean is the scale gauge
    noise = float(np.mean(var))
    spread = math.sqrt(max(float(np.mean((along - along.mean()) ** 2)) - noise, 0.0))
    return float(np.clip(spread, SCOUT_RANGE[0] * radius, SCOUT_RANGE[1] * radius))


def position_prior(y: np.ndarray, acquisition: Acquisition, grid: Grid, drawn: np.ndarray,
                   prior_std: float | str | None, setup_toml: str | None, n_levels: int,
                   n_folds: int, n_iter: int, thickness: float | None
                   ) -> tuple[np.ndarray, float, str]:
    """The Gaussian prior of the sensor positions.

    Parameters
    ----------
    y, acquisition, grid
        The (N, T) record, its sampling and the image grid (for ``prior_std="data"``).
    drawn
        (N, 2) nominal positions (what the file says, m).
    prior_std
        The caller's per-coordinate std (m), None (the setup's, else
        :data:`DEFAULT_PRIOR_REL` of the radius) or ``"data"`` (:func:`scout_prior`).
    setup_toml
        The scan's setup (TOML text) or None (:func:`prior_from_setup`).
    n_levels, n_folds, n_iter, thickness
        The calibration's schedule, for the scout round of ``prior_std="data"``.

    Returns
    -------
    mean : numpy.ndarray
        (N, 2) prior mean of the true positions: ``drawn`` moved by the setup's fixed
        rigid motion.
    std : float
        Per-coordinate prior std (m).
    source : str
        ``"given"``, ``"setup"``, ``"default"`` or ``"data"``.

    Raises
    ------
    InputError
        ``prior_std`` neither None, ``"data"`` nor a finite length > 0.
    """
    radius = array_radius(drawn)
    setup_std, rotation, offset = prior_from_setup(setup_toml, radius)
    # prior mean of the true positions: the drawing moved by the setup's fixed rigid motion
    cr, sr = math.cos(rotation), math.sin(rotation)
    nominal = drawn @ np.array([[cr, sr], [-sr, cr]]) + np.asarray(offset)
    source = "given"
    if prior_std is not None and prior_std != "data" and (
            isinstance(prior_std, bool) or not isinstance(prior_std, (int, float))
            or not (math.isfinite(prior_std) and prior_std > 0)):
        raise InputError(f"prior_std must be a length > 0 m or 'data', got {prior_std!r}")
    if prior_std is None and setup_std is not None:
        prior_std, source = setup_std, "setup"
    elif prior_std is None:
        prior_std, source = DEFAULT_PRIOR_REL * radius, "default"
    if prior_std == "data":
        prior_std, source = scout_prior(y, acquisition, grid, nominal, radius, n_levels,
                                        n_folds, n_iter, thickness), "data"
        logger.info("calibration: prior %.0f um per coordinate, estimated from the data",
                    prior_std * 1e6)
    return nominal, prior_std, source

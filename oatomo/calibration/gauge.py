"""The gauge of self-calibration: what the data cannot see.

A rigid motion of the whole array and a common scale of positions and speed of sound
leave the data unchanged; calibration fixes them by mapping its estimate onto the prior
mean array with :func:`similarity_transform`, and compares arrays up to a rigid motion
(:func:`rigid_error`). The gauge's own uncertainty is
:attr:`oatomo.calibration.Calibration.frame_std`.
"""

from __future__ import annotations

import math

import numpy as np

from oatomo.geometry import SensorArray

__all__ = ["array_radius", "similarity_transform", "to_gauge", "rigid_error"]


def array_radius(positions: np.ndarray) -> float:
    """Mean distance (m) of the (N, 2) ``positions`` from their centroid."""
    return float(np.mean(np.hypot(*(positions - positions.mean(axis=0)).T)))


def similarity_transform(src: np.ndarray, dst: np.ndarray, *, scale: bool = True
                         ) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``s, R, t`` with ``s R src_i + t ~ dst_i`` (2-D points).

    Parameters
    ----------
    src, dst
        (N, 2) point sets.
    scale
        Fit a scale; False fixes ``s = 1`` (a rigid motion).

    Returns
    -------
    s : float
    R : numpy.ndarray
        (2, 2) rotation (determinant +1).
    t : numpy.ndarray
        (2,) translation.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    # rotation angle maximising sum b . R a
    num = float(np.sum(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]))
    den = float(np.sum(a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]))
    theta = math.atan2(num, den)
    R = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    s = 1.0
    if scale:
        var = float(np.sum(a * a))
        s = (math.hypot(num, den) / var) if var > 0 else 1.0
    t = mu_d - s * (R @ mu_s)
    return s, R, t


def to_gauge(estimate: np.ndarray, previous: np.ndarray, prior_mean: np.ndarray,
             cov: np.ndarray, *, scale: bool) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Fix the gauge of a calibration step: the (N, 2) ``estimate`` mapped onto the
    ``prior_mean`` array by the least-squares similarity transform (rigid when ``scale``
    is False).

    Returns
    -------
    positions : numpy.ndarray
        The mapped estimate.
    cov : numpy.ndarray
        The (N, 2, 2) covariances ``cov`` rotated and scaled alike.
    s : float
        The transform's scale (1 when ``scale`` is False): the factor the speed of sound
        takes when the scale is moved into it.
    step : float
        Rms distance (m) of the mapped estimate from ``previous``.
    """
    s, R, t = similarity_transform(estimate, prior_mean, scale=scale)
    aligned = estimate @ R.T * s + t
    step = float(np.sqrt(np.mean(np.sum((aligned - previous) ** 2, axis=1))))
    return aligned, s * s * (R @ cov @ R.T), s, step


def rigid_error(estimate: np.ndarray | SensorArray, truth: np.ndarray | SensorArray
                ) -> np.ndarray:
    """Per-sensor distance (m) between ``estimate`` and ``truth`` after the best rigid
    alignment of ``estimate`` onto ``truth`` (what the data can see)."""
    est = estimate.positions if isinstance(estimate, SensorArray) else np.asarray(estimate)
    tru = truth.positions if isinstance(truth, SensorArray) else np.asarray(truth)
    s, R, t = similarity_transform(est, tru, scale=False)
    return np.hypot(*(est @ R.T * s + t - tru).T)

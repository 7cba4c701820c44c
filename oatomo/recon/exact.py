"""Exact inversion for full circular arrays: filtered backprojection of circular means.

For point sensors on a circle of radius ``R`` around the image, the forward model of
:func:`oatomo.simulate` records (the forward model of ``docs/method.rst``)::

    p(r_s, t) = h / (4 pi c^2) * d/dt [ (1/t) * integral_{|r - r_s| = c t} p0(r) dl ]
              = h / (2 c) * d/dt M(r_s, c t),

with ``M(z, rho) = 1/(2 pi rho) * integral_{|r - z| = rho} p0 dl`` the circular mean, so
``M(z, rho) = (2 c / h) * integral_0^{rho/c} p dt`` and ``dM/drho (z, c t) = (2 / h) p(z, t)``.
The circular means on a circle determine ``p0`` inside it, and Finch, Haltmeier & Rakesh
(2007) give an exact inversion formula; :func:`fbp_circular` discretises it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft

from oatomo.errors import InputError
from oatomo.forward import check_sinogram
from oatomo.geometry import Acquisition, Grid, SensorArray, check_geometry
from oatomo.recon.summation import delay_and_sum

logger = logging.getLogger(__name__)

__all__ = ["fbp_circular", "fbp_validated", "circular_means", "check_full_ring"]

#: Tolerances of :func:`check_full_ring` (relative to the ring radius / the even gap).
RING_RADIUS_TOL = 0.05
RING_CENTRE_TOL = 0.05
RING_GAP_TOL = 2.0
MIN_RING_SENSORS = 8


def check_full_ring(sensors: SensorArray) -> tuple[float, np.ndarray]:
    """Check that the sensors form a (nearly) full circle around the origin.

    Parameters
    ----------
    sensors
        The sensor array.

    Returns
    -------
    radius : float
        Mean distance of the sensors from the origin (m).
    weights : numpy.ndarray
        (N,) angular weight of each sensor, ``dtheta_s / (2 pi)`` (half the angular gap
        to each neighbour), summing to 1.

    Raises
    ------
    InputError
        If there are fewer than 8 sensors, the radii differ by more than 5 %, the
        centroid is more than 5 % of the radius from the origin, or the largest angular
        gap exceeds twice the even spacing ``2 pi / N``.
    """
    pos = sensors.positions
    n = len(pos)
    need = "fbp needs a full circular array centred at the origin"
    if n < MIN_RING_SENSORS:
        raise InputError(f"{need}; got only {n} sensors (at least {MIN_RING_SENSORS})")
    r = np.hypot(pos[:, 0], pos[:, 1])
    radius = float(r.mean())
    if radius <= 0 or float(np.ptp(r)) > 2 * RING_RADIUS_TOL * radius:
        raise InputError(f"{need}; sensor radii range over {r.min() * 1e3:.3g}.."
                         f"{r.max() * 1e3:.3g} mm")
    centroid = float(np.hypot(*pos.mean(axis=0)))
    if centroid > RING_CENTRE_TOL * radius:
        raise InputError(f"{need}; the sensors' centroid is {centroid * 1e3:.3g} mm from "
                         f"the origin")
    ang = np.sort(np.mod(np.arctan2(pos[:, 1], pos[:, 0]), 2 * np.pi))
    order = np.argsort(np.mod(np.arctan2(pos[:, 1], pos[:, 0]), 2 * np.pi), kind="stable")
    gaps = np.diff(np.concatenate([ang, ang[:1] + 2 * np.pi]))  # gap after each sensor
    if float(gaps.max()) > RING_GAP_TOL * 2 * np.pi / n:
        raise InputError(f"{need}; the largest angular gap between sensors is "
                         f"{math.degrees(float(gaps.max())):.3g} deg, the even spacing "
                         f"{360 / n:.3g} deg")
    w_sorted = 0.5 * (gaps + np.roll(gaps, 1)) / (2 * np.pi)
    weights = np.empty(n)
    weights[order] = w_sorted
    return radius, weights


def circular_means(sinogram: np.ndarray, acquisition: Acquisition, *,
                   thickness: float) -> tuple[np.ndarray, np.ndarray]:
    """Circular means ``M(r_s, rho)`` recovered from a sinogram.

    Each sample is taken as the average of ``p`` over its sampling interval (the
    convention of :func:`oatomo.simulate`; for point samples the error is of the order of
    the sampling interval), and ``p`` is assumed to vanish before the first sample.

    Parameters
    ----------
    sinogram
        (..., N, T) pressure signals (Pa).
    acquisition
        Sampling and speed of sound.
    thickness
        Slab thickness ``h`` (m).

    Returns
    -------
    means : numpy.ndarray
        (..., N, T) float64: ``M`` at the interval ends ``rho_k = c (t0 + (k + 1/2) dt)``,
        ``M = (2 c / h) * dt * cumsum(p)``.
    rho : numpy.ndarray
        (T,) the radii ``rho_k`` (m).
    """
    c, dt = acquisition.speed_of_sound, acquisition.dt
    y = np.asarray(sinogram, dtype=np.float64)
    rho = c * (acquisition.t0 + (np.arange(y.shape[-1]) + 0.5) * dt)
    return (2 * c / thickness) * dt * np.cumsum(y, axis=-1), rho


def _correlate(a: np.ndarray, kern: np.ndarray) -> np.ndarray:
    """``out[..., l] = sum_i a[..., i] * kern[i + l]`` for ``l = 0 .. len(kern) - L``."""
    n_a = a.shape[-1]
    n_out = kern.shape[-1] - n_a + 1
    size = next_fast_len(kern.shape[-1] + n_a - 1, real=True)
    prod = rfft(a[..., ::-1], size, axis=-1) * rfft(kern, size)
    return irfft(prod, size, axis=-1)[..., n_a - 1:n_a - 1 + n_out]


def _log_filter(dmdr: np.ndarray, acquisition: Acquisition, upsample: int,
                m_lo: int, m_hi: int) -> np.ndarray:
    """The inner integral ``K(d) = int_0^inf d/dr(r dM/dr) log|r^2 - d^2| dr`` of FHR (2007).

    ``dmdr`` (B, T) is ``dM/drho``, constant on each sampling interval
    ``[rho_e, rho_{e+1}]`` with ``rho_e = c (t0 + (e - 1/2) dt)``. Integrating by parts and
    then exactly over each interval::

        K(d) = -2 drho * sum_k m_k + d * sum_e J_e (log|rho_e - d| - log(rho_e + d)),

    with ``J_e = m_e - m_{e-1}`` the jumps of ``dM/drho`` at the interval ends (the
    principal value at ``r = d`` is taken exactly). ``K`` is returned at
    ``d_m = c (t0 + m dt / upsample)`` for ``m = m_lo .. m_hi`` (B, m_hi - m_lo + 1). Both
    sums are correlations along the sample axis (FFT). ``upsample`` must be odd so that
    no ``d_m`` falls on an interval end.
    """
    c, dt, t0 = acquisition.speed_of_sound, acquisition.dt, acquisition.t0
    u = upsample
    b, n_t = dmdr.shape
    jumps = np.zeros((b, n_t + 1))
    jumps[:, :-1] = dmdr
    jumps[:, 1:] -= dmdr
    n_up = u * n_t + 1  # fine index i = u * e, e = 0 .. T
    jup = np.zeros((b, n_up))
    jup[:, ::u] = jumps
    # (rho_e - d_m) / delta = i - m - u/2 with delta = c dt / u; sum_e J_e = 0, so the
    # constant log(delta) drops out of both sums.
    s1 = np.arange(n_up + m_hi - m_lo, dtype=np.float64) - m_hi
    k1 = np.log(np.abs(s1 - 0.5 * u))
    corr1 = _correlate(jup, k1)[:, ::-1]  # lag m_hi - m  ->  m = m_lo .. m_hi
    # (rho_e + d_m) / delta = i + m + u (2 t0 / dt - 1/2) > 0 wherever J_e != 0
    s2 = np.arange(n_up + m_hi - m_lo, dtype=np.float64) + m_lo + u * (2 * t0 / dt - 0.5)
    k2 = np.log(np.where(s2 > 0, s2, 1.0))
    corr2 = _correlate(jup, k2)  # lag m - m_lo
    d = c * (t0 + np.arange(m_lo, m_hi + 1) * dt / u)
    return -2 * c * dt * dmdr.sum(axis=1)[:, None] + d[None, :] * (corr1 - corr2)


def fbp_circular(
    sinogram: np.ndarray,
    grid: Grid,
    sensors: SensorArray,
    acquisition: Acquisition,
    *,
    thickness: float | None = None,
    upsample: int = 3,
) -> np.ndarray:
    """Exact filtered backprojection for a full circular array (Finch–Haltmeier–Rakesh).

    Parameters
    ----------
    sinogram
        (N, T) signals in Pa, or (..., N, T) for several frames. The recording must last
        until every wave from inside the ring has passed each sensor (``t`` up to about
        ``2 R / c``) and ``p`` must vanish before the first sample.
    grid
        Output grid; pixels outside the ring (``|x| >= R``) are set to 0.
    sensors
        Sensors on a (nearly) full circle centred on the origin (see
        :func:`check_full_ring`); each sensor is used at its own position and weighted by
        its share of the circle.
    acquisition
        Sampling and speed of sound.
    thickness
        Slab thickness ``h`` of the forward model (m); default ``grid.dx``, as in
        :func:`oatomo.simulate`.
    upsample
        Odd factor by which the filtered signals are tabulated more finely than the
        samples before backprojection with linear interpolation (1, 3, 5, ...).

    Returns
    -------
    numpy.ndarray
        float32 (n, n) or (..., n, n): the initial pressure in Pa.

    Notes
    -----
    With the circular means ``M(z, r)`` over circles centred at ``z`` on the ring
    ``|z| = R``, Finch, Haltmeier & Rakesh (2007, Theorem 1.1, second formula) show that
    for ``p0`` supported inside the ring and ``|x| < R``::

        p0(x) = 1/(2 pi R) * integral_{|z|=R} integral_0^{2R}
                    (d/dr r d/dr M)(z, r) * log|r^2 - |x - z|^2| dr dS(z).

    The data give ``dM/dr`` directly: ``dM/dr (z, c t) = (2 / h) p(z, t)``. Taking it
    constant on each sampling interval, the inner integral ``K_z(d)`` is evaluated in
    closed form after one integration by parts (no numerical differentiation; the
    logarithmic singularity at ``r = d`` is integrated exactly), as two FFT correlations
    per sensor on a table of ``d`` ``upsample`` times finer than the sampling. The outer
    integral is a weighted delay-and-sum of the tables (the Numba kernel of
    :func:`oatomo.backproject`), ``p0(x) ~ sum_s w_s K_s(|x - z_s|)`` with
    ``w_s = dtheta_s / (2 pi)``. Cost: O(N T log T) filtering plus one backprojection.

    References
    ----------
    D. Finch, M. Haltmeier, Rakesh, "Inversion of spherical means and the wave equation
    in even dimensions", SIAM J. Appl. Math. 68(2):392-412, 2007.

    Examples
    --------
    >>> from oatomo import Grid, Acquisition, ring_array, simulate, phantoms
    >>> g, ring = Grid(64, 0.0064), ring_array(128, 0.008)
    >>> acq = Acquisition(20e6, 256)
    >>> p0 = phantoms.disk(g, 0.001, (0.001, 0.0))
    >>> img = fbp_circular(simulate(p0, g, ring, acq), g, ring, acq)
    >>> round(float(img[32, 41]), 1)
    1.0
    """
    grid, sensors, acquisition = check_geometry(grid, sensors, acquisition)
    return fbp_validated(check_sinogram(sinogram, sensors, acquisition), grid, sensors, acquisition,
                thickness=thickness, upsample=upsample)


def fbp_validated(y: np.ndarray, grid: Grid, sensors: SensorArray, acquisition: Acquisition,
                  *, thickness: float | None = None, upsample: int = 3) -> np.ndarray:
    """:func:`fbp_circular` on signals the caller has already validated (and filtered).

    ``y`` is the (..., N, T) sinogram as :func:`oatomo.forward.check_sinogram` returns it and
    ``grid``, ``sensors``, ``acquisition`` as :func:`oatomo.geometry.check_geometry` returns
    them (:func:`oatomo.recon.backprojection.backproject` band-passes first); the keywords
    and the result are those of :func:`fbp_circular`.
    """
    u = int(upsample)
    if u != upsample or u < 1 or u % 2 == 0:
        raise InputError(f"upsample must be an odd positive integer, got {upsample!r}")
    h = float(grid.dx if thickness is None else thickness)
    if not (h > 0 and math.isfinite(h)):
        raise InputError(f"slab thickness must be > 0 m, got {thickness}")
    radius, weights = check_full_ring(sensors)
    c, dt, t0 = acquisition.speed_of_sound, acquisition.dt, acquisition.t0
    lead, (n_s, n_t) = y.shape[:-2], y.shape[-2:]
    dmdr = (2.0 / h) * y.reshape((-1, n_t)).astype(np.float64)
    # p must vanish before t = 0: drop samples whose interval starts before the pulse
    n_pre = int(np.sum(t0 + (np.arange(n_t) - 0.5) * dt < 0))
    dmdr[:, :n_pre] = 0.0
    # distances the backprojection needs: sensors to the part of the grid inside the ring
    r_img = min(grid.fov / math.sqrt(2), radius)
    r_s = np.hypot(*sensors.positions.T)
    d_min = max(float(r_s.min()) - r_img, 0.25 * c * dt / u)
    d_max = float(r_s.max()) + r_img
    m_lo = max(math.floor((d_min / c - t0) * u / dt) - 2,
               math.floor(-t0 * u / dt) + 1)  # d_m > 0
    m_hi = math.ceil((d_max / c - t0) * u / dt) + 2
    table = _log_filter(dmdr, acquisition, u, m_lo, m_hi)
    table = table.reshape((-1, n_s, table.shape[-1])) * weights[None, :, None]
    acq_table = replace(acquisition, fs=acquisition.fs * u, n_samples=table.shape[-1],
                        t0=t0 + m_lo * dt / u)
    frames = np.ascontiguousarray(table, dtype=np.float32)
    img = delay_and_sum(frames, grid, sensors, acq_table)
    X, Y = grid.coordinates()
    img[..., np.hypot(X, Y) >= radius] = 0.0
    return np.ascontiguousarray(img.reshape(lead + grid.shape), dtype=np.float32)

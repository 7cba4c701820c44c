"""Forward model: initial pressure image -> sinogram, and its adjoint.

Convention: the imaging plane is a slab of thickness ``h`` in a
3-D medium of constant speed of sound ``c``; a point sensor at ``r_s`` records::

    p(r_s, t) = h / (4 pi c^2) * d/dt [ (1/t) * integral_{|r - r_s| = c t} p0(r) dl ]

The image is expanded in the bilinear basis of the grid and each sample is the average
of ``p`` over its sampling interval (see :mod:`oatomo.kernels`). For a uniform disk this
reproduces the closed form ``integral p dt = h q / (2 pi c) * alpha(c t)`` to well under
1 % at every sensor angle (tested).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import numba
import numpy as np

from oatomo import kernels as K
from oatomo._limits import MAX_POSITION, check_bytes
from oatomo.errors import InputError, warn_units
from oatomo.geometry import Acquisition, Grid, SensorArray, check_geometry
from oatomo.media import (
    DEFAULT_MEDIUM,
    Attenuation,
    attenuate,
    attenuate_adjoint,
    check_medium,
    line_matrix,
)
from oatomo.response import (
    DetectorResponse,
    element_points,
    operator_convolve,
    operator_correlate,
)
from oatomo.speed_map import SpeedMap

logger = logging.getLogger(__name__)

__all__ = ["ForwardOperator", "simulate", "bandpass", "check_sinogram", "edges_adjoint",
           "MIN_BAND_EDGE", "ADJOINT_CHUNKS"]

#: Band-pass upper edges below this (Hz) warn as a likely unit slip ("8" meant 8 MHz).
MIN_BAND_EDGE = 1e3

#: The adjoint sums the sensors' back-projections in this many interleaved chunks, run in
#: parallel and then added in order. The number does not depend on the threads, so ``A^T y``
#: (and every iterative reconstruction built on it) is the same to the bit on any number
#: of threads; it caps the adjoint's parallelism at 16 threads. On 2 threads 16 chunks cost
#: what the 4 (twice the threads) used before did, within 3 % from 128^2 x 32 sensors to
#: 512^2 x 512 sensors.
ADJOINT_CHUNKS = 16


def _check_image(x: np.ndarray, grid: Grid, what: str = "p0") -> np.ndarray:
    x = np.asarray(x)
    if x.shape != grid.shape:
        raise InputError(f"{what} has shape {x.shape}, the grid is {grid.shape}")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{what} contains NaN or Inf")
    return np.ascontiguousarray(x, dtype=np.float32)


def check_sinogram(sinogram: np.ndarray, sensors: SensorArray, acquisition: Acquisition,
                   *, allow_frames: bool = True) -> np.ndarray:
    """Validate a sinogram (..., N, T) against the sensors and acquisition.

    Returns the sinogram as a C-contiguous float32 array (a copy only when needed).
    """
    y = np.asarray(sinogram)
    if y.ndim < 2 or (y.ndim > 2 and not allow_frames):
        raise InputError(f"sinogram must have shape (n_sensors, n_samples), got {y.shape}")
    if 0 in y.shape[:-2]:
        raise InputError(f"the sinogram has no frames (shape {y.shape})")
    if y.shape[-2] != sensors.n_sensors:
        raise InputError(
            f"sinogram has {y.shape[-2]} rows but there are {sensors.n_sensors} sensors")
    if y.shape[-1] != acquisition.n_samples:
        raise InputError(f"sinogram has {y.shape[-1]} samples, the acquisition says "
                         f"{acquisition.n_samples}")
    y = np.ascontiguousarray(y, dtype=np.float32)
    if not np.all(np.isfinite(y)):
        raise InputError("sinogram contains NaN or Inf samples")
    return y


def bandpass(sinogram: np.ndarray, fs: float, band: tuple[float | None, float | None] | None,
             order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth filter along time (last axis).

    Parameters
    ----------
    sinogram
        Signals (..., T).
    fs
        Sampling rate (Hz).
    band
        ``(f_low, f_high)`` in Hz; ``f_low`` 0/None gives a low-pass, ``f_high`` None a
        high-pass; None returns the input unchanged.
    order
        Butterworth order (applied forward and backward, so the effective order doubles).

    Returns
    -------
    numpy.ndarray
        Filtered float32 copy.
    """
    if band is None:
        return sinogram
    from scipy.signal import butter, sosfiltfilt  # lazy: scipy.signal is slow to import

    try:
        f_low, f_high = band
    except (TypeError, ValueError):
        raise InputError(f"band must be (f_low, f_high) in Hz, got {band!r}") from None
    f_low = f_low or 0.0
    nyq = fs / 2
    edges = [f_low] if f_high is None else [f_low, f_high]
    if not all(isinstance(v, (int, float, np.number)) and np.isfinite(v) for v in edges):
        raise InputError(f"band edges must be finite numbers in Hz, got {band!r}")
    # a Butterworth design below about 1e-8 fs is singular; no real band is that narrow
    if f_high is not None and 0 < f_high < 1e-7 * fs:
        raise InputError(f"band upper edge {f_high:g} Hz is below 1e-7 fs ({1e-7 * fs:g} Hz)")
    if 0 < f_low < 1e-7 * fs:
        raise InputError(f"band lower edge {f_low:g} Hz is below 1e-7 fs ({1e-7 * fs:g} Hz); "
                         f"give 0 for none")
    if f_high is not None and not (0 < f_high < nyq):
        raise InputError(f"band upper edge must lie in (0, fs/2 = {nyq:g}) Hz, got {f_high:g}")
    if f_low < 0 or (f_high is not None and f_low >= f_high) or f_low >= nyq:
        raise InputError(f"band lower edge {f_low:g} Hz must be >= 0 and below the upper edge")
    if f_high is not None and f_high < MIN_BAND_EDGE:
        warn_units(f"band upper edge = {f_high:g} Hz looks like a unit slip (it is in hertz: "
                   f"8 MHz is 8e6)")
    if f_low > 0 and f_high is not None:
        sos = butter(order, [f_low, f_high], btype="bandpass", fs=fs, output="sos")
    elif f_low > 0:
        sos = butter(order, f_low, btype="highpass", fs=fs, output="sos")
    elif f_high is not None:
        sos = butter(order, f_high, btype="lowpass", fs=fs, output="sos")
    else:
        return sinogram
    padlen = min(sinogram.shape[-1] - 1, 3 * (2 * len(sos) + 1))
    return sosfiltfilt(sos, sinogram, axis=-1, padlen=padlen).astype(np.float32)


def edges_adjoint(y: np.ndarray, inv_dt: float, edge_gain: np.ndarray) -> np.ndarray:
    """Transpose of the samples' step ``p_k = (F_{k+1} - F_k) / dt`` with ``F_e = gain_e
    G_e``: records ``y`` (N, T) -> edge values (N, T + 1) float32, in float64 arithmetic.
    Shared by the 2-D and the volume forward models."""
    yd = np.zeros((y.shape[0], y.shape[1] + 2), np.float64)
    yd[:, 1:-1] = y
    return ((yd[:, :-1] - yd[:, 1:]) * inv_dt * edge_gain[None, :]).astype(np.float32)


class ForwardOperator:
    """The discretised forward model ``A`` and its exact adjoint ``A^T``.

    Parameters
    ----------
    grid
        Image grid of ``p0``.
    sensors
        Sensor positions (the *true* ones when simulating a scan).
    acquisition
        Sampling of the recorded signals.
    thickness
        Slab thickness ``h`` (m); defaults to ``grid.dx``.

    response
        A :class:`oatomo.response.DetectorResponse`: ``A`` then includes the convolution
        of every signal with it (and ``A^T`` the correlation).
    element_width
        Width (m) of flat elements: each signal is the mean over points across the element
        face (:func:`oatomo.response.element_points`), which gives the directivity of a
        finite element. None: point sensors.
    speed_map
        A :class:`oatomo.speed_map.SpeedMap`: two speeds of sound (a coupling medium and an
        object region), straight two-segment rays. Each pixel is placed at its equivalent
        distance ``c0 tau`` from the sensor instead of its distance; the amplitudes are those
        of the homogeneous model at the same time of flight (refraction ignored). Its
        ``c0`` replaces the acquisition's speed of sound. None: one speed.
    medium
        ``"slab"`` (default): a slab of thickness ``h`` in 3-D, the model above.
        ``"2d"``: the 2-D wave equation (every pixel a line source, as 2-D k-Wave
        computes), the same circular means under the other temporal operator
        (:func:`oatomo.media.slab_to_line`); ``thickness`` then plays no part.
    attenuation
        An :class:`oatomo.media.Attenuation`: ``A`` then includes the power-law loss and
        dispersion over each pixel's distance (:func:`oatomo.media.attenuate`, applied
        after the medium and before the detector response; ``A^T`` its adjoint).

    Notes
    -----
    ``forward`` scatters each pixel into the sample intervals its hat basis function
    reaches (parallel over sensors); ``adjoint`` gathers with the same weights (parallel
    over image rows), so ``<A x, y> = <x, A^T y>`` to float32 rounding.

    Examples
    --------
    >>> from oatomo import Grid, Acquisition, ring_array
    >>> op = ForwardOperator(Grid(64, 0.0064), ring_array(32, 0.02), Acquisition(20e6, 512))
    >>> op.forward(np.ones((64, 64), np.float32)).shape
    (32, 512)
    """

    def __init__(self, grid: Grid, sensors: SensorArray, acquisition: Acquisition, *,
                 thickness: float | None = None, response: Any = None,
                 element_width: float | None = None,
                 speed_map: SpeedMap | None = None, medium: str = DEFAULT_MEDIUM,
                 attenuation: Attenuation | None = None) -> None:
        _, sensors, acquisition = check_geometry(grid, sensors, acquisition)
        if speed_map is not None:
            if not isinstance(speed_map, SpeedMap):
                raise InputError(f"speed_map must be an oatomo SpeedMap, got "
                                 f"{type(speed_map).__name__}")
            acquisition = replace(acquisition, speed_of_sound=speed_map.c0)
        self.speed_map = speed_map
        self.medium = check_medium(medium)
        self._region = (None if speed_map is None
                        else speed_map.kernel_params(self.medium))
        if attenuation is not None and not isinstance(attenuation, Attenuation):
            raise InputError(f"attenuation must be an oatomo.media.Attenuation, got "
                             f"{type(attenuation).__name__}")
        self.attenuation = attenuation
        if not isinstance(grid, Grid):
            raise InputError(f"grid must be an oatomo Grid(n, fov), got {type(grid).__name__}")
        self.grid = grid
        self.sensors = sensors
        self.acquisition = acquisition
        if response is not None and not isinstance(response, DetectorResponse):
            raise InputError(f"response must be a DetectorResponse, got "
                             f"{type(response).__name__}")
        self.response = response
        self.element_width = element_width
        self._m = 1
        points = sensors
        if element_width is not None:
            points, self._m = element_points(sensors, element_width, acquisition)
        self.thickness = float(grid.dx if thickness is None else thickness)
        if not (0 < self.thickness <= MAX_POSITION):
            raise InputError(f"slab thickness must be > 0 m and at most {MAX_POSITION:g} m, "
                             f"got {thickness}")
        check_bytes(20.0 * points.n_sensors * (acquisition.n_samples + 1),
                    "the forward model's sinogram buffers")
        c, dt = acquisition.speed_of_sound, acquisition.dt
        t_edges = acquisition.t0 + (np.arange(acquisition.n_samples + 1) - 0.5) * dt
        with np.errstate(divide="ignore"):
            inv_t = np.where(t_edges > 0, 1.0 / np.where(t_edges > 0, t_edges, 1.0), 0.0)
        # F_e = scale * G_e / t_e with G = sum x dx K; p_k = (F_{k+1} - F_k) / dt
        self._edge_gain = (self.thickness * grid.dx / (4 * math.pi * c * c) * inv_t
                           ).astype(np.float64)
        self._inv_dt = 1.0 / dt
        self._line_gain = 2 * c / self.thickness  # p_2d = (2c/h) P S (oatomo.media)
        rho0, drho = c * (acquisition.t0 - 0.5 * dt), c * dt
        n_edges = acquisition.n_samples + 1
        self._k, n_half, self._P, m_bins = K.radial_plan(grid.dx, drho, n_edges)
        check_bytes(4.0 * K.N_CLASSES * (m_bins * max(1, numba.get_num_threads())
                                         + 4 * n_half),
                    f"the forward model's radial histograms (sampling interval c/fs = "
                    f"{drho / grid.dx:.3g} pixels)")
        self._taps = K.radial_taps(grid.dx, drho, n_edges)
        delta = drho / self._k
        self._r0 = np.float32(rho0 - self._P * delta)
        self._inv_delta = np.float32(1.0 / delta)
        self._xs = grid.x.astype(np.float32)
        self._ys = grid.y.astype(np.float32)
        self._sens = np.ascontiguousarray(points.positions, dtype=np.float32)
        K.check_finite(sensor_positions=self._sens, start_radius=self._r0,
                       inverse_bin_width=self._inv_delta, grid=self._xs,
                       edge_gain=self._edge_gain)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_sensors * n_samples, n * n)``, the shape of ``A`` on flattened vectors."""
        return (self.sensors.n_sensors * self.acquisition.n_samples, self.grid.n ** 2)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply ``A``: image (n, n) in Pa -> sinogram (N, T) float32 in Pa."""
        x = _check_image(x, self.grid, "image")
        g = np.zeros((len(self._sens), self.acquisition.n_samples + 1), np.float32)
        if self._region is None:
            K.forward_edges(x, self._xs, self._ys, self._sens, self._r0, self._inv_delta,
                            self._k, self._P, self._taps, g)
        else:
            K.forward_edges_region(x, self._xs, self._ys, self._sens, self._r0,
                                   self._inv_delta, self._k, self._P, self._taps,
                                   self._region, g)
        f = g.astype(np.float64) * self._edge_gain[None, :]
        if self._m > 1:  # a finite element: the mean over the points of its face
            f = f.reshape(self.sensors.n_sensors, self._m, -1).mean(axis=1)
        if self.medium == "2d":  # p_2d = (2c/h) P S with S = F (line_matrix)
            y = (f @ line_matrix(self.acquisition).T * self._line_gain).astype(np.float32)
        else:
            y = (np.diff(f, axis=1) * self._inv_dt).astype(np.float32)
        if self.attenuation is not None:
            y = attenuate(y, self.acquisition, self.attenuation)
        if self.response is not None:
            y = operator_convolve(y, self.acquisition.fs, self.response)
        return y

    def adjoint(self, y: np.ndarray) -> np.ndarray:
        """Apply ``A^T``: sinogram (N, T) -> image (n, n) float32."""
        y = check_sinogram(y, self.sensors, self.acquisition, allow_frames=False)
        if self.response is not None:
            y = operator_correlate(y, self.acquisition.fs, self.response)
        if self.attenuation is not None:
            y = attenuate_adjoint(y, self.acquisition, self.attenuation)
        if self.medium == "2d":  # transpose of p_2d = (2c/h) P S
            hf = y.astype(np.float64) @ line_matrix(self.acquisition) * self._line_gain
            if self._m > 1:  # transpose of the mean over each element's points
                hf = np.repeat(hf / self._m, self._m, axis=0)
            h = (hf * self._edge_gain[None, :]).astype(np.float32)
        else:
            if self._m > 1:  # transpose of the mean over each element's points
                y = np.repeat(y / np.float32(self._m), self._m, axis=0)
            h = edges_adjoint(y, self._inv_dt, self._edge_gain)
        n_chunks = min(len(self._sens), ADJOINT_CHUNKS)
        out = np.zeros((n_chunks,) + self.grid.shape, np.float32)
        if self._region is None:
            K.adjoint_edges(h, self._xs, self._ys, self._sens, self._r0, self._inv_delta,
                            self._k, self._P, self._taps, n_chunks, out)
        else:
            K.adjoint_edges_region(h, self._xs, self._ys, self._sens, self._r0,
                                   self._inv_delta, self._k, self._P, self._taps,
                                   self._region, n_chunks, out)
        return out.sum(axis=0, dtype=np.float32)

    def as_linear_operator(self) -> Any:
        """A :class:`scipy.sparse.linalg.LinearOperator` on flattened vectors."""
        from scipy.sparse.linalg import LinearOperator  # lazy: only for this adapter

        n = self.grid.n
        n_s, n_t = self.sensors.n_sensors, self.acquisition.n_samples

        def matvec(v: np.ndarray) -> np.ndarray:
            return self.forward(np.reshape(v, (n, n))).ravel().astype(v.dtype)

        def rmatvec(v: np.ndarray) -> np.ndarray:
            return self.adjoint(np.reshape(v, (n_s, n_t))).ravel().astype(v.dtype)

        return LinearOperator(self.shape, matvec=matvec, rmatvec=rmatvec, dtype=np.float64)


def simulate(
    p0: np.ndarray,
    grid: Grid,
    sensors: SensorArray,
    acquisition: Acquisition,
    *,
    thickness: float | None = None,
    noise_std: float = 0.0,
    band: tuple[float | None, float | None] | None = None,
    response: DetectorResponse | None = None,
    element_width: float | None = None,
    seed: int | None = None,
    speed_map: SpeedMap | None = None,
    medium: str = DEFAULT_MEDIUM,
    attenuation: Attenuation | None = None,
) -> np.ndarray:
    """Simulate the sinogram a set of point sensors records for an initial pressure image.

    Parameters
    ----------
    p0
        Initial pressure (n, n) in Pa on ``grid``.
    grid
        Image grid.
    sensors
        Sensor positions — for a realistic scan, the *true* (perturbed) ones.
    acquisition
        Sampling rate, number of samples, speed of sound, start time.
    thickness
        Slab thickness ``h`` in metres (default ``grid.dx``).
    noise_std
        Relative noise level: white Gaussian noise of standard deviation
        ``noise_std * max|clean sinogram|`` is added (after band filtering, so it is white).
    band
        ``(f_low, f_high)`` in Hz: the sensors' bandwidth, applied as a zero-phase
        4th-order Butterworth filter (see :func:`bandpass`). None: unlimited.
    response
        The sensors' impulse response (:class:`oatomo.response.DetectorResponse`),
        convolved with every signal before the band filter and the noise.
    element_width
        Width (m) of flat sensor elements (directivity); None: point sensors.
    seed
        Seed of the noise; the same seed gives the same bytes.
    speed_map
        Two speeds of sound (:class:`oatomo.speed_map.SpeedMap`, see
        :class:`ForwardOperator`); its ``c0`` replaces the acquisition's speed. None: one.
    medium
        ``"slab"`` (default) or ``"2d"`` (line sources, the 2-D wave equation); see
        :class:`ForwardOperator`.
    attenuation
        The medium's power-law attenuation (:class:`oatomo.media.Attenuation`); None: none.

    Returns
    -------
    numpy.ndarray
        float32 (n_sensors, n_samples), in Pa.

    Examples
    --------
    >>> from oatomo import Grid, Acquisition, ring_array
    >>> g = Grid(64, 0.0064)
    >>> y = simulate(np.ones(g.shape), g, ring_array(16, 0.02), Acquisition(20e6, 512))
    >>> y.shape, y.dtype
    ((16, 512), dtype('float32'))
    """
    if not (np.isfinite(noise_std) and noise_std >= 0):
        raise InputError(f"noise_std must be >= 0, got {noise_std}")
    op = ForwardOperator(grid, sensors, acquisition, thickness=thickness, response=response,
                         element_width=element_width, speed_map=speed_map, medium=medium,
                         attenuation=attenuation)
    y = op.forward(p0)
    y = bandpass(y, acquisition.fs, band)
    if noise_std > 0:
        rng = np.random.default_rng(seed)
        sigma = noise_std * float(np.max(np.abs(y)))
        y = (y + sigma * rng.standard_normal(y.shape)).astype(np.float32)
    return np.ascontiguousarray(y, dtype=np.float32)

"""Detector response: the sensors' impulse response, its convolution and its removal.

A real sensor does not record the pressure ``p(t)`` at its position but ``(h * p)(t)``,
the pressure convolved with the sensor's (acoustic and electrical) impulse response ``h``.
:class:`DetectorResponse` describes ``h`` once per array, either

- as a **Gaussian band**: centre frequency ``fc`` (Hz) and fractional bandwidth ``b``
  (full width at half maximum of ``|H|`` over ``fc``), zero phase::

      H(f) = exp(-(f - fc)^2 / (2 s^2)) + exp(-(f + fc)^2 / (2 s^2)),
      s = b fc / (2 sqrt(2 ln 2)),
      h(t) = 2 sqrt(2 pi) s exp(-2 pi^2 s^2 t^2) cos(2 pi fc t)      (closed form);

- or as a **measured impulse response**: samples at a rate ``fs`` with time zero at
  sample ``len // 2`` (the convention of PATATO's ``irf`` dataset, whose neutral response
  is a unit sample in the middle).

:func:`convolve` applies ``h`` and :func:`correlate` is its adjoint;
:class:`oatomo.ForwardOperator` (and so :func:`oatomo.simulate`) applies the same pair
with float32 transforms when given a response (:func:`operator_convolve`,
:func:`operator_correlate`); :func:`wiener_deconvolve` removes it before a reconstruction,
``X = conj(H) Y / (|H|^2 + lam max|H|^2)``. All of them work along the last axis with zero
padding (a linear, not circular, convolution).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from oatomo._limits import MAX_POSITION, MAX_SENSORS, check_bytes
from oatomo.errors import InputError, warn_units
from oatomo.geometry import SensorArray

__all__ = ["DetectorResponse", "convolve", "correlate", "operator_convolve", "operator_correlate",
           "wiener_deconvolve",
           "element_points", "DEFAULT_WIENER", "MIN_CENTRE_FREQUENCY",
           "MAX_FRACTIONAL_BANDWIDTH", "MIN_FRACTIONAL_BANDWIDTH"]

#: Default Wiener regularisation ``lam`` (relative to ``max|H|^2``), chosen on simulated
#: band-limited scans (``benchmarks/physics/bench_response.py``; its results in
#: ``docs/results/physics.rst``).
DEFAULT_WIENER = 1e-3
#: Gaussian-band centre frequencies below this (Hz) warn as a likely unit slip (ultrasound
#: detectors work at 0.1-50 MHz; "5" meant 5 MHz).
MIN_CENTRE_FREQUENCY = 1e4
#: Narrowest fractional bandwidth accepted (a narrower band's kernels underflow).
MIN_FRACTIONAL_BANDWIDTH = 1e-3
#: Fractional bandwidths above this warn as a likely percentage ("80" meant 0.8).
MAX_FRACTIONAL_BANDWIDTH = 4.0


@dataclass(frozen=True, eq=False)
class DetectorResponse:
    """The impulse response shared by the sensors of an array.

    Parameters
    ----------
    centre_frequency
        Centre frequency of a Gaussian band (Hz).
    bandwidth
        Fractional bandwidth of the Gaussian band: FWHM of ``|H|`` divided by the centre
        frequency (e.g. 0.8 for 80 %).
    impulse_response
        A measured response instead: 1-D samples at ``fs``, time zero at ``len // 2``.
    fs
        Sampling rate of ``impulse_response`` (Hz); it must equal the scan's.

    Examples
    --------
    >>> r = DetectorResponse(centre_frequency=5e6, bandwidth=0.8)
    >>> round(float(abs(r.frequency_response(np.array([5e6, 0.0]))[0])), 3)
    1.0
    """

    centre_frequency: float | None = None
    bandwidth: float | None = None
    impulse_response: np.ndarray | None = field(default=None)
    fs: float | None = None

    def __post_init__(self) -> None:
        gauss = self.centre_frequency is not None or self.bandwidth is not None
        if gauss == (self.impulse_response is not None):
            raise InputError("a detector response needs either centre_frequency and "
                             "bandwidth, or an impulse_response with its fs")
        if gauss:
            for key in ("centre_frequency", "bandwidth"):
                v = getattr(self, key)
                if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) \
                        or not (math.isfinite(v) and v > 0):
                    raise InputError(f"detector response {key} must be a number > 0, "
                                     f"got {v!r}")
                object.__setattr__(self, key, float(v))
            if self.bandwidth < MIN_FRACTIONAL_BANDWIDTH:
                raise InputError(f"detector response bandwidth must be at least "
                                 f"{MIN_FRACTIONAL_BANDWIDTH:g} (fractional), got "
                                 f"{self.bandwidth:g}")
            if self.centre_frequency < MIN_CENTRE_FREQUENCY:
                warn_units(f"detector centre frequency = {self.centre_frequency:g} Hz looks "
                           f"like a unit slip (it is in hertz: 5 MHz is 5e6)")
            if self.bandwidth > MAX_FRACTIONAL_BANDWIDTH:
                warn_units(f"detector bandwidth = {self.bandwidth:g} looks like a percentage "
                           f"(it is fractional: 80 % is 0.8)")
            return
        try:
            h = np.array(self.impulse_response, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InputError("impulse_response must be a 1-D array of numbers") from None
        if h.size == 0 or not np.all(np.isfinite(h)) or not np.any(h):
            raise InputError("impulse_response must be finite, non-empty and not all zero")
        if self.fs is None or not (math.isfinite(self.fs) and self.fs > 0):
            raise InputError(f"impulse_response needs its sampling rate fs > 0 Hz, got "
                             f"{self.fs!r}")
        h.setflags(write=False)
        object.__setattr__(self, "impulse_response", h)
        object.__setattr__(self, "fs", float(self.fs))

    @property
    def sigma(self) -> float:
        """Standard deviation of each Gaussian lobe of ``H`` (Hz)."""
        if self.centre_frequency is None or self.bandwidth is None:
            raise InputError("sigma is defined for a Gaussian-band response only")
        return self.bandwidth * self.centre_frequency / (2 * math.sqrt(2 * math.log(2)))

    def frequency_response(self, f: np.ndarray) -> np.ndarray:
        """``H(f)`` (complex) at frequencies ``f`` (Hz).

        A measured response is evaluated by its discrete-time Fourier transform (time
        zero at sample ``len // 2``).
        """
        f = np.asarray(f, dtype=np.float64)
        if self.impulse_response is None:
            s, fc = self.sigma, self.centre_frequency
            return (np.exp(-(f - fc) ** 2 / (2 * s * s))
                    + np.exp(-(f + fc) ** 2 / (2 * s * s))).astype(np.complex128)
        h = self.impulse_response
        t = (np.arange(h.size) - h.size // 2) / self.fs
        return np.exp(-2j * np.pi * f[..., None] * t) @ h

    def impulse(self, t: np.ndarray) -> np.ndarray:
        """The Gaussian-band impulse response ``h(t)`` in closed form (1/s)."""
        s, fc = self.sigma, self.centre_frequency
        t = np.asarray(t, dtype=np.float64)
        return (2 * math.sqrt(2 * math.pi) * s * np.exp(-2 * (math.pi * s * t) ** 2)
                * np.cos(2 * math.pi * fc * t))

    def _support(self, fs: float) -> int:
        """Samples (at ``fs``) the response reaches on either side of time zero."""
        if self.impulse_response is not None:
            self._check_fs(fs)
            return int(self.impulse_response.size)
        # exp(-2 pi^2 s^2 t^2) < 1e-12 beyond t = 7.5 / (2 pi s) / ...: 3.7 / s is ample
        return int(math.ceil(1.2 * fs / self.sigma)) + 1

    def filter_bytes(self, fs: float, rows: int) -> float:
        """Bytes that filtering ``rows`` records by this response adds (the records padded
        by its support, float64, and their spectrum, complex128): what
        ``OATOMO_MAX_BYTES`` is checked against before anything is allocated."""
        return 24.0 * max(int(rows), 1) * self._support(fs)

    def _check_fs(self, fs: float) -> None:
        if self.fs is not None and abs(self.fs - fs) > 1e-6 * fs:
            raise InputError(f"the impulse response is sampled at {self.fs:g} Hz, the "
                             f"signals at {fs:g} Hz")

    def _spectrum(self, n_fft: int, fs: float) -> np.ndarray:
        """``H`` on the ``rfft`` frequencies of ``n_fft`` samples at ``fs``: the
        continuous transform of a Gaussian band (peak gain 1), the discrete one of a
        measured response (``irfft(rfft(x) * H)`` is then the circular convolution with
        the samples: a unit sample is the identity)."""
        if self.impulse_response is None:
            return self.frequency_response(np.fft.rfftfreq(n_fft, 1.0 / fs))
        self._check_fs(fs)
        h = self.impulse_response
        k = h.size // 2
        wrapped = np.zeros(n_fft)
        wrapped[:h.size - k] = h[k:]
        if k:
            wrapped[n_fft - k:] = h[:k]
        return np.fft.rfft(wrapped)

    def _key(self) -> tuple[Any, ...]:
        if self.impulse_response is None:
            return (self.centre_frequency, self.bandwidth)
        return (self.impulse_response.tobytes(), self.fs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DetectorResponse):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (setup TOML ``[detector]``, scan files)."""
        if self.impulse_response is None:
            return {"centre_frequency": self.centre_frequency, "bandwidth": self.bandwidth}
        return {"impulse_response": self.impulse_response.tolist(), "fs": self.fs}

    def __repr__(self) -> str:
        if self.impulse_response is None:
            return (f"DetectorResponse(centre_frequency={self.centre_frequency:g}, "
                    f"bandwidth={self.bandwidth:g})")
        return f"DetectorResponse(impulse_response=<{self.impulse_response.size} samples>, " \
               f"fs={self.fs:g})"


def _filter(y: np.ndarray, fs: float, response: DetectorResponse, kind: str,
            lam: float = 0.0, single: bool = False) -> np.ndarray:
    """``y`` filtered along its last axis by ``H`` (``"convolve"``), ``conj(H)``
    (``"correlate"``) or the Wiener inverse (``"wiener"``), zero-padded by the response's
    support. ``single``: the transforms in float32 (:func:`operator_convolve`), else in
    float64."""
    y = np.asarray(y)
    n = y.shape[-1]
    pad = response._support(fs)
    rows = int(np.prod(y.shape[:-1], dtype=np.int64))
    # what the response's support adds to the padded copy (float64) and its spectrum
    # (complex128): sized by the user's band, so checked before anything is allocated
    check_bytes(response.filter_bytes(fs, rows),
                f"padding {rows} signals by the detector response's support ({pad} samples "
                f"at {fs:g} Hz)")
    n_fft = _fast_len(n + pad)
    transfer = _transfer if n_fft <= CACHED_FFT_MAX else _transfer.__wrapped__
    G = transfer(response, n_fft, float(fs), kind, float(lam), bool(single))
    # time zero of h is at sample 0 of the wrapped kernel: the output lines up with the input
    if single:
        from scipy import fft  # lazy: SciPy only when convolving

        spec = fft.rfft(y.astype(np.float32, copy=False), n_fft, axis=-1)
        spec *= G
        return np.ascontiguousarray(fft.irfft(spec, n_fft, axis=-1)[..., :n])
    out = np.fft.irfft(np.fft.rfft(y.astype(np.float64), n_fft, axis=-1) * G, n_fft,
                       axis=-1)[..., :n]
    return out.astype(np.float32)


#: Longest transform whose filter :func:`_transfer` keeps (its spectrum at most 1 MiB in
#: complex64, 2 MiB in complex128); the cache holds at most 32 of them.
CACHED_FFT_MAX = 1 << 17


@functools.lru_cache(maxsize=32)
def _transfer(response: DetectorResponse, n_fft: int, fs: float, kind: str, lam: float,
              single: bool) -> np.ndarray:
    """The filter :func:`_filter` multiplies the spectrum by (read-only; complex64 when
    ``single``), computed once per response, length, rate and kind: an operator applies
    the same one at every iteration."""
    H = response._spectrum(n_fft, fs)
    if kind == "convolve":
        G = H
    elif kind == "correlate":
        G = np.conj(H)
    else:
        G = np.conj(H) / (np.abs(H) ** 2 + lam * float(np.max(np.abs(H)) ** 2))
    G = G.astype(np.complex64 if single else np.complex128)
    G.setflags(write=False)
    return G


def _fast_len(n: int) -> int:
    from scipy.fft import next_fast_len  # lazy: SciPy only when convolving

    return int(next_fast_len(int(n), real=True))


def convolve(sinogram: np.ndarray, fs: float, response: DetectorResponse) -> np.ndarray:
    """What the sensors record: ``(h * p)`` along the last axis (float32, same shape).

    Zero-padded (linear) convolution; samples before the first and after the last are
    taken as zero.
    """
    return _filter(sinogram, fs, response, "convolve")


def correlate(sinogram: np.ndarray, fs: float, response: DetectorResponse) -> np.ndarray:
    """The adjoint of :func:`convolve` (correlation with ``h``), for the model-based
    operator: ``<convolve(x), y> = <x, correlate(y)>``."""
    return _filter(sinogram, fs, response, "correlate")


def operator_convolve(sinogram: np.ndarray, fs: float, response: DetectorResponse
                      ) -> np.ndarray:
    """:func:`convolve` with its transforms in float32, for the forward model applied at
    every iteration of a reconstruction (three to five times faster at its record
    lengths; the result differs from :func:`convolve`'s by float32 rounding)."""
    return _filter(sinogram, fs, response, "convolve", single=True)


def operator_correlate(sinogram: np.ndarray, fs: float, response: DetectorResponse
                       ) -> np.ndarray:
    """The adjoint of :func:`operator_convolve` (:func:`correlate` in float32)."""
    return _filter(sinogram, fs, response, "correlate", single=True)


def wiener_deconvolve(sinogram: np.ndarray, fs: float, response: DetectorResponse,
                      lam: float = DEFAULT_WIENER) -> np.ndarray:
    """Remove the detector response: ``conj(H) Y / (|H|^2 + lam max|H|^2)``.

    Parameters
    ----------
    sinogram
        Recorded signals (..., T).
    fs
        Their sampling rate (Hz).
    response
        The detector response.
    lam
        Regularisation relative to the response's peak power: small values restore more
        of the band edges and amplify more noise.

    Returns
    -------
    numpy.ndarray
        float32, same shape.
    """
    if not (math.isfinite(lam) and lam > 0):
        raise InputError(f"the Wiener regularisation must be > 0, got {lam!r}")
    return _filter(sinogram, fs, response, "wiener", lam)


def element_points(sensors: Any, width: float, acquisition: Any,
                   n_points: int | None = None) -> tuple[Any, int]:
    """The points that stand for finite, flat elements of ``width`` (m) in the plane.

    A flat element records the average of the pressure over its face; in the imaging
    plane that is the mean of ``n_points`` point sensors spread (midpoint rule) along the
    line through each sensor perpendicular to its normal. Averaging them gives the element
    its angular sensitivity (directivity): a wave arriving at angle ``theta`` from the
    normal is smeared over ``width sin(theta) / c`` in time, so high frequencies off axis
    are lost (far-field ``sinc(pi f width sin(theta) / c)``).

    Parameters
    ----------
    sensors
        The element centres and normals (:class:`oatomo.SensorArray`).
    width
        Element width in metres (> 0).
    acquisition
        Its sampling; by default the points are at most ``c / fs`` apart.
    n_points
        Points per element (default from the sampling, at least 2).

    Returns
    -------
    tuple
        ``(points, n_points)``: a SensorArray of ``N * n_points`` points (element-major:
        points ``k * n_points ... (k + 1) * n_points - 1`` belong to element ``k``, with its
        normal) and the count.
    """
    if isinstance(width, bool) or not isinstance(width, (int, float, np.floating)) \
            or not (math.isfinite(width) and width > 0):
        raise InputError(f"element width must be a number > 0 metres, got {width!r}")
    if width > 0.05:
        warn_units(f"element width = {width:g} m looks like a unit slip (metres: 0.5 mm is "
                   f"5e-4)")
    spacing = acquisition.speed_of_sound / acquisition.fs
    m = n_points if n_points is not None else max(2, int(math.ceil(width / spacing)))
    if int(m) != m or m < 1:
        raise InputError(f"n_points must be a positive integer, got {n_points!r}")
    m = int(m)
    if width > MAX_POSITION:
        raise InputError(f"element width must be at most {MAX_POSITION:g} metres, got "
                         f"{width!r}")
    if sensors.n_sensors * m > MAX_SENSORS:
        raise InputError(f"element width {width:g} m needs {m} points per element at c/fs = "
                         f"{spacing:.3g} m; at most {MAX_SENSORS} points in all")
    check_bytes(48.0 * sensors.n_sensors * m, "the element points")
    u = ((np.arange(m) + 0.5) / m - 0.5) * width
    normals = sensors.normals
    tangent = np.stack([-normals[:, 1], normals[:, 0]], axis=1)
    pos = sensors.positions[:, None, :] + u[None, :, None] * tangent[:, None, :]
    nrm = np.repeat(normals[:, None, :], m, axis=1)
    return SensorArray(pos.reshape(-1, 2), nrm.reshape(-1, 2)), m

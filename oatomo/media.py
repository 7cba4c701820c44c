"""Temporal operators of the propagation medium: the 2-D line-source medium and attenuation.

Both act on the signals of one sensor along time, like the detector response of
:mod:`oatomo.response`, and both come with their exact adjoints, so the forward operator
that includes them stays exactly transposable.

Slab and line-source signals
----------------------------
Let ``I(z, rho) = integral_{|r - z| = rho} p0 dl = 2 pi rho M(z, rho)`` be the integral of
the initial pressure over the circle of radius ``rho`` around a sensor ``z`` (``M``: the
circular mean). The **slab** medium of :func:`oatomo.simulate` (a slab of thickness ``h``
in 3-D) records::

    p_slab(t) = h / (4 pi c^2) d/dt [ I(c t) / t ] = dS/dt,   S(t) = h / (2 c) M(c t).

The **2-D** (line-source) medium, in which every pixel is an infinitely long line source
(the 2-D wave equation, as 2-D k-Wave computes it), records the 2-D Poisson solution::

    p_2d(t) = 1 / (2 pi c) d/dt integral_{|r - z| < c t} p0(r) / sqrt(c^2 t^2 - |r - z|^2) dr
            = 1 / (2 pi c) d/dt integral_0^{c t} I(rho) / sqrt(c^2 t^2 - rho^2) drho

(Green's function ``H(c t - r) / (2 pi c sqrt(c^2 t^2 - r^2))`` of the 2-D wave equation,
differentiated in time for an initial pressure with zero initial velocity). The two are the
same circular means under two temporal operators. With ``I(c tau) = (4 pi c / h) c tau
S(tau)`` and the Abel-type operator ``A[f](t) = integral_0^t tau f(tau) / sqrt(t^2 - tau^2)
d tau``::

    p_2d(t) = (2 c / h) d/dt A[S](t)                                       (slab -> line)
    S(t)    = h / (pi c t) d/dt A[Q](t),   Q(t) = integral_0^t p_2d        (line -> slab)

(the second is Abel's inversion of the first in the variable ``t^2``). :func:`slab_to_line`
discretises the first with ``S`` linear between the edges of the sampling intervals and
``A`` integrated exactly over each piece (the inverse square root singularity included,
no numerical differentiation of the data), each sample being the average over its interval
(the convention of :func:`oatomo.simulate`). Its matrix is lower triangular with a positive
diagonal, and :func:`line_to_slab` is its exact inverse by forward substitution (the
product-integration scheme of Abel's equation: stable, second-order accurate, noise
amplified like ``sqrt(f)`` - a half-order derivative - never exponentially).

Attenuation
-----------
A power law ``alpha(f) = alpha0 (f / 1 MHz)^y`` (``alpha0`` in dB/(MHz^y cm), as tissue
tables give it: 0.5-0.75 dB/(MHz cm) with ``y`` about 1 for soft tissue, 0.002 dB/(MHz^2 cm)
with ``y = 2`` for water) with the dispersion Kramers-Kronig requires of it (Szabo 1994,
with one subtraction at ``f_ref = 1 MHz``, where the phase speed is ``c``)::

    1 / c(f) = 1 / c + alpha_Np(1 MHz) / (2 pi f_ref) tan(pi y / 2) ((f / f_ref)^(y-1) - 1)
    1 / c(f) = 1 / c - alpha_Np(1 MHz) / (2 pi f_ref) (2 / pi) ln(f / f_ref)      (y = 1)

so a wave that travelled ``d`` is filtered by ``H_d(f) = exp(-alpha(f) d) exp(-2 pi i f d
(1 / c(f) - 1 / c))``. The loss depends on the distance, and the signal a sensor records at
time ``t`` left the sources at distance ``c t`` (a slab and a line source alike are sums of
3-D point sources, each heard at the time its distance says), so attenuation is a
time-varying filter: the record is split by smooth windows (linear hats, summing to one)
centred on distance bands ``d_b``, and band ``b`` is filtered with ``H_{d_b}``::

    y_att = sum_b H_{d_b} (w_b y),      adjoint: sum_b w_b (conj(H_{d_b}) y).

Between band centres the transfer function is the linear blend of its two neighbours'; the
bands are spaced so that the blend is within :data:`BAND_TOLERANCE` of ``exp(-alpha(f) d)``
at every frequency up to the Nyquist frequency. :func:`compensate` undoes it before a
backprojection with a regularised inverse per band, ``conj(H) / (|H|^2 + 1 / (4 g^2))``,
whose gain never exceeds ``g`` (``max_gain``, default 10 = 20 dB): the correction rises
with frequency up to where the attenuation reaches ``20 log10(2 g)`` dB (26 dB for
``g = 10``; at 0.75 dB/(MHz cm) over 30 mm that is 11.6 MHz) and falls beyond.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from oatomo._limits import ATTENUATION_POWER_RANGE, ATTENUATION_RANGE, check_bytes
from oatomo.errors import InputError, warn_units
from oatomo.geometry import Acquisition

__all__ = ["MEDIA", "DEFAULT_MEDIUM", "check_medium", "slab_to_line", "line_to_slab",
           "line_matrix", "Attenuation", "ATTENUATION_PRESETS", "attenuate",
           "attenuate_adjoint", "compensate", "attenuation_bands", "DB_PER_NEPER",
           "REFERENCE_FREQUENCY", "BAND_TOLERANCE", "DEFAULT_MAX_GAIN", "POWER_RANGE",
           "ALPHA_RANGE"]

#: The propagation media: ``"slab"`` (a thin slab in 3-D, the default) and ``"2d"``
#: (line sources: the 2-D wave equation).
MEDIA = ("slab", "2d")
#: The medium of a scan that names none.
DEFAULT_MEDIUM = "slab"
#: Decibels per neper, ``20 log10(e)``.
DB_PER_NEPER = 20.0 / math.log(10.0)
#: Frequency (Hz) at which ``alpha0`` is given and the phase speed equals ``c``.
REFERENCE_FREQUENCY = 1e6
#: Largest error of the band blend of the attenuation's amplitude (absolute, on ``|H|``).
BAND_TOLERANCE = 2e-3
#: Largest gain of :func:`compensate` (10: 20 dB).
DEFAULT_MAX_GAIN = 10.0
#: Accepted power-law exponents ``y``.
POWER_RANGE = ATTENUATION_POWER_RANGE
#: Accepted ``alpha0`` in dB/(MHz^y cm); above 10 warns as a likely unit slip.
ALPHA_RANGE = ATTENUATION_RANGE
#: Most distance bands of one attenuation filter.
MAX_BANDS = 512

#: Named attenuation settings, ``(alpha0 in dB/(MHz^y cm), y)``.
ATTENUATION_PRESETS: dict[str, tuple[float, float]] = {
    "water": (0.00217, 2.0),
    "soft-tissue": (0.54, 1.0),
    "breast": (0.75, 1.5),
    "fat": (0.48, 1.0),
    "muscle": (0.57, 1.1),
}


def check_medium(value: Any, what: str = "medium") -> str:
    """``value`` if it names a medium of :data:`MEDIA`, else a one-line InputError."""
    if value not in MEDIA:
        raise InputError(f"{what} must be one of {', '.join(MEDIA)}, got {value!r}")
    return str(value)


# --- slab <-> line source -----------------------------------------------------------------


def _edges(acquisition: Any, extra: int = 0) -> np.ndarray:
    """Edges ``t0 + (e - 1/2) dt`` of the sampling intervals, ``e = 0 .. T + extra``."""
    return acquisition.t0 + (np.arange(acquisition.n_samples + 1 + extra) - 0.5) \
        * acquisition.dt


def _abel_pieces(t: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """``Phi[m, k] = integral_0^{t_m} tau phi_k(tau) / sqrt(t_m^2 - tau^2) d tau`` for the
    hat functions ``phi_k`` of the (increasing) nodes, the last one only rising (the
    function is taken as 0 below the first node and as its linear interpolant above)."""
    tt = t[:, None]
    t2 = tt * tt

    def g1(tau: np.ndarray) -> np.ndarray:  # antiderivative of tau / sqrt(t^2 - tau^2)
        return -np.sqrt(np.maximum(t2 - tau * tau, 0.0))

    def g2(tau: np.ndarray) -> np.ndarray:  # ... of tau^2 / sqrt(t^2 - tau^2)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(tt > 0, tau / np.where(tt > 0, tt, 1.0), 0.0)
        return 0.5 * t2 * np.arcsin(np.clip(ratio, -1.0, 1.0)) \
            - 0.5 * tau * np.sqrt(np.maximum(t2 - tau * tau, 0.0))

    a, b = nodes[:-1][None, :], nodes[1:][None, :]
    lo = np.clip(a, 0.0, np.maximum(tt, 0.0))
    hi = np.clip(b, 0.0, np.maximum(tt, 0.0))
    lo = np.minimum(lo, hi)
    i1 = g1(hi) - g1(lo)
    i2 = g2(hi) - g2(lo)
    width = b - a
    inv_w = np.where(width > 0, 1.0 / np.where(width > 0, width, 1.0), 0.0)
    rising = (i2 - a * i1) * inv_w   # weight of node k+1 on piece k
    falling = (b * i1 - i2) * inv_w  # weight of node k on piece k
    out = np.zeros((len(t), len(nodes)))
    out[:, 1:] += rising
    out[:, :-1] += falling
    return out


@functools.lru_cache(maxsize=8)
def _line_operator(fs: float, n_samples: int, t0: float) -> np.ndarray:
    """``P`` (T, T+1): the edge values of ``S`` to ``(h / 2c) p_2d`` (interval means)."""
    acq = Acquisition(fs, n_samples, 1500.0, t0)
    check_bytes(8.0 * 3 * (n_samples + 2) ** 2,
                f"the line-source conversion matrix of {n_samples} samples")
    edges = _edges(acq)
    phi = _abel_pieces(edges, np.maximum(edges, 0.0))  # A at the edges
    P = np.diff(phi, axis=0) * fs                        # interval means of dA/dt
    P.setflags(write=False)
    return P


def line_matrix(acquisition: Any) -> np.ndarray:
    """The (T, T+1) matrix ``P`` with ``p_2d = (2 c / h) P S``: the interval means of
    ``d/dt A[S]`` from the values of ``S = integral p_slab dt`` at the T+1 interval edges
    (read-only; cached per sampling)."""
    return _line_operator(float(acquisition.fs), int(acquisition.n_samples),
                          float(acquisition.t0))


def _check_thickness(thickness: float) -> float:
    h = float(thickness)
    if not (math.isfinite(h) and h > 0):
        raise InputError(f"slab thickness must be > 0 m, got {thickness!r}")
    return h


def slab_to_line(sinogram: np.ndarray, acquisition: Any, *, thickness: float) -> np.ndarray:
    """The line-source (2-D medium) signals of the same circular means as slab signals.

    Parameters
    ----------
    sinogram
        (..., T) slab-medium signals (Pa), each sample the mean over its interval, zero
        before the first sample.
    acquisition
        Their sampling and speed of sound.
    thickness
        The slab thickness ``h`` (m) the slab signals were made with.

    Returns
    -------
    numpy.ndarray
        float32 (..., T): ``p_2d`` in Pa.

    Examples
    --------
    >>> from oatomo import Acquisition
    >>> acq = Acquisition(20e6, 64)
    >>> slab_to_line(np.zeros((2, 64)), acq, thickness=1e-4).shape
    (2, 64)
    """
    h = _check_thickness(thickness)
    y = np.asarray(sinogram, dtype=np.float64)
    s = np.zeros(y.shape[:-1] + (y.shape[-1] + 1,))
    s[..., 1:] = np.cumsum(y, axis=-1) * acquisition.dt
    P = line_matrix(acquisition)
    out = (2 * acquisition.speed_of_sound / h) * (s @ P.T)
    return out.astype(np.float32)


def line_to_slab(sinogram: np.ndarray, acquisition: Any, *, thickness: float) -> np.ndarray:
    """The slab-medium signals of the same circular means as line-source (2-D) signals.

    The exact inverse of :func:`slab_to_line`'s discretisation (a forward substitution on
    its lower-triangular matrix: the product-integration scheme of Abel's equation, which
    is stable, second-order accurate and amplifies noise like ``sqrt(f)``), so a round trip
    returns the signals to float rounding. Use it to bring 2-D simulations (2-D k-Wave) to the slab
    model before a backprojection.

    Parameters
    ----------
    sinogram
        (..., T) line-source signals (Pa), interval means, zero before the first sample.
    acquisition
        Their sampling and speed of sound.
    thickness
        The slab thickness ``h`` (m) of the slab signals to make (the image grid's pixel
        size for oatomo's reconstructions).

    Returns
    -------
    numpy.ndarray
        float32 (..., T): ``p_slab`` in Pa.
    """
    from scipy.linalg import solve_triangular  # lazy: SciPy only when converting

    h = _check_thickness(thickness)
    y = np.asarray(sinogram, dtype=np.float64)
    P = line_matrix(acquisition)
    if np.any(np.diag(P[:, 1:]) <= 0):
        raise InputError("line_to_slab needs the record to start after t = -dt/2 (t0 >= 0)")
    rows = y.reshape(-1, y.shape[-1]).T * (h / (2 * acquisition.speed_of_sound))
    s = solve_triangular(P[:, 1:], rows, lower=True, check_finite=False).T
    s = np.concatenate([np.zeros((s.shape[0], 1)), s], axis=1)
    return (np.diff(s, axis=-1) * acquisition.fs).reshape(y.shape).astype(np.float32)


# --- attenuation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Attenuation:
    """A power-law acoustic attenuation ``alpha(f) = alpha0 (f / 1 MHz)^power``.

    Parameters
    ----------
    alpha0
        Attenuation at 1 MHz in dB/(MHz^power cm) (0.5-0.75 for soft tissue, 0.002 for
        water), at least 0.
    power
        The exponent ``y`` in [0.5, 2] (about 1 for tissue, 2 for water).

    Examples
    --------
    >>> a = Attenuation(0.75, 1.0)
    >>> round(a.nepers_per_metre(5e6), 2)     # 3.75 dB/cm at 5 MHz
    43.18
    """

    alpha0: float
    power: float = 1.0

    def __post_init__(self) -> None:
        for key, (lo, hi), unit in (("alpha0", ALPHA_RANGE, "dB/(MHz^y cm)"),
                                    ("power", POWER_RANGE, "")):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                    or not (math.isfinite(v) and lo <= v <= hi):
                raise InputError(f"attenuation {key} must be a number in [{lo:g}, {hi:g}]"
                                 f"{' ' + unit if unit else ''}, got {v!r}")
            object.__setattr__(self, key, float(v))
        if self.alpha0 > 10.0:
            warn_units(f"attenuation {self.alpha0:g} dB/(MHz^y cm) looks like a unit slip "
                       f"(tissue is about 0.5-0.75 dB/(MHz cm); Np/m are 11.5 times dB/cm)")

    @classmethod
    def preset(cls, name: str) -> Attenuation:
        """The attenuation of a named medium of :data:`ATTENUATION_PRESETS`."""
        if name not in ATTENUATION_PRESETS:
            raise InputError(f"unknown attenuation preset {name!r}; choose from "
                             f"{', '.join(ATTENUATION_PRESETS)}")
        return cls(*ATTENUATION_PRESETS[name])

    def nepers_per_metre(self, f: Any) -> Any:
        """``alpha(|f|)`` in Np/m at frequencies ``f`` (Hz)."""
        a = self.alpha0 * 100.0 / DB_PER_NEPER
        return a * (np.abs(np.asarray(f, dtype=np.float64)) / REFERENCE_FREQUENCY) ** self.power

    def slowness_excess(self, f: Any) -> np.ndarray:
        """``1 / c(f) - 1 / c`` (s/m) of the Kramers-Kronig dispersion (0 at 1 MHz)."""
        f = np.abs(np.asarray(f, dtype=np.float64))
        a = self.alpha0 * 100.0 / DB_PER_NEPER / (2 * math.pi * REFERENCE_FREQUENCY)
        x = np.where(f > 0, f, REFERENCE_FREQUENCY) / REFERENCE_FREQUENCY
        if abs(self.power - 1.0) < 1e-9:
            return -a * (2 / math.pi) * np.log(x)
        return a * math.tan(math.pi * self.power / 2) * (x ** (self.power - 1) - 1.0)

    def transfer(self, f: Any, distance: float) -> np.ndarray:
        """``H_d(f)``: what travelling ``distance`` (m) does to frequency ``f`` (Hz)."""
        f = np.asarray(f, dtype=np.float64)
        phase = -2 * math.pi * f * distance * self.slowness_excess(f)
        return np.exp(-self.nepers_per_metre(f) * distance + 1j * phase)

    def to_dict(self) -> dict[str, float]:
        """Plain-Python form (scan files, provenance)."""
        return {"alpha0": self.alpha0, "power": self.power}


def attenuation_bands(acquisition: Any, attenuation: Attenuation,
                      n_bands: int | None = None) -> np.ndarray:
    """Centres (in samples, float, increasing) of the distance bands of the attenuation
    filter.

    With ``n_bands`` given: evenly spaced over the record. Else spaced so that the linear
    blend of two neighbouring bands' ``H_d(f)`` is within :data:`BAND_TOLERANCE` of the
    exact value at every frequency up to ``fs / 2``: the blend's error is at most
    ``(kappa D)^2 / 8 exp(-alpha d)`` for bands ``D`` apart at distance ``d``, with
    ``kappa = |alpha + 2 pi i f (1/c(f) - 1/c)|``, so the bands widen with the distance
    (at most :data:`MAX_BANDS`).
    """
    n = acquisition.n_samples
    if n_bands is not None:
        return np.linspace(0.0, n - 1.0, int(min(max(n_bands, 2), MAX_BANDS, max(n, 2))))
    c, fs, t0 = acquisition.speed_of_sound, acquisition.fs, acquisition.t0
    f = np.linspace(0.0, fs / 2, 257)[1:]
    alpha = attenuation.nepers_per_metre(f)
    # |d/dd log H_d|: the loss and the dispersive phase both change along the distance
    kappa = np.hypot(alpha, 2 * math.pi * f * attenuation.slowness_excess(f))
    alpha, kappa = alpha[kappa > 0], kappa[kappa > 0]
    if kappa.size == 0:
        return np.array([0.0, max(n - 1.0, 1.0)])
    centres = [0.0]
    while centres[-1] < n - 1 and len(centres) < MAX_BANDS:
        d = max(c * (t0 + centres[-1] / fs), 0.0)
        step = float(np.min(np.sqrt(8 * BAND_TOLERANCE * np.exp(np.minimum(alpha * d, 700.0)))
                            / kappa))
        centres.append(centres[-1] + max(step / c * fs, 1.0))
    centres[-1] = max(centres[-1], n - 1.0)
    return np.asarray(centres)


def _band_windows(centres: np.ndarray, n: int) -> np.ndarray:
    """Linear hats on the band centres, constant beyond the ends (rows sum to 1)."""
    k = np.arange(n, dtype=np.float64)
    eye = np.eye(len(centres))
    return np.stack([np.interp(k, centres, eye[b]) for b in range(len(centres))])


@functools.lru_cache(maxsize=8)
def _band_filters(fs: float, n_samples: int, c: float, t0: float, attenuation: Attenuation,
                  n_bands: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """``(W, H, n_fft)``: the windows (B, T), the transfer functions (B, n_fft // 2 + 1)
    on the rfft frequencies and the FFT length (a linear convolution over the record,
    padded by the whole record: kernels longer than that are cut by their wrap)."""
    from scipy.fft import next_fast_len  # lazy: SciPy only when filtering

    acq = Acquisition(fs, n_samples, c, t0)
    centres = attenuation_bands(acq, attenuation, n_bands)
    n_fft = int(next_fast_len(2 * n_samples, real=True))
    check_bytes(16.0 * len(centres) * (n_fft // 2 + 1 + n_samples),
                f"the attenuation filter's {len(centres)} distance bands")
    f = np.fft.rfftfreq(n_fft, 1.0 / fs)
    d = np.maximum(c * (t0 + centres / fs), 0.0)
    H = np.stack([attenuation.transfer(f, float(di)) for di in d])
    W = _band_windows(centres, n_samples)
    W.setflags(write=False)
    H.setflags(write=False)
    return W, H, n_fft


def _filters(acquisition: Any, attenuation: Attenuation, n_bands: int | None
             ) -> tuple[np.ndarray, np.ndarray, int]:
    if not isinstance(attenuation, Attenuation):
        raise InputError(f"attenuation must be an Attenuation, got "
                         f"{type(attenuation).__name__}")
    return _band_filters(float(acquisition.fs), int(acquisition.n_samples),
                         float(acquisition.speed_of_sound), float(acquisition.t0),
                         attenuation, n_bands)


def _apply(y: np.ndarray, W: np.ndarray, G: np.ndarray, n_fft: int, window_first: bool
           ) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[-1]
    rows = int(np.prod(y.shape[:-1], dtype=np.int64))
    check_bytes(24.0 * max(rows, 1) * n_fft, f"filtering {rows} signals for attenuation")
    out = np.zeros(y.shape)
    spec = None if window_first else np.fft.rfft(y, n_fft, axis=-1)
    for b in range(len(W)):
        lo, hi = np.flatnonzero(W[b])[[0, -1]]
        if window_first:
            seg = np.zeros(y.shape)
            seg[..., lo:hi + 1] = y[..., lo:hi + 1] * W[b, lo:hi + 1]
            out += np.fft.irfft(np.fft.rfft(seg, n_fft, axis=-1) * G[b], n_fft, axis=-1)[..., :n]
        else:
            filt = np.fft.irfft(spec * G[b], n_fft, axis=-1)[..., lo:hi + 1]
            out[..., lo:hi + 1] += filt * W[b, lo:hi + 1]
    return out.astype(np.float32)


def attenuate(sinogram: np.ndarray, acquisition: Any, attenuation: Attenuation, *,
              n_bands: int | None = None) -> np.ndarray:
    """The signals after attenuation: ``sum_b H_{d_b} (w_b y)`` along the last axis.

    Parameters
    ----------
    sinogram
        (..., T) signals without attenuation (Pa).
    acquisition
        Their sampling and speed of sound (sample ``k`` left its sources at distance
        ``c t_k``).
    attenuation
        The medium's :class:`Attenuation`.
    n_bands
        Distance bands; None: as many as :data:`BAND_TOLERANCE` needs.

    Returns
    -------
    numpy.ndarray
        float32, same shape.
    """
    W, H, n_fft = _filters(acquisition, attenuation, n_bands)
    return _apply(sinogram, W, H, n_fft, True)


def attenuate_adjoint(sinogram: np.ndarray, acquisition: Any, attenuation: Attenuation, *,
                      n_bands: int | None = None) -> np.ndarray:
    """The adjoint of :func:`attenuate`: ``sum_b w_b (conj(H_{d_b}) y)``."""
    W, H, n_fft = _filters(acquisition, attenuation, n_bands)
    return _apply(sinogram, W, np.conj(H), n_fft, False)


def compensate(sinogram: np.ndarray, acquisition: Any, attenuation: Attenuation, *,
               max_gain: float = DEFAULT_MAX_GAIN, n_bands: int | None = None) -> np.ndarray:
    """Undo attenuation before a backprojection, stably.

    Each distance band is filtered with ``conj(H) / (|H|^2 + 1 / (4 g^2))`` (``g`` =
    ``max_gain``, the largest amplification at any frequency) and windowed:
    ``sum_b w_b G_b y``.

    Parameters
    ----------
    sinogram
        (..., T) attenuated signals (Pa).
    acquisition
        Their sampling and speed of sound.
    attenuation
        The medium's :class:`Attenuation`.
    max_gain
        Largest gain, > 1 (10: frequencies are restored until the attenuation reaches
        26 dB, and damped beyond).
    n_bands
        As for :func:`attenuate`.

    Returns
    -------
    numpy.ndarray
        float32, same shape.
    """
    if isinstance(max_gain, bool) or not (isinstance(max_gain, (int, float, np.floating))
                                          and math.isfinite(max_gain) and max_gain >= 1):
        raise InputError(f"attenuation max_gain must be a number >= 1, got {max_gain!r}")
    W, H, n_fft = _filters(acquisition, attenuation, n_bands)
    G = np.conj(H) / (np.abs(H) ** 2 + 1.0 / (4.0 * max_gain ** 2))
    return _apply(sinogram, W, G, n_fft, False)

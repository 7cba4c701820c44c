"""Make ``tests/data/kwave_2d_ring16.npz``: a small 2-D k-Wave scan the test suite compares
oatomo's line-source medium against (``tests/test_media_kwave.py``), so the suite checks
the model against an independent simulator without needing k-Wave.

The scan: three smooth Gaussian blobs (widths 0.4-0.8 mm) on oatomo's 128 x 128 grid at
0.1 mm, placed at the centre of a 256 x 256 k-Wave grid of the same pitch (20-point PML
outside), homogeneous water (1500 m/s, 1000 kg/m^3), 16 point sensors on a ring of
radius 10 mm, sampled at 20 MHz (k-Wave steps at 80 MHz, CFL 0.19); k-Wave's point
samples are converted to the means over each 50 ns sampling interval centred on the sample
time, oatomo's convention (``kwave_check.interval_means``: a sinc filter at the fine
rate, then every fourth sample).

Run with k-wave-python on its NumPy backend, in its own environment (about a minute)::

    OMP_NUM_THREADS=1 /tmp/kwenv/bin/python benchmarks/media/kwave_fixture.py
    OMP_NUM_THREADS=1 /tmp/kwenv/bin/python benchmarks/media/kwave_fixture.py --attenuation

The file holds ``p0`` (oatomo's [row=y, col=x]), ``positions`` (N, 2) in oatomo's frame,
``fs``, ``t0`` (0), ``c``, ``signals`` (N, T) and the k-Wave version; and the same scan
with a disc of radius ``disc_radius`` at ``c_disc`` (3 % faster) around the grid's centre,
``signals_disc`` (k-Wave refracts; oatomo's two-speed model uses straight rays).

``--attenuation`` writes ``tests/data/kwave_2d_ring16_attenuation.npz`` instead (the
fixture above is left alone): the same blobs, sensors and water with k-Wave's power-law
absorption ``medium.alpha_coeff = 0.75`` dB/(MHz^y cm) for each ``y`` of ``POWERS``
(``signals_y150``, ``signals_y120``: ``y`` times 100), k-Wave's fractional-Laplacian model
(Treeby and Cox 2010) with its dispersion. That model's phase speed is ``sound_speed`` at
zero frequency; oatomo's :class:`oatomo.media.Attenuation` takes the acquisition's speed
as the phase speed at 1 MHz. :func:`phase_speed` solves k-Wave's dispersion relation for
the speed at 1 MHz, stored per ``y`` as ``c_1mhz_y150`` ...: the speed to give oatomo.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from kwave_check import interval_means  # the same folder: the script's own path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "kwave_2d_ring16.npz"
OUT_ATTENUATION = ROOT / "tests" / "data" / "kwave_2d_ring16_attenuation.npz"
N, DX = 128, 1e-4
N_KWAVE, PML = 256, 20
C, RHO = 1500.0, 1000.0
FS, N_SAMPLES, SUB = 20e6, 320, 4
N_SENSORS, RADIUS = 16, 10e-3
#: The two-speed scan: a disc of this radius (m) and speed (m/s, 3 % above the water's)
#: centred on the grid, the same blobs inside and around it.
DISC_R, C_DISC = 3e-3, 1545.0
#: The absorbing scans: alpha0 in dB/(MHz^y cm) and the exponents y (k-Wave's dispersion
#: term is singular at y = 1).
ALPHA0, POWERS = 0.75, (1.5, 1.2)
BLOBS = ((-1.5e-3, 0.8e-3, 0.6e-3, 1.0), (1.2e-3, -0.4e-3, 0.4e-3, 0.7),
         (0.3e-3, 2.0e-3, 0.8e-3, 0.5))


def phantom() -> np.ndarray:
    """oatomo's grid: pixel [i, j] at y, x = ((i, j) - (N - 1) / 2) DX."""
    x = (np.arange(N) - (N - 1) / 2) * DX
    X, Y = np.meshgrid(x, x)  # [row=y, col=x]
    return sum(a * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * s ** 2))
               for cx, cy, s, a in BLOBS)


def phase_speed(c0: float, alpha0: float, power: float, f: float) -> float:
    """The phase speed (m/s) at frequency ``f`` (Hz) of k-Wave's absorbing fluid.

    k-Wave's equations (``kspace_solver.step``: ``du/dt = -grad p / rho0``, ``drho/dt =
    -rho0 div u``, ``p = c0^2 (rho + tau L1 (rho0 div u) - eta L2 rho)`` with ``L1 =
    |k|^(y-2)``, ``L2 = |k|^(y-1)`` in k-space, ``tau = -2 a c0^(y-1)``, ``eta = 2 a c0^y
    tan(pi y / 2)``, ``a`` the absorption in Np/((rad/s)^y m)) give for a plane wave
    ``exp(i (k x - w t))`` of real wavenumber ``k``::

        w^2 - i c0^2 tau k^y w - c0^2 k^2 (1 - eta k^(y-1)) = 0,
        Re w = sqrt(c0^2 k^2 (1 - eta k^(y-1)) - (c0^2 tau k^y / 2)^2),

    solved here for the ``k`` with ``Re w = 2 pi f`` (bisection); the speed is
    ``2 pi f / k``. To first order in ``a``: ``1 / c(w) = 1 / c0 + a tan(pi y / 2)
    w^(y-1)``, Szabo's dispersion with ``c(0) = c0``.
    """
    a = alpha0 * 100.0 / (20.0 / math.log(10.0)) / (2e6 * math.pi) ** power  # db2neper
    tau = -2 * a * c0 ** (power - 1)
    eta = 2 * a * c0 ** power * math.tan(math.pi * power / 2)
    w = 2 * math.pi * f

    def re_w(k: float) -> float:
        return math.sqrt(c0 ** 2 * k ** 2 * (1 - eta * k ** (power - 1))
                         - (c0 ** 2 * tau * k ** power / 2) ** 2)

    lo, hi = 0.5 * w / c0, 2.0 * w / c0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if re_w(mid) < w else (lo, mid)
    return w / (0.5 * (lo + hi))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attenuation", action="store_true",
                    help=f"write the absorbing scans to {OUT_ATTENUATION.name} instead")
    attenuation = ap.parse_args().attenuation
    import urllib.request

    # k-wave-python fetches its C++ binaries on import; the NumPy backend needs none
    urllib.request.urlretrieve = lambda url, filename, *a, **k: (  # type: ignore
        open(filename, "wb").close(), (filename, None))[1]
    import kwave
    from kwave.kgrid import kWaveGrid
    from kwave.kmedium import kWaveMedium
    from kwave.ksensor import kSensor
    from kwave.ksource import kSource
    from kwave.kspaceFirstOrder import kspaceFirstOrder

    p0 = phantom()
    o = (N_KWAVE - N) // 2
    big = np.zeros((N_KWAVE, N_KWAVE))
    big[o:o + N, o:o + N] = p0.T  # oatomo [row=y, col=x] -> k-Wave [x, y]
    ang = 2 * np.pi * np.arange(N_SENSORS) / N_SENSORS
    pos = RADIUS * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    kgrid = kWaveGrid((N_KWAVE, N_KWAVE), (DX, DX))
    kgrid.setTime(N_SAMPLES * SUB, 1 / (FS * SUB))
    source = kSource()
    source.p0 = big
    # k-Wave's point [i, j] is at (i - N_KWAVE/2) DX: oatomo's x, y shifted by DX / 2
    sensor = kSensor(np.stack([pos[:, 0] - DX / 2, pos[:, 1] - DX / 2]))
    t = time.perf_counter()
    x = (np.arange(N_KWAVE) - N_KWAVE // 2) * DX + DX / 2  # k-Wave's points in oatomo's frame
    X, Y = np.meshgrid(x, x, indexing="ij")
    if attenuation:
        runs = {f"signals_y{round(100 * y)}": kWaveMedium(
            sound_speed=C, density=RHO, alpha_coeff=ALPHA0, alpha_power=y) for y in POWERS}
        extra = {f"c_1mhz_y{round(100 * y)}": phase_speed(C, ALPHA0, y, 1e6) for y in POWERS}
        extra.update(alpha0=ALPHA0, powers=np.asarray(POWERS))
        out_path = OUT_ATTENUATION
    else:
        runs = {"signals": kWaveMedium(sound_speed=C, density=RHO),
                "signals_disc": kWaveMedium(
                    sound_speed=np.where(X ** 2 + Y ** 2 < DISC_R ** 2, C_DISC, C),
                    density=RHO)}
        extra = {"disc_radius": DISC_R, "c_disc": C_DISC}
        out_path = OUT
    out = {}
    for name, medium in runs.items():
        res = kspaceFirstOrder(kgrid, medium, source, sensor, pml_size=PML, smooth_p0=False,
                               backend="python", device="cpu", quiet=True)
        p = np.asarray(res["p"], np.float64)
        out[name] = interval_means(p, FS * SUB, 1 / FS)[:, ::SUB].astype(np.float32)
    np.savez_compressed(out_path, p0=p0.astype(np.float32), positions=pos, fs=FS, t0=0.0,
                        c=C, **extra, **out, kwave=getattr(kwave, "__version__", "0.6.2"))
    print(f"wrote {out_path} ({time.perf_counter() - t:.0f} s of k-Wave)")


if __name__ == "__main__":
    main()

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

The file holds ``p0`` (oatomo's [row=y, col=x]), ``positions`` (N, 2) in oatomo's frame,
``fs``, ``t0`` (0), ``c``, ``signals`` (N, T) and the k-Wave version; and the same scan
with a disc of radius ``disc_radius`` at ``c_disc`` (3 % faster) around the grid's centre,
``signals_disc`` (k-Wave refracts; oatomo's two-speed model uses straight rays).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from kwave_check import interval_means  # the same folder: the script's own path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "kwave_2d_ring16.npz"
N, DX = 128, 1e-4
N_KWAVE, PML = 256, 20
C, RHO = 1500.0, 1000.0
FS, N_SAMPLES, SUB = 20e6, 320, 4
N_SENSORS, RADIUS = 16, 10e-3
#: The two-speed scan: a disc of this radius (m) and speed (m/s, 3 % above the water's)
#: centred on the grid, the same blobs inside and around it.
DISC_R, C_DISC = 3e-3, 1545.0
BLOBS = ((-1.5e-3, 0.8e-3, 0.6e-3, 1.0), (1.2e-3, -0.4e-3, 0.4e-3, 0.7),
         (0.3e-3, 2.0e-3, 0.8e-3, 0.5))


def phantom() -> np.ndarray:
    """oatomo's grid: pixel [i, j] at y, x = ((i, j) - (N - 1) / 2) DX."""
    x = (np.arange(N) - (N - 1) / 2) * DX
    X, Y = np.meshgrid(x, x)  # [row=y, col=x]
    return sum(a * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * s ** 2))
               for cx, cy, s, a in BLOBS)


def main() -> None:
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
    out = {}
    for name, speed in (("signals", C), ("signals_disc",
                                          np.where(X ** 2 + Y ** 2 < DISC_R ** 2, C_DISC, C))):
        res = kspaceFirstOrder(kgrid, kWaveMedium(sound_speed=speed, density=RHO), source,
                               sensor, pml_size=PML, smooth_p0=False, backend="python",
                               device="cpu", quiet=True)
        p = np.asarray(res["p"], np.float64)
        out[name] = interval_means(p, FS * SUB, 1 / FS)[:, ::SUB].astype(np.float32)
    np.savez_compressed(OUT, p0=p0.astype(np.float32), positions=pos, fs=FS, t0=0.0, c=C,
                        disc_radius=DISC_R, c_disc=C_DISC, **out,
                        kwave=getattr(kwave, "__version__", "0.6.2"))
    print(f"wrote {OUT} ({time.perf_counter() - t:.0f} s of k-Wave)")


if __name__ == "__main__":
    main()

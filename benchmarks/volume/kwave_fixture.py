"""Make ``tests/data/kwave_3d_blob16.npz``: a small 3-D k-Wave scan the test suite compares
oatomo's volume point-sensor model against (``tests/volume/test_volume_kwave.py``), so the
suite checks the 3-D model against an independent simulator without needing k-Wave.

The scan: three smooth Gaussian blobs (sigma 0.2-0.25 mm, ``BLOBS``) on oatomo's 40^3
grid at 0.1 mm (:class:`oatomo.volume.VolumeGrid` (40, 4 mm): voxel ``[k, i, j]`` at
``z, y, x = ((k, i, j) - 19.5) dx``), the same 40^3 grid in k-Wave (its point ``m`` at
``m dx`` is oatomo's ``(m + 0.5) dx``; a 10-point PML outside), homogeneous water (1500
m/s, 1000 kg/m^3), 16 point sensors on a hemisphere of radius 1.7 mm (a Fibonacci
cap, z < 0, each moved to the nearest k-Wave grid point: ``(round(p / dx - 0.5) + 0.5)
dx``), k-Wave's time step 20 ns (CFL 0.3), 120
samples at 50 MHz from t = 0, converted to oatomo's sample-interval means
(``interval_means`` of ``benchmarks/media/kwave_check.py``). The blobs are smooth enough
(their spectra at the grid's Nyquist frequency are below 1e-8 of their peak) that no smoothing is
needed: both simulators get the same sampled ``p0``, which the test rebuilds from
``BLOBS``.

Run with k-wave-python on its NumPy backend, in its own environment (about 20 s)::

    OMP_NUM_THREADS=1 /tmp/kwenv/bin/python benchmarks/volume/kwave_fixture.py

The file holds ``blobs`` (rows x, y, z, sigma, amplitude; metres), ``n``, ``dx``,
``positions`` (N, 3) in oatomo's frame, ``fs``, ``t0`` (0), ``c``, ``signals`` (N, T),
k-Wave's seconds and version.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "kwave_3d_blob16.npz"
N, DX, PML = 40, 1e-4, 10
C, RHO = 1500.0, 1000.0
FS, N_SAMPLES = 50e6, 120
N_SENSORS, RADIUS = 16, 1.7e-3
BLOBS = np.array([(-0.3e-3, 0.2e-3, 0.15e-3, 0.25e-3, 1.0),
                  (0.35e-3, -0.15e-3, -0.2e-3, 0.20e-3, 0.7),
                  (0.05e-3, 0.3e-3, -0.35e-3, 0.22e-3, 0.5)])


def phantom() -> np.ndarray:
    """The blobs on oatomo's grid, float32 [z, y, x]."""
    x = (np.arange(N) - (N - 1) / 2) * DX
    Z, Y, X = np.meshgrid(x, x, x, indexing="ij")
    p0 = sum(a * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2 + (Z - cz) ** 2) / (2 * s ** 2))
             for cx, cy, cz, s, a in BLOBS)
    return np.asarray(p0, np.float32)


def hemisphere() -> np.ndarray:
    """16 positions on the hemisphere z < 0 of radius 1.7 mm (a Fibonacci cap, equal
    areas), each moved to the nearest k-Wave grid point (oatomo's frame)."""
    k = np.arange(N_SENSORS) + 0.5
    cos_t = 1 - k / N_SENSORS  # uniform in cos(theta) over the half-sphere
    sin_t = np.sqrt(1 - cos_t ** 2)
    phi = np.pi * (3 - np.sqrt(5)) * np.arange(N_SENSORS)
    pos = RADIUS * np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), -cos_t], axis=1)
    return (np.round(pos / DX - 0.5) + 0.5) * DX


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

    spec = importlib.util.spec_from_file_location(
        "kwave_check_2d", ROOT / "benchmarks" / "media" / "kwave_check.py")
    assert spec is not None and spec.loader is not None
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)

    pos = hemisphere()
    kgrid = kWaveGrid((N,) * 3, (DX,) * 3)
    kgrid.setTime(N_SAMPLES, 1 / FS)
    source = kSource()
    source.p0 = phantom().astype(np.float64).transpose(2, 1, 0)  # [z, y, x] -> [x, y, z]
    t = time.perf_counter()
    res = kspaceFirstOrder(kgrid, kWaveMedium(sound_speed=C, density=RHO), source,
                           kSensor((pos - DX / 2).T.copy()), pml_size=PML, pml_inside=False,
                           smooth_p0=False, backend="python", device="cpu", quiet=True)
    seconds = time.perf_counter() - t
    p = np.asarray(res["p"], np.float64)
    signals = check.interval_means(p, FS).astype(np.float32)
    tmp = OUT.with_name(OUT.stem + ".tmp.npz")
    np.savez_compressed(tmp, blobs=BLOBS, n=N, dx=DX, positions=pos, fs=FS, t0=0.0, c=C,
                        signals=signals, seconds=seconds,
                        kwave=getattr(kwave, "__version__", "0.6.2"))
    tmp.replace(OUT)
    print(f"wrote {OUT} ({seconds:.0f} s of k-Wave)")


if __name__ == "__main__":
    main()

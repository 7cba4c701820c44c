"""Volume reconstruction speed: DAS, UBP, forward and adjoint per voxel-sensor pair.

One run measures, on the same volume and in one process (so the ratios are side by side):

* wall time of :func:`oatomo.volume.backproject_volume` (``das``, ``ubp``) and of
  :class:`oatomo.volume.VolumeOperator` ``forward`` (a dense volume: no zero rows to skip)
  and ``adjoint``, best of ``--repeat`` after a warm-up, in ns per voxel-sensor pair;
* the cost exponent: DAS times over a few (voxels, sensors) sizes, fitted as
  ``t ~ (voxels x sensors)^b``;
* the 2-D delay-and-sum (256^2 pixels, 256 sensors, 2030 samples) as a reference;
* peak memory of each method in a fresh child process (resident size sampled every
  millisecond, above the size after imports and compilation; the inputs are made inside
  the window), against the bytes of the volume plus the sinogram.

The signals are random numbers (the cost does not depend on them); the geometry is a
hemisphere of radius 30 mm around a cube of side ``--n`` x 0.2 mm.

Usage::

    python benchmarks/volume/speed.py --threads 2 --n 128 --sensors 512 --samples 2048
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import threading
import time
from typing import Any

import numba
import numpy as np

from oatomo import Acquisition, Grid, backproject, ring_array
from oatomo.volume import VolumeGrid, VolumeOperator, backproject_volume, hemisphere_array

PITCH = 0.2e-3


def geometry(n: int, n_sensors: int, n_samples: int):
    grid = VolumeGrid(n, n * PITCH)
    sensors = hemisphere_array(n_sensors, 0.03)
    acq = Acquisition(40e6, n_samples, speed_of_sound=1500.0, t0=10e-6)
    return grid, sensors, acq


def runner(method: str, n: int, n_sensors: int, n_samples: int):
    """A call of one method with its inputs made (float32, only those it needs)."""
    grid, sensors, acq = geometry(n, n_sensors, n_samples)
    rng = np.random.default_rng(0)
    if method == "forward":
        x = rng.random(grid.shape, dtype=np.float32) + np.float32(0.1)
        op = VolumeOperator(grid, sensors, acq)
        return lambda: op.forward(x)
    y = rng.standard_normal((n_sensors, n_samples), dtype=np.float32)
    if method == "adjoint":
        op = VolumeOperator(grid, sensors, acq)
        return lambda: op.adjoint(y)
    return lambda: backproject_volume(y, grid, sensors, acq, method)


METHODS = ("das", "ubp", "forward", "adjoint")


def best_time(f, repeat: int) -> float:
    f()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def rss() -> int:
    """Resident memory of this process now (bytes)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_extra_rss(run: Any) -> tuple[int, Any]:
    """``run()``'s result and the peak resident size above the size before (bytes), the
    resident size sampled every millisecond while it runs (after a garbage collection)."""
    gc.collect()
    base = rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)

    th = threading.Thread(target=sample)
    th.start()
    try:
        result = run()
    finally:
        done.set()
        th.join()
    return peak[0] - base, result


def child(method: str, n: int, n_sensors: int, n_samples: int) -> None:
    """Peak resident memory of one method in this (fresh) process, printed as JSON: the
    resident size sampled every millisecond while the inputs are made and the method runs,
    above the size before (after imports and compiling on a tiny problem)."""
    runner(method, 8, 4, 64)()
    extra, _ = peak_extra_rss(lambda: runner(method, n, n_sensors, n_samples)())
    print(json.dumps({"extra_bytes": extra}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--sensors", type=int, default=512)
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    numba.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.n, args.sensors, args.samples)
        return
    pairs = args.n**3 * args.sensors
    result: dict = {"threads": args.threads, "n": args.n, "sensors": args.sensors,
                    "samples": args.samples, "ns_per_pair": {}, "seconds": {}}
    for name in METHODS:
        t = best_time(runner(name, args.n, args.sensors, args.samples), args.repeat)
        result["seconds"][name] = round(t, 3)
        result["ns_per_pair"][name] = round(t / pairs * 1e9, 3)
        print(f"{name:8s} {t:8.3f} s  {t / pairs * 1e9:6.3f} ns per voxel-sensor pair",
              flush=True)
    # the 2-D delay-and-sum of docs/results/speed.rst, in the same run (shared machines)
    y2 = np.random.default_rng(0).standard_normal((256, 2030), dtype=np.float32)
    g2, s2, a2 = Grid(256, 0.0256), ring_array(256, 0.04), Acquisition(40e6, 2030)
    t2 = best_time(lambda: backproject(y2, g2, s2, a2, "das"), 5)
    result["ns_per_pair"]["das_2d"] = round(t2 / (256 * 256 * 256) * 1e9, 3)
    print(f"2-D DAS 256^2 x 256 x 2030: {t2 / 256**3 * 1e9:.3f} ns per pixel-sensor pair")
    das = result["seconds"]["das"]
    result["ratios"] = {k: round(v / das, 2) for k, v in result["seconds"].items()}
    print("ratios to DAS:", result["ratios"])
    sizes = [(32, 128), (48, 128), (64, 128), (64, 256), (80, 256), (96, 256)]
    xs, ts = [], []
    for n, s in sizes:
        t = best_time(runner("das", n, s, args.samples), args.repeat)
        xs.append(n**3 * s)
        ts.append(t)
    slope = float(np.polyfit(np.log(xs), np.log(ts), 1)[0])
    result["exponent"] = round(slope, 3)
    result["exponent_sizes"] = sizes
    print(f"DAS cost ~ (voxels x sensors)^{slope:.3f} over {sizes}")
    data_bytes = 4.0 * (args.n**3 + args.sensors * args.samples)
    result["memory_ratio"] = {}
    for name in METHODS:
        out = subprocess.run([sys.executable, __file__, "--child", name, "--n", str(args.n),
                              "--sensors", str(args.sensors), "--samples",
                              str(args.samples), "--threads", str(args.threads)],
                             capture_output=True, text=True, check=True)
        extra = json.loads(out.stdout.strip().splitlines()[-1])["extra_bytes"]
        result["memory_ratio"][name] = round(extra / data_bytes, 2)
    print("peak memory / (volume + sinogram):", result["memory_ratio"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Volume reconstruction at scale: DAS of a 256^3 volume from 1024 sensors, time and peak
memory.

One fresh process: imports and compiles on a tiny problem, then measures the resident
size every millisecond while the inputs are made and :func:`oatomo.volume.backproject_volume`
runs, above the size before; the ratio is that peak over the bytes of the float32 volume
plus the float32 sinogram. A voxels x sensors array would be 256^3 x 1024 x 4 bytes = 69
GB: the peak shows there is none. Geometry: a cube of 0.1 mm voxels (25.6 mm side) inside
a 1024-sensor hemisphere of radius 30 mm, 40 MHz, 2048 samples; random float32 signals
(the cost does not depend on them).

Usage (about 1-3 minutes on 2 cores)::

    python benchmarks/volume/scale.py --threads 2 --n 256 --sensors 1024 --samples 2048
"""

from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np
from speed import peak_extra_rss  # the same folder: the script's own path

from oatomo import Acquisition
from oatomo.volume import VolumeGrid, backproject_volume, hemisphere_array

PITCH = 0.1e-3


def run(n: int, n_sensors: int, n_samples: int, method: str) -> float:
    """Make the inputs and reconstruct; the seconds the reconstruction took."""
    grid = VolumeGrid(n, n * PITCH)
    sensors = hemisphere_array(n_sensors, 0.03)
    acq = Acquisition(40e6, n_samples, speed_of_sound=1500.0)
    y = np.random.default_rng(0).standard_normal((n_sensors, n_samples), dtype=np.float32)
    t = time.perf_counter()
    backproject_volume(y, grid, sensors, acq, method)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--sensors", type=int, default=1024)
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--method", default="das", choices=("das", "ubp"))
    args = ap.parse_args()
    numba.set_num_threads(args.threads)
    run(8, 4, 64, args.method)  # compile
    extra, seconds = peak_extra_rss(
        lambda: run(args.n, args.sensors, args.samples, args.method))
    data = 4.0 * (args.n ** 3 + args.sensors * args.samples)
    pairs = float(args.n) ** 3 * args.sensors
    print(json.dumps({"method": args.method, "n": args.n, "sensors": args.sensors,
                      "samples": args.samples, "threads": args.threads,
                      "seconds": round(seconds, 2),
                      "ns_per_pair": round(seconds / pairs * 1e9, 3),
                      "peak_extra_MB": round(extra / 1e6, 1),
                      "volume_plus_sinogram_MB": round(data / 1e6, 1),
                      "memory_ratio": round(extra / data, 2),
                      "voxels_x_sensors_GB": round(pairs * 4 / 1e9, 1)}))


if __name__ == "__main__":
    main()

"""3-D delay-and-sum against gapat's Taichi CPU kernel, side by side on the same volume.

gapat (``pip install gapat``, Taichi) runs in a separate Python environment
(``--gapat-python``), in a child process (``gapat_runner.py`` beside this file) fed the
case through an ``.npz``; oatomo runs in this process. Calls alternate (gapat, oatomo,
oatomo weighted, gapat, ...) so both see the same load on a shared machine; each side is
warmed up first (its compile time reported on its own), then ``--repeat`` calls each.

What is compared
----------------
gapat ``recon(method="das", device="cpu")``: for each voxel ``r`` and sensor ``s``,
``idx = floor(|r - r_s| fs / c) - delay`` (nearest sample below), the sample weighted by
``w = (r - r_s) . n_s / |r - r_s|^3`` (solid angle), the sum divided by ``sum_s w``.
oatomo :func:`oatomo.volume.backproject_volume` ``"das"``: the unweighted sum of the
samples at ``|r - r_s| / c - t0``, linearly interpolated; ``"ubp"`` runs the same kernel
weighted by the solid angle ``max(cos, 0) / d^2`` and divided by the weights' sum (plus
the UBP filter of the signals, O(sensors x samples)): per pair the closer match to what
gapat's "das" computes. Both use sample ``k`` at time ``t0 + k / fs`` (gapat's ``delay``
= ``t0 fs``; here ``t0 = 0``), and the same voxel centres (gapat's
``x_start + i res`` = oatomo's ``(i - (n-1)/2) dx``; gapat's axes are (x, y, z), oatomo's
(z, y, x)). A point-source check first: Gaussian pulses at each sensor's delay from one
voxel; both volumes must peak on that voxel.

Compile: the first call of each code in its process, on the point-source case (gapat
into an empty Taichi offline cache; oatomo's Numba kernels compile unless their cache,
``NUMBA_CACHE_DIR``, already holds them). Times: gapat's kernel alone (Taichi's kernel
profiler) and its whole call (``ti.init``, kernel definition, compile or offline-cache
load, kernel: gapat defines and compiles its kernel inside every call); oatomo's whole
call. Best and median of the repeats, in ns
per voxel-sensor pair. Signals are random float32 (the cost does not depend on them);
the geometry is a hemisphere of radius 30 mm around a cube of side ``n`` x 0.2 mm.

Usage::

    NUMBA_NUM_THREADS=2 NUMBA_CACHE_DIR=$(mktemp -d) PYTHONPATH=. .venv/bin/python \\
        benchmarks/volume/gapat_compare.py --gapat-python /tmp/gapenv/bin/python \\
        --threads 2 --repeat 5 --case 64,256,1024 --case 64,512,2048 \\
        --case 128,256,1024 --case 128,512,2048
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from oatomo import Acquisition
from oatomo.volume import VolumeGrid, backproject_volume, hemisphere_array

PITCH = 0.2e-3
RADIUS = 0.03
C = 1500.0
RUNNER = Path(__file__).with_name("gapat_runner.py")


def geometry(n: int, n_sensors: int, n_samples: int):
    """Grid, sensors and acquisition; ``fs`` scales with the samples so that every
    delay (up to 52 mm at 128^3) lies inside the record for both codes (gapat does not
    clip indices below 0, so ``t0 = 0``)."""
    grid = VolumeGrid(n, n * PITCH)
    sensors = hemisphere_array(n_sensors, RADIUS)
    acq = Acquisition(40e6 * n_samples / 2048, n_samples, speed_of_sound=C, t0=0.0)
    far = RADIUS + np.sqrt(3) * n * PITCH / 2
    if far * acq.fs / C >= n_samples - 2:
        raise SystemExit(f"case {n},{n_sensors},{n_samples}: delays run past the record")
    return grid, sensors, acq


def write_case(path: Path, signals: np.ndarray, grid, sensors, acq) -> None:
    """The case in gapat's terms (its ranges give the same voxel centres as ``grid``)."""
    lo = [float(a[0]) for a in (grid.x, grid.y, grid.z)]
    n = grid.shape[::-1]
    np.savez(path, signals=signals.astype(np.float32),
             positions=sensors.positions.astype(np.float32),
             normals=sensors.normals.astype(np.float32),
             x_range=[lo[0], lo[0] + n[0] * grid.dx], y_range=[lo[1], lo[1] + n[1] * grid.dx],
             z_range=[lo[2], lo[2] + n[2] * grid.dx], res=grid.dx, vs=C, fs=acq.fs,
             delay=int(round(acq.t0 * acq.fs)))


class Gapat:
    """The gapat child process, one call per ``run``."""

    def __init__(self, python: str, case: Path, threads: int, cache: str) -> None:
        env = dict(os.environ, TI_CPU_MAX_NUM_THREADS=str(threads), TI_KERNEL_PROFILER="1",
                   TI_OFFLINE_CACHE_FILE_PATH=cache, TI_LOG_LEVEL="warn")
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen([python, str(RUNNER), str(case)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def call(self, cmd: str = "run") -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:  # Taichi prints its own lines on stdout too
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        raise SystemExit(f"gapat runner stopped (exit {self.proc.wait()})")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()


def point_check(python: str, threads: int, tmp: Path) -> dict:
    """Gaussian pulses from one off-centre voxel: where each code puts the peak."""
    grid, sensors, acq = geometry(64, 256, 1024)
    src = (40, 23, 37)  # (k, i, j)
    r = np.array([grid.x[src[2]], grid.y[src[1]], grid.z[src[0]]])
    d = np.linalg.norm(sensors.positions - r, axis=1)
    t = acq.t0 + np.arange(acq.n_samples) / acq.fs
    sigma = 1.5 / acq.fs
    y = np.exp(-0.5 * ((t[None, :] - d[:, None] / C) / sigma) ** 2).astype(np.float32)
    case = tmp / "point.npz"
    write_case(case, y, grid, sensors, acq)
    g = Gapat(python, case, threads, str(tmp / "ticache-point"))
    first = g.call(f"save {tmp / 'point_gapat.npy'}")
    g.close()
    vg = np.load(tmp / "point_gapat.npy").transpose(2, 1, 0)  # (x, y, z) -> (z, y, x)
    # the first calls of each code in its process: compile (or cache load) included
    out = {"source": src, "gapat_first_call_s": round(first["wall"], 3),
           "gapat_first_kernel_s": round(first["kernel"], 3)}
    for method in ("das", "ubp"):
        t = time.perf_counter()
        v = backproject_volume(y, grid, sensors, acq, method)
        out[f"oatomo_{method}_first_call_s"] = round(time.perf_counter() - t, 3)
        out[f"oatomo_{method}_peak"] = [int(a) for a in np.unravel_index(np.argmax(v), v.shape)]
        out[f"corr_gapat_oatomo_{method}"] = round(float(np.corrcoef(v.ravel(),
                                                                       vg.ravel())[0, 1]), 4)
    out["gapat_peak"] = [int(a) for a in np.unravel_index(np.argmax(vg), vg.shape)]
    return out


def timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def compare(python: str, threads: int, n: int, n_sensors: int, n_samples: int, repeat: int,
            tmp: Path) -> dict:
    grid, sensors, acq = geometry(n, n_sensors, n_samples)
    y = np.random.default_rng(0).standard_normal((n_sensors, n_samples), dtype=np.float32)
    case = tmp / f"case{n}.npz"
    write_case(case, y, grid, sensors, acq)
    pairs = grid.n_voxels * n_sensors
    g = Gapat(python, case, threads, str(tmp / f"ticache{n}"))
    first = g.call()  # cold: Taichi compiles into an empty offline cache
    if first["threads"] != threads or first["shape"] != list(grid.shape[::-1]):
        raise SystemExit(f"gapat ran with {first['threads']} threads, shape {first['shape']}")
    das = lambda: backproject_volume(y, grid, sensors, acq, "das")  # noqa: E731
    ubp = lambda: backproject_volume(y, grid, sensors, acq, "ubp")  # noqa: E731
    o_first = {"das": timed(das), "ubp": timed(ubp)}
    rows: dict[str, list[float]] = {"gapat_kernel": [], "gapat_call": [], "oatomo_das": [],
                                    "oatomo_ubp": []}
    for _ in range(repeat):
        r = g.call()
        rows["gapat_kernel"].append(r["kernel"])
        rows["gapat_call"].append(r["wall"])
        rows["oatomo_das"].append(timed(das))
        rows["oatomo_ubp"].append(timed(ubp))
    g.close()
    res: dict = {"n": n, "sensors": n_sensors, "samples": n_samples, "fs": acq.fs,
                 "threads": threads, "repeat": repeat,
                 "gapat_first_call_s": round(first["wall"], 3),
                 "gapat_first_kernel_s": round(first["kernel"], 3),
                 "oatomo_first_call_s": {k: round(v, 3) for k, v in o_first.items()},
                 "seconds": {k: [round(v, 3) for v in vs] for k, vs in rows.items()},
                 "ns_per_pair_best": {}, "ns_per_pair_median": {}}
    for k, vs in rows.items():
        res["ns_per_pair_best"][k] = round(min(vs) / pairs * 1e9, 3)
        res["ns_per_pair_median"][k] = round(statistics.median(vs) / pairs * 1e9, 3)
    b = res["ns_per_pair_best"]
    m = res["ns_per_pair_median"]
    res["ratio_best"] = {"gapat_kernel/oatomo_das": round(b["gapat_kernel"] / b["oatomo_das"], 2),
                         "gapat_kernel/oatomo_ubp": round(b["gapat_kernel"] / b["oatomo_ubp"], 2),
                         "gapat_call/oatomo_das": round(b["gapat_call"] / b["oatomo_das"], 2)}
    res["ratio_median"] = {"gapat_kernel/oatomo_das": round(m["gapat_kernel"] / m["oatomo_das"],
                                                            2),
                           "gapat_kernel/oatomo_ubp": round(m["gapat_kernel"] / m["oatomo_ubp"],
                                                            2)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gapat-python", default="/tmp/gapenv/bin/python",
                    help="Python of an environment with gapat installed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--case", action="append", default=None,
                    help="n,sensors,samples (repeatable; default 64,256,1024)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    numba.set_num_threads(args.threads)
    cases = [tuple(int(v) for v in c.split(",")) for c in (args.case or ["64,256,1024"])]
    with tempfile.TemporaryDirectory(prefix="gapat-compare-") as d:
        tmp = Path(d)
        point = point_check(args.gapat_python, args.threads, tmp)
        print("point source:", json.dumps(point), flush=True)
        results = [point]
        for n, s, t in cases:
            res = compare(args.gapat_python, args.threads, n, s, t, args.repeat, tmp)
            print(json.dumps(res), flush=True)
            results.append(res)


if __name__ == "__main__":
    main()

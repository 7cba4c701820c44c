"""Runs gapat's 3-D reconstruction on the case written by ``gapat_compare.py``.

Run by ``gapat_compare.py`` under the Python of a separate environment that has gapat
(and Taichi) installed; it imports nothing from oatomo. Arguments: the ``.npz`` case.
Then one command per line on stdin, one line ``RESULT <json>`` per command on stdout
(Taichi prints lines of its own there):

* ``run``: one call of ``gapat.algorithms.recon(..., method="das", device="cpu")``;
  answers ``{"wall": s, "kernel": s}``: the wall time of the call (``ti.init``, the kernel
  definition and compilation or its cache load, the kernel) and the kernel's own time
  from Taichi's kernel profiler;
* ``save PATH``: the same call, the volume saved to ``PATH`` (.npy, gapat's (x, y, z) axes);
* ``quit``.

The thread count and the profiler are set through Taichi's environment variables
(``TI_CPU_MAX_NUM_THREADS``, ``TI_KERNEL_PROFILER=1``), which ``ti.init`` reads: gapat's
own ``ti.init(arch=ti.cpu)`` is left as it is.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import taichi as ti
from gapat.algorithms import recon


def main() -> None:
    case = np.load(sys.argv[1])
    args = dict(
        signal_backproj=np.ascontiguousarray(case["signals"], dtype=np.float32),
        detector_location=np.ascontiguousarray(case["positions"], dtype=np.float32),
        detector_normal=np.ascontiguousarray(case["normals"], dtype=np.float32),
        x_range=[float(v) for v in case["x_range"]],
        y_range=[float(v) for v in case["y_range"]],
        z_range=[float(v) for v in case["z_range"]],
        res=float(case["res"]), vs=float(case["vs"]), fs=float(case["fs"]),
        delay=int(case["delay"]), method="das", device="cpu",
    )
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        t = time.perf_counter()
        vol = recon(**args)
        wall = time.perf_counter() - t
        kernel = ti.profiler.get_kernel_profiler_total_time()
        if cmd[0] == "save":
            np.save(cmd[1], vol)
        threads = ti.lang.impl.current_cfg().cpu_max_num_threads
        print("RESULT " + json.dumps({"wall": wall, "kernel": kernel, "threads": threads,
                          "shape": list(vol.shape)}), flush=True)


if __name__ == "__main__":
    main()

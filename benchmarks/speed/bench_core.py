"""Core speed benchmark: DAS, UBP, multi-frame DAS, forward model, against references.

Sizes: 256 x 256 pixels at 0.1 mm, 256-sensor ring of radius 40 mm, 40 MHz,
2030 samples. Every figure is the median of several runs, and each comparison is a
*ratio* against a reference measured in the same run (these machines are noisy).

References:
- a NumPy DAS (loop over sensors, vectorised over pixels, linear interpolation);
- PATATO 0.7's JAX reference backprojection, run in a subprocess with the interpreter
  given by ``PATATO_PYTHON`` (default: the current one, then /tmp/venvpatato/bin/python);
  skipped with a message when PATATO cannot be imported;
- Numba's cache: first call in a fresh process with an empty cache vs a second process.

Run: ``.venv/bin/python benchmarks/speed/bench_core.py`` (``--quick`` for fewer repeats).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

N_PIX, N_SENS, N_T, FS, RADIUS = 256, 256, 2030, 40e6, 0.040


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up (compilation, caches)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def numpy_das(sino, grid, sensors, acq):
    X, Y = grid.coordinates()
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    img = np.zeros(grid.shape, np.float32)
    idx = np.arange(sino.shape[1], dtype=np.float32)
    for s, (sx, sy) in enumerate(sensors.positions.astype(np.float32)):
        tau = np.hypot(X - sx, Y - sy) * np.float32(acq.fs / acq.speed_of_sound)
        img += np.interp(tau, idx, sino[s], left=0.0, right=0.0).astype(np.float32)
    return img


PATATO_SNIPPET = r"""
import json, sys, time
import numpy as np
from patato.recon.backprojection_reference import ReferenceBackprojection
d = np.load(sys.argv[1])
sino, geom = d["sino"], d["geom"]
n, fov, fs, c = int(d["n"]), float(d["fov"]), float(d["fs"]), float(d["c"])
rec = ReferenceBackprojection([n, n, 1], [fov, fov, 0])
run = lambda: np.asarray(rec.reconstruct(sino[None], fs, geom, [n, n, 1], [fov, fov, 0], c))
out = run()
ts = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); run(); ts.append(time.perf_counter() - t)
import patato
print(json.dumps({"median_s": float(np.median(ts)), "version": patato.__version__,
                  "shape": list(out.shape)}))
"""


def patato_time(sino, sensors, grid, acq, repeats):
    candidates = [os.environ.get("PATATO_PYTHON"), sys.executable,
                  "/tmp/venvpatato/bin/python"]
    for py in [c for c in candidates if c and Path(c).exists()]:
        ok = subprocess.run([py, "-c", "import patato"], capture_output=True)
        if ok.returncode != 0:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "in.npz"
            geom = np.concatenate([sensors.positions, np.zeros((sensors.n_sensors, 1))], 1)
            np.savez(f, sino=sino, geom=geom, n=grid.n, fov=grid.fov, fs=acq.fs,
                     c=acq.speed_of_sound)
            proc = subprocess.run([py, "-c", PATATO_SNIPPET, str(f), str(repeats)],
                                  capture_output=True, text=True, env={**os.environ,
                                                                       "JAX_PLATFORMS": "cpu"})
        if proc.returncode == 0:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return {"error": "PATATO is not installed (pip install 'oatomo[bench]' or set "
                     "PATATO_PYTHON)"}


COLD_SNIPPET = r"""
import time, numpy as np
t = time.perf_counter()
from oatomo import Grid, Acquisition, ring_array
from oatomo.recon.backprojection import backproject
from oatomo.forward import simulate
g = Grid(64, 0.0064); s = ring_array(32, 0.02); a = Acquisition(20e6, 512)
y = simulate(np.ones(g.shape, np.float32), g, s, a)
backproject(y, g, s, a, method="das"); backproject(y, g, s, a, method="ubp")
print(time.perf_counter() - t)
"""


def numba_cache_times():
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        times = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", COLD_SNIPPET], env=env,
                                 capture_output=True, text=True, check=True)
            times.append(float(out.stdout.strip().splitlines()[-1]))
    return times


def run(quick: bool = False) -> list[dict]:
    """Measure everything; rows of dicts (name, value, unit, reference, ratio, target, ok)."""
    from oatomo import Acquisition, Grid, ring_array
    from oatomo.forward import ForwardOperator
    from oatomo.phantoms import vessels
    from oatomo.recon.backprojection import backproject

    reps = 3 if quick else 9
    grid = Grid(N_PIX, 0.0256)
    sensors = ring_array(N_SENS, RADIUS)
    acq = Acquisition(FS, N_T)
    p0 = vessels(grid, 0)
    op = ForwardOperator(grid, sensors, acq)
    sino = op.forward(p0)
    pairs = N_PIX * N_PIX * N_SENS
    rows = []

    t_das = median_time(lambda: backproject(sino, grid, sensors, acq, method="das"), reps)
    ns = t_das / pairs * 1e9
    rows.append(dict(name="DAS 256²×256×2030", value=t_das * 1e3, unit="ms",
                     reference="ns per pixel-sensor pair", ratio=ns, target="≤ 1.0 ns",
                     ok=ns <= 1.0))
    t_ubp = median_time(lambda: backproject(sino, grid, sensors, acq, method="ubp"), reps)
    rows.append(dict(name="UBP 256²×256×2030", value=t_ubp * 1e3, unit="ms",
                     reference="DAS", ratio=t_ubp / t_das, target="", ok=True))
    frames = np.stack([sino * (1 + 0.1 * k) for k in range(16)])
    t_mf = median_time(lambda: backproject(frames, grid, sensors, acq, method="das"),
                       max(2, reps // 3))
    ns_f = t_mf / (pairs * 16) * 1e9
    rows.append(dict(name="DAS 16 frames", value=t_mf * 1e3, unit="ms",
                     reference="ns per pixel-sensor-frame", ratio=ns_f, target="≤ 0.4 ns",
                     ok=ns_f <= 0.4))
    t_fwd = median_time(lambda: op.forward(p0), reps)
    rows.append(dict(name="forward model", value=t_fwd * 1e3, unit="ms", reference="DAS",
                     ratio=t_fwd / t_das, target="≤ 5× DAS", ok=t_fwd / t_das <= 5))
    t_adj = median_time(lambda: op.adjoint(sino), reps)
    rows.append(dict(name="adjoint (Aᵀ)", value=t_adj * 1e3, unit="ms", reference="DAS",
                     ratio=t_adj / t_das, target="", ok=True))
    t_np = median_time(lambda: numpy_das(sino, grid, sensors, acq), max(2, reps // 3))
    rows.append(dict(name="NumPy DAS (same algorithm)", value=t_np * 1e3, unit="ms",
                     reference="oatomo DAS", ratio=t_np / t_das, target="", ok=True))
    pat = patato_time(sino, sensors, grid, acq, max(2, reps // 3))
    if "error" in pat:
        rows.append(dict(name="PATATO JAX reference DAS", value=float("nan"), unit="ms",
                         reference="skipped", ratio=float("nan"), target="≥ 10× slower",
                         ok=None, note=pat["error"]))
    else:
        r = pat["median_s"] / t_das
        rows.append(dict(name=f"PATATO {pat['version']} JAX reference DAS",
                         value=pat["median_s"] * 1e3, unit="ms", reference="oatomo DAS",
                         ratio=r, target="≥ 10× slower than oatomo", ok=r >= 10))
    cold, warm = numba_cache_times()
    rows.append(dict(name="first process (empty Numba cache)", value=cold * 1e3, unit="ms",
                     reference="second process", ratio=cold / warm, target="", ok=True))
    rows.append(dict(name="second process (cache reused)", value=warm * 1e3, unit="ms",
                     reference="", ratio=float("nan"), target="", ok=True))
    return rows


def to_markdown(rows: list[dict]) -> str:
    lines = ["| measurement | median | unit | ratio | vs | target | met |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ok = {True: "yes", False: "**no**", None: "n/a"}[r["ok"]]
        ratio = "" if r["ratio"] != r["ratio"] else f"{r['ratio']:.3g}"
        val = "—" if r["value"] != r["value"] else f"{r['value']:.4g}"
        lines.append(f"| {r['name']} | {val} | {r['unit']} | {ratio} | {r['reference']} | "
                     f"{r['target']} | {ok} |")
        if r.get("note"):
            lines.append(f"| ↳ {r['note']} | | | | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(to_markdown(run(quick="--quick" in sys.argv)))

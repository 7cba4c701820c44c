"""Run every benchmark and rewrite benchmarks/latest.md, the output of the last run.

``make bench`` calls this. The part between ``<!-- BEGIN GENERATED -->`` and
``<!-- END GENERATED -->`` is rewritten; the rest of the file is kept. The documentation
shows the file (docs/results/speed.rst); the results of long runs (Colored MNIST, model
training, calibration) are in docs/results with the commands that reproduce them.

Every figure is a median of several runs and every comparison a ratio against a reference
measured in the same run. Peak memory is measured per case in a fresh process
(``tracemalloc`` peak of the arrays allocated by the call, inputs excluded; Numba's
per-row scratch buffers of a few KiB are not counted).

Options: ``--quick`` (fewer repeats, smaller scaling sweep), ``--print`` (do not write),
``--sweeps N`` (the scaling sweep N times after a warm-up, each cell the median),
``--scaling-only`` (the scaling sweep alone, printed).
"""

from __future__ import annotations

import importlib.util
import json
import platform
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
RESULTS = HERE / "latest.md"
BEGIN, END = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"


def _load(name: str):
    """The benchmark module ``benchmarks/<name>.py`` (``name`` is ``topic/module``)."""
    spec = importlib.util.spec_from_file_location(Path(name).name, HERE / f"{name}.py")
    if spec is None or not (HERE / f"{name}.py").exists():
        return None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


# -- peak memory of one case, in a fresh process ------------------------------------------

MEMORY_CASES = ("das", "ubp", "forward", "adjoint", "numpy-das")


def _memory_case(case: str) -> None:
    from oatomo import Acquisition, Grid, ring_array
    from oatomo.forward import ForwardOperator
    from oatomo.recon.backprojection import backproject

    grid, sensors, acq = Grid(256, 0.0256), ring_array(256, 0.04), Acquisition(40e6, 2030)
    op = ForwardOperator(grid, sensors, acq)
    x = np.random.default_rng(0).random(grid.shape).astype(np.float32)
    y = np.random.default_rng(1).standard_normal((256, 2030)).astype(np.float32)
    def call() -> None:
        if case == "numpy-das":
            _load("speed/bench_core").numpy_das(y, grid, sensors, acq)
        elif case == "forward":
            op.forward(x)
        elif case == "adjoint":
            op.adjoint(y)
        else:
            backproject(y, grid, sensors, acq, method=case)

    call()  # load compiled kernels from the cache before measuring
    tracemalloc.start()
    call()
    peak = tracemalloc.get_traced_memory()[1]
    print(json.dumps({"case": case, "peak_mib": peak / 2**20}))


def memory_rows() -> list[dict]:
    rows = []
    for case in MEMORY_CASES:
        # warm the Numba cache first so compilation does not count
        for _ in range(2):
            out = subprocess.run([sys.executable, __file__, "--memory-case", case],
                                 capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(dict(name=f"peak memory above baseline: {case}", value=res["peak_mib"],
                         unit="MiB", reference="", ratio=float("nan"), target="", ok=True))
    return rows


# -- scaling -------------------------------------------------------------------------------

def _fit_exponent(xs: list[float], ts: list[float]) -> float:
    return float(np.polyfit(np.log(xs), np.log(ts), 1)[0])


def scaling_rows(quick: bool, sweeps: int = 1) -> tuple[list[dict], str]:
    """DAS and forward times against the image side and the sensor count; with ``sweeps``
    above 1, one warm-up sweep and then each cell the median over ``sweeps`` sweeps (a
    busy machine moves single cells by up to 1.5x)."""
    from oatomo import Acquisition, Grid, SensorArray, ring_array
    from oatomo.forward import ForwardOperator
    from oatomo.recon.backprojection import backproject

    bench_core = _load("speed/bench_core")
    reps = 3 if quick else 5
    sizes = [64, 128, 256] if quick else [64, 128, 256, 512]
    counts = [32, 128, 512] if quick else [32, 64, 128, 256, 512, 1024]
    acq = Acquisition(40e6, 2030)

    def cell(grid: Grid, sensors: SensorArray) -> tuple[float, float]:
        """DAS and forward times (s) of random records and a random image."""
        y = np.random.default_rng(0).standard_normal(
            (sensors.n_sensors, 2030)).astype(np.float32)
        op = ForwardOperator(grid, sensors, acq)
        x = np.random.default_rng(0).random(grid.shape).astype(np.float32)
        return (bench_core.median_time(lambda: backproject(y, grid, sensors, acq), reps),
                bench_core.median_time(lambda: op.forward(x), reps))

    def sweep() -> np.ndarray:
        """(2, len(sizes) + len(counts)) DAS and forward times (s)."""
        return np.array([cell(Grid(n, n * 1e-4), ring_array(256, 0.04)) for n in sizes]
                        + [cell(Grid(256, 0.0256), ring_array(ns, 0.04))
                           for ns in counts]).T

    if sweeps > 1:
        sweep()  # warm-up: compilation and caches
    times = np.median([sweep() for _ in range(max(1, sweeps))], axis=0)
    k = len(sizes)
    t_das_n, t_fwd_n = list(times[0, :k]), list(times[1, :k])
    t_das_s, t_fwd_s = list(times[0, k:]), list(times[1, k:])
    lines = ["| sweep | value | DAS ms | forward ms |", "|---|---|---|---|"]
    lines += [f"| image side (256 sensors) | {n} | {a * 1e3:.3g} | {b * 1e3:.3g} |"
              for n, a, b in zip(sizes, t_das_n, t_fwd_n, strict=True)]
    lines += [f"| sensors (256² image) | {n} | {a * 1e3:.3g} | {b * 1e3:.3g} |"
              for n, a, b in zip(counts, t_das_s, t_fwd_s, strict=True)]
    pixels = [n * n for n in sizes]
    rows = [
        dict(name="DAS time vs pixel count: fitted exponent", value=_fit_exponent(pixels, t_das_n),
             unit="", reference="", ratio=float("nan"), target="", ok=True),
        dict(name="forward time vs pixel count: fitted exponent",
             value=_fit_exponent(pixels, t_fwd_n), unit="", reference="", ratio=float("nan"),
             target="", ok=True),
        dict(name="DAS time vs sensor count: fitted exponent", value=_fit_exponent(counts, t_das_s),
             unit="", reference="", ratio=float("nan"), target="", ok=True),
        dict(name="forward time vs sensor count: fitted exponent",
             value=_fit_exponent(counts, t_fwd_s), unit="", reference="", ratio=float("nan"),
             target="", ok=True),
    ]
    return rows, "\n".join(lines)


# -- end to end ----------------------------------------------------------------------------

def end_to_end_times(cmd: list[str], ref_cmd: list[str], reps: int
                     ) -> tuple[list[float], list[float]]:
    """Wall times of ``cmd`` and ``ref_cmd`` run alternately (one warm-up pair dropped)."""
    def once(c: list[str]) -> float:
        t = time.perf_counter()
        subprocess.run(c, check=True, capture_output=True)
        return time.perf_counter() - t

    pairs = [(once(cmd), once(ref_cmd)) for _ in range(reps + 1)][1:]
    return [a for a, _ in pairs], [b for _, b in pairs]


def end_to_end_rows(reps: int) -> list[dict]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        scan = Path(tmp) / "scan.h5"
        subprocess.run([sys.executable, "-m", "oatomo", "simulate", "--setup", "ring32_r22",
                        "--phantom", "vessels", "--seed", "1", "-o", str(scan)], check=True,
                       capture_output=True)

        torch_cmd = [sys.executable, "-c", "import torch"]
        rec_cmd = [sys.executable, "-m", "oatomo", "reconstruct", str(scan), "-o",
                   str(Path(tmp) / "img.h5"), "--force", "--method", "ubp", "--refine"]
        rec_ts, torch_ts = end_to_end_times(rec_cmd, torch_cmd, reps)
    ratio = float(np.median(np.asarray(rec_ts) / np.asarray(torch_ts)))
    t_rec, t_torch = float(np.median(rec_ts)), float(np.median(torch_ts))
    return [dict(name="`oatomo reconstruct --refine` end to end (ring32 scan, UBP, refined, "
                 "PNG; median of interleaved pairs)",
                 value=t_rec * 1e3, unit="ms", reference="`python -c 'import torch'`",
                 ratio=ratio, target="≤ 2×", ok=ratio <= 2.0),
            dict(name="`python -c 'import torch'` (the floor of a PyTorch CLI)",
                 value=t_torch * 1e3, unit="ms", reference="", ratio=float("nan"), target="",
                 ok=True)]


def machine() -> str:
    import numba
    import scipy

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch
        tv = torch.__version__
    except ImportError:
        tv = "not installed"
    return (f"{platform.machine()} {cpu}, {numba.config.NUMBA_NUM_THREADS} Numba threads; "
            f"Python {platform.python_version()}, NumPy {np.__version__}, Numba "
            f"{numba.__version__}, SciPy {scipy.__version__}, PyTorch {tv}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--memory-case"]:
        _memory_case(argv[1])
        return 0
    quick = "--quick" in argv
    sweeps = int(argv[argv.index("--sweeps") + 1]) if "--sweeps" in argv else 1
    bench_core = _load("speed/bench_core")
    to_md = bench_core.to_markdown
    if "--scaling-only" in argv:  # the sweep alone, printed
        rows, table = scaling_rows(quick, sweeps)
        print(table + "\n\n" + to_md(rows))
        return 0
    loadavg = Path("/proc/loadavg")
    load = loadavg.read_text().split()[0] if loadavg.exists() else "n/a"
    parts = [BEGIN, "", f"Generated by `make bench` on {time.strftime('%Y-%m-%d %H:%M')}: "
             f"{machine()}. Load average before the run: {load}.", ""]
    sections = [("Core: DAS, UBP, frames, forward model vs NumPy and PATATO",
                 lambda: bench_core.run(quick))]
    bench_mb = _load("physics/bench_mb")
    if bench_mb is not None:
        sections.append(("Model-based reconstruction", lambda: bench_mb.run(quick)))
    bench_learn = _load("refinement/bench_learn")
    if bench_learn is not None:
        sections.append(("Learning: inference and training throughput",
                         lambda: bench_learn.run(quick)))
    bench_refiner = _load("refinement/bench_refiner")
    if bench_refiner is not None:
        sections.append(("Refiner: a 256² image against one DAS",
                         lambda: bench_refiner.run(quick=quick)))
    sections.append(("Peak memory (fresh process per case)", memory_rows))
    sections.append(("End to end", lambda: end_to_end_rows(3 if quick else 5)))
    for title, fn in sections:
        t = time.perf_counter()
        rows = fn()
        parts += [f"### {title}", "", to_md(rows), "",
                  f"_(section took {time.perf_counter() - t:.0f} s)_", ""]
        print(f"done: {title}", file=sys.stderr)
    rows, table = scaling_rows(quick, sweeps)
    parts += ["### Scaling", "", table, "", to_md(rows), ""]
    parts.append(END)
    text = "\n".join(parts)
    if "--print" in argv:
        print(text)
        return 0
    old = RESULTS.read_text() if RESULTS.exists() else "# The last `make bench` run\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + text + old[old.index(END) + len(END):]
    else:
        new = old.rstrip() + "\n\n## Generated by `make bench`\n\n" + text + "\n"
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(new)
    tmp.replace(RESULTS)
    print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

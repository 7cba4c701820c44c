"""The TV of a self-calibrated scan: solver variants measured and not adopted.

The default's TV after calibration (:func:`oatomo.pipeline.policy.warm_start`) is monotone
FISTA started at the calibration's last image. On the tuning scans its disks and textures
are still converging after 85 iterations (``warm_stall.py``). Two standard ways to converge
faster, each scored (registered PSNR, as ``heldout_default.py``) at several iteration
counts against the default's 85 iterations, the calibration computed once per scan:

* ``fn<k>`` / ``grad<k>``: FISTA with adaptive restart (O'Donoghue & Candes 2015) --
  the momentum reset when the objective rises (``fn``) or when the step and the momentum
  point apart (``grad``) -- ``k`` iterations;
* ``coarse<c>+<k>``: ``c`` TV iterations on the half-resolution grid first (the start
  block-averaged, the coarse correction interpolated back and added, a quarter of the
  work per iteration), then ``k`` on the image grid.

Tuning set: ``joint_gauss_newton.py``'s four arrays and four phantom kinds, seed 2000.
Run::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/calibration/warm_tv_variants.py \\
        --out benchmarks/calibration/warm_tv_variants.json
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import zoom

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402
import joint_gauss_newton as G  # noqa: E402

import oatomo  # noqa: E402
import oatomo.pipeline.policy as P  # noqa: E402
import oatomo.recon.model_based as MB  # noqa: E402
from oatomo._atomic import atomic_path  # noqa: E402
from oatomo.forward import ForwardOperator  # noqa: E402
from oatomo.geometry import Grid  # noqa: E402

VARIANTS = ("mfista85", "mfista60", "mfista50", "fn85", "fn70", "fn60", "fn50", "grad85",
            "grad60", "grad50", "coarse40+50", "coarse40+60", "coarse80+50")
_TV = MB._tv


def restarted_tv(op: Any, y: np.ndarray, lam: float, n_iter: int, nonneg: bool,
                 x0: np.ndarray | None, tol: float, on_iteration: Any,
                 record: dict[str, Any], ynorm: float, norm_sq: float | None = None,
                 stall_tol: float = 0.0, *, mode: str = "fn") -> np.ndarray:
    """Monotone FISTA as :func:`oatomo.recon.model_based._tv`, with adaptive restart."""
    lip = 1.05 * (MB.operator_norm_sq_of(op) if norm_sq is None else norm_sq)
    mu = lam / lip
    x = np.zeros(op.grid.shape, np.float32) if x0 is None else np.maximum(x0, 0)
    ax = op.forward(x)

    def objective(ax_: np.ndarray, x_: np.ndarray) -> float:
        return 0.5 * MB.vector_norm((ax_ - y).astype(np.float64)) ** 2 + lam * MB.tv_norm(x_)

    f_x = objective(ax, x)
    x_prev, ax_prev, v, av, t = x, ax, x, ax, 1.0
    dual = tuple(np.zeros(op.grid.shape, np.float32) for _ in op.grid.shape)
    for k in range(1, n_iter + 1):
        grad = op.adjoint(av - y)
        z = MB.tv_prox(v - grad / lip, mu, nonneg=nonneg, n_inner=MB.TV_INNER, dual=dual)
        az = op.forward(z)
        f_z = objective(az, z)
        x_prev, ax_prev = x, ax
        restart = f_z > f_x
        if not restart:
            if mode == "grad":
                restart = float(np.vdot((v - z).astype(np.float64), z - x)) > 0
            x, ax, f_x = z, az, f_z
        if restart:
            t, v, av, x_prev, ax_prev = 1.0, x, ax, x, ax
        else:
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            a, b = t / t_new, (t - 1) / t_new
            v = (x + a * (z - x) + b * (x - x_prev)).astype(np.float32)
            av = (ax + a * (az - ax) + b * (ax - ax_prev)).astype(np.float32)
            t = t_new
        record["objective"].append(f_x)
        record["residual"].append(0.0)
        record["n_iter"] = k
    return x


def coarse_started_tv(op: Any, y: np.ndarray, lam: float, n_iter: int, nonneg: bool,
                      x0: np.ndarray | None, tol: float, on_iteration: Any,
                      record: dict[str, Any], ynorm: float, norm_sq: float | None = None,
                      stall_tol: float = 0.0, *, coarse: int = 40) -> np.ndarray:
    """``coarse`` TV iterations on the half-resolution grid, their correction added to
    the start, then the TV on the image grid."""
    if x0 is not None:
        g = op.grid
        opc = ForwardOperator(Grid(g.n // 2, g.fov), op.sensors, op.acquisition,
                              thickness=op.thickness, response=op.response)
        xc0 = x0.reshape(g.n // 2, 2, g.n // 2, 2).mean(axis=(1, 3)).astype(np.float32)
        rc: dict[str, Any] = {"residual": [], "objective": [], "n_iter": 0}
        xc = _TV(opc, y, lam, coarse, nonneg, xc0, 0.0, None, rc, ynorm, None)
        x0 = np.maximum(x0 + zoom((xc - xc0).astype(np.float64), 2, order=1),
                        0).astype(np.float32)
    return _TV(op, y, lam, n_iter, nonneg, x0, tol, on_iteration, record, ynorm, norm_sq)


def run(case: Any, variant: str) -> float:
    """The registered PSNR of the default's TV after calibration under ``variant``."""
    m = re.fullmatch(r"(mfista|fn|grad)(\d+)|coarse(\d+)\+(\d+)", variant)
    if m is None:
        raise SystemExit(f"unknown variant {variant!r}")
    if m[1] in ("fn", "grad"):
        MB._tv = lambda *a, **k: restarted_tv(*a, mode=m[1], **k)
    elif m[3]:
        MB._tv = lambda *a, **k: coarse_started_tv(*a, coarse=int(m[3]), **k)
    iters = int(m[2] or m[4])
    try:
        rec = oatomo.reconstruct(case.scan, "mb-tv", grid=case.grid, calibrate=True,
                                 refine=False, iters=iters)
    finally:
        MB._tv = _TV
    return H.register(np.asarray(rec.image, np.float64), case.truth)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=2000)
    ap.add_argument("--geometries", default=",".join(G.TUNING_GEOMETRIES))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    a = ap.parse_args(argv)
    out = Path(a.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    calibrate, kept = P.calibrate_scan, {}

    def once(scan: Any, grid: Any, **kw: Any) -> Any:  # one calibration per scan
        if id(scan) not in kept:
            kept[id(scan)] = calibrate(scan, grid, **kw)
        return kept[id(scan)]

    P.calibrate_scan = once
    H.warm_up()
    for geo in a.geometries.split(","):
        for kind in G.TUNING_PHANTOMS:
            case = H.make_case(geo, kind, a.seed)
            for variant in a.variants.split(","):
                if any((r["geometry"], r["phantom"], r["seed"], r["variant"])
                       == (geo, kind, a.seed, variant) for r in rows):
                    continue
                rows.append({"geometry": geo, "phantom": kind, "seed": a.seed,
                             "variant": variant, "psnr_reg": run(case, variant)})
                print(json.dumps(rows[-1]), flush=True)
                with atomic_path(out) as tmp:
                    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    base = {(r["geometry"], r["phantom"], r["seed"]): r["psnr_reg"] for r in rows
            if r["variant"] == "mfista85"}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        d = [r["psnr_reg"] - base[(r["geometry"], r["phantom"], r["seed"])] for r in rows
             if r["variant"] == variant and (r["geometry"], r["phantom"], r["seed"]) in base]
        if d:
            print(f"{variant}: {np.mean(d):+.2f} dB (worst {min(d):+.2f}, best {max(d):+.2f}) "
                  f"against mfista85, {len(d)} scans")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

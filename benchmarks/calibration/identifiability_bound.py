"""What the records alone can tell: a Cramér-Rao bound on the calibration's errors.

The calibration's targets ask for position errors at most 1/3 of the file's (after the
best rigid alignment) and a speed of sound within 0.2 % once the scale gauge is removed.
How well can *any* estimator do from the data of a scan, when the image is unknown?

Model: the records ``y = A(p, c) x + n``, white Gaussian noise of the scan's standard
deviation, with the image ``x`` free on the image grid (no prior on it), the sensors'
positions ``p`` under the prior the benchmark draws them from (per sensor, along the line
of sight ``sigma_r^2 + sigma_j^2``, across it ``(R sigma_theta)^2 + sigma_j^2``; linear
arrays ``0.1 mm`` per coordinate plus the jitter) and ``c`` under the file's (uniform
+-2 %: ``sigma = 2 %/sqrt(3)``). With ``J`` the derivative of ``A(p, c) x`` with respect
to ``(ln c, p)`` at the truth, the image's freedom removes from the information what a
change of the image can mimic: the information is ``J^T P J / sigma^2`` with ``P`` the
projection onto the complement of the range of ``A`` (each column of ``J`` minus its
least-squares fit by ``A x``, LSQR). The Bayesian bound ``C = (J^T P J / sigma^2 +
Lambda)^-1`` then bounds the mean squared error of any estimator that uses no prior on
the image; an estimator with one (TV, a learned prior) can do better. LSQR stopped early
leaves each residual longer than the exact one, so the information is over-estimated and
the bound stays a lower bound (``--iters`` 100 and 300 on one scan tell how far it is from
converged).

Read from ``C``: the expected rms position error after the best rigid alignment
(translation and rotation, linearised) against the file's (the same with the prior
alone); the standard deviation of ``c``'s error with the scale gauge removed (``d ln c``
minus the scale of the positions' least-squares similarity fit, as the benchmarks score
it). Compared, per scan, with what the default reached on the same scan
(``heldout_joint_v11.json``; the same generator and seed).

Data: the held-out benchmark's generator (``heldout_default.py``, seed 1000: the report
scans), the model of the reconstruction on the 128 x 128 image grid with the scan's
detector response; known sensor gains (a model with fewer unknowns: still a lower bound
for the calibration, which fits a gain per sensor).

Run (one JSON row per scan, resumable)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/identifiability_bound.py \\
        --cases ring32:vessels-thin,ring32:disks,... \\
        --out benchmarks/calibration/identifiability_bound.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402

from oatomo._atomic import atomic_path  # noqa: E402
from oatomo.calibration.search import local_frames  # noqa: E402
from oatomo.forward import ForwardOperator  # noqa: E402
from oatomo.geometry import SensorArray  # noqa: E402

MM = 1e-3
STEP = 5e-6  # central-difference half-width of a sensor's displacement (m)
C_STEP = 1e-3  # relative step of c
DRAWS = 3  # draws of errors at the bound for the image's cost


def prior_std(geometry: str, sizes: dict[str, float], nominal: np.ndarray
              ) -> np.ndarray:
    """(N, 2) prior standard deviation of each sensor along and across its line of sight,
    as the benchmark draws the errors (the drawn sizes of this scan)."""
    j = sizes["jitter_m"]
    n = len(nominal)
    if "along_across_m" in sizes:
        s = math.hypot(sizes["along_across_m"], j)
        return np.full((n, 2), s)
    r = np.hypot(nominal[:, 0], nominal[:, 1])
    along = np.full(n, math.hypot(sizes["radial_m"], j))
    across = np.hypot(r * sizes["angular_rad"], j)
    return np.stack([along, across], axis=1)


def rigid_modes(p: np.ndarray) -> np.ndarray:
    """(2N, 3) orthonormal basis of the linearised rigid motions of the points ``p``."""
    c = p - p.mean(axis=0)
    tx = np.tile([1.0, 0.0], len(p))
    ty = np.tile([0.0, 1.0], len(p))
    rot = np.stack([-c[:, 1], c[:, 0]], axis=1).ravel()
    q, _ = np.linalg.qr(np.stack([tx, ty, rot], axis=1))
    return q


def scale_functional(p: np.ndarray) -> np.ndarray:
    """(2N,) ``w`` with ``w . dp`` the linearised scale of the least-squares similarity
    fit of ``p + dp`` onto ``p`` minus 1, negated (so that ``d ln c - w . dp`` is the
    gauge-removed error of ``c``: scaling positions and ``c`` together leaves it 0)."""
    c = p - p.mean(axis=0)
    return (c / np.sum(c * c)).ravel()


def bound(geometry: str, kind: str, seed: int, iters: int) -> dict[str, Any]:
    case = H.make_case(geometry, kind, seed)
    grid, x = case.grid, case.truth.astype(np.float32)
    p = case.true.positions.astype(np.float64)
    n = len(p)
    acq = case.scan_true.acquisition
    response = case.scan_true.response
    thick = grid.dx

    def forward(points: np.ndarray, c: float) -> np.ndarray:
        from dataclasses import replace
        op = ForwardOperator(grid, SensorArray(points), replace(acq, speed_of_sound=c),
                             thickness=thick, response=response)
        return op.forward(x).astype(np.float64)

    t0 = time.perf_counter()
    frames = local_frames(p)  # (N, 2, 2): along, across
    pts = np.concatenate([p + STEP * frames[:, 0], p - STEP * frames[:, 0],
                          p + STEP * frames[:, 1], p - STEP * frames[:, 1]])
    rec = forward(pts, case.c_true).reshape(4, n, -1)
    d_along, d_across = (rec[0] - rec[1]) / (2 * STEP), (rec[2] - rec[3]) / (2 * STEP)
    y0 = forward(p, case.c_true)
    d_c = (forward(p, case.c_true * (1 + C_STEP))
           - forward(p, case.c_true * (1 - C_STEP))) / (2 * C_STEP)
    sigma = case.noise * float(np.max(np.abs(y0)))
    n_t = y0.shape[1]

    # the columns of J: d ln c, then per sensor along and across (one record each)
    def column(j: int) -> np.ndarray:
        if j == 0:
            return d_c
        s, k = divmod(j - 1, 2)
        out = np.zeros((n, n_t))
        out[s] = (d_along if k == 0 else d_across)[s]
        return out

    from scipy.sparse.linalg import lsqr

    op = ForwardOperator(grid, case.true, acq, thickness=thick, response=response)
    lin = op.as_linear_operator()
    n_par = 1 + 2 * n
    resid = np.empty((n_par, n * n_t), np.float32)
    kept = []
    for j in range(n_par):
        b = column(j).ravel()
        sol = lsqr(lin, b, atol=0.0, btol=0.0, iter_lim=iters)
        r = b - lin.matvec(sol[0])
        resid[j] = r
        kept.append(float(np.dot(r, r) / max(np.dot(b, b), 1e-300)))
    fisher = (resid.astype(np.float64) @ resid.T.astype(np.float64)) / sigma ** 2
    del resid
    std = prior_std(geometry, case.sizes, p)
    lam = np.zeros(n_par)
    lam[0] = 1.0 / (0.02 / math.sqrt(3)) ** 2
    lam[1:] = 1.0 / std.ravel() ** 2
    cov = np.linalg.inv(fisher + np.diag(lam))
    # local (along, across) -> (x, y) for the position block
    T = np.zeros((2 * n, 2 * n))
    for s in range(n):
        T[2 * s:2 * s + 2, 2 * s:2 * s + 2] = frames[s].T  # columns: along, across
    cov_xy = T @ cov[1:, 1:] @ T.T
    prior_xy = T @ np.diag(std.ravel() ** 2) @ T.T
    Q = rigid_modes(p)
    keep = np.eye(2 * n) - Q @ Q.T

    def rms(c: np.ndarray) -> float:
        return math.sqrt(float(np.trace(keep @ c @ keep)) / n)

    g = np.zeros(n_par)
    g[0] = 1.0
    g[1:] = -(T.T @ scale_functional(p))
    c_gauge = math.sqrt(float(g @ cov @ g))
    row = {"geometry": geometry, "phantom": kind, "seed": seed, "iters": iters,
           "n_sensors": n, "noise": case.noise,
           "file_rigid_um": 1e6 * rms(prior_xy), "bound_rigid_um": 1e6 * rms(cov_xy),
           "bound_ratio": rms(cov_xy) / rms(prior_xy),
           "bound_c_gauge_pct": 100 * c_gauge,
           "kept_energy_median": float(np.median(kept[1:])), "kept_energy_c": kept[0],
           "s": time.perf_counter() - t0}
    row.update(gap_at_bound(case, cov, T, keep))
    return row


def gap_at_bound(case: Any, cov: np.ndarray, T: np.ndarray, keep: np.ndarray,
                 draws: int = DRAWS) -> dict[str, Any]:
    """What errors of the bound's size cost the image: TV (the default's) at the true
    positions and ``c`` moved by ``draws`` draws from ``N(0, cov)`` (``keep``: the
    projection that removes the rigid part, in x/y; ``T``: local to x/y), against TV at
    the truth; registered PSNR (dB), as the benchmarks score it."""
    from dataclasses import replace

    rng = np.random.default_rng(zlib.crc32(repr(case.c_true).encode()))
    p = case.true.positions.astype(np.float64)
    true_psnr = H.register(H._tv(case.scan_true, case.grid)[0], case.truth)[0]
    psnrs = []
    chol = np.linalg.cholesky(cov + 1e-30 * np.eye(len(cov)))
    for _ in range(draws):
        e = chol @ rng.standard_normal(len(cov))
        d = (keep @ (T @ e[1:])).reshape(-1, 2)
        sensors = SensorArray(p + d, case.true.normals)
        acq = replace(case.scan_true.acquisition,
                      speed_of_sound=case.c_true * math.exp(e[0]))
        scan = replace(case.scan_true, sensors=sensors, acquisition=acq)
        psnrs.append(H.register(H._tv(scan, case.grid)[0], case.truth)[0])
    return {"tv_true_psnr_reg": true_psnr, "tv_at_bound_psnr_reg": psnrs,
            "gap_at_bound_db": true_psnr - float(np.mean(psnrs))}


def achieved(paths: list[Path]) -> dict[tuple[str, str, int], dict[str, float]]:
    """What the default reached on the same scans (the held-out benchmark's JSONs)."""
    out = {}
    for path in paths:
        if not path.exists():
            continue
        for r in json.loads(path.read_text()).values():
            if r.get("correct_file"):
                continue
            out[(r["geometry"], r["phantom"], r["seed"])] = {
                "ratio": r["pos_err_default_um"] / r["pos_err_file_um"],
                "c_gauge_pct": abs(r["c_err_default_gauge_pct"]),
                "gap_db": r["psnr_tv_true_reg"] - r["psnr_default_reg"]}
    return out


def table(rows: list[dict[str, Any]], reached: dict) -> str:
    lines = ["| geometry | phantom | seed | LSQR iterations | file (um, prior) | bound (um) | "
             "bound / file | default / file | c bound (%) | default c (%) | "
             "TV gap at the bound (dB) | default's gap (dB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["geometry"], r["phantom"], r["iters"])):
        a = reached.get((r["geometry"], r["phantom"], r["seed"]), {})
        lines.append(
            f"| {r['geometry']} | {r['phantom']} | {r['seed']} | {r['iters']} | "
            f"{r['file_rigid_um']:.0f} | {r['bound_rigid_um']:.1f} | {r['bound_ratio']:.3f} | "
            f"{a.get('ratio', math.nan):.2f} | {r['bound_c_gauge_pct']:.3f} | "
            f"{a.get('c_gauge_pct', math.nan):.2f} | {r.get('gap_at_bound_db', math.nan):.2f} | "
            f"{a.get('gap_db', math.nan):.2f} |")
    return "\n".join(lines)


def figure(rows: list[dict[str, Any]], reached: dict, path: Path) -> None:
    """Per scan: the default's position error against the bound (both over the file's),
    and the TV gap at the bound against the default's gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = {}
    for r in rows:  # the most LSQR iterations of each scan
        key = (r["geometry"], r["phantom"], r["seed"])
        if "gap_at_bound_db" in r and (key not in best or r["iters"] > best[key]["iters"]):
            best[key] = r
    fig, ax = plt.subplots(1, 2, figsize=(10, 4.4))
    names = sorted({k[0] for k in best})
    style = {g: (m, plt.get_cmap("tab10")(i % 10))
             for i, (g, m) in enumerate(zip(names, "osD^v<>ph*", strict=False))}
    for key, r in sorted(best.items()):
        a = reached.get(key)
        if a is None:
            continue
        m, colour = style[key[0]]
        ax[0].plot(r["bound_ratio"], a["ratio"], m, color=colour, label=key[0], alpha=0.8)
        ax[1].plot(r["gap_at_bound_db"], a["gap_db"], m, color=colour, label=key[0],
                   alpha=0.8)
    ax[0].plot([0, 1], [0, 1], "k-", lw=0.8)
    ax[0].axhline(1 / 3, color="r", lw=0.8, ls="--")
    ax[0].axvline(1 / 3, color="r", lw=0.8, ls="--")
    ax[0].set(xlim=(0, 1), ylim=(0, 1), xlabel="bound: rms error after rigid alignment / file's",
              ylabel="default / file's", title="positions (dashed: the 1/3 target)")
    lo = min(-1.0, *(a["gap_db"] for k, a in reached.items() if k in best))
    hi = max(6.0, *(r["gap_at_bound_db"] for r in best.values()))
    ax[1].plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax[1].axhline(1.5, color="r", lw=0.8, ls="--")
    ax[1].axvline(1.5, color="r", lw=0.8, ls="--")
    ax[1].set(xlabel="TV at errors of the bound's size: dB below TV at the truth",
              ylabel="default: dB below TV at the truth", title="image (dashed: 1.5 dB)")
    handles, labels = ax[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    ax[0].legend(uniq.values(), uniq.keys(), fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", required=True,
                    help="comma-separated geometry:phantom pairs of heldout_default.py")
    ap.add_argument("--seed", type=int, default=H.FIRST_SEED)
    ap.add_argument("--iters", type=int, default=100, help="LSQR iterations per column")
    ap.add_argument("--out", required=True)
    here = Path(__file__).resolve().parent
    ap.add_argument("--reached", default=",".join(
        str(here / f) for f in ("heldout_joint_v11.json", "heldout_fresh_default_v11.json")),
        help="comma-separated held-out benchmark JSONs to compare with")
    ap.add_argument("--table", action="store_true", help="print the table and stop")
    ap.add_argument("--figure", default=None, help="draw the per-scan comparison here")
    a = ap.parse_args(argv)
    out = Path(a.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    if not a.table:
        done = {(r["geometry"], r["phantom"], r["seed"], r["iters"]) for r in rows}
        for pair in a.cases.split(","):
            geo, kind = pair.split(":")
            if (geo, kind, a.seed, a.iters) in done:
                continue
            row = bound(geo, kind, a.seed, a.iters)
            rows.append(row)
            print(json.dumps(row), flush=True)
            with atomic_path(out) as tmp:
                tmp.write_text(json.dumps(rows, indent=1) + "\n")
    reached = achieved([Path(p) for p in a.reached.split(",")])
    print(table(rows, reached))
    if a.figure:
        figure(rows, reached, Path(a.figure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A fitted combination of per-pixel features as the TV refiner's uncertainty map.

Does a map fitted to the error beat the shipped one (``decoders-edges`` with the
limited-view term, :func:`oatomo.refine.refiner.edge_weighted`), which was chosen among
hand-built candidates? Per cached scan (``tv_refiner.py`` caches, which keep the truth
beside each scan), the shipped archive refines the TV image (its four passes; the spread
of the variant decoders) and these per-pixel features are built, each divided by its
maximum over the image: ``E`` the shipped edge term ``G1 * sqrt(spread |grad x|)``,
``S1``/``S2`` the spread smoothed by 1/2 pixels, ``I2`` the refined image's magnitude
smoothed by 2, ``T2`` its local standard deviation over 2 pixels (texture), ``C1`` the
correction ``|refined - TV|`` smoothed by 1, ``G1`` the gradient magnitude smoothed by 1,
and each of them times ``R = |(c2, s2)|`` of the scan's view channels (how one-sided a
pixel's view is). Non-negative weights of the 14 maps are fitted on the tuning caches to
maximise the mean per-scan Pearson correlation with the refined image's absolute error
(after its affine fit to the truth), once plain (``mean``) and once with each scan's
correlation capped at 0.6 (``capped``: the count at 0.5 or more is what the target asks),
six random starts each (L-BFGS-B on log-weights); then scored once on the report caches.

Run (the features are written once per scan under ``--work``; about 2 minutes in all)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refinement/uncertainty_fit.py \\
        --tune out/tv_refiner/tuning,out/tv_refiner/map_tuning \\
        --report out/tv_refiner/report,out/tv_refiner/fresh \\
        --work out/uncertainty_fit --json benchmarks/refinement/uncertainty_fit.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks" / "calibration"),
                str(ROOT / "benchmarks" / "refinement")]

import identifiability  # noqa: E402, F401  (registers its geometries)
import tv_refiner as T  # noqa: E402

from oatomo._atomic import atomic_path  # noqa: E402
from oatomo.evaluation.metrics import affine_fit  # noqa: E402
from oatomo.refine import load_refiner  # noqa: E402
from oatomo.refine.refiner import edge_weighted  # noqa: E402
from oatomo.refine.view import view_channels  # noqa: E402

BASE = ("E", "S1", "S2", "I2", "T2", "C1", "G1")
KEYS = BASE + tuple("R*" + k for k in BASE)


def dump(cache: Path, work: Path, model: Path) -> None:
    """The shipped archive's refined image, decoder spread, TV, view channels and error
    of every scan of ``cache``, one ``.npz`` per scan under ``work/<cache name>``."""
    out = work / cache.name
    out.mkdir(parents=True, exist_ok=True)
    ref = replace(load_refiner(model), uncertainty="decoders")
    for geo, kind, seed, z, truth in T.cached_scans(cache):
        f = out / f"{geo}_{kind}_{seed}.npz"
        if f.exists():
            continue
        grid, true = (T.draw_case(geo, kind, seed)[i] for i in (0, 4))
        o = ref.refine_images(np.stack([z["tv"], z["ubp"]]), n_samples=2, seed=0)
        fit = affine_fit(o.refined.astype(np.float64)[None], truth[None])[0]
        with atomic_path(f) as tmp, open(tmp, "wb") as fh:  # a killed run leaves no stub
            np.savez(fh, spread=o.std, refined=o.refined, tv=z["tv"],
                     view=view_channels(true, grid),
                     err=np.abs(fit - truth).astype(np.float32), scale=o.scale)


def features(z: dict) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The 14 feature maps of one scan and the shipped map."""
    from scipy import ndimage as ndi

    def n(m: np.ndarray) -> np.ndarray:
        return m / max(float(np.abs(m).max()), 1e-30)

    sp = np.maximum(z["spread"].astype(np.float64), 0) / float(z["scale"])
    r = z["refined"].astype(np.float64) / float(z["scale"])
    tv = z["tv"].astype(np.float64) / float(z["scale"])
    v = z["view"].astype(np.float64)
    grad = np.hypot(ndi.sobel(r, 0), ndi.sobel(r, 1)) / 8
    m2 = ndi.gaussian_filter(r, 2)
    base = {"E": edge_weighted(sp, r).astype(np.float64),  # the shipped edge term
            "S1": ndi.gaussian_filter(sp, 1), "S2": ndi.gaussian_filter(sp, 2),
            "I2": ndi.gaussian_filter(np.abs(r), 2),
            "T2": np.sqrt(np.maximum(ndi.gaussian_filter(r * r, 2) - m2 * m2, 0)),
            "C1": ndi.gaussian_filter(np.abs(r - tv), 1),
            "G1": ndi.gaussian_filter(grad, 1)}
    feats = {k: n(m) for k, m in base.items()}
    one_sided = np.hypot(v[0], v[1])
    feats.update({"R*" + k: one_sided * feats[k] for k in BASE})
    return feats, edge_weighted(z["spread"], z["refined"], view=z["view"])


def load(dirs: list[Path]) -> list[tuple[str, dict, np.ndarray, np.ndarray]]:
    rows = []
    for d in dirs:
        for f in sorted(d.glob("*.npz")):
            with np.load(f) as z:
                feats, shipped = features(dict(z))
                rows.append((f.stem.split("_")[0], feats, shipped,
                             z["err"].astype(np.float64)))
    return rows


def pearson(m: np.ndarray, e: np.ndarray) -> float:
    return float(np.corrcoef(m.ravel(), e.ravel())[0, 1])


def fit(rows: list, capped: bool, starts: int = 6, seed: int = 0) -> np.ndarray:
    """Non-negative weights of :data:`KEYS` maximising the mean per-scan correlation."""
    from scipy import optimize

    stats = []
    for _, feats, _, err in rows:
        X = np.stack([feats[k].ravel() for k in KEYS])
        X = X - X.mean(axis=1, keepdims=True)
        e = err.ravel() - err.mean()
        stats.append((X @ e, X @ X.T, float(e @ e)))

    def loss(u: np.ndarray) -> float:
        w = np.exp(u)
        r = np.array([(w @ xe) / np.sqrt(max(w @ xx @ w, 1e-30) * ee)
                      for xe, xx, ee in stats])
        return -float(np.mean(np.minimum(r, 0.6) if capped else r))

    rng = np.random.default_rng(seed)
    best = min((optimize.minimize(loss, rng.normal(-1, 1, len(KEYS)), method="L-BFGS-B",
                                  bounds=[(-12, 4)] * len(KEYS)) for _ in range(starts)),
               key=lambda res: res.fun)
    w = np.exp(best.x)
    return w / w.max()


def scores(rows: list, w: np.ndarray | None) -> dict:
    rs = [pearson(shipped if w is None
                  else sum(wi * f[k] for wi, k in zip(w, KEYS, strict=True)), e)
          for _, f, shipped, e in rows]
    per: dict[str, list[float]] = {}
    for (geo, *_), r in zip(rows, rs, strict=True):
        per.setdefault(geo, []).append(r)
    a = np.array(rs)
    return {"median": float(np.median(a)), "mean": float(a.mean()),
            "at_least_0.5": int((a >= 0.5).sum()), "n": len(a),
            "per_geometry_median": {g: float(np.median(v)) for g, v in per.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tune", required=True, help="comma-separated tuning caches")
    ap.add_argument("--report", required=True, help="comma-separated report caches")
    ap.add_argument("--work", default="out/uncertainty_fit")
    ap.add_argument("--model", default=str(ROOT / "oatomo" / "resources" / "models"
                                           / "tv_refiner.npz"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    tune, report = ([Path(p) for p in s.split(",")] for s in (a.tune, a.report))
    for cache in tune + report:
        dump(cache, Path(a.work), Path(a.model))
    rows_t = load([Path(a.work) / c.name for c in tune])
    rows_r = load([Path(a.work) / c.name for c in report])
    out: dict = {"keys": list(KEYS), "shipped": {"tuning": scores(rows_t, None),
                                                 "report": scores(rows_r, None)}}
    for name, capped in (("mean", False), ("capped", True)):
        w = fit(rows_t, capped)
        out[name] = {"weights": dict(zip(KEYS, map(float, w), strict=True)),
                     "tuning": scores(rows_t, w), "report": scores(rows_r, w)}
    for name in ("shipped", "mean", "capped"):
        for s in ("tuning", "report"):
            r = out[name][s]
            print(f"{name:8s} {s:7s} median {r['median']:.3f} mean {r['mean']:.3f} "
                  f">= 0.5: {r['at_least_0.5']}/{r['n']} | " + " ".join(
                      f"{g} {m:.2f}" for g, m in r["per_geometry_median"].items()))
    if a.json:
        with atomic_path(a.json) as tmp:
            tmp.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

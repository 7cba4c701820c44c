"""Candidate uncertainty maps of the TV refiner against the refined image's error.

How the shipped map (mode ``decoders-edges``, :func:`oatomo.refine.refiner.edge_weighted`)
was chosen: on the tuning set's cache (``tv_residual.py cache out/tv_refiner/tuning
--tuning``) the TV refiner refines each scan's TV and UBP images, and every candidate map
is correlated (Pearson, per scan) with the absolute error of the refined image after its
best affine fit to the truth. Candidates: ``dec``, the variant decoders' spread;
``corr``, the correction ``|refined - TV|``; ``grad``, the Sobel gradient magnitude of the
refined image; ``dec+corr`` (root of the summed squares); ``*_s1``, smoothed by a Gaussian
of one pixel; ``dec*grad``, the geometric mean of spread and gradient; ``dec*grad_s1``
(the chosen one), ``dec_s1*grad_s1``, ``dec*grad_s05``. Printed per candidate: median and
mean correlation, the number of scans at 0.5 or more, the lowest.

Run: ``.venv/bin/python benchmarks/refinement/uncertainty_maps.py out/tv_refiner/tuning``
(``--model`` another archive).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks" / "calibration"),
                str(ROOT / "benchmarks" / "refinement")]

import tv_refiner as T  # noqa: E402

from oatomo.evaluation.metrics import affine_fit  # noqa: E402
from oatomo.refine import load_refiner  # noqa: E402


def candidate_maps(spread: np.ndarray, refined: np.ndarray, tv: np.ndarray
                   ) -> dict[str, np.ndarray]:
    """Every candidate map of one scan (inputs in the refined image's relative units)."""
    from scipy import ndimage as ndi

    grad = np.hypot(ndi.sobel(refined, 0), ndi.sobel(refined, 1))
    corr = np.abs(refined - tv)
    both = np.sqrt(spread * grad)
    return {"dec": spread, "corr": corr, "grad": grad,
            "dec+corr": np.sqrt(spread ** 2 + corr ** 2),
            "dec_s1": ndi.gaussian_filter(spread, 1), "corr_s1": ndi.gaussian_filter(corr, 1),
            "dec+corr_s1": ndi.gaussian_filter(np.sqrt(spread ** 2 + corr ** 2), 1),
            "dec*grad": both, "grad_s1": ndi.gaussian_filter(grad, 1),
            "dec_s1*grad_s1": np.sqrt(ndi.gaussian_filter(spread, 1)
                                      * ndi.gaussian_filter(grad, 1)),
            "dec*grad_s1": ndi.gaussian_filter(both, 1),
            "dec*grad_s05": ndi.gaussian_filter(both, 0.5)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache")
    ap.add_argument("--model", default=str(ROOT / "oatomo" / "resources" / "models"
                                           / "tv_refiner.npz"))
    args = ap.parse_args(argv)
    ref = load_refiner(args.model)
    ref.uncertainty = "decoders"  # the spread alone; the candidates are built from it
    ref.meta["tta"] = False  # one pass, as when the map was chosen
    res: dict[str, list[float]] = {}
    for _, _, _, z, truth in T.cached_scans(Path(args.cache)):
        out = ref.refine_images(np.stack([z["tv"], z["ubp"]]), n_samples=2)
        r = out.refined.astype(np.float64)
        err = np.abs(affine_fit(r[None], truth[None])[0] - truth)
        maps = candidate_maps(out.std / out.scale, r / out.scale, z["tv"] / out.scale)
        for k, m in maps.items():
            res.setdefault(k, []).append(float(np.corrcoef(m.ravel(), err.ravel())[0, 1]))
    for k, v in res.items():
        a = np.array(v)
        print(f"{k:15s} median {np.median(a):.2f} mean {a.mean():.2f} "
              f">= 0.5: {(a >= 0.5).sum()}/{len(a)} min {a.min():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

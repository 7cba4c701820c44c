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

The limited-view term of the map (:func:`~oatomo.refine.refiner.edge_weighted` with the
view channels of the scan's sensors, ``dec*grad_s1+view``) was chosen among the ``view``
candidates below on the limited-view tuning set (``tv_refiner.py --map-tuning --seeds 2
--cache out/tv_refiner/map_tuning``: 90 and 150 degree arcs, 64- and 96-element linear
arrays, seeds 6000-6001); ``R2`` is ``|(c2, s2)|`` of the view channels (how one-sided a
pixel's view is), ``S2``/``S3`` the spread smoothed by 2/3 pixels, ``I2`` the refined
image's magnitude smoothed by 2 pixels, ``rbar`` the mean of ``R2`` over the image, and a
sum of two maps is of each divided by its maximum. Printed per candidate: as above, and
the median per geometry.

Run: ``.venv/bin/python benchmarks/refinement/uncertainty_maps.py out/tv_refiner/tuning``
(``--model`` another archive; ``--view`` adds the limited-view candidates).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks" / "calibration"),
                str(ROOT / "benchmarks" / "refinement")]

import heldout_default as H  # noqa: E402
import identifiability  # noqa: E402, F401  (registers its geometries)
import tv_refiner as T  # noqa: E402

from oatomo.evaluation.metrics import affine_fit  # noqa: E402
from oatomo.geometry import Grid  # noqa: E402
from oatomo.refine import load_refiner  # noqa: E402
from oatomo.refine.refiner import edge_weighted  # noqa: E402
from oatomo.refine.view import view_channels  # noqa: E402


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


def view_candidates(spread: np.ndarray, refined: np.ndarray, view: np.ndarray
                    ) -> dict[str, np.ndarray]:
    """The limited-view candidates of one scan (``view``: its view channels)."""
    from scipy import ndimage as ndi

    grad = np.hypot(ndi.sobel(refined, 0), ndi.sobel(refined, 1)) / 8
    e = ndi.gaussian_filter(np.sqrt(spread * grad), 1)
    r2 = np.hypot(view[0], view[1])
    s2, s3 = ndi.gaussian_filter(spread, 2), ndi.gaussian_filter(spread, 3)
    i2 = ndi.gaussian_filter(np.abs(refined), 2)
    rbar = float(np.mean(r2))

    def n(m: np.ndarray) -> np.ndarray:
        return m / max(float(m.max()), 1e-30)

    return {"dec*grad_s1+view": edge_weighted(spread, refined, view=view),
            "I2": i2, "sqrt(I2*R2)": np.sqrt(i2 * r2), "E+I2*R2": n(e) + n(i2 * r2),
            "E*(1+R2)": e * (1 + r2), "E*(1+3R2)": e * (1 + 3 * r2), "S2": s2,
            "E+S2": n(e) + n(s2), "E+0.5S2": n(e) + 0.5 * n(s2), "E+2S2": n(e) + 2 * n(s2),
            "E+S3": n(e) + n(s3), "E+S2+I2": n(e) + n(s2) + n(i2),
            "sqrt(S2*I2)": np.sqrt(s2 * i2), "E+rbar*S2": n(e) + rbar * n(s2),
            "E+2rbar*S2": n(e) + 2 * rbar * n(s2), "E+S2*sqrt(R2)": n(e) + np.sqrt(r2) * n(s2),
            "rms(E,S2)": np.sqrt(n(e) ** 2 + n(s2) ** 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache")
    ap.add_argument("--model", default=str(ROOT / "oatomo" / "resources" / "models"
                                           / "tv_refiner.npz"))
    ap.add_argument("--view", action="store_true",
                    help="also the limited-view candidates (the scans' view channels)")
    args = ap.parse_args(argv)
    geometries = {**H.GEOMETRIES, **T.TUNING_GEOMETRIES, **T.FRESH_GEOMETRIES}
    grid = Grid(H.N_IMAGE, H.FOV)
    ref = load_refiner(args.model)
    ref.uncertainty = "decoders"  # the spread alone; the candidates are built from it
    ref.meta["tta"] = False  # one pass, as when the map was chosen
    res: dict[str, dict[str, list[float]]] = {}
    for geo, _, _, z, truth in T.cached_scans(Path(args.cache)):
        out = ref.refine_images(np.stack([z["tv"], z["ubp"]]), n_samples=2)
        r = out.refined.astype(np.float64)
        err = np.abs(affine_fit(r[None], truth[None])[0] - truth)
        spread, rel = out.std / out.scale, r / out.scale
        maps = candidate_maps(spread, rel, z["tv"] / out.scale)
        if args.view:
            view = view_channels(geometries[geo].nominal(), grid)
            maps.update(view_candidates(spread, rel, view))
        for k, m in maps.items():
            res.setdefault(k, {}).setdefault(geo, []).append(
                float(np.corrcoef(m.ravel(), err.ravel())[0, 1]))
    for k, per in res.items():
        a = np.concatenate([np.array(v) for v in per.values()])
        print(f"{k:17s} median {np.median(a):.2f} mean {a.mean():.2f} "
              f">= 0.5: {(a >= 0.5).sum()}/{len(a)} min {a.min():.2f} | "
              + " ".join(f"{g} {np.median(v):.2f}" for g, v in per.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A figure of what the default does with a wrong file: per held-out scan, the truth, TV
with the file's positions and speed of sound, the default of ``oatomo reconstruct`` (the
position check, self-calibration, TV at the estimate, the TV refiner and its guard) and
TV with the true positions, each moved by its best rigid registration to the truth (the
array's rigid motion is invisible to any method) and scaled by its best affine fit; the
registered PSNR in each title.

Scans: the held-out benchmark's (``heldout_default.py``: oatomo's own forward model on a
grid 2x finer than the 128 x 128, 0.1 mm image grid, a Gaussian detector band, 1-2 %
noise, per-sensor position errors, the file's speed of sound off by up to 2 %), by
default three of its report set (seed 1000) and one of its fresh set (seed 1500).

``--affine``: also print, per scan, the PSNR of the default and of TV with the true
positions after the best *affine* registration (six parameters, started at the rigid one):
how much of the gap is a global linear distortion of the image.

Run::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/calibration/default_figure.py \\
        docs/results/figures/default_perturbed.png --affine
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402

import oatomo  # noqa: E402
from oatomo.evaluation.metrics import affine_fit, psnr  # noqa: E402

CASES = "ring64:vessels-thin:1000,arc270:vessels-thick:1000,linear128:disks:1000," \
        "ring96:capillaries:1500"


def affine_psnr(img: np.ndarray, truth: np.ndarray) -> float:
    """PSNR (dB, range 1) of ``img`` after the best affine warp (a 2 x 2 matrix about the
    image centre and a shift, Powell from the identity) and the best affine fit of its
    values."""
    from scipy import ndimage, optimize

    centre = np.full(2, (img.shape[0] - 1) / 2)

    def warped(p: np.ndarray) -> np.ndarray:
        m = np.array([[1 + p[0], p[1]], [p[2], 1 + p[3]]])
        return ndimage.affine_transform(img, m, offset=centre - m @ centre + p[4:], order=1)

    def misfit(p: np.ndarray) -> float:
        return float(np.mean((affine_fit(warped(p)[None], truth[None])[0] - truth) ** 2))

    best = optimize.minimize(misfit, np.zeros(6), method="Powell")
    return float(psnr(affine_fit(warped(best.x)[None], truth[None])[0], truth,
                      data_range=1.0))


def panels(geometry: str, kind: str, seed: int, affine: bool = False
           ) -> list[tuple[str, np.ndarray]]:
    """The truth and the three images of one scan, registered and fitted to the truth,
    each with its title; with ``affine`` the affine-registered PSNRs are printed."""
    case = H.make_case(geometry, kind, seed)
    default = oatomo.reconstruct(case.scan, grid=case.grid)
    how = "calibrated TV, refined" if default.refined else "calibrated TV"
    if default.provenance.get("calibration") is None:
        how = "TV, refined" if default.refined else "TV"
    out = [(f"{geometry}, {kind}: truth", case.truth)]
    for title, img in (
            ("TV, file's geometry", H._tv(case.scan, case.grid)[0]),
            (f"default ({how})", np.asarray(default.image, np.float64)),
            ("TV, true geometry", H._tv(case.scan_true, case.grid)[0])):
        psnr, motion = H.register(img, case.truth)
        moved = H._moved(np.asarray(img, np.float64), np.asarray(motion))
        fit = affine_fit(moved[None], case.truth[None])[0]
        out.append((f"{title}\n{psnr:.1f} dB", fit))
        if affine and not title.startswith("TV, file"):
            print(f"{geometry} {kind} {seed}, {title.split(' (')[0]}: rigid {psnr:.2f}, "
                  f"affine {affine_psnr(moved, case.truth):.2f} dB", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--cases", default=CASES,
                    help="geometry:phantom:seed, comma-separated (default: %(default)s)")
    ap.add_argument("--affine", action="store_true", help="print affine-registered PSNRs")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = [c.split(":") for c in args.cases.split(",")]
    rows = [panels(g, k, int(s), args.affine) for g, k, s in specs]
    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.7 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c, (title, img) in enumerate(row):
            ax = axes[r][c]
            ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.stem + ".tmp" + args.out.suffix)
    fig.savefig(tmp, dpi=110)
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Gallery of the bundled position-uncertainty setups (the learning environments).

For one vessel phantom, each setup draws its true sensor positions, simulates the scan and
reconstructs it with the *nominal* positions (UBP), so the figure shows the artifacts that
each kind of position error leaves. Run from the repository root:

    .venv/bin/python examples/optoacoustic/setups_gallery.py [-o out/setups_gallery.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import oatomo  # noqa: E402
from oatomo import phantoms
from oatomo.figures import add_scale_bar  # noqa: E402
from oatomo.setups import load_setup  # noqa: E402

SETUPS = ["ring32_ideal", "ring32_radial", "ring32_angular", "ring32_jitter", "ring32_offset",
          "ring32_radial_large", "ring32_rotation", "ring32_jitter_noisy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default="out/setups_gallery.png")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    first = load_setup(SETUPS[0])
    p0 = phantoms.vessels(first.grid, args.seed)
    fig, axes = plt.subplots(2, 5, figsize=(17, 7))
    axes = axes.ravel()
    axes[0].imshow(p0, cmap="inferno", origin="lower")
    axes[0].set_title("truth p0")
    add_scale_bar(axes[0], first.grid)
    for k, name in enumerate(SETUPS, start=1):
        s = load_setup(name)
        true = s.draw(args.seed + k)
        sino = oatomo.simulate(p0, s.grid, true, s.acquisition, noise_std=s.noise,
                               band=s.band, seed=args.seed)
        img = oatomo.backproject(sino, s.grid, s.array, s.acquisition, method="ubp")
        r = np.corrcoef(img.ravel(), p0.ravel())[0, 1]
        err = np.sqrt(np.mean(np.sum((true.positions - s.array.positions) ** 2, 1))) * 1e3
        axes[k].imshow(img, cmap="inferno", origin="lower",
                       vmin=np.percentile(img, 1), vmax=np.percentile(img, 99.8))
        axes[k].set_title(f"{name}\nposition rms {err:.2f} mm, r = {r:.2f}", fontsize=9)
    axes[-1].scatter(*first.array.positions.T * 1e3, s=8, label="nominal")
    axes[-1].scatter(*load_setup("ring32_jitter").draw(1).positions.T * 1e3, s=8, marker="x",
                     label="jitter draw")
    axes[-1].set_aspect("equal")
    axes[-1].legend(fontsize=8)
    axes[-1].set_title("sensors (mm)")
    for ax in axes[:-1]:
        ax.set_axis_off()
    fig.suptitle("UBP with nominal positions of scans simulated with the true ones")
    fig.tight_layout()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

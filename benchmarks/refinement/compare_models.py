"""Two refiners on the same evaluation scans, paired by scan.

Reads ``evaluation.json`` files written by ``oatomo family evaluate`` on the same
evaluation set and prints, for every pair ``A`` and ``B`` named as ``FILE:METHOD``, the mean
per-scan PSNR difference B − A with its standard error, in distribution, held out and per
geometry; and each refiner's gain over TV with the nominal positions per geometry (the
refinement results table). Scans are matched by (geometry, perturbation, item).

Run: ``.venv/bin/python benchmarks/refinement/compare_models.py [LABEL=]A.json:invariant
[LABEL=]B.json:invariant ...`` (the first is the reference of the differences).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from oatomo.evaluation.stats import standard_error  # noqa: E402


def per_scan(path: str, method: str) -> dict[tuple[str, str, int], dict]:
    """PSNR per scan of ``method`` in an evaluation.json, keyed by scan."""
    items = json.load(open(path))["items"]
    out = {(i["geometry"], i["perturbation"], i["item"]): i for i in items
           if i["method"] == method}
    if not out:
        raise SystemExit(f"{path}: no method {method!r}")
    return out


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error."""
    return sum(values) / len(values), standard_error(values)


def main(specs: list[str]) -> None:
    runs = []
    for spec in specs:
        label, _, rest = spec.rpartition("=")
        path, _, method = rest.rpartition(":")
        runs.append((label or rest, per_scan(path, method), per_scan(path, "tv_nominal")))
    base_label, base, _ = runs[0]
    geoms = sorted({k[0] for k in base})
    print("| PSNR difference (dB) | in distribution | held out | " + " | ".join(geoms) + " |")
    print("|---" * (3 + len(geoms)) + "|")
    for label, scans, _ in runs[1:]:
        keys = sorted(set(scans) & set(base))
        groups = [[k for k in keys if not scans[k]["held_out"]],
                  [k for k in keys if scans[k]["held_out"]],
                  *[[k for k in keys if k[0] == g] for g in geoms]]
        cells = []
        for group in groups:
            d = [scans[k]["psnr"] - base[k]["psnr"] for k in group]
            m, se = mean_se(d)
            cells.append(f"{m:+.2f} ± {se:.2f} (n {len(d)})")
        print(f"| {label} − {base_label} | " + " | ".join(cells) + " |")
    print()
    print("| refiner | " + " | ".join(f"{g}: gain over TV nominal" for g in geoms) + " |")
    print("|---" * (1 + len(geoms)) + "|")
    for label, scans, tv in runs:
        cells = []
        for g in geoms:
            d = [scans[k]["psnr"] - tv[k]["psnr"] for k in scans if k[0] == g and k in tv]
            m, se = mean_se(d)
            cells.append(f"{m:+.2f} ± {se:.2f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])

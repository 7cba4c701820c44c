"""Two TV refiners scored on the same scans, paired by scan.

Reads two result files of the same scans -- ``tv_residual.py score --json`` (rows
``geometry, phantom, seed, UBP, TV, refined, ...[, guarded, passed]``) or ``tv_refiner.py
--out`` (dicts) -- and prints per geometry, on vessel-like phantoms and on all kinds: each
refiner's gain over TV and the paired difference B - A with its standard error (over scans);
``--guarded`` compares what the refinement guard keeps instead of the refined images.

Run: ``.venv/bin/python benchmarks/refinement/paired.py A.json B.json [--guarded]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from oatomo.evaluation.stats import standard_error  # noqa: E402


def rows_of(path: str, guarded: bool) -> dict[tuple[str, str, int], tuple[float, float]]:
    """(TV, refined or guarded) PSNR per scan (geometry, phantom, seed)."""
    out = {}
    for r in json.loads(Path(path).read_text()):
        if isinstance(r, dict):
            key = (r["geometry"], r["phantom"], int(r["seed"]))
            out[key] = (r["psnr_tv"], r["psnr_guarded" if guarded else "psnr_refined"])
        else:
            if guarded and len(r) < 10:
                raise SystemExit(f"{path}: scored without --guard")
            out[(r[0], r[1], int(r[2]))] = (r[4], r[8] if guarded else r[5])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--guarded", action="store_true")
    args = ap.parse_args(argv)
    a, b = rows_of(args.a, args.guarded), rows_of(args.b, args.guarded)
    keys = sorted(set(a) & set(b))
    if not keys:
        raise SystemExit("no scan in common")
    tv_gap = max(abs(a[k][0] - b[k][0]) for k in keys)
    print(f"{len(keys)} scans in common; largest TV difference {tv_gap:.3f} dB")
    print("| geometry | phantoms | n | A - TV | B - TV | B - A (± SE) | worst B - TV |")
    print("|---|---|---|---|---|---|---|")
    for g in dict.fromkeys(k[0] for k in keys):
        for label, pick in (("vessels", lambda k: k[1].startswith("vessels")),
                            ("all", lambda k: True)):
            ks = [k for k in keys if k[0] == g and pick(k)]
            if not ks:
                continue
            da = np.array([a[k][1] - a[k][0] for k in ks])
            db = np.array([b[k][1] - b[k][0] for k in ks])
            d = db - da
            se = standard_error(d) if len(d) > 1 else float("nan")
            print(f"| {g} | {label} | {len(ks)} | {da.mean():+.2f} | {db.mean():+.2f} | "
                  f"{d.mean():+.2f} ± {se:.2f} | {db.min():+.2f} |")
    d = np.array([(b[k][1] - b[k][0]) - (a[k][1] - a[k][0]) for k in keys])
    print(f"all {len(keys)}: B - A {d.mean():+.2f} ± {standard_error(d):.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

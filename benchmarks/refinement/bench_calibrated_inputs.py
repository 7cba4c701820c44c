"""Self-calibration as the refiner's front end, on held-out scans.

The family evaluation set's 32-sensor ring (``oatomo family evalset``, its four
perturbation kinds, held-out phantom kinds) is reconstructed seven ways: UBP and TV with
the nominal positions, the shipped family refiner on its nominal-position inputs (what
``oatomo reconstruct`` does by default), TV with the self-calibrated positions and speed of
sound (``oatomo.calibration``, default prior: 1 % of the radius, since an evaluation scan
carries no setup), the *same shipped refiner* on inputs backprojected with the calibrated
geometry (``oatomo reconstruct --calibrate --refine``; no retraining), and TV with the
true positions. Every image gets its best affine fit to the truth before PSNR / SSIM
(``oatomo.evaluation.metrics.affine_fit``), as in the family evaluation.

Neither the refiner nor the calibration was tuned on these scans (evaluation seed 2; the
calibration's constants come from ``vessels`` seed 1 and ``vessel-tree`` seed 3 of the
calibration benchmark's setups).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refinement/bench_calibrated_inputs.py
--out out/calibrated_inputs`` (resumable: the evaluation set and every finished scan's row are
kept; ``--count`` scans per perturbation, default 8).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from oatomo.calibration import calibrate_sinogram, check_positions  # noqa: E402
from oatomo.evaluation import metrics as M  # noqa: E402
from oatomo.evaluation.metrics import affine_fit  # noqa: E402
from oatomo.evaluation.refiners import eval_acquisition, eval_files, make_eval_set  # noqa: E402
from oatomo.geometry import Acquisition, Grid, SensorArray  # noqa: E402
from oatomo.recon.model_based import reconstruct_model_based  # noqa: E402
from oatomo.refine import load_refiner  # noqa: E402

MODEL = ROOT / "oatomo" / "resources" / "models" / "family_refiner.npz"
METHODS = ("ubp", "tv_nominal", "refined", "tv_calibrated", "refined_calibrated", "tv_true",
           "default")


def _quality(img: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    fit = affine_fit(img[None], truth[None])[0]
    return (float(M.psnr(fit, truth, data_range=1.0)),
            float(M.ssim(fit, truth, data_range=1.0)))


def _check(row: dict, sino: np.ndarray, nominal: SensorArray, acq: Acquisition,
           grid: Grid) -> None:
    """Add the position check of ``oatomo reconstruct``'s default (``calibrate="auto"``)
    and the default's image score: calibrated TV when the check asks for calibration, the
    refined nominal-position image otherwise."""
    chk = check_positions(sino, nominal, acq, grid)
    row.update(check_spread_um=chk.spread * 1e6, check_noise_um=chk.noise * 1e6,
               check_s=chk.time_s, check_cal=bool(chk.needs_calibration))
    src = "tv_calibrated" if chk.needs_calibration else "refined"
    row["default_psnr"], row["default_ssim"] = row[f"{src}_psnr"], row[f"{src}_ssim"]


def run(out: Path, count: int, geometry: str, perturbations: list[str] | None = None,
        max_items: int | None = None) -> list[dict]:
    """Build (or reuse) the evaluation set, score every scan (the first ``max_items`` of
    each perturbation kind), return the rows."""
    evalset = make_eval_set(out / "evalset", count=count, seed=2, geometries=[geometry],
                            perturbations=perturbations)
    rows_path = out / "rows.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] \
        if rows_path.exists() else []
    done = {(r["perturbation"], r["item"]): r for r in rows}
    ref = load_refiner(MODEL)
    added = False
    for data, grid in eval_files(evalset):
        pert = str(data["perturbation"])
        for i in range(min(len(data["truth"]), max_items or len(data["truth"]))):
            truth = data["truth"][i]
            acq = eval_acquisition(data, i)
            nominal = SensorArray(data["nominal"][i])
            band = tuple(float(v) for v in data["band"][i])
            sino = data["sinogram"][i][:, :acq.n_samples]
            if (pert, i) in done:  # the check is cheap: always that of this version
                _check(done[pert, i], sino, nominal, acq, grid)
                added = True
                continue
            t = time.perf_counter()
            cal = calibrate_sinogram(sino, nominal, acq, grid)
            t_cal = time.perf_counter() - t
            acq_cal = cal.acquisition(acq)
            imgs = {"ubp": data["ubp"][i], "tv_nominal": data["tv_nominal"][i],
                    "tv_true": data["tv_true"][i]}
            imgs["refined"] = ref.refine_scan(sino, nominal, acq, grid, band=band,
                                              n_samples=0, check=False).refined
            imgs["tv_calibrated"], _ = reconstruct_model_based(
                sino, grid, cal.sensors, acq_cal, method="tv", n_iter=50)
            imgs["refined_calibrated"] = ref.refine_scan(
                sino, cal.sensors, acq_cal, grid, band=band, n_samples=0,
                check=False).refined
            row = {"perturbation": pert, "item": i, "kind": str(data["kind"][i]),
                   "t_cal": t_cal, "c_err_pct": 100 * (cal.speed_of_sound /
                                                       float(data["true_speed"][i]) - 1)}
            for m in METHODS[:-1]:
                row[f"{m}_psnr"], row[f"{m}_ssim"] = _quality(imgs[m], truth)
            _check(row, sino, nominal, acq, grid)
            rows.append(row)
            with rows_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{pert} {i}: " + ", ".join(f"{m} {row[m + '_psnr']:.1f}"
                                              for m in METHODS), flush=True)
    if added:
        tmp = rows_path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(rows_path)
    return [r for r in rows if max_items is None or r["item"] < max_items]


def to_markdown(rows: list[dict]) -> str:
    """Mean PSNR (dB) and SSIM by perturbation, and the gains over TV nominal."""
    perts = list(dict.fromkeys(r["perturbation"] for r in rows))
    head = ("| perturbation | n | " + " | ".join(METHODS) +
            " | refined_calibrated − tv_nominal (± se) | default − tv_nominal (± se) "
            "| calibrated by default |")
    lines = [head, "|" + "---|" * (len(METHODS) + 5)]
    for p in [*perts, "all"]:
        sel = [r for r in rows if p == "all" or r["perturbation"] == p]
        cells = [f"{np.mean([r[m + '_psnr'] for r in sel]):.2f} / "
                 f"{np.mean([r[m + '_ssim'] for r in sel]):.2f}" for m in METHODS]
        gains = []
        for m in ("refined_calibrated", "default"):
            gain = np.array([r[f"{m}_psnr"] - r["tv_nominal_psnr"] for r in sel])
            se = gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else 0.0
            gains.append(f"{gain.mean():+.2f} ± {se:.2f}")
        n_cal = sum(bool(r["check_cal"]) for r in sel)
        lines.append(f"| {p} | {len(sel)} | " + " | ".join(cells) +
                     f" | {gains[0]} | {gains[1]} | {n_cal} / {len(sel)} |")
    t = np.median([r["t_cal"] for r in rows])
    c = np.abs([r["c_err_pct"] for r in rows])
    lines.append("")
    lines.append(f"Calibration time: median {t:.1f} s a scan; |c error| mean {c.mean():.2f} %, "
                 f"max {c.max():.2f} %. Position check: median "
                 f"{np.median([r['check_s'] for r in rows]):.2f} s a scan.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/calibrated_inputs")
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--geometry", default="ring32-r22.5")
    ap.add_argument("--perturbations", nargs="+", help="perturbation kinds (default: the "
                    "evaluation set's four; `none` for exact positions, in its own --out)")
    ap.add_argument("--max-items", type=int, help="score only the first N scans of each "
                    "perturbation kind (the evaluation set keeps --count)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = run(out, args.count, args.geometry, args.perturbations, args.max_items)
    md = to_markdown(rows)
    (out / "table.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

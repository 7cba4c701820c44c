"""Tried and not adopted: the refiner in the loop of a delay estimation.

Refine; predict each sensor's record from the refined image; estimate each sensor's delay
by cross-correlation with its measured record (both band-limited; median delay removed);
move the sensor along its radius by c * delay; refine again. Prints the PSNR (best affine
fit) after each round and the rms position error before and after.

Run on the tuning set (evaluation seed 5, not the reported seed 2)::

    python benchmarks/refinement/refiner_in_the_loop.py ring32-r22.5 5 2 3 1
    # geometry, evaluation seed, scans per perturbation, rounds, remove the median delay
"""
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from oatomo.evaluation import metrics as M  # noqa: E402
from oatomo.evaluation.metrics import affine_fit  # noqa: E402
from oatomo.evaluation.refiners import make_eval_set  # noqa: E402
from oatomo.forward import bandpass, simulate  # noqa: E402
from oatomo.geometry import Acquisition, Grid, SensorArray  # noqa: E402
from oatomo.refine import load_refiner  # noqa: E402


def q(img, truth):
    fit = affine_fit(img[None], truth[None])[0]
    return float(M.psnr(fit, truth, data_range=1.0))


def shifts(meas, pred, maxlag):
    n, T = meas.shape
    out = np.zeros(n)
    for s in range(n):
        a, b = meas[s], pred[s]
        full = np.correlate(a, b, mode="full")  # lag = k - (T-1)
        mid = T - 1
        seg = full[mid - maxlag: mid + maxlag + 1]
        k = int(np.argmax(seg))
        d = 0.0
        if 0 < k < len(seg) - 1:
            y0, y1, y2 = seg[k - 1], seg[k], seg[k + 1]
            den = y0 - 2 * y1 + y2
            d = 0.5 * (y0 - y2) / den if den != 0 else 0.0
        out[s] = k - maxlag + d
    return out


def main(geometry: str, seed: int, count: int, iters: int, demean: bool) -> None:
    ev = make_eval_set(ROOT / "out" / "xc" / f"evalset_{geometry}_{seed}", count=count,
                       seed=seed, geometries=[geometry])
    ref = load_refiner(ROOT / "oatomo" / "resources" / "models" / "family_refiner.npz")
    rows = []
    for f in sorted(ev.glob("*__*.npz")):
        z = dict(np.load(f, allow_pickle=False))
        grid = Grid(int(z["size"]), int(z["size"]) * float(z["pitch"]))
        for i in range(len(z["truth"])):
            truth = z["truth"][i]
            fs, ns, c, t0 = z["acq"][i]
            acq = Acquisition(float(fs), int(ns), float(c), float(t0))
            nominal = z["nominal"][i].astype(np.float64)
            true = z["true"][i]
            band = tuple(float(v) for v in z["band"][i])
            sino = z["sinogram"][i][:, :acq.n_samples]
            meas = bandpass(sino, acq.fs, band)
            pos = nominal.copy()
            centre = pos.mean(0)
            res = {"pert": str(z["perturbation"]), "tvn": q(z["tv_nominal"][i], truth),
                   "tvt": q(z["tv_true"][i], truth)}
            err0 = np.sqrt(np.mean(np.sum((nominal - true) ** 2, 1)))
            seq = []
            for it in range(iters + 1):
                r = ref.refine_scan(sino, SensorArray(pos), acq, grid, band=band,
                                    n_samples=0, check=False).refined
                seq.append(q(r, truth))
                if it == iters:
                    break
                pred = bandpass(simulate(r, grid, SensorArray(pos), acq), acq.fs, band)
                tau = shifts(meas, pred, maxlag=int(1e-3 / acq.speed_of_sound * acq.fs))
                if demean:
                    tau = tau - np.median(tau)
                d = tau / acq.fs * acq.speed_of_sound
                u = pos - centre
                u /= np.linalg.norm(u, axis=1, keepdims=True)
                pos = pos + d[:, None] * u
            err1 = np.sqrt(np.mean(np.sum((pos - true) ** 2, 1)))
            res.update(seq=seq, err0=err0 * 1e3, err1=err1 * 1e3)
            rows.append(res)
            print(res["pert"], i, f"tvn {res['tvn']:.1f} tvt {res['tvt']:.1f}",
                  " ".join(f"{v:.2f}" for v in seq),
                  f"err {err0 * 1e3:.3f}->{err1 * 1e3:.3f} mm", flush=True)
    seqs = np.array([r["seq"] for r in rows])
    print("mean PSNR by round", seqs.mean(0).round(2), "TV nominal",
          np.mean([r["tvn"] for r in rows]).round(2))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1")

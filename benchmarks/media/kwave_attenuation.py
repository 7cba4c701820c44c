"""oatomo's power-law attenuation against k-Wave's (``tests/data/kwave_2d_ring16_attenuation.npz``,
made by ``kwave_fixture.py --attenuation``: the fixture's three Gaussian blobs, 16 point
sensors on a 10 mm ring, 2-D, 20 MHz, k-Wave's fractional-Laplacian absorption
``alpha0 = 0.75`` dB/(MHz^y cm) with ``y = 1.5`` and ``y = 1.2``).

The speed: k-Wave's absorbing fluid has its ``sound_speed`` (1500 m/s) as the phase speed
at zero frequency, oatomo's :class:`oatomo.media.Attenuation` the acquisition's speed at
1 MHz. oatomo is given k-Wave's phase speed at 1 MHz (``c_1mhz_y150`` ..., solved from
k-Wave's dispersion relation by ``kwave_fixture.phase_speed``: 1503.08 m/s for ``y = 1.5``,
1509.47 m/s for ``y = 1.2``); then both media have the same speed at every frequency to
first order in the absorption. The residual delay is measured: the shift (sub-sample,
Fourier) that best aligns oatomo's signal with k-Wave's, per sensor.

k-Wave's initial pressure: k-Wave starts from the density ``p0 / c0^2`` and its
dispersive equation of state turns a density into the pressure ``c(f)^2`` times it, so
its absorbing scans start from ``(c(f) / c0)^2 p0`` in effect (1.0041 for ``y = 1.5``,
1.0127 for ``y = 1.2`` at 1 MHz). :func:`kwave_source_gain` applies that filter to
oatomo's signals for the rows marked "k-Wave's p0 gain": what is left is the attenuation
models' difference.

1. *Signals*: per sensor, the Pearson correlation, the least-squares amplitude
   ``<y, k> / <y, y>`` of k-Wave's ``k`` on oatomo's ``y`` and the relative L2 error
   ``||y - k|| / ||k||`` (median and worst), for oatomo's line-source model
   (``medium="2d"``) with the attenuation at k-Wave's 1 MHz speed (with and without
   k-Wave's p0 gain), with it at 1500 m/s
   (the dispersion's reference ignored), and without attenuation (1500 m/s).
2. *Reconstruction*: TV (``mb-tv``, 50 iterations, default weight, the detector response
   in the operator, the 2-D medium) on a 64 x 64 image grid at 0.2 mm (the k-Wave grid is
   2x finer), the k-Wave signals band-limited by a Gaussian detector response (2 MHz,
   120 % fractional bandwidth) with 1 % white noise of the largest sample; with and
   without the attenuation in the operator (without: at 1500 m/s and at the 1 MHz speed),
   and on the non-absorbing k-Wave scan of the
   same blobs (``tests/data/kwave_2d_ring16.npz``, the same band and noise) for reference.
   Score: PSNR (range 1) after the best affine fit to ``p0`` block-averaged 2 x 2, maximum
   1; mean over 5 noise draws.

Run (oatomo's environment, about a minute)::

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python benchmarks/media/kwave_attenuation.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from oatomo.evaluation.metrics import affine_fit, psnr
from oatomo.forward import ForwardOperator
from oatomo.geometry import Acquisition, Grid, SensorArray
from oatomo.media import Attenuation
from oatomo.recon.registry import reconstruct_sinogram
from oatomo.response import DetectorResponse, convolve

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
FINE = Grid(128, 128 * 1e-4)
IMAGE = Grid(64, 128 * 1e-4)
RESPONSE = DetectorResponse(centre_frequency=2e6, bandwidth=1.2)
NOISE, SEEDS, TV_ITERS = 0.01, (0, 1, 2, 3, 4), 50


def per_sensor(y: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Correlation, amplitude and relative L2 of ``ref`` against ``y`` (median, worst)."""
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    corr = np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(y, ref, strict=True)])
    amp = np.einsum("nt,nt->n", y, ref) / np.einsum("nt,nt->n", y, y)
    rel = np.linalg.norm(y - ref, axis=1) / np.linalg.norm(ref, axis=1)
    return {"corr_min": float(corr.min()), "corr_median": float(np.median(corr)),
            "amp_min": float(amp.min()), "amp_max": float(amp.max()),
            "rel_median": float(np.median(rel)), "rel_max": float(rel.max())}


def best_shift(y: np.ndarray, ref: np.ndarray, fs: float) -> np.ndarray:
    """Per sensor, the delay (s) of ``y`` that best fits ``ref`` (least squares over
    shifts of -2 to 2 samples in steps of 1/200, applied in the Fourier domain)."""
    n = 2 * y.shape[1]
    f = np.fft.rfftfreq(n, 1 / fs)
    Y, R = np.fft.rfft(y, n), np.fft.rfft(ref, n)
    shifts = np.arange(-400, 401) / 200 / fs
    out = []
    for a, b in zip(Y, R, strict=True):
        err = [np.linalg.norm(np.fft.irfft(a * np.exp(-2j * np.pi * f * s), n) - np.fft.irfft(b, n))
               for s in shifts]
        out.append(shifts[int(np.argmin(err))])
    return np.asarray(out)


def kwave_source_gain(y: np.ndarray, acquisition: Acquisition, attenuation: Attenuation,
                      c0: float) -> np.ndarray:
    """``y`` filtered by ``(c(f) / c0)^2``, ``c(f)`` the phase speed of ``attenuation`` with
    ``c(1 MHz)`` the acquisition's speed: k-Wave's effective initial pressure."""
    n = 4 * y.shape[-1]
    f = np.fft.rfftfreq(n, 1 / acquisition.fs)
    slowness = 1 / acquisition.speed_of_sound + attenuation.slowness_excess(f)
    slowness[0] = 1 / c0
    gain = 1 / (slowness * c0) ** 2
    return np.fft.irfft(np.fft.rfft(y, n) * gain, n)[..., :y.shape[-1]]


def evaluate() -> dict[str, Any]:
    """The measurements of the module docstring."""
    d = dict(np.load(DATA / "kwave_2d_ring16_attenuation.npz"))
    water = dict(np.load(DATA / "kwave_2d_ring16.npz"))
    p0, fs, c0 = d["p0"], float(d["fs"]), float(d["c"])
    sensors = SensorArray(d["positions"])
    n_samples = water["signals"].shape[1]
    assert np.array_equal(p0, water["p0"]) and float(water["c"]) == c0

    def acq(c: float) -> Acquisition:
        return Acquisition(fs, n_samples, speed_of_sound=c, t0=float(d["t0"]))

    truth = p0.reshape(64, 2, 64, 2).mean(axis=(1, 3))
    truth = truth / truth.max()

    def score(img: np.ndarray) -> float:
        return float(psnr(affine_fit(np.asarray(img, np.float64)[None], truth[None])[0],
                          truth, data_range=1.0))

    def tv_scores(signals: np.ndarray, c: float, attenuation: Attenuation | None) -> list:
        yb = np.asarray(convolve(signals, fs, RESPONSE), np.float64)
        out = []
        for seed in SEEDS:
            noisy = yb + NOISE * np.abs(yb).max() \
                * np.random.default_rng(seed).standard_normal(yb.shape)
            img = reconstruct_sinogram(noisy.astype(np.float32), IMAGE, sensors, acq(c),
                                       "mb-tv", iters=TV_ITERS, response=RESPONSE,
                                       medium="2d", attenuation=attenuation)
            out.append(score(img))
        return out

    results: dict[str, Any] = {"signals": {}, "recon": {}}
    plain = ForwardOperator(FINE, sensors, acq(c0), medium="2d").forward(p0)
    ref_water = tv_scores(water["signals"], c0, None)
    results["recon"]["water (no absorption), 2-D model"] = ref_water
    for y in np.asarray(d["powers"]):
        tag = f"y{round(100 * y)}"
        k = d[f"signals_{tag}"].astype(np.float64)
        c1 = float(d[f"c_1mhz_{tag}"])
        att = Attenuation(float(d["alpha0"]), float(y))
        model = ForwardOperator(FINE, sensors, acq(c1), medium="2d", attenuation=att).forward(p0)
        at_c0 = ForwardOperator(FINE, sensors, acq(c0), medium="2d", attenuation=att).forward(p0)
        gained = kwave_source_gain(np.asarray(model, np.float64), acq(c1), att, c0)
        rows = {"attenuation, c at 1 MHz": per_sensor(model, k),
                "attenuation, c at 1 MHz, k-Wave's p0 gain": per_sensor(gained, k),
                "attenuation, c0": per_sensor(at_c0, k),
                "no attenuation, c0": per_sensor(plain, k),
                "no attenuation, c at 1 MHz": per_sensor(
                    ForwardOperator(FINE, sensors, acq(c1), medium="2d").forward(p0), k),
                "k-Wave: absorbing vs water": per_sensor(water["signals"], k)}
        for name, y_model in (("attenuation, c at 1 MHz", model),
                              ("attenuation, c at 1 MHz, k-Wave's p0 gain", gained),
                              ("attenuation, c0", at_c0)):
            shift = best_shift(np.asarray(y_model, np.float64), k, fs)
            rows[name]["delay_ns_median"] = float(np.median(shift) * 1e9)
            rows[name]["delay_ns_range"] = [float(shift.min() * 1e9), float(shift.max() * 1e9)]
        results["signals"][tag] = {"c_1mhz": c1, **rows}
        results["recon"][f"{tag}, attenuation in the operator"] = tv_scores(k, c1, att)
        results["recon"][f"{tag}, no attenuation, c0"] = tv_scores(k, c0, None)
        results["recon"][f"{tag}, no attenuation, c at 1 MHz"] = tv_scores(k, c1, None)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    res = evaluate()
    for tag, rows in res["signals"].items():
        print(f"{tag}: oatomo given c = {rows['c_1mhz']:.3f} m/s")
        for name, r in rows.items():
            if isinstance(r, dict):
                extra = (f"  delay {r['delay_ns_median']:+.1f} ns "
                         f"[{r['delay_ns_range'][0]:+.1f}, {r['delay_ns_range'][1]:+.1f}]"
                         if "delay_ns_median" in r else "")
                print(f"  {name:42s} corr min {r['corr_min']:.5f}  amp "
                      f"{r['amp_min']:.4f}-{r['amp_max']:.4f}  rel L2 {r['rel_median']:.4f} / "
                      f"{r['rel_max']:.4f}{extra}")
    for name, scores in res["recon"].items():
        print(f"TV {name:40s} {np.mean(scores):6.2f} dB  ({min(scores):.2f}-{max(scores):.2f})")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

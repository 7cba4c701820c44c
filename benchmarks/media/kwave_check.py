"""oatomo's models and reconstructions checked against an independent full-wave simulator,
k-Wave (k-wave-python, its pure-Python NumPy backend, 2-D).

Three stages share the files under ``out/kwave/``:

``phantoms`` (oatomo's environment)
    the initial pressures, drawn by :mod:`oatomo.phantoms` on the fine grid (256 x 256 at
    0.075 mm, 19.2 mm field of view), written to ``phantoms.npz``;
``simulate`` (k-Wave's environment; imports no oatomo)
    each case on a 600 x 600 k-Wave grid at 0.075 mm (45 mm square, PML of 20 points
    outside), the phantom at its centre, smoothed by k-Wave's own ``smooth`` (Blackman
    window, maximum restored; the smoothed ``p0`` is what both simulators get), homogeneous
    water at 1500 m/s and 1000 kg/m^3 (or with a disc of 1540 m/s), no absorption, float32,
    sensors as Cartesian points (k-Wave interpolates the pressure linearly between grid
    points); written to ``<case>.npz``: ``p0`` on the fine grid, the true and the nominal
    sensor positions (oatomo's frame), the sample times and the signals;
``evaluate`` (oatomo's environment)
    the measurements below, written to ``results.json`` and printed.

Geometry and sampling: a 64-sensor ring of radius 21 mm, sampled at 40 MHz from t = 0,
960 samples. k-Wave steps at 25 ns (CFL 0.5; exact in time for a homogeneous medium
thanks to the k-space correction) or at 12.5 ns with the disc (every second sample kept),
and records point values; oatomo's samples are means over each sampling interval, so the
k-Wave signals are multiplied by ``sinc(f / fs)`` in the frequency domain (exact for
signals band-limited below fs / 2, as a 0.075 mm grid's are: its Nyquist frequency is
10 MHz in water).

Cases: ``ring`` (a vessel tree, depth 5, at the nominal positions, water), ``disc`` and
``disc1580`` (the same tree and positions, a disc of radius 9 mm at 1540 or 1580 m/s
centred on the image), and
three self-calibration cases (a vessel tree of depth 5, a thick tree of root width 0.6 mm
and depth 4, :func:`oatomo.phantoms.disks`), each with its own per-sensor position errors
(radial sigma 0.25 mm, angular sigma 0.5 deg, drawn in the ``simulate`` stage) and the
nominal ring in the file. Seeds 3100-3103 (no benchmark or tuning of the repository uses
them). Two more scans tune the two-speed estimator's region rule only
(``kwave_region_rule.py``): ``tune-disc`` (a thick tree, seed 3104, a disc of radius
7 mm at 1560 m/s) and ``tune-water`` (the same tree in water).

Measurements (``evaluate``):

1. *Signals*: k-Wave against ``oatomo.simulate(p0, fine, true_sensors, acq,
   medium="2d")`` on the same ``p0``: per sensor, the Pearson correlation and the relative
   L2 error ``||kwave - oatomo|| / ||oatomo||`` (median, worst); then the same after
   :func:`oatomo.media.line_to_slab` against oatomo's slab model (thickness 0.075 mm);
   both also after the detector response of 2. on both signals (``_band``).
2. *Reconstruction on k-Wave data*, true positions: the signals convolved with a Gaussian
   detector response (centre 2.67 MHz, 120 % fractional bandwidth, the band of
   ``two_speeds.py`` for this image grid), 1 % white noise of the largest sample; TV
   (``mb-tv``, 50 iterations, default weight, the response in the operator) with the 2-D
   medium, with the slab model on the raw 2-D signals, and with the slab model on the
   signals converted by ``line_to_slab``; for reference TV on oatomo's own slab simulation
   of the same ``p0`` and sensors (same band and noise). Image grid 128 x 128 at 0.15 mm;
   score: PSNR (data range 1) after the best affine fit to the truth, ``p0`` block-averaged
   (2 x 2) onto the image grid, maximum 1.
3. *Self-calibration on k-Wave data* (the calibration cases): the band-limited, noisy
   signals converted to the slab model and handed with the nominal positions, 1500 m/s
   and the response to ``oatomo.reconstruct(scan, grid=grid)``; against TV on the file's
   positions and TV on the true positions; PSNR raw and after the best rigid registration
   (``register`` of ``benchmarks/calibration/heldout_default.py``); the rms position
   error after rigid alignment of the file and of the calibrated positions. Control: the
   default and TV on the true positions on oatomo's own slab simulation of the same
   ``p0``, positions, band and noise level (registered PSNR).
4. *Two speeds* (``disc``, ``disc1580``; ``ring``, the same phantom in water, for
   reference): the converted signals reconstructed by TV with the file's speed (1500
   m/s), with one speed from :func:`oatomo.recon.autofocus.autofocus` (DAS sharpness,
   1450-1650 m/s), with the right :class:`oatomo.SpeedMap` (disc of radius 9 mm:
   straight rays), and with the region estimated by
   :func:`oatomo.recon.autofocus.autofocus_two_speeds` (the water's speed fixed, and
   fitted too), also where its gain stayed below the threshold that reports a region;
   and TV with one speed every 10 m/s from 1500 m/s to the disc's, scored against the
   truth (the best single speed, an oracle).
   ``evaluate --part two-speeds`` runs only this (``simulate --cases ring disc
   disc1580`` first), written to ``two_speeds.json``.

Run (from the repository root; k-wave-python in its own environment, here ``/tmp/kwenv``;
about 5 minutes for ``simulate`` and 5 for ``evaluate`` on one core)::

    PYTHONPATH=. .venv/bin/python benchmarks/media/kwave_check.py phantoms
    OMP_NUM_THREADS=1 /tmp/kwenv/bin/python benchmarks/media/kwave_check.py simulate
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/media/kwave_check.py evaluate
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out" / "kwave"
MM = 1e-3

N_IMAGE, FOV = 128, 19.2 * MM
N_FINE = 2 * N_IMAGE
DX = FOV / N_FINE  # 0.075 mm: k-Wave's and the fine grid's pitch
N_KWAVE, PML = 600, 20  # 600 + 2 x 20 = 640 points with the PML
C0, DISC_R, RHO = 1500.0, 9 * MM, 1000.0
FS, N_SAMPLES = 40e6, 960
RING_N, RING_R = 64, 21 * MM
RADIAL, ANGULAR_DEG = 0.25 * MM, 0.5
NOISE = 0.01
TV_ITERS = 50
THICKNESS = DX

#: case -> (phantom, seed, perturbed sensors, the disc's speed (m/s) or None: water)
CASES: dict[str, tuple[str, int, bool, float | None]] = {
    "ring": ("vessels", 3100, False, None),
    "disc": ("vessels", 3100, False, 1540.0),
    "disc1580": ("vessels", 3100, False, 1580.0),
    "cal-vessels": ("vessels", 3101, True, None),
    "cal-thick": ("vessels-thick", 3102, True, None),
    "cal-disks": ("disks", 3103, True, None),
    # tuning scans of the two-speed estimator's region rule (kwave_region_rule.py)
    "tune-disc": ("vessels-thick", 3104, False, 1560.0),
    "tune-water": ("vessels-thick", 3104, False, None),
}
#: the disc's radius (m) where it is not DISC_R
DISC_RADIUS = {"tune-disc": 7 * MM}
TUNE_CASES = ["tune-disc", "tune-water"]
CAL_CASES = [k for k, v in CASES.items() if v[2]]
WATER_CASES = [k for k, v in CASES.items() if v[3] is None and k not in TUNE_CASES]
DISC_CASES = [k for k, v in CASES.items() if v[3] is not None and k not in TUNE_CASES]
#: the cases of ``evaluate --part two-speeds`` (simulate them with ``--cases``)
TWO_SPEED_CASES = ["ring", *DISC_CASES]


def _phantom_key(kind: str, seed: int) -> str:
    return f"{kind}_{seed}"


# --- stage 1: phantoms (oatomo) --------------------------------------------------------


def make_phantoms() -> None:
    """Draw every case's phantom on the fine grid; write ``phantoms.npz``."""
    from oatomo.geometry import Grid  # lazy: the simulate stage runs without oatomo
    from oatomo.phantoms import disks, vessel_tree

    fine = Grid(N_FINE, FOV)
    arrays = {}
    for kind, seed, _, _ in CASES.values():
        if kind == "vessels":
            p0 = vessel_tree(fine, seed, depth=5)
        elif kind == "vessels-thick":
            p0 = vessel_tree(fine, seed, depth=4, width=0.6 * MM)
        else:
            p0 = disks(fine, seed)
        arrays[_phantom_key(kind, seed)] = np.asarray(p0, np.float64)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(OUT / "phantoms.npz", **arrays)
    print(f"wrote {OUT / 'phantoms.npz'}: {', '.join(arrays)}")


# --- stage 2: simulate (k-Wave) --------------------------------------------------------


def ring_positions(radial: np.ndarray | None = None, angular: np.ndarray | None = None
                   ) -> np.ndarray:
    """(N, 2) ring positions (x, y) in oatomo's frame, angles ``2 pi k / N``."""
    ang = 2 * np.pi * np.arange(RING_N) / RING_N
    r = np.full(RING_N, RING_R)
    if radial is not None:
        r = r + radial
    if angular is not None:
        ang = ang + angular
    return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)


def to_kwave(xy: np.ndarray) -> np.ndarray:
    """oatomo (x, y) -> k-Wave Cartesian (2, N).

    oatomo's pixel ``[row, col]`` is at ``x = (col - 127.5) dx, y = (row - 127.5) dx``;
    the fine grid goes transposed to k-Wave indices ``[o + col, o + row]`` (``o = (600 -
    256) / 2``), and k-Wave's ``[i, j]`` is at ``x_k = (i - 300) dx, y_k = (j - 300) dx``,
    so ``x_k = x - dx / 2`` and ``y_k = y - dx / 2``.
    """
    return np.stack([xy[:, 0] - DX / 2, xy[:, 1] - DX / 2])


def interval_means(y: np.ndarray, fs: float, width: float | None = None) -> np.ndarray:
    """Point samples of a band-limited signal at ``fs`` -> the means over a window of
    ``width`` seconds (default: the sampling interval) centred on each sample (the
    window's transfer function ``sinc(f width)``)."""
    n = y.shape[-1]
    pad = 256
    z = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(pad, pad)], mode="edge")
    f = np.fft.rfftfreq(z.shape[-1], 1 / fs)
    w = 1 / fs if width is None else width
    z = np.fft.irfft(np.fft.rfft(z, axis=-1) * np.sinc(f * w), z.shape[-1], axis=-1)
    return z[..., pad:pad + n]


def simulate_case(name: str, phantoms: Any) -> dict[str, Any]:
    """One k-Wave run; the arrays of ``<case>.npz``."""
    import urllib.request  # lazy: only the k-Wave stage

    # k-wave-python fetches its C++ binaries on import; the NumPy backend needs none
    urllib.request.urlretrieve = lambda url, filename, *a, **k: (  # type: ignore
        open(filename, "wb").close(), (filename, None))[1]
    from kwave.kgrid import kWaveGrid  # lazy: k-Wave's environment only
    from kwave.kmedium import kWaveMedium
    from kwave.ksensor import kSensor
    from kwave.ksource import kSource
    from kwave.kspaceFirstOrder import kspaceFirstOrder
    from kwave.utils.filters import smooth

    kind, seed, perturbed, disc = CASES[name]
    o = (N_KWAVE - N_FINE) // 2
    p0_fine = phantoms[_phantom_key(kind, seed)]
    big = np.zeros((N_KWAVE, N_KWAVE))
    big[o:o + N_FINE, o:o + N_FINE] = p0_fine.T  # oatomo [row=y, col=x] -> k-Wave [x, y]
    big = smooth(big, restore_max=True)
    inside = big[o:o + N_FINE, o:o + N_FINE]
    outside = float(1 - np.sum(inside ** 2) / np.sum(big ** 2))

    nominal = ring_positions()
    if perturbed:
        rng = np.random.default_rng(seed)
        radial = rng.standard_normal(RING_N) * RADIAL
        angular = rng.standard_normal(RING_N) * ANGULAR_DEG * math.pi / 180
        true = ring_positions(radial, angular)
    else:
        true = nominal

    sub = 1 if disc is None else 2
    kgrid = kWaveGrid((N_KWAVE, N_KWAVE), (DX, DX))
    kgrid.setTime(N_SAMPLES * sub, 1 / (FS * sub))
    if disc is not None:
        xk = (np.arange(N_KWAVE) - N_KWAVE // 2) * DX + DX / 2  # oatomo's frame
        X, Y = np.meshgrid(xk, xk, indexing="ij")
        radius = DISC_RADIUS.get(name, DISC_R)
        speed = np.where(X ** 2 + Y ** 2 < radius ** 2, disc, C0)
        medium = kWaveMedium(sound_speed=speed, density=RHO)
    else:
        medium = kWaveMedium(sound_speed=C0, density=RHO)
    source = kSource()
    source.p0 = big
    sensor = kSensor(to_kwave(true))
    t = time.perf_counter()
    res = kspaceFirstOrder(kgrid, medium, source, sensor, pml_size=PML, smooth_p0=False,
                           backend="python", device="cpu", dtype=np.float32, quiet=True)
    elapsed = time.perf_counter() - t
    p = np.asarray(res["p"], np.float64)[:, ::sub]
    return {"p0": inside.T.copy(), "p0_outside_energy": outside, "true": true,
            "nominal": nominal, "t": np.arange(N_SAMPLES) / FS, "fs": FS, "c0": C0,
            "signals": interval_means(p, FS), "signals_point": p, "seconds": elapsed,
            "disc": 0.0 if disc is None else disc}


def run_simulations(force: bool, cases: list[str] | None = None) -> None:
    """Every case (or those of ``cases``) not yet on disk (or all with ``force``)."""
    phantoms = np.load(OUT / "phantoms.npz")
    for name in CASES if cases is None else cases:
        path = OUT / f"{name}.npz"
        if path.exists() and not force:
            print(f"{name}: on disk")
            continue
        arrays = simulate_case(name, phantoms)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        print(f"{name}: {arrays['seconds']:.0f} s, p0 energy outside the fine grid "
              f"{arrays['p0_outside_energy']:.1e}", flush=True)


# --- stage 3: evaluate (oatomo) --------------------------------------------------------


def _stats(v: np.ndarray, worst: str) -> dict[str, float]:
    return {"median": float(np.median(v)),
            "worst": float(np.min(v) if worst == "min" else np.max(v))}


def compare_signals(ref: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """Per-sensor Pearson correlation and relative L2 error of ``test`` against ``ref``."""
    r = ref - ref.mean(axis=1, keepdims=True)
    s = test - test.mean(axis=1, keepdims=True)
    corr = np.sum(r * s, axis=1) / np.sqrt(np.sum(r * r, axis=1) * np.sum(s * s, axis=1))
    rel = np.linalg.norm(test - ref, axis=1) / np.linalg.norm(ref, axis=1)
    return {"corr": _stats(corr, "min"), "rel_l2": _stats(rel, "max")}


def spectrum_detail(ref: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """Least-squares scale ``test / ref`` per sensor (median, min, max) and the relative
    L2 difference in frequency bands (MHz), over all sensors."""
    scale = np.sum(test * ref, axis=1) / np.sum(ref * ref, axis=1)
    e = np.abs(np.fft.rfft(test - ref, axis=1)) ** 2
    r = np.abs(np.fft.rfft(ref, axis=1)) ** 2
    f = np.fft.rfftfreq(ref.shape[1], 1 / FS) / 1e6
    bands = {}
    for lo, hi in ((0, 1), (1, 3), (3, 6), (6, 10), (10, 20)):
        m = (f >= lo) & (f < hi)
        bands[f"{lo}-{hi}"] = float(np.sqrt(e[:, m].sum() / r[:, m].sum()))
    return {"scale": [float(np.median(scale)), float(scale.min()), float(scale.max())],
            "bands": bands}


def evaluate(parts: str = "all") -> dict[str, Any]:
    """The measurements of the module docstring (``parts="two-speeds"``: only 4.)."""
    import importlib.util  # lazy: only to load the calibration benchmark by path

    import oatomo  # lazy: oatomo's environment only
    from oatomo.calibration import rigid_error
    from oatomo.evaluation.metrics import affine_fit, psnr
    from oatomo.forward import simulate
    from oatomo.geometry import Acquisition, Grid, SensorArray
    from oatomo.io import Scan
    from oatomo.media import line_to_slab
    from oatomo.recon.autofocus import autofocus, autofocus_two_speeds
    from oatomo.recon.registry import reconstruct_sinogram
    from oatomo.response import DetectorResponse, convolve
    from oatomo.speed_map import SpeedMap

    spec = importlib.util.spec_from_file_location(
        "heldout_default", ROOT / "benchmarks" / "calibration" / "heldout_default.py")
    assert spec is not None and spec.loader is not None
    heldout = importlib.util.module_from_spec(spec)
    sys.modules["heldout_default"] = heldout
    spec.loader.exec_module(heldout)

    grid, fine = Grid(N_IMAGE, FOV), Grid(N_FINE, FOV)
    acq = Acquisition(FS, N_SAMPLES, C0)
    response = DetectorResponse(centre_frequency=4e6 * 0.1 * MM / grid.dx, bandwidth=1.2)

    def sensors(xy: np.ndarray) -> SensorArray:
        return SensorArray(xy, -xy / np.linalg.norm(xy, axis=1, keepdims=True))

    def score(img: np.ndarray, truth: np.ndarray) -> float:
        fit = affine_fit(np.asarray(img, np.float64)[None], truth[None])[0]
        return float(psnr(fit, truth, data_range=1.0))

    def tv(y: np.ndarray, s: SensorArray, speed_of_sound: float = C0, **kw: Any
           ) -> np.ndarray:
        return reconstruct_sinogram(y, grid, s, Acquisition(FS, N_SAMPLES, speed_of_sound),
                                    "mb-tv", iters=TV_ITERS, response=response, **kw)

    def measured(y: np.ndarray, seed: int) -> np.ndarray:
        """Band-limited by the detector and 1 % white noise of the largest sample."""
        yb = np.asarray(convolve(y, FS, response), np.float64)
        rng = np.random.default_rng(seed)
        return yb + NOISE * np.abs(yb).max() * rng.standard_normal(yb.shape)

    results: dict[str, Any] = {"signals": {}, "recon": {}, "calibration": {},
                               "two_speeds": {}}
    names = [k for k in CASES if k not in TUNE_CASES] if parts == "all" else TWO_SPEED_CASES
    data = {name: dict(np.load(OUT / f"{name}.npz")) for name in names}
    for name, d in data.items():
        assert np.allclose(d["t"], np.arange(N_SAMPLES) / FS) and float(d["c0"]) == C0
        truth = heldout.block_mean(d["p0"])
        d["truth"] = truth / truth.max()
        d["measured"] = measured(d["signals"], CASES[name][1])

    # 1. signals
    for name in WATER_CASES if parts == "all" else []:
        d = data[name]
        true = sensors(d["true"])
        o2d = simulate(d["p0"], fine, true, acq, medium="2d", thickness=THICKNESS)
        oslab = simulate(d["p0"], fine, true, acq, thickness=THICKNESS)
        conv = line_to_slab(d["signals"], acq, thickness=THICKNESS)
        results["signals"][name] = {"2d": compare_signals(o2d, d["signals"]),
                                    "slab": compare_signals(oslab, conv),
                                    "2d_band": compare_signals(convolve(o2d, FS, response),
                                                               convolve(d["signals"], FS,
                                                                        response)),
                                    "slab_band": compare_signals(convolve(oslab, FS, response),
                                                                 convolve(conv, FS, response)),
                                    "2d_detail": spectrum_detail(o2d, d["signals"]),
                                    "p0_outside_energy": float(d["p0_outside_energy"])}
        print(name, "signals", json.dumps(results["signals"][name]), flush=True)

    # 2. reconstructions with the true positions
    for name in WATER_CASES if parts == "all" else []:
        d = data[name]
        true = sensors(d["true"])
        y = d["measured"]
        own = simulate(d["p0"], fine, true, acq, thickness=grid.dx, noise_std=NOISE,
                       response=response, seed=CASES[name][1])
        row = {"tv_2d": score(tv(y, true, medium="2d"), d["truth"]),
               "tv_slab_raw": score(tv(y, true), d["truth"]),
               "tv_slab_converted": score(tv(line_to_slab(y, acq, thickness=grid.dx), true),
                                          d["truth"]),
               "tv_oatomo_slab_sim": score(tv(own, true), d["truth"])}
        results["recon"][name] = row
        print(name, "recon", json.dumps(row), flush=True)

    # 3. self-calibration
    for name in CAL_CASES if parts == "all" else []:
        d = data[name]
        true, nominal = sensors(d["true"]), sensors(d["nominal"])
        ys = line_to_slab(d["measured"], acq, thickness=grid.dx)
        scan = Scan(ys, nominal, acq, response=response)
        t = time.perf_counter()
        rec = oatomo.reconstruct(scan, grid=grid)
        t_default = time.perf_counter() - t
        prov = rec.provenance
        row: dict[str, Any] = {"t_default": t_default,
                               "check_asked": bool((prov.get("position_check") or {})
                                                   .get("needs_calibration")),
                               "calibrated": prov.get("calibration") is not None,
                               "method": prov["method"],
                               "c_default": float(prov["speed_of_sound"])}
        imgs = {"default": np.asarray(rec.image, np.float64),
                "tv_file": tv(ys, nominal), "tv_true": tv(ys, true)}
        for k, img in imgs.items():
            row[f"psnr_{k}"] = score(img, d["truth"])
            row[f"psnr_{k}_reg"], row[f"motion_{k}"] = heldout.register(img, d["truth"])
        row["pos_err_file_um"] = float(np.sqrt(np.mean(rigid_error(nominal, true) ** 2))) * 1e6
        if row["calibrated"]:
            cal = oatomo.calibrate(scan, grid)  # the provenance keeps no positions
            row["pos_err_default_um"] = float(
                np.sqrt(np.mean(rigid_error(cal.sensors, true) ** 2))) * 1e6
        # control: the same, on oatomo's own slab simulation (same p0, positions, band)
        own = simulate(d["p0"], fine, true, acq, thickness=grid.dx, noise_std=NOISE,
                       response=response, seed=CASES[name][1])
        own_scan = Scan(own, nominal, acq, response=response)
        for k, img in (("oatomo_default", oatomo.reconstruct(own_scan, grid=grid).image),
                       ("oatomo_tv_true", tv(own, true))):
            row[f"psnr_{k}_reg"] = heldout.register(np.asarray(img, np.float64),
                                                    d["truth"])[0]
        results["calibration"][name] = row
        print(name, "calibration", json.dumps(row), flush=True)

    # 4. two speeds
    ring = sensors(data["ring"]["true"])
    yw = line_to_slab(data["ring"]["measured"], acq, thickness=grid.dx)
    water = score(tv(yw, ring), data["ring"]["truth"])
    for name in ["ring", *DISC_CASES]:
        d = data[name]
        c1 = CASES[name][3]
        ys = line_to_slab(d["measured"], acq, thickness=grid.dx)
        t = time.perf_counter()
        af = autofocus(ys, grid, ring, acq, c_range=(1450.0, 1650.0), n_coarse=18)
        row = {"c1": c1, "water": water, "one_file": score(tv(ys, ring), d["truth"]),
               "autofocus_c": af["speed_of_sound"], "autofocus_s": time.perf_counter() - t}
        row["one_autofocus"] = score(tv(ys, ring, speed_of_sound=af["speed_of_sound"]),
                                     d["truth"])
        if c1 is not None:
            row["two_right"] = score(tv(ys, ring, speed_map=SpeedMap(C0, c1, DISC_R)),
                                     d["truth"])
            # the best single speed by the truth itself (every 10 m/s up to the disc's)
            row["one_sweep"] = {f"{c:.0f}": score(tv(ys, ring, speed_of_sound=float(c)),
                                                  d["truth"])
                                for c in np.arange(C0, c1 + 1, 10.0)}
        for key, fit_c0 in (("est", False), ("est_c0", True)):
            t = time.perf_counter()
            est = autofocus_two_speeds(ys, grid, ring, acq, fit_c0=fit_c0)
            row[f"{key}_s"] = time.perf_counter() - t
            row[f"{key}_found"] = est["region_found"]
            row[f"{key}_c0"] = est["speed_of_sound"]
            row[f"{key}_c1"] = est["object_speed_of_sound"]
            row[f"{key}_radius_mm"] = est["object_radius"] / MM
            row[f"{key}_misfit_gain"] = 1 - est["misfit"] / est["misfit_one_speed"]
            sm = est["speed_map"]
            row[f"{key}_tv"] = score(tv(ys, ring, speed_map=sm) if sm is not None else
                                     tv(ys, ring, speed_of_sound=est["speed_of_sound"]),
                                     d["truth"])
            if sm is None:  # the region below the threshold, used all the same
                region = SpeedMap(est["speed_of_sound"], est["object_speed_of_sound"],
                                  est["object_radius"], tuple(est["object_centre"]))
                row[f"{key}_tv_region"] = score(tv(ys, ring, speed_map=region), d["truth"])
        results["two_speeds"][name] = row
        print(name, "two speeds", json.dumps(row), flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=("phantoms", "simulate", "evaluate"))
    ap.add_argument("--force", action="store_true", help="simulate: rerun cases on disk")
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=None,
                    help="simulate: only these cases")
    ap.add_argument("--part", choices=("all", "two-speeds"), default="all",
                    help="evaluate: every measurement, or only the two-speed one")
    args = ap.parse_args(argv)
    if args.stage == "phantoms":
        make_phantoms()
    elif args.stage == "simulate":
        run_simulations(args.force, args.cases)
    else:
        res = evaluate(args.part)
        path = OUT / ("results.json" if args.part == "all" else "two_speeds.json")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        tmp.replace(path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""oatomo's 3-D point-sensor model and its TV-against-UBP gain checked against an
independent full-wave simulator, 3-D k-Wave (k-wave-python, its pure-Python NumPy backend).

Three stages share the files under ``out/kwave3d/``:

``phantoms`` (oatomo's environment)
    each case's initial pressure, drawn by :mod:`oatomo.volume.phantoms` on a 48^3 grid of
    0.1 mm (4.8 mm side), and the sensor positions (below), written to ``phantoms.npz``;
``simulate`` (k-Wave's environment; imports no oatomo)
    each case on a 96^3 k-Wave grid at 0.1 mm (9.6 mm side, a PML of 10 points outside:
    116^3 points in all), the phantom at its centre, smoothed by k-Wave's own ``smooth``
    (Blackman window, maximum restored; the smoothed 96^3 ``p0`` is what both simulators
    get), homogeneous water at 1500 m/s and 1000 kg/m^3, no absorption, float32, time step
    20 ns (CFL 0.3), 320 steps (6.4 us: the farthest voxel of the 4.8 mm cube is 8.7 mm
    from a sensor, 5.8 us), the pressure recorded at Cartesian sensor points; written to
    ``<case>.npz``: the smoothed ``p0`` (96^3, oatomo's [z, y, x] order), the positions,
    the signals converted to oatomo's sample-interval means (``interval_means`` of
    ``benchmarks/media/kwave_check.py``: a ``sinc(f / fs)`` filter, exact for signals
    band-limited below fs / 2 = 25 MHz; a 0.1 mm grid carries up to 7.5 MHz) and the
    point samples;
``evaluate`` (oatomo's environment)
    the measurements below, written to ``results.json`` and printed.

Geometry: 128 sensors on a hemisphere (:func:`oatomo.volume.hemisphere_array`, z < 0) of
radius 4.5 mm, the largest that keeps every sensor 3 points inside k-Wave's grid, each
moved to the nearest k-Wave grid point (at most 0.087 mm) so that k-Wave records its own
values there rather than a trilinear interpolation between points; both simulators get
these moved positions. Sampling: 50 MHz from t = 0, 320 samples.

Cases: ``ball`` (:func:`oatomo.volume.phantoms.ball`, radius 1.2 mm, centre (0.4, -0.3,
0.5) mm: the N-wave), ``vessels-3710``, ``vessels-3711`` and ``vessels-3712``
(:func:`oatomo.volume.phantoms.vessels3d`, depth 5, two trees; seeds used nowhere else):
3710 and 3712 with roots 0.576 mm wide, the widths in voxels of ``tv_vs_ubp.py``'s trees
(its grids have the same pitches), 3711 with the default, 6 % of the side (0.29 mm).

Measurements (``evaluate``):

1. *Signals*: k-Wave against :func:`oatomo.volume.simulate_volume` of the same smoothed
   96^3 ``p0`` on the same 0.1 mm grid and the same positions: per sensor, the Pearson
   correlation and the relative L2 error ``||kwave - oatomo|| / ||oatomo||`` (median,
   worst), raw and after a Gaussian detector response on both (centre 2 MHz, 120 %
   fractional bandwidth: what a 0.2 mm grid carries), and the least-squares amplitude
   ratio k-Wave / oatomo; the same (``raw_fine``, ``band_fine``) with oatomo's model on a
   grid 2x finer (192^3 at 0.05 mm) of the same ``p0`` interpolated band-limited
   (:func:`upsample2`, k-Wave's own reading of the samples): what is left of the
   difference once oatomo's discretisation (trilinear voxels) is made finer.
2. *Reconstruction* on a grid 2x coarser, 24^3 at 0.2 mm over the central 4.8 mm cube, of
   the signals convolved with that detector response plus white noise of 2 % of the
   largest sample: as ``tv_vs_ubp.py`` does, ``ubp`` (band-passed 0.2-4 MHz),
   ``ubp-wiener`` (after Wiener deconvolution of the response, lam 1e-2) and ``tv``
   (:func:`oatomo.volume.reconstruct_volume_model_based`, ``method="tv"``, the response in
   the operator, 60 iterations, the default ``lam``: the factor 1 that ``tv_vs_ubp.py``
   chose on its tuning seeds); score: PSNR (data range 1) of each volume's best affine fit
   to the truth, the smoothed ``p0``'s central 48^3 block-averaged 2x2x2. On k-Wave's
   signals and, as a control, on oatomo's own simulation of the same ``p0``, positions,
   response and noise (the same noise draw).

Run (from the repository root; k-wave-python in its own environment, here ``/tmp/kwenv``;
``simulate`` takes about 3.5 minutes of CPU per case, 6-6.5 minutes on the busy 2-core
machine; ``evaluate`` a minute or two)::

    PYTHONPATH=. .venv/bin/python benchmarks/volume/kwave_check.py phantoms
    OMP_NUM_THREADS=1 /tmp/kwenv/bin/python benchmarks/volume/kwave_check.py simulate
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/volume/kwave_check.py evaluate
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out" / "kwave3d"
MM = 1e-3

DX = 0.1 * MM
N_KWAVE, PML = 96, 10  # 96^3 at 0.1 mm, PML outside: 116^3 points
N_FINE = 48  # the phantom's cube: 4.8 mm
N_IMAGE = N_FINE // 2  # the reconstruction grid: 24^3 at 0.2 mm
C0, RHO = 1500.0, 1000.0
FS, N_SAMPLES = 50e6, 320  # k-Wave's time step 20 ns: CFL 0.3
N_SENSORS, RADIUS = 128, 4.5 * MM
NOISE = 0.02
BAND = (0.2e6, 4e6)
TV_ITERS = 60

#: case -> (phantom, seed, root width in m); the ball has radius BALL_R at BALL_CENTRE
CASES: dict[str, tuple[str, int, float | None]] = {
    "ball": ("ball", 3709, None),
    "vessels-3710": ("vessels3d", 3710, 0.576 * MM),  # the widths of tv_vs_ubp.py's trees
    "vessels-3711": ("vessels3d", 3711, None),  # the default: 6 % of the 4.8 mm side
    "vessels-3712": ("vessels3d", 3712, 0.576 * MM),
}
BALL_R, BALL_CENTRE = 1.2 * MM, (0.4 * MM, -0.3 * MM, 0.5 * MM)


def _interval_means() -> Any:
    """``interval_means`` of the 2-D check (``benchmarks/media/kwave_check.py``)."""
    spec = importlib.util.spec_from_file_location(
        "kwave_check_2d", ROOT / "benchmarks" / "media" / "kwave_check.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.interval_means


# --- stage 1: phantoms (oatomo) --------------------------------------------------------


def snapped_hemisphere() -> tuple[np.ndarray, np.ndarray]:
    """The hemisphere's positions (N, 3) in oatomo's frame, each moved to the nearest
    k-Wave grid point, and their areas.

    oatomo's 96^3 grid has voxel centres at ``(j - 47.5) dx``, k-Wave's points are at
    ``(i - 48) dx``: k-Wave's point ``m`` is oatomo's ``(m + 0.5) dx``.
    """
    from oatomo.volume import hemisphere_array  # lazy: the simulate stage runs without oatomo

    hemi = hemisphere_array(N_SENSORS, RADIUS)
    m = np.round(hemi.positions / DX - 0.5)
    assert m.min() >= -N_KWAVE // 2 + 3 and m.max() <= N_KWAVE // 2 - 4
    return (m + 0.5) * DX, np.asarray(hemi.areas, np.float64)


def make_phantoms() -> None:
    """Draw every case's phantom on the 48^3 grid; write ``phantoms.npz``."""
    from oatomo.volume import VolumeGrid  # lazy: the simulate stage runs without oatomo
    from oatomo.volume.phantoms import ball, vessels3d

    fine = VolumeGrid(N_FINE, N_FINE * DX)
    arrays: dict[str, np.ndarray] = {}
    for name, (kind, seed, width) in CASES.items():
        arrays[name] = (ball(fine, BALL_R, BALL_CENTRE) if kind == "ball"
                        else vessels3d(fine, seed, width=width))
    arrays["positions"], arrays["areas"] = snapped_hemisphere()
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / "phantoms.tmp.npz"
    np.savez(tmp, **arrays)
    tmp.replace(OUT / "phantoms.npz")
    print(f"wrote {OUT / 'phantoms.npz'}: {', '.join(CASES)}")


# --- stage 2: simulate (k-Wave) --------------------------------------------------------


def simulate_case(name: str, phantoms: Any) -> dict[str, Any]:
    """One k-Wave run; the arrays of ``<case>.npz``."""
    import urllib.request  # lazy: only the k-Wave stage

    # k-wave-python fetches its C++ binaries on import; the NumPy backend needs none
    urllib.request.urlretrieve = lambda url, filename, *a, **k: (  # type: ignore
        open(filename, "wb").close(), (filename, None))[1]
    import kwave  # lazy: k-Wave's environment only
    from kwave.kgrid import kWaveGrid
    from kwave.kmedium import kWaveMedium
    from kwave.ksensor import kSensor
    from kwave.ksource import kSource
    from kwave.kspaceFirstOrder import kspaceFirstOrder
    from kwave.utils.filters import smooth

    o = (N_KWAVE - N_FINE) // 2
    big = np.zeros((N_KWAVE,) * 3)
    # oatomo [z, y, x] -> k-Wave [x, y, z]
    big[o:o + N_FINE, o:o + N_FINE, o:o + N_FINE] = np.asarray(phantoms[name]).transpose(2, 1, 0)
    big = smooth(big, restore_max=True)
    inside = big[o:o + N_FINE, o:o + N_FINE, o:o + N_FINE]
    outside = float(1 - np.sum(inside ** 2) / np.sum(big ** 2))
    pos = np.asarray(phantoms["positions"])

    kgrid = kWaveGrid((N_KWAVE,) * 3, (DX,) * 3)
    kgrid.setTime(N_SAMPLES, 1 / FS)
    source = kSource()
    source.p0 = big
    sensor = kSensor((pos - DX / 2).T.copy())  # oatomo's (m + 0.5) dx -> k-Wave's m dx
    t = time.perf_counter()
    res = kspaceFirstOrder(kgrid, kWaveMedium(sound_speed=C0, density=RHO), source, sensor,
                           pml_size=PML, pml_inside=False, smooth_p0=False, backend="python",
                           device="cpu", dtype=np.float32, quiet=True)
    elapsed = time.perf_counter() - t
    p = np.asarray(res["p"], np.float64)
    assert p.shape == (N_SENSORS, N_SAMPLES), p.shape
    return {"p0": big.transpose(2, 1, 0).astype(np.float32), "p0_outside_energy": outside,
            "positions": pos, "areas": np.asarray(phantoms["areas"]), "fs": FS, "c0": C0,
            "signals": _interval_means()(p, FS).astype(np.float32), "signals_point": p,
            "seconds": elapsed, "kwave": getattr(kwave, "__version__", "0.6.2")}


def run_simulations(force: bool) -> None:
    """Every case not yet on disk (or all with ``force``)."""
    phantoms = np.load(OUT / "phantoms.npz")
    for name in CASES:
        path = OUT / f"{name}.npz"
        if path.exists() and not force:
            print(f"{name}: on disk")
            continue
        arrays = simulate_case(name, phantoms)
        tmp = OUT / f"{name}.tmp.npz"
        np.savez(tmp, **arrays)
        tmp.replace(path)
        print(f"{name}: {arrays['seconds']:.0f} s, p0 energy outside the 48^3 cube "
              f"{arrays['p0_outside_energy']:.1e}", flush=True)


# --- stage 3: evaluate (oatomo) --------------------------------------------------------


def _stats(v: np.ndarray, worst: str) -> dict[str, float]:
    return {"median": float(np.median(v)),
            "worst": float(np.min(v) if worst == "min" else np.max(v))}


def compare_signals(ref: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """Per-sensor Pearson correlation, relative L2 error of ``test`` against ``ref`` and
    the least-squares amplitude ratio ``test / ref``."""
    r = ref - ref.mean(axis=1, keepdims=True)
    s = test - test.mean(axis=1, keepdims=True)
    corr = np.sum(r * s, axis=1) / np.sqrt(np.sum(r * r, axis=1) * np.sum(s * s, axis=1))
    rel = np.linalg.norm(test - ref, axis=1) / np.linalg.norm(ref, axis=1)
    scale = np.sum(test * ref, axis=1) / np.sum(ref * ref, axis=1)
    return {"corr": _stats(corr, "min"), "rel_l2": _stats(rel, "max"),
            "scale": [float(np.median(scale)), float(scale.min()), float(scale.max())]}


def upsample2(p0: np.ndarray) -> np.ndarray:
    """``p0`` (n^3 samples at pitch ``dx``) at the voxel centres of the grid 2x finer
    over the same cube, by band-limited (Fourier) interpolation: k-Wave's own reading of
    the samples. The fine voxel ``j`` sits at ``(j - 0.5) dx / 2`` from the first sample."""
    n = p0.shape[0]
    spec = np.fft.fftshift(np.fft.fftn(p0.astype(np.float64)))
    big = np.zeros((2 * n,) * 3, complex)
    o = n // 2
    big[o:o + n, o:o + n, o:o + n] = spec
    if n % 2 == 0:  # split the Nyquist planes evenly between +f and -f
        for ax in range(3):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[ax], hi[ax] = o, o + n
            big[tuple(lo)] *= 0.5
            big[tuple(hi)] = big[tuple(lo)]
    big = np.fft.ifftshift(big)
    shift = np.exp(-1j * np.pi * np.fft.fftfreq(2 * n))  # half a fine voxel back
    for ax in range(3):
        shape = [1, 1, 1]
        shape[ax] = 2 * n
        big *= shift.reshape(shape)
    return (np.real(np.fft.ifftn(big)) * 8).astype(np.float32)


def evaluate() -> dict[str, Any]:
    """The measurements of the module docstring."""
    from oatomo import Acquisition  # lazy: oatomo's environment only
    from oatomo.response import convolve, wiener_deconvolve
    from oatomo.volume import (
        SensorArray3D,
        VolumeGrid,
        backproject_volume,
        reconstruct_volume_model_based,
        simulate_volume,
    )

    spec = importlib.util.spec_from_file_location("tv_vs_ubp", ROOT / "benchmarks" / "volume"
                                                  / "tv_vs_ubp.py")
    assert spec is not None and spec.loader is not None
    tvu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tvu)

    fine = VolumeGrid(N_KWAVE, N_KWAVE * DX)
    grid = VolumeGrid(N_IMAGE, N_FINE * DX)
    acq = Acquisition(FS, N_SAMPLES, speed_of_sound=C0)
    response = tvu.RESPONSE
    assert tvu.BAND == BAND and tvu.TV_ITERS == TV_ITERS and tvu.NOISE == NOISE
    o = (N_KWAVE - N_FINE) // 2
    inner = slice(o, o + N_FINE)

    def measured(y: np.ndarray, seed: int) -> np.ndarray:
        """Through the detector response, plus 2 % white noise of the largest sample
        (as :func:`simulate_volume` adds it)."""
        yb = np.asarray(convolve(np.asarray(y, np.float32), FS, response), np.float64)
        rng = np.random.default_rng(seed)
        return (yb + NOISE * np.abs(yb).max() * rng.standard_normal(yb.shape)).astype(
            np.float32)

    def recon(y: np.ndarray, sensors: Any, truth: np.ndarray) -> dict[str, float]:
        ubp = backproject_volume(y, grid, sensors, acq, "ubp", band=BAND)
        y_w = wiener_deconvolve(y, FS, response, lam=1e-2)
        ubp_w = backproject_volume(y_w, grid, sensors, acq, "ubp", band=BAND)
        t = time.perf_counter()
        vol, rec = reconstruct_volume_model_based(y, grid, sensors, acq, method="tv",
                                                  n_iter=TV_ITERS, response=response)
        row = {"ubp": tvu.affine_psnr(ubp, truth), "ubp-wiener": tvu.affine_psnr(ubp_w, truth),
               "tv": tvu.affine_psnr(vol, truth), "tv_s": time.perf_counter() - t,
               "lam": float(rec["lam"])}
        row["gain"] = row["tv"] - max(row["ubp"], row["ubp-wiener"])
        return row

    results: dict[str, Any] = {"signals": {}, "recon": {}, "kwave_seconds": {}}
    for name, (_, seed, _) in CASES.items():
        d = dict(np.load(OUT / f"{name}.npz"))
        assert float(d["fs"]) == FS and float(d["c0"]) == C0
        pos = d["positions"]
        sensors = SensorArray3D(pos, -pos, d["areas"])
        p0 = d["p0"]
        t = time.perf_counter()
        own = simulate_volume(p0, fine, sensors, acq)
        t_own = time.perf_counter() - t
        own2 = simulate_volume(upsample2(p0), VolumeGrid(2 * N_KWAVE, N_KWAVE * DX), sensors,
                               acq)
        kw = d["signals"]
        kw_band = convolve(kw, FS, response)
        results["kwave_seconds"][name] = float(d["seconds"])
        results["signals"][name] = {
            "raw": compare_signals(own, kw),
            "band": compare_signals(convolve(own, FS, response), kw_band),
            "raw_fine": compare_signals(own2, kw),
            "band_fine": compare_signals(convolve(own2, FS, response), kw_band),
            "p0_outside_energy": float(d["p0_outside_energy"]), "oatomo_s": t_own}
        print(name, "signals", json.dumps(results["signals"][name]), flush=True)
        truth = tvu.block_mean(p0[inner, inner, inner])
        results["recon"][name] = {"kwave": recon(measured(kw, seed), sensors, truth),
                                  "oatomo": recon(measured(own, seed), sensors, truth)}
        print(name, "recon", json.dumps(results["recon"][name]), flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=("phantoms", "simulate", "evaluate"))
    ap.add_argument("--force", action="store_true", help="simulate: rerun cases on disk")
    args = ap.parse_args(argv)
    if args.stage == "phantoms":
        make_phantoms()
    elif args.stage == "simulate":
        run_simulations(args.force)
    else:
        res = evaluate()
        path = OUT / "results.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        tmp.replace(path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

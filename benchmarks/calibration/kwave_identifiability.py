"""The identifiability rules of self-calibration on scans of an independent full-wave
simulator (k-Wave).

Data: k-wave-python on its NumPy backend, 2-D, homogeneous water at 1500 m/s, the phantom
on a 0.075 mm grid smoothed by k-Wave's own ``smooth``, exactly as
``benchmarks/media/kwave_check.py`` (whose grid, sampling and conversion this script
reuses): sensors as Cartesian points at their TRUE positions; then the interval means of
the samples, the Gaussian detector response (2.67 MHz, 120 %), 1 % white noise, and the
conversion to the slab model (:func:`oatomo.media.line_to_slab`). The file holds the
nominal positions and a speed of sound off by up to 2 % (drawn); image grid 128 x 128 at
0.15 mm; truth: the fine ``p0`` averaged 2 x 2.

Cases (arrays of the kinds the rules are about; none is in another benchmark): a 16-ring
(r 20 mm, thick vessel tree) and a 24-ring (r 21 mm, disks), sparse; 48 sensors on a 90
deg arc (r 20 mm, vessel tree) and 56 on a 150 deg arc (r 20 mm, texture), short; a
64-element linear array at 0.3 mm pitch 11 mm below the image centre (points); and a
CORRECT 16-ring file (true positions and speed of sound; thin vessel tree). Per-sensor
errors as ``heldout_default.py`` draws them (rings and arcs radial 0.20-0.25 mm, angular
0.40-0.50 deg, jitter 0.03-0.05 mm; the linear array 0.1 mm along and across). Seeds
4100-4105. ``--set principal`` (every stage): the arrays of the calibration's quality
targets instead (:data:`PRINCIPAL_CASES`: rings of 32, 64, 128 and 256 sensors and a 270
deg arc of 72, r 21 mm, and correct 64- and 256-ring files; seeds 4200-4213), their
phantoms in ``phantoms_principal.npz``.

Per case: TV with the file's geometry, the default of ``oatomo.reconstruct`` (position
check, self-calibration with its rules, TV; not refined) and TV with the true geometry,
registered PSNR; what the default said (kept the file's geometry, kept the file's ``c``,
the sparse-array note); position errors after rigid alignment.

Run (about 1.5 minutes a case for ``simulate`` on one core; ``simulate`` imports no
oatomo and runs where k-wave-python 0.6.2 is installed, in an environment of its own as
for ``kwave_check.py``, here ``/tmp/kwenv``: its pins, numpy < 2.3 and matplotlib
3.10.9, conflict with oatomo's; it is not one of oatomo's dependencies)::

    PYTHONPATH=. .venv/bin/python benchmarks/calibration/kwave_identifiability.py phantoms
    OMP_NUM_THREADS=1 /tmp/kwenv/bin/python \\
        benchmarks/calibration/kwave_identifiability.py simulate
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python \\
        benchmarks/calibration/kwave_identifiability.py evaluate \\
        --json benchmarks/calibration/kwave_identifiability.json
    # the whole default, refinement of the calibrated TV included (--default-refine):
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python \
        benchmarks/calibration/kwave_identifiability.py evaluate --default-refine \
        --json benchmarks/calibration/kwave_identifiability_v8.json
    # the TV refiner on the same scans with their true positions (correct files), one
    # archive or several side by side:
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python \
        benchmarks/calibration/kwave_identifiability.py refine \
        --model oatomo/resources/models/tv_refiner.npz \
        --json benchmarks/refinement/kwave_tv_refiner_tta.json
    # the calibration on a grid that cuts the object (0.6 of the field of view):
    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python \
        benchmarks/calibration/kwave_identifiability.py zoom \
        --json benchmarks/calibration/kwave_zoom.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out" / "kwave_identifiability"
MM, DEG = 1e-3, math.pi / 180


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


KW = _load("kwave_check", ROOT / "benchmarks" / "media" / "kwave_check.py")

#: case -> (layout, sensors, radius or depth (m), arc (rad) or pitch (m), phantom, seed,
#: correct file)
RULE_CASES: dict[str, tuple[str, int, float, float, str, int, bool]] = {
    "ring16-thick": ("ring", 16, 20 * MM, 2 * math.pi, "vessels-thick", 4100, False),
    "ring24-disks": ("ring", 24, 21 * MM, 2 * math.pi, "disks", 4101, False),
    "arc90-vessels": ("ring", 48, 20 * MM, 90 * DEG, "vessels", 4102, False),
    "arc150-texture": ("ring", 56, 20 * MM, 150 * DEG, "texture", 4103, False),
    "linear64-points": ("linear", 64, 11 * MM, 0.3 * MM, "points", 4104, False),
    "ring16-correct": ("ring", 16, 20 * MM, 2 * math.pi, "vessels-thin", 4105, True),
}

#: The arrays of the calibration's quality targets (rings of 32-256 sensors, a 270 degree
#: arc), at a radius (21 mm) and with phantoms and seeds no other benchmark uses
#: (``--set principal``), and correct 64- and 256-ring files.
PRINCIPAL_CASES: dict[str, tuple[str, int, float, float, str, int, bool]] = {
    "ring32-thin": ("ring", 32, 21 * MM, 2 * math.pi, "vessels-thin", 4200, False),
    "ring32-disks": ("ring", 32, 21 * MM, 2 * math.pi, "disks", 4201, False),
    "ring64-thick": ("ring", 64, 21 * MM, 2 * math.pi, "vessels-thick", 4202, False),
    "ring128-texture": ("ring", 128, 21 * MM, 2 * math.pi, "texture", 4203, False),
    "ring256-thin": ("ring", 256, 21 * MM, 2 * math.pi, "vessels-thin", 4204, False),
    "arc270-vessels": ("ring", 72, 21 * MM, 270 * DEG, "vessels", 4205, False),
    "ring64-correct": ("ring", 64, 21 * MM, 2 * math.pi, "disks", 4206, True),
    "ring32-texture": ("ring", 32, 21 * MM, 2 * math.pi, "texture", 4207, False),
    "ring64-thin": ("ring", 64, 21 * MM, 2 * math.pi, "vessels-thin", 4208, False),
    "ring128-thick": ("ring", 128, 21 * MM, 2 * math.pi, "vessels-thick", 4209, False),
    "ring256-disks": ("ring", 256, 21 * MM, 2 * math.pi, "disks", 4210, False),
    "arc270-texture": ("ring", 72, 21 * MM, 270 * DEG, "texture", 4211, False),
    "arc270-thin": ("ring", 72, 21 * MM, 270 * DEG, "vessels-thin", 4212, False),
    "ring256-correct": ("ring", 256, 21 * MM, 2 * math.pi, "vessels-thick", 4213, True),
}

#: The case sets (``--set``); the stages run on :data:`CASES`.
CASE_SETS = {"rules": RULE_CASES, "principal": PRINCIPAL_CASES}
CASES = dict(RULE_CASES)
PHANTOMS = OUT / "phantoms.npz"


def select(name: str) -> None:
    """Run the stages on the case set ``name`` (its phantoms in a file of their own)."""
    global PHANTOMS
    CASES.clear()
    CASES.update(CASE_SETS[name])
    PHANTOMS = OUT / ("phantoms.npz" if name == "rules" else f"phantoms_{name}.npz")


def nominal_positions(case: str) -> np.ndarray:
    """(N, 2) nominal positions in oatomo's frame."""
    layout, n, r, a, *_ = CASES[case]
    if layout == "linear":
        x = (np.arange(n) - (n - 1) / 2) * a
        return np.stack([x, np.full(n, -r)], axis=1)
    start = 0.0 if a >= 2 * math.pi else -math.pi / 2 - a / 2
    step = a / n if a >= 2 * math.pi else a / (n - 1)
    ang = start + step * np.arange(n)
    return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)


def true_positions(case: str) -> tuple[np.ndarray, float]:
    """(N, 2) true positions and the file's speed of sound (the medium's is 1500)."""
    layout, n, r, a, _, seed, correct = CASES[case]
    nominal = nominal_positions(case)
    rng = np.random.default_rng(seed)
    c_file = KW.C0 * (1 + float(rng.uniform(-0.02, 0.02)))
    jitter = float(rng.uniform(0.03, 0.05)) * MM
    if layout == "linear":
        d = rng.standard_normal((n, 2)) * 0.1 * MM + rng.standard_normal((n, 2)) * jitter
        true = nominal + d
    else:
        radial = float(rng.uniform(0.20, 0.25)) * MM
        angular = float(rng.uniform(0.40, 0.50)) * DEG
        ang = np.arctan2(nominal[:, 1], nominal[:, 0]) + rng.standard_normal(n) * angular
        rad = np.hypot(*nominal.T) + rng.standard_normal(n) * radial
        true = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1) \
            + rng.standard_normal((n, 2)) * jitter
    if correct:
        return nominal, KW.C0
    return true, c_file


def make_phantoms() -> None:
    """Every case's phantom on the fine grid (``heldout_default.phantom``)."""
    from oatomo.geometry import Grid

    H = _load("heldout_default", ROOT / "benchmarks" / "calibration" / "heldout_default.py")
    fine = Grid(KW.N_FINE, KW.FOV)
    arrays = {}
    for case, (*_, kind, seed, _) in CASES.items():
        if kind == "vessels":
            from oatomo.phantoms import vessel_tree
            p0 = vessel_tree(fine, seed, depth=5)
        else:
            p0 = H.phantom(kind, fine, np.random.default_rng(seed))
        arrays[case] = np.asarray(p0, np.float64)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(PHANTOMS, **arrays)
    print(f"wrote {PHANTOMS}")


def simulate(force: bool) -> None:
    """k-Wave runs of every case not on disk (imports no oatomo)."""
    import urllib.request

    urllib.request.urlretrieve = lambda url, filename, *a, **k: (  # type: ignore
        open(filename, "wb").close(), (filename, None))[1]
    from kwave.kgrid import kWaveGrid
    from kwave.kmedium import kWaveMedium
    from kwave.ksensor import kSensor
    from kwave.ksource import kSource
    from kwave.kspaceFirstOrder import kspaceFirstOrder
    from kwave.utils.filters import smooth

    phantoms = np.load(PHANTOMS)
    o = (KW.N_KWAVE - KW.N_FINE) // 2
    for case in CASES:
        path = OUT / f"{case}.npz"
        if path.exists() and not force:
            continue
        big = np.zeros((KW.N_KWAVE, KW.N_KWAVE))
        big[o:o + KW.N_FINE, o:o + KW.N_FINE] = phantoms[case].T
        big = smooth(big, restore_max=True)
        true, c_file = true_positions(case)
        kgrid = kWaveGrid((KW.N_KWAVE, KW.N_KWAVE), (KW.DX, KW.DX))
        kgrid.setTime(KW.N_SAMPLES, 1 / KW.FS)
        source = kSource()
        source.p0 = big
        t = time.perf_counter()
        res = kspaceFirstOrder(kgrid, kWaveMedium(sound_speed=KW.C0, density=KW.RHO), source,
                               kSensor(KW.to_kwave(true)), pml_size=KW.PML, smooth_p0=False,
                               backend="python", device="cpu", dtype=np.float32, quiet=True)
        p = np.asarray(res["p"], np.float64)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, p0=big[o:o + KW.N_FINE, o:o + KW.N_FINE].T.copy(), true=true,
                 nominal=nominal_positions(case), c_file=c_file,
                 signals=KW.interval_means(p, KW.FS))
        tmp.replace(path)
        print(f"{case}: {time.perf_counter() - t:.0f} s", flush=True)


def scans(noise_after: bool = False):
    """Per case, as the evaluation reads it: the name, whether the file is correct, the
    image grid, the truth (fine p0 block-averaged, maximum 1), the scan with the file's
    geometry and c, the scan with the true ones, and the two sensor arrays (true, file's):
    the k-Wave signals convolved with the detector response, with noise, converted to
    the slab model. The conversion amplifies white noise at the first samples (on the
    16-ring the converted noise holds 2.2 times the signal's energy, 80 % of it in the
    first 20 samples, before any arrival from the image); ``noise_after``: the noise is
    added to the converted record instead (1 % of its largest sample), as a measured 3-D
    record would carry it."""
    from oatomo.geometry import Acquisition, Grid, SensorArray
    from oatomo.io import Scan
    from oatomo.media import line_to_slab
    from oatomo.response import DetectorResponse, convolve

    H = _load("heldout_default", ROOT / "benchmarks" / "calibration" / "heldout_default.py")
    grid = Grid(KW.N_IMAGE, KW.FOV)
    response = DetectorResponse(centre_frequency=4e6 * 0.1 * MM / grid.dx, bandwidth=1.2)

    def sensors(xy: np.ndarray, layout: str) -> SensorArray:
        if layout == "linear":
            return SensorArray(xy, np.tile([0.0, 1.0], (len(xy), 1)))
        return SensorArray(xy, -xy / np.linalg.norm(xy, axis=1, keepdims=True))

    for case, (layout, *_, seed, correct) in CASES.items():
        d = dict(np.load(OUT / f"{case}.npz"))
        truth = H.block_mean(d["p0"])
        truth = truth / truth.max()
        yb = np.asarray(convolve(d["signals"], KW.FS, response), np.float64)
        noise = np.random.default_rng(seed).standard_normal(yb.shape)
        acq_true = Acquisition(KW.FS, KW.N_SAMPLES, KW.C0)
        if noise_after:  # the slab record's own noise, 1 % of its largest sample
            ys = line_to_slab(yb, acq_true, thickness=grid.dx)
            ys = (ys + KW.NOISE * np.abs(ys).max() * noise).astype(np.float32)
        else:  # noise on the line record, then converted (the first samples amplified)
            ys = line_to_slab(yb + KW.NOISE * np.abs(yb).max() * noise, acq_true,
                              thickness=grid.dx)
        true, nominal = sensors(d["true"], layout), sensors(d["nominal"], layout)
        c_file = float(d["c_file"])
        scan = Scan(ys, nominal, Acquisition(KW.FS, KW.N_SAMPLES, c_file), response=response)
        yield (case, correct, grid, truth, scan, Scan(ys, true, acq_true, response=response),
               true, nominal)


def evaluate(path: Path | None, refine: bool = False, noise_after: bool = False,
             reseat: bool = False) -> list[dict[str, Any]]:
    """The default against TV with the file's and the true geometry, per case; ``refine``:
    the whole default, its refinement step included (``psnr_default_physics_reg``: the
    image it refined, when it did), instead of the default without it; ``reseat``: every
    calibration with the held-out re-seat."""
    import oatomo
    from oatomo.calibration import rigid_error
    from oatomo.geometry import SensorArray

    H = _load("heldout_default", ROOT / "benchmarks" / "calibration" / "heldout_default.py")
    if reseat:
        H.enable_reseat()

    def rms(est: SensorArray, true: SensorArray) -> float:
        return float(np.sqrt(np.mean(rigid_error(est, true) ** 2))) * 1e6

    rows = []
    for case, correct, grid, truth, scan, scan_true, true, nominal in scans(noise_after):
        c_file = float(scan.acquisition.speed_of_sound)
        t = time.perf_counter()
        rec = oatomo.reconstruct(scan, grid=grid, **({} if refine else {"refine": False}))
        prov = rec.provenance
        check = dict(prov.get("position_check") or {})
        row: dict[str, Any] = {
            "case": case, "correct_file": correct, "t_default": time.perf_counter() - t,
            "check_asked": bool(check.get("needs_calibration")),
            "why_not": check.get("why_not"),
            "calibrated": prov.get("calibration") is not None,
            "notes": list((prov.get("calibration") or {}).get("notes", [])),
            "c_err_file_pct": 100 * (c_file / KW.C0 - 1),
            "c_err_default_pct": 100 * (float(prov["speed_of_sound"]) / KW.C0 - 1)}
        plain = oatomo.reconstruct(scan, "mb-tv", grid=grid, calibrate=False, refine=False)
        right = oatomo.reconstruct(scan_true, "mb-tv", grid=grid, calibrate=False,
                                   refine=False)
        images = [("tv_file", plain.image), ("default", rec.image), ("tv_true", right.image)]
        row["refined"] = bool(rec.refined)
        row["refinement_reason"] = prov["refinement"].get("reason")
        if rec.refined:
            images.append(("default_physics", rec.images[prov["method"]]))
        for k, img in images:
            row[f"psnr_{k}_reg"] = H.register(np.asarray(img, np.float64), truth)[0]
        row["pos_err_file_um"] = rms(nominal, true)
        row["pos_err_default_um"] = rms(oatomo.calibrate(scan, grid).sensors, true) \
            if row["calibrated"] else row["pos_err_file_um"]
        rows.append(row)
        said = row["why_not"] or "; ".join(n.split(":")[0] for n in row["notes"]) or "-"
        print(f"{case}: TV file {row['psnr_tv_file_reg']:.1f}, default "
              f"{row['psnr_default_reg']:.1f}, TV true {row['psnr_tv_true_reg']:.1f} dB; pos "
              f"{row['pos_err_file_um']:.0f} -> {row['pos_err_default_um']:.0f} um; c "
              f"{row['c_err_file_pct']:+.2f} -> {row['c_err_default_pct']:+.2f} %; {said}",
              flush=True)
    if path is not None:
        path.write_text(json.dumps(rows, indent=1))
    return rows


def refine(path: Path | None, models: list[str], noise_after: bool = False
           ) -> list[dict[str, Any]]:
    """The TV refiner on the k-Wave scans with their TRUE positions (correct files): TV as
    the default makes it, and what the default returns with each refiner archive in
    ``models`` (``oatomo.reconstruct(..., refine=True)``: refined when the scan is in the
    refiner's family and the guard passes, else TV, saying why). PSNR after the best
    affine fit. ``noise_after``: as :func:`scans`."""
    import oatomo

    H = _load("heldout_default", ROOT / "benchmarks" / "calibration" / "heldout_default.py")
    rows = []
    for case, _, grid, truth, _, scan_true, _, _ in scans(noise_after):
        tv = oatomo.reconstruct(scan_true, "mb-tv", grid=grid, calibrate=False,
                                refine=False).image
        row: dict[str, Any] = {"case": case,
                               "psnr_tv": H.score(np.asarray(tv, np.float64), truth)}
        for m in models:
            try:
                rec = oatomo.reconstruct(scan_true, "mb-tv", grid=grid, calibrate=False,
                                         refine=True, model=m, samples=0)
                how = rec.provenance["refinement"]
                row[f"psnr_{Path(m).stem}"] = H.score(np.asarray(rec.image, np.float64),
                                                      truth)
                row[f"why_{Path(m).stem}"] = how.get("reason") or "refined"
            except oatomo.InputError as exc:  # outside the refiner's family
                row[f"psnr_{Path(m).stem}"] = row["psnr_tv"]
                row[f"why_{Path(m).stem}"] = str(exc)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if path is not None:
        path.write_text(json.dumps(rows, indent=1))
    return rows


def zoom(path: Path | None, scale: float = 0.6, noise_after: bool = False
         ) -> list[dict[str, Any]]:
    """The calibration on an image grid that cuts the object (a centred region of interest
    of ``scale`` times the grid): on that grid (``object_grid=False``) and as the default
    takes it (widened to the object when it surely cuts it,
    :func:`oatomo.calibration.calibration_grid`); TV at each estimate on the cut grid,
    registered PSNR against the truth cropped to it, TV with the file's and the true
    geometry there, and the position check on both grids (a false alarm on the correct
    file)."""
    import oatomo
    from oatomo.calibration import calibration_grid, check_positions, rigid_error
    from oatomo.errors import InputError
    from oatomo.geometry import Grid, SensorArray

    H = _load("heldout_default", ROOT / "benchmarks" / "calibration" / "heldout_default.py")
    rows = []
    for case, correct, grid, truth, scan, scan_true, true, _ in scans(noise_after):
        cut, crop = H.region_of_interest(grid, truth, scale)

        def psnr(s: Any, cut: Grid = cut, crop: np.ndarray = crop) -> float:
            img = oatomo.reconstruct(s, "mb-tv", grid=cut, calibrate=False,
                                     refine=False).image
            return H.register(np.asarray(img, np.float64), crop)[0]

        wide, note = calibration_grid(scan, cut)
        row: dict[str, Any] = {"case": case, "correct_file": correct, "fov_m": cut.fov,
                               "widened": note is not None, "tv_file": psnr(scan),
                               "tv_true": psnr(scan_true)}
        for name, g in (("before", cut), ("after", wide)):
            row[f"{name}_check_asks"] = bool(check_positions(
                scan.sinogram, scan.sensors, scan.acquisition, g).needs_calibration)
            if correct:
                continue
            try:
                cal = oatomo.calibrate(scan, cut, object_grid=name == "after")
            except InputError as exc:  # the pipeline keeps the file's geometry then
                row[name], row[f"{name}_refused"] = row["tv_file"], exc.problem
                continue
            row[name] = psnr(oatomo.apply_calibration(scan, cal))
            row[f"{name}_um"] = float(np.sqrt(np.mean(
                rigid_error(cal.sensors, SensorArray(true.positions)) ** 2))) * 1e6
        rows.append(row)
        print(json.dumps({k: round(v, 2) if isinstance(v, float) else v
                          for k, v in row.items()}), flush=True)
    if path is not None:
        path.write_text(json.dumps(rows, indent=1))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=("phantoms", "simulate", "evaluate", "refine", "zoom"))
    ap.add_argument("--model", action="append", default=[],
                    help="refine: a refiner archive (repeat to compare several)")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--set", choices=tuple(CASE_SETS), default="rules",
                    help="the cases: the identifiability rules' arrays (default) or the "
                    "arrays of the calibration's quality targets")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--default-refine", action="store_true",
                    help="evaluate: the whole default, its refinement step included")
    ap.add_argument("--noise-after", action="store_true",
                    help="evaluate, refine, zoom: the noise added after the conversion to "
                    "the slab model")
    ap.add_argument("--reseat", action="store_true",
                    help="evaluate: every calibration with the held-out re-seat")
    args = ap.parse_args(argv)
    select(args.set)
    if args.stage == "phantoms":
        make_phantoms()
    elif args.stage == "simulate":
        simulate(args.force)
    elif args.stage == "zoom":
        zoom(args.json, noise_after=args.noise_after)
    elif args.stage == "refine":
        refine(args.json, args.model or [str(ROOT / "oatomo" / "resources" / "models"
                                             / "tv_refiner.npz")], args.noise_after)
    else:
        evaluate(args.json, args.default_refine, args.noise_after, args.reseat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

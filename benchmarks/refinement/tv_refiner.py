"""The TV refiner against TV itself on held-out scanners and phantom kinds.

Data: the scans of ``benchmarks/calibration/heldout_default.py`` (its helpers are imported):
the truth drawn on a grid 2x finer than the image grid (256 x 256 at 0.05 mm over 12.8 mm),
simulated there by :func:`oatomo.forward.simulate` (slab thickness the image pitch) with a
Gaussian detector response (4 MHz, 120 %) and 1-2 % white noise at 40 MHz; the truth for
scoring is the fine phantom block-averaged onto the 128 x 128, 0.1 mm image grid. Every
file here is CORRECT (true positions and speed of sound): the refiner is measured where it
is meant to run.

Geometries (no training scan has these count/radius pairs; the training environments draw
counts and radii from ranges that cover them): rings of 32 (r 21 mm) and 256 (r 45 mm)
sensors, an 80-sensor 270 deg arc (r 24 mm), a 64-sensor 120 deg arc (r 26 mm) and a linear
array of 128 point elements at 0.2 mm pitch 10 mm below the image centre. Phantom kinds:
``vessels-thin``, ``vessels-thick`` (vessel trees of other widths and depths than the
training ones), ``disks``, ``texture`` (held-out textures) and ``points`` (never in
training).

Per scan, on the image grid: ``ubp`` and ``tv`` (``oatomo.reconstruct(..., "mb-tv",
calibrate=False, refine=False)``, 50 iterations, timed); ``refined``: the refiner given that
TV image as its input (:meth:`oatomo.refine.Refiner.refine_scan` with ``images``, exactly
what the pipeline does with ``--method mb-tv``; timed, posterior mean, no uncertainty map);
``guarded``: ``refined`` when the guard (:func:`oatomo.refine.guard.check_refined`, TV as
the method image, the scan's detector response in its operator and the rule for a
model-based method image, as the pipeline) passes it, else ``tv``; the table "Guard ratio"
recomputes it for other ratios from the recorded numbers. PSNR (dB, data range 1) after
each image's best affine fit to the truth.

Report set: the geometries and phantom kinds above, seeds 1000 and up; nothing of the model
or of this benchmark was tuned on it (the model's architecture and steps were fixed
before). Tuning set (``--tuning``: a 48-sensor ring and a 48-sensor 200 deg arc, both r 25
mm, ``vessels-thick`` and ``disks``, seeds 2000 and up): the only scans a guard ratio for
TV as the method image is read from (the table "Guard ratio").

Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/refinement/tv_refiner.py \\
        --model out/tv/tv.pt --out benchmarks/refinement/tv_refiner.json
    .venv/bin/python benchmarks/refinement/tv_refiner.py \\
        --out benchmarks/refinement/tv_refiner.json --table

``--out`` resumes (finished cases are kept); ``--seeds N``; ``--geometries``,
``--phantoms`` (comma lists).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "calibration"))

import heldout_default as H  # noqa: E402

import oatomo  # noqa: E402
from oatomo._atomic import atomic_path  # noqa: E402
from oatomo.forward import simulate  # noqa: E402
from oatomo.geometry import Grid, SensorArray  # noqa: E402
from oatomo.io import Scan  # noqa: E402
from oatomo.refine import load_refiner  # noqa: E402
from oatomo.refine.guard import check_refined, guard_rule  # noqa: E402
from oatomo.response import DetectorResponse  # noqa: E402

GEOMETRIES = ("ring32", "ring256", "arc270", "arc120", "linear128")
VESSELS = ("vessels-thin", "vessels-thick")
#: The tuning set (the guard's ratio for TV is chosen here only): geometries of the
#: refinement guard's tuning set, seeds 2000 and up.
TUNING_GEOMETRIES = {"ring48": H.Geometry("ring", 48, 25 * H.MM),
                     "arc200": H.Geometry("ring", 48, 25 * H.MM, 200 * H.DEG)}
TUNING_PHANTOMS = ("vessels-thick", "disks")
TUNING_SEED = 2000
#: The fresh limited-view set (``--fresh``; seeds 3000 and up): arcs and linear arrays of
#: other counts, radii and pitches than any other set, and turned so that they face the
#: image from the side or at a slant -- every training array faces it from below. Chosen
#: before any model was scored on them; nothing is tuned here.
FRESH_SEED = 3000
#: The uncertainty map's limited-view tuning set (``--map-tuning``; seeds 6000 and up): the
#: short arcs and linear arrays of the calibration's identifiability benchmark, facing the
#: image from below, none of them in a report set. Only candidate uncertainty maps are
#: chosen on it (``uncertainty_maps.py``).
MAP_TUNING_GEOMETRIES = ("arc90", "arc150", "linear64", "linear96")
MAP_TUNING_SEED = 6000


@dataclass(frozen=True)
class Turned:
    """A :class:`heldout_default.Geometry` turned by ``angle`` (rad, counter-clockwise)
    about the image centre: the same draws, every position and normal rotated."""

    base: H.Geometry
    angle: float

    def _turn(self, sensors: SensorArray) -> SensorArray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        rot = np.array([[c, -s], [s, c]])
        return SensorArray(sensors.positions @ rot.T, sensors.normals @ rot.T)

    def nominal(self) -> SensorArray:
        return self._turn(self.base.nominal())

    def perturbed(self, nominal: SensorArray, rng: np.random.Generator
                  ) -> tuple[SensorArray, dict[str, float]]:
        true, sizes = self.base.perturbed(self.base.nominal(), rng)
        return self._turn(true), sizes


FRESH_GEOMETRIES = {
    "arc100-left": Turned(H.Geometry("ring", 56, 23 * H.MM, 100 * H.DEG), -math.pi / 2),
    "arc150-tilt": Turned(H.Geometry("ring", 96, 30 * H.MM, 150 * H.DEG), 35 * H.DEG),
    "linear96-side": Turned(H.Geometry("linear", 96, 8 * H.MM, pitch=0.25 * H.MM),
                            math.pi / 2),
    "linear192-tilt": Turned(H.Geometry("linear", 192, 12 * H.MM, pitch=0.15 * H.MM),
                             -25 * H.DEG),
}
#: Ratios of the guard (signal the refined image explains over what TV explains) scored.
RATIOS = (0.05, 0.25, 0.5, 0.75, 0.9)


def draw_case(geometry: str, kind: str, seed: int) -> tuple:
    """One scan's draws, in order: the grids, the fine ``p0``, the truth (block-averaged,
    maximum 1), the true positions, the acquisition (true speed of sound), the detector
    response, the noise level, and the generator positioned after them."""
    geo = {**H.GEOMETRIES, **TUNING_GEOMETRIES, **FRESH_GEOMETRIES}[geometry]
    rng = np.random.default_rng([seed, zlib.crc32(geometry.encode()),
                                 zlib.crc32(kind.encode()), 1])
    grid = Grid(H.N_IMAGE, H.FOV)
    fine = Grid(2 * H.N_IMAGE, H.FOV)
    p0 = H.phantom(kind, fine, rng)
    truth = H.block_mean(p0.astype(np.float64))
    truth /= truth.max()
    true, _ = geo.perturbed(geo.nominal(), rng)
    c = float(rng.uniform(*H.C_TRUE))
    noise = float(rng.uniform(*H.NOISE))
    acq = H.acquisition_for([true], grid, [c])
    acq = type(acq)(acq.fs, acq.n_samples, speed_of_sound=c, t0=acq.t0)
    response = DetectorResponse(centre_frequency=H.BAND_CENTRE_AT_01MM * 0.1 * H.MM / grid.dx,
                                bandwidth=H.BANDWIDTH)
    return grid, fine, p0, truth, true, acq, response, noise, rng


def simulated_records(draws: tuple) -> np.ndarray:
    """A scan's records from its draws (:func:`draw_case`'s tuple, its generator where
    that left it): oatomo's model on the fine grid at the true positions and speed of
    sound, with the detector response and the noise."""
    grid, fine, p0, _, true, acq, response, noise, rng = draws
    return simulate(p0, fine, true, acq, thickness=grid.dx, noise_std=noise,
                    response=response, seed=int(rng.integers(2**63)))


def cached_scans(cache: Path):
    """Every scan of a cache that holds its truth (``truth_<name>.npy`` beside
    ``<name>.npz``): yields the geometry, phantom kind, seed, the stored arrays (y, UBP,
    TV) and the truth."""
    for f in sorted(Path(cache).glob("truth_*.npy")):
        name = f.stem[len("truth_"):]
        geo, kind, seed = name.rsplit("_", 2)
        yield geo, kind, int(seed), np.load(Path(cache) / f"{name}.npz"), np.load(f)


def run_case(ref: Any, geometry: str, kind: str, seed: int,
             cache: Path | None = None, model_response: bool | str = "auto"
             ) -> dict[str, Any]:
    """One correct-file scan: UBP, TV, refined(TV), guarded; PSNRs and times. ``cache``: a
    directory keeping each scan's record, UBP and TV images (and TV's time), so that
    another model is scored on the same images without simulating and solving again.
    ``model_response``: the pipeline's (``"auto"``: TV with the scan's detector response in
    its operator, 100 iterations; ``False``: the default before it, 50 iterations without
    the response, which every cache and figure written before it used)."""
    draws = draw_case(geometry, kind, seed)
    grid, fine, p0, truth, true, acq, response, noise, rng = draws
    row: dict[str, Any] = {"geometry": geometry, "phantom": kind, "seed": seed,
                           "noise": noise}
    stored = None if cache is None else cache / f"{geometry}_{kind}_{seed}.npz"
    if stored is not None and stored.exists():
        with np.load(stored) as z:
            y, ubp, tv, row["t_tv"] = z["y"], z["ubp"], z["tv"], float(z["t_tv"])
    else:
        y = simulated_records(draws)
        scan = Scan(y, true, acq, response=response)
        ubp = oatomo.reconstruct(scan, "ubp", grid=grid, calibrate=False, refine=False).image
        t = time.perf_counter()
        tv = oatomo.reconstruct(scan, "mb-tv", grid=grid, calibrate=False,
                                refine=False, model_response=model_response).image
        row["t_tv"] = time.perf_counter() - t
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(stored) as tmp, open(tmp, "wb") as f:
                np.savez(f, y=y, ubp=ubp, tv=tv, t_tv=row["t_tv"])
    if stored is not None and not (truth_file := stored.with_name(f"truth_{stored.stem}.npy")
                                   ).exists():  # what tv_residual.py score reads
        with atomic_path(truth_file) as tmp, open(tmp, "wb") as f:
            np.save(f, truth)
    ok, why = ref.compatible(true, acq, grid)
    row["compatible"], row["why"] = ok, why
    t = time.perf_counter()
    r = ref.refine_scan(y, true, acq, grid, n_samples=0, check=False,
                        images={"mb-tv": tv})
    row["t_refine"] = time.perf_counter() - t
    t = time.perf_counter()
    verdict = check_refined(r.refined, tv, y, grid, true, acq, response=response,
                            rule=guard_rule("mb-tv"))
    row["t_guard"] = time.perf_counter() - t
    row["guard_passed"] = bool(verdict.passed)
    row["guard_why"] = verdict.why
    row["explained_refined"] = float(verdict.numbers["explained_refined"])
    row["explained_tv"] = float(verdict.numbers["explained_physics"])
    row["snr"] = float(verdict.numbers["snr"])
    guarded = r.refined if verdict.passed else tv
    for name, img in (("ubp", ubp), ("tv", tv), ("refined", r.refined),
                      ("guarded", guarded)):
        row[f"psnr_{name}"] = H.score(np.asarray(img, np.float64), truth)
    return row


def guarded_at(row: dict[str, Any], ratio: float) -> float:
    """The PSNR the pipeline would keep with the guard's ratio set to ``ratio``."""
    ok = (row["snr"] >= 1.5 and row["explained_refined"] > 0
          and row["explained_refined"] >= ratio * row["explained_tv"])
    return row["psnr_refined"] if ok else row["psnr_tv"]


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([r[key] for r in rows])) if rows else math.nan


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """Per geometry (all kinds, and vessel-like kinds only) and per phantom kind."""
    out = []
    for title, field, groups in (("geometry", "geometry",
                                  tuple(dict.fromkeys(r["geometry"] for r in rows))),
                                 ("phantom kind", "phantom", H.PHANTOMS)):
        out += [f"Per {title} (PSNR dB, mean over scans; d = guarded - TV):", "",
                f"| {title} | n | UBP | TV50 | refined | guarded | d mean | d min | "
                "vessels: TV | vessels: guarded | guard passed | t TV (s) | "
                "t refine (s) |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for g in groups:
            rs = [r for r in rows if r[field] == g]
            if not rs:
                continue
            vs = [r for r in rs if r["phantom"] in VESSELS]
            d = [r["psnr_guarded"] - r["psnr_tv"] for r in rs]
            out.append(
                f"| {g} | {len(rs)} | {_mean(rs, 'psnr_ubp'):.2f} | {_mean(rs, 'psnr_tv'):.2f} "
                f"| {_mean(rs, 'psnr_refined'):.2f} | {_mean(rs, 'psnr_guarded'):.2f} | "
                f"{np.mean(d):+.2f} | {np.min(d):+.2f} | "
                f"{_mean(vs, 'psnr_tv'):.2f} | {_mean(vs, 'psnr_guarded'):.2f} | "
                f"{sum(r['guard_passed'] for r in rs)}/{len(rs)} | "
                f"{_mean(rs, 't_tv'):.2f} | {_mean(rs, 't_refine'):.3f} |")
        out.append("")
    out += ["Guard ratio (refined must explain at least this times what TV explains; "
            "0.05 is the rule for linear method images):", "",
            "| ratio | guarded - TV mean | min | kept refined |", "|---|---|---|---|"]
    for q in RATIOS:
        dq = [guarded_at(r, q) - r["psnr_tv"] for r in rows]
        kept = sum(guarded_at(r, q) == r["psnr_refined"] != r["psnr_tv"] for r in rows)
        out.append(f"| {q:g} | {np.mean(dq):+.2f} | {np.min(dq):+.2f} | {kept}/{len(rows)} |")
    out.append("")
    d = [r["psnr_guarded"] - r["psnr_tv"] for r in rows]
    du = [r["psnr_refined"] - r["psnr_tv"] for r in rows]
    out.append(f"All {len(rows)} scans: refined - TV {np.mean(du):+.2f} dB (min "
               f"{np.min(du):+.2f}); guarded - TV {np.mean(d):+.2f} dB (min {np.min(d):+.2f}); "
               f"outside the model's family: {sum(not r['compatible'] for r in rows)}.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="the TV refiner (.pt or .npz)")
    ap.add_argument("--out", default=str(ROOT / "out" / "tv_refiner.json"))
    ap.add_argument("--table", action="store_true", help="print the tables from --out")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--geometries", default=",".join(GEOMETRIES))
    ap.add_argument("--phantoms", default=",".join(H.PHANTOMS))
    ap.add_argument("--cache", default=str(ROOT / "out" / "tv_refiner_cache"),
                    help="directory of the scans' records, UBP and TV images (reused)")
    ap.add_argument("--tuning", action="store_true",
                    help="the tuning set (its geometries, phantoms and seeds) instead")
    ap.add_argument("--no-tta", action="store_true",
                    help="refine without the test-time augmentation the model asks for")
    ap.add_argument("--fresh", action="store_true",
                    help="the fresh limited-view set (FRESH_GEOMETRIES, seeds 3000 and up)")
    ap.add_argument("--map-tuning", action="store_true",
                    help="the uncertainty map's limited-view tuning set "
                    "(MAP_TUNING_GEOMETRIES, seeds 6000 and up)")
    ap.add_argument("--model-response", choices=("auto", "off"), default="auto",
                    help="the TV input: the pipeline's default (auto) or TV without the "
                         "detector response, 50 iterations (off: what the family's "
                         "training data hold); use its own --cache")
    args = ap.parse_args(argv)
    model_response: bool | str = "auto" if args.model_response == "auto" else False
    first = H.FIRST_SEED
    if args.tuning:
        args.geometries, args.phantoms = ",".join(TUNING_GEOMETRIES), ",".join(TUNING_PHANTOMS)
        first = TUNING_SEED
    if args.fresh:
        args.geometries, first = ",".join(FRESH_GEOMETRIES), FRESH_SEED
    if args.map_tuning:
        import identifiability  # noqa: F401  (registers its geometries)

        args.geometries, first = ",".join(MAP_TUNING_GEOMETRIES), MAP_TUNING_SEED
    out = Path(args.out)
    done: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
    if args.table:
        print(to_markdown(done))
        return 0
    if not args.model:
        ap.error("--model is required unless --table")
    ref = load_refiner(args.model)
    if args.no_tta:
        ref.meta["tta"] = False
    H.warm_up()
    keys = {(r["geometry"], r["phantom"], r["seed"]) for r in done}
    for seed in range(first, first + args.seeds):
        for g in args.geometries.split(","):
            for k in args.phantoms.split(","):
                if (g, k, seed) in keys:
                    continue
                row = run_case(ref, g, k, seed, Path(args.cache), model_response)
                done.append(row)
                with atomic_path(out) as tmp:
                    tmp.write_text(json.dumps(done, indent=1))
                print(f"{g:10s} {k:14s} {seed} ubp {row['psnr_ubp']:.2f} tv "
                      f"{row['psnr_tv']:.2f} ref {row['psnr_refined']:.2f} guarded "
                      f"{row['psnr_guarded']:.2f} ({row['guard_why']})", flush=True)
    print(to_markdown(done))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

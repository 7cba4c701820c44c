"""How close the calibration's bound on ``||A||^2`` comes, by power iteration and by Lanczos.

Every image the self-calibration makes is a FISTA TV solve whose step is ``1 / (1.05 L)``
with ``L`` = 1.1 times an estimate of ``||A||^2`` from below (the largest eigenvalue of
``A^T A``), made once per level (and per held-out fold) before the level's images. Each
power step or Lanczos step costs one application of ``A^T A``; at the finest level 15
steps cost about a fifth of one 50-iteration TV. This benchmark estimates the value on
each level of the calibration's schedule of the tuning scans (the arrays of
``joint_gauss_newton.py --tuning`` and ``--short-apertures``, seed 2000, at their nominal
positions and 3 % below the file's speed of sound, with the detector response: the
operator the per-level bound is made for) by

* power iteration (``operator_norm_sq(method="power")``): 8 and 15 steps,
* Lanczos (``operator_norm_sq(method="lanczos")``): 5 to 10 steps,

each as a share of a 40-step Lanczos reference, from the same seeded start. Output: one
row per (scan, level) in ``--out`` and a table of the shares (mean and minimum per
method). ``--tv``: instead, the operator the standalone TV (``oatomo reconstruct
--method mb-tv``) takes its step from (the scan's full band, the file's geometry), by 30
power steps (its earlier estimate) and 6-12 Lanczos steps. ``--tv-images``: the report
set's TV images (``heldout_default.py``'s arrays and kinds, seed 1000) with either
estimate, scored and timed. ``--volume``: the volume operator's estimate (two grids, 30
power and 8-12 Lanczos steps, timed once each). ``--time``: instead, per scan the wall
time of the finest level's estimate by 15 power steps and by 7 Lanczos steps (best of
three, alternately, cold caches) against one 50-iteration TV of the same scan (best of
two). ``--final-step``: the TV after the calibration (85 iterations from its last image,
``oatomo.reconstruct`` with the calibration given) with three steps: the calibration's
bound as shipped (without its margin for moving sensors), with the margin (as before
v15), and the TV's own estimate at the calibrated geometry; registered PSNR of each
(the tuning arrays of ``joint_gauss_newton.py --tuning``, its four kinds). Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibration/norm_steps.py \\
        --out benchmarks/calibration/norm_steps.json
    .venv/bin/python benchmarks/calibration/norm_steps.py --time \\
        --out benchmarks/calibration/norm_steps_time.json
    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/calibration/norm_steps.py --final-step \\
        --out benchmarks/calibration/norm_steps_final_step.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402
import joint_gauss_newton as JG  # noqa: E402
from default_time import cold_caches  # noqa: E402

import oatomo  # noqa: E402
import oatomo.calibration.estimate as E  # noqa: E402
from oatomo._atomic import atomic_path  # noqa: E402
from oatomo.calibration.joint import MOVE_MARGIN  # noqa: E402
from oatomo.geometry import SensorArray  # noqa: E402
from oatomo.recon.operators import operator_norm_sq  # noqa: E402

#: (method, steps) estimated on every level; the reference is Lanczos with 40 steps.
ESTIMATES = (("power", 8), ("power", 15), *(("lanczos", k) for k in range(5, 11)))
REFERENCE_STEPS = 40
PHANTOMS = ("vessels-thin", "texture")


class _Captured(Exception):
    """Carries what a patched call saw out of the run that made it (the calibration's
    levels, the TV's operator)."""


def levels_of(case: Any) -> tuple[list[Any], np.ndarray, float, dict[str, Any]]:
    """The calibration schedule's levels of ``case`` (its default call), the nominal
    positions, the file's speed of sound and the model keywords."""
    def capture(levels: Any, nominal: Any, c: float, prior_std: float, **kw: Any) -> Any:
        raise _Captured(levels, nominal, c, kw)

    original = E.joint_calibration
    E.joint_calibration = capture
    try:
        oatomo.calibrate(case.scan, case.grid)
    except _Captured as found:
        return found.args  # type: ignore[return-value]
    finally:
        E.joint_calibration = original
    raise RuntimeError("the calibration ran no joint calibration")


def level_operator(level: Any, nominal: np.ndarray, c: float, kw: dict[str, Any]
                   ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional arguments and model keywords of :func:`operator_norm_sq` for the
    operator a level's bound is made for (nominal positions, 3 % below ``c``)."""
    slow = replace(level.acquisition, speed_of_sound=c * 0.97)
    return ((level.grid, SensorArray(np.asarray(nominal)), slow),
            {"thickness": kw.get("thickness"), "response": kw.get("response")})


def shares(args: tuple[Any, ...], model: dict[str, Any],
           estimates: tuple[tuple[str, int], ...]) -> dict[str, float]:
    """The reference value (``REFERENCE_STEPS`` Lanczos steps) and every ``(method,
    steps)`` estimate of ``operator_norm_sq(*args, **model)`` as a share of it."""
    ref = operator_norm_sq(*args, n_iter=REFERENCE_STEPS, method="lanczos", **model)
    return {"reference": ref,
            **{f"{method}{steps}": operator_norm_sq(*args, n_iter=steps, method=method,
                                                    **model) / ref
               for method, steps in estimates}}


def rows_of(geometry: str, kind: str, seed: int) -> list[dict[str, Any]]:
    """One row per level of the scan: every estimate as a share of the reference."""
    levels, nominal, c, kw = levels_of(H.make_case(geometry, kind, seed))
    return [{"geometry": geometry, "phantom": kind, "seed": seed, "level": li,
             "grid": level.grid.n,
             **shares(*level_operator(level, nominal, c, kw), ESTIMATES)}
            for li, level in enumerate(levels)]


def times_of(geometry: str, kind: str, seed: int) -> dict[str, Any]:
    """Wall times of the finest level's estimates (15 power, 7 Lanczos steps) and of one
    TV50 of the scan, in seconds (best of three and two, cold operator caches)."""
    from oatomo.recon import operators

    case = H.make_case(geometry, kind, seed)
    levels, nominal, c, kw = levels_of(case)
    level = levels[-1]
    args, model = level_operator(level, nominal, c, kw)
    best = {"power15": np.inf, "lanczos7": np.inf, "tv50": np.inf}
    for rep in range(3):
        for key, method, steps in (("power15", "power", 15), ("lanczos7", "lanczos", 7)):
            operators._norm_sq_cached.cache_clear()
            operators.forward_operator(*args, model["thickness"], model["response"])
            t = time.perf_counter()
            operator_norm_sq(*args, n_iter=steps, method=method, **model)
            best[key] = min(best[key], time.perf_counter() - t)
        if rep < 2:
            cold_caches()
            t = time.perf_counter()
            oatomo.reconstruct(case.scan, "mb-tv", grid=case.grid, calibrate=False,
                               refine=False, iters=50)
            best["tv50"] = min(best["tv50"], time.perf_counter() - t)
    return {"geometry": geometry, "phantom": kind, "seed": seed, "grid": level.grid.n,
            **{f"t_{k}": v for k, v in best.items()},
            "saved_tv50": (best["power15"] - best["lanczos7"]) / best["tv50"]}


#: (method, steps) estimated for the standalone TV's operator (``--tv``).
TV_ESTIMATES = (("power", 30), *(("lanczos", k) for k in (6, 8, 10, 12)))


def tv_operator(case: Any) -> Any:
    """The forward operator whose ``||A||^2`` the standalone TV of ``case``'s scan (the
    file's geometry, the detector response modelled) takes its step from."""
    import oatomo.recon.model_based as MB

    original = MB.operator_norm_sq_of

    def capture(op: Any) -> float:
        raise _Captured(op)

    MB.operator_norm_sq_of = capture
    try:
        oatomo.reconstruct(case.scan, "mb-tv", grid=case.grid, calibrate=False,
                           refine=False, iters=1)
    except _Captured as found:
        return found.args[0]
    finally:
        MB.operator_norm_sq_of = original
    raise RuntimeError("the TV took no operator norm")


def operator_model(op: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional arguments and model keywords of :func:`operator_norm_sq` for a
    forward operator (what :func:`~oatomo.recon.operators.operator_norm_sq_of` passes)."""
    return ((op.grid, op.sensors, op.acquisition),
            {"thickness": op.thickness, "response": op.response,
             "element_width": op.element_width, "speed_map": op.speed_map,
             "medium": op.medium, "attenuation": op.attenuation})


def tv_rows_of(geometry: str, kind: str, seed: int) -> list[dict[str, Any]]:
    """One row: the standalone TV operator's estimates as shares of the reference."""
    op = tv_operator(H.make_case(geometry, kind, seed))
    return [{"geometry": geometry, "phantom": kind, "seed": seed, "level": "tv",
             "grid": op.grid.n, **shares(*operator_model(op), TV_ESTIMATES)}]


def tv_image_row(geometry: str, kind: str, seed: int, correct: bool) -> dict[str, Any]:
    """The standalone TV (the benchmark's default TV, the file's geometry) of one report
    scan with its step from 30 power steps and from the default estimate (10 Lanczos
    steps): PSNR of each against the truth (the affine fit; registered as
    ``heldout_default.py`` scores), of one image against the other, and the faster of two
    timed calls of each, alternately (cold operator caches)."""
    import oatomo.recon.model_based as MB

    case = H.make_case(geometry, kind, seed, correct=correct)
    original = MB.operator_norm_sq_of

    def power(op: Any) -> float:
        args, model = operator_model(op)
        return operator_norm_sq(*args, **model, n_iter=30, method="power")

    images, times = {}, {"power30": np.inf, "lanczos10": np.inf}
    for _ in range(2):
        for key, norm in (("power30", power), ("lanczos10", original)):
            cold_caches()
            MB.operator_norm_sq_of = norm
            try:
                t = time.perf_counter()
                images[key] = H._tv(case.scan, case.grid)[0]
                times[key] = min(times[key], time.perf_counter() - t)
            finally:
                MB.operator_norm_sq_of = original
    a, b = images["power30"], images["lanczos10"]
    peak = float(np.max(np.abs(a)))
    return {"geometry": geometry, "phantom": kind, "seed": seed, "correct": correct,
            "level": "tv-image",
            "psnr_reg_power30": H.register(a, case.truth)[0],
            "psnr_reg_lanczos10": H.register(b, case.truth)[0],
            "psnr_between": float(10 * np.log10(peak ** 2 / np.mean((a - b) ** 2)))
            if np.any(a != b) else float("inf"),
            "t_power30": times["power30"], "t_lanczos10": times["lanczos10"]}


#: The final TV's steps compared by ``--final-step``: the name and the bound it hands the TV
#: (None: the TV's own estimate), from the calibration's.
FINAL_STEPS = (("bound", lambda b: b), ("margin", lambda b: MOVE_MARGIN * b),
               ("own", lambda b: None))


def final_step_row(geometry: str, kind: str, seed: int) -> dict[str, Any]:
    """One tuning scan calibrated once, then its warm TV with each of :data:`FINAL_STEPS`:
    registered PSNR (dB) and the Lipschitz constant each TV used."""
    import oatomo.pipeline.policy as P
    import oatomo.recon.model_based as MB

    case = H.make_case(geometry, kind, seed)
    cal = oatomo.calibrate(case.scan, case.grid)
    row: dict[str, Any] = {"geometry": geometry, "phantom": kind, "seed": seed}
    seen: dict[str, Any] = {}
    tv, calibrate = MB._tv, P.calibrate_scan

    def recorded(*args: Any, **kw: Any) -> Any:
        out = tv(*args, **kw)
        seen.update(args[8])  # the solver's record: its Lipschitz constant, iterations
        return out

    try:
        MB._tv = recorded
        for name, bound in FINAL_STEPS:
            given = replace(cal, operator_norm_sq=bound(cal.operator_norm_sq))
            P.calibrate_scan = lambda *a, _c=given, **k: _c
            cold_caches()
            rec = oatomo.reconstruct(case.scan, grid=case.grid, refine=False)
            img = np.asarray(rec.images["mb-tv"], np.float64)
            row[name] = H.register(img, case.truth)[0]
            row[f"{name}_lipschitz"], row[f"{name}_iters"] = seen["lipschitz"], seen["n_iter"]
    finally:
        MB._tv, P.calibrate_scan = tv, calibrate
    return row


def final_step_summary(rows: list[dict[str, Any]]) -> str:
    """Mean registered PSNR change over the margin's step, per kind and overall, and the
    bounds over the TV's own estimate."""
    lines = []
    for name in ("bound", "own"):
        d = {k: [r[name] - r["margin"] for r in rows if r["phantom"] == k]
             for k in dict.fromkeys(r["phantom"] for r in rows)}
        every = [v for vs in d.values() for v in vs]
        lines.append(f"{name} - margin: {np.mean(every):+.3f} dB ({min(every):+.2f} to "
                     f"{max(every):+.2f}); " + ", ".join(f"{k} {np.mean(v):+.3f}"
                                                          for k, v in d.items()))
    for name in ("bound", "margin"):
        q = [r[f"{name}_lipschitz"] / r["own_lipschitz"] for r in rows]
        lines.append(f"{name} / own estimate: {min(q):.3f}-{max(q):.3f}")
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    """Mean and minimum share of the reference per method, over all rows and per level."""
    keys = [f"{m}{k}" for m, k in (TV_ESTIMATES if rows and rows[0]["level"] == "tv"
                                    else ESTIMATES)]
    lines = ["| levels | rows | " + " | ".join(keys) + " |",
             "|---|---|" + "---|" * len(keys)]
    for which in ("all", *sorted({r["level"] for r in rows}, key=str)):
        sel = [r for r in rows if which == "all" or r["level"] == which]
        cells = [f"{np.mean([r[k] for r in sel]):.3f} ({min(r[k] for r in sel):.3f})"
                 for k in keys]
        lines.append(f"| {which} | {len(sel)} | " + " | ".join(cells) + " |")
    return ("mean (minimum) share of the 40-step Lanczos value\n\n" + "\n".join(lines))


def tv_images(rows: list[dict[str, Any]], out: Path, seed: int) -> int:
    """``--tv-images``: :func:`tv_image_row` over the report set (``heldout_default.py``'s
    arrays and phantom kinds, its wrong files and one correct file per array), resumable
    in ``out``; prints the summary."""
    cases = [(g, k, False) for g in H.GEOMETRIES if g not in JG.TUNING_GEOMETRIES
             and g not in JG.SHORT_APERTURES and g not in JG.COVERAGE_ARCS
             for k in H.PHANTOMS]
    cases += [(g, H.PHANTOMS[0], True) for g, _, _ in cases[::len(H.PHANTOMS)]]
    for g, k, correct in cases:
        if any((r["geometry"], r["phantom"], r["seed"], r["correct"]) == (g, k, seed, correct)
               for r in rows):
            continue
        rows.append(tv_image_row(g, k, seed, correct))
        print(json.dumps(rows[-1]), flush=True)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(rows, indent=1) + "\n")
    d = [r["psnr_reg_lanczos10"] - r["psnr_reg_power30"] for r in rows]
    ratio = [r["t_lanczos10"] / r["t_power30"] for r in rows]
    print(f"{len(rows)} scans: TV with 10 Lanczos steps - with 30 power steps "
          f"{np.mean(d):+.3f} dB (range {min(d):+.3f} to {max(d):+.3f}); the two images "
          f"{np.median([r['psnr_between'] for r in rows]):.1f} dB apart (median PSNR of "
          f"one against the other); time ratio median {np.median(ratio):.2f} "
          f"({min(ratio):.2f}-{max(ratio):.2f})")
    return 0


def volume_rows() -> list[dict[str, Any]]:
    """``--volume``: the volume operator's estimate (a 32³ grid with 128 hemisphere
    sensors, a 48³ grid with 256; 20 MHz, 800 samples), 30 power steps and 8-12 Lanczos
    steps as shares of a 40-step Lanczos value, with their wall times (one run each)."""
    from oatomo import Acquisition
    from oatomo.recon.operators import (
        lanczos_top_eigenvalue,
        power_top_eigenvalue,
        vector_norm,
    )
    from oatomo.volume import VolumeGrid, VolumeOperator, hemisphere_array

    rows = []
    for n, n_sensors in ((32, 128), (48, 256)):
        grid = VolumeGrid(n, 0.012)
        op = VolumeOperator(grid, hemisphere_array(n_sensors, 0.02), Acquisition(20e6, 800))
        x = np.random.default_rng(0).standard_normal(grid.shape).astype(np.float32)

        def gram(v: np.ndarray, op: Any = op) -> np.ndarray:
            return op.adjoint(op.forward(v))

        ref = lanczos_top_eigenvalue(gram, x, REFERENCE_STEPS)
        row: dict[str, Any] = {"grid": n, "sensors": n_sensors, "reference": ref}
        t = time.perf_counter()
        est = power_top_eigenvalue(gram, x / vector_norm(x), 30)
        row["power30"], row["t_power30"] = est / ref, time.perf_counter() - t
        for k in (8, 10, 12):
            t = time.perf_counter()
            row[f"lanczos{k}"] = lanczos_top_eigenvalue(gram, x, k) / ref
            row[f"t_lanczos{k}"] = time.perf_counter() - t
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tv", action="store_true",
                    help="the standalone TV's operator (full band) instead of the levels")
    ap.add_argument("--volume", action="store_true",
                    help="the volume operator's estimate instead")
    ap.add_argument("--tv-images", action="store_true",
                    help="the report set's TV images with either estimate instead")
    ap.add_argument("--time", action="store_true",
                    help="time the finest level's estimates against one TV50 instead")
    ap.add_argument("--final-step", action="store_true",
                    help="the TV after the calibration with three steps instead")
    ap.add_argument("--geometries", default=None,
                    help="with --final-step: comma list of tuning arrays (default: all)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    rows: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
    arrays = {**JG.TUNING_GEOMETRIES, **JG.SHORT_APERTURES}
    if a.volume:
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(volume_rows(), indent=1) + "\n")
        return 0
    H.warm_up()
    if a.tv_images:
        return tv_images(rows, out, a.seed)
    if a.final_step:
        for geometry in (a.geometries.split(",") if a.geometries
                         else JG.TUNING_GEOMETRIES):
            for kind in JG.TUNING_PHANTOMS:
                if any((r["geometry"], r["phantom"], r["seed"]) == (geometry, kind, a.seed)
                       for r in rows):
                    continue
                rows.append(final_step_row(geometry, kind, a.seed))
                print(geometry, kind, {k: round(v, 3) for k, v in rows[-1].items()
                                       if k in ("bound", "margin", "own")}, flush=True)
                with atomic_path(out) as tmp:
                    tmp.write_text(json.dumps(rows, indent=1) + "\n")
        print(final_step_summary(rows))
        return 0
    for geometry in arrays:
        for kind in PHANTOMS:
            if any((r["geometry"], r["phantom"], r["seed"]) == (geometry, kind, a.seed)
                   for r in rows):
                continue
            rows += ([times_of(geometry, kind, a.seed)] if a.time
                     else tv_rows_of(geometry, kind, a.seed) if a.tv
                     else rows_of(geometry, kind, a.seed))
            print(geometry, kind, rows[-1] if a.time else "", flush=True)
            with atomic_path(out) as tmp:
                tmp.write_text(json.dumps(rows, indent=1) + "\n")
    if a.time:
        saved = [r["saved_tv50"] for r in rows]
        print(f"the finest level's estimate, 15 power -> 7 Lanczos steps, saves "
              f"{np.median(saved):.3f} TV50 (median; {min(saved):.3f}-{max(saved):.3f})")
    else:
        print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

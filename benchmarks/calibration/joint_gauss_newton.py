"""The joint Gauss-Newton step after the finest level of self-calibration: what it buys.

The alternating scheme (:mod:`oatomo.calibration.joint`) moves each sensor against an
image made from the same sensors; the joint step
(:func:`oatomo.calibration.gauss_newton.joint_gauss_newton_step`) estimates the image's
change, the gains, the positions and ``c`` together by LSQR on the linearised records.
This benchmark calibrates each scan under several settings and scores TV with the result
(the default's TV, registered PSNR as ``heldout_default.py``), the position error after
rigid alignment, ``c`` with the scale gauge removed, and the calibration's time.

Settings (``--configs``, comma-separated):

* ``none``: no joint step (the calibration before it);
* ``step``: the default (:data:`oatomo.calibration.joint.JOINT_STEPS` steps of
  :data:`~oatomo.calibration.gauss_newton.JOINT_STEP_ITERS` LSQR iterations after the
  finest level where the array covers 300 degrees, and the coarse step below);
* ``c<i>+...``: a joint step of ``i`` LSQR iterations at the end of the level before the
  finest (``coarse_joint_iters``; every config but ``step`` has none unless this prefix
  names it), then the rest of the config, e.g. ``c100+step``;
* ``step<k>x<i>``: ``k`` steps of ``i`` iterations, each after the first linearised about
  the image made again (warm TV at the last step's geometry);
* ``r<a><b><c>+step``: the default step with ``(a, b, c)`` rounds per level;
* ``i<k>+...``: ``k`` FISTA iterations per image step (``image_iters``) instead of
  :data:`oatomo.calibration.joint.IMAGE_ITERS`, then the rest of the config, e.g.
  ``i7+c100+step``;
* ``...d<w>``: the step with a Tikhonov weight ``w`` on the image change
  (``image_damping``), e.g. ``step1x50d0.3``;
* ``m<x>+...``: the levels' bound on ``||A||^2`` inflated by ``x`` for the moving sensors
  instead of :data:`oatomo.calibration.joint.MOVE_MARGIN` (the image steps' step size;
  the bound handed to the TV after the calibration stays the estimate itself), then the
  rest of the config, e.g. ``m1.0+c100+step``.

Tuning set (``--tuning``): a 160-sensor ring (r 36 mm) and a 72-sensor 200 degree arc
(r 25 mm), arrays no other benchmark or report set of the repository uses, seeds
2000-2001 of ``heldout_default.py``'s generator (its perturbations, noise, band and 2x
finer simulation grid). The report sets are ``heldout_default.py``'s own (its report and
fresh sets, with the step in the default).

``--short-apertures`` (with ``--tuning``) takes the short apertures instead (100 and 150
degree arcs, a 96-element linear array: ``speed_step.py``'s tuning arrays but its 200
degree arc).

``--coverage-arcs`` (with ``--tuning``) takes arcs of 230, 255 and 285 degrees instead
(:data:`COVERAGE_ARCS`): where the finest level's joint step starts to pay.

Run::

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/calibration/joint_gauss_newton.py --tuning --seed 2001 \\
        --configs none,step --out benchmarks/calibration/joint_gauss_newton.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout_default as H  # noqa: E402

import oatomo  # noqa: E402
import oatomo.calibration.estimate as E  # noqa: E402
import oatomo.calibration.joint as J  # noqa: E402
from oatomo._atomic import atomic_path  # noqa: E402
from oatomo.calibration import apply_calibration, similarity_transform  # noqa: E402

#: Tuning arrays: counts and radii no benchmark or report set of the repository uses.
TUNING_GEOMETRIES = {"ring160": H.Geometry("ring", 160, 36 * H.MM),
                     "arc200": H.Geometry("ring", 72, 25 * H.MM, 200 * H.DEG),
                     "ring36": H.Geometry("ring", 36, 22 * H.MM),
                     "arc300": H.Geometry("ring", 90, 26 * H.MM, 300 * H.DEG)}
#: Short apertures (``--short-apertures``; also ``speed_step.py``'s tuning arrays, with the
#: 200 degree arc): counts, radii and spans no benchmark report set uses.
SHORT_APERTURES = {"arc100": H.Geometry("ring", 48, 22 * H.MM, 100 * H.DEG),
                   "arc150": H.Geometry("ring", 70, 25 * H.MM, 150 * H.DEG),
                   "linear96": H.Geometry("linear", 96, 9 * H.MM, pitch=0.25 * H.MM)}
#: Arcs between the tuning set's 200 and 300 degrees (``--coverage-arcs``): where the finest
#: level's joint step starts to pay (:data:`oatomo.calibration.joint.JOINT_STEP_COVERAGE`);
#: counts, radii and spans no report set uses.
COVERAGE_ARCS = {"arc230": H.Geometry("ring", 76, 23 * H.MM, 230 * H.DEG),
                 "arc255": H.Geometry("ring", 86, 25.5 * H.MM, 255 * H.DEG),
                 "arc285": H.Geometry("ring", 88, 24.5 * H.MM, 285 * H.DEG)}
#: The tuning sets other than :data:`TUNING_GEOMETRIES`, by the flag that picks them.
OTHER_TUNING_SETS = {"--short-apertures": SHORT_APERTURES, "--coverage-arcs": COVERAGE_ARCS}
TUNING_PHANTOMS = ("vessels-thin", "vessels-thick", "disks", "texture")
H.GEOMETRIES.update(TUNING_GEOMETRIES)
H.GEOMETRIES.update(SHORT_APERTURES)
H.GEOMETRIES.update(COVERAGE_ARCS)

_ORIGINAL = (J.joint_calibration, J.joint_gauss_newton_step)
_MARGIN = J.MOVE_MARGIN


def configure(name: str) -> None:
    """Set the calibration's joint steps, LSQR iterations and rounds for ``name``."""
    joint, step = _ORIGINAL
    kwargs: dict[str, Any] = {}
    iters = None
    margin = re.match(r"m(?P<margin>[\d.]+)\+", name)
    # estimate.py holds its own name for the constant (it takes the margin off the bound
    # it hands the TV, and puts it on a widened grid's): both follow the config
    J.MOVE_MARGIN = E.MOVE_MARGIN = float(margin["margin"]) if margin else _MARGIN
    name = name[margin.end():] if margin else name
    m = re.fullmatch(r"(?:i(?P<image>\d+)\+)?(?:c(?P<coarse>\d+)\+)?(?:r(?P<rounds>\d\d\d)\+)?"
                     r"(?P<kind>none|step)"
                     r"(?:(?P<steps>\d+)x(?P<iters>\d+))?(?:d(?P<damping>[\d.]+))?", name)
    if m is None:
        raise SystemExit(f"unknown config {name!r}")
    # the coarse joint step: as the prefix says; the default's with ``step``; none otherwise
    # (the configs measured before the coarse step existed)
    kwargs["coarse_joint_iters"] = (int(m["coarse"]) if m["coarse"] else
                                    J.COARSE_JOINT_ITERS if name == "step" else 0)
    if m["rounds"]:
        kwargs["rounds"] = tuple(int(d) for d in m["rounds"])
    if m["image"]:
        kwargs["image_iters"] = int(m["image"])
    if m["kind"] == "none":
        kwargs["joint_steps"] = 0
    elif m["steps"]:
        kwargs["joint_steps"] = int(m["steps"])
        iters = int(m["iters"])

    def joint_with(*args: Any, **kw: Any) -> Any:  # these settings over the caller's
        return joint(*args, **{**kw, **kwargs})

    E.joint_calibration = joint_with
    step_kw: dict[str, Any] = {} if iters is None else {"n_iter": iters}
    if m["damping"]:
        step_kw["image_damping"] = float(m["damping"])
    J.joint_gauss_newton_step = partial(step, **step_kw) if step_kw else step


def run(geometry: str, kind: str, seed: int, config: str) -> dict[str, Any]:
    """Calibrate one scan under ``config`` and score TV with the estimate."""
    configure(config)
    return scored(geometry, kind, seed, config)[0]


def scored(geometry: str, kind: str, seed: int, config: str) -> tuple[dict[str, Any], Any,
                                                                      Any]:
    """The row of one scan calibrated as the calibration is now set (TV with the estimate
    scored), the case and the calibration."""
    case = H.make_case(geometry, kind, seed)
    t = time.perf_counter()
    cal = oatomo.calibrate(case.scan, case.grid)
    t_cal = time.perf_counter() - t
    img, t_tv = H._tv(apply_calibration(case.scan, cal), case.grid)
    scale = similarity_transform(cal.sensors.positions, case.true.positions, scale=True)[0]
    return {"geometry": geometry, "phantom": kind, "seed": seed, "config": config,
            "psnr_reg": H.register(img, case.truth)[0],
            "pos_err_um": H.rms_um(cal.sensors, case.true),
            "pos_err_file_um": H.rms_um(case.nominal, case.true),
            "c_err_gauge_pct": 100 * (scale * cal.speed_of_sound / case.c_true - 1),
            "t_calibrate": t_cal, "t_tv": t_tv}, case, cal


def table(rows: list[dict[str, Any]], reference: str = "none") -> str:
    """Per geometry and config, then per config over all: means over the scans
    (differences against the ``reference`` config on the same scan)."""
    base = {(r["geometry"], r["phantom"], r["seed"]): r for r in rows
            if r["config"] == reference}
    configs = list(dict.fromkeys(r["config"] for r in rows))
    geos = list(dict.fromkeys(r["geometry"] for r in rows))
    lines = [f"| array | config | scans | PSNR reg. (dB) | vs {reference} (dB): mean / min / max | "
             "position error / file's | c error, gauge removed (%) | calibration / TV |",
             "|---|---|---|---|---|---|---|---|"]
    for geo in [*geos, "all"]:
        for cfg in configs:
            sel = [r for r in rows if r["config"] == cfg and geo in ("all", r["geometry"])]
            if not sel:
                continue
            d = [r["psnr_reg"] - base[k]["psnr_reg"] for r in sel
                 if (k := (r["geometry"], r["phantom"], r["seed"])) in base]
            diff = (f"{np.mean(d):+.2f} / {min(d):+.2f} / {max(d):+.2f}" if d else "-")
            lines.append(
                f"| {geo} | {cfg} | {len(sel)} | {np.mean([r['psnr_reg'] for r in sel]):.2f} | "
                f"{diff} | "
                f"{np.mean([r['pos_err_um'] / r['pos_err_file_um'] for r in sel]):.3f} | "
                f"{np.mean([abs(r['c_err_gauge_pct']) for r in sel]):.3f} | "
                f"{np.median([r['t_calibrate'] / r['t_tv'] for r in sel]):.2f} |")
    return "\n".join(lines)


def drive(argv: list[str] | None, description: str, run_one: Any,
          tuning: dict[str, Any], phantoms: tuple[str, ...], configs: str) -> int:
    """The command line of this benchmark and of those that share its rows and table
    (``speed_step.py``): ``run_one(geometry, phantom, seed, config)`` per case and config,
    resumable in ``--out``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cases", default=None,
                    help="comma-separated geometry:phantom pairs (heldout_default.py's "
                         "geometries and phantoms)")
    ap.add_argument("--tuning", action="store_true",
                    help="the tuning set: the tuning geometries x phantoms")
    ap.add_argument("--geometries", default=None,
                    help="with --tuning: comma-separated subset of the tuning geometries")
    ap.add_argument("--seed", type=int, default=2000)
    ap.add_argument("--configs", default=configs)
    ap.add_argument("--out", required=True)
    ap.add_argument("--table", action="store_true", help="print the table and stop")
    ap.add_argument("--reference", default="none",
                    help="the config the table's differences are taken against")
    a = ap.parse_args(argv)
    out = Path(a.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    if not a.table:
        geos = a.geometries.split(",") if a.geometries else list(tuning)
        pairs = ([(g, k) for g in geos for k in phantoms] if a.tuning
                 else [tuple(p.split(":")) for p in (a.cases or "").split(",") if p])
        H.warm_up()
        for geo, kind in pairs:
            for cfg in a.configs.split(","):
                done = {(r["geometry"], r["phantom"], r["seed"], r["config"]) for r in rows}
                if (geo, kind, a.seed, cfg) in done:
                    continue
                row = run_one(geo, kind, a.seed, cfg)
                rows.append(row)
                print(json.dumps(row), flush=True)
                with atomic_path(out) as tmp:
                    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    print(table(rows, a.reference))
    return 0 if rows or a.table else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    geometries = TUNING_GEOMETRIES
    for flag, arrays in OTHER_TUNING_SETS.items():  # the last flag given wins
        if flag in argv:
            argv.remove(flag)
            geometries = arrays
    return drive(argv, __doc__.splitlines()[0], run, geometries, TUNING_PHANTOMS,
                 "none,step")


if __name__ == "__main__":
    raise SystemExit(main())

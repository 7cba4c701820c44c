"""``oatomo autofocus``: estimate a scan's speed of sound from image sharpness."""

from __future__ import annotations

import argparse
import math

import numpy as np

from oatomo._atomic import check_output_path
from oatomo._limits import SPEED_RANGE, check_option
from oatomo.errors import InputError
from oatomo.geometry import Grid

#: Most points of the coarse search.
MAX_STEPS = 1000


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "autofocus", help="estimate the speed of sound of a scan (sharpest DAS image)",
        description="Reconstruct the scan by delay-and-sum over a range of speeds of sound "
        "and report the one that gives the sharpest image (normalised gradient energy; "
        "coarse grid, then Brent refinement). The scan file is never modified. A shift or "
        "rotation of the whole array cannot be estimated this way (it only moves the "
        "image).")
    p.add_argument("scan", help="scan file (oatomo, IPASC or PATATO HDF5)")
    p.add_argument("--range", metavar="CMIN:CMAX",
                   help="speeds of sound searched, m/s (default 1400:1600; with --object "
                   "the object's, default 1400:1700)")
    p.add_argument("--steps", type=int, default=21,
                   help=f"points of the coarse search (default 21, at most {MAX_STEPS})")
    p.add_argument("--n", type=int, default=128,
                   help="side of the trial images in pixels (default 128; keep the pitch "
                   "near 0.1 mm: 0.2 mm pixels biased c by up to 0.65 %% with 32 sensors)")
    p.add_argument("--fov", type=float, help="field of view of the trial images in metres "
                   "(default: the scan's truth grid, else 1.3 x the array radius)")
    p.add_argument("--frame", type=int, help="use only this frame (default: all, summed)")
    p.add_argument("--object", action="store_true",
                   help="two speeds of sound: estimate an object region's speed (searched "
                   "over --range, default 1400:1700 then) and radius (and with "
                   "--fit-centre its centre) in water at --speed-of-sound, by a held-out "
                   "data misfit (half of the sensors predict the rest)")
    p.add_argument("--speed-of-sound", type=float, metavar="C0",
                   help="with --object: the coupling medium's speed in m/s (default: the "
                   "file's)")
    p.add_argument("--radius-range", metavar="RMIN:RMAX",
                   help="with --object: region radii searched, metres (default 10 %% to "
                   "125 %% of half the field of view)")
    p.add_argument("--object-centre", type=float, nargs=2, metavar=("X", "Y"),
                   help="with --object: the region's centre in metres, or where its search "
                   "starts with --fit-centre (default 0 0)")
    p.add_argument("--fit-centre", action="store_true",
                   help="with --object: also estimate the region's centre")
    p.add_argument("--fit-speed-of-sound", action="store_true",
                   help="with --object: also estimate the coupling medium's speed, starting "
                   "from --speed-of-sound or the file's")
    p.add_argument("--json", metavar="FILE", help="also write the result as a calibration "
                   "JSON file (for `oatomo reconstruct --calibration FILE`)")
    p.add_argument("--force", action="store_true", help="overwrite an existing JSON file")
    p.set_defaults(func=run)


def _parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise InputError(f"--range must look like CMIN:CMAX in m/s, got {text!r}") from None
    c_lo, c_hi = SPEED_RANGE
    if not (math.isfinite(lo) and math.isfinite(hi) and c_lo <= lo < hi <= c_hi):
        raise InputError(f"--range must satisfy {c_lo:g} <= CMIN < CMAX <= {c_hi:g}, got "
                         f"{text!r}")
    return lo, hi


def _parse_radius_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise InputError(f"--radius-range must look like RMIN:RMAX in metres, got "
                         f"{text!r}") from None
    for v in (lo, hi):
        check_option("object_radius", v, "--radius-range")
    if not lo < hi:
        raise InputError(f"--radius-range must have RMIN < RMAX, got {text!r}")
    return lo, hi


def _check_object_flags(args: argparse.Namespace) -> None:
    """The two-speed options need --object; their ranges (one-line errors)."""
    given = [flag for flag, v in (("--speed-of-sound", args.speed_of_sound),
                                  ("--radius-range", args.radius_range),
                                  ("--object-centre", args.object_centre),
                                  ("--fit-centre", args.fit_centre or None),
                                  ("--fit-speed-of-sound", args.fit_speed_of_sound or None))
             if v is not None]
    if given and not args.object:
        raise InputError(f"{given[0]} needs --object")
    if args.speed_of_sound is not None:
        c = args.speed_of_sound
        if not (math.isfinite(c) and SPEED_RANGE[0] <= c <= SPEED_RANGE[1]):
            raise InputError(f"--speed-of-sound must be in [{SPEED_RANGE[0]:g}, "
                             f"{SPEED_RANGE[1]:g}] m/s, got {c}")
    if args.object_centre is not None:
        check_option("object_centre", list(args.object_centre), "--object-centre")


def run(args: argparse.Namespace) -> int:
    from oatomo.io import load_scan, require_plane, save_calibration  # lazy: h5py
    from oatomo.recon.autofocus import autofocus  # lazy: Numba kernels

    _check_object_flags(args)
    c_range = _parse_range(args.range or ("1400:1700" if args.object else "1400:1600"))
    r_range = _parse_radius_range(args.radius_range) if args.radius_range else None
    if not 3 <= args.steps <= MAX_STEPS:
        raise InputError(f"--steps must be in 3..{MAX_STEPS}, got {args.steps}")
    out = check_output_path(args.json, force=args.force, inputs=(args.scan,)) \
        if args.json else None
    scan = load_scan(args.scan)
    require_plane(scan, "oatomo autofocus", args.scan)
    radius = float(np.median(np.hypot(*scan.sensors.positions.T)))
    fov = args.fov if args.fov is not None else (
        scan.grid.fov if scan.grid is not None else 1.3 * radius)
    grid = Grid(args.n, fov)
    sino = scan.sinogram
    if args.frame is not None:
        frames = sino.reshape((-1,) + sino.shape[-2:])
        if not 0 <= args.frame < len(frames):
            raise InputError(f"--frame must be in 0..{len(frames) - 1}, got {args.frame}")
        sino = frames[args.frame]
    if args.object:
        return _run_two_speeds(args, scan, sino, grid, c_range, r_range, out)
    result = autofocus(sino, grid, scan.sensors, scan.acquisition, c_range=c_range,
                       n_coarse=args.steps)
    c = result["speed_of_sound"]
    print(f"speed of sound: {c:.1f} m/s (file: {scan.acquisition.speed_of_sound:g} m/s; "
          f"searched {c_range[0]:g}..{c_range[1]:g} m/s, {result['n_evaluations']} DAS "
          f"images on {grid.n}x{grid.n} in {result['time_s']:.2f} s)")
    if result["at_edge"]:
        print("warning: the sharpest image is at the end of the range; widen --range")
    if out is not None:
        doc = {"scan": str(args.scan), "c_range": list(c_range),
               "grid": grid.to_dict(), **result}
        save_calibration(out, doc)
        print(f"wrote {out} (use: oatomo reconstruct {args.scan} --calibration {out})")
    return 0


def _run_two_speeds(args: argparse.Namespace, scan: object, sino: np.ndarray, grid: Grid,
                    c_range: tuple[float, float], r_range: tuple[float, float] | None,
                    out: object) -> int:
    """``oatomo autofocus --object``: the region's speed and radius (and centre)."""
    from oatomo.io import save_calibration  # lazy: h5py
    from oatomo.recon.autofocus import (  # lazy: Numba kernels
        REGION_MAX_P,
        autofocus_two_speeds,
    )

    centre = tuple(args.object_centre) if args.object_centre is not None else (0.0, 0.0)
    r = autofocus_two_speeds(sino, grid, scan.sensors, scan.acquisition,
                             c0=args.speed_of_sound, c1_range=c_range, radius_range=r_range,
                             centre=centre, fit_centre=args.fit_centre,
                             fit_c0=args.fit_speed_of_sound,
                             steps=(args.steps, max(3, (args.steps * 2 + 2) // 3)),
                             medium=getattr(scan, "medium", "slab"))
    c0 = r["speed_of_sound"]
    cx, cy = r["object_centre"]
    how = (f"{r['n_evaluations']} held-out misfits on {grid.n}x{grid.n} in "
           f"{r['time_s']:.1f} s")
    if r["region_found"]:
        print(f"object region: {r['object_speed_of_sound']:.1f} m/s, radius "
              f"{r['object_radius'] * 1e3:.3f} mm at ({cx * 1e3:.3f}, {cy * 1e3:.3f}) mm in "
              f"water at {c0:g} m/s (held-out misfit {r['misfit']:.4f}, one speed "
              f"{r['misfit_one_speed']:.4f}; lower at {r['sensors_improved']:.0%} of the "
              f"sensors, Wilcoxon p = {r['wilcoxon_p']:.1e}; {how})")
    else:
        print(f"no object region found: the best one ({r['object_speed_of_sound']:.1f} m/s, "
              f"radius {r['object_radius'] * 1e3:.3f} mm) does not lower the held-out misfit "
              f"of one speed ({c0:g} m/s) sensor by sensor beyond chance (lower at "
              f"{r['sensors_improved']:.0%} of the sensors, Wilcoxon p = "
              f"{r['wilcoxon_p']:.2g}, needs < {REGION_MAX_P:g}); {how}")
    if r["at_edge"]:
        print("warning: the region found is at the end of the searched ranges; widen "
              "--range or --radius-range")
    if out is not None:
        record = {k: v for k, v in r.items() if k != "speed_map"}
        if not r["region_found"]:
            for key in ("object_speed_of_sound", "object_radius", "object_centre"):
                record["searched_" + key] = record.pop(key)
        doc = {"scan": str(args.scan), "c_range": list(c_range), "grid": grid.to_dict(),
               **record}
        save_calibration(out, doc)
        print(f"wrote {out} (use: oatomo reconstruct {args.scan} --calibration {out})")
    return 0

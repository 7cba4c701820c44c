"""``oatomo autofocus``: estimate a scan's speed of sound from image sharpness."""

from __future__ import annotations

import argparse
import math

import numpy as np

from oatomo._atomic import check_output_path
from oatomo._limits import SPEED_RANGE
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
    p.add_argument("--range", default="1400:1600", metavar="CMIN:CMAX",
                   help="speeds of sound searched, m/s (default 1400:1600)")
    p.add_argument("--steps", type=int, default=21,
                   help=f"points of the coarse search (default 21, at most {MAX_STEPS})")
    p.add_argument("--n", type=int, default=128,
                   help="side of the trial images in pixels (default 128; keep the pitch "
                   "near 0.1 mm: 0.2 mm pixels biased c by up to 0.65 %% with 32 sensors)")
    p.add_argument("--fov", type=float, help="field of view of the trial images in metres "
                   "(default: the scan's truth grid, else 1.3 x the array radius)")
    p.add_argument("--frame", type=int, help="use only this frame (default: all, summed)")
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


def run(args: argparse.Namespace) -> int:
    from oatomo.io import load_scan, require_plane, save_calibration  # lazy: h5py
    from oatomo.recon.autofocus import autofocus  # lazy: Numba kernels

    c_range = _parse_range(args.range)
    if args.steps > MAX_STEPS:
        raise InputError(f"--steps must be at most {MAX_STEPS}, got {args.steps}")
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

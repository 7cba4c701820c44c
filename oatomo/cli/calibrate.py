"""``oatomo calibrate``: sensor positions and speed of sound estimated from the scan."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from oatomo._atomic import check_outputs
from oatomo._limits import MAX_PERTURBATION, check_range
from oatomo.cli._progress import bars
from oatomo.errors import InputError

#: Smallest ``--prior-std`` accepted (m): a tenth of a micrometre.
MIN_PRIOR_STD = 1e-7

_SOURCE = {"given": "given", "setup": "from the scan's setup", "default": "1 % of the radius",
           "data": "estimated from the data"}


def _prior(text: str) -> float | str:
    """``--prior-std``: a length in metres or ``data``."""
    if text.strip().lower() == "data":
        return "data"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected metres or 'data', got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="estimate sensor positions and speed of sound from a scan",
        description="Self-calibrate a scan (oatomo, IPASC or PATATO HDF5): estimate each "
        "sensor's position in the imaging plane and the speed of sound from the data alone "
        "and write an oatomo scan file that uses the estimates (the nominal values, the "
        "prior, the uncertainty and the misfit history are kept under /calibration). A "
        "rigid motion of the whole array cannot be seen in the data: the estimate is "
        "aligned to the nominal array (moved by the setup's fixed rotation/offset, if any). "
        "The input is never modified.")
    p.add_argument("scan", help="scan file")
    p.add_argument("-o", "--output", help="calibrated scan file (default: "
                   "<scan>_calibrated.h5)")
    p.add_argument("--prior-std", type=_prior, help="per-coordinate standard deviation "
                   "of the position errors in metres, or 'data' to estimate it from the scan "
                   "(default: from the scan's setup, else 1 %% of the array radius)")
    p.add_argument("--fixed-speed-of-sound", action="store_true",
                   help="keep the file's speed of sound (estimate positions only)")
    p.add_argument("--n", type=int, help="pixels per side of the finest level (default: "
                   "the scan's truth grid, else 256)")
    p.add_argument("--fov", type=float, help="field of view in metres (default as in "
                   "reconstruct)")
    p.add_argument("--frames", type=int, nargs="+", help="frames to calibrate on (default: "
                   "all, averaged)")
    p.add_argument("--reseat", action="store_true",
                   help="end by searching every sensor again against an image of the other "
                   "sensors (catches a sensor the image holds at a wrong position; about a "
                   "quarter more time)")
    p.add_argument("--json", metavar="FILE", help="also write the estimates as a "
                   "calibration JSON file (for `oatomo reconstruct --calibration FILE`)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from oatomo.calibration import apply_calibration, calibrate  # lazy: Numba kernels
    from oatomo.io import load_scan, require_plane, save_calibration, save_scan  # lazy: h5py
    from oatomo.pipeline import default_grid  # lazy: Numba kernels

    src = Path(args.scan)
    out = Path(args.output) if args.output else src.with_name(src.stem + "_calibrated.h5")
    js = Path(args.json) if args.json else None
    if isinstance(args.prior_std, float):
        check_range(args.prior_std, "--prior-std", MIN_PRIOR_STD, MAX_PERTURBATION, unit="m")
    check_outputs([out, js], force=args.force, inputs=(src,))
    scan = load_scan(src)
    require_plane(scan, "oatomo calibrate", src)
    for k in args.frames or ():
        if not 0 <= k < scan.n_frames:
            raise InputError(f"--frames {k} is out of range: the scan has {scan.n_frames} "
                             f"frame(s), 0..{scan.n_frames - 1}", src)
    grid = default_grid(scan, args.n, args.fov)
    with bars(args) as progress:
        try:
            cal = calibrate(scan, grid, frames=args.frames, prior_std=args.prior_std,
                            speed_of_sound=not args.fixed_speed_of_sound,
                            callback=progress, reseat=args.reseat)
        except InputError as exc:  # name the file the problem is in
            raise InputError(exc.problem, exc.path or src) from None
    if js is not None:  # first: a scan file is never left without its JSON
        save_calibration(js, {"scan": str(src), **cal.to_dict()})
    try:
        save_scan(out, apply_calibration(scan, cal))
    except BaseException:
        if js is not None:
            js.unlink(missing_ok=True)
        raise
    shift = np.hypot(*cal.displacement.T)
    std = np.hypot(*cal.position_std.T)
    hist = cal.history
    print(f"calibrated {src} ({scan.sensors.n_sensors} sensors) on {grid.n}x{grid.n} at "
          f"{grid.dx * 1e3:.3g} mm in {cal.time_s:.1f} s")
    print(f"speed of sound: {cal.nominal_speed_of_sound:g} -> {cal.speed_of_sound:.2f} m/s")
    print(f"positions: rms shift {np.sqrt(np.mean(shift ** 2)) * 1e6:.0f} um (max "
          f"{shift.max() * 1e6:.0f} um), median uncertainty {np.median(std) * 1e6:.0f} um, "
          f"prior {cal.prior_std * 1e6:.0f} um per coordinate ({_SOURCE[cal.prior_source]})")
    frame = cal.frame_std
    print(f"frame (the gauge; 1 std from the prior): no data see a rigid motion of the whole "
          f"array, so the image may be shifted by about {frame['translation_m'] * 1e6:.0f} um "
          f"per axis and rotated by {math.degrees(frame['rotation_rad']):.2f} deg against "
          f"the true frame; a common scale leaves c uncertain by "
          f"{frame['scale_rel'] * 100:.2f} %")
    print(f"misfit of the rounds: {hist[0]['misfit']:.3f} (first) -> "
          f"{hist[-1]['misfit']:.3f} (last)")
    if cal.heldout_misfit:
        h = cal.heldout_misfit
        print(f"against the file's geometry on held-out records: misfit {h['file']:.3f} -> "
              f"{h['calibrated']:.3f}" + ("" if cal.improves_on_file else
                                          " (no better: the data do not identify this "
                                          "estimate; oatomo reconstruct's default would "
                                          "keep the file's geometry)"))
    for note in cal.notes:
        print(f"note: {note}")
    print(f"wrote {out}")
    if js is not None:
        print(f"wrote {js}")
    return 0

"""``oatomo simulate``, ``oatomo reconstruct``, ``oatomo setups``, ``oatomo presets`` and
``oatomo info``."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from oatomo import figures, phantoms
from oatomo._atomic import check_input_file, check_outputs
from oatomo._limits import MAX_POSTERIOR_SAMPLES, check_option, check_seed
from oatomo.cli._progress import bars
from oatomo.errors import InputError
from oatomo.media import ATTENUATION_PRESETS, MEDIA, Attenuation
from oatomo.recon.registry import METHODS
from oatomo.response import DetectorResponse
from oatomo.setups import SIMULATIONS_DIR, describe_bundled_setups, load_setup
from oatomo.speed_map import check_object_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate a scan of a setup (true positions drawn) "
                       "or of a 3-D array (a volume scan)",
                       description="Draw the true sensor positions of a setup, simulate the "
                       "scan with the setup's noise and band, write an oatomo scan file; or, "
                       "with --array, simulate a 3-D array seeing a volume phantom.")
    p.add_argument("--setup", help="setup TOML file or bundled setup name (e.g. ring32_r22); "
                   "a file with dimensions = 3 is a volume setup (3-D array)")
    p.add_argument("--array", metavar="KIND:N:...", help="a 3-D array instead of a setup: "
                   "hemisphere:N:RADIUS, cap:N:RADIUS:HALF_ANGLE_DEG, sphere:N:RADIUS or "
                   "planar:NX:PITCH:Z (NX x NX sensors in the plane z = Z), in metres (e.g. "
                   "hemisphere:256:0.03); the scan then has 3-D sensor positions")
    p.add_argument("--phantom", help="2-D: vessels, vessel-tree, disk, disks, shepp-logan or "
                   "a .png/.npy file (default: vessels); 3-D (--array): "
                   "ball or vessels3d (default: vessels3d)")
    p.add_argument("--n", type=int, help="--array: voxels per side of the simulation's cube "
                   "(default: 64)")
    p.add_argument("--fov", type=float, help="--array: side of the cube in metres (default: "
                   "the largest cube inside the sphere through the nearest sensor)")
    p.add_argument("--fs", type=float, help="--array: sampling rate in Hz (default: 40e6)")
    p.add_argument("--samples", type=int, help="--array: samples per sensor (default: up to "
                   "the farthest voxel, rounded up to a multiple of 256)")
    p.add_argument("--speed-of-sound", type=float, metavar="C",
                   help="--array: speed of sound in m/s (default: 1500)")
    p.add_argument("--noise", type=float, help="--array: white noise, relative to the "
                   "largest clean sample (default: 0.01)")
    p.add_argument("--band", metavar="LOW:HIGH", help="--array: band of the detectors in Hz "
                   "(a zero-phase Butterworth band-pass, e.g. 0.5e6:6e6; default: none)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of phantom, positions and noise (default: %(default)s)")
    p.add_argument("-o", "--output", required=True, help="output scan file (.h5)")
    p.add_argument("--format", choices=("oatomo", "ipasc"), default="oatomo",
                   help="layout of the scan file: oatomo's HDF5 or IPASC/PACFISH HDF5 "
                   "(default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    _media_options(p, "simulate in", "slab")
    p.set_defaults(func=run_simulate)

    r = sub.add_parser("reconstruct", help="reconstruct a scan file into an image file",
                       description="Reconstruct a scan (oatomo, IPASC or PATATO HDF5) and "
                       "write the image(s) and a figure (PNG, SVG or PDF). The input is never "
                       "modified.")
    r.add_argument("scan", help="scan file")
    r.add_argument("-o", "--output", help="output image file (default: <scan>_<method>.h5 "
                   "beside the scan, named after the method used, e.g. scan_mb-tv.h5)")
    r.add_argument("--preset", help="a preset TOML file or bundled preset name: the method, "
                   "grid, band, speed of sound and detector response of a scanner set-up "
                   "(explicit options win)")
    r.add_argument("--method", choices=tuple(METHODS),
                   help="reconstruction method (default: the preset's, else mb-tv; ubp "
                   "with --refine): " + "; ".join(
                       f"{m.name}: {m.description}" for m in METHODS.values()))
    r.add_argument("--n", type=int, help="image side in pixels (default: the scan's truth "
                   "grid, else 256)")
    r.add_argument("--fov", type=float, help="field of view in metres (default: the truth "
                   "grid's, else the object's extent seen in the first arrivals, at most the "
                   "sensors' inscribed circle)")
    r.add_argument("--png", "--figure", dest="png", metavar="FIGURE",
                   help="figure path; its suffix is the format: .png, .svg or .pdf "
                   "(default: the output's path with .png); 'none' to skip")
    r.add_argument("--dpi", type=int, default=figures.FIGURE_DPI,
                   help=f"figure resolution in dots per inch, {figures.DPI_RANGE[0]}.."
                   f"{figures.DPI_RANGE[1]} (default: %(default)s)")
    r.add_argument("--export-patato", metavar="FILE", help="also write the scan and the "
                   "linear/model-based images in PATATO's HDF5 layout (recons/<method>/0, "
                   "wavelengths in nm) for PATATO's spectral unmixing")
    r.add_argument("--lam", type=float, help="model-based regularisation weight, absolute: "
                   "used as given in the objective, not scaled (default: scaled to the "
                   "data, 5e-3 ||A||^2 for mb-tikhonov, 1e-2 ||A^T y||_inf for mb-tv)")
    r.add_argument("--iters", type=int, help="model-based iterations, without the stall "
                   "test (default: the preset's, else 50; with the detector response in the "
                   "operator 100, TV on to 150 while its objective still falls, 120 at most "
                   "after self-calibration)")
    r.add_argument("--force", action="store_true", help="overwrite an existing output")
    r.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                   help="refine with the learned model; --refine fails (exit 2) when it "
                   "cannot (default: when a shipped model fits the scan and takes the "
                   "method's images: the TV refiner for the default TV image of a file "
                   "whose positions pass the check, the family refiner for --method ubp/das)")
    r.add_argument("--model", help="refinement model checkpoint (default: the model shipped "
                   "with oatomo for the method: the TV refiner for mb-tv, else the family "
                   "refiner)")
    r.add_argument("--setup", dest="setup_name", help="the scan's known setup: use that "
                   "setup's variant decoder instead of the invariant one")
    r.add_argument("--samples", type=int, default=16,
                   help="posterior samples for the uncertainty map (default: %(default)s)")
    r.add_argument("--device", default="cpu", help="PyTorch device of the refinement model: "
                   "cpu, cuda, cuda:N, auto (CUDA when present) (default: cpu)")
    r.add_argument("--speed-of-sound", type=float, metavar="C",
                   help="speed of sound in m/s (default: the file's)")
    r.add_argument("--object-speed-of-sound", type=float, metavar="C1",
                   help="two speeds of sound: the object region's speed in m/s (with "
                   "--object-radius; the coupling medium's is --speed-of-sound or the file's); "
                   "straight-ray times of flight, every method but fbp")
    r.add_argument("--object-radius", type=float, metavar="R",
                   help="radius of the object region (a disc), in metres")
    r.add_argument("--object-centre", type=float, nargs=2, metavar=("X", "Y"),
                   help="centre of the object region in metres (default: 0 0)")
    r.add_argument("--calibration", metavar="FILE", help="calibration JSON written by "
                   "`oatomo autofocus --json` or `oatomo calibrate --json`: its speed of sound "
                   "(and sensor positions, if any) replace the file's")
    r.add_argument("--band", metavar="LOW:HIGH",
                   help="band-pass the signals first, in Hz (e.g. 0.1e6:8e6; ':8e6' "
                   "low-pass, '0.1e6:' high-pass)")
    r.add_argument("--frames", type=int, nargs="+", metavar="I",
                   help="frame indices to reconstruct (default: all)")
    r.add_argument("--wavelengths", type=float, nargs="+", metavar="M",
                   help="wavelengths to reconstruct, in metres (e.g. 800e-9; default: all)")
    r.add_argument("--deconvolve", nargs="?", const=True, default=None, type=float,
                   metavar="LAM", help="remove the detector response (the file's, or "
                   "--response) by Wiener deconvolution first; LAM: regularisation relative "
                   "to the peak |H|^2 (default 0.001)")
    r.add_argument("--response", metavar="FC:BW", help="the sensors' response as a Gaussian "
                   "band: centre frequency in Hz and fractional bandwidth (e.g. 5e6:0.8), "
                   "instead of the file's")
    r.add_argument("--model-response", action=argparse.BooleanOptionalAction, default=None,
                   help="model-based methods: put the detector response (the file's, or "
                   "--response) in the forward operator instead of deconvolving first "
                   "(default: whenever the scan carries one and --deconvolve is not given; "
                   "then 100 iterations, TV on to 150 while its objective still falls, "
                   "unless --iters)")
    r.add_argument("--element-width", type=float, metavar="W", help="width of flat sensor "
                   "elements in metres: das and ubp weight the backprojection with their "
                   "directivity, model-based methods model it (default: point sensors); "
                   "for a scan with 3-D positions, the side of square elements (or the "
                   "diameter of discs, --element-shape disc)")
    r.add_argument("--element-shape", choices=("square", "disc"), default=None,
                   help="3-D scans: the face of flat elements of --element-width "
                   "(default: square)")
    r.add_argument("--calibrate", nargs="?", const="yes", default="auto",
                   choices=("auto", "yes", "no"),
                   help="estimate the sensor positions and speed of sound from the data "
                   "first (as `oatomo calibrate`) and reconstruct with the estimates: `yes` "
                   "(the bare flag) always; `auto` when a quick check finds that "
                   "the data disagree with the file's positions (then TV unless --method "
                   "says otherwise, unrefined; with --refine the check is only reported); "
                   "`no` never (default: %(default)s)")
    r.add_argument("--no-calibrate", dest="calibrate", action="store_const", const="no",
                   help="same as --calibrate no")
    _media_options(r, "the medium that made the scan:", None)
    r.set_defaults(func=run_reconstruct)

    st = sub.add_parser("setups", help="list the bundled setups",
                        description="The setups shipped with oatomo, usable by name in "
                        "--setup and in experiment files.")
    st.set_defaults(func=run_setups)

    ps = sub.add_parser("presets", help="list the bundled reconstruction presets",
                        description="The reconstruction presets shipped with oatomo, usable "
                        "by name in `oatomo reconstruct --preset`.")
    ps.set_defaults(func=run_presets)

    i = sub.add_parser("info", help="describe a scan file or an image file",
                       description="Describe a scan file (format, sensors, sampling, frames) "
                       "or an image file written by `oatomo reconstruct` (images, grid, "
                       "provenance).")
    i.add_argument("scan", metavar="FILE", help="scan file or oatomo image file")
    i.set_defaults(func=run_info)


def _media_options(p: argparse.ArgumentParser, verb: str, default: str | None) -> None:
    """``--medium`` (``default``: its default, None: the file's), ``--attenuation`` and
    ``--attenuation-power``."""
    p.add_argument("--medium", choices=MEDIA, default=default,
                   help=f"{verb} slab (a thin slab in 3-D) or 2d (line sources, the 2-D "
                   f"wave equation, as 2-D k-Wave) (default: "
                   f"{default or 'the file' + chr(39) + 's, else slab'})")
    p.add_argument("--attenuation", metavar="ALPHA0", help="acoustic attenuation at 1 MHz "
                   "in dB/(MHz^y cm) (tissue 0.5-0.75, water 0.002), or a named medium: "
                   + ", ".join(ATTENUATION_PRESETS) + " (which also sets the power)")
    p.add_argument("--attenuation-power", type=float, metavar="Y", help="exponent y of "
                   "the power law alpha0 (f / 1 MHz)^y, 0.5..2 (default: 1, or the named "
                   "medium's)")


def _attenuation(args: argparse.Namespace) -> Attenuation | None:
    """The :class:`Attenuation` of ``--attenuation`` and ``--attenuation-power``."""
    if args.attenuation is None:
        if args.attenuation_power is not None:
            raise InputError("--attenuation-power needs --attenuation")
        return None
    if args.attenuation_power is not None:
        check_option("attenuation_power", args.attenuation_power, "--attenuation-power")
    if args.attenuation in ATTENUATION_PRESETS:
        preset = Attenuation.preset(args.attenuation)
        return Attenuation(preset.alpha0, preset.power if args.attenuation_power is None
                           else args.attenuation_power)
    try:
        alpha0 = float(args.attenuation)
    except ValueError:
        raise InputError(f"--attenuation must be a number in dB/(MHz^y cm) or one of "
                         f"{', '.join(ATTENUATION_PRESETS)}, got {args.attenuation!r}") from None
    check_option("attenuation", alpha0, "--attenuation")
    return Attenuation(alpha0, 1.0 if args.attenuation_power is None
                       else args.attenuation_power)


def _band(text: str) -> tuple[float | None, float | None]:
    """``LOW:HIGH`` in Hz, either side may be empty."""
    try:
        lo, hi = (float(v) if v.strip() else None for v in text.split(":"))
    except ValueError:
        raise InputError(f"--band must look like LOW:HIGH in Hz (e.g. 0.1e6:8e6), got "
                         f"{text!r}") from None
    return lo, hi


def _response(text: str) -> object:
    """``FC:BW``: a Gaussian-band detector response."""
    try:
        fc, bw = (float(v) for v in text.split(":"))
    except ValueError:
        raise InputError(f"--response must look like FC:BW (centre frequency in Hz, "
                         f"fractional bandwidth; e.g. 5e6:0.8), got {text!r}") from None
    return DetectorResponse(centre_frequency=fc, bandwidth=bw)


def run_simulate(args: argparse.Namespace) -> int:
    from oatomo.forward import simulate  # lazy: Numba kernels
    from oatomo.io import Scan, save_scan  # lazy: h5py

    check_seed(args.seed, "--seed")
    if (args.setup is None) == (args.array is None):
        raise InputError("give either --setup (a 2-D setup) or --array (a 3-D array)")
    if args.array is not None or _is_volume_setup(args.setup):
        return _simulate_volume(args)
    volume_only = [f"--{k.replace('_', '-')}" for k in _ARRAY_OPTIONS
                   if getattr(args, k) is not None]
    if volume_only:
        raise InputError(f"{volume_only[0]} goes with --array; a setup sets its own")
    args.phantom = args.phantom or "vessels"
    out, = check_outputs([args.output], force=args.force, inputs=(args.setup, args.phantom))
    phantoms.check_name(args.phantom)
    attenuation = _attenuation(args)
    setup = load_setup(args.setup)
    rng = np.random.default_rng(args.seed)
    s_phantom, s_draw, s_noise = (int(v) for v in rng.integers(2**63, size=3))
    t = time.perf_counter()
    p0 = phantoms.make(args.phantom, setup.grid, s_phantom)
    true = setup.draw(s_draw)
    sino = simulate(p0, setup.grid, true, setup.acquisition, thickness=setup.thickness,
                    noise_std=setup.noise, band=setup.band, response=setup.response,
                    element_width=setup.element_width, seed=s_noise, medium=args.medium,
                    attenuation=attenuation)
    if not np.all(np.isfinite(sino)):
        raise InputError("the simulated sinogram is not finite (setup values out of range)",
                         args.setup)
    scan = Scan(sinogram=sino, sensors=setup.array, acquisition=setup.acquisition, p0=p0,
                grid=setup.grid, true_sensors=true, setup_name=setup.name,
                setup_toml=setup.to_toml_string(), seed=args.seed,
                metadata={"phantom": args.phantom}, response=setup.response,
                medium=args.medium, attenuation=attenuation)
    save_scan(out, scan, format=args.format)
    err = np.hypot(*(true.positions - setup.array.positions).T)
    print(f"simulated {setup.name}: {sino.shape[0]} sensors x {sino.shape[1]} samples, "
          f"phantom {args.phantom}, seed {args.seed}, position error rms "
          f"{np.sqrt(np.mean(err**2)) * 1e3:.3f} mm ({time.perf_counter() - t:.2f} s)")
    print(f"wrote {out}")
    return 0


#: Options of ``oatomo simulate`` that go with ``--array`` only (a setup sets its own).
_ARRAY_OPTIONS = ("n", "fov", "fs", "samples", "speed_of_sound", "noise", "band")


def _is_volume_setup(setup: str) -> bool:
    """Whether ``--setup`` names a volume setup file (``dimensions = 3``)."""
    from oatomo.volume.setups import is_volume_setup  # lazy: Numba kernels of the volume

    return is_volume_setup(setup)


def _array(text: str) -> object:
    """The 3-D array of ``--array KIND:N:...``."""
    from oatomo.volume import (  # lazy: Numba kernels of the volume room
        hemisphere_array,
        planar_array,
        spherical_cap_array,
    )

    kind, _, rest = text.partition(":")
    forms = {"hemisphere": "hemisphere:N:RADIUS", "cap": "cap:N:RADIUS:HALF_ANGLE_DEG",
             "sphere": "sphere:N:RADIUS", "planar": "planar:NX:PITCH:Z"}
    if kind not in forms:
        raise InputError(f"--array must start with {', '.join(forms)}, got {text!r}")
    try:
        values = [float(v) for v in rest.split(":")]
    except ValueError:
        values = []
    if len(values) != forms[kind].count(":"):
        raise InputError(f"--array {kind} must look like {forms[kind]} (metres, degrees), "
                         f"got {text!r}")
    count = values[0]
    if not (count == int(count) and 1 <= count <= 1e6):
        raise InputError(f"--array: the sensor count must be a whole number >= 1, got "
                         f"{values[0]:g}")
    if kind == "hemisphere":
        return hemisphere_array(int(count), values[1])
    if kind == "sphere":
        return spherical_cap_array(int(count), values[1], math.pi)
    if kind == "cap":
        if not 0 < values[2] <= 180:
            raise InputError(f"--array cap: the half angle must be in (0, 180] degrees, got "
                             f"{values[2]:g}")
        return spherical_cap_array(int(count), values[1], math.radians(values[2]))
    return planar_array(int(count), int(count), values[1], values[2])


def _volume_setup(args: argparse.Namespace) -> object:
    """The :class:`~oatomo.volume.setups.VolumeSetup` of ``--array`` and its options
    (unperturbed), or of a volume setup file (``--setup``)."""
    from oatomo import Acquisition  # lazy: as the other geometry
    from oatomo.io import Scan  # lazy: h5py
    from oatomo.pipeline.volume import default_volume_grid  # lazy: Numba kernels
    from oatomo.volume.setups import VolumeSetup, load_volume_setup  # lazy: as above

    if args.array is None:
        given = [f"--{k.replace('_', '-')}" for k in _ARRAY_OPTIONS
                 if getattr(args, k) is not None]
        if given:
            raise InputError(f"{given[0]} goes with --array; a setup sets its own", args.setup)
        return load_volume_setup(args.setup)
    if args.fov is not None:
        check_option("fov", args.fov, "--fov")
    noise = 0.01 if args.noise is None else args.noise
    fs = 40e6 if args.fs is None else args.fs
    c = 1500.0 if args.speed_of_sound is None else args.speed_of_sound
    if not (math.isfinite(noise) and 0 <= noise <= 10):
        raise InputError(f"--noise must be in 0..10 (relative to the largest sample), got "
                         f"{noise:g}")
    array = _array(args.array)
    probe = Scan(np.zeros((array.n_sensors, 2), np.float32), array,
                 Acquisition(fs, 2, speed_of_sound=c))
    grid = default_volume_grid(probe, args.n, args.fov)
    samples = args.samples
    if samples is None:
        far = float(np.linalg.norm(array.positions, axis=1).max()) \
            + math.sqrt(3) / 2 * grid.dx * max(grid.shape)
        samples = 256 * math.ceil((far / c * fs + 32) / 256)
    return VolumeSetup(name=args.array.split(":")[0], array=array,
                       acquisition=Acquisition(fs, samples, speed_of_sound=c),
                       grid=grid, noise=noise,
                       band=None if args.band is None else _band(args.band),
                       description=f"--array {args.array}")


def _simulate_volume(args: argparse.Namespace) -> int:
    """``oatomo simulate`` of a 3-D array (``--array``, or a volume setup file): a volume
    phantom seen by the setup's drawn true positions."""
    from oatomo.io import Scan, save_scan  # lazy: h5py
    from oatomo.volume import simulate_volume  # lazy: Numba kernels
    from oatomo.volume.phantoms import check_volume_phantom, make_volume  # lazy: as above

    phantom = args.phantom or "vessels3d"
    check_volume_phantom(phantom)
    if args.medium != "slab" or args.attenuation is not None:
        raise InputError("--medium 2d and --attenuation are 2-D only; the volume model is "
                         "a lossless 3-D medium")
    out, = check_outputs([args.output], force=args.force,
                         inputs=() if args.setup is None else (args.setup,))
    setup = _volume_setup(args)
    grid, acq = setup.grid, setup.acquisition
    rng = np.random.default_rng(args.seed)
    s_phantom, s_draw, s_noise = (int(v) for v in rng.integers(2**63, size=3))
    t = time.perf_counter()
    p0 = make_volume(phantom, grid, s_phantom)
    true = setup.draw(s_draw)
    sino = simulate_volume(p0, grid, true, acq, noise_std=setup.noise, band=setup.band,
                           response=setup.response, element_size=setup.element_width,
                           element_shape=setup.element_shape, seed=s_noise)
    scan = Scan(sinogram=sino, sensors=setup.array, acquisition=acq, p0=p0, grid=grid,
                true_sensors=true, setup_name=setup.name,
                setup_toml=setup.to_toml_string(), seed=args.seed,
                metadata={"phantom": phantom}, response=setup.response)
    save_scan(out, scan, format=args.format)
    err = np.linalg.norm(true.positions - setup.array.positions, axis=1)
    print(f"simulated {setup.name} (3-D): {sino.shape[0]} sensors x {sino.shape[1]} "
          f"samples, phantom {phantom} on {'x'.join(str(m) for m in grid.shape)} voxels of "
          f"{grid.dx * 1e3:.3g} mm, seed {args.seed}, position error rms "
          f"{np.sqrt(np.mean(err ** 2)) * 1e3:.3f} mm ({time.perf_counter() - t:.2f} s)")
    print(f"wrote {out}")
    return 0


#: Most posterior samples accepted.
MAX_SAMPLES = MAX_POSTERIOR_SAMPLES


def run_reconstruct(args: argparse.Namespace) -> int:
    from oatomo.io import save_images  # lazy: h5py
    from oatomo.pipeline import reconstruct  # lazy: Numba kernels
    from oatomo.pipeline.options import DEFAULT_METHOD, check_device, default_method  # lazy
    from oatomo.pipeline.policy import CALIBRATED_METHOD  # lazy: as above

    src = check_input_file(args.scan, "scan file")
    inputs = (src, args.model, args.calibration, args.preset)
    patato = None if args.export_patato is None else Path(args.export_patato)
    figures.check_dpi(args.dpi, "--dpi")
    if args.png not in (None, "none"):
        figures.figure_format(args.png, "--png")
    if _is_volume_file(src):
        return _reconstruct_volume(args, src, patato)
    # the default names say the method used; without --method it may be known only after
    # the position check (which can switch to CALIBRATED_METHOD): the names are then
    # decided and checked after the reconstruction, before anything is written
    method = args.method or (default_method(args.refine) if args.preset is None and (
        args.calibrate != "auto" or args.refine is True) else None)
    out, png = _outputs(src, args, method)
    _check_default_names(args, out, png)
    check_outputs([out, png, patato], force=args.force, inputs=inputs)
    if out is None and args.preset is None:  # ubp or mb-tv: stop now if both clash
        clashes = [_clash(args, *_outputs(src, args, m))
                   for m in (DEFAULT_METHOD, CALIBRATED_METHOD)]
        if all(clashes):
            _check_default_names(args, *_outputs(src, args, DEFAULT_METHOD))
    _check_ranges(args)
    check_object_options(args.object_speed_of_sound, args.object_radius, args.object_centre,
                         prefix="--")
    if not 0 <= args.samples <= MAX_SAMPLES:
        raise InputError(f"--samples must be in 0..{MAX_SAMPLES}, got {args.samples}")
    if args.n is not None and args.png != "none":  # the figure's canvas, before the work
        figures.check_figure_memory(1, 1, float(args.n) ** 2, 0.0, args.dpi,
                                    what=f"the figure of --n {args.n}")
    refine = "auto" if args.refine is None else args.refine
    device = check_device(args.device, "--device")
    keywords = _reconstruct_keywords(args)
    with bars(args) as callback:
        rec = reconstruct(src, args.method, refine=refine, samples=args.samples,
                          device=device, callback=callback, **keywords)
    prov = rec.provenance
    if out is None:
        out, png = _outputs(src, args, prov["method"])
        _check_default_names(args, out, png)
        check_outputs([out, png, patato], force=args.force, inputs=inputs)
    written: list[Path] = []
    try:  # figure and export first: one that fails leaves no image file behind
        if png is not None or patato is not None:
            shown, scan = _shown_frames(src, rec, args, patato is not None)
        if png is not None:
            figures.reconstruction_figure(
                png, rec, shown, scan.acquisition,
                title=f"{src.name} ({'self-calibrated, ' if prov['calibration'] else ''}"
                f"{prov['method']}{' + refined' if rec.refined else ''})", dpi=args.dpi)
            written.append(png)
        if patato is not None:
            from oatomo.io import save_patato  # lazy: h5py

            save_patato(patato, replace(scan, sinogram=shown, wavelengths=None if
                                        prov["wavelengths"] is None else
                                        np.asarray(prov["wavelengths"])), rec.linear,
                        rec.grid, algorithm=prov["method"],
                        units=rec.units.get(prov["method"], "Pa"))
            written.append(patato)
        save_images(out, dict(rec.images), rec.grid, attrs=rec.attrs())
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    prov, grid = rec.provenance, rec.grid
    print(f"reconstructed {src} ({prov['format']}, {prov['n_sensors']} sensors, "
          f"{prov['n_frames']} frame(s), c = {prov['speed_of_sound']:g} m/s) with "
          f"{prov['method']}{' (preset ' + prov['preset'] + ')' if prov['preset'] else ''} "
          f"in {prov['timings'][prov['method']]:.3f} s")
    if prov["speed_map"] is not None:
        sm = prov["speed_map"]
        print(f"two speeds of sound: object region of radius {sm['object_radius']} m at "
              f"({sm['object_centre'][0]:g}, {sm['object_centre'][1]:g}) m, "
              f"{sm['object_speed_of_sound']:g} m/s (straight rays)")
    if prov["deconvolution"] is not None:
        print(f"removed the detector response by Wiener deconvolution (lam = "
              f"{prov['deconvolution']['lam']:g})")
    elif prov["model_response"]:
        ran = prov.get("iterations_run")
        count = (f"{max(ran)} of at most {prov['iters']} iterations" if ran
                 else f"{prov['iters']} iterations")
        print(f"the detector response ({prov['detector_response'] or 'given'}) is in the "
              f"forward operator ({count}; --no-model-response leaves it out)")
    elif prov["detector_response"] is not None:
        print(f"note: the file has a detector response ({prov['detector_response']}); "
              f"--deconvolve removes it first" + (
                  "" if prov["iters"] is None else ", --model-response models it"))
    check, cal = prov["position_check"], prov["calibration"]
    if check is not None and "spread_m" in check:
        verdict = (check["reason"] or "they agree" if not check["needs_calibration"] else
                   f"they disagree, not calibrated: {check['why_not']}" if "why_not" in check
                   else "they disagree: self-calibrated")
        print(f"checked the sensor positions against the data in {check['time_s']:.2f} s: "
              f"spread {check['spread_m'] * 1e6:.0f} um, common shift "
              f"{check['offset_m'] * 1e6:.0f} um (noise "
              f"{check['noise_m'] * 1e6:.0f} um, threshold "
              f"{check['threshold_m'] * 1e6:.0f} um)"
              + ("" if check.get("speed_drop") is None else
                 f", another speed of sound lowers the held-out misfit by "
                 f"{100 * check['speed_drop']:.1f} %")
              + f", {verdict}")
    if cal is not None:
        print(f"calibrated in {cal['time_s']:.1f} s: speed of sound "
              f"{cal['nominal_speed_of_sound']:g} -> {cal['speed_of_sound']:.2f} m/s, "
              f"sensors moved {cal['rms_shift_m'] * 1e6:.0f} um rms; the image's frame is "
              f"uncertain by about {cal['frame_std']['translation_m'] * 1e6:.0f} um and "
              f"{math.degrees(cal['frame_std']['rotation_rad']):.2f} deg (a rigid motion of "
              f"the array, invisible in the data)")
        runs = cal.get("tv_iterations_run")
        if runs:
            print(f"TV started at the calibration's image: {max(runs)} of {prov['iters']} "
                  f"iterations" + (" (its objective stalled)" if all(cal["tv_stalled"])
                                   else ""))
        for note in cal.get("notes", []):
            print(f"note: {note}")
    elif prov["calibrated_file"]:
        print("using the calibrated sensor positions and speed of sound of the file")
    how = prov["refinement"]
    model_name = Path(how["model"]).name
    if how["applied"]:
        g = how["grid"]
        print(f"refined with {model_name} ({how['decoder']}, {how['input']} input on "
              f"{g['n']}x{g['n']}) in {prov['timings']['refine']:.2f} s")
    elif how.get("compatible") is False:
        print(f"skipping refinement: {how['reason']} ({model_name})")
    print(f"image {grid.n}x{grid.n} at {grid.dx * 1e3:.3g} mm; wrote {out}")
    if patato is not None:
        print(f"wrote {patato} (PATATO layout, recons/{prov['method']}/0, for unmixing)")
    if png is not None:
        print(f"wrote {png}")
    return 0


def _check_ranges(args: argparse.Namespace) -> None:
    """The ranges of reconstruct's numeric options (one-line errors naming the option)."""
    for key, name in (("iters", "--iters"), ("lam", "--lam"), ("fov", "--fov"),
                      ("deconvolve", "--deconvolve LAM")):
        if getattr(args, key) is not None:
            check_option(key, getattr(args, key), name)


def _reconstruct_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of :func:`oatomo.reconstruct` that ``oatomo reconstruct`` takes from
    its options for scans and volume scans alike."""
    return dict(
        n=args.n, fov=args.fov, model=args.model, setup=args.setup_name, lam=args.lam,
        iters=args.iters,
        calibrate={"auto": "auto", "yes": True, "no": False}[args.calibrate],
        speed_of_sound=args.speed_of_sound, calibration=args.calibration,
        object_speed_of_sound=args.object_speed_of_sound, object_radius=args.object_radius,
        object_centre=args.object_centre,
        band=None if args.band is None else _band(args.band), frames=args.frames,
        deconvolve=args.deconvolve, preset=args.preset,
        response=None if args.response is None else _response(args.response),
        wavelengths=args.wavelengths, element_width=args.element_width,
        element_shape=args.element_shape,
        model_response="auto" if args.model_response is None else args.model_response,
        medium=args.medium, attenuation=_attenuation(args))


def _is_volume_file(src: Path) -> bool:
    """Whether the scan file has 3-D sensor positions."""
    from oatomo.io import load_scan  # lazy: h5py

    return load_scan(src, metadata_only=True).is_3d


def _reconstruct_volume(args: argparse.Namespace, src: Path, patato: Path | None) -> int:
    """``oatomo reconstruct`` of a scan with 3-D sensor positions: volumes, a figure of
    maximum-intensity projections, and optionally the PATATO export."""
    from oatomo.io import load_scan, save_images, save_patato  # lazy: h5py
    from oatomo.pipeline import reconstruct, select  # lazy: Numba kernels
    from oatomo.pipeline.volume import (  # lazy: as above
        DEFAULT_VOLUME_METHOD,
        NOT_CALIBRATED,
        VOLUME_RECON_METHODS,
    )

    method = args.method or DEFAULT_VOLUME_METHOD
    if method not in VOLUME_RECON_METHODS:
        raise InputError(f"--method {method} has no volume counterpart; a scan with 3-D "
                         f"sensor positions takes {', '.join(VOLUME_RECON_METHODS)}", src)
    out, png = _outputs(src, args, method)
    _check_default_names(args, out, png)
    check_outputs([out, png, patato], force=args.force,
                  inputs=(src, args.model, args.calibration, args.preset))
    _check_ranges(args)
    keywords = _reconstruct_keywords(args)
    with bars(args) as callback:
        rec = reconstruct(src, method, refine=args.refine, callback=callback, **keywords)
    prov, grid = rec.provenance, rec.grid
    written: list[Path] = []
    try:  # figure and export first: one that fails leaves no image file behind
        if png is not None:
            figures.volume_figure(png, rec, title=f"{src.name} ({method}, volume)",
                                  dpi=args.dpi)
            written.append(png)
        if patato is not None:
            scan = load_scan(src)
            shown = select(scan, args.frames, args.wavelengths)[0]
            save_patato(patato, replace(scan, sinogram=shown, wavelengths=None if
                                        prov["wavelengths"] is None else
                                        np.asarray(prov["wavelengths"])), rec.linear,
                        grid, algorithm=method, units=rec.units[method])
            written.append(patato)
        save_images(out, dict(rec.images), grid, attrs=rec.attrs())
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    print(f"reconstructed {src} ({prov['format']}, {prov['n_sensors']} sensors in 3-D, "
          f"{prov['n_frames']} frame(s), c = {prov['speed_of_sound']:g} m/s) with {method} "
          f"in {prov['timings'][method]:.3f} s")
    if prov["deconvolution"] is not None:
        print(f"removed the detector response by Wiener deconvolution (lam = "
              f"{prov['deconvolution']['lam']:g})")
    print(f"note: {NOT_CALIBRATED}")
    print(f"not refined: {prov['refinement']['reason']}")
    print(f"volume {'x'.join(str(m) for m in grid.shape)} (z, y, x) at "
          f"{grid.dx * 1e3:.3g} mm; wrote {out}")
    if patato is not None:
        print(f"wrote {patato} (PATATO layout, recons/{method}/0, volumes)")
    if png is not None:
        print(f"wrote {png}")
    return 0


def _outputs(src: Path, args: argparse.Namespace, method: str | None
             ) -> tuple[Path | None, Path | None]:
    """The image file and the figure of ``oatomo reconstruct``: ``-o`` / ``--png`` when
    given, else named after the scan and the method (None: the method is not known yet;
    figure None also for ``--png none``)."""
    out = (Path(args.output) if args.output else
           None if method is None else src.with_name(f"{src.stem}_{method}.h5"))
    png = (None if args.png == "none" else Path(args.png) if args.png else
           None if out is None else out.with_suffix(".png"))
    return out, png


def _clash(args: argparse.Namespace, out: Path | None, png: Path | None) -> Path | None:
    """The first default-named output (not given by ``-o`` / ``--png``) that exists."""
    named = [out if not args.output else None, png if not args.png else None]
    return next((p for p in named if p is not None and (p.exists() or p.is_symlink())),
                None)


def _check_default_names(args: argparse.Namespace, out: Path | None,
                         png: Path | None) -> None:
    """Refuse, without ``--force``, a default-named output that exists, saying how to
    write it anyway or elsewhere."""
    path = None if args.force else _clash(args, out, png)
    if path is not None:
        raise InputError("output file exists (use --force to overwrite, or -o to write "
                         "another file)", path)


def _shown_frames(src: Path, rec: object, args: argparse.Namespace, whole: bool
                  ) -> tuple[np.ndarray, object]:
    """The reconstructed frames of the scan (for the figure and the PATATO export) and
    the scan; a scan reconstructed frame by frame gives only the figure's first rows,
    each read alone (``whole``: the export needs them all, refused then)."""
    from oatomo.io import load_scan, read_frame  # lazy: h5py
    from oatomo.pipeline import frame_selection, select  # lazy: Numba kernels

    if not rec.provenance.get("by_frame"):
        scan = load_scan(src)
        return select(scan, args.frames, args.wavelengths)[0], scan
    if whole:
        raise InputError("--export-patato needs the whole scan in memory and it is larger "
                         "than OATOMO_MAX_BYTES (raise the limit)", src)
    scan = load_scan(src, metadata_only=True)
    index, _ = frame_selection(scan, args.frames, args.wavelengths, rec.grid, src)
    rows = [read_frame(src, int(k)) for k in index.reshape(-1)[:figures.MAX_FRAME_ROWS]]
    return np.stack(rows), scan


def _print_bundled(items: dict[str, str], what: str, where: object) -> int:
    """One aligned ``name  description`` line per bundled item, then where they live."""
    width = max((len(n) for n in items), default=0)
    for name, description in items.items():
        print(f"{name:<{width}}  {description}")
    print(f"({len(items)} bundled {what} in {where})")
    return 0


def run_setups(args: argparse.Namespace) -> int:
    return _print_bundled(describe_bundled_setups(), "setups", SIMULATIONS_DIR)


def run_presets(args: argparse.Namespace) -> int:
    from oatomo.pipeline.presets import (  # lazy: the pipeline's Numba kernels
        PRESETS_DIR,
        describe_bundled_presets,
    )

    return _print_bundled(describe_bundled_presets(), "presets", PRESETS_DIR)


def run_info(args: argparse.Namespace) -> int:
    from oatomo.io import load_scan  # lazy: h5py

    if _image_info(Path(args.scan)):
        return 0
    scan = load_scan(args.scan, metadata_only=True)
    acq = scan.acquisition
    print(f"file:            {args.scan}")
    print(f"format:          {scan.source_format}")
    if scan.is_3d:
        pos = scan.sensors.positions
        r = np.linalg.norm(pos, axis=1)
        print(f"sensors:         {scan.sensors.n_sensors} in 3-D (distance "
              f"{r.min() * 1e3:.2f}..{r.max() * 1e3:.2f} mm from the origin, z "
              f"{pos[:, 2].min() * 1e3:.2f}..{pos[:, 2].max() * 1e3:.2f} mm): "
              f"reconstructed into volumes")
    else:
        r = np.hypot(*scan.sensors.positions.T)
        print(f"sensors:         {scan.sensors.n_sensors} (radius {r.min() * 1e3:.2f}.."
              f"{r.max() * 1e3:.2f} mm)")
    print(f"sampling rate:   {acq.fs / 1e6:g} MHz")
    print(f"speed of sound:  {acq.speed_of_sound:g} m/s")
    print(f"samples:         {acq.n_samples} (t0 = {acq.t0 * 1e6:g} us)")
    print(f"frames:          {scan.n_frames} {tuple(scan.sinogram.shape[:-2]) or ''}")
    if scan.wavelengths is not None:
        print(f"wavelengths:     {', '.join(f'{w * 1e9:g}' for w in scan.wavelengths)} nm")
    if scan.response is not None:
        r = scan.response
        print("detector:        " + (
            f"Gaussian band, {r.centre_frequency / 1e6:g} MHz, {r.bandwidth:.0%} bandwidth"
            if r.impulse_response is None else
            f"measured impulse response, {r.impulse_response.size} samples")
            + " (model-based methods model it; --deconvolve removes it)")
    print(f"medium:          {scan.medium}" + (
        "" if scan.attenuation is None else f", attenuation {scan.attenuation.alpha0:g} "
        f"dB/(MHz^{scan.attenuation.power:g} cm)"))
    if scan.setup_name:
        print(f"setup:           {scan.setup_name} (seed {scan.seed})")
    if scan.p0 is not None and scan.grid is not None:
        print(f"truth:           {'x'.join(str(m) for m in scan.grid.shape)}"
              f"{' (z, y, x)' if scan.is_3d else ''} at {scan.grid.dx * 1e3:g} mm")
    if scan.calibration:
        cal = scan.calibration
        shift = np.hypot(*(scan.sensors.positions - cal["nominal_positions"]).T)
        print(f"calibrated:      yes (nominal c {float(cal['nominal_speed_of_sound']):g} "
              f"m/s; sensors moved {np.sqrt(np.mean(shift ** 2)) * 1e6:.0f} um rms)")
    return 0


def _image_info(path: Path) -> bool:
    """Describe an image file written by :func:`oatomo.io.save_images` (images, grid,
    provenance); False, printing nothing, for any other file."""
    from oatomo.io import read_image_info  # lazy: h5py

    info = read_image_info(path)
    if info is None:
        return False
    grid, prov = info["grid"], info["provenance"]
    print(f"file:            {path}")
    print(f"format:          oatomo image file (version {prov['format_version'] or '?'}, "
          f"written by {prov['created_by'] or '?'})")
    for line in info["images"] or ["none"]:
        print(f"image:           {line}")
    volume = len(grid.shape) == 3
    print(f"grid:            {'x'.join(str(m) for m in grid.shape)} "
          f"{'voxels (z, y, x)' if volume else 'pixels'}, dx {grid.dx * 1e3:.4g} mm, fov "
          f"{grid.fov * 1e3:.4g} mm")
    wavelengths = prov["wavelengths"]
    if isinstance(wavelengths, list) and all(isinstance(w, (int, float)) for w in wavelengths):
        print(f"wavelengths:     {', '.join(f'{w * 1e9:g}' for w in wavelengths)} nm")
    if prov["method"] is None:
        print("provenance:      none")
        return True
    how = [f"preset {prov['preset']}" if prov["preset"] else "",
           "refined" if isinstance(prov["refinement"], dict)
           and prov["refinement"].get("applied") is True else "",
           "self-calibrated" if isinstance(prov["calibration"], dict) else ""]
    print(f"method:          {prov['method']}" + "".join(f", {h}" for h in how if h))
    details = [str(prov["format"] or ""),
               f"{prov['n_sensors']} sensors" if isinstance(prov["n_sensors"], int) else "",
               f"c = {prov['speed_of_sound']:g} m/s"
               if isinstance(prov["speed_of_sound"], (int, float)) else ""]
    details = [d for d in details if d]
    print(f"source:          {prov['source'] or '?'}"
          + (f" ({', '.join(details)})" if details else ""))
    return True

"""``oatomo simulate``, ``oatomo reconstruct`` and ``oatomo info``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..errors import InputError

RECON_METHODS = ("das", "ubp", "fbp", "mb-tikhonov", "mb-tv")
#: The refinement model shipped with oatomo (trained by `make model`, see README).
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "data" / "refiner.pt"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="simulate a scan of a setup (true positions drawn)",
                       description="Draw the true sensor positions of a setup, simulate the "
                       "scan with the setup's noise and band, write an oatomo scan file.")
    p.add_argument("--setup", required=True,
                   help="setup TOML file or bundled setup name (e.g. ring32_r22)")
    p.add_argument("--phantom", default="vessels",
                   help="vessels, vessel-tree, disk, disks, shepp-logan or a .png/.npy file")
    p.add_argument("--seed", type=int, default=0, help="seed of phantom, positions and noise")
    p.add_argument("-o", "--output", required=True, help="output scan file (.h5)")
    p.add_argument("--format", choices=("oatomo", "ipasc"), default="oatomo")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=run_simulate)

    r = sub.add_parser("reconstruct", help="reconstruct a scan file into an image file",
                       description="Reconstruct a scan (oatomo, IPASC or PATATO HDF5) and "
                       "write the image(s) and a PNG figure. The input is never modified.")
    r.add_argument("scan", help="scan file")
    r.add_argument("-o", "--output", help="output image file (default: <scan>_recon.h5)")
    r.add_argument("--method", choices=RECON_METHODS, default="ubp",
                   help="reconstruction method (default ubp)")
    r.add_argument("--n", type=int, help="image side in pixels (default: the scan's truth "
                   "grid, else 256)")
    r.add_argument("--fov", type=float, help="field of view in metres (default: the truth "
                   "grid's, else 1.3 x the array radius, at most 2 x)")
    r.add_argument("--png", help="figure path (default: <output>.png); 'none' to skip")
    r.add_argument("--lam", type=float, help="model-based regularisation weight")
    r.add_argument("--iters", type=int, default=50, help="model-based iterations (default 50)")
    r.add_argument("--force", action="store_true", help="overwrite an existing output")
    r.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                   help="refine with the learned model (default: when a model is available "
                   "and the scan's geometry matches its training geometry)")
    r.add_argument("--model", help=f"refinement model checkpoint (default: {DEFAULT_MODEL})")
    r.add_argument("--setup", dest="setup_name", help="the scan's known setup: use that "
                   "setup's variant decoder instead of the invariant one")
    r.add_argument("--samples", type=int, default=16,
                   help="posterior samples for the uncertainty map (default 16)")
    r.set_defaults(func=run_reconstruct)

    i = sub.add_parser("info", help="describe a scan file")
    i.add_argument("scan", help="scan file")
    i.set_defaults(func=run_info)


def run_simulate(args: argparse.Namespace) -> int:
    from .. import phantoms
    from .._atomic import check_output_path
    from ..forward import simulate
    from ..io import Scan, save_scan
    from ..setups import load_setup

    out = check_output_path(args.output, force=args.force)
    setup = load_setup(args.setup)
    rng = np.random.default_rng(args.seed)
    s_phantom, s_draw, s_noise = (int(v) for v in rng.integers(2**63, size=3))
    t = time.perf_counter()
    p0 = phantoms.make(args.phantom, setup.grid, s_phantom)
    true = setup.draw(s_draw)
    sino = simulate(p0, setup.grid, true, setup.acquisition, thickness=setup.thickness,
                    noise_std=setup.noise, band=setup.band, seed=s_noise)
    scan = Scan(sinogram=sino, sensors=setup.array, acquisition=setup.acquisition, p0=p0,
                grid=setup.grid, true_sensors=true, setup_name=setup.name,
                setup_toml=setup.to_toml_string(), seed=args.seed,
                metadata={"phantom": args.phantom})
    save_scan(out, scan, format=args.format)
    err = np.hypot(*(true.positions - setup.array.positions).T)
    print(f"simulated {setup.name}: {sino.shape[0]} sensors x {sino.shape[1]} samples, "
          f"phantom {args.phantom}, seed {args.seed}, position error rms "
          f"{np.sqrt(np.mean(err**2)) * 1e3:.3f} mm ({time.perf_counter() - t:.2f} s)")
    print(f"wrote {out}")
    return 0


def _default_grid(scan: object, n: int | None, fov: float | None) -> object:
    from ..geometry import Grid

    truth = getattr(scan, "grid", None)
    if n is None and fov is None and truth is not None:
        return truth
    radius = float(np.median(np.hypot(*scan.sensors.positions.T)))  # type: ignore[attr-defined]
    if fov is None:
        fov = truth.fov if truth is not None else min(1.3 * radius, 2 * radius)
    if n is None:
        n = truth.n if truth is not None else 256
    return Grid(n, fov)


def reconstruct_scan(scan: object, grid: object, method: str, *, lam: float | None = None,
                     iters: int = 50) -> np.ndarray:
    """Reconstruct every frame of a scan with one method (the CLI's worker)."""
    from ..recon import backproject

    sino = scan.sinogram  # type: ignore[attr-defined]
    sensors, acq = scan.sensors, scan.acquisition  # type: ignore[attr-defined]
    if method in ("das", "ubp", "fbp"):
        return backproject(sino, grid, sensors, acq, method=method)  # type: ignore[arg-type]
    try:
        from ..model_based import reconstruct_model_based
    except ImportError:
        raise InputError("model-based reconstruction is not available in this "
                         "installation") from None
    frames = sino.reshape((-1,) + sino.shape[-2:])
    out = [reconstruct_model_based(f, grid, sensors, acq, method=method[3:], lam=lam,
                                   n_iter=iters, progress=True)[0] for f in frames]
    return np.stack(out).reshape(sino.shape[:-2] + grid.shape)  # type: ignore[attr-defined]


def run_reconstruct(args: argparse.Namespace) -> int:
    from .._atomic import check_output_path
    from ..io import load_scan, save_images

    src = Path(args.scan)
    out = Path(args.output) if args.output else src.with_name(src.stem + "_recon.h5")
    out = check_output_path(out, force=args.force, inputs=(src,))
    png = None if args.png == "none" else Path(args.png) if args.png else out.with_suffix(
        ".png")
    if png is not None:
        check_output_path(png, force=True, inputs=(src,))
    scan = load_scan(src)
    grid = _default_grid(scan, args.n, args.fov)
    t = time.perf_counter()
    image = reconstruct_scan(scan, grid, args.method, lam=args.lam, iters=args.iters)
    dt = time.perf_counter() - t
    images = {args.method: image}
    if scan.p0 is not None and scan.grid == grid:
        images["truth"] = scan.p0
    refined = refine_scan(scan, args, images, grid)
    save_images(out, images, grid if refined is None else refined, attrs={
        "source": str(src), "method": args.method,
        "speed_of_sound": scan.acquisition.speed_of_sound})
    print(f"reconstructed {src} ({scan.source_format}, {scan.sensors.n_sensors} sensors, "
          f"{scan.n_frames} frame(s)) with {args.method} on {grid.n}x{grid.n} at "
          f"{grid.dx * 1e3:.3g} mm in {dt:.3f} s")
    print(f"wrote {out}")
    if png is not None:
        from ..figures import scan_figure

        def first(a: np.ndarray) -> np.ndarray:
            return a.reshape((-1,) + a.shape[-2:])[0]

        sino0 = first(scan.sinogram)
        extra = {k: first(images[k]) for k in ("refined", "uncertainty") if k in images}
        main_img = images["linear"] if "linear" in images else image
        scan_figure(png, sino0, scan.acquisition, first(main_img),
                    grid if refined is None else refined,
                    title=f"{src.name} ({args.method}{' + refined' if extra else ''})",
                    truth=images.get("truth"), extra=extra)
        print(f"wrote {png}")
    return 0


def refine_scan(scan: object, args: argparse.Namespace, images: dict[str, np.ndarray],
                grid: object) -> object | None:
    """Add ``linear``, ``refined`` and ``uncertainty`` images when refinement applies.

    Returns the model's grid when it refined, else None (and prints why it skipped).
    """
    if args.refine is False:
        return None
    model_path = Path(args.model) if args.model else DEFAULT_MODEL
    if not model_path.exists():
        if args.refine or args.model:
            raise InputError("refinement model not found", model_path)
        return None
    from ..recon import backproject
    from ..refine import load_refiner

    refiner = load_refiner(model_path)
    ok, why = refiner.compatible(scan.sensors, scan.acquisition)  # type: ignore[attr-defined]
    if not ok:
        print(f"skipping refinement: {why} ({model_path.name})")
        return None
    t = time.perf_counter()
    same = args.method == refiner.method and grid == refiner.grid
    if same:
        linear = images[args.method]
    else:  # the model needs its own linear input on its own grid
        linear = backproject(scan.sinogram, refiner.grid,  # type: ignore[attr-defined]
                             scan.sensors, scan.acquisition,  # type: ignore[attr-defined]
                             method=refiner.method)
        for k in list(images):
            if images[k].shape[-2:] != refiner.grid.shape:
                images.pop(k)
        images["linear"] = linear
    refined, std = refiner.refine(linear, env=args.setup_name, n_samples=args.samples)
    images["refined"] = refined
    if std is not None:
        images["uncertainty"] = std
    truth = getattr(scan, "p0", None)
    if truth is not None and scan.grid == refiner.grid:  # type: ignore[attr-defined]
        images["truth"] = truth
    path = "variant decoder of " + args.setup_name if args.setup_name else "invariant decoder"
    print(f"refined with {model_path.name} ({path}, {refiner.method} input on "
          f"{refiner.grid.n}x{refiner.grid.n}) in {time.perf_counter() - t:.2f} s")
    return refiner.grid


def run_info(args: argparse.Namespace) -> int:
    from ..io import load_scan

    scan = load_scan(args.scan)
    acq = scan.acquisition
    r = np.hypot(*scan.sensors.positions.T)
    print(f"file:            {args.scan}")
    print(f"format:          {scan.source_format}")
    print(f"sensors:         {scan.sensors.n_sensors} (radius {r.min() * 1e3:.2f}.."
          f"{r.max() * 1e3:.2f} mm)")
    print(f"sampling rate:   {acq.fs / 1e6:g} MHz")
    print(f"speed of sound:  {acq.speed_of_sound:g} m/s")
    print(f"samples:         {acq.n_samples} (t0 = {acq.t0 * 1e6:g} us)")
    print(f"frames:          {scan.n_frames} {tuple(scan.sinogram.shape[:-2]) or ''}")
    if scan.wavelengths is not None:
        print(f"wavelengths:     {', '.join(f'{w * 1e9:g}' for w in scan.wavelengths)} nm")
    if scan.setup_name:
        print(f"setup:           {scan.setup_name} (seed {scan.seed})")
    if scan.p0 is not None and scan.grid is not None:
        print(f"truth:           {scan.grid.n}x{scan.grid.n} at {scan.grid.dx * 1e3:g} mm")
    return 0

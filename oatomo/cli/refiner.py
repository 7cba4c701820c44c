"""``oatomo refiner ...``: the learned refiner (data, evaluation set, training, evaluation,
export). ``oatomo family ...`` is the same group under its deprecated name."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from oatomo._atomic import check_outputs
from oatomo._limits import MAX_COUNT, MAX_POSTERIOR_SAMPLES, check_option, check_seed
from oatomo.cli._progress import bars
from oatomo.errors import InputError
from oatomo.geometry import MAX_GRID_SIDE
from oatomo.learn.records import UNCERTAINTY_MODES
from oatomo.learn.registry import DEFAULT_ARCH, MODEL_KINDS
from oatomo.scanners import TRAIN_ENVIRONMENTS, TV_ENVIRONMENTS

#: The group's deprecated name, accepted for one release.
DEPRECATED_NAME = "family"


def _step(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A step of the group; under the deprecated name it says so on stderr, in the error's
    one line when the step fails."""
    def run(args: argparse.Namespace) -> int:
        if args.command != DEPRECATED_NAME:
            return fn(args)
        note = f"oatomo {DEPRECATED_NAME} is deprecated, use oatomo refiner"
        try:
            code = fn(args)
        except InputError as exc:
            raise InputError(f"{exc.problem} ({note})", exc.path) from None
        print(f"oatomo {DEPRECATED_NAME}: deprecated, use oatomo refiner", file=sys.stderr)
        return code
    return run


def register(sub: argparse._SubParsersAction) -> None:
    _add_group(sub, "refiner", "eval-set",
               help="train and evaluate the refiner for every 2-D ring or arc scanner")
    _add_group(sub, DEPRECATED_NAME, "evalset", help="deprecated name of 'oatomo refiner'")


def _add_group(sub: argparse._SubParsersAction, name: str, eval_set: str, *,
               help: str) -> None:  # noqa: A002 - argparse's own keyword
    """The group's parser under ``name``, its evaluation-set step named ``eval_set``."""
    p = sub.add_parser(
        name, help=help,
        description="The setup-invariant refiner over a family of scanners (rings and arcs "
        ">= 180 degrees, 32-512 sensors, radius 15-50 mm): generate training data, train "
        "(multi-decoder invariant VAE or a pooled baseline), build the held-out evaluation "
        "set, evaluate, export the shipped model. Every step resumes when interrupted.")
    fs = p.add_subparsers(dest="refiner_command", metavar="STEP")

    d = fs.add_parser("data", help="simulate the training data (resumable)")
    d.add_argument("-o", "--output", required=True, help="dataset directory")
    d.add_argument("--count", type=int, default=768, help="items per environment")
    d.add_argument("--size", type=int, default=96, help="image size at 0.1 mm")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--environments", nargs="+", metavar="GEOMETRY/PERTURBATION",
                   help="training environments (default: all 15 of the ring and arc "
                   "family, or the 10 of --family tv; one for a single-setup refiner)")
    d.add_argument("--family", choices=("rings", "tv"), default="rings",
                   help="rings: the linear refiner's data (UBP and DAS inputs, rings and "
                   "arcs >= 180 degrees); tv: the TV refiner's (the pipeline's mb-tv image "
                   "and UBP as inputs, rings, arcs >= 90 degrees and linear arrays, scans "
                   "simulated on a 2x finer grid, half with a detector response, targets "
                   "relative to the TV image's peak)")
    d.set_defaults(func=_step(run_data))

    t = fs.add_parser("train", help="train one model (resumable with --resume)")
    t.add_argument("--data", required=True, help="dataset directory from 'refiner data'")
    t.add_argument("--model", choices=tuple(MODEL_KINDS), default="multi-decoder",
                   help="; ".join(f"{k.name}: {k.description}" for k in MODEL_KINDS.values()))
    t.add_argument("-o", "--output", required=True, help="checkpoint (.pt)")
    t.add_argument("--epochs", type=int, default=32)
    t.add_argument("--batch-size", type=int, default=30)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--max-target", type=float, default=None,
                   help="leave out the training items whose target peak exceeds this "
                   "(datasets of --family tv: the truth over the TV image's peak)")
    t.add_argument("--inputs", default="ubp,das",
                   help="input channels, names of the dataset's inputs: ubp, das, ubp,das; "
                   "mb-tv for a TV refiner")
    t.add_argument("--width", type=int, default=DEFAULT_ARCH["width"],
                   help="channels at half resolution (twice that at quarter resolution)")
    t.add_argument("--depth", type=int, default=DEFAULT_ARCH["depth"],
                   help="residual blocks at quarter resolution (VAEs)")
    t.add_argument("--latent", type=int, default=DEFAULT_ARCH["latent"],
                   help="channels of the spatial latent (VAEs)")
    t.add_argument("--snapshot-every", type=int, default=96,
                   help="keep a copy of the checkpoint every N steps (0: none)")
    t.add_argument("--device", default="cpu", help="cpu (default), cuda, auto (CUDA when "
                   "present); runs under 'torchrun --nproc-per-node N' with "
                   "DistributedDataParallel")
    t.add_argument("--resume", action="store_true")
    t.add_argument("--force", action="store_true", help="overwrite an existing checkpoint")
    t.set_defaults(func=_step(run_train))

    e = fs.add_parser(eval_set, help="simulate the held-out evaluation scans with UBP, DAS, "
                      "TV (nominal) and TV (true positions)")
    e.add_argument("-o", "--output", required=True, help="evaluation directory")
    e.add_argument("--count", type=int, default=8, help="scans per geometry and perturbation")
    e.add_argument("--seed", type=int, default=2)
    e.add_argument("--tv-iter", type=int, default=50)
    e.set_defaults(func=_step(run_evalset))

    v = fs.add_parser("evaluate", help="score the classical answers and the models")
    v.add_argument("--model", nargs="+", required=True, help="LABEL=PATH or PATH")
    v.add_argument("--data", required=True,
                   help="evaluation directory from 'refiner eval-set'")
    v.add_argument("--out", required=True, help="output directory")
    v.add_argument("--samples", type=int, default=8, help="posterior samples")
    v.add_argument("--uncertainty-modes", nargs="*", default=(),
                   choices=UNCERTAINTY_MODES,
                   help="also score these uncertainty maps of multi-decoder models")
    v.add_argument("--device", default="cpu", help="PyTorch device of the models: cpu, "
                   "cuda, cuda:N, auto (CUDA when present) (default: cpu)")
    v.add_argument("--force", action="store_true", help="replace existing evaluation files")
    v.set_defaults(func=_step(run_evaluate))

    x = fs.add_parser("export", help="copy a checkpoint without its training state")
    x.add_argument("checkpoint")
    x.add_argument("-o", "--output", required=True)
    x.add_argument("--uncertainty", choices=UNCERTAINTY_MODES,
                   help="default uncertainty map of the exported model (posterior samples, "
                   "the variant decoders' disagreement, both, or the disagreement weighted "
                   "by the refined image's edges)")
    x.add_argument("--force", action="store_true")
    x.set_defaults(func=_step(run_export))


def check_counts(args: argparse.Namespace, *names: str) -> None:
    """Integer options that must be in ``1..MAX_COUNT`` when given."""
    for name in names:
        v = getattr(args, name.replace("-", "_"))
        if v is not None and not 1 <= v <= MAX_COUNT:
            raise InputError(f"--{name} must be in 1..{MAX_COUNT}, got {v}")


def evaluation_dir(out: str | Path, *, force: bool, inputs: tuple) -> Path:
    """Create the evaluation directory ``out`` (its parent must exist) and check that its
    ``evaluation.{md,json,png}`` may be written (``--force`` to replace them)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("--out names a file; it must be a directory", out)
    if not out.parent.is_dir():
        raise InputError(f"output directory {str(out.parent)!r} does not exist", out)
    out.mkdir(exist_ok=True)
    check_outputs([out / f"evaluation.{ext}" for ext in ("md", "json", "png")],
                  force=force, inputs=inputs)
    return out


def run_data(args: argparse.Namespace) -> int:
    from oatomo.datasets import generate_dataset  # lazy: Numba kernels
    check_counts(args, "count")
    check_seed(args.seed, "--seed")
    if not (16 <= args.size <= MAX_GRID_SIDE and args.size % 4 == 0):
        raise InputError(f"--size must be a multiple of 4 in 16..{MAX_GRID_SIDE} (the models "
                         f"halve the image twice), got {args.size}")

    tv = args.family == "tv"
    names = args.environments or (list(TV_ENVIRONMENTS) if tv
                                  else [e.name for e in TRAIN_ENVIRONMENTS])
    opts = ({"inputs": ("mb-tv", "ubp"), "oversample": 2, "responses": True,
             "target": "input"} if tv else {"inputs": ("ubp", "das")})
    with bars(args) as progress:
        out = generate_dataset(args.output, names, count=args.count, seed=args.seed,
                               size=args.size, chunk=64, callback=progress, **opts)
    print(f"wrote {out} ({len(names)} environments x {args.count} scans)")
    return 0


#: ``refiner train``'s numeric options, checked against the one range table
#: (:func:`oatomo._limits.check_option`) before anything is imported or read.
TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "width", "depth", "latent", "snapshot_every",
                 "max_target")


def run_train(args: argparse.Namespace) -> int:
    for key in TRAIN_OPTIONS:
        if getattr(args, key) is not None:
            check_option(key, getattr(args, key), f"--{key.replace('_', '-')}")
    check_seed(args.seed, "--seed")

    from oatomo.datasets import INPUTS, read_manifest  # lazy: Numba kernels
    from oatomo.learn.checkpoint import sidecar_path  # lazy: PyTorch
    from oatomo.learn.refiner import check_training_memory, train_refiner  # lazy: PyTorch
    from oatomo.pipeline.options import check_device  # lazy: Numba kernels

    out = Path(args.output)
    check_outputs([out, sidecar_path(out), out.with_suffix(".curve.jsonl")],
                  force=args.force or args.resume, inputs=(args.data,))
    check_device(args.device, "--device")
    wanted = [v.strip() for v in args.inputs.split(",") if v.strip()]
    if not wanted or any(w not in INPUTS for w in wanted):
        raise InputError(f"--inputs must name some of {', '.join(INPUTS)}, got "
                         f"{args.inputs!r}")
    have = list(read_manifest(args.data)["inputs"])
    if not wanted or any(w not in have for w in wanted):
        raise InputError(f"--inputs must name some of the dataset's inputs "
                         f"{', '.join(have)}, got {args.inputs!r}")
    channels = tuple(have.index(w) for w in wanted)
    arch = {"width": args.width, "depth": args.depth, "latent": args.latent}
    check_training_memory(args.data, args.model, len(channels), batch_size=args.batch_size,
                          model_args=arch, what=f"training with --batch-size "
                          f"{args.batch_size}, --width {args.width}, --depth {args.depth}, "
                          f"--latent {args.latent}")
    t = time.perf_counter()
    with bars(args) as progress:
        _, res = train_refiner(
            args.data, args.model, out, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, seed=args.seed, channels=channels, device=args.device,
            max_target=args.max_target,
            resume=args.resume,
            snapshot_every=args.snapshot_every, log=out.with_suffix(".curve.jsonl"),
            model_args=arch,
            callback=progress)
    print(f"trained {args.model} for {res.step} steps in {time.perf_counter() - t:.0f} s; "
          f"wrote {out} and the learning curve {out.with_suffix('.curve.jsonl')}")
    return 0


def run_evalset(args: argparse.Namespace) -> int:
    from oatomo.evaluation.refiners import make_eval_set  # lazy: Numba kernels

    check_counts(args, "count", "tv-iter")
    check_seed(args.seed, "--seed")
    with bars(args) as progress:
        out = make_eval_set(args.output, count=args.count, seed=args.seed,
                            tv_iter=args.tv_iter, callback=progress)
    print(f"wrote {out}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from oatomo.evaluation.refiners import evaluate_refiners, to_markdown  # lazy: Numba kernels
    from oatomo.learn.checkpoint import sidecar_path  # lazy: PyTorch
    from oatomo.pipeline.options import check_device  # lazy: Numba kernels

    def labelled(specs: list[str]) -> dict[str, str]:
        out = {}
        for spec in specs:
            label, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
            out[label or Path(path).stem] = path
        return out

    if not 1 <= args.samples <= MAX_POSTERIOR_SAMPLES:
        raise InputError(f"--samples must be in 1..{MAX_POSTERIOR_SAMPLES}, got {args.samples}")
    device = check_device(args.device, "--device")
    models = labelled(args.model)
    # a model's JSON sidecar is an input too (``evaluation.pt`` -> ``evaluation.json``)
    out = evaluation_dir(args.out, force=args.force, inputs=tuple(models.values()) + tuple(
        sidecar_path(p) for p in models.values()))
    with bars(args) as progress:
        result = evaluate_refiners(args.data, models, out=out, n_samples=args.samples,
                                   uncertainty_modes=args.uncertainty_modes,
                                   device=device, callback=progress)
    print(to_markdown(result))
    print(f"wrote {out}/evaluation.md, evaluation.json, evaluation.png")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from oatomo.learn.checkpoint import sidecar_path  # lazy: PyTorch
    from oatomo.learn.refiner import export_refiner  # lazy: PyTorch

    out = Path(args.output)
    check_outputs([out, sidecar_path(out)], force=args.force, inputs=(args.checkpoint,))
    export_refiner(args.checkpoint, out, uncertainty=args.uncertainty)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0

"""``oatomo dataset``: generate multi-environment training data; ``oatomo dataset merge``."""

from __future__ import annotations

import argparse
import time

from oatomo._limits import MAX_COUNT
from oatomo.cli._progress import bars
from oatomo.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dataset",
        help="simulate + reconstruct a multi-setup dataset (or: dataset merge SHARDS -o OUT)",
        description="Generate a dataset from an experiment TOML: for each item draw the "
        "setup's true sensor positions, simulate with noise, reconstruct with the nominal "
        "positions. Interrupted runs resume from the finished chunks in <out>.partial/. "
        "'oatomo dataset merge A.h5 B.h5 -o all.h5' merges shards.",
    )
    p.add_argument("merge", nargs="*", metavar="merge SHARD",
                   help="'merge' followed by the shard files to merge")
    p.add_argument("--config", help="experiment TOML (see simulations/exp_*.toml)")
    p.add_argument("-o", "--output", required=True, help="output HDF5 file")
    p.add_argument("--seed", type=int, default=0, help="experiment seed (default 0)")
    p.add_argument("--shard", default="1/1", help="K/N: generate the K-th of N shards")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=run)


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like K/N, got {text!r}") from None
    if not 1 <= k <= n <= MAX_COUNT:
        raise InputError(f"--shard must satisfy 1 <= K <= N <= {MAX_COUNT}, got {text!r}")
    return k, n


def run(args: argparse.Namespace) -> int:
    from oatomo._atomic import check_outputs
    from oatomo.datasets.legacy import generate_dataset, load_experiment, merge_datasets

    if args.merge:
        if args.merge[0] != "merge" or len(args.merge) < 2:
            raise InputError("usage: oatomo dataset merge SHARD.h5 [SHARD.h5 ...] -o OUT.h5")
        out = merge_datasets(args.merge[1:], args.output, force=args.force)
        print(f"merged {len(args.merge) - 1} shards into {out}")
        return 0
    if not args.config:
        raise InputError("--config EXPERIMENT.toml is required")
    # the output itself is checked (and --force honoured) by generate_dataset; its work
    # directory <output>.partial is its own
    check_outputs([args.output], force=True, inputs=(args.config,))
    exp = load_experiment(args.config)
    shard = _parse_shard(args.shard)
    t = time.perf_counter()
    print(f"experiment {exp.name}: {exp.n_items} items over {len(exp.environments)} setups "
          f"({', '.join(exp.setup_names)}), shard {shard[0]}/{shard[1]}")
    with bars(args) as callback:
        out = generate_dataset(exp, args.output, seed=args.seed, shard=shard,
                               callback=callback, force=args.force)
    print(f"wrote {out} in {time.perf_counter() - t:.1f} s")
    return 0

#!/usr/bin/env bash
# Colored MNIST validation of the invariant VAEs (see README.md beside this file).
#   examples/cmnist/run.sh                 3 seeds, bundled 5,000-digit subset, out/cmnist
#   examples/cmnist/run.sh --quick         smoke test (well under a minute)
#   MNIST_DIR=~/mnist examples/cmnist/run.sh   full MNIST from IDX files
# Extra arguments are passed to `oatomo cmnist`.
set -euo pipefail
cd "$(dirname "$0")/../.."
OATOMO="${OATOMO:-.venv/bin/oatomo}"
[ -x "$OATOMO" ] || OATOMO=oatomo
args=(--seeds "${SEEDS:-3}" --out "${OUT:-out/cmnist}")
[ -n "${MNIST_DIR:-}" ] && args+=(--mnist-dir "$MNIST_DIR")
exec "$OATOMO" cmnist "${args[@]}" "$@"

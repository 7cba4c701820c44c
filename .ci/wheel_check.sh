#!/usr/bin/env bash
# The package as a user gets it: build the wheel, install it into a fresh virtual
# environment (with constraints.txt) and run the README's commands and Python snippet
# from a directory outside the repository.
#   .ci/wheel_check.sh            (PYTHON=python3 by default)
#   WITHOUT_TORCH=1 PYTHON=python3.10 .ci/wheel_check.sh
#       every dependency but PyTorch (whose CPU build for that Python is not on this disk:
#       PyPI would give a CUDA build of several GB), and only the commands that run
#       without it (not `oatomo cmnist`)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WITHOUT_TORCH="${WITHOUT_TORCH:-0}"
# a RAM disk when there is one: a venv with PyTorch is ~25,000 files to write and delete
SCRATCH="${WHEEL_CHECK_DIR:-$( [ -d /dev/shm ] && [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")}"
WORK="$(mktemp -d "$SCRATCH/oatomo-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)
phase() { echo "wheel check: $1 ($(( $(date +%s) - start )) s)"; }

phase "building the wheel"
"$PYTHON" -m pip wheel -q --no-deps -w "$WORK/dist" "$ROOT"
# build leftovers must not land in the repository's package directory
rm -rf "$ROOT/build" "$ROOT"/*.egg-info
"$PYTHON" -m venv "$WORK/venv"
BIN="$WORK/venv/bin"
phase "installing $(basename "$WORK"/dist/*.whl) into a fresh venv"
if [ "$WITHOUT_TORCH" = 1 ]; then
    "$BIN/python" -m pip install -q --no-deps "$WORK"/dist/*.whl
    "$BIN/python" -c "
import importlib.metadata as m
print('\n'.join(r for r in m.requires('oatomo') if 'extra ==' not in r
                and not r.startswith('torch')))" > "$WORK/requirements.txt"
    "$BIN/python" -m pip install -q -c "$ROOT/constraints.txt" -r "$WORK/requirements.txt"
else
    "$BIN/python" -m pip install -q -c "$ROOT/constraints.txt" "$WORK"/dist/*.whl
fi

phase "running from $WORK/run"
mkdir "$WORK/run" && cd "$WORK/run"
set -x
setups=$("$BIN/oatomo" setups)
grep -q ring32_radial <<<"$setups"
"$BIN/oatomo" simulate --setup ring32_radial --phantom vessels --seed 1 -o scan.h5
"$BIN/oatomo" reconstruct scan.h5 --refine -o image.h5
"$BIN/python" -c "
from oatomo.io import load_images
images, grid = load_images('image.h5')
assert {'mb-tv', 'refined', 'uncertainty', 'truth'} <= set(images), sorted(images)
"
if [ "$WITHOUT_TORCH" != 1 ]; then
    "$BIN/oatomo" cmnist --quick --seeds 1 --out cmnist -q
fi
# the README's Python snippet, extracted from the README between its markers
sed -n '/<!-- snippet:python -->/,/<!-- \/snippet -->/p' "$ROOT/README.md" | sed '1,2d;$d' \
    | sed '$d' > snippet.py
test -s snippet.py
"$BIN/python" snippet.py
set +x
phase "passed ($("$BIN/python" --version))"

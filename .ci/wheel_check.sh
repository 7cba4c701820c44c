#!/usr/bin/env bash
# The package as a user gets it: build the wheel, install it into a fresh virtual
# environment (with constraints.txt) and run the README's commands and Python snippet
# from a directory outside the repository.
#   .ci/wheel_check.sh            (PYTHON=python3 by default)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/oatomo-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

echo "wheel check: building the wheel"
"$PYTHON" -m pip wheel -q --no-deps -w "$WORK/dist" "$ROOT"
# build leftovers must not land in the repository's package directory
rm -rf "$ROOT/build" "$ROOT"/*.egg-info
"$PYTHON" -m venv "$WORK/venv"
BIN="$WORK/venv/bin"
echo "wheel check: installing $(basename "$WORK"/dist/*.whl) into a fresh venv"
"$BIN/python" -m pip install -q -c "$ROOT/constraints.txt" "$WORK"/dist/*.whl

mkdir "$WORK/run" && cd "$WORK/run"
set -x
"$BIN/oatomo" setups | grep -q ring32_radial
"$BIN/oatomo" simulate --setup ring32_radial --phantom vessels --seed 1 -o scan.h5
"$BIN/oatomo" reconstruct scan.h5 --refine -o image.h5
"$BIN/python" -c "
from oatomo.io import load_images
images, grid = load_images('image.h5')
assert {'ubp', 'refined', 'uncertainty', 'truth'} <= set(images), sorted(images)
"
"$BIN/oatomo" cmnist --quick --seeds 1 --out cmnist -q
# the README's Python snippet, extracted from the README between its markers
sed -n '/<!-- snippet:python -->/,/<!-- \/snippet -->/p' "$ROOT/README.md" | sed '1,2d;$d' \
    | sed '$d' > snippet.py
test -s snippet.py
"$BIN/python" snippet.py
set +x
echo "wheel check: passed in $(( $(date +%s) - start )) s"

#!/usr/bin/env bash
# When do the invariant models remove the colour bias? A sweep of the
# training environments and of γ on full MNIST, 3 seeds each, every point resumable.
#   examples/cmnist/sweep.sh               all points, one after the other
#   EPOCHS=10 examples/cmnist/sweep.sh     shorter trainings (say so when reporting)
# Each point is one `oatomo cmnist --full` run in out/sweep/e<E1>_<E2>_g<γ>; rerunning the
# script continues where it stopped (--resume). About 4 hours per point on one core at
# 40 epochs. Afterwards: `oatomo cmnist --stats-only --out out/sweep/<point>` per point.
set -euo pipefail
cd "$(dirname "$0")/../.."
OATOMO="${OATOMO:-.venv/bin/oatomo}"
[ -x "$OATOMO" ] || OATOMO=oatomo
extra=()
[ -n "${EPOCHS:-}" ] && extra+=(--epochs "$EPOCHS")
for envs in "0.2 0.1" "0.05 0.4"; do
  for gamma in 1 10 0.1; do
    read -r e1 e2 <<< "$envs"
    out="out/sweep/e${e1}_${e2}_g${gamma}"
    # the published point is the main full-MNIST run (README.md): reuse its checkpoints
    [ "$e1 $e2 $gamma" = "0.2 0.1 1" ] && [ -z "${EPOCHS:-}" ] && out=out/cmnist_full
    mkdir -p "$out"
    # the β-VAE does not depend on γ: a point with γ != 1 reuses the γ = 1 point's β-VAEs
    base=()
    if [ "$gamma" != 1 ]; then
      b="out/sweep/e${e1}_${e2}_g1"
      [ "$e1 $e2" = "0.2 0.1" ] && [ -z "${EPOCHS:-}" ] && b=out/cmnist_full
      [ -f "$b/checkpoints/settings.json" ] && base=(--baseline-from "$b")
    fi
    "$OATOMO" cmnist --full --seeds "${SEEDS:-3}" --threads "${THREADS:-1}" --envs "$e1" "$e2" \
      --gamma "$gamma" --out "$out" --resume --no-progress "${base[@]}" "${extra[@]}" "$@"
  done
done

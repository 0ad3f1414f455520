#!/usr/bin/env bash
# Does the qtDNN's gradient quality matter in RL? (issue 15, item 1)
#
# hDQNN-TD3 at 10 qubits x 10 layers on Hopper-v4, one run per (gradient, seed):
#   qtdnn          the layer's default surrogate (B circuit runs per actor update)
#   qtdnn-sobolev  --qtdnn-preset sobolev (normalised inputs, 64 fit steps, 12 directional
#                  derivatives per update: B + 24 runs)
#   adjoint        the exact gradient (simulator only)
# then `hdqnn compare` (returns with 95% CIs, SPS, circuit executions, mean gradient cosine against
# the exact adjoint, logged every FIDELITY_FREQ updates).
# parameter-shift is left out at 10 x 10: 2 x 110 angle slots x B runs per update is ~56,000
# circuits per actor update, days at any useful budget on this machine.
#
# Usage: bash bench/qtdnn_rl.sh        Environment: STEPS (8000), LEARNING_STARTS (2000),
#   SEEDS ("1 2 3"), JOBS (2 runs at a time, one torch thread each), OUT (bench/out/qtdnn_rl),
#   PYTHON (python), FIDELITY_FREQ (50). Re-running resumes unfinished runs and skips finished ones.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-8000}
LEARNING_STARTS=${LEARNING_STARTS:-2000}
SEEDS=${SEEDS:-"1 2 3"}
JOBS=${JOBS:-2}
OUT=${OUT:-bench/out/qtdnn_rl}
PYTHON=${PYTHON:-python}
FIDELITY_FREQ=${FIDELITY_FREQ:-50}

run() {  # run NAME SEED FLAGS...: one training, resumed if its folder holds a checkpoint
  local name=$1 seed=$2; shift 2
  local dir="$OUT/$name/seed$seed"
  if [ -f "$dir/summary.json" ]; then return; fi
  if [ -f "$dir/checkpoint.pt" ]; then
    OMP_NUM_THREADS=1 "$PYTHON" -m hdqnn train --resume "$dir" --no-progress
  else
    OMP_NUM_THREADS=1 "$PYTHON" -m hdqnn train --algo hdqnn-td3 --env Hopper-v4 --qubits 10 --layers 10 \
      --steps "$STEPS" --learning-starts "$LEARNING_STARTS" --seed "$seed" --tag "$name" \
      --fidelity-freq "$FIDELITY_FREQ" --no-progress --no-tensorboard --out "$dir" "$@"
  fi > "$OUT/$name-seed$seed.log" 2>&1
}

mkdir -p "$OUT"
jobs_list=()
for seed in $SEEDS; do
  jobs_list+=("qtdnn $seed" "qtdnn-sobolev $seed --qtdnn-preset sobolev" "adjoint $seed --grad adjoint")
done
for job in "${jobs_list[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  # shellcheck disable=SC2086
  run $job &
done
wait
"$PYTHON" -m hdqnn compare "$OUT"/*/seed* --timings --markdown --out "$OUT"

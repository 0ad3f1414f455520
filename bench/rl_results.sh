#!/usr/bin/env bash
# RL results (issue 4, item 6 and the step-time benchmark), sized for a 2-core machine in ~50 minutes.
#
# 1. Step time: short runs, one at a time (one torch thread each, so timings are not shared),
#    of TD3 and hDQNN-TD3 at 10 x 10 with the QuantumLayer's qtDNN defaults (alternating,
#    SPS_REPEATS times), at 4 qubits x 2 layers (the quick default), and at 10 x 10 with the
#    paper's qtDNN preset; then
#    `hdqnn compare --timings` breaks each env step down (env, critic update, PQC forward,
#    qtDNN fit, actor backward).
# 2. Learning: td3, hdqnn-td3, fc-td3 and rbg-td3 on Pendulum-v1 (10k steps) and Hopper-v4
#    (15k steps, learning starts at 5k), seeds 1-3, JOBS runs in parallel with one thread each;
#    then `hdqnn compare` (table with 95% bootstrap CIs, IQM, SPS, wall time, circuit executions,
#    qtDNN gradient cosine) and the curve plot bench/rl_results.png.
#
# Budget, measured here: phase 1 takes 3.8 min on a quiet machine (learning-phase SPS: TD3 117,
# hDQNN-TD3 4x2 97, 10x10 64, 10x10 with the paper's qtDNN 3.0). Phase 2 is ~3,500 CPU-seconds on a quiet machine
# (a 10k-step Pendulum run: ~110 s for TD3/FC/RBG, ~170 s for hDQNN-TD3; a 15k-step Hopper run
# ~150 s and ~220 s), so ~30-40 min with 2 jobs; up to ~60 min when other work shares the cores
# (under load 3-7 the same runs took 130 s and 400 s). Re-running resumes unfinished runs from
# their checkpoints and skips finished ones.
#
# Usage: bash bench/rl_results.sh [--quick]      (--quick: a 2-minute smoke test of the script)
# Environment: JOBS (default 2), SEEDS ("1 2 3"), OUT (bench/out/rl), PYTHON (python),
#              PHASES ("sps learn": which phases to run), SPS_REPEATS (3: alternating TD3 /
#              hDQNN-TD3 10x10 step-time runs).
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${JOBS:-2}
SEEDS=${SEEDS:-"1 2 3"}
OUT=${OUT:-bench/out/rl}
PYTHON=${PYTHON:-python}
PHASES=${PHASES:-"sps learn"}
PLOT=bench/rl_results.png
PENDULUM_STEPS=10000
PENDULUM_STARTS=1000
HOPPER_STEPS=15000
HOPPER_STARTS=5000
SPS_STEPS=2000
SPS_PAPER_STEPS=400
SPS_STARTS=256
SPS_REPEATS=${SPS_REPEATS:-3}
if [[ "${1:-}" == "--quick" ]]; then
  SEEDS="1"; OUT=bench/out/rl_quick; PLOT=$OUT/rl_results.png; SPS_REPEATS=1
  PENDULUM_STEPS=300; PENDULUM_STARTS=100; HOPPER_STEPS=300; HOPPER_STARTS=100; SPS_STEPS=300; SPS_PAPER_STEPS=270
fi
HDQNN="$PYTHON -m hdqnn"
COMMON="--threads 1 --no-progress --eval-episodes 5"
# the surrogate the recorded results used (the layer's defaults; the auto preset is now sobolev-fast)
QTDNN="--qtdnn-preset default"
mkdir -p "$OUT"

. bench/run_cmd.sh  # run_cmd: train or resume one run

if [[ " $PHASES " == *" sps "* ]]; then
echo "== phase 1: step time (one run at a time)" >&2
SPS_FLAGS="--env Pendulum-v1 --seed 1 --learning-starts $SPS_STARTS --eval-freq 100000 --eval-episodes 1"
{
  # TD3 and the 10 x 10 target config alternate, SPS_REPEATS times: this machine's speed drifts
  # by 10-20% between minutes, so one run of each is not a fair ratio; the table shows means
  for r in $(seq 1 "$SPS_REPEATS"); do
    run_cmd "$OUT/sps/td3/r$r" --algo td3 --steps $SPS_STEPS $SPS_FLAGS --tag td3
    run_cmd "$OUT/sps/hdqnn-q10l10/r$r" --algo hdqnn-td3 --qubits 10 --layers 10 --steps $SPS_STEPS $SPS_FLAGS \
      $QTDNN --tag hdqnn-td3-10x10
  done
  run_cmd "$OUT/sps/hdqnn-q4l2" --algo hdqnn-td3 --qubits 4 --layers 2 --steps $SPS_STEPS $SPS_FLAGS $QTDNN \
    --tag hdqnn-td3-4x2
  run_cmd "$OUT/sps/hdqnn-q10l10-paper" --algo hdqnn-td3 --qubits 10 --layers 10 --qtdnn-preset paper \
    --steps $SPS_PAPER_STEPS $SPS_FLAGS --tag hdqnn-td3-10x10-paper-qtdnn
} | while read -r cmd; do echo "  $cmd" >&2; bash -c "$cmd" < /dev/null; done
$HDQNN compare "$OUT/sps" --timings --markdown --plot "$OUT/sps/compare.png" --json "$OUT/sps.json" \
  | tee "$OUT/sps.md"
# the issue's target: hDQNN-TD3 10 x 10 at >= 0.5x TD3's learning-phase steps per second
$PYTHON - "$OUT/sps.json" <<'PY'
import json, sys
rows = {r["label"]: r for r in json.load(open(sys.argv[1]))}
q, c = rows["hdqnn-td3-10x10"]["sps_learning"], rows["td3"]["sps_learning"]
print(f"learning SPS, mean of the alternating runs: hDQNN-TD3 10x10 {q:.1f} / TD3 {c:.1f} = {q / c:.2f}x (target 0.5x)")
PY
fi
[[ " $PHASES " == *" learn "* ]] || exit 0

echo "== phase 2: learning, $JOBS runs at a time" >&2
{
  # the longest runs first, so the two workers finish together
  for env in Hopper-v4 Pendulum-v1; do
    if [[ $env == Hopper-v4 ]]; then flags="--steps $HOPPER_STEPS --learning-starts $HOPPER_STARTS --eval-freq 2500"
    else flags="--steps $PENDULUM_STEPS --learning-starts $PENDULUM_STARTS --eval-freq 1000"; fi
    for algo in hdqnn-td3 td3 fc-td3 rbg-td3; do
      for seed in $SEEDS; do
        run_cmd "$OUT/$env/$algo/seed$seed" --algo $algo --env $env --seed $seed $flags $QTDNN
      done
    done
  done
} > "$OUT/jobs.txt"
sed 's/^/  /' "$OUT/jobs.txt" >&2
start=$(date +%s)
tr '\n' '\0' < "$OUT/jobs.txt" | xargs -0 -r -P "$JOBS" -I{} bash -c '{} || echo "FAILED: {}" >&2'
echo "phase 2 took $(( $(date +%s) - start )) s" >&2

$HDQNN compare "$OUT/Pendulum-v1" "$OUT/Hopper-v4" --timings --markdown --plot "$PLOT" \
  --json "$OUT/compare.json" | tee "$OUT/results.md"
echo "tables: $OUT/sps.md $OUT/results.md; curves: $PLOT; per-run curves: $OUT/*/*/seed*/learning_curve.png" >&2

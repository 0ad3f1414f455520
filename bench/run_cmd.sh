# Sourced by the RL benchmark scripts (rl_results.sh, rl_paper.sh, noise_rl.sh, qtdnn_rl.sh).
# run_cmd DIR FLAGS...: prints the command that trains one run into DIR (FLAGS after $COMMON), or
# resumes it from its checkpoint; nothing once it has finished its --steps. A finished run whose
# budget is smaller than FLAGS' --steps is extended (`hdqnn train --resume DIR --steps N`), which
# gives the run a from-scratch training at N steps would (tests/rl/test_train.py); except where
# the learning rate anneals over the budget (PPO), which an extension would change: those are
# named on stderr and left alone. $HDQNN is the hdqnn command, $PYTHON its Python, $COMMON the
# flags of every new run, $PREFIX (optional) what goes before the command (e.g. env vars).
run_cmd() {
  local dir=$1; shift
  if [[ -f $dir/summary.json ]] && [[ ! $dir/checkpoint.pt -nt $dir/summary.json ]]; then
    _extend_cmd "$dir" "$(_steps_flag "$@")"
  elif [[ -f $dir/checkpoint.pt ]]; then
    echo "${PREFIX:-}$HDQNN train --resume $dir --no-progress >> $dir.log 2>&1"
  else
    mkdir -p "$(dirname "$dir")"
    echo "${PREFIX:-}$HDQNN train $COMMON $* --out $dir > $dir.log 2>&1"
  fi
}

# the value of --steps in the flags (empty without one)
_steps_flag() {
  local previous=""
  for flag in "$@"; do
    [[ $previous == --steps ]] && echo "$flag"
    previous=$flag
  done
}

# the command extending the finished run DIR to STEPS, if it has fewer and can be extended
_extend_cmd() {
  local dir=$1 steps=$2
  [[ -n $steps ]] || return 0
  case $(_extension "$dir" "$steps") in
    extend) echo "${PREFIX:-}$HDQNN train --resume $dir --steps $steps --no-progress >> $dir.log 2>&1" ;;
    annealed) echo "run_cmd: $dir finished at a smaller budget and anneals its learning rate over it;" \
                   "remove it to train it again at $steps steps" >&2 ;;
  esac
}

# copy_finished_runs FROM: copies FROM's finished runs (FROM/NAME/seedS) into $OUT where $OUT has
# none of its own, except those whose learning rate anneals over their budget (PPO): run_cmd then
# extends the copies to their scripts' --steps, and trains the others from scratch.
copy_finished_runs() {
  local from=$1 run to
  for run in "$from"/*/seed*/; do
    run=${run%/}
    to=$OUT/${run#"$from"/}
    [[ -f $run/summary.json && ! -e $to && $(_extension "$run" "") != annealed ]] || continue
    mkdir -p "$(dirname "$to")"
    cp -rp "$run" "$to"  # -p: the copied checkpoint must not look newer than its summary
    [[ -f $run.log ]] && cp -p "$run.log" "$to.log"
    rm -f "$to"/generalization.*
  done
}

# _extension DIR STEPS: "finished" (DIR holds STEPS or more; STEPS empty: any budget is more),
# "annealed" (its learning rate anneals over its budget, so an extension would not give what a
# longer run gives) or "extend"
_extension() {
  "$PYTHON" - "$1" "$2" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
args = json.loads((run / "run.json").read_text())
done = json.loads((run / "summary.json").read_text())["total_timesteps"]
if sys.argv[2] and done >= int(sys.argv[2]):
    print("finished")
elif "ppo" in args["algo"] and args.get("anneal_lr", False):
    print("annealed")
else:
    print("extend")
PY
}

# Sourced by the RL benchmark scripts (rl_results.sh, rl_paper.sh, noise_rl.sh).
# run_cmd DIR FLAGS...: prints the command that trains one run into DIR (FLAGS after $COMMON), or
# resumes it from its checkpoint; nothing once it has finished. $HDQNN is the hdqnn command,
# $COMMON the flags of every new run, $PREFIX (optional) what goes before the command (e.g. env vars).
run_cmd() {
  local dir=$1; shift
  if [[ -f $dir/summary.json ]] && [[ ! $dir/checkpoint.pt -nt $dir/summary.json ]]; then return; fi
  if [[ -f $dir/checkpoint.pt ]]; then
    echo "${PREFIX:-}$HDQNN train --resume $dir --no-progress > $dir.log 2>&1"
  else
    mkdir -p "$(dirname "$dir")"
    echo "${PREFIX:-}$HDQNN train $COMMON $* --out $dir > $dir.log 2>&1"
  fi
}

# Shared by scripts/setup.sh and scripts/test.sh (sourced): timestamped stage lines, a heartbeat
# for long silent steps, and the build tools that `pip install --no-build-isolation` needs.

STEPS_START=${STEPS_START:-$SECONDS}

# say MESSAGE: one line with the seconds since the script started.
say() { printf '[%s %3ds] %s\n' "${STEPS_NAME:-hdqnn}" $((SECONDS - STEPS_START)) "$*"; }

# with_heartbeat WHAT COMMAND...: runs COMMAND and, while it runs, says every 20 s
# (STEPS_HEARTBEAT_S) that WHAT is still going, so a step that prints nothing (pip unpacking
# torch, a compiler) is never mistaken for a hang; returns COMMAND's status.
with_heartbeat() {
  local what=$1 ticker status=0
  shift
  (while sleep "${STEPS_HEARTBEAT_S:-20}"; do say "... still $what"; done) &
  ticker=$!
  "$@" || status=$?
  kill "$ticker" 2>/dev/null
  wait "$ticker" 2>/dev/null || true
  return "$status"
}

# The [build-system] requires of pyproject.toml (tests/test_setup_scripts.py keeps them equal),
# installed into the venv once so that pip builds without an isolated environment: no re-download
# of cmake and pybind11 per install, and a stable pybind11 path keeps the CMake build incremental.
# A cmake already on PATH (>= 3.18) is used instead of the pip package.
BUILD_REQUIRES=("setuptools>=64" "wheel" "pybind11>=2.12")
CMAKE_REQUIRES="cmake>=3.18"

install_build_tools() {
  local tools=("${BUILD_REQUIRES[@]}")
  if ! python - <<'EOF'
import re, shutil, subprocess, sys
cmake = shutil.which("cmake")
version = re.search(r"(\d+)\.(\d+)", subprocess.run([cmake, "--version"], capture_output=True, text=True).stdout) if cmake else None
sys.exit(0 if version and tuple(map(int, version.groups())) >= (3, 18) else 1)
EOF
  then
    tools+=("$CMAKE_REQUIRES")
  fi
  python -m pip install -q --no-compile "${tools[@]}"
}

# pip_logged LOG PIP-INSTALL-ARGS...: `pip install -v` with everything in LOG; shown here are hdqnn's
# CMake summary and compile progress lines (a long compile stays visible) and, on failure, the
# end of LOG.
pip_logged() (  # a subshell: pipefail (pip's failure is the pipeline's) stays local
  set -o pipefail
  log=$1
  shift
  mkdir -p "$(dirname "$log")"
  if ! python -m pip install -v "$@" 2>&1 | tee "$log" |
      { grep --line-buffered -E '^ *\[ *[0-9]+%\]|^ *(-- )?hdqnn:|CMake Error|error:' || true; } |
      while read -r line; do say "c++ ${line#-- }"; done; then
    say "pip install failed; the end of $log:"
    tail -n 40 "$log" >&2
    exit 1
  fi
)

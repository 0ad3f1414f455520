#!/usr/bin/env bash
# Set-up from nothing for the main job (`hdqnn train`): a virtual environment in .venv with torch
# (pinned: an unpinned torch pulls a multi-GB CUDA build), hdqnn's runtime dependencies, and hdqnn
# itself as an editable install whose C++ core compiles in the background meanwhile, on every core,
# with only the CPU kernel variants this machine runs (HDQNN_CPU_VARIANTS=host). The test extras
# (qiskit, aer, braket, ray, mujoco), every kernel variant and the CUDA module on a machine without
# an NVIDIA driver are left to scripts/test.sh. About 2 min on an idle 2-core machine (README).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS_NAME=setup
. scripts/steps.sh
VENV=${HDQNN_VENV:-.venv}
JOBS=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}

# The CUDA module serves only a machine with an NVIDIA driver; a toolkit alone (nvcc, no driver)
# would cost build time for a module that cannot run. HDQNN_CUDA=ON|OFF overrides.
if [ -e /proc/driver/nvidia/version ] || nvidia-smi -L >/dev/null 2>&1; then
  cuda_default=AUTO
else
  cuda_default=OFF
fi

say "virtual environment $VENV"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
. "$VENV/bin/activate"
say "build tools (setuptools, pybind11; cmake unless one >= 3.18 is on PATH)"
with_heartbeat "installing the build tools" install_build_tools

log=build/setup-cxx.log
build_cxx() {
  HDQNN_CPU_VARIANTS=${HDQNN_CPU_VARIANTS:-host} HDQNN_CUDA=${HDQNN_CUDA:-$cuda_default} \
    CMAKE_BUILD_PARALLEL_LEVEL=$JOBS pip_logged "$log" --no-build-isolation --no-deps -e .
}
say "compiling the C++ core in the background with $JOBS jobs (a few minutes on 2 cores; log: $log)"
set -m  # its own process group, so that a failure or Ctrl-C here stops the whole build
build_cxx &
build_pid=$!
set +m
trap 'kill -- -"$build_pid" 2>/dev/null || true' EXIT

say "torch 2.13.0 (CPU) and hdqnn's dependencies (under 1 min)"
requirements=()  # (no mapfile: macOS's bash 3.2)
while IFS= read -r requirement; do requirements+=("$requirement"); done < <(python -W ignore - <<'EOF'
from setuptools.config.pyprojecttoml import read_configuration
print("\n".join(read_configuration("pyproject.toml", expand=False)["project"]["dependencies"]))
EOF
)
# --no-compile: byte-compiling all of torch's files costs more than the rest of this step (measured
# 21 vs 5 CPU-s); Python compiles the modules it imports on first use instead
with_heartbeat "installing torch and the dependencies" \
  python -m pip install -q --no-compile torch==2.13.0 "${requirements[@]}"

say "waiting for the C++ build"
if ! with_heartbeat "compiling the C++ core" wait "$build_pid"; then
  say "the C++ build failed (its log: $log)"
  exit 1
fi
trap - EXIT

say "done"
python -m hdqnn info
echo
echo "Set-up took $((SECONDS - STEPS_START)) s. Next:"
echo "  $VENV/bin/hdqnn train        # hDQNN-TD3 on Pendulum-v1: a short real run on the CPU simulator"
echo "  bash scripts/test.sh         # installs the test extras (qiskit, braket, ray, mujoco), runs the suite"

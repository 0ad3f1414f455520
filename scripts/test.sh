#!/usr/bin/env bash
# The test suite (run after scripts/setup.sh). First it completes the quick set-up: the test extras
# (qiskit, aer, braket, ray, mujoco), every CPU kernel variant (the portable build that
# `pip install .` makes) and, where nvcc exists, the CUDA module; the CMake build is incremental, so
# only what setup.sh left out is compiled. Then two passes:
#  1. everything except `slow`/`gpu` tests, with the C++ and Numba engines REQUIRED (a missing
#     engine fails instead of skipping), then PennyLane's own device suite on hdqnn.qubit;
#  2. the package installed with HDQNN_SKIP_EXT=1 (no compiler, Numba path) into a separate
#     folder, and the engine tests run against that install.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS_NAME=test
. scripts/steps.sh
VENV=${HDQNN_VENV:-.venv}
. "$VENV/bin/activate"

say "installing the test extras and completing the build (all kernel variants; CUDA where nvcc exists)"
with_heartbeat "installing the build tools" install_build_tools
HDQNN_CPU_VARIANTS=all HDQNN_CUDA=${HDQNN_CUDA:-AUTO} \
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)} \
  with_heartbeat "installing the test extras and building" \
  pip_logged build/test-install.log --no-build-isolation -e ".[test]"

# The optional SDKs (qiskit, braket, ray, mujoco) were installed above: their tests must run, not
# skip; where nvcc exists the CUDA module must have been built (its GPU tests skip without a device).
export HDQNN_REQUIRE_EXTRAS=all
if command -v nvcc >/dev/null; then export HDQNN_REQUIRE_CUDA_BUILD=1; fi

say "pass 1: full suite, compiled engine required"
HDQNN_REQUIRE_BACKENDS=cpp,numba python -m pytest -q -m "not slow and not gpu" "$@"

# PennyLane's own device suite on hdqnn.qubit, analytic and with shots. No --skip-ops: the tests
# hdqnn.qubit cannot run are deselected by name from a checked file (each with its reason), so an
# unsupported operation anywhere else fails. The seed makes the shot tests reproducible.
if python -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then  # PennyLane needs Python >= 3.11
  mapfile -t pl_deselect < <(sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' \
    -e 's/[[:space:]]*|.*//' -e 's/^/--deselect=/' tests/interop/pl_device_skips.txt)
  for pl_shots in None 10000; do
    say "PennyLane device suite: pl-device-test --device hdqnn.qubit --shots $pl_shots"
    pl-device-test --device hdqnn.qubit --shots "$pl_shots" --device-kwargs seed=1234 \
      -q --disable-warnings -p no:cacheprovider "${pl_deselect[@]}"
  done
else
  say "PennyLane device suite skipped: PennyLane needs Python >= 3.11"
fi

say "pass 2: HDQNN_SKIP_EXT=1 install (Numba engine, no compiled module)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
HDQNN_SKIP_EXT=1 python -m pip install -q --no-deps --no-build-isolation --target "$work/site" .
if ls "$work/site/hdqnn"/_core_* >/dev/null 2>&1; then
  echo "HDQNN_SKIP_EXT=1 still built a compiled module" >&2
  exit 1
fi
cp -r tests "$work/tests"
# python -S: the venv's editable install of the checkout (its .pth finder) would otherwise serve
# hdqnn._core_cpu from the source tree, and this pass would quietly test the compiled engine; the
# venv's packages come in through PYTHONPATH instead, without their .pth files
packages=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
(cd "$work" && PYTHONPATH="$work/site:$packages" python -S -c "
import hdqnn
assert hdqnn.__file__.startswith('$work/site'), hdqnn.__file__
status = hdqnn.backend_status()
print(status)
assert status['cpp'] != 'ok' and status['numba'] == 'ok', 'pass 2 must run without the compiled module'")
(cd "$work" && PYTHONPATH="$work/site:$packages" HDQNN_REQUIRE_BACKENDS=numba \
  python -S -m pytest -q -p no:cacheprovider --import-mode=append -m "not slow and not gpu" \
  tests/backends/test_backends.py tests/sim tests/circuits -k "not cpp")

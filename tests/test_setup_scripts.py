"""scripts/setup.sh (the quick start) and scripts/test.sh (CI): what each installs, that they agree
with pyproject.toml and the README, and the heartbeat that keeps a long silent step from looking hung."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
SETUP = (ROOT / "scripts" / "setup.sh").read_text()
TEST = (ROOT / "scripts" / "test.sh").read_text()
STEPS = ROOT / "scripts" / "steps.sh"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pip_installs(script: str) -> list[str]:
    """The `pip install` commands of a script (direct or through steps.sh's pip_logged),
    continuation lines joined."""
    joined = script.replace("\\\n", " ")
    return [line for line in joined.splitlines()
            if ("pip install" in line or "pip_logged " in line) and not line.lstrip().startswith("#")]


def test_quick_setup_installs_no_test_extras():
    """The quick start installs what `hdqnn train` needs, not the 2 GB of test SDKs."""
    installs = _pip_installs(SETUP)
    assert len(installs) == 2  # torch and the dependencies; hdqnn itself
    def roots(requirements):
        return {re.split(r"[<>=\[ ]", r)[0] for r in requirements}

    extras = roots(PYPROJECT["project"]["optional-dependencies"]["test"]) - roots(PYPROJECT["project"]["dependencies"])
    assert {"qiskit", "amazon-braket-sdk", "ray", "pytest"} <= extras
    for line in installs:
        assert ".[" not in line, line
        for root in extras:
            assert root not in line, (root, line)


def test_quick_setup_builds_only_this_machines_variants_and_no_cuda_without_a_driver():
    assert "HDQNN_CPU_VARIANTS=${HDQNN_CPU_VARIANTS:-host}" in SETUP
    assert "cuda_default=OFF" in SETUP and "/proc/driver/nvidia/version" in SETUP
    assert "--no-build-isolation" in SETUP


def test_test_script_installs_the_extras_and_the_full_build():
    (line,) = [line for line in _pip_installs(TEST) if ".[test]" in line]
    assert "HDQNN_CPU_VARIANTS=all" in line and "HDQNN_CUDA=${HDQNN_CUDA:-AUTO}" in line
    assert "export HDQNN_REQUIRE_EXTRAS=all" in TEST and "HDQNN_REQUIRE_CUDA_BUILD=1" in TEST


def test_test_script_runs_pennylanes_device_suite_without_skip_ops():
    """pl-device-test on hdqnn.qubit, analytic and with 10000 shots, seeded, deselecting only the
    checked file's tests (no --skip-ops, which would turn any "not supported" failure into a skip)."""
    assert "for pl_shots in None 10000; do" in TEST
    (call,) = [line for line in TEST.replace("\\\n", " ").splitlines() if line.lstrip().startswith("pl-device-test")]
    assert "--device hdqnn.qubit" in call and '--shots "$pl_shots"' in call and "--device-kwargs seed=" in call
    assert '"${pl_deselect[@]}"' in call
    assert not [line for line in TEST.splitlines() if "--skip-ops" in line and not line.lstrip().startswith("#")]
    assert "tests/interop/pl_device_skips.txt" in TEST and (ROOT / "tests/interop/pl_device_skips.txt").is_file()
    assert TEST.index("pass 1:") < TEST.index("pl-device-test") < TEST.index("pass 2:")
    extras = " ".join(PYPROJECT["project"]["optional-dependencies"]["test"])
    assert "pytest-mock" in extras and "flaky" in extras  # what pl-device-test checks before it starts


def test_build_tools_match_pyproject():
    """steps.sh installs pyproject's [build-system] requires (for --no-build-isolation builds)."""
    text = STEPS.read_text()
    listed = re.search(r"BUILD_REQUIRES=\(([^)]*)\)", text).group(1).split()
    listed = {s.strip('"') for s in listed} | {re.search(r'CMAKE_REQUIRES="([^"]+)"', text).group(1)}
    assert listed == set(PYPROJECT["build-system"]["requires"])


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == "bash scripts/setup.sh && bash scripts/test.sh"
    assert ci in (ROOT / "README.md").read_text()


def _bash(snippet: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f". {STEPS}; {snippet}"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "STEPS_HEARTBEAT_S": "0.5", "STEPS_NAME": "t"})


def test_heartbeat_speaks_during_a_silent_step_and_keeps_its_status():
    done = _bash('with_heartbeat "waiting" sleep 2; echo "status $?"')
    assert done.stdout.count("... still waiting") >= 1, done.stdout
    assert re.search(r"^\[t +\d+s\] \.\.\. still waiting$", done.stdout, re.MULTILINE)
    assert done.stdout.rstrip().endswith("status 0")
    failed = _bash('with_heartbeat "failing" false; echo "status $?"')
    assert failed.stdout.rstrip().endswith("status 1")


def test_pip_logged_shows_build_progress_and_the_log_on_failure(tmp_path):
    """A long compile under pip shows CMake's lines as they come; a failure shows the log's end."""
    log = tmp_path / "logs" / "pip.log"
    fake_pip = ('python() { printf "Collecting x\\n  -- hdqnn: CPU kernels: base\\n'
                '  [ 50%%] Building CXX object k.o\\nboom\\n"; return 3; }')
    run = _bash(f'{fake_pip}; pip_logged {log} -e .; echo "status $?"')
    assert re.search(r"^\[t +\d+s\] c\+\+ hdqnn: CPU kernels: base$", run.stdout, re.MULTILINE), run.stdout
    assert "c++ [ 50%] Building CXX object k.o" in run.stdout and "Collecting" not in run.stdout
    assert "pip install failed" in run.stdout and "boom" in run.stderr
    assert run.stdout.rstrip().endswith("status 1")
    assert "Collecting x" in log.read_text()


@pytest.mark.parametrize("script", ["setup.sh", "test.sh", "steps.sh"])
def test_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)]).returncode == 0

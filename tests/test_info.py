"""``hdqnn info`` (hdqnn/info.py): calm about absent GPU pieces on a CPU-only machine, the real
reason where a driver exists, and accurate about viewing TensorBoard files."""
from __future__ import annotations

import re

import pytest

import hdqnn
from hdqnn import info

#: Wording that reads like a failure to someone who just finished the set-up.
ERROR_LIKE = re.compile(r"error|exception|missing|failed|cannot|insufficient|traceback", re.IGNORECASE)

#: What backend_status() reports on a CPU-only machine with nvcc (the CUDA module built, no driver).
NO_DRIVER_STATUS = {
    "cpp": "ok", "numba": "ok", "numpy": "ok",
    "cuda": "RuntimeError: no usable CUDA device: no NVIDIA driver is installed (cudaErrorInsufficientDriver: "
            "CUDA driver version is insufficient for CUDA runtime version)",
    "cupy": "ImportError: CuPy is missing (No module named 'cupy'): pip install cupy-cuda13x",
}


def test_gpu_lines_without_a_driver_are_calm():
    lines = info.gpu_engine_lines(NO_DRIVER_STATUS, driver=False)
    assert len(lines) == 2
    for line in lines:
        assert "not available: no NVIDIA driver on this machine (optional" in line, line
        assert not ERROR_LIKE.search(line), line


def test_gpu_lines_with_a_driver_keep_the_reason():
    """Where a driver exists a failing engine is a real problem: its reason is shown as is."""
    cuda, cupy = info.gpu_engine_lines(NO_DRIVER_STATUS, driver=True)
    assert NO_DRIVER_STATUS["cuda"] in cuda and cuda.split()[1] == "unavailable:"
    assert "cupy" in cupy and ("pip install cupy" in cupy or NO_DRIVER_STATUS["cupy"] in cupy)
    assert info.gpu_engine_lines({**NO_DRIVER_STATUS, "cuda": "ok"}, driver=True)[0].split() == ["cuda", "ok"]


def test_a_broken_cpu_engine_keeps_its_reason():
    status = {**NO_DRIVER_STATUS, "numba": "ImportError: No module named 'numba'"}
    assert "ImportError: No module named 'numba'" in info.cpu_engine_lines(status)[1]


def test_report_on_a_machine_without_a_driver(monkeypatch):
    """The whole report, as printed at the end of scripts/setup.sh on a CPU-only machine: nothing
    outside the CPU engines' own lines reads like an error."""
    monkeypatch.setattr(info, "nvidia_driver_present", lambda: False)
    lines = info.report()
    assert lines[0] == f"hdqnn {hdqnn.__version__}"
    cpu_start = next(i for i, line in enumerate(lines) if line.startswith("simulator backends, CPU"))
    gpu_start = next(i for i, line in enumerate(lines) if line.startswith("simulator backends, GPU"))
    for line in lines[:cpu_start] + lines[gpu_start:]:
        assert not ERROR_LIKE.search(line), line
    assert all("no NVIDIA driver on this machine" in line for line in lines[gpu_start + 1:])


@pytest.mark.parametrize("installed", [False, True])
def test_tensorboard_line_says_how_to_view_the_files(monkeypatch, installed):
    """hdqnn writes TensorBoard event files without the tensorboard package; viewing them needs it."""
    real = info._installed
    monkeypatch.setattr(info, "_installed", lambda module: installed if module == "tensorboard" else real(module))
    line = next(line for line in info.package_lines() if line.startswith("tensorboard"))
    assert "RUN_DIR/tb" in line and "tensorboard --logdir runs" in line
    assert ("pip install tensorboard" in line) != installed

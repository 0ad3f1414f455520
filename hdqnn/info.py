"""``hdqnn info``: versions, optional packages and which simulator engines work here.

Written for the end of a set-up: a CPU-only machine is the common case, so missing GPU pieces are
reported as the optional things they are (with the reason only where a driver exists and something
is really broken), while a broken CPU engine keeps its full error.
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os

CPU_ENGINES = ("cpp", "numba", "numpy")
GPU_ENGINES = ("cuda", "cupy")
#: Shared libraries of the NVIDIA driver (Linux, Windows); the CUDA toolkit alone does not have them.
_DRIVER_LIBRARIES = ("libcuda.so.1", "nvcuda.dll")


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA driver is installed (its kernel module or its user-space library)."""
    if os.path.exists("/proc/driver/nvidia/version"):
        return True
    for name in _DRIVER_LIBRARIES:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except ImportError:
        return None


def package_lines() -> list[str]:
    """gymnasium (needed), then the optional packages with what they are for."""
    lines = []
    gym = _version("gymnasium")
    lines.append(f"gymnasium {gym}" if gym else "gymnasium: NOT INSTALLED (needed by `hdqnn train`: pip install -e .)")
    mujoco = _version("mujoco")
    lines.append(f"mujoco {mujoco}" if mujoco else
                 "mujoco: not installed (optional, for MuJoCo tasks such as Hopper-v4: pip install -e \".[mujoco]\")")
    viewer = "tensorboard --logdir runs" if _installed("tensorboard") else \
        "pip install tensorboard, then tensorboard --logdir runs"
    lines.append(f"tensorboard: `hdqnn train` writes its event files itself (RUN_DIR/tb); to view them: {viewer}")
    return lines


def _cpp_detail() -> str:
    """Which instruction-set variant of the compiled kernels runs, and which this build and CPU offer."""
    core = importlib.import_module("hdqnn._core_cpu")
    return f"ok (running the {core.isa()} kernels; usable here: {', '.join(core.available_isas())})"


def cpu_engine_lines(status: dict[str, str]) -> list[str]:
    lines = []
    for name in CPU_ENGINES:
        text = status[name]
        if name == "cpp" and text == "ok":
            text = _cpp_detail()
        lines.append(f"  {name:8s} {text}")
    return lines


def gpu_engine_lines(status: dict[str, str], driver: bool) -> list[str]:
    """Without a driver, one calm line per engine (nothing there can work, nothing is broken);
    with one, the engine's own reason, which then points at a real problem."""
    lines = []
    for name in GPU_ENGINES:
        if status[name] == "ok":
            text = "ok"
        elif not driver:
            built = {"cuda": "hdqnn._core_cuda is built" if _installed("hdqnn._core_cuda") else
                             "hdqnn._core_cuda is not built",
                     "cupy": "CuPy is installed" if _installed("cupy") else "CuPy is not installed"}[name]
            text = f"not available: no NVIDIA driver on this machine (optional; {built})"
        elif name == "cupy" and not _installed("cupy"):
            text = "not installed (optional: pip install cupy-cuda13x, or cupy-cuda12x to match the driver)"
        else:
            text = f"unavailable: {status[name]}"
        lines.append(f"  {name:8s} {text}")
    return lines


def report() -> list[str]:
    """The lines ``hdqnn info`` prints."""
    import torch

    import hdqnn

    status = hdqnn.backend_status()
    driver = nvidia_driver_present()
    torch_cuda = "CUDA available" if torch.cuda.is_available() else "CPU only"
    return [
        f"hdqnn {hdqnn.__version__}",
        f"torch {torch.__version__}: {torch.get_num_threads()} intra-op threads, "
        f"{torch.get_num_interop_threads()} inter-op threads, {torch_cuda}",
        *package_lines(),
        "simulator backends, CPU (hdqnn's engines; the first that works is used):",
        *cpu_engine_lines(status),
        "simulator backends, GPU (optional: for device=\"cuda\" or CUDA tensors):",
        *gpu_engine_lines(status, driver),
    ]

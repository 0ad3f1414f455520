"""The CuPy backend: the CUDA engine's own kernel source compiled at run time by NVRTC.

For installs built without nvcc (or a GPU machine whose toolkit differs from the build's): CuPy
compiles ``csrc/cuda/kernels/entry.cuh`` with the shared gate headers (shipped in the package as
``hdqnn/_cuda_kernels``, or read from the source tree) for the device at hand, and launches the same
kernels under the same names as ``_core_cuda``. The launch policy is hdqnn.backends.launch, the
Python mirror of the compiled one; inputs and outputs are CuPy arrays (any
``__cuda_array_interface__`` array is accepted without a copy).

Constructing the backend raises, with the reason, when CuPy is missing or sees no device.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from . import device_program as dp
from . import launch
from .gpu_base import Call, GpuBackend

#: Package data (a wheel) first, then the source tree (an editable install or a checkout).
PACKAGE_KERNELS = Path(__file__).resolve().parent.parent / "_cuda_kernels"
SOURCE_TREE = Path(__file__).resolve().parents[2] / "csrc"
ENTRY_HEADER = "entry.cuh"
KERNEL_NAMES = {np.dtype(np.float64): ("hdqnn_execute_f64", "hdqnn_sum_rows_f64"),
                np.dtype(np.float32): ("hdqnn_execute_f32", "hdqnn_sum_rows_f32")}
SUM_THREADS = 256          # kSumThreads in executor.cuh
DEFAULT_DYNAMIC_SMEM = 48 * 1024
# cudaDeviceAttr values and cudaMemoryType values (cuda_runtime_api.h)
ATTR_SM_COUNT = 16
ATTR_SMEM_PER_BLOCK_OPTIN = 97
DEVICE_MEMORY_TYPES = (2, 3)  # device, managed


def kernel_dirs() -> tuple[Path, Path]:
    """(directory of the .cuh kernels, directory holding hdqnn/*.hpp)."""
    for kernels, include in ((PACKAGE_KERNELS / "kernels", PACKAGE_KERNELS / "include"),
                             (SOURCE_TREE / "cuda" / "kernels", SOURCE_TREE / "include")):
        if (kernels / ENTRY_HEADER).exists() and (include / "hdqnn" / "gates.hpp").exists():
            return kernels, include
    raise FileNotFoundError(
        f"the CUDA kernel sources are missing: neither {PACKAGE_KERNELS} (package data) nor "
        f"{SOURCE_TREE / 'cuda' / 'kernels'} (source tree) holds {ENTRY_HEADER}"
    )


def kernel_code() -> str:
    """The NVRTC translation unit. It names a digest of every header it includes, so CuPy's
    on-disk kernel cache (keyed by source and options) is invalidated when a header changes."""
    kernels, include = kernel_dirs()
    digest = hashlib.sha256()
    for path in sorted(kernels.glob("*.cuh")) + sorted((include / "hdqnn").glob("*.hpp")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return f'// hdqnn kernel sources {digest.hexdigest()}\n#include "{ENTRY_HEADER}"\n'


def nvrtc_options() -> tuple[str, ...]:
    kernels, include = kernel_dirs()
    return ("--std=c++17", f"-I{kernels}", f"-I{include}")


def _import_cupy():
    try:
        import cupy
    except ImportError as exc:
        raise ImportError(f"CuPy is missing ({exc}): pip install cupy-cuda13x (or cupy-cuda12x, matching the "
                          "driver) to run hdqnn's kernels through NVRTC") from exc
    return cupy


class CupyBackend(GpuBackend):
    """Backend protocol on CuPy + NVRTC (see the module docstring)."""

    name = "cupy"

    def __init__(self) -> None:
        cupy = _import_cupy()
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except cupy.cuda.runtime.CUDARuntimeError as exc:
            raise RuntimeError(f"no usable CUDA device: {exc}") from exc
        if count == 0:
            raise RuntimeError("no usable CUDA device: CuPy sees none")
        self._cp = cupy
        self._modules: dict[int, object] = {}
        self.last_launch: launch.LaunchConfig | None = None

    # ------------------------------------------------------------------------- memory hooks
    def _stream(self, stream: int):
        cp = self._cp
        return cp.cuda.ExternalStream(stream) if stream else cp.cuda.Stream.null

    def _default_device(self) -> int:
        return int(self._cp.cuda.runtime.getDevice())

    def _device_of(self, ptr: int) -> int:
        attrs = self._cp.cuda.runtime.pointerGetAttributes(ptr)
        return int(attrs.device) if attrs.type in DEVICE_MEMORY_TYPES else -1

    def _empty(self, shape, dtype, device, stream):
        with self._cp.cuda.Device(device), self._stream(stream):
            return self._cp.empty(shape, dtype)

    def _upload(self, array: np.ndarray, device: int, stream: int):
        with self._cp.cuda.Device(device), self._stream(stream):
            return self._cp.asarray(array)

    def _download(self, array, shape, dtype, device, stream) -> np.ndarray:
        with self._cp.cuda.Device(device), self._stream(stream):
            return self._cp.asnumpy(array)

    # ------------------------------------------------------------------------------ launch
    def _module(self, device: int):
        if device not in self._modules:
            with self._cp.cuda.Device(device):
                self._modules[device] = self._cp.RawModule(code=kernel_code(), options=nvrtc_options())
        return self._modules[device]

    def _launch_config(self, call: Call, device: int) -> launch.LaunchConfig:
        runtime = self._cp.cuda.runtime
        prog = call.program
        args = dict(n_qubits=prog.n_qubits, task=call.task, real_bytes=call.real.itemsize, n_slots=prog.n_slots,
                    n_ops=prog.n_ops, batch=call.batch,
                    smem_limit=runtime.deviceGetAttribute(ATTR_SMEM_PER_BLOCK_OPTIN, device),
                    sm_count=runtime.deviceGetAttribute(ATTR_SM_COUNT, device), workspace_limit=2**62)
        config = launch.choose_launch(**args)
        if not config.shared_state:  # only the global-memory path needs the free-memory budget
            with self._cp.cuda.Device(device):
                free = runtime.memGetInfo()[0]
            config = launch.choose_launch(**{**args, "workspace_limit": int(launch.WORKSPACE_FRACTION * free)})
        if not config.fits:
            raise ValueError(f"program too long for the CUDA engine: one sample's angle and matrix tables need "
                             f"{config.smem_bytes} bytes of shared memory, the device allows {args['smem_limit']}")
        return config

    def _execute(self, call: Call, pointers: dict[str, int], device: int, stream: int) -> None:
        cp = self._cp
        config = self._launch_config(call, device)
        execute_name, sum_name = KERNEL_NAMES[call.real]
        module = self._module(device)
        shared_weights = call.task == dp.TASK_VJP and call.program.meta[dp.H_PER_SAMPLE_WEIGHTS] == 0
        n_weights = call.program.n_weights
        with cp.cuda.Device(device), self._stream(stream):
            meta = cp.asarray(call.program.meta)
            angles = cp.asarray(call.program.angle_val)
            workspace = cp.empty(max(config.workspace_bytes // call.real.itemsize, 1), call.real)
            rows = cp.empty((call.batch, n_weights) if shared_weights else (1,), call.real)
            grad_rows = rows.data.ptr if shared_weights else pointers.get("grad_weights", 0)
            kernel = module.get_function(execute_name)
            if config.smem_bytes > DEFAULT_DYNAMIC_SMEM:
                kernel.max_dynamic_shared_size_bytes = config.smem_bytes
            ptr = np.uint64
            kernel((config.grid,), (config.block_threads,),
                   (meta, angles, ptr(pointers.get("inputs", 0)), ptr(pointers.get("weights", 0)),
                    ptr(pointers.get("grad_output", 0)), ptr(pointers.get("out", 0)), ptr(grad_rows), workspace,
                    ptr(pointers.get("bits", 0)), np.int64(call.batch), np.int32(call.task),
                    np.int32(config.threads_per_sample), np.int32(config.samples_per_block),
                    np.int32(config.shared_state), np.int64(call.shots), np.uint64(call.seed)),
                   shared_mem=config.smem_bytes)
            if shared_weights and n_weights > 0:
                module.get_function(sum_name)((n_weights,), (SUM_THREADS,),
                                              (rows, ptr(pointers["grad_weights"]), np.int64(call.batch),
                                               np.int32(n_weights)))
        self.last_launch = config

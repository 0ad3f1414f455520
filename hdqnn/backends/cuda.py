"""The compiled CUDA engine (module ``hdqnn._core_cuda``, built when CMake finds nvcc).

One launch runs the whole fused program for the whole batch (csrc/cuda/kernels/executor.cuh):
small registers keep each sample's state in shared memory, larger ones in a global workspace;
expectations, probabilities, states, shot samples and adjoint VJPs as on the CPU. Device arrays
(torch CUDA tensors, CuPy arrays) are used in place and results are returned as ``DeviceArray``
objects, which torch and CuPy wrap without a copy (``torch.as_tensor(out, device="cuda")``).

Constructing the backend raises, with the reason, when the module was built without CUDA or no
device is usable, so asking for ``backend="cuda"`` never falls back silently to the CPU.
"""
from __future__ import annotations

import numpy as np

from .gpu_base import CAI_LEGACY_STREAM, Call, GpuBackend

try:
    from .. import _core_cuda as _core
except ImportError as exc:  # re-raised with the reason when the backend is asked for
    _core = None
    _IMPORT_ERROR = exc


def core():
    """The compiled module, or ImportError saying why it is missing."""
    if _core is None:
        raise ImportError(
            f"hdqnn._core_cuda is not built ({_IMPORT_ERROR}): hdqnn was installed without a CUDA compiler "
            "or with HDQNN_CUDA=OFF; reinstall with nvcc on PATH (HDQNN_CUDA=ON makes a missing nvcc an error)"
        )
    return _core


def device_count() -> int:
    """CUDA devices the compiled module sees (0 when it is not built or there is no driver/device)."""
    return int(_core.device_count()) if _core is not None else 0


def unavailable_reason() -> str | None:
    """Why the cuda backend cannot run here, or None when it can."""
    if _core is None:
        return f"hdqnn._core_cuda is not built ({_IMPORT_ERROR})"
    count, reason = _core.device_status()
    return None if count > 0 else f"no usable CUDA device: {reason}"


class DeviceArray:
    """A C-contiguous array in device memory owned by hdqnn; exports ``__cuda_array_interface__``
    (version 3), so ``torch.as_tensor`` and ``cupy.asarray`` share it without copying."""

    def __init__(self, shape: tuple[int, ...], dtype, device: int, stream: int) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.device = device
        self.stream = stream
        nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self._buffer = core().DeviceBuffer(nbytes, device, stream)

    @property
    def ptr(self) -> int:
        return self._buffer.ptr

    @property
    def __cuda_array_interface__(self) -> dict:
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self.ptr, False),
            "version": 3,
            "strides": None,
            # CAI forbids 0; 1 is the legacy default stream, which is what handle 0 means
            "stream": self.stream or CAI_LEGACY_STREAM,
        }

    def get(self) -> np.ndarray:
        """A NumPy copy (waits for the stream)."""
        out = np.empty(self.shape, self.dtype)
        core().copy_to_host(out, self.ptr, self.device, self.stream)
        return out


class CudaBackend(GpuBackend):
    """Backend protocol on the compiled CUDA engine (see the module docstring)."""

    name = "cuda"

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            if _core is None:
                core()  # raises the ImportError with the build hint
            raise RuntimeError(reason)
        self.last_launch: dict | None = None  # the launch of the latest call (benchmarks, tests)

    def _default_device(self) -> int:
        return 0

    def _device_of(self, ptr: int) -> int:
        return int(_core.pointer_device(ptr))

    def _empty(self, shape, dtype, device, stream) -> DeviceArray:
        return DeviceArray(shape, dtype, device, stream)

    def _upload(self, array: np.ndarray, device: int, stream: int) -> DeviceArray:
        out = DeviceArray(array.shape, array.dtype, device, stream)
        if array.nbytes:
            _core.copy_to_device(out.ptr, array, device, stream)
        return out

    def _download(self, array: DeviceArray, shape, dtype, device, stream) -> np.ndarray:
        return array.get()

    def _execute(self, call: Call, pointers: dict[str, int], device: int, stream: int) -> None:
        self.last_launch = _core.execute(
            call.task, call.precision, call.program.meta, call.program.angle_val,
            pointers.get("inputs", 0), pointers.get("weights", 0), pointers.get("grad_output", 0),
            pointers.get("out", 0), pointers.get("grad_weights", 0), pointers.get("bits", 0),
            call.batch, call.shots, call.seed, device, stream,
        )


__all__ = ["CudaBackend", "DeviceArray", "core", "device_count", "unavailable_reason"]

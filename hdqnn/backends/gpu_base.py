"""What the two GPU backends share: argument checks, output shapes and the host/device dispatch.

Arrays come either from the host (NumPy: copied to the device, results copied back, for the
engine tests and the NumPy API) or already from a device: any object with
``__cuda_array_interface__`` (torch CUDA tensors, CuPy arrays) is used in place, without a copy,
and the results stay on the device. A backend only supplies memory management and the launch.

Streams: ``stream`` is a raw ``cudaStream_t`` handle (``torch.cuda.current_stream().cuda_stream``;
hdqnn.sim.device passes torch's current stream). Without one, a device array's own
``__cuda_array_interface__`` stream is used, else the default stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..circuits import Program
from . import device_program as dp
from .base import REAL_OF

#: CUDA Array Interface stream values: 1 and 2 are the legacy and per-thread default streams,
#: which are also what those two numbers mean as cudaStream_t handles.
CAI_LEGACY_STREAM = 1
#: Largest seed the sampling kernel takes (64-bit Philox key).
MAX_SEED = (1 << 64) - 1


@dataclass(frozen=True)
class DeviceView:
    """The parts of ``__cuda_array_interface__`` the engine needs."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    stream: int | None


def is_device_array(x: Any) -> bool:
    return hasattr(x, "__cuda_array_interface__")


def device_view(x: Any, name: str) -> DeviceView:
    """A C-contiguous device array's pointer, shape, dtype and stream, or a clear error."""
    try:
        cai = x.__cuda_array_interface__
    except RuntimeError as exc:  # torch: a tensor that requires grad refuses to export itself
        raise TypeError(f"{name}: {exc} (pass tensor.detach())") from exc
    shape = tuple(int(s) for s in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    strides = cai.get("strides")
    if strides is not None and tuple(strides) != _c_strides(shape, dtype.itemsize):
        raise ValueError(f"{name} must be C-contiguous (strides {tuple(strides)} for shape {shape})")
    if cai.get("mask") is not None:
        raise ValueError(f"{name} must not be a masked array")
    return DeviceView(int(cai["data"][0]), shape, dtype, cai.get("stream"))


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


@dataclass
class Call:
    """One checked engine call: shapes, dtypes, the packed program and where the arrays live."""

    task: int
    program: dp.DeviceProgram
    real: np.dtype
    complex: np.dtype
    batch: int
    on_device: bool
    arrays: dict[str, Any]      # name -> the caller's array (NumPy or device), None where unused
    outputs: dict[str, tuple]   # name -> (shape, dtype) of every output
    shots: int = 0
    seed: int = 0

    @property
    def precision(self) -> str:
        return self.real.name


def _shape_dtype(x: Any, name: str) -> tuple[tuple[int, ...], np.dtype]:
    if is_device_array(x):
        view = device_view(x, name)
        return view.shape, view.dtype
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray or a CUDA array (torch, CuPy), got {type(x).__name__}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return x.shape, x.dtype


def prepare_call(task: int, program: Program, inputs: Any, weights: Any, dtype: Any, paulis: np.ndarray | None = None,
                 grad_output: Any = None, shots: int = 0, seed: int = 0) -> Call:
    """Check every argument against the program and each other; pack the program."""
    complex_dtype = np.dtype(dtype)
    real = REAL_OF.get(complex_dtype)
    if real is None:
        raise TypeError(f"dtype must be complex64 or complex128, got {complex_dtype}")
    arrays = {"inputs": inputs, "weights": weights, "grad_output": grad_output}
    given = {k: v for k, v in arrays.items() if v is not None}
    on_device = {k: is_device_array(v) for k, v in given.items()}
    if len(set(on_device.values())) > 1:
        where = ", ".join(f"{k} on {'device' if d else 'host'}" for k, d in on_device.items())
        raise TypeError(f"arrays must all be on the host (NumPy) or all on the GPU, got {where}")
    shapes = {k: _shape_dtype(v, k) for k, v in given.items()}
    for name, (_, dt) in shapes.items():
        if dt != real:
            raise TypeError(f"{complex_dtype} simulation needs {real} {name}, got {dt}")
    x_shape, w_shape = shapes["inputs"][0], shapes["weights"][0]
    if len(x_shape) != 2 or x_shape[0] < 1:
        raise ValueError(f"inputs must be [B >= 1, n_inputs], got shape {x_shape}")
    batch = x_shape[0]
    if len(w_shape) not in (1, 2) or (len(w_shape) == 2 and w_shape[0] != batch):
        raise ValueError(f"weights must be [n_weights] or [B={batch}, n_weights], got shape {w_shape}")
    device_prog = dp.build(program, x_shape[1], w_shape[-1], len(w_shape) == 2, paulis)
    outputs = _output_shapes(task, program.n_qubits, batch, device_prog, x_shape, w_shape, real, complex_dtype, shots)
    if task == dp.TASK_VJP:
        g_shape = shapes["grad_output"][0]
        if g_shape != (batch, device_prog.n_terms):
            raise ValueError(f"grad_output must have shape {(batch, device_prog.n_terms)}, got {g_shape}")
    if task == dp.TASK_SAMPLE:
        if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
            raise ValueError(f"shots must be a positive int, got {shots!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    return Call(task, device_prog, real, complex_dtype, batch, any(on_device.values()), arrays, outputs,
                int(shots), int(seed))


def _output_shapes(task: int, n: int, batch: int, prog: dp.DeviceProgram, x_shape, w_shape, real: np.dtype,
                   complex_dtype: np.dtype, shots: int) -> dict[str, tuple]:
    dim = 1 << n
    if task == dp.TASK_STATEVECTOR:
        return {"out": ((batch, dim), complex_dtype)}
    if task == dp.TASK_PROBABILITIES:
        return {"out": ((batch, dim), real)}
    if task == dp.TASK_EXPVAL:
        return {"out": ((batch, prog.n_terms), real)}
    if task == dp.TASK_VJP:
        return {"out": (tuple(x_shape), real), "grad_weights": (tuple(w_shape), real)}
    return {"bits": ((batch, int(shots), n), np.dtype(np.uint8))}


class GpuBackend:
    """The Backend protocol (hdqnn.backends.base) on a GPU, plus ``sample``. Subclasses supply the
    memory hooks and ``_execute``; every method also takes ``stream`` (a cudaStream_t handle)."""

    name = "gpu"

    def set_num_threads(self, n: int) -> None:
        """No-op: the GPU engines do not use CPU threads."""
        del n

    def statevector(self, program: Program, inputs, weights, dtype, *, stream: int | None = None):
        """[B, 2**n] complex ``dtype``."""
        return self._run(prepare_call(dp.TASK_STATEVECTOR, program, inputs, weights, dtype), stream)

    def probabilities(self, program: Program, inputs, weights, dtype, *, stream: int | None = None):
        """[B, 2**n] real, |amplitude|**2."""
        return self._run(prepare_call(dp.TASK_PROBABILITIES, program, inputs, weights, dtype), stream)

    def expval(self, program: Program, inputs, weights, paulis: np.ndarray, dtype, *, stream: int | None = None):
        """[B, K] real expectations of the Pauli strings ``paulis`` (int8 [K, n])."""
        return self._run(prepare_call(dp.TASK_EXPVAL, program, inputs, weights, dtype, paulis), stream)

    def vjp(self, program: Program, inputs, weights, paulis: np.ndarray, grad_output, dtype, *,
            stream: int | None = None):
        """(grad_inputs [B, n_inputs], grad_weights shaped like ``weights``) of sum(grad_output * expval)."""
        call = prepare_call(dp.TASK_VJP, program, inputs, weights, dtype, paulis, grad_output)
        return self._run(call, stream)

    def sample(self, program: Program, inputs, weights, shots: int, seed: int, dtype, *, stream: int | None = None):
        """uint8 [B, shots, n]: measured bits, column q = wire q. The same seed gives the same
        bits, whatever the launch shape (Philox4x32-10 keyed by the seed, counter (shot, sample))."""
        call = prepare_call(dp.TASK_SAMPLE, program, inputs, weights, dtype, shots=shots, seed=seed)
        return self._run(call, stream)

    # ------------------------------------------------------------------------------ dispatch
    def _run(self, call: Call, stream: int | None):
        if call.on_device:
            return self._run_on_device(call, stream)
        return self._run_from_host(call, stream)

    def _run_on_device(self, call: Call, stream: int | None):
        views = {k: device_view(v, k) for k, v in call.arrays.items() if v is not None}
        device = self._common_device(views)
        if stream is None:
            stream = next((v.stream for v in views.values() if v.stream is not None), 0)
        outputs = {k: self._empty(shape, dt, device, stream) for k, (shape, dt) in call.outputs.items()}
        pointers = {k: v.ptr for k, v in views.items()}
        pointers.update({k: device_view(v, k).ptr for k, v in outputs.items()})
        self._execute(call, pointers, device, stream)
        return _result(call.task, outputs)

    def _run_from_host(self, call: Call, stream: int | None):
        device, stream = self._default_device(), 0 if stream is None else stream
        keep = []  # device copies stay alive until the results are back
        pointers = {}
        for name, array in call.arrays.items():
            if array is not None:
                buffer = self._upload(np.ascontiguousarray(array), device, stream)
                keep.append(buffer)
                pointers[name] = device_view(buffer, name).ptr
        device_out = {k: self._empty(shape, dt, device, stream) for k, (shape, dt) in call.outputs.items()}
        pointers.update({k: device_view(v, k).ptr for k, v in device_out.items()})
        self._execute(call, pointers, device, stream)
        host = {k: self._download(v, shape, dt, device, stream) for (k, v), (shape, dt)
                in zip(device_out.items(), call.outputs.values())}
        return _result(call.task, host)

    def _common_device(self, views: dict[str, DeviceView]) -> int:
        devices = {k: self._device_of(v.ptr) for k, v in views.items() if v.ptr}
        if not devices:
            return self._default_device()
        if len(set(devices.values())) > 1:
            raise ValueError(f"arrays are on different devices: {devices}")
        device = next(iter(devices.values()))
        if device < 0:
            raise ValueError(f"{next(iter(devices))} is not in device memory")
        return device

    # --------------------------------------------------------------------- backend hooks
    def _default_device(self) -> int:
        raise NotImplementedError

    def _device_of(self, ptr: int) -> int:
        raise NotImplementedError

    def _empty(self, shape: tuple, dtype: np.dtype, device: int, stream: int):
        raise NotImplementedError

    def _upload(self, array: np.ndarray, device: int, stream: int):
        raise NotImplementedError

    def _download(self, array, shape: tuple, dtype: np.dtype, device: int, stream: int) -> np.ndarray:
        raise NotImplementedError

    def _execute(self, call: Call, pointers: dict[str, int], device: int, stream: int) -> None:
        raise NotImplementedError


def _result(task: int, outputs: dict[str, Any]):
    if task == dp.TASK_VJP:
        return outputs["out"], outputs["grad_weights"]
    if task == dp.TASK_SAMPLE:
        return outputs["bits"]
    return outputs["out"]

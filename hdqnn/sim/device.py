"""GPU routing for the public API: ``device="cuda"``, or CUDA tensors, run on a GPU engine end to end.

``hdqnn.sim.api`` sends a call here when ``wants_gpu(device, inputs, weights)`` holds. Inputs are
made CUDA tensors of the matching float dtype on the requested device (already-CUDA tensors and
CuPy arrays are used in place), the engine runs on torch's current stream, and the results are
torch tensors sharing the engine's output memory, or CuPy arrays when the caller passed CuPy
arrays. Nothing is copied to the host. Finiteness is not checked here: that would wait for the GPU.

The engine is ``backend`` when given, else the compiled ``cuda`` backend, else ``cupy``; when none
can run, the error lists why for each, and nothing falls back to the CPU.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..backends import get_backend
from ..circuits import Circuit, compile_observables
from .arrays import COMPLEX_OF_REAL, REAL_OF_COMPLEX, is_torch, resolve_dtype

#: GPU engines in order of preference.
CUDA_ORDER = ("cuda", "cupy")


def _is_cupy(x: Any) -> bool:
    return type(x).__module__.startswith("cupy")


#: The device spellings every function accepts (any case), besides None and a torch.device.
DEVICE_SPELLINGS = ("cpu", "cuda", "cuda:N")
_DEVICE_PATTERN = re.compile(r"(cpu|cuda)(:[0-9]+)?")


def parse_device(device: Any) -> str | None:
    """None, "cpu", "cuda" or "cuda:N" from a str (any case) or torch.device; else a ValueError
    listing the valid spellings (an unknown name must not quietly run on the CPU)."""
    if device is None:
        return None
    if is_torch(device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be None, a str or a torch.device, got {type(device).__name__}")
    match = _DEVICE_PATTERN.fullmatch(device.strip().lower())
    if match is not None:
        return "cpu" if match.group(1) == "cpu" else match.group(0)
    raise ValueError(f"unknown device {device!r}; use None (follow the arrays), "
                     f"{', '.join(repr(d) for d in DEVICE_SPELLINGS)} (any case) or a torch.device")


def wants_gpu(device: Any, *arrays: Any) -> bool:
    """True for device "cuda" / "cuda:N" / a CUDA torch.device, or, with no device given, when an
    array is a CUDA tensor or a CuPy array."""
    device = parse_device(device)
    if device is not None:
        return device != "cpu"
    return any((is_torch(a) and a.is_cuda) or _is_cupy(a) for a in arrays if a is not None)


def gpu_backend(backend: Any = None):
    """The requested GPU engine, or the first of CUDA_ORDER that can run; else RuntimeError with
    every engine's reason."""
    if backend is not None:
        engine = get_backend(backend)
        if engine.name not in CUDA_ORDER:
            raise ValueError(f"device='cuda' needs a GPU backend ({', '.join(CUDA_ORDER)}), got {engine.name!r}")
        return engine
    reasons = []
    for name in CUDA_ORDER:
        try:
            return get_backend(name)
        except RuntimeError as exc:
            reasons.append(str(exc))
    raise RuntimeError("CUDA was requested but no GPU engine can run: " + "; ".join(reasons))


def _torch_device(device: Any, arrays: tuple):
    import torch

    if device is not None:
        dev = torch.device(parse_device(device))
        return torch.device("cuda", torch.cuda.current_device()) if dev.index is None else dev
    for a in arrays:
        if is_torch(a) and a.is_cuda:
            return a.device
    return torch.device("cuda", torch.cuda.current_device())


def _real_dtype(dtype: Any, inputs: Any, weights: Any) -> np.dtype:
    """float32 or float64: from ``dtype`` if given, else float32 only when every float array is."""
    if dtype is not None:
        complex_dtype = resolve_dtype(dtype)
    else:
        names = [str(a.dtype).replace("torch.", "") for a in (inputs, weights) if a is not None]
        floats = [name for name in names if name.startswith("float")]
        single = floats and all(name == "float32" for name in floats)
        complex_dtype = np.dtype(np.complex64 if single else np.complex128)
    return REAL_OF_COMPLEX[complex_dtype]


def _as_device_array(x: Any, real: np.dtype, torch_device):
    """``x`` on the device as a contiguous, detached array of dtype ``real`` (in place if it is one)."""
    if _is_cupy(x):
        return x.astype(real, copy=False) if x.flags.c_contiguous else x.astype(real)
    import torch

    t = torch.as_tensor(x, device=torch_device, dtype=getattr(torch, real.name))
    return t.detach().contiguous()


class _Prepared:
    """A call's arguments on the device, and how to hand results back."""

    def __init__(self, circuit: Circuit, inputs: Any, weights: Any, dtype: Any, device: Any) -> None:
        if not isinstance(circuit, Circuit):
            raise TypeError(f"circuit must be an hdqnn.Circuit, got {type(circuit).__name__}")
        self.program = circuit.compile()
        self.real = _real_dtype(dtype, inputs, weights)
        self.dtype = COMPLEX_OF_REAL[self.real]
        self.as_cupy = any(_is_cupy(a) for a in (inputs, weights) if a is not None)
        self.torch_device = None if self.as_cupy else _torch_device(device, (inputs, weights))
        if inputs is None:
            if self.program.n_inputs:
                raise ValueError(f"the circuit reads {self.program.n_inputs} input column(s) but inputs is None")
            batch = weights.shape[0] if weights is not None and len(weights.shape) == 2 else 1
            inputs = np.zeros((batch, 0), self.real)
        if weights is None:
            if self.program.n_weights:
                raise ValueError(f"the circuit reads {self.program.n_weights} weight(s) but weights is None")
            weights = np.zeros(0, self.real)
        if self.as_cupy:
            import cupy

            inputs, weights = (cupy.asarray(a) if not _is_cupy(a) else a for a in (inputs, weights))
        self.inputs = _as_device_array(inputs, self.real, self.torch_device)
        self.weights = _as_device_array(weights, self.real, self.torch_device)

    @property
    def stream(self) -> int | None:
        if self.as_cupy:
            return None  # the CuPy backend uses CuPy's current stream
        import torch

        return torch.cuda.current_stream(self.torch_device).cuda_stream

    def device_array(self, x: Any):
        return _as_device_array(x, self.real, self.torch_device)

    def wrap(self, out: Any):
        """The engine's output as the caller's array type, sharing its memory."""
        if self.as_cupy:
            import cupy

            return cupy.asarray(out)
        import torch

        return torch.as_tensor(out, device=self.torch_device)


def statevector(circuit: Circuit, inputs: Any = None, weights: Any = None, *, dtype: Any = None,
                backend: Any = None, device: Any = None):
    """[B, 2**n] complex64/complex128 on the GPU (see hdqnn.sim.api.statevector)."""
    engine = gpu_backend(backend)
    p = _Prepared(circuit, inputs, weights, dtype, device)
    return p.wrap(engine.statevector(p.program, p.inputs, p.weights, p.dtype, stream=p.stream))


def probabilities(circuit: Circuit, inputs: Any = None, weights: Any = None, *, dtype: Any = None,
                  backend: Any = None, device: Any = None):
    """[B, 2**n] float32/float64 on the GPU."""
    engine = gpu_backend(backend)
    p = _Prepared(circuit, inputs, weights, dtype, device)
    return p.wrap(engine.probabilities(p.program, p.inputs, p.weights, p.dtype, stream=p.stream))


def expval(circuit: Circuit, inputs: Any = None, weights: Any = None, observables: Any = None, *,
           dtype: Any = None, backend: Any = None, device: Any = None):
    """[B, K] float32/float64 Pauli expectations on the GPU."""
    engine = gpu_backend(backend)
    p = _Prepared(circuit, inputs, weights, dtype, device)
    paulis = compile_observables(observables, p.program.n_qubits)
    return p.wrap(engine.expval(p.program, p.inputs, p.weights, paulis, p.dtype, stream=p.stream))


def vjp(circuit: Circuit, inputs: Any, weights: Any, grad_output: Any, observables: Any = None, *,
        dtype: Any = None, backend: Any = None, device: Any = None):
    """(grad_inputs [B, n_inputs], grad_weights shaped like ``weights``) on the GPU, by the adjoint sweep."""
    engine = gpu_backend(backend)
    p = _Prepared(circuit, inputs, weights, dtype, device)
    paulis = compile_observables(observables, p.program.n_qubits)
    g = p.device_array(grad_output)
    gi, gw = engine.vjp(p.program, p.inputs, p.weights, paulis, g, p.dtype, stream=p.stream)
    return p.wrap(gi), p.wrap(gw)


def sample(circuit: Circuit, inputs: Any = None, weights: Any = None, shots: int = 1000, seed: Any = None, *,
           dtype: Any = None, backend: Any = None, device: Any = None):
    """uint8 [B, shots, n] measured on the GPU (counter-based RNG: the same int seed, the same bits)."""
    engine = gpu_backend(backend)
    p = _Prepared(circuit, inputs, weights, dtype if dtype is not None else np.complex128, device)
    if seed is None:
        seed = int(np.random.default_rng().integers(2**63))
    elif isinstance(seed, np.random.Generator):
        seed = int(seed.integers(2**63))
    out = engine.sample(p.program, p.inputs, p.weights, shots, seed, p.dtype, stream=p.stream)
    return p.wrap(out)


__all__ = ["CUDA_ORDER", "DEVICE_SPELLINGS", "parse_device", "wants_gpu", "gpu_backend", "statevector",
           "probabilities", "expval", "vjp", "sample"]

"""Input validation and torch <-> NumPy conversion at the boundary of the engine.

Everything the engines receive passes through ``prepare``: shapes, dtypes, finiteness (of the
values and of every angle they make) are checked here, once, so the engines can trust their
arguments; ``hdqnn.sim.memory`` then checks the memory the call will need.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..circuits import GATES_BY_CODE, SRC_INPUT, SRC_WEIGHT, Circuit, Program

COMPLEX_OF_REAL = {np.dtype(np.float32): np.dtype(np.complex64), np.dtype(np.float64): np.dtype(np.complex128)}
REAL_OF_COMPLEX = {v: k for k, v in COMPLEX_OF_REAL.items()}


def is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def warn_if_requires_grad(what: str, *arrays: Any) -> None:
    """Warn that ``what``'s result is detached when an argument asks for gradients (silently
    dropping the autograd graph would train nothing, with no error)."""
    if any(is_torch(a) and a.requires_grad for a in arrays):
        import torch

        if torch.is_grad_enabled():
            warnings.warn(
                f"hdqnn.{what} returns a result without autograd history, but an argument requires grad: "
                "no gradient will flow back through it. Use hdqnn.QuantumLayer to train through a circuit "
                "(or hdqnn.vjp for an explicit vector-Jacobian product); detach the argument to silence this.",
                UserWarning, stacklevel=3,
            )


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if is_torch(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name} is on device {x.device}; the CPU engines need CPU tensors")
        if x.is_complex():
            raise TypeError(f"{name} must be real, got {x.dtype}")
        try:
            return x.detach().resolve_conj().numpy()
        except TypeError as exc:  # dtypes NumPy lacks: bfloat16, float8
            raise TypeError(f"{name} has dtype {x.dtype}, which NumPy (and so the CPU engines) cannot "
                            "take; cast with .float() (complex64 engine) or .double() (complex128)") from exc
    arr = np.asarray(x)
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real angles, got complex dtype {arr.dtype}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    if arr.size and not np.isfinite(arr).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name} contains NaN or infinite values (first at index {bad}: {arr[bad]})")


def resolve_dtype(dtype: Any, *arrays: np.ndarray | None) -> np.dtype:
    """complex64 or complex128: from ``dtype`` if given, else complex64 iff every float input is float32."""
    if dtype is not None:
        if is_torch(dtype):
            dtype = str(dtype).replace("torch.", "")
        dt = np.dtype(dtype)
        if dt in COMPLEX_OF_REAL:
            dt = COMPLEX_OF_REAL[dt]
        if dt not in REAL_OF_COMPLEX:
            raise TypeError(f"dtype must be complex64 or complex128 (or float32/float64), got {dt}")
        return dt
    given = [a for a in arrays if a is not None and a.size]
    if given and all(a.dtype == np.float32 for a in given):
        return np.dtype(np.complex64)
    return np.dtype(np.complex128)


@dataclass
class Prepared:
    """Validated, engine-ready arguments of one call."""

    program: Program
    inputs: np.ndarray  # [B, n_inputs] real, C-contiguous
    weights: np.ndarray  # [n_weights] or [B, n_weights] real, C-contiguous
    dtype: np.dtype  # complex64 | complex128
    as_torch: bool  # return torch tensors

    @property
    def batch(self) -> int:
        return self.inputs.shape[0]

    @property
    def real_dtype(self) -> np.dtype:
        return REAL_OF_COMPLEX[self.dtype]


def prepare(circuit: Circuit, inputs: Any, weights: Any, dtype: Any = None) -> Prepared:
    """Validate ``inputs`` [B, n_inputs] and ``weights`` [n_weights] | [B, n_weights] for ``circuit``."""
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit must be an hdqnn.Circuit, got {type(circuit).__name__}")
    program = circuit.compile()
    as_torch = is_torch(inputs) or is_torch(weights)
    x = None if inputs is None else _to_numpy(inputs, "inputs")
    w = None if weights is None else _to_numpy(weights, "weights")
    cdtype = resolve_dtype(dtype, x if x is not None and x.dtype.kind == "f" else None,
                           w if w is not None and w.dtype.kind == "f" else None)
    real = REAL_OF_COMPLEX[cdtype]
    x = _prepare_inputs(x, program, w, real)
    w = _prepare_weights(w, program, x.shape[0], real)
    _check_angles(program, SRC_INPUT, x, "inputs")
    _check_angles(program, SRC_WEIGHT, np.atleast_2d(w), "weights")
    return Prepared(program, x, w, cdtype, as_torch)


def _check_angles(program: Program, source: int, values: np.ndarray, name: str) -> None:
    """Every angle scale * value that ``values`` [rows, columns] feed must be finite: a finite scale
    times a finite value can overflow to inf, and the engines would return NaN without a word."""
    if not values.size or not program.angle_val.size:
        return
    # fast path (every call): the largest |scale| of any slot times the largest |value|
    if math.isfinite(float(np.abs(program.angle_val).max()) * float(np.abs(values).max())):
        return
    slots = np.flatnonzero(program.angle_src[:, 0] == source)
    peak = np.abs(values).max(axis=0).astype(np.float64)[program.angle_src[slots, 1]]  # per slot
    with np.errstate(over="ignore"):
        bad = ~np.isfinite(np.abs(program.angle_val[slots]) * peak)
    if bad.any():
        _raise_overflow(program, int(slots[np.argmax(bad)]), values, name)


def _raise_overflow(program: Program, slot: int, values: np.ndarray, name: str) -> None:
    column = int(program.angle_src[slot, 1])
    row = int(np.argmax(np.abs(values[:, column])))
    first = program.gates[:, 3]  # a gate's first slot; -1 without angles; increasing otherwise
    gate = int(np.flatnonzero((first >= 0) & (first <= slot))[-1])
    kind = "Input" if program.angle_src[slot, 0] == SRC_INPUT else "Weight"
    scale = program.angle_val[slot]
    raise ValueError(
        f"angle slot {slot} (gate #{gate} {GATES_BY_CODE[int(program.gates[gate, 0])].name}, "
        f"{kind}({column}, scale={scale:g})) overflows: scale x {name}[{row}, {column}] = "
        f"{scale:g} x {values[row, column]:g} is not finite"
    )


def _prepare_inputs(x: np.ndarray | None, program: Program, w: np.ndarray | None, real: np.dtype) -> np.ndarray:
    if x is None:
        if program.n_inputs:
            raise ValueError(f"the circuit reads {program.n_inputs} input column(s) but inputs is None")
        batch = w.shape[0] if w is not None and w.ndim == 2 else 1
        return np.zeros((batch, 0), dtype=real)
    if x.ndim != 2:
        raise ValueError(
            f"inputs must be 2-D [B, n_inputs={program.n_inputs}], got shape {tuple(x.shape)} "
            "(use inputs[None] for a single sample)"
        )
    if x.shape[0] < 1:
        raise ValueError("inputs has an empty batch (B = 0)")
    if x.shape[1] != program.n_inputs:
        raise ValueError(
            f"inputs has {x.shape[1]} column(s) but the circuit reads {program.n_inputs} "
            f"(Input indices 0..{program.n_inputs - 1})"
        )
    _check_finite(x, "inputs")
    return np.ascontiguousarray(x, dtype=real)


def _prepare_weights(w: np.ndarray | None, program: Program, batch: int, real: np.dtype) -> np.ndarray:
    if w is None:
        if program.n_weights:
            raise ValueError(f"the circuit reads {program.n_weights} weight(s) but weights is None")
        return np.zeros(0, dtype=real)
    if w.ndim == 1:
        count = w.shape[0]
    elif w.ndim == 2:
        if w.shape[0] != batch:
            raise ValueError(f"per-sample weights have {w.shape[0]} rows but the batch has {batch} samples")
        count = w.shape[1]
    else:
        raise ValueError(f"weights must be [n_weights] or [B, n_weights], got shape {tuple(w.shape)}")
    if count != program.n_weights:
        raise ValueError(
            f"weights has {count} entries per sample but the circuit reads {program.n_weights} "
            f"(Weight indices 0..{program.n_weights - 1})"
        )
    _check_finite(w, "weights")
    return np.ascontiguousarray(w, dtype=real)


def check_real_2d(arr: Any, name: str, shape: tuple[int, int], real: np.dtype) -> np.ndarray:
    """A [rows, cols] finite real array of dtype ``real`` (for grad_output and the like)."""
    a = _to_numpy(arr, name)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(a.shape)}")
    _check_finite(a, name)
    return np.ascontiguousarray(a, dtype=real)


def check_state(arr: Any, name: str, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """A [B, 2**n] C-contiguous array of the complex ``dtype`` of the call it is handed back to
    (final states from ``expval(return_state=True)``), not converted: a state of another precision
    is the state of another simulation."""
    if is_torch(arr):
        if arr.device.type != "cpu":
            raise ValueError(f"{name} is on device {arr.device}; the CPU engines need CPU tensors")
        arr = arr.detach().resolve_conj().numpy()
    a = np.asarray(arr)
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} (the precision of this call), got {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape} ([batch, 2**n_qubits]), got {tuple(a.shape)}")
    return np.ascontiguousarray(a)


def wrap(result: np.ndarray, as_torch: bool):
    """Return NumPy, or a torch tensor sharing the memory when the caller passed tensors."""
    if not as_torch:
        return result
    import torch

    return torch.from_numpy(result)

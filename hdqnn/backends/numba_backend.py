"""Numba engine: the CPU fallback when the C++ core is not built.

Each call is one compiled, multi-threaded kernel over the batch (see _numba_kernels). Kernels are
compiled on first use with ``cache=True``, so the JIT cost is paid once per machine; every kernel
exists in exactly two specialisations (complex64 and complex128), which is why the arrays passed in
are normalised here (C-contiguous, 2-D weights, read-only views) before they reach Numba.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ..circuits import Program
from . import _numba_kernels as kernels
from .base import REAL_OF, state_bytes

#: Blocks of samples per worker: enough that a fast thread can take over a slow one's share.
BLOCKS_PER_WORKER = 8
#: Below this many amplitude updates (batch * 2**n * gates, ~0.2 ms) a call runs on the calling
#: thread: a thread team costs more than it saves, and far more when a neighbour is busy.
SERIAL_WORK = 1 << 18


def _readonly(array: np.ndarray) -> np.ndarray:
    """A read-only view: Numba types writable and read-only arrays differently, so passing every
    input read-only keeps one compiled specialisation per precision."""
    view = array.view()
    view.flags.writeable = False
    return view


class _Call:
    """The normalised arguments shared by every kernel of one call."""

    def __init__(self, program: Program, inputs: np.ndarray, weights: np.ndarray, dtype,
                 n_threads: int) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype not in REAL_OF:
            raise TypeError(f"dtype must be complex64 or complex128, got {self.dtype}")
        self.real = REAL_OF[self.dtype]
        self.n = program.n_qubits
        self.dim = 1 << self.n
        self.gates = _readonly(np.ascontiguousarray(program.gates, dtype=np.int32))
        self.angle_src = _readonly(np.ascontiguousarray(program.angle_src, dtype=np.int32))
        self.angle_val = _readonly(np.ascontiguousarray(program.angle_val, dtype=np.float64))
        self.inputs = _readonly(np.ascontiguousarray(inputs, dtype=self.real))
        weights = np.ascontiguousarray(weights, dtype=self.real)
        self.shared_weights = weights.ndim == 1
        self.weights = _readonly(weights.reshape(1, -1) if self.shared_weights else weights)
        self.batch = self.inputs.shape[0]
        self.block, self.n_workers = _split(self.batch, self.dim, self.gates.shape[0], n_threads)

    @property
    def program_args(self) -> tuple:
        return (self.n, self.gates, self.angle_src, self.angle_val, self.inputs, self.weights)

    def workspace(self, states_per_worker: int) -> np.ndarray:
        """[workers, states_per_worker, 2**n] complex scratch states."""
        return np.empty((self.n_workers, states_per_worker, self.dim), dtype=self.dtype)


def _split(batch: int, dim: int, n_gates: int, n_threads: int) -> tuple[int, int]:
    """(samples per block, workers) of a call: one worker below SERIAL_WORK."""
    work = batch * dim * max(1, n_gates)
    threads = 1 if work < SERIAL_WORK else n_threads
    if threads == 1:
        return batch, 1
    block = math.ceil(batch / (threads * BLOCKS_PER_WORKER))
    return block, min(threads, math.ceil(batch / block))


#: Scratch states per worker (``_Call.workspace``) of each task; statevector writes its result.
_WORKER_STATES = {"statevector": 0, "probabilities": 1, "expval": 1, "vjp": 2}


def _paulis(paulis: np.ndarray) -> np.ndarray:
    return _readonly(np.ascontiguousarray(paulis, dtype=np.int8))


def _launch(kernel, call: _Call, *args) -> None:
    """Run ``kernel`` with a thread team of exactly ``call.n_workers`` (Numba's thread count is
    per calling thread, so it is set for this call and restored)."""
    if call.n_workers == 1:
        kernel(*args, call.block, 1)
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(call.n_workers)
    try:
        kernel(*args, call.block, call.n_workers)
    finally:
        numba.set_num_threads(previous)


#: numba's thread pool size, fixed when numba starts; read once because numba re-reads its config
#: from the environment during later compilations and the live value can drift from the pool.
_POOL_SIZE = max(1, numba.config.NUMBA_NUM_THREADS)


class NumbaBackend:
    """Numba CPU engine: one parallel compiled call per batch, adjoint gradients."""

    name = "numba"

    def __init__(self) -> None:
        self._n_threads = numba.get_num_threads()

    def set_num_threads(self, n: int) -> None:
        """Threads used across samples, capped at NUMBA_NUM_THREADS (numba's pool, fixed at start).

        The registry passes one count to every engine, so a count above the pool is capped here
        rather than refused.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"numba backend: number of threads must be a positive int, got {n!r}")
        n = min(int(n), _POOL_SIZE)
        numba.set_num_threads(n)
        self._n_threads = n

    def workspace_bytes(self, task: str, program: Program, batch: int, n_terms: int, dtype) -> int:
        """The workers' scratch states, and the VJP's float64 gradient accumulators."""
        del n_terms
        _, workers = _split(batch, 1 << program.n_qubits, program.gates.shape[0], self._n_threads)
        scratch = workers * _WORKER_STATES[task] * state_bytes(program, dtype)
        if task != "vjp":
            return scratch
        float64 = np.dtype(np.float64).itemsize
        return scratch + float64 * (batch * program.n_inputs + max(batch, workers) * program.n_weights)

    def _call(self, program: Program, inputs: np.ndarray, weights: np.ndarray, dtype) -> _Call:
        return _Call(program, inputs, weights, dtype, self._n_threads)

    def statevector(self, program: Program, inputs: np.ndarray, weights: np.ndarray,
                    dtype) -> np.ndarray:
        """[B, 2**n] complex ``dtype``."""
        call = self._call(program, inputs, weights, dtype)
        out = np.empty((call.batch, call.dim), dtype=call.dtype)
        _launch(kernels.statevector_kernel, call, *call.program_args, out)
        return out

    def probabilities(self, program: Program, inputs: np.ndarray, weights: np.ndarray,
                      dtype) -> np.ndarray:
        """[B, 2**n] real, |amplitude|**2."""
        call = self._call(program, inputs, weights, dtype)
        out = np.empty((call.batch, call.dim), dtype=call.real)
        _launch(kernels.probabilities_kernel, call, *call.program_args, call.workspace(1), out)
        return out

    def expval(self, program: Program, inputs: np.ndarray, weights: np.ndarray,
               paulis: np.ndarray, dtype) -> np.ndarray:
        """[B, K] real expectations of the Pauli strings int8 [K, n]."""
        call = self._call(program, inputs, weights, dtype)
        out = np.empty((call.batch, paulis.shape[0]), dtype=call.real)
        _launch(kernels.expval_kernel, call, *call.program_args, _paulis(paulis),
                call.workspace(1), out)
        return out

    def vjp(self, program: Program, inputs: np.ndarray, weights: np.ndarray, paulis: np.ndarray,
            grad_output: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
        """(grad_inputs [B, n_inputs], grad_weights shaped like ``weights``) of
        sum(grad_output * expval), by the adjoint method."""
        call = self._call(program, inputs, weights, dtype)
        grad_output = _readonly(np.ascontiguousarray(grad_output, dtype=call.real))
        grad_inputs = np.zeros(call.inputs.shape, dtype=np.float64)
        weight_rows = call.n_workers if call.shared_weights else call.batch
        grad_weights = np.zeros((weight_rows, call.weights.shape[1]), dtype=np.float64)
        _launch(kernels.vjp_kernel, call, *call.program_args, _paulis(paulis), grad_output,
                call.workspace(2), grad_inputs, grad_weights, call.shared_weights)
        if call.shared_weights:
            grad_weights = grad_weights.sum(axis=0)
        return grad_inputs.astype(call.real), grad_weights.astype(call.real)

"""The compiled C++/OpenMP engine (module ``hdqnn._core_cpu``, built by ``pip install .``).

One call runs the whole program for the whole batch: samples are simulated in small interleaved
blocks whose states stay in cache, in parallel across samples (or across amplitudes when one state
is large), with the adjoint method for gradients. Importing this module raises ImportError when
the extension was not built; the backend registry then falls back to the next engine.

Faults: a long call made on the main thread stops within a gate pass on Ctrl-C (the
KeyboardInterrupt propagates and the engine stays usable); a child process forked after the
amplitude-parallel (OpenMP) path ran runs its calls without that path, since OpenMP's threads do
not survive fork(); a daemon thread inside a call when the interpreter exits is left parked.
"""
from __future__ import annotations

import numpy as np

from .. import _core_cpu as _core
from ..circuits import Program
from .base import REAL_OF


def openmp_enabled() -> bool:
    """Whether the extension was compiled with OpenMP (otherwise it runs serially)."""
    return bool(_core.openmp_enabled())


def max_threads() -> int:
    """OpenMP's thread limit for this process (1 without OpenMP)."""
    return int(_core.max_threads())


def isa() -> str:
    """Instruction-set variant of the kernels in use: "avx512", "avx2", "base" or "native"."""
    return str(_core.isa())


def _real_dtype(inputs: np.ndarray, dtype) -> np.dtype:
    """The float dtype matching complex ``dtype``; inputs must already have it."""
    complex_dtype = np.dtype(dtype)
    real = REAL_OF.get(complex_dtype)
    if real is None:
        raise TypeError(f"dtype must be complex64 or complex128, got {complex_dtype}")
    if inputs.dtype != real:
        raise TypeError(f"{complex_dtype} simulation needs {real} inputs, got {inputs.dtype}")
    return real


class CppBackend:
    """Backend protocol (hdqnn.backends.base.Backend) on the compiled engine."""

    name = "cpp"

    def set_num_threads(self, n: int) -> None:
        """Threads used across samples; calls below a work threshold stay on one thread."""
        _core.set_num_threads(n)

    def workspace_bytes(self, task: str, program: Program, batch: int, n_terms: int, dtype) -> int:
        """The workspace of kernels.cpp (run_lanes) and engine.cpp (phase_tables) under the policy
        the engine will choose: per state set, re and im of ``lanes`` states (and of lambda for
        the adjoint), one set per thread (one shared set when threads split amplitudes), the
        threads' cache-blocking chunks, and with phase deferral at most one table per gate."""
        del n_terms  # the per-thread Pauli accumulators are a few bytes per term
        real = REAL_OF[np.dtype(dtype)].itemsize
        n_gates = len(program.gates)
        policy = _core.policy(task, program.n_qubits, batch, n_gates, real == 8)
        arrays = 4 if task == "vjp" else 2
        threads, lanes, dim = policy["threads"], policy["lanes"], 1 << program.n_qubits
        state_sets = 1 if policy["amplitude_parallel"] else threads
        states = state_sets * arrays * lanes * dim * real
        chunks = threads * arrays * lanes * (1 << policy["chunk_bits"]) * real if policy["chunk_bits"] else 0
        tables = (2 * real * n_gates + 4) * dim if policy["defer_phases"] else 0
        return states + chunks + tables

    def statevector(self, program: Program, inputs: np.ndarray, weights: np.ndarray, dtype) -> np.ndarray:
        """[B, 2**n] complex ``dtype``."""
        _real_dtype(inputs, dtype)
        return _core.statevector(*_program_args(program), inputs, weights)

    def probabilities(self, program: Program, inputs: np.ndarray, weights: np.ndarray, dtype) -> np.ndarray:
        """[B, 2**n] real (float32 for complex64), |amplitude|**2."""
        _real_dtype(inputs, dtype)
        return _core.probabilities(*_program_args(program), inputs, weights)

    def expval(
        self, program: Program, inputs: np.ndarray, weights: np.ndarray, paulis: np.ndarray, dtype
    ) -> np.ndarray:
        """[B, K] real expectations of the Pauli strings ``paulis`` (int8 [K, n])."""
        _real_dtype(inputs, dtype)
        return _core.expval(*_program_args(program), inputs, weights, paulis)

    def expval_state(
        self, program: Program, inputs: np.ndarray, weights: np.ndarray, paulis: np.ndarray, dtype
    ) -> tuple[np.ndarray, np.ndarray]:
        """(expectations [B, K], final states [B, 2**n] complex ``dtype``) of one forward pass:
        the states ``vjp``'s ``final_state`` starts from."""
        _real_dtype(inputs, dtype)
        return _core.expval_state(*_program_args(program), inputs, weights, paulis)

    def vjp(
        self, program: Program, inputs: np.ndarray, weights: np.ndarray, paulis: np.ndarray,
        grad_output: np.ndarray, dtype, final_state: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(grad_inputs [B, n_inputs], grad_weights shaped like ``weights``) of
        sum(grad_output * expval), by the adjoint method; from ``final_state`` (``expval_state``'s
        states of these inputs and weights) without a forward pass when given."""
        _real_dtype(inputs, dtype)
        return _core.vjp(*_program_args(program), inputs, weights, paulis, grad_output, final_state)


def _program_args(program: Program) -> tuple:
    """The program arrays as the extension takes them (already int32 / float64 C-contiguous)."""
    return program.gates, program.angle_src, program.angle_val, program.n_qubits

"""The backend interface: one name, one signature in every engine.

Every backend receives arrays that ``hdqnn.sim`` has already validated:
  program:     hdqnn.circuits.Program
  inputs:      [B, n_inputs] float32 (complex64 runs) or float64 (complex128 runs), C-contiguous;
               B >= 1 always comes from here, n_inputs may be 0
  weights:     [n_weights] shared, or [B, n_weights] per sample; same float dtype, C-contiguous
  paulis:      int8 [K, n_qubits] (0=I, 1=X, 2=Y, 3=Z)
  grad_output: [B, K] same float dtype
and returns fresh arrays of the matching precision.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from ..circuits import Program

REAL_OF = {np.dtype(np.complex64): np.dtype(np.float32), np.dtype(np.complex128): np.dtype(np.float64)}


class Backend(Protocol):
    name: str

    def statevector(self, program: Program, inputs: np.ndarray, weights: np.ndarray, dtype) -> np.ndarray:
        """[B, 2**n] complex ``dtype``."""

    def probabilities(self, program: Program, inputs: np.ndarray, weights: np.ndarray, dtype) -> np.ndarray:
        """[B, 2**n] real, |amplitude|**2."""

    def expval(self, program: Program, inputs: np.ndarray, weights: np.ndarray, paulis: np.ndarray, dtype) -> np.ndarray:
        """[B, K] real expectations of the Pauli strings."""

    def vjp(
        self, program: Program, inputs: np.ndarray, weights: np.ndarray, paulis: np.ndarray,
        grad_output: np.ndarray, dtype,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(grad_inputs [B, n_inputs], grad_weights shaped like ``weights``) of
        sum(grad_output * expval)."""

    # Optional, where the engine can hand its final states from a forward pass to the adjoint
    # sweep (hdqnn.sim uses it when present): expval_state(program, inputs, weights, paulis, dtype)
    # -> (expectations [B, K], states [B, 2**n]), and vjp(..., final_state=states).

    def set_num_threads(self, n: int) -> None:
        """Threads used across samples (no-op where the engine is serial)."""

    def workspace_bytes(self, task: str, program: Program, batch: int, n_terms: int, dtype) -> int:
        """Most bytes one call of ``task`` (a method name above) allocates besides the arrays it
        returns: its per-worker states, tables and temporaries. ``hdqnn.sim`` adds the results
        and refuses, before the call, one that would not fit in memory. Optional: an engine
        without it is charged for its results only."""


def state_bytes(program: Program, dtype) -> int:
    """Bytes of one 2**n state of complex ``dtype``."""
    return (1 << program.n_qubits) * np.dtype(dtype).itemsize


def sample_angles(program: Program, inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-sample angle of every slot, [B, A] float64 (NumPy; used by the reference and tests)."""
    src, idx = program.angle_src[:, 0], program.angle_src[:, 1]
    b = inputs.shape[0]
    theta = np.broadcast_to(program.angle_val, (b, len(src))).astype(np.float64).copy()
    w2 = weights.reshape(1, -1) if weights.ndim == 1 else weights
    for a in range(len(src)):
        if src[a] == 1:
            theta[:, a] *= inputs[:, idx[a]]
        elif src[a] == 2:
            theta[:, a] *= w2[:, idx[a]]
    return theta


def scatter_angle_grads(
    program: Program, g_theta: np.ndarray, inputs: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Chain rule from slot gradients [B, A] to (grad_inputs, grad_weights)."""
    src, idx, scale = program.angle_src[:, 0], program.angle_src[:, 1], program.angle_val
    gi = np.zeros(inputs.shape, dtype=np.float64)
    gw = np.zeros((inputs.shape[0], weights.shape[-1]), dtype=np.float64)
    for a in range(len(src)):
        if src[a] == 1:
            gi[:, idx[a]] += scale[a] * g_theta[:, a]
        elif src[a] == 2:
            gw[:, idx[a]] += scale[a] * g_theta[:, a]
    if weights.ndim == 1:
        gw = gw.sum(axis=0)
    return gi.astype(inputs.dtype), gw.astype(weights.dtype)

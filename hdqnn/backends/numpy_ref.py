"""NumPy reference engine: slow and obviously right; the oracle every other backend is tested against.

It applies each gate's matrix (from hdqnn.circuits.gates) with einsum on a [B, 2, ..., 2] tensor
and differentiates by replacing one gate at a time with its derivative matrix, so it shares no
algorithm with the adjoint sweep of the compiled engines.
"""
from __future__ import annotations

import numpy as np

from ..circuits import GATES_BY_CODE, Program, gate_matrix, gate_matrix_derivative
from .base import sample_angles, scatter_angle_grads, state_bytes

_PAULI_MATRICES = {
    1: np.array([[0, 1], [1, 0]], dtype=np.complex128),
    2: np.array([[0, -1j], [1j, 0]], dtype=np.complex128),
    3: np.diag([1.0, -1.0]).astype(np.complex128),
}


def _apply(psi: np.ndarray, mats: np.ndarray, wires: tuple[int, ...]) -> np.ndarray:
    """psi [B, 2, ..., 2]; mats [B, 2**k, 2**k] acting on ``wires`` (first wire most significant)."""
    b, k = psi.shape[0], len(wires)
    axes = [1 + w for w in wires]
    moved = np.moveaxis(psi, axes, list(range(1, 1 + k)))
    shape = moved.shape
    flat = moved.reshape(b, 2**k, -1)
    out = np.einsum("bij,bjr->bir", mats, flat).reshape(shape)
    return np.moveaxis(out, list(range(1, 1 + k)), axes)


def _gate_mats(program: Program, g: int, theta: np.ndarray, deriv: int | None = None) -> np.ndarray:
    code, _, _, first = program.gates[g]
    spec = GATES_BY_CODE[int(code)]
    b = theta.shape[0]
    if spec.n_angles == 0:
        return np.broadcast_to(gate_matrix(spec.name), (b, 2**spec.n_wires, 2**spec.n_wires))
    angles = theta[:, first : first + spec.n_angles]
    if deriv is None:
        return np.stack([gate_matrix(spec.name, *row) for row in angles])
    return np.stack([gate_matrix_derivative(spec.name, tuple(row), deriv) for row in angles])


def _wires(program: Program, g: int) -> tuple[int, ...]:
    spec = GATES_BY_CODE[int(program.gates[g, 0])]
    return tuple(int(w) for w in program.gates[g, 1 : 1 + spec.n_wires])


def _run(program: Program, theta: np.ndarray, replace: tuple[int, int] | None = None) -> np.ndarray:
    """Final states [B, 2**n]; ``replace=(gate, angle)`` swaps that gate for its derivative."""
    n, b = program.n_qubits, theta.shape[0]
    psi = np.zeros((b, 2**n), dtype=np.complex128)
    psi[:, 0] = 1.0
    psi = psi.reshape((b,) + (2,) * n)
    for g in range(len(program.gates)):
        deriv = replace[1] if replace is not None and replace[0] == g else None
        psi = _apply(psi, _gate_mats(program, g, theta, deriv), _wires(program, g))
    return psi.reshape(b, 2**n)


def _apply_pauli(psi: np.ndarray, row: np.ndarray) -> np.ndarray:
    b, n = psi.shape[0], len(row)
    t = psi.reshape((b,) + (2,) * n)
    for w, code in enumerate(row):
        if code:
            t = _apply(t, np.broadcast_to(_PAULI_MATRICES[int(code)], (b, 2, 2)), (w,))
    return t.reshape(b, -1)


def _expectations(bra: np.ndarray, ket: np.ndarray, paulis: np.ndarray) -> np.ndarray:
    """Re <bra|P_k|ket> for every Pauli row, [B, K]."""
    out = np.zeros((bra.shape[0], len(paulis)))
    for k, row in enumerate(paulis):
        out[:, k] = np.einsum("bi,bi->b", bra.conj(), _apply_pauli(ket, row)).real
    return out


#: Batched complex128 states the reference holds at once besides its result (measured): the state,
#: and the moved copy and product of a gate's einsum; expectations add Pauli-applied copies, and
#: the VJP a derivative state.
_REFERENCE_STATES = {"statevector": 3, "probabilities": 3, "expval": 5, "vjp": 6}


class NumpyBackend:
    """Reference engine (complex128 internally, cast to the requested precision)."""

    name = "numpy"

    def set_num_threads(self, n: int) -> None:
        del n

    def workspace_bytes(self, task: str, program: Program, batch: int, n_terms: int, dtype) -> int:
        del n_terms, dtype  # the reference always simulates in complex128
        return _REFERENCE_STATES[task] * batch * state_bytes(program, np.complex128)

    def statevector(self, program, inputs, weights, dtype):
        return _run(program, sample_angles(program, inputs, weights)).astype(dtype)

    def probabilities(self, program, inputs, weights, dtype):
        psi = _run(program, sample_angles(program, inputs, weights))
        return (np.abs(psi) ** 2).astype(inputs.dtype)

    def expval(self, program, inputs, weights, paulis, dtype):
        psi = _run(program, sample_angles(program, inputs, weights))
        return _expectations(psi, psi, paulis).astype(inputs.dtype)

    def vjp(self, program, inputs, weights, paulis, grad_output, dtype):
        theta = sample_angles(program, inputs, weights)
        psi = _run(program, theta)
        g_theta = np.zeros_like(theta)
        for g in range(len(program.gates)):
            spec = GATES_BY_CODE[int(program.gates[g, 0])]
            for j in range(spec.n_angles):
                dpsi = _run(program, theta, replace=(g, j))
                # d<psi|P|psi> = 2 Re <psi|P|dpsi> for Hermitian P
                d_exp = 2.0 * _expectations(psi, dpsi, paulis)
                g_theta[:, program.gates[g, 3] + j] = np.sum(d_exp * grad_output, axis=1)
        return scatter_angle_grads(program, g_theta, inputs, weights)

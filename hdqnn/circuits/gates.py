"""Gate table: the single source of truth for names, codes, arity and matrices.

Codes are part of the engine contract (csrc/include/hdqnn/gates.hpp mirrors them): never renumber.
Matrices follow OpenQASM 3's stdgates.inc and Qiskit's gates of the same names; for two-qubit
gates the 4x4 matrix is indexed by 2 * bit(wire0) + bit(wire1), so for controlled gates wire0 is
the control.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class GateSpec:
    """Static description of one gate type."""

    name: str
    code: int
    n_wires: int
    n_angles: int
    #: True where the parameter-shift rule with shift pi/2 is exact for every angle.
    two_eigenvalue_generator: bool


_I2 = np.eye(2, dtype=np.complex128)


def _rx(t: float) -> np.ndarray:
    c, s = np.cos(t / 2), np.sin(t / 2)
    return np.array([[c, -1j * s], [-1j * s, c]])


def _ry(t: float) -> np.ndarray:
    c, s = np.cos(t / 2), np.sin(t / 2)
    return np.array([[c, -s], [s, c]], dtype=np.complex128)


def _rz(t: float) -> np.ndarray:
    return np.diag([np.exp(-0.5j * t), np.exp(0.5j * t)])


def _p(t: float) -> np.ndarray:
    return np.diag([1.0, np.exp(1j * t)])


def _u(theta: float, phi: float, lam: float) -> np.ndarray:
    c, s = np.cos(theta / 2), np.sin(theta / 2)
    return np.array(
        [[c, -np.exp(1j * lam) * s], [np.exp(1j * phi) * s, np.exp(1j * (phi + lam)) * c]]
    )


def _controlled(m: np.ndarray) -> np.ndarray:
    out = np.eye(4, dtype=np.complex128)
    out[2:, 2:] = m
    return out


_X = np.array([[0, 1], [1, 0]], dtype=np.complex128)
_Y = np.array([[0, -1j], [1j, 0]], dtype=np.complex128)
_Z = np.diag([1.0, -1.0]).astype(np.complex128)


def _pauli_pair_rotation(pauli: np.ndarray) -> Callable[[float], np.ndarray]:
    pp = np.kron(pauli, pauli)

    def rot(t: float) -> np.ndarray:
        return np.cos(t / 2) * np.eye(4) - 1j * np.sin(t / 2) * pp

    return rot


_FIXED = {
    "x": _X,
    "y": _Y,
    "z": _Z,
    "h": np.array([[1, 1], [1, -1]], dtype=np.complex128) / np.sqrt(2),
    "s": np.diag([1, 1j]),
    "sdg": np.diag([1, -1j]),
    "t": np.diag([1, np.exp(0.25j * np.pi)]),
    "tdg": np.diag([1, np.exp(-0.25j * np.pi)]),
    "sx": 0.5 * np.array([[1 + 1j, 1 - 1j], [1 - 1j, 1 + 1j]]),
    "cx": _controlled(_X),
    "cy": _controlled(_Y),
    "cz": _controlled(_Z),
    "swap": np.array(
        [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.complex128
    ),
}

_PARAMETRIC: dict[str, Callable[..., np.ndarray]] = {
    "rx": _rx,
    "ry": _ry,
    "rz": _rz,
    "p": _p,
    "u": _u,
    "crx": lambda t: _controlled(_rx(t)),
    "cry": lambda t: _controlled(_ry(t)),
    "crz": lambda t: _controlled(_rz(t)),
    "cp": lambda t: _controlled(_p(t)),
    "rxx": _pauli_pair_rotation(_X),
    "ryy": _pauli_pair_rotation(_Y),
    "rzz": _pauli_pair_rotation(_Z),
}

# (name, code, wires, angles, two-eigenvalue generator)
_TABLE = [
    ("x", 0, 1, 0, False),
    ("y", 1, 1, 0, False),
    ("z", 2, 1, 0, False),
    ("h", 3, 1, 0, False),
    ("s", 4, 1, 0, False),
    ("sdg", 5, 1, 0, False),
    ("t", 6, 1, 0, False),
    ("tdg", 7, 1, 0, False),
    ("sx", 8, 1, 0, False),
    ("rx", 9, 1, 1, True),
    ("ry", 10, 1, 1, True),
    ("rz", 11, 1, 1, True),
    ("p", 12, 1, 1, True),
    ("u", 13, 1, 3, True),
    ("cx", 14, 2, 0, False),
    ("cy", 15, 2, 0, False),
    ("cz", 16, 2, 0, False),
    ("swap", 17, 2, 0, False),
    ("crx", 18, 2, 1, False),
    ("cry", 19, 2, 1, False),
    ("crz", 20, 2, 1, False),
    ("cp", 21, 2, 1, True),
    ("rxx", 22, 2, 1, True),
    ("ryy", 23, 2, 1, True),
    ("rzz", 24, 2, 1, True),
]

GATES: dict[str, GateSpec] = {row[0]: GateSpec(*row) for row in _TABLE}
GATES_BY_CODE: dict[int, GateSpec] = {g.code: g for g in GATES.values()}
MAX_ANGLES = 3


def gate_matrix(name: str, *angles: float) -> np.ndarray:
    """The gate's unitary, [2, 2] or [4, 4] complex128 (two-qubit index 2*bit(w0) + bit(w1))."""
    spec = GATES.get(name)
    if spec is None:
        raise ValueError(f"unknown gate {name!r}; known gates: {sorted(GATES)}")
    if len(angles) != spec.n_angles:
        raise ValueError(f"gate {name!r} takes {spec.n_angles} angle(s), got {len(angles)}")
    if spec.n_angles == 0:
        return _FIXED[name].astype(np.complex128)
    return np.asarray(_PARAMETRIC[name](*angles), dtype=np.complex128)


def gate_matrix_derivative(name: str, angles: tuple[float, ...], which: int) -> np.ndarray:
    """d(gate matrix)/d(angles[which]), analytic, same shape as ``gate_matrix``.

    Rotations exp(-i t/2 G) with G**2 = I satisfy dU/dt = U(t + pi) / 2; phase-type angles
    (p, cp and u's phi, lambda) are differentiated term by term.
    """
    spec = GATES[name]
    if not 0 <= which < spec.n_angles:
        raise ValueError(f"gate {name!r} has no angle {which}")
    angles = tuple(float(a) for a in angles)
    if name in ("rx", "ry", "rz", "rxx", "ryy", "rzz"):
        return gate_matrix(name, angles[0] + np.pi) / 2
    if name in ("crx", "cry", "crz"):
        out = np.zeros((4, 4), dtype=np.complex128)
        out[2:, 2:] = gate_matrix(name[1:], angles[0] + np.pi) / 2
        return out
    if name in ("p", "cp"):
        d = np.zeros((2, 2), dtype=np.complex128)
        d[1, 1] = 1j * np.exp(1j * angles[0])
        if name == "p":
            return d
        out = np.zeros((4, 4), dtype=np.complex128)
        out[2:, 2:] = d
        return out
    theta, phi, lam = angles
    if which == 0:
        return _u(theta + np.pi, phi, lam) / 2
    c, s = np.cos(theta / 2), np.sin(theta / 2)
    if which == 1:
        return np.array([[0, 0], [1j * np.exp(1j * phi) * s, 1j * np.exp(1j * (phi + lam)) * c]])
    return np.array([[0, -1j * np.exp(1j * lam) * s], [0, 1j * np.exp(1j * (phi + lam)) * c]])

"""Ansatz builders: angle encoding, hardware-efficient layers, data re-uploading.

Weight layout of ``hardware_efficient``: layer-major, then wire, then rotation, so weight
``(l * n_qubits + q) * len(rotations) + r`` is rotation ``r`` on wire ``q`` in layer ``l``.
"""
from __future__ import annotations

from typing import Sequence

from .circuit import Circuit, Input, Weight

ENCODINGS = ("rx", "ry", "rz")
ROTATIONS = ("rx", "ry", "rz")
ENTANGLERS = ("ring", "linear", "all", "none")


def _check_choice(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")


def angle_encoding(
    circuit: Circuit, gate: str = "ry", wires: Sequence[int] | None = None, first_input: int = 0,
    scale: float = 1.0,
) -> Circuit:
    """Rotate wire ``wires[i]`` by ``scale * inputs[:, first_input + i]``."""
    _check_choice(gate, ENCODINGS, "encoding gate")
    wires = range(circuit.n_qubits) if wires is None else wires
    for i, w in enumerate(wires):
        circuit.append(gate, w, Input(first_input + i, scale))
    return circuit


def entangle(circuit: Circuit, pattern: str = "ring", gate: str = "cx") -> Circuit:
    """CNOT (or ``gate``) entangler: ring (i, i+1 mod n), linear chain, or all pairs i < j."""
    _check_choice(pattern, ENTANGLERS, "entangler")
    n = circuit.n_qubits
    if pattern == "none" or n == 1:
        return circuit
    if pattern == "all":
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    else:
        pairs = [(i, i + 1) for i in range(n - 1)]
        if pattern == "ring" and n > 2:
            pairs.append((n - 1, 0))
    for a, b in pairs:
        circuit.append(gate, (a, b))
    return circuit


def rotation_layer(
    circuit: Circuit, first_weight: int, rotations: Sequence[str] = ("ry", "rz")
) -> int:
    """One trainable rotation per (wire, rotation); returns the next free weight index."""
    for r in rotations:
        _check_choice(r, ROTATIONS, "rotation")
    w = first_weight
    for q in range(circuit.n_qubits):
        for r in rotations:
            circuit.append(r, q, Weight(w))
            w += 1
    return w


def hardware_efficient(
    n_qubits: int,
    n_layers: int,
    encoding: str = "ry",
    rotations: Sequence[str] = ("ry", "rz"),
    entangler: str = "ring",
    reupload: bool = False,
    input_scale: float = 1.0,
) -> Circuit:
    """The hDQNN ansatz: angle encoding of ``n_qubits`` inputs, then ``n_layers`` of trainable
    rotations and an entangler. With ``reupload`` the encoding is repeated before every layer
    (data re-uploading). Inputs: ``n_qubits``; weights: ``n_layers * n_qubits * len(rotations)``.
    """
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    circuit = Circuit(n_qubits)
    w = 0
    for layer in range(n_layers):
        if layer == 0 or reupload:
            angle_encoding(circuit, encoding, scale=input_scale)
        w = rotation_layer(circuit, w, rotations)
        entangle(circuit, entangler)
    if n_layers == 0:
        angle_encoding(circuit, encoding, scale=input_scale)
    return circuit


def data_reuploading(n_qubits: int, n_layers: int, **kwargs) -> Circuit:
    """``hardware_efficient`` with the encoding repeated before each layer."""
    return hardware_efficient(n_qubits, n_layers, reupload=True, **kwargs)

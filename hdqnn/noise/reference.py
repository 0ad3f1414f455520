"""NumPy reference of noisy simulation: slow, plain, and the oracle for the compiled noisy engines.

Why here and not in ``hdqnn/backends``: the engines execute a compiled ``Program`` and will take a
noise model compiled to flat tables; an oracle that shared that compilation could share its bugs.
This module instead walks the circuit's own gate list (``Circuit.operations``), binds each angle
from its ``Input``/``Weight`` itself, asks the :class:`NoiseModel` which channels follow each gate,
and applies gate matrices and Kraus operators to a batch of density matrices with ``einsum``. It
needs only ``circuits`` and NumPy, so it stays inside the noise layer of the import table.

Density matrices are ``[B, 2**n, 2**n]`` complex128 with wire 0 the most significant bit of both
indices (hdqnn's order; Qiskit's is reversed). Readout errors act on what is measured:
probabilities, and expectations, each Pauli string measured as a device measures it (rotated to
the Z basis, read out, the parity of its wires taken); ``readout=False`` gives the
pre-measurement values.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..circuits import Circuit, Input, Weight, compile_observables, gate_matrix
from .model import NoiseModel, check_model

_H = np.array([[1, 1], [1, -1]], dtype=np.complex128) / np.sqrt(2)
_SDG = np.diag([1, -1j])
#: Rotation taking each Pauli's eigenbasis to Z's (R P R^dagger = Z), by Pauli code 1-3 (X, Y, Z).
_TO_Z_BASIS = {1: _H, 2: _H @ _SDG, 3: np.eye(2, dtype=np.complex128)}


# ---------------------------------------------------------------------- inputs
def _as_matrix(values, name: str, columns: int) -> Optional[np.ndarray]:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1 and name == "weights":
        arr = arr[None]  # shared weights: one row for every sample
    if arr.ndim != 2 or arr.shape[1] != columns:
        raise ValueError(f"{name} must be [B, {columns}]" + (" or [P]" if name == "weights" else "")
                         + f", got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _bind(circuit: Circuit, inputs, weights) -> tuple[int, list[np.ndarray]]:
    """Batch size and, per operation, its angles [B, n_angles] float64."""
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit must be an hdqnn.Circuit, got {type(circuit).__name__}")
    x = _as_matrix(inputs, "inputs", circuit.n_inputs)
    w = _as_matrix(weights, "weights", circuit.n_weights)
    if x is None and circuit.n_inputs:
        raise ValueError(f"the circuit reads {circuit.n_inputs} input column(s); pass inputs")
    if w is None and circuit.n_weights:
        raise ValueError(f"the circuit reads {circuit.n_weights} weight(s); pass weights")
    sizes = {a.shape[0] for a in (x, w) if a is not None and a.shape[0] != 1}
    if len(sizes) > 1:
        raise ValueError(f"inputs and per-sample weights disagree on the batch size: {sorted(sizes)}")
    batch = sizes.pop() if sizes else (x.shape[0] if x is not None else 1)

    def value(angle) -> np.ndarray:
        if isinstance(angle, Input):
            return np.broadcast_to(angle.scale * x[:, angle.index], (batch,))
        if isinstance(angle, Weight):
            return np.broadcast_to(angle.scale * w[:, angle.index], (batch,))
        return np.full(batch, float(angle))

    angles = [np.stack([value(a) for a in op.angles], axis=1) if op.angles else np.zeros((batch, 0))
              for op in circuit.operations]
    return batch, angles


# ---------------------------------------------------------------------- tensor algebra
def _apply_on_axes(t: np.ndarray, mats: np.ndarray, axes: list[int]) -> np.ndarray:
    """Multiply the tensor's ``axes`` (first most significant) by ``mats`` [B, m, m] from the left."""
    b, k = t.shape[0], len(axes)
    targets = list(range(1, 1 + k))
    moved = np.moveaxis(t, axes, targets)
    shape = moved.shape
    out = np.einsum("bij,bjr->bir", mats, moved.reshape(b, 2**k, -1)).reshape(shape)
    return np.moveaxis(out, targets, axes)


def _sandwich(rho: np.ndarray, mats: np.ndarray, wires: tuple[int, ...], n: int) -> np.ndarray:
    """``M rho M^dagger`` on ``wires`` for a density tensor [B, 2]*(2n) (row axes, then column axes)."""
    rows = [1 + w for w in wires]
    cols = [1 + n + w for w in wires]
    return _apply_on_axes(_apply_on_axes(rho, mats, rows), mats.conj(), cols)


def _apply_channel(rho: np.ndarray, kraus_ops: np.ndarray, wires: tuple[int, ...], n: int) -> np.ndarray:
    b = rho.shape[0]
    return sum(_sandwich(rho, np.broadcast_to(k, (b,) + k.shape), wires, n) for k in kraus_ops)


# ---------------------------------------------------------------------- public calls
def density_matrix(circuit: Circuit, inputs=None, weights=None, noise: Optional[NoiseModel] = None) -> np.ndarray:
    """The noisy state before measurement, [B, 2**n, 2**n] complex128.

    inputs: [B, n_inputs] (may be omitted when the circuit reads none); weights: [P] shared or
    [B, P] per sample; noise: a NoiseModel (None: the noiseless circuit).
    """
    batch, angles = _bind(circuit, inputs, weights)
    n = circuit.n_qubits
    if noise is not None:
        check_model(noise, n)
    rho = np.zeros((batch,) + (2,) * (2 * n), dtype=np.complex128)
    rho[(slice(None),) + (0,) * (2 * n)] = 1.0
    for op, op_angles in zip(circuit.operations, angles):
        mats = np.stack([gate_matrix(op.name, *row) for row in op_angles])
        rho = _sandwich(rho, mats, op.wires, n)
        for channel in noise.channels_after(op.name, op.wires) if noise is not None else ():
            rho = _apply_channel(rho, channel.kraus_ops, op.wires, n)
    return rho.reshape(batch, 2**n, 2**n)


def _read_out(probs: np.ndarray, noise: Optional[NoiseModel], n: int) -> np.ndarray:
    """Apply each wire's readout confusion to probabilities [B, 2**n]."""
    if noise is None or not noise.has_readout:
        return probs
    b = probs.shape[0]
    t = probs.reshape((b,) + (2,) * n)
    for wire in range(n):
        error = noise.readout_error(wire)
        if error is not None:
            t = np.moveaxis(np.tensordot(error.confusion, t, axes=([1], [1 + wire])), 0, 1 + wire)
    return t.reshape(b, 2**n)


def probabilities(circuit: Circuit, inputs=None, weights=None, noise: Optional[NoiseModel] = None,
                  readout: bool = True) -> np.ndarray:
    """Probabilities of the measured bit strings, [B, 2**n] float64 (wire 0 the most significant
    bit); readout errors applied unless ``readout=False``."""
    rho = density_matrix(circuit, inputs, weights, noise)
    probs = np.real(np.einsum("bii->bi", rho))
    return _read_out(probs, noise, circuit.n_qubits) if readout else probs


def expval(circuit: Circuit, inputs=None, weights=None, noise: Optional[NoiseModel] = None,
           observables=None, readout: bool = True) -> np.ndarray:
    """Pauli-string expectations [B, K] float64 (observables as in ``hdqnn.expval``; default Z on
    each wire). Each string is measured as a device would: its wires rotated to the Z basis,
    measured (with readout error unless ``readout=False``), and the parity of its wires averaged."""
    n = circuit.n_qubits
    table = compile_observables(observables, n)
    rho = density_matrix(circuit, inputs, weights, noise)
    batch = rho.shape[0]
    rho = rho.reshape((batch,) + (2,) * (2 * n))
    bits = (np.arange(2**n)[:, None] >> (n - 1 - np.arange(n))) & 1  # [2**n, n], wire 0 = top bit
    out = np.zeros((batch, len(table)))
    for k, row in enumerate(table):
        rotated = rho
        for wire, code in enumerate(row):
            if code:
                rotated = _sandwich(rotated, np.broadcast_to(_TO_Z_BASIS[int(code)], (batch, 2, 2)), (wire,), n)
        probs = np.real(np.einsum("bii->bi", rotated.reshape(batch, 2**n, 2**n)))
        if readout:
            probs = _read_out(probs, noise, n)
        parity = (-1.0) ** bits[:, row != 0].sum(axis=1)
        out[:, k] = probs @ parity
    return out

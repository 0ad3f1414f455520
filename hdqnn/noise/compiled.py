"""A NoiseModel compiled against one circuit's Program: flat arrays the noisy engines execute.

The engines (``hdqnn.backends.density``) never see a :class:`NoiseModel` or a :class:`Channel`:
the model is resolved here once per (circuit, model), gate by gate, into
  - ``channel_index`` int32 [G]: -1 for a noiseless gate, else the row of its channel tables;
  - ``superops`` complex128 [C, 16, 16]: the composition of every channel that follows that gate
    (the first channel applied first), as a superoperator on the row-major vectorised density
    matrix, one-qubit channels in the top-left [4, 4];
  - ``kraus`` complex128 [C, R, 4, 4] and ``kraus_count`` int32 [C]: the same composed channel as
    Kraus operators (for trajectories; one-qubit ones in the top-left [2, 2], padded with zeros);
  - ``confusion`` float64 [n, 2, 2]: each wire's readout confusion ``[measured, prepared]``
    (identity where the wire has none).
Readout error on a Pauli string measured as a device measures it (rotated to the Z basis, read
out, the parity of its wires taken) is itself linear in the state: on each wire of the string the
observable becomes ``alpha I + beta P`` with ``alpha = (p(1|1) - p(1|0)) ... `` (see
:func:`readout_terms`), so readout-aware expectations are fixed combinations of plain ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Optional

import numpy as np

from ..circuits import GATES_BY_CODE, Program
from .channels import Channel
from .model import NoiseModel, check_model

#: Largest superoperator of a gate's channel: two qubits, (2**2)**2 = 16.
SUPEROP_DIM = 16
#: Largest Kraus operator: two qubits.
KRAUS_DIM = 4


@dataclass(frozen=True)
class CompiledNoise:
    """Flat noise tables for one Program (see the module docstring)."""

    channel_index: np.ndarray
    superops: np.ndarray
    kraus: np.ndarray
    kraus_count: np.ndarray
    confusion: np.ndarray
    has_readout: bool

    @property
    def n_channels(self) -> int:
        return self.superops.shape[0]


def _compose(channels: tuple[Channel, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(superoperator, Kraus operators) of the channels applied one after the other."""
    superop = channels[0].superop
    ops = list(channels[0].kraus_ops)
    for ch in channels[1:]:
        superop = ch.superop @ superop
        ops = [k2 @ k1 for k2 in ch.kraus_ops for k1 in ops]
    kept = [k for k in ops if np.any(k != 0)] or ops[:1]
    return superop, np.stack(kept)


def compile_noise(program: Program, noise: NoiseModel) -> CompiledNoise:
    """Resolve ``noise`` for every gate of ``program`` into flat tables (the model is frozen)."""
    n = program.n_qubits
    check_model(noise, n)
    index = np.full(len(program.gates), -1, dtype=np.int32)
    cache: dict[tuple, int] = {}
    supers, krauses = [], []
    for g, row in enumerate(program.gates):
        spec = GATES_BY_CODE[int(row[0])]
        wires = tuple(int(w) for w in row[1 : 1 + spec.n_wires])
        channels = noise.channels_after(spec.name, wires)
        if not channels:
            continue
        key = tuple(id(c) for c in channels)
        if key not in cache:
            cache[key] = len(supers)
            s, k = _compose(channels)
            supers.append(s)
            krauses.append(k)
        index[g] = cache[key]
    n_ch = len(supers)
    rank = max((len(k) for k in krauses), default=1)
    superops = np.zeros((n_ch, SUPEROP_DIM, SUPEROP_DIM), dtype=np.complex128)
    kraus = np.zeros((n_ch, rank, KRAUS_DIM, KRAUS_DIM), dtype=np.complex128)
    count = np.zeros(n_ch, dtype=np.int32)
    for c, (s, k) in enumerate(zip(supers, krauses)):
        superops[c, : s.shape[0], : s.shape[1]] = s
        kraus[c, : len(k), : k.shape[1], : k.shape[2]] = k
        count[c] = len(k)
    confusion = np.broadcast_to(np.eye(2), (n, 2, 2)).copy()
    for wire in range(n):
        error = noise.readout_error(wire)
        if error is not None:
            confusion[wire] = error.confusion
    for arr in (index, superops, kraus, count, confusion):
        arr.setflags(write=False)
    return CompiledNoise(index, superops, kraus, count, confusion, noise.has_readout)


def readout_terms(paulis: np.ndarray, confusion: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pauli strings and weights whose plain expectations give readout-aware ones.

    paulis: int8 [K, n]; confusion: float64 [n, 2, 2] ``[measured, prepared]`` or None (no
    readout error). Returns (terms int8 [T, n], coeffs float64 [K, T]) with
    ``measured_k = sum_t coeffs[k, t] <terms[t]>``. Measuring wire w of a string in its Pauli's
    eigenbasis and reading it out multiplies its parity sign by ``a = 1 - 2 p(1|0)`` after a 0 and
    by ``-b = -(1 - 2 p(0|1))`` after a 1: the wire's observable becomes ``(a - b)/2 I + (a + b)/2 P``.
    """
    if confusion is None:
        return paulis, np.eye(len(paulis))
    terms: dict[bytes, int] = {}
    rows: list[np.ndarray] = []
    entries: list[tuple[int, int, float]] = []
    for k, row in enumerate(paulis):
        support = np.flatnonzero(row)
        a = confusion[support, 0, 0] - confusion[support, 1, 0]
        b = confusion[support, 1, 1] - confusion[support, 0, 1]
        alpha, beta = (a - b) / 2, (a + b) / 2
        for keep in product((0, 1), repeat=len(support)):
            keep = np.asarray(keep, dtype=bool)
            coeff = float(np.prod(np.where(keep, beta, alpha)))
            if coeff == 0.0:
                continue
            term = np.zeros_like(row)
            term[support[keep]] = row[support[keep]]
            key = term.tobytes()
            if key not in terms:
                terms[key] = len(rows)
                rows.append(term)
            entries.append((k, terms[key], coeff))
    coeffs = np.zeros((len(paulis), max(1, len(rows))))
    for k, t, c in entries:
        coeffs[k, t] += c
    table = np.stack(rows) if rows else np.zeros((1, paulis.shape[1]), dtype=paulis.dtype)
    return np.ascontiguousarray(table, dtype=np.int8), coeffs

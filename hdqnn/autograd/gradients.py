"""The parameter-shift rule, batched: every shifted circuit of a minibatch in one runner call.

A shared ``Input`` column or ``Weight`` may drive several gates, and shifting the column would
shift all of them at once, so the rule works on *angle slots*: :func:`slot_map` rewrites the circuit
so that every non-constant slot ``s`` reads its own per-row weight ``Weight(s)`` with scale 1.
A batch of B samples and S shifted slots becomes 2 * S * B rows of per-row slot angles, run in
one call; the slot gradients are chained back to inputs and weights through the slot scales.

The rule ``df/dt = (f(t + pi/2) - f(t - pi/2)) / 2`` is exact for gates ``exp(-i t G)`` whose
generator G has two eigenvalues +-1/2 (up to a global phase): rx, ry, rz, p, u, cp, rxx, ryy, rzz.
Controlled rotations (crx, cry, crz) have three eigenvalues and are refused with a clear error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..circuits import GATES, SRC_INPUT, SRC_WEIGHT, Circuit, Input, Weight, compile_observables
from .runner import CircuitRunner, SimulatorRunner

#: The shift of the two-term rule and its coefficient, for generators with eigenvalues +-1/2.
SHIFT = np.pi / 2
SHIFT_COEFF = 0.5
#: Largest per-row angle matrix (bytes) sent in one call; bigger batches are split by samples.
SHIFT_CHUNK_BYTES = 256 << 20


@dataclass(frozen=True)
class SlotMap:
    """A circuit's non-constant angle slots, and the circuit that reads each as its own weight.

    circuit: the slot circuit, slot j -> ``Weight(j)`` with scale 1 (no Inputs).
    source:  int [S], SRC_INPUT or SRC_WEIGHT of each slot in the original circuit.
    index:   int [S], the input column or weight index it reads.
    scale:   float64 [S], angle = scale * value.
    gates:   name of the gate each slot belongs to.
    """

    circuit: Circuit
    source: np.ndarray
    index: np.ndarray
    scale: np.ndarray
    gates: tuple[str, ...]

    @property
    def n_slots(self) -> int:
        return len(self.source)

    def angles(self, inputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Per-sample slot angles [B, S] (dtype of ``inputs``) for inputs [B, D], weights [P] | [B, P]."""
        b = inputs.shape[0]
        w2 = np.broadcast_to(weights, (b, weights.shape[-1])) if weights.ndim == 1 else weights
        theta = np.empty((b, self.n_slots), dtype=np.float64)
        is_in = self.source == SRC_INPUT
        theta[:, is_in] = inputs[:, self.index[is_in]] * self.scale[is_in]
        theta[:, ~is_in] = w2[:, self.index[~is_in]] * self.scale[~is_in]
        return theta.astype(inputs.dtype)

    def selected(self, need_inputs: bool, need_weights: bool) -> np.ndarray:
        """Indices of the slots whose gradient is needed."""
        keep = ((self.source == SRC_INPUT) & need_inputs) | ((self.source == SRC_WEIGHT) & need_weights)
        return np.flatnonzero(keep)

    def check_shiftable(self, slots: np.ndarray) -> None:
        """Raise ValueError naming every gate that the two-term rule cannot differentiate."""
        bad = sorted({self.gates[s] for s in slots if not GATES[self.gates[s]].two_eigenvalue_generator})
        if bad:
            raise ValueError(
                f"parameter-shift cannot differentiate gate(s) {bad}: their generators have more than two "
                "eigenvalues, so the two-term shift rule is not exact. Use grad='adjoint' or 'qtdnn', or "
                "decompose them (e.g. crz(t) = rz(t/2) on the target, cx, rz(-t/2), cx)"
            )


def slot_map(circuit: Circuit) -> SlotMap:
    """Rewrite ``circuit`` so each Input/Weight-driven angle slot is its own weight."""
    slot_circuit = Circuit(circuit.n_qubits)
    source, index, scale, gates = [], [], [], []
    for op in circuit.operations:
        angles = []
        for angle in op.angles:
            if isinstance(angle, (Input, Weight)):
                angles.append(Weight(len(source)))
                source.append(SRC_INPUT if isinstance(angle, Input) else SRC_WEIGHT)
                index.append(angle.index)
                scale.append(angle.scale)
                gates.append(op.name)
            else:
                angles.append(angle)
        slot_circuit.append(op.name, op.wires, angles)
    slot_circuit.compile()
    return SlotMap(slot_circuit, np.asarray(source, dtype=np.int64), np.asarray(index, dtype=np.int64),
                   np.asarray(scale, dtype=np.float64), tuple(gates))


def shifted_rows(theta: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """[B * S' * 2, S] angle rows: sample-major, then shifted slot, then (+shift, -shift)."""
    b, n_all = theta.shape
    rows = np.repeat(theta[:, None, None, :], len(slots), axis=1).repeat(2, axis=2)
    pick = np.arange(len(slots))
    rows[:, pick, 0, slots] += SHIFT
    rows[:, pick, 1, slots] -= SHIFT
    return rows.reshape(b * len(slots) * 2, n_all)


def shift_vjp(smap: SlotMap, runner: CircuitRunner, inputs: np.ndarray, weights: np.ndarray,
              grad_output: np.ndarray, observables: np.ndarray, shots: int | None,
              need_inputs: bool = True, need_weights: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """Parameter-shift VJP through ``runner``.

    inputs [B, D] and weights [P] | [B, P] (float32/float64), grad_output [B, K], observables
    int8 [K, n]. Returns (grad_inputs [B, D], grad_weights shaped like weights, circuit executions).
    """
    slots = smap.selected(need_inputs, need_weights)
    gi = np.zeros(inputs.shape, dtype=np.float64)
    gw = np.zeros((inputs.shape[0], weights.shape[-1]), dtype=np.float64)
    if len(slots):
        smap.check_shiftable(slots)
        g_slot = _slot_gradients(smap, runner, smap.angles(inputs, weights), slots,
                                 grad_output.astype(np.float64), observables, shots)
        for j, s in enumerate(slots):
            target = gi if smap.source[s] == SRC_INPUT else gw
            target[:, smap.index[s]] += smap.scale[s] * g_slot[:, j]
    if weights.ndim == 1:
        gw = gw.sum(axis=0)
    executions = 2 * len(slots) * inputs.shape[0]
    return gi.astype(inputs.dtype), gw.astype(weights.dtype), executions


def _slot_gradients(smap: SlotMap, runner: CircuitRunner, theta: np.ndarray, slots: np.ndarray,
                    grad_output: np.ndarray, observables: np.ndarray, shots: int | None) -> np.ndarray:
    """sum_k grad_output[b, k] * d f_k / d theta[b, s] for the selected slots: [B, S']."""
    b = theta.shape[0]
    row_bytes = 2 * len(slots) * smap.n_slots * theta.itemsize
    chunk = max(1, SHIFT_CHUNK_BYTES // row_bytes)  # samples per call; one call unless huge
    out = np.empty((b, len(slots)), dtype=np.float64)
    for lo in range(0, b, chunk):
        hi = min(b, lo + chunk)
        rows = shifted_rows(theta[lo:hi], slots)
        empty = np.zeros((rows.shape[0], 0), dtype=theta.dtype)
        f = np.asarray(runner.run(smap.circuit, empty, rows, shots, observables), dtype=np.float64)
        f = f.reshape(hi - lo, len(slots), 2, -1)
        d = SHIFT_COEFF * (f[:, :, 0] - f[:, :, 1])
        out[lo:hi] = np.einsum("bsk,bk->bs", d, grad_output[lo:hi])
    return out


def parameter_shift_vjp(circuit: Circuit, inputs: Any, weights: Any, grad_output: Any, observables: Any = None,
                        *, shots: int | None = None, runner: CircuitRunner | None = None,
                        backend: Any = None, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vector-Jacobian product of ``expval`` by the parameter-shift rule (all rows in one call).

    inputs [B, n_inputs], weights [n_weights] | [B, n_weights], grad_output [B, K] as NumPy
    arrays. Exact (equal to ``hdqnn.vjp``) without shots; unbiased with ``shots``. Runs on
    ``runner`` if given, else on the simulator ``backend``. Returns (grad_inputs, grad_weights).
    """
    x = np.ascontiguousarray(inputs if inputs is not None else np.zeros((1, 0)))
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    w = np.ascontiguousarray(weights if weights is not None else np.zeros(0), dtype=x.dtype)
    table = compile_observables(observables, circuit.n_qubits)
    g = np.asarray(grad_output, dtype=np.float64)
    if g.shape != (x.shape[0], table.shape[0]):
        raise ValueError(f"grad_output must have shape {(x.shape[0], table.shape[0])}, got {g.shape}")
    runner = runner if runner is not None else SimulatorRunner(backend, seed)
    gi, gw, _ = shift_vjp(slot_map(circuit), runner, x, w, g, table, shots)
    return gi, gw

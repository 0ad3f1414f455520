"""Random circuits that use every gate, for engine comparisons."""
from __future__ import annotations

import numpy as np

from hdqnn import Circuit, Input, Weight
from hdqnn.circuits import GATES


def random_angle(rng: np.random.Generator, n_inputs: int, n_weights: int):
    kind = rng.integers(3)
    if kind == 0:
        return float(rng.uniform(-np.pi, np.pi))
    if kind == 1:
        return Input(int(rng.integers(n_inputs)), float(rng.uniform(-1.5, 1.5)))
    return Weight(int(rng.integers(n_weights)), float(rng.uniform(-1.5, 1.5)))


def bind_angle(angle, x, w):
    """One sample's value of a gate angle: ``x`` and ``w`` are that sample's inputs and weights."""
    if isinstance(angle, Input):
        return angle.scale * x[angle.index]
    if isinstance(angle, Weight):
        return angle.scale * w[angle.index]
    return angle


def random_circuit(rng: np.random.Generator, n_qubits: int, n_gates: int | None = None,
                   n_inputs: int = 3, n_weights: int = 4) -> Circuit:
    """Every gate of the table at least once (those that fit), then random extra gates.

    Input and Weight index 0..n-1 each appear at least once so n_inputs/n_weights are exact.
    """
    names = [g for g in GATES if GATES[g].n_wires <= n_qubits]
    order = list(names) + [names[i] for i in rng.integers(len(names), size=n_gates or 2 * n_qubits)]
    c = Circuit(n_qubits)
    for i in range(n_inputs):
        c.ry(Input(i, float(rng.uniform(0.5, 1.5))), i % n_qubits)
    for j in range(n_weights):
        c.rx(Weight(j), j % n_qubits)
    for name in order:
        spec = GATES[name]
        wires = tuple(int(w) for w in rng.choice(n_qubits, size=spec.n_wires, replace=False))
        angles = tuple(random_angle(rng, n_inputs, n_weights) for _ in range(spec.n_angles))
        c.append(name, wires, angles)
    return c


def random_paulis(rng: np.random.Generator, n_qubits: int, k: int = 3) -> list[str]:
    return ["".join(rng.choice(list("IXYZ"), size=n_qubits)) for _ in range(k)]

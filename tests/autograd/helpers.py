"""Small circuits and a call-counting engine shared by the autograd tests."""
from __future__ import annotations

import numpy as np

import hdqnn
from hdqnn import Circuit, Input, Weight
from hdqnn.autograd import SimulatorRunner
from hdqnn.circuits import GATES

#: Gates the two-term shift rule differentiates exactly, plus fixed gates.
SHIFTABLE = [g for g, s in GATES.items() if s.two_eigenvalue_generator or s.n_angles == 0]


def shiftable_circuit(rng: np.random.Generator, n_qubits: int = 3, n_gates: int = 12, n_inputs: int = 2,
                      n_weights: int = 3) -> Circuit:
    """A random circuit of shiftable gates where inputs and weights each drive several gates."""
    c = Circuit(n_qubits)
    for i in range(n_inputs):
        c.ry(Input(i, float(rng.uniform(0.5, 1.5))), i % n_qubits)
    for j in range(n_weights):
        c.rx(Weight(j), j % n_qubits)
    names = [g for g in SHIFTABLE if GATES[g].n_wires <= n_qubits]
    for name in rng.choice(names, size=n_gates):
        spec = GATES[name]
        wires = tuple(int(w) for w in rng.choice(n_qubits, size=spec.n_wires, replace=False))
        angles = []
        for _ in range(spec.n_angles):
            kind = rng.integers(3)
            if kind == 0:
                angles.append(float(rng.uniform(-np.pi, np.pi)))
            elif kind == 1:
                angles.append(Input(int(rng.integers(n_inputs)), float(rng.uniform(-1.5, 1.5))))
            else:
                angles.append(Weight(int(rng.integers(n_weights)), float(rng.uniform(-1.5, 1.5))))
        c.append(str(name), wires, angles)
    return c


class CountingBackend:
    """Wraps the default engine and counts calls per method (to check 'one engine call')."""

    def __init__(self) -> None:
        self.inner = hdqnn.get_backend()
        self.name = "counting"
        self.calls: dict[str, int] = {}
        self.rows: dict[str, int] = {}

    def _count(self, method: str, inputs: np.ndarray) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        self.rows[method] = self.rows.get(method, 0) + inputs.shape[0]

    def __getattr__(self, method: str):
        target = getattr(self.inner, method)
        if method not in ("statevector", "probabilities", "expval", "vjp"):
            return target  # workspace_bytes, set_num_threads: not engine runs

        def call(program, inputs, *args):
            self._count(method, inputs)
            return target(program, inputs, *args)

        return call


class RecordingRunner:
    """A CircuitRunner that runs on the simulator and records every call (the hardware seam)."""

    def __init__(self) -> None:
        self.sim = SimulatorRunner(seed=0)
        self.calls: list[tuple[int, int | None]] = []

    def run(self, circuit, inputs, weights, shots, observables):
        self.calls.append((inputs.shape[0], shots))
        return self.sim.run(circuit, inputs, weights, shots, observables)

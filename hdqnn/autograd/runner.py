"""Where a QuantumLayer's circuits run: the simulator, or any object that follows ``CircuitRunner``.

The runner is the hardware seam. The forward pass and the parameter-shift gradient only ever ask
a runner for *estimates of expectations of a batch of circuits*; the exact adjoint gradient and
the fidelity telemetry need the simulator and never go through a runner.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..circuits import Circuit
from ..sim import expval
from ..sim.sampling import shot_expval

#: Pauli letter of each code of a compiled observable table.
PAULI_LETTERS = "IXYZ"
#: Largest working set (bytes) of one chunk of shot estimates (its probabilities and counts).
SAMPLE_CHUNK_BYTES = 64 << 20


@runtime_checkable
class CircuitRunner(Protocol):
    """Runs one batch of circuits and returns expectation estimates: the hardware seam.

    ``run(circuit, inputs, weights, shots, observables) -> [B, K]``

    circuit:     the :class:`hdqnn.Circuit` to execute (compiled; its ``Input``/``Weight`` angles
                 are bound per row from ``inputs`` and ``weights``).
    inputs:      float32/float64 ndarray [B, circuit.n_inputs] (may have 0 columns).
    weights:     float32/float64 ndarray [circuit.n_weights] shared by every row, or
                 [B, circuit.n_weights] per row (the parameter-shift gradient sends per-row
                 weights: one row per shifted circuit).
    shots:       shots per row, or None for exact expectations (a shot-only device raises
                 ValueError for None).
    observables: int8 ndarray [K, circuit.n_qubits], one Pauli string per row
                 (0=I, 1=X, 2=Y, 3=Z; wire 0 first).
    returns:     [B, K] real estimates of the K expectations for every row (unbiased with shots).

    Each row is one circuit execution; a runner should submit all B rows as one job. The layer
    calls it once per forward and, for ``grad="parameter-shift"``, once per backward.
    """

    def run(self, circuit: Circuit, inputs: np.ndarray, weights: np.ndarray, shots: int | None,
            observables: np.ndarray) -> np.ndarray:
        ...


def observable_strings(table: np.ndarray) -> list[str]:
    """Dense Pauli strings ('ZIIX', wire 0 first) of a compiled int8 table [K, n]."""
    return ["".join(PAULI_LETTERS[int(c)] for c in row) for row in table]


def check_diagonal(table: np.ndarray) -> None:
    """Shot estimates read computational-basis bits, so only I/Z strings are measurable as is."""
    if np.any((table == 1) | (table == 2)):
        bad = observable_strings(table[np.any((table == 1) | (table == 2), axis=1)])
        raise ValueError(f"shots need diagonal observables (I and Z only); got {bad}: measure X/Y by "
                         "adding basis rotations to the circuit")


class SimulatorRunner:
    """The simulator as a :class:`CircuitRunner`: exact expectations, or shot estimates.

    Shot estimates come from outcome counts (one multinomial draw per row, ``sim.sampling.shot_expval``)
    drawn with this runner's own NumPy generator, so a run is reproducible from ``seed`` and the
    generator's state can be checkpointed (``get_state``).
    """

    def __init__(self, backend: Any = None, seed: int | None = None, noise: Any = None) -> None:
        self.backend = backend
        self.rng = np.random.default_rng(seed)
        #: an hdqnn.noise.NoiseModel: the circuits run as on that noisy device (density matrix)
        self.noise = noise

    def run(self, circuit: Circuit, inputs: np.ndarray, weights: np.ndarray, shots: int | None,
            observables: np.ndarray) -> np.ndarray:
        if shots is None:
            return expval(circuit, inputs, weights, observables, backend=self.backend, noise=self.noise)
        check_diagonal(observables)
        rows = inputs.shape[0]
        per_row = 4 * 8 * 2**circuit.n_qubits  # probabilities, their normalisation, counts, products
        chunk = max(1, SAMPLE_CHUNK_BYTES // per_row)
        out = np.empty((rows, len(observables)), dtype=np.float64)
        for lo in range(0, rows, chunk):
            hi = min(rows, lo + chunk)
            w = weights[lo:hi] if weights.ndim == 2 else weights
            out[lo:hi] = shot_expval(circuit, inputs[lo:hi], w, observables, shots, seed=self.rng,
                                     backend=self.backend, noise=self.noise)
        return out

    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

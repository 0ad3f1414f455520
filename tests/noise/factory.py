"""Random channels, states and noise models for the noise tests."""
from __future__ import annotations


import numpy as np

from hdqnn import noise
from hdqnn.circuits import GATES
from hdqnn.noise import NoiseModel, ReadoutError, kraus


def random_kraus(rng: np.random.Generator, n_qubits: int, k: int = 3) -> np.ndarray:
    """K random operators forming a CPTP set: the blocks of a random isometry [k*d, d]."""
    d = 2**n_qubits
    z = rng.normal(size=(k * d, d)) + 1j * rng.normal(size=(k * d, d))
    q, _ = np.linalg.qr(z)
    return q.reshape(k, d, d)


def random_density(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d)) + 1j * rng.normal(size=(d, d))
    rho = a @ a.conj().T
    return rho / np.trace(rho)


def random_channel(rng: np.random.Generator, n_qubits: int, kind: int):
    """Channel kind ``kind`` (cycled) with random parameters: every constructor appears."""
    p = lambda: float(rng.uniform(0.02, 0.3))  # noqa: E731
    if n_qubits == 2:
        return [lambda: noise.depolarizing(p(), 2), lambda: kraus(random_kraus(rng, 2)),
                lambda: noise.amplitude_damping(p()).tensor(noise.thermal_relaxation(1.0, 1.5, p()))][kind % 3]()
    t1 = float(rng.uniform(1.0, 2.0))
    return [
        lambda: noise.depolarizing(p()), lambda: noise.pauli_channel(p() / 3, p() / 3, p() / 3),
        lambda: noise.amplitude_damping(p()), lambda: noise.phase_damping(p()),
        lambda: noise.thermal_relaxation(t1, float(rng.uniform(0.5, 2 * t1)), p()),
        lambda: kraus(random_kraus(rng, 1)),
    ][kind % 6]()


def random_noise_model(rng: np.random.Generator, n_qubits: int, readout: bool = True) -> NoiseModel:
    """All-wire rules on every gate (two on some, so order matters), wire-specific overrides of
    some of them (two on one wire and pair), asymmetric two-qubit channels, and readout errors."""
    model = NoiseModel()
    kind = 0
    for name, spec in GATES.items():
        if spec.n_wires > n_qubits:
            continue
        for _ in range(1 + int(rng.integers(2))):
            model.add(random_channel(rng, spec.n_wires, kind), name)
            kind += 1
    overrides = [g for g in GATES if GATES[g].n_wires == 1][:: 3]
    for name in overrides:
        model.add(random_channel(rng, 1, kind), name, wires=[n_qubits - 1])
        model.add(random_channel(rng, 1, kind + 1), name, wires=[n_qubits - 1])
        kind += 2
    if n_qubits >= 2:
        model.add(random_channel(rng, 2, 1), ["cx", "rzz", "crx"], wires=[(1, 0)])
        model.add(random_channel(rng, 2, 2), ["cx", "swap"], wires=[(0, 1), (1, 0)])
    if readout:
        model.add_readout(ReadoutError(float(rng.uniform(0, 0.1)), float(rng.uniform(0, 0.2))))
        model.add_readout(ReadoutError(float(rng.uniform(0.1, 0.3)), float(rng.uniform(0, 0.05))), wires=[0])
    return model

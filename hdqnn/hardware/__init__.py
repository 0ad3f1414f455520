"""Shot-based execution on devices: hdqnn's local sampler, Qiskit backends/samplers, Amazon Braket.

Every adapter has ``submit(programs, shots) -> counts`` (bound OpenQASM in, ``c[0]``-first count
keys out) and ``run(circuit, inputs, weights, shots, observables) -> [B, K]`` (the
``QuantumLayer`` runner seam). The SDKs are optional extras imported only when an adapter is
built: ``pip install 'hdqnn[qiskit]'`` / ``'hdqnn[braket]'``.
"""
from .base import (
    HardwareBackend,
    ShotRunner,
    expectations_from_counts,
    measurement_groups,
    wait_for,
    with_measurement_basis,
)
from .braket_adapter import BraketAdapter
from .local import LocalSampler
from .qiskit_adapter import QiskitAdapter, qiskit_key_to_hdqnn

__all__ = [
    "HardwareBackend", "ShotRunner", "LocalSampler", "QiskitAdapter", "BraketAdapter",
    "measurement_groups", "with_measurement_basis", "expectations_from_counts", "wait_for",
    "qiskit_key_to_hdqnn",
]

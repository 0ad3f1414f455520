"""Bridges to other quantum SDKs, a layer above ``hdqnn.sim``.

``hdqnn.interop.qiskit``: ``from_qiskit`` (a ``QuantumCircuit`` as an :class:`hdqnn.Circuit` plus
the map of its angle slots), the Qiskit 2.x primitives ``Estimator`` and ``Sampler``, and
``EstimatorGradient`` for qiskit-machine-learning. Qiskit is imported only when one of these is
used: ``import hdqnn`` (and ``import hdqnn.interop``) never loads it.
"""
from __future__ import annotations

__all__ = ["from_qiskit"]


def from_qiskit(circuit):
    """``(hdqnn.Circuit, QiskitSlots)`` for a Qiskit ``QuantumCircuit``; see
    :func:`hdqnn.interop.qiskit_circuit.from_qiskit`."""
    from .qiskit_circuit import from_qiskit as convert

    return convert(circuit)

"""Bridges to other quantum SDKs, a layer above ``hdqnn.sim``.

``hdqnn.interop.qiskit``: ``from_qiskit`` (a ``QuantumCircuit`` as an :class:`hdqnn.Circuit` plus
the map of its angle slots), the Qiskit 2.x primitives ``Estimator`` and ``Sampler``, and
``EstimatorGradient`` for qiskit-machine-learning. Qiskit is imported only when one of these is
used: ``import hdqnn`` (and ``import hdqnn.interop``) never loads it.

``hdqnn.interop.pennylane``: the device ``hdqnn.qubit`` and ``from_pennylane`` (a tape or QNode as an
:class:`hdqnn.Circuit` plus the map of its angle slots); PennyLane too is imported only when used.
"""
from __future__ import annotations

__all__ = ["from_qiskit", "from_pennylane"]


def from_qiskit(circuit):
    """``(hdqnn.Circuit, QiskitSlots)`` for a Qiskit ``QuantumCircuit``; see
    :func:`hdqnn.interop.qiskit_circuit.from_qiskit`."""
    from .qiskit_circuit import from_qiskit as convert

    return convert(circuit)


def from_pennylane(tape_or_qnode, *args, **kwargs):
    """``(hdqnn.Circuit, PennyLaneSlots)`` for a PennyLane tape or QNode; see
    :func:`hdqnn.interop.pennylane.from_pennylane`."""
    from .pennylane import from_pennylane as convert

    return convert(tape_or_qnode, *args, **kwargs)

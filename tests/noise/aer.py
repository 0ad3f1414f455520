"""Qiskit Aer as the oracle for the noise tests: hdqnn circuits and models in Aer's terms."""
from __future__ import annotations

import numpy as np

from hdqnn import Circuit
from hdqnn.noise import Channel, NoiseModel
from tests.circuit_factory import bind_angle
from tests.qasm.optional import import_or_skip

#: 2-qubit operators: hdqnn indexes 2*bit(wire0) + bit(wire1), Qiskit bit(qubit0) + 2*bit(qubit1).
SWAP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.complex128)


def require_aer():
    """qiskit_aer, or a skip (a failure under HDQNN_REQUIRE_EXTRAS) naming the extra."""
    return import_or_skip("qiskit_aer", "qiskit")


def qiskit_ops(channel: Channel) -> list[np.ndarray]:
    """The channel's Kraus operators in Qiskit's qubit order."""
    ops = list(channel.kraus_ops)
    return [SWAP @ k @ SWAP for k in ops] if channel.n_qubits == 2 else ops


def to_aer_model(model: NoiseModel, readout: bool = True):
    """The same rules as an Aer NoiseModel (readout errors as Aer's own ReadoutError)."""
    from qiskit_aer.noise import NoiseModel as AerNoiseModel
    from qiskit_aer.noise import ReadoutError, kraus_error

    aer = AerNoiseModel()
    for rule in model.rules:
        error = kraus_error(qiskit_ops(rule.channel))
        if rule.wires is None:
            aer.add_all_qubit_quantum_error(error, list(rule.gates), warnings=False)
        else:
            for wires in rule.wires:
                aer.add_quantum_error(error, list(rule.gates), list(wires), warnings=False)
    for rule in model.readout_rules if readout else ():
        error = ReadoutError(rule.error.confusion.T)  # Aer: rows prepared, columns measured
        if rule.wires is None:
            aer.add_all_qubit_readout_error(error, warnings=False)
        else:
            for wire in rule.wires:
                aer.add_readout_error(error, [wire], warnings=False)
    return aer


#: Gates Aer's density-matrix method does not run natively; they travel as labelled unitaries
#: (Aer attaches noise to a unitary by its label), built from Qiskit's own gate, not our matrix.
AER_DM_UNSUPPORTED = ("crx", "cry", "crz")


def to_qiskit(circuit: Circuit, x, w):
    """One sample's circuit; hdqnn wire i is Qiskit qubit i."""
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import UnitaryGate
    from qiskit.quantum_info import Operator

    qc = QuantumCircuit(circuit.n_qubits)
    for op in circuit.operations:
        args = [bind_angle(a, x, w) for a in op.angles]
        if op.name in AER_DM_UNSUPPORTED:
            gate = getattr(QuantumCircuit(2), op.name)(*args, 0, 1)[0].operation
            qc.append(UnitaryGate(Operator(gate), label=op.name), list(op.wires))
        else:
            getattr(qc, op.name)(*args, *op.wires)
    return qc


def aer_density_matrices(circuit: Circuit, x, w, aer_model, tail=()) -> np.ndarray:
    """Aer's noisy density matrix per sample, [B, d, d] in hdqnn's order. ``tail``: (instruction,
    qubits) pairs appended before the save, e.g. a readout error as a channel or a measurement
    basis change (a labelled unitary: no noise rule names it)."""
    from qiskit.quantum_info import DensityMatrix
    from qiskit_aer import AerSimulator

    sim = AerSimulator(method="density_matrix", noise_model=aer_model)
    circuits = []
    for b in range(x.shape[0]):
        qc = to_qiskit(circuit, x[b], w)
        for instruction, qubits in tail:
            qc.append(instruction, list(qubits))
        qc.save_density_matrix()
        circuits.append(qc)
    result = sim.run(circuits).result()
    return np.stack([DensityMatrix(result.data(b)["density_matrix"]).reverse_qargs().data
                     for b in range(len(circuits))])

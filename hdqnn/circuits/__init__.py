"""Circuit IR, gate table, observables and ansatz builders (NumPy only)."""
from . import ansatz
from .circuit import MAX_QUBITS, SRC_CONST, SRC_INPUT, SRC_WEIGHT, Circuit, Input, Operation, Program, Weight
from .gates import GATES, GATES_BY_CODE, GateSpec, gate_matrix, gate_matrix_derivative
from .observables import PAULI_CODES, compile_observables, z_on_each_wire

__all__ = [
    "Circuit", "Input", "Weight", "Operation", "Program", "GATES", "GATES_BY_CODE", "GateSpec",
    "gate_matrix", "gate_matrix_derivative", "compile_observables", "z_on_each_wire",
    "PAULI_CODES", "MAX_QUBITS", "SRC_CONST", "SRC_INPUT", "SRC_WEIGHT", "ansatz",
]

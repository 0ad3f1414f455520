"""from_qiskit: QuantumCircuits (gates in and outside hdqnn's set, parameter expressions, library
feature maps and ansatzes, measurements) against qiskit.quantum_info.Statevector."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import hdqnn

TOL = 1e-10


def qiskit_states(qc, values):
    from qiskit.quantum_info import Statevector

    return np.stack([Statevector(qc.assign_parameters(row)).data for row in values])


def assert_same_states(qc, n_rows=3, seed=0):
    """hdqnn's converted circuit gives Qiskit's statevectors, global phase and bit order included."""
    from hdqnn.interop.qiskit import statevector

    values = np.random.default_rng(seed).uniform(-2, 2, (n_rows, qc.num_parameters))
    np.testing.assert_allclose(statevector(qc, values), qiskit_states(qc, values), atol=TOL)


def expression_circuit(n_qubits: int, seed: int, foreign: bool = True):
    """Random gates whose angles are Parameters, ParameterVector elements, scaled parameters,
    offsets, products and sines: hdqnn's gates only, or (``foreign``) also gates the converter
    must transpile (sxdg, ecr, iswap, ch, rzx, an open control, ccx/cu)."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter, ParameterVector
    from qiskit.circuit.library import XGate

    rng = np.random.default_rng(seed)
    a, b, v = Parameter("a"), Parameter("b"), ParameterVector("v", 3)
    pool = [a, b, *v]
    angles = [
        lambda: pool[rng.integers(5)],
        lambda: float(rng.uniform(-2, 2)) * pool[rng.integers(5)],
        lambda: 0.5 * pool[rng.integers(5)] + float(rng.uniform(-1, 1)),
        lambda: pool[rng.integers(5)] * pool[rng.integers(5)],
        lambda: pool[rng.integers(5)].sin() + 2 * pool[rng.integers(5)],
        lambda: float(rng.uniform(-3, 3)),
    ]
    qc = QuantumCircuit(n_qubits)
    one = ["x", "y", "z", "h", "s", "sdg", "t", "tdg", "sx"] + ["sxdg"] * foreign
    one_angle = ["rx", "ry", "rz", "p"]
    two = ["cx", "cy", "cz", "swap"] + ["ecr", "iswap", "ch"] * foreign
    two_angle = ["crx", "cry", "crz", "cp", "rxx", "ryy", "rzz"] + ["rzx"] * foreign
    for _ in range(8 * n_qubits):
        kind = rng.integers(7 if foreign else 5)
        q = [int(i) for i in rng.permutation(n_qubits)[:3]]
        angle = angles[rng.integers(len(angles))]
        if kind == 0:
            getattr(qc, one[rng.integers(len(one))])(q[0])
        elif kind == 1:
            getattr(qc, one_angle[rng.integers(len(one_angle))])(angle(), q[0])
        elif kind == 2:
            getattr(qc, two[rng.integers(len(two))])(q[0], q[1])
        elif kind == 3:
            getattr(qc, two_angle[rng.integers(len(two_angle))])(angle(), q[0], q[1])
        elif kind == 4:
            qc.u(angle(), angle(), angle(), q[0])
        elif kind == 5:
            qc.append(XGate().control(1, ctrl_state=0), q[:2])  # open control: "cx_o0"
        else:
            qc.ccx(*q) if n_qubits >= 3 else qc.cu(angle(), angle(), angle(), angle(), q[0], q[1])
    qc.global_phase = 0.25 * a
    return qc


@pytest.mark.parametrize("foreign", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_random_parameterised_circuits_match_statevector(seed, foreign, monkeypatch):
    from hdqnn.interop import qiskit_circuit

    if not foreign:  # hdqnn's own gates map one to one, without the transpiler
        monkeypatch.setattr(qiskit_circuit, "_to_hdqnn_gates", lambda qc: pytest.fail("transpiled"))
    assert_same_states(expression_circuit(2 + seed, seed, foreign), seed=seed)


@pytest.mark.parametrize("seed", range(4))
def test_qiskit_random_circuit_matches_statevector(seed):
    from qiskit.circuit.random import random_circuit

    assert_same_states(random_circuit(4, 6, max_operands=3, seed=seed), n_rows=1)


@pytest.mark.parametrize("name", ["zz_feature_map", "real_amplitudes", "efficient_su2"])
def test_library_circuits_match_statevector(name):
    import qiskit.circuit.library as lib

    assert_same_states(getattr(lib, name)(4, reps=2))


def test_aliases_and_ignored_instructions_map_without_the_transpiler(monkeypatch):
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter
    from qiskit.circuit.library import GlobalPhaseGate, U1Gate, U3Gate

    from hdqnn.interop import qiskit_circuit

    monkeypatch.setattr(qiskit_circuit, "_to_hdqnn_gates", lambda qc: pytest.fail("transpiled"))
    t = Parameter("t")
    qc = QuantumCircuit(2)
    qc.h([0, 1])
    qc.append(U1Gate(0.7 * t), [0])
    qc.append(U3Gate(t, 0.2, -0.4), [1])
    qc.append(U1Gate(t + 0.1).control(1), [0, 1])  # cu1
    qc.id(0)
    qc.delay(100, 1)
    qc.barrier()
    qc.append(GlobalPhaseGate(2 * t), [])
    circuit, _ = hdqnn.from_qiskit(qc)
    assert sorted(op.name for op in circuit.operations) == ["cp", "h", "h", "p", "u"]
    assert_same_states(qc)


def test_feature_map_then_ansatz_reads_every_parameter_once():
    from qiskit.circuit.library import real_amplitudes, zz_feature_map

    qc = zz_feature_map(3).compose(real_amplitudes(3, reps=1))
    circuit, slots = hdqnn.from_qiskit(qc)
    assert slots.parameters == tuple(qc.parameters)
    assert circuit.n_weights == 0
    # 3 linear 2*x[i] + 6 weights read their own columns; the 3 products (pi - x_i)(pi - x_j) are derived
    assert circuit.n_inputs == 3 + 6 + 3
    assert_same_states(qc)


def test_linear_angles_read_the_parameter_column_with_a_scale():
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    p = Parameter("p")
    qc = QuantumCircuit(1)
    qc.rx(-0.5 * p, 0)
    qc.ry(p, 0)
    circuit, slots = hdqnn.from_qiskit(qc)
    assert [op.angles[0] for op in circuit.operations] == [hdqnn.Input(0, -0.5), hdqnn.Input(0, 1.0)]
    assert slots.sources == (p,)


def test_parameter_order_is_circuit_parameters_order():
    """Qiskit sorts parameters by name ("angle_10" before "angle_2"); rows follow that order."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    qc = QuantumCircuit(2)
    for name in ("angle_2", "angle_10", "b"):
        qc.ry(Parameter(name), 0)
        qc.rzz(Parameter(name + "_zz"), 0, 1)
    _, slots = hdqnn.from_qiskit(qc)
    assert [p.name for p in slots.parameters] == [p.name for p in qc.parameters]
    assert_same_states(qc)


def test_derived_columns_chain_rule_matches_finite_differences():
    from qiskit.circuit.library import zz_feature_map

    qc = zz_feature_map(3, reps=1)
    qc.rx(qc.parameters[0].sin() * qc.parameters[1] + 1.0, 2)
    circuit, slots = hdqnn.from_qiskit(qc)
    rng = np.random.default_rng(3)
    values = rng.uniform(-1, 1, (4, slots.n_parameters))
    cot = rng.normal(size=(4, 3))

    def loss(v):
        return (hdqnn.expval(circuit, slots.inputs(v), dtype=np.complex128) * cot).sum(axis=1)

    gx, _ = hdqnn.vjp(circuit, slots.inputs(values), None, cot, dtype=np.complex128)
    grad = slots.parameter_gradient(values, gx)
    eps = 1e-6
    for j in range(slots.n_parameters):
        step = np.zeros_like(values)
        step[:, j] = eps
        np.testing.assert_allclose(grad[:, j], (loss(values + step) - loss(values - step)) / (2 * eps), atol=1e-7)


def test_final_measurements_are_recorded_per_register():
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister

    qc = QuantumCircuit(QuantumRegister(3), ClassicalRegister(2, "alpha"), ClassicalRegister(2, "beta"))
    qc.h(0)
    qc.measure(0, qc.clbits[1])  # alpha[1] <- qubit 0
    qc.cx(1, 2)                  # touches no measured qubit: the measurement above stays final
    qc.barrier()
    qc.measure(2, qc.clbits[2])  # beta[0] <- qubit 2
    circuit, slots = hdqnn.from_qiskit(qc)
    assert slots.registers == {"alpha": (None, 0), "beta": (2, None)}
    assert [op.name for op in circuit.operations] == ["h", "cx"]


@pytest.mark.parametrize("build, message", [
    (lambda qc: (qc.measure(0, 0), qc.x(0)), "mid-circuit measurement"),
    (lambda qc: qc.reset(1), "reset"),
    (lambda qc: _if_else(qc), "control flow"),
])
def test_unsupported_instructions_raise(build, message):
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(2, 2)
    qc.h(0)
    build(qc)
    with pytest.raises(ValueError, match=message):
        hdqnn.from_qiskit(qc)


def test_gates_the_transpiler_cannot_express_raise():
    from qiskit import QuantumCircuit
    from qiskit.circuit import Gate

    qc = QuantumCircuit(1)
    qc.append(Gate("mystery", 1, []), [0])  # no definition to decompose
    with pytest.raises(ValueError, match="cannot express mystery in hdqnn's gate set"):
        hdqnn.from_qiskit(qc)


def _if_else(qc):
    with qc.if_test((qc.clbits[0], 1)):
        qc.x(1)


@pytest.mark.parametrize("angle, message", [
    (lambda p: p.log(), "complex"),       # log of a negative parameter value
    (lambda p: p.exp().exp(), "not finite"),  # exp(exp(100)) overflows
])
def test_bad_expression_values_raise_naming_the_expression(angle, message):
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    p = Parameter("p")
    qc = QuantumCircuit(1)
    qc.rx(angle(p), 0)
    _, slots = hdqnn.from_qiskit(qc)
    with pytest.raises(ValueError, match=message):
        slots.inputs([[-5.0]] if message == "complex" else [[100.0]])


def test_wrong_arguments_raise_clearly():
    from qiskit import QuantumCircuit

    with pytest.raises(TypeError, match="QuantumCircuit"):
        hdqnn.from_qiskit(hdqnn.Circuit(1))
    with pytest.raises(ValueError, match="31 qubits"):
        hdqnn.from_qiskit(QuantumCircuit(31))
    _, slots = hdqnn.from_qiskit(expression_circuit(2, 0))
    with pytest.raises(ValueError, match=r"parameter values must be \[N, 5\]"):
        slots.inputs(np.zeros((2, 4)))


def test_conversion_cache_sees_a_mutated_circuit():
    from qiskit import QuantumCircuit

    from hdqnn.interop.qiskit import statevector

    qc = QuantumCircuit(1)
    qc.h(0)
    statevector(qc)
    qc.s(0)  # same object, new instruction: must not reuse the cached conversion
    np.testing.assert_allclose(statevector(qc), qiskit_states(qc, np.zeros((1, 0))), atol=TOL)


def test_import_hdqnn_does_not_load_qiskit():
    code = ("import sys, hdqnn, hdqnn.interop; assert 'qiskit' not in sys.modules; "
            "from qiskit import QuantumCircuit; print(hdqnn.from_qiskit(QuantumCircuit(2))[0])")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

"""OpenQASM import: round trips, the features Qiskit's exporters use, and precise errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

import hdqnn
from hdqnn import Circuit, Input, Weight
from hdqnn.qasm import QasmError, dumps, loads, parse
from tests.circuit_factory import random_circuit
from tests.qasm.optional import import_or_skip

TOL = 1e-10
ENGINE = "numpy"
HEADER3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
HEADER2 = 'OPENQASM 2.0;\ninclude "qelib1.inc";\n'


def state(circuit, inputs=None, weights=None):
    return hdqnn.statevector(circuit, inputs, weights, backend=ENGINE)


def assert_same_up_to_phase(a: np.ndarray, b: np.ndarray) -> None:
    assert abs(abs(np.vdot(a, b)) - 1.0) < TOL, f"states differ beyond a global phase: {abs(np.vdot(a, b))}"


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("seed", range(4))
def test_v3_round_trip_with_free_parameters_keeps_every_gate(seed):
    rng = np.random.default_rng(seed)
    c = random_circuit(rng, 2 + seed % 3)
    back = loads(dumps(c))
    assert [(o.name, o.wires) for o in back.operations] == [(o.name, o.wires) for o in c.operations]
    x, w = rng.normal(size=(2, c.n_inputs)), rng.normal(size=c.n_weights)
    np.testing.assert_allclose(state(back, x, w), state(c, x, w), atol=TOL)


@pytest.mark.parametrize("version, dialect", [("2.0", "standard"), ("3.0", "standard"), ("3.0", "braket")])
@pytest.mark.parametrize("seed", range(3))
def test_bound_round_trip_gives_the_same_statevector(version, dialect, seed):
    rng = np.random.default_rng(100 + seed)
    c = random_circuit(rng, 3)
    x, w = rng.normal(size=(2, c.n_inputs)), rng.normal(size=(2, c.n_weights))
    back = np.stack([state(loads(p))[0] for p in dumps(c, x, w, version, dialect=dialect)])
    np.testing.assert_allclose(back, state(c, x, w), atol=TOL)


def test_angles_round_trip_exactly():
    rng = np.random.default_rng(5)
    angles = rng.normal(size=20) * 10.0 ** rng.integers(-8, 8, size=20)
    c = Circuit(1)
    for a in angles:
        c.rz(float(a), 0)
    for version in ("2.0", "3.0"):
        back = loads(dumps(c, version=version))
        assert [op.angles[0] for op in back.operations] == [float(a) for a in angles]


def test_parameter_names_map_to_inputs_and_weights():
    prog = parse(HEADER3 + "input float[64] w_2;\ninput float theta;\ninput float[64] in_3;\n"
                 "input angle[32] phi;\nqubit[1] q;\nrx(theta) q[0];\nry(2*phi) q[0];\nrz(-w_2/4) q[0];\n"
                 "rx(in_3) q[0];\n")
    assert prog.parameters == {"w_2": Weight(2), "theta": Input(0), "in_3": Input(3), "phi": Input(1)}
    assert [op.angles for op in prog.circuit.operations] == [
        (Input(0),), (Input(1, 2.0),), (Weight(2, -0.25),), (Input(3),)]


def test_a_parameter_name_colliding_with_an_assigned_index_is_an_error():
    with pytest.raises(QasmError, match=r"line 4, column 17: parameter 'in_0' would be Input\(index=0"):
        loads(HEADER3 + "input float theta;\ninput float[64] in_0;\n")


# --------------------------------------------------------------------------- features
def test_registers_broadcast_barrier_gphase_and_measure_forms():
    text = HEADER3 + """
    qubit[2] a;          // wires 0, 1
    qubit b;             // wire 2
    bit[2] m;
    bit n;
    h a;                 /* broadcast over the register */
    cx a, b;             // a[0]->b, a[1]->b
    barrier a, b;
    gphase(0.3);
    U(pi/2, -pi, tau/4) b;
    m = measure a;
    measure b -> n;
    """
    prog = parse(text)
    assert prog.circuit.n_qubits == 3 and prog.n_clbits == 3
    assert [(o.name, o.wires) for o in prog.circuit.operations] == [
        ("h", (0,)), ("h", (1,)), ("cx", (0, 2)), ("cx", (1, 2)), ("u", (2,))]
    assert prog.circuit.operations[-1].angles == (math.pi / 2, -math.pi, math.pi / 2)
    assert prog.measurements == ((0, 0), (1, 1), (2, 2))


def test_qasm2_expressions_and_qelib1_names():
    text = HEADER2 + """qreg q[2];
    creg c[2];
    u3(pi/2, -pi^2/4, 2*sin(pi/6)) q[0];
    u2(0, pi) q[1];
    u1(ln(exp(0.5))) q[0];
    cu1(sqrt(4)) q[0], q[1];
    CX q[0], q[1];
    U(0.1, 0.2, 0.3) q[1];
    id q[0];
    measure q -> c;
    """
    ops = loads(text).operations
    assert [o.name for o in ops] == ["u", "u", "p", "cp", "cx", "u"]
    np.testing.assert_allclose(ops[0].angles, (math.pi / 2, -math.pi**2 / 4, 1.0), atol=1e-15)
    assert ops[1].angles == (math.pi / 2, 0.0, math.pi)
    assert ops[2].angles == (0.5,) and ops[3].angles == (2.0,)


def test_physical_qubits():
    c = loads("OPENQASM 3.0;\nh $2;\ncx $2, $0;\n")
    assert c.n_qubits == 3 and [o.wires for o in c.operations] == [(2,), (2, 0)]


def test_user_gate_equal_to_a_native_gate_becomes_that_gate():
    text = HEADER3 + """input float[64] t;
    gate rzz(p0) x0, x1 { cx x0, x1; u1(p0) x1; cx x0, x1; }   // native up to a global phase
    gate mine(p0) x0, x1 { rzz(p0/2) x0, x1; ry(-p0) x1; }
    qubit[2] q;
    rzz(t) q[0], q[1];
    mine(0.5*t) q[1], q[0];
    """
    ops = loads(text).operations
    assert [(o.name, o.wires, o.angles) for o in ops] == [
        ("rzz", (0, 1), (Input(0),)), ("rzz", (1, 0), (Input(0, 0.25),)), ("ry", (0,), (Input(0, -0.5),))]


def test_user_gate_named_like_a_native_but_different_is_inlined():
    text = HEADER3 + "gate rx(t) a { ry(t) a; }\nqubit[1] q;\nrx(0.3) q[0];\n"
    assert [(o.name, o.angles) for o in loads(text).operations] == [("ry", (0.3,))]


def test_braket_names_load():
    text = ("OPENQASM 3.0;\nqubit[3] q;\ncnot q[0], q[1];\nsi q[0];\nti q[1];\nv q[2];\nvi q[2];\n"
            "phaseshift(0.1) q[0];\ncphaseshift(0.2) q[0], q[1];\nxx(0.3) q[0], q[1];\n"
            "ccnot q[0], q[1], q[2];\n")
    names = [o.name for o in loads(text).operations]
    assert names[:6] == ["cx", "sdg", "tdg", "sx", "h", "sdg"] and "rxx" in names


_H = np.array([[1, 1], [1, -1]]) / np.sqrt(2)
_SX = 0.5 * np.array([[1 + 1j, 1 - 1j], [1 - 1j, 1 + 1j]])


def _controlled(m: np.ndarray) -> np.ndarray:
    return np.block([[np.eye(2), np.zeros((2, 2))], [np.zeros((2, 2)), m]])


LIBRARY_CASES = {
    # gate: (call, matrix of the library gate on 2 qubits, wire 0 most significant)
    "ch": ("ch q[0], q[1];", _controlled(_H)),
    "csx": ("csx q[0], q[1];", _controlled(_SX)),
    "sxdg": ("sxdg q[1];", np.kron(np.eye(2), _SX.conj().T)),
}


@pytest.mark.parametrize("gate", sorted(LIBRARY_CASES))
def test_library_gates_without_a_kernel_are_decomposed(gate):
    call, matrix = LIBRARY_CASES[gate]
    prep = "ry(0.3) q[0]; rx(1.1) q[1]; h q[0];\n"
    c = loads(HEADER3 + "qubit[2] q;\n" + prep + call)
    before = state(loads(HEADER3 + "qubit[2] q;\n" + prep))[0]
    assert_same_up_to_phase(state(c)[0], matrix @ before)


def test_ccx_and_cswap_act_as_classical_gates():
    c = loads(HEADER3 + "qubit[3] q;\nx q[0];\nx q[1];\nccx q[0], q[1], q[2];\n"
              "cswap q[2], q[0], q[1];\nx q[0];\n")
    probs = np.abs(state(c)[0]) ** 2
    # 110 -> ccx -> 111 -> cswap(control q2) leaves 111 -> x q[0] -> 011
    assert probs[0b011] == pytest.approx(1.0)


# --------------------------------------------------------------------------- Qiskit's exporters
def _qiskit_reference_circuit():
    qiskit = import_or_skip("qiskit", "qiskit")
    from qiskit.circuit.library import CU3Gate, RCCXGate, U2Gate

    qc = qiskit.QuantumCircuit(3, 3)
    qc.u(0.1, 0.2, 0.3, 0)
    qc.p(0.4, 1)
    qc.rxx(0.5, 0, 1)
    qc.ryy(0.6, 1, 2)
    qc.rzz(0.7, 0, 2)
    qc.sx(0)
    qc.swap(0, 1)
    qc.crx(0.3, 0, 1)
    qc.cry(0.2, 1, 2)
    qc.cp(0.1, 2, 0)
    qc.ch(0, 1)
    qc.sxdg(2)
    qc.ccx(0, 1, 2)
    qc.cu(0.1, 0.2, 0.3, 0.4, 0, 1)
    qc.cswap(2, 0, 1)
    qc.csx(1, 2)
    qc.append(U2Gate(0.3, 0.4), [1])
    qc.append(CU3Gate(0.3, 0.2, 0.1), [0, 2])
    qc.append(RCCXGate(), [0, 1, 2])
    qc.id(0)
    qc.s(1)
    qc.tdg(2)
    qc.cy(0, 1)
    qc.cz(1, 2)
    qc.crz(0.2, 2, 1)
    qc.y(0)
    qc.h(0)
    qc.barrier()
    return qc


def qiskit_state_in_hdqnn_order(qc) -> np.ndarray:
    """Qiskit's statevector (qubit 0 = least significant index bit) in hdqnn order (most significant)."""
    from qiskit.quantum_info import Statevector

    n = qc.num_qubits
    return Statevector(qc).data.reshape((2,) * n).transpose(range(n - 1, -1, -1)).reshape(-1)


@pytest.mark.parametrize("exporter", ["qasm2", "qasm3"])
def test_programs_written_by_qiskit_load_unchanged(exporter):
    qc = _qiskit_reference_circuit()
    import qiskit

    want = qiskit_state_in_hdqnn_order(qc)
    qc.measure([0, 1, 2], [0, 1, 2])
    text = getattr(qiskit, exporter).dumps(qc)
    assert_same_up_to_phase(state(loads(text))[0], want)


def test_qiskit_qasm3_with_parameters_loads_as_inputs():
    qiskit = import_or_skip("qiskit", "qiskit")
    from qiskit.circuit import Parameter

    theta = Parameter("theta")
    qc = qiskit.QuantumCircuit(2)
    qc.rx(theta * 0.5, 0)
    qc.rzz(theta, 0, 1)
    prog = parse(qiskit.qasm3.dumps(qc))
    assert prog.parameters == {"theta": Input(0)}
    assert [(o.name, o.angles) for o in prog.circuit.operations] == [
        ("rx", (Input(0, 0.5),)), ("rzz", (Input(0),))]


# --------------------------------------------------------------------------- errors
ERRORS = [
    # (program, line, column, message fragment)
    (HEADER3 + "qubit[2] q;\nfoo q[0];\n", 4, 1, "unknown gate 'foo'"),
    (HEADER3 + "qubit[2] q;\nh q[2];\n", 4, 5, "index 2 is out of range for q[2]"),
    (HEADER3 + "qubit[2] q;\nh r[0];\n", 4, 3, "unknown qubit register 'r'"),
    (HEADER3 + "qubit[2] q;\nrx(0.1, 0.2) q[0];\n", 4, 1, "takes 1 parameter(s), got 2"),
    (HEADER3 + "qubit[2] q;\ncx q[0];\n", 4, 1, "acts on 2 qubit(s), got 1"),
    (HEADER3 + "qubit[2] q;\ncx q[0], q[0];\n", 4, 1, "same qubit twice"),
    (HEADER3 + "qubit[2] q;\nh q[0]\nx q[1];\n", 5, 1, "expected ',' or ';', found 'x'"),
    (HEADER3 + "qubit[2] q;\nrx(0.1 q[0];\n", 4, 8, "expected ',' or ')', found 'q'"),
    (HEADER3 + "qubit[2] q;\nrx(theta) q[0];\n", 4, 4, "unknown identifier 'theta'"),
    (HEADER3 + "input float a;\ninput float b;\nqubit q;\nrx(a*b) q;\n", 6, 5, "product of parameters"),
    (HEADER3 + "input float a;\nqubit q;\nrx(a + 1) q;\n", 5, 1, "adds a constant"),
    (HEADER3 + "input float a;\nqubit q;\nrx(sin(a)) q;\n", 5, 4, "sin() is not linear"),
    (HEADER3 + "qubit q;\nrx(1/0) q;\n", 4, 5, "division by zero"),
    (HEADER3 + "qubit q;\nrx(sqrt(-1)) q;\n", 4, 4, "sqrt of -1.0 is undefined"),
    (HEADER3 + "qubit q;\nreset q;\n", 4, 1, "unsupported statement 'reset'"),
    (HEADER3 + "qubit q;\nbit c;\nc = measure q;\nx q;\n", 6, 3, "mid-circuit measurement"),
    (HEADER3 + "qubit[2] q;\nctrl @ x q[0], q[1];\n", 4, 1, "gate modifier 'ctrl'"),
    ('OPENQASM 3.0;\ninclude "mylib.inc";\n', 2, 9, "cannot include 'mylib.inc'"),
    ("OPENQASM 4.0;\n", 1, 10, "unsupported OpenQASM version"),
    (HEADER3 + "qubit q;\nOPENQASM 3.0;\n", 4, 1, "must be the first statement"),
    (HEADER3 + "qubit q;\nh q; # comment\n", 4, 6, "unexpected character '#'"),
    (HEADER3 + "qubit q;\n/* never closed\nh q;\n", 4, 1, "unterminated /* comment"),
    (HEADER3 + "gate g a { h b; }\n", 3, 14, "'b' is not a qubit argument"),
    (HEADER3 + "gate g a { h a;\n", 4, 1, "missing its closing '}'"),
    (HEADER3 + "gate g a { h a; }\ngate g a { x a; }\n", 4, 6, "gate 'g' is already defined"),
    (HEADER3 + "qubit[2] q;\nqubit q;\n", 4, 7, "register 'q' is already declared"),
    (HEADER3 + "input float x;\ninput float x;\n", 4, 13, "parameter 'x' is already declared"),
    (HEADER3 + "input int[8] n;\n", 3, 7, "must be float or angle"),
    (HEADER3 + "qubit[2] a;\nqubit[3] b;\ncx a, b;\n", 5, 1, "different sizes"),
    (HEADER3 + "qubit[2] q;\nbit[1] c;\nc = measure q;\n", 5, 5, "measuring 2 qubit(s) into 1 bit(s)"),
    (HEADER3 + "bit[2] c;\n", 4, 1, "declares no qubits"),  # reported at the end of input
]


@pytest.mark.parametrize("text, line, column, fragment", ERRORS, ids=[e[3] for e in ERRORS])
def test_malformed_programs_raise_with_line_and_column(text, line, column, fragment):
    with pytest.raises(QasmError) as info:
        loads(text)
    err = info.value
    assert fragment in str(err)
    assert (err.line, err.column) == (line, column), str(err)
    assert str(err).startswith(f"line {line}, column {column}: ")


def test_qasm_error_is_a_value_error():
    assert issubclass(QasmError, ValueError)
    with pytest.raises(TypeError, match="must be a str"):
        loads(b"OPENQASM 3.0;")

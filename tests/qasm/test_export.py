"""OpenQASM export: golden text, float formatting, rewrite rules, binding and bad arguments."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import hdqnn
from hdqnn import Circuit, Input, Weight
from hdqnn.circuits import GATES, gate_matrix
from hdqnn.qasm import dumps, format_float, loads
from hdqnn.qasm.importer import same_unitary
from hdqnn.qasm.targets import BRAKET, QASM2, QASM3, RULES

TOL = 1e-10
#: The reference engine: exact, and no JIT warm-up in a short test run.
ENGINE = "numpy"
#: The only rewrite rules that hold up to a global phase (phase gates into each other).
PHASE_ONLY_RULES = {"rz", "p"}


def golden_circuit() -> Circuit:
    return Circuit(2).h(0).rx(Input(0, 0.5), 1).cx(0, 1).rzz(Weight(0), 0, 1).p(0.1, 1).u(3.0, -1.25, 2.5, 0)


GOLDEN_V3_FREE = """\
OPENQASM 3.0;
include "stdgates.inc";
input float[64] in_0;
input float[64] w_0;
gate rzz(theta) a, b { cx a, b; rz(theta) b; cx a, b; }
qubit[2] q;
bit[2] c;
h q[0];
rx(0.5*in_0) q[1];
cx q[0], q[1];
rzz(w_0) q[0], q[1];
p(0.1) q[1];
U(3.0, -1.25, 2.5) q[0];
c[0] = measure q[0];
c[1] = measure q[1];
"""

GOLDEN_V2_BOUND = """\
OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
rx(0.1) q[1];
cx q[0],q[1];
cx q[0],q[1];
rz(-1.0e-05) q[1];
cx q[0],q[1];
u1(0.1) q[1];
u3(3.0,-1.25,2.5) q[0];
measure q[0] -> c[0];
measure q[1] -> c[1];
"""

GOLDEN_BRAKET_BOUND = """\
OPENQASM 3.0;
qubit[2] q;
bit[2] c;
h q[0];
rx(0.1) q[1];
cnot q[0], q[1];
zz(-1.0e-05) q[0], q[1];
phaseshift(0.1) q[1];
U(3.0, -1.25, 2.5) q[0];
c[0] = measure q[0];
c[1] = measure q[1];
"""


def test_golden_v3_with_free_parameters():
    assert dumps(golden_circuit(), version="3.0") == GOLDEN_V3_FREE


def test_golden_v2_bound():
    assert dumps(golden_circuit(), [0.2], [-1e-5], version="2.0") == GOLDEN_V2_BOUND


def test_golden_braket_bound():
    assert dumps(golden_circuit(), [0.2], [-1e-5], dialect="braket") == GOLDEN_BRAKET_BOUND


def test_v3_partial_binding_keeps_the_rest_free():
    text = dumps(golden_circuit(), inputs=[0.2])
    assert "input float[64] w_0;" in text and "in_0" not in text
    assert "rx(0.1) q[1];" in text


def test_batch_gives_one_program_per_row():
    x = np.array([[0.2], [0.4], [-0.6]])
    programs = dumps(golden_circuit(), x, [0.3])
    assert isinstance(programs, list) and len(programs) == 3
    rx_lines = [next(line for line in p.splitlines() if line.startswith("rx(")) for p in programs]
    assert rx_lines == ["rx(0.1) q[1];", "rx(0.2) q[1];", "rx(-0.3) q[1];"]
    per_sample = dumps(golden_circuit(), [0.2], np.array([[0.1], [0.2]]))
    assert len(per_sample) == 2 and "rzz(0.1)" in per_sample[0] and "rzz(0.2)" in per_sample[1]


def test_torch_inputs_are_read():
    torch = pytest.importorskip("torch")
    x = torch.tensor([[0.2]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.3], dtype=torch.float64)
    assert dumps(golden_circuit(), x, w)[0] == dumps(golden_circuit(), [[0.2]], [0.3])[0]


def test_measure_false_omits_the_measurements():
    assert "measure" not in dumps(golden_circuit(), measure=False)


@pytest.mark.parametrize("value", [0.1, -0.0, 1e-5, -2.5e-300, 1e16, np.pi, 1 / 3, 5e-324, 123456789.123])
def test_float_format_round_trips_exactly_and_is_valid_qasm2(value):
    text = format_float(value)
    assert float(text) == value
    mantissa = text.split("e")[0].lstrip("-")
    assert "." in mantissa  # OpenQASM 2 reals need a decimal point


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rewrite_rule_is_exact(name):
    spec = GATES[name]
    angles = (0.731, -1.37, 2.11)[: spec.n_angles]
    ops = RULES[name](tuple(range(spec.n_wires)), angles)
    u = np.eye(2**spec.n_wires, dtype=np.complex128)
    for sub, wires, sub_angles in ops:
        m = gate_matrix(sub, *sub_angles)
        if spec.n_wires == 2 and len(wires) == 1:
            m = np.kron(m, np.eye(2)) if wires[0] == 0 else np.kron(np.eye(2), m)
        elif spec.n_wires == 2 and wires == (1, 0):
            swap = gate_matrix("swap")
            m = swap @ m @ swap
        u = m @ u
    expected = gate_matrix(name, *angles)
    if name in PHASE_ONLY_RULES:
        assert same_unitary(ops, expected, spec.n_wires)
    else:
        np.testing.assert_allclose(u, expected, atol=TOL)


@pytest.mark.parametrize("target", [QASM2, QASM3, BRAKET], ids=lambda t: t.name)
def test_exports_use_only_the_target_library(target):
    c = Circuit(2)
    for name, spec in GATES.items():
        c.append(name, (0, 1)[: spec.n_wires], (0.3, 0.2, 0.1)[: spec.n_angles])
    text = dumps(c, version=target.version, dialect="braket" if target is BRAKET else "standard")
    defined = {line.split()[1].split("(")[0] for line in text.splitlines() if line.startswith("gate ")}
    declarations = ("gate", "qreg", "creg", "qubit", "bit", "input", "measure", "c[")
    called = {line.split()[0].split("(")[0] for line in text.splitlines()[2:]
              if line and not line.startswith(declarations)}
    assert called <= set(target.names.values()) | defined
    assert defined == ({"rxx", "ryy", "rzz"} if target is QASM3 else set())


def test_basis_restriction_rewrites_into_the_basis():
    c = Circuit(2).p(0.3, 0).cp(0.2, 0, 1).u(0.1, 0.2, 0.3, 1).cy(0, 1).sx(0).swap(0, 1)
    basis = ["rx", "ry", "rz", "h", "cnot", "x"]
    text = dumps(c, dialect="braket", basis=basis)
    called = {line.split()[0].split("(")[0] for line in text.splitlines()[3:] if not line.startswith("c[")}
    assert called <= set(basis)
    state = hdqnn.statevector(loads(text), backend=ENGINE)[0]
    overlap = abs(np.vdot(state, hdqnn.statevector(c, backend=ENGINE)[0]))
    assert abs(overlap - 1) < TOL  # rz for p is exact up to a global phase only


def test_basis_that_cannot_express_a_gate_is_an_error():
    with pytest.raises(ValueError, match="cannot be written"):
        dumps(Circuit(2).cx(0, 1), dialect="braket", basis=["rx", "ry", "rz"])


def test_v2_needs_every_value():
    with pytest.raises(ValueError, match=r"OpenQASM 2.0 has no free parameters.*w_0"):
        dumps(golden_circuit(), inputs=[0.2], version="2.0")


@pytest.mark.parametrize("kwargs, message", [
    ({"version": "4.0"}, "unknown OpenQASM version"),
    ({"dialect": "ionq"}, "unknown dialect"),
    ({"version": "2.0", "dialect": "braket"}, "braket dialect is OpenQASM 3.0"),
    ({"inputs": [0.1, 0.2]}, "inputs has 2 column"),
    ({"weights": [[0.1, 0.2]]}, "weights has 2 column"),
    ({"inputs": [[0.1], [0.2]], "weights": [[0.1], [0.2], [0.3]]}, "disagree on the batch size"),
    ({"inputs": [np.nan]}, "NaN"),
    ({"inputs": ["a"]}, "real array"),
])
def test_bad_export_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dumps(golden_circuit(), **kwargs)


def test_export_rejects_a_non_circuit():
    with pytest.raises(TypeError, match="hdqnn.Circuit"):
        dumps("h q[0];")


def test_all_versions_and_dialects_bind_the_same_angles():
    rng = np.random.default_rng(7)
    c = golden_circuit()
    x, w = rng.normal(size=(3, 1)), rng.normal(size=1)
    want = hdqnn.statevector(c, x, w, backend=ENGINE)
    for version, dialect in itertools.product(("2.0", "3.0"), ("standard", "braket")):
        if version == "2.0" and dialect == "braket":
            continue
        programs = dumps(c, x, w, version, dialect=dialect)
        got = np.stack([hdqnn.statevector(loads(p), backend=ENGINE)[0] for p in programs])
        np.testing.assert_allclose(got, want, atol=TOL)

"""Circuit IR: builders, validation, compilation, ansatz shapes, observables."""
from __future__ import annotations

import numpy as np
import pytest

from hdqnn import Circuit, Input, Weight, ansatz
from hdqnn.circuits import GATES, SRC_CONST, SRC_INPUT, SRC_WEIGHT, compile_observables


def test_every_gate_has_a_builder_with_angles_first():
    c = Circuit(3)
    for name, spec in GATES.items():
        args = [0.1 * (i + 1) for i in range(spec.n_angles)] + list(range(spec.n_wires))
        getattr(c, name)(*args)
    assert [op.name for op in c.operations] == list(GATES)
    assert c.operations[GATES["crz"].code].wires == (0, 1)
    u = next(op for op in c.operations if op.name == "u")
    assert u.angles == (0.1, 0.2, 0.30000000000000004) and u.wires == (0,)


def test_counts_of_inputs_and_weights():
    c = Circuit(2).rx(Input(4), 0).ry(Weight(2, scale=0.5), 1).rz(0.3, 0)
    assert (c.n_qubits, c.n_inputs, c.n_weights, c.n_angles) == (2, 5, 3, 3)


def test_compiled_program_layout():
    c = Circuit(3).h(0).crx(Input(1, 2.0), 2, 0).u(0.1, Weight(0), 0.3, 1)
    prog = c.compile()
    np.testing.assert_array_equal(prog.gates, [[GATES["h"].code, 0, -1, -1], [GATES["crx"].code, 2, 0, 0],
                                               [GATES["u"].code, 1, -1, 1]])
    np.testing.assert_array_equal(prog.angle_src, [[SRC_INPUT, 1], [SRC_CONST, 0], [SRC_WEIGHT, 0], [SRC_CONST, 0]])
    np.testing.assert_allclose(prog.angle_val, [2.0, 0.1, 1.0, 0.3])
    assert prog.gates.dtype == np.int32 and prog.angle_val.dtype == np.float64
    assert prog.gates.flags.c_contiguous and not prog.gates.flags.writeable


def test_compile_is_cached_and_freezes():
    c = Circuit(1).x(0)
    assert c.compile() is c.compile()
    with pytest.raises(RuntimeError, match="immutable"):
        c.h(0)
    copy = c.copy().h(0)
    assert len(copy) == 2 and len(c) == 1


@pytest.mark.parametrize(
    "build, exc, match",
    [
        (lambda c: c.append("foo", 0), ValueError, "unknown gate 'foo'"),
        (lambda c: c.rx(0.1, 3), ValueError, "wire 3 of gate 'rx' is out of range"),
        (lambda c: c.cx(1, 1), ValueError, "repeats wire"),
        (lambda c: c.rx(float("nan"), 0), ValueError, "must be finite"),
        (lambda c: c.ry(float("inf"), 0), ValueError, "must be finite"),
        (lambda c: c.rx("a", 0), TypeError, "must be a float"),
        (lambda c: c.rx(0.1, 0.5), TypeError, "wire of gate 'rx' must be an int"),
        (lambda c: c.append("cx", (0,)), ValueError, "acts on 2 wire"),
        (lambda c: c.append("rx", 0, (0.1, 0.2)), ValueError, "takes 1 angle"),
        (lambda c: c.rx(Input(-1), 0), ValueError, r"Input index must be in \[0, 2147483647\]"),
        (lambda c: c.rx(Input(2**31), 0), ValueError, r"Input index must be in \[0, 2147483647\] \(stored as"),
        (lambda c: c.rx(Weight(2**40), 0), ValueError, "Weight index must be in"),
        (lambda c: c.rx(Weight(0, scale=float("nan")), 0), ValueError, "scale must be finite"),
    ],
)
def test_bad_construction_is_rejected(build, exc, match):
    with pytest.raises(exc, match=match):
        build(Circuit(3))


@pytest.mark.parametrize("n", [0, 31, -2])
def test_bad_register_size(n):
    with pytest.raises(ValueError, match="n_qubits"):
        Circuit(n)


def test_draw_and_repr():
    c = Circuit(2).rx(Input(0, 0.5), 1).cx(0, 1)
    text = c.draw()
    assert "rx(in[0]*0.5) q[1]" in text and "cx q[0], q[1]" in text
    assert repr(c) == "Circuit(n_qubits=2, gates=2, n_inputs=1, n_weights=0)"


@pytest.mark.parametrize("entangler,cx_count", [("ring", 4), ("linear", 3), ("all", 6), ("none", 0)])
def test_hardware_efficient_shapes(entangler, cx_count):
    c = ansatz.hardware_efficient(4, 3, rotations=("ry", "rz"), entangler=entangler)
    assert c.n_inputs == 4 and c.n_weights == 3 * 4 * 2
    assert sum(op.name == "cx" for op in c.operations) == 3 * cx_count
    reup = ansatz.data_reuploading(4, 3)
    assert sum(op.name == "ry" and isinstance(op.angles[0], Input) for op in reup.operations) == 12


def test_ansatz_rejects_unknown_choices():
    with pytest.raises(ValueError, match="unknown entangler"):
        ansatz.hardware_efficient(3, 1, entangler="star")
    with pytest.raises(ValueError, match="unknown rotation"):
        ansatz.hardware_efficient(3, 1, rotations=("rq",))


def test_observables_parse_all_forms():
    table = compile_observables(["XZIY", ("ZZ", (0, 3)), {"X": 2, "YZ": [1, 0]}], 4)
    np.testing.assert_array_equal(table, [[1, 3, 0, 2], [3, 0, 0, 3], [0, 0, 1, 0], [3, 2, 0, 0]])
    np.testing.assert_array_equal(compile_observables(None, 2), [[3, 0], [0, 3]])
    assert compile_observables(table, 4) is table  # a compiled table passes through unparsed
    again = compile_observables(np.array([[1, 3]], dtype=np.int64), 2)
    assert again.dtype == np.int8 and not again.flags.writeable
    np.testing.assert_array_equal(again, [[1, 3]])


@pytest.mark.parametrize(
    "table, match",
    [(np.zeros((2, 4), np.int8), r"\[K >= 1, 3\]"), (np.zeros((0, 3), np.int8), r"\[K >= 1, 3\]"),
     (np.full((1, 3), 4, np.int8), "codes 0-3"), (np.full((1, 3), -1, np.int8), "codes 0-3"),
     (np.zeros((1, 3), np.float64), "integer Pauli codes"), (np.zeros(3, np.int8), r"\[K >= 1, 3\]")],
)
def test_bad_compiled_observable_tables(table, match):
    with pytest.raises((ValueError, TypeError), match=match):
        compile_observables(table, 3)


@pytest.mark.parametrize(
    "obs, match",
    [("XQ", "unknown Pauli letter 'Q'"), ("XZ", "has 2 letters"), (("ZZ", (0,)), "2 letters but 1 wires"),
     (("Z", 7), "out of range"), ([], "at least one"), ([3], "cannot read observable"),
     (("ZZ", (1, 1)), "repeats a wire"),
     ("XI\u0131", "unknown Pauli letter '\u0131' at position 2"),  # dotless i: 'ı'.upper() == 'I'
     ("\u0131", "unknown Pauli letter")],
)
def test_bad_observables(obs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        compile_observables(obs, 3)


@pytest.mark.parametrize(
    "obs, match",
    [(("Z", 1.0), r"wires of Pauli term 'Z' must be an int or a sequence of ints, got 1.0"),
     (("ZZ", (0, 1.0)), "wire 1.0 of Pauli term 'ZZ' must be an int"),
     (("ZZ", (0, True)), "wire True of Pauli term 'ZZ' must be an int"),
     (("ZZZ", "XXX"), r"got the string 'XXX'.*in a list: \['ZZZ', 'XXX'\]")],
)
def test_sparse_term_wires_must_be_ints(obs, match):
    with pytest.raises(TypeError, match=match):
        compile_observables(obs, 3)


def test_lowercase_pauli_letters_still_parse():
    np.testing.assert_array_equal(compile_observables("xyz", 3), [[1, 2, 3]])

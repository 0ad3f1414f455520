"""The importer under hostile input: every limit of ``Limits`` holds, in bounded time and memory.

Times are CPU seconds of this process (``time.process_time``), so a loaded machine does not make
the bounds flaky; each bound is several times what the code needs.
"""
from __future__ import annotations

import sys
import time
import tracemalloc

import pytest

from hdqnn import Input, Weight
from hdqnn.qasm import Limits, QasmError, loads, parse
from hdqnn.qasm.limits import MAX_RECURSIVE_DEPTH

HEADER3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'


def refused(text: str, fragment: str, limits: Limits | None = None) -> QasmError:
    """The QasmError ``text`` raises; it names ``fragment`` and has a position."""
    with pytest.raises(QasmError) as info:
        parse(text, limits)
    err = info.value
    assert fragment in str(err), str(err)
    assert err.line is not None and err.column is not None, str(err)
    return err


def timed(fn):
    """``fn()``'s result and the CPU seconds it took."""
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


def doubling(n: int, leaf: str = "x a;") -> str:
    """``n`` gate definitions, each calling the previous one twice: 2**(n-1) leaf gates."""
    defs = [f"gate g0 a {{ {leaf} }}\n"]
    defs += [f"gate g{i} a {{ g{i - 1} a; g{i - 1} a; }}\n" for i in range(1, n)]
    return HEADER3 + "".join(defs) + f"qubit q;\ng{n - 1} q;\n"


# --------------------------------------------------------------------------- expansion
def test_the_reported_nineteen_doubling_definitions_are_refused_in_bounded_time():
    # the finding: 19 doubling definitions in 572 characters took 2.8 s, each 2 more lines x4
    text = doubling(20)
    assert len(text) < 800
    _, seconds = timed(lambda: refused(text, "Limits.max_expansion"))
    assert seconds < 15.0  # about 1.6 s on the development machine


@pytest.mark.parametrize("leaf", ["x a;", "", "rx(1+2*3-4/5) a;"], ids=["gates", "empty", "angles"])
def test_forty_doubling_definitions_stop_at_the_expansion_limit(leaf):
    # 2**39 gates (or calls that expand to nothing, or angle evaluations) without the limit
    text = doubling(40, leaf)
    err, seconds = timed(lambda: refused(text, "expands to more than 20000", Limits(max_expansion=20_000)))
    assert err.line >= 3 and seconds < 2.0


def test_a_program_within_the_expansion_limit_reads_completely():
    assert len(loads(doubling(10)).operations) == 2**9
    refused(doubling(10), "max_expansion", Limits(max_expansion=2**9))


def test_a_gate_calling_itself_hits_the_depth_limit():
    text = HEADER3 + "gate g a { g a; }\nqubit q;\ng q;\n"
    refused(text, "nested deeper than 64 (Limits.max_gate_depth)")
    refused(text, "nested deeper than 5", Limits(max_gate_depth=5))


# --------------------------------------------------------------------------- registers
def test_a_huge_bit_register_is_refused_without_allocating():
    tracemalloc.start()
    try:
        err = refused(HEADER3 + "qubit q;\nbit[100000000] c;\nc = measure q;\n", "Limits.max_bits")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (err.line, err.column) == (4, 16)
    assert peak < 10 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_bit_registers_up_to_the_limit_allocate_nothing_per_bit():
    text = HEADER3 + "qubit q;\nbit[60000] c;\nbit[5536] d;\n" + "c = measure q;\n"
    tracemalloc.start()
    try:
        refused(text, "measuring 1 qubit(s) into 60000 bit(s)")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20, f"peak {peak / 2**20:.1f} MiB"
    refused(HEADER3 + "qubit q;\nbit[60000] c;\nbit[5537] d;\n", "65537 classical bits", None)
    refused(HEADER3 + "qubit q;\nbit[9] c;\n", "exceed the limit of 8", Limits(max_bits=8))


# --------------------------------------------------------------------------- expressions
def nested_parens(n: int) -> str:
    return "(" * n + "0.5" + ")" * n


@pytest.mark.parametrize("expression", [
    nested_parens(200),
    "sin(" * 200 + "0.5" + ")" * 200,
    "2^" * 200 + "1",
    "2**" * 200 + "1",
], ids=["parentheses", "calls", "power", "star-power"])
def test_deep_nesting_is_a_qasm_error_not_a_recursion_error(expression):
    err = refused(HEADER3 + f"qubit q;\nrx({expression}) q;\n", "nested deeper than 64 levels")
    assert err.line == 4


def test_nesting_within_the_limit_parses_correctly():
    assert loads(HEADER3 + f"qubit q;\nrx({nested_parens(64)}) q;\n").operations[0].angles == (0.5,)
    deep = Limits(max_expression_depth=MAX_RECURSIVE_DEPTH)
    text = HEADER3 + f"qubit q;\nrx({nested_parens(MAX_RECURSIVE_DEPTH)}) q;\n"
    assert loads(text, deep).operations[0].angles == (0.5,)
    refused(HEADER3 + f"qubit q;\nrx({nested_parens(11)}) q;\n", "deeper than 10",
            Limits(max_expression_depth=10))


def test_long_sums_products_and_sign_runs_parse_without_recursion():
    def angle(expression: str, prefix: str = "") -> object:
        return loads(HEADER3 + prefix + f"qubit q;\nrx({expression}) q;\n").operations[0].angles[0]

    assert angle("+".join(["1"] * 900)) == 900.0
    assert angle("-".join(["1"] * 5000)) == -4998.0
    assert angle("*".join(["1.0001"] * 5000)) == pytest.approx(1.0001**5000)
    assert angle("-" * 5001 + "2") == -2.0
    assert angle(" + ".join(["t", "-t"] * 450 + ["t"]), "input float t;\n") == Input(0)


def test_a_sum_of_many_parameters_scaled_many_times_is_linear_time():
    names = [f"p{i}" for i in range(3000)]
    decls = "".join(f"input float {n};\n" for n in names)
    text = HEADER3 + decls + "qubit q;\nrx((" + "+".join(names) + ")" + "*1.5/1.5" * 3000 + ") q;\n"
    _, seconds = timed(lambda: refused(text, "combines several parameters"))
    assert seconds < 3.0


def test_many_parameter_declarations_are_linear_time():
    text = HEADER3 + "".join(f"input float p{i};\n" for i in range(30_000)) + "qubit q;\nrx(p29999) q;\n"
    circuit, seconds = timed(lambda: loads(text))
    assert seconds < 5.0
    assert circuit.operations[0].angles == (Input(29999),)


def test_a_definition_with_thirty_thousand_arguments_is_linear_time():
    names = ",".join(f"a{i}" for i in range(30_000))
    text = HEADER3 + f"gate g({names}) {names} {{ barrier {names}; }}\ngate k {names} {{ x {names}; }}\nqubit q;\n"
    _, seconds = timed(lambda: loads(text))
    assert seconds < 3.0


# --------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("literal, column", [("1e309", 4), ("1.5e99999", 4), ("9" * 400 + ".0", 4)])
def test_a_literal_beyond_float64_is_a_qasm_error_at_its_position(literal, column):
    refused(HEADER3 + f"qubit q;\nrx({literal}) q;\n", "float64", Limits(max_number_chars=1000))
    err = refused(HEADER3 + f"qubit q;\nrx({literal}) q;\n", "", Limits(max_number_chars=1000))
    assert (err.line, err.column) == (4, column)


@pytest.mark.parametrize("expression", ["1e308*10", "-1e308-1e308", "1e308*10-1e308*10", "t*1e308*10"])
def test_an_angle_that_overflows_is_a_qasm_error(expression):
    err = refused(HEADER3 + f"input float t;\nqubit q;\nrx({expression}) q;\n", "not finite")
    assert (err.line, err.column) == (5, 4)


@pytest.mark.parametrize("program, column", [
    ("qubit[{n}] q;\n", 7),
    ("qubit[2] q;\nh q[{n}];\n", 5),
    ("h ${n};\n", 3),
    ("qubit q;\nrx({n}) q;\n", 4),
    ("qubit q;\nrx(0.{n}) q;\n", 4),
    ("qubit q;\nrx(1e{n}) q;\n", 4),
])
def test_five_thousand_digit_numbers_are_refused_at_their_position(program, column):
    err = refused(HEADER3 + program.format(n="7" * 5000), "Limits.max_number_chars")
    assert (err.line, err.column) == (program.count("\n", 0, program.index("{n}")) + 3, column)


@pytest.mark.skipif(not hasattr(sys, "get_int_max_str_digits"), reason="no int digit limit before 3.11")
def test_an_integer_beyond_pythons_digit_limit_is_a_qasm_error():
    digits = sys.get_int_max_str_digits() + 1
    if digits == 1:  # the limit is switched off in this interpreter
        pytest.skip("sys.set_int_max_str_digits(0)")
    refused(HEADER3 + f"qubit[{'1' * digits}] q;\n", "too long", Limits(max_number_chars=digits))


def test_a_parameter_name_asking_for_a_huge_index_is_refused():
    refused(HEADER3 + f"input float in_{'9' * 5000};\n", "Limits.max_parameter_index")
    refused(HEADER3 + "input float w_100001;\n", "above the limit of 100000")
    at_limit = parse(HEADER3 + "input float w_000100000;\nqubit q;\n")
    assert at_limit.parameters == {"w_000100000": Weight(100000)}
    assert parse(HEADER3 + "input float w_0003;\nqubit q;\nrx(w_0003) q;\n").circuit.n_weights == 4


# --------------------------------------------------------------------------- characters
@pytest.mark.parametrize("digit", ["\u0663", "\uff13", "\u00b3", "\u0967", "\U0001d7db"],
                         ids=["arabic-indic", "fullwidth", "superscript", "devanagari", "math-bold"])
@pytest.mark.parametrize("program, column", [
    ("qubit[{d}] q;\n", 7),
    ("qubit[2] q;\nh q[{d}];\n", 5),
    ("h ${d};\n", 3),
    ("qubit q;\nrx({d}) q;\n", 4),
    ("qubit q;\nrx(1{d}) q;\n", 5),
    ("input float in_{d};\n", 16),
])
def test_non_ascii_digits_are_not_numbers(digit, program, column):
    err = refused(HEADER3 + program.format(d=digit), "unexpected character")
    assert (err.line, err.column) == (program.count("\n", 0, program.index("{d}")) + 3, column)


def test_unicode_letters_still_name_things():
    text = HEADER3 + "input float θ;\nqubit q;\nrx(θ + π - π) q;\nry(τ/4) q;\n"
    assert [op.angles[0] for op in loads(text).operations] == [Input(0), 3.141592653589793 / 2]


# --------------------------------------------------------------------------- source and API
def test_a_program_longer_than_the_source_limit_is_refused_at_the_limit():
    text = HEADER3 + "qubit q;\n" + "h q;\n" * 100
    err = refused(text, "Limits.max_source_chars", Limits(max_source_chars=len(HEADER3) + 12))
    assert (err.line, err.column) == (4, 4)
    assert len(loads(text).operations) == 100


@pytest.mark.parametrize("field, value", [
    ("max_expansion", 0), ("max_bits", -1), ("max_source_chars", 1.5), ("max_number_chars", True),
    ("max_expression_depth", MAX_RECURSIVE_DEPTH + 1), ("max_gate_depth", MAX_RECURSIVE_DEPTH + 1),
])
def test_limits_are_validated(field, value):
    with pytest.raises(ValueError, match=f"Limits.{field}"):
        Limits(**{field: value})


def test_limits_must_be_a_limits_object():
    with pytest.raises(TypeError, match="limits must be a hdqnn.qasm.Limits"):
        loads(HEADER3 + "qubit q;\n", {"max_bits": 3})

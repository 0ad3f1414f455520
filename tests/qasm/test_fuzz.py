"""Seeded mutation fuzz of the OpenQASM importer: any text parses or raises QasmError, quickly.

Valid programs (``dumps`` round trips in every version and dialect, plus hand-written programs
with gate definitions, broadcasts and measurements) are mutated thousands of times: byte flips,
token deletion / duplication / swaps, splicing two programs, digit inflation, nesting inflation
(parentheses, calls, signs, nested gate definitions) and random tokens or non-ASCII characters.
Every mutant must parse or raise QasmError with a line and column (nothing else: no
RecursionError, ValueError, IndexError, KeyError ...) within 1 s of CPU time.

``HDQNN_QASM_FUZZ_MUTANTS=100000`` runs more mutants than the default.
"""
from __future__ import annotations

import os
import random
import re
import time

import numpy as np
import pytest

from hdqnn.qasm import Limits, QasmError, dumps, parse
from tests.circuit_factory import random_circuit

#: Mutants in the default suite (about 10 s on one core), split over CHUNKS seeds.
MUTANTS = int(os.environ.get("HDQNN_QASM_FUZZ_MUTANTS", "3000"))
CHUNKS = 6
#: CPU seconds one mutant may take. The fuzz lowers max_expansion so that nested-definition
#: mutants stop quickly; test_limits checks the time bound of the default limits.
MUTANT_SECONDS = 1.0
LIMITS = Limits(max_expansion=50_000)

HEADER3 = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
HAND_WRITTEN = [
    HEADER3 + """input float[64] theta;
input angle[32] w_1;
gate mine(a, b) x, y { rzz(a/2) x, y; ry(-b) y; barrier x; gphase(a); }
gate rzz(p) x, y { cx x, y; u1(p) y; cx x, y; }
qubit[2] a;   // wires 0, 1
qubit b;
bit[2] m;
bit n;
h a;          /* broadcast */
cx a, b;
mine(0.5*theta, 2*w_1) a[1], b;
U(pi/2, -pi, tau/4) b;
rx(2*sin(pi/6) + ln(exp(0.5)) - sqrt(4)^2 ** 0.5) a[0];
m = measure a;
measure b -> n;
""",
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\nu3(pi/2, -pi^2/4, 2*sin(pi/6)) q[0];\n'
    "u2(0, pi) q[1];\ncu1(sqrt(4)) q[0], q[1];\nccx q[0], q[1], q[2];\ncswap q[2], q[0], q[1];\n"
    "ch q[0], q[2];\nbarrier q;\nmeasure q -> c;\n",
    "OPENQASM 3.0;\nqubit[3] q;\ncnot q[0], q[1];\nsi q[0];\nphaseshift(0.1) q[0];\nxx(0.3) q[0], q[1];\n"
    "ccnot q[0], q[1], q[2];\nvi q[2];\n",
    "OPENQASM 3.0;\nh $2;\ncx $2, $0;\nrz(1.5e-3) $1;\n",
]


def corpus() -> list[str]:
    rng = np.random.default_rng(2026)
    programs = list(HAND_WRITTEN)
    for n_qubits in (1, 2, 3):
        c = random_circuit(rng, n_qubits)
        programs += [dumps(c), dumps(c, measure=False),
                     dumps(c, dialect="braket", basis=("rx", "ry", "rz", "cnot"))]
        x, w = rng.normal(size=(1, c.n_inputs)), rng.normal(size=(1, c.n_weights))
        for version, dialect in (("2.0", "standard"), ("3.0", "standard"), ("3.0", "braket")):
            programs += dumps(c, x, w, version, dialect=dialect)
    return programs


_PIECES = re.compile(r"\s+|[^\W\d]\w*|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\S")
_VOCABULARY = [
    "gate", "qubit", "bit", "qreg", "creg", "measure", "input", "float", "angle", "OPENQASM", "include",
    "barrier", "gphase", "ctrl", "inv", "pow", "reset", "U", "CX", "pi", "π", "sin", "in_0", "w_3", "q",
    "c", "a", "x", "h", "cx", "rx", "u", "mine", "@", "->", "$", "$0", "$99", "{", "}", "(", ")", "[",
    "]", ";", ",", "=", "==", "/*", "*/", "//", '"', '"stdgates.inc"', "^", "**", "+", "-", "*", "/", ".",
    "0", "1", "2.5", "1e309", "1e-400", "0.", ".5", "3.0", "100000000", "\n", " ",
]
_STRANGE = ["\u0663", "\uff13", "\u00b2", "\u00bd", "\u0967", "\U0001d7db", "é", "\u200b", "\x00", "\ufeff",
            "\U0001f600", "\u2028", "\r", "\t", "\\"]


def _pieces(text: str) -> list[str]:
    return _PIECES.findall(text)


def byte_flip(r: random.Random, text: str, other: str) -> str:
    if not text:
        return r.choice(_STRANGE)
    i = r.randrange(len(text))
    char = r.choice(_STRANGE) if r.random() < 0.3 else chr(r.randrange(32, 127))
    return text[:i] + char + text[i + 1:]


def delete_token(r: random.Random, text: str, other: str) -> str:
    pieces = _pieces(text)
    if pieces:
        del pieces[r.randrange(len(pieces))]
    return "".join(pieces)


def duplicate_token(r: random.Random, text: str, other: str) -> str:
    pieces = _pieces(text) or [""]
    piece = r.choice(pieces)
    pieces.insert(r.randrange(len(pieces) + 1), piece * r.choice((1, 2, 50)))
    return "".join(pieces)


def swap_tokens(r: random.Random, text: str, other: str) -> str:
    pieces = _pieces(text)
    if len(pieces) > 1:
        i, j = r.randrange(len(pieces)), r.randrange(len(pieces))
        pieces[i], pieces[j] = pieces[j], pieces[i]
    return "".join(pieces)


def splice(r: random.Random, text: str, other: str) -> str:
    a, b = _pieces(text), _pieces(other)
    return "".join(a[: r.randrange(len(a) + 1)] + b[r.randrange(len(b) + 1):])


def inflate_digits(r: random.Random, text: str, other: str) -> str:
    pieces = _pieces(text)
    numbers = [i for i, p in enumerate(pieces) if p[:1].isascii() and p[:1].isdigit()]
    if not numbers:
        return text
    i = r.choice(numbers)
    pieces[i] = r.choice([
        "9" * r.choice((30, 400, 5000)), pieces[i] + "e" + "9" * r.choice((3, 400)),
        "0." + "1" * 5000, "100000000", "4294967296", pieces[i] + "e-400", "1" + "0" * 310,
    ])
    return "".join(pieces)


def inflate_nesting(r: random.Random, text: str, other: str) -> str:
    pieces = _pieces(text)
    operands = [i for i, p in enumerate(pieces) if p.strip() and (p[0].isalnum() or p[0] == "_")]
    n = r.choice((5, 65, 101, 300))
    if r.random() < 0.25 or not operands:
        return _nested_definitions(r, text, n)
    i = r.choice(operands)
    opener, closer = r.choice([("(", ")"), ("sin(", ")"), ("-", ""), ("2^", ""), ("2**", ""),
                               ("(1+", ")"), ("-(", ")"), ("2*", "")])
    pieces[i] = opener * n + pieces[i] + closer * n
    return "".join(pieces)


def _nested_definitions(r: random.Random, text: str, n: int) -> str:
    """Doubling (or self-recursive) gate definitions spliced into the program."""
    n = min(n, 60)
    defs = "gate f0 a { x a; }\n" + "".join(f"gate f{i} a {{ f{i - 1} a; f{i - 1} a; }}\n" for i in range(1, n))
    call = f"f{n - 1} q[0];\n" if r.random() < 0.7 else "gate r a { r a; }\nqubit[1] q;\nr q;\n"
    lines = text.split("\n")
    k = r.randrange(len(lines) + 1)
    return "\n".join(lines[:k] + [defs] + lines[k:]) + call


def insert_token(r: random.Random, text: str, other: str) -> str:
    pieces = _pieces(text)
    token = r.choice(_VOCABULARY + _STRANGE)
    pieces.insert(r.randrange(len(pieces) + 1), token if r.random() < 0.5 else f" {token} ")
    return "".join(pieces)


MUTATIONS = (byte_flip, delete_token, duplicate_token, swap_tokens, splice, inflate_digits,
             inflate_nesting, insert_token)


def mutant(r: random.Random, programs: list[str]) -> str:
    text = r.choice(programs)
    for _ in range(r.choice((1, 1, 2, 3))):
        text = r.choice(MUTATIONS)(r, text, r.choice(programs))
    return text


def outcome(text: str) -> str | None:
    """None when ``text`` parsed or raised a positioned QasmError in time, else what went wrong."""
    start = time.process_time()
    try:
        parse(text, LIMITS)
    except QasmError as err:
        if not (isinstance(err.line, int) and isinstance(err.column, int)):
            return f"QasmError without a position: {err}"
    except Exception as err:  # anything else is the bug this test looks for
        return f"{type(err).__name__}: {err}"
    elapsed = time.process_time() - start
    if elapsed > MUTANT_SECONDS:
        return f"took {elapsed:.2f} s of CPU"
    return None


@pytest.fixture(scope="module")
def programs() -> list[str]:
    programs = corpus()
    for text in programs:  # the seeds themselves are valid
        parse(text, LIMITS)
    return programs


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_mutants_parse_or_raise_a_positioned_qasm_error_quickly(programs, chunk):
    r = random.Random(1000 + chunk)
    failures = []
    for i in range(MUTANTS // CHUNKS):
        text = mutant(r, programs)
        problem = outcome(text)
        if problem is not None:
            failures.append(f"mutant {i} (seed {1000 + chunk}): {problem[:200]}\n  text: {text[:300]!r}")
    assert not failures, f"{len(failures)} mutant(s) escaped:\n" + "\n".join(failures[:10])

"""Resource limits of the OpenQASM importer: how much time and memory one program may cost.

A program is data from outside (a file, a colleague, a cloud service), and a few hundred
characters can ask for unbounded work: each nested ``gate`` definition that calls the previous one
twice doubles the gates it expands to, and a ``bit[100000000]`` register asks for gigabytes.
Every limit is checked before the work or memory it guards is spent, and crossing one raises
:class:`~hdqnn.qasm.QasmError` at the line and column that asked for too much. The defaults read
programs of up to about 40,000 gate calls; at the defaults the worst program measured costs about
5 s of CPU and 150 MB (1.6 s per million expansion units, up to 3 s and 130 MB per million
characters of text). Pass ``limits=Limits(...)`` to ``loads`` / ``parse`` to read more (or less).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

#: Deepest ``max_expression_depth`` / ``max_gate_depth`` allowed: the parser and the gate
#: expander recurse once per level (a few Python frames each; both at 100 take about 800 frames)
#: and Python's stack holds 1000; above this a deep program would hit RecursionError instead of
#: a QasmError.
MAX_RECURSIVE_DEPTH = 100


@dataclass(frozen=True)
class Limits:
    """Upper bounds on one program; each is a positive int (see each field's reason)."""

    #: Longest program text, in characters. Reading is linear in the text and gate definitions
    #: stay in memory while the program is read, so this bounds everything proportional to the
    #: source. A million characters is about 40,000 gate calls as ``dumps`` writes them.
    max_source_chars: int = 1_000_000
    #: Units of work while reading: every gate call, every call inside an inlined ``gate``
    #: definition (recursively, also those that expand to nothing), every wire of a register
    #: broadcast, every measured qubit, and every number, name and operator of an angle each time
    #: it is evaluated. Nested definitions multiply this exponentially in the length of the text
    #: (20 doubling definitions are a million gates), so it bounds the reading time beyond the
    #: text's own and the memory of the gate list.
    max_expansion: int = 1_000_000
    #: Longest numeric literal (digits, point and exponent). No angle or index needs more than
    #: about 20 digits, Python converts an n-digit integer in O(n^2) time, and since 3.11 refuses
    #: more than 4300 digits.
    max_number_chars: int = 100
    #: Deepest nesting of an angle expression: each parenthesis, function call and power (``^``,
    #: ``**``) adds a level; long sums, products and runs of signs do not. The parser recurses
    #: once per level (at most ``MAX_RECURSIVE_DEPTH``).
    max_expression_depth: int = 64
    #: Deepest chain of ``gate`` definitions calling one another while a call is inlined (a gate
    #: calling itself is caught here). The expander recurses once per level (at most
    #: ``MAX_RECURSIVE_DEPTH``).
    max_gate_depth: int = 64
    #: Classical bits declared in all registers together. hdqnn measures at most 30 wires; the bit
    #: count travels to ``QasmProgram.n_clbits`` and to the adapters that lay out results, so a
    #: ``bit[100000000]`` must not get that far.
    max_bits: int = 65_536
    #: Bound on the index a parameter name asks for (``in_<i>`` is Input(i), ``w_<j>`` Weight(j)):
    #: the circuit's ``n_inputs`` / ``n_weights`` become index + 1 and every caller allocates
    #: arrays that wide.
    max_parameter_index: int = 100_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{f.name} must be a positive int, got {value!r}")
        for name in ("max_expression_depth", "max_gate_depth"):
            if getattr(self, name) > MAX_RECURSIVE_DEPTH:
                raise ValueError(f"Limits.{name} must be at most {MAX_RECURSIVE_DEPTH} (the importer "
                                 f"recurses once per level), got {getattr(self, name)}")

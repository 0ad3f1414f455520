"""OpenQASM 2.0 / 3.0 import: the programs hdqnn and Qiskit write, read into an hdqnn Circuit.

Read: the ``OPENQASM`` header; ``include "qelib1.inc"`` / ``"stdgates.inc"``; ``qreg``/``creg``
and ``qubit``/``bit`` registers (several registers are laid out in declaration order) or
physical qubits ``$k``; ``input float``/``angle`` parameters; gate calls with angle expressions
(``pi``, ``+ - * / ^ **``, ``sin`` ...) and register broadcast; user ``gate`` definitions;
``barrier``; ``gphase`` (ignored: a global phase); ``measure`` in both spellings, after the
measured qubit's last gate. Anything else raises :class:`QasmError` with its line and column.

Reading is bounded: :class:`~hdqnn.qasm.limits.Limits` caps the text, the expansion of nested
``gate`` definitions, numbers, nesting depths, classical bits and parameter indices, so a hostile
program ends in a QasmError after bounded time and memory.

An angle must be a constant or ``c * parameter`` (hdqnn's Input/Weight with a scale). Parameter
``in_<i>`` becomes Input(i), ``w_<j>`` Weight(j) (the names ``dumps`` writes); any other name
becomes the next free Input index, in declaration order.
"""
from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Union

import numpy as np

from ..circuits import GATES, MAX_QUBITS, Circuit, Input, Weight, gate_matrix
from .exporter import INPUT_PREFIX, WEIGHT_PREFIX
from .lexer import QasmError, Token, iter_tokens
from .library import ALIAS_ARITY, ALIASES, CONSTANTS, FUNCTIONS, INCLUDES, PRELUDE
from .limits import Limits

#: Parameter values at which a user gate named like a native gate is compared with it.
PROBE_ANGLES = ((0.3711, -1.2093, 0.8127), (2.0571, 0.4419, -2.7303))
#: |tr(A^dagger B)| / dim above this: the same unitary up to a global phase.
SAME_UNITARY_TOL = 1e-9
_UNSUPPORTED = ("reset", "if", "for", "while", "def", "defcal", "cal", "let", "const", "box",
                "delay", "output", "opaque", "return", "extern", "switch", "break", "continue",
                "end", "float", "int", "uint", "angle", "bool", "complex", "duration", "stretch",
                "array", "defcalgrammar", "pragma")
_MODIFIERS = ("ctrl", "negctrl", "inv", "pow")
_PARAM_NAME = re.compile(rf"({re.escape(INPUT_PREFIX)}|{re.escape(WEIGHT_PREFIX)})([0-9]+)$")


# --------------------------------------------------------------------------- angle values
@dataclass(frozen=True, slots=True)
class Linear:
    """An angle value ``const + sum(coef * parameter)``; parameters are ('input'|'weight', index)."""

    const: float
    coef: tuple[tuple[tuple[str, int], float], ...] = ()

    def scaled(self, f: float) -> "Linear":
        return Linear(self.const * f, tuple((k, c * f) for k, c in self.coef))

    @property
    def is_const(self) -> bool:
        return all(c == 0.0 for _, c in self.coef)


def _to_angle(value: Linear, tok: Token) -> Union[float, Input, Weight]:
    terms = [(k, c) for k, c in value.coef if c != 0.0]
    if not terms:
        return value.const
    if len(terms) == 1 and value.const == 0.0:
        (kind, index), c = terms[0]
        return Input(index, c) if kind == "input" else Weight(index, c)
    raise QasmError("hdqnn angles are a constant or a multiple of one input parameter; this angle "
                    "combines several parameters or adds a constant to one", tok.line, tok.column)


# --------------------------------------------------------------------------- syntax trees
@dataclass(frozen=True, slots=True)
class Expr:
    """An angle expression. Sums and products are flat (``args`` are the terms / factors; a
    subtracted term is wrapped in "neg", a factor after the first in "mul" or "div" holding its
    operator token), so a long sum or product costs no recursion."""

    kind: str  # "num" | "id" | "neg" | "sum" | "product" | "mul" | "div" | "pow" | "call"
    tok: Token
    value: float = 0.0
    name: str = ""
    args: tuple["Expr", ...] = ()


@dataclass(frozen=True, slots=True)
class Call:
    """A gate call inside a ``gate`` body: qubit arguments are formal names."""

    name: str
    tok: Token
    params: tuple[Expr, ...]
    qubits: tuple[str, ...]


@dataclass
class GateDef:
    params: tuple[str, ...]
    qubits: tuple[str, ...]
    body: list[Call]
    #: The native gate this definition equals (up to global phase), if any.
    native: str | None = None


@dataclass(frozen=True)
class QasmProgram:
    """What ``parse`` read: the circuit and how the program's names map onto it."""

    circuit: Circuit
    version: str
    #: input parameter name -> the Input/Weight it became (scale 1).
    parameters: dict[str, Union[Input, Weight]]
    #: (classical bit index, wire) for each measurement, in program order.
    measurements: tuple[tuple[int, int], ...]
    n_clbits: int


# --------------------------------------------------------------------------- parser
@dataclass
class _State:
    version: str = "3.0"
    qregs: dict[str, tuple[int, int]] = field(default_factory=dict)
    cregs: dict[str, tuple[int, int]] = field(default_factory=dict)
    n_qubits: int = 0
    n_clbits: int = 0
    physical: int = 0
    parameters: dict[str, Union[Input, Weight]] = field(default_factory=dict)
    #: parameters inverted (Input/Weight -> name) and the lowest Input index that may be free.
    owners: dict[Union[Input, Weight], str] = field(default_factory=dict)
    next_input: int = 0
    gates: dict[str, GateDef] = field(default_factory=dict)
    ops: list[tuple[str, tuple[int, ...], tuple]] = field(default_factory=list)
    measured: dict[int, Token] = field(default_factory=dict)
    measurements: list[tuple[int, int]] = field(default_factory=list)


class _Parser:
    def __init__(self, text: str, library: dict[str, GateDef] | None, limits: Limits) -> None:
        self.tokens = iter_tokens(text, limits.max_number_chars)
        self.lookahead: deque[Token] = deque()
        self.library = library if library is not None else {}
        self.limits = limits
        #: work units spent so far, against ``limits.max_expansion``
        self.expansion = 0
        self.s = _State()

    # ----------------------------------------------------------------- token helpers
    def peek(self, offset: int = 0) -> Token:
        while len(self.lookahead) <= offset:
            self.lookahead.append(next(self.tokens))
        return self.lookahead[offset]

    def next(self) -> Token:
        tok = self.peek()
        self.lookahead.popleft()
        return tok

    def at(self, text: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok.kind in ("op", "id") and tok.text == text

    def expect(self, text: str) -> Token:
        tok = self.next()
        if tok.text != text or tok.kind not in ("op", "id"):
            raise _error(tok, f"expected {text!r}, found {_describe(tok)}")
        return tok

    def expect_kind(self, kind: str, what: str) -> Token:
        tok = self.next()
        if tok.kind != kind:
            raise _error(tok, f"expected {what}, found {_describe(tok)}")
        return tok

    def separator(self, end: str) -> None:
        """Consume the ',' between list items; the list ends at ``end`` (left unconsumed)."""
        if self.at(end):
            return
        tok = self.next()
        if tok.text != ",":
            raise _error(tok, f"expected ',' or {end!r}, found {_describe(tok)}")

    def identifier(self, what: str = "a name") -> Token:
        return self.expect_kind("id", what)

    def integer(self) -> int:
        tok = self.expect_kind("int", "an integer")
        try:
            return int(tok.text)
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            raise _error(tok, f"integer of {len(tok.text)} digits is too long") from None

    # ----------------------------------------------------------------- program
    def program(self) -> _State:
        if self.at("OPENQASM"):
            self.header()
        while self.peek().kind != "eof":
            self.statement()
        return self.s

    def header(self) -> None:
        self.next()
        tok = self.next()
        if tok.kind not in ("int", "float") or tok.text.split(".")[0] not in ("2", "3"):
            raise _error(tok, f"unsupported OpenQASM version {tok.text!r}; hdqnn reads 2.0 and 3.x")
        self.s.version = "2.0" if tok.text.startswith("2") else "3.0"
        self.expect(";")

    def statement(self) -> None:
        tok = self.peek()
        if tok.kind != "id":
            raise _error(tok, f"expected a statement, found {_describe(tok)}")
        handler = {
            "OPENQASM": self._misplaced_header, "include": self.include, "qreg": self.qreg,
            "creg": self.creg, "qubit": self.qubit_decl, "bit": self.bit_decl, "input": self.input_decl,
            "gate": self.gate_def, "measure": self.measure, "barrier": self.barrier,
            "gphase": self.gphase,
        }.get(tok.text)
        if handler is not None:
            handler()
        elif tok.text in _MODIFIERS and (self.at("@", 1) or self.at("(", 1)):
            raise _error(tok, f"gate modifier {tok.text!r} is not supported")
        elif tok.text in _UNSUPPORTED:
            raise _error(tok, f"unsupported statement {tok.text!r}: hdqnn reads gates, registers, "
                              "input parameters, gate definitions, barriers and final measurements")
        elif self.at("=", 1) or (self.at("[", 1) and self.at("=", 4)):
            self.measure_assignment()
        else:
            self.gate_call()

    def _misplaced_header(self) -> None:
        raise _error(self.peek(), "the OPENQASM header must be the first statement")

    def include(self) -> None:
        self.next()
        tok = self.expect_kind("string", "a file name in double quotes")
        if tok.text not in INCLUDES:
            raise _error(tok, f"cannot include {tok.text!r}: hdqnn knows {' and '.join(INCLUDES)}")
        self.expect(";")

    # ----------------------------------------------------------------- declarations
    def _declare(self, registers: dict, name_tok: Token, size: int, quantum: bool) -> None:
        if name_tok.text in self.s.qregs or name_tok.text in self.s.cregs:
            raise _error(name_tok, f"register {name_tok.text!r} is already declared")
        if size < 1:
            raise _error(name_tok, f"register {name_tok.text!r} must have at least one bit")
        if quantum:
            if self.s.physical:
                raise _error(name_tok, "cannot declare qubit registers in a program using $ qubits")
            if self.s.n_qubits + size > MAX_QUBITS:
                total = self.s.n_qubits + size
                raise _error(name_tok, f"{total} qubits exceed hdqnn's limit of {MAX_QUBITS}")
            registers[name_tok.text] = (self.s.n_qubits, size)
            self.s.n_qubits += size
        else:
            if self.s.n_clbits + size > self.limits.max_bits:
                total = self.s.n_clbits + size
                raise _error(name_tok, f"{total} classical bits exceed the limit of {self.limits.max_bits} "
                                       "(Limits.max_bits)")
            registers[name_tok.text] = (self.s.n_clbits, size)
            self.s.n_clbits += size

    def _old_style(self, quantum: bool) -> None:
        self.next()
        name = self.identifier("a register name")
        self.expect("[")
        size = self.integer()
        self.expect("]")
        self.expect(";")
        self._declare(self.s.qregs if quantum else self.s.cregs, name, size, quantum)

    def qreg(self) -> None:
        self._old_style(True)

    def creg(self) -> None:
        self._old_style(False)

    def _new_style(self, quantum: bool) -> None:
        self.next()
        size = 1
        if self.at("["):
            self.next()
            size = self.integer()
            self.expect("]")
        name = self.identifier("a register name")
        if self.at("="):
            raise _error(self.peek(), "initialised bit registers are not supported")
        self.expect(";")
        self._declare(self.s.qregs if quantum else self.s.cregs, name, size, quantum)

    def qubit_decl(self) -> None:
        self._new_style(True)

    def bit_decl(self) -> None:
        self._new_style(False)

    def input_decl(self) -> None:
        self.next()
        type_tok = self.identifier("a type")
        if type_tok.text not in ("float", "angle"):
            raise _error(type_tok, f"input parameters must be float or angle, got {type_tok.text!r}")
        if self.at("["):
            self.next()
            self.integer()
            self.expect("]")
        name = self.identifier("a parameter name")
        self.expect(";")
        self._add_parameter(name)

    def _add_parameter(self, name: Token) -> None:
        params = self.s.parameters
        if name.text in params or name.text in CONSTANTS:
            raise _error(name, f"parameter {name.text!r} is already declared")
        m = _PARAM_NAME.match(name.text)
        if m:
            index = self._parameter_index(name, m.group(2))
            ref = (Input if m.group(1) == INPUT_PREFIX else Weight)(index)
        else:
            # indices are never freed, so the lowest free one only moves up
            while Input(self.s.next_input) in self.s.owners:
                self.s.next_input += 1
            ref = Input(self._parameter_index(name, str(self.s.next_input)))
        clash = self.s.owners.get(ref)
        if clash is not None:
            raise _error(name, f"parameter {name.text!r} would be {ref}, already given to {clash!r}")
        params[name.text] = ref
        self.s.owners[ref] = name.text

    def _parameter_index(self, name: Token, digits: str) -> int:
        limit = self.limits.max_parameter_index
        # compare lengths first: int() of an unbounded digit string is quadratic (or refused)
        if len(digits.lstrip("0")) <= len(str(limit)) and int(digits) <= limit:
            return int(digits)
        raise _error(name, f"parameter {name.text!r} needs an index above the limit of {limit} "
                           "(Limits.max_parameter_index)")

    # ----------------------------------------------------------------- gate definitions
    def gate_def(self) -> None:
        self.next()
        name = self.identifier("a gate name")
        params: tuple[str, ...] = ()
        if self.at("("):
            self.next()
            params = self._name_list(")")
            self.expect(")")
        qubits = self._name_list("{")
        if not qubits:
            raise _error(self.peek(), f"gate {name.text!r} needs at least one qubit argument")
        self.expect("{")
        body = []
        formal = frozenset(qubits)  # a set: a definition may have thousands of qubit arguments
        while not self.at("}"):
            call = self._body_statement(formal)
            if call is not None:
                body.append(call)
        self.expect("}")
        if name.text in self.s.gates:
            raise _error(name, f"gate {name.text!r} is already defined")
        gate = GateDef(params, qubits, body)
        gate.native = self._matching_native(name, gate)
        self.s.gates[name.text] = gate

    def _name_list(self, end: str) -> tuple[str, ...]:
        names: dict[str, None] = {}  # ordered, with constant-time lookup
        while not self.at(end):
            tok = self.identifier("a name")
            if tok.text in names:
                raise _error(tok, f"{tok.text!r} appears twice")
            names[tok.text] = None
            self.separator(end)
        return tuple(names)

    def _body_statement(self, qubits: frozenset[str]) -> Call | None:
        tok = self.peek()
        if tok.kind == "eof":
            raise _error(tok, "gate definition is missing its closing '}'")
        if tok.text in ("barrier", "gphase"):
            self._skip_statement()
            return None
        if tok.text in _MODIFIERS:
            raise _error(tok, f"gate modifier {tok.text!r} is not supported")
        name = self.identifier("a gate call")
        params = self._call_params()
        args = []
        while not self.at(";"):
            q = self.identifier("a qubit argument")
            if q.text not in qubits:
                raise _error(q, f"{q.text!r} is not a qubit argument of this gate")
            args.append(q.text)
            self.separator(";")
        self.expect(";")
        return Call(name.text, name, params, tuple(args))

    def _skip_statement(self) -> None:
        while not self.at(";"):
            if self.peek().kind == "eof":
                raise _error(self.peek(), "expected ';'")
            self.next()
        self.next()

    def _matching_native(self, name: Token, gate: GateDef) -> str | None:
        """The native gate of the same name when ``gate`` implements it (up to global phase)."""
        spec = GATES.get(name.text)
        if spec is None or (len(gate.params), len(gate.qubits)) != (spec.n_angles, spec.n_wires):
            return None
        for probe in PROBE_ANGLES:
            values = probe[: spec.n_angles]
            sink: list = []
            env = {p: Linear(v) for p, v in zip(gate.params, values)}
            for call in gate.body:
                self._expand(call, env, dict(zip(gate.qubits, range(spec.n_wires))), sink, 1)
            if not same_unitary(sink, gate_matrix(name.text, *values), spec.n_wires):
                return None
        return name.text

    # ----------------------------------------------------------------- expressions
    # Only parentheses, function calls and powers make the parser (and the evaluator) recurse;
    # each level is checked against Limits.max_expression_depth before it is entered.
    def _call_params(self) -> tuple[Expr, ...]:
        if not self.at("("):
            return ()
        self.next()
        params = []
        while not self.at(")"):
            params.append(self.expr(0))
            self.separator(")")
        self.expect(")")
        return tuple(params)

    def _deeper(self, tok: Token, depth: int) -> int:
        limit = self.limits.max_expression_depth
        if depth >= limit:
            raise _error(tok, f"angle expression nested deeper than {limit} levels "
                              "(Limits.max_expression_depth)")
        return depth + 1

    def expr(self, depth: int) -> Expr:
        first = self.term(depth)
        terms = [first]
        while self.at("+") or self.at("-"):
            op = self.next()
            term = self.term(depth)
            terms.append(term if op.text == "+" else Expr("neg", op, args=(term,)))
        return first if len(terms) == 1 else Expr("sum", first.tok, args=tuple(terms))

    def term(self, depth: int) -> Expr:
        first = self.unary(depth)
        factors = [first]
        while self.at("*") or self.at("/"):
            op = self.next()
            factors.append(Expr("mul" if op.text == "*" else "div", op, args=(self.unary(depth),)))
        return first if len(factors) == 1 else Expr("product", first.tok, args=tuple(factors))

    def unary(self, depth: int) -> Expr:
        minus: Token | None = None  # a '-' of the run of signs while they negate (odd count)
        while self.at("-") or self.at("+"):
            tok = self.next()
            if tok.text == "-":
                minus = None if minus is not None else tok
        operand = self.power(depth)
        return operand if minus is None else Expr("neg", minus, args=(operand,))

    def power(self, depth: int) -> Expr:
        base = self.primary(depth)
        if self.at("^") or self.at("**"):
            op = self.next()
            return Expr("pow", op, args=(base, self.unary(self._deeper(op, depth))))
        return base

    def primary(self, depth: int) -> Expr:
        tok = self.next()
        if tok.kind in ("int", "float"):
            value = float(tok.text)
            if not math.isfinite(value):
                raise _error(tok, f"number {tok.text} is out of the float64 range")
            return Expr("num", tok, value=value)
        if tok.kind == "op" and tok.text == "(":
            inner = self.expr(self._deeper(tok, depth))
            self.expect(")")
            return inner
        if tok.kind == "id":
            if self.at("("):
                arg = self.expr(self._deeper(self.next(), depth))
                self.expect(")")
                return Expr("call", tok, name=tok.text, args=(arg,))
            return Expr("id", tok, name=tok.text)
        raise _error(tok, f"expected an angle expression, found {_describe(tok)}")

    def _angles(self, params: tuple[Expr, ...], env: dict[str, Linear]) -> list[Linear]:
        """The values of a call's angle expressions; each must be finite."""
        values = []
        for p in params:
            value = self.evaluate(p, env)
            if not (math.isfinite(value.const) and all(math.isfinite(c) for _, c in value.coef)):
                raise _error(p.tok, "angle is not finite (it overflows a float64)")
            values.append(value)
        return values

    def evaluate(self, e: Expr, env: dict[str, Linear]) -> Linear:
        self._spend(e.tok)
        if e.kind == "num":
            return Linear(e.value)
        if e.kind == "id":
            return self._lookup(e, env)
        if e.kind == "neg":
            return self.evaluate(e.args[0], env).scaled(-1.0)
        if e.kind == "sum":
            return self._sum(e, env)
        if e.kind == "product":
            return self._product(e, env)
        if e.kind == "call":
            fn = FUNCTIONS.get(e.name)
            if fn is None:
                raise _error(e.tok, f"unknown function {e.name!r}")
            arg = self._constant(self.evaluate(e.args[0], env), e.tok, f"{e.name}()")
            return Linear(_checked(fn, arg, e.tok, e.name))
        left, right = (self.evaluate(a, env) for a in e.args)
        base = self._constant(left, e.tok, "a power of a parameter")
        return Linear(_checked(math.pow, base, e.tok, "power", self._constant(right, e.tok, "a power")))

    def _sum(self, e: Expr, env: dict[str, Linear]) -> Linear:
        const, terms = 0.0, {}
        for term in e.args:
            value = self.evaluate(term, env)
            const += value.const
            for k, c in value.coef:
                terms[k] = terms.get(k, 0.0) + c
        return Linear(const, tuple(sorted(terms.items())))

    def _product(self, e: Expr, env: dict[str, Linear]) -> Linear:
        product = self.evaluate(e.args[0], env)
        # constant factors after a parameter, applied once at the end: scaling a many-parameter
        # value by each factor in turn would cost (parameters x factors)
        scale = 1.0
        for factor in e.args[1:]:
            value = self.evaluate(factor.args[0], env)
            if factor.kind == "div":
                denominator = self._constant(value, factor.tok, "division by a parameter")
                if denominator == 0.0:
                    raise _error(factor.tok, "division by zero")
                multiplier = 1.0 / denominator
            elif product.is_const:
                product = value.scaled(product.const)
                continue
            else:
                multiplier = self._constant(value, factor.tok, "a product of parameters")
            if product.is_const:
                product = product.scaled(multiplier)
            else:
                scale *= multiplier
        return product if scale == 1.0 else product.scaled(scale)

    def _spend(self, tok: Token) -> None:
        """Count one unit of work (a gate application, a measured qubit or an expression node)."""
        self.expansion += 1
        if self.expansion > self.limits.max_expansion:
            raise _error(tok, f"the program expands to more than {self.limits.max_expansion} gate "
                              "applications, measurements and angle evaluations (Limits.max_expansion)")

    def _lookup(self, e: Expr, env: dict[str, Linear]) -> Linear:
        if e.name in env:
            return env[e.name]
        if e.name in CONSTANTS:
            return Linear(CONSTANTS[e.name])
        ref = self.s.parameters.get(e.name)
        if ref is None:
            raise _error(e.tok, f"unknown identifier {e.name!r}")
        return Linear(0.0, ((("input" if isinstance(ref, Input) else "weight", ref.index), 1.0),))

    @staticmethod
    def _constant(value: Linear, tok: Token, what: str) -> float:
        if not value.is_const:
            raise _error(tok, f"{what} is not linear in the parameters; hdqnn angles are c * parameter")
        return value.const

    # ----------------------------------------------------------------- gate calls
    def gate_call(self) -> None:
        name = self.identifier("a gate name")
        params = self._call_params()
        groups = []
        while not self.at(";"):
            groups.append(self._qarg())
            self.separator(";")
        self.expect(";")
        values = self._angles(params, {})
        width = {len(g) for g, _ in groups if len(g) > 1}
        if len(width) > 1:
            raise _error(name, f"registers of different sizes {sorted(width)} in one broadcast call")
        for i in range(width.pop() if width else 1):
            wires = tuple(g[i] if len(g) > 1 else g[0] for g, _ in groups)
            for w, (_, tok) in zip(wires, groups):
                if w in self.s.measured:
                    raise _error(tok, f"gate after measuring this qubit (at line {self.s.measured[w].line}): "
                                      "mid-circuit measurement is not supported")
            self._apply(name, values, wires, self.s.ops, 0)

    def _qarg(self) -> tuple[range, Token]:
        tok = self.next()
        if tok.kind == "hwqubit":
            if self.s.qregs:
                raise _error(tok, "cannot mix $ qubits with declared qubit registers")
            index = int(tok.text[1:])
            if index >= MAX_QUBITS:
                raise _error(tok, f"qubit {tok.text} exceeds hdqnn's limit of {MAX_QUBITS} qubits")
            self.s.physical = max(self.s.physical, index + 1)
            return range(index, index + 1), tok
        if tok.kind != "id":
            raise _error(tok, f"expected a qubit, found {_describe(tok)}")
        return self._register_bits(tok, self.s.qregs, "qubit"), tok

    def _register_bits(self, tok: Token, registers: dict, kind: str) -> range:
        """The bits ``tok`` names; a range, so a large bit register allocates nothing."""
        if tok.text not in registers:
            raise _error(tok, f"unknown {kind} register {tok.text!r}")
        offset, size = registers[tok.text]
        if not self.at("["):
            return range(offset, offset + size)
        self.next()
        index_tok = self.peek()
        index = self.integer()
        self.expect("]")
        if index >= size:
            raise _error(index_tok, f"index {index} is out of range for {tok.text}[{size}]")
        return range(offset + index, offset + index + 1)

    def _apply(self, name: Token, values: list[Linear], wires: tuple[int, ...], sink: list,
               depth: int) -> None:
        self._spend(name)
        if depth > self.limits.max_gate_depth:
            raise _error(name, f"gate definitions nested deeper than {self.limits.max_gate_depth} "
                               "(Limits.max_gate_depth)")
        if len(set(wires)) != len(wires):
            raise _error(name, f"gate {name.text!r} uses the same qubit twice")
        gate = self.s.gates.get(name.text)
        if gate is not None and gate.native is None:
            self._inline(name, gate, values, wires, sink, depth)
        elif gate is not None or name.text in GATES:
            spec = GATES[name.text]
            self._check_arity(name, (spec.n_angles, spec.n_wires), values, wires)
            sink.append((name.text, wires, tuple(_to_angle(v, name) for v in values)))
        elif name.text in ALIASES:
            self._check_arity(name, ALIAS_ARITY[name.text], values, wires)
            native, mapping = ALIASES[name.text]
            args = tuple(values[m] if isinstance(m, int) else Linear(m) for m in mapping)
            sink.append((native, wires, tuple(_to_angle(v, name) for v in args)))
        elif name.text in self.library:
            self._inline(name, self.library[name.text], values, wires, sink, depth)
        else:
            raise _error(name, f"unknown gate {name.text!r}")

    def _inline(self, name: Token, gate: GateDef, values: list[Linear], wires: tuple[int, ...],
                sink: list, depth: int) -> None:
        self._check_arity(name, (len(gate.params), len(gate.qubits)), values, wires)
        env = dict(zip(gate.params, values))
        qubit_map = dict(zip(gate.qubits, wires))
        for call in gate.body:
            self._expand(call, env, qubit_map, sink, depth + 1)

    def _expand(self, call: Call, env: dict[str, Linear], qubit_map: dict[str, int], sink: list,
                depth: int) -> None:
        values = self._angles(call.params, env)
        self._apply(call.tok, values, tuple(qubit_map[q] for q in call.qubits), sink, depth)

    @staticmethod
    def _check_arity(name: Token, arity: tuple[int, int], values: list, wires: tuple) -> None:
        n_params, n_qubits = arity
        if len(values) != n_params:
            raise _error(name, f"gate {name.text!r} takes {n_params} parameter(s), got {len(values)}")
        if len(wires) != n_qubits:
            raise _error(name, f"gate {name.text!r} acts on {n_qubits} qubit(s), got {len(wires)}")

    # ----------------------------------------------------------------- other statements
    def measure(self) -> None:
        tok = self.next()
        qubits, qtok = self._qarg()
        clbits: range | None = None
        if self.at("->"):
            self.next()
            clbits = self._register_bits(self.identifier("a bit register"), self.s.cregs, "bit")
        self.expect(";")
        self._record_measurement(tok, qubits, clbits)

    def measure_assignment(self) -> None:
        target = self.identifier("a bit register")
        clbits = self._register_bits(target, self.s.cregs, "bit")
        self.expect("=")
        tok = self.expect("measure")
        qubits, _ = self._qarg()
        self.expect(";")
        self._record_measurement(tok, qubits, clbits)

    def _record_measurement(self, tok: Token, qubits: range, clbits: range | None) -> None:
        if clbits is not None and len(clbits) != len(qubits):
            raise _error(tok, f"measuring {len(qubits)} qubit(s) into {len(clbits)} bit(s)")
        for i, q in enumerate(qubits):
            self._spend(tok)
            self.s.measured[q] = tok
            if clbits is not None:
                self.s.measurements.append((clbits[i], q))

    def barrier(self) -> None:
        self.next()
        while not self.at(";"):
            self._qarg()
            self.separator(";")
        self.next()

    def gphase(self) -> None:
        self.next()
        self._call_params()
        self.expect(";")


def _error(tok: Token, message: str) -> QasmError:
    return QasmError(message, tok.line, tok.column)


def _describe(tok: Token) -> str:
    return "end of input" if tok.kind == "eof" else repr(tok.text)


def _checked(fn, x: float, tok: Token, what: str, *more: float) -> float:
    try:
        value = fn(x, *more)
    except (ValueError, OverflowError) as exc:
        raise _error(tok, f"{what} of {x} is undefined ({exc})") from None
    if not math.isfinite(value):
        raise _error(tok, f"{what} of {x} is not finite")
    return value


def same_unitary(ops: list, matrix: np.ndarray, n_wires: int) -> bool:
    """Whether the native ``ops`` on wires 0..n-1 multiply to ``matrix`` up to a global phase."""
    u = np.eye(2**n_wires, dtype=np.complex128).reshape((2,) * n_wires + (2**n_wires,))
    for name, wires, angles in ops:
        k = len(wires)
        m = gate_matrix(name, *angles).reshape((2,) * (2 * k))
        u = np.tensordot(m, u, axes=(list(range(k, 2 * k)), list(wires)))
        u = np.moveaxis(u, list(range(k)), list(wires))
    u = u.reshape(2**n_wires, 2**n_wires)
    overlap = abs(np.trace(matrix.conj().T @ u)) / 2**n_wires
    return bool(abs(overlap - 1.0) < SAME_UNITARY_TOL)


@lru_cache(maxsize=1)
def _library() -> dict[str, GateDef]:
    return _Parser(PRELUDE, None, Limits()).program().gates


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of character ``offset`` of ``text``."""
    return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)


def parse(text: str, limits: Limits | None = None) -> QasmProgram:
    """Read an OpenQASM 2.0 / 3.0 program; see the module docstring for what is understood.

    ``limits`` bounds the time and memory reading may take (default ``Limits()``).
    """
    if not isinstance(text, str):
        raise TypeError(f"OpenQASM text must be a str, got {type(text).__name__}")
    limits = Limits() if limits is None else limits
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a hdqnn.qasm.Limits, got {type(limits).__name__}")
    if len(text) > limits.max_source_chars:
        raise QasmError(f"the program has {len(text)} characters, more than the limit of "
                        f"{limits.max_source_chars} (Limits.max_source_chars)",
                        *_position(text, limits.max_source_chars))
    parser = _Parser(text, _library(), limits)
    state = parser.program()
    n_qubits = state.n_qubits or state.physical
    if n_qubits == 0:
        raise _error(parser.peek(), "the program declares no qubits")
    circuit = Circuit(n_qubits)
    for name, wires, angles in state.ops:
        circuit.append(name, wires, angles)
    return QasmProgram(circuit, state.version, dict(state.parameters), tuple(state.measurements),
                       state.n_clbits)


def loads(text: str, limits: Limits | None = None) -> Circuit:
    """The :class:`hdqnn.Circuit` of an OpenQASM 2.0 / 3.0 program (``parse(text, limits).circuit``)."""
    return parse(text, limits).circuit

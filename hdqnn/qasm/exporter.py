"""OpenQASM 2.0 / 3.0 export of an hdqnn circuit.

Layout of every exported program (the bit order all adapters rely on):

* one quantum register ``q`` of ``n`` qubits; hdqnn wire ``i`` is ``q[i]``;
* one classical register ``c`` of ``n`` bits; ``c[i]`` holds the measurement of ``q[i]``
  (``measure q[i] -> c[i];`` in 2.0, ``c[i] = measure q[i];`` in 3.0), after every gate.

hdqnn's statevector index has wire 0 as its MOST significant bit, and ``hdqnn.counts`` writes
wire 0 as the leftmost character. Consumers differ: Qiskit prints a register with ``c[0]`` as
the RIGHTMOST character (little-endian: reverse the string), and its statevector index has
qubit 0 as the LEAST significant bit; Braket prints the bits in the order of the measurement
statements, so ``c[0]`` (wire 0) comes first, as in hdqnn.

Angles are printed with ``repr`` (the shortest text that reads back to the same float64), so an
export -> import round trip reproduces every angle exactly.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from ..circuits import GATES, Circuit, Input, Weight
from .targets import FORMAL_PARAMS, FORMAL_QUBITS, Formal, Lowering, Op, Symbolic, Target, select_target

QUBIT_REGISTER = "q"
CLBIT_REGISTER = "c"
#: Names of free (unbound) parameters in OpenQASM 3: ``in_3`` is Input(3), ``w_0`` is Weight(0).
INPUT_PREFIX = "in_"
WEIGHT_PREFIX = "w_"
VERSIONS = {"2": "2.0", "2.0": "2.0", "3": "3.0", "3.0": "3.0"}


def format_float(value: float) -> str:
    """Shortest decimal text that reads back to exactly ``value`` (valid in OpenQASM 2 and 3).

    OpenQASM 2 requires a decimal point in exponent notation, so ``1e-05`` becomes ``1.0e-05``.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot export a non-finite angle {value}")
    text = repr(value)
    mantissa, sep, exponent = text.partition("e")
    if sep and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


def param_name(ref: Input | Weight) -> str:
    """The OpenQASM 3 ``input`` name of an unbound angle source."""
    return f"{INPUT_PREFIX if isinstance(ref, Input) else WEIGHT_PREFIX}{ref.index}"


def _format_angle(angle: Symbolic) -> str:
    if isinstance(angle, (Input, Weight, Formal)):
        name = angle.name if isinstance(angle, Formal) else param_name(angle)
        if angle.scale == 1.0:
            return name
        if angle.scale == -1.0:
            return f"-{name}"
        return f"{format_float(angle.scale)}*{name}"
    return format_float(angle)


def _as_array(values: Any, name: str) -> np.ndarray | None:
    if values is None:
        return None
    if hasattr(values, "detach"):  # a torch tensor, read without importing torch
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu" or arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be a real array [n] or [B, n], got dtype {arr.dtype}, "
                         f"shape {arr.shape}")
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr.astype(np.float64)


def _check_columns(arr: np.ndarray | None, needed: int, name: str) -> None:
    if arr is not None and arr.shape[-1] != needed:
        raise ValueError(f"{name} has {arr.shape[-1]} column(s) but the circuit reads {needed}")


def _batch_size(x: np.ndarray | None, w: np.ndarray | None) -> int | None:
    sizes = {a.shape[0] for a in (x, w) if a is not None and a.ndim == 2}
    if len(sizes) > 1:
        raise ValueError(f"inputs and per-sample weights disagree on the batch size: {sorted(sizes)}")
    return sizes.pop() if sizes else None


def _row(arr: np.ndarray | None, b: int) -> np.ndarray | None:
    if arr is None:
        return None
    return arr[b] if arr.ndim == 2 else arr


def _bind(angle: Symbolic, x: np.ndarray | None, w: np.ndarray | None) -> Symbolic:
    if isinstance(angle, Input) and x is not None:
        return angle.scale * float(x[angle.index])
    if isinstance(angle, Weight) and w is not None:
        return angle.scale * float(w[angle.index])
    return angle


class _Writer:
    """Formats lowered operations in one target's syntax."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.v2 = target.version == "2.0"
        self.sep = "," if self.v2 else ", "

    def call(self, op: Op) -> str:
        name, wires, angles = op
        call = self.target.names.get(name, name)
        if angles:
            call += "(" + self.sep.join(_format_angle(a) for a in angles) + ")"
        args = self.sep.join(w if isinstance(w, str) else f"{QUBIT_REGISTER}[{w}]" for w in wires)
        return f"{call} {args};"

    def definition(self, name: str, body: list[Op]) -> str:
        spec = GATES[name]
        params = ", ".join(FORMAL_PARAMS[: spec.n_angles])
        head = f"gate {name}({params})" if spec.n_angles else f"gate {name}"
        qubits = ", ".join(FORMAL_QUBITS[: spec.n_wires])
        return f"{head} {qubits} {{ " + " ".join(self.call(op) for op in body) + " }"

    def header(self, n: int, free: Iterable[str], definitions: list[str]) -> list[str]:
        lines = [f"OPENQASM {self.target.version};"]
        if self.target.include:
            lines.append(f'include "{self.target.include}";')
        lines += [f"input float[64] {name};" for name in free]
        lines += definitions
        if self.v2:
            lines += [f"qreg {QUBIT_REGISTER}[{n}];", f"creg {CLBIT_REGISTER}[{n}];"]
        else:
            lines += [f"qubit[{n}] {QUBIT_REGISTER};", f"bit[{n}] {CLBIT_REGISTER};"]
        return lines

    def measurements(self, n: int) -> list[str]:
        q, c = QUBIT_REGISTER, CLBIT_REGISTER
        if self.v2:
            return [f"measure {q}[{i}] -> {c}[{i}];" for i in range(n)]
        return [f"{c}[{i}] = measure {q}[{i}];" for i in range(n)]


def _lower_circuit(circuit: Circuit, target: Target, basis: Iterable[str] | None) -> Lowering:
    allowed = set(target.names)
    if basis is not None:
        wanted = {str(b).lower() for b in basis}
        allowed = {g for g in allowed if target.names[g].lower() in wanted}
    return Lowering(target, frozenset(allowed), define=target.gate_definitions)


def dumps(circuit: Circuit, inputs: Any = None, weights: Any = None, version: str = "3.0", *,
          dialect: str = "standard", basis: Iterable[str] | None = None,
          measure: bool = True) -> str | list[str]:
    """OpenQASM text of ``circuit``, with its input/weight angles bound where values are given.

    inputs:  None, [n_inputs] (one sample) or [B, n_inputs] (a batch); NumPy or CPU torch.
    weights: None, [n_weights] (shared) or [B, n_weights] (per sample).
    version: '2.0' or '3.0'. In 3.0 an angle whose values are not given stays a free parameter
             ``input float[64] in_<i>;`` / ``w_<j>``; 2.0 has no parameters and needs all values.
    dialect: 'standard' (qelib1.inc in 2.0, stdgates.inc in 3.0) or 'braket' (3.0 with Braket's
             builtin gate names and no include, as Braket devices read it).
    basis:   optional gate names (in the dialect's spelling, e.g. a Braket device's supported
             operations); gates outside it are rewritten into gates inside it.
    measure: end with a measurement of every qubit into ``c`` (``c[i]`` <- ``q[i]``).

    Returns one program (str), or a list of B programs when inputs or weights are 2-D.
    Gates outside the target library are rewritten exactly (``rxx``/``ryy``/``rzz`` get
    ``gate`` definitions in standard 3.0 and are inlined in 2.0 and Braket).
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit must be an hdqnn.Circuit, got {type(circuit).__name__}")
    if str(version) not in VERSIONS:
        raise ValueError(f"unknown OpenQASM version {version!r}; use '2.0' or '3.0'")
    target = select_target(VERSIONS[str(version)], dialect)
    x = _as_array(inputs, "inputs")
    w = _as_array(weights, "weights")
    _check_columns(x, circuit.n_inputs, "inputs")
    _check_columns(w, circuit.n_weights, "weights")
    batch = _batch_size(x, w)

    lowering = _lower_circuit(circuit, target, basis)
    ops = [low for op in circuit.operations for low in lowering.lower(op.name, op.wires, op.angles)]
    writer = _Writer(target)
    definitions = [
        writer.definition(name, body) for name, body in lowering.definitions.items()
    ]
    programs = [
        _program(writer, circuit.n_qubits, ops, definitions, _row(x, b), _row(w, b), measure)
        for b in range(batch if batch is not None else 1)
    ]
    return programs if batch is not None else programs[0]


def _program(writer: _Writer, n: int, ops: list[Op], definitions: list[str], x: np.ndarray | None,
             w: np.ndarray | None, measure: bool) -> str:
    bound = [(name, wires, tuple(_bind(a, x, w) for a in angles)) for name, wires, angles in ops]
    free = sorted({a for _, _, angles in bound for a in angles if isinstance(a, (Input, Weight))},
                  key=lambda r: (isinstance(r, Weight), r.index))
    if free and writer.v2:
        raise ValueError(
            "OpenQASM 2.0 has no free parameters: pass values for every input and weight "
            f"(unbound: {', '.join(param_name(r) for r in free)}), or export version='3.0'"
        )
    names = list(dict.fromkeys(param_name(r) for r in free))
    lines = writer.header(n, names, definitions)
    lines += [writer.call(op) for op in bound]
    if measure:
        lines += writer.measurements(n)
    return "\n".join(lines) + "\n"

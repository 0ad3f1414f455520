"""A Qiskit ``QuantumCircuit`` as an :class:`hdqnn.Circuit`, and the map of its angle slots.

Conventions (the pitfalls of ../shared/research/INTEROP.md section 3.6):

- **Bit order.** Qiskit qubit i is hdqnn wire i. Qiskit's state index has qubit 0 as its LEAST
  significant bit, hdqnn's has wire 0 as its MOST significant: statevectors and probabilities are
  converted at the output boundary (:func:`to_qiskit_order`); Pauli terms given as (letters,
  qubits) pairs, as ``SparseObservable.to_sparse_list`` gives them, need no conversion.
- **Parameters.** Rows of parameter values are in ``circuit.parameters`` order (what a raw PUB array
  binds to). Qiskit binds one row per circuit, so every angle that depends on a parameter reads a
  per-sample ``Input`` column:

  * ``a * p`` (one parameter, linear, no offset) reads p's own column with ``scale=a``: the engine
    applies that chain rule itself;
  * any other expression (an offset ``a*p + b``, ZZFeatureMap's ``2*(pi - x0)*(pi - x1)``, a sine,
    ...) reads a *derived* column, evaluated per row on the Python side (NumPy over all rows at once,
    from the expression's sympy form) before the engine call. Gradients go back to the parameters
    by the chain rule with the expression's partial derivatives
    (:meth:`QiskitSlots.parameter_gradient`). Equal expressions share one column.

- **Instructions.** Final measurements are recorded (classical bit -> qubit, read as Qiskit's
  ``StatevectorSampler`` reads them) and dropped; barriers, delays and identities are ignored;
  ``u1``/``u3``/``cu1`` are hdqnn's ``p``/``u``/``cp``. If any other gate is outside hdqnn's set, the
  whole circuit goes once through ``qiskit.transpile`` to hdqnn's gates (optimization level 0, so
  the supported gates stay as written). Mid-circuit measurements, resets and control flow raise.
- **Global phase** (possibly an expression) never reaches the engine: it matters only for
  statevectors (:meth:`QiskitSlots.phase`).
"""
from __future__ import annotations

import functools
import operator
import threading
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

from ..circuits import GATES, MAX_QUBITS, Circuit, Input

#: Qiskit gates that are hdqnn gates under another name (same matrix).
ALIASES = {"u1": "p", "u3": "u", "cu1": "cp"}
#: Instructions without effect on the state.
IGNORED = frozenset({"barrier", "delay", "id"})
#: Converted circuits kept by :func:`cached_from_qiskit`.
CACHE_SIZE = 64
#: |imaginary part| an evaluated angle may keep (rounding in a complex-valued expression).
IMAG_TOL = 1e-12


class QiskitSlots:
    """How a converted circuit reads Qiskit parameter values.

    parameters: the Qiskit circuit's parameters, in ``circuit.parameters`` order: the columns of
        every ``values`` array below.
    sources:    per hdqnn input column, the Qiskit ``Parameter`` it reads (direct) or the
        ``ParameterExpression`` evaluated into it (derived).
    registers:  classical register name -> per bit, the qubit its final measurement reads (None:
        never measured, the bit stays 0), in ``circuit.cregs`` order.
    global_phase: the circuit's global phase after conversion (a float or an expression).
    """

    def __init__(self, parameters: Sequence[Any], sources: Sequence[Any], direct: Sequence[tuple[int, int]],
                 derived: Sequence[tuple[int, Any]], global_phase: Any, registers: dict[str, tuple],
                 n_qubits: int) -> None:
        self.parameters = tuple(parameters)
        self.sources = tuple(sources)
        self.global_phase = global_phase
        self.registers = registers
        self.n_qubits = n_qubits
        names = {p.name: j for j, p in enumerate(self.parameters)}
        self._names = names
        self._direct = np.asarray(direct, dtype=np.int64).reshape(-1, 2)  # (column, parameter)
        self._derived_columns = np.asarray([c for c, _ in derived], dtype=np.int64)
        self._derived = _Expressions([e for _, e in derived], names)
        self._partials: tuple[np.ndarray, _Expressions] | None = None  # built by the first gradient
        self._phase = _Expressions([_sympify(global_phase)], names)

    @property
    def n_parameters(self) -> int:
        return len(self.parameters)

    @property
    def n_inputs(self) -> int:
        return len(self.sources)

    def check_values(self, values: Any) -> np.ndarray:
        """``values`` as float64 [N, n_parameters] (a single row [n_parameters] becomes [1, ...])."""
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim == 1 and arr.shape[0] == self.n_parameters:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.n_parameters:
            raise ValueError(
                f"parameter values must be [N, {self.n_parameters}] in circuit.parameters order "
                f"({', '.join(p.name for p in self.parameters[:6])}{', ...' if self.n_parameters > 6 else ''}), "
                f"got shape {np.shape(values)}"
            )
        return arr

    def inputs(self, values: Any) -> np.ndarray:
        """The engine's input matrix [N, n_inputs] for parameter rows ``values`` [N, n_parameters]."""
        values = self.check_values(values)
        out = np.empty((values.shape[0], self.n_inputs), dtype=np.float64)
        out[:, self._direct[:, 0]] = values[:, self._direct[:, 1]]
        out[:, self._derived_columns] = self._derived(values)
        return out

    def parameter_gradient(self, values: Any, grad_inputs: Any) -> np.ndarray:
        """Chain rule: d/d(parameters) [N, n_parameters] from d/d(input columns) [N, n_inputs]."""
        values = self.check_values(values)
        g = np.asarray(grad_inputs, dtype=np.float64)
        if g.shape != (values.shape[0], self.n_inputs):
            raise ValueError(f"grad_inputs must have shape {(values.shape[0], self.n_inputs)}, got {g.shape}")
        out = np.zeros(values.shape, dtype=np.float64)
        np.add.at(out, (slice(None), self._direct[:, 1]), g[:, self._direct[:, 0]])
        index, partials = self._chain_rule()
        if len(index):
            rows = g[:, self._derived_columns[index[:, 0]]] * partials(values)
            np.add.at(out, (slice(None), index[:, 1]), rows)
        return out

    def _chain_rule(self) -> tuple[np.ndarray, _Expressions]:
        """(derived column number, parameter) pairs [M, 2] and their partial derivatives, made once
        (sympy differentiation is slow, and forward-only users never need it)."""
        if self._partials is None:
            import sympy

            pairs = [(i, self._names[s.name], sympy.diff(e, s))
                     for i, e in enumerate(self._derived.exprs) for s in e.free_symbols]
            index = np.asarray([(i, j) for i, j, _ in pairs], dtype=np.int64).reshape(-1, 2)
            self._partials = (index, _Expressions([d for _, _, d in pairs], self._names))
        return self._partials

    def phase(self, values: Any) -> np.ndarray:
        """The global phase per row, [N]."""
        return self._phase(self.check_values(values))[:, 0]


class _Expressions:
    """Real sympy expressions of the circuit parameters, evaluated per row on NumPy columns.

    Each expression tree is compiled once into nested NumPy closures: sympy's ``lambdify`` spends
    milliseconds per expression printing source code (a ZZFeatureMap has dozens of products), and
    walking the sympy tree on every call re-evaluates its constants through sympy.
    """

    def __init__(self, exprs: Sequence[Any], names: dict[str, int]) -> None:
        self.exprs = tuple(exprs)
        self._fns = [_compile(e, names) for e in self.exprs]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        out = np.empty((values.shape[0], len(self.exprs)), dtype=np.complex128)
        with np.errstate(all="ignore"):
            for k, fn in enumerate(self._fns):
                out[:, k] = fn(values)
        bad = np.abs(out.imag) > IMAG_TOL * np.maximum(1.0, np.abs(out.real))
        if bad.any():
            row, k = np.argwhere(bad)[0]
            raise ValueError(f"angle expression {self.exprs[k]} is complex ({out[row, k]}) at parameter row {row}")
        real = out.real.copy()
        if not np.isfinite(real).all():
            row, k = np.argwhere(~np.isfinite(real))[0]
            raise ValueError(f"angle expression {self.exprs[k]} is not finite ({real[row, k]}) at parameter row {row}")
        return real


#: sympy function name -> NumPy ufunc, for the functions a Qiskit ParameterExpression can hold.
_UFUNCS = {"sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos,
           "atan": np.arctan, "exp": np.exp, "log": np.log, "Abs": np.abs, "sign": np.sign,
           "conjugate": np.conj, "re": np.real, "im": np.imag}

Evaluator = Callable[[np.ndarray], Any]


def _compile(expr: Any, names: dict[str, int]) -> Evaluator:
    """``expr`` as a function of the parameter rows [N, P] (a complex scalar where it is constant)."""
    if not expr.free_symbols:
        value = complex(expr)
        return lambda values: value
    if expr.is_Symbol:
        column = names[expr.name]
        return lambda values: values[:, column]
    parts = [_compile(a, names) for a in expr.args]
    if expr.is_Add:
        return lambda values: functools.reduce(operator.add, (f(values) for f in parts))
    if expr.is_Mul:
        return lambda values: functools.reduce(operator.mul, (f(values) for f in parts))
    if expr.is_Pow:
        base, exponent = parts
        return lambda values: np.power(np.asarray(base(values), dtype=np.complex128), exponent(values))
    ufunc = _UFUNCS.get(type(expr).__name__)
    if ufunc is None or len(parts) != 1:
        raise ValueError(f"cannot evaluate {type(expr).__name__} in angle expression {expr}")
    (arg,) = parts
    return lambda values: ufunc(np.asarray(arg(values), dtype=np.complex128))


def _sympify(value: Any):
    import sympy

    return value.sympify() if hasattr(value, "sympify") else sympy.Float(_real_number(value))


class _Builder:
    """Walks Qiskit instructions into an hdqnn circuit, allocating one input column per parameter
    read linearly and one per distinct derived expression."""

    def __init__(self, n_qubits: int, parameters: Sequence[Any]) -> None:
        self.circuit = Circuit(n_qubits)
        self.parameters = tuple(parameters)
        self._index = {p: j for j, p in enumerate(self.parameters)}
        self.sources: list[Any] = []
        self.direct: list[tuple[int, int]] = []
        self.derived: list[tuple[int, Any]] = []
        self._column_of: dict[Any, int] = {}  # Parameter or sympy expression -> column

    def angle(self, value: Any) -> float | Input:
        from qiskit.circuit import ParameterExpression

        if not isinstance(value, ParameterExpression):
            return _real_number(value)
        if not value.parameters:
            return _real_number(value.numeric())
        if len(value.parameters) == 1:
            (p,) = value.parameters
            scale = value.gradient(p)
            if isinstance(scale, (int, float)) and value.bind({p: 0}).numeric() == 0:
                return Input(self._direct_column(p), scale=float(scale))
        return Input(self._derived_column(value))

    def _direct_column(self, parameter: Any) -> int:
        if parameter not in self._column_of:
            self._column_of[parameter] = column = len(self.sources)
            self.sources.append(parameter)
            self.direct.append((column, self._index[parameter]))
        return self._column_of[parameter]

    def _derived_column(self, expression: Any) -> int:
        key = expression.sympify()
        if key not in self._column_of:
            self._column_of[key] = column = len(self.sources)
            self.sources.append(expression)
            self.derived.append((column, key))
        return self._column_of[key]


def _real_number(value: Any) -> float:
    z = complex(value)
    if abs(z.imag) > IMAG_TOL * max(1.0, abs(z.real)):
        raise ValueError(f"gate angle {value} is complex")
    return z.real


def final_measurements(circuit: Any) -> dict[str, tuple]:
    """Classical register name -> per bit the qubit its final measurement reads (None: not measured),
    walking back from the end exactly as Qiskit's ``StatevectorSampler`` does."""
    registers = {creg.name: [None] * creg.size for creg in circuit.cregs}
    open_qubits = set(range(circuit.num_qubits))
    open_clbits = set(range(circuit.num_clbits))
    for inst in reversed(circuit.data):
        if not open_clbits or not open_qubits:
            break
        if inst.operation.name == "measure":
            loc = circuit.find_bit(inst.clbits[0])
            qubit = circuit.find_bit(inst.qubits[0]).index
            if loc.index in open_clbits and qubit in open_qubits:
                for creg, bit in loc.registers:
                    registers[creg.name][bit] = qubit
                open_clbits.discard(loc.index)
        elif inst.operation.name not in ("barrier", "delay"):
            open_qubits.difference_update(circuit.find_bit(q).index for q in inst.qubits)
    return {name: tuple(bits) for name, bits in registers.items()}


def _is_supported(name: str) -> bool:
    return name in GATES or name in ALIASES or name in IGNORED or name == "global_phase"


def _reject_non_unitary(circuit: Any) -> None:
    for inst in circuit.data:
        name = inst.operation.name
        if inst.is_control_flow():
            raise ValueError(f"control flow ({name!r}) is not supported: hdqnn evolves one pure state per row")
        if name == "measure":
            raise ValueError("mid-circuit measurement is not supported: measurements must come last "
                             "(only gates that touch no measured qubit may follow a measurement)")
        if name == "reset":
            raise ValueError("reset is not supported: hdqnn evolves one pure state from |0...0>")


def _to_hdqnn_gates(circuit: Any) -> Any:
    """The circuit in hdqnn's gate set, through Qiskit's transpiler (no layout, no optimisation)."""
    from qiskit import transpile
    from qiskit.transpiler.exceptions import TranspilerError

    basis = sorted(GATES)
    unsupported = sorted({inst.operation.name for inst in circuit.data if not _is_supported(inst.operation.name)})
    try:  # without a coupling map or target, transpile keeps the qubits as they are (no layout)
        return transpile(circuit, basis_gates=basis, optimization_level=0)
    except TranspilerError as exc:
        raise ValueError(f"cannot express {', '.join(unsupported)} in hdqnn's gate set: {exc}") from exc


def from_qiskit(circuit: Any) -> tuple[Circuit, QiskitSlots]:
    """``(hdqnn.Circuit, QiskitSlots)`` for a Qiskit ``QuantumCircuit``.

    The hdqnn circuit reads only ``Input`` columns (no ``Weight``); build its input matrix from
    Qiskit parameter rows with ``slots.inputs(values)`` (``values`` [N, P] in ``circuit.parameters``
    order). Qiskit qubit i is hdqnn wire i (see the module docstring for bit order, expressions,
    measurements and the transpiler fallback). Raises ValueError for what hdqnn cannot run
    (mid-circuit measurement, reset, control flow, more than MAX_QUBITS qubits) and TypeError
    for a non-circuit.
    """
    from qiskit import QuantumCircuit

    if not isinstance(circuit, QuantumCircuit):
        raise TypeError(f"from_qiskit needs a qiskit QuantumCircuit, got {type(circuit).__name__}")
    if not 1 <= circuit.num_qubits <= MAX_QUBITS:
        raise ValueError(f"from_qiskit: the circuit has {circuit.num_qubits} qubits; hdqnn runs 1 to {MAX_QUBITS}")
    registers = final_measurements(circuit)
    body = circuit.remove_final_measurements(inplace=False)
    _reject_non_unitary(body)
    if not all(_is_supported(inst.operation.name) for inst in body.data):
        body = _to_hdqnn_gates(body)
    builder = _Builder(circuit.num_qubits, circuit.parameters)
    phase = body.global_phase
    for inst in body.data:
        op = inst.operation
        if op.name in IGNORED:
            continue
        if op.name == "global_phase":
            phase = phase + op.params[0]
            continue
        name = ALIASES.get(op.name, op.name)
        wires = [body.find_bit(q).index for q in inst.qubits]
        builder.circuit.append(name, wires, [builder.angle(v) for v in op.params])
    slots = QiskitSlots(builder.parameters, builder.sources, builder.direct, builder.derived, phase, registers,
                        circuit.num_qubits)
    builder.circuit.compile()
    return builder.circuit, slots


_cache: "OrderedDict[int, tuple[Any, tuple, Circuit, QiskitSlots]]" = OrderedDict()
_cache_lock = threading.Lock()


def _fingerprint(circuit: Any) -> tuple:
    """What a mutation of a cached circuit changes: its instructions (names, qubits, parameters)."""
    return (circuit.num_qubits, circuit.num_clbits, str(circuit.global_phase),
            tuple((i.operation.name, i.qubits, i.clbits, tuple(map(str, i.operation.params))) for i in circuit.data))


def cached_from_qiskit(circuit: Any) -> tuple[Circuit, QiskitSlots]:
    """:func:`from_qiskit`, remembered per circuit object (and re-converted if it was mutated)."""
    key, fingerprint = id(circuit), _fingerprint(circuit)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] is circuit and hit[1] == fingerprint:
            _cache.move_to_end(key)
            return hit[2], hit[3]
    converted = from_qiskit(circuit)
    with _cache_lock:
        _cache[key] = (circuit, fingerprint, *converted)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return converted


def to_qiskit_order(states: np.ndarray) -> np.ndarray:
    """Reverse the qubit order of the last axis [..., 2**n] (hdqnn wire 0 = most significant bit
    <-> Qiskit qubit 0 = least significant bit); its own inverse."""
    n = int(states.shape[-1]).bit_length() - 1
    lead = states.shape[:-1]
    axes = [*range(len(lead)), *reversed(range(len(lead), len(lead) + n))]
    return states.reshape(*lead, *([2] * n)).transpose(axes).reshape(*lead, 2**n)

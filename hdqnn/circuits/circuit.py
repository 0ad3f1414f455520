"""Circuit IR: a list of gate operations whose angles are constants, per-sample inputs or weights.

A circuit compiles once into a flat :class:`Program` (numeric arrays only) that every backend
executes; the compiled program is cached and the circuit is frozen from then on, so a program can
never describe a different circuit than the one it was built from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import numpy as np

from .gates import GATES, GATES_BY_CODE, GateSpec

#: Angle sources in a compiled program (``Program.angle_src[:, 0]``).
SRC_CONST, SRC_INPUT, SRC_WEIGHT = 0, 1, 2
#: Largest register the engine accepts: 2**30 amplitudes is 16 GiB per complex128 state.
MAX_QUBITS = 30
#: Largest Input/Weight index: a compiled program stores indices as int32.
MAX_PARAM_INDEX = int(np.iinfo(np.int32).max)


@dataclass(frozen=True)
class Input:
    """Angle = ``scale * inputs[b, index]``: column ``index`` of the per-sample input matrix."""

    index: int
    scale: float = 1.0

    def __post_init__(self) -> None:
        _check_param_ref(self, "Input")


@dataclass(frozen=True)
class Weight:
    """Angle = ``scale * weights[index]`` (shared) or ``scale * weights[b, index]`` (per sample)."""

    index: int
    scale: float = 1.0

    def __post_init__(self) -> None:
        _check_param_ref(self, "Weight")


Angle = Union[float, int, Input, Weight]


def _check_param_ref(ref: Input | Weight, kind: str) -> None:
    if isinstance(ref.index, bool) or not isinstance(ref.index, (int, np.integer)):
        raise TypeError(f"{kind} index must be an int, got {type(ref.index).__name__}")
    if not 0 <= ref.index <= MAX_PARAM_INDEX:
        raise ValueError(f"{kind} index must be in [0, {MAX_PARAM_INDEX}] (stored as int32), got {ref.index}")
    if not math.isfinite(float(ref.scale)):
        raise ValueError(f"{kind}({ref.index}) scale must be finite, got {ref.scale}")


@dataclass(frozen=True)
class Operation:
    """One gate application: ``name`` from the gate table, its wires and its angles."""

    name: str
    wires: tuple[int, ...]
    angles: tuple[Angle, ...] = ()

    @property
    def spec(self) -> GateSpec:
        return GATES[self.name]


@dataclass(frozen=True)
class Program:
    """A compiled circuit: the engine contract shared by every backend.

    gates:     int32 [G, 4]: (gate code, wire0, wire1 or -1, index of the gate's first angle slot)
    angle_src: int32 [A, 2]: (source SRC_CONST | SRC_INPUT | SRC_WEIGHT, input/weight index)
    angle_val: float64 [A]:  the constant, or the scale applied to the input/weight
    A gate's angles occupy consecutive slots starting at its first slot, in the gate's argument
    order. Wire 0 is the most significant bit of an amplitude index.
    """

    n_qubits: int
    n_inputs: int
    n_weights: int
    gates: np.ndarray
    angle_src: np.ndarray
    angle_val: np.ndarray


def _normalize_angle(angle: Angle, gate: str) -> Angle:
    if isinstance(angle, (Input, Weight)):
        return angle
    if isinstance(angle, bool) or not isinstance(angle, (int, float, np.integer, np.floating)):
        raise TypeError(
            f"angle of gate {gate!r} must be a float, hdqnn.Input or hdqnn.Weight, "
            f"got {type(angle).__name__}"
        )
    value = float(angle)
    if not math.isfinite(value):
        raise ValueError(f"angle of gate {gate!r} must be finite, got {value}")
    return value


class Circuit:
    """A parameterised quantum circuit on ``n_qubits`` wires.

    Builder methods follow OpenQASM 3's standard-library names, angles first, wires after
    (``c.rx(angle, wire)``, ``c.crz(angle, control, target)``), and return the circuit so calls
    chain. Angles are floats, :class:`Input` or :class:`Weight`.
    """

    def __init__(self, n_qubits: int) -> None:
        if isinstance(n_qubits, bool) or not isinstance(n_qubits, (int, np.integer)):
            raise TypeError(f"n_qubits must be an int, got {type(n_qubits).__name__}")
        if not 1 <= n_qubits <= MAX_QUBITS:
            raise ValueError(f"n_qubits must be in [1, {MAX_QUBITS}], got {n_qubits}")
        self._n_qubits = int(n_qubits)
        self._ops: list[Operation] = []
        self._program: Program | None = None

    # ----------------------------------------------------------------- construction
    def append(self, name: str, wires, angles=()) -> "Circuit":
        """Add gate ``name`` on ``wires`` with ``angles``; every builder method ends here."""
        if self._program is not None:
            raise RuntimeError("circuit is compiled and therefore immutable; use circuit.copy()")
        spec = GATES.get(name) if isinstance(name, str) else None
        if spec is None:
            raise ValueError(f"unknown gate {name!r}; known gates: {', '.join(sorted(GATES))}")
        wires = tuple(wires) if isinstance(wires, (tuple, list)) else (wires,)
        angles = tuple(angles) if isinstance(angles, (tuple, list)) else (angles,)
        if len(wires) != spec.n_wires:
            raise ValueError(f"gate {name!r} acts on {spec.n_wires} wire(s), got {len(wires)}")
        if len(angles) != spec.n_angles:
            raise ValueError(f"gate {name!r} takes {spec.n_angles} angle(s), got {len(angles)}")
        for w in wires:
            if isinstance(w, bool) or not isinstance(w, (int, np.integer)):
                raise TypeError(f"wire of gate {name!r} must be an int, got {type(w).__name__}")
            if not 0 <= w < self._n_qubits:
                raise ValueError(
                    f"wire {w} of gate {name!r} is out of range for {self._n_qubits} qubit(s)"
                )
        if len(set(wires)) != len(wires):
            raise ValueError(f"gate {name!r} repeats wire {wires[0]}: wires must be distinct")
        normalized = tuple(_normalize_angle(a, name) for a in angles)
        self._ops.append(Operation(name, tuple(int(w) for w in wires), normalized))
        return self

    def x(self, wire: int) -> "Circuit":
        return self.append("x", wire)

    def y(self, wire: int) -> "Circuit":
        return self.append("y", wire)

    def z(self, wire: int) -> "Circuit":
        return self.append("z", wire)

    def h(self, wire: int) -> "Circuit":
        return self.append("h", wire)

    def s(self, wire: int) -> "Circuit":
        return self.append("s", wire)

    def sdg(self, wire: int) -> "Circuit":
        return self.append("sdg", wire)

    def t(self, wire: int) -> "Circuit":
        return self.append("t", wire)

    def tdg(self, wire: int) -> "Circuit":
        return self.append("tdg", wire)

    def sx(self, wire: int) -> "Circuit":
        return self.append("sx", wire)

    def rx(self, angle: Angle, wire: int) -> "Circuit":
        return self.append("rx", wire, angle)

    def ry(self, angle: Angle, wire: int) -> "Circuit":
        return self.append("ry", wire, angle)

    def rz(self, angle: Angle, wire: int) -> "Circuit":
        return self.append("rz", wire, angle)

    def p(self, angle: Angle, wire: int) -> "Circuit":
        return self.append("p", wire, angle)

    def u(self, theta: Angle, phi: Angle, lam: Angle, wire: int) -> "Circuit":
        return self.append("u", wire, (theta, phi, lam))

    def cx(self, control: int, target: int) -> "Circuit":
        return self.append("cx", (control, target))

    def cy(self, control: int, target: int) -> "Circuit":
        return self.append("cy", (control, target))

    def cz(self, control: int, target: int) -> "Circuit":
        return self.append("cz", (control, target))

    def swap(self, wire0: int, wire1: int) -> "Circuit":
        return self.append("swap", (wire0, wire1))

    def crx(self, angle: Angle, control: int, target: int) -> "Circuit":
        return self.append("crx", (control, target), angle)

    def cry(self, angle: Angle, control: int, target: int) -> "Circuit":
        return self.append("cry", (control, target), angle)

    def crz(self, angle: Angle, control: int, target: int) -> "Circuit":
        return self.append("crz", (control, target), angle)

    def cp(self, angle: Angle, control: int, target: int) -> "Circuit":
        return self.append("cp", (control, target), angle)

    def rxx(self, angle: Angle, wire0: int, wire1: int) -> "Circuit":
        return self.append("rxx", (wire0, wire1), angle)

    def ryy(self, angle: Angle, wire0: int, wire1: int) -> "Circuit":
        return self.append("ryy", (wire0, wire1), angle)

    def rzz(self, angle: Angle, wire0: int, wire1: int) -> "Circuit":
        return self.append("rzz", (wire0, wire1), angle)

    def extend(self, other: "Circuit") -> "Circuit":
        """Append every operation of ``other`` (same or fewer qubits)."""
        if other.n_qubits > self._n_qubits:
            raise ValueError(f"cannot extend {self._n_qubits} qubits with {other.n_qubits}")
        for op in other.operations:
            self.append(op.name, op.wires, op.angles)
        return self

    def copy(self) -> "Circuit":
        """An uncompiled (mutable) copy."""
        return Circuit(self._n_qubits).extend(self)

    # ----------------------------------------------------------------- properties
    @property
    def n_qubits(self) -> int:
        return self._n_qubits

    @property
    def operations(self) -> tuple[Operation, ...]:
        return tuple(self._ops)

    def _max_index(self, kind: type) -> int:
        if self._program is not None:  # frozen: the program holds both counts (hot path of every call)
            return self._program.n_inputs if kind is Input else self._program.n_weights
        return max(
            (a.index + 1 for op in self._ops for a in op.angles if isinstance(a, kind)), default=0
        )

    @property
    def n_inputs(self) -> int:
        """Columns the per-sample input matrix must have (largest Input index + 1)."""
        return self._max_index(Input)

    @property
    def n_weights(self) -> int:
        """Length of the weight vector (largest Weight index + 1)."""
        return self._max_index(Weight)

    @property
    def n_angles(self) -> int:
        return sum(op.spec.n_angles for op in self._ops)

    @property
    def is_compiled(self) -> bool:
        return self._program is not None

    # ----------------------------------------------------------------- compilation
    def compile(self) -> Program:
        """The flat program (cached); freezes the circuit."""
        if self._program is None:
            self._program = self._build_program()
        return self._program

    def _build_program(self) -> Program:
        n_ops = len(self._ops)
        gates = np.full((n_ops, 4), -1, dtype=np.int32)
        n_slots = self.n_angles
        angle_src = np.zeros((n_slots, 2), dtype=np.int32)
        angle_val = np.zeros(n_slots, dtype=np.float64)
        slot = 0
        for g, op in enumerate(self._ops):
            gates[g, 0] = op.spec.code
            gates[g, 1 : 1 + len(op.wires)] = op.wires
            gates[g, 3] = slot if op.angles else -1
            for angle in op.angles:
                if isinstance(angle, Input):
                    angle_src[slot] = (SRC_INPUT, angle.index)
                    angle_val[slot] = angle.scale
                elif isinstance(angle, Weight):
                    angle_src[slot] = (SRC_WEIGHT, angle.index)
                    angle_val[slot] = angle.scale
                else:
                    angle_src[slot] = (SRC_CONST, 0)
                    angle_val[slot] = angle
                slot += 1
        for arr in (gates, angle_src, angle_val):
            arr.setflags(write=False)
        return Program(self._n_qubits, self.n_inputs, self.n_weights, gates, angle_src, angle_val)

    # ----------------------------------------------------------------- display
    def __len__(self) -> int:
        return len(self._ops)

    def __repr__(self) -> str:
        return (
            f"Circuit(n_qubits={self._n_qubits}, gates={len(self._ops)}, "
            f"n_inputs={self.n_inputs}, n_weights={self.n_weights})"
        )

    def draw(self) -> str:
        """A text listing, one line per gate: ``rx(in[0]*0.5) q[2]``."""
        lines = [repr(self)]
        for i, op in enumerate(self._ops):
            args = ", ".join(_format_angle(a) for a in op.angles)
            call = f"{op.name}({args})" if op.angles else op.name
            lines.append(f"{i:4d}  {call} " + ", ".join(f"q[{w}]" for w in op.wires))
        return "\n".join(lines)


def _format_angle(angle: Angle) -> str:
    if isinstance(angle, (Input, Weight)):
        name = "in" if isinstance(angle, Input) else "w"
        scale = "" if angle.scale == 1.0 else f"*{angle.scale:g}"
        return f"{name}[{angle.index}]{scale}"
    return f"{angle:.6g}"


def spec_of_code(code: int) -> GateSpec:
    return GATES_BY_CODE[int(code)]

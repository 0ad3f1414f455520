"""What each export target can say, and how the gates it cannot say are rewritten.

A *target* maps hdqnn gate names to the names its gate library uses. A gate outside the target
is rewritten with ``RULES`` until only target gates remain. Every rule is exact (same unitary,
global phase included) except the two phase-gate fallbacks ``rz <-> p``, which differ by a
global phase only; in a flat gate list (no ``ctrl @`` modifiers) a global phase cannot change
any measurement, and they are only reached when a ``basis`` leaves out the exact gate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Union

from ..circuits import GATES, Input, Weight

PI = math.pi
#: Names of the formal parameters and qubits of emitted ``gate`` definitions.
FORMAL_PARAMS = ("theta", "phi", "lam")
FORMAL_QUBITS = ("a", "b")


@dataclass(frozen=True)
class Formal:
    """Angle ``scale * name`` inside an emitted ``gate`` definition."""

    name: str
    scale: float = 1.0


Symbolic = Union[float, Input, Weight, Formal]
Wire = Union[int, str]
#: (hdqnn gate name, wires, angles)
Op = tuple[str, tuple[Wire, ...], tuple[Symbolic, ...]]


def scale_angle(angle: Symbolic, factor: float) -> Symbolic:
    """``factor * angle`` for a constant or a scaled input/weight/formal parameter."""
    if isinstance(angle, (Input, Weight, Formal)):
        return replace(angle, scale=angle.scale * factor)
    return float(angle) * factor


def _half(t: Symbolic) -> Symbolic:
    return scale_angle(t, 0.5)


def _neg_half(t: Symbolic) -> Symbolic:
    return scale_angle(t, -0.5)


def _rotated_zz(basis_in: list[str], basis_out: list[str]) -> Callable:
    """exp(-i t/2 P x P) = V^dagger rzz(t) V on both wires, V the 1-qubit gates ``basis_in``."""

    def rule(w, t):
        a, b = w
        pre = [(g, (q,), ()) for q in (a, b) for g in basis_in]
        post = [(g, (q,), ()) for q in (a, b) for g in basis_out]
        return pre + [("rzz", (a, b), t)] + post

    return rule


RULES: dict[str, Callable[[tuple[Wire, ...], tuple[Symbolic, ...]], list[Op]]] = {
    "sx": lambda w, t: [("h", w, ()), ("s", w, ()), ("h", w, ())],
    "x": lambda w, t: [("u", w, (PI, 0.0, PI))],
    "y": lambda w, t: [("u", w, (PI, PI / 2, PI / 2))],
    "z": lambda w, t: [("p", w, (PI,))],
    "h": lambda w, t: [("u", w, (PI / 2, 0.0, PI))],
    "s": lambda w, t: [("p", w, (PI / 2,))],
    "sdg": lambda w, t: [("p", w, (-PI / 2,))],
    "t": lambda w, t: [("p", w, (PI / 4,))],
    "tdg": lambda w, t: [("p", w, (-PI / 4,))],
    "rx": lambda w, t: [("u", w, (t[0], -PI / 2, PI / 2))],
    "ry": lambda w, t: [("u", w, (t[0], 0.0, 0.0))],
    "rz": lambda w, t: [("p", w, t)],  # global phase exp(i t/2)
    "p": lambda w, t: [("rz", w, t)],  # global phase exp(-i t/2)
    # U(theta, phi, lam) = p(phi) ry(theta) p(lam): matrix product, so p(lam) acts first.
    "u": lambda w, t: [("p", w, (t[2],)), ("ry", w, (t[0],)), ("p", w, (t[1],))],
    "cx": lambda w, t: [("h", w[1:], ()), ("cz", w, ()), ("h", w[1:], ())],
    "cz": lambda w, t: [("h", w[1:], ()), ("cx", w, ()), ("h", w[1:], ())],
    "cy": lambda w, t: [("sdg", w[1:], ()), ("cx", w, ()), ("s", w[1:], ())],
    "swap": lambda w, t: [("cx", w, ()), ("cx", w[::-1], ()), ("cx", w, ())],
    "crx": lambda w, t: [("h", w[1:], ()), ("crz", w, t), ("h", w[1:], ())],
    "cry": lambda w, t: [("ry", w[1:], (_half(t[0]),)), ("cx", w, ()),
                         ("ry", w[1:], (_neg_half(t[0]),)), ("cx", w, ())],
    "crz": lambda w, t: [("rz", w[1:], (_half(t[0]),)), ("cx", w, ()),
                         ("rz", w[1:], (_neg_half(t[0]),)), ("cx", w, ())],
    "cp": lambda w, t: [("p", w[:1], (_half(t[0]),)), ("cx", w, ()), ("p", w[1:], (_neg_half(t[0]),)),
                        ("cx", w, ()), ("p", w[1:], (_half(t[0]),))],
    "rzz": lambda w, t: [("cx", w, ()), ("rz", w[1:], t), ("cx", w, ())],
    "rxx": _rotated_zz(["h"], ["h"]),
    # Y = (S H) Z (H S^dagger): rotate with sdg then h, undo with h then s.
    "ryy": _rotated_zz(["sdg", "h"], ["h", "s"]),
}


@dataclass(frozen=True)
class Target:
    """An OpenQASM dialect: its header, its gate library and whether it may define gates."""

    name: str
    version: str
    include: str | None
    #: hdqnn gate -> the name the target calls it.
    names: Mapping[str, str]
    #: Emit ``gate`` definitions for hdqnn gates outside ``names`` instead of inlining them.
    gate_definitions: bool


_SAME = ("x", "y", "z", "h", "s", "sdg", "t", "tdg", "rx", "ry", "rz", "cx", "cy", "cz")

#: OpenQASM 2.0 with the original qelib1.inc (Cross et al. 2017), the library every OpenQASM 2
#: reader knows; Qiskit's ``qasm2.loads`` reads exactly this one by default.
QASM2 = Target("qasm2", "2.0", "qelib1.inc",
               {**{g: g for g in _SAME}, "crz": "crz", "p": "u1", "u": "u3", "cp": "cu1"}, False)
#: OpenQASM 3.0 with stdgates.inc; ``u`` is the builtin ``U`` (same matrix as Qiskit's UGate).
QASM3 = Target("qasm3", "3.0", "stdgates.inc",
               {**{g: g for g in GATES if g not in ("rxx", "ryy", "rzz")}, "u": "U"}, True)
#: OpenQASM 3.0 as Amazon Braket devices read it: Braket's builtin gate names, no include.
BRAKET = Target("braket", "3.0", None, {
    **{g: g for g in ("x", "y", "z", "h", "s", "t", "rx", "ry", "rz", "cy", "cz", "swap")},
    "sdg": "si", "tdg": "ti", "sx": "v", "p": "phaseshift", "u": "U", "cx": "cnot",
    "cp": "cphaseshift", "rxx": "xx", "ryy": "yy", "rzz": "zz",
}, False)

DIALECTS = ("standard", "braket")


def select_target(version: str, dialect: str) -> Target:
    """The target of ``version`` ('2.0' | '3.0') and ``dialect`` ('standard' | 'braket')."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; choose one of {', '.join(DIALECTS)}")
    if dialect == "braket":
        if version != "3.0":
            raise ValueError("the braket dialect is OpenQASM 3.0; use version='3.0'")
        return BRAKET
    return QASM2 if version == "2.0" else QASM3


class Lowering:
    """Rewrites hdqnn operations into the gates a target allows.

    ``allowed`` is the set of hdqnn gate names the output may call directly. With
    ``define=True`` a gate outside the target's library is kept as a call and given a
    ``gate`` definition (collected in ``definitions``, dependencies first); otherwise it is
    inlined. A gate inside the library but outside ``allowed`` (a device basis) is always inlined.
    """

    def __init__(self, target: Target, allowed: frozenset[str], define: bool) -> None:
        self.target = target
        self.allowed = allowed
        self.define = define
        self.definitions: dict[str, list[Op]] = {}

    def lower(self, name: str, wires: tuple[Wire, ...], angles: tuple[Symbolic, ...],
              stack: tuple[str, ...] = ()) -> list[Op]:
        if name in self.allowed or name in self.definitions:
            return [(name, wires, angles)]
        if name in stack or name not in RULES:
            chain = " -> ".join(stack + (name,))
            raise ValueError(
                f"gate {name!r} cannot be written with the gates of target {self.target.name!r} "
                f"limited to {sorted(self.target.names[g] for g in self.allowed)} (rewrite chain {chain})"
            )
        if self.define and name not in self.target.names:
            self._define(name, stack)
            return [(name, wires, angles)]
        out: list[Op] = []
        for sub in RULES[name](wires, angles):
            out.extend(self.lower(*sub, stack=stack + (name,)))
        return out

    def _define(self, name: str, stack: tuple[str, ...]) -> None:
        spec = GATES[name]
        formals = tuple(Formal(p) for p in FORMAL_PARAMS[: spec.n_angles])
        body: list[Op] = []
        for sub in RULES[name](FORMAL_QUBITS[: spec.n_wires], formals):
            body.extend(self.lower(*sub, stack=stack + (name,)))
        self.definitions[name] = body

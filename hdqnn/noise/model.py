"""NoiseModel: which channel follows which gate on which wires, and how each wire is misread.

Rules are resolved per gate application, as Qiskit Aer resolves its noise models, so that a
model imported from Aer means the same thing here:
  - a rule added with ``wires`` applies to the named gates on exactly those wires (an ordered
    pair for a two-qubit gate: the channel's first qubit is the gate's first wire);
  - a rule added without ``wires`` applies to the named gates on every wire, except where some
    wire-specific rule for the same gate matches: the specific rules then replace it;
  - several matching rules of the same kind apply one after the other, in the order added.
Readout errors follow the same override: a wire's own error, else the all-wire one.

A model is mutable while it is being built and frozen from its first use on (a simulation, a
hash) or an explicit :meth:`NoiseModel.freeze`, so a result can never describe another model
than the one it was computed with.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Optional, Union

import numpy as np

from ..circuits import GATES
from .channels import Channel, ReadoutError

#: Version tag of the JSON form; from_json refuses any other.
JSON_FORMAT = "hdqnn.noise/1"

Wires = tuple[int, ...]


@dataclass(frozen=True)
class NoiseRule:
    """``channel`` after every gate named in ``gates`` on ``wires`` (None: on any wires)."""

    channel: Channel
    gates: tuple[str, ...]
    wires: Optional[tuple[Wires, ...]]

    def __str__(self) -> str:
        where = "all wires" if self.wires is None else "wires " + ", ".join(map(_format_wires, self.wires))
        return f"{self.channel!r} after {', '.join(self.gates)} on {where}"


@dataclass(frozen=True)
class ReadoutRule:
    """``error`` on the measurement of ``wires`` (None: of every wire without its own error)."""

    error: ReadoutError
    wires: Optional[tuple[int, ...]]

    def __str__(self) -> str:
        where = "all wires" if self.wires is None else "wires " + ", ".join(map(str, self.wires))
        return f"{self.error!r} on {where}"


def _format_wires(wires: Wires) -> str:
    return str(wires[0]) if len(wires) == 1 else "(" + ", ".join(map(str, wires)) + ")"


def _wire(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return int(value)


def _gate_names(gates: Union[str, Iterable[str]], n_qubits: int) -> tuple[str, ...]:
    """The gate names, each known and acting on as many wires as the channel."""
    names = (gates,) if isinstance(gates, str) else tuple(gates)
    if not names:
        raise ValueError("a noise rule needs at least one gate name")
    for name in names:
        spec = GATES.get(name) if isinstance(name, str) else None
        if spec is None:
            raise ValueError(f"unknown gate {name!r} in a noise rule; known gates: {', '.join(sorted(GATES))}")
        if spec.n_wires != n_qubits:
            raise ValueError(
                f"a {n_qubits}-qubit channel cannot follow gate {name!r}, which acts on {spec.n_wires} "
                f"wire(s); use a {spec.n_wires}-qubit channel (e.g. a.tensor(b) for one per wire)"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"a noise rule names a gate twice: {names}")
    return names


def _rule_wires(wires: object, n_qubits: int) -> Optional[tuple[Wires, ...]]:
    """Normalised wire sets: ints for one-qubit rules, ordered pairs of distinct wires for two."""
    if wires is None:
        return None
    if n_qubits == 1:
        items = [wires] if isinstance(wires, (int, np.integer)) else list(wires)
        out = tuple((_wire(w, "a noise rule's wire"),) for w in items)
    else:
        items = list(wires)
        if len(items) == 2 and all(isinstance(w, (int, np.integer)) for w in items):
            items = [items]  # one pair given bare: (0, 1)
        out = []
        for pair in items:
            if isinstance(pair, (int, np.integer, str)) or len(pair) != 2:
                raise ValueError(f"a two-qubit noise rule's wires must be pairs like (0, 1), got {pair!r}")
            a, b = (_wire(w, "a noise rule's wire") for w in pair)
            if a == b:
                raise ValueError(f"a two-qubit noise rule's wire pair repeats wire {a}")
            out.append((a, b))
        out = tuple(out)
    if not out:
        raise ValueError("a noise rule's wires must name at least one wire (or be None for all wires)")
    if len(set(out)) != len(out):
        raise ValueError(f"a noise rule names the same wires twice: {out}")
    return out


class NoiseModel:
    """Channels after gates, and readout errors; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._rules: list[NoiseRule] = []
        self._readout: list[ReadoutRule] = []
        self._frozen = False

    # ------------------------------------------------------------------ building
    def _check_mutable(self) -> None:
        if self._frozen:
            raise RuntimeError("this NoiseModel is frozen (it has been used or hashed); build a new one "
                               "or use model.copy()")

    def add(self, channel: Channel, gates: Union[str, Iterable[str]], wires=None) -> "NoiseModel":
        """Apply ``channel`` after each gate in ``gates``: on every wire (``wires=None``), or only
        on the listed wires (ints for one-qubit gates, ordered pairs for two-qubit gates)."""
        self._check_mutable()
        if not isinstance(channel, Channel):
            raise TypeError(f"channel must be an hdqnn.noise channel, got {type(channel).__name__}")
        names = _gate_names(gates, channel.n_qubits)
        self._rules.append(NoiseRule(channel, names, _rule_wires(wires, channel.n_qubits)))
        return self

    def add_readout(self, error: ReadoutError, wires=None) -> "NoiseModel":
        """Misread every wire (``wires=None``) or the listed wires with ``error``; one error per wire."""
        self._check_mutable()
        if not isinstance(error, ReadoutError):
            raise TypeError(f"error must be an hdqnn.noise.ReadoutError, got {type(error).__name__}")
        if wires is None:
            if any(r.wires is None for r in self._readout):
                raise ValueError("the model already has an all-wire readout error")
            self._readout.append(ReadoutRule(error, None))
            return self
        items = [wires] if isinstance(wires, (int, np.integer)) else list(wires)
        new = tuple(_wire(w, "a readout wire") for w in items)
        if not new:
            raise ValueError("add_readout's wires must name at least one wire (or be None for all wires)")
        taken = {w for r in self._readout if r.wires is not None for w in r.wires}
        clash = sorted(taken.intersection(new)) or sorted({w for w in new if new.count(w) > 1})
        if clash:
            raise ValueError(f"wire {clash[0]} would get two readout errors")
        self._readout.append(ReadoutRule(error, new))
        return self

    def freeze(self) -> "NoiseModel":
        """Make the model immutable (it also freezes on first use); returns it."""
        self._frozen = True
        return self

    @property
    def frozen(self) -> bool:
        return self._frozen

    def copy(self) -> "NoiseModel":
        """A mutable copy (channels are immutable values and are shared)."""
        out = NoiseModel()
        out._rules, out._readout = list(self._rules), list(self._readout)
        return out

    # ------------------------------------------------------------------ queries (freeze the model)
    @property
    def rules(self) -> tuple[NoiseRule, ...]:
        return tuple(self._rules)

    @property
    def readout_rules(self) -> tuple[ReadoutRule, ...]:
        return tuple(self._readout)

    @property
    def max_wire(self) -> int:
        """Largest wire any rule names, -1 when every rule is for all wires."""
        wires = [w for r in self._rules if r.wires for ws in r.wires for w in ws]
        wires += [w for r in self._readout if r.wires for w in r.wires]
        return max(wires, default=-1)

    def channels_after(self, gate: str, wires: Wires) -> tuple[Channel, ...]:
        """The channels applied, in order, after ``gate`` on ``wires`` (each on those wires)."""
        self._frozen = True
        wires = tuple(wires)
        specific = [r.channel for r in self._rules if gate in r.gates and r.wires is not None and wires in r.wires]
        if specific:
            return tuple(specific)
        return tuple(r.channel for r in self._rules if gate in r.gates and r.wires is None)

    def readout_error(self, wire: int) -> Optional[ReadoutError]:
        """The readout error of ``wire``: its own, else the all-wire one, else None."""
        self._frozen = True
        fallback = None
        for r in self._readout:
            if r.wires is None:
                fallback = r.error
            elif wire in r.wires:
                return r.error
        return fallback

    @property
    def has_readout(self) -> bool:
        return bool(self._readout)

    # ------------------------------------------------------------------ value semantics
    def _key(self) -> tuple:
        return (tuple(self._rules), tuple(self._readout))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NoiseModel) and self._key() == other._key()

    def __hash__(self) -> int:
        self._frozen = True  # a hash must not change while the model sits in a dict
        return hash(self._key())

    def __repr__(self) -> str:
        return f"NoiseModel(rules={len(self._rules)}, readout={len(self._readout)}, frozen={self._frozen})"

    def __str__(self) -> str:
        lines = [repr(self)]
        lines += [f"  {rule}" for rule in self._rules]
        lines += [f"  readout {rule}" for rule in self._readout]
        return "\n".join(lines)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {
            "format": JSON_FORMAT,
            "rules": [
                {"channel": r.channel.to_dict(), "gates": list(r.gates),
                 "wires": None if r.wires is None else [list(w) for w in r.wires]}
                for r in self._rules
            ],
            "readout": [
                {"error": r.error.to_dict(), "wires": None if r.wires is None else list(r.wires)}
                for r in self._readout
            ],
        }

    def to_json(self, indent: Optional[int] = None) -> str:
        """The model as JSON; floats round-trip exactly (``inf`` times are written as Infinity)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict) -> "NoiseModel":
        if not isinstance(data, dict) or data.get("format") != JSON_FORMAT:
            raise ValueError(f"not an hdqnn noise model: expected format {JSON_FORMAT!r}")
        unknown = set(data) - {"format", "rules", "readout"}
        if unknown:
            raise ValueError(f"unknown noise model fields: {sorted(unknown)}")
        model = cls()
        for rule in data.get("rules", []):
            wires = rule.get("wires")
            if wires is not None:  # back to the add() form: ints or pairs
                wires = [w[0] if len(w) == 1 else tuple(w) for w in wires]
            model.add(Channel.from_dict(rule["channel"]), rule["gates"], wires)
        for rule in data.get("readout", []):
            model.add_readout(ReadoutError.from_dict(rule["error"]), rule.get("wires"))
        return model

    @classmethod
    def from_json(cls, text: str) -> "NoiseModel":
        """Inverse of :meth:`to_json` (a mutable model); bad content raises ValueError."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"noise model JSON is malformed: {exc}") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"noise model JSON has a bad rule: {exc!r}") from None

    # ------------------------------------------------------------------ importers (need Qiskit)
    @classmethod
    def from_qiskit(cls, noise_model, gate_map: Optional[dict] = None, layout=None) -> "NoiseModel":
        """A Qiskit Aer ``NoiseModel`` in hdqnn's terms; see :func:`hdqnn.noise.importers.from_qiskit`."""
        from .importers import from_qiskit

        return from_qiskit(noise_model, gate_map=gate_map, layout=layout)

    @classmethod
    def from_backend(cls, backend, layout=None, gate_map: Optional[dict] = None) -> "NoiseModel":
        """A device's calibrated noise; see :func:`hdqnn.noise.importers.from_backend`."""
        from .importers import from_backend

        return from_backend(backend, layout=layout, gate_map=gate_map)


def check_model(noise: object, n_qubits: int) -> NoiseModel:
    """``noise`` as a NoiseModel whose wires all exist in an ``n_qubits`` circuit, or a clear error."""
    if not isinstance(noise, NoiseModel):
        raise TypeError(f"noise must be an hdqnn.noise.NoiseModel, got {type(noise).__name__}")
    if noise.max_wire >= n_qubits:
        raise ValueError(
            f"the noise model names wire {noise.max_wire} but the circuit has {n_qubits} qubit(s) "
            "(import a device model with layout=[...] to pick the physical qubits the wires use)"
        )
    return noise

"""PennyLane on hdqnn's engine: the device ``hdqnn.qubit`` (``qml.device("hdqnn.qubit", wires=n)``).

A tape becomes an :class:`hdqnn.Circuit` whose every gate parameter is a slot: a broadcasted
parameter (shape ``(B,)``) reads a per-sample ``Input`` column, any other a shared ``Weight``. So a
broadcasted tape is ONE engine call, forward (``expval``, ``statevector`` or ``sample``) and
backward (``vjp``), and tapes of one ``execute`` with the same gates, wires and shots (parameter
values may differ) are stacked along the batch and run as one call too. The compiled circuit
depends only on that structure and is cached.

Conventions (../shared/research/INTEROP.md section 2.6):

- **Wires.** Device wire i (or tape wire i when the device has no wires) is hdqnn wire i; both
  make the first wire the most significant index bit, so states, probabilities and samples need
  no reordering.
- **Gates.** PennyLane's gates with an hdqnn twin map one to one (``U3`` is ``u``, ``IsingXX`` is
  ``rxx``, ``Adjoint(RX)`` is ``rx`` with a negated slot, ...); everything else goes through
  PennyLane's ``decompose``. ``GlobalPhase`` only multiplies ``qml.state()``.
- **Measurements.** Expectations of Pauli words and sums (one ``expval`` over the union of their
  words); every other analytic measurement (variance, probabilities, state, Hermitian, ...) from one
  ``statevector`` call through PennyLane's own ``measure``. With shots, observables are rotated to
  the Z basis in preprocessing and one ``sample`` call serves every shot bin.
- **Derivatives** (``diff_method`` "adjoint", "device" or "best"): vector-Jacobian products by the
  engine's adjoint sweep, broadcasted trainable parameters included (the VJP of a broadcasted
  parameter has shape ``(B,)``). Expectations of Pauli words and sums only, without shots; the
  JAX interface (which wants JVPs) is not supported.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import pennylane as qml
from pennylane.devices import Device, ExecutionConfig
from pennylane.devices.modifiers import simulator_tracking, single_tape_support
from pennylane.devices.preprocess import (decompose, validate_device_wires, validate_measurements,
                                          validate_observables)
from pennylane.devices.qubit import measure
from pennylane.exceptions import DeviceError
from pennylane.measurements import ExpectationMP, MidMeasureMP, SampleMeasurement, StateMeasurement
from pennylane.ops.op_math import Adjoint, Controlled
from pennylane.transforms import convert_to_numpy_parameters, diagonalize_measurements, split_non_commuting
from pennylane.transforms.core import CompilePipeline, transform

from ..circuits import MAX_QUBITS, Circuit, Input, Weight
from ..sim import expval, sample, statevector, vjp
from ..sim.api import keeps_states

__all__ = ["HdqnnQubit", "PennyLaneSlots", "from_pennylane"]

#: PennyLane operation name -> hdqnn gate (same matrix, same parameter order).
GATE_MAP = {
    "PauliX": "x", "PauliY": "y", "PauliZ": "z", "Hadamard": "h", "S": "s", "T": "t", "SX": "sx",
    "RX": "rx", "RY": "ry", "RZ": "rz", "PhaseShift": "p", "U3": "u",
    "CNOT": "cx", "CY": "cy", "CZ": "cz", "SWAP": "swap",
    "CRX": "crx", "CRY": "cry", "CRZ": "crz", "ControlledPhaseShift": "cp",
    "IsingXX": "rxx", "IsingYY": "ryy", "IsingZZ": "rzz",
}
#: Adjoints of fixed gates that are hdqnn gates.
ADJOINT_FIXED = {"S": "sdg", "T": "tdg", "PauliX": "x", "PauliY": "y", "PauliZ": "z", "Hadamard": "h",
                 "CNOT": "cx", "CY": "cy", "CZ": "cz", "SWAP": "swap"}
#: One-angle rotations whose adjoint is the same gate at the negated angle.
ROTATIONS = frozenset({"RX", "RY", "RZ", "PhaseShift", "CRX", "CRY", "CRZ", "ControlledPhaseShift",
                       "IsingXX", "IsingYY", "IsingZZ"})
#: Operations without effect on expectations, probabilities and samples.
SKIPPED = frozenset({"Identity", "GlobalPhase", "Barrier"})
#: Compiled circuits kept per structure.
CACHE_SIZE = 128

DEVICE_GRADIENTS = frozenset({"adjoint", "device", "best"})
#: Parameter types that need no conversion.
NUMPY_TYPES = (np.ndarray, np.generic, float, int, complex)


def supported_op(op: qml.operation.Operator) -> bool:
    """True when ``op`` is one hdqnn gate (or needs no gate at all)."""
    if op.name in GATE_MAP or op.name in SKIPPED:
        return True
    if isinstance(op, Adjoint):
        return op.base.name in ADJOINT_FIXED or op.base.name in ROTATIONS
    return False


def _pauli_expval(mp: Any) -> bool:
    return isinstance(mp, ExpectationMP) and mp.obs is not None and mp.obs.pauli_rep is not None


def _differentiable(tape: Any) -> bool:
    """The adjoint VJP covers this tape: analytic expectations of Pauli words and sums only."""
    return not tape.shots and all(_pauli_expval(mp) for mp in tape.measurements)


@transform
def _rotate_sampled_observables(tape, **decomposition):
    """With shots: split non-commuting observables and rotate each tape's observables to the Z
    basis, so that one computational-basis ``sample`` serves all its measurements; the rotations
    are then decomposed into hdqnn gates (``decomposition``: :func:`decompose`'s arguments).
    Analytic tapes pass untouched, spared a second decomposition pass (~1 ms at 300 gates)."""
    if not tape.shots:
        return (tape,), lambda results: results[0]
    tapes, recombine = split_non_commuting(tape)
    rotated, unrotate = [], []
    for t in tapes:
        (diagonal,), fn = diagonalize_measurements(t)
        (hdqnn_gates,), _ = decompose(_rotate_to_eigenbasis(diagonal), **decomposition)
        rotated.append(hdqnn_gates)
        unrotate.append(fn)
    return rotated, lambda results: recombine([fn((r,)) for fn, r in zip(unrotate, results)])


def _rotate_to_eigenbasis(tape):
    """Append the diagonalizing gates of the observables ``diagonalize_measurements`` leaves alone
    (Hermitian, Projector, ...): their ``process_samples`` reads samples in their eigenbasis."""
    gates = [g for mp in tape.measurements if mp.obs is not None and mp.obs.pauli_rep is None
             for g in mp.obs.diagonalizing_gates()]
    return tape.copy(operations=tape.operations + gates) if gates else tape


@transform
def _validate_adjoint(tape):
    """A tape with trainable parameters must be one the adjoint VJP covers."""
    if tape.trainable_params and not _differentiable(tape):
        raise DeviceError("hdqnn.qubit differentiates (diff_method 'adjoint'/'device') analytic expectation "
                          "values of Pauli words and sums only; use diff_method='parameter-shift' for "
                          f"{', '.join(type(mp).__name__ for mp in tape.measurements)}"
                          f"{' with shots' if tape.shots else ''}")
    return (tape,), lambda results: results[0]


# ----------------------------------------------------------------------------- tape -> circuit
@dataclass(frozen=True)
class Slot:
    """Where tape parameter p goes: an ``Input`` column, a shared ``Weight``, or a global phase."""

    kind: str  # "input" | "weight" | "phase"
    index: int  # column / weight index / phase index


@dataclass
class Structure:
    """A tape's gates as an hdqnn circuit and the slot of each of its operation parameters."""

    circuit: Circuit
    slots: tuple[Slot, ...]
    n_inputs: int
    n_weights: int


def _ndim(value: Any) -> int:
    ndim = getattr(value, "ndim", None)  # NumPy, torch, ...: no dispatch (qml.math.ndim costs ~3 us a call)
    return np.ndim(value) if ndim is None else ndim


def _is_broadcast(value: Any) -> bool:
    """Every operation hdqnn runs takes scalar parameters, so a parameter broadcasts iff it has a
    dimension. Reading it from the value, not ``op.batch_size``, spares PennyLane's batching check,
    which every operation of a fresh tape would otherwise run (the device's largest own cost per call)."""
    return _ndim(value) > 0


def structure_key(tape: Any, wire_index: dict) -> tuple:
    """What the compiled circuit depends on: gate names, wires and which parameters broadcast."""
    return tuple((op.name, tuple(wire_index[w] for w in _wire_labels(op)), tuple(_is_broadcast(p) for p in op.data))
                 for op in tape.operations)


def _wire_labels(op: Any) -> tuple:
    """``op.wires`` as a tuple of labels. A controlled gate's (CNOT, CRX, ...) ``wires`` concatenates
    and re-validates two ``Wires`` on every read, ~10x a plain gate's: join its parts instead."""
    if isinstance(op, Controlled):
        return op.control_wires.labels + op.target_wires.labels
    return op.wires.labels


def _hdqnn_gate(op: Any) -> tuple[str, float]:
    """(hdqnn gate, scale of its angle slots) for a supported operation."""
    if isinstance(op, Adjoint):
        base = op.base.name
        return (ADJOINT_FIXED[base], 1.0) if base in ADJOINT_FIXED else (GATE_MAP[base], -1.0)
    return GATE_MAP[op.name], 1.0


def build_structure(tape: Any, wire_index: dict, n_wires: int) -> Structure:
    circuit = Circuit(n_wires)
    slots: list[Slot] = []
    counts = {"input": 0, "weight": 0, "phase": 0}

    def new_slot(kind: str) -> Slot:
        slots.append(Slot(kind, counts[kind]))
        counts[kind] += 1
        return slots[-1]

    for op in tape.operations:
        if op.name in SKIPPED:  # only GlobalPhase has a parameter: it multiplies qml.state()
            for _ in op.data:
                new_slot("phase")
            continue
        if not supported_op(op):
            raise DeviceError(f"operation {op.name} is not supported on hdqnn.qubit (preprocess decomposes it)")
        gate, scale = _hdqnn_gate(op)
        angles = []
        for i in range(len(op.data)):
            slot = new_slot("input" if _is_broadcast(op.data[i]) else "weight")
            angles.append((Input if slot.kind == "input" else Weight)(slot.index, scale=scale))
        circuit.append(gate, [wire_index[w] for w in _wire_labels(op)], angles)
    circuit.compile()
    return Structure(circuit, tuple(slots), counts["input"], counts["weight"])


class _Bound:
    """One tape's parameter values laid out for its structure: inputs [B, nI], weights [nW], phases.

    The batch size is that of the broadcast parameters (``Input`` slots, or a broadcast global
    phase), None without any."""

    def __init__(self, params: Sequence[Any], structure: Structure) -> None:
        params = [np.real(_to_numpy(p)) for p in params]
        batch_size = next((len(p) for p, slot in zip(params, structure.slots) if slot.kind != "weight" and p.ndim),
                          None)
        self.batch = batch_size or 1
        self.broadcast = batch_size is not None
        self.inputs = np.empty((self.batch, structure.n_inputs), dtype=np.float64)
        self.weights = np.empty(structure.n_weights, dtype=np.float64)
        self.phases = np.zeros(self.batch, dtype=np.float64)
        for slot, value in zip(structure.slots, params):
            if slot.kind == "input":
                if len(value) != self.batch:
                    raise ValueError(f"broadcast parameters of different lengths {self.batch} and {len(value)}")
                self.inputs[:, slot.index] = value
            elif slot.kind == "weight":
                self.weights[slot.index] = value
            else:
                self.phases += value


# ----------------------------------------------------------------------------- Pauli words
def _pauli_terms(sentence: Any, wire_index: dict) -> tuple[list[tuple[str, tuple[int, ...]]], np.ndarray, float]:
    """A PauliSentence as hdqnn sparse terms, their real coefficients and the identity's constant."""
    terms, coeffs, constant = [], [], 0.0
    for word, coeff in sentence.items():
        coeff = float(np.real(coeff))
        if not word:
            constant += coeff
            continue
        wires = sorted(word, key=lambda w: wire_index[w])
        terms.append(("".join(word[w] for w in wires), tuple(wire_index[w] for w in wires)))
        coeffs.append(coeff)
    return terms, np.asarray(coeffs, dtype=np.float64), constant


class _TermUnion:
    """The union of the Pauli words of many expectations; ``row(...)`` gives each one's coefficients."""

    def __init__(self) -> None:
        self.terms: list[tuple[str, tuple[int, ...]]] = []
        self._index: dict = {}

    def add(self, sentence: Any, wire_index: dict) -> tuple[np.ndarray, np.ndarray, float]:
        """(term columns, coefficients, constant) of one expectation."""
        terms, coeffs, constant = _pauli_terms(sentence, wire_index)
        for t in terms:
            if t not in self._index:
                self._index[t] = len(self.terms)
                self.terms.append(t)
        return np.asarray([self._index[t] for t in terms], dtype=np.int64), coeffs, constant


# ----------------------------------------------------------------------------- the device
@simulator_tracking
@single_tape_support
class HdqnnQubit(Device):
    """hdqnn's batched state-vector engine as a PennyLane device.

    Args:
        wires: the device's wires (a number or labels), or None to take each tape's wires.
        shots: deprecated in PennyLane 0.45 (use ``qml.set_shots``); read from each tape.
        c_dtype: the engine's complex dtype, ``np.complex128`` (default) or ``np.complex64``,
            whatever dtype the parameters arrive in.
        seed: seed or ``np.random.Generator`` of the shots.
        backend: an hdqnn backend name (None: the default engine).
    """

    def __init__(self, wires=None, shots=None, *, c_dtype: Any = np.complex128, seed: Any = None,
                 backend: Any = None) -> None:
        super().__init__(wires=wires, shots=shots)
        c_dtype = np.dtype(c_dtype)
        if c_dtype not in (np.complex64, np.complex128):
            raise ValueError(f"c_dtype must be complex64 or complex128, got {c_dtype}")
        if self.wires is not None and len(self.wires) > MAX_QUBITS:
            raise ValueError(f"hdqnn.qubit simulates at most {MAX_QUBITS} wires, got {len(self.wires)}")
        self._c_dtype = c_dtype
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._backend = backend
        self._structures: OrderedDict[tuple, Structure] = OrderedDict()
        self._kept: dict[tuple, _Kept] = {}  # the last execute's final states, by group key

    @property
    def name(self) -> str:
        return "hdqnn.qubit"

    @property
    def c_dtype(self) -> np.dtype:
        return self._c_dtype

    # ------------------------------------------------------------------------- configuration
    def setup_execution_config(self, config: ExecutionConfig | None = None, circuit: Any = None) -> ExecutionConfig:
        config = config or ExecutionConfig()
        if config.device_options:  # the options are constructor arguments: qml.device("hdqnn.qubit", c_dtype=...)
            raise DeviceError(f"device options {sorted(config.device_options)} are not present on {self}; "
                              "pass c_dtype, seed and backend to qml.device")
        if config.mcm_config.mcm_method not in (None, "deferred"):
            raise DeviceError(f"hdqnn.qubit runs mid-circuit measurements by deferring them (mcm_method='deferred'), "
                              f"not {config.mcm_config.mcm_method!r}")
        # On the device-gradient path, torch tapes come in unconverted: PennyLane's conversion rebuilds
        # every parametrized operation (~10% of a B = 16 TorchLayer step); execute reads the tensors
        # itself (_to_numpy). The VJP's tapes are converted by PennyLane whatever this says.
        torch_vjp = config.interface is qml.math.Interface.TORCH and config.gradient_method in DEVICE_GRADIENTS
        updated: dict[str, Any] = {"convert_to_numpy": not torch_vjp}
        if config.gradient_method in DEVICE_GRADIENTS:
            updated["gradient_method"] = "adjoint" if config.gradient_method == "best" else config.gradient_method
            updated["use_device_gradient"] = True
            # the full-Jacobian path cannot express gradients of broadcasted trainable parameters
            # (PennyLane #4462), so the VJP path is used even when the QNode asked device_vjp=False
            updated["use_device_jacobian_product"] = True
            updated["grad_on_execution"] = False
        return replace(config, **updated)

    def preprocess_transforms(self, execution_config: ExecutionConfig | None = None) -> CompilePipeline:
        config = execution_config or ExecutionConfig()
        pipeline = CompilePipeline()
        pipeline.add_transform(validate_device_wires, self.wires, name=self.name)
        pipeline.add_transform(qml.defer_measurements, allow_postselect=False)
        decomposition = dict(stopping_condition=supported_op, skip_initial_state_prep=False,
                             device_wires=self.wires, name=self.name)
        pipeline.add_transform(decompose, **decomposition)
        pipeline.add_transform(validate_measurements, analytic_measurements=lambda mp: isinstance(mp, StateMeasurement),
                               sample_measurements=lambda mp: isinstance(mp, SampleMeasurement), name=self.name)
        pipeline.add_transform(validate_observables, stopping_condition=_observable_supported, name=self.name)
        pipeline.add_transform(_rotate_sampled_observables, **decomposition)
        if config.gradient_method in ("adjoint", "device"):
            pipeline.add_transform(_validate_adjoint)
        return pipeline

    def supports_derivatives(self, execution_config: ExecutionConfig | None = None, circuit: Any = None) -> bool:
        if execution_config is None:
            return True
        if execution_config.gradient_method not in DEVICE_GRADIENTS or execution_config.derivative_order != 1:
            return False
        if execution_config.interface in (qml.math.Interface.JAX, qml.math.Interface.JAX_JIT):
            return False
        return circuit is None or _differentiable(circuit)

    def supports_vjp(self, execution_config: ExecutionConfig | None = None, circuit: Any = None) -> bool:
        return self.supports_derivatives(execution_config, circuit)

    # ------------------------------------------------------------------------- execution
    def execute(self, circuits: Sequence[Any], execution_config: ExecutionConfig | None = None) -> tuple:
        circuits = [_numpy_measurements(tape) for tape in circuits]
        results: list[Any] = [None] * len(circuits)
        self._kept = {}
        keep = execution_config is not None and execution_config.gradient_method in DEVICE_GRADIENTS
        for group in self._groups(circuits):
            for i, result in zip(group.indices, self._run_group(group, keep)):
                results[i] = result
        return tuple(results)

    def compute_vjp(self, circuits: Sequence[Any], cotangents: Sequence[Any],
                    execution_config: ExecutionConfig | None = None) -> tuple:
        results: list[Any] = [None] * len(circuits)
        for group in self._groups(circuits):
            for i, result in zip(group.indices, self._vjp_group(group, [cotangents[i] for i in group.indices])):
                results[i] = result
        return tuple(results)

    def execute_and_compute_vjp(self, circuits: Sequence[Any], cotangents: Sequence[Any],
                                execution_config: ExecutionConfig | None = None) -> tuple:
        return self.execute(circuits, execution_config), self.compute_vjp(circuits, cotangents, execution_config)

    # ------------------------------------------------------------------------- internals
    def _wire_order(self, tape: Any) -> Any:
        """The device's wires, else the tape's. (A wire outside the device's fails _structure's
        lookups: ``tape.wires``, PennyLane's union over every operation, is ~0.4 ms at 300 gates.)"""
        wires = self.wires if self.wires is not None else tape.wires
        if not 1 <= len(wires) <= MAX_QUBITS:
            raise DeviceError(f"hdqnn.qubit simulates 1 to {MAX_QUBITS} wires, the circuit has {len(wires)}")
        return wires

    def _structure(self, tape: Any, wire_order: Any) -> tuple[tuple, Structure]:
        wire_index = {w: i for i, w in enumerate(wire_order)}
        try:
            key = (tuple(wire_order), structure_key(tape, wire_index))
        except KeyError:  # an operation on a wire outside the device
            key = None
        if key is None or any(w not in wire_index for mp in tape.measurements for w in mp.wires.labels):
            missing = tape.wires - wire_order
            raise DeviceError(f"the circuit uses wires {missing.tolist()} that hdqnn.qubit does not have "
                              f"(device wires: {wire_order.tolist()})")
        structure = self._structures.get(key)
        if structure is None:
            structure = self._structures[key] = build_structure(tape, wire_index, len(wire_order))
            if len(self._structures) > CACHE_SIZE:
                self._structures.popitem(last=False)
        else:
            self._structures.move_to_end(key)
        return key, structure

    def _groups(self, circuits: Sequence[Any]) -> list[_Group]:
        """Tapes with equal structure and shots, in order of first appearance."""
        groups: dict[tuple, _Group] = {}
        for i, tape in enumerate(circuits):
            wire_order = self._wire_order(tape)
            key, structure = self._structure(tape, wire_order)
            group = groups.setdefault((key, tape.shots), _Group((key, tape.shots), structure, wire_order))
            group.add(i, tape)
        return list(groups.values())

    def _engine_args(self, group: _Group) -> tuple[np.ndarray, np.ndarray]:
        """Stacked inputs [B_total, nI] and weights: shared [nW] when every tape agrees, else per row."""
        inputs = np.concatenate([b.inputs for b in group.bound])
        first = group.bound[0].weights
        if all(np.array_equal(b.weights, first) for b in group.bound[1:]):
            return inputs, first
        return inputs, np.concatenate([np.broadcast_to(b.weights, (b.batch, len(b.weights))) for b in group.bound])

    def _run_group(self, group: _Group, keep: bool = False) -> list[Any]:
        if group.tapes[0].shots:
            return self._sample_group(group)
        if all(_pauli_expval(mp) for t in group.tapes for mp in t.measurements):
            return self._expval_group(group, keep)
        return self._state_group(group)

    def _keeps_states(self, group: _Group, batch: int) -> bool:
        """Whether a forward of ``group`` keeps its final states for the VJP that may follow: tapes
        with trainable parameters, on an engine that starts the VJP from them, within
        hdqnn.sim.api.KEPT_STATE_BYTES. (Under torch.no_grad PennyLane calls execute the same way, trainable
        parameters and all, from inside its autograd function, where grad mode is always off: an
        inference forward keeps them too, until the next execute.)"""
        return any(t.trainable_params for t in group.tapes) and keeps_states(
            batch, len(group.wire_order), self._c_dtype.itemsize, self._backend)

    def _expval_group(self, group: _Group, keep: bool = False) -> list[Any]:
        union = _TermUnion()
        per_tape = [[union.add(mp.obs.pauli_rep, group.wire_index) for mp in t.measurements] for t in group.tapes]
        inputs, weights = self._engine_args(group)
        if union.terms and keep and self._keeps_states(group, inputs.shape[0]):
            ev, states = expval(group.structure.circuit, inputs, weights, observables=union.terms,
                                dtype=self._c_dtype, backend=self._backend, return_state=True)
            ev = np.asarray(ev, dtype=np.float64)
            self._kept[group.key] = _Kept(inputs, weights, states)
        elif union.terms:
            ev = np.asarray(expval(group.structure.circuit, inputs, weights, observables=union.terms,
                                   dtype=self._c_dtype, backend=self._backend), dtype=np.float64)
        else:  # identity observables only
            ev = np.zeros((inputs.shape[0], 0))
        results = []
        for rows, bound, mps in zip(group.rows(), group.bound, per_tape):
            values = [ev[rows][:, cols] @ coeffs + constant for cols, coeffs, constant in mps]
            results.append(_shape_result([v if bound.broadcast else v[0] for v in values]))
        return results

    def _state_group(self, group: _Group) -> list[Any]:
        inputs, weights = self._engine_args(group)
        psi = np.asarray(statevector(group.structure.circuit, inputs, weights, dtype=self._c_dtype,
                                     backend=self._backend))
        n = len(group.wire_order)
        standard = {w: i for i, w in enumerate(group.wire_order)}
        results = []
        for rows, bound, tape in zip(group.rows(), group.bound, group.tapes):
            state = psi[rows] * np.exp(-1j * bound.phases)[:, None].astype(psi.dtype)
            state = state.reshape((bound.batch,) + (2,) * n)
            if not bound.broadcast:
                state = state[0]
            results.append(_shape_result([measure(mp.map_wires(standard), state, is_state_batched=bound.broadcast)
                                          for mp in tape.measurements]))
        return results

    def _sample_group(self, group: _Group) -> list[Any]:
        shots = group.tapes[0].shots
        inputs, weights = self._engine_args(group)
        bits = np.asarray(sample(group.structure.circuit, inputs, weights, shots=shots.total_shots, seed=self._rng,
                                 backend=self._backend), dtype=np.int64)
        standard = {w: i for i, w in enumerate(group.wire_order)}
        wire_order = qml.wires.Wires(range(len(group.wire_order)))
        results = []
        for rows, bound, tape in zip(group.rows(), group.bound, group.tapes):
            samples = bits[rows] if bound.broadcast else bits[rows][0]
            mps = [mp.map_wires(standard) for mp in tape.measurements]
            bins = [_shape_result([mp.process_samples(samples[..., lo:hi, :], wire_order) for mp in mps])
                    for lo, hi in shots.bins()]
            results.append(tuple(bins) if shots.has_partitioned_shots else bins[0])
        return results

    def _vjp_group(self, group: _Group, cotangents: list[Any]) -> list[tuple]:
        for tape in group.tapes:
            if not _differentiable(tape):
                raise DeviceError("hdqnn.qubit computes VJPs of analytic expectation values of Pauli words and "
                                  "sums only")
        union = _TermUnion()
        per_tape = [[union.add(mp.obs.pauli_rep, group.wire_index) for mp in t.measurements] for t in group.tapes]
        inputs, weights = self._engine_args(group)
        kept = self._kept.pop(group.key, None)
        final_state = kept.states if kept is not None and kept.matches(inputs, weights) else None
        if len(group.tapes) > 1 and weights.ndim == 1:  # per-row weights: each tape's own sum of gradients
            weights = np.broadcast_to(weights, (inputs.shape[0], len(weights)))
        grad_output = np.zeros((inputs.shape[0], len(union.terms)), dtype=np.float64)
        for rows, bound, mps, cot in zip(group.rows(), group.bound, per_tape, cotangents):
            for (cols, coeffs, _), dy in zip(mps, _cotangent_list(cot, len(mps))):
                dy = np.broadcast_to(np.real(np.asarray(dy, dtype=np.complex128)), (bound.batch,))
                np.add.at(grad_output, (slice(rows.start, rows.stop), cols), dy[:, None] * coeffs[None, :])
        if union.terms and grad_output.any():
            gx, gw = vjp(group.structure.circuit, inputs, weights, grad_output, observables=union.terms,
                         dtype=self._c_dtype, backend=self._backend, final_state=final_state)
            gx, gw = np.asarray(gx, dtype=np.float64), np.asarray(gw, dtype=np.float64)
        else:  # nothing flows back: skip the engine
            gx, gw = np.zeros(inputs.shape), np.zeros(weights.shape)
        return [self._parameter_vjp(tape, group.structure, bound, gx[rows], gw[rows] if gw.ndim == 2 else gw)
                for rows, bound, tape in zip(group.rows(), group.bound, group.tapes)]

    @staticmethod
    def _parameter_vjp(tape: Any, structure: Structure, bound: _Bound, gx: np.ndarray, gw: np.ndarray) -> tuple:
        """One VJP entry per trainable parameter: ``(B,)`` for a broadcasted one, else a scalar."""
        shared = gw.sum(axis=0) if gw.ndim == 2 else gw
        out = []
        for p in tape.trainable_params:
            if p >= len(structure.slots):
                raise DeviceError("hdqnn.qubit cannot differentiate observable parameters (trainable parameter "
                                  f"{p} belongs to a measurement)")
            slot = structure.slots[p]
            if slot.kind == "input":
                out.append(gx[:, slot.index])
            elif slot.kind == "weight":
                out.append(np.float64(shared[slot.index]))
            else:  # a global phase never changes an expectation value
                out.append(np.zeros(bound.batch) if bound.broadcast else np.float64(0.0))
        return ParameterVJPs(out)


class ParameterVJPs(tuple):
    """One tape's VJPs, one per trainable parameter, of mixed shapes (``(B,)`` and scalars).

    PennyLane's torch boundary skips a tape whose ``np.squeeze(vjps).shape`` is ``(0,)``; NumPy
    cannot squeeze a ragged tuple (default.qubit never makes one: it expands broadcasts), but
    ``np.squeeze`` calls the object's own ``squeeze`` first.
    """

    def squeeze(self, axis: Any = None) -> np.ndarray:
        return np.empty(len(self)).squeeze(axis)


@dataclass(frozen=True)
class _Kept:
    """A forward's engine arguments and the final states it left, for the VJP of the same tapes."""

    inputs: np.ndarray
    weights: np.ndarray
    states: np.ndarray

    def matches(self, inputs: np.ndarray, weights: np.ndarray) -> bool:
        """The VJP's arguments are the forward's: its tapes are PennyLane's NumPy copies of the
        forward's, so equal values, not identity, tell that the states are theirs."""
        return np.array_equal(self.inputs, inputs) and np.array_equal(self.weights, weights)


class _Group:
    """Tapes of one structure (and shot count), stacked along the batch for one engine call."""

    def __init__(self, key: tuple, structure: Structure, wire_order: Any) -> None:
        self.key = key
        self.structure = structure
        self.wire_order = wire_order
        self.wire_index = {w: i for i, w in enumerate(wire_order)}
        self.indices: list[int] = []
        self.tapes: list[Any] = []
        self.bound: list[_Bound] = []

    def add(self, index: int, tape: Any) -> None:
        self.indices.append(index)
        self.tapes.append(tape)
        self.bound.append(_Bound(_operation_params(tape), self.structure))

    def rows(self) -> list[slice]:
        """Each tape's rows in the stacked batch."""
        ends = np.cumsum([b.batch for b in self.bound])
        return [slice(int(e - b.batch), int(e)) for e, b in zip(ends, self.bound)]


def _to_numpy(value: Any) -> np.ndarray:
    """A gate parameter as NumPy. Torch tapes reach ``execute`` unconverted (``setup_execution_config``
    turns PennyLane's per-operation conversion off for them): detach here, one parameter at a time."""
    if isinstance(value, NUMPY_TYPES):
        return np.asarray(value)
    detach = getattr(value, "detach", None)  # a torch tensor (qml.math.to_numpy dispatches: ~10x slower)
    return detach().cpu().numpy() if detach is not None else qml.math.to_numpy(value)


def _numpy_measurements(tape: Any) -> Any:
    """``tape`` whose measurements hold NumPy data only: an observable with interface data (a torch
    Hermitian matrix, Hamiltonian coefficients as tensors) has the whole tape converted by PennyLane."""
    if all(isinstance(d, NUMPY_TYPES) for mp in tape.measurements if mp.obs is not None for d in mp.obs.data):
        return tape
    (converted,), _ = convert_to_numpy_parameters(tape)
    return converted


def _operation_params(tape: Any) -> list[Any]:
    """The tape's gate parameters in tape order: the first entries of ``tape.get_parameters``."""
    return [p for op in tape.operations for p in op.data]


def _observable_supported(obs: Any) -> bool:
    return obs.pauli_rep is not None or obs.has_matrix


def _cotangent_list(cotangent: Any, n_measurements: int) -> list[Any]:
    return [cotangent] if n_measurements == 1 else list(cotangent)


def _shape_result(values: list[Any]) -> Any:
    """One measurement's value alone, several as a tuple (PennyLane's return spec)."""
    return values[0] if len(values) == 1 else tuple(values)


# ----------------------------------------------------------------------------- converter
class PennyLaneSlots:
    """How a circuit converted by :func:`from_pennylane` reads the tape's gate parameters.

    tape:       the tape as converted (after decomposing gates outside hdqnn's set): its gate
        parameters, in ``tape.get_parameters(trainable_only=False)`` order, are the ``values`` below.
    parameters: per gate parameter p, its :class:`Slot`: an ``Input`` column (broadcast, ``(B,)``), a
        ``Weight`` index (scalar) or a ``"phase"`` (``GlobalPhase``: no gate, see ``global_phase``).
    trainable_params: the tape's trainable parameter indices (indices into ``parameters``).
    wires:      the wire order: wire i is hdqnn wire i (the first the most significant bit).
    """

    def __init__(self, tape: Any, structure: Structure, wires: Any) -> None:
        self.tape = tape
        self.parameters = structure.slots
        self.trainable_params = tuple(tape.trainable_params)
        self.wires = wires
        self.batch_size = tape.batch_size
        self._structure = structure

    @property
    def n_parameters(self) -> int:
        return len(self.parameters)

    @property
    def n_inputs(self) -> int:
        return self._structure.n_inputs

    @property
    def n_weights(self) -> int:
        return self._structure.n_weights

    def check_values(self, values: Any = None) -> list[np.ndarray]:
        """``values`` (default: the tape's own) as float64 arrays: ``(B,)`` for Input slots, scalars otherwise."""
        if values is None:
            values = _operation_params(self.tape)
        values = [np.real(qml.math.to_numpy(v)).astype(np.float64) for v in values]
        if len(values) != self.n_parameters:
            raise ValueError(f"expected {self.n_parameters} gate parameter values in tape order, got {len(values)}")
        sizes = {v.shape for v, s in zip(values, self.parameters) if s.kind == "input"}
        if len(sizes) > 1 or any(len(shape) != 1 for shape in sizes):
            raise ValueError("the broadcast parameters (Input slots) must all have one shape (B,), "
                             f"got {sorted(sizes)}")
        for p, (v, s) in enumerate(zip(values, self.parameters)):
            if s.kind != "input" and v.ndim != 0:
                raise ValueError(f"parameter {p} was not broadcast in the converted tape (a {s.kind} slot): it must "
                                 f"be a scalar, got shape {v.shape}; convert a tape that broadcasts it instead")
        return values

    def _bound(self, values: Any) -> _Bound:
        return _Bound(self.check_values(values), self._structure)

    def inputs(self, values: Any = None) -> np.ndarray:
        """The engine's input matrix [B, n_inputs] (B = 1 when nothing broadcasts)."""
        return self._bound(values).inputs

    def weights(self, values: Any = None) -> np.ndarray:
        """The engine's weight vector [n_weights]."""
        return self._bound(values).weights

    def global_phase(self, values: Any = None) -> np.ndarray:
        """[B] angles phi of the tape's ``GlobalPhase`` gates: PennyLane's state is ``exp(-i phi)`` hdqnn's."""
        return self._bound(values).phases


def from_pennylane(tape_or_qnode: Any, *args: Any, **kwargs: Any) -> tuple[Circuit, PennyLaneSlots]:
    """``(hdqnn.Circuit, PennyLaneSlots)`` for a PennyLane tape, or for a QNode called with ``args``/``kwargs``.

    Built exactly as ``hdqnn.qubit`` builds it: broadcast parameters become ``Input`` columns, the
    others shared ``Weight``s, gates outside hdqnn's set are decomposed. A QNode's wire order is its
    device's wires (else the tape's); a tape's is its own wires. Measurements are not converted.
    """
    if isinstance(tape_or_qnode, qml.QNode):
        tape = qml.workflow.construct_tape(tape_or_qnode, level="user")(*args, **kwargs)
        wires = tape_or_qnode.device.wires
    elif isinstance(tape_or_qnode, qml.tape.QuantumScript):
        if args or kwargs:
            raise TypeError("from_pennylane: arguments are for a QNode; a tape already holds its parameter values")
        tape, wires = tape_or_qnode, None
    else:
        raise TypeError("from_pennylane expects a QNode or a QuantumTape/QuantumScript, "
                        f"got {type(tape_or_qnode).__name__}")
    if any(isinstance(op, MidMeasureMP) for op in tape.operations):
        raise ValueError("from_pennylane: mid-circuit measurements have no hdqnn circuit (hdqnn.qubit defers them "
                         "with extra wires; apply qml.defer_measurements to the tape first)")
    (tape,), _ = decompose(tape, stopping_condition=supported_op, skip_initial_state_prep=False, name="hdqnn.qubit")
    wires = tape.wires if wires is None else wires
    if tape.wires - wires:
        raise ValueError(f"the tape uses wires {(tape.wires - wires).tolist()} outside the device's {wires.tolist()}")
    if not 1 <= len(wires) <= MAX_QUBITS:
        raise ValueError(f"hdqnn circuits have 1 to {MAX_QUBITS} wires, the tape has {len(wires)}")
    structure = build_structure(tape, {w: i for i, w in enumerate(wires)}, len(wires))
    return structure.circuit, PennyLaneSlots(tape, structure, wires)

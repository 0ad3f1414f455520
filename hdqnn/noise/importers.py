"""Noise models from Qiskit: an Aer ``NoiseModel``, or a device's calibration (a ``BackendV2`` Target).

Qiskit is imported inside the functions, so ``import hdqnn.noise`` never loads it.

Gate names. Errors attach to hdqnn gates by name through :data:`QISKIT_GATE_NAMES`: Qiskit's
gates with an hdqnn twin of the same matrix (x, sx, rz, cx, u/u3, p/u1, cp/cu1, ...). Everything
else cannot be mapped exactly and is left out with one warning that lists it: ``ecr`` (hdqnn has
no ECR gate), ``id`` and ``delay`` (hdqnn circuits have no idle steps), ``reset``, ``measure``'s
quantum errors, ``u2``, and any custom label. A device's noise is imported for its native gates
only: an hdqnn gate the device does not run natively (``ry`` on an IBM device) gets no error unless
``gate_map`` borrows one, e.g. ``gate_map={"sx": ["sx", "ry", "rx"], "ecr": "cx"}`` (an
approximation you choose: the device would compile ``ry`` into ``rz``/``sx`` pulses).

Qubits. Wire ``i`` is physical qubit ``layout[i]`` (``layout=None``: wire ``i`` is qubit ``i``);
errors on qubits outside the layout are dropped. Qiskit orders a multi-qubit operator's qubits
least significant first and stacks superoperators by columns; both are converted here.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence, Union

import numpy as np

from ..circuits import GATES
from .channels import Channel, ReadoutError, depolarizing, kraus_from_superop, thermal_relaxation
from .model import NoiseModel

#: Qiskit instruction name -> the hdqnn gate with the same matrix.
QISKIT_GATE_NAMES: dict[str, str] = {name: name for name in GATES}
QISKIT_GATE_NAMES.update({"u3": "u", "u1": "p", "cu1": "cp", "cnot": "cx"})

GateMap = dict[str, Union[str, Sequence[str], None]]


def _gate_table(gate_map: Optional[GateMap]) -> dict[str, tuple[str, ...]]:
    """Qiskit name -> hdqnn gate names: the default table with ``gate_map`` on top (None: skip)."""
    table = {q: (h,) for q, h in QISKIT_GATE_NAMES.items()}
    for qiskit_name, names in (gate_map or {}).items():
        names = () if names is None else (names,) if isinstance(names, str) else tuple(names)
        unknown = [h for h in names if h not in GATES]
        if unknown:
            raise ValueError(f"gate_map maps {qiskit_name!r} to unknown hdqnn gate(s) {unknown}; "
                             f"known gates: {', '.join(sorted(GATES))}")
        table[qiskit_name] = names
    return table


def _wire_of(layout: Optional[Sequence[int]], n_physical: Optional[int]) -> Optional[dict[int, int]]:
    """Physical qubit -> wire; None means the identity on every qubit."""
    if layout is None:
        return None
    physical = list(layout)
    for q in physical:
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)):
            raise TypeError(f"layout entries must be physical qubit ints, got {q!r}")
        if q < 0 or (n_physical is not None and q >= n_physical):
            raise ValueError(f"layout names qubit {q}, but the device has qubits 0..{n_physical - 1}")
    if len(set(physical)) != len(physical):
        raise ValueError(f"layout repeats a physical qubit: {physical}")
    if not physical:
        raise ValueError("layout must name at least one physical qubit")
    return {int(q): wire for wire, q in enumerate(physical)}


def _wires(qubits: Sequence[int], wire_of: Optional[dict[int, int]]) -> Optional[tuple[int, ...]]:
    if wire_of is None:
        return tuple(int(q) for q in qubits)
    if any(q not in wire_of for q in qubits):
        return None
    return tuple(wire_of[q] for q in qubits)


def _reverse_qubits(d: int) -> np.ndarray:
    """Index permutation between Qiskit's qubit order and hdqnn's (bit reversal)."""
    n = d.bit_length() - 1
    return np.array([int(format(i, f"0{n}b")[::-1], 2) for i in range(d)])


def channel_from_qiskit(error) -> Channel:
    """An Aer ``QuantumError`` (or any Qiskit channel with ``to_quantumchannel``) as a Kraus channel."""
    from qiskit.quantum_info import SuperOp

    superop = SuperOp(error.to_quantumchannel() if hasattr(error, "to_quantumchannel") else error)
    d = superop.dim[0]
    if d not in (2, 4):
        raise ValueError(f"only 1- and 2-qubit errors can be imported, got a {d.bit_length() - 1}-qubit one")
    # Qiskit: S[k + d*l, i + d*j] = E(|i><j|)[k, l], qubit 0 least significant
    s = superop.data.reshape(d, d, d, d).transpose(1, 0, 3, 2)  # -> [k, l, i, j]
    r = _reverse_qubits(d)
    s = s[np.ix_(r, r, r, r)]
    return kraus_from_superop(s.reshape(d * d, d * d))


def readout_from_qiskit(error) -> ReadoutError:
    """A one-qubit Aer ``ReadoutError`` (rows: prepared 0/1, columns: measured 0/1)."""
    probs = np.asarray(error.probabilities, dtype=np.float64)
    if probs.shape != (2, 2):
        raise ValueError(
            f"only single-qubit readout errors can be imported, got a {error.number_of_qubits}-qubit "
            "(correlated) one"
        )
    return ReadoutError(float(probs[0, 1]), float(probs[1, 0]))


def _warn_unmapped(unmapped: set[str], source: str) -> None:
    if unmapped:
        warnings.warn(
            f"{source}: errors on {', '.join(sorted(unmapped))} were not imported (no hdqnn gate of that "
            "name; pass gate_map={qiskit_name: hdqnn_gate} to borrow one)",
            UserWarning, stacklevel=3,
        )


def _hdqnn_gates(table: dict, name: str, unmapped: set[str]) -> tuple[str, ...]:
    """The hdqnn gates a Qiskit instruction's errors go to; () when unmapped (noted) or skipped."""
    if name not in table:
        unmapped.add(name)
    return table.get(name, ())


def _add(model: NoiseModel, name: str, gates: tuple[str, ...], channel: Channel, wires) -> None:
    for gate in gates:
        if GATES[gate].n_wires != channel.n_qubits:
            raise ValueError(f"gate_map maps {channel.n_qubits}-qubit instruction {name!r} to "
                             f"{GATES[gate].n_wires}-qubit gate {gate!r}")
    # add() takes a one-qubit rule's wires as ints, a two-qubit rule's as pairs
    model.add(channel, gates, wires=None if wires is None else [wires[0] if len(wires) == 1 else wires])


def from_qiskit(noise_model, gate_map: Optional[GateMap] = None, layout: Optional[Sequence[int]] = None) -> NoiseModel:
    """An hdqnn NoiseModel with the same channels after the same gates as a Qiskit Aer NoiseModel.

    Aer's all-qubit errors become all-wire rules, its qubit-specific errors wire-specific rules
    (which override the all-wire ones, as in Aer); its readout errors likewise. Each error is
    imported exactly as a Kraus channel. Multi-qubit readout errors raise ValueError; errors on
    instructions without an hdqnn gate are left out with a warning (see the module docstring).
    """
    try:  # Aer has no public accessor for its rules; these attributes are its stable storage
        quantum_default = noise_model._default_quantum_errors
        quantum_local = noise_model._local_quantum_errors
        readout_default = noise_model._default_readout_error
        readout_local = noise_model._local_readout_errors
    except AttributeError:
        raise TypeError(f"from_qiskit needs a qiskit_aer.noise.NoiseModel, got {type(noise_model).__name__}") from None
    table = _gate_table(gate_map)
    wire_of = _wire_of(layout, None)
    model, unmapped = NoiseModel(), set()
    for name, error in quantum_default.items():
        gates = _hdqnn_gates(table, name, unmapped)
        if gates:
            _add(model, name, gates, channel_from_qiskit(error), None)
    for name, by_qubits in quantum_local.items():
        gates = _hdqnn_gates(table, name, unmapped)
        for qubits, error in by_qubits.items() if gates else ():
            wires = _wires(qubits, wire_of)
            if wires is not None:
                _add(model, name, gates, channel_from_qiskit(error), wires)
    if readout_default is not None:
        model.add_readout(readout_from_qiskit(readout_default))
    for qubits, error in readout_local.items():
        readout = readout_from_qiskit(error)  # a correlated (multi-qubit) error raises here
        wires = _wires(qubits, wire_of)
        if wires is not None:
            model.add_readout(readout, wires)
    if getattr(noise_model, "_custom_noise_passes", None):
        unmapped.add("delay (relaxation noise pass)")
    _warn_unmapped(unmapped, "NoiseModel.from_qiskit")
    return model


# ---------------------------------------------------------------------- device calibration
def _relaxation(target, qubits: Sequence[int], duration: Optional[float]) -> Optional[Channel]:
    """Thermal relaxation of each qubit for the gate's duration (one channel per qubit, tensored),
    with Aer's conventions: missing T1/T2 mean no decay and T2 is clipped to 2 T1."""
    if not duration:
        return None
    channels = []
    for q in qubits:
        props = target.qubit_properties[q] if target.qubit_properties else None
        t1 = getattr(props, "t1", None)
        t2 = getattr(props, "t2", None)
        if t1 is not None:
            t2 = 2 * t1 if t2 is None else min(t2, 2 * t1)
        channels.append(thermal_relaxation(math.inf if t1 is None else t1, math.inf if t2 is None else t2, duration))
    out = channels[0]
    for channel in channels[1:]:
        out = out.tensor(channel)
    return out


def _average_gate_fidelity(channel: Channel) -> float:
    """F_avg = (d * F_process + 1) / (d + 1), F_process = Tr(S) / d**2 (against the identity)."""
    d = channel.dim
    process = float(np.trace(channel.superop).real) / d**2
    return (d * process + 1) / (d + 1)


def _gate_depolarizing(n_qubits: int, gate_error: Optional[float], relax: Optional[Channel]) -> Optional[Channel]:
    """The depolarizing channel that, followed by ``relax``, has average gate error ``gate_error``
    (Aer's device model: solve F = F_relax - p (d F_relax - 1) / d for p, clipped to physical)."""
    relax_fid = 1.0 if relax is None else _average_gate_fidelity(relax)
    if gate_error is None or gate_error <= 1.0 - relax_fid:
        return None
    d = 2**n_qubits
    gate_error = min(gate_error, d / (d + 1))
    p = d * (gate_error - (1.0 - relax_fid)) / (d * relax_fid - 1)
    return depolarizing(min(p, 4**n_qubits / (4**n_qubits - 1)), n_qubits)


def _by_qubits(item: tuple) -> tuple[int, ...]:
    """Sort key of a Target entry (qubits, properties); None (every qubit) first."""
    return tuple(item[0] or ())


def from_backend(backend, layout: Optional[Sequence[int]] = None, gate_map: Optional[GateMap] = None) -> NoiseModel:
    """A device's calibrated noise, the model ``qiskit_aer.noise.NoiseModel.from_backend`` builds
    (at zero temperature), computed here from the backend's Target without Aer:

      - after each calibrated gate on its qubits: a depolarizing channel sized so that, followed by
        thermal relaxation (each qubit's T1/T2 over the gate's duration), the gate's average error
        is the reported one; then that relaxation;
      - on each measured qubit: its readout error (``prob_meas1_prep0``/``prob_meas0_prep1`` where
        the Target has them, else the symmetric measure error).

    backend: any Qiskit ``BackendV2`` with a ``target`` (e.g. ``qiskit_ibm_runtime.fake_provider``'s
    fake devices, offline). layout: physical qubit of each wire (default: wire i = qubit i).
    """
    from qiskit.circuit import Gate, Measure

    target = getattr(backend, "target", None)
    if target is None or not hasattr(target, "operation_names"):
        raise TypeError(f"from_backend needs a Qiskit BackendV2 with a Target, got {type(backend).__name__}")
    table = _gate_table(gate_map)
    wire_of = _wire_of(layout, target.num_qubits)
    model, unmapped = NoiseModel(), set()
    # sorted: a Target's name and qubit orders can differ between processes, and the model (its
    # JSON, its hash, the order of rules on one gate) must be the same for the same device
    for name in sorted(target.operation_names):
        operation = target.operation_from_name(name)
        props_by_qubits = target[name]
        if isinstance(operation, Measure) or props_by_qubits is None:
            continue
        for qubits, props in sorted(props_by_qubits.items(), key=_by_qubits):
            if props is None or qubits is None:
                continue
            wires = _wires(qubits, wire_of)
            if wires is None:
                continue
            relax = _relaxation(target, qubits, props.duration)
            depol = _gate_depolarizing(len(qubits), props.error, relax) if isinstance(operation, Gate) else None
            channel = depol.compose(relax) if depol and relax else depol or relax
            gates = _hdqnn_gates(table, name, unmapped) if channel is not None else ()
            if gates:
                _add(model, name, gates, channel, wires)
    measure = target["measure"] if "measure" in target.operation_names else {}
    for qubits, props in sorted((measure or {}).items(), key=_by_qubits):
        wires = _wires(qubits, wire_of)
        if props is None or wires is None:
            continue
        p10 = getattr(props, "prob_meas1_prep0", props.error)
        p01 = getattr(props, "prob_meas0_prep1", props.error)
        if p10 is not None and p01 is not None:
            model.add_readout(ReadoutError(p10, p01), wires)
    _warn_unmapped(unmapped, "NoiseModel.from_backend")
    return model

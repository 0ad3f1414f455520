"""The program as the GPU engines read it: validation, gate fusion and one packed int32 table.

Both GPU backends (``cuda``: the compiled ``_core_cuda``; ``cupy``: the same kernel source
compiled by NVRTC) run the kernels of ``csrc/cuda/kernels/executor.cuh``. Those kernels read the
whole call description from one int32 array, the *meta table*, built here once per call, so the
two backends cannot drift apart: same validation, same fusion, same layout.

The fusion mirrors the CPU engine (``csrc/cpu/plan.cpp``): consecutive single-qubit gates on a
wire become one 2x2 block, flushed when a two-qubit gate touches the wire or at the end; a block
immediately followed by a cx on its wire as target shares that cx's pass; blocks that precede
every two-qubit gate on their wire act on |0> and are prepared directly as a product state.

Meta table layout (offsets in int32 words; every constant below is mirrored in
``csrc/cuda/kernels/meta.cuh`` and the tests compare them through ``_core_cuda``):
  header   [HEADER_SIZE]             see the H_* indices
  ops      [n_ops, OP_FIELDS]        kind, shape, wire0, wire1, begin, end, needs_grad, 0
  order    [n_order]                 gate indices of the fused blocks (ops' begin/end index here)
  gates    [n_gates, 4]              code, wire0, wire1 | -1, first angle slot | -1
  src      [n_slots, 2]              angle source (0 const, 1 input, 2 weight), index
  terms    [n_terms, 3]              Pauli flip mask, sign mask, number of Y factors mod 4
  initial  [n_qubits]                op preparing the wire from |0>, or -1 (wire starts in |0>)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..circuits import GATES_BY_CODE, Program
from ..circuits.circuit import MAX_QUBITS, SRC_CONST, SRC_INPUT, SRC_WEIGHT

META_VERSION = 0x48440001  # "HD" + layout 1: bump when the layout changes
HEADER_SIZE = 16
OP_FIELDS = 8

# header indices
H_VERSION, H_N_QUBITS, H_N_OPS, H_N_INITIAL, H_N_GATES, H_N_SLOTS, H_N_TERMS = range(7)
H_N_INPUTS, H_N_WEIGHTS, H_PER_SAMPLE_WEIGHTS = range(7, 10)
H_OPS, H_ORDER, H_GATES, H_SRC, H_TERMS, H_INITIAL = range(10, 16)

# op kinds (the values of hdqnn::cpu::OpKind)
OP_FUSED_1Q, OP_FUSED_1Q_CX, OP_CONTROLLED, OP_CX, OP_CZ, OP_SWAP, OP_RZZ, OP_PAIR_ROTATION = range(8)
# matrix shapes (hdqnn::GateShape)
SHAPE_GENERAL, SHAPE_REAL, SHAPE_DIAGONAL = range(3)
# tasks (the kernels' task argument)
TASK_STATEVECTOR, TASK_PROBABILITIES, TASK_EXPVAL, TASK_VJP, TASK_SAMPLE = range(5)
TASKS = {"statevector": TASK_STATEVECTOR, "probabilities": TASK_PROBABILITIES, "expval": TASK_EXPVAL,
         "vjp": TASK_VJP, "sample": TASK_SAMPLE}

#: Shape of each gate's matrix (of its control=1 block for controlled gates), as gate_info in
#: csrc/include/hdqnn/gates.hpp: it picks the cheapest update and which cross terms the adjoint needs.
GATE_SHAPES = {
    "x": SHAPE_REAL, "h": SHAPE_REAL, "cx": SHAPE_REAL, "swap": SHAPE_REAL,
    "ry": SHAPE_REAL, "cry": SHAPE_REAL,
    "z": SHAPE_DIAGONAL, "s": SHAPE_DIAGONAL, "sdg": SHAPE_DIAGONAL, "t": SHAPE_DIAGONAL,
    "tdg": SHAPE_DIAGONAL, "cz": SHAPE_DIAGONAL, "rz": SHAPE_DIAGONAL, "p": SHAPE_DIAGONAL,
    "crz": SHAPE_DIAGONAL, "cp": SHAPE_DIAGONAL, "rzz": SHAPE_DIAGONAL,
}
_TWO_QUBIT_KIND = {"cx": OP_CX, "cz": OP_CZ, "swap": OP_SWAP, "rzz": OP_RZZ, "rxx": OP_PAIR_ROTATION,
                   "ryy": OP_PAIR_ROTATION}
_PAULI_X, _PAULI_Y, _PAULI_Z = 1, 2, 3


def gate_shape(code: int) -> int:
    return GATE_SHAPES.get(GATES_BY_CODE[code].name, SHAPE_GENERAL)


@dataclass(frozen=True)
class DeviceProgram:
    """One call's meta table and angle constants, ready to copy to the device."""

    meta: np.ndarray       # int32 [HEADER_SIZE + ...], layout above
    angle_val: np.ndarray  # float64 [max(n_slots, 1)]: constant, or scale of the input / weight
    n_qubits: int
    n_ops: int
    n_slots: int
    n_terms: int

    @property
    def n_inputs(self) -> int:
        return int(self.meta[H_N_INPUTS])

    @property
    def n_weights(self) -> int:
        return int(self.meta[H_N_WEIGHTS])


# ------------------------------------------------------------------------------------ validation
def validate_program(program: Program, n_inputs: int, n_weights: int) -> None:
    """The checks of csrc/cpu/plan.cpp: the kernels index memory with these numbers unchecked."""
    n = program.n_qubits
    if not 1 <= n <= MAX_QUBITS:
        raise ValueError(f"n_qubits must be in [1, {MAX_QUBITS}], got {n}")
    gates, src = np.asarray(program.gates), np.asarray(program.angle_src)
    n_slots = src.shape[0]
    for g, (code, w0, w1, slot) in enumerate(gates.tolist()):
        spec = GATES_BY_CODE.get(code)
        if spec is None:
            raise ValueError(f"gate {g}: unknown gate code {code}")
        where = f"gate {g} (code {code})"
        if not 0 <= w0 < n:
            raise ValueError(f"{where}: wire {w0} out of range for {n} qubit(s)")
        if spec.n_wires == 2 and not (0 <= w1 < n and w1 != w0):
            raise ValueError(f"{where}: second wire {w1} must be in range and differ from {w0}")
        if spec.n_wires == 1 and w1 != -1:
            raise ValueError(f"{where}: single-qubit gate must have wire1 == -1")
        if spec.n_angles == 0 and slot != -1:
            raise ValueError(f"{where}: gate without angles must have slot -1")
        if spec.n_angles and not (0 <= slot and slot + spec.n_angles <= n_slots):
            raise ValueError(f"{where}: angle slot {slot} out of range for {n_slots} slot(s)")
    for a, (kind, idx) in enumerate(src.tolist()):
        if kind == SRC_INPUT and not 0 <= idx < n_inputs:
            raise ValueError(f"angle slot {a} reads input column {idx} but inputs have {n_inputs} column(s)")
        if kind == SRC_WEIGHT and not 0 <= idx < n_weights:
            raise ValueError(f"angle slot {a} reads weight {idx} but there are {n_weights} weight(s)")
        if kind not in (SRC_CONST, SRC_INPUT, SRC_WEIGHT):
            raise ValueError(f"angle slot {a}: unknown angle source {kind}")


# ---------------------------------------------------------------------------------------- fusion
@dataclass
class Plan:
    ops: list[list[int]]  # [kind, shape, wire0, wire1, begin, end, needs_grad, 0]
    order: list[int]
    n_initial: int


def make_plan(program: Program) -> Plan:
    """The fused schedule of csrc/cpu/plan.cpp (initial product-state blocks first)."""
    gates, src = np.asarray(program.gates).tolist(), np.asarray(program.angle_src)
    n = program.n_qubits
    pending: list[list[int]] = [[] for _ in range(n)]
    entangled = [False] * n
    order: list[int] = []
    initial: list[list[int]] = []
    rest: list[list[int]] = []

    def needs_grad(g: int) -> int:
        code, _, _, slot = gates[g]
        k = GATES_BY_CODE[code].n_angles
        return int(k > 0 and bool(np.any(src[slot:slot + k, 0] != SRC_CONST)))

    def flush(wire: int) -> None:
        if not pending[wire]:
            return
        shapes = {gate_shape(gates[g][0]) for g in pending[wire]}
        shape = shapes.pop() if len(shapes) == 1 else SHAPE_GENERAL
        begin = len(order)
        order.extend(pending[wire])
        grad = int(any(needs_grad(g) for g in pending[wire]))
        (rest if entangled[wire] else initial).append([OP_FUSED_1Q, shape, wire, -1, begin, len(order), grad, 0])
        pending[wire] = []

    for g, (code, w0, w1, _) in enumerate(gates):
        spec = GATES_BY_CODE[code]
        if spec.n_wires == 1:
            pending[w0].append(g)
            continue
        flush(w0)
        flush(w1)
        entangled[w0] = entangled[w1] = True
        if spec.name == "cx" and rest and rest[-1][0] == OP_FUSED_1Q and rest[-1][2] == w1:
            rest[-1][0] = OP_FUSED_1Q_CX
            rest[-1][3] = w0
            continue
        kind = _TWO_QUBIT_KIND.get(spec.name, OP_CONTROLLED)
        rest.append([kind, gate_shape(code), w0, w1, g, g + 1, needs_grad(g), 0])
    for wire in range(n):
        flush(wire)
    return Plan(initial + rest, order, len(initial))


def pauli_terms(paulis: np.ndarray, n_qubits: int) -> np.ndarray:
    """int32 [K, 3] (flip, sign, ny) of the int8 table [K, n]; wire w is index bit n - 1 - w."""
    table = np.asarray(paulis)
    if table.ndim != 2 or table.shape[1] != n_qubits:
        raise ValueError(f"paulis must be [K, n_qubits={n_qubits}], got shape {table.shape}")
    if table.size and (table.min() < 0 or table.max() > _PAULI_Z):
        k, w = np.argwhere((table < 0) | (table > _PAULI_Z))[0]
        raise ValueError(f"paulis[{k}, {w}] = {table[k, w]}: codes are 0=I, 1=X, 2=Y, 3=Z")
    bits = (1 << np.arange(n_qubits - 1, -1, -1, dtype=np.int64))
    flip = ((table == _PAULI_X) | (table == _PAULI_Y)) @ bits
    sign = ((table == _PAULI_Z) | (table == _PAULI_Y)) @ bits
    ny = np.count_nonzero(table == _PAULI_Y, axis=1) & 3
    # masks have at most 30 bits, so they fit an int32 word
    return np.stack([flip, sign, ny], axis=1).astype(np.int32).reshape(-1, 3)


# ------------------------------------------------------------------------------------- packing
def build(program: Program, n_inputs: int, n_weights: int, per_sample_weights: bool,
          paulis: np.ndarray | None = None) -> DeviceProgram:
    """Validate ``program`` against the call's widths and pack its meta table.

    paulis: int8 [K, n] for expval / vjp, None otherwise.
    """
    validate_program(program, n_inputs, n_weights)
    n = program.n_qubits
    plan = make_plan(program)
    terms = np.zeros((0, 3), np.int32) if paulis is None else pauli_terms(paulis, n)
    initial = np.full(n, -1, np.int32)
    for i in range(plan.n_initial):
        initial[plan.ops[i][2]] = i
    sections = [
        np.asarray(plan.ops, np.int32).reshape(-1, OP_FIELDS),
        np.asarray(plan.order, np.int32),
        np.asarray(program.gates, np.int32).reshape(-1, 4),
        np.asarray(program.angle_src, np.int32).reshape(-1, 2),
        terms,
        initial,
    ]
    header = np.zeros(HEADER_SIZE, np.int32)
    header[[H_VERSION, H_N_QUBITS, H_N_OPS, H_N_INITIAL, H_N_GATES, H_N_SLOTS, H_N_TERMS]] = [
        META_VERSION, n, len(plan.ops), plan.n_initial, len(program.gates), len(program.angle_src), terms.shape[0]]
    header[[H_N_INPUTS, H_N_WEIGHTS, H_PER_SAMPLE_WEIGHTS]] = [n_inputs, n_weights, int(per_sample_weights)]
    offset = HEADER_SIZE
    for index, section in zip((H_OPS, H_ORDER, H_GATES, H_SRC, H_TERMS, H_INITIAL), sections):
        header[index] = offset
        offset += section.size
    meta = np.concatenate([header] + [s.ravel() for s in sections]).astype(np.int32)
    angle_val = np.ascontiguousarray(program.angle_val, np.float64)
    if angle_val.size == 0:
        angle_val = np.zeros(1, np.float64)  # never read; keeps every device pointer valid
    return DeviceProgram(meta, angle_val, n, len(plan.ops), len(program.angle_src), terms.shape[0])

"""Numba twins of the C++ engine: gate math, the fused program executor and the adjoint sweep.

Each entry point (``*_kernel``) is one ``njit(parallel=True)`` call per batch. It runs one worker
per thread (or one on the calling thread for small batches); a worker claims blocks of samples
from a shared atomic counter (a dynamic schedule: on a loaded machine a descheduled thread cannot
hold the others back, and there is no barrier per gate) and runs the whole program for each of its
samples in its own 2**n buffer, so the state stays in cache and only outputs reach batch-sized
arrays.

Precision follows the state arrays (complex64 or complex128). Angles and their sines and cosines
are float64 in both; expectations and gradients accumulate in float64.

``gate_matrix_1q``/``gate_matrix_2q`` build a gate's matrix, ``apply_1q``/``apply_2q`` apply a
general one, and the specialised ``apply_*`` paths (diagonal, real, controlled, cx, swap) read what
they need from the same matrix buffer, so the dispatcher ``apply_gate`` is the only place that
knows which gate takes which path.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..circuits.circuit import SRC_CONST, SRC_WEIGHT
from ..circuits.gates import GATES

_JIT = dict(cache=True, fastmath=False, nogil=True)
_KERNEL = dict(_JIT, parallel=True)

SQRT_HALF = math.sqrt(0.5)
# Amplitude indices are uint64: Numba wraps negative signed indices, which blocks vectorising.
ZERO, ONE = np.uint64(0), np.uint64(1)

# Gate codes (the contract in hdqnn/circuits/gates.py), frozen into the compiled code.
X, Y, Z, H = (GATES[g].code for g in ("x", "y", "z", "h"))
S, SDG, T, TDG, SX = (GATES[g].code for g in ("s", "sdg", "t", "tdg", "sx"))
RX, RY, RZ, P, U = (GATES[g].code for g in ("rx", "ry", "rz", "p", "u"))
SWAP, RXX, RYY, RZZ = (GATES[g].code for g in ("swap", "rxx", "ryy", "rzz"))

# How a gate (or its derivative) is applied: which specialised path reads its matrix.
PATH_1Q, PATH_REAL_1Q, PATH_DIAG_1Q = 0, 1, 2
PATH_2Q, PATH_DIAG_2Q, PATH_CONTROLLED, PATH_CX, PATH_SWAP = 3, 4, 5, 6, 7

_N_CODES = max(g.code for g in GATES.values()) + 1


def _code_table(default: int, mapping: dict[str, int]) -> np.ndarray:
    table = np.full(_N_CODES, default, dtype=np.int64)
    for name, value in mapping.items():
        table[GATES[name].code] = value
    return table


N_WIRES = _code_table(0, {g.name: g.n_wires for g in GATES.values()})
N_ANGLES = _code_table(0, {g.name: g.n_angles for g in GATES.values()})
#: One-qubit gate ``G`` of each controlled gate ``cG`` (its matrix's lower-right block), else -1.
CONTROLLED_BASE = _code_table(-1, {
    name: GATES[name[1:]].code for name, g in GATES.items()
    if g.n_wires == 2 and name.startswith("c") and name[1:] in GATES
})
APPLY_PATH = _code_table(PATH_1Q, {
    **{g: PATH_DIAG_1Q for g in ("z", "s", "sdg", "t", "tdg", "rz", "p")},
    **{g: PATH_REAL_1Q for g in ("x", "h", "ry")},
    **{g: PATH_DIAG_2Q for g in ("cz", "crz", "cp", "rzz")},
    **{g: PATH_CONTROLLED for g in ("cy", "crx", "cry")},
    "rxx": PATH_2Q, "ryy": PATH_2Q, "cx": PATH_CX, "swap": PATH_SWAP,
})
#: Path of d(gate)/d(angle): controlled derivatives vanish outside the control-1 block.
DERIVATIVE_PATH = _code_table(PATH_1Q, {
    **{g: PATH_DIAG_1Q for g in ("rz", "p")},
    **{g: PATH_DIAG_2Q for g in ("crz", "cp", "rzz")},
    "crx": PATH_CONTROLLED, "cry": PATH_CONTROLLED, "rxx": PATH_2Q, "ryy": PATH_2Q,
})


# ----------------------------------------------------------------------------- scheduling
@intrinsic
def _atomic_fetch_add(typingctx, counter, delta):
    """Atomically ``counter[0] += delta`` on an int64 array; returns the old value."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64
            and isinstance(delta, types.Integer)):
        return None
    sig = types.int64(counter, delta)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], array,
                                       [context.get_constant(types.intp, 0)])
        value = context.cast(builder, args[1], signature.args[1], types.int64)
        # Relaxed order suffices: blocks only pick disjoint samples; the join publishes outputs.
        return builder.atomic_rmw("add", ptr, value, "monotonic")

    return sig, codegen


@njit(**_JIT)
def claim_block(counter, block):
    """First sample of the next unclaimed block of ``block`` samples."""
    return _atomic_fetch_add(counter, block)


# ----------------------------------------------------------------------------- index helpers
@njit(**_JIT)
def insert_zero(i, bit):
    """``i`` with a 0 inserted at bit position ``bit`` (higher bits move up one); uint64."""
    return ((i >> bit) << (bit + ONE)) | (i & ((ONE << bit) - ONE))


@njit(**_JIT)
def pair_layout(n, wire):
    """(2**n, stride of ``wire``) as uint64; wire 0 is the most significant bit."""
    return ONE << np.uint64(n), ONE << np.uint64(n - 1 - wire)


@njit(**_JIT)
def quad_layout(n, wire0, wire1):
    """(number of quads, stride of wire0, stride of wire1, lower bit, higher bit) as uint64."""
    b0, b1 = np.uint64(n - 1 - wire0), np.uint64(n - 1 - wire1)
    return ONE << np.uint64(n - 2), ONE << b0, ONE << b1, min(b0, b1), max(b0, b1)


@njit(**_JIT)
def quad_base(k, bit_lo, bit_hi):
    """Index of the k-th amplitude quad with both gate bits 0 (bit_lo < bit_hi)."""
    return insert_zero(insert_zero(k, bit_lo), bit_hi)


@njit(**_JIT)
def parity(x):
    """Parity of the set bits of a non-negative int64, 0 or 1."""
    x ^= x >> 32
    x ^= x >> 16
    x ^= x >> 8
    x ^= x >> 4
    x ^= x >> 2
    x ^= x >> 1
    return x & 1


# ----------------------------------------------------------------------------- gate matrices
@njit(**_JIT)
def matrix_1q_entries(code, a0, a1, a2):
    """(m00, m01, m10, m11) complex128 of one-qubit gate ``code`` at angles (a0, a1, a2)."""
    if code == X:
        return 0j, 1 + 0j, 1 + 0j, 0j
    if code == Y:
        return 0j, -1j, 1j, 0j
    if code == Z:
        return 1 + 0j, 0j, 0j, -1 + 0j
    if code == H:
        return SQRT_HALF + 0j, SQRT_HALF + 0j, SQRT_HALF + 0j, -SQRT_HALF + 0j
    if code == S:
        return 1 + 0j, 0j, 0j, 1j
    if code == SDG:
        return 1 + 0j, 0j, 0j, -1j
    if code == T:
        return 1 + 0j, 0j, 0j, complex(SQRT_HALF, SQRT_HALF)
    if code == TDG:
        return 1 + 0j, 0j, 0j, complex(SQRT_HALF, -SQRT_HALF)
    if code == SX:
        return 0.5 + 0.5j, 0.5 - 0.5j, 0.5 - 0.5j, 0.5 + 0.5j
    c, s = math.cos(0.5 * a0), math.sin(0.5 * a0)
    if code == RX:
        return complex(c, 0.0), complex(0.0, -s), complex(0.0, -s), complex(c, 0.0)
    if code == RY:
        return complex(c, 0.0), complex(-s, 0.0), complex(s, 0.0), complex(c, 0.0)
    if code == RZ:
        return complex(c, -s), 0j, 0j, complex(c, s)
    if code == P:
        return 1 + 0j, 0j, 0j, complex(math.cos(a0), math.sin(a0))
    # U(theta=a0, phi=a1, lambda=a2)
    e_phi = complex(math.cos(a1), math.sin(a1))
    e_lam = complex(math.cos(a2), math.sin(a2))
    return complex(c, 0.0), -e_lam * s, e_phi * s, e_phi * e_lam * c


@njit(**_JIT)
def derivative_1q_entries(code, a0, a1, a2, which):
    """d(matrix_1q_entries)/d(angle ``which``), complex128.

    Rotations exp(-i t/2 G) with G**2 = I satisfy dU/dt = U(t + pi) / 2; phase angles (p and
    u's phi, lambda) are differentiated term by term.
    """
    if code == P:
        return 0j, 0j, 0j, complex(-math.sin(a0), math.cos(a0))
    if code == U and which > 0:
        c, s = math.cos(0.5 * a0), math.sin(0.5 * a0)
        e_phi = complex(math.cos(a1), math.sin(a1))
        e_lam = complex(math.cos(a2), math.sin(a2))
        if which == 1:
            return 0j, 0j, 1j * e_phi * s, 1j * e_phi * e_lam * c
        return 0j, -1j * e_lam * s, 0j, 1j * e_phi * e_lam * c
    m00, m01, m10, m11 = matrix_1q_entries(code, a0 + math.pi, a1, a2)
    return 0.5 * m00, 0.5 * m01, 0.5 * m10, 0.5 * m11


@njit(**_JIT)
def store_1q(mat, row, m00, m01, m10, m11):
    """mat[row:row+2, row:row+2] <- [[m00, m01], [m10, m11]] (cast to the state precision)."""
    mat[row, row] = m00
    mat[row, row + 1] = m01
    mat[row + 1, row] = m10
    mat[row + 1, row + 1] = m11


@njit(**_JIT)
def gate_matrix_1q(code, a0, a1, a2, mat):
    """mat[:2, :2] <- unitary of one-qubit gate ``code``."""
    m00, m01, m10, m11 = matrix_1q_entries(code, a0, a1, a2)
    store_1q(mat, 0, m00, m01, m10, m11)


@njit(**_JIT)
def pauli_pair_rotation(code, a0, mat):
    """mat <- exp(-i a0/2 G(x)G) for rxx, ryy, rzz (G(x)G has entries +-1 on one (anti)diagonal)."""
    c, s = math.cos(0.5 * a0), math.sin(0.5 * a0)
    mat[:, :] = 0
    if code == RZZ:
        mat[0, 0] = complex(c, -s)
        mat[1, 1] = complex(c, s)
        mat[2, 2] = complex(c, s)
        mat[3, 3] = complex(c, -s)
        return
    for i in range(4):
        mat[i, i] = c
    # X(x)X is the anti-diagonal of ones; Y(x)Y is -1 at the corners, +1 in the middle.
    corner = complex(0.0, -s) if code == RXX else complex(0.0, s)
    middle = complex(0.0, -s)
    mat[0, 3] = corner
    mat[3, 0] = corner
    mat[1, 2] = middle
    mat[2, 1] = middle


@njit(**_JIT)
def gate_matrix_2q(code, a0, mat):
    """mat <- 4x4 unitary of two-qubit gate ``code`` (index 2*bit(wire0) + bit(wire1))."""
    if code == RXX or code == RYY or code == RZZ:
        pauli_pair_rotation(code, a0, mat)
        return
    mat[:, :] = 0
    if code == SWAP:
        mat[0, 0] = 1
        mat[1, 2] = 1
        mat[2, 1] = 1
        mat[3, 3] = 1
        return
    mat[0, 0] = 1
    mat[1, 1] = 1
    m00, m01, m10, m11 = matrix_1q_entries(CONTROLLED_BASE[code], a0, 0.0, 0.0)
    store_1q(mat, 2, m00, m01, m10, m11)


@njit(**_JIT)
def gate_derivative_2q(code, a0, mat):
    """mat <- d(gate_matrix_2q)/d(a0) for the parametric two-qubit gates."""
    if code == RXX or code == RYY or code == RZZ:
        pauli_pair_rotation(code, a0 + math.pi, mat)
        for i in range(4):
            for j in range(4):
                mat[i, j] *= 0.5
        return
    mat[:, :] = 0
    m00, m01, m10, m11 = derivative_1q_entries(CONTROLLED_BASE[code], a0, 0.0, 0.0, 0)
    store_1q(mat, 2, m00, m01, m10, m11)


@njit(**_JIT)
def gate_matrix(code, a0, a1, a2, mat):
    """mat <- the gate's unitary ([:2, :2] for one-qubit gates)."""
    if N_WIRES[code] == 1:
        gate_matrix_1q(code, a0, a1, a2, mat)
    else:
        gate_matrix_2q(code, a0, mat)


@njit(**_JIT)
def gate_derivative(code, a0, a1, a2, which, mat):
    """mat <- d(gate)/d(angle ``which``)."""
    if N_WIRES[code] == 1:
        m00, m01, m10, m11 = derivative_1q_entries(code, a0, a1, a2, which)
        store_1q(mat, 0, m00, m01, m10, m11)
    else:
        gate_derivative_2q(code, a0, mat)


@njit(**_JIT)
def dagger(mat, dim):
    """mat[:dim, :dim] <- its conjugate transpose, in place."""
    for i in range(dim):
        mat[i, i] = mat[i, i].conjugate()
        for j in range(i + 1, dim):
            upper = mat[i, j]
            mat[i, j] = mat[j, i].conjugate()
            mat[j, i] = upper.conjugate()


# ----------------------------------------------------------------------------- gate application
@njit(**_JIT)
def apply_1q(psi, n, wire, mat):
    """psi <- mat[:2, :2] on ``wire``; psi: [2**n] complex, updated in place."""
    dim, stride = pair_layout(n, wire)
    m00, m01, m10, m11 = mat[0, 0], mat[0, 1], mat[1, 0], mat[1, 1]
    for block in range(ZERO, dim, stride << ONE):
        for i in range(block, block + stride):
            a, b = psi[i], psi[i + stride]
            psi[i] = m00 * a + m01 * b
            psi[i + stride] = m10 * a + m11 * b


@njit(**_JIT)
def apply_real_1q(psi, n, wire, mat):
    """apply_1q for a real matrix (ry, h, x): real-times-complex, half the multiplications."""
    dim, stride = pair_layout(n, wire)
    r00, r01, r10, r11 = mat[0, 0].real, mat[0, 1].real, mat[1, 0].real, mat[1, 1].real
    for block in range(ZERO, dim, stride << ONE):
        for i in range(block, block + stride):
            a, b = psi[i], psi[i + stride]
            psi[i] = complex(r00 * a.real + r01 * b.real, r00 * a.imag + r01 * b.imag)
            psi[i + stride] = complex(r10 * a.real + r11 * b.real, r10 * a.imag + r11 * b.imag)


@njit(**_JIT)
def apply_diag_1q(psi, n, wire, mat):
    """apply_1q for a diagonal matrix; the |0> half is skipped when its phase is 1 (p, s, t)."""
    dim, stride = pair_layout(n, wire)
    d0, d1 = mat[0, 0], mat[1, 1]
    skip_zero_half = d0 == 1
    for block in range(ZERO, dim, stride << ONE):
        if not skip_zero_half:
            for i in range(block, block + stride):
                psi[i] *= d0
        for i in range(block + stride, block + (stride << ONE)):
            psi[i] *= d1


@njit(**_JIT)
def apply_2q(psi, n, wire0, wire1, mat):
    """psi <- mat (4x4, index 2*bit(wire0) + bit(wire1)) on (wire0, wire1), in place."""
    n_quads, s0, s1, lo, hi = quad_layout(n, wire0, wire1)
    for k in range(n_quads):
        i0 = quad_base(k, lo, hi)
        i1, i2, i3 = i0 | s1, i0 | s0, i0 | s0 | s1
        v0, v1, v2, v3 = psi[i0], psi[i1], psi[i2], psi[i3]
        psi[i0] = mat[0, 0] * v0 + mat[0, 1] * v1 + mat[0, 2] * v2 + mat[0, 3] * v3
        psi[i1] = mat[1, 0] * v0 + mat[1, 1] * v1 + mat[1, 2] * v2 + mat[1, 3] * v3
        psi[i2] = mat[2, 0] * v0 + mat[2, 1] * v1 + mat[2, 2] * v2 + mat[2, 3] * v3
        psi[i3] = mat[3, 0] * v0 + mat[3, 1] * v1 + mat[3, 2] * v2 + mat[3, 3] * v3


@njit(**_JIT)
def apply_diag_2q(psi, n, wire0, wire1, mat):
    """apply_2q for a diagonal matrix (cz, crz, cp, rzz)."""
    n_quads, s0, s1, lo, hi = quad_layout(n, wire0, wire1)
    d0, d1, d2, d3 = mat[0, 0], mat[1, 1], mat[2, 2], mat[3, 3]
    controlled = d0 == 1 and d1 == 1
    for k in range(n_quads):
        i0 = quad_base(k, lo, hi)
        if not controlled:
            psi[i0] *= d0
            psi[i0 | s1] *= d1
        psi[i0 | s0] *= d2
        psi[i0 | s0 | s1] *= d3


@njit(**_JIT)
def apply_controlled_1q(psi, n, control, target, mat):
    """mat[2:, 2:] on ``target`` where ``control`` is 1 (the upper block is the identity)."""
    n_quads, sc, st, lo, hi = quad_layout(n, control, target)
    m00, m01, m10, m11 = mat[2, 2], mat[2, 3], mat[3, 2], mat[3, 3]
    for k in range(n_quads):
        i = quad_base(k, lo, hi) | sc
        a, b = psi[i], psi[i | st]
        psi[i] = m00 * a + m01 * b
        psi[i | st] = m10 * a + m11 * b


@njit(**_JIT)
def apply_cx(psi, n, control, target):
    """CNOT: swap the target pair where ``control`` is 1."""
    n_quads, sc, st, lo, hi = quad_layout(n, control, target)
    for k in range(n_quads):
        i = quad_base(k, lo, hi) | sc
        psi[i], psi[i | st] = psi[i | st], psi[i]


@njit(**_JIT)
def apply_swap(psi, n, wire0, wire1):
    """SWAP: exchange the |01> and |10> amplitudes of every quad."""
    n_quads, s0, s1, lo, hi = quad_layout(n, wire0, wire1)
    for k in range(n_quads):
        i = quad_base(k, lo, hi)
        psi[i | s0], psi[i | s1] = psi[i | s1], psi[i | s0]


@njit(**_JIT)
def apply_gate(psi, n, code, wire0, wire1, mat):
    """psi <- (the gate whose matrix is in ``mat``) on its wires, by its specialised path."""
    path = APPLY_PATH[code]
    if path == PATH_REAL_1Q:
        apply_real_1q(psi, n, wire0, mat)
    elif path == PATH_DIAG_1Q:
        apply_diag_1q(psi, n, wire0, mat)
    elif path == PATH_1Q:
        apply_1q(psi, n, wire0, mat)
    elif path == PATH_CX:
        apply_cx(psi, n, wire0, wire1)
    elif path == PATH_DIAG_2Q:
        apply_diag_2q(psi, n, wire0, wire1, mat)
    elif path == PATH_CONTROLLED:
        apply_controlled_1q(psi, n, wire0, wire1, mat)
    elif path == PATH_SWAP:
        apply_swap(psi, n, wire0, wire1)
    else:
        apply_2q(psi, n, wire0, wire1, mat)


# ----------------------------------------------------------------------------- Re <bra| M |ket>
# The gradient needs only the real part, and rows accumulate separately: without fastmath a single
# accumulator chains every addition and the loop runs at the adder's latency.
@njit(**_JIT)
def re_dot(bra, value):
    """Re(conj(bra) * value), float64."""
    return float(bra.real) * float(value.real) + float(bra.imag) * float(value.imag)


@njit(**_JIT)
def inner_1q(bra, ket, n, wire, mat):
    """Re <bra| mat[:2, :2] on ``wire`` |ket>, float64."""
    dim, stride = pair_layout(n, wire)
    m00, m01, m10, m11 = mat[0, 0], mat[0, 1], mat[1, 0], mat[1, 1]
    acc0, acc1 = 0.0, 0.0
    for block in range(ZERO, dim, stride << ONE):
        for i in range(block, block + stride):
            a, b = ket[i], ket[i + stride]
            acc0 += re_dot(bra[i], m00 * a + m01 * b)
            acc1 += re_dot(bra[i + stride], m10 * a + m11 * b)
    return acc0 + acc1


@njit(**_JIT)
def inner_diag_1q(bra, ket, n, wire, mat):
    """inner_1q for a diagonal matrix."""
    dim, stride = pair_layout(n, wire)
    acc0, acc1 = 0j, 0j
    for block in range(ZERO, dim, stride << ONE):
        for i in range(block, block + stride):
            acc0 += bra[i].conjugate() * ket[i]
            acc1 += bra[i + stride].conjugate() * ket[i + stride]
    return (mat[0, 0] * acc0 + mat[1, 1] * acc1).real


@njit(**_JIT)
def inner_2q(bra, ket, n, wire0, wire1, mat):
    """Re <bra| mat (4x4) on (wire0, wire1) |ket>, float64."""
    n_quads, s0, s1, lo, hi = quad_layout(n, wire0, wire1)
    acc0, acc1, acc2, acc3 = 0.0, 0.0, 0.0, 0.0
    for k in range(n_quads):
        i0 = quad_base(k, lo, hi)
        i1, i2, i3 = i0 | s1, i0 | s0, i0 | s0 | s1
        v0, v1, v2, v3 = ket[i0], ket[i1], ket[i2], ket[i3]
        acc0 += re_dot(bra[i0], mat[0, 0] * v0 + mat[0, 1] * v1 + mat[0, 2] * v2 + mat[0, 3] * v3)
        acc1 += re_dot(bra[i1], mat[1, 0] * v0 + mat[1, 1] * v1 + mat[1, 2] * v2 + mat[1, 3] * v3)
        acc2 += re_dot(bra[i2], mat[2, 0] * v0 + mat[2, 1] * v1 + mat[2, 2] * v2 + mat[2, 3] * v3)
        acc3 += re_dot(bra[i3], mat[3, 0] * v0 + mat[3, 1] * v1 + mat[3, 2] * v2 + mat[3, 3] * v3)
    return (acc0 + acc1) + (acc2 + acc3)


@njit(**_JIT)
def inner_diag_2q(bra, ket, n, wire0, wire1, mat):
    """inner_2q for a diagonal matrix."""
    n_quads, s0, s1, lo, hi = quad_layout(n, wire0, wire1)
    acc0, acc1, acc2, acc3 = 0j, 0j, 0j, 0j
    for k in range(n_quads):
        i0 = quad_base(k, lo, hi)
        acc0 += bra[i0].conjugate() * ket[i0]
        acc1 += bra[i0 | s1].conjugate() * ket[i0 | s1]
        acc2 += bra[i0 | s0].conjugate() * ket[i0 | s0]
        acc3 += bra[i0 | s0 | s1].conjugate() * ket[i0 | s0 | s1]
    return (mat[0, 0] * acc0 + mat[1, 1] * acc1 + mat[2, 2] * acc2 + mat[3, 3] * acc3).real


@njit(**_JIT)
def inner_controlled_1q(bra, ket, n, control, target, mat):
    """inner_2q for a matrix that is zero outside its lower-right (control = 1) block."""
    n_quads, sc, st, lo, hi = quad_layout(n, control, target)
    m00, m01, m10, m11 = mat[2, 2], mat[2, 3], mat[3, 2], mat[3, 3]
    acc0, acc1 = 0.0, 0.0
    for k in range(n_quads):
        i = quad_base(k, lo, hi) | sc
        a, b = ket[i], ket[i | st]
        acc0 += re_dot(bra[i], m00 * a + m01 * b)
        acc1 += re_dot(bra[i | st], m10 * a + m11 * b)
    return acc0 + acc1


@njit(**_JIT)
def inner_derivative(bra, ket, n, code, wire0, wire1, mat):
    """Re <bra| D |ket> (float64) for the derivative matrix D of gate ``code`` held in ``mat``."""
    path = DERIVATIVE_PATH[code]
    if path == PATH_DIAG_1Q:
        return inner_diag_1q(bra, ket, n, wire0, mat)
    if path == PATH_1Q:
        return inner_1q(bra, ket, n, wire0, mat)
    if path == PATH_DIAG_2Q:
        return inner_diag_2q(bra, ket, n, wire0, wire1, mat)
    if path == PATH_CONTROLLED:
        return inner_controlled_1q(bra, ket, n, wire0, wire1, mat)
    return inner_2q(bra, ket, n, wire0, wire1, mat)


# ----------------------------------------------------------------------------- Pauli strings
@njit(**_JIT)
def pauli_masks(paulis):
    """Per row of int8 [K, n] (0 I, 1 X, 2 Y, 3 Z): (flip, sign, n_y mod 4), each int64 [K].

    P|i> = i**n_y (-1)**popcount(i & sign) |i ^ flip>, flip = X|Y bits, sign = Z|Y bits.
    """
    n_terms, n = paulis.shape
    flip = np.zeros(n_terms, dtype=np.int64)
    sign = np.zeros(n_terms, dtype=np.int64)
    n_y = np.zeros(n_terms, dtype=np.int64)
    for k in range(n_terms):
        for w in range(n):
            bit = np.int64(1) << (n - 1 - w)
            code = paulis[k, w]
            if code == 1 or code == 2:
                flip[k] |= bit
            if code == 2 or code == 3:
                sign[k] |= bit
            if code == 2:
                n_y[k] += 1
        n_y[k] %= 4
    return flip, sign, n_y


@njit(**_JIT)
def pauli_expectation(psi, flip, sign, n_y):
    """<psi| P |psi> (real, float64) of one Pauli string given by its masks."""
    acc_re, acc_im = 0.0, 0.0
    for i in range(psi.shape[0]):
        bra, ket = psi[i ^ flip], psi[i]
        re = float(bra.real) * float(ket.real) + float(bra.imag) * float(ket.imag)
        im = float(bra.real) * float(ket.imag) - float(bra.imag) * float(ket.real)
        if parity(i & sign):
            re, im = -re, -im
        acc_re += re
        acc_im += im
    # multiply by i**n_y and keep the real part
    if n_y == 0:
        return acc_re
    if n_y == 1:
        return -acc_im
    if n_y == 2:
        return -acc_re
    return acc_im


@njit(**_JIT)
def add_pauli(out, psi, flip, sign, n_y, coeff):
    """out += coeff * P psi for one Pauli string (coeff real)."""
    phase = (1 + 0j, 1j, -1 + 0j, -1j)[n_y] * coeff
    for i in range(psi.shape[0]):
        term = phase * psi[i]
        if parity(i & sign):
            term = -term
        out[i ^ flip] += term


# ----------------------------------------------------------------------------- program executor
@njit(**_JIT)
def sample_angles(angle_src, angle_val, inputs, weights, b, theta):
    """theta <- every slot's angle for sample ``b`` (float64 [A]).

    weights: [1, P] (shared) or [B, P] (per sample).
    """
    w_row = 0 if weights.shape[0] == 1 else b
    for a in range(angle_src.shape[0]):
        src, idx = angle_src[a, 0], angle_src[a, 1]
        if src == SRC_CONST:
            theta[a] = angle_val[a]
        elif src == SRC_WEIGHT:
            theta[a] = angle_val[a] * weights[w_row, idx]
        else:
            theta[a] = angle_val[a] * inputs[b, idx]


@njit(**_JIT)
def gate_angles(theta, code, first):
    """The gate's angles (a0, a1, a2), zeros for the ones it does not take."""
    count = N_ANGLES[code]
    a0 = theta[first] if count > 0 else 0.0
    a1 = theta[first + 1] if count > 1 else 0.0
    a2 = theta[first + 2] if count > 2 else 0.0
    return a0, a1, a2


@njit(**_JIT)
def run_program(psi, n, gates, theta, mat):
    """psi <- program |0...0>; psi: [2**n] complex, mat: [4, 4] scratch of the same dtype."""
    psi[:] = 0
    psi[0] = 1
    for g in range(gates.shape[0]):
        code, w0, w1 = np.int64(gates[g, 0]), np.int64(gates[g, 1]), np.int64(gates[g, 2])
        a0, a1, a2 = gate_angles(theta, code, gates[g, 3])
        gate_matrix(code, a0, a1, a2, mat)
        apply_gate(psi, n, code, w0, w1, mat)


@njit(**_JIT)
def first_differentiable_gate(gates, angle_src):
    """Index of the first gate with an input or weight angle (the adjoint sweep stops there)."""
    for g in range(gates.shape[0]):
        first = gates[g, 3]
        for j in range(N_ANGLES[gates[g, 0]]):
            if angle_src[first + j, 0] != SRC_CONST:
                return g
    return gates.shape[0]


@njit(**_JIT)
def adjoint_sweep(psi, lam, n, gates, angle_src, angle_val, theta, mat, dmat,
                  grad_inputs, b, grad_weights, w_row):
    """Adjoint VJP of one sample; psi holds the final state, lam = O psi.

    Gates are undone from the last: psi <- U^dag psi, then each input/weight angle of the gate gets
    2 Re <lam| dU/dtheta |psi>, then lam <- U^dag lam. Slot gradients are scaled by the slot's
    factor and added to grad_inputs[b] or grad_weights[w_row] (float64).
    """
    stop = first_differentiable_gate(gates, angle_src)
    for g in range(gates.shape[0] - 1, stop - 1, -1):
        code, w0, w1 = np.int64(gates[g, 0]), np.int64(gates[g, 1]), np.int64(gates[g, 2])
        first = gates[g, 3]
        a0, a1, a2 = gate_angles(theta, code, first)
        gate_matrix(code, a0, a1, a2, mat)
        dagger(mat, 2 * N_WIRES[code])
        apply_gate(psi, n, code, w0, w1, mat)
        for j in range(N_ANGLES[code]):
            slot = first + j
            src = angle_src[slot, 0]
            if src == SRC_CONST:
                continue
            gate_derivative(code, a0, a1, a2, j, dmat)
            grad = 2.0 * inner_derivative(lam, psi, n, code, w0, w1, dmat) * angle_val[slot]
            if src == SRC_WEIGHT:
                grad_weights[w_row, angle_src[slot, 1]] += grad
            else:
                grad_inputs[b, angle_src[slot, 1]] += grad
        if g > stop:
            apply_gate(lam, n, code, w0, w1, mat)


# ----------------------------------------------------------------------------- workers
# A worker claims blocks of ``block`` samples from ``counter`` until the batch is done and runs
# the whole program per sample in its own state buffer(s).
@njit(**_JIT)
def statevector_worker(n, gates, angle_src, angle_val, inputs, weights, out, counter, block):
    """out: [B, 2**n] complex <- final states, each built in place in its own row."""
    batch = out.shape[0]
    theta = np.empty(angle_src.shape[0], dtype=np.float64)
    mat = np.empty((4, 4), dtype=out.dtype)
    start = claim_block(counter, block)
    while start < batch:
        for b in range(start, min(start + block, batch)):
            sample_angles(angle_src, angle_val, inputs, weights, b, theta)
            run_program(out[b], n, gates, theta, mat)
        start = claim_block(counter, block)


@njit(**_JIT)
def probabilities_worker(n, gates, angle_src, angle_val, inputs, weights, psi, out, counter,
                         block):
    """out: [B, 2**n] real <- |amplitude|**2; psi: [2**n] complex scratch state."""
    batch, dim = out.shape
    theta = np.empty(angle_src.shape[0], dtype=np.float64)
    mat = np.empty((4, 4), dtype=psi.dtype)
    start = claim_block(counter, block)
    while start < batch:
        for b in range(start, min(start + block, batch)):
            sample_angles(angle_src, angle_val, inputs, weights, b, theta)
            run_program(psi, n, gates, theta, mat)
            for i in range(dim):
                out[b, i] = psi[i].real * psi[i].real + psi[i].imag * psi[i].imag
        start = claim_block(counter, block)


@njit(**_JIT)
def expval_worker(n, gates, angle_src, angle_val, inputs, weights, flip, sign, n_y, psi, out,
                  counter, block):
    """out: [B, K] real <- <psi_b| P_k |psi_b>; psi: [2**n] complex scratch state."""
    batch = out.shape[0]
    theta = np.empty(angle_src.shape[0], dtype=np.float64)
    mat = np.empty((4, 4), dtype=psi.dtype)
    start = claim_block(counter, block)
    while start < batch:
        for b in range(start, min(start + block, batch)):
            sample_angles(angle_src, angle_val, inputs, weights, b, theta)
            run_program(psi, n, gates, theta, mat)
            for k in range(flip.shape[0]):
                out[b, k] = pauli_expectation(psi, flip[k], sign[k], n_y[k])
        start = claim_block(counter, block)


@njit(**_JIT)
def vjp_worker(n, gates, angle_src, angle_val, inputs, weights, flip, sign, n_y, grad_output,
               psi, lam, grad_inputs, grad_weights, shared_row, counter, block):
    """Adjoint VJP of the claimed samples; psi, lam: [2**n] complex scratch states.

    Weight gradients go to grad_weights[shared_row] (a per-worker partial batch sum) when
    shared_row >= 0, else to the sample's own row.
    """
    batch = grad_inputs.shape[0]
    theta = np.empty(angle_src.shape[0], dtype=np.float64)
    mat = np.empty((4, 4), dtype=psi.dtype)
    dmat = np.empty((4, 4), dtype=psi.dtype)
    start = claim_block(counter, block)
    while start < batch:
        for b in range(start, min(start + block, batch)):
            sample_angles(angle_src, angle_val, inputs, weights, b, theta)
            run_program(psi, n, gates, theta, mat)
            lam[:] = 0
            for k in range(flip.shape[0]):
                add_pauli(lam, psi, flip[k], sign[k], n_y[k], grad_output[b, k])
            w_row = shared_row if shared_row >= 0 else b
            adjoint_sweep(psi, lam, n, gates, angle_src, angle_val, theta, mat, dmat,
                          grad_inputs, b, grad_weights, w_row)
        start = claim_block(counter, block)


# ----------------------------------------------------------------------------- batch entry points
# One worker runs on the calling thread: starting a thread team costs more than small batches
# take, and on a loaded machine its join can wait a whole scheduler time slice. Otherwise the
# caller sets Numba's thread count to ``n_workers`` (the ctypes thread-count calls would make these
# kernels uncacheable).
@njit(**_KERNEL)
def statevector_kernel(n, gates, angle_src, angle_val, inputs, weights, out, block, n_workers):
    """out: [B, 2**n] complex <- final states."""
    counter = np.zeros(1, dtype=np.int64)
    if n_workers == 1:
        statevector_worker(n, gates, angle_src, angle_val, inputs, weights, out, counter, block)
        return
    for _ in prange(n_workers):
        statevector_worker(n, gates, angle_src, angle_val, inputs, weights, out, counter, block)


@njit(**_KERNEL)
def probabilities_kernel(n, gates, angle_src, angle_val, inputs, weights, work, out, block,
                         n_workers):
    """out: [B, 2**n] real <- |amplitude|**2; work: [W, 1, 2**n] complex, one state per worker."""
    counter = np.zeros(1, dtype=np.int64)
    if n_workers == 1:
        probabilities_worker(n, gates, angle_src, angle_val, inputs, weights, work[0, 0], out,
                             counter, block)
        return
    for worker in prange(n_workers):
        probabilities_worker(n, gates, angle_src, angle_val, inputs, weights, work[worker, 0],
                             out, counter, block)


@njit(**_KERNEL)
def expval_kernel(n, gates, angle_src, angle_val, inputs, weights, paulis, work, out, block,
                  n_workers):
    """out: [B, K] real <- <psi_b| P_k |psi_b>; work: [W, 1, 2**n] complex."""
    flip, sign, n_y = pauli_masks(paulis)
    counter = np.zeros(1, dtype=np.int64)
    if n_workers == 1:
        expval_worker(n, gates, angle_src, angle_val, inputs, weights, flip, sign, n_y,
                      work[0, 0], out, counter, block)
        return
    for worker in prange(n_workers):
        expval_worker(n, gates, angle_src, angle_val, inputs, weights, flip, sign, n_y,
                      work[worker, 0], out, counter, block)


@njit(**_KERNEL)
def vjp_kernel(n, gates, angle_src, angle_val, inputs, weights, paulis, grad_output, work,
               grad_inputs, grad_weights, shared_weights, block, n_workers):
    """Adjoint VJP of sum(grad_output * expval).

    work: [W, 2, 2**n] complex (psi and lambda per worker); grad_inputs: [B, D] float64, zeroed;
    grad_weights: float64, zeroed, [W, P] when ``shared_weights`` (one partial batch sum per
    worker, summed by the caller) else [B, P].
    """
    flip, sign, n_y = pauli_masks(paulis)
    counter = np.zeros(1, dtype=np.int64)
    if n_workers == 1:
        vjp_worker(n, gates, angle_src, angle_val, inputs, weights, flip, sign, n_y, grad_output,
                   work[0, 0], work[0, 1], grad_inputs, grad_weights,
                   0 if shared_weights else -1, counter, block)
        return
    for worker in prange(n_workers):
        shared_row = np.int64(worker) if shared_weights else np.int64(-1)
        vjp_worker(n, gates, angle_src, angle_val, inputs, weights, flip, sign, n_y, grad_output,
                   work[worker, 0], work[worker, 1], grad_inputs, grad_weights, shared_row,
                   counter, block)

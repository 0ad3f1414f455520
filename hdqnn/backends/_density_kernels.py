"""Numba kernels of the noisy engines: batched density matrices (forward, exact adjoint VJP) and
Monte-Carlo trajectories.

A density matrix of n qubits is held vectorised, row-major: ``vec[r * 2**n + c] = rho[r, c]``, a
2n-qubit "state" whose bit ``2n-1-q`` is row wire q and bit ``n-1-q`` column wire q. A gate U on
wire q is then U on the row bit and conj(U) on the column bit, and a channel its superoperator on
(row bit, column bit) [4x4], or on (row q0, row q1, column q0, column q1) [16x16] for two qubits.
A gate and the channel that follows it are fused into one superoperator ``C @ (U (x) conj(U))``,
applied in one pass over the state.

Each kernel runs the whole program per sample (``prange`` over samples), in complex128, with the
sample's state in its own buffer, so the state stays in cache and only outputs reach batch-sized
arrays. The VJP is the Heisenberg picture: the observable is propagated backwards through the
adjoint of each fused superoperator, and a rotation angle's gradient is
``2 Re Tr(lambda_{g-1} (U^dagger dU) rho_{g-1})``. The states rho_{g-1} are recomputed from
checkpoints taken every ``stride`` gates on the forward (a channel has no inverse to uncompute).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._numba_kernels import N_ANGLES, N_WIRES, gate_derivative, gate_matrix

_JIT = dict(cache=True, fastmath=False, nogil=True)
_KERNEL = dict(_JIT, parallel=True)


# ----------------------------------------------------------------------------- small matrices
@njit(**_JIT)
def superop(u, nw, chan, noisy, out, tmp):
    """out[:4**nw, :4**nw] <- chan @ (u (x) conj(u)) (just u (x) conj(u) when not ``noisy``), indexed
    (rows of the wires, columns of the wires) as the vectorised density matrix's bits are."""
    d = 1 << nw
    for r0 in range(d):
        for c0 in range(d):
            for r1 in range(d):
                for c1 in range(d):
                    out[d * r0 + c0, d * r1 + c1] = u[r0, r1] * u[c0, c1].conjugate()
    if not noisy:
        return
    dim = d * d
    for i in range(dim):
        for j in range(dim):
            tmp[i, j] = out[i, j]
    for i in range(dim):
        for j in range(dim):
            acc = 0j
            for k in range(dim):
                acc += chan[i, k] * tmp[k, j]
            out[i, j] = acc


@njit(**_JIT)
def adjoint_of(mat, dim, out):
    """out[:dim, :dim] <- mat[:dim, :dim]^dagger."""
    for i in range(dim):
        for j in range(dim):
            out[i, j] = mat[j, i].conjugate()


@njit(**_JIT)
def conj_of(mat, dim, out):
    """out[:dim, :dim] <- conj(mat[:dim, :dim])."""
    for i in range(dim):
        for j in range(dim):
            out[i, j] = mat[i, j].conjugate()


# ----------------------------------------------------------------------------- bit layouts
@njit(**_JIT)
def layout(bits, k, offs, sorted_bits):
    """offs[j] = index offset of matrix index j (bits[0] the most significant); sorted_bits ascending."""
    for j in range(1 << k):
        o = 0
        for i in range(k):
            if (j >> (k - 1 - i)) & 1:
                o |= 1 << bits[i]
        offs[j] = o
    for i in range(k):  # insertion sort: k <= 4
        v = bits[i]
        j = i
        while j > 0 and sorted_bits[j - 1] > v:
            sorted_bits[j] = sorted_bits[j - 1]
            j -= 1
        sorted_bits[j] = v


@njit(**_JIT)
def base_index(i, sorted_bits, k):
    """``i`` with a 0 inserted at each of the k ascending bit positions."""
    for s in range(k):
        b = sorted_bits[s]
        i = ((i >> b) << (b + 1)) | (i & ((1 << b) - 1))
    return i


@njit(**_JIT)
def apply_1bit(vec, mat, bit):
    """vec <- mat[:2, :2] on bit position ``bit``."""
    m00, m01, m10, m11 = mat[0, 0], mat[0, 1], mat[1, 0], mat[1, 1]
    stride = 1 << bit
    for i in range(vec.size >> 1):
        i0 = ((i >> bit) << (bit + 1)) | (i & (stride - 1))
        a0, a1 = vec[i0], vec[i0 + stride]
        vec[i0] = m00 * a0 + m01 * a1
        vec[i0 + stride] = m10 * a0 + m11 * a1


@njit(**_JIT)
def apply_2bits(vec, mat, bit_hi, bit_lo):
    """vec <- mat[:4, :4] on bit positions (bit_hi, bit_lo): bit_hi is the matrix index's top bit."""
    m = mat[:4, :4].copy()
    lo, hi = min(bit_hi, bit_lo), max(bit_hi, bit_lo)
    oh, ol = 1 << bit_hi, 1 << bit_lo
    for i in range(vec.size >> 2):
        i0 = ((i >> lo) << (lo + 1)) | (i & ((1 << lo) - 1))
        i0 = ((i0 >> hi) << (hi + 1)) | (i0 & ((1 << hi) - 1))
        a0, a1, a2, a3 = vec[i0], vec[i0 + ol], vec[i0 + oh], vec[i0 + oh + ol]
        vec[i0] = m[0, 0] * a0 + m[0, 1] * a1 + m[0, 2] * a2 + m[0, 3] * a3
        vec[i0 + ol] = m[1, 0] * a0 + m[1, 1] * a1 + m[1, 2] * a2 + m[1, 3] * a3
        vec[i0 + oh] = m[2, 0] * a0 + m[2, 1] * a1 + m[2, 2] * a2 + m[2, 3] * a3
        vec[i0 + oh + ol] = m[3, 0] * a0 + m[3, 1] * a1 + m[3, 2] * a2 + m[3, 3] * a3


@njit(**_JIT)
def apply_4bits(vec, mat, bits, offs, sorted_bits, tmp):
    """vec <- mat [16, 16] on the 4 bit positions ``bits`` (first most significant).

    Only the nonzero entries are multiplied: a two-qubit channel fused with a permutation gate
    (cx + depolarizing + damping) has 32 of 256, so this is what the noisy cx costs."""
    layout(bits, 4, offs, sorted_bits)
    count = np.zeros(16, dtype=np.int64)
    cols = np.empty((16, 16), dtype=np.int64)
    vals = np.empty((16, 16), dtype=np.complex128)
    for r in range(16):
        for c in range(16):
            if mat[r, c] != 0:
                cols[r, count[r]] = c
                vals[r, count[r]] = mat[r, c]
                count[r] += 1
    for i in range(vec.size >> 4):
        base = base_index(i, sorted_bits, 4)
        for j in range(16):
            tmp[j] = vec[base + offs[j]]
        for r in range(16):
            acc = 0j
            for t in range(count[r]):
                acc += vals[r, t] * tmp[cols[r, t]]
            vec[base + offs[r]] = acc


@njit(**_JIT)
def apply_matrix(vec, mat, bits, k, offs, sorted_bits, tmp):
    """vec <- mat acting on the k bit positions ``bits`` (first most significant) of ``vec``; k is
    1 or 2 (a statevector gate or Kraus operator, a one-qubit superoperator) or 4 (two-qubit)."""
    if k == 1:
        apply_1bit(vec, mat, bits[0])
    elif k == 2:
        apply_2bits(vec, mat, bits[0], bits[1])
    else:
        apply_4bits(vec, mat, bits, offs, sorted_bits, tmp)


@njit(**_JIT)
def inner_matrix(bra, ket, mat, bits, k, offs, sorted_bits):
    """sum conj(bra) * (mat on ``bits``) ket, without writing."""
    layout(bits, k, offs, sorted_bits)
    dim = 1 << k
    total = 0j
    for i in range(ket.size >> k):
        base = base_index(i, sorted_bits, k)
        for r in range(dim):
            acc = 0j
            for c in range(dim):
                acc += mat[r, c] * ket[base + offs[c]]
            total += bra[base + offs[r]].conjugate() * acc
    return total


# ----------------------------------------------------------------------------- Pauli strings
@njit(**_JIT)
def pauli_masks(row, n):
    """(flip mask, sign mask, number of Y) of a Pauli string on an n-bit index (wire 0 the top bit)."""
    flip, sign, n_y = 0, 0, 0
    for q in range(n):
        bit = 1 << (n - 1 - q)
        code = row[q]
        if code == 1 or code == 2:
            flip |= bit
        if code == 2 or code == 3:
            sign |= bit
        if code == 2:
            n_y += 1
    return flip, sign, n_y


@njit(**_JIT)
def popcount_parity(x):
    p = 0
    while x:
        p ^= 1
        x &= x - 1
    return p


@njit(**_JIT)
def y_phase(n_y):
    """i**n_y."""
    m = n_y & 3
    if m == 0:
        return 1 + 0j
    if m == 1:
        return 1j
    if m == 2:
        return -1 + 0j
    return -1j


@njit(**_JIT)
def trace_pauli(vec, n, row):
    """Tr(P rho) for the vectorised rho: sum_j phase(j) rho[j, j ^ flip]."""
    flip, sign, n_y = pauli_masks(row, n)
    dim = 1 << n
    acc = 0.0
    for j in range(dim):
        v = vec[j * dim + (j ^ flip)]
        if popcount_parity(j & sign):
            v = -v
        acc += (y_phase(n_y) * v).real
    return acc


@njit(**_JIT)
def add_pauli(vec, n, row, weight):
    """vec += weight * vec(P): P[j ^ flip, j] = phase(j)."""
    flip, sign, n_y = pauli_masks(row, n)
    dim = 1 << n
    ph = y_phase(n_y) * weight
    for j in range(dim):
        v = -ph if popcount_parity(j & sign) else ph
        vec[(j ^ flip) * dim + j] += v


@njit(**_JIT)
def state_pauli(psi, n, row):
    """<psi|P|psi> (real) for a statevector."""
    flip, sign, n_y = pauli_masks(row, n)
    acc = 0j
    for j in range(psi.size):
        v = psi[j]
        if popcount_parity(j & sign):
            v = -v
        acc += psi[j ^ flip].conjugate() * v
    return (y_phase(n_y) * acc).real


# ----------------------------------------------------------------------------- one gate on rho
@njit(**_JIT)
def gate_angles(gates, g, theta_b):
    """Gate g's angles for one sample, (a0, a1, a2), zeros past its count."""
    first = gates[g, 3]
    na = N_ANGLES[gates[g, 0]] if first >= 0 else 0
    a0 = theta_b[first] if na > 0 else 0.0
    a1 = theta_b[first + 1] if na > 1 else 0.0
    a2 = theta_b[first + 2] if na > 2 else 0.0
    return a0, a1, a2


@njit(**_JIT)
def density_bits(gates, g, n, bits):
    """Bit positions of gate g's wires: rows then columns. Returns the number of wires."""
    nw = N_WIRES[gates[g, 0]]
    for i in range(nw):
        q = gates[g, 1 + i]
        bits[i] = 2 * n - 1 - q
        bits[nw + i] = n - 1 - q
    return nw


@njit(**_JIT)
def gate_unitary(gates, g, theta_b, u):
    """u <- gate g's unitary for one sample; returns its number of wires."""
    code = gates[g, 0]
    a = gate_angles(gates, g, theta_b)
    gate_matrix(code, a[0], a[1], a[2], u)
    return N_WIRES[code]


@njit(**_JIT)
def apply_forward(vec, n, gates, g, theta_b, chan_idx, superops, fixed_idx, fixed, w):
    """vec <- (gate g, then its channel) applied to the vectorised rho; ``w`` is a workspace.
    A gate with constant angles uses its superoperator fused once per call, ``fixed[fixed_idx[g]]``."""
    u, s, bits, offs, sb, tmp, s2 = w
    nw = density_bits(gates, g, n, bits)
    if fixed_idx[g] >= 0:
        apply_matrix(vec, fixed[fixed_idx[g]], bits, 2 * nw, offs, sb, tmp)
        return
    gate_unitary(gates, g, theta_b, u)
    c = chan_idx[g]
    if nw == 2 and c < 0:
        # noiseless two-qubit gate: U on the rows, conj(U) on the columns (2 x 4 products per
        # element instead of 16 through the 16x16 superoperator)
        apply_matrix(vec, u, bits[:2], 2, offs, sb, tmp)
        conj_of(u, 4, s)
        apply_matrix(vec, s, bits[2:4], 2, offs, sb, tmp)
        return
    superop(u, nw, superops[max(c, 0)], c >= 0, s, s2)
    apply_matrix(vec, s, bits, 2 * nw, offs, sb, tmp)


@njit(**_JIT)
def one_qubit_superop(gates, g, theta_b, chan_idx, superops, fixed_idx, fixed, w, out):
    """out[:4, :4] <- the fused superoperator of one-qubit gate g for one sample."""
    u, s, bits, offs, sb, tmp, s2 = w
    if fixed_idx[g] >= 0:
        out[:4, :4] = fixed[fixed_idx[g]][:4, :4]
        return
    gate_unitary(gates, g, theta_b, u)
    c = chan_idx[g]
    superop(u, 1, superops[max(c, 0)], c >= 0, s, s2)
    out[:4, :4] = s[:4, :4]


@njit(**_JIT)
def matmul4(a, b, out):
    """out[:4, :4] <- a[:4, :4] @ b[:4, :4] (out may not alias a or b)."""
    for i in range(4):
        for j in range(4):
            out[i, j] = a[i, 0] * b[0, j] + a[i, 1] * b[1, j] + a[i, 2] * b[2, j] + a[i, 3] * b[3, j]


@njit(**_JIT)
def apply_block(vec, n, gates, lo, hi, theta_b, chan_idx, superops, fixed_idx, fixed, w, acc, step):
    """vec <- block [lo, hi] of the program: one two-qubit gate, or a run of one-qubit gates on one
    wire fused into one 4x4 superoperator (acc) applied once."""
    u, s, bits, offs, sb, tmp, s2 = w
    nw = density_bits(gates, lo, n, bits)
    if nw == 2:
        apply_forward(vec, n, gates, lo, theta_b, chan_idx, superops, fixed_idx, fixed, w)
        return
    one_qubit_superop(gates, lo, theta_b, chan_idx, superops, fixed_idx, fixed, w, acc)
    for g in range(lo + 1, hi + 1):
        one_qubit_superop(gates, g, theta_b, chan_idx, superops, fixed_idx, fixed, w, step)
        matmul4(step, acc, s2)
        acc[:, :] = s2[:4, :4]
    apply_2bits(vec, acc, bits[0], bits[1])


@njit(**_JIT)
def run_program(vec, n, gates, theta_b, chan_idx, superops, fixed_idx, fixed, block_lo, block_hi, w):
    """vec <- the whole program on the vectorised rho, block by block."""
    acc = np.zeros((4, 4), dtype=np.complex128)
    step = np.zeros((4, 4), dtype=np.complex128)
    for k in range(block_lo.size):
        apply_block(vec, n, gates, block_lo[k], block_hi[k], theta_b, chan_idx, superops, fixed_idx, fixed, w,
                    acc, step)


@njit(**_JIT)
def gram_2bits(lam, rho, bit_hi, bit_lo, out):
    """out[i, j] <- sum over the other bits of conj(lam[i]) rho[j], i, j indexing (bit_hi, bit_lo)."""
    lo, hi = min(bit_hi, bit_lo), max(bit_hi, bit_lo)
    oh, ol = 1 << bit_hi, 1 << bit_lo
    out[:, :] = 0
    for i in range(rho.size >> 2):
        i0 = ((i >> lo) << (lo + 1)) | (i & ((1 << lo) - 1))
        i0 = ((i0 >> hi) << (hi + 1)) | (i0 & ((1 << hi) - 1))
        r = (rho[i0], rho[i0 + ol], rho[i0 + oh], rho[i0 + oh + ol])
        l = (lam[i0].conjugate(), lam[i0 + ol].conjugate(), lam[i0 + oh].conjugate(),
             lam[i0 + oh + ol].conjugate())
        for a in range(4):
            for c in range(4):
                out[a, c] += l[a] * r[c]


@njit(**_JIT)
def run_backward(lam, rho, n, gates, lo, hi, theta_b, chan_idx, superops, fixed_idx, fixed, w, run, grad_b):
    """Backward through a fused run [lo, hi] of one-qubit gates on one wire, rho the state before it.

    With P_g = S_hi ... S_g and Q_g = S_(g-1) ... S_lo (4x4 on the wire's row and column bits), an
    angle of gate g gets 2 Re sum_ij (P_g (N (x) I) Q_g)_ij G_ij, N = U^dagger dU and G the Gram
    matrix of (lam, rho) over the other bits: one pass over the state for the whole run. Then
    lam <- (S_hi ... S_lo)^dagger lam."""
    u, s, bits, offs, sb, tmp, s2 = w
    density_bits(gates, lo, n, bits)
    length = hi - lo + 1
    pre, step, gram, prod, ntil, d = run[0], run[1], run[2], run[3], run[4], run[5]
    prefixes = run[6:]
    eye4(prefixes[0])
    needs_grad = False
    for i in range(length):
        g = lo + i
        one_qubit_superop(gates, g, theta_b, chan_idx, superops, fixed_idx, fixed, w, step)
        if i + 1 < length:
            matmul4(step, prefixes[i], prefixes[i + 1])
        if fixed_idx[g] < 0 and gates[g, 3] >= 0:
            needs_grad = True
    if needs_grad:
        gram_2bits(lam, rho, bits[0], bits[1], gram)
    eye4(pre)  # P, built from the end
    for i in range(length - 1, -1, -1):
        g = lo + i
        one_qubit_superop(gates, g, theta_b, chan_idx, superops, fixed_idx, fixed, w, step)
        matmul4(pre, step, prod)
        pre[:, :] = prod
        if fixed_idx[g] >= 0 or gates[g, 3] < 0:
            continue
        code = gates[g, 0]
        a = gate_angles(gates, g, theta_b)
        gate_unitary(gates, g, theta_b, u)
        for j in range(N_ANGLES[code]):
            gate_derivative(code, a[0], a[1], a[2], j, d)
            ntil[:, :] = 0  # (U^dagger dU) on the row bit, identity on the column bit
            for r in range(2):
                for c in range(2):
                    v = u[0, r].conjugate() * d[0, c] + u[1, r].conjugate() * d[1, c]
                    ntil[2 * r, 2 * c] = v
                    ntil[2 * r + 1, 2 * c + 1] = v
            matmul4(pre, ntil, prod)
            matmul4(prod, prefixes[i], step)
            total = 0j
            for x in range(4):
                for y in range(4):
                    total += step[x, y] * gram[x, y]
            grad_b[gates[g, 3] + j] += 2.0 * total.real
    adjoint_of(pre, 4, prod)
    apply_2bits(lam, prod, bits[0], bits[1])


@njit(**_JIT)
def eye4(m):
    m[:, :] = 0
    for i in range(4):
        m[i, i] = 1


@njit(**_JIT)
def apply_backward(lam, n, gates, g, theta_b, chan_idx, superops, fixed_idx, fixed, w, sa):
    """lam <- (fused superoperator of gate g)^dagger lam (the Heisenberg picture)."""
    u, s, bits, offs, sb, tmp, s2 = w
    nw = density_bits(gates, g, n, bits)
    if fixed_idx[g] >= 0:
        adjoint_of(fixed[fixed_idx[g]], 1 << (2 * nw), sa)
        apply_matrix(lam, sa, bits, 2 * nw, offs, sb, tmp)
        return
    gate_unitary(gates, g, theta_b, u)
    c = chan_idx[g]
    if nw == 2 and c < 0:
        adjoint_of(u, 4, sa)  # U^dagger on the rows, U^T = conj(U^dagger) on the columns
        apply_matrix(lam, sa, bits[:2], 2, offs, sb, tmp)
        for i in range(4):
            for j in range(4):
                sa[i, j] = u[j, i]
        apply_matrix(lam, sa, bits[2:4], 2, offs, sb, tmp)
        return
    superop(u, nw, superops[max(c, 0)], c >= 0, s, s2)
    adjoint_of(s, 1 << (2 * nw), sa)
    apply_matrix(lam, sa, bits, 2 * nw, offs, sb, tmp)


@njit(**_JIT)
def make_workspace():
    """Per-sample scratch (u, s, bits, offs, sorted bits, tmp, s2): a unitary [4, 4], a superoperator
    [16, 16], wire bit positions, a block's index offsets and ascending bits, a gather buffer, and
    a second [16, 16] for products."""
    return (np.zeros((4, 4), dtype=np.complex128), np.zeros((16, 16), dtype=np.complex128),
            np.zeros(4, dtype=np.int64), np.zeros(16, dtype=np.int64), np.zeros(4, dtype=np.int64),
            np.zeros(16, dtype=np.complex128), np.zeros((16, 16), dtype=np.complex128))


@njit(**_JIT)
def initial_rho(n):
    """|0...0><0...0| vectorised."""
    vec = np.zeros(1 << (2 * n), dtype=np.complex128)
    vec[0] = 1.0
    return vec


# ----------------------------------------------------------------------------- entry points
@njit(**_KERNEL)
def density_expval_kernel(n, gates, theta, chan_idx, superops, fixed_idx, fixed, block_lo, block_hi, paulis, out):
    """out[b, t] <- Tr(P_t rho_b) for every sample (theta [B, A] per-sample angles)."""
    for b in prange(theta.shape[0]):
        w = make_workspace()
        vec = initial_rho(n)
        run_program(vec, n, gates, theta[b], chan_idx, superops, fixed_idx, fixed, block_lo, block_hi, w)
        for t in range(paulis.shape[0]):
            out[b, t] = trace_pauli(vec, n, paulis[t])


@njit(**_KERNEL)
def density_probs_kernel(n, gates, theta, chan_idx, superops, fixed_idx, fixed, block_lo, block_hi, out):
    """out[b, i] <- rho_b[i, i] (pre-measurement probabilities)."""
    dim = 1 << n
    for b in prange(theta.shape[0]):
        w = make_workspace()
        vec = initial_rho(n)
        run_program(vec, n, gates, theta[b], chan_idx, superops, fixed_idx, fixed, block_lo, block_hi, w)
        for i in range(dim):
            out[b, i] = vec[i * dim + i].real


@njit(**_KERNEL)
def density_state_kernel(n, gates, theta, chan_idx, superops, fixed_idx, fixed, block_lo, block_hi, out):
    """out[b] <- vectorised rho_b [4**n]."""
    for b in prange(theta.shape[0]):
        w = make_workspace()
        vec = initial_rho(n)
        run_program(vec, n, gates, theta[b], chan_idx, superops, fixed_idx, fixed, block_lo, block_hi, w)
        out[b, :] = vec


@njit(**_JIT)
def angle_gradients(lam, rho, n, gates, g, theta_b, w, d, grad_b):
    """grad_b[slot] += 2 Re Tr(lam (U^dagger dU) rho) for each angle of gate g."""
    u, s, bits, offs, sb, tmp, s2 = w
    code = gates[g, 0]
    first = gates[g, 3]
    na = N_ANGLES[code]
    if first < 0 or na == 0:
        return
    a = gate_angles(gates, g, theta_b)
    nw = N_WIRES[code]
    dim = 1 << nw
    gate_matrix(code, a[0], a[1], a[2], u)
    density_bits(gates, g, n, bits)
    for j in range(na):
        gate_derivative(code, a[0], a[1], a[2], j, d)
        # s <- U^dagger dU
        for r in range(dim):
            for c in range(dim):
                acc = 0j
                for k in range(dim):
                    acc += u[k, r].conjugate() * d[k, c]
                s[r, c] = acc
        grad_b[first + j] += 2.0 * inner_matrix(lam, rho, s, bits[:nw], nw, offs, sb).real


@njit(**_KERNEL)
def density_vjp_kernel(n, gates, theta, chan_idx, superops, fixed_idx, fixed, block_lo, block_hi, max_run, paulis,
                       grad_terms, stride, grad_theta):
    """grad_theta[b, a] <- d sum_t grad_terms[b, t] Tr(P_t rho_b) / d theta[b, a].

    Block by block (``apply_block``): the state before every ``stride``-th block is kept on the
    forward, and each segment's states are recomputed from it on the backward sweep."""
    n_blocks = block_lo.size
    size = 1 << (2 * n)
    n_ckpt = (n_blocks + stride - 1) // stride
    for b in prange(theta.shape[0]):
        w = make_workspace()
        d = np.zeros((4, 4), dtype=np.complex128)
        sa = np.zeros((16, 16), dtype=np.complex128)
        acc = np.zeros((4, 4), dtype=np.complex128)
        step = np.zeros((4, 4), dtype=np.complex128)
        run = np.zeros((6 + max_run, 4, 4), dtype=np.complex128)
        ckpt = np.empty((max(n_ckpt, 1), size), dtype=np.complex128)
        seg = np.empty((stride, size), dtype=np.complex128)
        vec = initial_rho(n)
        ckpt[0, :] = vec
        for k in range((n_ckpt - 1) * stride):  # up to the last checkpoint: the sweep recomputes the rest
            apply_block(vec, n, gates, block_lo[k], block_hi[k], theta[b], chan_idx, superops, fixed_idx, fixed,
                        w, acc, step)
            if (k + 1) % stride == 0:
                ckpt[(k + 1) // stride, :] = vec
        lam = np.zeros(size, dtype=np.complex128)
        for t in range(paulis.shape[0]):
            if grad_terms[b, t] != 0.0:
                add_pauli(lam, n, paulis[t], grad_terms[b, t])
        for c in range(n_ckpt - 1, -1, -1):
            lo = c * stride
            hi = min(n_blocks, lo + stride)
            vec[:] = ckpt[c]
            for k in range(lo, hi):
                seg[k - lo, :] = vec
                if k + 1 < hi:
                    apply_block(vec, n, gates, block_lo[k], block_hi[k], theta[b], chan_idx, superops, fixed_idx,
                                fixed, w, acc, step)
            for k in range(hi - 1, lo - 1, -1):
                g = block_lo[k]
                if N_WIRES[gates[g, 0]] == 1:
                    run_backward(lam, seg[k - lo], n, gates, g, block_hi[k], theta[b], chan_idx, superops,
                                 fixed_idx, fixed, w, run, grad_theta[b])
                    continue
                apply_backward(lam, n, gates, g, theta[b], chan_idx, superops, fixed_idx, fixed, w, sa)
                if fixed_idx[g] < 0:
                    angle_gradients(lam, seg[k - lo], n, gates, g, theta[b], w, d, grad_theta[b])


# ----------------------------------------------------------------------------- trajectories
@njit(**_JIT)
def kraus_jump(psi, n, gates, g, kraus_c, count, u_draw, w, phi):
    """psi <- K_k psi / ||K_k psi|| with k drawn with probability ||K_k psi||**2."""
    u, s, bits, offs, sb, tmp, s2 = w
    nw = N_WIRES[gates[g, 0]]
    for i in range(nw):
        bits[i] = n - 1 - gates[g, 1 + i]
    cum = 0.0
    for k in range(count):
        phi[:] = psi
        apply_matrix(phi, kraus_c[k], bits[:nw], nw, offs, sb, tmp)
        p = 0.0
        for i in range(phi.size):
            p += phi[i].real ** 2 + phi[i].imag ** 2
        cum += p
        if u_draw < cum or k == count - 1:
            if p > 0.0:
                scale = 1.0 / np.sqrt(p)
                for i in range(phi.size):
                    psi[i] = phi[i] * scale
                return


@njit(**_KERNEL)
def trajectory_kernel(n, gates, theta, chan_idx, kraus, kraus_count, paulis, uniforms, expvals, probs,
                      outcomes):
    """Per sample b and trajectory t: one unravelled statevector run.

    uniforms [B, T, M + 1]: one draw per noisy gate, the last for the measured outcome.
    expvals [B, T, K] <- <psi|P_k|psi>; probs [B, 2**n] <- mean |psi|**2 over trajectories;
    outcomes [B, T] <- a basis state drawn from |psi|**2.
    """
    dim = 1 << n
    n_traj = uniforms.shape[1]
    last = uniforms.shape[2] - 1
    for b in prange(theta.shape[0]):
        w = make_workspace()
        u, s, bits, offs, sb, tmp, s2 = w
        psi = np.empty(dim, dtype=np.complex128)
        phi = np.empty(dim, dtype=np.complex128)
        for t in range(n_traj):
            psi[:] = 0
            psi[0] = 1.0
            m = 0
            for g in range(gates.shape[0]):
                nw = gate_unitary(gates, g, theta[b], u)
                for i in range(nw):
                    bits[i] = n - 1 - gates[g, 1 + i]
                apply_matrix(psi, u, bits[:nw], nw, offs, sb, tmp)
                c = chan_idx[g]
                if c >= 0:
                    kraus_jump(psi, n, gates, g, kraus[c], kraus_count[c], uniforms[b, t, m], w, phi)
                    m += 1
            for k in range(paulis.shape[0]):
                expvals[b, t, k] = state_pauli(psi, n, paulis[k])
            cum = 0.0
            chosen = dim - 1
            for i in range(dim):
                p = psi[i].real ** 2 + psi[i].imag ** 2
                probs[b, i] += p / n_traj
                cum += p
                if chosen == dim - 1 and uniforms[b, t, last] < cum:
                    chosen = i
            outcomes[b, t] = chosen

// Kernels of the noisy density-matrix engine (layout and contract: density.hpp), and of its
// Monte-Carlo trajectories (TrajectoryJob, at the end: one statevector per sample and trajectory).
// Compiled once per instruction set, like kernels.cpp (CMake passes -DHDQNN_ISA and the matching
// -march flags); density.cpp picks the variant at run time.
//
// A worker simulates L samples ("lanes") together: entry e of the vectorised density matrix holds
// re[0..L) then im[0..L) at v[2 L e], so every update is a loop over lanes with per-lane
// coefficients, which vectorises whatever bits the update touches. Each block of the program (a
// run of one-qubit gates on one wire, or one two-qubit gate) is one pass over the state: its gates
// and channels fused into one superoperator, kept as its nonzero entries (a cx fused with
// depolarizing and amplitude damping has 32 of 256, all real: real matrices take half the
// products). Blocks whose angles are all constants are fused once per call. Every state a pass
// sees is Hermitian (rho, and the VJP's lambda), and every superoperator preserves that, so a
// pass may compute only the entry groups on or above the diagonal and write their mirrors as
// conjugates: half the products (DensityJob::hermitian, while the state is in cache). The VJP is
// the Heisenberg picture with checkpoints, as in the Numba twin (_density_kernels.py).
//
// Every task but the state runs in the Pauli-transfer basis instead (DensityJob::pauli; "Pauli
// basis" below): the state is rho's real coefficients on the Pauli strings, L per entry at v[L e],
// and each fused superoperator its real Pauli-transfer matrix, so a pass multiplies reals (a
// quarter of the complex products, half the memory, no mirrored writes) and an expectation is one
// entry. The blocks, their fusion, the lanes and the VJP's checkpoints are the same in both bases.
// There, a noisy Clifford (a fixed two-qubit block in the covariant form) also takes the one-qubit
// runs before it on its wires into its pass (a chain: forward_blocks, segment_forward), since the
// passes are bound by their arithmetic and instruction count rather than by the cache.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "isa_variant.hpp"  // first: selects this object's instruction-set namespace

#include "density.hpp"
#include "hdqnn/gates.hpp"
#include "hdqnn/pauli.hpp"
#include "trig.hpp"
#include "workspace.hpp"

HDQNN_NAMESPACE_BEGIN
namespace density_kernels {
namespace {

using cpu::DensityJob;
using cpu::DensityTask;
typedef Complex<double> C;

constexpr int kMaxDim = 16;  ///< a two-qubit superoperator
constexpr int kMaxEntries = kMaxDim * kMaxDim;
constexpr size_t kAlignment = 64;

/// A matrix on k = 2 or 4 bit positions, by rows, as its nonzero entries. Values are per lane
/// (re[e * L + l]) or, ``shared``, one for every lane (re[e]).
struct Sparse {
  int k;
  int nnz;
  bool real;
  bool shared;
  int row_start[kMaxDim + 1];
  uint8_t col[kMaxEntries];
  double* re;
  double* im;
};

// ----------------------------------------------------------------------------- small matrices
C zero_c() { return make_complex(0.0, 0.0); }
C one_c() { return make_complex(1.0, 0.0); }

void eye(C* m, int dim) {
  for (int i = 0; i < dim * dim; ++i) m[i] = zero_c();
  for (int i = 0; i < dim; ++i) m[i * dim + i] = one_c();
}

/// out <- a b (dim x dim; out aliases neither).
void matmul(const C* a, const C* b, C* out, int dim) {
  for (int i = 0; i < dim; ++i) {
    for (int j = 0; j < dim; ++j) {
      C acc = zero_c();
      for (int k = 0; k < dim; ++k) acc = mul_add(acc, a[i * dim + k], b[k * dim + j]);
      out[i * dim + j] = acc;
    }
  }
}

void dagger(const C* a, C* out, int dim) {
  for (int i = 0; i < dim; ++i) {
    for (int j = 0; j < dim; ++j) out[i * dim + j] = conj(a[j * dim + i]);
  }
}

/// trig[0, A) <- cos(theta / 2), trig[A, 2 A) <- sin(theta / 2) of one sample's A angles: once per
/// sample, as every gate's matrix is built several times (forward, backward, gradients).
void half_angle_table(const DensityJob& job, const double* theta, double* trig) {
  constexpr int kChunk = 64;  // half angles converted at once (vectorised sincos: libm's took a tenth
                              // of a (4, 2, 256) forward)
  for (int a0 = 0; a0 < job.n_angles; a0 += kChunk) {
    const int count = job.n_angles - a0 < kChunk ? job.n_angles - a0 : kChunk;
    double half[kChunk];
    for (int i = 0; i < count; ++i) half[i] = 0.5 * theta[a0 + i];
    kernels::half_angle_sincos(half, count, trig + job.n_angles + a0, trig + a0);
  }
}

/// Half-angle cosines and sines of gate g's angles from a sample's half_angle_table (angle 0
/// past its count).
void half_angles(const DensityJob& job, int g, const double* trig, double* c, double* s) {
  const int32_t* row = job.gates + 4 * g;
  const int na = row[3] >= 0 ? gate_info(row[0]).n_angles : 0;
  for (int k = 0; k < kMaxGateAngles; ++k) {
    c[k] = k < na ? trig[row[3] + k] : 1.0;
    s[k] = k < na ? trig[job.n_angles + row[3] + k] : 0.0;
  }
}

/// u <- gate g's matrix (2x2 in u[0..3] or 4x4, index 2 bit(wire0) + bit(wire1)); its wires.
int gate_unitary(int code, const double* c, const double* s, C* u) {
  return gate_unitary_matrix<double>(code, c, s, u);
}

/// d <- d(gate matrix)/d(angle ``which``), laid out as gate_unitary.
void gate_derivative(int code, const double* c, const double* s, int which, C* d) {
  if (gate_info(code).n_wires == 1) {
    single_qubit_matrix_derivative<double>(code, c, s, 1, which, d);
    return;
  }
  for (int i = 0; i < 16; ++i) d[i] = zero_c();
  if (code == kGateRxx || code == kGateRyy || code == kGateRzz) {
    pauli_pair_rotation_derivative<double>(code, c[0], s[0], d);
    return;
  }
  C b[4];
  single_qubit_matrix_derivative<double>(controlled_base(code), c, s, 1, which, b);
  d[10] = b[0], d[11] = b[1], d[14] = b[2], d[15] = b[3];
}

/// out (4**nw square) <- chan (u (x) conj(u)), or u (x) conj(u) without a channel (chan null);
/// chan is a [16, 16] interleaved table whose top-left 4**nw block is the channel.
void fused_superop(const C* u, int nw, const double* chan, C* out) {
  const int d = 1 << nw, dim = d * d;
  C tmp[kMaxEntries];
  for (int r0 = 0; r0 < d; ++r0) {
    for (int c0 = 0; c0 < d; ++c0) {
      for (int r1 = 0; r1 < d; ++r1) {
        for (int c1 = 0; c1 < d; ++c1) tmp[(d * r0 + c0) * dim + d * r1 + c1] = u[r0 * d + r1] * conj(u[c0 * d + c1]);
      }
    }
  }
  if (chan == nullptr) {
    for (int i = 0; i < dim * dim; ++i) out[i] = tmp[i];
    return;
  }
  // row by row, skipping the channel's zero entries: the usual channels' superoperators are
  // sparse (depolarizing with amplitude damping: 6 of 16 one-qubit entries, far fewer of 256),
  // and this product runs for every gate of every sample whose angles vary
  for (int i = 0; i < dim; ++i) {
    C* row = out + i * dim;
    for (int j = 0; j < dim; ++j) row[j] = zero_c();
    for (int k = 0; k < dim; ++k) {
      const double* e = chan + 2 * (i * kMaxDim + k);
      if (e[0] == 0.0 && e[1] == 0.0) continue;
      const C ck = make_complex(e[0], e[1]);
      const C* src = tmp + k * dim;
      for (int j = 0; j < dim; ++j) row[j] = mul_add(row[j], ck, src[j]);
    }
  }
}

// ----------------------------------------------------------------------------- Pauli basis
// In the Pauli-transfer basis a state holds, in place of rho's entries, its real coefficients
// c_P = Tr(P rho) on the Pauli strings P, at the same 2n-bit index: wire q's (row bit, column bit)
// pair holds the digit 2 row + column of its factor (0 I, 1 X, 2 Y, 3 Z). So |0..0><0..0| is 1 on
// the diagonal indices, <P> is one entry, and a superoperator S of a group of entries becomes the
// real R = M S M^-1, M taking the group's entries of rho to their Pauli coefficients. Every fused
// gate and channel preserves Hermiticity, so R is real: a pass takes a quarter of a complex pass's
// products and the state half its memory.

/// M (k = 2: one wire, 4x4; k = 4: two wires, 16x16, row bits then column bits) and M^-1.
struct PauliChange {
  C m[kMaxEntries];
  C inv[kMaxEntries];
  int inv_count[kMaxDim];         ///< nonzeros of each column of M^-1 (2 or 4)
  uint8_t inv_rows[kMaxDim][4];   ///< their rows
};

/// The Pauli digit of wire w of group index j on k bits (row bits, then column bits).
constexpr int pauli_digit(int j, int k, int w) {
  const int h = k / 2;
  return 2 * ((j >> (k - 1 - w)) & 1) + ((j >> (h - 1 - w)) & 1);
}

PauliChange make_pauli_change(int k) {
  // one wire, entries (rho00, rho01, rho10, rho11): I = rho00 + rho11, X = rho01 + rho10,
  // Y = i (rho01 - rho10), Z = rho00 - rho11; the inverse's columns are vec(P) / 2
  const C o = one_c(), z = zero_c(), i = make_complex(0.0, 1.0), mi = make_complex(0.0, -1.0);
  const C h = make_complex(0.5, 0.0), mh = make_complex(-0.5, 0.0), hi = make_complex(0.0, 0.5),
          mhi = make_complex(0.0, -0.5);
  const C m1[16] = {o, z, z, o, z, o, o, z, z, i, mi, z, o, z, z, make_complex(-1.0, 0.0)};
  const C inv1[16] = {h, z, z, h, z, h, mhi, z, z, h, hi, z, h, z, z, mh};
  PauliChange p;
  const int dim = 1 << k;
  for (int a = 0; a < dim; ++a) {
    for (int b = 0; b < dim; ++b) {
      C m = one_c(), inv = one_c();
      for (int w = 0; w < k / 2; ++w) {
        const int da = pauli_digit(a, k, w), db = pauli_digit(b, k, w);
        m = m * m1[da * 4 + db];
        inv = inv * inv1[da * 4 + db];
      }
      p.m[a * dim + b] = m;
      p.inv[a * dim + b] = inv;
    }
  }
  for (int b = 0; b < dim; ++b) {
    p.inv_count[b] = 0;
    for (int e = 0; e < dim; ++e) {
      const C v = p.inv[e * dim + b];
      if (v.re != 0.0 || v.im != 0.0) p.inv_rows[b][p.inv_count[b]++] = static_cast<uint8_t>(e);
    }
  }
  return p;
}

const PauliChange& pauli_change(int k) {
  static const PauliChange one = make_pauli_change(2), two = make_pauli_change(4);
  return k == 2 ? one : two;
}

/// r <- M s M^-1 on k = 2 or 4 bits: real for a Hermiticity-preserving s, kept as complex with zero
/// imaginary parts for pack. M and M^-1 have 2 (4) nonzeros per row: the products skip the zeros.
void to_pauli(const C* s, int k, C* r) {
  const PauliChange& p = pauli_change(k);
  const int dim = 1 << k;
  C tmp[kMaxEntries];
  for (int a = 0; a < dim; ++a) {
    for (int e = 0; e < dim; ++e) tmp[a * dim + e] = zero_c();
    for (int d = 0; d < dim; ++d) {
      const C md = p.m[a * dim + d];
      if (md.re == 0.0 && md.im == 0.0) continue;
      for (int e = 0; e < dim; ++e) tmp[a * dim + e] = mul_add(tmp[a * dim + e], md, s[d * dim + e]);
    }
  }
  for (int a = 0; a < dim; ++a) {
    for (int b = 0; b < dim; ++b) {
      double acc = 0.0;
      for (int k = 0; k < p.inv_count[b]; ++k) {
        const int e = p.inv_rows[b][k];
        const C ie = p.inv[e * dim + b];
        acc += tmp[a * dim + e].re * ie.re - tmp[a * dim + e].im * ie.im;
      }
      r[a * dim + b] = make_complex(acc, 0.0);
    }
  }
}

/// r (real, 4x4) <- M s M^-1 of a one-wire superoperator s, written out: M's rows take rho's
/// entries (00, 01, 10, 11) to I = 00 + 11, X = 01 + 10, Y = i (01 - 10), Z = 00 - 11, and M^-1's
/// columns are vec(P) / 2. V is double or a lane vector (every lane's matrix at once).
template <class V>
void pauli_of_run(const Complex<V>* s, V* r) {
  for (int a = 0; a < 4; ++a) {
    V re[4], im[4];  // row a of M s
    for (int j = 0; j < 4; ++j) {
      const Complex<V> s0 = s[j], s1 = s[4 + j], s2 = s[8 + j], s3 = s[12 + j];
      switch (a) {
        case 0: re[j] = s0.re + s3.re, im[j] = s0.im + s3.im; break;
        case 1: re[j] = s1.re + s2.re, im[j] = s1.im + s2.im; break;
        case 2: re[j] = s2.im - s1.im, im[j] = s1.re - s2.re; break;
        default: re[j] = s0.re - s3.re, im[j] = s0.im - s3.im; break;
      }
    }
    r[4 * a + 0] = 0.5 * (re[0] + re[3]);
    r[4 * a + 1] = 0.5 * (re[1] + re[2]);
    r[4 * a + 2] = 0.5 * (im[1] - im[2]);
    r[4 * a + 3] = 0.5 * (re[0] - re[3]);
  }
}

/// out <- the transpose of a (dim x dim; out aliases nothing).
void transpose(const C* a, C* out, int dim) {
  for (int i = 0; i < dim; ++i) {
    for (int j = 0; j < dim; ++j) out[i * dim + j] = a[j * dim + i];
  }
}

/// out <- a^-1 (real, dim x dim, dim <= 16) by Gauss-Jordan with partial pivoting. The callers'
/// matrices are invertible and well conditioned: the driver admits only programs whose channels'
/// inverse norms multiply to at most its rounding budget (invertible_program), and the unitary
/// parts are orthogonal.
void invert_real(const double* a, int dim, double* out) {
  double m[16][32];
  for (int r = 0; r < dim; ++r) {
    for (int c = 0; c < dim; ++c) {
      m[r][c] = a[r * dim + c];
      m[r][dim + c] = r == c ? 1.0 : 0.0;
    }
  }
  for (int c = 0; c < dim; ++c) {
    int pivot = c;
    for (int r = c + 1; r < dim; ++r) pivot = fabs(m[r][c]) > fabs(m[pivot][c]) ? r : pivot;
    for (int k = 0; k < 2 * dim; ++k) {
      const double t = m[c][k];
      m[c][k] = m[pivot][k];
      m[pivot][k] = t;
    }
    const double inv = 1.0 / m[c][c];
    for (int k = 0; k < 2 * dim; ++k) m[c][k] *= inv;
    for (int r = 0; r < dim; ++r) {
      const double f = m[r][c];
      if (r == c || f == 0.0) continue;
      for (int k = 0; k < 2 * dim; ++k) m[r][k] -= f * m[c][k];
    }
  }
  for (int r = 0; r < dim; ++r) {
    for (int c = 0; c < dim; ++c) out[r * dim + c] = m[r][dim + c];
  }
}

/// Index of Pauli string t's coefficient: row bits where it has Y or Z, column bits X or Z.
Index pauli_index(const PauliTerm& t, int n) {
  return (Index(t.sign) << n) | Index(t.flip ^ t.sign);
}

// A two-qubit Clifford gate (cx, cz, swap, ...) is a signed permutation of the Pauli strings, and
// the usual channels (depolarizing, Pauli, amplitude and phase damping, thermal relaxation) are
// phase-covariant: on one wire an output I draws on I, X on X, Y on Y, Z on I and Z. So the fixed
// matrix R = C P of such a gate with its channels has, in row r, only the columns P^-1(b) of the 25
// sources b of r under that rule. A pass loads the group's entries in the order P^-1 (an offset
// table) and applies the rule's fixed pattern: the entries stay in registers and the products are
// unrolled, where the general sparse pass reads them through column indices (half of a (6, 4, 256)
// forward went to cx passes that way).

/// Digits each output digit draws on (I 0, X 1, Y 2, Z 3), and for the adjoint (R^T) the reverse:
/// I draws on I and Z, the others on themselves.
constexpr int kCovariantCount[2][4] = {{1, 1, 1, 2}, {2, 1, 1, 1}};
constexpr int kCovariantSource[2][4][2] = {{{0, 0}, {1, 1}, {2, 2}, {0, 3}}, {{0, 3}, {1, 1}, {2, 2}, {3, 3}}};
constexpr int kCovariantEntries = 25;

constexpr int group_of_digits(int d0, int d1) { return 8 * (d0 >> 1) + 4 * (d1 >> 1) + 2 * (d0 & 1) + (d1 & 1); }

/// Row r's sources (group indices) are src[start[r] .. start[r + 1]).
struct CovariantPattern {
  int start[17];
  int src[kCovariantEntries];
};

constexpr CovariantPattern covariant_pattern(int adjoint) {
  CovariantPattern p{};
  int e = 0;
  for (int r = 0; r < 16; ++r) {
    p.start[r] = e;
    const int d0 = pauli_digit(r, 4, 0), d1 = pauli_digit(r, 4, 1);
    for (int a = 0; a < kCovariantCount[adjoint][d0]; ++a) {
      for (int b = 0; b < kCovariantCount[adjoint][d1]; ++b) {
        p.src[e++] = group_of_digits(kCovariantSource[adjoint][d0][a], kCovariantSource[adjoint][d1][b]);
      }
    }
  }
  p.start[16] = e;
  return p;
}

constexpr CovariantPattern kCovariant[2] = {covariant_pattern(0), covariant_pattern(1)};

/// The fixed two-qubit Cliffords whose covariant form the chained passes compile in (their P^-1 as
/// a constant: the group then stays in registers), in kCliffordPerm's order.
constexpr int kCliffordKinds = 4;  // cx, cy, cz, swap (first wire the control)

/// Group index of the image of Pauli string b (group_of_digits' order) under conjugation by
/// Clifford ``kind``, signs dropped. Each is an involution, so the image is also the preimage P^-1.
constexpr int clifford_image(int kind, int b) {
  const int d0 = pauli_digit(b, 4, 0), d1 = pauli_digit(b, 4, 1);
  // digit -> symplectic bits: I (0, 0), X (1, 0), Y (1, 1), Z (0, 1)
  int x0 = d0 == 1 || d0 == 2, z0 = d0 == 2 || d0 == 3, x1 = d1 == 1 || d1 == 2, z1 = d1 == 2 || d1 == 3;
  if (kind == 0) {  // cx: X_c -> X_c X_t, Z_t -> Z_c Z_t
    z0 ^= z1;
    x1 ^= x0;
  } else if (kind == 1) {  // cy: X_c -> X_c Y_t, X_t -> Z_c X_t, Z_t -> Z_c Z_t
    z0 ^= x1 ^ z1;
    z1 ^= x0;
    x1 ^= x0;
  } else if (kind == 2) {  // cz: X_c -> X_c Z_t, X_t -> Z_c X_t
    const int zc = z0 ^ x1;
    z1 ^= x0;
    z0 = zc;
  } else {  // swap
    const int x = x0, z = z0;
    x0 = x1;
    z0 = z1;
    x1 = x;
    z1 = z;
  }
  const int e0 = x0 ? (z0 ? 2 : 1) : (z0 ? 3 : 0), e1 = x1 ? (z1 ? 2 : 1) : (z1 ? 3 : 0);
  return group_of_digits(e0, e1);
}

struct Perm16 {
  uint8_t p[16];
};

constexpr Perm16 clifford_perm(int kind) {
  Perm16 q{};
  for (int b = 0; b < 16; ++b) q.p[b] = static_cast<uint8_t>(clifford_image(kind, b));
  return q;
}

constexpr Perm16 kCliffordPerm[kCliffordKinds] = {clifford_perm(0), clifford_perm(1), clifford_perm(2),
                                                  clifford_perm(3)};

/// A fixed two-qubit block's real matrix R in the covariant form, when it has it.
struct Covariant {
  bool ok;
  uint8_t perm[16];                 ///< P^-1: the column of R that source b stands for
  int clifford;                     ///< perm is kCliffordPerm[clifford], or -1
  double values[2][kCovariantEntries];  ///< R's entries in kCovariant[0]'s order, R^T's in [1]'s
  double inv[kCovariantEntries];    ///< inverse sweep: R = D P with D in kCovariant[0]'s pattern, so
                                    ///< R^-1 = P^-1 D^-1: D^-1's entries in that order
};

/// cv <- the covariant form of the real 16x16 matrix r (complex with zero imaginary parts), found
/// row by row in order of Z digits: a row's sources with fewer Zs are known, its one other nonzero
/// column is P^-1 of the row itself. ok is false where r has another shape (or a zero Z -> Z entry).
/// Entries below 1e-14 of the largest count as zeros: M S M^-1 leaves rounding residue (~1e-17)
/// where the exact matrix has zeros, and the pattern drops them.
void match_covariant(const C* m, Covariant& cv) {
  const CovariantPattern& fwd = kCovariant[0];
  double largest = 0.0;
  for (int i = 0; i < 256; ++i) largest = fabs(m[i].re) > largest ? fabs(m[i].re) : largest;
  C r[256];
  for (int i = 0; i < 256; ++i) r[i] = make_complex(fabs(m[i].re) > 1e-14 * largest ? m[i].re : 0.0, 0.0);
  int perm[16];
  bool used[16] = {};
  cv.ok = false;
  for (int zs = 0; zs <= 2; ++zs) {
    for (int b = 0; b < 16; ++b) {
      if ((pauli_digit(b, 4, 0) == 3) + (pauli_digit(b, 4, 1) == 3) != zs) continue;
      int found = -1;
      for (int c = 0; c < 16; ++c) {
        if (r[b * 16 + c].re == 0.0) continue;
        bool known = false;
        for (int e = fwd.start[b]; e < fwd.start[b + 1]; ++e) {
          known = known || (fwd.src[e] != b && perm[fwd.src[e]] == c);
        }
        if (known) continue;
        if (found >= 0) return;
        found = c;
      }
      if (found < 0 || used[found]) return;
      used[found] = true;
      perm[b] = found;
    }
  }
  for (int row = 0; row < 16; ++row) {
    for (int c = 0; c < 16; ++c) {
      bool inside = false;
      for (int e = fwd.start[row]; e < fwd.start[row + 1]; ++e) inside = inside || perm[fwd.src[e]] == c;
      if (!inside && r[row * 16 + c].re != 0.0) return;
    }
  }
  for (int b = 0; b < 16; ++b) cv.perm[b] = static_cast<uint8_t>(perm[b]);
  cv.clifford = -1;
  for (int k = 0; k < kCliffordKinds; ++k) {
    if (memcmp(cv.perm, kCliffordPerm[k].p, 16) == 0) cv.clifford = k;
  }
  for (int row = 0; row < 16; ++row) {
    for (int e = fwd.start[row]; e < fwd.start[row + 1]; ++e) cv.values[0][e] = r[row * 16 + perm[fwd.src[e]]].re;
  }
  const CovariantPattern& adj = kCovariant[1];
  for (int b = 0; b < 16; ++b) {  // (R^T lam)[P^-1(b)] = sum over the rows r drawing on b of R[r][P^-1(b)] lam[r]
    for (int e = adj.start[b]; e < adj.start[b + 1]; ++e) cv.values[1][e] = r[adj.src[e] * 16 + perm[b]].re;
  }
  cv.ok = true;
}

/// cv.inv <- D^-1's entries from R^-1 (rinv, 16x16 real, Pauli basis): R^-1 = P^-1 D^-1 puts D^-1's
/// row s at row P^-1(s), so entry (s, c) is rinv[perm[s]][c]. D^-1 has D's pattern (the matrices of
/// that pattern, I -> I and Z -> {I, Z} on each wire, form an algebra), so nothing else is read.
void covariant_inverse(const double* rinv, Covariant& cv) {
  const CovariantPattern& fwd = kCovariant[0];
  for (int s = 0; s < 16; ++s) {
    for (int e = fwd.start[s]; e < fwd.start[s + 1]; ++e) cv.inv[e] = rinv[cv.perm[s] * 16 + fwd.src[e]];
  }
}

// ----------------------------------------------------------------------------- blocks
/// One block of the program, resolved once per call.
struct Block {
  int lo, hi;       ///< gates [lo, hi]
  int two;          ///< a two-qubit gate
  int fixed;        ///< every angle constant: the matrices below are built once per call
  int bits[4];      ///< row bits, then column bits, of the block's wires
  Sparse fwd;       ///< fixed: the forward superoperator
  Sparse adj;       ///< fixed: its adjoint (the VJP's backward step)
  Sparse inv;       ///< fixed, inverse sweep: its inverse
  Covariant cov;    ///< fixed, two-qubit, Pauli basis: fwd and adj in the covariant form
};

/// The superoperator of a gate and its channel: the table row, or null for a noiseless gate.
const double* channel_of(const DensityJob& job, int g) {
  return job.chan_idx[g] >= 0 ? job.superops + 2 * kMaxEntries * job.chan_idx[g] : nullptr;
}

/// Dense superoperator m of block ``b`` for one sample: 4x4 for a one-qubit run, 16x16 for a
/// two-qubit gate (a noiseless one too: U (x) conj(U) is as sparse as U, and one Hermitian pass).
void block_matrix(const DensityJob& job, const Block& b, const double* trig, C* m) {
  double c[kMaxGateAngles], s[kMaxGateAngles];
  C u[16];
  if (b.two) {
    half_angles(job, b.lo, trig, c, s);
    gate_unitary(job.gates[4 * b.lo], c, s, u);
    fused_superop(u, 2, channel_of(job, b.lo), m);
    return;
  }
  C step[16], acc[16];
  eye(m, 4);
  for (int g = b.lo; g <= b.hi; ++g) {
    half_angles(job, g, trig, c, s);
    gate_unitary(job.gates[4 * g], c, s, u);
    fused_superop(u, 1, channel_of(job, g), step);
    matmul(step, m, acc, 4);
    for (int i = 0; i < 16; ++i) m[i] = acc[i];
  }
}

/// L doubles, one per lane (a plain double for one lane).
template <int L>
struct LaneVector {
  typedef double type __attribute__((vector_size(L * sizeof(double))));
};
template <>
struct LaneVector<1> {
  typedef double type;
};

/// c, s <- gate g's half-angle cosines and sines in every lane (lane l from trig[l]).
template <int L>
void lane_half_angles(const DensityJob& job, int g, const double* const* trig, typename LaneVector<L>::type* c,
                      typename LaneVector<L>::type* s) {
  for (int l = 0; l < L; ++l) {
    double cl[kMaxGateAngles], sl[kMaxGateAngles];
    half_angles(job, g, trig[l], cl, sl);
    for (int k = 0; k < kMaxGateAngles; ++k) {
      if constexpr (L == 1) {
        c[k] = cl[k];
        s[k] = sl[k];
      } else {
        c[k][l] = cl[k];
        s[k][l] = sl[k];
      }
    }
  }
}

/// out <- a b, 4x4, every lane at once (out aliases neither).
template <class CV>
void matmul_lanes(const CV* a, const CV* b, CV* out) {
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      CV acc = a[i * 4] * b[j];
      for (int k = 1; k < 4; ++k) acc = mul_add(acc, a[i * 4 + k], b[k * 4 + j]);
      out[i * 4 + j] = acc;
    }
  }
}

/// m <- the superoperator of one-qubit run ``b`` for all L lanes at once (lane l of entry e is
/// sample l's block_matrix entry e): the same products in the same order, but each one vectorised
/// over the lanes instead of repeated per lane, which made building the runs' matrices about a
/// third of a small forward pass (4 qubits, 2 layers). With ``steps``, also each gate's fused
/// superoperator S_g at steps[16 i] and the products Q_g = S_(g-1) ... S_lo at prefix[16 i],
/// i = g - lo = 0 .. length (the VJP's gradients take them).
template <int L>
void run_matrix_lanes(const DensityJob& job, const Block& b, const double* const* trig,
                      Complex<typename LaneVector<L>::type> m[16],
                      Complex<typename LaneVector<L>::type>* steps = nullptr,
                      Complex<typename LaneVector<L>::type>* prefix = nullptr) {
  typedef typename LaneVector<L>::type V;
  typedef Complex<V> CV;
  const V zero = V{} + 0.0, one = V{} + 1.0;
  for (int e = 0; e < 16; ++e) m[e] = make_complex(e % 5 == 0 ? one : zero, zero);
  if (prefix != nullptr) {
    for (int e = 0; e < 16; ++e) prefix[e] = m[e];
  }
  for (int g = b.lo; g <= b.hi; ++g) {
    V c[kMaxGateAngles], s[kMaxGateAngles];
    lane_half_angles<L>(job, g, trig, c, s);
    CV u[4], tmp[16], local[16], next[16];
    CV* step = steps != nullptr ? steps + 16 * (g - b.lo) : local;
    single_qubit_matrix<V, double>(job.gates[4 * g], c, s, 1, u);
    for (int r0 = 0; r0 < 2; ++r0) {
      for (int c0 = 0; c0 < 2; ++c0) {
        for (int r1 = 0; r1 < 2; ++r1) {
          for (int c1 = 0; c1 < 2; ++c1) tmp[(2 * r0 + c0) * 4 + 2 * r1 + c1] = u[r0 * 2 + r1] * conj(u[c0 * 2 + c1]);
        }
      }
    }
    const double* chan = channel_of(job, g);
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 4; ++j) step[i * 4 + j] = chan == nullptr ? tmp[i * 4 + j] : make_complex(zero, zero);
      if (chan == nullptr) continue;
      for (int k = 0; k < 4; ++k) {  // skipping the channel's zeros, as fused_superop
        const double* e = chan + 2 * (i * kMaxDim + k);
        if (e[0] == 0.0 && e[1] == 0.0) continue;
        const CV ck = make_complex(zero + e[0], zero + e[1]);
        for (int j = 0; j < 4; ++j) step[i * 4 + j] = mul_add(step[i * 4 + j], ck, tmp[k * 4 + j]);
      }
    }
    matmul_lanes(step, m, next);
    for (int e = 0; e < 16; ++e) m[e] = next[e];
    if (prefix != nullptr) {
      for (int e = 0; e < 16; ++e) prefix[16 * (g - b.lo + 1) + e] = next[e];
    }
  }
}

/// s <- the nonzero pattern (over all lanes) and values of dense[l * dim * dim + ...], l < lanes;
/// shared when lanes == 1 and ``shared``. s.re / s.im must hold dim * dim * lanes values.
void pack(const C* dense, int k, int lanes, bool shared, Sparse& s) {
  const int dim = 1 << k, entries = dim * dim;
  s.k = k;
  s.shared = shared;
  s.real = true;
  int e = 0;
  for (int r = 0; r < dim; ++r) {
    s.row_start[r] = e;
    for (int c = 0; c < dim; ++c) {
      bool nonzero = false;
      for (int l = 0; l < lanes; ++l) {
        const C v = dense[l * entries + r * dim + c];
        nonzero = nonzero || v.re != 0.0 || v.im != 0.0;
        s.real = s.real && v.im == 0.0;
      }
      if (!nonzero) continue;
      s.col[e] = static_cast<uint8_t>(c);
      for (int l = 0; l < lanes; ++l) {
        s.re[e * lanes + l] = dense[l * entries + r * dim + c].re;
        s.im[e * lanes + l] = dense[l * entries + r * dim + c].im;
      }
      ++e;
    }
  }
  s.row_start[dim] = e;
  s.nnz = e;
}

// ----------------------------------------------------------------------------- state passes
/// offs[j]: the index offset of matrix index j (bits[0] its most significant bit); sorted: the
/// bits ascending.
void layout(const int* bits, int k, Index* offs, int* sorted) {
  for (int j = 0; j < (1 << k); ++j) {
    Index o = 0;
    for (int i = 0; i < k; ++i) {
      if ((j >> (k - 1 - i)) & 1) o |= Index(1) << bits[i];
    }
    offs[j] = o;
  }
  for (int i = 0; i < k; ++i) {
    int j = i;
    while (j > 0 && sorted[j - 1] > bits[i]) {
      sorted[j] = sorted[j - 1];
      --j;
    }
    sorted[j] = bits[i];
  }
}

/// ``i`` with a 0 inserted at each of the k ascending bit positions.
HDQNN_INLINE Index insert_zeros(Index i, const int* sorted, int k) {
  for (int s = 0; s < k; ++s) {
    const int b = sorted[s];
    i = ((i >> b) << (b + 1)) | (i & ((Index(1) << b) - 1));
  }
  return i;
}

/// The index bits of a group's ``k`` ascending positions.
HDQNN_INLINE Index group_bits(const int* sorted, int k) {
  Index bits = 0;
  for (int s = 0; s < k; ++s) bits |= Index(1) << sorted[s];
  return bits;
}

/// The base of the group after ``base`` (insert_zeros of the next count): one carry across the
/// group's bits rather than a shift per bit.
HDQNN_INLINE Index next_group(Index base, Index holes) { return ((base | holes) + 1) & ~holes; }

/// Index of a group entry with its row and column halves swapped (the transposed entry): K bits,
/// the first K / 2 row bits.
template <int K>
HDQNN_INLINE int mirror_of(int j) {
  constexpr int H = K / 2;
  return ((j & ((1 << H) - 1)) << H) | (j >> H);
}

/// Writes the conjugates of the group's new entries y into its mirror group at mbase.
template <int L, int K>
HDQNN_INLINE void write_mirror(double* dst, Index mbase, const Index* offs, const double (*yr)[L],
                               const double (*yi)[L]) {
  for (int r = 0; r < (1 << K); ++r) {
    double* p = dst + 2 * L * (mbase + offs[mirror_of<K>(r)]);
    for (int l = 0; l < L; ++l) {
      p[l] = yr[r][l];
      p[L + l] = -yi[r][l];
    }
  }
}

/// dst <- m on bit positions ``bits`` (K / 2 row bits, then the column bits of the same wires) of
/// every lane's vectorised Hermitian rho in src (2n bits); dst may be src. With the K bits taken
/// out, a group's index is (other row bits R, other column bits C); group (C, R) holds the
/// conjugate transposes of (R, C)'s entries, so with ``hermitian`` only R <= C is computed.
template <int L, int K, bool Shared, bool Real, bool Dense>
void apply_t(const double* src, double* dst, int nbits, const int* bits, const Sparse& m, bool hermitian) {
  constexpr int D = 1 << K;
  Index offs[D];
  int sorted[K];
  layout(bits, K, offs, sorted);
  const int half = (nbits - K) / 2;
  const Index side = Index(1) << half;
  for (Index i = 0; i < (side << half); ++i) {
    const Index r_other = i >> half, c_other = i & (side - 1);
    if (hermitian && r_other > c_other) continue;
    const Index base = insert_zeros(i, sorted, K);
    double xr[D][L], xi[D][L];
    for (int j = 0; j < D; ++j) {
      const double* p = src + 2 * L * (base + offs[j]);
      for (int l = 0; l < L; ++l) {
        xr[j][l] = p[l];
        xi[j][l] = p[L + l];
      }
    }
    double yr[D][L], yi[D][L];
    for (int r = 0; r < D; ++r) {
      double ar[L] = {}, ai[L] = {};
      const int begin = Dense ? r * D : m.row_start[r], end = Dense ? (r + 1) * D : m.row_start[r + 1];
      for (int e = begin; e < end; ++e) {
        const int c = Dense ? e - r * D : m.col[e];
#pragma omp simd
        for (int l = 0; l < L; ++l) {
          const double mr = Shared ? m.re[e] : m.re[e * L + l];
          if (Real) {
            ar[l] += mr * xr[c][l];
            ai[l] += mr * xi[c][l];
          } else {
            const double mi = Shared ? m.im[e] : m.im[e * L + l];
            ar[l] += mr * xr[c][l] - mi * xi[c][l];
            ai[l] += mr * xi[c][l] + mi * xr[c][l];
          }
        }
      }
      double* p = dst + 2 * L * (base + offs[r]);
      for (int l = 0; l < L; ++l) {
        p[l] = yr[r][l] = ar[l];
        p[L + l] = yi[r][l] = ai[l];
      }
    }
    if (hermitian && r_other != c_other) {
      write_mirror<L, K>(dst, insert_zeros((c_other << half) | r_other, sorted, K), offs, yr, yi);
    }
  }
}

template <int L, int K, bool Shared, bool Real>
void apply_k(const double* src, double* dst, int nbits, const int* bits, const Sparse& m, bool hermitian) {
  if (m.nnz == (1 << (2 * K))) {
    apply_t<L, K, Shared, Real, true>(src, dst, nbits, bits, m, hermitian);
  } else {
    apply_t<L, K, Shared, Real, false>(src, dst, nbits, bits, m, hermitian);
  }
}

template <int L, int K>
void apply_shape(const double* src, double* dst, int nbits, const int* bits, const Sparse& m, bool hermitian) {
  if (m.shared) {
    if (m.real) apply_k<L, K, true, true>(src, dst, nbits, bits, m, hermitian);
    else apply_k<L, K, true, false>(src, dst, nbits, bits, m, hermitian);
  } else {
    if (m.real) apply_k<L, K, false, true>(src, dst, nbits, bits, m, hermitian);
    else apply_k<L, K, false, false>(src, dst, nbits, bits, m, hermitian);
  }
}

/// dst <- m src (dst may be src).
template <int L>
void apply(const double* src, double* dst, int nbits, const int* bits, const Sparse& m, bool hermitian) {
  if (m.k == 2) apply_shape<L, 2>(src, dst, nbits, bits, m, hermitian);
  else apply_shape<L, 4>(src, dst, nbits, bits, m, hermitian);
}

/// x[j] <- the L lanes of entry base + offs[j] of a Pauli-basis state, j < D.
template <int L, int D>
HDQNN_INLINE void load_group(const double* src, Index base, const Index* offs, double (*x)[L]) {
  for (int j = 0; j < D; ++j) {
    const double* p = src + L * (base + offs[j]);
    for (int l = 0; l < L; ++l) x[j][l] = p[l];
  }
}

/// x[j] <- the lane vector of entry base + offs[j] of a Pauli-basis state, j < D.
template <int D, class V>
HDQNN_INLINE void load_vectors(const double* src, Index base, const Index* offs, V* x) {
  constexpr int L = sizeof(V) / sizeof(double);
#pragma GCC unroll 16
  for (int j = 0; j < D; ++j) __builtin_memcpy(&x[j], src + L * (base + offs[j]), sizeof(V));
}

/// Entry base + offs[j] of a Pauli-basis state <- the lane vector x[j], j < D.
template <int D, class V>
HDQNN_INLINE void store_vectors(double* dst, Index base, const Index* offs, const V* x) {
  constexpr int L = sizeof(V) / sizeof(double);
#pragma GCC unroll 16
  for (int j = 0; j < D; ++j) __builtin_memcpy(dst + L * (base + offs[j]), &x[j], sizeof(V));
}

/// dst <- m src on bit positions ``bits`` of every lane's Pauli coefficients (real, entry e's lanes
/// at v[L e]); dst may be src. (A dense one-wire m takes apply_run_real.)
template <int L, int K, bool Shared, bool Dense>
void apply_real_t(const double* src, double* dst, int nbits, const int* bits, const Sparse& m) {
  constexpr int D = 1 << K;
  Index offs[D];
  int sorted[K];
  layout(bits, K, offs, sorted);
  const Index groups = Index(1) << (nbits - K);
  const Index holes = group_bits(sorted, K);
  Index base = 0;
  for (Index i = 0; i < groups; ++i, base = next_group(base, holes)) {
    double x[D][L];
    load_group<L, D>(src, base, offs, x);
    for (int r = 0; r < D; ++r) {
      double acc[L] = {};
      const int begin = Dense ? r * D : m.row_start[r], end = Dense ? (r + 1) * D : m.row_start[r + 1];
      for (int e = begin; e < end; ++e) {
        const int c = Dense ? e - r * D : m.col[e];
#pragma omp simd
        for (int l = 0; l < L; ++l) acc[l] += (Shared ? m.re[e] : m.re[e * L + l]) * x[c][l];
      }
      double* p = dst + L * (base + offs[r]);
      for (int l = 0; l < L; ++l) p[l] = acc[l];
    }
  }
}

/// apply_real_t for a sparse m whose rows have at most W entries, each row padded to W (zeros on
/// column 0): a fixed, unrolled trip count. The sparse loop's trip count changes from row to row (a
/// cx fused with amplitude damping on both wires has rows of 1, 2 and 4 entries), and its
/// mispredicted exits made that pass half of a (6, 4, 256) forward.
template <int L, int K, bool Shared, int W>
void apply_real_padded(const double* src, double* dst, int nbits, const int* bits, const Sparse& m) {
  constexpr int D = 1 << K, V = Shared ? 1 : L;
  uint8_t col[D][W];
  double val[D][W][V];
  for (int r = 0; r < D; ++r) {
    for (int k = 0; k < W; ++k) {
      const int e = m.row_start[r] + k;
      const bool used = e < m.row_start[r + 1];
      col[r][k] = used ? m.col[e] : 0;
      for (int l = 0; l < V; ++l) val[r][k][l] = used ? m.re[e * V + l] : 0.0;
    }
  }
  Index offs[D];
  int sorted[K];
  layout(bits, K, offs, sorted);
  const Index groups = Index(1) << (nbits - K);
  const Index holes = group_bits(sorted, K);
  Index base = 0;
  for (Index i = 0; i < groups; ++i, base = next_group(base, holes)) {
    double x[D][L];
    load_group<L, D>(src, base, offs, x);
#pragma GCC unroll 16
    for (int r = 0; r < D; ++r) {  // unrolled: the rows' short product chains overlap
      double acc[L] = {};
#pragma GCC unroll 8
      for (int k = 0; k < W; ++k) {
        const double* xc = x[col[r][k]];
#pragma omp simd
        for (int l = 0; l < L; ++l) acc[l] += val[r][k][Shared ? 0 : l] * xc[l];
      }
      double* p = dst + L * (base + offs[r]);
      for (int l = 0; l < L; ++l) p[l] = acc[l];
    }
  }
}

/// apply_real_t for a dense one-wire m (a run's pass; Shared: one matrix for every lane), in lane
/// vectors. KeepI: m keeps the coefficient of I (row 0 is (1, 0, 0, 0): a trace-preserving map), so
/// entry 0 of a group is copied (or, in place, left) rather than multiplied: 12 of 16 products.
template <int L, bool Shared, bool KeepI>
void apply_run_real(const double* src, double* dst, int nbits, const int* bits, const Sparse& m) {
  typedef typename LaneVector<L>::type V;
  Index offs[4];
  int sorted[2];
  layout(bits, 2, offs, sorted);
  V a[16];
  for (int e = 0; e < 16; ++e) {
    if (Shared) a[e] = V{} + m.re[e];
    else __builtin_memcpy(&a[e], m.re + e * L, sizeof(V));
  }
  const Index groups = Index(1) << (nbits - 2);
  const Index holes = group_bits(sorted, 2);
  Index base = 0;
  for (Index i = 0; i < groups; ++i, base = next_group(base, holes)) {
    V x[4];
    load_vectors<4>(src, base, offs, x);
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      if (KeepI && r == 0) {  // the coefficient of I is kept: copied, or left where it is
        if (dst != src) __builtin_memcpy(dst + L * (base + offs[0]), &x[0], sizeof(V));
        continue;
      }
      const V acc = a[4 * r] * x[0] + a[4 * r + 1] * x[1] + a[4 * r + 2] * x[2] + a[4 * r + 3] * x[3];
      __builtin_memcpy(dst + L * (base + offs[r]), &acc, sizeof(V));
    }
  }
}

template <int L, int K, bool Shared>
void apply_real_k(const double* src, double* dst, int nbits, const int* bits, const Sparse& m, bool keep_i) {
  if (K == 2 && m.nnz == 16) {
    if (keep_i) apply_run_real<L, Shared, true>(src, dst, nbits, bits, m);
    else apply_run_real<L, Shared, false>(src, dst, nbits, bits, m);
    return;
  }
  if (m.nnz == (1 << (2 * K))) {
    apply_real_t<L, K, Shared, true>(src, dst, nbits, bits, m);
    return;
  }
  int width = 0;
  for (int r = 0; r < (1 << K); ++r) {
    const int len = m.row_start[r + 1] - m.row_start[r];
    width = len > width ? len : width;
  }
  if (width <= 1) apply_real_padded<L, K, Shared, 1>(src, dst, nbits, bits, m);
  else if (width <= 2) apply_real_padded<L, K, Shared, 2>(src, dst, nbits, bits, m);
  else if (width <= 4) apply_real_padded<L, K, Shared, 4>(src, dst, nbits, bits, m);
  else apply_real_t<L, K, Shared, false>(src, dst, nbits, bits, m);
}

/// dst <- m src in the Pauli basis (m real; dst may be src); keep_i: m is a dense one-wire matrix
/// that keeps the coefficient of I (apply_run_real's KeepI).
template <int L>
void apply_real(const double* src, double* dst, int nbits, const int* bits, const Sparse& m, bool keep_i) {
  if (m.k == 2) {
    if (m.shared) apply_real_k<L, 2, true>(src, dst, nbits, bits, m, keep_i);
    else apply_real_k<L, 2, false>(src, dst, nbits, bits, m, keep_i);
  } else {
    if (m.shared) apply_real_k<L, 4, true>(src, dst, nbits, bits, m, keep_i);
    else apply_real_k<L, 4, false>(src, dst, nbits, bits, m, keep_i);
  }
}

/// v <- R^T v for a block in the covariant form (the VJP's step back): the group loads in its natural
/// order, row b of R^T's pattern (kCovariant[1]) is stored at column P^-1(b). (Forward passes of such
/// a block are chains: apply_chain.)
template <int L>
void apply_covariant_adjoint(double* v, int nbits, const int* bits, const Covariant& cv) {
  typedef typename LaneVector<L>::type V;
  constexpr CovariantPattern pattern = kCovariant[1];
  Index offs[16], permuted[16];
  int sorted[4];
  layout(bits, 4, offs, sorted);
  for (int b = 0; b < 16; ++b) permuted[b] = offs[cv.perm[b]];
  const double* a = cv.values[1];
  const Index groups = Index(1) << (nbits - 4);
  const Index holes = group_bits(sorted, 4);
  Index base = 0;
  for (Index i = 0; i < groups; ++i, base = next_group(base, holes)) {
    V x[16];
    load_vectors<16>(v, base, offs, x);
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) {
      V acc = a[pattern.start[r]] * x[pattern.src[pattern.start[r]]];
#pragma GCC unroll 4
      for (int e = pattern.start[r] + 1; e < pattern.start[r + 1]; ++e) acc += a[e] * x[pattern.src[e]];
      __builtin_memcpy(v + L * (base + permuted[r]), &acc, sizeof(V));
    }
  }
}

/// group_of_digits with wire ``which``'s digit d and the other wire's digit o: [which][o][d].
constexpr int kWireEntry[2][4][4] = {
    {{0, 2, 8, 10}, {1, 3, 9, 11}, {4, 6, 12, 14}, {5, 7, 13, 15}},
    {{0, 1, 4, 5}, {2, 3, 6, 7}, {8, 9, 12, 13}, {10, 11, 14, 15}}};
static_assert(kWireEntry[0][2][3] == group_of_digits(3, 2) && kWireEntry[1][2][3] == group_of_digits(2, 3),
              "kWireEntry is group_of_digits");

/// x <- a x on the digit of the group's wire ``Which`` (0: its first, 1: its second), a real 4x4
/// of lane vectors; KeepI: a's row 0 is (1, 0, 0, 0); KeepColumn: its column 0 is, as in the
/// transpose of such a matrix (12 of 16 products either way).
template <int Which, bool KeepI, class V, bool KeepColumn = false>
HDQNN_INLINE void group_one_wire(V* x, const V* a) {
#pragma GCC unroll 4
  for (int o = 0; o < 4; ++o) {  // the other wire's digit
    const int* j = kWireEntry[Which][o];
    V y[4];
#pragma GCC unroll 4
    for (int r = KeepI ? 1 : 0; r < 4; ++r) {
      const V rest = a[4 * r + 1] * x[j[1]] + a[4 * r + 2] * x[j[2]] + a[4 * r + 3] * x[j[3]];
      y[r] = KeepColumn && r > 0 ? rest : a[4 * r] * x[j[0]] + rest;
    }
#pragma GCC unroll 4
    for (int r = KeepI ? 1 : 0; r < 4; ++r) x[j[r]] = y[r];
  }
}

/// A covariant two-qubit block R with the one-qubit runs that join its pass: A on its first wire
/// and B on its second (real 4x4 per lane; has_a / has_b false: none).
template <int L>
struct Chain {
  typedef typename LaneVector<L>::type V;
  const Block* block;
  int bits[4];  ///< the pass's bit positions of the block's bits (pass_bits)
  bool has_a, has_b;
  V a[16], b[16];
};

/// y <- R x for one group of a covariant block, in its natural order: x is reordered for R's fixed
/// pattern by a constant permutation for a Clifford of kCliffordPerm (Kind; the group stays in
/// registers), else by cv.perm (Kind -1; through memory).
template <int Kind, class V>
HDQNN_INLINE void covariant_group(const V* x, const Covariant& cv, V* y) {
  constexpr CovariantPattern pattern = kCovariant[0];
  V p[16];
#pragma GCC unroll 16
  for (int j = 0; j < 16; ++j) {  // (the table's index is clamped only so that Kind -1 compiles)
    p[j] = x[Kind >= 0 ? kCliffordPerm[Kind < 0 ? 0 : Kind].p[j] : cv.perm[j]];
  }
#pragma GCC unroll 16
  for (int r = 0; r < 16; ++r) {
    V acc = cv.values[0][pattern.start[r]] * p[pattern.src[pattern.start[r]]];
#pragma GCC unroll 4
    for (int e = pattern.start[r] + 1; e < pattern.start[r + 1]; ++e) acc += cv.values[0][e] * p[pattern.src[e]];
    y[r] = acc;
  }
}

/// Where a chain's pass writes: the state after run A and after run B (null: not kept; the VJP keeps
/// the inputs of the runs after them), and after the block (may be the source).
struct ChainOut {
  double* after_a;
  double* after_b;
  double* out;
};

/// to.out <- R B A src in one pass rather than three (the runs' and the block's), each group in
/// registers in its natural order: the runs apply there (their digits are fixed), then R.
template <int L, bool KeepI, int Kind>
void apply_chain_t(const double* src, const ChainOut& to, int nbits, const Chain<L>& c) {
  typedef typename LaneVector<L>::type V;
  Index offs[16];
  int sorted[4];
  layout(c.bits, 4, offs, sorted);
  const Index groups = Index(1) << (nbits - 4);
  const Index holes = group_bits(sorted, 4);
  Index base = 0;
  for (Index i = 0; i < groups; ++i, base = next_group(base, holes)) {
    V x[16], y[16];
    load_vectors<16>(src, base, offs, x);
    if (c.has_a) group_one_wire<0, KeepI>(x, c.a);
    if (to.after_a) store_vectors<16>(to.after_a, base, offs, x);
    if (c.has_b) group_one_wire<1, KeepI>(x, c.b);
    if (to.after_b) store_vectors<16>(to.after_b, base, offs, x);
    covariant_group<Kind>(x, c.block->cov, y);
    store_vectors<16>(to.out, base, offs, y);
  }
}

template <int L, bool KeepI>
void apply_chain_k(const double* src, const ChainOut& to, int nbits, const Chain<L>& c) {
  switch (c.block->cov.clifford) {
    case 0: apply_chain_t<L, KeepI, 0>(src, to, nbits, c); return;
    case 1: apply_chain_t<L, KeepI, 1>(src, to, nbits, c); return;
    case 2: apply_chain_t<L, KeepI, 2>(src, to, nbits, c); return;
    case 3: apply_chain_t<L, KeepI, 3>(src, to, nbits, c); return;
    default: apply_chain_t<L, KeepI, -1>(src, to, nbits, c); return;
  }
}

template <int L>
void apply_chain(bool keep_identity, const double* src, const ChainOut& to, int nbits, const Chain<L>& c) {
  if (keep_identity) apply_chain_k<L, true>(src, to, nbits, c);
  else apply_chain_k<L, false>(src, to, nbits, c);
}

/// A chain (covariant block R after run A on its first wire, B on its second) as the inverse sweep
/// steps back through it: the runs' inverses (real 4x4 per lane), their transposes, and whether each
/// run's Gram is wanted (it has angles).
template <int L>
struct BackChain {
  typedef typename LaneVector<L>::type V;
  const Block* block;
  int bits[4];
  bool has[2], gram[2];  ///< [0]: run A, [1]: run B
  V inv[2][16], adj[2][16];
};

/// One run's step back inside a group (wire Which of the block): rho <- (run)^-1 rho, then the Gram
/// g[4 a + c] += sum over the other wire's digit o of lam[(o, a)] rho[(o, c)] (rho the run's input,
/// lam as it comes in; KeepI: rows a > 0 only, as gram_apply_real), then lam <- (run)^T lam. The
/// Gram's sums live in memory (g, [16] lane vectors), not registers: two runs' sixteen accumulators
/// each, carried across the groups, would take all 32 vector registers and spill the group itself.
template <int Which, bool KeepI, class V>
HDQNN_INLINE void group_run_back(V* rho, V* lam, const V* inv, const V* adj, bool gram, double* g) {
  group_one_wire<Which, KeepI>(rho, inv);  // a trace-preserving run's inverse keeps row 0 too
  if (gram) {
#pragma GCC unroll 16
    for (int e = KeepI ? 4 : 0; e < 16; ++e) {
      const int a = e >> 2, c = e & 3;
      V acc;
      __builtin_memcpy(&acc, g + e * (sizeof(V) / sizeof(double)), sizeof(V));
#pragma GCC unroll 4
      for (int o = 0; o < 4; ++o) acc += lam[kWireEntry[Which][o][a]] * rho[kWireEntry[Which][o][c]];
      __builtin_memcpy(g + e * (sizeof(V) / sizeof(double)), &acc, sizeof(V));
    }
  }
  group_one_wire<Which, false, V, KeepI>(lam, adj);
}

/// The inverse sweep's step back through one chain in one pass over rho and lam (where the sweep
/// with kept states took one pass per block, and kept the runs' inputs): per group, in registers,
/// rho <- R^-1 rho and lam <- R^T lam, then run B's step back and run A's (group_run_back), the
/// Grams summed into ga (A) and gb (B) [16 * L]. Kind as covariant_group.
template <int L, bool KeepI, int Kind>
void backward_chain_t(double* rho, double* lam, int nbits, const BackChain<L>& c, double* ga, double* gb) {
  typedef typename LaneVector<L>::type V;
  constexpr CovariantPattern fwd = kCovariant[0], adj = kCovariant[1];
  const Covariant& cv = c.block->cov;
  Index offs[16];
  int sorted[4];
  layout(c.bits, 4, offs, sorted);
  memset(ga, 0, sizeof(double) * 16 * L);
  memset(gb, 0, sizeof(double) * 16 * L);
  const Index groups = Index(1) << (nbits - 4);
  const Index holes = group_bits(sorted, 4);
  // lam's entries addressed from rho's: one address per entry for both states, where 32 spilled
  // (a few percent at 10 qubits)
  const std::ptrdiff_t delta = lam - rho;
  Index base = 0;
  for (Index i = 0; i < groups; ++i, base = next_group(base, holes)) {
    V x[16], y[16], l[16], m[16];
    double* at[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {
      at[j] = rho + L * (base + offs[j]);
      __builtin_memcpy(&x[j], at[j], sizeof(V));
      __builtin_memcpy(&l[j], at[j] + delta, sizeof(V));
    }
#pragma GCC unroll 16
    for (int r = 0; r < 16; ++r) {  // R^-1 = P^-1 D^-1, R^T as apply_covariant_adjoint
      const int to = Kind >= 0 ? kCliffordPerm[Kind < 0 ? 0 : Kind].p[r] : cv.perm[r];
      V acc = cv.inv[fwd.start[r]] * x[fwd.src[fwd.start[r]]];
#pragma GCC unroll 4
      for (int e = fwd.start[r] + 1; e < fwd.start[r + 1]; ++e) acc += cv.inv[e] * x[fwd.src[e]];
      y[to] = acc;
      V back = cv.values[1][adj.start[r]] * l[adj.src[adj.start[r]]];
#pragma GCC unroll 4
      for (int e = adj.start[r] + 1; e < adj.start[r + 1]; ++e) back += cv.values[1][e] * l[adj.src[e]];
      m[to] = back;
    }
    if (c.has[1]) group_run_back<1, KeepI>(y, m, c.inv[1], c.adj[1], c.gram[1], gb);
    if (c.has[0]) group_run_back<0, KeepI>(y, m, c.inv[0], c.adj[0], c.gram[0], ga);
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {
      __builtin_memcpy(at[j], &y[j], sizeof(V));
      __builtin_memcpy(at[j] + delta, &m[j], sizeof(V));
    }
  }
}

template <int L, bool KeepI>
void backward_chain_k(double* rho, double* lam, int nbits, const BackChain<L>& c, double* ga, double* gb) {
  switch (c.block->cov.clifford) {
    case 0: backward_chain_t<L, KeepI, 0>(rho, lam, nbits, c, ga, gb); return;
    case 1: backward_chain_t<L, KeepI, 1>(rho, lam, nbits, c, ga, gb); return;
    case 2: backward_chain_t<L, KeepI, 2>(rho, lam, nbits, c, ga, gb); return;
    case 3: backward_chain_t<L, KeepI, 3>(rho, lam, nbits, c, ga, gb); return;
    default: backward_chain_t<L, KeepI, -1>(rho, lam, nbits, c, ga, gb); return;
  }
}

/// gram_apply in the Pauli basis: out[(a * 4 + c) * L + l] <- sum over the other bits of lam[a]
/// rho[c] (lam as it comes in), and lam <- m lam (m dense, real, per lane). KeepI: m is the
/// transpose of a run that keeps the coefficient of I, so its column 0 is (1, 0, 0, 0), and the
/// gradients never read the Gram's row 0 (every derivative of such a run has a zero row 0): 25 of
/// 32 products.
template <int L, bool KeepI>
void gram_apply_real(double* lam, const double* rho, int nbits, const int* bits, const Sparse& m, double* out) {
  typedef typename LaneVector<L>::type V;
  Index offs[4];
  int sorted[2];
  layout(bits, 2, offs, sorted);
  V a[16], g[16];
  for (int e = 0; e < 16; ++e) {
    __builtin_memcpy(&a[e], m.re + e * L, sizeof(V));
    g[e] = V{} + 0.0;
  }
  const Index groups = Index(1) << (nbits - 2);
  const Index holes = group_bits(sorted, 2);
  Index base = 0;
  for (Index i = 0; i < groups; ++i, base = next_group(base, holes)) {
    V x[4], y[4];
    load_vectors<4>(lam, base, offs, x);
    load_vectors<4>(rho, base, offs, y);
#pragma GCC unroll 16
    for (int e = KeepI ? 4 : 0; e < 16; ++e) g[e] += x[e >> 2] * y[e & 3];
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      const V rest = a[4 * r + 1] * x[1] + a[4 * r + 2] * x[2] + a[4 * r + 3] * x[3];
      const V acc = KeepI && r > 0 ? rest : a[4 * r] * x[0] + rest;
      __builtin_memcpy(lam + L * (base + offs[r]), &acc, sizeof(V));
    }
  }
  for (int e = 0; e < 16; ++e) __builtin_memcpy(out + e * L, &g[e], sizeof(V));
}

/// out[l] <- sum over the groups of lam^T a_l rho on the K bit positions ``bits`` (Pauli basis;
/// a[e * L + l] lane l's dense real matrix).
template <int L, int K>
void inner_real(const double* lam, const double* rho, int nbits, const int* bits, const double* a, double* out) {
  constexpr int D = 1 << K;
  Index offs[D];
  int sorted[K];
  layout(bits, K, offs, sorted);
  double acc[L] = {};
  const Index groups = Index(1) << (nbits - K);
  const Index holes = group_bits(sorted, K);
  Index base = 0;
  for (Index i = 0; i < groups; ++i, base = next_group(base, holes)) {
    for (int r = 0; r < D; ++r) {
      const double* pl = lam + L * (base + offs[r]);
      double row[L] = {};
      for (int c = 0; c < D; ++c) {
        const double* pr = rho + L * (base + offs[c]);
#pragma omp simd
        for (int l = 0; l < L; ++l) row[l] += a[(r * D + c) * L + l] * pr[l];
      }
      for (int l = 0; l < L; ++l) acc[l] += pl[l] * row[l];
    }
  }
  for (int l = 0; l < L; ++l) out[l] = acc[l];
}

/// One pass of the backward sweep through a one-qubit run: out[(a * 4 + c) * 2L ...] <- the Gram
/// matrix sum over all other bits of conj(lam[a]) rho[c] ((a, c) indexing the run's (row bit,
/// column bit); re lanes, then im lanes) of lam as it comes in, and lam <- m lam (m dense, per lane).
///
/// lam and rho are Hermitian, so the group of entries with other row bits R and column bits C
/// mirrors the group (C, R): its Gram terms are the conjugates of (R, C)'s with a and c's row and
/// column bits swapped, and its update the mirror of (R, C)'s (as in apply_t). Only groups with
/// R <= C are visited with ``hermitian``; without, every group's update is computed (and only the
/// R <= C groups summed).
///
/// Gram entry e = 4a + c and its mirror e' (a and c with row and column bits swapped) then get
/// H = sum over R < C of conj(lam_a) rho_c + conj(conj(lam_a') rho_c') and conj(H): 6 such pairs
/// and 4 entries that are their own mirror (H real), 16 sums per lane instead of 32, held in
/// registers. The few groups with R == C (their own mirror) are summed in full.
template <int L>
void gram_apply(double* lam, const double* rho, int nbits, const int* bits, const Sparse& m, bool hermitian,
                double* out) {
  static constexpr int kPair[6][2] = {{1, 2}, {4, 8}, {5, 10}, {6, 9}, {7, 11}, {13, 14}};
  static constexpr int kSelf[4] = {0, 3, 12, 15};
  Index offs[4];
  int sorted[2];
  layout(bits, 2, offs, sorted);
  double hr[6][L] = {}, hi[6][L] = {}, hs[4][L] = {};  // groups with R < C: pairs, then self-mirrors
  double dr[16][L] = {}, di[16][L] = {};                // groups with R == C
  const int half = (nbits - 2) / 2;                     // the group index is (R, C), half bits each
  const Index low = (Index(1) << half) - 1;
  const Index groups = Index(1) << (nbits - 2);
  for (Index i = 0; i < groups; ++i) {
    const Index r_other = i >> half, c_other = i & low;
    if (hermitian && r_other > c_other) continue;
    const Index base = insert_zeros(i, sorted, 2);
    double lr[4][L], li[4][L], rr[4][L], ri[4][L];
    for (int j = 0; j < 4; ++j) {
      const double* pl = lam + 2 * L * (base + offs[j]);
      const double* pr = rho + 2 * L * (base + offs[j]);
      for (int l = 0; l < L; ++l) {
        lr[j][l] = pl[l];
        li[j][l] = pl[L + l];
        rr[j][l] = pr[l];
        ri[j][l] = pr[L + l];
      }
    }
    if (r_other < c_other) {
#pragma GCC unroll 6
      for (int k = 0; k < 6; ++k) {
        const int a = kPair[k][0] >> 2, c = kPair[k][0] & 3, ma = kPair[k][1] >> 2, mc = kPair[k][1] & 3;
#pragma omp simd
        for (int l = 0; l < L; ++l) {
          hr[k][l] += lr[a][l] * rr[c][l] + li[a][l] * ri[c][l] + lr[ma][l] * rr[mc][l] + li[ma][l] * ri[mc][l];
          hi[k][l] += lr[a][l] * ri[c][l] - li[a][l] * rr[c][l] - lr[ma][l] * ri[mc][l] + li[ma][l] * rr[mc][l];
        }
      }
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const int a = kSelf[k] >> 2, c = kSelf[k] & 3;
#pragma omp simd
        for (int l = 0; l < L; ++l) hs[k][l] += lr[a][l] * rr[c][l] + li[a][l] * ri[c][l];
      }
    } else if (r_other == c_other) {
      for (int a = 0; a < 4; ++a) {
        for (int c = 0; c < 4; ++c) {
#pragma omp simd
          for (int l = 0; l < L; ++l) {
            dr[4 * a + c][l] += lr[a][l] * rr[c][l] + li[a][l] * ri[c][l];
            di[4 * a + c][l] += lr[a][l] * ri[c][l] - li[a][l] * rr[c][l];
          }
        }
      }
    }
    double yr[4][L], yi[4][L];
    for (int r = 0; r < 4; ++r) {
      double ar[L] = {}, ai[L] = {};
      for (int c = 0; c < 4; ++c) {
        const int e = 4 * r + c;
#pragma omp simd
        for (int l = 0; l < L; ++l) {
          const double mr = m.re[e * L + l], mi = m.im[e * L + l];
          ar[l] += mr * lr[c][l] - mi * li[c][l];
          ai[l] += mr * li[c][l] + mi * lr[c][l];
        }
      }
      double* p = lam + 2 * L * (base + offs[r]);
      for (int l = 0; l < L; ++l) {
        p[l] = yr[r][l] = ar[l];
        p[L + l] = yi[r][l] = ai[l];
      }
    }
    if (hermitian && r_other != c_other) {
      write_mirror<L, 2>(lam, insert_zeros((c_other << half) | r_other, sorted, 2), offs, yr, yi);
    }
  }
  for (int e = 0; e < 16; ++e) {
    for (int l = 0; l < L; ++l) {
      out[e * 2 * L + l] = dr[e][l];
      out[e * 2 * L + L + l] = di[e][l];
    }
  }
  for (int k = 0; k < 6; ++k) {
    double* o = out + kPair[k][0] * 2 * L;
    double* om = out + kPair[k][1] * 2 * L;
    for (int l = 0; l < L; ++l) {
      o[l] += hr[k][l];
      o[L + l] += hi[k][l];
      om[l] += hr[k][l];
      om[L + l] -= hi[k][l];
    }
  }
  for (int k = 0; k < 4; ++k) {
    double* o = out + kSelf[k] * 2 * L;
    for (int l = 0; l < L; ++l) o[l] += 2.0 * hs[k][l];
  }
}

/// Re Tr per lane of sum_i conj(lam[i]) (N rho)[i], N [L][4x4] on bit positions ``bits``.
template <int L>
void inner(const double* lam, const double* rho, int nbits, const int* bits, const C* n, double* out) {
  Index offs[4];
  int sorted[2];
  layout(bits, 2, offs, sorted);
  double acc[L] = {};
  const Index groups = Index(1) << (nbits - 2);
  const Index holes = group_bits(sorted, 2);
  Index base = 0;
  for (Index i = 0; i < groups; ++i, base = next_group(base, holes)) {
    for (int r = 0; r < 4; ++r) {
      const double* pl = lam + 2 * L * (base + offs[r]);
      for (int c = 0; c < 4; ++c) {
        const double* pr = rho + 2 * L * (base + offs[c]);
        for (int l = 0; l < L; ++l) {
          const C m = n[l * 16 + r * 4 + c];
          const double nr = m.re * pr[l] - m.im * pr[L + l], ni = m.re * pr[L + l] + m.im * pr[l];
          acc[l] += pl[l] * nr + pl[L + l] * ni;
        }
      }
    }
  }
  for (int l = 0; l < L; ++l) out[l] = acc[l];
}

/// i**ny
C y_phase(int ny) {
  switch (ny & 3) {
    case 0: return make_complex(1.0, 0.0);
    case 1: return make_complex(0.0, 1.0);
    case 2: return make_complex(-1.0, 0.0);
    default: return make_complex(0.0, -1.0);
  }
}

/// out[l] <- Tr(P rho_l) = sum_j phase(j) rho[j, j ^ flip].
template <int L>
void trace_pauli(const double* v, int n, const PauliTerm& t, double* out) {
  double sr[L] = {}, si[L] = {};
  for (Index j = 0; j < (Index(1) << n); ++j) {
    const double* p = v + 2 * L * ((j << n) | (j ^ Index(t.flip)));
    const double sign = parity(Mask(j) & t.sign) ? -1.0 : 1.0;
    for (int l = 0; l < L; ++l) {
      sr[l] += sign * p[l];
      si[l] += sign * p[L + l];
    }
  }
  const C ph = y_phase(t.ny);
  for (int l = 0; l < L; ++l) out[l] = ph.re * sr[l] - ph.im * si[l];
}

/// v += weight[l] vec(P) per lane: P[j ^ flip, j] = phase(j).
template <int L>
void add_pauli(double* v, int n, const PauliTerm& t, const double* weight) {
  const C ph = y_phase(t.ny);
  for (Index j = 0; j < (Index(1) << n); ++j) {
    double* p = v + 2 * L * (((j ^ Index(t.flip)) << n) | j);
    const double sign = parity(Mask(j) & t.sign) ? -1.0 : 1.0;
    for (int l = 0; l < L; ++l) {
      p[l] += sign * ph.re * weight[l];
      p[L + l] += sign * ph.im * weight[l];
    }
  }
}

// ----------------------------------------------------------------------------- one call
bool cancelled(const int* flag) { return flag != nullptr && __atomic_load_n(flag, __ATOMIC_RELAXED) != 0; }

/// One pass of a VJP segment's forward: covariant block ``two`` after run ``run[0]`` on its first
/// wire and ``run[1]`` on its second (-1: none), or block run[0] alone (two -1).
struct SegmentPass {
  int two;
  int run[2];
};

/// Where each of a spread state's index bits is held (Context::spread): at[b] is the physical bit
/// of logical bit b (2n-1-q wire q's row, n-1-q its column); physical bits 0-2 pick the lane.
struct Layout {
  int8_t at[2 * cpu::kMaxDensityQubits];
};

constexpr int kSpreadBits = 3;  ///< a spread state's lane bits (8 lanes)

/// A worker's scratch for ``L`` lanes (allocated on its first block, by that worker).
struct Worker {
  double* states;    ///< the density matrices (state_doubles each)
  C* dense;          ///< [L][256] per-lane dense matrices
  double* values;    ///< [re, im][256 * L]: mat's values
  C* run;            ///< vjp: (2 max_run + 4) 16 lane vectors: a one-qubit run's 4x4 steps and products
  double* grams;     ///< vjp: [16 * 2 L]
  double* grad;      ///< vjp: [L][n_angles]
  double* trig;      ///< [L][2 n_angles]: each lane's half_angle_table
  const double** inputs;  ///< vjp: [stride] the state before each block of a segment, in the order run
  int* order;             ///< vjp: [stride] the segment's blocks in the order run
  struct SegmentPass* passes;  ///< vjp: [stride] the segment's forward passes
  Sparse mat;        ///< the block's matrix, per lane
  Layout lay;        ///< spread: the running state's layout
  Layout lam_lay;    ///< spread: lam's layout (vjp)
  Layout* input_lay; ///< spread, vjp: [stride] the layout of each of w.inputs
  Layout* ckpt_lay;  ///< spread, vjp: the layout of each checkpoint
};

struct Context {
  const DensityJob* job;
  int nbits;               ///< the passes' index bits: 2 n, or 2 n - kSpreadBits when spread
  Index state_doubles;     ///< one state of L lanes (spread: one sample's)
  bool spread;             ///< DensityJob::spread: each state is one sample's, its index's low
                           ///< kSpreadBits bits the lanes (Pauli basis only; see make_room)
  int states;              ///< states per worker
  int max_run;
  bool hermitian;          ///< DensityJob::hermitian
  bool pauli;              ///< DensityJob::pauli: states hold Pauli coefficients (real)
  const double* channel_ptm;  ///< pauli: [n_channels][16] each one-qubit channel's real 4x4
  bool keep_identity;      ///< pauli: every one-qubit gate's channel keeps Tr(rho) to 1e-14, so the
                           ///< forward one-wire passes keep the coefficient of I (decided per call,
                           ///< not per lane block: results must not depend on how samples are grouped)
  const Block* blocks;
  Worker* workers;
  PauliTerm* terms;
  int failed;              ///< set when a worker could not allocate
};

void* aligned(size_t bytes) { return aligned_alloc(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment); }

bool setup_worker(const Context& ctx, Worker& w, int L) {
  const DensityJob& job = *ctx.job;
  w.states = static_cast<double*>(
      allocate_workspace(sizeof(double) * size_t(ctx.state_doubles) * size_t(ctx.states)));
  w.dense = static_cast<C*>(aligned(sizeof(C) * L * kMaxEntries));
  w.values = static_cast<double*>(aligned(sizeof(double) * 2 * kMaxEntries * L));
  w.run = static_cast<C*>(aligned(sizeof(C) * L * (2 * ctx.max_run + 4) * 16));
  w.grams = static_cast<double*>(aligned(sizeof(double) * 16 * 2 * L));
  w.grad = static_cast<double*>(aligned(sizeof(double) * L * (job.n_angles > 0 ? job.n_angles : 1)));
  const size_t stride = job.stride > 0 ? size_t(job.stride) : 1;
  w.inputs = static_cast<const double**>(aligned(sizeof(double*) * stride));
  w.order = static_cast<int*>(aligned(sizeof(int) * stride));
  w.passes = static_cast<SegmentPass*>(aligned(sizeof(SegmentPass) * stride));
  w.input_lay = static_cast<Layout*>(aligned(sizeof(Layout) * stride));
  w.ckpt_lay = static_cast<Layout*>(aligned(sizeof(Layout) * (size_t(job.n_blocks) / stride + 2)));
  w.trig = static_cast<double*>(aligned(sizeof(double) * L * 2 * (job.n_angles > 0 ? job.n_angles : 1)));
  w.mat.re = w.values;
  w.mat.im = w.values + kMaxEntries * L;
  return w.states && w.dense && w.values && w.run && w.grams && w.grad && w.inputs && w.order && w.passes && w.trig &&
         w.input_lay && w.ckpt_lay;
}

void free_worker(Worker& w) {
  free(w.states);
  free(w.dense);
  free(w.values);
  free(w.run);
  free(w.grams);
  free(w.grad);
  free(w.inputs);
  free(w.order);
  free(w.passes);
  free(w.trig);
  free(w.input_lay);
  free(w.ckpt_lay);
}

/// Wire i (0 or 1) of block b.
int block_wire(const Context& ctx, const Block& b, int i) { return ctx.job->gates[4 * b.lo + 1 + i]; }

// ----------------------------------------------------------------------------- spread states
// A spread state (Context::spread) holds one sample's Pauli coefficients in the lane layout
// itself: an index's low kSpreadBits bits pick the lane, the rest the entry, so every pass above
// vectorises over eight of the sample's entries (its lanes sharing every coefficient) and a state
// is 8x smaller than eight samples' (512 KiB at 8 qubits, in L2; 8 MiB at 10, in L3), and so are
// the VJP's kept states. A pass cannot act on a lane bit, so the index bits are permuted as the
// program runs: before a pass whose bits sit in lanes they are exchanged with entry bits the
// program needs last (make_room, one shuffle pass), and the VJP's backward sweep brings lam to the
// layout each kept input had (relayout).

/// The logical bits of wire q: its row bit, then its column bit.
void wire_bits(int n, int q, int* bits) {
  bits[0] = 2 * n - 1 - q;
  bits[1] = n - 1 - q;
}

/// The kernels' bit positions of logical bits ``bits`` (nb) under ``lay``: a spread state's entry
/// bits, else the bits themselves.
void pass_bits(const Context& ctx, const Layout& lay, const int* bits, int nb, int* out) {
  for (int i = 0; i < nb; ++i) out[i] = ctx.spread ? lay.at[bits[i]] - kSpreadBits : bits[i];
}

/// The layout a spread state starts in: every bit where the lane-per-sample layout has it.
void initial_layout(const Context& ctx, Layout& lay) {
  for (int b = 0; b < 2 * ctx.job->n_qubits; ++b) lay.at[b] = static_cast<int8_t>(b);
}

/// The offset in a spread state of the entry with logical index ``logical``.
Index spread_offset(const Context& ctx, const Layout& lay, Index logical) {
  Index at = 0;
  for (int b = 0; b < 2 * ctx.job->n_qubits; ++b) {
    if ((logical >> b) & 1) at |= Index(1) << lay.at[b];
  }
  return at;
}

/// Shuffle masks that exchange lane bit p between two vectors x, y (entry bit q 0 and 1): x keeps
/// its lanes with bit p clear and takes y's with bit p clear into the others; y keeps its lanes
/// with bit p set and takes x's with bit p set into the others.
typedef long long LaneMask __attribute__((vector_size(8 * sizeof(long long))));
const LaneMask kKeepClear[kSpreadBits] = {{0, 8, 2, 10, 4, 12, 6, 14}, {0, 1, 8, 9, 4, 5, 12, 13},
                                          {0, 1, 2, 3, 8, 9, 10, 11}};
const LaneMask kKeepSet[kSpreadBits] = {{1, 9, 3, 11, 5, 13, 7, 15}, {2, 3, 10, 11, 6, 7, 14, 15},
                                        {4, 5, 6, 7, 12, 13, 14, 15}};

/// Exchanges physical lane bit lane[i] with physical entry bit entry[i], i < K <= kSpreadBits, of a
/// spread state of 2**entry_bits lane vectors in one pass: per group of 2**K vectors (the K entry
/// bits varying), one stage of two-vector shuffles per pair. (With K = 3 an 8x8 transpose: every
/// lane bit leaves for the price of one.)
template <int K>
void exchange_lane_bits_k(double* v, int entry_bits, const int* lane, const int* entry) {
  typedef LaneVector<8>::type V;
  constexpr int D = 1 << K;
  int bits[K], sorted[K];
  Index offs[D];
  LaneMask clear[K], set[K];
  for (int i = 0; i < K; ++i) {
    bits[i] = entry[i] - kSpreadBits;
    clear[i] = kKeepClear[lane[i]];
    set[i] = kKeepSet[lane[i]];
  }
  layout(bits, K, offs, sorted);  // pair i is bit K-1-i of a group's vector index
  const Index groups = Index(1) << (entry_bits - K), holes = group_bits(sorted, K);
  Index base = 0;
  for (Index g = 0; g < groups; ++g, base = next_group(base, holes)) {
    V x[D];
    load_vectors<D>(v, base, offs, x);
#pragma GCC unroll 3
    for (int i = 0; i < K; ++i) {
      const int step = 1 << (K - 1 - i);
#pragma GCC unroll 8
      for (int j = 0; j < D; ++j) {
        if (j & step) continue;
        const V a = x[j], b = x[j | step];
        x[j] = __builtin_shuffle(a, b, clear[i]);
        x[j | step] = __builtin_shuffle(a, b, set[i]);
      }
    }
    store_vectors<D>(v, base, offs, x);
  }
}

/// exchange_lane_bits_k for k = 1, 2 or 3 pairs.
void exchange_lane_bits(double* v, int entry_bits, const int* lane, const int* entry, int k) {
  if (k == 1) exchange_lane_bits_k<1>(v, entry_bits, lane, entry);
  else if (k == 2) exchange_lane_bits_k<2>(v, entry_bits, lane, entry);
  else exchange_lane_bits_k<3>(v, entry_bits, lane, entry);
}

/// lay after physical bits p and q traded their logical bits.
void swap_in_layout(const Context& ctx, Layout& lay, int p, int q) {
  for (int b = 0; b < 2 * ctx.job->n_qubits; ++b) {
    if (lay.at[b] == p) lay.at[b] = static_cast<int8_t>(q);
    else if (lay.at[b] == q) lay.at[b] = static_cast<int8_t>(p);
  }
}

/// exchange_lane_bits on spread state v held in layout ``lay`` (updated).
void exchange_in_layout(const Context& ctx, double* v, Layout& lay, const int* lane, const int* entry, int k) {
  if (k == 0) return;
  exchange_lane_bits(v, ctx.nbits, lane, entry, k);
  for (int i = 0; i < k; ++i) swap_in_layout(ctx, lay, lane[i], entry[i]);
}

/// Swaps physical bits p < q of spread state v held in layout ``lay`` (updated): two lane bits
/// inside each vector, a lane bit with an entry bit by exchange_lane_bits, two entry bits by moving
/// whole vectors.
void swap_physical(const Context& ctx, double* v, Layout& lay, int p, int q) {
  if (p == q) return;
  if (p > q) {
    const int t = p;
    p = q;
    q = t;
  }
  if (p < kSpreadBits && q >= kSpreadBits) {
    exchange_in_layout(ctx, v, lay, &p, &q, 1);
    return;
  }
  const Index entries = Index(1) << ctx.nbits;
  if (q < kSpreadBits) {
    for (Index e = 0; e < entries; ++e) {
      double* x = v + 8 * e;
      for (int l = 0; l < 8; ++l) {
        const int m = l ^ (1 << p) ^ (1 << q);
        if (((l >> p) & 1) && !((l >> q) & 1)) {
          const double t = x[l];
          x[l] = x[m];
          x[m] = t;
        }
      }
    }
  } else {
    int sorted[2] = {p - kSpreadBits, q - kSpreadBits};
    const Index one = Index(1) << sorted[0], other = Index(1) << sorted[1];
    for (Index i = 0; i < entries / 4; ++i) {
      const Index base = insert_zeros(i, sorted, 2);
      double t[8];
      __builtin_memcpy(t, v + 8 * (base | one), sizeof(t));
      __builtin_memcpy(v + 8 * (base | one), v + 8 * (base | other), sizeof(t));
      __builtin_memcpy(v + 8 * (base | other), t, sizeof(t));
    }
  }
  swap_in_layout(ctx, lay, p, q);
}

/// Before a pass of block k (or a run's pass at block k) on logical bits ``bits`` (nb) of state v:
/// when spread and some of them sit in lanes, one pass exchanges those lane bits, and every other
/// lane bit the program needs sooner than an entry bit's, with the entry bits whose wires it needs
/// last from block k on (Belady's choice: the fewest exchanges later).
void make_room(const Context& ctx, Layout& lay, double* v, const int* bits, int nb, int k) {
  if (!ctx.spread) return;
  bool any = false;
  for (int i = 0; i < nb; ++i) any = any || lay.at[bits[i]] < kSpreadBits;
  if (!any) return;
  const int n = ctx.job->n_qubits;
  int next[cpu::kMaxDensityQubits];  // the first block after k on each wire
  for (int q = 0; q < n; ++q) next[q] = ctx.job->n_blocks;
  for (int j = ctx.job->n_blocks - 1; j > k; --j) {
    const Block& b = ctx.blocks[j];
    for (int i = 0; i < (b.two ? 2 : 1); ++i) next[block_wire(ctx, b, i)] = j;
  }
  int use[2 * cpu::kMaxDensityQubits];  // by physical bit: when its wire is needed next
  bool needed[2 * cpu::kMaxDensityQubits];
  for (int b = 0; b < 2 * n; ++b) {
    needed[lay.at[b]] = false;
    use[lay.at[b]] = next[b >= n ? 2 * n - 1 - b : n - 1 - b];
  }
  for (int i = 0; i < nb; ++i) needed[lay.at[bits[i]]] = true;
  int lane[kSpreadBits], entry[kSpreadBits], count = 0;
  bool taken[2 * cpu::kMaxDensityQubits] = {};
  for (int round = 0; round < 2; ++round) {  // the lane bits the pass needs, then the others
    for (int p = 0; p < kSpreadBits; ++p) {
      if (needed[p] != (round == 0)) continue;
      int best = -1;
      for (int q = kSpreadBits; q < 2 * n; ++q) {
        if (!needed[q] && !taken[q] && (best < 0 || use[q] > use[best])) best = q;
      }
      if (best < 0 || (!needed[p] && use[best] <= use[p])) continue;
      taken[best] = true;
      lane[count] = p;
      entry[count++] = best;
    }
  }
  exchange_in_layout(ctx, v, lay, lane, entry, count);
}

/// Spread state v from layout ``lay`` to ``want`` (lay updated): the lane bits ``want`` holds in
/// lanes come in by one exchange pass, then any bit still misplaced by a swap pass each.
void relayout(const Context& ctx, double* v, Layout& lay, const Layout& want) {
  if (!ctx.spread) return;
  int lane[kSpreadBits], entry[kSpreadBits], count = 0;
  for (int b = 0; b < 2 * ctx.job->n_qubits; ++b) {
    if (want.at[b] < kSpreadBits && lay.at[b] >= kSpreadBits) {
      lane[count] = want.at[b];
      entry[count++] = lay.at[b];
    }
  }
  exchange_in_layout(ctx, v, lay, lane, entry, count);
  for (int b = 0; b < 2 * ctx.job->n_qubits; ++b) swap_physical(ctx, v, lay, lay.at[b], want.at[b]);
}

/// m's pattern <- dense 4x4 per lane (its values set by the caller): the one-wire passes and the
/// Gram passes take dense matrices (the pattern of a run is rarely sparser).
void set_dense_pattern(Sparse& m, bool complex_values) {
  m.k = 2;
  m.shared = false;
  m.real = !complex_values;
  for (int r = 0; r <= 4; ++r) m.row_start[r] = 4 * r;
  m.nnz = 16;
  for (int e = 0; e < 16; ++e) m.col[e] = static_cast<uint8_t>(e & 3);
}

/// Lane l of v (v itself for one lane).
template <int L>
HDQNN_INLINE double lane_of(const typename LaneVector<L>::type& v, int l) {
  if constexpr (L == 1) {
    (void)l;
    return v;
  } else {
    return v[l];
  }
}

/// The lane vector of L doubles at p.
template <int L>
HDQNN_INLINE typename LaneVector<L>::type lane_vector(const double* p) {
  typename LaneVector<L>::type v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

/// out <- a b for real 4x4 lane matrices.
template <class V>
void real_matmul4(const V* a, const V* b, V* out) {
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      V acc = a[i * 4] * b[j];
      for (int k = 1; k < 4; ++k) acc += a[i * 4 + k] * b[k * 4 + j];
      out[i * 4 + j] = acc;
    }
  }
}

/// out <- chan a (chan a channel's shared real 4x4, skipping its zeros; null: a itself).
template <class V>
void apply_channel4(const double* chan, const V* a, V* out) {
  if (chan == nullptr) {
    for (int e = 0; e < 16; ++e) out[e] = a[e];
    return;
  }
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) {
      V acc = V{} + 0.0;
      for (int k = 0; k < 4; ++k) {
        if (chan[i * 4 + k] != 0.0) acc += chan[i * 4 + k] * a[k * 4 + j];
      }
      out[i * 4 + j] = acc;
    }
  }
}

/// The channel after gate g as a real 4x4 (Pauli basis), or null for a noiseless gate.
const double* channel_ptm_of(const Context& ctx, int g) {
  const int ch = ctx.job->chan_idx[g];
  return ch >= 0 ? ctx.channel_ptm + 16 * ch : nullptr;
}

/// The Pauli digits a rotation gate (rx, ry, rz, p) keeps, besides I (``fixed``), and turns (a
/// towards b); false for any other gate.
bool rotation_axes(int code, int& fixed, int& a, int& b) {
  if (code == kGateRx) fixed = 1;
  else if (code == kGateRy) fixed = 2;
  else if (code == kGateRz || code == kGateP) fixed = 3;
  else return false;
  static constexpr int kFrom[4] = {0, 2, 3, 1}, kTo[4] = {0, 3, 1, 2};  // rx: Y -> Z, ry: Z -> X, rz: X -> Y
  a = kFrom[fixed];
  b = kTo[fixed];
  return true;
}

/// r <- the Pauli-transfer matrix of rotation gate ``code`` (rx, ry, rz, or p: rz's up to a phase)
/// from its half-angle cosine c and sine s, every lane at once: the rotation by the full angle
/// (cos = c^2 - s^2, sin = 2 c s) of the two Pauli axes it does not fix, with no complex products;
/// with ``derivative``, its derivative by the angle instead (cos' = -sin, sin' = cos on those axes,
/// zero elsewhere). False (r untouched) for any other gate.
template <class V>
bool rotation_ptm(int code, const V& c, const V& s, V* r, bool derivative = false) {
  int fixed, a, b;
  if (!rotation_axes(code, fixed, a, b)) return false;
  const V zero = V{} + 0.0, cos_full = c * c - s * s, sin_full = 2.0 * c * s;
  const V diagonal = derivative ? -sin_full : cos_full, turn = derivative ? cos_full : sin_full;
  for (int e = 0; e < 16; ++e) r[e] = zero;
  if (!derivative) r[0] = r[5 * fixed] = zero + 1.0;
  r[5 * a] = r[5 * b] = diagonal;
  r[4 * b + a] = turn;  // the image of a gains + sin b
  r[4 * a + b] = -turn;  // the image of b gains - sin a
  return true;
}

/// r <- the real (Pauli-basis) matrix of one-qubit run ``b`` in every lane: each gate's U (x)
/// conj(U) taken to the Pauli basis, times its channel's precomputed real matrix, multiplied up in
/// real arithmetic (a quarter of run_matrix_lanes' complex products). With ``steps``, also each
/// gate's matrix at steps[16 i] and the products of the gates before it at prefix[16 i], i = g - lo
/// = 0 .. length, as run_matrix_lanes.
template <int L>
void pauli_run_lanes(const Context& ctx, const Block& b, const double* const* trig, typename LaneVector<L>::type* r,
                     typename LaneVector<L>::type* steps = nullptr, typename LaneVector<L>::type* prefix = nullptr) {
  typedef typename LaneVector<L>::type V;
  typedef Complex<V> CV;
  const DensityJob& job = *ctx.job;
  const V zero = V{} + 0.0, one = V{} + 1.0;
  for (int e = 0; e < 16; ++e) r[e] = e % 5 == 0 ? one : zero;
  if (prefix != nullptr) {
    for (int e = 0; e < 16; ++e) prefix[e] = r[e];
  }
  for (int g = b.lo; g <= b.hi; ++g) {
    V c[kMaxGateAngles], s[kMaxGateAngles];
    lane_half_angles<L>(job, g, trig, c, s);
    V gate[16], local[16], next[16];
    V* step = steps != nullptr ? steps + 16 * (g - b.lo) : local;
    if (!rotation_ptm(job.gates[4 * g], c[0], s[0], gate)) {
      CV u[4], t[16];
      single_qubit_matrix<V, double>(job.gates[4 * g], c, s, 1, u);
      for (int r0 = 0; r0 < 2; ++r0) {
        for (int c0 = 0; c0 < 2; ++c0) {
          for (int r1 = 0; r1 < 2; ++r1) {
            for (int c1 = 0; c1 < 2; ++c1) t[(2 * r0 + c0) * 4 + 2 * r1 + c1] = u[r0 * 2 + r1] * conj(u[c0 * 2 + c1]);
          }
        }
      }
      pauli_of_run(t, gate);
    }
    apply_channel4(channel_ptm_of(ctx, g), gate, step);
    real_matmul4(step, r, next);
    for (int e = 0; e < 16; ++e) r[e] = next[e];
    if (prefix != nullptr) {
      for (int e = 0; e < 16; ++e) prefix[16 * (g - b.lo + 1) + e] = next[e];
    }
  }
}

/// dr <- d/d(angle ``which``) of one-qubit gate ``code``'s Pauli-transfer matrix in every lane,
/// from its half angles: rotation_ptm's derivative for a rotation, else M (dU (x) conj(U) + U (x)
/// conj(dU)) M^-1 from the complex matrices.
template <int L>
void gate_ptm_derivative(int code, const typename LaneVector<L>::type* c, const typename LaneVector<L>::type* s,
                         int which, typename LaneVector<L>::type* dr) {
  typedef typename LaneVector<L>::type V;
  typedef Complex<V> CV;
  if (rotation_ptm(code, c[0], s[0], dr, true)) return;
  CV u[4], d[4], t[16];
  single_qubit_matrix<V, double>(code, c, s, 1, u);
  single_qubit_matrix_derivative<V, double>(code, c, s, 1, which, d);
  for (int r0 = 0; r0 < 2; ++r0) {
    for (int c0 = 0; c0 < 2; ++c0) {
      for (int r1 = 0; r1 < 2; ++r1) {
        for (int c1 = 0; c1 < 2; ++c1) {
          t[(2 * r0 + c0) * 4 + 2 * r1 + c1] =
              mul_add(d[r0 * 2 + r1] * conj(u[c0 * 2 + c1]), u[r0 * 2 + r1], conj(d[c0 * 2 + c1]));
        }
      }
    }
  }
  pauli_of_run(t, dr);
}

/// The gradients of one-qubit run ``b``'s angles in the Pauli basis, every lane at once, from its
/// real steps and prefixes (pauli_run_lanes) and the Gram matrix g[e * L + l] of lam (as it comes
/// in) and rho: an angle of gate g gets sum_ij (S_hi ... S_(g+1) dS_g Q_g)_ij G_ij, with dS_g = C_g
/// M (dU (x) conj(U) + U (x) conj(dU)) M^-1, all real.
template <int L>
void pauli_run_gradients(const Context& ctx, Worker& w, const Block& b, const double* const* trig,
                         const typename LaneVector<L>::type* steps, const typename LaneVector<L>::type* prefix,
                         const double* g) {
  typedef typename LaneVector<L>::type V;
  typedef Complex<V> CV;
  const DensityJob& job = *ctx.job;
  const int na = job.n_angles;
  const V zero = V{} + 0.0, one = V{} + 1.0;
  V gram[16];
  for (int e = 0; e < 16; ++e) gram[e] = lane_vector<L>(g + e * L);
  V after[16], tmp[16];  // S_hi ... S_(g+1)
  for (int e = 0; e < 16; ++e) after[e] = e % 5 == 0 ? one : zero;
  for (int i = b.hi - b.lo; i >= 0; --i) {
    const int gate = b.lo + i;
    const int32_t* row = job.gates + 4 * gate;
    if (!job.constant[gate] && row[3] >= 0) {
      V c[kMaxGateAngles], s[kMaxGateAngles];
      lane_half_angles<L>(job, gate, trig, c, s);
      for (int j = 0; j < gate_info(row[0]).n_angles; ++j) {
        V dgate[16], dstep[16], left[16], full[16];
        gate_ptm_derivative<L>(row[0], c, s, j, dgate);
        apply_channel4(channel_ptm_of(ctx, gate), dgate, dstep);
        real_matmul4(after, dstep, left);
        real_matmul4(left, prefix + 16 * i, full);
        V total = full[0] * gram[0];
        for (int e = 1; e < 16; ++e) total += full[e] * gram[e];
        for (int l = 0; l < L; ++l) w.grad[l * na + row[3] + j] += lane_of<L>(total, l);
      }
    }
    real_matmul4(after, steps + 16 * i, tmp);
    for (int e = 0; e < 16; ++e) after[e] = tmp[e];
  }
}

/// m (dim x dim, rho's basis, forward) <- the matrix a pass applies: m itself or its adjoint
/// (dagger) in rho's basis, R = M m M^-1 or its transpose (the adjoint of a real matrix) in the
/// Pauli basis.
void to_pass_matrix(bool pauli, C* m, int k, bool adjoint) {
  const int dim = 1 << k;
  C tmp[kMaxEntries];
  if (pauli && k == 2) {
    double r[16];
    pauli_of_run(m, r);
    for (int e = 0; e < 16; ++e) m[adjoint ? (e & 3) * 4 + (e >> 2) : e] = make_complex(r[e], 0.0);
  } else if (pauli) {
    to_pauli(m, k, tmp);
    if (adjoint) transpose(tmp, m, dim);
    else for (int i = 0; i < dim * dim; ++i) m[i] = tmp[i];
  } else if (adjoint) {
    dagger(m, tmp, dim);
    for (int i = 0; i < dim * dim; ++i) m[i] = tmp[i];
  }
}

/// Per-lane superoperators (or their adjoints) of a non-fixed block, packed into w.mat.
template <int L>
void lane_matrices(const Context& ctx, Worker& w, const Block& b, const double* const* trig, bool adjoint) {
  const int k = b.two ? 4 : 2, dim = 1 << k, entries = dim * dim;
  if (!b.two && ctx.pauli) {  // every lane's real matrix at once, into w.mat (dense)
    typename LaneVector<L>::type r[16];
    pauli_run_lanes<L>(ctx, b, trig, r);
    for (int e = 0; e < 16; ++e) {
      const int at = adjoint ? (e & 3) * 4 + (e >> 2) : e;
      for (int l = 0; l < L; ++l) w.mat.re[at * L + l] = lane_of<L>(r[e], l);
    }
    set_dense_pattern(w.mat, false);
    return;
  }
  bool built = false;
  if constexpr (L > 1) {
    if (!b.two) {
      Complex<typename LaneVector<L>::type> mv[16];
      run_matrix_lanes<L>(*ctx.job, b, trig, mv);
      for (int l = 0; l < L; ++l) {
        for (int e = 0; e < 16; ++e) w.dense[l * entries + e] = make_complex(mv[e].re[l], mv[e].im[l]);
      }
      built = true;
    }
  }
  for (int l = 0; l < L; ++l) {
    C* d = w.dense + l * entries;  // compact: pack reads lane l at l * entries
    if (!built) block_matrix(*ctx.job, b, trig[l], d);
    to_pass_matrix(ctx.pauli, d, k, adjoint);
  }
  pack(w.dense, k, L, false, w.mat);
}

/// dst <- m src in the state's basis (dst may be src); ``forward``: m is a block's forward matrix
/// (a one-wire one keeps the coefficient of I where Context::keep_identity says so).
template <int L>
void apply_pass(const Context& ctx, const double* src, double* dst, const int* bits, const Sparse& m,
                bool forward = false) {
  if (ctx.pauli) apply_real<L>(src, dst, ctx.nbits, bits, m, forward && m.k == 2 && ctx.keep_identity);
  else apply<L>(src, dst, ctx.nbits, bits, m, ctx.hermitian);
}

/// dst <- block k applied to src (dst may be src; a spread src in layout w.lay, its bits out of
/// the lanes: make_room); not a covariant block (its passes are chains).
template <int L>
void forward_block(const Context& ctx, Worker& w, int k, const double* const* trig, const double* src,
                   double* dst) {
  const Block& b = ctx.blocks[k];
  int bits[4];
  pass_bits(ctx, w.lay, b.bits, b.two ? 4 : 2, bits);
  if (b.fixed) {
    apply_pass<L>(ctx, src, dst, bits, b.fwd, true);
    return;
  }
  lane_matrices<L>(ctx, w, b, trig, false);
  apply_pass<L>(ctx, src, dst, bits, w.mat, true);
}

/// r <- one-qubit run b's real (Pauli-basis) forward matrix in every lane.
template <int L>
void run_lane_matrix(const Context& ctx, const Block& b, const double* const* trig,
                     typename LaneVector<L>::type* r) {
  if (!b.fixed) {
    pauli_run_lanes<L>(ctx, b, trig, r);
    return;
  }
  for (int e = 0; e < 16; ++e) r[e] = typename LaneVector<L>::type{} + 0.0;
  for (int row = 0; row < 4; ++row) {  // built once per call, packed, shared by the lanes
    for (int e = b.fwd.row_start[row]; e < b.fwd.row_start[row + 1]; ++e) r[4 * row + b.fwd.col[e]] += b.fwd.re[e];
  }
}

/// The one-qubit runs a forward pass holds back: on each wire, the product of those since the
/// wire's last pass, per lane.
template <int L>
struct PendingRuns {
  typedef typename LaneVector<L>::type V;
  bool held[cpu::kMaxDensityQubits];
  V product[cpu::kMaxDensityQubits][16];

  /// Holds run b (its wire's product <- b's matrix times it).
  void hold(const Context& ctx, const Block& b, const double* const* trig) {
    const int q = block_wire(ctx, b, 0);
    V m[16];
    run_lane_matrix<L>(ctx, b, trig, m);
    if (held[q]) {
      V next[16];
      real_matmul4(m, product[q], next);
      for (int e = 0; e < 16; ++e) product[q][e] = next[e];
    } else {
      for (int e = 0; e < 16; ++e) product[q][e] = m[e];
    }
    held[q] = true;
  }

  /// v <- covariant block k after the runs held on its wires (released), in one pass.
  void run_chain(const Context& ctx, Worker& w, int k, double* v) {
    const Block& b = ctx.blocks[k];
    Chain<L> c;
    c.block = &b;
    make_room(ctx, w.lay, v, b.bits, 4, k);
    pass_bits(ctx, w.lay, b.bits, 4, c.bits);
    const int q[2] = {block_wire(ctx, b, 0), block_wire(ctx, b, 1)};
    for (int i = 0; i < 2; ++i) {
      V* m = i == 0 ? c.a : c.b;
      const bool has = held[q[i]];
      if (has) {
        for (int e = 0; e < 16; ++e) m[e] = product[q[i]][e];
      }
      (i == 0 ? c.has_a : c.has_b) = has;
      held[q[i]] = false;
    }
    apply_chain<L>(ctx.keep_identity, v, ChainOut{nullptr, nullptr, v}, ctx.nbits, c);
  }

  /// v <- wire q's product applied to v, if any, in a pass of its own (at block k).
  void flush(const Context& ctx, Worker& w, int q, double* v, int k) {
    if (!held[q]) return;
    held[q] = false;
    for (int e = 0; e < 16; ++e) {
      for (int l = 0; l < L; ++l) w.mat.re[e * L + l] = lane_of<L>(product[q][e], l);
    }
    set_dense_pattern(w.mat, false);
    int logical[2], bits[2];
    wire_bits(ctx.job->n_qubits, q, logical);
    make_room(ctx, w.lay, v, logical, 2, k);
    pass_bits(ctx, w.lay, logical, 2, bits);
    apply_real<L>(v, v, ctx.nbits, bits, w.mat, ctx.keep_identity);
  }
};

/// v <- blocks [lo, hi) applied to v. In the Pauli basis the one-qubit runs on a wire wait for its
/// next two-qubit block (they commute with the blocks between, on other wires), multiplied into
/// one matrix; when that block is covariant they join its pass (a chain), else they run in a pass
/// of their own just before it. Which runs join depends on the program only, so results stay
/// independent of lanes and threads.
template <int L>
void forward_blocks(const Context& ctx, Worker& w, const double* const* trig, int lo, int hi, double* v) {
  if (!ctx.pauli) {  // (never spread)
    for (int k = lo; k < hi && !cancelled(ctx.job->cancel); ++k) forward_block<L>(ctx, w, k, trig, v, v);
    return;
  }
  PendingRuns<L> pending;
  const int n = ctx.job->n_qubits;
  for (int q = 0; q < n; ++q) pending.held[q] = false;
  for (int k = lo; k < hi; ++k) {
    if (cancelled(ctx.job->cancel)) return;
    const Block& b = ctx.blocks[k];
    if (!b.two) {
      pending.hold(ctx, b, trig);
      continue;
    }
    const int q0 = block_wire(ctx, b, 0), q1 = block_wire(ctx, b, 1);
    if (b.cov.ok) {
      pending.run_chain(ctx, w, k, v);
      continue;
    }
    pending.flush(ctx, w, q0, v, k);
    pending.flush(ctx, w, q1, v, k);
    make_room(ctx, w.lay, v, b.bits, 4, k);
    forward_block<L>(ctx, w, k, trig, v, v);
  }
  for (int q = 0; q < n; ++q) pending.flush(ctx, w, q, v, hi - 1);
}

/// The gradients of one-qubit run ``b``'s angles, every lane at once, from its steps and prefixes
/// (run_matrix_lanes) and w.grams (the Gram matrix of lam and rho in rho's basis on the run's wire):
/// with P_g = S_hi ... S_g, an angle of gate g gets 2 Re sum_ij (P_g (N (x) I) Q_g)_ij G_ij,
/// N = U^dagger dU.
template <int L>
void run_angle_gradients(const Context& ctx, Worker& w, const Block& b, const double* const* trig,
                         const Complex<typename LaneVector<L>::type>* steps,
                         const Complex<typename LaneVector<L>::type>* prefix) {
  typedef typename LaneVector<L>::type V;
  typedef Complex<V> CV;
  const DensityJob& job = *ctx.job;
  const int na = job.n_angles;
  const V zero = V{} + 0.0, one = V{} + 1.0;
  CV pre[16], tmp[16];
  for (int e = 0; e < 16; ++e) pre[e] = make_complex(e % 5 == 0 ? one : zero, zero);
  for (int i = b.hi - b.lo; i >= 0; --i) {
    const int g = b.lo + i;
    matmul_lanes(pre, steps + 16 * i, tmp);
    for (int e = 0; e < 16; ++e) pre[e] = tmp[e];
    const int32_t* row = job.gates + 4 * g;
    if (job.constant[g] || row[3] < 0) continue;
    V c[kMaxGateAngles], s[kMaxGateAngles];
    lane_half_angles<L>(job, g, trig, c, s);
    CV u[4], d[4];
    single_qubit_matrix<V, double>(row[0], c, s, 1, u);
    for (int j = 0; j < gate_info(row[0]).n_angles; ++j) {
      single_qubit_matrix_derivative<V, double>(row[0], c, s, 1, j, d);
      CV ntil[16], m[16];
      for (int e = 0; e < 16; ++e) ntil[e] = make_complex(zero, zero);
      for (int r = 0; r < 2; ++r) {
        for (int q = 0; q < 2; ++q) {
          const CV v = mul_add(conj(u[r]) * d[q], conj(u[2 + r]), d[2 + q]);
          ntil[(2 * r) * 4 + 2 * q] = v;
          ntil[(2 * r + 1) * 4 + 2 * q + 1] = v;
        }
      }
      matmul_lanes(pre, ntil, tmp);
      matmul_lanes(tmp, prefix + 16 * i, m);
      for (int l = 0; l < L; ++l) {
        double total = 0.0;
        for (int e = 0; e < 16; ++e) {
          const double* gr = w.grams + e * 2 * L;
          if constexpr (L == 1) total += m[e].re * gr[0] - m[e].im * gr[1];
          else total += m[e].re[l] * gr[l] - m[e].im[l] * gr[L + l];
        }
        w.grad[l * na + row[3] + j] += 2.0 * total;
      }
    }
  }
}

/// Backward step through a one-qubit run with angles on the passes' bit positions ``bits``: lam <-
/// (run)^dagger lam, the Gram matrix of lam (as it comes in) and rho taken in the same pass, then
/// each angle's gradient from it.
template <int L>
void backward_run(const Context& ctx, Worker& w, const Block& b, const double* const* trig, double* lam,
                  const double* rho, const int* bits) {
  typedef typename LaneVector<L>::type V;
  typedef Complex<V> CV;
  if (ctx.pauli) {
    V* steps = reinterpret_cast<V*>(w.run);  // w.run holds (2 max_run + 4) 16 complex lane vectors
    V* prefix = steps + ctx.max_run * 16;
    V r[16];
    pauli_run_lanes<L>(ctx, b, trig, r, steps, prefix);
    for (int e = 0; e < 16; ++e) {  // the adjoint: the transpose
      for (int l = 0; l < L; ++l) w.mat.re[((e & 3) * 4 + (e >> 2)) * L + l] = lane_of<L>(r[e], l);
    }
    set_dense_pattern(w.mat, false);
    double g[16 * L];
    if (ctx.keep_identity) gram_apply_real<L, true>(lam, rho, ctx.nbits, bits, w.mat, g);
    else gram_apply_real<L, false>(lam, rho, ctx.nbits, bits, w.mat, g);
    pauli_run_gradients<L>(ctx, w, b, trig, steps, prefix, g);
    return;
  }
  CV* steps = reinterpret_cast<CV*>(w.run);
  CV* prefix = steps + ctx.max_run * 16;
  CV whole[16];
  run_matrix_lanes<L>(*ctx.job, b, trig, whole, steps, prefix);
  for (int e = 0; e < 16; ++e) {  // the adjoint: the conjugate transpose
    const int at = (e & 3) * 4 + (e >> 2);
    for (int l = 0; l < L; ++l) {
      w.mat.re[at * L + l] = lane_of<L>(whole[e].re, l);
      w.mat.im[at * L + l] = -lane_of<L>(whole[e].im, l);
    }
  }
  set_dense_pattern(w.mat, true);
  gram_apply<L>(lam, rho, ctx.nbits, bits, w.mat, ctx.hermitian, w.grams);
  run_angle_gradients<L>(ctx, w, b, trig, steps, prefix);
}

/// Per lane, N (x) I of a two-qubit gate's N = U^dagger dU (angle ``which``) as a superoperator
/// on its group (N on the row bits) in the pass's basis: in rho's, 4x4 on the row bits (inner); in
/// the Pauli basis, the 16x16 real 2 Re(M (N (x) I) M^-1) (inner_real), at w.values[e * L + l].
template <int L>
void gate_generator(const Context& ctx, Worker& w, const Block& b, const double* const* trig, int which) {
  const DensityJob& job = *ctx.job;
  const int32_t* row = job.gates + 4 * b.lo;
  double c[kMaxGateAngles], s[kMaxGateAngles];
  C u[16], d[16], ud[16], n[16];
  for (int l = 0; l < L; ++l) {
    half_angles(job, b.lo, trig[l], c, s);
    gate_unitary(row[0], c, s, u);
    gate_derivative(row[0], c, s, which, d);
    dagger(u, ud, 4);
    matmul(ud, d, ctx.pauli ? n : w.dense + l * 16, 4);
    if (!ctx.pauli) continue;
    C sup[kMaxEntries], r[kMaxEntries];
    for (int i = 0; i < kMaxEntries; ++i) {
      sup[i] = (i >> 4 & 3) == (i & 3) ? n[(i >> 6) * 4 + (i >> 2 & 3)] : zero_c();
    }
    to_pauli(sup, 4, r);
    for (int e = 0; e < kMaxEntries; ++e) w.values[e * L + l] = 2.0 * r[e].re;
  }
}

/// lam <- (block k)^dagger lam, accumulating the gradients of its angles into w.grad; rho is the
/// state before the block (spread: both in layout w.lam_lay).
template <int L>
void backward_block(const Context& ctx, Worker& w, int k, const double* const* trig, double* lam,
                    const double* rho) {
  const DensityJob& job = *ctx.job;
  const Block& b = ctx.blocks[k];
  int bits[4];
  pass_bits(ctx, w.lam_lay, b.bits, b.two ? 4 : 2, bits);
  if (b.cov.ok) {  // fixed: no angle to differentiate
    apply_covariant_adjoint<L>(lam, ctx.nbits, bits, b.cov);
    return;
  }
  if (b.fixed) {
    apply_pass<L>(ctx, lam, lam, bits, b.adj);
    return;
  }
  if (!b.two) {
    backward_run<L>(ctx, w, b, trig, lam, rho, bits);
    return;
  }
  lane_matrices<L>(ctx, w, b, trig, true);
  apply_pass<L>(ctx, lam, lam, bits, w.mat);
  const int32_t* row = job.gates + 4 * b.lo;
  if (job.constant[b.lo] || row[3] < 0) return;
  // 2 Re Tr(lam_(g-1) (U^dagger dU on the row bits) rho_(g-1)) per angle
  for (int j = 0; j < gate_info(row[0]).n_angles; ++j) {
    gate_generator<L>(ctx, w, b, trig, j);
    double out[L];
    if (ctx.pauli) {
      inner_real<L, 4>(lam, rho, ctx.nbits, bits, w.values, out);
      for (int l = 0; l < L; ++l) w.grad[l * job.n_angles + row[3] + j] += out[l];
    } else {
      inner<L>(lam, rho, ctx.nbits, bits, w.dense, out);
      for (int l = 0; l < L; ++l) w.grad[l * job.n_angles + row[3] + j] += 2.0 * out[l];
    }
  }
}

/// v <- |0...0><0...0| in every lane: rho's entry 0, or the Pauli coefficient 1 of every string of
/// I and Z (the diagonal indices); a spread v in its initial layout (lay).
template <int L>
void initial_state(const Context& ctx, double* v, Layout& lay) {
  memset(v, 0, sizeof(double) * size_t(ctx.state_doubles));
  const int n = ctx.job->n_qubits;
  const Index ones = ctx.pauli ? Index(1) << n : 1;
  if (ctx.spread) {
    initial_layout(ctx, lay);
    for (Index j = 0; j < ones; ++j) v[spread_offset(ctx, lay, (j << n) | j)] = 1.0;
    return;
  }
  for (Index j = 0; j < ones; ++j) {
    for (int l = 0; l < L; ++l) v[L * ((j << n) | j) + l] = 1.0;
  }
}

/// probs[i] <- 2**-n sum_S z_S (-1)**popcount(i & S) in place: the diagonal of rho from its Pauli
/// coefficients z_S on the strings of I and Z (S: the Z wires), a Walsh-Hadamard transform.
void walsh_hadamard(double* probs, int n) {
  const Index dim = Index(1) << n;
  for (Index h = 1; h < dim; h <<= 1) {
    for (Index i = 0; i < dim; i += 2 * h) {
      for (Index j = i; j < i + h; ++j) {
        const double a = probs[j], b = probs[j + h];
        probs[j] = a + b;
        probs[j + h] = a - b;
      }
    }
  }
  const double scale = ldexp(1.0, -n);
  for (Index i = 0; i < dim; ++i) probs[i] *= scale;
}

template <int L>
void run_forward(const Context& ctx, Worker& w, const double* const* trig, double* v) {
  initial_state<L>(ctx, v, w.lay);
  forward_blocks<L>(ctx, w, trig, 0, ctx.job->n_blocks, v);
}

/// The passes of the forward through blocks [lo, hi) (into w.passes; returns their count): as
/// forward_blocks', but each wire holds one run at most (the VJP differentiates each run at its own
/// input state, so runs are not multiplied).
int plan_segment(const Context& ctx, Worker& w, int lo, int hi) {
  int held[cpu::kMaxDensityQubits];
  for (int q = 0; q < ctx.job->n_qubits; ++q) held[q] = -1;
  int count = 0;
  auto alone = [&](int k) { w.passes[count++] = SegmentPass{-1, {k, -1}}; };
  auto flush = [&](int q) {
    if (held[q] >= 0) alone(held[q]);
    held[q] = -1;
  };
  for (int k = lo; k < hi; ++k) {
    const Block& b = ctx.blocks[k];
    if (!ctx.pauli) {
      alone(k);
      continue;
    }
    const int q0 = block_wire(ctx, b, 0);
    if (!b.two) {
      flush(q0);
      held[q0] = k;
      continue;
    }
    const int q1 = block_wire(ctx, b, 1);
    if (b.cov.ok) {
      w.passes[count++] = SegmentPass{k, {held[q0], held[q1]}};
      held[q0] = held[q1] = -1;
      continue;
    }
    flush(q0);
    flush(q1);
    alone(k);
  }
  for (int q = 0; q < ctx.job->n_qubits; ++q) flush(q);
  return count;
}

/// Before segment pass ``pass`` on state v: make_room for the bits of the block it takes (the
/// two-qubit block of a chain, whose wires its runs share).
void make_room_for_pass(const Context& ctx, Layout& lay, double* v, const SegmentPass& pass) {
  const int first = pass.two < 0 ? pass.run[0] : pass.two;
  make_room(ctx, lay, v, ctx.blocks[first].bits, ctx.blocks[first].two ? 4 : 2, first);
}

/// c <- the chain of segment pass ``pass`` (a covariant block and the runs before it) in layout
/// ``lay``: its bit positions and its runs' forward matrices.
template <int L>
void pass_chain(const Context& ctx, const Layout& lay, const SegmentPass& pass, const double* const* trig,
                Chain<L>& c) {
  c.block = &ctx.blocks[pass.two];
  pass_bits(ctx, lay, c.block->bits, 4, c.bits);
  c.has_a = pass.run[0] >= 0;
  c.has_b = pass.run[1] >= 0;
  if (c.has_a) run_lane_matrix<L>(ctx, ctx.blocks[pass.run[0]], trig, c.a);
  if (c.has_b) run_lane_matrix<L>(ctx, ctx.blocks[pass.run[1]], trig, c.b);
}

/// The forward of one VJP segment, blocks [lo, hi) from the state in slots[0]: each pass writes
/// its output to a fresh slot where the block before needs its input kept (one with angles to
/// differentiate), else in place; a chain's pass also writes the state after its first run when
/// the second needs it. Fills w.order and w.inputs in the order the blocks ran; returns how many
/// ran, or -1 when cancelled. The last pass's output is never needed, so a block alone there only
/// records its input.
template <int L>
int segment_forward(const Context& ctx, Worker& w, const double* const* trig, int lo, int hi, double* slots) {
  const int n_passes = plan_segment(ctx, w, lo, hi);
  const Index sd = ctx.state_doubles;
  double* cur = slots;
  int used = 1, ran = 0;
  // records block k as run next and returns where its output goes
  auto place = [&](int k) {
    w.order[ran] = k;
    w.input_lay[ran] = w.lay;
    w.inputs[ran++] = cur;
    if (!ctx.blocks[k].fixed) cur = slots + sd * used++;
    return cur;
  };
  for (int p = 0; p < n_passes; ++p) {
    if (cancelled(ctx.job->cancel)) return -1;
    const SegmentPass& pass = w.passes[p];
    make_room_for_pass(ctx, w.lay, cur, pass);
    double* src = cur;
    if (pass.two < 0) {
      if (p + 1 == n_passes) {
        place(pass.run[0]);
        break;
      }
      forward_block<L>(ctx, w, pass.run[0], trig, src, place(pass.run[0]));
      continue;
    }
    Chain<L> c;
    pass_chain<L>(ctx, w.lay, pass, trig, c);
    ChainOut to{nullptr, nullptr, nullptr};
    if (c.has_a) to.after_a = place(pass.run[0]);
    if (c.has_b) {
      to.after_b = place(pass.run[1]);
      if (to.after_b == to.after_a) to.after_a = nullptr;  // b runs in place: a's output is only b's input
    }
    to.out = place(pass.two);  // fixed: where the last run's output went, or in place
    if (to.after_b == to.out) to.after_b = nullptr;
    if (to.after_a == to.out) to.after_a = nullptr;
    apply_chain<L>(ctx.keep_identity, src, to, ctx.nbits, c);
  }
  return ran;
}

/// lam <- sum_t grad_terms[b, t] P_t for the lane block's samples (the Heisenberg-picture
/// observable the VJP sweeps back), held in layout w.lam_lay when spread; w.grad <- 0.
template <int L>
void seed_lambda(const Context& ctx, Worker& w, double* lam, Index b0, int valid) {
  const DensityJob& job = *ctx.job;
  memset(lam, 0, sizeof(double) * size_t(ctx.state_doubles));
  for (int t = 0; t < job.n_terms; ++t) {
    double weight[L];
    bool any = false;
    for (int l = 0; l < L; ++l) {
      weight[l] = l < valid ? job.grad_terms[(b0 + l) * job.n_terms + t] : 0.0;
      any = any || weight[l] != 0.0;
    }
    if (!any) continue;
    if (ctx.spread) {  // one sample: its weight in lane 0's slot of lam's entry
      lam[spread_offset(ctx, w.lam_lay, pauli_index(ctx.terms[t], job.n_qubits))] += weight[0];
    } else if (ctx.pauli) {  // lam . c = sum_t g_t c_(P_t)
      double* p = lam + L * pauli_index(ctx.terms[t], job.n_qubits);
      for (int l = 0; l < L; ++l) p[l] += weight[l];
    } else {
      add_pauli<L>(lam, job.n_qubits, ctx.terms[t], weight);
    }
  }
  memset(w.grad, 0, sizeof(double) * size_t(L) * size_t(job.n_angles));
}

/// job.out's rows of the lane block's samples <- w.grad.
template <int L>
void write_gradients(const Context& ctx, const Worker& w, Index b0, int valid) {
  const DensityJob& job = *ctx.job;
  if (ctx.spread) {  // every lane held part of the one sample's sums
    for (int a = 0; a < job.n_angles; ++a) {
      double total = 0.0;
      for (int l = 0; l < L; ++l) total += w.grad[l * job.n_angles + a];
      job.out[b0 * job.n_angles + a] = total;
    }
    return;
  }
  for (int l = 0; l < valid; ++l) {
    memcpy(job.out + (b0 + l) * job.n_angles, w.grad + l * job.n_angles, sizeof(double) * size_t(job.n_angles));
  }
}

/// The VJP of one lane block: the state before every ``stride``-th block is kept on the forward,
/// and each segment is recomputed from it on the backward sweep (segment_forward), then stepped
/// back through in the reverse of the order its blocks ran.
template <int L>
void run_vjp(const Context& ctx, Worker& w, const double* const* trig, Index b0, int valid) {
  const DensityJob& job = *ctx.job;
  const int nb = job.n_blocks, stride = job.stride;
  const int n_ckpt = nb > 0 ? (nb + stride - 1) / stride : 1;  // as vjp_states counts them
  const Index sd = ctx.state_doubles;
  double* lam = w.states;
  double* slots = lam + sd;  // the running state and the kept inputs (vjp_states)
  double* ckpt = lam + sd * Index(ctx.states - n_ckpt);  // [n_ckpt], after the slots
  initial_state<L>(ctx, ckpt, w.lay);
  w.ckpt_lay[0] = w.lay;
  if (n_ckpt > 1) {  // up to the last checkpoint: the sweep recomputes the rest
    double* vec = slots;
    memcpy(vec, ckpt, sizeof(double) * size_t(sd));
    for (int c = 1; c < n_ckpt; ++c) {
      forward_blocks<L>(ctx, w, trig, (c - 1) * stride, c * stride, vec);
      if (cancelled(job.cancel)) return;
      memcpy(ckpt + sd * c, vec, sizeof(double) * size_t(sd));
      w.ckpt_lay[c] = w.lay;
    }
  }
  w.lam_lay = w.ckpt_lay[0];  // (spread: any layout; the sweep moves lam to each input's)
  seed_lambda<L>(ctx, w, lam, b0, valid);
  for (int c = n_ckpt - 1; c >= 0; --c) {
    const int lo = c * stride, hi = lo + stride < nb ? lo + stride : nb;
    memcpy(slots, ckpt + sd * c, sizeof(double) * size_t(sd));
    w.lay = w.ckpt_lay[c];
    const int ran = segment_forward<L>(ctx, w, trig, lo, hi, slots);
    if (ran < 0) return;
    for (int i = ran - 1; i >= 0; --i) {
      if (cancelled(job.cancel)) return;
      relayout(ctx, lam, w.lam_lay, w.input_lay[i]);
      backward_block<L>(ctx, w, w.order[i], trig, lam, w.inputs[i]);
    }
  }
  write_gradients<L>(ctx, w, b0, valid);
}

/// inv <- the inverse of every lane's real 4x4 r (invert_real per lane).
template <int L>
void invert_lanes(const typename LaneVector<L>::type* r, typename LaneVector<L>::type* inv) {
  double a[16], b[16], out[16 * L];
  for (int l = 0; l < L; ++l) {
    for (int e = 0; e < 16; ++e) a[e] = lane_of<L>(r[e], l);
    invert_real(a, 4, b);
    for (int e = 0; e < 16; ++e) out[e * L + l] = b[e];
  }
  for (int e = 0; e < 16; ++e) inv[e] = lane_vector<L>(out + e * L);
}

/// rho <- (block k)^-1 rho in place (spread: in layout w.lay, the block's bits out of the lanes): a
/// fixed block's inverse built once per call, a one-qubit run's per lane.
template <int L>
void inverse_block(const Context& ctx, Worker& w, int k, const double* const* trig, double* rho) {
  typedef typename LaneVector<L>::type V;
  const Block& b = ctx.blocks[k];
  int bits[4];
  pass_bits(ctx, w.lay, b.bits, b.two ? 4 : 2, bits);
  if (b.fixed) {
    apply_pass<L>(ctx, rho, rho, bits, b.inv, true);
    return;
  }
  V r[16], inv[16];
  pauli_run_lanes<L>(ctx, b, trig, r);
  invert_lanes<L>(r, inv);
  for (int e = 0; e < 16; ++e) {
    for (int l = 0; l < L; ++l) w.mat.re[e * L + l] = lane_of<L>(inv[e], l);
  }
  set_dense_pattern(w.mat, false);
  apply_real<L>(rho, rho, ctx.nbits, bits, w.mat, ctx.keep_identity);
}

/// The inverse sweep's step back through chain ``pass``: rho from the chain's output to its input,
/// lam back through it, the runs' gradients from the Grams (one pass: backward_chain_t).
template <int L>
void backward_chain(const Context& ctx, Worker& w, const SegmentPass& pass, const double* const* trig, double* rho,
                    double* lam) {
  typedef typename LaneVector<L>::type V;
  const Block& b = ctx.blocks[pass.two];
  BackChain<L> c;
  c.block = &b;
  pass_bits(ctx, w.lay, b.bits, 4, c.bits);
  for (int i = 0; i < 2; ++i) {
    c.has[i] = pass.run[i] >= 0;
    c.gram[i] = c.has[i] && !ctx.blocks[pass.run[i]].fixed;
    if (!c.has[i]) continue;
    V r[16];
    run_lane_matrix<L>(ctx, ctx.blocks[pass.run[i]], trig, r);
    invert_lanes<L>(r, c.inv[i]);
    for (int e = 0; e < 16; ++e) c.adj[i][e] = r[(e & 3) * 4 + (e >> 2)];
  }
  double g[2][16 * L];
  if (ctx.keep_identity) backward_chain_k<L, true>(rho, lam, ctx.nbits, c, g[0], g[1]);
  else backward_chain_k<L, false>(rho, lam, ctx.nbits, c, g[0], g[1]);
  V* steps = reinterpret_cast<V*>(w.run);
  V* prefix = steps + ctx.max_run * 16;
  for (int i = 0; i < 2; ++i) {
    if (!c.gram[i]) continue;
    const Block& run = ctx.blocks[pass.run[i]];
    V r[16];
    pauli_run_lanes<L>(ctx, run, trig, r, steps, prefix);
    pauli_run_gradients<L>(ctx, w, run, trig, steps, prefix, g[i]);
  }
}

/// The VJP of one lane block without kept states (DensityJob::inverse): the forward runs in place
/// through the passes plan_segment gives the whole program, noting each pass's layout; the sweep
/// back then undoes each pass on the final state while it steps lam back, so the two states it
/// holds stay in cache however many blocks the program has.
template <int L>
void run_vjp_inverse(const Context& ctx, Worker& w, const double* const* trig, Index b0, int valid) {
  const DensityJob& job = *ctx.job;
  double* lam = w.states;
  double* rho = lam + ctx.state_doubles;
  initial_state<L>(ctx, rho, w.lay);
  const int n_passes = plan_segment(ctx, w, 0, job.n_blocks);
  for (int p = 0; p < n_passes; ++p) {
    if (cancelled(job.cancel)) return;
    const SegmentPass& pass = w.passes[p];
    make_room_for_pass(ctx, w.lay, rho, pass);
    w.input_lay[p] = w.lay;
    if (pass.two < 0) {
      forward_block<L>(ctx, w, pass.run[0], trig, rho, rho);
      continue;
    }
    Chain<L> c;
    pass_chain<L>(ctx, w.lay, pass, trig, c);
    apply_chain<L>(ctx.keep_identity, rho, ChainOut{nullptr, nullptr, rho}, ctx.nbits, c);
  }
  w.lam_lay = w.lay;
  seed_lambda<L>(ctx, w, lam, b0, valid);
  for (int p = n_passes - 1; p >= 0; --p) {
    if (cancelled(job.cancel)) return;
    relayout(ctx, rho, w.lay, w.input_lay[p]);
    relayout(ctx, lam, w.lam_lay, w.input_lay[p]);
    const SegmentPass& pass = w.passes[p];
    if (pass.two >= 0) {
      backward_chain<L>(ctx, w, pass, trig, rho, lam);
      continue;
    }
    inverse_block<L>(ctx, w, pass.run[0], trig, rho);
    backward_block<L>(ctx, w, pass.run[0], trig, lam, rho);
  }
  write_gradients<L>(ctx, w, b0, valid);
}

template <int L>
void run_lane_block(const Context& ctx, Worker& w, Index block) {
  const DensityJob& job = *ctx.job;
  const Index b0 = ctx.spread ? block : block * L;
  const int valid = ctx.spread ? 1 : job.batch - b0 < L ? int(job.batch - b0) : L;
  const double* trig[L];  // each lane's half_angle_table (padding lanes repeat the last sample)
  for (int l = 0; l < L; ++l) {
    double* table = w.trig + l * 2 * job.n_angles;
    if (l == 0 || !ctx.spread) {
      half_angle_table(job, job.theta + (b0 + (l < valid ? l : valid - 1)) * job.n_angles, table);
    }
    trig[l] = ctx.spread ? w.trig : table;  // a spread state's lanes are one sample
  }
  if (job.task == DensityTask::kVjp) {
    if (job.inverse) run_vjp_inverse<L>(ctx, w, trig, b0, valid);
    else run_vjp<L>(ctx, w, trig, b0, valid);
    return;
  }
  double* v = w.states;
  run_forward<L>(ctx, w, trig, v);
  const int n = job.n_qubits;
  const Index dim = Index(1) << n;
  if (job.task == DensityTask::kExpval) {
    for (int t = 0; t < job.n_terms; ++t) {
      double out[L];
      if (ctx.spread) {
        out[0] = v[spread_offset(ctx, w.lay, pauli_index(ctx.terms[t], n))];
      } else if (ctx.pauli) {
        for (int l = 0; l < L; ++l) out[l] = v[L * pauli_index(ctx.terms[t], n) + l];
      } else {
        trace_pauli<L>(v, n, ctx.terms[t], out);
      }
      for (int l = 0; l < valid; ++l) job.out[(b0 + l) * job.n_terms + t] = out[l];
    }
  } else if (job.task == DensityTask::kProbabilities) {
    const Index stride = ctx.pauli ? L : 2 * L;  // doubles per entry
    for (int l = 0; l < valid; ++l) {
      double* probs = job.out + (b0 + l) * dim;
      for (Index i = 0; i < dim; ++i) {
        probs[i] = ctx.spread ? v[spread_offset(ctx, w.lay, (i << n) | i)] : v[stride * ((i << n) | i) + l];
      }
      if (ctx.pauli) walsh_hadamard(probs, n);
    }
  } else {
    for (int l = 0; l < valid; ++l) {
      double* o = job.out + (b0 + l) * 2 * dim * dim;
      for (Index e = 0; e < dim * dim; ++e) {
        o[2 * e] = v[2 * L * e + l];
        o[2 * e + 1] = v[2 * L * e + L + l];
      }
    }
  }
}

template <int L>
void body(void* raw, int worker, Index block) {
  Context& ctx = *static_cast<Context*>(raw);
  Worker& w = ctx.workers[worker];
  if (w.states == nullptr && !setup_worker(ctx, w, L)) {
    __atomic_store_n(&ctx.failed, 1, __ATOMIC_RELAXED);
    return;
  }
  if (__atomic_load_n(&ctx.failed, __ATOMIC_RELAXED) || cancelled(ctx.job->cancel)) return;
  run_lane_block<L>(ctx, w, block);
}

/// Doubles of resolve_blocks' pool per block: its forward, adjoint and inverse (re, im each).
constexpr int kPoolPerBlock = 6 * kMaxEntries;

/// b.inv (values from ``pool``) <- the inverse of fixed block b's Pauli-basis matrix m (k2 bits),
/// and a covariant block's inverse in that form (covariant_inverse).
void invert_fixed_block(Block& b, const C* m, int k2, double* pool) {
  const int dim = 1 << k2;
  double r[kMaxEntries], rinv[kMaxEntries];
  for (int i = 0; i < dim * dim; ++i) r[i] = m[i].re;
  C inv[kMaxEntries];
  invert_real(r, dim, rinv);
  for (int i = 0; i < dim * dim; ++i) inv[i] = make_complex(rinv[i], 0.0);
  b.inv.re = pool;
  b.inv.im = pool + kMaxEntries;
  pack(inv, k2, 1, true, b.inv);
  if (b.cov.ok) covariant_inverse(rinv, b.cov);
}

/// The blocks of the program, with the matrices of fixed blocks built (values from ``pool``; trig:
/// sample 0's half_angle_table, whose constant angles every sample shares).
void resolve_blocks(const DensityJob& job, Block* blocks, double* pool, const double* trig) {
  const int n = job.n_qubits;
  C m[kMaxEntries], a[kMaxEntries];
  for (int k = 0; k < job.n_blocks; ++k) {
    Block& b = blocks[k];
    b.lo = job.block_lo[k];
    b.hi = job.block_hi[k];
    const int32_t* row = job.gates + 4 * b.lo;
    b.two = gate_info(row[0]).n_wires == 2;
    b.fixed = 1;
    for (int g = b.lo; g <= b.hi; ++g) b.fixed = b.fixed && job.constant[g];
    const int nw = b.two ? 2 : 1;
    for (int i = 0; i < nw; ++i) {
      b.bits[i] = 2 * n - 1 - row[1 + i];
      b.bits[nw + i] = n - 1 - row[1 + i];
    }
    if (!b.fixed) continue;
    block_matrix(job, b, trig, m);
    const int k2 = b.two ? 4 : 2;
    to_pass_matrix(job.pauli != 0, m, k2, false);
    if (job.pauli) transpose(m, a, 1 << k2);  // the adjoint of a real matrix
    else dagger(m, a, 1 << k2);
    if (job.pauli && b.two) match_covariant(m, b.cov);
    b.fwd.re = pool + k * kPoolPerBlock;
    b.fwd.im = b.fwd.re + kMaxEntries;
    b.adj.re = b.fwd.im + kMaxEntries;
    b.adj.im = b.adj.re + kMaxEntries;
    pack(m, k2, 1, true, b.fwd);
    pack(a, k2, 1, true, b.adj);
    if (job.inverse) invert_fixed_block(b, m, k2, pool + k * kPoolPerBlock + 4 * kMaxEntries);
  }
}

/// ptm[16 c ...] <- the real (Pauli-basis) 4x4 of each channel row's one-qubit block (pauli_run_lanes
/// reads the rows one-qubit gates use; the others' are unused).
void channel_matrices(const DensityJob& job, double* ptm) {
  if (!job.pauli) return;
  for (int ch = 0; ch < job.n_channels; ++ch) {
    C t[16];
    for (int i = 0; i < 4; ++i) {
      for (int k = 0; k < 4; ++k) {
        const double* e = job.superops + 2 * (kMaxEntries * ch + i * kMaxDim + k);
        t[i * 4 + k] = make_complex(e[0], e[1]);
      }
    }
    pauli_of_run(t, ptm + 16 * ch);
  }
}

/// Whether every channel after a one-qubit gate has row I = (1, 0, 0, 0) to 1e-14 (trace
/// preserving; a unitary gate's row is that exactly, up to rounding).
bool one_qubit_channels_keep_trace(const DensityJob& job, const double* ptm) {
  if (!job.pauli) return false;
  for (int g = 0; g < job.n_gates; ++g) {
    const int ch = job.chan_idx[g];
    if (ch < 0 || gate_info(job.gates[4 * g]).n_wires != 1) continue;
    for (int c = 0; c < 4; ++c) {
      if (fabs(ptm[16 * ch + c] - (c == 0 ? 1.0 : 0.0)) > 1e-14) return false;
    }
  }
  return true;
}

template <int L>
int run_lanes(const DensityJob& job) {
  const int n = job.n_qubits;
  Context ctx;
  ctx.job = &job;
  ctx.spread = job.spread != 0;
  ctx.nbits = 2 * n - (ctx.spread ? kSpreadBits : 0);
  ctx.pauli = job.pauli != 0;
  ctx.state_doubles = ctx.spread ? Index(1) << (2 * n) : (ctx.pauli ? 1 : 2) * Index(L) << (2 * n);
  ctx.states = job.states;
  ctx.hermitian = job.hermitian != 0 && !ctx.pauli;
  ctx.max_run = 1;
  for (int k = 0; k < job.n_blocks; ++k) {
    const int len = job.block_hi[k] - job.block_lo[k] + 1;
    if (len > ctx.max_run) ctx.max_run = len;
  }
  ctx.failed = 0;
  Block* blocks = static_cast<Block*>(calloc(job.n_blocks > 0 ? job.n_blocks : 1, sizeof(Block)));
  double* pool = static_cast<double*>(malloc(sizeof(double) * kPoolPerBlock * (job.n_blocks > 0 ? job.n_blocks : 1)));
  Worker* workers = static_cast<Worker*>(calloc(job.threads, sizeof(Worker)));
  PauliTerm* terms = static_cast<PauliTerm*>(malloc(sizeof(PauliTerm) * (job.n_terms > 0 ? job.n_terms : 1)));
  double* trig = static_cast<double*>(malloc(sizeof(double) * 2 * (job.n_angles > 0 ? job.n_angles : 1)));
  double* channel_ptm = static_cast<double*>(malloc(sizeof(double) * 16 * (job.n_channels > 0 ? job.n_channels : 1)));
  int status = cpu::kRunOk;
  if (!blocks || !pool || !workers || !terms || !trig || !channel_ptm) {
    status = cpu::kRunOutOfMemory;
  } else {
    for (int t = 0; t < job.n_terms; ++t) {
      terms[t] = make_pauli_term(reinterpret_cast<const signed char*>(job.paulis) + t * n, n);
    }
    half_angle_table(job, job.theta, trig);
    resolve_blocks(job, blocks, pool, trig);
    channel_matrices(job, channel_ptm);
    ctx.channel_ptm = channel_ptm;
    ctx.keep_identity = one_qubit_channels_keep_trace(job, channel_ptm);
    ctx.blocks = blocks;
    ctx.workers = workers;
    ctx.terms = terms;
    const Index n_lane_blocks = ctx.spread ? job.batch : (job.batch + L - 1) / L;
    job.parallel_blocks(job.threads, n_lane_blocks, body<L>, &ctx);
    if (ctx.failed) status = cpu::kRunOutOfMemory;
    else if (cancelled(job.cancel)) status = cpu::kRunCancelled;
    for (int i = 0; i < job.threads; ++i) free_worker(workers[i]);
  }
  free(blocks);
  free(pool);
  free(workers);
  free(terms);
  free(trig);
  free(channel_ptm);
  return status;
}

// ----------------------------------------------------------------------------- trajectories
/// dst <- m src on wire ``wire`` (m[r * ld + c], 2x2; dst may be src); returns ||dst||^2 with
/// kNorm (a Kraus operator's weight), else 0: the sum is a serial dependency a unitary gate does
/// not need. The loops run over amplitude pairs (blocks of ``step`` with the wire's bit 0).
template <bool kNorm>
double apply_one_wire(const C* src, C* dst, int n, int wire, const C* m, int ld) {
  const Index dim = Index(1) << n, step = Index(1) << (n - 1 - wire);
  const C m00 = m[0], m01 = m[1], m10 = m[ld], m11 = m[ld + 1];
  double norm = 0.0;
  for (Index base = 0; base < dim; base += 2 * step) {
    for (Index i = base; i < base + step; ++i) {
      const C a = src[i], b = src[i + step];
      const C x = mul_add(m00 * a, m01, b), y = mul_add(m10 * a, m11, b);
      dst[i] = x;
      dst[i + step] = y;
      if constexpr (kNorm) norm += x.re * x.re + x.im * x.im + y.re * y.re + y.im * y.im;
    }
  }
  return norm;
}

/// dst <- m src on wires (w0, w1) (m[r * 4 + c], 4x4, index 2 bit(w0) + bit(w1); dst may be
/// src); returns ||dst||^2 with kNorm, else 0 (as apply_one_wire).
template <bool kNorm>
double apply_two_wires(const C* src, C* dst, int n, int w0, int w1, const C* m) {
  const Index s0 = Index(1) << (n - 1 - w0), s1 = Index(1) << (n - 1 - w1);
  const Index lo = s0 < s1 ? s0 : s1, hi = s0 < s1 ? s1 : s0;
  const Index quads = Index(1) << (n - 2);
  double norm = 0.0;
  for (Index q = 0; q < quads; ++q) {
    // q with zero bits inserted at the two wires' positions (low one first)
    Index i = q;
    i = ((i & ~(lo - 1)) << 1) | (i & (lo - 1));
    i = ((i & ~(hi - 1)) << 1) | (i & (hi - 1));
    const Index at[4] = {i, i + s1, i + s0, i + s0 + s1};
    C x[4];
    for (int k = 0; k < 4; ++k) x[k] = src[at[k]];
    for (int r = 0; r < 4; ++r) {
      C acc = make_complex(0.0, 0.0);
      for (int c = 0; c < 4; ++c) acc = mul_add(acc, m[r * 4 + c], x[c]);
      dst[at[r]] = acc;
      if constexpr (kNorm) norm += acc.re * acc.re + acc.im * acc.im;
    }
  }
  return norm;
}

/// dst <- m src on gate ``row``'s wires (one-qubit m: rows of ``ld``); returns ||dst||^2 with kNorm.
template <bool kNorm>
double apply_on_gate(const C* src, C* dst, int n, const int32_t* row, const C* m, int ld) {
  if (gate_info(row[0]).n_wires == 1) return apply_one_wire<kNorm>(src, dst, n, row[1], m, ld);
  return apply_two_wires<kNorm>(src, dst, n, row[1], row[2], m);
}

/// psi <- K_k psi / ||K_k psi|| for the first k with u < sum_{j <= k} ||K_j psi||^2 (the last
/// one else), as _density_kernels.kraus_jump; phi is scratch.
void kraus_jump(C* psi, C* phi, int n, const int32_t* row, const C* ops, int count, double u) {
  const Index dim = Index(1) << n;
  double cum = 0.0;
  for (int k = 0; k < count; ++k) {
    const double p = apply_on_gate<true>(psi, phi, n, row, ops + 16 * k, 4);
    cum += p;
    if (u < cum || k == count - 1) {
      if (p > 0.0) {
        const double scale = 1.0 / sqrt(p);
        for (Index i = 0; i < dim; ++i) psi[i] = scale * phi[i];
      }
      return;
    }
  }
}

/// <psi|P|psi> for a statevector.
double state_pauli(const C* psi, int n, const PauliTerm& term) {
  C acc = make_complex(0.0, 0.0);
  for (Index j = 0; j < (Index(1) << n); ++j) {
    const C v = parity(Mask(j) & term.sign) ? make_complex(-psi[j].re, -psi[j].im) : psi[j];
    acc = mul_add(acc, conj(psi[j ^ Index(term.flip)]), v);
  }
  return real_of_i_power(term.ny, acc);
}

struct TrajectoryContext {
  const cpu::TrajectoryJob* job;
  PauliTerm* terms;  ///< [n_terms]
  C** scratch;       ///< per worker, allocated on its first sample: psi, phi, every gate's matrix
  int failed;        ///< a worker could not allocate its scratch
};

/// Every trajectory of sample ``b``.
void trajectory_sample(void* raw, int worker, Index b) {
  TrajectoryContext& ctx = *static_cast<TrajectoryContext*>(raw);
  const cpu::TrajectoryJob& job = *ctx.job;
  const int n = job.n_qubits;
  const Index dim = Index(1) << n;
  if (ctx.scratch[worker] == nullptr) {
    ctx.scratch[worker] = static_cast<C*>(malloc(sizeof(C) * size_t(2 * dim + 16 * Index(job.n_gates))));
  }
  if (ctx.scratch[worker] == nullptr) {
    __atomic_store_n(&ctx.failed, 1, __ATOMIC_RELAXED);
    return;
  }
  C* psi = ctx.scratch[worker];
  C* phi = psi + dim;
  C* mats = phi + dim;
  const double* theta = job.theta + b * job.n_angles;
  for (int g = 0; g < job.n_gates; ++g) {  // the sample's gates are the same in every trajectory
    const int32_t* row = job.gates + 4 * g;
    const int na = row[3] >= 0 ? gate_info(row[0]).n_angles : 0;
    double c[kMaxGateAngles], s[kMaxGateAngles];
    for (int k = 0; k < kMaxGateAngles; ++k) {
      c[k] = k < na ? cos(0.5 * theta[row[3] + k]) : 1.0;
      s[k] = k < na ? sin(0.5 * theta[row[3] + k]) : 0.0;
    }
    gate_unitary_matrix<double>(row[0], c, s, mats + 16 * g);
  }
  const C* ops = reinterpret_cast<const C*>(job.kraus);
  for (int t = 0; t < job.n_traj; ++t) {
    if (cancelled(job.cancel)) return;
    const double* draws = job.uniforms + (b * job.n_traj + t) * job.n_draws;
    for (Index i = 0; i < dim; ++i) psi[i] = make_complex(0.0, 0.0);
    psi[0] = make_complex(1.0, 0.0);
    int m = 0;
    for (int g = 0; g < job.n_gates; ++g) {
      const int32_t* row = job.gates + 4 * g;
      apply_on_gate<false>(psi, psi, n, row, mats + 16 * g, gate_info(row[0]).n_wires == 1 ? 2 : 4);
      const int ch = job.chan_idx[g];
      if (ch >= 0) kraus_jump(psi, phi, n, row, ops + Index(ch) * job.rank * 16, job.kraus_count[ch], draws[m++]);
    }
    for (int k = 0; k < job.n_terms; ++k) {
      job.expvals[(b * job.n_traj + t) * job.n_terms + k] = state_pauli(psi, n, ctx.terms[k]);
    }
    double cum = 0.0;
    Index chosen = dim - 1;
    bool found = false;
    for (Index i = 0; i < dim; ++i) {
      const double p = psi[i].re * psi[i].re + psi[i].im * psi[i].im;
      job.probs[b * dim + i] += p / job.n_traj;
      cum += p;
      if (!found && draws[job.n_draws - 1] < cum) {
        chosen = i;
        found = true;
      }
    }
    job.outcomes[b * job.n_traj + t] = int64_t(chosen);
  }
}

/// Every sample's trajectories on the job's pool; a kRun* status.
int run_trajectory_job(const cpu::TrajectoryJob& job) {
  TrajectoryContext ctx;
  ctx.job = &job;
  ctx.failed = 0;
  ctx.terms = static_cast<PauliTerm*>(malloc(sizeof(PauliTerm) * (job.n_terms > 0 ? job.n_terms : 1)));
  ctx.scratch = static_cast<C**>(calloc(job.threads, sizeof(C*)));
  int status = cpu::kRunOk;
  if (!ctx.terms || !ctx.scratch) {
    status = cpu::kRunOutOfMemory;
  } else {
    for (int t = 0; t < job.n_terms; ++t) {
      const signed char* row = reinterpret_cast<const signed char*>(job.paulis) + t * job.n_qubits;
      ctx.terms[t] = make_pauli_term(row, job.n_qubits);
    }
    const Index dim = Index(1) << job.n_qubits;
    for (Index i = 0; i < job.batch * dim; ++i) job.probs[i] = 0.0;
    job.parallel_blocks(job.threads, job.batch, trajectory_sample, &ctx);
    if (ctx.failed) status = cpu::kRunOutOfMemory;
    else if (cancelled(job.cancel)) status = cpu::kRunCancelled;
    for (int i = 0; i < job.threads; ++i) free(ctx.scratch[i]);
  }
  free(ctx.terms);
  free(ctx.scratch);
  return status;
}

}  // namespace
}  // namespace density_kernels
HDQNN_NAMESPACE_END

namespace hdqnn {
namespace cpu {

int HDQNN_PASTE(run_density_, HDQNN_ISA)(const DensityJob& job) {
  switch (job.lanes) {
    case 1: return density_kernels::run_lanes<1>(job);
    case 4: return density_kernels::run_lanes<4>(job);
    case 8: return density_kernels::run_lanes<8>(job);
    default: return kRunBadLanes;
  }
}

int HDQNN_PASTE(run_trajectories_, HDQNN_ISA)(const TrajectoryJob& job) {
  return density_kernels::run_trajectory_job(job);
}

}  // namespace cpu
}  // namespace hdqnn

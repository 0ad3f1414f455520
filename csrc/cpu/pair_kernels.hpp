// The 2x2 updates of amplitude pairs (and of target pairs followed by a cx) on one state, or on
// psi and lambda together with the adjoint's cross terms (included by kernels.cpp).
#pragma once

#include "hdqnn/gate_math.hpp"
#include "lanes.hpp"

HDQNN_NAMESPACE_BEGIN
namespace kernels {
namespace {  // included by kernels.cpp only, once per instruction set

// ------------------------------------------------------------------------------ pair updates
// Each type holds per-lane coefficients of one 2x2 update and knows which cross terms
// R_ab = sum conj(lambda_a) psi_b the adjoint needs for its shape.

/// (re, im) += conj(l) p, as FMAs into the two accumulators.
template <class L>
HDQNN_INLINE void add_cross(L& re, L& im, const Complex<L>& l, const Complex<L>& p) {
  const Complex<L> z = conj_mul_add(make_complex(re, im), l, p);
  re = z.re;
  im = z.im;
}

template <class T, int S>
struct GeneralPair {
  using L = lane_t<T, S>;
  static constexpr int kAcc = 8;
  static constexpr bool kAfterBlock = false;  ///< cross terms of psi before the block (see RotationCross)
  Complex<L> m[4];

  explicit GeneralPair(const Complex<L> mat[4]) : m{mat[0], mat[1], mat[2], mat[3]} {}
  template <class V>
  HDQNN_INLINE void apply(Complex<V>& a0, Complex<V>& a1) const {
    apply_2x2(m, a0, a1);
  }
  template <class A, class V>
  static HDQNN_INLINE void accumulate(A&& acc, const Complex<V>& l0, const Complex<V>& l1, const Complex<V>& p0,
                                      const Complex<V>& p1) {
    add_cross(acc(0), acc(1), l0, p0);
    add_cross(acc(2), acc(3), l0, p1);
    add_cross(acc(4), acc(5), l1, p0);
    add_cross(acc(6), acc(7), l1, p1);
  }
  static void cross(const T (&acc)[kAcc][S], Complex<L> r[4]) {
    for (int k = 0; k < 4; ++k) r[k] = make_complex(load_lanes<L>(acc[2 * k]), load_lanes<L>(acc[2 * k + 1]));
  }
};

/// Real matrices (ry, h, x and products): derivatives are real too, so only Re R_ab matters.
template <class T, int S>
struct RealPair {
  using L = lane_t<T, S>;
  static constexpr int kAcc = 4;
  static constexpr bool kAfterBlock = false;
  L m[4];

  explicit RealPair(const Complex<L> mat[4]) : m{mat[0].re, mat[1].re, mat[2].re, mat[3].re} {}
  template <class V>
  HDQNN_INLINE void apply(Complex<V>& a0, Complex<V>& a1) const {
    apply_2x2_real(m, a0, a1);
  }
  template <class A, class V>
  static HDQNN_INLINE void accumulate(A&& acc, const Complex<V>& l0, const Complex<V>& l1, const Complex<V>& p0,
                                      const Complex<V>& p1) {
    acc(0) = acc(0) + l0.re * p0.re + l0.im * p0.im;
    acc(1) = acc(1) + l0.re * p1.re + l0.im * p1.im;
    acc(2) = acc(2) + l1.re * p0.re + l1.im * p0.im;
    acc(3) = acc(3) + l1.re * p1.re + l1.im * p1.im;
  }
  static void cross(const T (&acc)[kAcc][S], Complex<L> r[4]) {
    for (int k = 0; k < 4; ++k) r[k] = make_complex(load_lanes<L>(acc[k]), L{});
  }
};

/// Diagonal matrices (rz, p, s, t, z and products): only R_00 and R_11 matter.
template <class T, int S>
struct DiagPair {
  using L = lane_t<T, S>;
  static constexpr int kAcc = 4;
  static constexpr bool kAfterBlock = false;
  Complex<L> d0, d1;

  explicit DiagPair(const Complex<L> mat[4]) : d0(mat[0]), d1(mat[3]) {}
  template <class V>
  HDQNN_INLINE void apply(Complex<V>& a0, Complex<V>& a1) const {
    apply_diag(d0, d1, a0, a1);
  }
  template <class A, class V>
  static HDQNN_INLINE void accumulate(A&& acc, const Complex<V>& l0, const Complex<V>& l1, const Complex<V>& p0,
                                      const Complex<V>& p1) {
    add_cross(acc(0), acc(1), l0, p0);
    add_cross(acc(2), acc(3), l1, p1);
  }
  static void cross(const T (&acc)[kAcc][S], Complex<L> r[4]) {
    r[0] = make_complex(load_lanes<L>(acc[0]), load_lanes<L>(acc[1]));
    r[1] = make_complex(L{}, L{});
    r[2] = r[1];
    r[3] = make_complex(load_lanes<L>(acc[2]), load_lanes<L>(acc[3]));
  }
};

/// Cross terms of a block of ry gates followed by deferred diagonal gates (Op::grad_end), read off
/// psi and lambda after the block, before it is undone: every ry has the gradient
/// Re <lambda| -iY/2 |psi> = G / 2 with G = sum Re(conj(l1) p0 - conj(l0) p1), and a diagonal gate
/// d(phi) one of Im C_a = sum Im(conj(l_a) p_a), a = 0, 1. Two sums instead of eight: the sweep
/// starts from lambda = sum_k g_k P_k psi (real g_k, Hermitian P_k), so <lambda|psi> is real, and
/// every step applies the same unitary (and real scale) to both, so Im C_0 + Im C_1 = 0 throughout
/// and Im C_1 is -Im C_0 (rotation_gradients).
template <class T, int S>
struct RotationCross {
  static constexpr int kAcc = 2;
  static constexpr bool kAfterBlock = true;

  template <class A, class V>
  static HDQNN_INLINE void accumulate(A&& acc, const Complex<V>& l0, const Complex<V>& l1, const Complex<V>& p0,
                                      const Complex<V>& p1) {
    acc(0) = acc(0) + l1.re * p0.re + l1.im * p0.im - l0.re * p1.re - l0.im * p1.im;
    acc(1) = acc(1) + l0.re * p0.im - l0.im * p0.re;
  }
};

/// A plane rotation [[c, -s], [s, c]] without its factor: [[1, -k], [k, 1]] with k = s / c, or
/// (kCotangent) [[k, -1], [1, k]] with k = c / s, the form with |k| <= 1. Two multiply-adds per
/// amplitude instead of four; the caller keeps the dropped factor (c or s) and applies it later.
template <class T, int S, bool kCotangent>
struct ScaledRotationPair {
  using L = lane_t<T, S>;
  L k;

  template <class V>
  HDQNN_INLINE void apply(Complex<V>& a0, Complex<V>& a1) const {
    Complex<V> b0, b1;
    if constexpr (kCotangent) {
      b0 = make_complex(k * a0.re - a1.re, k * a0.im - a1.im);
      b1 = make_complex(a0.re + k * a1.re, a0.im + k * a1.im);
    } else {
      b0 = make_complex(a0.re - k * a1.re, a0.im - k * a1.im);
      b1 = make_complex(a1.re + k * a0.re, a1.im + k * a0.im);
    }
    a0 = b0;
    a1 = b1;
  }
};

/// The adjoint's update ``P`` (e.g. a scaled rotation) with the cross terms of ``C`` (one of the
/// pair types above): the terms depend on what the gradients need, not on how the update runs.
template <class P, class C>
struct CrossPair : P {
  static constexpr int kAcc = C::kAcc;
  static constexpr bool kAfterBlock = C::kAfterBlock;

  explicit CrossPair(const P& pair) : P(pair) {}
  template <class A, class V>
  static HDQNN_INLINE void accumulate(A&& acc, const Complex<V>& l0, const Complex<V>& l1, const Complex<V>& p0,
                                      const Complex<V>& p1) {
    C::accumulate(acc, l0, l1, p0, p1);
  }
  template <class U, int S>
  static void cross(const U (&acc)[kAcc][S], Complex<lane_t<U, S>> r[4]) {
    C::cross(acc, r);
  }
};

/// No update (a plain cx in a chain: only its relabelling remains), and no cross terms.
struct IdentityPair {
  static constexpr int kAcc = 0;
  static constexpr bool kAfterBlock = false;

  template <class V>
  HDQNN_INLINE void apply(Complex<V>&, Complex<V>&) const {}
  template <class A, class V>
  static HDQNN_INLINE void accumulate(A&&, const Complex<V>&, const Complex<V>&, const Complex<V>&,
                                      const Complex<V>&) {}
};

/// cx on the control=1 half, swap on (|01>, |10>): exchange the two amplitudes.
struct ExchangePair {
  template <class V>
  HDQNN_INLINE void apply(Complex<V>& a0, Complex<V>& a1) const {
    const Complex<V> t = a0;
    a0 = a1;
    a1 = t;
  }
};

/// cz on the control=1 half: negate the target=1 amplitude.
struct NegatePair {
  template <class V>
  HDQNN_INLINE void apply(Complex<V>&, Complex<V>& a1) const {
    a1 = make_complex(-a1.re, -a1.im);
  }
};

/// What a forward kernel does to an amplitude as it loads it: nothing, or (PhaseTable) multiply
/// it by the deferred phases of its index, the same for every lane.
struct NoPhase {
  template <class V>
  HDQNN_INLINE void operator()(Complex<V>&, Index) const {}
};

/// kConj: times the conjugate phase (the adjoint undoing a table).
template <class T, int S, bool kConj = false>
struct PhaseTable {
  const T* re;  ///< [2**n]
  const T* im;
  /// a at element offset o (index o / S) times its phase.
  template <class V>
  HDQNN_INLINE void operator()(Complex<V>& a, Index o) const {
    const Index j = o / S;
    const T pr = re[j], pi = kConj ? -im[j] : im[j];
    a = make_complex(a.re * pr - a.im * pi, a.re * pi + a.im * pr);
  }
};

/// A kPhaseTable pass: every amplitude in [jb, je) times its phase.
template <class T, int S, class Phase>
void phase_table_apply(T* re, T* im, const Phase& phase, Index jb, Index je) {
  using L = lane_t<T, S>;
  for (Index j = jb; j < je; ++j) {
    Complex<L> a = load<L>(re, im, j * S);
    phase(a, j * S);
    store(re, im, j * S, a);
  }
}

/// Forward update of one state: op on every pair (o + off_a, o + off_b), after ``phase``.
template <class T, int S, int NB, class P, class Phase = NoPhase>
void pair_apply(T* re, T* im, const int (&bits)[NB], Mask set, Index off_a, Index off_b, const P& op, Index tb,
                Index te, const Phase& phase = Phase()) {
  using L = lane_t<T, S>;
  for_each_group<S>(bits, set, tb, te, [&](Index o) {
    Complex<L> a0 = load<L>(re, im, o + off_a), a1 = load<L>(re, im, o + off_b);
    phase(a0, o + off_a);
    phase(a1, o + off_b);
    op.apply(a0, a1);
    store(re, im, o + off_a, a0);
    store(re, im, o + off_b, a1);
  });
}

/// Backward update of psi and lambda by the same (already inverted) op, without gradients; then
/// ``post`` on every amplitude (the conjugate of a deferred-phase table the forward applied first).
template <class T, int S, int NB, class P, class Post = NoPhase>
void pair_apply2(T* pr, T* pi, T* lr, T* li, const int (&bits)[NB], Mask set, Index off_a, Index off_b,
                 const P& op, Index tb, Index te, const Post& post = Post()) {
  using L = lane_t<T, S>;
  for_each_group<S>(bits, set, tb, te, [&](Index o) {
    Complex<L> a0 = load<L>(pr, pi, o + off_a), a1 = load<L>(pr, pi, o + off_b);
    op.apply(a0, a1);
    post(a0, o + off_a);
    post(a1, o + off_b);
    store(pr, pi, o + off_a, a0);
    store(pr, pi, o + off_b, a1);
    Complex<L> b0 = load<L>(lr, li, o + off_a), b1 = load<L>(lr, li, o + off_b);
    op.apply(b0, b1);
    post(b0, o + off_a);
    post(b1, o + off_b);
    store(lr, li, o + off_a, b0);
    store(lr, li, o + off_b, b1);
  });
}

/// Backward update with gradient cross terms: psi <- U^dag psi, R += conj(lambda) psi (lambda
/// taken after the gate, psi before it), lambda <- U^dag lambda, then ``post`` on both. One pass
/// over both states.
template <class T, int S, int NB, class P, class Post = NoPhase>
void pair_adjoint(T* pr, T* pi, T* lr, T* li, const int (&bits)[NB], Mask set, Index off_a, Index off_b,
                  const P& op_dagger, T (&out)[P::kAcc][S], Index tb, Index te, const Post& post = Post()) {
  using L = lane_t<T, S>;
  reduce_groups<T, S>(bits, set, tb, te, out, [&](Index o, auto&& acc) {
    Complex<L> p0 = load<L>(pr, pi, o + off_a), p1 = load<L>(pr, pi, o + off_b);
    Complex<L> l0 = load<L>(lr, li, o + off_a), l1 = load<L>(lr, li, o + off_b);
    if constexpr (P::kAfterBlock) P::accumulate(acc, l0, l1, p0, p1);
    op_dagger.apply(p0, p1);
    if constexpr (!P::kAfterBlock) P::accumulate(acc, l0, l1, p0, p1);
    post(p0, o + off_a);
    post(p1, o + off_b);
    store(pr, pi, o + off_a, p0);
    store(pr, pi, o + off_b, p1);
    op_dagger.apply(l0, l1);
    post(l0, o + off_a);
    post(l1, o + off_b);
    store(lr, li, o + off_a, l0);
    store(lr, li, o + off_b, l1);
  });
}

/// ``post`` on the quad (a0, a1, a2, a3) stored at element offsets i0..i3.
template <class Post, class V>
HDQNN_INLINE void post4(const Post& post, Index i0, Index i1, Index i2, Index i3, Complex<V>& a0, Complex<V>& a1,
                        Complex<V>& a2, Complex<V>& a3) {
  post(a0, i0);
  post(a1, i1);
  post(a2, i2);
  post(a3, i3);
}

// A fused block U on the target of the cx that follows it, in one pass over quads (a00, a01, a10,
// a11) of (control, target): U on both target pairs, then the cx swaps a10 and a11 (which is just a
// swapped store). off_t / off_c: element offsets of the target / control bit.

template <class T, int S, class P, class Phase = NoPhase>
void cx_tail_apply(T* re, T* im, const int (&bits)[2], Index off_t, Index off_c, const P& op, Index tb, Index te,
                   const Phase& phase = Phase()) {
  using L = lane_t<T, S>;
  for_each_group<S>(bits, Mask(0), tb, te, [&](Index o) {
    Complex<L> a0 = load<L>(re, im, o), a1 = load<L>(re, im, o + off_t);
    Complex<L> a2 = load<L>(re, im, o + off_c), a3 = load<L>(re, im, o + off_c + off_t);
    phase(a0, o);
    phase(a1, o + off_t);
    phase(a2, o + off_c);
    phase(a3, o + off_c + off_t);
    op.apply(a0, a1);
    op.apply(a2, a3);
    store(re, im, o, a0);
    store(re, im, o + off_t, a1);
    store(re, im, o + off_c, a3);
    store(re, im, o + off_c + off_t, a2);
  });
}

/// Two cx-tail ops chained on a shared wire, in one pass over octets of wires (a, b, c): U1 on b
/// then cx(a -> b), U2 on c (IdentityPair: none) then cx(b -> c). Half the loads and stores of
/// two passes; the cx's are relabelled registers. off_a / off_b / off_c: element offsets of the
/// three wires' bits.
template <class T, int S, class P1, class P2>
void cx_chain_apply(T* re, T* im, const int (&bits)[3], Index off_a, Index off_b, Index off_c, const P1& op1,
                    const P2& op2, Index tb, Index te) {
  using L = lane_t<T, S>;
  for_each_group<S>(bits, Mask(0), tb, te, [&](Index o) {
    const Index at[8] = {o,         o + off_c,         o + off_b,         o + off_b + off_c,
                         o + off_a, o + off_a + off_c, o + off_a + off_b, o + off_a + off_b + off_c};
    Complex<L> x[8];  // x[4 a + 2 b + c]
    for (int k = 0; k < 8; ++k) x[k] = load<L>(re, im, at[k]);
    op1.apply(x[0], x[2]);
    op1.apply(x[1], x[3]);
    op1.apply(x[4], x[6]);
    op1.apply(x[5], x[7]);
    // after cx(a -> b) the (a=1, b) amplitudes are x[4 + 2 (1 - b) + c]
    op2.apply(x[0], x[1]);
    op2.apply(x[2], x[3]);
    op2.apply(x[6], x[7]);
    op2.apply(x[4], x[5]);
    // after cx(b -> c) the (b=1, c) amplitudes are the (b=1, 1 - c) ones
    store(re, im, at[0], x[0]);
    store(re, im, at[1], x[1]);
    store(re, im, at[2], x[3]);
    store(re, im, at[3], x[2]);
    store(re, im, at[4], x[6]);
    store(re, im, at[5], x[7]);
    store(re, im, at[6], x[5]);
    store(re, im, at[7], x[4]);
  });
}

/// Backward of cx_tail_apply on psi and lambda: undo the cx (swapped loads), then U^dag, then
/// ``post`` (see pair_apply2).
template <class T, int S, class P, class Post = NoPhase>
void cx_tail_apply2(T* pr, T* pi, T* lr, T* li, const int (&bits)[2], Index off_t, Index off_c, const P& op_dagger,
                    Index tb, Index te, const Post& post = Post()) {
  using L = lane_t<T, S>;
  for_each_group<S>(bits, Mask(0), tb, te, [&](Index o) {
    const Index i0 = o, i1 = o + off_t, i2 = o + off_c, i3 = o + off_c + off_t;
    Complex<L> p0 = load<L>(pr, pi, i0), p1 = load<L>(pr, pi, i1), p2 = load<L>(pr, pi, i3), p3 = load<L>(pr, pi, i2);
    op_dagger.apply(p0, p1);
    op_dagger.apply(p2, p3);
    post4(post, i0, i1, i2, i3, p0, p1, p2, p3);
    store(pr, pi, i0, p0);
    store(pr, pi, i1, p1);
    store(pr, pi, i2, p2);
    store(pr, pi, i3, p3);
    Complex<L> l0 = load<L>(lr, li, i0), l1 = load<L>(lr, li, i1), l2 = load<L>(lr, li, i3), l3 = load<L>(lr, li, i2);
    op_dagger.apply(l0, l1);
    op_dagger.apply(l2, l3);
    post4(post, i0, i1, i2, i3, l0, l1, l2, l3);
    store(lr, li, i0, l0);
    store(lr, li, i1, l1);
    store(lr, li, i2, l2);
    store(lr, li, i3, l3);
  });
}

/// cx_tail_apply2 with the cross terms of U accumulated over both target pairs.
template <class T, int S, class P, class Post = NoPhase>
void cx_tail_adjoint(T* pr, T* pi, T* lr, T* li, const int (&bits)[2], Index off_t, Index off_c, const P& op_dagger,
                     T (&out)[P::kAcc][S], Index tb, Index te, const Post& post = Post()) {
  using L = lane_t<T, S>;
  reduce_groups<T, S>(bits, Mask(0), tb, te, out, [&](Index o, auto&& acc) {
    const Index i0 = o, i1 = o + off_t, i2 = o + off_c, i3 = o + off_c + off_t;
    Complex<L> p0 = load<L>(pr, pi, i0), p1 = load<L>(pr, pi, i1), p2 = load<L>(pr, pi, i3), p3 = load<L>(pr, pi, i2);
    Complex<L> l0 = load<L>(lr, li, i0), l1 = load<L>(lr, li, i1), l2 = load<L>(lr, li, i3), l3 = load<L>(lr, li, i2);
    if constexpr (P::kAfterBlock) {
      P::accumulate(acc, l0, l1, p0, p1);
      P::accumulate(acc, l2, l3, p2, p3);
    }
    op_dagger.apply(p0, p1);
    op_dagger.apply(p2, p3);
    if constexpr (!P::kAfterBlock) {
      P::accumulate(acc, l0, l1, p0, p1);
      P::accumulate(acc, l2, l3, p2, p3);
    }
    post4(post, i0, i1, i2, i3, p0, p1, p2, p3);
    store(pr, pi, i0, p0);
    store(pr, pi, i1, p1);
    store(pr, pi, i2, p2);
    store(pr, pi, i3, p3);
    op_dagger.apply(l0, l1);
    op_dagger.apply(l2, l3);
    post4(post, i0, i1, i2, i3, l0, l1, l2, l3);
    store(lr, li, i0, l0);
    store(lr, li, i1, l1);
    store(lr, li, i2, l2);
    store(lr, li, i3, l3);
  });
}

/// One half (fixed bit a) of a chain's octet undone on psi and lambda: the quads are loaded from
/// the element offsets at[from[k]] (the forward's relabelled stores), op2^dag undone on pairs
/// (0, 1) and (2, 3) with its cross terms into acc(P1::kAcc + i), then op1^dag on (0, 2) and
/// (1, 3) with its cross terms into acc(i), and stored back at at[k].
template <class L, class T, class P1, class P2, class A>
HDQNN_INLINE void chain_half_adjoint(T* pr, T* pi, T* lr, T* li, const Index (&at)[4], const int (&from)[4],
                                     const P1& op1, const P2& op2, A&& acc) {
  auto acc2 = [&](int i) -> decltype(acc(0)) { return acc(P1::kAcc + i); };
  Complex<L> p[4], l[4];
  for (int k = 0; k < 4; ++k) p[k] = load<L>(pr, pi, at[from[k]]);
  for (int k = 0; k < 4; ++k) l[k] = load<L>(lr, li, at[from[k]]);
  if constexpr (P2::kAfterBlock) {
    P2::accumulate(acc2, l[0], l[1], p[0], p[1]);
    P2::accumulate(acc2, l[2], l[3], p[2], p[3]);
  }
  op2.apply(p[0], p[1]);
  op2.apply(p[2], p[3]);
  if constexpr (!P2::kAfterBlock) {
    P2::accumulate(acc2, l[0], l[1], p[0], p[1]);
    P2::accumulate(acc2, l[2], l[3], p[2], p[3]);
  }
  op2.apply(l[0], l[1]);
  op2.apply(l[2], l[3]);
  if constexpr (P1::kAfterBlock) {
    P1::accumulate(acc, l[0], l[2], p[0], p[2]);
    P1::accumulate(acc, l[1], l[3], p[1], p[3]);
  }
  op1.apply(p[0], p[2]);
  op1.apply(p[1], p[3]);
  if constexpr (!P1::kAfterBlock) {
    P1::accumulate(acc, l[0], l[2], p[0], p[2]);
    P1::accumulate(acc, l[1], l[3], p[1], p[3]);
  }
  op1.apply(l[0], l[2]);
  op1.apply(l[1], l[3]);
  for (int k = 0; k < 4; ++k) store(pr, pi, at[k], p[k]);
  for (int k = 0; k < 4; ++k) store(lr, li, at[k], l[k]);
}

/// Backward of cx_chain_apply on psi and lambda in one pass over octets, with the cross terms of
/// both ops: out[0, P1::kAcc) for op1, then P2's. op1 / op2 are the inverse updates. The halves
/// a = 0 and a = 1 of an octet are independent (no op pairs them), so each runs on its own and
/// the registers hold a quad of psi and of lambda at a time.
template <class T, int S, class P1, class P2>
void cx_chain_adjoint(T* pr, T* pi, T* lr, T* li, const int (&bits)[3], Index off_a, Index off_b, Index off_c,
                      const P1& op1, const P2& op2, T (&out)[P1::kAcc + P2::kAcc][S], Index tb, Index te) {
  using L = lane_t<T, S>;
  // where the forward stored x[k] of each half (see cx_chain_apply): a = 0 x0 x1 x3 x2 at
  // (b, c) = 00 01 10 11, a = 1 x6 x7 x5 x4
  static constexpr int kFromA0[4] = {0, 1, 3, 2};
  static constexpr int kFromA1[4] = {3, 2, 0, 1};
  reduce_groups<T, S>(bits, Mask(0), tb, te, out, [&](Index o, auto&& acc) {
    using V = typename std::decay<decltype(acc(0))>::type;
    const Index half0[4] = {o, o + off_c, o + off_b, o + off_b + off_c};
    const Index half1[4] = {o + off_a, o + off_a + off_c, o + off_a + off_b, o + off_a + off_b + off_c};
    chain_half_adjoint<V>(pr, pi, lr, li, half0, kFromA0, op1, op2, acc);
    chain_half_adjoint<V>(pr, pi, lr, li, half1, kFromA1, op1, op2, acc);
  });
}

}  // namespace
}  // namespace kernels
HDQNN_NAMESPACE_END

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

/// No update (a plain cx in a chain: only its relabelling remains).
struct IdentityPair {
  template <class V>
  HDQNN_INLINE void apply(Complex<V>&, Complex<V>&) const {}
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

template <class T, int S>
struct PhaseTable {
  const T* re;  ///< [2**n]
  const T* im;
  /// a at element offset o (index o / S) times its phase.
  template <class V>
  HDQNN_INLINE void operator()(Complex<V>& a, Index o) const {
    const Index j = o / S;
    const T pr = re[j], pi = im[j];
    a = make_complex(a.re * pr - a.im * pi, a.re * pi + a.im * pr);
  }
};

/// A kPhaseTable pass: every amplitude in [jb, je) times its phase.
template <class T, int S>
void phase_table_apply(T* re, T* im, const PhaseTable<T, S>& phase, Index jb, Index je) {
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

/// Backward update of psi and lambda by the same (already inverted) op, without gradients.
template <class T, int S, int NB, class P>
void pair_apply2(T* pr, T* pi, T* lr, T* li, const int (&bits)[NB], Mask set, Index off_a, Index off_b,
                 const P& op, Index tb, Index te) {
  using L = lane_t<T, S>;
  for_each_group<S>(bits, set, tb, te, [&](Index o) {
    Complex<L> a0 = load<L>(pr, pi, o + off_a), a1 = load<L>(pr, pi, o + off_b);
    op.apply(a0, a1);
    store(pr, pi, o + off_a, a0);
    store(pr, pi, o + off_b, a1);
    Complex<L> b0 = load<L>(lr, li, o + off_a), b1 = load<L>(lr, li, o + off_b);
    op.apply(b0, b1);
    store(lr, li, o + off_a, b0);
    store(lr, li, o + off_b, b1);
  });
}

/// Backward update with gradient cross terms: psi <- U^dag psi, R += conj(lambda) psi (lambda
/// taken after the gate, psi before it), lambda <- U^dag lambda. One pass over both states.
template <class T, int S, int NB, class P>
void pair_adjoint(T* pr, T* pi, T* lr, T* li, const int (&bits)[NB], Mask set, Index off_a, Index off_b,
                  const P& op_dagger, T (&out)[P::kAcc][S], Index tb, Index te) {
  using L = lane_t<T, S>;
  reduce_groups<T, S>(bits, set, tb, te, out, [&](Index o, auto&& acc) {
    Complex<L> p0 = load<L>(pr, pi, o + off_a), p1 = load<L>(pr, pi, o + off_b);
    op_dagger.apply(p0, p1);
    store(pr, pi, o + off_a, p0);
    store(pr, pi, o + off_b, p1);
    Complex<L> l0 = load<L>(lr, li, o + off_a), l1 = load<L>(lr, li, o + off_b);
    P::accumulate(acc, l0, l1, p0, p1);
    op_dagger.apply(l0, l1);
    store(lr, li, o + off_a, l0);
    store(lr, li, o + off_b, l1);
  });
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

/// Backward of cx_tail_apply on psi and lambda: undo the cx (swapped loads), then U^dag.
template <class T, int S, class P>
void cx_tail_apply2(T* pr, T* pi, T* lr, T* li, const int (&bits)[2], Index off_t, Index off_c, const P& op_dagger,
                    Index tb, Index te) {
  using L = lane_t<T, S>;
  for_each_group<S>(bits, Mask(0), tb, te, [&](Index o) {
    const Index i0 = o, i1 = o + off_t, i2 = o + off_c, i3 = o + off_c + off_t;
    Complex<L> p0 = load<L>(pr, pi, i0), p1 = load<L>(pr, pi, i1), p2 = load<L>(pr, pi, i3), p3 = load<L>(pr, pi, i2);
    op_dagger.apply(p0, p1);
    op_dagger.apply(p2, p3);
    store(pr, pi, i0, p0);
    store(pr, pi, i1, p1);
    store(pr, pi, i2, p2);
    store(pr, pi, i3, p3);
    Complex<L> l0 = load<L>(lr, li, i0), l1 = load<L>(lr, li, i1), l2 = load<L>(lr, li, i3), l3 = load<L>(lr, li, i2);
    op_dagger.apply(l0, l1);
    op_dagger.apply(l2, l3);
    store(lr, li, i0, l0);
    store(lr, li, i1, l1);
    store(lr, li, i2, l2);
    store(lr, li, i3, l3);
  });
}

/// cx_tail_apply2 with the cross terms of U accumulated over both target pairs.
template <class T, int S, class P>
void cx_tail_adjoint(T* pr, T* pi, T* lr, T* li, const int (&bits)[2], Index off_t, Index off_c, const P& op_dagger,
                     T (&out)[P::kAcc][S], Index tb, Index te) {
  using L = lane_t<T, S>;
  reduce_groups<T, S>(bits, Mask(0), tb, te, out, [&](Index o, auto&& acc) {
    const Index i0 = o, i1 = o + off_t, i2 = o + off_c, i3 = o + off_c + off_t;
    Complex<L> p0 = load<L>(pr, pi, i0), p1 = load<L>(pr, pi, i1), p2 = load<L>(pr, pi, i3), p3 = load<L>(pr, pi, i2);
    op_dagger.apply(p0, p1);
    op_dagger.apply(p2, p3);
    store(pr, pi, i0, p0);
    store(pr, pi, i1, p1);
    store(pr, pi, i2, p2);
    store(pr, pi, i3, p3);
    Complex<L> l0 = load<L>(lr, li, i0), l1 = load<L>(lr, li, i1), l2 = load<L>(lr, li, i3), l3 = load<L>(lr, li, i2);
    P::accumulate(acc, l0, l1, p0, p1);
    P::accumulate(acc, l2, l3, p2, p3);
    op_dagger.apply(l0, l1);
    op_dagger.apply(l2, l3);
    store(lr, li, i0, l0);
    store(lr, li, i1, l1);
    store(lr, li, i2, l2);
    store(lr, li, i3, l3);
  });
}

}  // namespace
}  // namespace kernels
HDQNN_NAMESPACE_END

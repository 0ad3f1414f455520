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

/// Forward update of one state: op on every pair (o + off_a, o + off_b).
template <class T, int S, int NB, class P>
void pair_apply(T* re, T* im, const int (&bits)[NB], Mask set, Index off_a, Index off_b, const P& op, Index tb,
                Index te) {
  using L = lane_t<T, S>;
  for_each_group<S>(bits, set, tb, te, [&](Index o) {
    Complex<L> a0 = load<L>(re, im, o + off_a), a1 = load<L>(re, im, o + off_b);
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

template <class T, int S, class P>
void cx_tail_apply(T* re, T* im, const int (&bits)[2], Index off_t, Index off_c, const P& op, Index tb, Index te) {
  using L = lane_t<T, S>;
  for_each_group<S>(bits, Mask(0), tb, te, [&](Index o) {
    Complex<L> a0 = load<L>(re, im, o), a1 = load<L>(re, im, o + off_t);
    Complex<L> a2 = load<L>(re, im, o + off_c), a3 = load<L>(re, im, o + off_c + off_t);
    op.apply(a0, a1);
    op.apply(a2, a3);
    store(re, im, o, a0);
    store(re, im, o + off_t, a1);
    store(re, im, o + off_c, a3);
    store(re, im, o + off_c + off_t, a2);
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

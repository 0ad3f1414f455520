// Batched program executor and adjoint differentiation on the CPU.
//
// This file is compiled once per instruction set (CMake passes -DHDQNN_ISA=base|avx2|avx512 and the
// matching -march flags); engine.cpp picks the variant at run time.
//
// Layout: a block of S samples ("lanes") is simulated together with split real/imaginary arrays
// re[j * S + l], im[j * S + l] for amplitude j of lane l. Every gate update is then a loop over the
// S lanes with per-lane coefficients, which vectorises for any target wire; for S == 1 the loop
// over contiguous amplitudes vectorises instead. The block's state stays in cache while the whole
// fused program runs, and only expectations, probabilities or gradients leave it.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef HDQNN_ISA
#define HDQNN_ISA base
#endif
#define HDQNN_PASTE2(a, b) a##b
#define HDQNN_PASTE(a, b) HDQNN_PASTE2(a, b)
#define HDQNN_ISA_NAMESPACE HDQNN_PASTE(isa_, HDQNN_ISA)

#include "engine_types.hpp"
#include "trig.hpp"
#include "hdqnn/gate_math.hpp"
#include "hdqnn/gates.hpp"
#include "hdqnn/pauli.hpp"

HDQNN_NAMESPACE_BEGIN
namespace kernels {
namespace {

using cpu::Job;
using cpu::Op;
using cpu::OpKind;
using cpu::Task;

constexpr int kMaxQubits = 30;
/// Independent partial sums per reduction when S == 1 (lets the amplitude loop vectorise).
constexpr int kReduceWidth = 8;
constexpr size_t kAlignment = 64;
constexpr int kSrcConst = 0;
constexpr int kSrcInput = 1;

HDQNN_INLINE Index min_index(Index a, Index b) { return a < b ? a : b; }

HDQNN_INLINE int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

HDQNN_INLINE int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// ------------------------------------------------------------------------------------- teams
// A block is processed either by one thread (SoloTeam: no synchronisation at all) or by every
// thread of the parallel region together (OmpTeam: each gate's amplitude range is split, with a
// barrier after each gate). The block code is written once against this interface.

struct SoloTeam {
  HDQNN_INLINE void range(Index total, Index& begin, Index& end) const {
    begin = 0;
    end = total;
  }
  HDQNN_INLINE void sync() const {}
  template <class A>
  HDQNN_INLINE void reduce(A*, int) const {}
  HDQNN_INLINE bool leader() const { return true; }
};

struct OmpTeam {
  int tid;
  int size;
  double* scratch;  ///< [size, stride], for reductions
  int stride;

  void range(Index total, Index& begin, Index& end) const {
    const Index chunk = (total + size - 1) / size;
    begin = min_index(total, tid * chunk);
    end = min_index(total, begin + chunk);
  }
  void sync() const {
#pragma omp barrier
  }
  /// v[0, n) <- sum over the team's threads, identical on every thread (summed in thread order).
  template <class A>
  void reduce(A* v, int n) const {
    for (int first = 0; first < n; first += stride) {
      const int count = n - first < stride ? n - first : stride;
      double* mine = scratch + Index(tid) * stride;
      for (int i = 0; i < count; ++i) mine[i] = double(v[first + i]);
      sync();
      for (int i = 0; i < count; ++i) {
        double s = 0.0;
        for (int t = 0; t < size; ++t) s += scratch[Index(t) * stride + i];
        v[first + i] = A(s);
      }
      sync();
    }
  }
  bool leader() const { return tid == 0; }
};

// ------------------------------------------------------------------------------- lane values
// A "lane value" holds one real per lane of a block: a GCC/Clang vector of S reals for S > 1 (so
// the compiler keeps coefficients and accumulators in registers), a plain real for S == 1 (the
// amplitude loop is vectorised instead).

template <class T, int S>
struct LaneOf {
  typedef T type __attribute__((vector_size(S * sizeof(T))));
};
template <class T>
struct LaneOf<T, 1> {
  typedef T type;
};
template <class T, int S>
using lane_t = typename LaneOf<T, S>::type;

template <class L, class T>
HDQNN_INLINE L load_lanes(const T* p) {
  L v;
  __builtin_memcpy(&v, p, sizeof(L));
  return v;
}

template <class L, class T>
HDQNN_INLINE void store_lanes(T* p, const L& v) {
  __builtin_memcpy(p, &v, sizeof(L));
}

template <class L, class T>
HDQNN_INLINE Complex<L> load(const T* re, const T* im, Index i) {
  return make_complex(load_lanes<L>(re + i), load_lanes<L>(im + i));
}

template <class L, class T>
HDQNN_INLINE void store(T* re, T* im, Index i, const Complex<L>& a) {
  store_lanes(re + i, a.re);
  store_lanes(im + i, a.im);
}

// ------------------------------------------------------------------------------- loop skeleton

template <int NB>
HDQNN_INLINE Index insert_zero_bits(Index t, const int (&bits)[NB]) {
  for (int k = 0; k < NB; ++k) t = insert_zero_bit(t, bits[k]);
  return t;
}

/// Visits amplitude groups t in [tb, te) of the 2**(n - NB) groups: the group's base index has zero
/// bits inserted at the ascending positions ``bits`` and ``set`` OR-ed in. Calls f(o) with o the
/// element offset (index * S) of the base amplitude; f handles all S lanes at once. Groups are
/// visited in contiguous runs below the lowest inserted bit, so the innermost loop has unit stride.
template <int S, int NB, class F>
HDQNN_INLINE void for_each_group(const int (&bits)[NB], Mask set, Index tb, Index te, F&& f) {
  const Index run_len = Index(1) << bits[0];
  for (Index t = tb; t < te;) {
    const Index run = min_index(run_len - (t & (run_len - 1)), te - t);
    const Index o = (insert_zero_bits(t, bits) | Index(set)) * S;
    if constexpr (S == 1) {
#pragma omp simd
      for (Index r = 0; r < run; ++r) f(o + r);
    } else {
      for (Index r = 0; r < run; ++r) f(o + r * S);
    }
    t += run;
  }
}

/// for_each_group with NA accumulators: f(o, acc) adds into acc(i), a lane value; out[i][l]
/// receives the sums of lane l. For S == 1 the accumulators are kReduceWidth independent partial
/// sums over consecutive amplitudes (so the loop still vectorises), folded at the end.
template <class T, int S, int NB, int NA, class F>
HDQNN_INLINE void reduce_groups(const int (&bits)[NB], Mask set, Index tb, Index te, T (&out)[NA][S], F&& f) {
  using L = lane_t<T, S>;
  const Index run_len = Index(1) << bits[0];
  if constexpr (S == 1) {
    constexpr int kW = kReduceWidth;
    T acc[NA][kW];
    for (int i = 0; i < NA; ++i) {
      for (int a = 0; a < kW; ++a) acc[i][a] = T(0);
    }
    for (Index t = tb; t < te;) {
      const Index run = min_index(run_len - (t & (run_len - 1)), te - t);
      const Index o = insert_zero_bits(t, bits) | Index(set);
      Index r = 0;
      for (; r + kW <= run; r += kW) {
#pragma omp simd
        for (int a = 0; a < kW; ++a) f(o + r + a, [&](int i) -> T& { return acc[i][a]; });
      }
      for (; r < run; ++r) f(o + r, [&](int i) -> T& { return acc[i][0]; });
      t += run;
    }
    for (int i = 0; i < NA; ++i) {
      T s = T(0);
      for (int a = 0; a < kW; ++a) s += acc[i][a];
      out[i][0] = s;
    }
  } else {
    L acc[NA];
    for (int i = 0; i < NA; ++i) acc[i] = L{};
    for (Index t = tb; t < te;) {
      const Index run = min_index(run_len - (t & (run_len - 1)), te - t);
      const Index o = (insert_zero_bits(t, bits) | Index(set)) * S;
      for (Index r = 0; r < run; ++r) f(o + r * S, [&](int i) -> L& { return acc[i]; });
      t += run;
    }
    for (int i = 0; i < NA; ++i) {
      for (int l = 0; l < S; ++l) out[i][l] = acc[i][l];
    }
  }
}

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

// -------------------------------------------------------------------------------- workspace

template <class T>
struct Buffers {
  T* psi_re;
  T* psi_im;
  T* lam_re;
  T* lam_im;
  T* half_cos;  ///< [slots, S]
  T* half_sin;  ///< [slots, S]
  T* gtheta;    ///< [slots, S]: d loss / d angle
  T* table;     ///< product-state tables
  T* gk;        ///< [terms, S]: grad_output of the block
  double* acc;  ///< [terms, 2, S]: expectation sums
  double* half_angle;  ///< [slots, S]: theta / 2
};

// ----------------------------------------------------------------------------- block runner

/// Runs the whole fused program for one block of S samples: forward pass, then expectations,
/// probabilities, states, or the adjoint sweep.
template <class T, int S, class Team>
class BlockRunner {
  using L = lane_t<T, S>;

 public:
  BlockRunner(const Job<T>& job, const Team& team, const Buffers<T>& buf, double* weight_partials)
      : job_(job), team_(team), buf_(buf), weight_partials_(weight_partials) {
    n_ = job.program.n_qubits;
    dim_ = Index(1) << n_;
  }

  void run_block(Index block) {
    block_ = block;
    b0_ = block * S;
    nvalid_ = static_cast<int>(min_index(S, job_.batch - b0_));
    // in amplitude mode every thread must be done reading the previous block's state
    team_.sync();
    load_angles();
    forward();
    switch (job_.task) {
      case Task::kStatevector:
        write_states();
        break;
      case Task::kProbabilities:
        write_probabilities();
        break;
      case Task::kExpval:
        expectations();
        break;
      case Task::kVjp:
        prepare_lambda();
        backward();
        scatter_gradients();
        break;
    }
  }

 private:
  // ---------------------------------------------------------------- angles and matrices
  /// Half-angle cosines and sines of every slot and lane: angles first (scalar gathers), then one
  /// vectorised sincos over all of them.
  void load_angles() {
    const cpu::ProgramView& p = job_.program;
    double* half = buf_.half_angle;
    for (int a = 0; a < p.n_slots; ++a) {
      const int src = p.angle_src[2 * a], idx = p.angle_src[2 * a + 1];
      const double scale = 0.5 * p.angle_val[a];
      for (int l = 0; l < S; ++l) {
        double theta = 0.0;
        if (l < nvalid_) {
          const Index b = b0_ + l;
          if (src == kSrcConst) {
            theta = 1.0;
          } else if (src == kSrcInput) {
            theta = double(job_.inputs[b * job_.n_inputs + idx]);
          } else {
            const Index row = job_.per_sample_weights ? b * job_.n_weights : 0;
            theta = double(job_.weights[row + idx]);
          }
        }
        half[a * S + l] = scale * theta;
      }
    }
    half_angle_sincos(half, Index(p.n_slots) * S, buf_.half_sin, buf_.half_cos);
  }

  /// Matrix of single-qubit gate ``code`` whose angles start at ``slot``, for all lanes.
  void matrix_of(int code, int slot, Complex<L> m[4]) const {
    L c[kMaxGateAngles], s[kMaxGateAngles];
    load_gate_angles(code, slot, c, s);
    single_qubit_matrix<L, T>(code, c, s, 1, m);
  }

  void derivative_of(int code, int slot, int which, Complex<L> m[4]) const {
    L c[kMaxGateAngles], s[kMaxGateAngles];
    load_gate_angles(code, slot, c, s);
    single_qubit_matrix_derivative<L, T>(code, c, s, 1, which, m);
  }

  void load_gate_angles(int code, int slot, L (&c)[kMaxGateAngles], L (&s)[kMaxGateAngles]) const {
    const int n_angles = gate_info(code).n_angles;
    for (int k = 0; k < n_angles; ++k) {
      c[k] = load_lanes<L>(buf_.half_cos + Index(slot + k) * S);
      s[k] = load_lanes<L>(buf_.half_sin + Index(slot + k) * S);
    }
  }

  const int32_t* gate_row(int g) const { return job_.program.gates + 4 * g; }

  /// The 2x2 an op applies, for all lanes: the product of a fused block, or a controlled gate's
  /// block.
  void op_matrix(const Op& op, Complex<L> m[4]) const {
    if (op.kind == OpKind::kControlled) {
      const int32_t* row = gate_row(op.begin);
      matrix_of(controlled_base(row[0]), row[3], m);
      return;
    }
    const int32_t* row = gate_row(job_.plan.gate_order[op.begin]);
    matrix_of(row[0], row[3], m);
    for (int e = op.begin + 1; e < op.end; ++e) {
      row = gate_row(job_.plan.gate_order[e]);
      Complex<L> u[4], prod[4];
      matrix_of(row[0], row[3], u);
      mat2_mul(u, m, prod);
      for (int k = 0; k < 4; ++k) m[k] = prod[k];
    }
  }

  /// Calls f(pair) with the update of ``op`` (its inverse when ``dagger``), typed by shape.
  template <class F>
  void with_pair_op(const Op& op, bool dagger, F&& f) const {
    Complex<L> m[4], md[4];
    op_matrix(op, m);
    if (dagger) {
      mat2_dagger(m, md);
      for (int k = 0; k < 4; ++k) m[k] = md[k];
    }
    if (op.shape == kShapeDiagonal) {
      f(DiagPair<T, S>(m));
    } else if (op.shape == kShapeReal) {
      f(RealPair<T, S>(m));
    } else {
      f(GeneralPair<T, S>(m));
    }
  }

  /// Calls f(bits, set, off_a, off_b) with the amplitude-pair geometry of a pair-type op.
  template <class F>
  void with_pair_geometry(const Op& op, F&& f) const {
    if (op.kind == OpKind::kFused1q) {
      const int bits[1] = {wire_bit(op.wire0, n_)};
      f(bits, Mask(0), Index(0), (Index(1) << bits[0]) * S);
      return;
    }
    const int b0 = wire_bit(op.wire0, n_), b1 = wire_bit(op.wire1, n_);
    const int bits[2] = {b0 < b1 ? b0 : b1, b0 < b1 ? b1 : b0};
    if (op.kind == OpKind::kSwap) {
      f(bits, Mask(0), (Index(1) << b1) * S, (Index(1) << b0) * S);
    } else {  // controlled: wire0 is the control, the pair runs along the target
      f(bits, Mask(1) << b0, Index(0), (Index(1) << b1) * S);
    }
  }

  /// Calls f(bits, off_t, off_c, tb, te) for a kFused1qCx op (wire0 = target, wire1 = control).
  template <class F>
  void with_cx_tail_geometry(const Op& op, F&& f) const {
    const int bt = wire_bit(op.wire0, n_), bc = wire_bit(op.wire1, n_);
    const int bits[2] = {bt < bc ? bt : bc, bt < bc ? bc : bt};
    Index tb, te;
    group_range<2>(tb, te);
    f(bits, (Index(1) << bt) * S, (Index(1) << bc) * S, tb, te);
  }

  template <int NB>
  void group_range(Index& tb, Index& te) const {
    team_.range(dim_ >> NB, tb, te);
  }

  // ---------------------------------------------------------------------------- forward
  void forward() {
    prepare_product_state();
    const cpu::PlanView& plan = job_.plan;
    for (int i = plan.n_initial; i < plan.n_ops; ++i) {
      forward_op(plan.ops[i]);
      team_.sync();
    }
  }

  /// The ops before any two-qubit gate act on |0...0>: build their product state directly
  /// (amplitude = product of high-wire and low-wire tables), one pass instead of one per wire.
  void prepare_product_state() {
    T vr[kMaxQubits][2][S], vi[kMaxQubits][2][S];
    for (int w = 0; w < n_; ++w) {
      for (int l = 0; l < S; ++l) {
        vr[w][0][l] = T(1);
        vi[w][0][l] = T(0);
        vr[w][1][l] = T(0);
        vi[w][1][l] = T(0);
      }
    }
    for (int i = 0; i < job_.plan.n_initial; ++i) {
      const Op& op = job_.plan.ops[i];
      Complex<L> m[4];
      op_matrix(op, m);  // the wire's state is m |0> = column 0
      store_lanes(vr[op.wire0][0], m[0].re);
      store_lanes(vi[op.wire0][0], m[0].im);
      store_lanes(vr[op.wire0][1], m[2].re);
      store_lanes(vi[op.wire0][1], m[2].im);
    }
    const int n_high = n_ / 2, n_low = n_ - n_high;
    const Index high_size = Index(1) << n_high, low_size = Index(1) << n_low;
    T* hr = buf_.table;
    T* hi = hr + high_size * S;
    T* lr = hi + high_size * S;
    T* li = lr + low_size * S;
    build_table(vr, vi, 0, n_high, hr, hi);
    build_table(vr, vi, n_high, n_, lr, li);
    Index jb, je;
    team_.range(dim_, jb, je);
    T* pr = buf_.psi_re;
    T* pi = buf_.psi_im;
    for (Index j = jb; j < je; ++j) {
      const Index h = (j >> n_low) * S, lo = (j & (low_size - 1)) * S, o = j * S;
#pragma omp simd
      for (int l = 0; l < S; ++l) {
        const Complex<T> z = make_complex(hr[h + l], hi[h + l]) * make_complex(lr[lo + l], li[lo + l]);
        pr[o + l] = z.re;
        pi[o + l] = z.im;
      }
    }
    team_.sync();
  }

  /// tr, ti [2**(last - first), S] <- tensor product of the wire states first..last-1 (the first
  /// wire most significant), by doubling in place.
  static void build_table(const T (&vr)[kMaxQubits][2][S], const T (&vi)[kMaxQubits][2][S], int first, int last,
                          T* tr, T* ti) {
    for (int l = 0; l < S; ++l) {
      tr[l] = T(1);
      ti[l] = T(0);
    }
    Index size = 1;
    for (int w = first; w < last; ++w) {
      for (Index i = size - 1; i >= 0; --i) {
        for (int l = 0; l < S; ++l) {
          const Complex<T> x = make_complex(tr[i * S + l], ti[i * S + l]);
          const Complex<T> z0 = x * make_complex(vr[w][0][l], vi[w][0][l]);
          const Complex<T> z1 = x * make_complex(vr[w][1][l], vi[w][1][l]);
          tr[(2 * i) * S + l] = z0.re;
          ti[(2 * i) * S + l] = z0.im;
          tr[(2 * i + 1) * S + l] = z1.re;
          ti[(2 * i + 1) * S + l] = z1.im;
        }
      }
      size *= 2;
    }
  }

  void forward_op(const Op& op) {
    T* pr = buf_.psi_re;
    T* pi = buf_.psi_im;
    switch (op.kind) {
      case OpKind::kRzz:
        rzz_forward(op);
        return;
      case OpKind::kPairRotation:
        pair_rotation_forward(op);
        return;
      case OpKind::kFused1qCx:
        with_cx_tail_geometry(op, [&](const int (&bits)[2], Index off_t, Index off_c, Index tb, Index te) {
          with_pair_op(op, false, [&](const auto& pair) {
            cx_tail_apply<T, S>(pr, pi, bits, off_t, off_c, pair, tb, te);
          });
        });
        return;
      default:
        break;
    }
    with_pair_geometry(op, [&](const auto& bits, Mask set, Index off_a, Index off_b) {
      constexpr int NB = sizeof(bits) / sizeof(int);
      Index tb, te;
      group_range<NB>(tb, te);
      if (op.kind == OpKind::kCx || op.kind == OpKind::kSwap) {
        pair_apply<T, S>(pr, pi, bits, set, off_a, off_b, ExchangePair(), tb, te);
      } else if (op.kind == OpKind::kCz) {
        pair_apply<T, S>(pr, pi, bits, set, off_a, off_b, NegatePair(), tb, te);
      } else {
        with_pair_op(op, false, [&](const auto& pair) {
          pair_apply<T, S>(pr, pi, bits, set, off_a, off_b, pair, tb, te);
        });
      }
    });
  }

  // ------------------------------------------------------------------ two-qubit rotations

  /// Element offsets of the quad of (wire0, wire1), indexed 2 * bit(wire0) + bit(wire1).
  void quad_geometry(const Op& op, int (&bits)[2], Index (&offs)[4]) const {
    const int b0 = wire_bit(op.wire0, n_), b1 = wire_bit(op.wire1, n_);
    bits[0] = b0 < b1 ? b0 : b1;
    bits[1] = b0 < b1 ? b1 : b0;
    offs[0] = 0;
    offs[1] = (Index(1) << b1) * S;
    offs[2] = (Index(1) << b0) * S;
    offs[3] = offs[1] + offs[2];
  }

  /// rzz phases for all lanes (or their derivatives): e[0] on even parity (|00>, |11>), e[1] on
  /// odd parity.
  void rzz_phases(const Op& op, bool derivative, Complex<L> (&e)[2]) const {
    const int slot = gate_row(op.begin)[3];
    const L c = load_lanes<L>(buf_.half_cos + Index(slot) * S), s = load_lanes<L>(buf_.half_sin + Index(slot) * S);
    Complex<L> m[16];
    if (derivative) {
      pauli_pair_rotation_derivative<L, T>(kGateRzz, c, s, m);
    } else {
      pauli_pair_rotation_matrix(kGateRzz, c, s, m);
    }
    e[0] = m[0];
    e[1] = m[5];
  }

  /// rzz phases, conjugated for the inverse.
  void rzz_lanes(const Op& op, bool inverse, Complex<L> (&e)[2]) const {
    rzz_phases(op, false, e);
    if (inverse) {
      for (int k = 0; k < 2; ++k) e[k] = conj(e[k]);
    }
  }

  void rzz_forward(const Op& op) {
    int bits[2];
    Index offs[4];
    quad_geometry(op, bits, offs);
    Complex<L> e[2];
    rzz_lanes(op, false, e);
    T* pr = buf_.psi_re;
    T* pi = buf_.psi_im;
    Index tb, te;
    group_range<2>(tb, te);
    for_each_group<S>(bits, Mask(0), tb, te, [&](Index o) {
      for (int q = 0; q < 4; ++q) {
        const Complex<L>& phase = (q == 1 || q == 2) ? e[1] : e[0];
        store(pr, pi, o + offs[q], phase * load<L>(pr, pi, o + offs[q]));
      }
    });
  }

  void rzz_backward(const Op& op) {
    int bits[2];
    Index offs[4];
    quad_geometry(op, bits, offs);
    Complex<L> e[2];
    rzz_lanes(op, true, e);
    T* pr = buf_.psi_re;
    T* pi = buf_.psi_im;
    T* lr = buf_.lam_re;
    T* li = buf_.lam_im;
    T acc[4][S];  // R_even (re, im), R_odd (re, im)
    Index tb, te;
    group_range<2>(tb, te);
    reduce_groups<T, S>(bits, Mask(0), tb, te, acc, [&](Index o, auto&& sum) {
      for (int q = 0; q < 4; ++q) {
        const int k = (q == 1 || q == 2) ? 1 : 0;
        const auto p = e[k] * load<decltype(e[k].re)>(pr, pi, o + offs[q]);
        const auto lam = load<decltype(e[k].re)>(lr, li, o + offs[q]);
        add_cross(sum(2 * k), sum(2 * k + 1), lam, p);
        store(pr, pi, o + offs[q], p);
        store(lr, li, o + offs[q], e[k] * lam);
      }
    });
    if (!op.needs_grad) return;
    team_.reduce(&acc[0][0], 4 * S);
    Complex<L> de[2];
    rzz_phases(op, true, de);
    const Complex<L> r_even = make_complex(load_lanes<L>(acc[0]), load_lanes<L>(acc[1]));
    const Complex<L> r_odd = make_complex(load_lanes<L>(acc[2]), load_lanes<L>(acc[3]));
    add_angle_gradient(gate_row(op.begin)[3], (de[0] * r_even + de[1] * r_odd).re);
  }

  /// 4x4 of rxx / ryy for all lanes (its inverse, or its derivative).
  void pair_rotation_lanes(const Op& op, bool derivative, bool dagger, Complex<L> (&mat)[16]) const {
    const int32_t* row = gate_row(op.begin);
    const L c = load_lanes<L>(buf_.half_cos + Index(row[3]) * S);
    const L s = load_lanes<L>(buf_.half_sin + Index(row[3]) * S);
    if (derivative) {
      pauli_pair_rotation_derivative<L, T>(row[0], c, s, mat);
    } else {
      pauli_pair_rotation_matrix(row[0], c, s, mat);
    }
    if (dagger) {
      Complex<L> md[16];
      mat4_dagger(mat, md);
      for (int k = 0; k < 16; ++k) mat[k] = md[k];
    }
  }

  void pair_rotation_forward(const Op& op) {
    int bits[2];
    Index offs[4];
    quad_geometry(op, bits, offs);
    Complex<L> mat[16];
    pair_rotation_lanes(op, false, false, mat);
    T* pr = buf_.psi_re;
    T* pi = buf_.psi_im;
    Index tb, te;
    group_range<2>(tb, te);
    for_each_group<S>(bits, Mask(0), tb, te, [&](Index o) {
      Complex<L> a[4];
      for (int q = 0; q < 4; ++q) a[q] = load<L>(pr, pi, o + offs[q]);
      apply_4x4(mat, a);
      for (int q = 0; q < 4; ++q) store(pr, pi, o + offs[q], a[q]);
    });
  }

  void pair_rotation_backward(const Op& op) {
    int bits[2];
    Index offs[4];
    quad_geometry(op, bits, offs);
    Complex<L> inv[16], der[16];
    pair_rotation_lanes(op, false, true, inv);
    pair_rotation_lanes(op, true, false, der);
    T* pr = buf_.psi_re;
    T* pi = buf_.psi_im;
    T* lr = buf_.lam_re;
    T* li = buf_.lam_im;
    T acc[2][S];  // <lambda| dU |psi_before>
    Index tb, te;
    group_range<2>(tb, te);
    reduce_groups<T, S>(bits, Mask(0), tb, te, acc, [&](Index o, auto&& sum) {
      using V = typename std::decay<decltype(sum(0))>::type;
      Complex<V> p[4], lam[4], dp[4];
      for (int q = 0; q < 4; ++q) p[q] = load<V>(pr, pi, o + offs[q]);
      apply_4x4(inv, p);
      for (int q = 0; q < 4; ++q) {
        dp[q] = p[q];
        lam[q] = load<V>(lr, li, o + offs[q]);
      }
      apply_4x4(der, dp);
      for (int q = 0; q < 4; ++q) add_cross(sum(0), sum(1), lam[q], dp[q]);
      apply_4x4(inv, lam);
      for (int q = 0; q < 4; ++q) {
        store(pr, pi, o + offs[q], p[q]);
        store(lr, li, o + offs[q], lam[q]);
      }
    });
    if (!op.needs_grad) return;
    team_.reduce(&acc[0][0], 2 * S);
    add_angle_gradient(gate_row(op.begin)[3], load_lanes<L>(acc[0]));
  }

  // ---------------------------------------------------------------------------- outputs
  void write_states() {
    Index jb, je;
    team_.range(dim_, jb, je);
    for (int l = 0; l < nvalid_; ++l) {
      T* row = job_.out + 2 * (b0_ + l) * dim_;
      for (Index j = jb; j < je; ++j) {
        row[2 * j] = buf_.psi_re[j * S + l];
        row[2 * j + 1] = buf_.psi_im[j * S + l];
      }
    }
  }

  void write_probabilities() {
    Index jb, je;
    team_.range(dim_, jb, je);
    for (int l = 0; l < nvalid_; ++l) {
      T* row = job_.out + (b0_ + l) * dim_;
      for (Index j = jb; j < je; ++j) {
        row[j] = norm2(load<T>(buf_.psi_re, buf_.psi_im, j * S + l));
      }
    }
  }

  /// <psi|P_k|psi> for every term: Z-only terms from probabilities, others from the overlap
  /// sum_j conj(psi[j ^ flip]) sign(j) psi[j], times i^nY.
  void expectations() {
    const int K = job_.n_terms;
    double* acc = buf_.acc;  // [K, 2, S]
    for (Index i = 0; i < Index(K) * 2 * S; ++i) acc[i] = 0.0;
    const T* pr = buf_.psi_re;
    const T* pi = buf_.psi_im;
    Index jb, je;
    team_.range(dim_, jb, je);
    for (Index j = jb; j < je; ++j) {
      const Index o = j * S;
      double prob[S];
#pragma omp simd
      for (int l = 0; l < S; ++l) prob[l] = double(norm2(load<T>(pr, pi, o + l)));
      for (int k = 0; k < K; ++k) {
        const PauliTerm& term = job_.terms[k];
        const double sgn = parity(Mask(j) & term.sign) ? -1.0 : 1.0;
        double* ar = acc + Index(2 * k) * S;
        double* ai = ar + S;
        if (term.flip == 0) {
#pragma omp simd
          for (int l = 0; l < S; ++l) ar[l] += sgn * prob[l];
        } else {
          const Index o2 = (j ^ Index(term.flip)) * S;
#pragma omp simd
          for (int l = 0; l < S; ++l) {
            const Complex<T> z = conj_mul(load<T>(pr, pi, o2 + l), load<T>(pr, pi, o + l));
            ar[l] += sgn * double(z.re);
            ai[l] += sgn * double(z.im);
          }
        }
      }
    }
    team_.reduce(acc, 2 * K * S);
    if (!team_.leader()) return;
    for (int l = 0; l < nvalid_; ++l) {
      for (int k = 0; k < K; ++k) {
        const double* ar = acc + Index(2 * k) * S;
        const Complex<double> z = make_complex(ar[l], ar[S + l]);
        job_.out[(b0_ + l) * K + k] = T(real_of_i_power(job_.terms[k].ny, z));
      }
    }
  }

  // --------------------------------------------------------------------------- backward
  /// lambda = sum_k g_k P_k psi, with g the block's rows of grad_output.
  void prepare_lambda() {
    const int K = job_.n_terms;
    T* gk = buf_.gk;
    for (int k = 0; k < K; ++k) {
      for (int l = 0; l < S; ++l) {
        gk[k * S + l] = l < nvalid_ ? job_.grad_output[(b0_ + l) * K + k] : T(0);
      }
    }
    const T* pr = buf_.psi_re;
    const T* pi = buf_.psi_im;
    T* lr = buf_.lam_re;
    T* li = buf_.lam_im;
    Index jb, je;
    team_.range(dim_, jb, je);
    for (Index j = jb; j < je; ++j) {
      const Index o = j * S;
      T fz[S];
      for (int l = 0; l < S; ++l) fz[l] = T(0);
      for (int k = 0; k < K; ++k) {
        const PauliTerm& term = job_.terms[k];
        if (term.flip != 0) continue;
        const T sgn = parity(Mask(j) & term.sign) ? T(-1) : T(1);
#pragma omp simd
        for (int l = 0; l < S; ++l) fz[l] += sgn * gk[k * S + l];
      }
#pragma omp simd
      for (int l = 0; l < S; ++l) store(lr, li, o + l, fz[l] * load<T>(pr, pi, o + l));
      for (int k = 0; k < K; ++k) {
        const PauliTerm& term = job_.terms[k];
        if (term.flip == 0) continue;
        const Index src = j ^ Index(term.flip);
        const Complex<T> phase = pauli_phase<T>(term, src);
#pragma omp simd
        for (int l = 0; l < S; ++l) {
          const Complex<T> add = gk[k * S + l] * (phase * load<T>(pr, pi, src * S + l));
          store(lr, li, o + l, load<T>(lr, li, o + l) + add);
        }
      }
    }
    team_.sync();
  }

  void backward() {
    for (Index i = 0; i < Index(job_.program.n_slots) * S; ++i) buf_.gtheta[i] = T(0);
    const cpu::PlanView& plan = job_.plan;
    for (int i = plan.n_ops - 1; i >= 0; --i) {
      backward_op(plan.ops[i]);
      team_.sync();
    }
  }

  void backward_op(const Op& op) {
    switch (op.kind) {
      case OpKind::kRzz:
        rzz_backward(op);
        return;
      case OpKind::kPairRotation:
        pair_rotation_backward(op);
        return;
      default:
        break;
    }
    T* pr = buf_.psi_re;
    T* pi = buf_.psi_im;
    T* lr = buf_.lam_re;
    T* li = buf_.lam_im;
    if (op.kind == OpKind::kFused1qCx) {
      with_cx_tail_geometry(op, [&](const int (&bits)[2], Index off_t, Index off_c, Index tb, Index te) {
        with_pair_op(op, true, [&](const auto& pair) {
          using P = typename std::decay<decltype(pair)>::type;
          if (!op.needs_grad) {
            cx_tail_apply2<T, S>(pr, pi, lr, li, bits, off_t, off_c, pair, tb, te);
            return;
          }
          T acc[P::kAcc][S];
          cx_tail_adjoint<T, S>(pr, pi, lr, li, bits, off_t, off_c, pair, acc, tb, te);
          reduce_and_differentiate<P>(op, acc);
        });
      });
      return;
    }
    with_pair_geometry(op, [&](const auto& bits, Mask set, Index off_a, Index off_b) {
      constexpr int NB = sizeof(bits) / sizeof(int);
      Index tb, te;
      group_range<NB>(tb, te);
      // cx, cz and swap are their own inverses and have no angles
      if (op.kind == OpKind::kCx || op.kind == OpKind::kSwap) {
        pair_apply2<T, S>(pr, pi, lr, li, bits, set, off_a, off_b, ExchangePair(), tb, te);
        return;
      }
      if (op.kind == OpKind::kCz) {
        pair_apply2<T, S>(pr, pi, lr, li, bits, set, off_a, off_b, NegatePair(), tb, te);
        return;
      }
      with_pair_op(op, true, [&](const auto& pair) {
        using P = typename std::decay<decltype(pair)>::type;
        if (!op.needs_grad) {
          pair_apply2<T, S>(pr, pi, lr, li, bits, set, off_a, off_b, pair, tb, te);
          return;
        }
        T acc[P::kAcc][S];
        pair_adjoint<T, S>(pr, pi, lr, li, bits, set, off_a, off_b, pair, acc, tb, te);
        reduce_and_differentiate<P>(op, acc);
      });
    });
  }

  template <class P>
  void reduce_and_differentiate(const Op& op, T (&acc)[P::kAcc][S]) {
    team_.reduce(&acc[0][0], P::kAcc * S);
    Complex<L> r[4];
    P::cross(acc, r);
    block_gradients(op, r);
  }

  /// gtheta[slot] += 2 re, for all lanes (re is Re <lambda| dU |psi>).
  void add_angle_gradient(int slot, const L& re) {
    T* g = buf_.gtheta + Index(slot) * S;
    store_lanes(g, load_lanes<L>(g) + (re + re));
  }

  /// Angle gradients of the gates of a fused block (or one controlled gate), all lanes at once,
  /// from the cross matrix R_ab = sum conj(lambda_after_a) psi_before_b of the block
  /// U = U_k ... U_1: d/dtheta_j = 2 Re tr(dU_j Q_j) with Q_1 = R^T U U_1^dag and
  /// Q_{j+1} = U_j Q_j U_{j+1}^dag.
  void block_gradients(const Op& op, const Complex<L> r[4]) {
    Complex<L> q[4] = {r[0], r[2], r[1], r[3]};  // R^T
    const bool controlled = op.kind == OpKind::kControlled;
    const int count = controlled ? 1 : op.end - op.begin;
    auto row_of = [&](int e) { return gate_row(controlled ? op.begin : job_.plan.gate_order[op.begin + e]); };
    auto code_of = [&](const int32_t* row) { return controlled ? controlled_base(row[0]) : int(row[0]); };
    Complex<L> cur[4], tmp[4], dag[4];
    const int32_t* row = row_of(0);
    matrix_of(code_of(row), row[3], cur);
    if (!controlled) {
      Complex<L> total[4];
      op_matrix(op, total);
      mat2_mul(q, total, tmp);
      mat2_dagger(cur, dag);
      mat2_mul(tmp, dag, q);
    }
    for (int e = 0; e < count; ++e) {
      const int code = code_of(row);
      const int slot = row[3];
      const int n_angles = gate_info(code).n_angles;
      for (int a = 0; a < n_angles; ++a) {
        if (job_.program.angle_src[2 * (slot + a)] == kSrcConst) continue;
        Complex<L> du[4];
        derivative_of(code, slot, a, du);
        add_angle_gradient(slot + a, mat2_trace_of_product(du, q).re);
      }
      if (e + 1 == count) break;
      row = row_of(e + 1);
      Complex<L> next[4], tmp2[4];
      matrix_of(code_of(row), row[3], next);
      mat2_mul(cur, q, tmp);
      mat2_dagger(next, dag);
      mat2_mul(tmp, dag, tmp2);
      for (int k = 0; k < 4; ++k) {
        q[k] = tmp2[k];
        cur[k] = next[k];
      }
    }
  }

  /// Chain rule from angle gradients to inputs and weights (shared weights: per-block partials,
  /// summed in block order after the parallel region so results do not depend on scheduling).
  void scatter_gradients() {
    if (!team_.leader()) return;
    const cpu::ProgramView& p = job_.program;
    const int D = job_.n_inputs, P = job_.n_weights;
    for (int l = 0; l < nvalid_; ++l) {
      const Index b = b0_ + l;
      T* gi = job_.out + b * D;
      for (int d = 0; d < D; ++d) gi[d] = T(0);
      if (job_.per_sample_weights) {
        for (int w = 0; w < P; ++w) job_.grad_weights[b * P + w] = T(0);
      }
      for (int a = 0; a < p.n_slots; ++a) {
        const int src = p.angle_src[2 * a], idx = p.angle_src[2 * a + 1];
        if (src == kSrcConst) continue;
        const double g = p.angle_val[a] * double(buf_.gtheta[a * S + l]);
        if (src == kSrcInput) {
          gi[idx] += T(g);
        } else if (job_.per_sample_weights) {
          job_.grad_weights[b * P + idx] += T(g);
        } else {
          weight_partials_[block_ * P + idx] += g;
        }
      }
    }
  }

  const Job<T>& job_;
  Team team_;
  Buffers<T> buf_;
  double* weight_partials_;
  int n_;
  Index dim_;
  Index block_ = 0;
  Index b0_ = 0;
  int nvalid_ = 0;
};

// ------------------------------------------------------------------------------------ driver

HDQNN_INLINE Index align_up(Index count, Index elem_size) {
  const Index a = Index(kAlignment) / elem_size;
  return (count + a - 1) / a * a;
}

/// Sizes (in elements) of one worker's buffers.
template <class T, int S>
struct Layout {
  Index state;    ///< one of psi_re, psi_im, lam_re, lam_im
  Index slots;    ///< one of half_cos, half_sin, gtheta
  Index table;
  Index gk;
  Index acc;      ///< doubles
  Index angles;   ///< doubles
  Index scratch;  ///< doubles per thread for team reductions

  explicit Layout(const Job<T>& job) {
    const int n = job.program.n_qubits;
    state = align_up((Index(1) << n) * S, sizeof(T));
    slots = align_up(Index(job.program.n_slots > 0 ? job.program.n_slots : 1) * S, sizeof(T));
    table = align_up(2 * ((Index(1) << (n / 2)) + (Index(1) << (n - n / 2))) * S, sizeof(T));
    gk = align_up(Index(job.n_terms > 0 ? job.n_terms : 1) * S, sizeof(T));
    acc = align_up(Index(2) * (job.n_terms > 0 ? job.n_terms : 1) * S, sizeof(double));
    angles = align_up(Index(job.program.n_slots > 0 ? job.program.n_slots : 1) * S, sizeof(double));
    const Index widest = 8 * Index(S);
    scratch = align_up(acc > widest ? acc : widest, sizeof(double));
  }
  Index states_per_worker(Task task) const { return task == Task::kVjp ? 4 : 2; }
  Index private_elems() const { return 3 * slots + table + gk; }
  Index private_doubles() const { return acc + angles; }
};

template <class T>
Buffers<T> carve(T* states, T* priv, double* acc, Index acc_size, Index state, Index slots, Index table, bool vjp) {
  Buffers<T> b;
  b.psi_re = states;
  b.psi_im = states + state;
  b.lam_re = vjp ? states + 2 * state : nullptr;
  b.lam_im = vjp ? states + 3 * state : nullptr;
  b.half_cos = priv;
  b.half_sin = priv + slots;
  b.gtheta = priv + 2 * slots;
  b.table = priv + 3 * slots;
  b.gk = b.table + table;
  b.acc = acc;
  b.half_angle = acc + acc_size;
  return b;
}

template <class T, int S>
int run_lanes(const Job<T>& job) {
  const Layout<T, S> lay(job);
  const bool vjp = job.task == Task::kVjp;
  const bool shared_weight_grads = vjp && !job.per_sample_weights;
  const int threads = job.threads > 0 ? job.threads : 1;
  const Index n_blocks = (job.batch + S - 1) / S;
  const Index state_sets = job.amplitude_parallel ? 1 : threads;
  const Index state_elems = state_sets * lay.states_per_worker(job.task) * lay.state;
  const Index priv_elems = Index(threads) * lay.private_elems();
  const Index double_elems = Index(threads) * (lay.private_doubles() + lay.scratch) +
                             (shared_weight_grads ? align_up(n_blocks * job.n_weights, sizeof(double)) : 0);
  const size_t bytes = size_t(state_elems + priv_elems) * sizeof(T) + size_t(double_elems) * sizeof(double);
  void* memory = aligned_alloc(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  if (memory == nullptr) return cpu::kRunOutOfMemory;
  T* states = static_cast<T*>(memory);
  T* priv = states + state_elems;
  double* doubles = reinterpret_cast<double*>(priv + priv_elems);
  double* accs = doubles;
  double* scratch = accs + Index(threads) * lay.private_doubles();
  double* weight_partials = scratch + Index(threads) * lay.scratch;
  if (shared_weight_grads) memset(weight_partials, 0, sizeof(double) * size_t(n_blocks * job.n_weights));

  auto buffers_of = [&](int tid, int state_set) {
    const Index per_set = lay.states_per_worker(job.task) * lay.state;
    return carve<T>(states + state_set * per_set, priv + tid * lay.private_elems(), accs + tid * lay.private_doubles(),
                    lay.acc, lay.state, lay.slots, lay.table, vjp);
  };

  if (job.amplitude_parallel) {
#pragma omp parallel num_threads(threads)
    {
      const int tid = thread_id();
      const OmpTeam team{tid, team_size(), scratch, static_cast<int>(lay.scratch)};
      BlockRunner<T, S, OmpTeam> runner(job, team, buffers_of(tid, 0), weight_partials);
      for (Index block = 0; block < n_blocks; ++block) runner.run_block(block);
    }
  } else {
    auto run_one = [&](int worker, Index block) {
      BlockRunner<T, S, SoloTeam>(job, SoloTeam(), buffers_of(worker, worker), weight_partials).run_block(block);
    };
    using RunOne = decltype(run_one);
    job.parallel_blocks(threads, n_blocks, [](void* ctx, int worker, Index block) {
      (*static_cast<RunOne*>(ctx))(worker, block);
    }, &run_one);
  }

  if (shared_weight_grads) {
    for (int w = 0; w < job.n_weights; ++w) {
      double s = 0.0;
      for (Index block = 0; block < n_blocks; ++block) s += weight_partials[block * job.n_weights + w];
      job.grad_weights[w] = T(s);
    }
  }
  free(memory);
  return cpu::kRunOk;
}

template <class T>
int run_job(const Job<T>& job) {
  switch (job.lanes) {
    case 1: return run_lanes<T, 1>(job);
    case 2: return run_lanes<T, 2>(job);
    case 4: return run_lanes<T, 4>(job);
    case 8: return run_lanes<T, 8>(job);
    case 16: return run_lanes<T, 16>(job);
    default: return cpu::kRunBadLanes;
  }
}

}  // namespace
}  // namespace kernels
HDQNN_NAMESPACE_END

namespace hdqnn {
namespace cpu {

int HDQNN_PASTE(run_job_, HDQNN_ISA)(const Job<float>& job) { return kernels::run_job(job); }
int HDQNN_PASTE(run_job_, HDQNN_ISA)(const Job<double>& job) { return kernels::run_job(job); }

}  // namespace cpu
}  // namespace hdqnn

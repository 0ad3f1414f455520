// Lane values, thread teams and the loop skeleton of the CPU kernels (included by kernels.cpp).
#pragma once

#include "hdqnn/complex.hpp"
#include "hdqnn/config.hpp"

HDQNN_NAMESPACE_BEGIN
namespace kernels {
namespace {  // included by kernels.cpp only, once per instruction set

/// Independent partial sums per reduction when S == 1 (lets the amplitude loop vectorise).
constexpr int kReduceWidth = 8;

HDQNN_INLINE Index min_index(Index a, Index b) { return a < b ? a : b; }

// ------------------------------------------------------------------------------------- teams
// A block is processed either by one thread (SoloTeam: no synchronisation at all) or by every
// thread of the parallel region together (OmpTeam: each gate's amplitude range is split, with a
// barrier after each gate). The block code is written once against this interface.

/// Whether a call's cancel flag (Job::cancel, may be null) has been set by another thread.
HDQNN_INLINE bool cancel_flag_set(const int* cancel) {
  return cancel != nullptr && __atomic_load_n(cancel, __ATOMIC_RELAXED) != 0;
}

struct SoloTeam {
  const int* cancel = nullptr;  ///< Job::cancel

  /// Whether the call was cancelled: the block stops at the next op.
  HDQNN_INLINE bool cancelled() const { return cancel_flag_set(cancel); }
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
  const int* cancel;  ///< Job::cancel
  int* votes;         ///< [2], shared by the team and zeroed before it starts: see cancelled()
  int turn = 0;
  bool stopped = false;

  /// Whether the call was cancelled, the same answer on every thread (a thread that left the op
  /// loop alone would leave the others waiting at a barrier forever). Every thread calls it at the
  /// same points, with a sync() between any two calls. Call k returns what the leader read from
  /// the flag at call k - 1, published by the barrier between them, and the leader stores its new
  /// reading in the other slot, which every thread read at call k - 1, before that barrier. Once
  /// true it stays true.
  bool cancelled() {
    if (stopped || cancel == nullptr) return stopped;
    stopped = __atomic_load_n(votes + turn, __ATOMIC_RELAXED) != 0;
    turn ^= 1;
    if (leader()) __atomic_store_n(votes + turn, cancel_flag_set(cancel) ? 1 : 0, __ATOMIC_RELAXED);
    return stopped;
  }

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

}  // namespace
}  // namespace kernels
HDQNN_NAMESPACE_END

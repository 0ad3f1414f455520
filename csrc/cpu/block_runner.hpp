// One block of samples through the whole fused program: forward pass, outputs, adjoint sweep
// (included by kernels.cpp).
#pragma once

#include <stdint.h>

#include <cmath>
#include <type_traits>
#include <utility>

#include "chunks.hpp"
#include "engine_types.hpp"
#include "hdqnn/gates.hpp"
#include "hdqnn/pauli.hpp"
#include "lanes.hpp"
#include "pair_kernels.hpp"
#include "trig.hpp"

HDQNN_NAMESPACE_BEGIN
namespace kernels {
namespace {  // included by kernels.cpp only, once per instruction set

using cpu::Job;
using cpu::Op;
using cpu::OpKind;
using cpu::Task;

constexpr int kMaxQubits = 30;
/// Scaled rotations between two multiplications of the state by their factors (norm growth at
/// most 2**(kMaxScaledOps / 2)).
constexpr int kMaxScaledOps = 64;
/// Largest register run in chained passes: octet passes over blocks that live in the L3 measured
/// slower than separate passes (16 qubits, 64 samples, complex64: 49 vs 45 ms per call).
constexpr int kMaxChainQubits = 14;
#ifndef HDQNN_VECTOR_BYTES
#define HDQNN_VECTOR_BYTES 16  // CMake passes the SIMD width of the variant (engine.cpp's vector_bytes)
#endif
constexpr int kSrcConst = 0;
constexpr int kSrcInput = 1;
/// Z-only expectations read the low bits' signs off a Walsh-Hadamard transform of aligned groups of
/// 2**kWalshBits probabilities: kWalshBits additions per amplitude instead of one per term.
constexpr int kWalshBits = 5;
/// Fewest Z-only terms for which the transform is cheaper than one update per term.
constexpr int kWalshMinTerms = 6;
/// Steps of a long pass over the state (first touch of its pages, many terms per amplitude)
/// between two reads of the cancel flag.
constexpr Index kCancelStride = 4096;

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
  T* gchunk;    ///< [slots, S]: the share of gtheta from the chunks this thread ran (cache blocking)
  T* table;     ///< product-state tables
  T* gk;        ///< [terms, S]: grad_output of the block
  T* chunk;     ///< cache blocking: [2 or 4, chunk_size], re and im of psi (and lambda) of one chunk
  Index chunk_size;
  double* acc;  ///< [terms, 2, S]: expectation sums
  double* half_angle;  ///< [slots, S]: theta / 2
};

// ----------------------------------------------------------------------------- block runner

/// Runs the whole fused program for one block of S samples: forward pass, then expectations,
/// probabilities, states, or the adjoint sweep.
template <class T, int S, class Team>
class BlockRunner {
  using L = lane_t<T, S>;
  template <class, int, class>
  friend class BlockRunner;  // a runner drives another one over the chunks of its state

  /// Chained passes (two ops per pass over octets of amplitudes, every pair of pair types) are
  /// compiled for one configuration only: blocks run by one thread with the lanes that fill this
  /// variant's vector registers, which is what the engine picks for any batch of a register's width
  /// or more (engine.cpp, lane_cost). Compiled for every lane count and team they tripled the build
  /// (kernels.cpp: 56 -> 204 s per object); other lane counts run the two ops one pass each.
  static constexpr bool kChainedPasses =
      S == HDQNN_VECTOR_BYTES / int(sizeof(T)) && std::is_same<Team, SoloTeam>::value;

 public:
  BlockRunner(const Job<T>& job, const Team& team, const Buffers<T>& buf, double* weight_partials)
      : BlockRunner(job, team, buf, weight_partials, job.program.n_qubits) {}

  /// A runner whose state has ``n_qubits`` qubits: the whole register, or one cache-blocking chunk
  /// (which shares the angles of the block's runner).
  BlockRunner(const Job<T>& job, const Team& team, const Buffers<T>& buf, double* weight_partials, int n_qubits)
      : job_(job), team_(team), buf_(buf), weight_partials_(weight_partials), n_(n_qubits),
        dim_(Index(1) << n_qubits) {}

  void run_block(Index block) {
    block_ = block;
    b0_ = block * S;
    nvalid_ = static_cast<int>(min_index(S, job_.batch - b0_));
    // in amplitude mode every thread must be done reading the previous block's state
    team_.sync();
    if (team_.cancelled()) return;
    load_angles();
    if (job_.state_in != nullptr) {
      read_states(job_.state_in);
    } else {
      forward();
    }
    if (team_.cancelled()) return;  // the outputs take passes too, long ones with many terms
    switch (job_.task) {
      case Task::kStatevector:
        write_states(job_.out);
        break;
      case Task::kProbabilities:
        write_probabilities();
        break;
      case Task::kExpval:
        expectations();
        if (job_.state_out != nullptr) write_states(job_.state_out);
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
    range_matrix(op.begin, op.end, m);
  }

  /// The product of the gates gate_order[begin, end) (end > begin), for all lanes.
  void range_matrix(int begin, int end, Complex<L> m[4]) const {
    const int32_t* row = gate_row(job_.plan.gate_order[begin]);
    matrix_of(row[0], row[3], m);
    for (int e = begin + 1; e < end; ++e) {
      row = gate_row(job_.plan.gate_order[e]);
      Complex<L> u[4], prod[4];
      matrix_of(row[0], row[3], u);
      mat2_mul(u, m, prod);
      for (int k = 0; k < 4; ++k) m[k] = prod[k];
    }
  }

  /// End of the gates an op differentiates in gate_order (see Op::grad_end).
  static int gradient_end(const Op& op) { return op.grad_end >= 0 ? op.grad_end : op.end; }

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

  /// with_pair_op of the forward pass: a rotation (kShapeRotation, m = [[c, -s], [s, c]]) runs
  /// scaled, its factor taken into scale_, when every lane has the same larger entry (|c| >= |s|
  /// or |s| > |c|); else as a real matrix.
  template <class F>
  void with_forward_pair_op(const Op& op, F&& f) {
    if (op.shape != cpu::kShapeRotation) {
      with_pair_op(op, false, f);
      return;
    }
    Complex<L> m[4];
    op_matrix(op, m);
    with_rotation_pair(m, f);
  }

  /// Calls f(pair) with the rotation m = [[c, -s], [s, c]] (per lane), scaled when every lane
  /// has the same larger entry, its factor taken into scale_; else as a real matrix.
  template <class F>
  void with_rotation_pair(const Complex<L> m[4], F&& f) {
    const L c = m[0].re, s = m[2].re;
    T cs[S], ss[S];
    store_lanes(cs, c);
    store_lanes(ss, s);
    int cosine_larger = 0;
    for (int l = 0; l < S; ++l) cosine_larger += std::abs(cs[l]) >= std::abs(ss[l]) ? 1 : 0;
    if (cosine_larger == S) {
      scale_ = scale_ * c;
      f(ScaledRotationPair<T, S, false>{s / c});
    } else if (cosine_larger == 0) {
      scale_ = scale_ * s;
      f(ScaledRotationPair<T, S, true>{c / s});
    } else {
      f(RealPair<T, S>(m));
      return;
    }
    ++scaled_ops_;
  }

  /// Multiplies the state by the rotations' dropped factors (per lane) and resets them. Each
  /// scaled op grows the norm by at most sqrt(2): this runs every kMaxScaledOps of them (and at
  /// the end), far from overflow even in float.
  void apply_scale(bool with_lambda = false) {
    Index jb, je;
    team_.range(dim_, jb, je);
    T* const arrays[4] = {buf_.psi_re, buf_.psi_im, buf_.lam_re, buf_.lam_im};
    for (int a = 0; a < (with_lambda ? 4 : 2); ++a) {
      T* x = arrays[a];
      for (Index j = jb; j < je; ++j) store_lanes(x + j * S, load_lanes<L>(x + j * S) * scale_);
    }
    team_.sync();
    scale_ = L{} + T(1);
    scaled_ops_ = 0;
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
    if (plan.n_phases == 0) {
      scale_ = L{} + T(1);
      scaled_ops_ = 0;
      forward_ops(plan.n_initial, plan.n_ops);
      if (scaled_ops_ > 0) apply_scale();
      return;
    }
    for (int p = 0; p < plan.n_phases; ++p) {
      const cpu::Phase& phase = plan.phases[p];
      if (phase.end <= plan.n_initial) continue;  // already in the product state
      if (phase.chunk == 0) {
        forward_ops(phase.begin, phase.end);
      } else {
        if (team_.cancelled()) return;
        run_chunked<false>(phase);
      }
    }
  }

  /// Ops [begin, end) of the plan, one pass over the whole state each (two chained cx-tail ops
  /// share one pass).
  void forward_ops(int begin, int end) {
    const Op* ops = job_.plan.ops;
    for (int i = begin; i < end; ++i) {
      if (team_.cancelled()) return;
      if (chained_pass(ops, i, end)) {
        ++i;
      } else {
        forward_op(ops[i]);
      }
      team_.sync();
      if (scaled_ops_ >= kMaxScaledOps) apply_scale();
    }
  }

  /// Runs ops[i] and ops[i + 1] in one chained pass where they chain; false (nothing run) else.
  /// Not with one lane, where the pair kernels vectorise along amplitude runs instead (10 qubits,
  /// one sample: 0.077 ms per call without chains, 0.118 with), nor beyond kMaxChainQubits.
  bool chained_pass(const Op* ops, int i, int end) {
    if constexpr (!kChainedPasses) {
      return false;
    } else {
      if (n_ > kMaxChainQubits || i + 1 >= end || !chains(ops[i], ops[i + 1])) return false;
      forward_cx_chain(ops[i], ops[i + 1]);
      return true;
    }
  }

  /// Whether ``second`` is a cx-tail op, or a plain cx, whose control is the target of
  /// ``first``'s cx (a ring or chain entangler with its rotations): the two run in one pass over
  /// octets of three wires.
  static bool chains(const Op& first, const Op& second) {
    const bool tail = second.kind == OpKind::kFused1qCx, cx = second.kind == OpKind::kCx;
    const int control = tail ? second.wire1 : second.wire0, target = tail ? second.wire0 : second.wire1;
    return first.kind == OpKind::kFused1qCx && (tail || cx) && control == first.wire0 && target != first.wire1 &&
           first.phase_table < 0 && second.phase_table < 0;
  }

  void forward_cx_chain(const Op& first, const Op& second) {
    const bool tail = second.kind == OpKind::kFused1qCx;
    const int ba = wire_bit(first.wire1, n_), bb = wire_bit(first.wire0, n_);
    const int bc = wire_bit(tail ? second.wire0 : second.wire1, n_);
    int bits[3] = {ba, bb, bc};
    sort3(bits);
    Index tb, te;
    group_range<3>(tb, te);
    auto run = [&](const auto& op1, const auto& op2) {
      cx_chain_apply<T, S>(buf_.psi_re, buf_.psi_im, bits, (Index(1) << ba) * S, (Index(1) << bb) * S,
                           (Index(1) << bc) * S, op1, op2, tb, te);
    };
    with_forward_pair_op(first, [&](const auto& op1) {
      if (tail) {
        with_forward_pair_op(second, [&](const auto& op2) { run(op1, op2); });
      } else {
        run(op1, IdentityPair());
      }
    });
  }

  static void sort3(int (&v)[3]) {
    if (v[0] > v[1]) std::swap(v[0], v[1]);
    if (v[1] > v[2]) std::swap(v[1], v[2]);
    if (v[0] > v[1]) std::swap(v[0], v[1]);
  }

  // ------------------------------------------------------------------------- cache blocking
  /// Runs a phase chunk by chunk (the team shares the chunks): each is copied into this thread's
  /// cache-sized register, goes through every op of the phase (backward: in reverse, on psi and
  /// lambda) and is copied back, so the phase costs one pass over memory instead of one per op.
  template <bool kBackward>
  void run_chunked(const cpu::Phase& phase) {
    const cpu::PlanView& plan = job_.plan;
    const ChunkMap map(phase.chunk, n_);
    BlockRunner<T, S, SoloTeam> local(job_, SoloTeam(), chunk_buffers(), weight_partials_, plan.chunk_bits);
    T* const state[4] = {buf_.psi_re, buf_.psi_im, buf_.lam_re, buf_.lam_im};
    constexpr int kArrays = kBackward ? 4 : 2;
    Index cb, ce;
    team_.range(map.n_chunks, cb, ce);
    // a cancelled call skips its remaining chunks; no barrier in this loop, so threads need not agree
    for (Index c = cb; c < ce && !cancel_flag_set(job_.cancel); ++c) {
      const Index base = map.base(c);
      for (int a = 0; a < kArrays; ++a) gather_chunk<T, S>(map, base, state[a], buf_.chunk + a * buf_.chunk_size);
      if (kBackward) {
        for (int i = phase.end - 1; i >= phase.begin; --i) local.backward_op(plan.local_ops[i]);
      } else {
        for (int i = phase.begin; i < phase.end; ++i) local.forward_op(plan.local_ops[i]);
      }
      for (int a = 0; a < kArrays; ++a) scatter_chunk<T, S>(map, base, buf_.chunk + a * buf_.chunk_size, state[a]);
    }
    team_.sync();
  }

  /// This runner's buffers with the chunk register as the state; angle gradients go to gchunk,
  /// since each thread sees only its own chunks (summed over the team after the sweep).
  Buffers<T> chunk_buffers() const {
    Buffers<T> b = buf_;
    const bool vjp = buf_.lam_re != nullptr;
    b.psi_re = buf_.chunk;
    b.psi_im = buf_.chunk + buf_.chunk_size;
    b.lam_re = vjp ? buf_.chunk + 2 * buf_.chunk_size : nullptr;
    b.lam_im = vjp ? buf_.chunk + 3 * buf_.chunk_size : nullptr;
    b.gtheta = buf_.gchunk;
    return b;
  }

  /// The ops before any two-qubit gate act on |0...0>: build their product state directly
  /// (amplitude = product of high-wire and low-wire tables), one pass instead of one per wire.
  void prepare_product_state() {
    T vr[kMaxQubits][2][S], vi[kMaxQubits][2][S];
    wire_states(vr, vi);
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
    ProductIndex index(job_.plan.initial_map, n_, jb);
    for (Index j = jb; j < je && !pass_cancelled(j); ++j) {  // the first touch of a new workspace
      const Index i = index.step(j);
      const Index h = (i >> n_low) * S, lo = (i & (low_size - 1)) * S, o = j * S;
#pragma omp simd
      for (int l = 0; l < S; ++l) {
        const Complex<T> z = make_complex(hr[h + l], hi[h + l]) * make_complex(lr[lo + l], li[lo + l]);
        pr[o + l] = z.re;
        pi[o + l] = z.im;
      }
    }
    team_.sync();
  }

  /// The state m |0> = column 0 of every wire's product-state op (|0> for wires without one).
  void wire_states(T (&vr)[kMaxQubits][2][S], T (&vi)[kMaxQubits][2][S]) const {
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
      op_matrix(op, m);
      store_lanes(vr[op.wire0][0], m[0].re);
      store_lanes(vi[op.wire0][0], m[0].im);
      store_lanes(vr[op.wire0][1], m[2].re);
      store_lanes(vi[op.wire0][1], m[2].im);
    }
  }

  /// The product-state index that amplitude j reads (PlanView::initial_map; j itself without a
  /// map), stepped through j = jb, jb + 1, ...: going from j - 1 to j flips bits 0..ctz(j) of j,
  /// so the index changes by the XOR of those columns, flip[ctz(j)].
  struct ProductIndex {
    const Mask* map;
    Mask flip[kMaxQubits] = {};
    Index first;
    Index i;

    ProductIndex(const Mask* initial_map, int n_qubits, Index jb) : map(initial_map), first(jb), i(jb) {
      if (map == nullptr) return;
      i = 0;
      for (int b = 0; b < n_qubits; ++b) {
        flip[b] = (b > 0 ? flip[b - 1] : 0) ^ map[b];
        if ((jb >> b) & 1) i ^= Index(map[b]);
      }
    }
    /// The index for j, called with consecutive j from jb.
    HDQNN_INLINE Index step(Index j) {
      if (j > first) i = map != nullptr ? i ^ Index(flip[__builtin_ctzll(j)]) : j;
      return i;
    }
  };

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

  /// The deferred-phase table ``t`` of the plan (defer_phases), or (kConj) its conjugate.
  template <bool kConj = false>
  PhaseTable<T, S, kConj> phase_table(int t) const {
    const T* re = job_.phase_tables + 2 * dim_ * Index(t);
    return PhaseTable<T, S, kConj>{re, re + dim_};
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
      case OpKind::kPhaseTable: {
        Index jb, je;
        team_.range(dim_, jb, je);
        phase_table_apply<T, S>(pr, pi, phase_table(op.phase_table), jb, je);
        return;
      }
      case OpKind::kFused1qCx:
        with_cx_tail_geometry(op, [&](const int (&bits)[2], Index off_t, Index off_c, Index tb, Index te) {
          with_forward_pair_op(op, [&](const auto& pair) {
            if (op.phase_table >= 0) {
              cx_tail_apply<T, S>(pr, pi, bits, off_t, off_c, pair, tb, te, phase_table(op.phase_table));
            } else {
              cx_tail_apply<T, S>(pr, pi, bits, off_t, off_c, pair, tb, te);
            }
          });
        });
        return;
      case OpKind::kFused1q:
        if (op.phase_table >= 0) {
          with_pair_geometry(op, [&](const auto& bits, Mask set, Index off_a, Index off_b) {
            constexpr int NB = sizeof(bits) / sizeof(int);
            Index tb, te;
            group_range<NB>(tb, te);
            with_forward_pair_op(op, [&](const auto& pair) {
              pair_apply<T, S>(pr, pi, bits, set, off_a, off_b, pair, tb, te, phase_table(op.phase_table));
            });
          });
          return;
        }
        break;
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
        with_forward_pair_op(op, [&](const auto& pair) {
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
    add_angle_gradient(gate_row(op.begin)[3], (de[0] * r_even + de[1] * r_odd).re * (scale_ * scale_));
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
    add_angle_gradient(gate_row(op.begin)[3], load_lanes<L>(acc[0]) * (scale_ * scale_));
  }

  // ---------------------------------------------------------------------------- outputs
  /// Amplitudes per tile of write_states / read_states: the tile of every lane (S x 16 complex)
  /// stays in L1 while each sample's row streams through, instead of one strided sweep over the
  /// whole block per lane (which cost read_states a third of a forward pass at 10 qubits).
  static constexpr Index kStateTile = 16;

  /// The block's states into ``out`` [batch, 2**n] interleaved complex.
  void write_states(T* out) {
    Index jb, je;
    team_.range(dim_, jb, je);
    for (Index t = jb; t < je; t += kStateTile) {
      const Index te = min_index(t + kStateTile, je);
      for (int l = 0; l < nvalid_; ++l) {
        T* row = out + 2 * (b0_ + l) * dim_;
        for (Index j = t; j < te; ++j) {
          row[2 * j] = buf_.psi_re[j * S + l];
          row[2 * j + 1] = buf_.psi_im[j * S + l];
        }
      }
    }
  }

  /// The block's states from ``in`` (write_states' layout) instead of a forward pass; lanes past
  /// the batch get zeros, which the adjoint sweep carries as zeros.
  void read_states(const T* in) {
    Index jb, je;
    team_.range(dim_, jb, je);
    for (Index t = jb; t < je; t += kStateTile) {
      const Index te = min_index(t + kStateTile, je);
      for (int l = 0; l < S; ++l) {
        if (l < nvalid_) {
          const T* row = in + 2 * (b0_ + l) * dim_;
          for (Index j = t; j < te; ++j) {
            buf_.psi_re[j * S + l] = row[2 * j];
            buf_.psi_im[j * S + l] = row[2 * j + 1];
          }
        } else {
          for (Index j = t; j < te; ++j) buf_.psi_re[j * S + l] = buf_.psi_im[j * S + l] = T(0);
        }
      }
    }
    team_.sync();
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

  /// <psi|P_k|psi> for every term: Z-only terms sum_j sign(j) |psi[j]|^2, others the overlap
  /// sum_j conj(psi[j ^ flip]) sign(j) psi[j], times i^nY. Amplitudes are visited in aligned groups
  /// of 2**c; a Z-only term's sign is that of the group's base times a low-bit sign read off the
  /// Walsh-Hadamard transform of the group's probabilities.
  void expectations() {
    const int K = job_.n_terms;
    double* acc = buf_.acc;  // [K, 2, S]
    for (Index i = 0; i < Index(K) * 2 * S; ++i) acc[i] = 0.0;
    int z_terms = 0;
    for (int k = 0; k < K; ++k) z_terms += job_.terms[k].flip == 0 ? 1 : 0;
    const int c = z_terms < kWalshMinTerms ? 0 : (n_ < kWalshBits ? n_ : kWalshBits);
    const Index group = Index(1) << c;
    const Mask low = Mask(group - 1);
    double walsh[Index(1) << kWalshBits][S];  // W[s] = sum_u (-1)^popcount(u & s) p[base + u]
    Index gb, ge;
    team_.range(dim_ >> c, gb, ge);
    for (Index h = gb; h < ge && !pass_cancelled(h); ++h) {
      const Index base = h << c;
      group_walsh(base, c, walsh);
      for (int k = 0; k < K; ++k) {
        const PauliTerm& term = job_.terms[k];
        if (term.flip != 0) {
          add_overlap(term, base, group, acc + Index(2 * k) * S);
          continue;
        }
        const double sgn = parity(Mask(base) & term.sign) ? -1.0 : 1.0;
        const double* w = walsh[term.sign & low];
        double* ar = acc + Index(2 * k) * S;
#pragma omp simd
        for (int l = 0; l < S; ++l) ar[l] += sgn * w[l];
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

  /// walsh[0, 2**c) <- the Walsh-Hadamard transform of the probabilities of amplitudes
  /// [base, base + 2**c), per lane.
  void group_walsh(Index base, int c, double (&walsh)[Index(1) << kWalshBits][S]) const {
    const Index group = Index(1) << c;
    for (Index u = 0; u < group; ++u) {
      const Index o = (base + u) * S;
#pragma omp simd
      for (int l = 0; l < S; ++l) walsh[u][l] = double(norm2(load<T>(buf_.psi_re, buf_.psi_im, o + l)));
    }
    for (Index half = 1; half < group; half <<= 1) {
      for (Index u = 0; u < group; ++u) {
        if (u & half) continue;
#pragma omp simd
        for (int l = 0; l < S; ++l) {
          const double a = walsh[u][l], b = walsh[u + half][l];
          walsh[u][l] = a + b;
          walsh[u + half][l] = a - b;
        }
      }
    }
  }

  /// acc[0, S) (re), acc[S, 2S) (im) += sum_j conj(psi[j ^ flip]) sign(j) psi[j] over amplitudes
  /// [base, base + count).
  void add_overlap(const PauliTerm& term, Index base, Index count, double* acc) const {
    const T* pr = buf_.psi_re;
    const T* pi = buf_.psi_im;
    for (Index j = base; j < base + count; ++j) {
      const double sgn = parity(Mask(j) & term.sign) ? -1.0 : 1.0;
      const Index o = j * S, o2 = (j ^ Index(term.flip)) * S;
#pragma omp simd
      for (int l = 0; l < S; ++l) {
        const Complex<T> z = conj_mul(load<T>(pr, pi, o2 + l), load<T>(pr, pi, o + l));
        acc[l] += sgn * double(z.re);
        acc[S + l] += sgn * double(z.im);
      }
    }
  }

  /// Whether a pass over the state should stop before step i: the call was cancelled (checked
  /// every kCancelStride steps; such a pass has no barrier inside, so threads need not agree).
  bool pass_cancelled(Index i) const { return (i & (kCancelStride - 1)) == 0 && cancel_flag_set(job_.cancel); }

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
    for (Index j = jb; j < je && !pass_cancelled(j); ++j) {
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
    const Index n_grads = Index(job_.program.n_slots) * S;
    for (Index i = 0; i < n_grads; ++i) buf_.gtheta[i] = T(0);
    scale_ = L{} + T(1);
    scaled_ops_ = 0;
    const cpu::PlanView& plan = job_.plan;
    if (plan.n_phases == 0) {
      backward_ops(plan.n_initial, plan.n_ops);
      if (team_.cancelled()) return;
      initial_gradients();
      return;
    }
    for (Index i = 0; i < n_grads; ++i) buf_.gchunk[i] = T(0);
    for (int p = plan.n_phases - 1; p >= 0; --p) {
      const cpu::Phase& phase = plan.phases[p];
      if (phase.chunk == 0) {
        backward_ops(phase.begin, phase.end);
      } else {
        if (team_.cancelled()) return;
        run_chunked<true>(phase);
      }
    }
    team_.reduce(buf_.gchunk, static_cast<int>(n_grads));
    for (Index i = 0; i < n_grads; ++i) buf_.gtheta[i] += buf_.gchunk[i];
  }

  /// Ops [begin, end) of the plan in reverse, one pass over psi and lambda each (two chained
  /// cx-tail ops share one pass, as in the forward pass).
  void backward_ops(int begin, int end) {
    const Op* ops = job_.plan.ops;
    for (int i = end - 1; i >= begin; --i) {
      if (team_.cancelled()) return;
      if (backward_chained_pass(ops, begin, i)) {
        --i;
      } else {
        backward_op(ops[i]);
      }
      team_.sync();
      if (scaled_ops_ >= kMaxScaledOps) apply_scale(true);
    }
  }

  /// Undoes ops[i - 1] and ops[i] in one chained pass where the forward pass chained them and
  /// both have gradients (or ops[i] is a plain cx); false (nothing run) else.
  bool backward_chained_pass(const Op* ops, int begin, int i) {
    if constexpr (!kChainedPasses) {
      return false;
    } else {
      if (n_ > kMaxChainQubits || i - 1 < begin || !chains(ops[i - 1], ops[i])) return false;
      const Op& first = ops[i - 1];
      const Op& second = ops[i];
      if (!first.needs_grad || (second.kind != OpKind::kCx && !second.needs_grad)) return false;
      backward_cx_chain(first, second);
      return true;
    }
  }

  void backward_cx_chain(const Op& first, const Op& second) {
    const bool tail = second.kind == OpKind::kFused1qCx;
    const int ba = wire_bit(first.wire1, n_), bb = wire_bit(first.wire0, n_);
    const int bc = wire_bit(tail ? second.wire0 : second.wire1, n_);
    int bits[3] = {ba, bb, bc};
    sort3(bits);
    Index tb, te;
    group_range<3>(tb, te);
    auto run = [&](const auto& op2, const L scale2) {  // a copy: cross_scale_ changes below
      using P2 = typename std::decay<decltype(op2)>::type;
      with_backward_pair_op(first, [&](const auto& op1) {
        using P1 = typename std::decay<decltype(op1)>::type;
        T acc[P1::kAcc + P2::kAcc][S];
        cx_chain_adjoint<T, S>(buf_.psi_re, buf_.psi_im, buf_.lam_re, buf_.lam_im, bits, (Index(1) << ba) * S,
                               (Index(1) << bb) * S, (Index(1) << bc) * S, op1, op2, acc, tb, te);
        team_.reduce(&acc[0][0], (P1::kAcc + P2::kAcc) * S);
        differentiate<P1>(first, &acc[0][0], cross_scale_);
        if constexpr (P2::kAcc > 0) differentiate<P2>(second, &acc[P1::kAcc][0], scale2);
      });
    };
    if (tail) {
      with_backward_pair_op(second, [&](const auto& op2) { run(op2, cross_scale_); });
    } else {
      run(IdentityPair(), scale_);
    }
  }

  /// Calls f(post) with what the backward pass of ``op`` does after undoing it: undo the
  /// deferred-phase table the forward applied before it (conjugate phases), or nothing.
  template <class F>
  void with_backward_post(const Op& op, F&& f) const {
    if (op.phase_table >= 0) {
      f(phase_table<true>(op.phase_table));
    } else {
      f(NoPhase());
    }
  }

  /// Calls f(pair) with the inverse update of a fused block or controlled gate and the cross
  /// terms its gradients need: complex ones when diagonal gates deferred from the block are
  /// differentiated there (Op::grad_end), real ones for real blocks, RotationCross for ry blocks.
  /// Rotations run scaled (their factors in scale_, as in the forward pass); cross_scale_ gets
  /// what turns that op's cross terms into the true ones.
  template <class F>
  void with_backward_pair_op(const Op& op, F&& f) {
    Complex<L> m[4], md[4];
    op_matrix(op, m);
    mat2_dagger(m, md);
    const L before = scale_;
    auto run = [&](const auto& pair) {
      using P = typename std::decay<decltype(pair)>::type;
      // lambda at the old scale; psi at the old one too when read after the block, else the new
      cross_scale_ = P::kAfterBlock ? before * before : before * scale_;
      f(pair);
    };
    const bool complex_cross = gradient_end(op) > op.end;
    if (op.shape == kShapeDiagonal) {
      run(DiagPair<T, S>(md));
    } else if (op.shape == kShapeGeneral) {
      run(GeneralPair<T, S>(md));
    } else if (op.shape == cpu::kShapeRotation) {
      with_rotation_pair(md, [&](const auto& pair) {
        using P = typename std::decay<decltype(pair)>::type;
        run(CrossPair<P, RotationCross<T, S>>(pair));
      });
    } else if (complex_cross) {
      run(CrossPair<RealPair<T, S>, GeneralPair<T, S>>(RealPair<T, S>(md)));
    } else {
      run(RealPair<T, S>(md));
    }
  }

  void backward_op(const Op& op) {
    T* pr = buf_.psi_re;
    T* pi = buf_.psi_im;
    T* lr = buf_.lam_re;
    T* li = buf_.lam_im;
    switch (op.kind) {
      case OpKind::kRzz:
        rzz_backward(op);
        return;
      case OpKind::kPairRotation:
        pair_rotation_backward(op);
        return;
      case OpKind::kPhaseTable: {
        // its gates are differentiated at the blocks they left (Op::grad_end)
        Index jb, je;
        team_.range(dim_, jb, je);
        phase_table_apply<T, S>(pr, pi, phase_table<true>(op.phase_table), jb, je);
        phase_table_apply<T, S>(lr, li, phase_table<true>(op.phase_table), jb, je);
        return;
      }
      default:
        break;
    }
    if (op.kind == OpKind::kFused1qCx) {
      with_cx_tail_geometry(op, [&](const int (&bits)[2], Index off_t, Index off_c, Index tb, Index te) {
        with_backward_pair_op(op, [&](const auto& pair) {
          using P = typename std::decay<decltype(pair)>::type;
          with_backward_post(op, [&](const auto& post) {
            if (!op.needs_grad) {
              cx_tail_apply2<T, S>(pr, pi, lr, li, bits, off_t, off_c, pair, tb, te, post);
              return;
            }
            T acc[P::kAcc][S];
            cx_tail_adjoint<T, S>(pr, pi, lr, li, bits, off_t, off_c, pair, acc, tb, te, post);
            reduce_and_differentiate<P>(op, acc);
          });
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
      with_backward_pair_op(op, [&](const auto& pair) {
        using P = typename std::decay<decltype(pair)>::type;
        with_backward_post(op, [&](const auto& post) {
          if (!op.needs_grad) {
            pair_apply2<T, S>(pr, pi, lr, li, bits, set, off_a, off_b, pair, tb, te, post);
            return;
          }
          T acc[P::kAcc][S];
          pair_adjoint<T, S>(pr, pi, lr, li, bits, set, off_a, off_b, pair, acc, tb, te, post);
          reduce_and_differentiate<P>(op, acc);
        });
      });
    });
  }

  template <class P>
  void reduce_and_differentiate(const Op& op, T (&acc)[P::kAcc][S]) {
    team_.reduce(&acc[0][0], P::kAcc * S);
    differentiate<P>(op, &acc[0][0], cross_scale_);
  }

  /// Gradients of op's gates from its reduced cross terms acc [P::kAcc, S], which times ``scale``
  /// (per lane) are the true ones.
  template <class P>
  void differentiate(const Op& op, const T* acc, const L& scale) {
    if constexpr (P::kAfterBlock) {
      rotation_gradients(op, acc, scale);
    } else {
      complex_gradients<P>(op, acc, scale);
    }
  }

  template <class P>
  void complex_gradients(const Op& op, const T* acc, const L& scale) {
    Complex<L> r[4];
    P::cross(*reinterpret_cast<const T(*)[P::kAcc][S]>(acc), r);
    for (int k = 0; k < 4; ++k) r[k] = make_complex(r[k].re * scale, r[k].im * scale);
    const int gend = gradient_end(op);
    if (gend > op.end) {
      // lambda after the block's deferred diagonal D is D lambda: R_ab -> conj(d_a) R_ab
      Complex<L> d[4];
      range_matrix(op.end, gend, d);
      r[0] = conj(d[0]) * r[0];
      r[1] = conj(d[0]) * r[1];
      r[2] = conj(d[3]) * r[2];
      r[3] = conj(d[3]) * r[3];
    }
    block_gradients(op, r);
  }

  /// Gradients of a block of ry gates and its deferred diagonal gates from RotationCross's sums
  /// acc [2, S] (times ``scale`` the true ones): each ry gets G / 2; a diagonal gate d(phi), whose
  /// conj(d_a) d'_a = i c_a is imaginary (|d_a| = 1), gets Re sum_a i c_a C_a = -sum_a c_a Im C_a
  /// = -(c_0 - c_1) Im C_0 (Im C_1 = -Im C_0: see RotationCross).
  void rotation_gradients(const Op& op, const T* acc, const L& scale) {
    const L g = load_lanes<L>(acc) * scale;
    const L im_c0 = load_lanes<L>(acc + S) * scale;
    const cpu::ProgramView& p = job_.program;
    for (int e = op.begin; e < gradient_end(op); ++e) {
      const int32_t* row = gate_row(job_.plan.gate_order[e]);
      const int n_angles = gate_info(row[0]).n_angles;
      for (int a = 0; a < n_angles; ++a) {
        if (p.angle_src[2 * (row[3] + a)] == kSrcConst) continue;
        if (e < op.end) {  // an ry
          add_angle_gradient(row[3] + a, g * T(0.5));
          continue;
        }
        Complex<L> m[4], du[4];
        matrix_of(row[0], row[3], m);
        derivative_of(row[0], row[3], a, du);
        const L c0 = (conj(m[0]) * du[0]).im, c1 = (conj(m[3]) * du[3]).im;
        add_angle_gradient(row[3] + a, (c1 - c0) * im_c0);
      }
    }
  }

  /// gtheta[slot] += 2 re, for all lanes (re is Re <lambda| dU |psi>).
  void add_angle_gradient(int slot, const L& re) {
    T* g = buf_.gtheta + Index(slot) * S;
    store_lanes(g, load_lanes<L>(g) + (re + re));
  }

  /// Angle gradients of the gates of a fused block (gate_order [begin, gradient_end)) or of one
  /// controlled gate, all lanes at once, from the cross matrix R_ab = sum conj(lambda_after_a)
  /// psi_before_b of the block U = U_k ... U_1: d/dtheta_j = 2 Re tr(dU_j Q_j) with
  /// Q_1 = R^T U U_1^dag and Q_{j+1} = U_j Q_j U_{j+1}^dag.
  void block_gradients(const Op& op, const Complex<L> r[4]) {
    Complex<L> q[4] = {r[0], r[2], r[1], r[3]};  // R^T
    const bool controlled = op.kind == OpKind::kControlled;
    const int count = controlled ? 1 : gradient_end(op) - op.begin;
    auto row_of = [&](int e) { return gate_row(controlled ? op.begin : job_.plan.gate_order[op.begin + e]); };
    auto code_of = [&](const int32_t* row) { return controlled ? controlled_base(row[0]) : int(row[0]); };
    Complex<L> cur[4], tmp[4], dag[4];
    const int32_t* row = row_of(0);
    matrix_of(code_of(row), row[3], cur);
    if (!controlled) {
      Complex<L> total[4];
      range_matrix(op.begin, op.begin + count, total);
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

  /// Angle gradients of the product-state ops (plan.ops[0, n_initial)) from lambda right after
  /// them (and the absorbed permutation), without undoing them: the state there is
  /// P (v_0 x ... x v_{n-1}), so a gate on wire q gets 2 Re sum_b e_q[b] dv_q[b], e_q being
  /// conj(lambda) contracted with every other wire's v. One pass over lambda contracts it with the
  /// high wires' table (A, indexed by the low wires) and with the low wires' table (B); e_q then
  /// needs only the small A or B.
  void initial_gradients() {
    const cpu::PlanView& plan = job_.plan;
    bool any = false;
    for (int i = 0; i < plan.n_initial; ++i) any = any || plan.ops[i].needs_grad != 0;
    if (!any) return;
    T vr[kMaxQubits][2][S], vi[kMaxQubits][2][S];
    wire_states(vr, vi);
    const int n_high = n_ / 2, n_low = n_ - n_high;
    const Index high_size = Index(1) << n_high, low_size = Index(1) << n_low;
    T* hr = buf_.table;  // the tables, then A, B and one scratch table (Layout::table)
    T* hi = hr + high_size * S;
    T* tlr = hi + high_size * S;
    T* tli = tlr + low_size * S;
    T* ar = tli + low_size * S;
    T* ai = ar + low_size * S;
    T* br = ai + low_size * S;
    T* bi = br + high_size * S;
    T* sr = bi + high_size * S;
    T* si = sr + low_size * S;  // low_size >= high_size
    build_table(vr, vi, 0, n_high, hr, hi);
    build_table(vr, vi, n_high, n_, tlr, tli);
    for (Index k = 0; k < 2 * (low_size + high_size) * S; ++k) ar[k] = T(0);
    Index jb, je;
    team_.range(dim_, jb, je);
    ProductIndex index(plan.initial_map, n_, jb);
    for (Index j = jb; j < je && !pass_cancelled(j); ++j) {
      const Index i = index.step(j);
      const Index h = (i >> n_low) * S, lo = (i & (low_size - 1)) * S;
      const Complex<L> lam = load<L>(buf_.lam_re, buf_.lam_im, j * S);
      store(ar, ai, lo, conj_mul_add(load<L>(ar, ai, lo), lam, load<L>(hr, hi, h)));
      store(br, bi, h, conj_mul_add(load<L>(br, bi, h), lam, load<L>(tlr, tli, lo)));
    }
    team_.reduce(ar, static_cast<int>(2 * (low_size + high_size) * S));
    for (int i = 0; i < plan.n_initial; ++i) {
      const Op& op = plan.ops[i];
      if (!op.needs_grad) continue;
      const int q = op.wire0;
      const bool high = q < n_high;
      const Index size = high ? high_size : low_size;
      const T* xr = high ? br : ar;
      const T* xi = high ? bi : ai;
      Complex<L> e[2];
      for (int b = 0; b < 2; ++b) {
        // the other wires' table with wire q fixed to bit b
        T keep_r[2][S], keep_i[2][S];
        for (int c = 0; c < 2; ++c) {
          for (int l = 0; l < S; ++l) {
            keep_r[c][l] = vr[q][c][l];
            keep_i[c][l] = vi[q][c][l];
            vr[q][c][l] = T(c == b ? 1 : 0);
            vi[q][c][l] = T(0);
          }
        }
        build_table(vr, vi, high ? 0 : n_high, high ? n_high : n_, sr, si);
        for (int c = 0; c < 2; ++c) {
          for (int l = 0; l < S; ++l) {
            vr[q][c][l] = keep_r[c][l];
            vi[q][c][l] = keep_i[c][l];
          }
        }
        Complex<L> sum = make_complex(L{}, L{});
        for (Index x = 0; x < size; ++x) sum = sum + load<L>(xr, xi, x * S) * load<L>(sr, si, x * S);
        e[b] = make_complex(sum.re * scale_, sum.im * scale_);  // lambda's true scale
      }
      product_state_gradients(op, e);
    }
  }

  /// Gradients of the gates of product-state op ``op`` (v = U_k ... U_1 |0>) given e (see
  /// initial_gradients): 2 Re sum_b e[b] (U_k ... dU_j ... U_1 |0>)[b].
  void product_state_gradients(const Op& op, const Complex<L> (&e)[2]) {
    Complex<L> prefix[2] = {make_complex(L{} + T(1), L{}), make_complex(L{}, L{})};  // U_{j-1} ... U_1 |0>
    for (int g = op.begin; g < op.end; ++g) {
      const int32_t* row = gate_row(job_.plan.gate_order[g]);
      const int n_angles = gate_info(row[0]).n_angles;
      for (int a = 0; a < n_angles; ++a) {
        if (job_.program.angle_src[2 * (row[3] + a)] == kSrcConst) continue;
        Complex<L> m[4], x[2];
        derivative_of(row[0], row[3], a, m);
        x[0] = m[0] * prefix[0] + m[1] * prefix[1];
        x[1] = m[2] * prefix[0] + m[3] * prefix[1];
        for (int h = g + 1; h < op.end; ++h) {
          const int32_t* later = gate_row(job_.plan.gate_order[h]);
          matrix_of(later[0], later[3], m);
          const Complex<L> y0 = m[0] * x[0] + m[1] * x[1];
          x[1] = m[2] * x[0] + m[3] * x[1];
          x[0] = y0;
        }
        add_angle_gradient(row[3] + a, (e[0] * x[0] + e[1] * x[1]).re);
      }
      Complex<L> m[4];
      matrix_of(row[0], row[3], m);
      const Complex<L> y0 = m[0] * prefix[0] + m[1] * prefix[1];
      prefix[1] = m[2] * prefix[0] + m[3] * prefix[1];
      prefix[0] = y0;
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
  L scale_ = L{} + T(1);  ///< per lane: the factors scaled rotations left out of the state (and
                          ///< lambda) so far
  int scaled_ops_ = 0;    ///< scaled rotations since the state last took scale_
  L cross_scale_ = L{} + T(1);  ///< backward: true / computed cross terms of the current op
};

}  // namespace
}  // namespace kernels
HDQNN_NAMESPACE_END

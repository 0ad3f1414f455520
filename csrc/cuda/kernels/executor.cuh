// The GPU program executor: one group of threads runs the whole fused program for one sample
// (several groups share a block when the register is small), with the sample's angles, op
// matrices and, on the shared-memory path, its state in shared memory; only expectations,
// probabilities, states, samples or gradients leave the block.
//
// The code is written once against a "team" (the threads of one sample) and compiles three ways:
// with nvcc into _core_cuda, with NVRTC for the CuPy backend, and with a host C++ compiler for the
// host emulation in _core_cuda (csrc/cuda/emulate.cpp), which runs it with std::threads and a
// barrier so that the CPU tests exercise this very code. A Team provides:
//   thread  index of the calling thread in the block (group * size + rank)
//   rank    index within the sample's group;  size: threads per sample (a power of two)
//   group   sample slot in the block;         lanes: min(size, warp width)
//   sync()  block-wide barrier;               shuffle_xor(v, offset): butterfly exchange in a warp
// All threads of a block execute the same sequence of sync() and shuffle_xor() calls.
#pragma once

#if !defined(__CUDACC_RTC__)
#include <math.h>
#endif

#include "hdqnn/gate_math.hpp"
#include "hdqnn/gates.hpp"
#include "hdqnn/pauli.hpp"
#include "layout.cuh"
#include "meta.cuh"
#include "philox.cuh"

namespace hdqnn {
namespace gpu {

/// Most threads of one block: launch_policy.hpp never asks for more (kMaxThreadsPerSample,
/// kTargetBlockThreads), and __launch_bounds__ lets the compiler budget registers for it.
constexpr int kMaxBlockThreads = 256;
/// Threads of the column-sum kernel that adds per-sample weight gradients over the batch.
constexpr int kSumThreads = 256;

/// Everything one launch reads and writes (device pointers on the GPU).
template <class T>
struct ExecArgs {
  const int* meta;         ///< the meta table (meta.cuh)
  const double* angle_val; ///< [n_slots]: constant, or scale of the input / weight
  const T* inputs;         ///< [batch, n_inputs]
  const T* weights;        ///< [n_weights] or [batch, n_weights]
  const T* grad_output;    ///< vjp: [batch, n_terms]
  T* out;                  ///< statevector: [batch, 2**n] interleaved complex; probabilities:
                           ///< [batch, 2**n]; expval: [batch, n_terms]; vjp: grad_inputs [batch, n_inputs]
  T* grad_rows;            ///< vjp: [batch, n_weights] weight gradients of each sample
  Complex<T>* workspace;   ///< global-memory path: [blocks * samples_per_block * states, 2**n]
  unsigned char* bits;     ///< sample: [batch, shots, n_qubits]
  Index batch;
  int task;
  int threads_per_sample;
  int samples_per_block;
  int shared_state;        ///< 1: states in shared memory; 0: in workspace
  Index shots;
  unsigned long long seed;
};

HDQNN_HOST_DEVICE HDQNN_INLINE void sincos_of(double x, double& s, double& c) {
#if defined(__CUDA_ARCH__)
  sincos(x, &s, &c);
#else
  s = sin(x);
  c = cos(x);
#endif
}

/// Sums v over the team's lanes by butterfly shuffles, then one thread per warp-part of each
/// sample stores the result in entry (thread / lanes) of ``buffer`` (stride kReduceWidth). The
/// sample's leader adds the entries up after the next sync() (sum_entries).
template <int N, class A, class Team>
HDQNN_HOST_DEVICE HDQNN_INLINE void reduce_to_buffer(const Team& team, A (&v)[N], double* buffer) {
  for (int offset = team.lanes / 2; offset > 0; offset /= 2) {
    for (int k = 0; k < N; ++k) v[k] += team.shuffle_xor(v[k], offset);
  }
  if (team.rank % team.lanes == 0) {
    double* entry = buffer + Index(team.thread / team.lanes) * kReduceWidth;
    for (int k = 0; k < N; ++k) entry[k] = double(v[k]);
  }
}

template <int N, class Team>
HDQNN_HOST_DEVICE HDQNN_INLINE void sum_entries(const Team& team, const double* buffer, double (&out)[N]) {
  const int entries = team.size / team.lanes;
  const double* first = buffer + Index(team.group) * entries * kReduceWidth;
  for (int k = 0; k < N; ++k) out[k] = 0.0;
  for (int e = 0; e < entries; ++e) {
    for (int k = 0; k < N; ++k) out[k] += first[Index(e) * kReduceWidth + k];
  }
}

/// (a0, a1) <- m (a0, a1) with the cheapest update for the matrix's shape.
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE void apply_shaped(int shape, const Complex<T> m[4], Complex<T>& a0, Complex<T>& a1) {
  if (shape == kShapeDiagonal) {
    apply_diag(m[0], m[3], a0, a1);
  } else if (shape == kShapeReal) {
    const T r[4] = {m[0].re, m[1].re, m[2].re, m[3].re};
    apply_2x2_real(r, a0, a1);
  } else {
    apply_2x2(m, a0, a1);
  }
}

/// acc += the adjoint's cross terms conj(lambda_a) psi_b that a matrix of this shape needs
/// (layout as cross_matrix reads them).
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE void accumulate_cross(int shape, T (&acc)[kReduceWidth], const Complex<T>& l0,
                                                     const Complex<T>& l1, const Complex<T>& p0, const Complex<T>& p1) {
  if (shape == kShapeReal) {
    acc[0] += l0.re * p0.re + l0.im * p0.im;
    acc[1] += l0.re * p1.re + l0.im * p1.im;
    acc[2] += l1.re * p0.re + l1.im * p0.im;
    acc[3] += l1.re * p1.re + l1.im * p1.im;
    return;
  }
  Complex<T> z = conj_mul_add(make_complex(acc[0], acc[1]), l0, p0);
  acc[0] = z.re;
  acc[1] = z.im;
  if (shape == kShapeDiagonal) {
    z = conj_mul_add(make_complex(acc[2], acc[3]), l1, p1);
    acc[2] = z.re;
    acc[3] = z.im;
    return;
  }
  z = conj_mul_add(make_complex(acc[2], acc[3]), l0, p1);
  acc[2] = z.re;
  acc[3] = z.im;
  z = conj_mul_add(make_complex(acc[4], acc[5]), l1, p0);
  acc[4] = z.re;
  acc[5] = z.im;
  z = conj_mul_add(make_complex(acc[6], acc[7]), l1, p1);
  acc[6] = z.re;
  acc[7] = z.im;
}

/// The cross matrix R_ab = sum conj(lambda_a) psi_b from the summed accumulators.
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE void cross_matrix(int shape, const double (&s)[kReduceWidth], Complex<T> r[4]) {
  const Complex<T> zero = make_complex(T(0), T(0));
  if (shape == kShapeReal) {
    for (int k = 0; k < 4; ++k) r[k] = make_complex(T(s[k]), T(0));
  } else if (shape == kShapeDiagonal) {
    r[0] = make_complex(T(s[0]), T(s[1]));
    r[1] = zero;
    r[2] = zero;
    r[3] = make_complex(T(s[2]), T(s[3]));
  } else {
    for (int k = 0; k < 4; ++k) r[k] = make_complex(T(s[2 * k]), T(s[2 * k + 1]));
  }
}

/// Runs the program for the samples of one block (see the file comment).
template <class T, class Team>
class SampleRunner {
 public:
  HDQNN_HOST_DEVICE SampleRunner(const ExecArgs<T>& args, const Team& team, unsigned char* smem,
                                 const SmemLayout& layout, Index block)
      : args_(args), team_(team), meta_{args.meta} {
    n_ = meta_.n_qubits();
    dim_ = Index(1) << n_;
    unsigned char* mine = smem + Index(team.group) * layout.per_sample;
    trig_ = reinterpret_cast<T*>(mine);
    mats_ = reinterpret_cast<Complex<T>*>(mine + layout.trig);
    if (args.shared_state) {
      psi_ = reinterpret_cast<Complex<T>*>(mine + layout.trig + layout.matrices);
    } else {
      const Index slot = block * args.samples_per_block + team.group;
      psi_ = args.workspace + slot * states_per_sample(args.task) * dim_;
    }
    lam_ = psi_ + dim_;
    unsigned char* shared_block = smem + Index(args.samples_per_block) * layout.per_sample;
    reduce_ = reinterpret_cast<double*>(shared_block);
    scan_ = reinterpret_cast<double*>(shared_block + layout.reduce);
    reduce_stride_ = Index(args.samples_per_block) * args.threads_per_sample / team.lanes * kReduceWidth;
  }

  /// Runs sample first + group (a group past the batch computes on the last sample, writes nothing).
  HDQNN_HOST_DEVICE void run(Index first) {
    b_ = first + team_.group;
    valid_ = b_ < args_.batch;
    read_b_ = valid_ ? b_ : args_.batch - 1;
    team_.sync();  // the previous samples of this block are done with shared memory
    load_angles();
    team_.sync();
    build_matrices();
    team_.sync();
    forward();
    switch (args_.task) {
      case kTaskStatevector:
        write_states();
        break;
      case kTaskProbabilities:
        write_probabilities();
        break;
      case kTaskExpval:
        expectations();
        break;
      case kTaskVjp:
        prepare_lambda();
        team_.sync();
        backward();
        break;
      default:
        sample();
        break;
    }
  }

 private:
  // ------------------------------------------------------------------ angles and matrices
  HDQNN_HOST_DEVICE void load_angles() {
    const int n_inputs = meta_.n_inputs(), n_weights = meta_.n_weights();
    const Index weight_row = meta_.per_sample_weights() ? read_b_ * n_weights : 0;
    for (int a = team_.rank; a < meta_.n_slots(); a += team_.size) {
      const int src = meta_.source(a), idx = meta_.source_index(a);
      double theta = 1.0;
      if (src == kSrcInput) {
        theta = double(args_.inputs[read_b_ * n_inputs + idx]);
      } else if (src == kSrcWeight) {
        theta = double(args_.weights[weight_row + idx]);
      }
      double s, c;
      sincos_of(0.5 * args_.angle_val[a] * theta, s, c);
      trig_[2 * a] = T(c);
      trig_[2 * a + 1] = T(s);
    }
  }

  HDQNN_HOST_DEVICE const T* angles_at(int slot) const { return trig_ + 2 * (slot > 0 ? slot : 0); }

  HDQNN_HOST_DEVICE void matrix_of(int code, int slot, Complex<T> m[4]) const {
    const T* cs = angles_at(slot);
    single_qubit_matrix<T>(code, cs, cs + 1, 2, m);
  }

  HDQNN_HOST_DEVICE void derivative_of(int code, int slot, int which, Complex<T> m[4]) const {
    const T* cs = angles_at(slot);
    single_qubit_matrix_derivative<T>(code, cs, cs + 1, 2, which, m);
  }

  /// mats_[4 op ..]: the product of a fused block, a controlled gate's block, or rzz's two phases.
  HDQNN_HOST_DEVICE void build_matrices() {
    for (int i = team_.rank; i < meta_.n_ops(); i += team_.size) {
      const int* op = meta_.op(i);
      Complex<T>* m = mats_ + 4 * i;
      switch (op[kFKind]) {
        case kOpFused1q:
        case kOpFused1qCx: {
          const int* row = meta_.gate(meta_.order(op[kFBegin]));
          matrix_of(row[0], row[3], m);
          for (int e = op[kFBegin] + 1; e < op[kFEnd]; ++e) {
            row = meta_.gate(meta_.order(e));
            Complex<T> u[4], prod[4];
            matrix_of(row[0], row[3], u);
            mat2_mul(u, m, prod);
            for (int k = 0; k < 4; ++k) m[k] = prod[k];
          }
          break;
        }
        case kOpControlled: {
          const int* row = meta_.gate(op[kFBegin]);
          matrix_of(controlled_base(row[0]), row[3], m);
          break;
        }
        case kOpRzz: {
          const T* cs = angles_at(meta_.gate(op[kFBegin])[3]);
          Complex<T> full[16];
          pauli_pair_rotation_matrix(kGateRzz, cs[0], cs[1], full);
          m[0] = full[0];  // |00>, |11>
          m[1] = full[5];  // |01>, |10>
          break;
        }
        default:
          break;
      }
    }
  }

  // ----------------------------------------------------------------------------- geometry
  /// Calls f(ia, ib) for every amplitude pair of a pair-type op (a fused block, controlled gates
  /// on their control=1 half, swap on (|01>, |10>)), the team's share of them.
  template <class F>
  HDQNN_HOST_DEVICE HDQNN_INLINE void for_pairs(const int* op, F&& f) const {
    if (op[kFKind] == kOpFused1q) {
      const int b = wire_bit(op[kFWire0], n_);
      const Index off = Index(1) << b;
      for (Index t = team_.rank; t < dim_ / 2; t += team_.size) {
        const Index base = insert_zero_bit(t, b);
        f(base, base + off);
      }
      return;
    }
    const int b0 = wire_bit(op[kFWire0], n_), b1 = wire_bit(op[kFWire1], n_);
    const int lo = b0 < b1 ? b0 : b1, hi = b0 < b1 ? b1 : b0;
    const bool swap = op[kFKind] == kOpSwap;
    const Index set = swap ? 0 : Index(1) << b0;
    const Index off_a = swap ? Index(1) << b1 : 0;
    const Index off_b = swap ? Index(1) << b0 : Index(1) << b1;
    for (Index t = team_.rank; t < dim_ / 4; t += team_.size) {
      const Index base = insert_zero_bit(insert_zero_bit(t, lo), hi) | set;
      f(base + off_a, base + off_b);
    }
  }

  /// Calls f(i0, i1, i2, i3) for every quad of (wa, wb), indexed 2 * bit(wa) + bit(wb).
  template <class F>
  HDQNN_HOST_DEVICE HDQNN_INLINE void for_quads(int wa, int wb, F&& f) const {
    const int ba = wire_bit(wa, n_), bb = wire_bit(wb, n_);
    const int lo = ba < bb ? ba : bb, hi = ba < bb ? bb : ba;
    const Index oa = Index(1) << ba, ob = Index(1) << bb;
    for (Index t = team_.rank; t < dim_ / 4; t += team_.size) {
      const Index base = insert_zero_bit(insert_zero_bit(t, lo), hi);
      f(base, base + ob, base + oa, base + oa + ob);
    }
  }

  HDQNN_HOST_DEVICE void load_matrix(int i, Complex<T> m[4]) const {
    for (int k = 0; k < 4; ++k) m[k] = mats_[4 * i + k];
  }

  HDQNN_HOST_DEVICE void pair_rotation(const int* op, bool derivative, Complex<T> (&mat)[16]) const {
    const int* row = meta_.gate(op[kFBegin]);
    const T* cs = angles_at(row[3]);
    if (derivative) {
      pauli_pair_rotation_derivative<T>(row[0], cs[0], cs[1], mat);
    } else {
      pauli_pair_rotation_matrix(row[0], cs[0], cs[1], mat);
    }
  }

  // ------------------------------------------------------------------------------ forward
  /// Prepares the product state of the initial ops (each wire's state is its block's column 0),
  /// then applies every other op.
  HDQNN_HOST_DEVICE void forward() {
    Complex<T>* psi = psi_;
    for (Index j = team_.rank; j < dim_; j += team_.size) {
      Complex<T> z = make_complex(T(1), T(0));
      for (int w = 0; w < n_; ++w) {
        const int bit = int((j >> wire_bit(w, n_)) & 1);
        const int op = meta_.initial_op(w);
        if (op >= 0) {
          z = z * mats_[4 * op + 2 * bit];
        } else if (bit) {
          z = make_complex(T(0), T(0));
          break;
        }
      }
      psi[j] = z;
    }
    team_.sync();
    for (int i = meta_.n_initial(); i < meta_.n_ops(); ++i) {
      forward_op(i);
      team_.sync();
    }
  }

  HDQNN_HOST_DEVICE void forward_op(int i) {
    const int* op = meta_.op(i);
    Complex<T>* psi = psi_;
    switch (op[kFKind]) {
      case kOpFused1q:
      case kOpControlled: {
        Complex<T> m[4];
        load_matrix(i, m);
        const int shape = op[kFShape];
        for_pairs(op, [&](Index ia, Index ib) {
          Complex<T> a0 = psi[ia], a1 = psi[ib];
          apply_shaped(shape, m, a0, a1);
          psi[ia] = a0;
          psi[ib] = a1;
        });
        break;
      }
      case kOpCx:
      case kOpSwap:
        for_pairs(op, [&](Index ia, Index ib) {
          const Complex<T> t = psi[ia];
          psi[ia] = psi[ib];
          psi[ib] = t;
        });
        break;
      case kOpCz:
        for_pairs(op, [&](Index, Index ib) { psi[ib] = make_complex(-psi[ib].re, -psi[ib].im); });
        break;
      case kOpFused1qCx: {  // wire0 = target of the cx, wire1 = its control
        Complex<T> m[4];
        load_matrix(i, m);
        const int shape = op[kFShape];
        for_quads(op[kFWire1], op[kFWire0], [&](Index i0, Index i1, Index i2, Index i3) {
          Complex<T> a0 = psi[i0], a1 = psi[i1], a2 = psi[i2], a3 = psi[i3];
          apply_shaped(shape, m, a0, a1);
          apply_shaped(shape, m, a2, a3);
          psi[i0] = a0;
          psi[i1] = a1;
          psi[i2] = a3;
          psi[i3] = a2;
        });
        break;
      }
      case kOpRzz: {
        const Complex<T> even = mats_[4 * i], odd = mats_[4 * i + 1];
        for_quads(op[kFWire0], op[kFWire1], [&](Index i0, Index i1, Index i2, Index i3) {
          psi[i0] = even * psi[i0];
          psi[i1] = odd * psi[i1];
          psi[i2] = odd * psi[i2];
          psi[i3] = even * psi[i3];
        });
        break;
      }
      default: {  // kOpPairRotation
        Complex<T> mat[16];
        pair_rotation(op, false, mat);
        for_quads(op[kFWire0], op[kFWire1], [&](Index i0, Index i1, Index i2, Index i3) {
          Complex<T> a[4] = {psi[i0], psi[i1], psi[i2], psi[i3]};
          apply_4x4(mat, a);
          psi[i0] = a[0];
          psi[i1] = a[1];
          psi[i2] = a[2];
          psi[i3] = a[3];
        });
        break;
      }
    }
  }

  // ------------------------------------------------------------------------------ outputs
  HDQNN_HOST_DEVICE void write_states() {
    if (!valid_) return;
    Complex<T>* row = reinterpret_cast<Complex<T>*>(args_.out) + b_ * dim_;
    for (Index j = team_.rank; j < dim_; j += team_.size) row[j] = psi_[j];
  }

  HDQNN_HOST_DEVICE void write_probabilities() {
    if (!valid_) return;
    T* row = args_.out + b_ * dim_;
    for (Index j = team_.rank; j < dim_; j += team_.size) row[j] = norm2(psi_[j]);
  }

  HDQNN_HOST_DEVICE double* reduce_buffer(int parity) const { return reduce_ + (parity & 1) * reduce_stride_; }

  /// <psi|P_k|psi> = i^nY sum_j sign(j) conj(psi[j ^ flip]) psi[j], summed in double.
  HDQNN_HOST_DEVICE void expectations() {
    const int n_terms = meta_.n_terms();
    for (int k = 0; k < n_terms; ++k) {
      const PauliTerm term = meta_.term(k);
      double v[2] = {0.0, 0.0};
      for (Index j = team_.rank; j < dim_; j += team_.size) {
        const double sgn = parity(Mask(j) & term.sign) ? -1.0 : 1.0;
        if (term.flip == 0) {
          v[0] += sgn * double(norm2(psi_[j]));
        } else {
          const Complex<T> z = conj_mul(psi_[j ^ Index(term.flip)], psi_[j]);
          v[0] += sgn * double(z.re);
          v[1] += sgn * double(z.im);
        }
      }
      reduce_to_buffer(team_, v, reduce_buffer(k));
      team_.sync();
      if (team_.rank == 0 && valid_) {
        double s[2];
        sum_entries(team_, reduce_buffer(k), s);
        args_.out[b_ * n_terms + k] = T(real_of_i_power(term.ny, make_complex(s[0], s[1])));
      }
    }
  }

  /// Draws ``shots`` basis states from |psi|^2 by inverting the CDF (built in the second state
  /// buffer, in double so that a float32 run still resolves small probabilities).
  HDQNN_HOST_DEVICE void sample() {
    double* cdf = reinterpret_cast<double*>(lam_);
    const Index chunk = (dim_ + team_.size - 1) / team_.size;
    const Index lo = team_.rank * chunk < dim_ ? team_.rank * chunk : dim_;
    const Index hi = lo + chunk < dim_ ? lo + chunk : dim_;
    double running = 0.0;
    for (Index j = lo; j < hi; ++j) {
      running += double(norm2(psi_[j]));
      cdf[j] = running;
    }
    scan_[team_.thread] = running;
    team_.sync();
    if (team_.rank == 0) {
      double* totals = scan_ + Index(team_.group) * team_.size;
      double offset = 0.0;
      for (int r = 0; r < team_.size; ++r) {
        const double t = totals[r];
        totals[r] = offset;
        offset += t;
      }
    }
    team_.sync();
    const double offset = scan_[team_.thread];
    for (Index j = lo; j < hi; ++j) cdf[j] += offset;
    team_.sync();
    const double total = cdf[dim_ - 1];
    if (!valid_) return;
    unsigned char* out = args_.bits + b_ * args_.shots * n_;
    for (Index s = team_.rank; s < args_.shots; s += team_.size) {
      const double u = shot_uniform(args_.seed, b_, s) * total;
      Index first = 0, last = dim_;  // first index with cdf > u
      while (first < last) {
        const Index mid = (first + last) / 2;
        if (cdf[mid] <= u) {
          first = mid + 1;
        } else {
          last = mid;
        }
      }
      const Index index = first < dim_ ? first : dim_ - 1;
      for (int q = 0; q < n_; ++q) out[s * n_ + q] = static_cast<unsigned char>((index >> wire_bit(q, n_)) & 1);
    }
  }

  // ----------------------------------------------------------------------------- backward
  /// lambda = sum_k g_k P_k psi, g the sample's row of grad_output.
  HDQNN_HOST_DEVICE void prepare_lambda() {
    const int n_terms = meta_.n_terms();
    const T* g = args_.grad_output + read_b_ * n_terms;
    for (Index j = team_.rank; j < dim_; j += team_.size) {
      T fz = T(0);
      for (int k = 0; k < n_terms; ++k) {
        const PauliTerm term = meta_.term(k);
        if (term.flip == 0) fz += parity(Mask(j) & term.sign) ? -g[k] : g[k];
      }
      Complex<T> lam = fz * psi_[j];
      for (int k = 0; k < n_terms; ++k) {
        const PauliTerm term = meta_.term(k);
        if (term.flip == 0) continue;
        const Index src = j ^ Index(term.flip);
        lam = lam + g[k] * (pauli_phase<T>(term, src) * psi_[src]);
      }
      lam_[j] = lam;
    }
  }

  /// Undoes the ops in reverse on psi and lambda; an op with trainable or input angles reduces
  /// its cross terms into a buffer, and after the op's barrier the sample's leader turns them
  /// into angle gradients (buffers alternate, so the next op's reduction cannot overwrite them).
  HDQNN_HOST_DEVICE void backward() {
    if (team_.rank == 0 && valid_) zero_gradients();
    for (int i = meta_.n_ops() - 1; i >= 0; --i) {
      const int* op = meta_.op(i);
      backward_op(i, reduce_buffer(i));
      team_.sync();
      if (op[kFNeedsGrad] && team_.rank == 0 && valid_) finish_gradient(i, reduce_buffer(i));
    }
  }

  HDQNN_HOST_DEVICE void zero_gradients() {
    T* gi = args_.out + b_ * meta_.n_inputs();
    for (int d = 0; d < meta_.n_inputs(); ++d) gi[d] = T(0);
    T* gw = args_.grad_rows + b_ * meta_.n_weights();
    for (int w = 0; w < meta_.n_weights(); ++w) gw[w] = T(0);
  }

  HDQNN_HOST_DEVICE void backward_op(int i, double* buffer) {
    const int* op = meta_.op(i);
    Complex<T>* psi = psi_;
    Complex<T>* lam = lam_;
    const bool grad = op[kFNeedsGrad] != 0;
    const int shape = op[kFShape];
    T acc[kReduceWidth];
    for (int k = 0; k < kReduceWidth; ++k) acc[k] = T(0);
    switch (op[kFKind]) {
      case kOpCx:
      case kOpSwap:  // their own inverses, no angles
        for_pairs(op, [&](Index ia, Index ib) {
          Complex<T> t = psi[ia];
          psi[ia] = psi[ib];
          psi[ib] = t;
          t = lam[ia];
          lam[ia] = lam[ib];
          lam[ib] = t;
        });
        return;
      case kOpCz:
        for_pairs(op, [&](Index, Index ib) {
          psi[ib] = make_complex(-psi[ib].re, -psi[ib].im);
          lam[ib] = make_complex(-lam[ib].re, -lam[ib].im);
        });
        return;
      case kOpFused1q:
      case kOpControlled: {
        Complex<T> m[4], md[4];
        load_matrix(i, m);
        mat2_dagger(m, md);
        for_pairs(op, [&](Index ia, Index ib) {
          Complex<T> p0 = psi[ia], p1 = psi[ib];
          apply_shaped(shape, md, p0, p1);
          psi[ia] = p0;
          psi[ib] = p1;
          Complex<T> l0 = lam[ia], l1 = lam[ib];
          if (grad) accumulate_cross(shape, acc, l0, l1, p0, p1);
          apply_shaped(shape, md, l0, l1);
          lam[ia] = l0;
          lam[ib] = l1;
        });
        break;
      }
      case kOpFused1qCx: {  // undo the cx (swapped loads of the control=1 pair), then the block
        Complex<T> m[4], md[4];
        load_matrix(i, m);
        mat2_dagger(m, md);
        for_quads(op[kFWire1], op[kFWire0], [&](Index i0, Index i1, Index i2, Index i3) {
          Complex<T> p0 = psi[i0], p1 = psi[i1], p2 = psi[i3], p3 = psi[i2];
          apply_shaped(shape, md, p0, p1);
          apply_shaped(shape, md, p2, p3);
          psi[i0] = p0;
          psi[i1] = p1;
          psi[i2] = p2;
          psi[i3] = p3;
          Complex<T> l0 = lam[i0], l1 = lam[i1], l2 = lam[i3], l3 = lam[i2];
          if (grad) {
            accumulate_cross(shape, acc, l0, l1, p0, p1);
            accumulate_cross(shape, acc, l2, l3, p2, p3);
          }
          apply_shaped(shape, md, l0, l1);
          apply_shaped(shape, md, l2, l3);
          lam[i0] = l0;
          lam[i1] = l1;
          lam[i2] = l2;
          lam[i3] = l3;
        });
        break;
      }
      case kOpRzz: {
        const Complex<T> inv[2] = {conj(mats_[4 * i]), conj(mats_[4 * i + 1])};
        for_quads(op[kFWire0], op[kFWire1], [&](Index i0, Index i1, Index i2, Index i3) {
          const Index idx[4] = {i0, i1, i2, i3};
          for (int q = 0; q < 4; ++q) {
            const int odd = (q == 1 || q == 2) ? 1 : 0;
            const Complex<T> p = inv[odd] * psi[idx[q]];
            const Complex<T> l = lam[idx[q]];
            const Complex<T> z = conj_mul_add(make_complex(acc[2 * odd], acc[2 * odd + 1]), l, p);
            acc[2 * odd] = z.re;
            acc[2 * odd + 1] = z.im;
            psi[idx[q]] = p;
            lam[idx[q]] = inv[odd] * l;
          }
        });
        break;
      }
      default: {  // kOpPairRotation: <lambda| dU |psi_before> with the 4x4 derivative
        Complex<T> mat[16], inv[16], der[16];
        pair_rotation(op, false, mat);
        mat4_dagger(mat, inv);
        pair_rotation(op, true, der);
        for_quads(op[kFWire0], op[kFWire1], [&](Index i0, Index i1, Index i2, Index i3) {
          const Index idx[4] = {i0, i1, i2, i3};
          Complex<T> p[4], l[4], dp[4];
          for (int q = 0; q < 4; ++q) p[q] = psi[idx[q]];
          apply_4x4(inv, p);
          for (int q = 0; q < 4; ++q) {
            dp[q] = p[q];
            l[q] = lam[idx[q]];
          }
          apply_4x4(der, dp);
          for (int q = 0; q < 4; ++q) {
            const Complex<T> z = conj_mul_add(make_complex(acc[0], acc[1]), l[q], dp[q]);
            acc[0] = z.re;
            acc[1] = z.im;
          }
          apply_4x4(inv, l);
          for (int q = 0; q < 4; ++q) {
            psi[idx[q]] = p[q];
            lam[idx[q]] = l[q];
          }
        });
        break;
      }
    }
    if (grad) reduce_to_buffer(team_, acc, buffer);
  }

  /// The sample's leader: the angle gradients of op ``i`` from its reduced cross terms.
  HDQNN_HOST_DEVICE void finish_gradient(int i, const double* buffer) {
    const int* op = meta_.op(i);
    double s[kReduceWidth];
    sum_entries(team_, buffer, s);
    const int* row = meta_.gate(op[kFBegin]);
    switch (op[kFKind]) {
      case kOpRzz: {
        const T* cs = angles_at(row[3]);
        Complex<T> full[16];
        pauli_pair_rotation_derivative<T>(kGateRzz, cs[0], cs[1], full);
        const Complex<T> even = make_complex(T(s[0]), T(s[1])), odd = make_complex(T(s[2]), T(s[3]));
        add_angle_gradient(row[3], double((full[0] * even + full[5] * odd).re));
        break;
      }
      case kOpPairRotation:
        add_angle_gradient(row[3], s[0]);
        break;
      default: {
        Complex<T> r[4];
        cross_matrix<T>(op[kFShape], s, r);
        block_gradients(i, op, r);
        break;
      }
    }
  }

  /// Angle gradients of the gates of a fused block (or of one controlled gate) from the cross
  /// matrix R of the block U = U_k ... U_1: d/dtheta_j = 2 Re tr(dU_j Q_j) with
  /// Q_1 = R^T U U_1^dag and Q_{j+1} = U_j Q_j U_{j+1}^dag (as the CPU engine's block_gradients).
  HDQNN_HOST_DEVICE void block_gradients(int i, const int* op, const Complex<T> r[4]) {
    Complex<T> q[4] = {r[0], r[2], r[1], r[3]};  // R^T
    const bool controlled = op[kFKind] == kOpControlled;
    const int count = controlled ? 1 : op[kFEnd] - op[kFBegin];
    Complex<T> cur[4], tmp[4], dag[4];
    const int* row = gate_of_block(op, controlled, 0);
    matrix_of(code_of_block(row, controlled), row[3], cur);
    if (!controlled) {
      Complex<T> total[4];
      load_matrix(i, total);
      mat2_mul(q, total, tmp);
      mat2_dagger(cur, dag);
      mat2_mul(tmp, dag, q);
    }
    for (int e = 0; e < count; ++e) {
      const int code = code_of_block(row, controlled);
      const int slot = row[3];
      const int n_angles = gate_info(code).n_angles;
      for (int a = 0; a < n_angles; ++a) {
        if (meta_.source(slot + a) == kSrcConst) continue;
        Complex<T> du[4];
        derivative_of(code, slot, a, du);
        add_angle_gradient(slot + a, double(mat2_trace_of_product(du, q).re));
      }
      if (e + 1 == count) break;
      row = gate_of_block(op, controlled, e + 1);
      Complex<T> next[4], tmp2[4];
      matrix_of(code_of_block(row, controlled), row[3], next);
      mat2_mul(cur, q, tmp);
      mat2_dagger(next, dag);
      mat2_mul(tmp, dag, tmp2);
      for (int k = 0; k < 4; ++k) {
        q[k] = tmp2[k];
        cur[k] = next[k];
      }
    }
  }

  HDQNN_HOST_DEVICE const int* gate_of_block(const int* op, bool controlled, int e) const {
    return meta_.gate(controlled ? op[kFBegin] : meta_.order(op[kFBegin] + e));
  }

  HDQNN_HOST_DEVICE static int code_of_block(const int* row, bool controlled) {
    return controlled ? controlled_base(row[0]) : row[0];
  }

  /// d loss / d angle = 2 re, chained to the input or weight the slot reads.
  HDQNN_HOST_DEVICE void add_angle_gradient(int slot, double re) {
    const double g = 2.0 * re * args_.angle_val[slot];
    const int src = meta_.source(slot), idx = meta_.source_index(slot);
    if (src == kSrcInput) {
      args_.out[b_ * meta_.n_inputs() + idx] += T(g);
    } else if (src == kSrcWeight) {
      args_.grad_rows[b_ * meta_.n_weights() + idx] += T(g);
    }
  }

  const ExecArgs<T>& args_;
  const Team& team_;
  MetaView meta_;
  int n_;
  Index dim_;
  T* trig_;
  Complex<T>* mats_;
  Complex<T>* psi_;
  Complex<T>* lam_;
  double* reduce_;
  double* scan_;
  Index reduce_stride_;
  Index b_ = 0;
  Index read_b_ = 0;
  bool valid_ = false;
};

/// Runs every block-sized group of samples assigned to block ``block`` of ``grid``.
template <class T, class Team>
HDQNN_HOST_DEVICE void execute_block(const ExecArgs<T>& args, const Team& team, unsigned char* smem, int warp,
                                     Index block, Index grid) {
  const MetaView meta{args.meta};
  const SmemLayout layout = smem_layout(meta.n_qubits(), meta.n_slots(), meta.n_ops(), args.task,
                                        args.shared_state != 0, args.samples_per_block, args.threads_per_sample,
                                        warp, int(sizeof(T)));
  SampleRunner<T, Team> runner(args, team, smem, layout, block);
  const Index step = grid * args.samples_per_block;
  for (Index first = block * args.samples_per_block; first < args.batch; first += step) runner.run(first);
}

}  // namespace gpu
}  // namespace hdqnn

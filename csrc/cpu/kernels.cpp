// Batched program executor and adjoint differentiation on the CPU: workspace and driver. The
// pieces live in lanes.hpp (lane values, teams, loop skeleton), pair_kernels.hpp (2x2 updates) and
// block_runner.hpp (one block through the whole program).
//
// This file is compiled once per instruction set (CMake passes -DHDQNN_ISA=base|avx2|avx512 and the
// matching -march flags); engine.cpp picks the variant at run time. Each of those is compiled twice,
// -DHDQNN_PRECISION=32 and 64 (the float and the double entry point; both when unset): the halves
// build in parallel, which halves the wall time of the slowest compile of the build.
//
// Layout: a block of S samples ("lanes") is simulated together with split real/imaginary arrays
// re[j * S + l], im[j * S + l] for amplitude j of lane l. Every gate update is then a loop over the
// S lanes with per-lane coefficients, which vectorises for any target wire; for S == 1 the loop
// over contiguous amplitudes vectorises instead. The block's state stays in cache while the whole
// fused program runs, and only expectations, probabilities or gradients leave it.
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#include "isa_variant.hpp"  // first: selects this object's instruction-set namespace

#include "block_runner.hpp"
#include "engine_types.hpp"
#include "lanes.hpp"
#include "workspace.hpp"

HDQNN_NAMESPACE_BEGIN
namespace kernels {
namespace {

constexpr size_t kAlignment = 64;
/// Gap after each state array, so that psi and lambda (whose sizes are multiples of 4 KiB from
/// 7 qubits on) do not start at the same address modulo 4 KiB: the adjoint stores psi[j] and then
/// loads lambda[j], which the core would otherwise treat as possibly dependent (4K aliasing), and
/// the amplitudes of a pair or quad in all four arrays would compete for one L1 set.
constexpr Index kStateGapBytes = 4 * kAlignment;
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

// ------------------------------------------------------------------------------------ driver

HDQNN_INLINE Index align_up(Index count, Index elem_size) {
  const Index a = Index(kAlignment) / elem_size;
  return (count + a - 1) / a * a;
}

/// Sizes (in elements) of one worker's buffers.
template <class T, int S>
struct Layout {
  Index state;    ///< one of psi_re, psi_im, lam_re, lam_im, and its gap (kStateGapBytes)
  Index slots;    ///< one of half_cos, half_sin, gtheta
  Index table;
  Index gk;
  Index acc;      ///< doubles
  Index angles;   ///< doubles
  Index scratch;  ///< doubles per thread for team reductions
  Index chunk;    ///< one array of a cache-blocking chunk (0 without blocking)
  Index states;   ///< arrays per state set: re and im of psi, and of lambda for the adjoint

  explicit Layout(const Job<T>& job) {
    states = job.task == Task::kVjp ? 4 : 2;
    const int n = job.program.n_qubits;
    state = align_up((Index(1) << n) * S, sizeof(T)) + kStateGapBytes / Index(sizeof(T));
    slots = align_up(Index(job.program.n_slots > 0 ? job.program.n_slots : 1) * S, sizeof(T));
    // the product-state tables; the adjoint's initial_gradients adds as much again and a scratch
    const Index tables = 2 * ((Index(1) << (n / 2)) + (Index(1) << (n - n / 2))) * S;
    table = align_up(job.task == Task::kVjp ? 3 * tables : tables, sizeof(T));
    gk = align_up(Index(job.n_terms > 0 ? job.n_terms : 1) * S, sizeof(T));
    acc = align_up(Index(2) * (job.n_terms > 0 ? job.n_terms : 1) * S, sizeof(double));
    angles = align_up(Index(job.program.n_slots > 0 ? job.program.n_slots : 1) * S, sizeof(double));
    const Index widest = 8 * Index(S);
    scratch = align_up(acc > widest ? acc : widest, sizeof(double));
    chunk = job.plan.n_phases > 0 ? align_up((Index(1) << job.plan.chunk_bits) * S, sizeof(T)) : 0;
  }
  Index private_elems() const { return 4 * slots + table + gk + states * chunk; }
  Index private_doubles() const { return acc + angles; }
};

template <class T, int S>
Buffers<T> carve(const Layout<T, S>& lay, T* states, T* priv, double* acc, bool vjp) {
  Buffers<T> b;
  b.psi_re = states;
  b.psi_im = states + lay.state;
  b.lam_re = vjp ? states + 2 * lay.state : nullptr;
  b.lam_im = vjp ? states + 3 * lay.state : nullptr;
  b.half_cos = priv;
  b.half_sin = priv + lay.slots;
  b.gtheta = priv + 2 * lay.slots;
  b.gchunk = priv + 3 * lay.slots;
  b.table = priv + 4 * lay.slots;
  b.gk = b.table + lay.table;
  b.chunk = b.gk + lay.gk;
  b.chunk_size = lay.chunk;
  b.acc = acc;
  b.half_angle = acc + lay.acc;
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
  const Index state_elems = state_sets * lay.states * lay.state;
  const Index priv_elems = Index(threads) * lay.private_elems();
  const Index double_elems = Index(threads) * (lay.private_doubles() + lay.scratch) +
                             (shared_weight_grads ? align_up(n_blocks * job.n_weights, sizeof(double)) : 0);
  const size_t bytes = size_t(state_elems + priv_elems) * sizeof(T) + size_t(double_elems) * sizeof(double);
  void* memory = allocate_workspace(bytes);
  if (memory == nullptr) return cpu::kRunOutOfMemory;
  T* states = static_cast<T*>(memory);
  T* priv = states + state_elems;
  double* doubles = reinterpret_cast<double*>(priv + priv_elems);
  double* accs = doubles;
  double* scratch = accs + Index(threads) * lay.private_doubles();
  double* weight_partials = scratch + Index(threads) * lay.scratch;
  if (shared_weight_grads) memset(weight_partials, 0, sizeof(double) * size_t(n_blocks * job.n_weights));

  auto buffers_of = [&](int tid, int state_set) {
    const Index per_set = lay.states * lay.state;
    return carve(lay, states + state_set * per_set, priv + tid * lay.private_elems(),
                 accs + tid * lay.private_doubles(), vjp);
  };

  if (job.amplitude_parallel) {
    int cancel_votes[2] = {0, 0};
#pragma omp parallel num_threads(threads)
    {
      const int tid = thread_id();
      const OmpTeam team{tid, team_size(), scratch, static_cast<int>(lay.scratch), job.cancel, cancel_votes};
      BlockRunner<T, S, OmpTeam> runner(job, team, buffers_of(tid, 0), weight_partials);
      for (Index block = 0; block < n_blocks; ++block) runner.run_block(block);
    }
  } else {
    auto run_one = [&](int worker, Index block) {
      BlockRunner<T, S, SoloTeam>(job, SoloTeam{job.cancel}, buffers_of(worker, worker), weight_partials)
          .run_block(block);
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
  return cancel_flag_set(job.cancel) ? cpu::kRunCancelled : cpu::kRunOk;
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

#if !defined(HDQNN_PRECISION) || HDQNN_PRECISION == 32
int HDQNN_PASTE(run_job_, HDQNN_ISA)(const Job<float>& job) { return kernels::run_job(job); }
#endif
#if !defined(HDQNN_PRECISION) || HDQNN_PRECISION == 64
int HDQNN_PASTE(run_job_, HDQNN_ISA)(const Job<double>& job) { return kernels::run_job(job); }
#endif

}  // namespace cpu
}  // namespace hdqnn

// Dynamic shared-memory layout of one thread block of the executor, and the sizes the launch
// policies (csrc/cuda/launch_policy.hpp, hdqnn/backends/launch.py) derive from it.
//
// Per sample of the block: half-angle cosines and sines of every slot, the 2x2 matrix of every op,
// and, on the shared-memory path, the state(s). Per block: two reduction buffers (alternated
// between consecutive reductions so one barrier per op suffices) and one scan buffer (sampling).
#pragma once

#include "meta.cuh"

namespace hdqnn {
namespace gpu {

constexpr Index kSmemAlign = 16;
/// Threads of a warp on every NVIDIA GPU so far (the host emulation also tries narrower ones).
constexpr int kWarpSize = 32;
/// Values one reduction carries (the 8 reals of a general 2x2 cross matrix).
constexpr int kReduceWidth = 8;

struct SmemLayout {
  Index trig;        ///< per sample: T [2 * n_slots] (cos, sin of half angles, interleaved)
  Index matrices;    ///< per sample: Complex<T> [4 * n_ops]
  Index states;      ///< per sample: Complex<T> [n_states * 2**n] on the shared path, else 0
  Index per_sample;  ///< trig + matrices + states
  Index reduce;      ///< per block: double [2][entries][kReduceWidth]
  Index scan;        ///< per block: double [block_threads]
  Index total;       ///< S * per_sample + reduce + scan
};

HDQNN_HOST_DEVICE HDQNN_INLINE Index smem_align(Index bytes) { return (bytes + kSmemAlign - 1) / kSmemAlign * kSmemAlign; }

/// States a task keeps per sample: the adjoint needs psi and lambda, sampling psi and a CDF.
HDQNN_HOST_DEVICE HDQNN_INLINE int states_per_sample(int task) { return task == kTaskVjp || task == kTaskSample ? 2 : 1; }

/// Layout for ``samples`` samples of ``threads_per_sample`` threads each; ``warp`` is the warp
/// width (32 on the GPU; smaller in the host emulation) and ``real_bytes`` sizeof(T).
HDQNN_HOST_DEVICE HDQNN_INLINE SmemLayout smem_layout(int n_qubits, int n_slots, int n_ops, int task,
                                                      bool shared_state, int samples, int threads_per_sample,
                                                      int warp, int real_bytes) {
  SmemLayout s;
  const Index real = real_bytes;
  s.trig = smem_align(2 * real * Index(n_slots > 0 ? n_slots : 1));
  s.matrices = smem_align(8 * real * Index(n_ops > 0 ? n_ops : 1));
  s.states = shared_state ? smem_align(2 * real * Index(states_per_sample(task)) * (Index(1) << n_qubits)) : 0;
  s.per_sample = s.trig + s.matrices + s.states;
  const int lanes = threads_per_sample < warp ? threads_per_sample : warp;
  const Index block_threads = Index(samples) * threads_per_sample;
  s.reduce = smem_align(2 * (block_threads / lanes) * kReduceWidth * Index(sizeof(double)));
  s.scan = smem_align(block_threads * Index(sizeof(double)));
  s.total = Index(samples) * s.per_sample + s.reduce + s.scan;
  return s;
}

}  // namespace gpu
}  // namespace hdqnn

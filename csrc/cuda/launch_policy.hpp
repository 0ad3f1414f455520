// How the executor is launched for a call: the shared-memory path (one group of threads per
// sample, several samples per block for small registers, states in shared memory) when a block's
// layout fits the device's shared memory, else the global-memory path (states in a workspace, a
// persistent grid bounded by the SM count and a workspace budget). Host code; mirrored line by
// line in hdqnn/backends/launch.py for the CuPy backend, and the tests compare the two.
#pragma once

#include "kernels/layout.cuh"

namespace hdqnn {
namespace cuda {

/// Threads of one sample: one amplitude pair each up to this many, then several pairs per thread.
constexpr int kMaxThreadsPerSample = 256;
/// Small registers pack samples into a block until it has this many threads (4 warps).
constexpr int kTargetBlockThreads = 128;
/// Resident blocks per SM the global-memory path aims for (its persistent grid).
constexpr int kGlobalBlocksPerSm = 4;

struct LaunchRequest {
  int n_qubits;
  int task;
  int real_bytes;        ///< 4 (complex64) or 8 (complex128)
  int n_slots;
  int n_ops;
  long long batch;
  long long smem_limit;  ///< dynamic shared memory one block may use (the device's opt-in limit)
  int sm_count;
  long long workspace_limit;  ///< bytes the global-memory path may allocate for states
};

struct LaunchConfig {
  bool shared_state;
  int threads_per_sample;
  int samples_per_block;
  int block_threads;
  long long grid;
  long long smem_bytes;
  long long workspace_bytes;
  bool fits;  ///< false: even one sample's angle and matrix tables exceed shared memory
};

inline gpu::SmemLayout block_layout(const LaunchRequest& r, bool shared_state, int samples, int threads_per_sample) {
  return gpu::smem_layout(r.n_qubits, r.n_slots, r.n_ops, r.task, shared_state, samples, threads_per_sample,
                          gpu::kWarpSize, r.real_bytes);
}

inline LaunchConfig choose_launch(const LaunchRequest& r) {
  LaunchConfig c{};
  const long long dim = 1LL << r.n_qubits;
  const long long pairs = dim / 2 > 1 ? dim / 2 : 1;
  c.threads_per_sample = static_cast<int>(pairs < kMaxThreadsPerSample ? pairs : kMaxThreadsPerSample);
  int samples = kTargetBlockThreads / c.threads_per_sample > 1 ? kTargetBlockThreads / c.threads_per_sample : 1;
  while (samples > 1 && block_layout(r, true, samples, c.threads_per_sample).total > r.smem_limit) samples /= 2;
  const gpu::SmemLayout shared = block_layout(r, true, samples, c.threads_per_sample);
  if (shared.total <= r.smem_limit) {
    c.shared_state = true;
    c.samples_per_block = samples;
    c.grid = (r.batch + samples - 1) / samples;
    c.smem_bytes = shared.total;
    c.workspace_bytes = 0;
    c.fits = true;
  } else {
    c.shared_state = false;
    c.samples_per_block = 1;
    c.smem_bytes = block_layout(r, false, 1, c.threads_per_sample).total;
    c.fits = c.smem_bytes <= r.smem_limit;
    const long long state_bytes = gpu::states_per_sample(r.task) * dim * 2LL * r.real_bytes;
    long long grid = static_cast<long long>(r.sm_count) * kGlobalBlocksPerSm;
    if (r.batch < grid) grid = r.batch;
    const long long by_memory = r.workspace_limit / state_bytes;
    if (by_memory < grid) grid = by_memory > 1 ? by_memory : 1;
    c.grid = grid;
    c.workspace_bytes = grid * state_bytes;
  }
  c.block_threads = c.threads_per_sample * c.samples_per_block;
  return c;
}

}  // namespace cuda
}  // namespace hdqnn

// Host emulation of the GPU executor (testing hook): runs kernels/executor.cuh on the CPU with one
// std::thread per GPU thread, a barrier for __syncthreads and an exchange array for warp shuffles,
// so that machines without a GPU test the kernels' own code, their thread partitioning included.
#pragma once

#include <stdint.h>

namespace hdqnn {
namespace cuda {

struct EmulateCall {
  int task;
  int real_bytes;  ///< 4 or 8
  const int32_t* meta;
  const double* angle_val;
  const void* inputs;
  const void* weights;
  const void* grad_output;
  void* out;
  void* grad_weights;  ///< vjp: [n_weights] (summed over the batch) or [batch, n_weights]
  unsigned char* bits;
  long long batch;
  long long shots;
  unsigned long long seed;
};

struct EmulateConfig {
  int threads_per_sample;  ///< power of two
  int samples_per_block;
  int warp;                ///< emulated warp width (power of two)
  bool shared_state;       ///< states in the block's shared memory, else in a workspace
  long long grid;          ///< blocks; fewer than needed exercises the grid-stride loop
};

/// Runs ``call`` on the host; throws std::invalid_argument on a bad configuration.
void emulate(const EmulateCall& call, const EmulateConfig& config);

}  // namespace cuda
}  // namespace hdqnn

// The kernels' entry points (device code only): included by csrc/cuda/kernels.cu for nvcc and
// compiled by NVRTC for the CuPy backend (hdqnn/backends/cupy_backend.py), so both run the same
// kernels under the same C names.
#pragma once

#include "executor.cuh"

namespace hdqnn {
namespace gpu {

/// The threads of one sample on the GPU (see executor.cuh for the Team interface).
struct DeviceTeam {
  int thread;
  int rank;
  int size;
  int group;
  int lanes;
  unsigned int mask;  ///< the warp's active lanes: the last warp of a block may be partial

  __device__ explicit DeviceTeam(int threads_per_sample) {
    thread = static_cast<int>(threadIdx.x);
    size = threads_per_sample;
    rank = thread % size;
    group = thread / size;
    lanes = size < kWarpSize ? size : kWarpSize;
    const int active = static_cast<int>(blockDim.x) - (thread / kWarpSize) * kWarpSize;
    mask = active >= kWarpSize ? 0xffffffffu : (1u << active) - 1u;
  }
  __device__ void sync() const { __syncthreads(); }
  template <class A>
  __device__ A shuffle_xor(A v, int offset) const {
    return __shfl_xor_sync(mask, v, offset);
  }
};

template <class T>
__device__ void execute(const ExecArgs<T>& args) {
  extern __shared__ __align__(16) unsigned char hdqnn_smem[];
  const DeviceTeam team(args.threads_per_sample);
  execute_block<T, DeviceTeam>(args, team, hdqnn_smem, kWarpSize, blockIdx.x, gridDim.x);
}

/// out[c] = sum_r rows[r, c] for one column c per block, in a fixed order (deterministic).
template <class T>
__device__ void sum_rows(const T* rows, T* out, Index n_rows, int n_cols) {
  __shared__ double partial[kSumThreads];
  const int col = static_cast<int>(blockIdx.x);
  double s = 0.0;
  for (Index r = threadIdx.x; r < n_rows; r += blockDim.x) s += double(rows[r * n_cols + col]);
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int half = kSumThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[col] = T(partial[0]);
}

}  // namespace gpu
}  // namespace hdqnn

#define HDQNN_EXECUTE_KERNEL(NAME, T)                                                                          \
  extern "C" __global__ void __launch_bounds__(hdqnn::gpu::kMaxBlockThreads)                                  \
      NAME(const int* meta, const double* angle_val, const T* inputs, const T* weights, const T* grad_output,  \
           T* out, T* grad_rows, T* workspace, unsigned char* bits, long long batch, int task,                 \
           int threads_per_sample, int samples_per_block, int shared_state, long long shots,                  \
           unsigned long long seed) {                                                                          \
    hdqnn::gpu::ExecArgs<T> args;                                                                              \
    args.meta = meta;                                                                                          \
    args.angle_val = angle_val;                                                                                \
    args.inputs = inputs;                                                                                      \
    args.weights = weights;                                                                                    \
    args.grad_output = grad_output;                                                                            \
    args.out = out;                                                                                            \
    args.grad_rows = grad_rows;                                                                                \
    args.workspace = reinterpret_cast<hdqnn::Complex<T>*>(workspace);                                          \
    args.bits = bits;                                                                                          \
    args.batch = batch;                                                                                        \
    args.task = task;                                                                                          \
    args.threads_per_sample = threads_per_sample;                                                              \
    args.samples_per_block = samples_per_block;                                                                \
    args.shared_state = shared_state;                                                                          \
    args.shots = shots;                                                                                        \
    args.seed = seed;                                                                                          \
    hdqnn::gpu::execute<T>(args);                                                                              \
  }

#define HDQNN_SUM_ROWS_KERNEL(NAME, T)                                                                \
  extern "C" __global__ void __launch_bounds__(hdqnn::gpu::kSumThreads)                              \
      NAME(const T* rows, T* out, long long n_rows, int n_cols) {                                     \
    hdqnn::gpu::sum_rows<T>(rows, out, n_rows, n_cols);                                               \
  }

HDQNN_EXECUTE_KERNEL(hdqnn_execute_f32, float)
HDQNN_EXECUTE_KERNEL(hdqnn_execute_f64, double)
HDQNN_SUM_ROWS_KERNEL(hdqnn_sum_rows_f32, float)
HDQNN_SUM_ROWS_KERNEL(hdqnn_sum_rows_f64, double)

// The executor and column-sum kernels (kernels/entry.cuh) and their launchers.
#include "api.hpp"
#include "cuda_check.cuh"
#include "kernels/entry.cuh"

namespace hdqnn {
namespace cuda {
namespace {

/// Dynamic shared memory a kernel may use without opting in.
constexpr long long kDefaultDynamicSmem = 48 * 1024;

template <class T, class Kernel>
void launch_typed(Kernel kernel, const KernelLaunch& k, const LaunchConfig& c) {
  if (c.smem_bytes > kDefaultDynamicSmem) {
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(c.smem_bytes)),
               "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
  }
  kernel<<<dim3(static_cast<unsigned int>(c.grid)), dim3(c.block_threads), static_cast<size_t>(c.smem_bytes),
           as_stream(k.stream)>>>(k.meta, k.angle_val, static_cast<const T*>(k.inputs), static_cast<const T*>(k.weights),
                                  static_cast<const T*>(k.grad_output), static_cast<T*>(k.out),
                                  static_cast<T*>(k.grad_rows), static_cast<T*>(k.workspace), k.bits, k.batch, k.task,
                                  c.threads_per_sample, c.samples_per_block, c.shared_state ? 1 : 0, k.shots, k.seed);
  check_cuda(cudaGetLastError(), "launching hdqnn_execute");
}

}  // namespace

void launch_execute(const KernelLaunch& k, const LaunchConfig& config, int real_bytes) {
  if (real_bytes == 8) {
    launch_typed<double>(hdqnn_execute_f64, k, config);
  } else {
    launch_typed<float>(hdqnn_execute_f32, k, config);
  }
}

void launch_sum_rows(const void* rows, void* out, long long n_rows, int n_cols, int real_bytes, uintptr_t stream) {
  if (real_bytes == 8) {
    hdqnn_sum_rows_f64<<<n_cols, gpu::kSumThreads, 0, as_stream(stream)>>>(static_cast<const double*>(rows),
                                                                            static_cast<double*>(out), n_rows, n_cols);
  } else {
    hdqnn_sum_rows_f32<<<n_cols, gpu::kSumThreads, 0, as_stream(stream)>>>(static_cast<const float*>(rows),
                                                                           static_cast<float*>(out), n_rows, n_cols);
  }
  check_cuda(cudaGetLastError(), "launching hdqnn_sum_rows");
}

}  // namespace cuda
}  // namespace hdqnn

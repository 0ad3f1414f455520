// Turning CUDA runtime errors into exceptions (host code of the .cu files only).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace hdqnn {
namespace cuda {

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(status) + " (" +
                             cudaGetErrorString(status) + ")");
  }
}

inline cudaStream_t as_stream(uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

}  // namespace cuda
}  // namespace hdqnn

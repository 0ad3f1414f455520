// Host interface of the CUDA engine, free of CUDA and Python types: the pybind11 module
// (bindings.cpp) calls these; device.cu and kernels.cu implement them. Errors are thrown as
// std::runtime_error (CUDA failures, with the runtime's message) or std::invalid_argument.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <string>

#include "launch_policy.hpp"

namespace hdqnn {
namespace cuda {

/// Devices the runtime sees, and why there are none (empty when count > 0).
struct DeviceStatus {
  int count;
  std::string reason;
};
DeviceStatus device_status();

struct DeviceInfo {
  std::string name;
  int major;
  int minor;
  int sm_count;
  long long smem_per_block_optin;
  long long smem_per_sm;
  long long l2_bytes;
  long long total_memory;
  long long free_memory;
};
DeviceInfo device_info(int device);

/// Runtime and driver versions as 1000 * major + 10 * minor (driver 0: none installed).
int runtime_version();
int driver_version();

/// Device of a device pointer, or -1 for host memory.
int pointer_device(const void* ptr);

/// Stream-ordered allocation from the device's memory pool (cudaMallocAsync / cudaFreeAsync).
void* allocate(size_t bytes, int device, uintptr_t stream);
void release(void* ptr, int device, uintptr_t stream);
/// Host -> device, ordered on ``stream`` (returns once the host buffer may be reused).
void copy_to_device(void* dst, const void* src, size_t bytes, int device, uintptr_t stream);
/// Device -> host, ordered on ``stream``; returns when the data has arrived.
void copy_to_host(void* dst, const void* src, size_t bytes, int device, uintptr_t stream);
void synchronize(int device, uintptr_t stream);

/// One engine call. Arrays are device pointers except meta and angle_val (host, copied here).
struct ExecuteCall {
  int task;
  int real_bytes;  ///< 4 or 8
  const int32_t* meta;
  size_t meta_words;
  const double* angle_val;
  size_t n_angle_vals;
  const void* inputs;
  const void* weights;
  const void* grad_output;
  void* out;
  void* grad_weights;  ///< vjp: [n_weights] (summed over the batch) or [batch, n_weights]
  unsigned char* bits;
  long long batch;
  long long shots;
  unsigned long long seed;
  int device;
  uintptr_t stream;
};

/// The launch a call of this shape gets on ``device`` (workspace budget from its free memory).
LaunchConfig launch_for(const LaunchRequest& request_without_device, int device);

/// Runs ``call`` (asynchronously on its stream) and returns the launch it used.
LaunchConfig execute(const ExecuteCall& call);

// Kernel launchers (kernels.cu).
struct KernelLaunch {
  const int* meta;
  const double* angle_val;
  const void* inputs;
  const void* weights;
  const void* grad_output;
  void* out;
  void* grad_rows;
  void* workspace;
  unsigned char* bits;
  long long batch;
  int task;
  long long shots;
  unsigned long long seed;
  uintptr_t stream;
};
void launch_execute(const KernelLaunch& k, const LaunchConfig& config, int real_bytes);
void launch_sum_rows(const void* rows, void* out, long long n_rows, int n_cols, int real_bytes, uintptr_t stream);

}  // namespace cuda
}  // namespace hdqnn

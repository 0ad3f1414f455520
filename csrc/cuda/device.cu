// Device queries, stream-ordered memory and the orchestration of one engine call (upload the call
// description, choose the launch, run, add up shared-weight gradients). Host code only.
#include <limits.h>

#include <mutex>
#include <string>

#include "api.hpp"
#include "cuda_check.cuh"

namespace hdqnn {
namespace cuda {
namespace {

/// Share of the device's free memory the global-memory path may take for its states.
constexpr double kWorkspaceFraction = 0.25;
constexpr int kMaxDevices = 64;

/// Makes ``device`` current for a scope, restoring the caller's device after.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (device != previous_) check_cuda(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

/// What launches need of a device, read once (properties do not change while a process runs).
struct DeviceLimits {
  long long smem_optin;
  int sm_count;
};

DeviceLimits limits_of(int device) {
  static std::mutex mutex;
  static DeviceLimits cache[kMaxDevices];
  static bool known[kMaxDevices] = {};
  if (device < 0 || device >= kMaxDevices) throw std::invalid_argument("device index out of range");
  std::lock_guard<std::mutex> lock(mutex);
  if (!known[device]) {
    int smem = 0, sms = 0;
    check_cuda(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
    check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
    // keep freed pool memory cached: per-call workspaces are then as cheap as torch's allocator
    cudaMemPool_t pool;
    check_cuda(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
    unsigned long long threshold = ULLONG_MAX;
    check_cuda(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), "cudaMemPoolSetAttribute");
    cache[device] = DeviceLimits{smem, sms};
    known[device] = true;
  }
  return cache[device];
}

long long free_memory_of(int device) {
  DeviceScope scope(device);
  size_t free_bytes = 0, total = 0;
  check_cuda(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
  return static_cast<long long>(free_bytes);
}

/// A stream-ordered temporary device buffer, released on the same stream.
class Scratch {
 public:
  Scratch(size_t bytes, int device, uintptr_t stream) : device_(device), stream_(stream) {
    if (bytes > 0) ptr_ = allocate(bytes, device, stream);
  }
  ~Scratch() {
    if (ptr_ != nullptr) release(ptr_, device_, stream_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  int device_;
  uintptr_t stream_;
};

void check_meta(const ExecuteCall& call) {
  if (call.real_bytes != 4 && call.real_bytes != 8) throw std::invalid_argument("real_bytes must be 4 or 8");
  if (call.meta_words < static_cast<size_t>(gpu::kHeaderSize) || call.meta[gpu::kHVersion] != gpu::kMetaVersion) {
    throw std::invalid_argument("meta is not a table of hdqnn.backends.device_program (wrong version or size)");
  }
  if (call.batch < 1) throw std::invalid_argument("batch must be >= 1");
  if (call.task < gpu::kTaskStatevector || call.task > gpu::kTaskSample) throw std::invalid_argument("unknown task");
}

}  // namespace

DeviceStatus device_status() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls report their own
    std::string reason = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    if (driver_version() == 0) reason = "no NVIDIA driver is installed (" + reason + ")";
    return DeviceStatus{0, reason};
  }
  if (count == 0) return DeviceStatus{0, "the CUDA runtime reports no device"};
  return DeviceStatus{count, ""};
}

DeviceInfo device_info(int device) {
  cudaDeviceProp prop;
  check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  DeviceInfo info;
  info.name = prop.name;
  info.major = prop.major;
  info.minor = prop.minor;
  info.sm_count = prop.multiProcessorCount;
  info.smem_per_block_optin = static_cast<long long>(prop.sharedMemPerBlockOptin);
  info.smem_per_sm = static_cast<long long>(prop.sharedMemPerMultiprocessor);
  info.l2_bytes = prop.l2CacheSize;
  info.total_memory = static_cast<long long>(prop.totalGlobalMem);
  info.free_memory = free_memory_of(device);
  return info;
}

int runtime_version() {
  int v = 0;
  check_cuda(cudaRuntimeGetVersion(&v), "cudaRuntimeGetVersion");
  return v;
}

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return v;
}

int pointer_device(const void* ptr) {
  cudaPointerAttributes attr;
  if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged ? attr.device : -1;
}

void* allocate(size_t bytes, int device, uintptr_t stream) {
  DeviceScope scope(device);
  limits_of(device);  // configures the pool on first use
  void* ptr = nullptr;
  check_cuda(cudaMallocAsync(&ptr, bytes, as_stream(stream)), "cudaMallocAsync");
  return ptr;
}

void release(void* ptr, int device, uintptr_t stream) {
  DeviceScope scope(device);
  cudaFreeAsync(ptr, as_stream(stream));  // never throws: called from destructors
}

void copy_to_device(void* dst, const void* src, size_t bytes, int device, uintptr_t stream) {
  DeviceScope scope(device);
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, as_stream(stream)), "cudaMemcpyAsync (to device)");
}

void copy_to_host(void* dst, const void* src, size_t bytes, int device, uintptr_t stream) {
  DeviceScope scope(device);
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, as_stream(stream)), "cudaMemcpyAsync (to host)");
  check_cuda(cudaStreamSynchronize(as_stream(stream)), "cudaStreamSynchronize");
}

void synchronize(int device, uintptr_t stream) {
  DeviceScope scope(device);
  check_cuda(cudaStreamSynchronize(as_stream(stream)), "cudaStreamSynchronize");
}

LaunchConfig launch_for(const LaunchRequest& request, int device) {
  const DeviceLimits limits = limits_of(device);
  LaunchRequest r = request;
  r.smem_limit = limits.smem_optin;
  r.sm_count = limits.sm_count;
  r.workspace_limit = LLONG_MAX;
  LaunchConfig config = choose_launch(r);
  if (!config.shared_state) {  // only the global-memory path needs the free-memory budget
    r.workspace_limit = static_cast<long long>(kWorkspaceFraction * double(free_memory_of(device)));
    config = choose_launch(r);
  }
  return config;
}

LaunchConfig execute(const ExecuteCall& call) {
  check_meta(call);
  const int32_t* m = call.meta;
  const bool vjp = call.task == gpu::kTaskVjp;
  const bool shared_weights = vjp && m[gpu::kHPerSampleWeights] == 0;
  const int n_weights = m[gpu::kHNWeights];
  LaunchRequest request{m[gpu::kHNQubits], call.task, call.real_bytes, m[gpu::kHNSlots], m[gpu::kHNOps],
                        call.batch, 0, 0, 0};
  const LaunchConfig config = launch_for(request, call.device);
  if (!config.fits) {
    throw std::invalid_argument("program too long for the CUDA engine: one sample's angle and matrix tables need " +
                                std::to_string(config.smem_bytes) + " bytes of shared memory, the device allows " +
                                std::to_string(limits_of(call.device).smem_optin));
  }
  DeviceScope scope(call.device);
  Scratch meta(call.meta_words * sizeof(int32_t), call.device, call.stream);
  Scratch angles(call.n_angle_vals * sizeof(double), call.device, call.stream);
  Scratch workspace(static_cast<size_t>(config.workspace_bytes), call.device, call.stream);
  Scratch rows(shared_weights ? static_cast<size_t>(call.batch) * n_weights * call.real_bytes : 0, call.device,
               call.stream);
  copy_to_device(meta.get(), call.meta, call.meta_words * sizeof(int32_t), call.device, call.stream);
  copy_to_device(angles.get(), call.angle_val, call.n_angle_vals * sizeof(double), call.device, call.stream);

  KernelLaunch k;
  k.meta = static_cast<const int*>(meta.get());
  k.angle_val = static_cast<const double*>(angles.get());
  k.inputs = call.inputs;
  k.weights = call.weights;
  k.grad_output = call.grad_output;
  k.out = call.out;
  k.grad_rows = shared_weights ? rows.get() : call.grad_weights;
  k.workspace = workspace.get();
  k.bits = call.bits;
  k.batch = call.batch;
  k.task = call.task;
  k.shots = call.shots;
  k.seed = call.seed;
  k.stream = call.stream;
  launch_execute(k, config, call.real_bytes);
  if (shared_weights && n_weights > 0) {
    launch_sum_rows(rows.get(), call.grad_weights, call.batch, n_weights, call.real_bytes, call.stream);
  }
  return config;
}

}  // namespace cuda
}  // namespace hdqnn

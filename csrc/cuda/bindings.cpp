// pybind11 module hdqnn._core_cuda: device queries, stream-ordered buffers, the engine call on
// device pointers (from __cuda_array_interface__, read in hdqnn/backends/cuda.py), and testing
// hooks that run the very kernel code on the host (emulate) or expose the launch policy and the
// constants the Python side mirrors. No math here, and no CUDA headers: see api.hpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <string>
#include <vector>

#include "api.hpp"
#include "emulate.hpp"
#include "kernels/philox.cuh"
#include "hdqnn/gates.hpp"
#include "hdqnn/gil.hpp"

namespace py = pybind11;

namespace {

using hdqnn::cuda::LaunchConfig;
using hdqnn::cuda::LaunchRequest;

/// A block of device memory owned by Python: released (stream-ordered) when garbage-collected.
class DeviceBuffer {
 public:
  DeviceBuffer(size_t nbytes, int device, uintptr_t stream)
      : nbytes_(nbytes), device_(device), stream_(stream) {
    ptr_ = nbytes > 0 ? hdqnn::cuda::allocate(nbytes, device, stream) : nullptr;
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) hdqnn::cuda::release(ptr_, device_, stream_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  uintptr_t ptr() const { return reinterpret_cast<uintptr_t>(ptr_); }
  size_t nbytes() const { return nbytes_; }
  int device() const { return device_; }
  uintptr_t stream() const { return stream_; }

 private:
  void* ptr_ = nullptr;
  size_t nbytes_;
  int device_;
  uintptr_t stream_;
};

py::array new_array(const py::dtype& dtype, std::vector<py::ssize_t> shape) { return py::array(dtype, shape); }

void* as_ptr(uintptr_t p) { return reinterpret_cast<void*>(p); }

py::array_t<int32_t, py::array::c_style> checked_meta(const py::array& meta) {
  if (!meta.dtype().is(py::dtype::of<int32_t>()) || meta.ndim() != 1 || !(meta.flags() & py::array::c_style)) {
    throw py::type_error("meta must be a 1-D C-contiguous int32 array (hdqnn.backends.device_program)");
  }
  if (meta.shape(0) < hdqnn::gpu::kHeaderSize) throw py::value_error("meta is shorter than its header");
  return py::reinterpret_borrow<py::array_t<int32_t, py::array::c_style>>(meta);
}

py::array_t<double, py::array::c_style> checked_angles(const py::array& angle_val) {
  if (!angle_val.dtype().is(py::dtype::of<double>()) || angle_val.ndim() != 1 ||
      !(angle_val.flags() & py::array::c_style) || angle_val.shape(0) < 1) {
    throw py::type_error("angle_val must be a non-empty 1-D C-contiguous float64 array");
  }
  return py::reinterpret_borrow<py::array_t<double, py::array::c_style>>(angle_val);
}

int real_bytes_of(const std::string& precision) {
  if (precision == "float64") return 8;
  if (precision == "float32") return 4;
  throw py::value_error("precision must be 'float32' or 'float64', got '" + precision + "'");
}

py::dict config_dict(const LaunchConfig& c) {
  py::dict d;
  d["shared_state"] = c.shared_state;
  d["threads_per_sample"] = c.threads_per_sample;
  d["samples_per_block"] = c.samples_per_block;
  d["block_threads"] = c.block_threads;
  d["grid"] = c.grid;
  d["smem_bytes"] = c.smem_bytes;
  d["workspace_bytes"] = c.workspace_bytes;
  d["fits"] = c.fits;
  return d;
}

py::dict execute(int task, const std::string& precision, const py::array& meta_obj, const py::array& angles_obj,
                 uintptr_t inputs, uintptr_t weights, uintptr_t grad_output, uintptr_t out, uintptr_t grad_weights,
                 uintptr_t bits, long long batch, long long shots, unsigned long long seed, int device,
                 uintptr_t stream) {
  const auto meta = checked_meta(meta_obj);
  const auto angles = checked_angles(angles_obj);
  hdqnn::cuda::ExecuteCall call;
  call.task = task;
  call.real_bytes = real_bytes_of(precision);
  call.meta = meta.data();
  call.meta_words = static_cast<size_t>(meta.shape(0));
  call.angle_val = angles.data();
  call.n_angle_vals = static_cast<size_t>(angles.shape(0));
  call.inputs = as_ptr(inputs);
  call.weights = as_ptr(weights);
  call.grad_output = as_ptr(grad_output);
  call.out = as_ptr(out);
  call.grad_weights = as_ptr(grad_weights);
  call.bits = static_cast<unsigned char*>(as_ptr(bits));
  call.batch = batch;
  call.shots = shots;
  call.seed = seed;
  call.device = device;
  call.stream = stream;
  LaunchConfig config;
  config = hdqnn::without_gil([&] { return hdqnn::cuda::execute(call); });
  return config_dict(config);
}

/// Host emulation: outputs allocated here from the meta header, returned as NumPy arrays.
py::object emulate(int task, const py::array& meta_obj, const py::array& angles_obj, const py::array& inputs,
                   const py::array& weights, const py::object& grad_output, long long shots, unsigned long long seed,
                   int threads_per_sample, int samples_per_block, int warp, bool shared_state, long long grid) {
  namespace g = hdqnn::gpu;
  const auto meta = checked_meta(meta_obj);
  const auto angles = checked_angles(angles_obj);
  const int32_t* m = meta.data();
  const bool dbl = inputs.dtype().is(py::dtype::of<double>());
  if (!dbl && !inputs.dtype().is(py::dtype::of<float>())) throw py::type_error("inputs must be float32 or float64");
  if (!weights.dtype().is(inputs.dtype())) throw py::type_error("weights must have the dtype of inputs");
  if (!(inputs.flags() & py::array::c_style) || !(weights.flags() & py::array::c_style) || inputs.ndim() != 2) {
    throw py::value_error("inputs must be 2-D and inputs, weights C-contiguous");
  }
  const py::ssize_t batch = inputs.shape(0), n = m[g::kHNQubits], dim = py::ssize_t(1) << n;
  const py::dtype real = inputs.dtype();
  py::array grad;
  if (task == g::kTaskVjp) grad = py::array::ensure(grad_output, py::array::c_style);
  py::array out, grad_weights;
  py::array_t<unsigned char> bits;
  switch (task) {
    case g::kTaskStatevector: out = new_array(py::dtype(dbl ? "complex128" : "complex64"), {batch, dim}); break;
    case g::kTaskProbabilities: out = new_array(real, {batch, dim}); break;
    case g::kTaskExpval: out = new_array(real, {batch, py::ssize_t(m[g::kHNTerms])}); break;
    case g::kTaskVjp:
      out = new_array(real, {batch, py::ssize_t(m[g::kHNInputs])});
      grad_weights = m[g::kHPerSampleWeights] ? new_array(real, {batch, py::ssize_t(m[g::kHNWeights])})
                                              : new_array(real, {py::ssize_t(m[g::kHNWeights])});
      break;
    case g::kTaskSample: bits = py::array_t<unsigned char>(std::vector<py::ssize_t>{batch, py::ssize_t(shots), n}); break;
    default: throw py::value_error("unknown task " + std::to_string(task));
  }
  hdqnn::cuda::EmulateCall call;
  call.task = task;
  call.real_bytes = dbl ? 8 : 4;
  call.meta = m;
  call.angle_val = angles.data();
  call.inputs = inputs.data();
  call.weights = weights.data();
  call.grad_output = task == g::kTaskVjp ? grad.data() : nullptr;
  call.out = task == g::kTaskSample ? nullptr : out.mutable_data();
  call.grad_weights = task == g::kTaskVjp ? grad_weights.mutable_data() : nullptr;
  call.bits = task == g::kTaskSample ? bits.mutable_data() : nullptr;
  call.batch = batch;
  call.shots = shots;
  call.seed = seed;
  const hdqnn::cuda::EmulateConfig config{threads_per_sample, samples_per_block, warp, shared_state, grid};
  hdqnn::without_gil([&] { hdqnn::cuda::emulate(call, config); });
  if (task == g::kTaskVjp) return py::make_tuple(out, grad_weights);
  if (task == g::kTaskSample) return std::move(bits);
  return out;
}

py::dict constants() {
  namespace g = hdqnn::gpu;
  py::dict d;
  d["META_VERSION"] = g::kMetaVersion;
  d["HEADER_SIZE"] = g::kHeaderSize;
  d["OP_FIELDS"] = g::kOpFields;
  const char* header[] = {"H_VERSION", "H_N_QUBITS", "H_N_OPS", "H_N_INITIAL", "H_N_GATES", "H_N_SLOTS",
                          "H_N_TERMS", "H_N_INPUTS", "H_N_WEIGHTS", "H_PER_SAMPLE_WEIGHTS", "H_OPS", "H_ORDER",
                          "H_GATES", "H_SRC", "H_TERMS", "H_INITIAL"};
  const int header_values[] = {g::kHVersion, g::kHNQubits, g::kHNOps, g::kHNInitial, g::kHNGates, g::kHNSlots,
                               g::kHNTerms, g::kHNInputs, g::kHNWeights, g::kHPerSampleWeights, g::kHOps, g::kHOrder,
                               g::kHGates, g::kHSrc, g::kHTerms, g::kHInitial};
  for (int i = 0; i < g::kHeaderSize; ++i) d[header[i]] = header_values[i];
  d["OP_FUSED_1Q"] = int(g::kOpFused1q);
  d["OP_FUSED_1Q_CX"] = int(g::kOpFused1qCx);
  d["OP_CONTROLLED"] = int(g::kOpControlled);
  d["OP_CX"] = int(g::kOpCx);
  d["OP_CZ"] = int(g::kOpCz);
  d["OP_SWAP"] = int(g::kOpSwap);
  d["OP_RZZ"] = int(g::kOpRzz);
  d["OP_PAIR_ROTATION"] = int(g::kOpPairRotation);
  d["TASK_STATEVECTOR"] = int(g::kTaskStatevector);
  d["TASK_PROBABILITIES"] = int(g::kTaskProbabilities);
  d["TASK_EXPVAL"] = int(g::kTaskExpval);
  d["TASK_VJP"] = int(g::kTaskVjp);
  d["TASK_SAMPLE"] = int(g::kTaskSample);
  d["SHAPE_GENERAL"] = int(hdqnn::kShapeGeneral);
  d["SHAPE_REAL"] = int(hdqnn::kShapeReal);
  d["SHAPE_DIAGONAL"] = int(hdqnn::kShapeDiagonal);
  d["MAX_THREADS_PER_SAMPLE"] = hdqnn::cuda::kMaxThreadsPerSample;
  d["TARGET_BLOCK_THREADS"] = hdqnn::cuda::kTargetBlockThreads;
  d["GLOBAL_BLOCKS_PER_SM"] = hdqnn::cuda::kGlobalBlocksPerSm;
  d["WARP_SIZE"] = hdqnn::gpu::kWarpSize;
  d["REDUCE_WIDTH"] = hdqnn::gpu::kReduceWidth;
  return d;
}

py::dict device_info(int device) {
  const hdqnn::cuda::DeviceInfo info = hdqnn::cuda::device_info(device);
  py::dict d;
  d["name"] = info.name;
  d["compute_capability"] = py::make_tuple(info.major, info.minor);
  d["sm_count"] = info.sm_count;
  d["smem_per_block_optin"] = info.smem_per_block_optin;
  d["smem_per_sm"] = info.smem_per_sm;
  d["l2_bytes"] = info.l2_bytes;
  d["total_memory"] = info.total_memory;
  d["free_memory"] = info.free_memory;
  return d;
}

}  // namespace

PYBIND11_MODULE(_core_cuda, m) {
  m.doc() = "hdqnn compiled CUDA engine: the fused program executor and adjoint VJP on the GPU.";
  m.def("device_count", [] { return hdqnn::cuda::device_status().count; }, "CUDA devices the runtime sees (0 if none).");
  m.def("device_status", [] {
    const hdqnn::cuda::DeviceStatus s = hdqnn::cuda::device_status();
    return py::make_tuple(s.count, s.reason);
  }, "(count, reason): reason says why count is 0, else empty.");
  m.def("device_info", &device_info, py::arg("device") = 0, "Properties of a device, as a dict.");
  m.def("runtime_version", &hdqnn::cuda::runtime_version, "CUDA runtime version linked in (1000 * major + 10 * minor).");
  m.def("driver_version", &hdqnn::cuda::driver_version, "Installed driver's CUDA version (0: no driver).");
  m.def("pointer_device", [](uintptr_t p) { return hdqnn::cuda::pointer_device(as_ptr(p)); }, py::arg("ptr"),
        "Device of a device pointer, -1 for host memory.");
  py::class_<DeviceBuffer>(m, "DeviceBuffer", "Stream-ordered device memory owned by Python.")
      .def(py::init<size_t, int, uintptr_t>(), py::arg("nbytes"), py::arg("device"), py::arg("stream"))
      .def_property_readonly("ptr", &DeviceBuffer::ptr)
      .def_property_readonly("nbytes", &DeviceBuffer::nbytes)
      .def_property_readonly("device", &DeviceBuffer::device)
      .def_property_readonly("stream", &DeviceBuffer::stream);
  m.def("copy_to_device", [](uintptr_t dst, const py::array& src, int device, uintptr_t stream) {
    const py::array a = py::array::ensure(src, py::array::c_style);
    hdqnn::cuda::copy_to_device(as_ptr(dst), a.data(), static_cast<size_t>(a.nbytes()), device, stream);
  }, py::arg("dst"), py::arg("src"), py::arg("device"), py::arg("stream"), "Copy a NumPy array to device memory.");
  m.def("copy_to_host", [](py::array dst, uintptr_t src, int device, uintptr_t stream) {
    if (!(dst.flags() & py::array::c_style) || !dst.writeable()) throw py::value_error("dst must be writeable and C-contiguous");
    void* out = dst.mutable_data();
    const size_t bytes = static_cast<size_t>(dst.nbytes());
    hdqnn::without_gil([&] { hdqnn::cuda::copy_to_host(out, as_ptr(src), bytes, device, stream); });
  }, py::arg("dst"), py::arg("src"), py::arg("device"), py::arg("stream"), "Copy device memory into a NumPy array.");
  m.def("synchronize", [](int device, uintptr_t stream) {
    hdqnn::without_gil([&] { hdqnn::cuda::synchronize(device, stream); });
  }, py::arg("device"), py::arg("stream"));
  m.def("execute", &execute, py::arg("task"), py::arg("precision"), py::arg("meta"), py::arg("angle_val"),
        py::arg("inputs"), py::arg("weights"), py::arg("grad_output"), py::arg("out"), py::arg("grad_weights"),
        py::arg("bits"), py::arg("batch"), py::arg("shots"), py::arg("seed"), py::arg("device"), py::arg("stream"),
        "Run one engine call on device pointers (0 where unused), asynchronously on ``stream``; returns the launch.");
  m.def("launch_config", [](int n_qubits, int task, int real_bytes, int n_slots, int n_ops, long long batch,
                            long long smem_limit, int sm_count, long long workspace_limit) {
    return config_dict(hdqnn::cuda::choose_launch(
        LaunchRequest{n_qubits, task, real_bytes, n_slots, n_ops, batch, smem_limit, sm_count, workspace_limit}));
  }, py::arg("n_qubits"), py::arg("task"), py::arg("real_bytes"), py::arg("n_slots"), py::arg("n_ops"),
        py::arg("batch"), py::arg("smem_limit"), py::arg("sm_count"), py::arg("workspace_limit"),
        "The launch policy (launch_policy.hpp) for given limits; mirrored by hdqnn.backends.launch.");
  m.def("constants", &constants, "Layout constants and enums the Python side mirrors.");
  m.def("gate_info", [](int code) {
    const hdqnn::GateInfo info = hdqnn::gate_info(code);
    return py::make_tuple(info.n_wires, info.n_angles, info.shape);
  }, py::arg("code"), "(n_wires, n_angles, shape) from the shared gate header.");
  m.def("philox4x32", [](std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
    std::array<uint32_t, 4> out;
    hdqnn::gpu::philox4x32(counter.data(), key.data(), out.data());
    return out;
  }, py::arg("counter"), py::arg("key"), "Philox4x32-10 as the sampling kernel uses it.");
  m.def("shot_uniform", &hdqnn::gpu::shot_uniform, py::arg("seed"), py::arg("sample"), py::arg("shot"),
        "The uniform [0, 1) that decides shot ``shot`` of sample ``sample``.");
  m.def("emulate", &emulate, py::arg("task"), py::arg("meta"), py::arg("angle_val"), py::arg("inputs"),
        py::arg("weights"), py::arg("grad_output") = py::none(), py::arg("shots") = 0, py::arg("seed") = 0,
        py::arg("threads_per_sample") = 1, py::arg("samples_per_block") = 1, py::arg("warp") = 32,
        py::arg("shared_state") = true, py::arg("grid") = 1,
        "Testing hook: run the GPU kernel code on the host with emulated threads. Returns the task's outputs "
        "(vjp: (grad_inputs, grad_weights); sample: uint8 [B, shots, n]).");
}

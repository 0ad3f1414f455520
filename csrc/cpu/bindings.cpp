// pybind11 module hdqnn._core_cpu: checks dtype, shape and contiguity, releases the GIL and calls the
// engine. No math here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <signal.h>
#include <unistd.h>

#include <complex>
#include <string>

#include "density.hpp"
#include "engine.hpp"
#include "hdqnn/gil.hpp"

namespace py = pybind11;

namespace {

using hdqnn::Index;
using hdqnn::cpu::Call;
using hdqnn::cpu::ProgramView;
using hdqnn::cpu::Task;

constexpr int kMaxQubits = 30;

[[noreturn]] void value_error(const std::string& msg) { throw py::value_error(msg); }
[[noreturn]] void type_error(const std::string& msg) { throw py::type_error(msg); }

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

/// ``obj`` as a C-contiguous array of dtype ``dtype`` with ``ndim`` dimensions, or a clear error.
py::array checked(const py::object& obj, const char* name, const py::dtype& dtype, int ndim) {
  if (!py::isinstance<py::array>(obj)) {
    type_error(std::string(name) + " must be a numpy.ndarray, got " + std::string(py::str(py::type::of(obj))));
  }
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().equal(dtype)) {  // equivalence, not identity: unpickled dtypes are new objects
    type_error(std::string(name) + " must have dtype " + std::string(py::str(dtype)) + ", got " +
               std::string(py::str(a.dtype())));
  }
  if (a.ndim() != ndim) {
    value_error(std::string(name) + " must have " + std::to_string(ndim) + " dimension(s), got shape " + shape_of(a));
  }
  if (!(a.flags() & py::array::c_style)) value_error(std::string(name) + " must be C-contiguous");
  return a;
}

void require_dim(const py::array& a, const char* name, int axis, py::ssize_t expected, const char* what) {
  if (a.shape(axis) != expected) {
    value_error(std::string(name) + " has shape " + shape_of(a) + "; axis " + std::to_string(axis) + " must be " +
                what + " = " + std::to_string(expected));
  }
}

/// The program arrays of hdqnn.circuits.Program; the arrays must outlive the returned view.
struct ProgramArrays {
  py::array gates, angle_src, angle_val;
  ProgramView view;
};

ProgramArrays program_arrays(const py::object& gates, const py::object& angle_src, const py::object& angle_val,
                             int n_qubits) {
  if (n_qubits < 1 || n_qubits > kMaxQubits) {
    value_error("n_qubits must be in [1, " + std::to_string(kMaxQubits) + "], got " + std::to_string(n_qubits));
  }
  ProgramArrays p;
  p.gates = checked(gates, "gates", py::dtype::of<int32_t>(), 2);
  require_dim(p.gates, "gates", 1, 4, "(code, wire0, wire1, slot)");
  p.angle_src = checked(angle_src, "angle_src", py::dtype::of<int32_t>(), 2);
  require_dim(p.angle_src, "angle_src", 1, 2, "(source, index)");
  p.angle_val = checked(angle_val, "angle_val", py::dtype::of<double>(), 1);
  require_dim(p.angle_val, "angle_val", 0, p.angle_src.shape(0), "the number of angle slots");
  p.view = ProgramView{n_qubits, static_cast<int>(p.gates.shape(0)), static_cast<const int32_t*>(p.gates.data()),
                       static_cast<int>(p.angle_src.shape(0)), static_cast<const int32_t*>(p.angle_src.data()),
                       static_cast<const double*>(p.angle_val.data())};
  return p;
}

/// Everything of one call, with the arrays kept alive.
template <class T>
struct Arguments {
  ProgramArrays program;
  py::array inputs, weights, paulis, grad_output;
  Call<T> call;
};

template <class T>
Arguments<T> arguments(ProgramArrays program, const py::object& inputs, const py::object& weights,
                       const py::object* paulis, const py::object* grad_output) {
  const py::dtype real = py::dtype::of<T>();
  Arguments<T> args;
  args.program = program;
  args.inputs = checked(inputs, "inputs", real, 2);
  const py::ssize_t batch = args.inputs.shape(0);
  if (batch < 1) value_error("inputs must hold at least one sample, got shape " + shape_of(args.inputs));
  if (!py::isinstance<py::array>(weights)) {
    type_error("weights must be a numpy.ndarray, got " + std::string(py::str(py::type::of(weights))));
  }
  const int weight_ndim = py::reinterpret_borrow<py::array>(weights).ndim();
  if (weight_ndim != 1 && weight_ndim != 2) {
    value_error("weights must be [n_weights] (shared) or [batch, n_weights] (per sample), got shape " +
                shape_of(py::reinterpret_borrow<py::array>(weights)));
  }
  args.weights = checked(weights, "weights", real, weight_ndim);
  if (weight_ndim == 2) require_dim(args.weights, "weights", 0, batch, "the batch size of inputs");

  Call<T>& c = args.call;
  c.program = args.program.view;
  c.batch = batch;
  c.n_inputs = static_cast<int>(args.inputs.shape(1));
  c.inputs = static_cast<const T*>(args.inputs.data());
  c.per_sample_weights = weight_ndim == 2;
  c.n_weights = static_cast<int>(args.weights.shape(weight_ndim - 1));
  c.weights = static_cast<const T*>(args.weights.data());
  if (paulis != nullptr) {
    args.paulis = checked(*paulis, "paulis", py::dtype::of<int8_t>(), 2);
    require_dim(args.paulis, "paulis", 1, c.program.n_qubits, "n_qubits");
    if (args.paulis.shape(0) < 1) value_error("paulis must hold at least one Pauli string");
    c.n_terms = static_cast<int>(args.paulis.shape(0));
    c.paulis = static_cast<const int8_t*>(args.paulis.data());
  }
  if (grad_output != nullptr) {
    args.grad_output = checked(*grad_output, "grad_output", real, 2);
    require_dim(args.grad_output, "grad_output", 0, batch, "the batch size of inputs");
    require_dim(args.grad_output, "grad_output", 1, c.n_terms, "the number of Pauli strings");
    c.grad_output = static_cast<const T*>(args.grad_output.data());
  }
  return args;
}

/// Calls f(T()) with T = float for float32 inputs and double for float64 inputs.
template <class F>
py::object with_real_type(const py::object& inputs, F&& f) {
  if (!py::isinstance<py::array>(inputs)) {
    type_error("inputs must be a numpy.ndarray, got " + std::string(py::str(py::type::of(inputs))));
  }
  const py::dtype dt = py::reinterpret_borrow<py::array>(inputs).dtype();
  if (dt.equal(py::dtype::of<double>())) return f(double());
  if (dt.equal(py::dtype::of<float>())) return f(float());
  type_error("inputs must be float32 (complex64 simulation) or float64 (complex128), got " + std::string(py::str(dt)));
}

/// Whether this is Python's main thread, the only one that runs signal handlers (and sets them).
bool on_main_thread() {
  const py::object main = py::module_::import("threading").attr("main_thread")();
  return main.attr("ident").cast<unsigned long>() == PyThread_get_thread_ident();
}

/// The cancel flag of the long call the main thread is running (Call::cancel), set by on_sigint.
/// Static: a handler running late in another thread never writes to a finished call's stack.
int g_sigint_flag = 0;
/// Python's own SIGINT action, which on_sigint chains to.
struct sigaction g_python_sigint;

void on_sigint(int signal) {
  __atomic_store_n(&g_sigint_flag, 1, __ATOMIC_RELAXED);
  g_python_sigint.sa_handler(signal);
}

/// While alive, Ctrl-C (SIGINT) also cancels the main thread's engine call: the handler sets the
/// call's flag, then runs Python's own C handler, whose Python-level handler the binding runs once
/// the call has stopped (within about one gate pass). Nothing changes when SIGINT is not handled
/// by Python (SIG_DFL, SIG_IGN). The engine runs on the calling thread, as without it: no
/// hand-off to another thread, which costs milliseconds on a loaded machine.
class SigintCancels {
 public:
  SigintCancels() {
    struct sigaction current;
    if (sigaction(SIGINT, nullptr, &current) != 0 || (current.sa_flags & SA_SIGINFO) != 0 ||
        current.sa_handler == SIG_DFL || current.sa_handler == SIG_IGN) {
      return;
    }
    if (current.sa_handler != on_sigint) g_python_sigint = current;  // else inherited over fork()
    __atomic_store_n(&g_sigint_flag, 0, __ATOMIC_RELAXED);
    struct sigaction chained = current;
    chained.sa_handler = on_sigint;
    installed_ = sigaction(SIGINT, &chained, nullptr) == 0;
  }
  ~SigintCancels() {
    if (installed_) sigaction(SIGINT, &g_python_sigint, nullptr);
  }
  SigintCancels(const SigintCancels&) = delete;
  SigintCancels& operator=(const SigintCancels&) = delete;

  const int* flag() const { return installed_ ? &g_sigint_flag : nullptr; }

 private:
  bool installed_ = false;
};

/// Runs ``engine(cancel)`` without the GIL; ``engine`` throws hdqnn::cpu::Cancelled when the flag
/// ``cancel`` (null for none) was set. A long call on the main thread stops on Ctrl-C and raises
/// what Python's SIGINT handler raises (KeyboardInterrupt); when that handler returns instead, the
/// call starts over.
template <class Engine>
void run_cancellable(bool long_call, Engine&& engine) {
  auto attempt = [&](const int* cancel) {
    return hdqnn::without_gil([&] {
      try {
        engine(cancel);
        return true;
      } catch (const hdqnn::cpu::Cancelled&) {
        return false;
      }
    });
  };
  if (!long_call || !on_main_thread()) {
    attempt(nullptr);
    return;
  }
  for (;;) {
    bool finished;
    {
      const SigintCancels sigint;
      finished = attempt(sigint.flag());
    }
    if (finished) return;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

/// One statevector-engine call through run_cancellable.
template <class T>
void run_released(Task task, Call<T> call, T* out, T* grad_weights) {
  const ProgramView& p = call.program;
  run_cancellable(hdqnn::cpu::is_long_call(task, p.n_qubits, call.batch, p.n_gates), [&](const int* cancel) {
    call.cancel = cancel;
    hdqnn::cpu::run<T>(task, call, out, grad_weights);
  });
}

py::object statevector(const py::object& gates, const py::object& angle_src, const py::object& angle_val,
                       int n_qubits, const py::object& inputs, const py::object& weights) {
  ProgramArrays prog = program_arrays(gates, angle_src, angle_val, n_qubits);
  return with_real_type(inputs, [&](auto real) -> py::object {
    using T = decltype(real);
    Arguments<T> args = arguments<T>(prog, inputs, weights, nullptr, nullptr);
    py::array_t<std::complex<T>> out({static_cast<py::ssize_t>(args.call.batch), py::ssize_t(1) << n_qubits});
    run_released<T>(Task::kStatevector, args.call, reinterpret_cast<T*>(out.mutable_data()), nullptr);
    return std::move(out);
  });
}

py::object probabilities(const py::object& gates, const py::object& angle_src, const py::object& angle_val,
                         int n_qubits, const py::object& inputs, const py::object& weights) {
  ProgramArrays prog = program_arrays(gates, angle_src, angle_val, n_qubits);
  return with_real_type(inputs, [&](auto real) -> py::object {
    using T = decltype(real);
    Arguments<T> args = arguments<T>(prog, inputs, weights, nullptr, nullptr);
    py::array_t<T> out({static_cast<py::ssize_t>(args.call.batch), py::ssize_t(1) << n_qubits});
    run_released<T>(Task::kProbabilities, args.call, out.mutable_data(), nullptr);
    return std::move(out);
  });
}

py::object expval(const py::object& gates, const py::object& angle_src, const py::object& angle_val, int n_qubits,
                  const py::object& inputs, const py::object& weights, const py::object& paulis) {
  ProgramArrays prog = program_arrays(gates, angle_src, angle_val, n_qubits);
  return with_real_type(inputs, [&](auto real) -> py::object {
    using T = decltype(real);
    Arguments<T> args = arguments<T>(prog, inputs, weights, &paulis, nullptr);
    py::array_t<T> out({static_cast<py::ssize_t>(args.call.batch), static_cast<py::ssize_t>(args.call.n_terms)});
    run_released<T>(Task::kExpval, args.call, out.mutable_data(), nullptr);
    return std::move(out);
  });
}

/// Expectations [B, K] and the final states [B, 2**n] they were read from, for vjp's final_state.
py::object expval_state(const py::object& gates, const py::object& angle_src, const py::object& angle_val,
                        int n_qubits, const py::object& inputs, const py::object& weights, const py::object& paulis) {
  ProgramArrays prog = program_arrays(gates, angle_src, angle_val, n_qubits);
  return with_real_type(inputs, [&](auto real) -> py::object {
    using T = decltype(real);
    Arguments<T> args = arguments<T>(prog, inputs, weights, &paulis, nullptr);
    py::array_t<T> out({static_cast<py::ssize_t>(args.call.batch), static_cast<py::ssize_t>(args.call.n_terms)});
    py::array_t<std::complex<T>> state({static_cast<py::ssize_t>(args.call.batch), py::ssize_t(1) << n_qubits});
    args.call.state_out = reinterpret_cast<T*>(state.mutable_data());
    run_released<T>(Task::kExpval, args.call, out.mutable_data(), nullptr);
    return py::make_tuple(out, state);
  });
}

/// ``final_state`` checked against the call: complex of the inputs' precision, [B, 2**n].
template <class T>
py::array checked_final_state(const py::object& final_state, const Call<T>& call) {
  py::array a = checked(final_state, "final_state", py::dtype::of<std::complex<T>>(), 2);
  require_dim(a, "final_state", 0, call.batch, "the batch size of inputs");
  require_dim(a, "final_state", 1, py::ssize_t(1) << call.program.n_qubits, "2**n_qubits");
  return a;
}

py::object vjp(const py::object& gates, const py::object& angle_src, const py::object& angle_val, int n_qubits,
               const py::object& inputs, const py::object& weights, const py::object& paulis,
               const py::object& grad_output, const py::object& final_state) {
  ProgramArrays prog = program_arrays(gates, angle_src, angle_val, n_qubits);
  return with_real_type(inputs, [&](auto real) -> py::object {
    using T = decltype(real);
    Arguments<T> args = arguments<T>(prog, inputs, weights, &paulis, &grad_output);
    py::array state;  // kept alive for the call
    if (!final_state.is_none()) {
      state = checked_final_state<T>(final_state, args.call);
      args.call.state_in = reinterpret_cast<const T*>(state.data());
    }
    py::array_t<T> grad_inputs({static_cast<py::ssize_t>(args.call.batch), static_cast<py::ssize_t>(args.call.n_inputs)});
    std::vector<py::ssize_t> weight_shape(args.weights.shape(), args.weights.shape() + args.weights.ndim());
    py::array_t<T> grad_weights(weight_shape);
    run_released<T>(Task::kVjp, args.call, grad_inputs.mutable_data(), grad_weights.mutable_data());
    return py::make_tuple(grad_inputs, grad_weights);
  });
}

// ------------------------------------------------------------------- noisy density-matrix engine
hdqnn::cpu::DensityTask density_task_named(const std::string& name) {
  using hdqnn::cpu::DensityTask;
  if (name == "expval") return DensityTask::kExpval;
  if (name == "probabilities") return DensityTask::kProbabilities;
  if (name == "state") return DensityTask::kState;
  if (name == "vjp") return DensityTask::kVjp;
  value_error("unknown density task '" + name + "'; use expval, probabilities, state or vjp");
}

void check_density_qubits(int n_qubits) {
  const int most = hdqnn::cpu::kMaxDensityQubits;
  if (n_qubits < 1 || n_qubits > most) {
    value_error("n_qubits must be in [1, " + std::to_string(most) + "], got " + std::to_string(n_qubits));
  }
}

/// One density-engine call through run_cancellable.
void run_density_released(hdqnn::cpu::DensityJob job, int lanes, int stride, int hermitian, int pauli) {
  run_cancellable(hdqnn::cpu::is_long_density_call(job.n_qubits, job.batch, job.n_gates), [&](const int* cancel) {
    job.cancel = cancel;
    hdqnn::cpu::run_density(job, lanes, stride, hermitian, pauli);
  });
}

/// A density call's program and channel tables, checked; the arrays hold the data the job points to.
struct DensityProgram {
  py::array gates, constant, chan_idx, superops;

  /// job's program and channel fields <- these arrays' (which must outlive the job's use).
  void fill(hdqnn::cpu::DensityJob& job) const {
    job.n_gates = static_cast<int>(gates.shape(0));
    job.gates = static_cast<const int32_t*>(gates.data());
    job.constant = static_cast<const uint8_t*>(constant.data());
    job.chan_idx = static_cast<const int32_t*>(chan_idx.data());
    job.n_channels = static_cast<int>(superops.shape(0));
    job.superops = static_cast<const double*>(superops.data());
  }
};

DensityProgram checked_density_program(int n_qubits, const py::object& gates, const py::object& constant,
                                       const py::object& chan_idx, const py::object& superops) {
  check_density_qubits(n_qubits);
  DensityProgram p;
  p.gates = checked(gates, "gates", py::dtype::of<int32_t>(), 2);
  require_dim(p.gates, "gates", 1, 4, "(code, wire0, wire1, slot)");
  const py::ssize_t n_gates = p.gates.shape(0);
  p.constant = checked(constant, "constant", py::dtype::of<uint8_t>(), 1);
  require_dim(p.constant, "constant", 0, n_gates, "the number of gates");
  p.chan_idx = checked(chan_idx, "chan_idx", py::dtype::of<int32_t>(), 1);
  require_dim(p.chan_idx, "chan_idx", 0, n_gates, "the number of gates");
  p.superops = checked(superops, "superops", py::dtype::of<std::complex<double>>(), 3);
  require_dim(p.superops, "superops", 1, 16, "16");
  require_dim(p.superops, "superops", 2, 16, "16");
  return p;
}

py::object density(const std::string& task_name, int n_qubits, const py::object& gates, const py::object& constant,
                   const py::object& chan_idx, const py::object& superops, const py::object& theta,
                   const py::object& paulis, const py::object& grad_terms, int lanes, int stride, int hermitian,
                   int pauli) {
  using hdqnn::cpu::DensityTask;
  const DensityTask task = density_task_named(task_name);
  const DensityProgram program = checked_density_program(n_qubits, gates, constant, chan_idx, superops);
  const py::array th = checked(theta, "theta", py::dtype::of<double>(), 2);
  const py::ssize_t batch = th.shape(0);
  if (batch < 1) value_error("theta must hold at least one sample, got shape " + shape_of(th));
  const bool needs_terms = task == DensityTask::kExpval || task == DensityTask::kVjp;
  py::array pa, gt;
  if (needs_terms) {
    pa = checked(paulis, "paulis", py::dtype::of<int8_t>(), 2);
    require_dim(pa, "paulis", 1, n_qubits, "n_qubits");
    if (pa.shape(0) < 1) value_error("paulis must hold at least one Pauli string");
  }
  if (task == DensityTask::kVjp) {
    gt = checked(grad_terms, "grad_terms", py::dtype::of<double>(), 2);
    require_dim(gt, "grad_terms", 0, batch, "the batch size of theta");
    require_dim(gt, "grad_terms", 1, pa.shape(0), "the number of Pauli strings");
  }
  hdqnn::cpu::DensityJob job{};
  job.task = task;
  job.n_qubits = n_qubits;
  program.fill(job);
  job.batch = batch;
  job.n_angles = static_cast<int>(th.shape(1));
  job.theta = static_cast<const double*>(th.data());
  job.n_terms = needs_terms ? static_cast<int>(pa.shape(0)) : 0;
  job.paulis = needs_terms ? static_cast<const int8_t*>(pa.data()) : nullptr;
  job.grad_terms = task == DensityTask::kVjp ? static_cast<const double*>(gt.data()) : nullptr;
  const py::ssize_t dim = py::ssize_t(1) << n_qubits;
  py::array out;
  switch (task) {
    case DensityTask::kExpval: out = py::array_t<double>({batch, pa.shape(0)}); break;
    case DensityTask::kProbabilities: out = py::array_t<double>({batch, dim}); break;
    case DensityTask::kState: out = py::array_t<std::complex<double>>({batch, dim, dim}); break;
    case DensityTask::kVjp: out = py::array_t<double>({batch, th.shape(1)}); break;
  }
  job.out = static_cast<double*>(out.mutable_data());
  run_density_released(job, lanes, stride, hermitian, pauli);
  return out;
}

bool density_invertible(int n_qubits, const py::object& gates, const py::object& constant,
                         const py::object& chan_idx, const py::object& superops) {
  const DensityProgram program = checked_density_program(n_qubits, gates, constant, chan_idx, superops);
  hdqnn::cpu::DensityJob job{};
  job.task = hdqnn::cpu::DensityTask::kVjp;
  job.n_qubits = n_qubits;
  program.fill(job);
  job.n_angles = 1 << 30;  // no theta here: every angle slot is in range
  return hdqnn::cpu::density_invertible(job);
}

/// One trajectory-engine call through run_cancellable.
void run_trajectories_released(hdqnn::cpu::TrajectoryJob job) {
  run_cancellable(hdqnn::cpu::is_long_trajectory_call(job), [&](const int* cancel) {
    job.cancel = cancel;
    hdqnn::cpu::run_trajectories(job);
  });
}

py::tuple trajectories(int n_qubits, const py::object& gates, const py::object& theta, const py::object& chan_idx,
                       const py::object& kraus, const py::object& kraus_count, const py::object& paulis,
                       const py::object& uniforms) {
  if (n_qubits < 1 || n_qubits > 26) value_error("n_qubits must be in [1, 26], got " + std::to_string(n_qubits));
  const py::array g = checked(gates, "gates", py::dtype::of<int32_t>(), 2);
  require_dim(g, "gates", 1, 4, "(code, wire0, wire1, slot)");
  const py::ssize_t n_gates = g.shape(0);
  const py::array th = checked(theta, "theta", py::dtype::of<double>(), 2);
  const py::ssize_t batch = th.shape(0);
  if (batch < 1) value_error("theta must hold at least one sample, got shape " + shape_of(th));
  const py::array ci = checked(chan_idx, "chan_idx", py::dtype::of<int32_t>(), 1);
  require_dim(ci, "chan_idx", 0, n_gates, "the number of gates");
  const py::array kr = checked(kraus, "kraus", py::dtype::of<std::complex<double>>(), 4);
  require_dim(kr, "kraus", 2, 4, "4");
  require_dim(kr, "kraus", 3, 4, "4");
  const py::array kc = checked(kraus_count, "kraus_count", py::dtype::of<int32_t>(), 1);
  require_dim(kc, "kraus_count", 0, kr.shape(0), "the number of Kraus rows");
  const py::array pa = checked(paulis, "paulis", py::dtype::of<int8_t>(), 2);
  require_dim(pa, "paulis", 1, n_qubits, "n_qubits");
  const py::array un = checked(uniforms, "uniforms", py::dtype::of<double>(), 3);
  require_dim(un, "uniforms", 0, batch, "the batch size of theta");
  if (un.shape(1) < 1) value_error("uniforms must hold at least one trajectory, got shape " + shape_of(un));
  const py::ssize_t n_traj = un.shape(1), n_terms = pa.shape(0);
  py::array_t<double> expvals({batch, n_traj, n_terms});
  py::array_t<double> probs({batch, py::ssize_t(1) << n_qubits});
  py::array_t<int64_t> outcomes({batch, n_traj});
  hdqnn::cpu::TrajectoryJob job{};
  job.n_qubits = n_qubits;
  job.n_gates = static_cast<int>(n_gates);
  job.gates = static_cast<const int32_t*>(g.data());
  job.chan_idx = static_cast<const int32_t*>(ci.data());
  job.n_channels = static_cast<int>(kr.shape(0));
  job.rank = static_cast<int>(kr.shape(1));
  job.kraus = static_cast<const double*>(kr.data());
  job.kraus_count = static_cast<const int32_t*>(kc.data());
  job.batch = batch;
  job.n_angles = static_cast<int>(th.shape(1));
  job.theta = static_cast<const double*>(th.data());
  job.n_traj = static_cast<int>(n_traj);
  job.n_draws = static_cast<int>(un.shape(2));
  job.uniforms = static_cast<const double*>(un.data());
  job.n_terms = static_cast<int>(n_terms);
  job.paulis = static_cast<const int8_t*>(pa.data());
  job.expvals = expvals.mutable_data();
  job.probs = probs.mutable_data();
  job.outcomes = outcomes.mutable_data();
  run_trajectories_released(job);
  return py::make_tuple(expvals, probs, outcomes);
}

py::dict density_plan(const std::string& task, int n_qubits, Index n_blocks, Index n_stored, Index batch, int lanes,
                      int stride, int pauli, bool invertible) {
  check_density_qubits(n_qubits);
  if (batch < 1) value_error("batch must be >= 1");
  if (n_blocks < 0 || n_stored < 0 || n_stored > n_blocks) value_error("need 0 <= n_stored <= n_blocks");
  const hdqnn::cpu::DensityPlan p =
      hdqnn::cpu::density_plan(density_task_named(task), n_qubits, static_cast<int>(n_blocks),
                               static_cast<int>(n_stored), batch, lanes, stride, -1, pauli, invertible);
  py::dict d;
  d["lanes"] = p.lanes;
  d["threads"] = p.threads;
  d["workers"] = p.workers;
  d["stride"] = p.stride;
  d["states_per_worker"] = p.states_per_worker;
  d["workspace_bytes"] = static_cast<Index>(p.workspace_bytes);
  d["hermitian"] = p.hermitian;
  d["pauli"] = p.pauli;
  d["spread"] = p.spread;
  d["inverse"] = p.inverse;
  return d;
}

Task task_named(const std::string& name) {
  if (name == "statevector") return Task::kStatevector;
  if (name == "probabilities") return Task::kProbabilities;
  if (name == "expval") return Task::kExpval;
  if (name == "vjp") return Task::kVjp;
  value_error("unknown task '" + name + "'; use statevector, probabilities, expval or vjp");
}

py::dict policy(const std::string& task, int n_qubits, Index batch, int n_ops, bool double_precision) {
  if (n_qubits < 1 || n_qubits > kMaxQubits) value_error("n_qubits must be in [1, 30]");
  const hdqnn::cpu::Policy p = hdqnn::cpu::choose_policy(task_named(task), n_qubits, batch, n_ops,
                                                         double_precision ? sizeof(double) : sizeof(float));
  py::dict d;
  d["threads"] = p.threads;
  d["lanes"] = p.lanes;
  d["amplitude_parallel"] = p.amplitude_parallel;
  d["chunk_bits"] = p.chunk_bits;
  d["defer_phases"] = p.defer_phases;
  return d;
}

}  // namespace

PYBIND11_MODULE(_core_cpu, m) {
  m.doc() =
      "hdqnn compiled CPU engine: runs a compiled circuit program for a whole batch in one call "
      "(C++17, OpenMP across samples, adjoint gradients).";
  const char* program_args = "gates: int32 [G, 4]; angle_src: int32 [A, 2]; angle_val: float64 [A]; ";
  m.def("statevector", &statevector, py::arg("gates"), py::arg("angle_src"), py::arg("angle_val"),
        py::arg("n_qubits"), py::arg("inputs"), py::arg("weights"),
        (std::string("Final states [B, 2**n] complex64/complex128. ") + program_args +
         "inputs: float32/float64 [B, D]; weights: [P] or [B, P], same dtype.")
            .c_str());
  m.def("probabilities", &probabilities, py::arg("gates"), py::arg("angle_src"), py::arg("angle_val"),
        py::arg("n_qubits"), py::arg("inputs"), py::arg("weights"),
        "|amplitude|**2, [B, 2**n] in the dtype of inputs.");
  m.def("expval", &expval, py::arg("gates"), py::arg("angle_src"), py::arg("angle_val"), py::arg("n_qubits"),
        py::arg("inputs"), py::arg("weights"), py::arg("paulis"),
        "Expectations [B, K] of the Pauli strings paulis: int8 [K, n] (0=I, 1=X, 2=Y, 3=Z).");
  m.def("expval_state", &expval_state, py::arg("gates"), py::arg("angle_src"), py::arg("angle_val"),
        py::arg("n_qubits"), py::arg("inputs"), py::arg("weights"), py::arg("paulis"),
        "(expectations [B, K], final states [B, 2**n] complex64/complex128): expval and the states "
        "that vjp's final_state takes.");
  m.def("vjp", &vjp, py::arg("gates"), py::arg("angle_src"), py::arg("angle_val"), py::arg("n_qubits"),
        py::arg("inputs"), py::arg("weights"), py::arg("paulis"), py::arg("grad_output"),
        py::arg("final_state") = py::none(),
        "(grad_inputs [B, D], grad_weights shaped like weights) of sum(grad_output * expval), by the "
        "adjoint method. final_state: None, or the states expval_state returned for these inputs "
        "and weights, from which the adjoint sweep starts (no forward pass).");
  m.def("density", &density, py::arg("task"), py::arg("n_qubits"), py::arg("gates"), py::arg("constant"),
        py::arg("chan_idx"), py::arg("superops"), py::arg("theta"), py::arg("paulis") = py::none(),
        py::arg("grad_terms") = py::none(), py::arg("lanes") = 0, py::arg("stride") = 0, py::arg("hermitian") = -1,
        py::arg("pauli") = -1,
        "Noisy density-matrix engine (complex128). task: expval -> [B, K] Tr(P_k rho_b); probabilities -> "
        "[B, 2**n] diagonals; state -> [B, 2**n, 2**n]; vjp -> d sum(grad_terms * expval) / d theta [B, A]. "
        "gates: int32 [G, 4]; constant: uint8 [G] (1: every angle constant); chan_idx: int32 [G] (-1: "
        "noiseless); superops: complex128 [C, 16, 16]; theta: float64 [B, A] per-sample angles; paulis: "
        "int8 [K, n]; grad_terms: float64 [B, K]; testing hooks: lanes (0 automatic, 1, 4, 8 samples "
        "simulated together, or -1: one sample across 8 lanes, Pauli basis, n >= 4), stride (0 automatic, "
        "the VJP's blocks between checkpoints, or -1: no kept states, each block undone by its inverse; Pauli "
        "basis, angles on one-qubit gates only, invertible channels) and hermitian (-1 "
        "automatic, 0 / 1: passes over every entry / half of them, mirroring the rest) and pauli (-1 automatic: "
        "the Pauli-transfer basis, real states, for every task but state; 0 / 1: rho's / the Pauli basis).");
  m.def("trajectories", &trajectories, py::arg("n_qubits"), py::arg("gates"), py::arg("theta"), py::arg("chan_idx"),
        py::arg("kraus"), py::arg("kraus_count"), py::arg("paulis"), py::arg("uniforms"),
        "Monte-Carlo unravelling (complex128), one statevector per (sample, trajectory): gates int32 [G, 4]; "
        "theta float64 [B, A]; chan_idx int32 [G] (row of kraus, -1: noiseless); kraus complex128 [C, R, 4, 4] "
        "(one-qubit operators top-left); kraus_count int32 [C]; paulis int8 [K, n]; uniforms float64 [B, T, M + 1] "
        "(one draw per noisy gate, then the outcome's). Returns (expvals [B, T, K], probs [B, 2**n] averaged "
        "over trajectories, outcomes int64 [B, T]).");
  m.def("density_invertible", &density_invertible, py::arg("n_qubits"), py::arg("gates"), py::arg("constant"),
        py::arg("chan_idx"), py::arg("superops"),
        "Whether density's VJP of this program may run as the inverse sweep (density_plan's invertible): every "
        "angle on a one-qubit gate, and channels invertible within the rounding budget.");
  m.def("density_plan", &density_plan, py::arg("task"), py::arg("n_qubits"), py::arg("n_blocks"), py::arg("n_stored"),
        py::arg("batch"),
        py::arg("lanes") = 0, py::arg("stride") = 0, py::arg("pauli") = -1, py::arg("invertible") = false,
        "How a density call over n_blocks blocks (n_stored of them with angles) runs and what it allocates: "
        "lanes, threads, workers, stride (vjp checkpoints), states_per_worker, workspace_bytes, hermitian, pauli (the "
        "Pauli-transfer basis: real states; pauli forces it as density's does), spread (a worker block is one "
        "sample, its state's entries across the lanes; lanes=-1 forces it), inverse (the VJP undoes each block "
        "rather than keeping its input: automatic from 8 qubits, stride=-1 forces it; both only where "
        "``invertible``, which the engine decides from the program and its channels when it runs: angles on "
        "one-qubit gates only, channels invertible).");
  m.def("set_num_threads", &hdqnn::cpu::set_num_threads, py::arg("n"), "Threads used across samples (>= 1).");
  m.def("get_num_threads", &hdqnn::cpu::num_threads, "Threads a large call uses.");
  m.def("openmp_enabled", &hdqnn::cpu::openmp_enabled, "Whether the module was built with OpenMP.");
  m.def("max_threads", &hdqnn::cpu::max_threads, "OpenMP's thread limit (1 without OpenMP).");
  m.def("isa", &hdqnn::cpu::isa, "Instruction-set variant of the kernels in use.");
  m.def("available_isas", &hdqnn::cpu::available_isas, "Variants this build and CPU support, best first.");
  m.def("set_isa", &hdqnn::cpu::set_isa, py::arg("name"), "Use another available variant (testing, benchmarks).");
  m.def("set_policy", &hdqnn::cpu::set_policy, py::arg("lanes") = 0, py::arg("amplitude_parallel") = -1,
        py::arg("chunk_bits") = 0, py::arg("phase_deferral") = 1,
        "Testing hook: force the lane count (0 = automatic), amplitude parallelism (-1 = automatic) and "
        "cache blocking (chunk_bits 0 = automatic, -1 = off, k >= 2 = k-qubit chunks when n > k); "
        "phase_deferral 0 turns off the deferral of diagonal phases in forward passes.");
  m.def("policy", &policy, py::arg("task"), py::arg("n_qubits"), py::arg("batch"), py::arg("n_ops"),
        py::arg("double_precision") = true,
        "The execution policy (threads, lanes, amplitude_parallel, chunk_bits; 0 = no cache blocking, "
        "defer_phases) a "
        "call of this size would use.");
}

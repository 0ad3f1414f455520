#include "engine.hpp"

#include <math.h>
#include <stdlib.h>

#include <atomic>
#include <new>
#include <stdexcept>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "hdqnn/gates.hpp"
#include "plan.hpp"
#include "pool.hpp"

namespace hdqnn {
namespace cpu {

// Kernel entry points, one per compiled instruction set (kernels.cpp).
int run_job_base(const Job<float>& job);
int run_job_base(const Job<double>& job);
#ifdef HDQNN_HAVE_AVX2
int run_job_avx2(const Job<float>& job);
int run_job_avx2(const Job<double>& job);
#endif
#ifdef HDQNN_HAVE_AVX512
int run_job_avx512(const Job<float>& job);
int run_job_avx512(const Job<double>& job);
#endif

namespace {

/// Below this many amplitude updates (batch * 2**n * ops) a call stays on one thread: forking
/// costs more than it saves.
constexpr double kSerialWork = 1 << 18;
/// From this register size a gate's pass is long enough that per-gate barriers are negligible, so
/// a batch too small to occupy every thread may split each gate's amplitudes across threads.
constexpr int kAmplitudeParallelMinQubits = 14;
/// Relative cost of the per-gate barriers of amplitude parallelism.
constexpr double kBarrierPenalty = 0.1;
/// Lane counts the kernels are compiled for.
constexpr int kLaneChoices[] = {1, 2, 4, 8, 16};
/// Extra cost of lanes beyond one vector register (more registers in flight).
constexpr double kOverfullLanePenalty = 0.05;
/// Ceiling on the simulation states of one call (all threads), above which fewer lanes are used.
constexpr double kMaxStateBytes = 4.0 * (1 << 30);
/// Adjoint: one forward sweep plus a backward sweep over two states.
constexpr double kVjpCostFactor = 3.0;
/// Cache blocking: bytes of one chunk (all its arrays: psi, and lambda for the adjoint), kept in
/// the core's L2 while a whole phase of ops runs on it. Half of a 1 MiB L2, so the copies in and
/// out and the angle tables fit beside it.
constexpr double kChunkBytes = 512.0 * 1024;
/// A block whose states are smaller than this is not blocked: its passes are served from the L3
/// (32 MiB on the EPYC measured), where blocking measured slower (16 qubits, 16 MiB: 341 vs 328 ms
/// adjoint); from 32 MiB (18 qubits, 16 lanes complex64: 81 vs 108 ms) it wins.
constexpr double kBlockingMinStateBytes = 32.0 * (1 << 20);
/// Shortest contiguous run (bytes of one array) copied into or out of a chunk: several whole cache
/// lines, so the hardware prefetcher follows the copies.
constexpr double kMinRunBytes = 256.0;
/// Fewest chunk bits a forced setting accepts: every op must fit in a chunk.
constexpr int kMinChunkBits = 2;
/// Smallest batch whose forward pass defers phases: the tables are built once per call (2**n
/// products each), the saving is per sample.
constexpr Index kMinDeferBatch = 8;
/// Work (call_work) from which a call may run long enough to be worth cancelling (is_long_call):
/// 1 to 20 ms on one thread here, the most for large registers; shorter calls end soon anyway.
constexpr double kLongCallWork = double(1 << 25);

std::atomic<int> g_num_threads{0};  // 0: not set, use max_threads()
std::atomic<int> g_lanes_override{0};
std::atomic<int> g_amplitude_override{-1};
std::atomic<int> g_chunk_override{0};
std::atomic<int> g_phase_deferral{1};

struct IsaVariant {
  const char* name;
  int (*run_float)(const Job<float>&);
  int (*run_double)(const Job<double>&);
  bool (*supported)();
  int vector_bytes;  ///< SIMD register width the variant is compiled for
};

bool always() { return true; }

#if defined(HDQNN_HAVE_AVX2) || defined(HDQNN_HAVE_AVX512)
bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2") &&
         __builtin_cpu_supports("popcnt");
}
#endif
#ifdef HDQNN_HAVE_AVX512
bool cpu_has_avx512() {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}
#endif

// Best first.
const IsaVariant kVariants[] = {
#ifdef HDQNN_HAVE_AVX512
    {"avx512", run_job_avx512, run_job_avx512, cpu_has_avx512, 64},
#endif
#ifdef HDQNN_HAVE_AVX2
    {"avx2", run_job_avx2, run_job_avx2, cpu_has_avx2, 32},
#endif
#ifdef HDQNN_NATIVE_BUILD
    {"native", run_job_base, run_job_base, always, 32},
#else
    {"base", run_job_base, run_job_base, always, 16},
#endif
};
constexpr int kNumVariants = sizeof(kVariants) / sizeof(kVariants[0]);

int find_variant(const std::string& name) {
  for (int i = 0; i < kNumVariants; ++i) {
    if (name == kVariants[i].name) return kVariants[i].supported() ? i : -1;
  }
  return -1;
}

int initial_variant() {
  const char* forced = getenv("HDQNN_CPU_ISA");
  if (forced != nullptr && *forced != '\0') {
    const int i = find_variant(forced);
    if (i >= 0) return i;
  }
  for (int i = 0; i < kNumVariants; ++i) {
    if (kVariants[i].supported()) return i;
  }
  return kNumVariants - 1;
}

std::atomic<int>& current_variant() {
  static std::atomic<int> variant{initial_variant()};
  return variant;
}

int dispatch(const Job<float>& job) { return kVariants[current_variant().load()].run_float(job); }
int dispatch(const Job<double>& job) { return kVariants[current_variant().load()].run_double(job); }

/// Relative time per sample of a block of ``lanes`` samples: lanes fill the SIMD registers; fewer
/// leave them part empty (S == 1 vectorises over amplitudes instead, but not for the lowest
/// wires). Fitted to measurements: AVX-512 double, 1 / 2 / 4 / 8 lanes cost about 3 / 2 / 1.1 / 1.
double lane_cost(int lanes, size_t real_size) {
  const int vector_bytes = kVariants[current_variant().load()].vector_bytes;
  const double fill = double(vector_bytes) / double(real_size);
  if (lanes >= fill) return 1.0 + (lanes > fill ? kOverfullLanePenalty : 0.0);
  return sqrt(fill / lanes);
}

struct Choice {
  int lanes;
  bool amplitude_parallel;
  double cost;
};

/// The lane count and mode with the smallest modelled time: blocks are spread over threads (the
/// slowest thread decides), or every thread shares each block (large registers only).
Choice best_choice(Task task, int n_qubits, Index batch, int threads, size_t real_size, int forced_lanes,
                   int forced_amplitude) {
  const double lane_bytes =
      double(Index(1) << n_qubits) * 2.0 * double(real_size) * (task == Task::kVjp ? 2.0 : 1.0);
  const bool amplitude_allowed =
      threads > 1 && n_qubits >= kAmplitudeParallelMinQubits && openmp_enabled() && openmp_regions_usable();
  Choice best{1, forced_amplitude == 1, -1.0};
  for (int lanes : kLaneChoices) {
    if (forced_lanes > 0 && lanes != forced_lanes) continue;
    if (forced_lanes == 0 && lanes > 1 && lanes / 2 >= batch) continue;  // mostly empty lanes
    const double blocks = double((batch + lanes - 1) / lanes);
    const double block_cost = lanes * lane_cost(lanes, real_size);
    for (int amplitude = 0; amplitude < 2; ++amplitude) {
      if (forced_amplitude >= 0 ? amplitude != forced_amplitude : (amplitude == 1 && !amplitude_allowed)) continue;
      const double state_sets = amplitude ? 1.0 : double(threads);
      if (forced_lanes == 0 && lanes > 1 && lanes * lane_bytes * state_sets > kMaxStateBytes) continue;
      const double cost = amplitude ? blocks * block_cost / threads * (1.0 + kBarrierPenalty)
                                    : ceil(blocks / threads) * block_cost;
      if (best.cost < 0 || cost < best.cost) best = Choice{lanes, amplitude == 1, cost};
    }
  }
  return best;
}

/// Bytes of one amplitude of a block: re and im of every lane, psi and (adjoint) lambda.
double amplitude_bytes(Task task, int lanes, size_t real_size) {
  return double(lanes) * 2.0 * double(real_size) * (task == Task::kVjp ? 2.0 : 1.0);
}

/// Qubits of a cache-blocking chunk, or 0 for plain full passes (see Phase in engine_types.hpp).
int chunk_bits_for(Task task, int n_qubits, int lanes, size_t real_size, int forced) {
  if (forced != 0) return forced > 0 && forced < n_qubits ? forced : 0;
  const double amplitude = amplitude_bytes(task, lanes, real_size);
  if (ldexp(amplitude, n_qubits) < kBlockingMinStateBytes) return 0;
  const int bits = static_cast<int>(floor(log2(kChunkBytes / amplitude)));
  return bits >= kMinChunkBits && bits < n_qubits ? bits : 0;
}

/// Lowest bits every chunk includes, so that its copies move runs of at least kMinRunBytes.
int chunk_low_bits(int chunk_bits, int lanes, size_t real_size) {
  const int bits = static_cast<int>(ceil(log2(kMinRunBytes / (double(lanes) * double(real_size)))));
  const int room = chunk_bits - kMinChunkBits;  // leave room for the two bits of any op
  return bits < 0 ? 0 : (bits > room ? room : bits);
}

/// Amplitude updates of a call (batch * 2**n * ops, times the adjoint's extra sweeps).
double call_work(Task task, int n_qubits, Index batch, int n_ops) {
  return double(batch) * double(Index(1) << n_qubits) * double(n_ops + 1) * (task == Task::kVjp ? kVjpCostFactor : 1.0);
}

}  // namespace

Policy choose_policy(Task task, int n_qubits, Index batch, int n_ops, size_t real_size) {
  const double work = call_work(task, n_qubits, batch, n_ops);
  // a child forked after an OpenMP region runs without one (pool.hpp): even when forced
  const int forced_amplitude = openmp_regions_usable() ? g_amplitude_override.load() : 0;
  Policy policy;
  // forced amplitude parallelism (a testing hook) means a full team even for tiny work
  policy.threads = work < kSerialWork && forced_amplitude != 1 ? 1 : num_threads();
  const Choice choice =
      best_choice(task, n_qubits, batch, policy.threads, real_size, g_lanes_override.load(), forced_amplitude);
  policy.lanes = choice.lanes;
  policy.amplitude_parallel = choice.amplitude_parallel;
  policy.chunk_bits = chunk_bits_for(task, n_qubits, choice.lanes, real_size, g_chunk_override.load());
  policy.low_bits = policy.chunk_bits > 0 ? chunk_low_bits(policy.chunk_bits, choice.lanes, real_size) : 0;
  policy.defer_phases = g_phase_deferral.load() != 0 && policy.chunk_bits == 0 && n_qubits <= kMaxDeferQubits &&
                        batch >= kMinDeferBatch;
  return policy;
}

bool is_long_call(Task task, int n_qubits, Index batch, int n_gates) {
  return call_work(task, n_qubits, batch, n_gates) >= kLongCallWork;
}

void set_policy(int lanes, int amplitude_parallel, int chunk_bits, int phase_deferral) {
  if (lanes != 0 && lanes != 1 && lanes != 2 && lanes != 4 && lanes != 8 && lanes != 16) {
    throw std::invalid_argument("lanes must be 0 (automatic), 1, 2, 4, 8 or 16, got " + std::to_string(lanes));
  }
  if (amplitude_parallel < -1 || amplitude_parallel > 1) {
    throw std::invalid_argument("amplitude_parallel must be -1 (automatic), 0 or 1");
  }
  if (chunk_bits < -1 || (chunk_bits > 0 && chunk_bits < kMinChunkBits)) {
    throw std::invalid_argument("chunk_bits must be 0 (automatic), -1 (no cache blocking) or >= " +
                                std::to_string(kMinChunkBits) + ", got " + std::to_string(chunk_bits));
  }
  g_lanes_override.store(lanes);
  g_amplitude_override.store(amplitude_parallel);
  g_chunk_override.store(chunk_bits);
  g_phase_deferral.store(phase_deferral != 0 ? 1 : 0);
}

/// Whether the output reads phases, not only magnitudes: states, and Pauli terms with X or Y
/// (expectations, or the adjoint's lambda = sum_k g_k P_k psi).
bool reads_phases(Task task, const std::vector<PauliTerm>& terms) {
  if (task == Task::kStatevector) return true;
  if (task != Task::kExpval && task != Task::kVjp) return false;
  for (const PauliTerm& term : terms) {
    if (term.flip != 0) return true;
  }
  return false;
}

/// Angle source code of a constant angle (hdqnn.circuits.Program: 0 constant, 1 input, 2 weight).
constexpr int kAngleFromConstant = 0;

/// The diagonal (d0, d1) of deferred gate ``g`` (its angle from a constant or a shared weight).
void factor_diagonal(const ProgramView& p, const double* weights, int g, Complex<double>& d0, Complex<double>& d1) {
  const int32_t* row = p.gates + 4 * g;
  const int n_angles = gate_info(row[0]).n_angles;
  double c[kMaxGateAngles] = {1.0, 1.0, 1.0}, s[kMaxGateAngles] = {0.0, 0.0, 0.0};
  for (int k = 0; k < n_angles; ++k) {
    const int a = row[3] + k;
    const double theta = p.angle_src[2 * a] == kAngleFromConstant ? 1.0 : weights[p.angle_src[2 * a + 1]];
    const double half = 0.5 * p.angle_val[a] * theta;
    c[k] = cos(half);
    s[k] = sin(half);
  }
  Complex<double> m[4];
  single_qubit_matrix<double>(row[0], c, s, 1, m);
  d0 = m[0];
  d1 = m[3];
}

/// Every deferred-phase table of the plan, [n_tables, 2, 2**n]. Table entry j is the product over
/// its factors of d[parity(mask & j)]: built as the product table over the factors' parity
/// patterns (tensor product, 2**k entries) read at each index's pattern (one XOR per index).
template <class T>
std::vector<T> phase_tables(const Plan& plan, const ProgramView& p, const T* weights, int n_weights) {
  if (plan.n_tables() == 0) return std::vector<T>();
  const Index dim = Index(1) << p.n_qubits;
  std::vector<T> tables(size_t(2 * dim) * plan.n_tables());
  const std::vector<double> w(weights, weights + n_weights);
  std::vector<Complex<double>> product;
  std::vector<uint32_t> pattern(dim);
  for (int t = 0; t < plan.n_tables(); ++t) {
    const int first = plan.table_start[t], k = plan.table_start[t + 1] - first;
    product.assign(size_t(1) << k, make_complex(1.0, 0.0));
    uint32_t column[64] = {};  // column[b]: the factors whose mask holds index bit b
    for (int i = 0; i < k; ++i) {
      const PhaseFactor& f = plan.factors[first + i];
      Complex<double> d0, d1;
      factor_diagonal(p, w.data(), f.gate, d0, d1);
      for (size_t q = 0; q < (size_t(1) << i); ++q) {
        product[q | (size_t(1) << i)] = product[q] * d1;
        product[q] = product[q] * d0;
      }
      for (int b = 0; b < p.n_qubits; ++b) {
        if ((f.mask >> b) & 1) column[b] |= uint32_t(1) << i;
      }
    }
    T* re = tables.data() + size_t(2 * dim) * t;
    T* im = re + dim;
    pattern[0] = 0;
    for (Index j = 0; j < dim; ++j) {
      if (j > 0) pattern[j] = pattern[j & (j - 1)] ^ column[__builtin_ctzll(j)];
      re[j] = T(product[pattern[j]].re);
      im[j] = T(product[pattern[j]].im);
    }
  }
  return tables;
}

template <class T>
void run(Task task, const Call<T>& call, T* out, T* grad_weights) {
  const ProgramView& program = call.program;
  validate_program(program, call.n_inputs, call.n_weights);
  if (call.batch < 1) throw std::invalid_argument("batch must be >= 1");
  const bool needs_terms = task == Task::kExpval || task == Task::kVjp;
  if (needs_terms && call.n_terms < 1) throw std::invalid_argument("at least one Pauli string is required");
  if (call.state_out != nullptr && task != Task::kExpval) throw std::invalid_argument("state_out is for expval");
  if (call.state_in != nullptr && task != Task::kVjp) throw std::invalid_argument("state_in is for vjp");
  // a state handed from one call to another must not depend on either call's plan: the true final
  // state, with the trailing phases a Z-only readout would leave out applied (defer_phases)
  const bool shares_state = call.state_out != nullptr || call.state_in != nullptr;
  const std::vector<PauliTerm> terms =
      needs_terms ? make_pauli_terms(call.paulis, call.n_terms, program.n_qubits) : std::vector<PauliTerm>();
  Plan plan = make_plan(program);
  const Policy policy =
      choose_policy(task, program.n_qubits, call.batch, static_cast<int>(plan.ops.size()), sizeof(T));
  if (policy.chunk_bits > 0) block_phases(plan, program.n_qubits, policy.chunk_bits, policy.low_bits);
  if (policy.defer_phases) {
    absorb_initial_permutation(plan, program.n_qubits);
    defer_phases(plan, program, !call.per_sample_weights, shares_state || reads_phases(task, terms));
  }
  const std::vector<T> tables = phase_tables(plan, program, call.weights, call.n_weights);

  Job<T> job;
  job.task = task;
  job.program = program;
  job.plan = plan.view();
  job.terms = terms.data();
  job.n_terms = needs_terms ? call.n_terms : 0;
  job.batch = call.batch;
  job.n_inputs = call.n_inputs;
  job.inputs = call.inputs;
  job.n_weights = call.n_weights;
  job.weights = call.weights;
  job.per_sample_weights = call.per_sample_weights ? 1 : 0;
  job.grad_output = call.grad_output;
  job.phase_tables = tables.data();
  job.out = out;
  job.grad_weights = grad_weights;
  job.threads = policy.threads;
  job.lanes = policy.lanes;
  job.amplitude_parallel = policy.amplitude_parallel ? 1 : 0;
  job.parallel_blocks = parallel_blocks;
  job.cancel = call.cancel;
  job.state_out = call.state_out;
  job.state_in = call.state_in;

  if (job.amplitude_parallel) note_openmp_region();
  const int status = dispatch(job);
  if (status == kRunCancelled) throw Cancelled();
  if (status == kRunOutOfMemory) throw std::bad_alloc();
  if (status != kRunOk) throw std::logic_error("hdqnn CPU kernels rejected lanes=" + std::to_string(job.lanes));
}

template void run<float>(Task, const Call<float>&, float*, float*);
template void run<double>(Task, const Call<double>&, double*, double*);

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("number of threads must be >= 1, got " + std::to_string(n));
  g_num_threads.store(n);
}

int num_threads() {
  const int n = g_num_threads.load();
  return n > 0 ? n : max_threads();
}

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware > 0 ? static_cast<int>(hardware) : 1;
#endif
}

std::string isa() { return kVariants[current_variant().load()].name; }

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (int i = 0; i < kNumVariants; ++i) {
    if (kVariants[i].supported()) names.push_back(kVariants[i].name);
  }
  return names;
}

void set_isa(const std::string& name) {
  const int i = find_variant(name);
  if (i < 0) {
    std::string known;
    for (const std::string& s : available_isas()) known += (known.empty() ? "" : ", ") + s;
    throw std::invalid_argument("instruction set '" + name + "' is not available; available: " + known);
  }
  current_variant().store(i);
}

}  // namespace cpu
}  // namespace hdqnn

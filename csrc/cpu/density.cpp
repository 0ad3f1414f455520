// Driver of the noisy engines: validation, blocks, plan (lanes, threads, checkpoint stride, memory)
// and the choice of the instruction-set variant (the one engine.cpp uses), for the density matrix
// and for the Monte-Carlo trajectories.
#include "density.hpp"

#include <math.h>
#include <stdio.h>

#include <complex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "engine.hpp"
#include "hdqnn/gates.hpp"
#include "pool.hpp"

namespace hdqnn {
namespace cpu {

// Kernel entry points, one per compiled instruction set (density_kernels.cpp).
int run_density_base(const DensityJob& job);
#ifdef HDQNN_HAVE_AVX2
int run_density_avx2(const DensityJob& job);
#endif
#ifdef HDQNN_HAVE_AVX512
int run_density_avx512(const DensityJob& job);
#endif
int run_trajectories_base(const TrajectoryJob& job);
#ifdef HDQNN_HAVE_AVX2
int run_trajectories_avx2(const TrajectoryJob& job);
#endif
#ifdef HDQNN_HAVE_AVX512
int run_trajectories_avx512(const TrajectoryJob& job);
#endif

namespace {

/// Bytes of one sample's state per entry: complex128 in rho's basis, float64 in the Pauli basis.
constexpr double kAmplitudeBytes = 16.0;
constexpr double kPauliEntryBytes = 8.0;
/// Lane counts a worker block may take, largest first, and the largest state (all lanes) of each
/// for a forward call and for the VJP. Lanes vectorise every update whatever bits it touches
/// (eight doubles: one AVX-512 register); more of them cost cache space: the VJP keeps tens of
/// states, so it takes fewer lanes. Measured (CPU time, 2-core EPYC): 8 lanes best for the forward
/// up to 8 qubits (4 at 10 qubits, against 1: 1.4x), for the VJP 4 lanes at 6 and 8 qubits.
constexpr int kLaneChoices[] = {8, 4, 1};
constexpr double kMaxForwardLaneBytes[] = {8.0 * (1 << 20), 64.0 * (1 << 20), 0.0};
constexpr double kMaxVjpLaneBytes[] = {256.0 * (1 << 10), 4.0 * (1 << 20), 0.0};
/// The Pauli basis' real passes gain more from the lanes' vectors than they lose to cache: its VJP
/// at 10 qubits (10 layers, B = 8, one thread) took 3.5 s with four lanes (32 MiB states), 5.3 s
/// with one.
constexpr double kMaxPauliVjpLaneBytes[] = {256.0 * (1 << 10), 64.0 * (1 << 20), 0.0};
/// The VJP keeps the input state of every block with angles up to this size per worker (no
/// forward is run twice: at 8 qubits, 4 layers, 33 states of four lanes, 132 MiB in rho's basis,
/// 66 MiB in the Pauli basis), else ~2 sqrt(blocks) of them (checkpoints).
constexpr double kStoreAllBytes = double(256 << 20);
/// Largest state (all lanes of a worker) whose passes use Hermitian symmetry: measured at 10 qubits
/// (64 MiB with four lanes) the mirrored writes made the forward 1.35x slower, at 6 qubits (512 KiB)
/// the half products 1.4x faster.
constexpr double kMaxHermitianBytes = 8.0 * (1 << 20);
/// Qubits from which a call whose lanes are picked automatically runs spread states (one sample per
/// worker block, its entries across the lanes: DensityPlan::spread). Measured on the hardware-
/// efficient ansatz with bench_noise's noise (one thread, 2-core EPYC, both plans in one process):
/// the VJP at 6 qubits 8.6 against 7.5 ms (B = 64, 4 layers), at 7 28.7 against 51.2 ms, at 8 229
/// against 261 ms, at 10 (10 layers, B = 8) 1.87 against 4.34 s; the forward at 7 qubits 8.1
/// against 6.4 ms, at 8 129 against 126 ms (B = 256), at 9 37.7 against 55.7 ms (B = 16), at 10
/// 208 against 504 ms. Checked again once the engines ran gates in run order (fewer kept states):
/// the VJP at 6 qubits 24.3 against 16.5 ms (B = 256), at 7 22.4 against 27.6, at 8 116 against 121.
/// A spread pass costs its per-pass set-up for one sample rather than eight, which small states do
/// not repay; large ones gain the cache.
constexpr int kSpreadVjpQubits = 7;
constexpr int kSpreadForwardQubits = 9;
/// Qubits from which a VJP whose program can be undone (invertible_program) runs the inverse sweep
/// when its stride is picked automatically: no kept inputs, so no state leaves the cache for memory
/// (at 10 qubits, 10 layers, the kept inputs were 8 MiB each and their writes half the VJP), for
/// the inverses' flops (a forward's). Measured on bench_noise's ansatz and model, spread states, one
/// thread, both plans in one process: kept against inverse at 7 qubits (4 layers, B = 64) 25.9
/// against 37.2 ms, at 8 225 against 163, at 9 (B = 16) 259 against 188, at 10 (10 layers, B = 8)
/// 2.32 against 1.58 s.
constexpr int kInverseVjpQubits = 8;
/// The largest bound on an inverse sweep's rounding growth (the product over the noisy gates of
/// their channels' inverse norms, invertible_program) that it takes. The bound is loose: the errors
/// the inverses amplify sit in the Pauli components the channels damp, which lam carries damped
/// too. Measured on the hardware-efficient ansatz against kept states (depolarizing p and
/// amplitude damping p after every one-qubit gate, depolarizing 2p after cx): at bounds of 1e18
/// (8 qubits, 6 layers, p = 0.1; 10 x 10, p = 0.05) the gradients agreed to 4e-11 of their largest,
/// at 1e37 (10 x 10, p = 0.1) they were 1e-2 off. bench_noise's model at 10 x 10: 10.
constexpr double kMaxInverseGrowth = 1e12;
/// Work (batch * 4**n * blocks) from which a call is worth cancelling (milliseconds or more).
constexpr double kLongCallWork = double(1 << 25);

int checkpoint_stride(int n_blocks, int n_stored, double state_bytes) {
  const int nb = n_blocks > 1 ? n_blocks : 1;
  if (double(n_stored + 1) * state_bytes <= kStoreAllBytes) return nb;
  int root = static_cast<int>(sqrt(double(nb - 1)));
  while (Index(root + 1) * (root + 1) <= nb - 1) ++root;
  while (Index(root) * root > nb - 1) --root;
  return root + 1;
}

int dispatch(const DensityJob& job) {
  const std::string name = isa();
#ifdef HDQNN_HAVE_AVX512
  if (name == "avx512") return run_density_avx512(job);
#endif
#ifdef HDQNN_HAVE_AVX2
  if (name == "avx2") return run_density_avx2(job);
#endif
  return run_density_base(job);
}

int dispatch_trajectories(const TrajectoryJob& job) {
  const std::string name = isa();
#ifdef HDQNN_HAVE_AVX512
  if (name == "avx512") return run_trajectories_avx512(job);
#endif
#ifdef HDQNN_HAVE_AVX2
  if (name == "avx2") return run_trajectories_avx2(job);
#endif
  return run_trajectories_base(job);
}

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument(msg); }

void validate(const DensityJob& job, int n_channels) {
  const int n = job.n_qubits;
  for (int g = 0; g < job.n_gates; ++g) {
    const int32_t* row = job.gates + 4 * g;
    const GateInfo info = gate_info(row[0]);
    const std::string at = "gate " + std::to_string(g);
    if (info.n_wires == 0) bad(at + " has unknown code " + std::to_string(row[0]));
    for (int i = 0; i < info.n_wires; ++i) {
      if (row[1 + i] < 0 || row[1 + i] >= n) bad(at + " acts on wire " + std::to_string(row[1 + i]) +
                                                 " outside [0, " + std::to_string(n) + ")");
    }
    if (info.n_wires == 2 && row[1] == row[2]) bad(at + " acts twice on wire " + std::to_string(row[1]));
    if (info.n_angles > 0 && row[3] >= 0 && row[3] + info.n_angles > job.n_angles) {
      bad(at + " reads angles past theta's " + std::to_string(job.n_angles) + " columns");
    }
    if (info.n_angles > 0 && row[3] < 0 && !job.constant[g]) bad(at + " has angles but no angle slot");
    if (job.chan_idx[g] < -1 || job.chan_idx[g] >= n_channels) {
      bad(at + " has channel index " + std::to_string(job.chan_idx[g]) + " outside [-1, " +
          std::to_string(n_channels) + ")");
    }
  }
  for (Index t = 0; t < Index(job.n_terms) * n; ++t) {
    if (job.paulis[t] < 0 || job.paulis[t] > 3) bad("paulis must hold 0 (I), 1 (X), 2 (Y) or 3 (Z)");
  }
}

/// (first gate, last gate) of each block: a run of consecutive one-qubit gates on one wire, or
/// one two-qubit gate (the rule of hdqnn.backends.density.blocks).
void make_blocks(const DensityJob& job, std::vector<int32_t>& lo, std::vector<int32_t>& hi) {
  for (int g = 0; g < job.n_gates; ++g) {
    const int32_t* row = job.gates + 4 * g;
    const bool one = gate_info(row[0]).n_wires == 1;
    const bool joins = one && !lo.empty() && gate_info(job.gates[4 * hi.back()]).n_wires == 1 &&
                       job.gates[4 * hi.back() + 1] == row[1];
    if (joins) {
      hi.back() = g;
    } else {
      lo.push_back(g);
      hi.push_back(g);
    }
  }
}

/// One block of the program as aligned_stride sees it.
struct BlockShape {
  int wire[2];  ///< its wires (wire[1] -1 for a one-qubit run)
  bool stored;  ///< it has angles: the VJP keeps its input
};

/// The VJP's states per worker (vjp_states' count) for checkpoint stride ``stride`` over ``shapes``,
/// with each segment keeping only its stored blocks' inputs; ``waiting`` <- the one-qubit runs left
/// waiting for a two-qubit block on their wire where a segment ends (the program's end aside): each
/// runs as a pass of its own there, and the block after it without it.
int segment_states(const std::vector<BlockShape>& shapes, int n_qubits, int stride, int& waiting) {
  const int nb = static_cast<int>(shapes.size());
  int most_stored = 0;
  waiting = 0;
  for (int lo = 0; lo < nb; lo += stride) {
    const int hi = lo + stride < nb ? lo + stride : nb;
    bool open[kMaxDensityQubits] = {};
    int stored = 0;
    for (int k = lo; k < hi; ++k) {
      stored += shapes[k].stored ? 1 : 0;
      if (shapes[k].wire[1] < 0) {
        open[shapes[k].wire[0]] = true;
      } else {
        open[shapes[k].wire[0]] = open[shapes[k].wire[1]] = false;
      }
    }
    most_stored = stored > most_stored ? stored : most_stored;
    for (int q = 0; q < n_qubits && hi < nb; ++q) waiting += open[q] ? 1 : 0;
  }
  return 1 + most_stored + 1 + (nb + stride - 1) / stride;
}

/// The VJP's checkpoint stride for this program: of the strides from the plan's (~sqrt(blocks),
/// chosen without the program) up to twice it whose states fit in the plan's (which counts every
/// block of a segment as kept), the first that leaves the fewest runs waiting at segment ends
/// (segment_states). At 10 qubits, 10 layers (20 blocks each) the plan's 15 left most segment ends
/// mid-layer; 20, in the same allocation, took the VJP from 1.72 to 1.67 s (bench/RESULTS.md).
int aligned_stride(const DensityJob& job, const std::vector<int32_t>& lo, const std::vector<int32_t>& hi,
                   int planned, int states) {
  std::vector<BlockShape> shapes(lo.size());
  for (size_t k = 0; k < lo.size(); ++k) {
    const int32_t* row = job.gates + 4 * lo[k];
    const bool two = gate_info(row[0]).n_wires == 2;
    shapes[k].wire[0] = row[1];
    shapes[k].wire[1] = two ? row[2] : -1;
    shapes[k].stored = false;
    for (int g = lo[k]; g <= hi[k]; ++g) shapes[k].stored = shapes[k].stored || !job.constant[g];
  }
  int best = planned, fewest = -1;
  for (int stride = planned; stride <= 2 * planned && stride < job.n_blocks; ++stride) {
    int waiting = 0;
    if (segment_states(shapes, job.n_qubits, stride, waiting) > states) continue;
    if (fewest < 0 || waiting < fewest) {
      best = stride;
      fewest = waiting;
    }
  }
  return best;
}

/// A bound on how much undoing superoperator ``s`` (dim x dim of a [16, 16] interleaved table)
/// can grow an error: sqrt(||S^-1||_1 ||S^-1||_inf) >= ||S^-1||_2 (infinity where S is singular).
/// Gauss-Jordan with partial pivoting.
double inverse_growth(const double* s, int dim) {
  typedef std::complex<double> Z;
  Z a[16][32];
  for (int r = 0; r < dim; ++r) {
    for (int c = 0; c < dim; ++c) a[r][c] = Z(s[2 * (16 * r + c)], s[2 * (16 * r + c) + 1]);
    for (int c = 0; c < dim; ++c) a[r][dim + c] = Z(r == c ? 1.0 : 0.0, 0.0);
  }
  for (int c = 0; c < dim; ++c) {
    int pivot = c;
    for (int r = c + 1; r < dim; ++r) pivot = std::abs(a[r][c]) > std::abs(a[pivot][c]) ? r : pivot;
    if (std::abs(a[pivot][c]) < 1e-12) return HUGE_VAL;
    for (int k = 0; k < 2 * dim; ++k) std::swap(a[c][k], a[pivot][k]);
    const Z inv = 1.0 / a[c][c];
    for (int k = 0; k < 2 * dim; ++k) a[c][k] *= inv;
    for (int r = 0; r < dim; ++r) {
      if (r == c || a[r][c] == 0.0) continue;
      const Z f = a[r][c];
      for (int k = 0; k < 2 * dim; ++k) a[r][k] -= f * a[c][k];
    }
  }
  double rows = 0.0, cols = 0.0;
  for (int i = 0; i < dim; ++i) {
    double row = 0.0, col = 0.0;
    for (int j = 0; j < dim; ++j) {
      row += std::abs(a[i][dim + j]);
      col += std::abs(a[j][dim + i]);
    }
    rows = row > rows ? row : rows;
    cols = col > cols ? col : cols;
  }
  return sqrt(rows * cols);
}

/// Whether the VJP's sweep back can undo every block (DensityPlan::inverse): every gate with
/// angles acts on one qubit (its run's inverse is built per sample; two-qubit blocks are fixed and
/// inverted once), and the product of the noisy gates' inverse_growth stays within
/// kMaxInverseGrowth (the unitary parts are orthogonal in the Pauli basis: they add none).
bool invertible_program(const DensityJob& job) {
  for (int g = 0; g < job.n_gates; ++g) {
    if (gate_info(job.gates[4 * g]).n_wires == 2 && !job.constant[g]) return false;
  }
  std::vector<double> growth_of(size_t(job.n_channels), -1.0);  // per table row, on first use
  double growth = 1.0;
  for (int g = 0; g < job.n_gates; ++g) {
    const int ch = job.chan_idx[g];
    if (ch < 0) continue;
    if (growth_of[size_t(ch)] < 0.0) {
      const int dim = gate_info(job.gates[4 * g]).n_wires == 2 ? 16 : 4;
      growth_of[size_t(ch)] = inverse_growth(job.superops + 2 * 256 * Index(ch), dim);
    }
    growth *= growth_of[size_t(ch)];
    if (!(growth <= kMaxInverseGrowth)) return false;
  }
  return true;
}

}  // namespace

bool density_invertible(const DensityJob& job) {
  validate(job, job.n_channels);
  return invertible_program(job);
}

int vjp_states(int n_blocks, int n_stored, int stride) {
  const int nb = n_blocks > 1 ? n_blocks : 1;
  return 1 + (n_stored < stride ? n_stored : stride) + 1 + (nb + stride - 1) / stride;
}

DensityPlan density_plan(DensityTask task, int n_qubits, int n_blocks, int n_stored, Index batch, int forced_lanes,
                         int forced_stride, int forced_hermitian, int forced_pauli, bool invertible) {
  const bool known_lanes = forced_lanes == 0 || forced_lanes == 1 || forced_lanes == 4 || forced_lanes == 8;
  if (!known_lanes && forced_lanes != kSpreadLanes) {
    throw std::invalid_argument("lanes must be 0 (automatic), 1, 4, 8 or -1 (one sample across 8 lanes), got " +
                                std::to_string(forced_lanes));
  }
  if (forced_stride < 0 && forced_stride != kInverseStride) {
    throw std::invalid_argument("stride must be 0 (automatic), -1 (no kept states: the inverse sweep) or positive");
  }
  if (forced_hermitian < -1 || forced_hermitian > 1) {
    throw std::invalid_argument("hermitian must be -1 (automatic), 0 or 1");
  }
  if (forced_pauli < -1 || forced_pauli > 1) throw std::invalid_argument("pauli must be -1 (automatic), 0 or 1");
  if (forced_pauli == 1 && task == DensityTask::kState) {
    throw std::invalid_argument("the state task returns rho's entries: it cannot run in the Pauli basis (pauli=1)");
  }
  DensityPlan p;
  p.pauli = task != DensityTask::kState && forced_pauli != 0;
  if (forced_lanes == kSpreadLanes && (!p.pauli || n_qubits < kMinSpreadQubits)) {
    throw std::invalid_argument("lanes=-1 (one sample across 8 lanes) needs the Pauli basis and at least " +
                                std::to_string(kMinSpreadQubits) + " qubits");
  }
  const bool vjp = task == DensityTask::kVjp;
  if (vjp && forced_stride == kInverseStride && (!p.pauli || !invertible)) {
    char budget[32];
    snprintf(budget, sizeof budget, "%.0e", kMaxInverseGrowth);
    throw std::invalid_argument(
        "stride=-1 (the inverse sweep) needs the Pauli basis and a program it can undo: angles on one-qubit gates "
        "only and channels invertible within a rounding growth of " + std::string(budget));
  }
  p.inverse = vjp && p.pauli &&
              (forced_stride == kInverseStride || (forced_stride == 0 && invertible && n_qubits >= kInverseVjpQubits));
  const double lane_state = ldexp(p.pauli ? kPauliEntryBytes : kAmplitudeBytes, 2 * n_qubits);
  p.threads = num_threads();
  const int spread_from = task == DensityTask::kVjp ? kSpreadVjpQubits : kSpreadForwardQubits;
  p.spread = forced_lanes == kSpreadLanes || (forced_lanes == 0 && p.pauli && n_qubits >= spread_from);
  p.lanes = p.spread ? 8 : forced_lanes;
  for (int i = 0; p.lanes == 0; ++i) {  // the most lanes that fit and still give every thread a block
    const int lanes = kLaneChoices[i];
    const double limit = !vjp || p.inverse ? kMaxForwardLaneBytes[i]
                         : p.pauli                 ? kMaxPauliVjpLaneBytes[i]
                                                   : kMaxVjpLaneBytes[i];
    const bool fits = lanes * lane_state <= limit && (batch + lanes - 1) / lanes >= p.threads;
    if (lanes == 1 || fits) p.lanes = lanes;
  }
  const Index lane_blocks = p.spread ? batch : (batch + p.lanes - 1) / p.lanes;
  p.workers = static_cast<int>(lane_blocks < p.threads ? lane_blocks : p.threads);
  const double state = p.spread ? lane_state : lane_state * p.lanes;
  const int nb = n_blocks > 1 ? n_blocks : 1;
  p.stride = !vjp ? 1 : p.inverse ? nb : forced_stride > 0 ? (forced_stride < nb ? forced_stride : nb)
                                                          : checkpoint_stride(n_blocks, n_stored, state);
  p.states_per_worker = !vjp ? 1 : p.inverse ? 2 : vjp_states(n_blocks, n_stored, p.stride);  // (lambda, rho)
  p.workspace_bytes = double(p.workers) * p.states_per_worker * state;
  p.hermitian = !p.pauli && (forced_hermitian >= 0 ? forced_hermitian == 1 : state <= kMaxHermitianBytes);
  return p;
}

namespace {

/// validate's checks (every gate with angles needs a slot: no gate counts as constant here), then
/// the Kraus table's counts and the draws per trajectory.
void validate_trajectories(const TrajectoryJob& job) {
  std::vector<uint8_t> constant(size_t(job.n_gates), 0);
  DensityJob view{};
  view.n_qubits = job.n_qubits;
  view.n_gates = job.n_gates;
  view.gates = job.gates;
  view.constant = constant.data();
  view.chan_idx = job.chan_idx;
  view.n_angles = job.n_angles;
  view.n_terms = job.n_terms;
  view.paulis = job.paulis;
  validate(view, job.n_channels);
  int noisy = 0;
  for (int g = 0; g < job.n_gates; ++g) noisy += job.chan_idx[g] >= 0 ? 1 : 0;
  for (int ch = 0; ch < job.n_channels; ++ch) {
    if (job.kraus_count[ch] < 1 || job.kraus_count[ch] > job.rank) {
      bad("kraus_count[" + std::to_string(ch) + "] = " + std::to_string(job.kraus_count[ch]) + " is outside [1, " +
          std::to_string(job.rank) + "]");
    }
  }
  if (job.n_draws != noisy + 1) {
    bad("uniforms must hold one draw per noisy gate and one for the outcome (" + std::to_string(noisy + 1) +
        " per trajectory), got " + std::to_string(job.n_draws));
  }
}

}  // namespace

void run_trajectories(const TrajectoryJob& job) {
  validate_trajectories(job);
  TrajectoryJob run = job;
  run.threads = num_threads();
  run.parallel_blocks = parallel_blocks;
  const int status = dispatch_trajectories(run);
  if (status == kRunCancelled) throw Cancelled();
  if (status == kRunOutOfMemory) throw std::bad_alloc();
  if (status != kRunOk) throw std::runtime_error("trajectory engine failed with status " + std::to_string(status));
}

bool is_long_trajectory_call(const TrajectoryJob& job) {
  return double(job.batch) * double(job.n_traj) * double(job.n_gates) * ldexp(1.0, job.n_qubits) >= kLongCallWork;
}

bool is_long_density_call(int n_qubits, Index batch, int n_blocks) {
  return double(batch) * ldexp(1.0, 2 * n_qubits) * double(n_blocks) >= kLongCallWork;
}

void run_density(DensityJob job, int forced_lanes, int forced_stride, int forced_hermitian, int forced_pauli) {
  validate(job, job.n_channels);
  std::vector<int32_t> lo, hi;
  make_blocks(job, lo, hi);
  job.n_blocks = static_cast<int>(lo.size());
  job.block_lo = lo.data();
  job.block_hi = hi.data();
  int n_stored = 0;
  for (int k = 0; k < job.n_blocks; ++k) {
    bool constant = true;
    for (int g = lo[k]; g <= hi[k]; ++g) constant = constant && job.constant[g];
    n_stored += constant ? 0 : 1;
  }
  // (the test costs a matrix inversion per channel: only where the plan may take the sweep)
  const bool may_invert = forced_stride == kInverseStride || (forced_stride == 0 && job.n_qubits >= kInverseVjpQubits);
  const bool invertible = job.task == DensityTask::kVjp && may_invert && invertible_program(job);
  const DensityPlan plan =
      density_plan(job.task, job.n_qubits, job.n_blocks, n_stored, job.batch, forced_lanes, forced_stride,
                   forced_hermitian, forced_pauli, invertible);
  job.lanes = plan.lanes;
  job.threads = plan.threads;
  job.stride = plan.stride;
  job.states = plan.states_per_worker;
  job.inverse = plan.inverse ? 1 : 0;
  if (job.task == DensityTask::kVjp && plan.pauli && !plan.inverse && forced_stride == 0 &&
      plan.stride < job.n_blocks) {
    job.stride = aligned_stride(job, lo, hi, plan.stride, plan.states_per_worker);  // (chains: Pauli basis)
  }
  job.hermitian = plan.hermitian ? 1 : 0;
  job.pauli = plan.pauli ? 1 : 0;
  job.spread = plan.spread ? 1 : 0;
  job.parallel_blocks = parallel_blocks;
  const int status = dispatch(job);
  if (status == kRunCancelled) throw Cancelled();
  if (status == kRunOutOfMemory) throw std::bad_alloc();
  if (status != kRunOk) throw std::runtime_error("density engine failed with status " + std::to_string(status));
}

}  // namespace cpu
}  // namespace hdqnn

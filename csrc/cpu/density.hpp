// The compiled noisy density-matrix engine: the contract of hdqnn/backends/_density_kernels.py (the
// Numba twin) in C++. Plain data shared by the driver (density.cpp) and the per-ISA kernels
// (density_kernels.cpp); no standard-library templates, for the reason engine_types.hpp gives.
//
// A density matrix of n qubits is held vectorised, row-major: entry r * 2**n + c is rho[r, c], a
// 2n-bit index whose bit 2n-1-q is row wire q and bit n-1-q column wire q. A gate U on wire q is
// then U on the row bit and conj(U) on the column bit; a gate and the channel after it are fused
// into one superoperator C (U (x) conj(U)) on (row bits, column bits), the layout of the
// compiled noise tables (hdqnn.noise.compiled). In the Pauli basis (DensityJob::pauli) the same
// index holds the real coefficient Tr(P rho) of a Pauli string P instead, wire q's row and column
// bits giving the digit 2 row + column of its factor (0 I, 1 X, 2 Y, 3 Z).
#pragma once

#include <stdint.h>

#include "engine_types.hpp"

namespace hdqnn {
namespace cpu {

/// The most qubits a density-matrix call takes (the binding checks it; the kernels size arrays by it).
constexpr int kMaxDensityQubits = 14;

/// density_plan's ``forced_lanes`` for spread states: one sample per worker block, its entries
/// across eight lanes (DensityPlan::spread).
constexpr int kSpreadLanes = -1;
/// density_plan's ``forced_stride`` for a VJP that keeps no inputs: the sweep back recomputes each
/// block's input from its output by the block's inverse (DensityPlan::inverse).
constexpr int kInverseStride = -1;
/// The fewest qubits a spread state takes: a two-qubit pass needs four index bits besides the lanes'
/// three.
constexpr int kMinSpreadQubits = 4;

/// What one density-matrix call produces.
enum class DensityTask : int { kExpval = 0, kProbabilities = 1, kState = 2, kVjp = 3 };

/// Everything one call needs; the output is preallocated by the caller (C-contiguous) and every
/// entry of it written.
struct DensityJob {
  DensityTask task;
  int n_qubits;
  int n_gates;
  const int32_t* gates;     ///< [n_gates, 4]: code, wire0, wire1 | -1, first angle slot | -1
  const uint8_t* constant;  ///< [n_gates]: 1 when every angle of the gate is a constant
  const int32_t* chan_idx;  ///< [n_gates]: row of superops, or -1 for a noiseless gate
  int n_channels;
  const double* superops;   ///< [n_channels, 16, 16] interleaved complex (one-qubit: top-left 4x4)
  int n_blocks;             ///< blocks (filled in by run_density): a run of one-qubit gates on
                            ///< one wire, or one two-qubit gate
  const int32_t* block_lo;  ///< [n_blocks] first gate of each block
  const int32_t* block_hi;  ///< [n_blocks] last gate of each block
  Index batch;
  int n_angles;
  const double* theta;      ///< [batch, n_angles] per-sample angles
  int n_terms;
  const int8_t* paulis;     ///< [n_terms, n_qubits] (expval, vjp): 0 I, 1 X, 2 Y, 3 Z
  const double* grad_terms; ///< [batch, n_terms] (vjp)
  double* out;              ///< expval [batch, n_terms]; probabilities [batch, 2**n]; state
                            ///< [batch, 4**n] interleaved complex; vjp: d/dtheta [batch, n_angles]
  int lanes;                ///< samples simulated together (1, 4 or 8), see DensityPlan
  int threads;
  int stride;               ///< vjp: blocks between stored states (checkpoints)
  int inverse;              ///< vjp: no stored states; each block's input is recomputed by its inverse
  int states;               ///< vjp: states per worker (vjp_states)
  int hermitian;            ///< passes compute half the entries and mirror the rest (DensityPlan)
  int pauli;                ///< states hold Pauli coefficients, not rho's entries (DensityPlan)
  int spread;               ///< each state is one sample's, across the lanes (DensityPlan)
  ParallelBlocks parallel_blocks;
  const int* cancel;        ///< a flag another thread may set to stop the call, or null
};

/// How a call runs, and what it allocates.
struct DensityPlan {
  int lanes;                ///< samples per worker block, their states interleaved for SIMD
  int threads;
  int workers;              ///< threads that get a block (<= the number of lane blocks)
  int stride;               ///< vjp checkpoint stride (blocks)
  int states_per_worker;    ///< density matrices of ``lanes`` samples a worker holds at once
  double workspace_bytes;   ///< all workers' states
  bool hermitian;           ///< passes use rho = rho^dagger: half the products, but mirrored writes
                            ///< far apart in memory, which only pays while the state is in cache
  bool pauli;               ///< the Pauli-transfer basis: real states (half the memory), real
                            ///< passes (a quarter of the products); every task but the state
  bool spread;              ///< Pauli basis, lanes 8: a worker block is one sample, the low three
                            ///< bits of its state's index the lanes (a state 8x smaller than eight
                            ///< samples', so it and the VJP's kept states stay in cache)
  bool inverse;             ///< vjp: the sweep back undoes each block on the final state (its
                            ///< inverse) rather than keeping inputs: two states per worker
};

/// The plan of a call over ``n_blocks`` blocks of which ``n_stored`` have angles to differentiate
/// (the VJP keeps their input states): ``forced_lanes`` 0 picks the lane count, else 1, 4 or 8
/// samples, or kSpreadLanes (spread states: Pauli basis, at least kMinSpreadQubits qubits);
/// ``forced_stride`` 0 picks the VJP's checkpoint stride (or the inverse sweep where ``invertible``),
/// kInverseStride forces the inverse sweep (Pauli basis, ``invertible``), else that many blocks;
/// ``forced_hermitian`` -1 picks the Hermitian passes by size, 0 / 1 forces them off / on;
/// ``forced_pauli`` -1 picks the Pauli basis wherever the task allows it, 0 / 1 forces rho's / the
/// Pauli basis (testing).
/// ``invertible``: every block with angles is a one-qubit run and every channel can be undone
/// within the rounding budget (invertible_program).
DensityPlan density_plan(DensityTask task, int n_qubits, int n_blocks, int n_stored, Index batch, int forced_lanes,
                         int forced_stride = 0, int forced_hermitian = -1, int forced_pauli = -1,
                         bool invertible = false);

/// Whether the VJP of ``job``'s program (gates, constant, chan_idx and superops read) may run as the
/// inverse sweep (density_plan's ``invertible``): angles on one-qubit gates only, and channels that
/// can be undone within the rounding budget. Throws std::invalid_argument on a bad program or table.
bool density_invertible(const DensityJob& job);
/// States of ``lanes`` samples one VJP worker holds: lambda, the segment's kept inputs and the
/// running state, and the checkpoints.
int vjp_states(int n_blocks, int n_stored, int stride);

/// Runs ``job`` (its lanes, threads, stride and parallel_blocks are filled in from density_plan
/// here). Throws std::invalid_argument on a bad program or table, std::bad_alloc when the
/// workspace cannot be allocated, Cancelled when job.cancel was set.
void run_density(DensityJob job, int forced_lanes, int forced_stride = 0, int forced_hermitian = -1,
                 int forced_pauli = -1);

/// One call of the Monte-Carlo unravelling (the contract of _density_kernels.trajectory_kernel):
/// per sample and trajectory a statevector from |0...0>, every gate in turn and, after a gate with
/// a channel, one of its Kraus operators K_k: the first k whose cumulative ||K_j psi||^2 exceeds
/// that gate's uniform draw (the last one else), the state renormalised.
struct TrajectoryJob {
  int n_qubits;
  int n_gates;
  const int32_t* gates;        ///< [n_gates, 4], as DensityJob
  const int32_t* chan_idx;     ///< [n_gates]: row of kraus, or -1 for a noiseless gate
  int n_channels;
  int rank;                    ///< Kraus operators each row of the table holds
  const double* kraus;         ///< [n_channels, rank, 4, 4] interleaved complex (one-qubit: top-left 2x2)
  const int32_t* kraus_count;  ///< [n_channels]: operators of each row in use, in [1, rank]
  Index batch;
  int n_angles;
  const double* theta;         ///< [batch, n_angles] per-sample angles
  int n_traj;
  int n_draws;                 ///< uniforms per trajectory: one per noisy gate, then the outcome's
  const double* uniforms;      ///< [batch, n_traj, n_draws] in [0, 1)
  int n_terms;
  const int8_t* paulis;        ///< [n_terms, n_qubits]
  double* expvals;             ///< [batch, n_traj, n_terms] <- <psi|P_k|psi> at the end
  double* probs;               ///< [batch, 2**n] <- |psi|^2 averaged over the trajectories
  int64_t* outcomes;           ///< [batch, n_traj] <- a basis state drawn from |psi|^2 (the last draw)
  int threads;                 ///< filled in by run_trajectories
  ParallelBlocks parallel_blocks;
  const int* cancel;           ///< a flag another thread may set to stop the call, or null
};

/// Runs ``job`` on the sample-parallel pool (a worker per sample at a time, so the result does
/// not depend on the thread count). Throws std::invalid_argument on a bad program or table,
/// Cancelled when job.cancel was set.
void run_trajectories(const TrajectoryJob& job);

/// Whether a trajectory call may run long enough to be worth cancelling (Ctrl-C).
bool is_long_trajectory_call(const TrajectoryJob& job);

/// Whether a call of this size may run long enough to be worth cancelling (Ctrl-C).
bool is_long_density_call(int n_qubits, Index batch, int n_blocks);

}  // namespace cpu
}  // namespace hdqnn

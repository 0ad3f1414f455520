// Plain data shared by the ISA-independent driver (engine.cpp) and the per-ISA kernels
// (kernels.cpp). No standard-library templates here: the kernels are compiled once per instruction
// set, and an std:: instantiation shared between those objects could be merged by the linker into
// the wrong variant.
#pragma once

#include <stdint.h>

#include "hdqnn/config.hpp"
#include "hdqnn/pauli.hpp"

namespace hdqnn {
namespace cpu {

/// What one engine call produces.
enum class Task : int { kStatevector, kProbabilities, kExpval, kVjp };

/// Op::shape of a fused block of ry gates only (a plane rotation) in a CPU forward plan
/// (defer_phases): run as a scaled rotation, two multiply-adds per amplitude instead of four.
constexpr int kShapeRotation = 3;

/// One step of the executed schedule (see plan.cpp for how gates are fused into it). The numbers
/// and the field order of Op are mirrored by the CUDA engine (csrc/cuda/kernels/meta.cuh,
/// hdqnn/backends/device_program.py): never renumber.
enum class OpKind : int {
  kFused1q,      ///< product of consecutive single-qubit gates on one wire (Plan::gate_order range)
  kFused1qCx,    ///< kFused1q on the target of the cx that follows it, both in one pass over quads
  kControlled,   ///< controlled 2x2 (cy, crx, cry, crz, cp) on the control=1 half
  kCx,           ///< amplitude swap on the control=1 half
  kCz,           ///< sign flip of |11>
  kSwap,         ///< exchange of |01> and |10>
  kRzz,          ///< diagonal phase by the parity of the two bits
  kPairRotation, ///< rxx, ryy: general 4x4
  kPhaseTable    ///< CPU forward only: the amplitudes times a deferred-phase table (see defer_phases)
};

struct Op {
  OpKind kind;
  int shape;       ///< GateShape of the fused matrix or of the controlled block
  int wire0;       ///< the wire of a fused block (the cx target for kFused1qCx); control or first
                   ///< wire of a two-qubit gate
  int wire1;       ///< target or second wire; the cx control for kFused1qCx; -1 for kFused1q
  int begin;       ///< fused kinds: first entry in gate_order; otherwise the gate index
  int end;         ///< fused kinds: one past the last entry in gate_order; otherwise begin + 1
  int needs_grad;  ///< 1 when some angle of the op comes from an input or a weight
  int phase_table = -1;  ///< CPU forward only: the deferred-phase table multiplied into the
                         ///< amplitudes before the op (kPhaseTable: the table it applies), or -1
  int grad_end = -1;     ///< CPU adjoint only: a fused block whose trailing diagonal gates went into
                         ///< a deferred-phase table (defer_phases) differentiates gate_order
                         ///< [begin, grad_end) at its own place; -1: just [begin, end)
};

/// A deferred diagonal single-qubit gate (see defer_phases): amplitude j is multiplied by the
/// gate's diagonal entry d[parity(mask & j)], mask being its wire's amplitude-index bit carried
/// through the cx / swap gates it was moved past.
struct PhaseFactor {
  int gate;
  Mask mask;
};

/// The compiled program of hdqnn.circuits.Program, as raw arrays.
struct ProgramView {
  int n_qubits;
  int n_gates;
  const int32_t* gates;      ///< [n_gates, 4]: code, wire0, wire1 | -1, first angle slot | -1
  int n_slots;
  const int32_t* angle_src;  ///< [n_slots, 2]: source (0 const, 1 input, 2 weight), index
  const double* angle_val;   ///< [n_slots]: constant, or scale of the input / weight
};

/// A run of consecutive ops executed together. chunk == 0: one full pass over the state per op.
/// Otherwise every op of the phase acts only on the amplitude-index bits set in ``chunk``, so the
/// state splits into independent chunks (all other bits fixed) that each go through the whole
/// phase while they sit in cache: one memory pass for the phase instead of one per op.
struct Phase {
  int begin;   ///< first op (index into PlanView::ops)
  int end;     ///< one past the last op
  Mask chunk;  ///< amplitude-index bits spanned by a chunk (chunk_bits of them), or 0
};

/// The fused schedule; ops[0, n_initial) act on |0...0> before any two-qubit gate touches their
/// wire, so the forward pass prepares them as one product state. With cache blocking
/// (chunk_bits > 0) the phases cover every op in order, and local_ops[i] is ops[i] with its wires
/// renumbered for the chunk_bits-qubit register of one chunk of its phase.
struct PlanView {
  const Op* ops;
  int n_ops;
  int n_initial;
  const int* gate_order;
  const Op* local_ops;   ///< [n_ops] when n_phases > 0
  const Phase* phases;   ///< [n_phases]
  int n_phases;          ///< 0: no cache blocking, every op is a full pass
  int chunk_bits;        ///< qubits of one chunk (0 without blocking)
  int n_tables;          ///< deferred-phase tables (Job::phase_tables)
  const Mask* initial_map;  ///< [n_qubits] or null: the forward pass's first ops were cx / swap
                            ///< gates on the product state, absorbed into it: amplitude j is the
                            ///< product state's amplitude at index XOR{initial_map[b] : bit b of j}
};

/// One block of a sample-parallel call: body(ctx, worker, block), worker in [0, threads).
typedef void (*BlockBody)(void* ctx, int worker, Index block);
/// Runs body for every block in [0, n_blocks) on up to ``threads`` workers (pool.hpp).
typedef void (*ParallelBlocks)(int threads, Index n_blocks, BlockBody body, void* ctx);

/// Everything one call needs; outputs are preallocated by the caller (C-contiguous).
template <class T>
struct Job {
  Task task;
  ProgramView program;
  PlanView plan;
  const PauliTerm* terms;  ///< [n_terms] (expval, vjp)
  int n_terms;
  Index batch;
  int n_inputs;
  const T* inputs;         ///< [batch, n_inputs]
  int n_weights;
  const T* weights;        ///< [n_weights] or [batch, n_weights]
  int per_sample_weights;
  const T* grad_output;    ///< [batch, n_terms] (vjp)
  const T* phase_tables;   ///< [plan.n_tables, 2, 2**n]: real parts, then imaginary parts
  T* out;                  ///< statevector: [batch, 2**n] interleaved complex; probabilities:
                           ///< [batch, 2**n]; expval: [batch, n_terms]; vjp: grad_inputs
  T* grad_weights;         ///< vjp: shaped like weights
  int threads;             ///< threads for this call (1: serial)
  int lanes;               ///< samples interleaved per block (1, 2, 4, 8 or 16)
  int amplitude_parallel;  ///< 1: an OpenMP team shares each block and splits every gate's
                           ///< amplitudes; 0: blocks are spread over parallel_blocks' workers
  ParallelBlocks parallel_blocks;
  const int* cancel;       ///< Call::cancel: when set (read with __atomic_load_n), the kernels
                           ///< skip the rest of the work and return kRunCancelled; or null
  T* state_out;            ///< Call::state_out (expval): the final states, or null
  const T* state_in;       ///< Call::state_in (vjp): the final states, replacing the forward pass
};

/// Status returned by the kernels (they never throw: they run inside OpenMP regions).
enum RunStatus : int { kRunOk = 0, kRunOutOfMemory = 1, kRunBadLanes = 2, kRunCancelled = 3 };

}  // namespace cpu
}  // namespace hdqnn

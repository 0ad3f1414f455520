// Program validation and the fused schedule the kernels execute (ISA-independent host code).
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

#include "engine_types.hpp"

namespace hdqnn {
namespace cpu {

/// A fused schedule; view() hands the kernels plain pointers into it.
struct Plan {
  std::vector<Op> ops;
  std::vector<int> gate_order;
  int n_initial = 0;
  std::vector<Op> local_ops;   ///< filled by block_phases
  std::vector<Phase> phases;   ///< filled by block_phases
  int chunk_bits = 0;
  std::vector<PhaseFactor> factors;  ///< filled by defer_phases
  std::vector<int> table_start{0};   ///< table t multiplies factors [table_start[t], table_start[t + 1])
  std::vector<Mask> initial_map;     ///< filled by absorb_initial_permutation (PlanView::initial_map)

  int n_tables() const { return static_cast<int>(table_start.size()) - 1; }

  PlanView view() const {
    return PlanView{ops.data(),       static_cast<int>(ops.size()), n_initial,
                    gate_order.data(), local_ops.data(),             phases.data(),
                    static_cast<int>(phases.size()), chunk_bits,     n_tables(),
                    initial_map.empty() ? nullptr : initial_map.data()};
  }
};

/// Checks every gate row and angle slot against the gate table and the input / weight widths;
/// throws std::invalid_argument naming the first problem. Must pass before any kernel runs: the
/// kernels index memory with these numbers unchecked.
void validate_program(const ProgramView& program, int n_inputs, int n_weights);

/// Fuses the program: consecutive single-qubit gates on a wire become one 2x2 (gates on other
/// wires commute with them), flushed when a two-qubit gate touches the wire or at the end; blocks
/// that precede every two-qubit gate on their wire come first and form the initial product state;
/// a block immediately followed by a cx on its wire as target is merged with that cx.
Plan make_plan(const ProgramView& program);

/// Cache blocking for registers larger than the cache: reorders plan.ops (an op moves earlier only
/// past ops on other wires, and never out of or into the initial product-state ops) and groups them
/// into phases whose ops together touch at most ``chunk_bits`` amplitude-index bits, the lowest
/// ``low_bits`` bits always among them (contiguous runs for the copies and SIMD). A phase of one op
/// stays a plain full pass. Requires 2 <= chunk_bits < n_qubits and low_bits <= chunk_bits - 2.
void block_phases(Plan& plan, int n_qubits, int chunk_bits, int low_bits);

/// Largest register whose forward pass defers phases: a table holds 2**n complex values.
constexpr int kMaxDeferQubits = 14;
/// Most gates one deferred-phase table multiplies (its build costs 2**factors + 2**n products).
constexpr int kMaxPhaseFactors = 12;

/// Phase deferral, for passes without cache blocking: trailing diagonal gates of fused
/// blocks (rz, p, z, s, t, ... whose angles are the same for every sample: constants, or weights
/// shared by the batch) leave their blocks, which often become real (ry) and cheaper, and move
/// forward past cx / swap (which only relabel the parity they act on), cz, rzz and ops on other
/// wires. Where an op would touch a wire they depend on, all pending phases are multiplied into the
/// amplitudes in that op's own pass (a fused block) or in a kPhaseTable pass; at the end they are
/// dropped when only magnitudes are read (``keep_final`` false), else applied. A table covers at
/// most kMaxPhaseFactors gates. Requires n_qubits <= kMaxDeferQubits. The adjoint runs the same
/// schedule backwards: a table's gates are differentiated at the block they left (Op::grad_end),
/// where the phase is exactly the block's own trailing diagonal; dropped ones have no gradient.
void defer_phases(Plan& plan, const ProgramView& program, bool shared_weights, bool keep_final);

/// For passes without cache blocking: the cx / swap ops right after the product-state ops only
/// permute its amplitudes, so the product state is built permuted (PlanView::initial_map) and they
/// leave the schedule (a ring entangler's first layer: one pass instead of n + 1). The adjoint
/// reads the product-state gradients off lambda through the same map.
void absorb_initial_permutation(Plan& plan, int n_qubits);

/// Pauli masks of the int8 table [n_terms, n_qubits]; throws std::invalid_argument on a code
/// outside 0..3.
std::vector<PauliTerm> make_pauli_terms(const int8_t* paulis, int n_terms, int n_qubits);

}  // namespace cpu
}  // namespace hdqnn

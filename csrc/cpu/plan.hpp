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

  PlanView view() const { return PlanView{ops.data(), static_cast<int>(ops.size()), n_initial, gate_order.data()}; }
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

/// Pauli masks of the int8 table [n_terms, n_qubits]; throws std::invalid_argument on a code
/// outside 0..3.
std::vector<PauliTerm> make_pauli_terms(const int8_t* paulis, int n_terms, int n_qubits);

}  // namespace cpu
}  // namespace hdqnn

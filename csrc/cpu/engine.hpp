// Public C++ interface of the CPU engine: one call runs a whole batch (validation, fusion, policy,
// ISA dispatch). Used by the pybind11 module; contains no Python.
#pragma once

#include <stdint.h>

#include <exception>
#include <string>
#include <vector>

#include "engine_types.hpp"

namespace hdqnn {
namespace cpu {

/// The arrays of one call, already checked for dtype, shape and contiguity by the caller.
template <class T>
struct Call {
  ProgramView program;
  Index batch = 0;
  int n_inputs = 0;
  const T* inputs = nullptr;      ///< [batch, n_inputs]
  int n_weights = 0;
  const T* weights = nullptr;     ///< [n_weights] or [batch, n_weights]
  bool per_sample_weights = false;
  int n_terms = 0;
  const int8_t* paulis = nullptr; ///< [n_terms, n_qubits]
  const T* grad_output = nullptr; ///< [batch, n_terms]
  const int* cancel = nullptr;    ///< or a flag that another thread may set (__atomic_store_n) to
                                  ///< stop the call within about one gate pass: run then throws
                                  ///< Cancelled
  T* state_out = nullptr;         ///< expval only, or null: also the final states [batch, 2**n]
                                  ///< interleaved complex, for a later VJP's state_in
  const T* state_in = nullptr;    ///< vjp only, or null: the final states of these inputs and
                                  ///< weights (an expval's state_out): the adjoint sweep starts
                                  ///< from them instead of running the forward pass again
};

/// Thrown by run when the call's cancel flag was set before it finished (its outputs are partial).
struct Cancelled : std::exception {
  const char* what() const noexcept override { return "hdqnn engine call cancelled"; }
};

/// Runs ``task`` for every sample. out: statevector [batch, 2**n] interleaved complex,
/// probabilities [batch, 2**n], expval [batch, n_terms], vjp grad_inputs [batch, n_inputs];
/// grad_weights (vjp only) is shaped like the weights. Throws std::invalid_argument on a bad
/// program or Pauli table and std::bad_alloc when the workspace cannot be allocated.
template <class T>
void run(Task task, const Call<T>& call, T* out, T* grad_weights);

/// How a call is executed; chosen by choose_policy unless overridden by set_policy.
struct Policy {
  int threads;
  int lanes;
  bool amplitude_parallel;
  int chunk_bits;  ///< cache blocking: qubits of a chunk, 0 for plain full passes (Phase)
  int low_bits;    ///< lowest amplitude-index bits every chunk includes
  bool defer_phases;  ///< passes defer diagonal phases (plan.hpp, defer_phases); the adjoint sweeps
                      ///< the same schedule back
};

Policy choose_policy(Task task, int n_qubits, Index batch, int n_ops, size_t real_size);

/// Whether a call of this size may run long enough (milliseconds or more) that its caller should
/// be able to cancel it (Call::cancel), e.g. on Ctrl-C.
bool is_long_call(Task task, int n_qubits, Index batch, int n_gates);

/// Testing and tuning hook: lanes 0 = automatic; amplitude_parallel -1 = automatic, 0 / 1 forced;
/// chunk_bits 0 = automatic, -1 = no cache blocking, k >= 2 = blocking with k-qubit chunks
/// whenever the register has more than k qubits; phase_deferral 0 turns defer_phases off.
void set_policy(int lanes, int amplitude_parallel, int chunk_bits, int phase_deferral = 1);

void set_num_threads(int n);
int num_threads();
bool openmp_enabled();
int max_threads();

/// Instruction-set variant of the kernels in use ("avx512", "avx2", "base" or "native"), those this CPU and
/// build support, and a manual override (HDQNN_CPU_ISA in the environment sets the initial one).
std::string isa();
std::vector<std::string> available_isas();
void set_isa(const std::string& name);

}  // namespace cpu
}  // namespace hdqnn

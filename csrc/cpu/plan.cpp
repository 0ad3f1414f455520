#include "plan.hpp"

#include <stdexcept>
#include <utility>

#include "hdqnn/gates.hpp"

namespace hdqnn {
namespace cpu {
namespace {

constexpr int kMaxQubits = 30;
constexpr int kSrcConst = 0;
constexpr int kSrcInput = 1;
constexpr int kSrcWeight = 2;

std::string gate_where(int g, int code) { return "gate " + std::to_string(g) + " (code " + std::to_string(code) + ")"; }

void validate_gate(const ProgramView& p, int g) {
  const int32_t* row = p.gates + 4 * g;
  const int code = row[0], w0 = row[1], w1 = row[2], slot = row[3];
  const GateInfo info = gate_info(code);
  if (info.n_wires == 0) {
    throw std::invalid_argument("gate " + std::to_string(g) + ": unknown gate code " + std::to_string(code));
  }
  if (w0 < 0 || w0 >= p.n_qubits) {
    throw std::invalid_argument(gate_where(g, code) + ": wire " + std::to_string(w0) + " out of range for " +
                                std::to_string(p.n_qubits) + " qubit(s)");
  }
  if (info.n_wires == 2) {
    if (w1 < 0 || w1 >= p.n_qubits || w1 == w0) {
      throw std::invalid_argument(gate_where(g, code) + ": second wire " + std::to_string(w1) +
                                  " must be in range and differ from " + std::to_string(w0));
    }
  } else if (w1 != -1) {
    throw std::invalid_argument(gate_where(g, code) + ": single-qubit gate must have wire1 == -1");
  }
  if (info.n_angles == 0) {
    if (slot != -1) throw std::invalid_argument(gate_where(g, code) + ": gate without angles must have slot -1");
  } else if (slot < 0 || slot + info.n_angles > p.n_slots) {
    throw std::invalid_argument(gate_where(g, code) + ": angle slot " + std::to_string(slot) + " out of range for " +
                                std::to_string(p.n_slots) + " slot(s)");
  }
}

void validate_slot(const ProgramView& p, int a, int n_inputs, int n_weights) {
  const int src = p.angle_src[2 * a], idx = p.angle_src[2 * a + 1];
  const std::string where = "angle slot " + std::to_string(a);
  if (src == kSrcInput && (idx < 0 || idx >= n_inputs)) {
    throw std::invalid_argument(where + " reads input column " + std::to_string(idx) + " but inputs have " +
                                std::to_string(n_inputs) + " column(s)");
  }
  if (src == kSrcWeight && (idx < 0 || idx >= n_weights)) {
    throw std::invalid_argument(where + " reads weight " + std::to_string(idx) + " but there are " +
                                std::to_string(n_weights) + " weight(s)");
  }
  if (src != kSrcConst && src != kSrcInput && src != kSrcWeight) {
    throw std::invalid_argument(where + ": unknown angle source " + std::to_string(src));
  }
}

/// Fewest ops worth a chunked phase: a lone op saves no memory pass and would pay for the copies.
constexpr size_t kMinChunkedOps = 2;

int popcount(Mask m) { return __builtin_popcountll(m); }

/// Amplitude-index bits an op acts on.
Mask op_bits(const Op& op, int n_qubits) {
  Mask bits = Mask(1) << wire_bit(op.wire0, n_qubits);
  if (op.wire1 >= 0) bits |= Mask(1) << wire_bit(op.wire1, n_qubits);
  return bits;
}

/// ``bits`` plus the lowest bits it lacks, up to ``count`` bits: a chunk is processed in cache
/// whatever its bits, and low bits lengthen the contiguous runs copied in and out.
Mask pad_with_low_bits(Mask bits, int count, int n_qubits) {
  for (int b = 0; b < n_qubits && popcount(bits) < count; ++b) bits |= Mask(1) << b;
  return bits;
}

/// The wire that ``wire`` becomes in the chunk_bits-qubit register of a chunk: chunk's bits keep
/// their order, so global bit b is local bit (number of chunk bits below b).
int local_wire(int wire, Mask chunk, int n_qubits, int chunk_bits) {
  const int bit = wire_bit(wire, n_qubits);
  return chunk_bits - 1 - popcount(chunk & ((Mask(1) << bit) - 1));
}

Op localize(const Op& op, Mask chunk, int n_qubits, int chunk_bits) {
  Op local = op;
  local.wire0 = local_wire(op.wire0, chunk, n_qubits, chunk_bits);
  if (op.wire1 >= 0) local.wire1 = local_wire(op.wire1, chunk, n_qubits, chunk_bits);
  return local;
}

/// Appends ``pending`` to plan as phases, greedily: each phase takes, in order, every op that fits
/// in chunk_bits bits together with the ones taken so far and shares no wire with an op left
/// behind (only ops on disjoint wires commute past each other).
void append_phases(std::vector<Op> pending, int n_qubits, int chunk_bits, int low_bits, Plan& plan) {
  const size_t first_phase = plan.phases.size();
  while (!pending.empty()) {
    std::vector<Op> taken, skipped;
    Mask bits = (Mask(1) << low_bits) - 1, passed_over = 0;
    for (const Op& op : pending) {
      const Mask b = op_bits(op, n_qubits);
      if ((b & passed_over) == 0 && popcount(bits | b) <= chunk_bits) {
        taken.push_back(op);
        bits |= b;
      } else {
        skipped.push_back(op);
        passed_over |= b;
      }
    }
    const Mask chunk = taken.size() >= kMinChunkedOps ? pad_with_low_bits(bits, chunk_bits, n_qubits) : 0;
    const int begin = static_cast<int>(plan.ops.size());
    for (const Op& op : taken) {
      plan.ops.push_back(op);
      plan.local_ops.push_back(chunk != 0 ? localize(op, chunk, n_qubits, chunk_bits) : op);
    }
    const int end = static_cast<int>(plan.ops.size());
    if (chunk == 0 && plan.phases.size() > first_phase && plan.phases.back().chunk == 0) {
      plan.phases.back().end = end;  // consecutive full passes of this call form one phase
    } else {
      plan.phases.push_back(Phase{begin, end, chunk});
    }
    pending.swap(skipped);
  }
}

/// Shape of a product of gates: diagonal or real only when every factor is.
int combine_shapes(int a, int b) { return a == b ? a : kShapeGeneral; }

class PlanBuilder {
 public:
  explicit PlanBuilder(const ProgramView& program)
      : p_(program), pending_(program.n_qubits), entangled_(program.n_qubits, false) {}

  Plan build() {
    std::vector<Op> initial, rest;
    for (int g = 0; g < p_.n_gates; ++g) {
      const int32_t* row = p_.gates + 4 * g;
      if (gate_info(row[0]).n_wires == 1) {
        pending_[row[1]].push_back(g);
        continue;
      }
      flush(row[1], initial, rest);
      flush(row[2], initial, rest);
      entangled_[row[1]] = true;
      entangled_[row[2]] = true;
      // A block on the target just before a cx shares its pass (saves one sweep over the state
      // per cx in ring / linear entanglers).
      if (row[0] == kGateCx && !rest.empty() && rest.back().kind == OpKind::kFused1q && rest.back().wire0 == row[2]) {
        rest.back().kind = OpKind::kFused1qCx;
        rest.back().wire1 = row[1];
        continue;
      }
      rest.push_back(two_qubit_op(g));
    }
    for (int w = 0; w < p_.n_qubits; ++w) flush(w, initial, rest);
    plan_.n_initial = static_cast<int>(initial.size());
    plan_.ops = initial;
    plan_.ops.insert(plan_.ops.end(), rest.begin(), rest.end());
    return plan_;
  }

 private:
  bool slot_needs_grad(int slot, int n_angles) const {
    for (int a = slot; a < slot + n_angles; ++a) {
      if (p_.angle_src[2 * a] != kSrcConst) return true;
    }
    return false;
  }

  bool gate_needs_grad(int g) const {
    const int32_t* row = p_.gates + 4 * g;
    const int n_angles = gate_info(row[0]).n_angles;
    return n_angles > 0 && slot_needs_grad(row[3], n_angles);
  }

  void flush(int wire, std::vector<Op>& initial, std::vector<Op>& rest) {
    std::vector<int>& gates = pending_[wire];
    if (gates.empty()) return;
    Op op{OpKind::kFused1q, gate_info(p_.gates[4 * gates[0]]).shape, wire, -1,
          static_cast<int>(plan_.gate_order.size()), 0, 0};
    for (int g : gates) {
      op.shape = combine_shapes(op.shape, gate_info(p_.gates[4 * g]).shape);
      op.needs_grad |= gate_needs_grad(g) ? 1 : 0;
      plan_.gate_order.push_back(g);
    }
    op.end = static_cast<int>(plan_.gate_order.size());
    (entangled_[wire] ? rest : initial).push_back(op);
    gates.clear();
  }

  Op two_qubit_op(int g) const {
    const int32_t* row = p_.gates + 4 * g;
    const int code = row[0];
    Op op{OpKind::kControlled, gate_info(code).shape, row[1], row[2], g, g + 1, gate_needs_grad(g) ? 1 : 0};
    switch (code) {
      case kGateCx: op.kind = OpKind::kCx; break;
      case kGateCz: op.kind = OpKind::kCz; break;
      case kGateSwap: op.kind = OpKind::kSwap; break;
      case kGateRzz: op.kind = OpKind::kRzz; break;
      case kGateRxx: case kGateRyy: op.kind = OpKind::kPairRotation; break;
      default: break;  // cy, crx, cry, crz, cp
    }
    return op;
  }

  const ProgramView& p_;
  std::vector<std::vector<int>> pending_;
  std::vector<bool> entangled_;
  Plan plan_;
};

/// Moves trailing diagonal gates out of fused blocks and forward through the schedule (see
/// defer_phases in plan.hpp).
class PhaseDeferral {
 public:
  PhaseDeferral(Plan& plan, const ProgramView& program, bool shared_weights)
      : plan_(plan), p_(program), shared_weights_(shared_weights) {}

  void run(bool keep_final) {
    std::vector<Op> out(plan_.ops.begin(), plan_.ops.begin() + plan_.n_initial);
    for (size_t i = plan_.n_initial; i < plan_.ops.size(); ++i) {
      Op op = plan_.ops[i];
      switch (op.kind) {
        case OpKind::kCx:
          through_cx(bit(op.wire0), bit(op.wire1));
          out.push_back(op);
          continue;
        case OpKind::kSwap:
          through_swap(bit(op.wire0), bit(op.wire1));
          out.push_back(op);
          continue;
        case OpKind::kCz:
        case OpKind::kRzz:
          out.push_back(op);  // diagonal: commutes with every pending phase
          continue;
        default:
          break;
      }
      const bool fused = op.kind == OpKind::kFused1q || op.kind == OpKind::kFused1qCx;
      // a fused block acts on wire0 only (its cx's control commutes with diagonals)
      const Mask touched = fused ? bit(op.wire0) : bit(op.wire0) | bit(op.wire1);
      if (depends_on(touched)) {
        if (fused) {
          op.phase_table = flush();
        } else {
          out.push_back(table_op(flush()));
        }
      }
      if (fused) peel(op);
      out.push_back(op);
      if (op.grad_end >= 0) peeled_ops_.push_back(out.size() - 1);
    }
    if (!pending_.empty() && keep_final) {
      out.push_back(table_op(flush()));
    } else {
      // dropped phases change no output: their angles' gradients are zero
      for (size_t i : peeled_ops_) out[i].grad_end = -1;
    }
    plan_.ops = out;
  }

 private:
  Mask bit(int wire) const { return Mask(1) << wire_bit(wire, p_.n_qubits); }

  bool deferrable(int g) const {
    const int32_t* row = p_.gates + 4 * g;
    const GateInfo info = gate_info(row[0]);
    if (info.n_wires != 1 || info.shape != kShapeDiagonal) return false;
    for (int a = row[3]; a < row[3] + info.n_angles; ++a) {
      const int src = p_.angle_src[2 * a];
      if (src == kSrcInput || (src == kSrcWeight && !shared_weights_)) return false;  // differs per sample
    }
    return true;
  }

  bool depends_on(Mask bits) const {
    for (const PhaseFactor& f : pending_) {
      if (f.mask & bits) return true;
    }
    return false;
  }

  /// cx(c -> t) maps index bit t to t ^ c: a phase read off bit t now reads the parity of both.
  void through_cx(Mask control, Mask target) {
    for (PhaseFactor& f : pending_) {
      if (f.mask & target) f.mask ^= control;
    }
  }

  void through_swap(Mask a, Mask b) {
    for (PhaseFactor& f : pending_) {
      if (((f.mask & a) != 0) != ((f.mask & b) != 0)) f.mask ^= a | b;
    }
  }

  bool has_gradient(int g) const {
    const int32_t* row = p_.gates + 4 * g;
    for (int a = row[3]; a < row[3] + gate_info(row[0]).n_angles; ++a) {
      if (p_.angle_src[2 * a] != kSrcConst) return true;
    }
    return false;
  }

  /// Takes the block's trailing deferrable gates (keeping at least one gate in it) into pending;
  /// the adjoint differentiates them at the block (Op::grad_end) when some have a gradient.
  void peel(Op& op) {
    const Mask wire = bit(op.wire0);
    const int full_end = op.end;
    bool gradient = false;
    while (op.end - op.begin > 1 && static_cast<int>(pending_.size()) < kMaxPhaseFactors &&
           deferrable(plan_.gate_order[op.end - 1])) {
      pending_.push_back(PhaseFactor{plan_.gate_order[--op.end], wire});
      gradient = gradient || has_gradient(pending_.back().gate);
    }
    if (gradient) op.grad_end = full_end;
    bool rotation = true;
    op.shape = gate_info(p_.gates[4 * plan_.gate_order[op.begin]]).shape;
    for (int e = op.begin; e < op.end; ++e) {
      const int code = p_.gates[4 * plan_.gate_order[e]];
      op.shape = combine_shapes(op.shape, gate_info(code).shape);
      rotation = rotation && code == kGateRy;
    }
    if (rotation) op.shape = kShapeRotation;
    // the peeled phases sat between the block and its cx
    if (op.kind == OpKind::kFused1qCx) through_cx(bit(op.wire1), wire);
  }

  int flush() {
    plan_.factors.insert(plan_.factors.end(), pending_.begin(), pending_.end());
    plan_.table_start.push_back(static_cast<int>(plan_.factors.size()));
    pending_.clear();
    peeled_ops_.clear();
    return plan_.n_tables() - 1;
  }

  static Op table_op(int table) {
    Op op{OpKind::kPhaseTable, kShapeDiagonal, 0, -1, 0, 0, 0};
    op.phase_table = table;
    return op;
  }

  Plan& plan_;
  const ProgramView& p_;
  const bool shared_weights_;
  std::vector<PhaseFactor> pending_;
  std::vector<size_t> peeled_ops_;  ///< ops of the output whose peeled gates are still pending
};

}  // namespace

void defer_phases(Plan& plan, const ProgramView& program, bool shared_weights, bool keep_final) {
  PhaseDeferral(plan, program, shared_weights).run(keep_final);
}

void absorb_initial_permutation(Plan& plan, int n_qubits) {
  // column b: the product-state index that amplitude index 1 << b reads; a cx(c -> t) after the
  // ops so far makes index bit c also flip bit t of the read index, a swap exchanges two columns
  std::vector<Mask> column(n_qubits);
  for (int b = 0; b < n_qubits; ++b) column[b] = Mask(1) << b;
  auto end = plan.ops.begin() + plan.n_initial;
  for (; end != plan.ops.end() && (end->kind == OpKind::kCx || end->kind == OpKind::kSwap); ++end) {
    const int b0 = wire_bit(end->wire0, n_qubits), b1 = wire_bit(end->wire1, n_qubits);
    if (end->kind == OpKind::kCx) {
      column[b0] ^= column[b1];
    } else {
      std::swap(column[b0], column[b1]);
    }
  }
  if (end == plan.ops.begin() + plan.n_initial) return;
  plan.ops.erase(plan.ops.begin() + plan.n_initial, end);
  plan.initial_map = column;
}

void validate_program(const ProgramView& program, int n_inputs, int n_weights) {
  if (program.n_qubits < 1 || program.n_qubits > kMaxQubits) {
    throw std::invalid_argument("n_qubits must be in [1, " + std::to_string(kMaxQubits) + "], got " +
                                std::to_string(program.n_qubits));
  }
  for (int g = 0; g < program.n_gates; ++g) validate_gate(program, g);
  for (int a = 0; a < program.n_slots; ++a) validate_slot(program, a, n_inputs, n_weights);
}

Plan make_plan(const ProgramView& program) { return PlanBuilder(program).build(); }

void block_phases(Plan& plan, int n_qubits, int chunk_bits, int low_bits) {
  const std::vector<Op> initial(plan.ops.begin(), plan.ops.begin() + plan.n_initial);
  const std::vector<Op> rest(plan.ops.begin() + plan.n_initial, plan.ops.end());
  plan.ops.clear();
  plan.local_ops.clear();
  plan.phases.clear();
  // separately, so that the forward pass can still skip the product-state ops as a whole
  append_phases(initial, n_qubits, chunk_bits, low_bits, plan);
  append_phases(rest, n_qubits, chunk_bits, low_bits, plan);
  plan.chunk_bits = chunk_bits;
}

std::vector<PauliTerm> make_pauli_terms(const int8_t* paulis, int n_terms, int n_qubits) {
  std::vector<PauliTerm> terms;
  terms.reserve(n_terms);
  for (int k = 0; k < n_terms; ++k) {
    const int8_t* row = paulis + static_cast<size_t>(k) * n_qubits;
    for (int w = 0; w < n_qubits; ++w) {
      if (row[w] < kPauliI || row[w] > kPauliZ) {
        throw std::invalid_argument("paulis[" + std::to_string(k) + ", " + std::to_string(w) + "] = " +
                                    std::to_string(row[w]) + ": codes are 0=I, 1=X, 2=Y, 3=Z");
      }
    }
    terms.push_back(make_pauli_term(reinterpret_cast<const signed char*>(row), n_qubits));
  }
  return terms;
}

}  // namespace cpu
}  // namespace hdqnn

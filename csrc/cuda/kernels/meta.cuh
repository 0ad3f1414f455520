// The call description the GPU kernels read: one int32 "meta table" built by
// hdqnn/backends/device_program.py (validation, gate fusion, Pauli masks), plus the enums of tasks,
// op kinds and angle sources. Every constant here is mirrored there; the tests compare them.
//
// Compiles with nvcc, NVRTC and a plain C++17 compiler (the host emulation): no standard headers.
#pragma once

#include "hdqnn/pauli.hpp"

namespace hdqnn {
namespace gpu {

constexpr int kMetaVersion = 0x48440001;  // "HD" + layout 1
constexpr int kHeaderSize = 16;
constexpr int kOpFields = 8;
constexpr int kTermFields = 3;

/// Indices of the header words.
enum MetaHeader {
  kHVersion = 0,
  kHNQubits = 1,
  kHNOps = 2,
  kHNInitial = 3,
  kHNGates = 4,
  kHNSlots = 5,
  kHNTerms = 6,
  kHNInputs = 7,
  kHNWeights = 8,
  kHPerSampleWeights = 9,
  kHOps = 10,      ///< offset of ops [n_ops, kOpFields]
  kHOrder = 11,    ///< offset of the fused blocks' gate indices
  kHGates = 12,    ///< offset of gates [n_gates, 4]: code, wire0, wire1 | -1, first slot | -1
  kHSrc = 13,      ///< offset of angle sources [n_slots, 2]: source, index
  kHTerms = 14,    ///< offset of Pauli terms [n_terms, 3]: flip, sign, ny
  kHInitial = 15   ///< offset of [n_qubits]: the op preparing each wire from |0>, or -1
};

/// Fields of one op (the values of hdqnn::cpu::Op, in that order).
enum OpField { kFKind = 0, kFShape = 1, kFWire0 = 2, kFWire1 = 3, kFBegin = 4, kFEnd = 5, kFNeedsGrad = 6 };

/// Op kinds, numbered as hdqnn::cpu::OpKind.
enum OpKind {
  kOpFused1q = 0,      ///< product of consecutive single-qubit gates on wire0
  kOpFused1qCx = 1,    ///< kOpFused1q on the target (wire0) of the cx that follows it (control wire1)
  kOpControlled = 2,   ///< controlled 2x2 (cy, crx, cry, crz, cp) on the control=1 half
  kOpCx = 3,
  kOpCz = 4,
  kOpSwap = 5,
  kOpRzz = 6,
  kOpPairRotation = 7  ///< rxx, ryy: a general 4x4
};

enum Task { kTaskStatevector = 0, kTaskProbabilities = 1, kTaskExpval = 2, kTaskVjp = 3, kTaskSample = 4 };

enum AngleSource { kSrcConst = 0, kSrcInput = 1, kSrcWeight = 2 };

/// Typed access to a meta table (a pointer into device memory on the GPU).
struct MetaView {
  const int* m;

  HDQNN_HOST_DEVICE HDQNN_INLINE int operator[](int i) const { return m[i]; }
  HDQNN_HOST_DEVICE HDQNN_INLINE int n_qubits() const { return m[kHNQubits]; }
  HDQNN_HOST_DEVICE HDQNN_INLINE int n_ops() const { return m[kHNOps]; }
  HDQNN_HOST_DEVICE HDQNN_INLINE int n_initial() const { return m[kHNInitial]; }
  HDQNN_HOST_DEVICE HDQNN_INLINE int n_slots() const { return m[kHNSlots]; }
  HDQNN_HOST_DEVICE HDQNN_INLINE int n_terms() const { return m[kHNTerms]; }
  HDQNN_HOST_DEVICE HDQNN_INLINE int n_inputs() const { return m[kHNInputs]; }
  HDQNN_HOST_DEVICE HDQNN_INLINE int n_weights() const { return m[kHNWeights]; }
  HDQNN_HOST_DEVICE HDQNN_INLINE bool per_sample_weights() const { return m[kHPerSampleWeights] != 0; }
  HDQNN_HOST_DEVICE HDQNN_INLINE const int* op(int i) const { return m + m[kHOps] + i * kOpFields; }
  HDQNN_HOST_DEVICE HDQNN_INLINE int order(int e) const { return m[m[kHOrder] + e]; }
  HDQNN_HOST_DEVICE HDQNN_INLINE const int* gate(int g) const { return m + m[kHGates] + 4 * g; }
  HDQNN_HOST_DEVICE HDQNN_INLINE int source(int slot) const { return m[m[kHSrc] + 2 * slot]; }
  HDQNN_HOST_DEVICE HDQNN_INLINE int source_index(int slot) const { return m[m[kHSrc] + 2 * slot + 1]; }
  HDQNN_HOST_DEVICE HDQNN_INLINE int initial_op(int wire) const { return m[m[kHInitial] + wire]; }
  HDQNN_HOST_DEVICE HDQNN_INLINE PauliTerm term(int k) const {
    const int* t = m + m[kHTerms] + kTermFields * k;
    PauliTerm term;
    term.flip = static_cast<Mask>(static_cast<unsigned int>(t[0]));
    term.sign = static_cast<Mask>(static_cast<unsigned int>(t[1]));
    term.ny = t[2];
    return term;
  }
};

}  // namespace gpu
}  // namespace hdqnn

// Macros and basic types shared by the CPU engine, the CUDA engine and NVRTC kernels.
//
// Everything under include/hdqnn/ must compile with nvcc and NVRTC as well as with a plain C++17
// compiler: no standard-library headers beyond <math.h> on the host, no exceptions, no RTTI.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define HDQNN_HOST_DEVICE __host__ __device__
#define HDQNN_INLINE __forceinline__
#elif defined(_MSC_VER)
#define HDQNN_HOST_DEVICE
#define HDQNN_INLINE __forceinline
#else
#define HDQNN_HOST_DEVICE
#define HDQNN_INLINE inline __attribute__((always_inline))
#endif

// The CPU engine compiles its kernels once per instruction set (baseline, AVX2, AVX-512). Every
// inline function is placed in an ISA-specific inline namespace so that the linker can never merge
// an AVX-512 copy of a helper into the baseline code path (a classic multi-ISA ODR trap). Types
// carry no code and live directly in namespace hdqnn, so all variants share them.
#ifndef HDQNN_ISA_NAMESPACE
#define HDQNN_ISA_NAMESPACE isa_generic
#endif
#define HDQNN_NAMESPACE_BEGIN \
  namespace hdqnn {           \
  inline namespace HDQNN_ISA_NAMESPACE {
#define HDQNN_NAMESPACE_END \
  }                         \
  }

namespace hdqnn {

/// Amplitude index: 2**30 amplitudes need more than 32 bits once multiplied by the lane count.
typedef long long Index;
/// Bit mask over amplitude-index bits (wire w is bit n - 1 - w).
typedef unsigned long long Mask;

}  // namespace hdqnn

HDQNN_NAMESPACE_BEGIN

/// Parity of the set bits of ``x`` (0 or 1).
HDQNN_HOST_DEVICE HDQNN_INLINE int parity(Mask x) {
#if defined(__CUDA_ARCH__)
  return __popcll(x) & 1;
#elif defined(__GNUC__) || defined(__clang__)
  return __builtin_parityll(x);
#else
  x ^= x >> 32;
  x ^= x >> 16;
  x ^= x >> 8;
  x ^= x >> 4;
  x ^= x >> 2;
  x ^= x >> 1;
  return static_cast<int>(x & 1);
#endif
}

/// Amplitude-index bit of ``wire`` in an ``n_qubits`` register (wire 0 is the most significant).
HDQNN_HOST_DEVICE HDQNN_INLINE int wire_bit(int wire, int n_qubits) { return n_qubits - 1 - wire; }

/// ``t`` with a zero bit inserted at position ``bit`` (bits at and above ``bit`` move up by one).
HDQNN_HOST_DEVICE HDQNN_INLINE Index insert_zero_bit(Index t, int bit) {
  const Index low = t & ((Index(1) << bit) - 1);
  return ((t >> bit) << (bit + 1)) | low;
}

HDQNN_NAMESPACE_END

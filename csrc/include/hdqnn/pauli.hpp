// Pauli strings as bit masks: P|i> = i^{nY} (-1)^{popcount(i & sign)} |i ^ flip>, with
// flip = X|Y wires and sign = Z|Y wires (wire w is amplitude-index bit n - 1 - w).
#pragma once

#include "complex.hpp"

namespace hdqnn {

enum PauliCode { kPauliI = 0, kPauliX = 1, kPauliY = 2, kPauliZ = 3 };

struct PauliTerm {
  Mask flip;
  Mask sign;
  int ny;  ///< number of Y factors, mod 4
};

}  // namespace hdqnn

HDQNN_NAMESPACE_BEGIN

/// Masks of one row of the int8 table [K, n_qubits] (0=I, 1=X, 2=Y, 3=Z).
HDQNN_HOST_DEVICE HDQNN_INLINE PauliTerm make_pauli_term(const signed char* row, int n_qubits) {
  PauliTerm term;
  term.flip = 0;
  term.sign = 0;
  term.ny = 0;
  for (int w = 0; w < n_qubits; ++w) {
    const Mask bit = Mask(1) << (n_qubits - 1 - w);
    if (row[w] == kPauliX || row[w] == kPauliY) term.flip |= bit;
    if (row[w] == kPauliZ || row[w] == kPauliY) term.sign |= bit;
    if (row[w] == kPauliY) term.ny = (term.ny + 1) & 3;
  }
  return term;
}

/// The coefficient c with P|src> = c |src ^ flip>.
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE Complex<T> pauli_phase(const PauliTerm& term, Index src) {
  const T sgn = parity(static_cast<Mask>(src) & term.sign) ? T(-1) : T(1);
  switch (term.ny) {
    case 0: return make_complex(sgn, T(0));
    case 1: return make_complex(T(0), sgn);
    case 2: return make_complex(-sgn, T(0));
    default: return make_complex(T(0), -sgn);
  }
}

/// Re(i^ny z): the real part of the expectation once the sign-weighted overlap z is summed.
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE T real_of_i_power(int ny, Complex<T> z) {
  switch (ny & 3) {
    case 0: return z.re;
    case 1: return -z.im;
    case 2: return -z.re;
    default: return z.im;
  }
}

HDQNN_NAMESPACE_END

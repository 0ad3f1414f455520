// The update of one amplitude pair (single-qubit gate, or a controlled gate's control=1 block) or
// quad (two-qubit gate), written once for the CPU loops and the CUDA kernels, plus the 2x2 matrix
// algebra the engines use to fuse gates and to differentiate fused blocks.
#pragma once

#include "complex.hpp"

HDQNN_NAMESPACE_BEGIN

/// (a0, a1) <- m (a0, a1) for a general 2x2 ``m`` (row-major).
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE void apply_2x2(const Complex<T> m[4], Complex<T>& a0, Complex<T>& a1) {
  const Complex<T> b0 = mul_add(m[0] * a0, m[1], a1);
  const Complex<T> b1 = mul_add(m[2] * a0, m[3], a1);
  a0 = b0;
  a1 = b1;
}

/// (a0, a1) <- m (a0, a1) for a real 2x2 ``m`` (ry, h, x and their products).
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE void apply_2x2_real(const T m[4], Complex<T>& a0, Complex<T>& a1) {
  const Complex<T> b0 = make_complex(m[0] * a0.re + m[1] * a1.re, m[0] * a0.im + m[1] * a1.im);
  const Complex<T> b1 = make_complex(m[2] * a0.re + m[3] * a1.re, m[2] * a0.im + m[3] * a1.im);
  a0 = b0;
  a1 = b1;
}

/// (a0, a1) <- diag(d0, d1) (a0, a1).
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE void apply_diag(Complex<T> d0, Complex<T> d1, Complex<T>& a0, Complex<T>& a1) {
  a0 = d0 * a0;
  a1 = d1 * a1;
}

/// a <- m a for a general 4x4 ``m`` (row-major) on the quad a[2 * bit(wire0) + bit(wire1)].
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE void apply_4x4(const Complex<T> m[16], Complex<T> a[4]) {
  Complex<T> b[4];
  for (int r = 0; r < 4; ++r) {
    b[r] = mul_add(mul_add(mul_add(m[4 * r] * a[0], m[4 * r + 1], a[1]), m[4 * r + 2], a[2]), m[4 * r + 3], a[3]);
  }
  for (int r = 0; r < 4; ++r) a[r] = b[r];
}

/// out <- a b for 2x2 matrices (``out`` may alias neither input).
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE void mat2_mul(const Complex<T> a[4], const Complex<T> b[4], Complex<T> out[4]) {
  out[0] = a[0] * b[0] + a[1] * b[2];
  out[1] = a[0] * b[1] + a[1] * b[3];
  out[2] = a[2] * b[0] + a[3] * b[2];
  out[3] = a[2] * b[1] + a[3] * b[3];
}

/// out <- a^dagger for a 2x2 matrix.
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE void mat2_dagger(const Complex<T> a[4], Complex<T> out[4]) {
  out[0] = conj(a[0]);
  out[1] = conj(a[2]);
  out[2] = conj(a[1]);
  out[3] = conj(a[3]);
}

/// out <- a^dagger for a 4x4 matrix.
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE void mat4_dagger(const Complex<T> a[16], Complex<T> out[16]) {
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 4; ++c) out[4 * r + c] = conj(a[4 * c + r]);
  }
}

/// tr(a b) for 2x2 matrices: with b = Q of the adjoint method this is <lambda| dU |psi>.
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE Complex<T> mat2_trace_of_product(const Complex<T> a[4], const Complex<T> b[4]) {
  return a[0] * b[0] + a[1] * b[2] + a[2] * b[1] + a[3] * b[3];
}

HDQNN_NAMESPACE_END

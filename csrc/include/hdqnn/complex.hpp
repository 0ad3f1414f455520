// A minimal complex type usable on host and device (std::complex is unavailable under NVRTC and
// its operator* handles inf/nan cases that cost time in hot loops).
#pragma once

#include "config.hpp"

namespace hdqnn {

template <class T>
struct Complex {
  T re;
  T im;
};

}  // namespace hdqnn

HDQNN_NAMESPACE_BEGIN

template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE Complex<T> make_complex(T re, T im) {
  Complex<T> z;
  z.re = re;
  z.im = im;
  return z;
}

template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE Complex<T> operator+(Complex<T> a, Complex<T> b) {
  return make_complex(a.re + b.re, a.im + b.im);
}

template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE Complex<T> operator*(Complex<T> a, Complex<T> b) {
  return make_complex(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re);
}

template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE Complex<T> operator*(T s, Complex<T> a) {
  return make_complex(s * a.re, s * a.im);
}

template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE Complex<T> conj(Complex<T> a) {
  return make_complex(a.re, -a.im);
}

/// i * a
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE Complex<T> times_i(Complex<T> a) {
  return make_complex(-a.im, a.re);
}

/// acc + m * a, ordered so that contraction gives two FMAs per component.
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE Complex<T> mul_add(Complex<T> acc, Complex<T> m, Complex<T> a) {
  return make_complex(acc.re + m.re * a.re - m.im * a.im, acc.im + m.re * a.im + m.im * a.re);
}

/// acc + conj(a) * b, ordered for FMAs (the accumulation of an inner product <a|b>).
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE Complex<T> conj_mul_add(Complex<T> acc, Complex<T> a, Complex<T> b) {
  return make_complex(acc.re + a.re * b.re + a.im * b.im, acc.im + a.re * b.im - a.im * b.re);
}

/// conj(a) * b, the term of an inner product <a|b>.
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE Complex<T> conj_mul(Complex<T> a, Complex<T> b) {
  return make_complex(a.re * b.re + a.im * b.im, a.re * b.im - a.im * b.re);
}

template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE T norm2(Complex<T> a) {
  return a.re * a.re + a.im * a.im;
}

HDQNN_NAMESPACE_END

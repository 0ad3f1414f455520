// Vectorisable sine and cosine for the per-sample angles. libm's sincos is scalar and dominated the
// run time of small circuits (a few thousand amplitudes per sample); this is fdlibm's polynomial
// kernel on |r| <= pi/4 after a two-part Cody-Waite reduction by pi/2, branch-free so that an
// `omp simd` loop vectorises it. Error about one ulp for |x| <= kSincosReduceLimit; larger or
// non-finite arguments are recomputed with libm.
#pragma once

#include <math.h>

#include "hdqnn/config.hpp"

HDQNN_NAMESPACE_BEGIN
namespace kernels {

/// Largest |x| the two-part reduction handles exactly (the product q * kPio2Hi must be exact).
constexpr double kSincosReduceLimit = 1.0e5;

HDQNN_INLINE void sincos_reduced(double x, double& sin_x, double& cos_x) {
  constexpr double kInvPio2 = 6.36619772367581382433e-01;
  constexpr double kPio2Hi = 1.57079632673412561417e+00;  // first 33 bits of pi/2
  constexpr double kPio2Lo = 6.07710050650619224932e-11;  // pi/2 - kPio2Hi
  constexpr double kRound = 6755399441055744.0;           // 1.5 * 2**52: x + kRound - kRound = rint(x)
  constexpr double kS1 = -1.66666666666666324348e-01, kS2 = 8.33333333332248946124e-03,
                   kS3 = -1.98412698298579493134e-04, kS4 = 2.75573137070700676789e-06,
                   kS5 = -2.50507602534068634195e-08, kS6 = 1.58969099521155010221e-10;
  constexpr double kC1 = 4.16666666666666019037e-02, kC2 = -1.38888888888741095749e-03,
                   kC3 = 2.48015872894767294178e-05, kC4 = -2.75573143513906633035e-07,
                   kC5 = 2.08757232129817482790e-09, kC6 = -1.13596475577881948265e-11;
  const double q = (x * kInvPio2 + kRound) - kRound;
  const double r = (x - q * kPio2Hi) - q * kPio2Lo;
  const double z = r * r;
  const double s = r + r * z * (kS1 + z * (kS2 + z * (kS3 + z * (kS4 + z * (kS5 + z * kS6)))));
  const double c = 1.0 - 0.5 * z + z * z * (kC1 + z * (kC2 + z * (kC3 + z * (kC4 + z * (kC5 + z * kC6)))));
  const int quadrant = static_cast<int>(q) & 3;
  const double sin_abs = (quadrant & 1) ? c : s;
  const double cos_abs = (quadrant & 1) ? s : c;
  sin_x = (quadrant & 2) ? -sin_abs : sin_abs;
  cos_x = ((quadrant + 1) & 2) ? -cos_abs : cos_abs;
}

/// sin_out[i], cos_out[i] <- sin(x[i]), cos(x[i]) for i < count.
template <class T>
void half_angle_sincos(const double* x, Index count, T* sin_out, T* cos_out) {
  // clamp first so the fast path never sees an argument it cannot reduce; those are redone below
#pragma omp simd
  for (Index i = 0; i < count; ++i) {
    const double xi = fabs(x[i]) <= kSincosReduceLimit ? x[i] : 0.0;
    double s, c;
    sincos_reduced(xi, s, c);
    sin_out[i] = T(s);
    cos_out[i] = T(c);
  }
  for (Index i = 0; i < count; ++i) {
    if (!(fabs(x[i]) <= kSincosReduceLimit)) {
      sin_out[i] = T(sin(x[i]));
      cos_out[i] = T(cos(x[i]));
    }
  }
}

}  // namespace kernels
HDQNN_NAMESPACE_END

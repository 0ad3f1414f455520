// Gate codes and matrices: the C++ mirror of hdqnn/circuits/gates.py (codes are part of the engine
// contract: never renumber). Matrices follow OpenQASM 3 / Qiskit; a two-qubit 4x4 matrix is indexed
// by 2 * bit(wire0) + bit(wire1), so wire0 of a controlled gate is the control.
//
// Angles enter as half-angle cosines and sines (c = cos(theta / 2), s = sin(theta / 2)), computed
// once per sample and slot by the engine; every matrix and derivative below is then trig-free.
#pragma once

#include "complex.hpp"

namespace hdqnn {

enum GateCode {
  kGateX = 0,
  kGateY = 1,
  kGateZ = 2,
  kGateH = 3,
  kGateS = 4,
  kGateSdg = 5,
  kGateT = 6,
  kGateTdg = 7,
  kGateSx = 8,
  kGateRx = 9,
  kGateRy = 10,
  kGateRz = 11,
  kGateP = 12,
  kGateU = 13,
  kGateCx = 14,
  kGateCy = 15,
  kGateCz = 16,
  kGateSwap = 17,
  kGateCrx = 18,
  kGateCry = 19,
  kGateCrz = 20,
  kGateCp = 21,
  kGateRxx = 22,
  kGateRyy = 23,
  kGateRzz = 24,
  kNumGateCodes = 25
};

/// Structure of a single-qubit matrix (or of a controlled gate's 2x2 block), which selects the
/// cheapest update: a diagonal costs 2 complex products per amplitude pair, a real matrix 4 real
/// times complex, a general one 4 complex.
enum GateShape { kShapeGeneral = 0, kShapeReal = 1, kShapeDiagonal = 2 };

/// Largest number of angles of one gate (u).
constexpr int kMaxGateAngles = 3;

struct GateInfo {
  int n_wires;
  int n_angles;
  int shape;
};

}  // namespace hdqnn

HDQNN_NAMESPACE_BEGIN

/// Wires, angles and matrix shape of ``code``; n_wires == 0 for an unknown code.
HDQNN_HOST_DEVICE HDQNN_INLINE GateInfo gate_info(int code) {
  GateInfo info;
  info.n_wires = 1;
  info.n_angles = 0;
  info.shape = kShapeGeneral;
  switch (code) {
    case kGateX: case kGateH: case kGateCx:
      info.shape = kShapeReal;
      break;
    case kGateZ: case kGateS: case kGateSdg: case kGateT: case kGateTdg: case kGateCz:
      info.shape = kShapeDiagonal;
      break;
    case kGateY: case kGateSx: case kGateCy:
      break;
    case kGateRx: case kGateCrx:
      info.n_angles = 1;
      break;
    case kGateRy: case kGateCry:
      info.n_angles = 1;
      info.shape = kShapeReal;
      break;
    case kGateRz: case kGateP: case kGateCrz: case kGateCp:
      info.n_angles = 1;
      info.shape = kShapeDiagonal;
      break;
    case kGateU:
      info.n_angles = 3;
      break;
    case kGateSwap:
      info.shape = kShapeReal;
      break;
    case kGateRxx: case kGateRyy:
      info.n_angles = 1;
      break;
    case kGateRzz:
      info.n_angles = 1;
      info.shape = kShapeDiagonal;
      break;
    default:
      info.n_wires = 0;
      return info;
  }
  if (code >= kGateCx) info.n_wires = 2;
  return info;
}

/// The single-qubit gate whose matrix is the control=1 block of controlled gate ``code``
/// (cx -> x, ..., cp -> p), or -1 for a gate that is not controlled.
HDQNN_HOST_DEVICE HDQNN_INLINE int controlled_base(int code) {
  switch (code) {
    case kGateCx: return kGateX;
    case kGateCy: return kGateY;
    case kGateCz: return kGateZ;
    case kGateCrx: return kGateRx;
    case kGateCry: return kGateRy;
    case kGateCrz: return kGateRz;
    case kGateCp: return kGateP;
    default: return -1;
  }
}

/// The constant x as a T. T is a real (float, double) or, in the CPU engine, a vector of lanes
/// whose element type is R; ``T{} + x`` covers both (a vector plus a scalar broadcasts).
template <class T, class R>
HDQNN_HOST_DEVICE HDQNN_INLINE T constant(R x) {
  return T{} + x;
}

/// e^{i theta} from the half-angle cosine and sine.
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE Complex<T> phase_of_half(T c, T s) {
  const T cs = c * s;
  return make_complex(c * c - s * s, cs + cs);
}

template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE void set_mat2(Complex<T> m[4], Complex<T> a, Complex<T> b, Complex<T> c,
                                             Complex<T> d) {
  m[0] = a;
  m[1] = b;
  m[2] = c;
  m[3] = d;
}

/// Matrix [2, 2] (row-major) of single-qubit gate ``code``; angle ``k`` is (c[k * stride],
/// s[k * stride]). R is the scalar type of T (T itself unless T is a vector of lanes).
template <class T, class R = T>
HDQNN_HOST_DEVICE HDQNN_INLINE void single_qubit_matrix(int code, const T* c, const T* s, int stride,
                                                        Complex<T> m[4]) {
  const T zero = T{}, one = constant<T>(R(1));
  const T r = constant<T>(R(0.70710678118654752440));  // 1/sqrt(2)
  const T h = constant<T>(R(0.5));
  const Complex<T> o = make_complex(zero, zero);
  switch (code) {
    case kGateX:
      set_mat2(m, o, make_complex(one, zero), make_complex(one, zero), o);
      break;
    case kGateY:
      set_mat2(m, o, make_complex(zero, -one), make_complex(zero, one), o);
      break;
    case kGateZ:
      set_mat2(m, make_complex(one, zero), o, o, make_complex(-one, zero));
      break;
    case kGateH:
      set_mat2(m, make_complex(r, zero), make_complex(r, zero), make_complex(r, zero), make_complex(-r, zero));
      break;
    case kGateS:
      set_mat2(m, make_complex(one, zero), o, o, make_complex(zero, one));
      break;
    case kGateSdg:
      set_mat2(m, make_complex(one, zero), o, o, make_complex(zero, -one));
      break;
    case kGateT:
      set_mat2(m, make_complex(one, zero), o, o, make_complex(r, r));
      break;
    case kGateTdg:
      set_mat2(m, make_complex(one, zero), o, o, make_complex(r, -r));
      break;
    case kGateSx:
      set_mat2(m, make_complex(h, h), make_complex(h, -h), make_complex(h, -h), make_complex(h, h));
      break;
    case kGateRx:
      set_mat2(m, make_complex(c[0], zero), make_complex(zero, -s[0]), make_complex(zero, -s[0]),
               make_complex(c[0], zero));
      break;
    case kGateRy:
      set_mat2(m, make_complex(c[0], zero), make_complex(-s[0], zero), make_complex(s[0], zero),
               make_complex(c[0], zero));
      break;
    case kGateRz:
      set_mat2(m, make_complex(c[0], -s[0]), o, o, make_complex(c[0], s[0]));
      break;
    case kGateP:
      set_mat2(m, make_complex(one, zero), o, o, phase_of_half(c[0], s[0]));
      break;
    case kGateU: {
      const Complex<T> e_phi = phase_of_half(c[stride], s[stride]);
      const Complex<T> e_lam = phase_of_half(c[2 * stride], s[2 * stride]);
      set_mat2(m, make_complex(c[0], zero), -s[0] * e_lam, s[0] * e_phi, c[0] * (e_phi * e_lam));
      break;
    }
    default:
      set_mat2(m, make_complex(one, zero), o, o, make_complex(one, zero));
      break;
  }
}

/// d(matrix)/d(angle ``which``) of single-qubit gate ``code`` (analytic, as gate_matrix_derivative
/// in gates.py): rotations exp(-i t/2 G) give U(t + pi) / 2, phase angles differentiate termwise.
template <class T, class R = T>
HDQNN_HOST_DEVICE HDQNN_INLINE void single_qubit_matrix_derivative(int code, const T* c, const T* s, int stride,
                                                                   int which, Complex<T> m[4]) {
  const Complex<T> o = make_complex(T{}, T{});
  if (code == kGateP) {
    set_mat2(m, o, o, o, times_i(phase_of_half(c[0], s[0])));
    return;
  }
  if (code == kGateU && which > 0) {
    const Complex<T> e_phi = phase_of_half(c[stride], s[stride]);
    const Complex<T> e_lam = phase_of_half(c[2 * stride], s[2 * stride]);
    const Complex<T> e_both = times_i(e_phi * e_lam);
    if (which == 1) {
      set_mat2(m, o, o, s[0] * times_i(e_phi), c[0] * e_both);
    } else {
      set_mat2(m, o, -s[0] * times_i(e_lam), o, c[0] * e_both);
    }
    return;
  }
  // theta of rx, ry, rz, u: shift the angle by pi, i.e. (c, s) -> (-s, c), and halve.
  T cs[kMaxGateAngles], ss[kMaxGateAngles];
  const int n = code == kGateU ? 3 : 1;
  for (int k = 0; k < n; ++k) {
    cs[k] = c[k * stride];
    ss[k] = s[k * stride];
  }
  cs[0] = -s[0];
  ss[0] = c[0];
  single_qubit_matrix<T, R>(code, cs, ss, 1, m);
  const T half = constant<T>(R(0.5));
  for (int k = 0; k < 4; ++k) m[k] = half * m[k];
}

/// Matrix [4, 4] (row-major, index 2 * bit(wire0) + bit(wire1)) of rxx, ryy, rzz from the
/// half-angle (c, s): cos(t/2) I - i sin(t/2) P(x)P.
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE void pauli_pair_rotation_matrix(int code, T c, T s, Complex<T> m[16]) {
  const T zero = T{};
  const Complex<T> o = make_complex(zero, zero);
  for (int k = 0; k < 16; ++k) m[k] = o;
  if (code == kGateRzz) {
    m[0] = make_complex(c, -s);
    m[5] = make_complex(c, s);
    m[10] = make_complex(c, s);
    m[15] = make_complex(c, -s);
    return;
  }
  // XX is the anti-diagonal of ones; YY has -1 at the corners (Y(x)Y |00> = -|11>).
  const T corner = code == kGateRyy ? s : -s;
  for (int k = 0; k < 4; ++k) m[5 * k] = make_complex(c, zero);
  m[3] = make_complex(zero, corner);
  m[6] = make_complex(zero, -s);
  m[9] = make_complex(zero, -s);
  m[12] = make_complex(zero, corner);
}

/// d/dt of pauli_pair_rotation_matrix: the matrix at t + pi, halved.
template <class T, class R = T>
HDQNN_HOST_DEVICE HDQNN_INLINE void pauli_pair_rotation_derivative(int code, T c, T s, Complex<T> m[16]) {
  pauli_pair_rotation_matrix(code, -s, c, m);
  const T half = constant<T>(R(0.5));
  for (int k = 0; k < 16; ++k) m[k] = half * m[k];
}

/// u <- the matrix of gate ``code`` from its half-angle cosines and sines: 2x2 in u[0..3] for a
/// one-qubit gate, else 4x4 indexed 2 bit(wire0) + bit(wire1); returns the number of wires.
template <class T>
HDQNN_HOST_DEVICE HDQNN_INLINE int gate_unitary_matrix(int code, const T* c, const T* s, Complex<T>* u) {
  if (gate_info(code).n_wires == 1) {
    single_qubit_matrix<T>(code, c, s, 1, u);
    return 1;
  }
  const Complex<T> zero = make_complex(T(0), T(0)), one = make_complex(T(1), T(0));
  for (int i = 0; i < 16; ++i) u[i] = zero;
  if (code == kGateSwap) {
    u[0] = u[6] = u[9] = u[15] = one;
  } else if (code == kGateRxx || code == kGateRyy || code == kGateRzz) {
    pauli_pair_rotation_matrix<T>(code, c[0], s[0], u);
  } else {  // controlled: identity on control = 0, the base gate on control = 1
    Complex<T> b[4];
    single_qubit_matrix<T>(controlled_base(code), c, s, 1, b);
    u[0] = u[5] = one;
    u[10] = b[0], u[11] = b[1], u[14] = b[2], u[15] = b[3];
  }
  return 2;
}

HDQNN_NAMESPACE_END

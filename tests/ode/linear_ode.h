// Test fixture: the linear ODE dy/dt = A y on rows y [N, d] (f = y A'),
// with its exact solution and exact gradients via matrix exponentials.
//   y_n(t) = expm(A t) y0_n
//   L = sum_n w_n . y_n(t)  =>  dL/dy0_n = expm(A t)' w_n,
//   dL/dA = sum_n int_0^t expm(A'(t-s)) w_n y0_n' expm(A' s) ds
//         = upper-right block of expm([[A', W' Y0], [0, A']] t)  (Van Loan).
#ifndef FLOWTAPE_TESTS_ODE_LINEAR_ODE_H_
#define FLOWTAPE_TESTS_ODE_LINEAR_ODE_H_

#include <Eigen/Dense>
#include <unsupported/Eigen/MatrixFunctions>

#include "autodiff/eigen.h"
#include "autodiff/ops.h"
#include "autodiff/tensor.h"

namespace flowtape::testing {

using Mat = RowMatrix;
inline Mat ToMat(const Tensor& t) { return AsMatrix(t); }
inline Tensor ToTensor(const Mat& m) { return FromMatrix(m); }

// The fixture's stable 3x3 A and two initial rows.
inline Mat TestA() {
  Mat a(3, 3);
  a << -0.5, 1.2, 0.1, -1.0, -0.3, 0.4, 0.2, -0.6, -0.8;
  return a;
}
inline Mat TestY0() {
  Mat y(2, 3);
  y << 1.0, -0.5, 0.3, -0.2, 0.8, 1.1;
  return y;
}

// f(t, y) = y A' for y [N, d].
inline Tensor LinearField(const Tensor& a, const Tensor& y) {
  return MatMulT(y, a, false, true);
}

// Rows of y(t) for rows y0 (shift t relative to the initial time).
inline Mat LinearSolution(const Mat& a, const Mat& y0, double t) {
  Mat e = (a * t).exp();
  return y0 * e.transpose();
}

// dL/dY0 and dL/dA for L = sum(W * Y(t)).
inline Mat LinearGradY0(const Mat& a, const Mat& w, double t) {
  return w * (a * t).exp();
}
inline Mat LinearGradA(const Mat& a, const Mat& y0, const Mat& w, double t) {
  const int64_t d = a.rows();
  Mat m = Mat::Zero(2 * d, 2 * d);
  m.topLeftCorner(d, d) = a.transpose();
  m.topRightCorner(d, d) = w.transpose() * y0;
  m.bottomRightCorner(d, d) = a.transpose();
  Mat e = (m * t).exp();
  return e.topRightCorner(d, d);
}

}  // namespace flowtape::testing

#endif  // FLOWTAPE_TESTS_ODE_LINEAR_ODE_H_

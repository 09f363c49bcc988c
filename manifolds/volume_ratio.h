// Differential volume ratio of a map f: M -> M on an embedded manifold.
//
//   R_f(x) = |det(T_y' F_x T_x)|,  y = f(x),
// with F_x the n x n ambient Jacobian of f (from the autodiff), T_x, T_y
// orthonormal tangent bases (Manifold::TangentBasis). Since F_x maps tangent
// vectors at x to tangent vectors at y, F_x T_x = T_y (T_y' F_x T_x), so
//   R_f(x) = sqrt(det((F_x T_x)' (F_x T_x)))          (Gram form)
// needs no basis at y. With nu the unit normal at x and P = I - nu nu',
// Q = [T_x nu] is orthogonal and Q'(P F'F P + nu nu')Q = diag(T_x'F'F T_x, 1),
//   R_f(x) = sqrt(det(P F_x' F_x P + nu nu'))          (basis-free Gram form)
// which is what LogVolumeRatio differentiates: it needs no basis at all, so
// it is smooth in x too (points that are outputs of earlier trainable flows).
// Flat simplex form (coordinates x_1..x_(n-1)):
//   R_f(p) = |det(R F_p E)|,  E = [I; -1'] (n x (n-1)),  R = [I 0].
// Change of variables: a density p on M pushed through f has
//   log q(y) = log p(x) - log R_f(x),  x = f^-1(y).
// f is a batched map [N, n] -> [N, n]; single points are passed as [1, n].
// The Eigen forms evaluate f on a point rounded to `dtype` (a float32 map
// needs float32 input) and return double; the tensor forms compute in the
// input's dtype.
#ifndef FLOWTAPE_MANIFOLDS_VOLUME_RATIO_H_
#define FLOWTAPE_MANIFOLDS_VOLUME_RATIO_H_

#include "Eigen/Dense"
#include "autodiff/functional.h"
#include "autodiff/tensor.h"
#include "manifolds/manifold.h"

namespace flowtape::manifolds {

// F_x: the n x n Jacobian of f at the point x (autodiff, one VJP per row).
Eigen::MatrixXd AmbientJacobian(const TensorFn& f, const Eigen::VectorXd& x,
                                DType dtype = kFloat64);

// |det(Ty' F Tx)| for given bases (any orthonormal bases of the tangent
// spaces give the same value).
double VolumeRatio(const Eigen::MatrixXd& f_jac, const Eigen::MatrixXd& tx,
                   const Eigen::MatrixXd& ty);
// R_f(x) with QR tangent bases at x and y = f(x).
double VolumeRatio(const Manifold& m, const TensorFn& f,
                   const Eigen::VectorXd& x, DType dtype = kFloat64);
// |det(R F_p E)| on the simplex.
double FlatSimplexVolumeRatio(const TensorFn& f, const Eigen::VectorXd& p,
                              DType dtype = kFloat64);

// log R_f(x_i) for every row of x [N, n] as a differentiable [N] (through the
// Jacobian and the basis-free Gram form), w.r.t. the parameters of f and x,
// so flows without a closed form can be trained, also deep inside a chain.
Tensor LogVolumeRatio(const Manifold& m, const TensorFn& f, const Tensor& x);

// log det of symmetric positive definite matrices g [N, k, k] -> [N], via a
// Cholesky factorisation written with ops (differentiable, any order).
Tensor LogDetSpd(const Tensor& g);

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_VOLUME_RATIO_H_

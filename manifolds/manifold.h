// Manifold: the unit sphere S^(n-1) or the probability simplex Delta^(n-1),
// embedded in R^n, with what flows on it need.
//
//   dimension m = n - 1, ambient dimension n.
//   projection pi (smooth, idempotent):
//     sphere:  pi(z) = z / ||z||            Pi_x = (I - x x') / ||z||  at x =
//     pi(z) simplex: pi(z) = z / sum(z), z > 0    Pi_x = (I - x 1') / sum(z)
//   Pi_x (n x n, rank m) is the Jacobian of pi; its column space is the
//   tangent space at x. TangentBasis(x) = first m columns of Q from the
//   Householder QR (column pivoting) of Pi_x: an orthonormal n x m basis T_x.
//
// Measures (what a density on the manifold is w.r.t.):
//   sphere:  surface area; |S^(n-1)| = 2 pi^(n/2) / Gamma(n/2).
//   simplex: Lebesgue measure of the flat coordinates (x_1..x_(n-1)); the
//            simplex has volume 1/(n-1)! (uniform = Dirichlet(1,...,1)).
// Volume ratios (volume_ratio.h) are the same for either normalisation.
// Batched tensors are [N, n] (one point per row), float32 or float64: tensor
// results take the input's dtype; the Eigen routines compute in double.
#ifndef FLOWTAPE_MANIFOLDS_MANIFOLD_H_
#define FLOWTAPE_MANIFOLDS_MANIFOLD_H_

#include <cstdint>
#include <string>

#include "Eigen/Dense"
#include "autodiff/tensor.h"

namespace flowtape::manifolds {

enum class ManifoldKind { kSphere, kSimplex };

class Manifold {
 public:
  static Manifold Sphere(int64_t n);   // S^(n-1) in R^n, n >= 2
  static Manifold Simplex(int64_t n);  // Delta^(n-1) in R^n, n >= 2

  ManifoldKind kind() const { return kind_; }
  int64_t ambient() const { return n_; }
  int64_t dim() const { return n_ - 1; }
  std::string name() const;

  // pi, batched and differentiable: [N, n] -> [N, n].
  Tensor Project(const Tensor& z) const;
  Eigen::VectorXd Project(const Eigen::VectorXd& z) const;
  // Pi at z (any point where pi is defined), n x n.
  Eigen::MatrixXd ProjectionJacobian(const Eigen::VectorXd& z) const;
  // Orthonormal tangent basis T_x (n x m) from Householder QR of Pi_x.
  Eigen::MatrixXd TangentBasis(const Eigen::VectorXd& x) const;
  // T_x for every row of x [N, n], as a constant [N, n, m] in x's dtype.
  Tensor TangentBases(const Tensor& x) const;

  // True when x is on the manifold to within tol (norm / sum, and x >= -tol
  // on the simplex).
  bool Contains(const Eigen::VectorXd& x, double tol = 1e-9) const;
  bool ContainsAll(const Tensor& x, double tol = 1e-9) const;  // [N, n]

  // Uniform samples [num, n]: normalised Gaussians (sphere), normalised
  // exponentials (simplex), drawn in double and rounded to `dtype`.
  Tensor SampleUniform(int64_t num, Rng& rng, DType dtype = kFloat64) const;
  // log of the total measure: log|S^(n-1)|, or log(1/(n-1)!).
  double LogVolume() const;

 private:
  Manifold(ManifoldKind kind, int64_t n) : kind_(kind), n_(n) {}
  ManifoldKind kind_;
  int64_t n_;
};

// Row i of a [N, n] tensor of either dtype as a double Eigen vector
// (0 <= i < N, else FT_CHECK fails); the whole [N, n] (or [n]) tensor as an
// N x n double matrix; and back, rounded to `dtype`.
Eigen::VectorXd Row(const Tensor& x, int64_t i);
Eigen::MatrixXd Rows(const Tensor& x);
Tensor FromRows(const Eigen::MatrixXd& rows, DType dtype = kFloat64);

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_MANIFOLD_H_

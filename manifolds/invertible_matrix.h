// InvertibleMatrix: a trainable n x n matrix that stays invertible for every
// value of its parameters (PLU parametrisation, as in Glow's 1x1 convolution):
//
//   M = P L U,  P a fixed permutation, L unit lower triangular (free strict
//   lower part), U upper triangular with diagonal s_i exp(d_i) (fixed signs
//   s_i, free d_i, free strict upper part).
//   log|det M| = sum_i d_i;  det M != 0 whatever the parameters are.
//
// Create(n, rng, noise) starts at the identity plus noise; Create(M) factors
// a given matrix (partial pivoting). Both reject bad input with
// InvalidArgument (n < 1, noise negative or not finite; M not square,
// singular or with non-finite entries). Parameters: "lower", "log_diag",
// "upper"; buffers (fixed, converted by To, saved by checkpoints): "perm",
// "signs", "lower_mask", "upper_mask". Value() and Inverse() compute in double
// whatever the dtype.
#ifndef FLOWTAPE_MANIFOLDS_INVERTIBLE_MATRIX_H_
#define FLOWTAPE_MANIFOLDS_INVERTIBLE_MATRIX_H_

#include <cstdint>
#include <memory>

#include "Eigen/Dense"
#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "nn/module.h"

namespace flowtape::manifolds {

class InvertibleMatrix : public nn::Module {
 public:
  // Identity plus noise of scale `noise` in L, U and log diag (0 = identity).
  static absl::StatusOr<std::shared_ptr<InvertibleMatrix>> Create(
      int64_t n, Rng& rng, double noise = 0.0);
  static absl::StatusOr<std::shared_ptr<InvertibleMatrix>> Create(
      const Eigen::MatrixXd& m);

  int64_t size() const { return n_; }
  Tensor Matrix() const;            // [n, n], differentiable in the parameters
  Tensor LogAbsDet() const;         // scalar sum_i d_i
  Eigen::MatrixXd Value() const;    // current M
  Eigen::MatrixXd Inverse() const;  // current M^-1 (triangular solves)

 private:
  explicit InvertibleMatrix(int64_t n);
  InvertibleMatrix(int64_t n, Rng& rng, double noise);
  int64_t n_;
  Tensor perm_, signs_, lower_mask_, upper_mask_;  // buffers
  Tensor lower_, log_diag_, upper_;                // parameters
};

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_INVERTIBLE_MATRIX_H_

// Calibration flows on the probability simplex Delta^(n-1) (flows::Flow on
// [N, n] rows of probabilities p > 0, sum p = 1).
//
// SimplexCalibration (fcal):   q = softmax(log(p) / a + c)
//   log R(p) = (1 - n) log|a| + sum_i log q_i - sum_i log p_i
//   inverse:  p = softmax(a (log q - c)).   c = 0 is temperature scaling.
//   Parametrisation: a = s exp(t) with a fixed sign s (|a| > 0 always);
//   c [n] free (or fixed at 0 with temperature_only).
//
// GeneralizedCalibration:      q = softmax(A log(p) + c),  A 1 = lambda 1
//   log R(p) = log|det A| - log|lambda| + sum_i log(q_i / p_i)
//   inverse:  p = softmax(A^-1 (log q - c))   (A^-1 1 = 1 / lambda, so the
//   constant shift of softmax is carried through exactly).
//   Parametrisation: with u = 1/sqrt(n) and V an orthonormal basis of 1-perp
//   (n x (n-1)),  A = lambda u u' + V K V',  lambda = exp(l),  K an
//   InvertibleMatrix; then A 1 = lambda 1 exactly and det A = lambda det K,
//   so log R = log|det K| + sum_i log(q_i / p_i). lambda only adds the
//   constant lambda mean(log p) to every logit, which softmax ignores: it is
//   kept (for Create and the group law) but not trained; likewise a
//   component u w' V' is left out. The family is a group:
//   f2 o f1 has A = A2 A1, c = A2 c1 + c2.
//
// Both follow flow.h: Forward(p) = (q, log R(p)), Inverse(q) = (p, -log R(p)).
// R is the volume ratio on the simplex (flat or orthonormal measure: equal).
// Inverse maps use the current parameter values as constants (no gradient to
// the parameters; gradients w.r.t. the input flow). dtype: fixed tensors
// (V, log lambda, a temperature-only c) are buffers; A^-1 is computed in
// double and rounded to the input's dtype.
// Construction: Create(options[, rng]) starts at the identity (plus
// parameter noise of scale options.noise for GeneralizedCalibration);
// Create(a, c) / Create(A, c) take explicit values. All return
// InvalidArgument naming the problem (n < 2, negative or non-finite noise,
// bad values as listed below).
#ifndef FLOWTAPE_MANIFOLDS_CALIBRATION_H_
#define FLOWTAPE_MANIFOLDS_CALIBRATION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "Eigen/Dense"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flows/flow.h"
#include "manifolds/invertible_matrix.h"

namespace flowtape::manifolds {

struct SimplexCalibrationOptions {
  int64_t n = 2;                  // classes, >= 2
  bool temperature_only = false;  // c fixed at 0
  absl::Status Validate() const;  // InvalidArgument unless n >= 2
};

class SimplexCalibration : public flows::Flow {
 public:
  // Identity map (a = 1, c = 0).
  static absl::StatusOr<std::shared_ptr<SimplexCalibration>> Create(
      const SimplexCalibrationOptions& options);
  // a != 0 finite; c finite, its size is n >= 2 (pass n zeros for
  // temperature scaling; an empty c is InvalidArgument).
  static absl::StatusOr<std::shared_ptr<SimplexCalibration>> Create(
      double a, const std::vector<double>& c, bool temperature_only = false);

  flows::FlowResult Forward(const Tensor& p, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  flows::FlowResult Inverse(const Tensor& q, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  std::string name() const override { return "SimplexCalibration"; }
  double a() const;
  Tensor c() const { return c_; }

 private:
  explicit SimplexCalibration(const SimplexCalibrationOptions& options);
  int64_t n_;
  double sign_ = 1.0;
  Tensor log_abs_a_, c_;
};

struct GeneralizedCalibrationOptions {
  int64_t n = 2;       // classes, >= 2
  double noise = 0.0;  // parameter noise scale (0 = identity), finite, >= 0
  absl::Status Validate() const;
};

class GeneralizedCalibration : public flows::Flow {
 public:
  // Identity plus parameter noise of scale options.noise.
  static absl::StatusOr<std::shared_ptr<GeneralizedCalibration>> Create(
      const GeneralizedCalibrationOptions& options, Rng& rng);
  // A with A 1 = lambda 1 (relative tolerance 1e-9), lambda > 0, det A != 0.
  static absl::StatusOr<std::shared_ptr<GeneralizedCalibration>> Create(
      const Eigen::MatrixXd& a, const Eigen::VectorXd& c);

  flows::FlowResult Forward(const Tensor& p, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  flows::FlowResult Inverse(const Tensor& q, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  std::string name() const override { return "GeneralizedCalibration"; }

  Tensor A() const;  // [n, n], differentiable in the parameters
  double lambda() const;
  Eigen::MatrixXd AValue() const;
  Eigen::VectorXd CValue() const;

 private:
  GeneralizedCalibration(const GeneralizedCalibrationOptions& options,
                         Rng& rng);
  GeneralizedCalibration(int64_t n, std::shared_ptr<InvertibleMatrix> k,
                         double log_lambda, const Eigen::VectorXd& c);
  int64_t n_;
  Tensor basis_;  // [n, n-1] V, buffer
  std::shared_ptr<InvertibleMatrix> k_;
  Tensor log_lambda_, c_;
};

// Orthonormal basis of the complement of 1 in R^n (Helmert), n x (n-1).
Eigen::MatrixXd OnesComplementBasis(int64_t n);

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_CALIBRATION_H_

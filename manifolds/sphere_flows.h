// Normalized flows on the sphere S^(n-1) (flows::Flow on unit rows [N, n]).
//
// NormalizedAffine:  y = (M x + c) / ||M x + c||,  ||M^-1 c|| < 1.
//   With b = M^-1 c this is y = M(x + b) / ||M(x + b)||, and
//   log R(x) = log|det M| + log(1 + x.b) - n log||M(x + b)||.
//   Inverse: x = s M^-1 y - b with s > 0 the root of ||x|| = 1:
//     a = y' W y (W = (M M')^-1),  beta = b' M^-1 y,
//     s = (beta + sqrt(beta^2 + a (1 - b.b))) / a    (= rho in x = M^-1(rho y -
//     c)).
// NormalizedTranslation (M = I):  y = (x + c)/||x + c||, ||c|| < 1,
//   log R = log(1 + x.c) - n log||x + c||,  x = rho y - c,
//   rho = y.c + sqrt((y.c)^2 + 1 - c.c).
// NormalizedLinear (c = 0):  y = M x/||M x||,  log R = log|det M| - n
// log||Mx||.
//   It pushes the uniform density to the angular central Gaussian with
//   Sigma = M M' (sphere_densities.h).
//
// Parametrisation (invertible for every parameter value): M is an
// InvertibleMatrix (PLU), b = w / sqrt(1 + ||w||^2) with w free, so
// ||b|| < 1 always. Create(options, rng) starts at the identity plus noise
// of scale options.noise on every parameter (InvalidArgument unless n >= 2
// and noise is finite and >= 0); Create(M, c) takes M and c directly and
// returns a Status when M is singular or ||M^-1 c|| >= 1.
// Direction (flow.h): Forward(x) = (f(x), log R_f(x)); Inverse(y) =
// (f^-1(y), -log R_f(f^-1(y))). Inverse uses the current M^-1 as a constant
// (gradients flow to its input, not to the parameters), computed in double
// and rounded to the input's dtype. MValue/CValue are double in either dtype.
#ifndef FLOWTAPE_MANIFOLDS_SPHERE_FLOWS_H_
#define FLOWTAPE_MANIFOLDS_SPHERE_FLOWS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "Eigen/Dense"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flows/flow.h"
#include "manifolds/invertible_matrix.h"

namespace flowtape::manifolds {

// Options of NormalizedAffine, NormalizedTranslation and NormalizedLinear.
struct NormalizedAffineOptions {
  int64_t n = 3;       // rows on S^(n-1) in R^n
  double noise = 0.0;  // scale of the noise on every parameter (0: identity)
  // InvalidArgument unless n >= 2 and noise is finite and >= 0.
  absl::Status Validate() const;
};

class NormalizedAffine : public flows::Flow {
 public:
  enum class Kind { kAffine, kTranslation, kLinear };
  static absl::StatusOr<std::shared_ptr<NormalizedAffine>> Create(
      const NormalizedAffineOptions& options, Rng& rng);
  static absl::StatusOr<std::shared_ptr<NormalizedAffine>> Create(
      const Eigen::MatrixXd& m, const Eigen::VectorXd& c);

  flows::FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  flows::FlowResult Inverse(const Tensor& y, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  std::string name() const override;

  Tensor M() const;  // [n, n] (identity for kTranslation)
  Tensor B() const;  // [n] = M^-1 c (zeros for kLinear)
  Eigen::MatrixXd MValue() const;
  Eigen::VectorXd CValue() const;  // c = M b

 protected:
  // Validated options.
  NormalizedAffine(const NormalizedAffineOptions& options, Rng& rng, Kind kind);
  NormalizedAffine(int64_t n, Kind kind) : n_(n), kind_(kind) {}
  int64_t n_;
  Kind kind_;
  std::shared_ptr<InvertibleMatrix> m_;  // unset for kTranslation
  Tensor w_;                             // undefined for kLinear
};

class NormalizedTranslation : public NormalizedAffine {
 public:
  static absl::StatusOr<std::shared_ptr<NormalizedTranslation>> Create(
      const NormalizedAffineOptions& options, Rng& rng);
  // ||c|| < 1.
  static absl::StatusOr<std::shared_ptr<NormalizedTranslation>> Create(
      const Eigen::VectorXd& c);

 private:
  NormalizedTranslation(const NormalizedAffineOptions& options, Rng& rng)
      : NormalizedAffine(options, rng, Kind::kTranslation) {}
  explicit NormalizedTranslation(int64_t n)
      : NormalizedAffine(n, Kind::kTranslation) {}
};

class NormalizedLinear : public NormalizedAffine {
 public:
  static absl::StatusOr<std::shared_ptr<NormalizedLinear>> Create(
      const NormalizedAffineOptions& options, Rng& rng);
  // M invertible.
  static absl::StatusOr<std::shared_ptr<NormalizedLinear>> Create(
      const Eigen::MatrixXd& m);

 private:
  NormalizedLinear(const NormalizedAffineOptions& options, Rng& rng)
      : NormalizedAffine(options, rng, Kind::kLinear) {}
  explicit NormalizedLinear(int64_t n) : NormalizedAffine(n, Kind::kLinear) {}
};

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_SPHERE_FLOWS_H_

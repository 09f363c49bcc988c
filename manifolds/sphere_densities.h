// Densities on the sphere S^(n-1) w.r.t. surface area.
//
// UniformSphere:   log p = -log|S^(n-1)|,  |S^(n-1)| = 2 pi^(n/2) / Gamma(n/2).
// AngularCentralGaussian(Sigma), Sigma symmetric positive definite:
//   log p(x) = -log|S^(n-1)| - 0.5 log det Sigma - (n/2) log(x' Sigma^-1 x);
//   sample: z ~ N(0, Sigma), x = z / ||z||.
// VonMisesFisher(mu, kappa), ||mu|| = 1, kappa >= 0:
//   log p(x) = log C_n(kappa) + kappa mu.x,
//   log C_n(kappa) = (n/2 - 1) log kappa - (n/2) log(2 pi) - log
//   I_(n/2-1)(kappa) (LogVmfNormalizer; the exact S^2 form
//   log(kappa / (2 pi (1 - exp(-2 kappa)))) - kappa for n = 3); sample:
//   Wood (1994) rejection sampler for w = mu.x, uniform tangent part.
// LogBesselI(v, x) = log I_v(x) for all v >= 0, x >= 0, without over- or
// underflow: the uniform (Debye) expansion for v >= 50, the power series in
// log form (log1p of its tail) for x^2/4 <= v + 1, the large-argument
// (Hankel) series for x >= 700, and Boost's cyl_bessel_i in between.
// Accuracy: absolute error <= ~2e-14 max(1, |log I_v(x)|) everywhere
// (tests: 2e-14; measured <= 5e-16 against 80-digit series on v in {0, 0.5,
// 1, 2, 5, 20, 49.5}, x in [1e-10, 1e3]). That is ~1e-14 relative wherever
// |log I_v(x)| >= 1, and also for v = 0 at any x (log I_0(x) ~ x^2/4 keeps
// its digits: 2.5e-17 at x = 1e-8). For v > 0, log I_v(x) passes through
// 0 where I_v(x) = 1; near that point only the absolute bound holds.
// Create() rejects bad parameters with a Status (UniformSphere: n < 2); it
// is the only way to build them (a constant n: Create(n).value()).
#ifndef FLOWTAPE_MANIFOLDS_SPHERE_DENSITIES_H_
#define FLOWTAPE_MANIFOLDS_SPHERE_DENSITIES_H_

#include <cstdint>
#include <memory>
#include <string>

#include "Eigen/Dense"
#include "absl/status/statusor.h"
#include "manifolds/density.h"

namespace flowtape::manifolds {

class UniformSphere : public ManifoldDensity {
 public:
  static absl::StatusOr<std::shared_ptr<UniformSphere>> Create(int64_t n);
  Tensor LogProb(const Tensor& x) const override;
  Tensor Sample(int64_t num, Rng& rng) const override;
  std::string name() const override { return "UniformSphere"; }

 private:
  explicit UniformSphere(int64_t n) : ManifoldDensity(Manifold::Sphere(n)) {}
};

class AngularCentralGaussian : public ManifoldDensity {
 public:
  static absl::StatusOr<std::shared_ptr<AngularCentralGaussian>> Create(
      const Eigen::MatrixXd& sigma);
  Tensor LogProb(const Tensor& x) const override;
  Tensor Sample(int64_t num, Rng& rng) const override;
  std::string name() const override { return "AngularCentralGaussian"; }

 private:
  explicit AngularCentralGaussian(const Eigen::MatrixXd& sigma);
  Eigen::MatrixXd chol_;  // lower Cholesky factor of Sigma
  Tensor precision_;      // Sigma^-1, buffer
  double log_norm_;
};

class VonMisesFisher : public ManifoldDensity {
 public:
  static absl::StatusOr<std::shared_ptr<VonMisesFisher>> Create(
      const Eigen::VectorXd& mu, double kappa);
  Tensor LogProb(const Tensor& x) const override;
  Tensor Sample(int64_t num, Rng& rng) const override;
  std::string name() const override { return "VonMisesFisher"; }

 private:
  VonMisesFisher(const Eigen::VectorXd& mu, double kappa);
  Eigen::VectorXd mu_;
  Tensor mu_row_;  // [1, n], buffer
  double kappa_, log_c_;
};

// log C_n(kappa) of the von Mises-Fisher density on S^(n-1).
double LogVmfNormalizer(int64_t n, double kappa);
// log I_v(x) for v >= 0, x >= 0 (see above); log I_v(0) = -inf for v > 0.
double LogBesselI(double v, double x);

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_SPHERE_DENSITIES_H_

#include "manifolds/sphere_densities.h"

#include <cmath>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/eigen.h"
#include "autodiff/ops.h"

namespace flowtape::manifolds {

// ---- uniform ----
Tensor UniformSphere::LogProb(const Tensor& x) const {
  return Tensor::Full({x.dim(0)}, -manifold().LogVolume());
}
Tensor UniformSphere::Sample(int64_t num, Rng& rng) const {
  return manifold().SampleUniform(num, rng);
}

// ---- angular central Gaussian ----
absl::StatusOr<std::unique_ptr<AngularCentralGaussian>>
AngularCentralGaussian::Create(const Eigen::MatrixXd& sigma) {
  if (sigma.rows() < 2 || sigma.cols() != sigma.rows() || !sigma.allFinite())
    return absl::InvalidArgumentError(
        "AngularCentralGaussian: Sigma must be a finite n x n matrix, n >= 2");
  if ((sigma - sigma.transpose()).cwiseAbs().maxCoeff() >
      1e-10 * sigma.cwiseAbs().maxCoeff())
    return absl::InvalidArgumentError(
        "AngularCentralGaussian: Sigma must be symmetric");
  if (sigma.llt().info() != Eigen::Success)
    return absl::InvalidArgumentError(
        "AngularCentralGaussian: Sigma must be positive definite");
  return std::unique_ptr<AngularCentralGaussian>(
      new AngularCentralGaussian(sigma));
}

AngularCentralGaussian::AngularCentralGaussian(const Eigen::MatrixXd& sigma)
    : ManifoldDensity(Manifold::Sphere(sigma.rows())) {
  Eigen::LLT<Eigen::MatrixXd> llt(sigma);
  chol_ = llt.matrixL();
  precision_ = FromMatrix(
      llt.solve(Eigen::MatrixXd::Identity(sigma.rows(), sigma.rows())));
  log_norm_ = -manifold().LogVolume() -
              chol_.diagonal().array().log().sum();  // -0.5 log det Sigma
}

Tensor AngularCentralGaussian::LogProb(const Tensor& x) const {
  Tensor quad = Sum(MatMul(x, precision_) * x, 1);
  return log_norm_ - 0.5 * manifold().ambient() * Log(quad);
}

Tensor AngularCentralGaussian::Sample(int64_t num, Rng& rng) const {
  const int64_t n = manifold().ambient();
  Eigen::MatrixXd rows(num, n);
  for (int64_t i = 0; i < num; ++i) {
    Eigen::VectorXd g(n);
    for (int64_t j = 0; j < n; ++j) g[j] = rng.Normal();
    Eigen::VectorXd z = chol_ * g;
    rows.row(i) = z.transpose() / z.norm();
  }
  return FromRows(rows);
}

// ---- von Mises-Fisher ----
double LogBesselI(double v, double x) {
  if (x == 0.0) return v == 0.0 ? 0.0 : -INFINITY;
  if (x <= 500.0) return std::log(std::cyl_bessel_i(v, x));
  // Large argument: I_v(x) = e^x / sqrt(2 pi x) sum_k (-1)^k a_k / x^k,
  // a_k = prod_{j<=k} (4 v^2 - (2j - 1)^2) / (k! 8^k).
  const double mu = 4.0 * v * v;
  double term = 1.0, sum = 1.0;
  for (int k = 1; k <= 12; ++k) {
    term *= -(mu - (2.0 * k - 1) * (2.0 * k - 1)) / (k * 8.0 * x);
    sum += term;
  }
  return x - 0.5 * std::log(2.0 * M_PI * x) + std::log(sum);
}

double LogVmfNormalizer(int64_t n, double kappa) {
  const double h = 0.5 * static_cast<double>(n);
  if (kappa < 1e-10) return -Manifold::Sphere(n).LogVolume();
  if (n == 3)
    return std::log(kappa) - std::log(2.0 * M_PI) - kappa -
           std::log1p(-std::exp(-2.0 * kappa));
  return (h - 1.0) * std::log(kappa) - h * std::log(2.0 * M_PI) -
         LogBesselI(h - 1.0, kappa);
}

absl::StatusOr<std::unique_ptr<VonMisesFisher>> VonMisesFisher::Create(
    const Eigen::VectorXd& mu, double kappa) {
  if (mu.size() < 2 || !mu.allFinite() || std::abs(mu.norm() - 1.0) > 1e-9)
    return absl::InvalidArgumentError(
        "VonMisesFisher: mu must be a finite unit vector of size >= 2");
  if (!(kappa >= 0.0) || !std::isfinite(kappa))
    return absl::InvalidArgumentError(absl::StrCat(
        "VonMisesFisher: kappa must be finite and >= 0, got ", kappa));
  return std::unique_ptr<VonMisesFisher>(new VonMisesFisher(mu, kappa));
}

VonMisesFisher::VonMisesFisher(const Eigen::VectorXd& mu, double kappa)
    : ManifoldDensity(Manifold::Sphere(mu.size())),
      mu_(mu),
      kappa_(kappa),
      log_c_(LogVmfNormalizer(mu.size(), kappa)) {}

Tensor VonMisesFisher::LogProb(const Tensor& x) const {
  const int64_t n = mu_.size();
  Tensor mu = Tensor::FromVector(
      {1, n}, std::vector<double>(mu_.data(), mu_.data() + n));
  return log_c_ + kappa_ * Sum(x * mu, 1);
}

Tensor VonMisesFisher::Sample(int64_t num, Rng& rng) const {
  const int64_t n = mu_.size();
  const double d = static_cast<double>(n - 1);
  // Wood (1994): w = mu.x by rejection from a Beta((n-1)/2, (n-1)/2) proposal.
  const double b =
      d / (2.0 * kappa_ + std::sqrt(4.0 * kappa_ * kappa_ + d * d));
  const double x0 = (1.0 - b) / (1.0 + b);
  const double c = kappa_ * x0 + d * std::log(1.0 - x0 * x0);
  std::gamma_distribution<double> gamma(0.5 * d, 1.0);
  Eigen::MatrixXd rows(num, n);
  for (int64_t i = 0; i < num; ++i) {
    double w;
    while (true) {
      const double g1 = gamma(rng.engine()), g2 = gamma(rng.engine());
      const double z = g1 / (g1 + g2);
      w = (1.0 - (1.0 + b) * z) / (1.0 - (1.0 - b) * z);
      const double u = rng.Uniform();
      if (kappa_ * w + d * std::log(1.0 - x0 * w) - c >= std::log(u)) break;
    }
    Eigen::VectorXd v(n);
    do {
      for (int64_t j = 0; j < n; ++j) v[j] = rng.Normal();
      v -= v.dot(mu_) * mu_;
    } while (v.norm() < 1e-12);
    v.normalize();
    rows.row(i) =
        (w * mu_ + std::sqrt(std::max(0.0, 1.0 - w * w)) * v).transpose();
  }
  return FromRows(rows);
}

}  // namespace flowtape::manifolds

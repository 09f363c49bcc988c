#include "manifolds/sphere_densities.h"

#include <boost/math/special_functions/bessel.hpp>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/eigen.h"
#include "autodiff/ops.h"

namespace flowtape::manifolds {

// ---- uniform ----
absl::StatusOr<std::shared_ptr<UniformSphere>> UniformSphere::Create(
    int64_t n) {
  if (n < 2)
    return absl::InvalidArgumentError(absl::StrCat(
        "UniformSphere: n = ", n, " must be >= 2 (the sphere S^(n-1) in R^n)"));
  return std::shared_ptr<UniformSphere>(new UniformSphere(n));
}

Tensor UniformSphere::LogProb(const Tensor& x) const {
  return Tensor::Full({x.dim(0)}, -manifold().LogVolume(), x.dtype());
}
Tensor UniformSphere::Sample(int64_t num, Rng& rng) const {
  return manifold().SampleUniform(num, rng);
}

// ---- angular central Gaussian ----
absl::StatusOr<std::shared_ptr<AngularCentralGaussian>>
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
  return std::shared_ptr<AngularCentralGaussian>(
      new AngularCentralGaussian(sigma));
}

AngularCentralGaussian::AngularCentralGaussian(const Eigen::MatrixXd& sigma)
    : ManifoldDensity(Manifold::Sphere(sigma.rows())) {
  Eigen::LLT<Eigen::MatrixXd> llt(sigma);
  chol_ = llt.matrixL();
  precision_ = RegisterBuffer(
      "precision", FromMatrix(llt.solve(
                       Eigen::MatrixXd::Identity(sigma.rows(), sigma.rows()))));
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
  return FromRows(rows, dtype());
}

// ---- von Mises-Fisher ----
namespace {

// Coefficients (in p) of the Debye polynomials U_0 .. U_K:
//   U_0 = 1,  U_(k+1)(p) = p^2 (1 - p^2) U_k'(p) / 2
//                          + (1/8) int_0^p (1 - 5 t^2) U_k(t) dt.
constexpr int kDebyeTerms = 10;
const std::vector<std::vector<double>>& DebyePolynomials() {
  static const auto* u = [] {
    auto* u = new std::vector<std::vector<double>>{{1.0}};
    for (int k = 0; k < kDebyeTerms; ++k) {
      const std::vector<double>& a = u->back();
      std::vector<double> b(a.size() + 3, 0.0);
      for (size_t i = 1; i < a.size(); ++i) {  // p^2 (1 - p^2) i a_i p^(i-1)
        b[i + 1] += 0.5 * i * a[i];
        b[i + 3] -= 0.5 * i * a[i];
      }
      for (size_t i = 0; i < a.size(); ++i) {  // (1/8) int (a_i t^i - 5 ...)
        b[i + 1] += a[i] / (8.0 * (i + 1));
        b[i + 3] -= 5.0 * a[i] / (8.0 * (i + 3));
      }
      u->push_back(b);
    }
    return u;
  }();
  return *u;
}

// Uniform (Debye) expansion for large v, any x > 0 (Abramowitz & Stegun
// 9.7.7): with z = x / v, s = sqrt(1 + z^2), p = 1 / s,
//   I_v(v z) ~ e^(v eta) / (sqrt(2 pi v) s^(1/2)) sum_k U_k(p) / v^k,
//   eta = s + log(z / (1 + s)).  Relative error ~ U_11(p) / v^11.
double LogBesselIDebye(double v, double x) {
  const double z = x / v, s = std::sqrt(1.0 + z * z), p = 1.0 / s;
  const double eta = s + std::log(z / (1.0 + s));
  double sum = 0.0, vk = 1.0;
  for (const std::vector<double>& u : DebyePolynomials()) {
    double uk = 0.0;
    for (size_t i = u.size(); i-- > 0;) uk = uk * p + u[i];
    sum += uk / vk;
    vk *= v;
  }
  return v * eta - 0.5 * std::log(2.0 * M_PI * v) - 0.5 * std::log(s) +
         std::log(sum);
}

// Power series, for x^2 / 4 <= v + 1 (term ratio <= 1 / (k + 1)):
//   I_v(x) = (x/2)^v / Gamma(v+1) (1 + t),
//   t = sum_(k>=1) (x^2/4)^k / (k! (v+1)_k),
// and log(1 + t) as log1p(t): for v = 0 and small x, log I_0(x) ~ x^2 / 4
// keeps its relative accuracy (log(1 + t) would round 1 + t first).
double LogBesselISeries(double v, double x) {
  const double q = 0.25 * x * x;
  double term = 1.0, tail = 0.0;
  for (int k = 1; k < 200 && term > 1e-17 * (1.0 + tail); ++k) {
    term *= q / (k * (v + k));
    tail += term;
  }
  const double lead =
      v == 0.0 ? 0.0 : v * std::log(0.5 * x) - std::lgamma(v + 1.0);
  return lead + std::log1p(tail);
}

// Large argument (Hankel), for x >= 700 and v < 50:
//   I_v(x) ~ e^x / sqrt(2 pi x) sum_k (-1)^k a_k(v) / x^k,
//   a_k = prod_(j<=k) (4 v^2 - (2j - 1)^2) / (k! 8^k).
// The term ratios (4 v^2 - (2k - 1)^2) / (8 k x) exceed 1 in size only for
// the first k (when 4 v^2 > 8 x, at most 1.8 here) and again for k > ~2x
// (the divergent tail, never reached: the terms drop below 1e-17 first).
double LogBesselIHankel(double v, double x) {
  const double mu = 4.0 * v * v;
  double term = 1.0, sum = 1.0;
  for (int k = 1; k < 400; ++k) {
    const double odd = (2.0 * k - 1) * (2.0 * k - 1);
    const double ratio = (mu - odd) / (k * 8.0 * x);
    if (odd > mu && std::fabs(ratio) >= 1.0) break;  // divergent tail
    term *= -ratio;
    sum += term;
    if (std::fabs(term) < 1e-17 * std::fabs(sum)) break;
  }
  return x - 0.5 * std::log(2.0 * M_PI * x) + std::log(sum);
}

}  // namespace

double LogBesselI(double v, double x) {
  if (x == 0.0) return v == 0.0 ? 0.0 : -INFINITY;
  if (v >= 50.0) return LogBesselIDebye(v, x);
  if (0.25 * x * x <= v + 1.0) return LogBesselISeries(v, x);
  if (x >= 700.0) return LogBesselIHankel(v, x);
  // v < 50, 2 sqrt(v + 1) < x < 700: 1e-3 < I_v(x) < e^700, no under- or
  // overflow, Boost's implementation is accurate to a few ulps.
  return std::log(boost::math::cyl_bessel_i(v, x));
}

double LogVmfNormalizer(int64_t n, double kappa) {
  const double h = 0.5 * static_cast<double>(n);
  if (kappa < 1e-10) return -Manifold::Sphere(n).LogVolume();
  // log(1 - e^(-2 kappa)) as log(-expm1(-2 kappa)): log1p(-exp(-2 kappa))
  // rounds exp(-2 kappa) ~ 1 - 2 kappa first and loses digits for small
  // kappa.
  if (n == 3)
    return std::log(kappa) - std::log(2.0 * M_PI) - kappa -
           std::log(-std::expm1(-2.0 * kappa));
  return (h - 1.0) * std::log(kappa) - h * std::log(2.0 * M_PI) -
         LogBesselI(h - 1.0, kappa);
}

absl::StatusOr<std::shared_ptr<VonMisesFisher>> VonMisesFisher::Create(
    const Eigen::VectorXd& mu, double kappa) {
  if (mu.size() < 2 || !mu.allFinite() || std::abs(mu.norm() - 1.0) > 1e-9)
    return absl::InvalidArgumentError(
        "VonMisesFisher: mu must be a finite unit vector of size >= 2");
  if (!(kappa >= 0.0) || !std::isfinite(kappa))
    return absl::InvalidArgumentError(absl::StrCat(
        "VonMisesFisher: kappa must be finite and >= 0, got ", kappa));
  return std::shared_ptr<VonMisesFisher>(new VonMisesFisher(mu, kappa));
}

VonMisesFisher::VonMisesFisher(const Eigen::VectorXd& mu, double kappa)
    : ManifoldDensity(Manifold::Sphere(mu.size())),
      mu_(mu),
      kappa_(kappa),
      log_c_(LogVmfNormalizer(mu.size(), kappa)) {
  mu_row_ = RegisterBuffer("mu", FromRows(mu.transpose()));
}

Tensor VonMisesFisher::LogProb(const Tensor& x) const {
  return log_c_ + kappa_ * Sum(x * mu_row_, 1);
}

Tensor VonMisesFisher::Sample(int64_t num, Rng& rng) const {
  const int64_t n = mu_.size();
  const double d = static_cast<double>(n - 1);
  // Wood (1994): w = mu.x by rejection from a Beta((n-1)/2, (n-1)/2) proposal.
  const double b =
      d / (2.0 * kappa_ + std::sqrt(4.0 * kappa_ * kappa_ + d * d));
  const double x0 = (1.0 - b) / (1.0 + b);
  const double c = kappa_ * x0 + d * std::log(1.0 - x0 * x0);
  Eigen::MatrixXd rows(num, n);
  for (int64_t i = 0; i < num; ++i) {
    double w;
    while (true) {
      const double g1 = rng.Gamma(0.5 * d), g2 = rng.Gamma(0.5 * d);
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
  return FromRows(rows, dtype());
}

}  // namespace flowtape::manifolds

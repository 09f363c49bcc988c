#include "manifolds/dirichlet.h"

#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "autodiff/ops.h"

namespace flowtape::manifolds {

absl::StatusOr<std::shared_ptr<Dirichlet>> Dirichlet::Create(
    const std::vector<double>& alpha) {
  if (alpha.size() < 2)
    return absl::InvalidArgumentError("Dirichlet: needs >= 2 concentrations");
  for (double a : alpha)
    if (!(a > 0.0) || !std::isfinite(a))
      return absl::InvalidArgumentError(
          "Dirichlet: concentrations must be finite and > 0");
  return std::shared_ptr<Dirichlet>(new Dirichlet(alpha));
}

Dirichlet::Dirichlet(const std::vector<double>& alpha)
    : ManifoldDensity(Manifold::Simplex(alpha.size())), alpha_(alpha) {
  double total = 0.0;
  log_norm_ = 0.0;
  for (double a : alpha) {
    total += a;
    log_norm_ -= std::lgamma(a);
  }
  log_norm_ += std::lgamma(total);
  std::vector<double> am1(alpha.size());
  for (size_t i = 0; i < alpha.size(); ++i) am1[i] = alpha[i] - 1.0;
  alpha_minus_one_ = RegisterBuffer(
      "alpha_minus_one",
      Tensor::FromVector({1, static_cast<int64_t>(alpha.size())}, am1));
}

Tensor Dirichlet::LogProb(const Tensor& x) const {
  return log_norm_ + Sum(Log(x) * alpha_minus_one_, 1);
}

Tensor Dirichlet::Sample(int64_t num, Rng& rng) const {
  const int64_t n = alpha_.size();
  std::vector<double> p(num * n);
  for (int64_t i = 0; i < num; ++i) {
    double total = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      p[i * n + j] = rng.Gamma(alpha_[j]);
      total += p[i * n + j];
    }
    for (int64_t j = 0; j < n; ++j) p[i * n + j] /= total;
  }
  return Tensor::FromVector({num, n}, p, dtype());
}

}  // namespace flowtape::manifolds

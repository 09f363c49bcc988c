// Dirichlet(alpha) on the simplex Delta^(n-1), w.r.t. the flat measure
// dx_1 ... dx_(n-1):
//   log p(x) = lgamma(sum alpha) - sum lgamma(alpha_i) + sum (alpha_i - 1) log
//   x_i.
// Sample: g_i ~ Gamma(alpha_i, 1), x = g / sum(g). alpha = 1 is uniform.
#ifndef FLOWTAPE_MANIFOLDS_DIRICHLET_H_
#define FLOWTAPE_MANIFOLDS_DIRICHLET_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "manifolds/density.h"

namespace flowtape::manifolds {

class Dirichlet : public ManifoldDensity {
 public:
  // alpha_i > 0, at least two entries.
  static absl::StatusOr<std::shared_ptr<Dirichlet>> Create(
      const std::vector<double>& alpha);
  Tensor LogProb(const Tensor& x) const override;
  Tensor Sample(int64_t num, Rng& rng) const override;
  std::string name() const override { return "Dirichlet"; }

 private:
  explicit Dirichlet(const std::vector<double>& alpha);
  std::vector<double> alpha_;
  Tensor alpha_minus_one_;  // [1, n], buffer
  double log_norm_;
};

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_DIRICHLET_H_

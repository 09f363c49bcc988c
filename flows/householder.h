// Householder flow (Tomczak & Welling 2016), on vectors [N, D]: a product of
// K learnable reflections, volume preserving.
//
//   H_k = I - 2 v_k v_k^T / |v_k|^2       (symmetric, orthogonal, H_k^-1 = H_k)
// The paper applies z_k = H_k z_{k-1} in the generative / posterior
// direction, so (as planar and Sylvester flows) that is flowtape's Inverse:
//   Inverse(z):  x = H_K ... H_2 H_1 z,       logdet = 0
//   Forward(x):  z = H_1 H_2 ... H_K x,       logdet = 0   (reversed product)
// Parameters: v [K, D] (row k is v_k, any nonzero vector; only its direction
// matters). With a standard normal base alone the NLL does not depend on v
// (the base is rotation invariant): the flow is meant to follow a
// non-isotropic step (a diagonal scaling gives a full-covariance Gaussian, as
// in the paper's VAE posterior) or to build Q of a Sylvester flow.
// The context is ignored.
#ifndef FLOWTAPE_FLOWS_HOUSEHOLDER_H_
#define FLOWTAPE_FLOWS_HOUSEHOLDER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "flows/flow.h"

namespace flowtape::flows {

// Rows x_n [N, D] mapped to (H_K ... H_1 x_n)^T, or with `transposed` to
// (H_1 ... H_K x_n)^T; v [K, D]. Differentiable in x and v.
Tensor ReflectRows(const Tensor& x, const Tensor& v, bool transposed = false);

// The orthogonal [D, D] matrix H_K ... H_1 of v [K, D].
Tensor HouseholderProduct(const Tensor& v);

class Householder : public Flow {
 public:
  // K = reflections in R^d, v_k ~ N(0, I); InvalidArgument unless d, K >= 1.
  static absl::StatusOr<std::shared_ptr<Householder>> Create(
      int64_t d, int64_t reflections, Rng& rng);
  // Explicit v [K, D]: every row finite and nonzero.
  static absl::StatusOr<std::shared_ptr<Householder>> Create(const Tensor& v);

  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  std::string name() const override { return "householder"; }

  Tensor Matrix() const { return HouseholderProduct(v_); }  // x = Matrix() z

 private:
  Householder(int64_t d, int64_t k, Rng& rng);
  Tensor v_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_HOUSEHOLDER_H_

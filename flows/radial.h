// Radial flow (Rezende & Mohamed 2015), on vectors [N, D].
//
// The paper's generative map (flowtape's Inverse), around a centre z0:
//   r = |z - z0|,  h(r) = 1 / (alpha + r)
//   Inverse(z):  x = z + beta h(r) (z - z0)
//                logdet = (D - 1) log(1 + beta h) + log(1 + beta alpha h^2)
// with alpha = softplus(a) > 0 and beta = -alpha + softplus(b) > -alpha from
// free parameters a, b: then the radius map r -> R = r (1 + beta h(r)) is
// strictly increasing and the flow is invertible.
// Forward (data -> base): the 1-D root in r of r (1 + beta / (alpha + r)) = R,
// R = |x - z0|, is the positive root of the quadratic
//   r^2 + (alpha + beta - R) r - alpha R = 0,
// taken in closed form (the cancellation-free branch of the formula), so the
// inverse is analytic; then z = z0 + (x - z0) / (1 + beta h(r)) and
//   Forward logdet = -[(D - 1) log(1 + beta h) + log(1 + beta alpha h^2)]
// with h = h(r).
// The context is ignored.
#ifndef FLOWTAPE_FLOWS_RADIAL_H_
#define FLOWTAPE_FLOWS_RADIAL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "flows/flow.h"

namespace flowtape::flows {

class Radial : public Flow {
 public:
  // z0 ~ N(0, 1), alpha = 1, beta = 0 (identity) before training;
  // InvalidArgument unless d >= 1.
  static absl::StatusOr<std::shared_ptr<Radial>> Create(int64_t d, Rng& rng);
  // Explicit centre [D], alpha > 0 and beta > -alpha.
  static absl::StatusOr<std::shared_ptr<Radial>> Create(const Tensor& z0,
                                                        double alpha,
                                                        double beta);

  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  std::string name() const override { return "radial"; }

 private:
  Radial(int64_t d, Rng& rng);
  Tensor Alpha() const;
  Tensor Beta() const;
  Tensor z0_, alpha_raw_, beta_raw_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_RADIAL_H_

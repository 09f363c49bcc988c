// Scaling: NICE's diagonal scaling layer (Dinh et al. 2014), the one
// non-volume-preserving step of a NICE model. For any event shape E:
//   Forward(x):  z = x * exp(s),   logdet = sum(s)      (s learnable, shape E)
//   Inverse(z):  x = z * exp(-s),  logdet = -sum(s)
// Starts at s = 0 (identity).
#ifndef FLOWTAPE_FLOWS_SCALING_H_
#define FLOWTAPE_FLOWS_SCALING_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "flows/flow.h"

namespace flowtape::flows {

class Scaling : public Flow {
 public:
  // InvalidArgument unless the event shape has rank 1..3 and positive sizes.
  static absl::StatusOr<std::shared_ptr<Scaling>> Create(
      const Shape& event_shape);
  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  std::string name() const override { return "scaling"; }
  const Tensor& log_scale() const { return s_; }

 private:
  explicit Scaling(const Shape& event_shape);
  FlowResult Apply(const Tensor& x, double sign) const;
  Tensor s_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_SCALING_H_

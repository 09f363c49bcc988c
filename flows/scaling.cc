#include "flows/scaling.h"

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {

absl::StatusOr<std::shared_ptr<Scaling>> Scaling::Create(
    const Shape& event_shape) {
  bool ok = event_shape.rank() >= 1 && event_shape.rank() <= 3;
  for (int i = 0; ok && i < event_shape.rank(); ++i) ok = event_shape[i] >= 1;
  if (!ok)
    return absl::InvalidArgumentError(
        absl::StrCat("scaling: event shape ", event_shape.ToString(),
                     " must have rank 1..3 and positive sizes"));
  return std::shared_ptr<Scaling>(new Scaling(event_shape));
}

Scaling::Scaling(const Shape& event_shape) {
  s_ = RegisterParameter("log_scale", Tensor::Zeros(event_shape));
}

FlowResult Scaling::Apply(const Tensor& x, double sign) const {
  bool ok = x.rank() == s_.rank() + 1;
  for (int i = 0; ok && i < s_.rank(); ++i) ok = x.dim(i + 1) == s_.dim(i);
  FT_CHECK(ok, "scaling: input ", x.shape().ToString(), " vs event shape ",
           s_.shape().ToString());
  Tensor s = sign * s_;
  return {x * Exp(s), Tensor::Zeros({x.dim(0)}, x.dtype()) + Sum(s)};
}

FlowResult Scaling::Forward(const Tensor& x, const Tensor&, Rng*) const {
  return Apply(x, 1.0);
}

FlowResult Scaling::Inverse(const Tensor& z, const Tensor&, Rng*) const {
  return Apply(z, -1.0);
}

}  // namespace flowtape::flows

#include "manifolds/uniform_torus.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "manifolds/angle.h"

namespace flowtape::manifolds {

absl::StatusOr<std::shared_ptr<UniformTorus>> UniformTorus::Create(
    int64_t dims) {
  if (dims < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("uniform_torus: dims = ", dims, " must be >= 1"));
  return std::shared_ptr<UniformTorus>(new UniformTorus(dims));
}

UniformTorus::UniformTorus(int64_t dims) : flows::Distribution(Shape({dims})) {
  log_norm_ =
      RegisterBuffer("log_norm", Tensor::Scalar(-std::log(kTwoPi) * dims));
}

Tensor UniformTorus::LogProb(const Tensor& theta) const {
  CheckEvent("uniform_torus.log_prob", theta);
  return Tensor::Zeros({theta.dim(0)}, theta.dtype()) + log_norm_;
}

Tensor UniformTorus::Sample(int64_t num, Rng& rng) const {
  return WrapAngle(Tensor::Rand(BatchShape(num), rng, log_norm_.dtype()) *
                   kTwoPi);
}

}  // namespace flowtape::manifolds

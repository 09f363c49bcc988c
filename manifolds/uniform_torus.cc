#include "manifolds/uniform_torus.h"

#include <cmath>

#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "manifolds/angle.h"

namespace flowtape::manifolds {

UniformTorus::UniformTorus(int64_t dims) : flows::Distribution(Shape({dims})) {
  FT_CHECK(dims >= 1, "uniform_torus: needs dims >= 1, got ", dims);
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

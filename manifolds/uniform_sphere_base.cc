#include "manifolds/uniform_sphere_base.h"

#include <cmath>
#include <vector>

#include "autodiff/ops.h"

namespace flowtape::manifolds {

UniformSphereBase::UniformSphereBase() : flows::Distribution(Shape({3})) {
  log_norm_ = RegisterBuffer("log_norm", Tensor::Scalar(-std::log(4 * M_PI)));
}

Tensor UniformSphereBase::LogProb(const Tensor& x) const {
  CheckEvent("uniform_sphere.log_prob", x);
  return Tensor::Zeros({x.dim(0)}, x.dtype()) + log_norm_;
}

Tensor UniformSphereBase::Sample(int64_t num, Rng& rng) const {
  std::vector<double> v;
  v.reserve(3 * num);
  for (int64_t i = 0; i < num; ++i) {
    const double z = 2 * rng.Uniform() - 1, phi = 2 * M_PI * rng.Uniform();
    const double r = std::sqrt((1 - z) * (1 + z));
    v.insert(v.end(), {r * std::cos(phi), r * std::sin(phi), z});
  }
  return Tensor::FromVector(BatchShape(num), v, log_norm_.dtype());
}

}  // namespace flowtape::manifolds

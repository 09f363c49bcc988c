// UniformSphereBase: the uniform density on S^2 w.r.t. surface area as a
// flows::Distribution, the base of a flows::FlowModel whose flow maps S^2 to
// S^2 (RecursiveSphereFlow, for reverse-KL training through
// FlowModel::SampleWithLogProb), as UniformTorus is for the torus flows:
//   log p(x) = -log(4 pi),   Sample: z ~ U[-1, 1), phi ~ U[0, 2 pi),
//   x = (r cos phi, r sin phi, z), r = sqrt(1 - z^2)  (uniform by
//   Archimedes: dA = dz dphi).
// Event shape [3]; LogProb does not check that x lies on the sphere.
// dtype: a buffer ("log_norm") carries it, so Module::To converts the base
// with the flow; samples are drawn in double and cast.
#ifndef FLOWTAPE_MANIFOLDS_UNIFORM_SPHERE_BASE_H_
#define FLOWTAPE_MANIFOLDS_UNIFORM_SPHERE_BASE_H_

#include <cstdint>
#include <string>

#include "autodiff/tensor.h"
#include "flows/distribution.h"

namespace flowtape::manifolds {

class UniformSphereBase : public flows::Distribution {
 public:
  UniformSphereBase();
  Tensor LogProb(const Tensor& x) const override;       // [N, 3] -> [N]
  Tensor Sample(int64_t num, Rng& rng) const override;  // [num, 3]
  std::string name() const override { return "uniform_sphere"; }

 private:
  Tensor log_norm_;  // buffer: -log(4 pi)
};

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_UNIFORM_SPHERE_BASE_H_

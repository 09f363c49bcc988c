// ManifoldDensity: a probability density on a Manifold (manifold.h gives the
// reference measure: area on the sphere, flat coordinates on the simplex).
//   LogProb(x): [N, n] points -> [N] log-densities, differentiable in x and in
//               the density's parameters.
//   Sample(num, rng): [num, n] exact draws (constants).
//   TryLogProb(x), TrySample(num, rng): the same values, or the error that
//               made them NaN (a numeric inverse or ODE solve that failed in
//               a flow: ManifoldFlowModel, FlowMixture); the defaults never
//               fail. Code that scores data or samples a trained model calls
//               these, so a failure is an error rather than a silent NaN.
// dtype: LogProb computes in x's dtype (fixed tensors are buffers, so To
// converts them); Sample draws in double and returns dtype() (float64 for a
// density without tensors).
#ifndef FLOWTAPE_MANIFOLDS_DENSITY_H_
#define FLOWTAPE_MANIFOLDS_DENSITY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "manifolds/manifold.h"
#include "nn/module.h"

namespace flowtape::manifolds {

class ManifoldDensity : public nn::Module {
 public:
  explicit ManifoldDensity(Manifold m) : manifold_(m) {}
  virtual Tensor LogProb(const Tensor& x) const = 0;
  virtual Tensor Sample(int64_t num, Rng& rng) const = 0;
  virtual absl::StatusOr<Tensor> TryLogProb(const Tensor& x) const {
    return LogProb(x);
  }
  virtual absl::StatusOr<Tensor> TrySample(int64_t num, Rng& rng) const {
    return Sample(num, rng);
  }
  virtual std::string name() const = 0;
  const Manifold& manifold() const { return manifold_; }

 private:
  Manifold manifold_;
};

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_DENSITY_H_

// UniformTorus: the uniform density on the torus T^n = [0, 2 pi)^n w.r.t.
// the flat measure d theta_1 ... d theta_n, the base of the torus flows
// (torus_flows.h) inside a flows::FlowModel:
//   log p(theta) = -n log(2 pi),   Sample: theta_d = 2 pi u_d, u_d ~ U[0, 1)
// LogProb does not check that theta lies in [0, 2 pi)^n (the flows wrap
// their angles). dtype: a buffer ("log_norm") carries it, so Module::To
// converts the base with the flow. Create: InvalidArgument unless dims >= 1.
#ifndef FLOWTAPE_MANIFOLDS_UNIFORM_TORUS_H_
#define FLOWTAPE_MANIFOLDS_UNIFORM_TORUS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "flows/distribution.h"

namespace flowtape::manifolds {

class UniformTorus : public flows::Distribution {
 public:
  static absl::StatusOr<std::shared_ptr<UniformTorus>> Create(int64_t dims);
  Tensor LogProb(const Tensor& theta) const override;   // [N, n] -> [N]
  Tensor Sample(int64_t num, Rng& rng) const override;  // [num, n]
  std::string name() const override { return "uniform_torus"; }

 private:
  explicit UniformTorus(int64_t dims);
  Tensor log_norm_;  // buffer: -n log(2 pi)
};

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_UNIFORM_TORUS_H_

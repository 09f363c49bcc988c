// TorusFlow: flows on the torus T^n = [0, 2 pi)^n (Rezende et al. 2020)
// whose elementwise maps are the circle maps of circle_maps.h.
// Points are angles [N, n]; inputs are wrapped to [0, 2 pi), outputs lie in
// it. The density is w.r.t. the flat measure d theta_1 ... d theta_n (the
// uniform density is (2 pi)^-n).
//
// Structures (TorusFlowOptions::structure), f_d the circle map of angle d:
//   kElementwise:    theta'_d = f_d(theta_d; p_d), p_d free parameters
//                    (n = 1: a flow on the circle S^1)
//   kCoupling:       a = the first ceil(n/2) angles (the last ones if
//                    flip), b = the rest; theta'_a = theta_a,
//                    theta'_b = f(theta_b; net(feat(theta_a)))
//   kAutoregressive: theta'_d = f_d(theta_d; net_d(feat(theta_1..theta_(d-1))))
//                    (net_1 is a free parameter vector); the inverse runs
//                    d = 1..n in turn
// with feat(theta) = (cos theta, sin theta), so the conditioners are smooth
// and periodic in the conditioning angles. Nets are MLPs whose last layer
// starts at zero: a fresh flow is the identity.
// log-det (flow.h: Forward is data -> base): sum_d log f_d'(theta_d), since
// the Jacobian is triangular; Inverse returns minus the forward's at its
// output. A failed bisection (Moebius mixtures) sets FlowResult::status.
// float32 or float64 (Module::To).
#ifndef FLOWTAPE_MANIFOLDS_TORUS_FLOWS_H_
#define FLOWTAPE_MANIFOLDS_TORUS_FLOWS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flows/flow.h"
#include "manifolds/circle_maps.h"
#include "nn/layers.h"

namespace flowtape::manifolds {

enum class TorusStructure { kElementwise, kCoupling, kAutoregressive };

struct TorusFlowOptions {
  int64_t dims = 2;  // n
  TorusStructure structure = TorusStructure::kCoupling;
  bool flip = false;  // kCoupling
  CircleMapOptions map;
  std::vector<int64_t> hidden = {32, 32};
  nn::Activation activation = nn::Activation::kTanh;
  // InvalidArgument unless dims >= 1 (>= 2 for kCoupling), hidden sizes
  // >= 1 (at least one) and the map is valid.
  absl::Status Validate() const;
};

class TorusFlow : public flows::Flow {
 public:
  static absl::StatusOr<std::shared_ptr<TorusFlow>> Create(
      const TorusFlowOptions& options, Rng& rng);

  flows::FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  flows::FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  bool analytic_inverse() const override;
  // "torus_<structure>_<map>", e.g. torus_coupling_circle_spline.
  std::string name() const override;

 private:
  TorusFlowOptions o_;
  int64_t pass_begin_ = 0, pass_size_ = 0;  // kCoupling: the identity block
  Tensor free_;                             // [n, P] or [1, P]
  std::vector<std::shared_ptr<nn::MLP>> nets_;

  TorusFlow(const TorusFlowOptions& options, Rng& rng);
  void CheckInput(const char* op, const Tensor& x) const;
  // Circle-map parameters [N, m, P] from the conditioning angles [N, c].
  Tensor Params(int64_t net, const Tensor& angles, int64_t m) const;
};

// (cos theta, sin theta) features: [N, c] -> [N, 2c].
Tensor AngleFeatures(const Tensor& theta);

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_TORUS_FLOWS_H_

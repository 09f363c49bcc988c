// CylindricalCouplingFlow: a neural flow on S^2 whose density goes through the
// generic volume ratio (volume_ratio.h: LogVolumeRatio, the Gram form of
// |det(T_y' F_x T_x)| with F_x from the autodiff).
//
// In cylindrical coordinates x = (r cos phi, r sin phi, z), r = sqrt(1 - z^2):
//   1. z-coupling conditioned on the azimuth: with u = (z + 1)/2 and
//      t = logit(u),
//        u' = e sigmoid(t) + (1 - e) sum_k w_k sigmoid(s_k (t - m_k)),
//      (w = softmax(.), m, l) = MLP(cos phi, sin phi), s_k = 1 + softplus(l_k),
//      e = 0.05; z' = 2 u' - 1 (strictly increasing in z, onto (-1, 1)).
//   2. azimuth rotation conditioned on the new height: phi' = phi + theta(z'),
//      theta = MLP(z').
//   3. a fixed random rotation Q (so stacked layers use different poles);
//      a buffer ("rotation"), so checkpoints save and restore it.
//   y = Q (r' cos phi', r' sin phi', z'),  r' = 2 sqrt(u' (1 - u')).
// Computed with ops in the ambient R^3 (no atan2: cos phi = x_1 / r).
// Poles (z = +-1, r = 0, phi undefined): since s_k > 1, near a pole
// 1 - u' = e (1 - u) (1 + O(r^(2 min_k softplus(l_k)))), so the map extends
// continuously to y = Q (0, 0, +-1) and its tangent Jacobian tends to
// sqrt(e) times a rotation: R -> e there. The rate can be arbitrarily slow
// (softplus(l_k) -> 0), so do not rely on more than continuity at the pole.
// Numerically, t is formed from r (1 -+ z = r^2 / (1 +- z)) and r is
// regularised as sqrt(r^2 + 1e-60) (float32: sqrt(r^2 + 1e-36), a normal
// float), so values, R and gradients stay finite and accurate up to and at
// the poles (Forward gives log R = log e there).
// Starts as u' = e sigmoid(t) + (1 - e) sigmoid((1 + log 2) t), phi' = phi,
// then Q (zero last layers: w uniform, m = 0, l = 0).
// Forward(x) = (y, log R(x)) with the generic ratio; Inverse: theta from y,
// then the monotone z-map inverted by bisection on the smaller of u' and
// 1 - u' (full relative precision near the poles), in double for either
// dtype; analytic_inverse() false.
// Create(options, rng): K = options.components, MLPs of two hidden layers of
// options.hidden units; InvalidArgument unless both are >= 1.
#ifndef FLOWTAPE_MANIFOLDS_NEURAL_SPHERE_FLOW_H_
#define FLOWTAPE_MANIFOLDS_NEURAL_SPHERE_FLOW_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flows/flow.h"
#include "nn/layers.h"

namespace flowtape::manifolds {

struct CylindricalCouplingFlowOptions {
  int64_t components = 8;  // K
  int64_t hidden = 32;     // units per hidden layer of both MLPs
  // InvalidArgument unless components >= 1 and hidden >= 1.
  absl::Status Validate() const;
};

class CylindricalCouplingFlow : public flows::Flow {
 public:
  static absl::StatusOr<std::shared_ptr<CylindricalCouplingFlow>> Create(
      const CylindricalCouplingFlowOptions& options, Rng& rng);

  // The map itself (no log-det), [N, 3] -> [N, 3].
  Tensor Map(const Tensor& x) const;
  flows::FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  flows::FlowResult Inverse(const Tensor& y, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  bool analytic_inverse() const override { return false; }
  std::string name() const override { return "CylindricalCouplingFlow"; }

 private:
  CylindricalCouplingFlow(const CylindricalCouplingFlowOptions& options,
                          Rng& rng);
  int64_t k_;
  std::shared_ptr<nn::MLP> z_net_, phi_net_;
  Tensor rotation_;  // Q [3, 3], buffer
};

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_NEURAL_SPHERE_FLOW_H_

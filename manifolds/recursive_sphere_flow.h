// RecursiveSphereFlow: a neural flow on S^2 built from an interval spline
// for the height and a circle map for the azimuth (the recursive flow on S^D
// of Rezende et al. 2020, "Normalizing flows on tori and spheres", with
// D = 2 and the height conditioned on the azimuth as well).
//
// Cylindrical coordinates: x = (r cos phi, r sin phi, z), r = sqrt(1 - z^2),
// phi = wrap(atan2(x_2, x_1)) in [0, 2 pi). By Archimedes, surface area is
// dA = dz dphi, so for a map (z, phi) -> (z', phi') the volume ratio
// (volume_ratio.h) is |det d(z', phi') / d(z, phi)|. One layer:
//   1. z' = s(z; net_h(cos phi, sin phi)): the rational-quadratic spline of
//      flows/rq_spline.h on [-1, 1] (B = 1, end derivatives 1), given the
//      azimuth;
//   2. phi' = f(phi; net_a(z')): a circle map (circle_maps.h) given the new
//      height;
//   3. y = Q (r' cos phi', r' sin phi', z'),  r' = sqrt((1 - z')(1 + z')),
//      Q a fixed random rotation (a buffer, "rotation"; the identity when
//      `rotate` is false) so stacked layers use different poles.
// Steps 1 and 2 are each triangular in (z, phi), so
//   log R(x) = log s'(z) + log f'(phi)       (Forward's log-det, flow.h)
// in closed form. Inverse: undo Q, phi = f^-1(phi'; net_a(z')), then
// z = s^-1(z'; net_h(cos phi, sin phi)); its log-det is minus the forward's.
// Both nets are MLPs whose last layer starts at zero: a fresh layer is Q.
// Poles: phi is undefined at z = +-1 (atan2(0, 0) = 0 is used; gradients
// there are NaN). The map extends continuously to the poles (s fixes +-1),
// and R stays bounded there (s' = 1 at +-1, f' bounded), but R need not be
// continuous at a pole: f'(phi) depends on the direction of approach. The
// poles have measure zero, so densities are unaffected.
// float32 or float64 (Module::To); a failed bisection (Moebius mixtures)
// sets FlowResult::status.
#ifndef FLOWTAPE_MANIFOLDS_RECURSIVE_SPHERE_FLOW_H_
#define FLOWTAPE_MANIFOLDS_RECURSIVE_SPHERE_FLOW_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flows/flow.h"
#include "flows/rq_spline.h"
#include "manifolds/circle_maps.h"
#include "nn/layers.h"

namespace flowtape::manifolds {

struct RecursiveSphereFlowOptions {
  int64_t height_bins = 8;  // the spline on [-1, 1]
  CircleMapOptions azimuth;
  std::vector<int64_t> hidden = {32, 32};
  nn::Activation activation = nn::Activation::kTanh;
  bool rotate = true;
  // InvalidArgument unless height_bins >= 2, hidden sizes >= 1 (at least
  // one) and the azimuth map is valid.
  absl::Status Validate() const;
};

class RecursiveSphereFlow : public flows::Flow {
 public:
  static absl::StatusOr<std::shared_ptr<RecursiveSphereFlow>> Create(
      const RecursiveSphereFlowOptions& options, Rng& rng);

  flows::FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  flows::FlowResult Inverse(const Tensor& y, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  bool analytic_inverse() const override;
  // "recursive_sphere_<azimuth map>".
  std::string name() const override;

 private:
  RecursiveSphereFlow(const RecursiveSphereFlowOptions& options, Rng& rng);
  // Height-spline and azimuth-map parameters, [N, 1, P] each.
  Tensor HeightParams(const Tensor& phi) const;
  Tensor AzimuthParams(const Tensor& z) const;

  RecursiveSphereFlowOptions o_;
  flows::RqSplineOptions height_;
  std::shared_ptr<nn::MLP> height_net_, azimuth_net_;
  Tensor rotation_;  // Q [3, 3], buffer
};

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_RECURSIVE_SPHERE_FLOW_H_

// Riemannian flow matching on the sphere S^(n-1) (Chen & Lipman 2024): the
// geodesic conditional path, a velocity field projected onto the tangent
// space, and its flow integrated on the sphere with the log-density change
// given by the Riemannian divergence.
//
// Geometry (unit rows x [N, n], constants in x's dtype):
//   SphereExp(x, v) = cos|v| x + sin|v| v / |v|          (v tangent at x)
//   SphereLog(x, y) = theta w / |w|,  w = y - <x, y> x,
//                     theta = atan2(|w|, <x, y>) = d(x, y)
//   (log at the cut locus y = -x is undefined; it returns 0 there).
// GeodesicSpherePath (flows/matching/path.h, x0 noise, x1 data):
//   v = log_{x0}(x1),  x_t = exp_{x0}(t v),
//   u_t = d/dt x_t = -|v| sin(t|v|) x0 + cos(t|v|) v,
// tangent at x_t (<x_t, u_t> = 0) and of length |v| = d(x0, x1).
// ProjectToTangent(z, v) = v - (<z, v> / |z|^2) z, differentiable. With the
// 1/|z|^2 the projected field is defined off the sphere and has no radial
// component anywhere, so its ambient divergence on the sphere is its
// Riemannian divergence: div_M F = div_R^n F - <nu, dF nu> (nu = z/|z|),
// and <nu, F> = 0 along rays makes the last term vanish.
//
// TangentProjectedField(v): the CnfDynamics F(t, z, c) = P_z v(t, z, c)
// (v's parameters, registered as "velocity"); the CFM loss on it regresses
// the projected field onto the tangent targets u_t.
//
// FourierFeatureField: a velocity in R^n from random Fourier features of
// the position (Tancik et al. 2020) and of the time,
//   v(t, z) = MLP([z, sin(z B), cos(z B), t, sin(pi k t), cos(pi k t)]),
// k = 1..4, B [n, m] fixed draws of N(0, scale^2) (a buffer, so model files
// keep it). The MLP (nn::MLP, `hidden` widths, `act`) learns fine detail on
// the sphere (length scale ~ 1 / scale) in far fewer steps than a net on
// the raw coordinates. No context; t scalar or [N, 1].
//
// SphereCnf: the flow of a matched field on the sphere (flows/flow.h
// directions; as cfm_flow.h, f(t, z) = -F(1 - t, z) with F projected):
//   Forward(x) (data -> base): z(1) from z(0) = x under dz/dt = f, with
//     logdet = int_0^1 div f dt = log R (the volume ratio of the time-1 map,
//     manifolds/volume_ratio.h), so log q(x) = log p_base(z(1)) + logdet;
//   Inverse(z) (base -> data): t: 1 -> 0, logdet = -int div f.
// Steps: fixed-step classical RK4 (step_size h, ceil(1/h) equal steps) on
// (z, l), the state renormalised z <- z / |z| after every step (the exact
// flow stays on the sphere; the projection removes RK4's O(h^5) radial
// drift). div f is exact: n VJPs per evaluation. With recording on, the
// steps and VJPs are recorded (create_graph), so the result is
// differentiable; without, every evaluation is rewound. NFE (4 per step)
// comes back in the "nfe" extra, as the Cnf's.
// Errors: SphereCnf::Create: null velocity, step_size not in (0, 1]
// (InvalidArgument); a pass on rows that are not [N, n] returns the status
// with NaN values.
#ifndef FLOWTAPE_MANIFOLDS_SPHERE_FLOW_MATCHING_H_
#define FLOWTAPE_MANIFOLDS_SPHERE_FLOW_MATCHING_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "flows/cnf/cnf.h"
#include "flows/cnf/dynamics.h"
#include "flows/flow.h"
#include "flows/matching/cfm.h"
#include "flows/matching/path.h"
#include "nn/layers.h"

namespace flowtape::manifolds {

Tensor SphereExp(const Tensor& x, const Tensor& v);
Tensor SphereLog(const Tensor& x, const Tensor& y);
Tensor ProjectToTangent(const Tensor& z, const Tensor& v);

class GeodesicSpherePath : public flows::matching::ProbabilityPath {
 public:
  flows::matching::PathSample Sample(const Tensor& x0, const Tensor& x1,
                                     const Tensor& t) const override;
  std::string name() const override { return "sphere_geodesic"; }
};

// Uniform draws on S^(n-1) (normalised Gaussians), for FlowMatching.
flows::matching::SourceSampler UniformSphereSource(int64_t n);

class TangentProjectedField : public flows::cnf::CnfDynamics {
 public:
  explicit TangentProjectedField(
      std::shared_ptr<flows::cnf::CnfDynamics> velocity);
  Tensor operator()(double t, const Tensor& z) const override;
  Tensor operator()(const Tensor& t, const Tensor& z,
                    const Tensor& context) const override;
  int64_t dim() const override { return velocity_->dim(); }
  int64_t context_dim() const override { return velocity_->context_dim(); }

 private:
  std::shared_ptr<flows::cnf::CnfDynamics> velocity_;
};

class FourierFeatureField : public flows::cnf::CnfDynamics {
 public:
  // InvalidArgument for dim, features or a width < 1, or scale not > 0.
  static absl::StatusOr<std::shared_ptr<FourierFeatureField>> Create(
      int64_t dim, int64_t features, double scale,
      const std::vector<int64_t>& hidden, nn::Activation act, Rng& rng);
  Tensor operator()(double t, const Tensor& z) const override;
  Tensor operator()(const Tensor& t, const Tensor& z,
                    const Tensor& context) const override;
  int64_t dim() const override { return dim_; }

 private:
  FourierFeatureField(int64_t dim, int64_t features, double scale,
                      const std::vector<int64_t>& hidden, nn::Activation act,
                      Rng& rng);
  int64_t dim_;
  Tensor frequencies_;  // B [dim, features], a buffer
  std::shared_ptr<nn::MLP> mlp_;
};

class SphereCnf : public flows::Flow {
 public:
  // `field`: the tangent field F in flow-matching time (noise at t = 0),
  // e.g. a TangentProjectedField.
  static absl::StatusOr<std::shared_ptr<SphereCnf>> Create(
      std::shared_ptr<flows::cnf::CnfDynamics> field, double step_size = 0.02);

  flows::FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  flows::FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                            Rng* rng = nullptr) const override;
  bool analytic_inverse() const override { return false; }
  std::string name() const override { return "sphere_cfm"; }
  const std::shared_ptr<flows::cnf::CnfDynamics>& field() const {
    return field_;
  }
  double step_size() const { return step_size_; }

 private:
  SphereCnf(std::shared_ptr<flows::cnf::CnfDynamics> field, double step_size);
  flows::FlowResult Run(const Tensor& x, const Tensor& context,
                        bool forward) const;
  std::shared_ptr<flows::cnf::CnfDynamics> field_;
  double step_size_;
};

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_SPHERE_FLOW_MATCHING_H_

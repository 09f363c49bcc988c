// The target densities on the torus T^2 of Rezende et al. 2020 ("Normalizing
// flows on tori and spheres", Section 5), unnormalised, w.r.t. the flat
// measure d theta_1 d theta_2 on [0, 2 pi)^2:
//   unimodal:   p~ = exp(cos(theta_1 - 4.18) + cos(theta_2 - 5.96))
//   multimodal: p~ = 1/3 sum_i exp(cos(theta_1 - a_i) + cos(theta_2 - b_i)),
//               (a, b)_i = (0.21, 2.85), (1.89, 6.18), (3.77, 1.56)
//   correlated: p~ = exp(cos(theta_1 + theta_2 - 1.94))
// Closed forms (I_0 the modified Bessel function): Z = int p~ =
// (2 pi I_0(1))^2 for the unimodal and multimodal targets, and
// (2 pi)^2 I_0(1) for the correlated one (integrate over theta_2 at fixed
// theta_1 first); TorusLogNormalizer's quadrature reproduces them.
//
// TorusLogNormalizer: log Z by the trapezoid rule on an m x m grid,
//   Z_m = (2 pi / m)^2 sum_{j,k} p~(2 pi j / m, 2 pi k / m),
// summed in log space. p~ is smooth and 2 pi-periodic, so the rule
// converges exponentially: every p~ here is a finite sum of exp(cos(.))
// terms, and the rule's relative error on one is the aliased Fourier
// coefficient 2 I_m(1) / I_0(1) ~ 2 / (2^m m!) per axis (1.5e-7 at m = 8,
// below 1e-16 from m = 20 on).
#ifndef FLOWTAPE_MANIFOLDS_TORUS_DENSITIES_H_
#define FLOWTAPE_MANIFOLDS_TORUS_DENSITIES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"

namespace flowtape::manifolds {

enum class TorusTarget { kUnimodal, kMultimodal, kCorrelated };

// "unimodal", "multimodal", "correlated"; InvalidArgument otherwise.
absl::StatusOr<TorusTarget> ParseTorusTarget(const std::string& name);
std::string TorusTargetName(TorusTarget t);
std::vector<TorusTarget> AllTorusTargets();

// log p~(theta) per row: theta [N, 2] -> [N], differentiable in theta, in
// theta's dtype.
Tensor TorusTargetLogDensity(TorusTarget t, const Tensor& theta);

// log Z by the m x m trapezoid rule in float64 (m >= 1).
double TorusLogNormalizer(TorusTarget t, int m = 64);
// log Z from the closed form above.
double TorusLogNormalizerClosedForm(TorusTarget t);

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_TORUS_DENSITIES_H_

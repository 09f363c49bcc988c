// The target density on the sphere S^2 of Rezende et al. 2020 ("Normalizing
// flows on tori and spheres", ICML 2020, Section 5 / Table 1), unnormalised,
// w.r.t. surface area:
//   p~(x) = sum_{i=1..4} exp(kappa mu_i . x),   kappa = 10,
//   mu_i = (cos a_i cos b_i, cos a_i sin b_i, -sin a_i),
//   (a_i, b_i) = (0.7, 1.5), (-1, 1), (0.6, 5), (-0.7, 4),
// i.e. (a_i, b_i) are the paper's spherical coordinates of the modes, read
// as polar angle a_i + pi / 2 and azimuth b_i. Normalised, p = p~ / Z is
// the equal mixture of the four von Mises-Fisher densities vMF(mu_i, 10).
// Source: the paper's own text was not reachable from here; the definition
// is that of two public reproductions, read and checked against each other
// (github katalinic/sdflows `optimisation.py`, github
// ryushinn/flows-on-sphere `utils.py`; both give the same four modes, the
// same kappa and the same angle convention, and both report the paper's
// Table 1 numbers on it). Both state that the paper prints the third mode
// as (0.6, 0.5) and that only b_3 = 5 reproduces the paper's figure of the
// target; kRezende2020 is the b_3 = 5 target they (and their reproduced
// Table 1 numbers) use, kRezende2020Printed the one as printed.
//
// Log-normaliser. Each term integrates to int exp(kappa mu.x) dA =
// 4 pi sinh(kappa) / kappa whatever mu, so
//   Z = 16 pi sinh(10) / 10   (both variants),
// S2TargetLogNormalizerClosedForm. S2TargetLogNormalizer computes it
// independently by the Gauss product rule of sphere_quadrature.h (n Gauss
// nodes in z, 2n angles), exact to rounding from n = 24 on.
#ifndef FLOWTAPE_MANIFOLDS_S2_TARGET_H_
#define FLOWTAPE_MANIFOLDS_S2_TARGET_H_

#include <array>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"

namespace flowtape::manifolds {

enum class S2Target { kRezende2020, kRezende2020Printed };

inline constexpr double kS2TargetKappa = 10.0;

// "rezende2020", "rezende2020_printed"; InvalidArgument otherwise.
absl::StatusOr<S2Target> ParseS2Target(const std::string& name);
std::string S2TargetName(S2Target t);
std::vector<S2Target> AllS2Targets();

// The unit mode directions mu_1..mu_4.
std::vector<std::array<double, 3>> S2TargetModes(S2Target t);

// log p~(x) per row: x [N, 3] (points of S^2) -> [N], differentiable in x,
// in x's dtype.
Tensor S2TargetLogDensity(S2Target t, const Tensor& x);
// log p~ at one point, in double.
double S2TargetLogDensity(S2Target t, double x, double y, double z);

// log Z by the product rule with n Gauss nodes (n >= 1), in float64.
double S2TargetLogNormalizer(S2Target t, int n = 64);
// log(16 pi sinh(10) / 10).
double S2TargetLogNormalizerClosedForm();

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_S2_TARGET_H_

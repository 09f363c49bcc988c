// Quadrature on the unit sphere S^2: the Gauss product rule in cylindrical
// coordinates. By Archimedes, surface area is dA = dz dphi on
// (z, phi) in [-1, 1] x [0, 2 pi), x = (r cos phi, r sin phi, z),
// r = sqrt(1 - z^2), so
//   int_{S^2} f dA ~= sum_{j < n} sum_{k < 2n} w_j (pi / n) f(x(z_j, phi_k)),
// with (z_j, w_j) the n-point Gauss-Legendre rule on [-1, 1] and
// phi_k = pi k / n. The rule integrates every spherical harmonic of degree
// l <= 2n - 1 exactly: a harmonic is P_l^m(z) e^{i m phi} with |m| <= l,
// the trapezoid sum of e^{i m phi} is exactly 0 for 0 < |m| < 2n, and the
// m = 0 harmonics are polynomials of degree l in z, which the Gauss rule
// integrates exactly. For smooth f the error is set by f's harmonic
// coefficients beyond degree 2n - 1; for f = exp(kappa mu.x) they fall like
// I_l(kappa) ~ (kappa / 2)^l / l!, so the rule reaches rounding level once
// 2n is a few times kappa (tests/manifolds/s2_target_test: for kappa = 10
// log int f dA is within 1e-13 of the closed form from n = 24 on).
//
// SphereLogIntegral returns log int f dA for f = exp(log_f), summed in log
// space (no overflow for large log_f); log_f = -inf is f = 0.
// GaussLegendre: nodes ascending in (-1, 1) and positive weights summing
// to 2, by Newton's method on P_n from Tricomi's initial guesses
// (|error| ~ 1e-15).
#ifndef FLOWTAPE_MANIFOLDS_SPHERE_QUADRATURE_H_
#define FLOWTAPE_MANIFOLDS_SPHERE_QUADRATURE_H_

#include <functional>
#include <vector>

namespace flowtape::manifolds {

struct QuadratureRule {
  std::vector<double> nodes, weights;
};

// The n-point Gauss-Legendre rule on [-1, 1] (n >= 1; FT_CHECK).
QuadratureRule GaussLegendre(int n);

// log int_{S^2} exp(log_f(x, y, z)) dA by the product rule above with n
// Gauss nodes in z and 2n angles (n >= 1; FT_CHECK).
double SphereLogIntegral(
    const std::function<double(double x, double y, double z)>& log_f, int n);

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_SPHERE_QUADRATURE_H_

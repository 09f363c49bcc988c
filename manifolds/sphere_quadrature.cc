#include "manifolds/sphere_quadrature.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autodiff/check.h"

namespace flowtape::manifolds {

QuadratureRule GaussLegendre(int n) {
  FT_CHECK(n >= 1, "gauss_legendre: needs n >= 1, got ", n);
  QuadratureRule rule;
  rule.nodes.resize(n);
  rule.weights.resize(n);
  for (int i = 0; i < (n + 1) / 2; ++i) {
    // The (i+1)-th largest root of P_n, Newton from Tricomi's approximation.
    double x = std::cos(M_PI * (i + 0.75) / (n + 0.5));
    double dp = 1;
    for (int it = 0; it < 100; ++it) {
      double p0 = 1, p1 = x;  // P_0, P_1; the recurrence gives P_n, P_(n-1)
      for (int k = 2; k <= n; ++k) {
        const double p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      dp = n * (x * p1 - p0) / (x * x - 1);  // P_n'(x)
      const double step = p1 / dp;
      x -= step;
      if (std::abs(step) < 1e-16) break;
    }
    const double w = 2 / ((1 - x * x) * dp * dp);
    rule.nodes[n - 1 - i] = x;
    rule.nodes[i] = -x;
    rule.weights[i] = rule.weights[n - 1 - i] = w;
  }
  return rule;
}

double SphereLogIntegral(
    const std::function<double(double x, double y, double z)>& log_f, int n) {
  FT_CHECK(n >= 1, "sphere_log_integral: needs n >= 1, got ", n);
  const QuadratureRule rule = GaussLegendre(n);
  const int m = 2 * n;
  const double h = 2 * M_PI / m;
  std::vector<double> terms;
  terms.reserve(static_cast<size_t>(n) * m);
  double top = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < n; ++j) {
    const double z = rule.nodes[j];
    const double r = std::sqrt((1 - z) * (1 + z));
    for (int k = 0; k < m; ++k) {
      const double phi = h * k;
      terms.push_back(std::log(rule.weights[j] * h) +
                      log_f(r * std::cos(phi), r * std::sin(phi), z));
      top = std::max(top, terms.back());
    }
  }
  if (!std::isfinite(top)) return top;  // f = 0 everywhere (or +inf / NaN)
  double s = 0;
  for (double t : terms) s += std::exp(t - top);
  return top + std::log(s);
}

}  // namespace flowtape::manifolds

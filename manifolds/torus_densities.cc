#include "manifolds/torus_densities.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "manifolds/angle.h"

namespace flowtape::manifolds {
namespace {
constexpr double kUnimodal[2] = {4.18, 5.96};
constexpr double kModes[3][2] = {{0.21, 2.85}, {1.89, 6.18}, {3.77, 1.56}};
constexpr double kCorrelated = 1.94;

double LogDensity(TorusTarget t, double a, double b) {
  switch (t) {
    case TorusTarget::kUnimodal:
      return std::cos(a - kUnimodal[0]) + std::cos(b - kUnimodal[1]);
    case TorusTarget::kMultimodal: {
      double e[3], top = -1e300;
      for (int i = 0; i < 3; ++i) {
        e[i] = std::cos(a - kModes[i][0]) + std::cos(b - kModes[i][1]);
        top = std::max(top, e[i]);
      }
      double s = 0;
      for (double v : e) s += std::exp(v - top);
      return top + std::log(s / 3.0);
    }
    case TorusTarget::kCorrelated:
      return std::cos(a + b - kCorrelated);
  }
  return 0;
}
}  // namespace

absl::StatusOr<TorusTarget> ParseTorusTarget(const std::string& name) {
  for (TorusTarget t : AllTorusTargets())
    if (TorusTargetName(t) == name) return t;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown torus target '", name, "' (unimodal, multimodal, correlated)"));
}

std::string TorusTargetName(TorusTarget t) {
  switch (t) {
    case TorusTarget::kUnimodal:
      return "unimodal";
    case TorusTarget::kMultimodal:
      return "multimodal";
    case TorusTarget::kCorrelated:
      return "correlated";
  }
  return "";
}

std::vector<TorusTarget> AllTorusTargets() {
  return {TorusTarget::kUnimodal, TorusTarget::kMultimodal,
          TorusTarget::kCorrelated};
}

Tensor TorusTargetLogDensity(TorusTarget t, const Tensor& theta) {
  FT_CHECK(theta.rank() == 2 && theta.dim(1) == 2,
           "torus target: needs angles [N, 2], got ", theta.shape().ToString());
  const int64_t n = theta.dim(0);
  Tensor a = Reshape(Narrow(theta, 1, 0, 1), {n});
  Tensor b = Reshape(Narrow(theta, 1, 1, 1), {n});
  switch (t) {
    case TorusTarget::kUnimodal:
      return Cos(a - kUnimodal[0]) + Cos(b - kUnimodal[1]);
    case TorusTarget::kMultimodal: {
      std::vector<Tensor> e;
      for (const auto& m : kModes)
        e.push_back(Reshape(Cos(a - m[0]) + Cos(b - m[1]), {n, 1}));
      return LogSumExp(Concat(e, 1), 1) - std::log(3.0);
    }
    case TorusTarget::kCorrelated:
      return Cos(a + b - kCorrelated);
  }
  return Tensor();
}

double TorusLogNormalizer(TorusTarget t, int m) {
  FT_CHECK(m >= 1, "torus log normalizer: needs m >= 1, got ", m);
  const double h = kTwoPi / m;
  std::vector<double> v;
  v.reserve(static_cast<size_t>(m) * m);
  double top = -1e300;
  for (int j = 0; j < m; ++j)
    for (int k = 0; k < m; ++k) {
      v.push_back(LogDensity(t, j * h, k * h));
      top = std::max(top, v.back());
    }
  double s = 0;
  for (double x : v) s += std::exp(x - top);
  return top + std::log(s) + 2 * std::log(h);
}

double TorusLogNormalizerClosedForm(TorusTarget t) {
  const double log_i0 = std::log(std::cyl_bessel_i(0.0, 1.0));
  return 2 * std::log(kTwoPi) +
         (t == TorusTarget::kCorrelated ? log_i0 : 2 * log_i0);
}

}  // namespace flowtape::manifolds

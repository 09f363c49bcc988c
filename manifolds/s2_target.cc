#include "manifolds/s2_target.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "manifolds/sphere_quadrature.h"

namespace flowtape::manifolds {
namespace {
// (a_i, b_i): polar angle a_i + pi / 2, azimuth b_i.
constexpr double kAngles[4][2] = {
    {0.7, 1.5}, {-1.0, 1.0}, {0.6, 5.0}, {-0.7, 4.0}};
constexpr double kPrintedB3 = 0.5;
}  // namespace

absl::StatusOr<S2Target> ParseS2Target(const std::string& name) {
  for (S2Target t : AllS2Targets())
    if (S2TargetName(t) == name) return t;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown S^2 target '", name, "' (rezende2020, rezende2020_printed)"));
}

std::string S2TargetName(S2Target t) {
  return t == S2Target::kRezende2020 ? "rezende2020" : "rezende2020_printed";
}

std::vector<S2Target> AllS2Targets() {
  return {S2Target::kRezende2020, S2Target::kRezende2020Printed};
}

std::vector<std::array<double, 3>> S2TargetModes(S2Target t) {
  std::vector<std::array<double, 3>> mu;
  for (int i = 0; i < 4; ++i) {
    const double a = kAngles[i][0];
    const double b = (t == S2Target::kRezende2020Printed && i == 2)
                         ? kPrintedB3
                         : kAngles[i][1];
    mu.push_back(
        {std::cos(a) * std::cos(b), std::cos(a) * std::sin(b), -std::sin(a)});
  }
  return mu;
}

Tensor S2TargetLogDensity(S2Target t, const Tensor& x) {
  FT_CHECK(x.rank() == 2 && x.dim(1) == 3,
           "s2 target: needs points [N, 3], got ", x.shape().ToString());
  std::vector<double> m;  // [3, 4]: column i is kappa mu_i
  const auto mu = S2TargetModes(t);
  for (int d = 0; d < 3; ++d)
    for (int i = 0; i < 4; ++i) m.push_back(kS2TargetKappa * mu[i][d]);
  return LogSumExp(MatMul(x, Tensor::FromVector({3, 4}, m, x.dtype())), 1);
}

double S2TargetLogDensity(S2Target t, double x, double y, double z) {
  double e[4], top = -HUGE_VAL;
  const auto mu = S2TargetModes(t);
  for (int i = 0; i < 4; ++i) {
    e[i] = kS2TargetKappa * (mu[i][0] * x + mu[i][1] * y + mu[i][2] * z);
    top = std::max(top, e[i]);
  }
  double s = 0;
  for (double v : e) s += std::exp(v - top);
  return top + std::log(s);
}

double S2TargetLogNormalizer(S2Target t, int n) {
  FT_CHECK(n >= 1, "s2 target log normalizer: needs n >= 1, got ", n);
  return SphereLogIntegral(
      [t](double x, double y, double z) {
        return S2TargetLogDensity(t, x, y, z);
      },
      n);
}

double S2TargetLogNormalizerClosedForm() {
  const double k = kS2TargetKappa;
  // sinh(k) = e^k (1 - e^(-2k)) / 2
  return std::log(16 * M_PI / k) + k + std::log1p(-std::exp(-2 * k)) -
         std::log(2.0);
}

}  // namespace flowtape::manifolds

// The T^2 targets (torus_densities.h): the tensor log-densities equal the
// formulas, the trapezoid log-normaliser equals the closed form
// 2 log(2 pi I_0(1)) with the stated exponential error, and the uniform
// base (uniform_torus.h) samples [0, 2 pi)^n with log p = -n log(2 pi) in
// either dtype.
#include "manifolds/torus_densities.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"
#include "gtest/gtest.h"
#include "manifolds/angle.h"
#include "manifolds/uniform_torus.h"

namespace flowtape::manifolds {
namespace {

// log Z by hand: (2 pi I_0(1))^2, correlated (2 pi)^2 I_0(1).
double ClosedFormLogZ(TorusTarget t) {
  const double i0 = std::cyl_bessel_i(0.0, 1.0);
  return t == TorusTarget::kCorrelated ? std::log(kTwoPi * kTwoPi * i0)
                                       : 2 * std::log(kTwoPi * i0);
}

TEST(TorusDensities, LogDensitiesAreTheFormulas) {
  Rng rng(1);
  Tensor theta = Tensor::Rand({50, 2}, rng) * kTwoPi;
  auto vm = [](double a, double b, double pa, double pb) {
    return std::exp(std::cos(a - pa) + std::cos(b - pb));
  };
  for (TorusTarget t : AllTorusTargets()) {
    Tensor lp = TorusTargetLogDensity(t, theta);
    ASSERT_EQ(lp.shape(), Shape({50}));
    for (int64_t i = 0; i < 50; ++i) {
      const double a = theta[2 * i], b = theta[2 * i + 1];
      double p = 0;
      switch (t) {
        case TorusTarget::kUnimodal:
          p = vm(a, b, 4.18, 5.96);
          break;
        case TorusTarget::kMultimodal:
          p = (vm(a, b, 0.21, 2.85) + vm(a, b, 1.89, 6.18) +
               vm(a, b, 3.77, 1.56)) /
              3;
          break;
        case TorusTarget::kCorrelated:
          p = std::exp(std::cos(a + b - 1.94));
          break;
      }
      EXPECT_NEAR(lp[i], std::log(p), 1e-13) << TorusTargetName(t);
    }
  }
}

// The trapezoid rule on m points per axis errs by about 2 I_m(1) / I_0(1)
// per axis (relative): ~1.5e-7 at m = 8, below 1e-16 at m = 32.
TEST(TorusDensities, TrapezoidLogNormalizerConvergesToTheClosedForm) {
  const double predicted8 =
      2 * std::cyl_bessel_i(8.0, 1.0) / std::cyl_bessel_i(0.0, 1.0);
  for (TorusTarget t : AllTorusTargets()) {
    const double exact = ClosedFormLogZ(t);
    EXPECT_NEAR(TorusLogNormalizerClosedForm(t), exact, 1e-14);
    EXPECT_NEAR(TorusLogNormalizer(t, 32), exact, 1e-13) << TorusTargetName(t);
    EXPECT_NEAR(TorusLogNormalizer(t, 64), exact, 1e-13) << TorusTargetName(t);
    const double err8 = std::abs(TorusLogNormalizer(t, 8) - exact);
    EXPECT_GT(err8, 0.1 * predicted8) << TorusTargetName(t);
    EXPECT_LT(err8, 3.0 * predicted8) << TorusTargetName(t);
  }
}

TEST(TorusDensities, ParseNames) {
  for (TorusTarget t : AllTorusTargets())
    EXPECT_EQ(*ParseTorusTarget(TorusTargetName(t)), t);
  EXPECT_FALSE(ParseTorusTarget("bimodal").ok());
}

TEST(UniformTorus, NoDimensionsIsAStatus) {
  for (int64_t d : {0, -3}) {
    auto base = UniformTorus::Create(d);
    EXPECT_EQ(base.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(base.status().message().find(absl::StrCat("dims = ", d)),
              std::string::npos)
        << base.status();
  }
}

TEST(UniformTorus, SamplesTheTorusWithConstantDensity) {
  for (DType dtype : {kFloat64, kFloat32}) {
    auto base = UniformTorus::Create(3).value();
    base->To(dtype);
    Rng rng(2);
    Tensor x = base->Sample(2000, rng);
    ASSERT_EQ(x.dtype(), dtype);
    ASSERT_EQ(x.shape(), Shape({2000, 3}));
    double mean = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      ASSERT_GE(x[i], 0.0);
      ASSERT_LT(x[i], kTwoPi);
      mean += x[i] / x.numel();
    }
    EXPECT_NEAR(mean, kTwoPi / 2, 0.1);  // sd of the mean ~0.02
    Tensor lp = base->LogProb(x);
    ASSERT_EQ(lp.dtype(), dtype);
    for (int64_t i = 0; i < 2000; ++i)
      EXPECT_NEAR(lp[i], -3 * std::log(kTwoPi), 1e-5);
  }
}

}  // namespace
}  // namespace flowtape::manifolds

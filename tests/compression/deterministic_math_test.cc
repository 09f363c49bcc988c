#include "compression/deterministic_math.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>

#include "autodiff/tensor.h"
#include "gtest/gtest.h"

namespace flowtape::compression {
namespace {

// Distance in units in the last place between two finite doubles of the
// same sign.
int64_t UlpDistance(double a, double b) {
  int64_t ia, ib;
  std::memcpy(&ia, &a, 8);
  std::memcpy(&ib, &b, 8);
  return ia > ib ? ia - ib : ib - ia;
}

// libm's exp/log are within 1 ulp on glibc; DetExp/DetLog promise 4.
TEST(DeterministicMathTest, ExpMatchesLibm) {
  Rng rng(1);
  int64_t worst = 0;
  for (int t = 0; t < 200000; ++t) {
    const double x = -700.0 + 1400.0 * rng.Uniform();
    worst = std::max(worst, UlpDistance(DetExp(x), std::exp(x)));
  }
  for (int t = 0; t < 200000; ++t) {
    const double x = -2.0 + 4.0 * rng.Uniform();
    worst = std::max(worst, UlpDistance(DetExp(x), std::exp(x)));
  }
  EXPECT_LE(worst, 3);
  std::printf("exp: worst %lld ulp\n", static_cast<long long>(worst));
  EXPECT_EQ(DetExp(0.0), 1.0);
  EXPECT_LE(UlpDistance(DetExp(1.0), 2.718281828459045), 1);
  EXPECT_EQ(DetExp(1000.0), std::numeric_limits<double>::infinity());
  EXPECT_EQ(DetExp(-1000.0), 0.0);
  EXPECT_EQ(DetExp(-std::numeric_limits<double>::infinity()), 0.0);
  EXPECT_TRUE(std::isnan(DetExp(std::nan(""))));
  // Subnormal range: absolute error within a couple of subnormal units.
  EXPECT_NEAR(DetExp(-740.0), std::exp(-740.0), 2 * 4.9406564584124654e-324);
}

TEST(DeterministicMathTest, LogMatchesLibm) {
  Rng rng(2);
  int64_t worst = 0;
  for (int t = 0; t < 200000; ++t) {
    const double x = std::exp(-700.0 + 1400.0 * rng.Uniform());
    worst = std::max(worst, UlpDistance(DetLog(x), std::log(x)));
  }
  // Near 1 the result is small: compare relative to it.
  double worst_rel = 0.0;
  for (int t = 0; t < 200000; ++t) {
    const double x = 0.5 + rng.Uniform();
    const double ref = std::log(x);
    if (ref != 0.0)
      worst_rel =
          std::max(worst_rel, std::abs(DetLog(x) - ref) / std::abs(ref));
  }
  EXPECT_LE(worst, 4);
  std::printf("log: worst %lld ulp, near 1 %.3g relative\n",
              static_cast<long long>(worst), worst_rel);
  EXPECT_LE(worst_rel, 1e-15);
  EXPECT_EQ(DetLog(1.0), 0.0);
  EXPECT_EQ(DetLog(0.0), -std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(DetLog(-1.0)));
  EXPECT_EQ(DetLog(std::numeric_limits<double>::infinity()),
            std::numeric_limits<double>::infinity());
  EXPECT_NEAR(DetLog(4.9406564584124654e-324),
              std::log(4.9406564584124654e-324), 1e-13);
}

TEST(DeterministicMathTest, Log1pAndSigmoidMatchLibm) {
  Rng rng(3);
  double worst_log1p = 0.0, worst_sigmoid = 0.0;
  for (int t = 0; t < 200000; ++t) {
    const double x = std::exp(-40.0 + 45.0 * rng.Uniform());  // 4e-18 .. 150
    worst_log1p = std::max(
        worst_log1p, std::abs(DetLog1p(x) - std::log1p(x)) / std::log1p(x));
    const double y = -60.0 + 120.0 * rng.Uniform();
    const double ref = 1.0 / (1.0 + std::exp(-y));
    worst_sigmoid =
        std::max(worst_sigmoid, std::abs(DetSigmoid(y) - ref) / ref);
  }
  std::printf("log1p %.3g, sigmoid %.3g relative\n", worst_log1p,
              worst_sigmoid);
  EXPECT_LE(worst_log1p, 1e-15);
  EXPECT_LE(worst_sigmoid, 1e-15);
  EXPECT_EQ(DetLog1p(0.0), 0.0);
  EXPECT_TRUE(std::isnan(DetLog1p(-0.5)));
  EXPECT_EQ(DetSigmoid(std::numeric_limits<double>::infinity()), 1.0);
  EXPECT_EQ(DetSigmoid(-std::numeric_limits<double>::infinity()), 0.0);
  EXPECT_EQ(DetSigmoid(0.0), 0.5);
  // Lower tail keeps relative precision (no 1 - e cancellation).
  EXPECT_NEAR(DetSigmoid(-700.0) / std::exp(-700.0), 1.0, 1e-14);
}

}  // namespace
}  // namespace flowtape::compression

// Gaussianization flows (gaussianization.h) through the flow harness (round
// trips, log-dets against brute-force Jacobians, normalisation, float32,
// first and second derivatives), plus the normal quantile of a
// log-probability (NdtriExp) against long-double erfc, the far tails, the
// data-dependent initialisation and the failure status of the inverse.
#include "flows/gaussianization.h"

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/flows/harness.h"
#include "tests/gradcheck.h"

namespace flowtape::flows {
namespace {

using testing::FlowCase;

using Kernel = GaussianizationKernel;

testing::FlowFactory Marginal(int64_t d, int64_t k, Kernel kernel) {
  return [=](Rng&) -> std::shared_ptr<Flow> {
    return MarginalGaussianization::Create({d, k, kernel}).value();
  };
}

testing::FlowFactory Gf(int64_t d, int64_t layers, int64_t k, Kernel kernel) {
  return [=](Rng& rng) -> std::shared_ptr<Flow> {
    GaussianizationFlowOptions o;
    o.dim = d;
    o.layers = layers;
    o.components = k;
    o.kernel = kernel;
    return GaussianizationFlow(o, rng).value();
  };
}

// Logistic kernels make every layer's tails heavier (gaussianization.h):
// after two layers about exp(-c |x|^(1/2)), so gf_logistic_2d integrates
// over [-20, 20]^2 (over [-8, 8]^2 a three-layer stack missed 1e-3 of the
// mass).
FLOWTAPE_FLOW_CASES(
    Gaussianization,
    FlowCase("marginal_1d", Marginal(1, 3, Kernel::kGaussian), {1})
        .Perturb(0.3),
    FlowCase("marginal_2d", Marginal(2, 5, Kernel::kGaussian), {2})
        .Perturb(0.3),
    FlowCase("gf_2d", Gf(2, 3, 4, Kernel::kGaussian), {2}).Perturb(0.3),
    FlowCase("gf_3d", Gf(3, 2, 3, Kernel::kGaussian), {3}).InputScale(2),
    FlowCase("marginal_logistic_1d", Marginal(1, 3, Kernel::kLogistic), {1})
        .Perturb(0.3),
    FlowCase("gf_logistic_2d", Gf(2, 2, 4, Kernel::kLogistic), {2})
        .Quadrature(20, 800),
    FlowCase("gf_logistic_3d", Gf(3, 2, 3, Kernel::kLogistic), {3}));

TEST(LogNdtr, MatchesLongDoubleAndDerivatives) {
  const std::vector<double> xs = {-1e3, -40, -20.5, -19.5, -3, 0, 2, 9, 40};
  Tensor y = LogNdtr(Tensor::FromVector({9}, xs));
  for (int i = 0; i < 9; ++i) {
    const long double r = xs[i] / std::sqrt(2.0L);
    const long double want = xs[i] > 0 ? std::log1p(-0.5L * std::erfc(r))
                                       : std::log(0.5L * std::erfc(-r));
    EXPECT_NEAR(y[i], static_cast<double>(want),
                2e-14 * std::fabs(static_cast<double>(want)) + 1e-300)
        << xs[i];
  }
  const Tensor x = Tensor::FromVector({5}, {-35, -20, -1, 0.5, 6});
  auto f = [](const std::vector<Tensor>& in) {
    return Sum(LogNdtr(in[0]) * Tensor::FromVector({5}, {1, -2, 0.5, 1, 3}));
  };
  EXPECT_LT(testing::GradientError(f, {x}), 1e-7);
  EXPECT_LT(testing::HessianVectorError(f, {x}), 1e-6);
}

// log Phi(y) in long double (erfcl reaches Phi ~ 1e-4900).
long double LogPhi(long double y) {
  return std::log(0.5L * std::erfc(-y / std::sqrt(2.0L)));
}

TEST(NdtriExp, InvertsLogPhi) {
  const std::vector<double> ls = {-1e-12, -1e-3, -0.2, -M_LN2, -0.9,  -3,
                                  -20,    -100,  -700, -1000,  -5000, -1e4};
  NoGradScope ng;
  Tensor y = NdtriExp(Tensor::FromVector({12}, ls));
  for (int i = 0; i < 12; ++i) {
    SCOPED_TRACE(ls[i]);
    ASSERT_TRUE(std::isfinite(y[i]));
    // Relative to |l| plus the conditioning near l = 0 (dl/dy -> 0).
    const double got = static_cast<double>(LogPhi(y[i]));
    EXPECT_NEAR(got, ls[i], 4e-15 * std::fabs(ls[i]) + 1e-20);
  }
  EXPECT_NEAR(y[3], 0.0, 1e-15);
  // Published quantiles: Phi^-1(0.975) and Phi^-1(1e-10).
  Tensor q = NdtriExp(Tensor::FromVector({2}, {std::log(0.975), -10 * M_LN10}));
  EXPECT_NEAR(q[0], 1.959963984540054, 1e-14);
  EXPECT_NEAR(q[1], -6.361340902404056, 1e-13);
  // Beyond long double: y ~ -sqrt(2 |l|), and the edges.
  Tensor far = NdtriExp(Tensor::FromVector(
      {5},
      {-1e300, -1e20, 0.0, 1.0, -std::numeric_limits<double>::infinity()}));
  EXPECT_NEAR(far[0] / -std::sqrt(2e300), 1.0, 1e-10);
  EXPECT_NEAR(far[1] / -std::sqrt(2e20), 1.0, 1e-8);
  EXPECT_EQ(far[2], std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(far[3]));
  EXPECT_EQ(far[4], -std::numeric_limits<double>::infinity());
}

TEST(NdtriExp, DerivativesMatchFiniteDifferences) {
  const Tensor l = Tensor::FromVector({5}, {-0.05, -0.7, -2, -30, -400});
  auto f = [](const std::vector<Tensor>& in) {
    return Sum(NdtriExp(in[0]) * Tensor::FromVector({5}, {1, -2, 0.5, 1, 3}));
  };
  EXPECT_LT(testing::GradientError(f, {l}), 1e-7);
  EXPECT_LT(testing::HessianVectorError(f, {l}), 1e-6);
}

// z from the textbook formula Phi^-1(F(x)) (float64 erfc and a bisection),
// valid where F is far from 0 and 1.
double NaiveZ(Kernel kernel, double x, const Tensor& mu, const Tensor& log_h,
              int64_t k) {
  double f = 0;
  for (int64_t j = 0; j < k; ++j) {
    const double u = (x - mu[j]) / std::exp(log_h[j]);
    f += (kernel == Kernel::kLogistic ? 1 / (1 + std::exp(-u))
                                      : 0.5 * std::erfc(-u * M_SQRT1_2)) /
         k;
  }
  double lo = -40, hi = 40;
  for (int it = 0; it < 200; ++it) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(-mid * M_SQRT1_2) < f ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

TEST(MarginalGaussianization, MatchesTheFormulaAndHasStableTails) {
  for (Kernel kernel : {Kernel::kGaussian, Kernel::kLogistic}) {
    SCOPED_TRACE(kernel == Kernel::kGaussian ? "gaussian" : "logistic");
    auto g = MarginalGaussianization::Create({1, 4, kernel}).value();
    Rng rng(3);
    testing::PerturbParameters(*g, rng, 0.3);
    NoGradScope ng;
    const std::vector<double> mid = {-2.5, -0.4, 0.0, 0.7, 3.0};
    Tensor z = g->Forward(Tensor::FromVector({5, 1}, mid)).value;
    for (int i = 0; i < 5; ++i)
      EXPECT_NEAR(z[i],
                  NaiveZ(kernel, mid[i], g->anchors(), g->log_bandwidths(), 4),
                  1e-10);
    // Far tails (where F rounds to 0 or 1 in float64): finite, increasing,
    // inverted to the input; |z| beyond any float64 Phi^-1(F).
    const double big = kernel == Kernel::kGaussian ? 1e3 : 1e5;
    const std::vector<double> far = {-big, -300, -60, 60, 300, big};
    Tensor x = Tensor::FromVector({6, 1}, far);
    FlowResult fwd = g->Forward(x);
    for (int i = 0; i < 6; ++i) {
      ASSERT_TRUE(std::isfinite(fwd.value[i]) && std::isfinite(fwd.logdet[i]))
          << far[i];
      if (i > 0) {
        EXPECT_GT(fwd.value[i], fwd.value[i - 1]);
      }
    }
    EXPECT_LT(fwd.value[0], -100);
    EXPECT_GT(fwd.value[5], 100);
    FlowResult back = g->Inverse(fwd.value);
    ASSERT_TRUE(back.status.ok()) << back.status;
    for (int i = 0; i < 6; ++i) {
      EXPECT_NEAR(back.value[i], far[i], 1e-12 * (1 + std::fabs(far[i])));
      EXPECT_NEAR(back.logdet[i], -fwd.logdet[i],
                  1e-9 * (1 + std::fabs(fwd.logdet[i])));
    }
    // The log-det is that of z(x): central differences in the tail.
    const double h = 1e-4;
    Tensor xs = Tensor::FromVector({2, 1}, {-60 - h, -60 + h});
    Tensor zs = g->Forward(xs).value;
    EXPECT_NEAR(std::log((zs[1] - zs[0]) / (2 * h)), fwd.logdet[2], 1e-6);
  }
}

TEST(MarginalGaussianization, InitialisesFromTheFirstBatch) {
  auto g = MarginalGaussianization::Create({2, 4, Kernel::kGaussian}).value();
  Rng rng(5);
  // Coordinate 0 ~ N(3, 2^2), coordinate 1 ~ N(-1, 0.5^2).
  Tensor x =
      Tensor::Randn({4000, 2}, rng) * Tensor::FromVector({1, 2}, {2.0, 0.5}) +
      Tensor::FromVector({1, 2}, {3.0, -1.0});
  ASSERT_FALSE(g->initialized());
  ASSERT_TRUE(InitializeFromData(*g, x).ok());
  EXPECT_TRUE(g->initialized());
  const double q[4] = {-1.1503493803760083, -0.3186393639643752,
                       0.3186393639643752, 1.1503493803760083};  // Phi^-1
  const double mean[2] = {3, -1}, sd[2] = {2, 0.5};
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      EXPECT_NEAR(g->anchors()[i * 4 + j], mean[i] + sd[i] * q[j],
                  0.1 * sd[i]);  // 4 standard errors of the quantile
      EXPECT_NEAR(std::exp(g->log_bandwidths()[i * 4 + j]),
                  0.9 * sd[i] * std::pow(4.0, -0.2), 0.03 * sd[i]);
    }
  // The marginals are then roughly Gaussianized: z has mean 0 and a
  // variance below 1 (the kernels widen the mixture: its variance is the
  // anchors' 0.71 sd^2 plus the kernels' 0.39 sd^2).
  NoGradScope ng;
  Tensor z = g->Forward(x).value;
  for (int i = 0; i < 2; ++i) {
    double m = 0, v = 0;
    for (int r = 0; r < 4000; ++r) m += z[r * 2 + i] / 4000;
    for (int r = 0; r < 4000; ++r) v += std::pow(z[r * 2 + i] - m, 2) / 4000;
    EXPECT_NEAR(m, 0.0, 0.05);
    EXPECT_GT(v, 0.75);
    EXPECT_LT(v, 1.0);
  }
  // Once: a second pass on other data changes nothing.
  const std::vector<double> before = g->anchors().ToVector();
  ASSERT_TRUE(InitializeFromData(*g, x * 10.0).ok());
  EXPECT_EQ(g->anchors().ToVector(), before);
}

TEST(MarginalGaussianization, InverseReportsFailures) {
  auto g = MarginalGaussianization::Create({2, 3}).value();
  NoGradScope ng;
  FlowResult r = g->Inverse(Tensor::FromVector({2, 2}, {0.5, NAN, 1, -1}));
  ASSERT_FALSE(r.status.ok());
  EXPECT_NE(r.status.message().find("marginal_gaussianization"),
            std::string::npos)
      << r.status;
  EXPECT_TRUE(std::isnan(r.value[1]));
  EXPECT_TRUE(std::isfinite(r.value[2]));
}

TEST(Gaussianization, OptionsAreValidated) {
  EXPECT_FALSE(MarginalGaussianization::Create({0, 3}).ok());
  EXPECT_FALSE(MarginalGaussianization::Create({2, 0}).ok());
  EXPECT_FALSE(MarginalGaussianization::Create({2, 5000}).ok());
  Rng rng(1);
  GaussianizationFlowOptions o;
  o.layers = 0;
  EXPECT_FALSE(GaussianizationFlow(o, rng).ok());
}

}  // namespace
}  // namespace flowtape::flows

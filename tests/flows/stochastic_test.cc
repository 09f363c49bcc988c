#include "flows/stochastic.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/sequential.h"
#include "flows/snf.h"
#include "gtest/gtest.h"
#include "tests/flows/harness.h"
#include "tests/gradcheck.h"

namespace flowtape::flows {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::shared_ptr<GaussianEnergy> Gauss1d() {
  return *GaussianEnergy::Create({1.0}, {2.0});  // N(1, 4)
}

struct Moments {
  double mean, var;
};
Moments MomentsOf(const Tensor& x) {
  const std::vector<double> v = x.ToVector();
  double m = 0, s = 0;
  for (double e : v) m += e;
  m /= v.size();
  for (double e : v) s += (e - m) * (e - m);
  return {m, s / (v.size() - 1)};
}

// 4000 independent chains started far off (N(-3, 0.25)), 200 kernel steps:
// the sample mean and variance of N(1, 4) within 4 standard errors
// (sd 2 / sqrt(n) = 0.032 for the mean, 4 sqrt(2 / n) = 0.089 for the
// variance).
void ExpectReachesTarget(const Flow& layer, double want_var) {
  Rng rng(11);
  Tensor x0 = -3.0 + 0.5 * Tensor::Randn({4000, 1}, rng);
  NoGradScope off;
  const Moments m = MomentsOf(layer.Inverse(x0, {}, &rng).value);
  EXPECT_NEAR(m.mean, 1.0, 4 * 2.0 / std::sqrt(4000.0)) << layer.name();
  EXPECT_NEAR(m.var, want_var, 4 * want_var * std::sqrt(2.0 / 4000))
      << layer.name();
}

TEST(Stochastic, MetropolisPreservesAOneDimensionalGaussian) {
  auto mh = *MetropolisLayer::Create({Gauss1d(), 2.5, 200});
  ExpectReachesTarget(*mh, 4.0);
}

TEST(Stochastic, MalaPreservesAOneDimensionalGaussian) {
  auto mala = *LangevinLayer::Create({Gauss1d(), 1.0, 200, true});
  ExpectReachesTarget(*mala, 4.0);
}

// Unadjusted Langevin on N(mu, s^2) with step eps is the AR(1) chain
// x' = x - eps (x - mu) / s^2 + sqrt(2 eps) xi: stationary mean mu and
// variance s^2 / (1 - eps / (2 s^2)) = 4.571 for eps = 1, not 4.
TEST(Stochastic, UnadjustedLangevinHasItsClosedFormStationaryBias) {
  auto ula = *LangevinLayer::Create({Gauss1d(), 1.0, 200, false});
  ExpectReachesTarget(*ula, 4.0 / (1.0 - 1.0 / 8.0));
}

// log N(a; m, v I) for rows a, m of length d.
double LogNormal(const double* a, const double* m, double v, int d) {
  double s = 0;
  for (int j = 0; j < d; ++j) s += (a[j] - m[j]) * (a[j] - m[j]);
  return -0.5 * s / v - 0.5 * d * std::log(2 * kPi * v);
}

// dS of one ULA step against the Gaussian transition densities written out:
// dS = log K(x | y) - log K(y | x), K(b | a) = N(b; a - eps grad u(a),
// 2 eps I), grad u(a) = (a - mu) / sigma^2 by hand. Both directions.
TEST(Stochastic, LangevinWeightIsTheRatioOfTransitionDensities) {
  const std::vector<double> mu = {0.5, -1.0}, sigma = {0.8, 1.5};
  auto u = *GaussianEnergy::Create(mu, sigma);
  const double eps = 0.1;
  auto layer = *LangevinLayer::Create({u, eps, 1, false});
  Rng data(2);
  Tensor x = Tensor::Randn({16, 2}, data);
  for (bool inverse : {true, false}) {
    Rng rng(9);
    FlowResult r =
        inverse ? layer->Inverse(x, {}, &rng) : layer->Forward(x, {}, &rng);
    const std::vector<double> a = x.ToVector(), b = r.value.ToVector();
    for (int i = 0; i < 16; ++i) {
      double ma[2], mb[2];
      for (int j = 0; j < 2; ++j) {
        ma[j] =
            a[2 * i + j] - eps * (a[2 * i + j] - mu[j]) / (sigma[j] * sigma[j]);
        mb[j] =
            b[2 * i + j] - eps * (b[2 * i + j] - mu[j]) / (sigma[j] * sigma[j]);
      }
      const double want = LogNormal(&a[2 * i], mb, 2 * eps, 2) -
                          LogNormal(&b[2 * i], ma, 2 * eps, 2);
      EXPECT_NEAR(r.logdet[i], want, 1e-11) << "row " << i;
    }
    EXPECT_EQ(r.extra(kMcmcAccepted).ToVector(), std::vector<double>(16, 1.0));
  }
}

// Several steps in one layer are the composition of one-step layers drawing
// the same stream; Metropolis weights are energy differences.
TEST(Stochastic, StepsComposeAndMetropolisWeightIsTheEnergyChange) {
  auto u = *RezendeEnergy::Create("u1");
  Rng data(4);
  Tensor x = 2.0 * Tensor::Randn({32, 2}, data);
  for (bool mh : {false, true}) {
    std::shared_ptr<Flow> three, one;
    if (mh) {
      three = *MetropolisLayer::Create({u, 0.5, 3});
      one = *MetropolisLayer::Create({u, 0.5, 1});
    } else {
      three = *LangevinLayer::Create({u, 0.02, 3, true});
      one = *LangevinLayer::Create({u, 0.02, 1, true});
    }
    Sequential chain({one, one, one});
    Rng r1(5), r2(5);
    FlowResult a = three->Inverse(x, {}, &r1);
    FlowResult b = chain.Inverse(x, {}, &r2);
    const std::vector<double> va = a.value.ToVector(), vb = b.value.ToVector();
    for (size_t i = 0; i < va.size(); ++i) EXPECT_NEAR(va[i], vb[i], 1e-12);
    const std::vector<double> dsa = a.logdet.ToVector();
    const std::vector<double> du = (u->Value(a.value) - u->Value(x)).ToVector();
    double accepted = 0;
    for (int i = 0; i < 32; ++i) {
      EXPECT_NEAR(dsa[i], b.logdet[i], 1e-10);
      EXPECT_NEAR(dsa[i], du[i], 1e-10) << (mh ? "metropolis" : "mala");
      accepted += a.extra(kMcmcAccepted)[i];
    }
    EXPECT_GT(accepted, 10);  // some moves were made ...
    EXPECT_LT(accepted, 96);  // ... and some rejected
    Tape::Get().Reset();
  }
}

// dS = sqrt(eps / 2) xi . (grad u(x) + grad u(y)) + O(eps): with the noise
// fixed, the weight of a Langevin step vanishes like sqrt(eps) (10x per 100x
// smaller step).
TEST(Stochastic, LangevinWeightVanishesWithTheStepSize) {
  auto u = *RezendeEnergy::Create("u3");
  Rng data(8);
  Tensor x = Tensor::Randn({64, 2}, data);
  double prev = INFINITY;
  for (double eps : {1e-2, 1e-4, 1e-6, 1e-8, 1e-10}) {
    auto layer = *LangevinLayer::Create({u, eps, 1, false});
    Rng rng(1);
    const std::vector<double> ds =
        layer->Inverse(x, {}, &rng).logdet.ToVector();
    double worst = 0;
    for (double d : ds) worst = std::max(worst, std::abs(d));
    if (eps < 1e-2) {
      EXPECT_GT(worst, 0.05 * prev) << "eps " << eps;
      EXPECT_LT(worst, 0.2 * prev) << "eps " << eps;
    }
    prev = worst;
  }
  EXPECT_LT(prev, 2e-3);  // at eps = 1e-10, from ~10 at eps = 1e-2
}

// With the noise fixed (same seed), a ULA step is a smooth function of its
// input through grad u: its value and weight differentiate like their finite
// differences (second derivatives of u recorded).
TEST(Stochastic, LangevinStepIsDifferentiable) {
  auto u = *RezendeEnergy::Create("u4");
  auto layer = *LangevinLayer::Create({u, 0.05, 2, false});
  Rng data(3);
  Tensor x = Tensor::Randn({6, 2}, data);
  Tensor r = Tensor::Randn({6, 2}, data);
  auto f = [&](const std::vector<Tensor>& in) {
    Rng rng(17);
    FlowResult out = layer->Inverse(in[0], {}, &rng);
    return Sum(out.value * r) + Sum(out.logdet);
  };
  EXPECT_LT(testing::GradientError(f, {x}), 1e-6);
}

// A learned step size: eps = exp(a) with one scalar parameter a, starting at
// log step_size. With the noise fixed (same seed), the log-weight of a ULA
// path log w = sum_i (dS_i - u(y_i)) and the output are smooth in a: the
// recorded gradient matches central differences in a, and the layer equals
// the fixed-step layer at the same eps. MALA's gradient is the derivative
// along the drawn accept decisions (the differences are taken with the same
// uniforms; h is small enough that no decision flips).
TEST(Stochastic, LearnedStepSizeGradientMatchesFiniteDifferences) {
  auto u = *RezendeEnergy::Create("u2");
  Rng data(21);
  const Tensor x = Tensor::Randn({12, 2}, data);
  const Tensor r = Tensor::Randn({12, 2}, data);
  for (bool mala : {false, true}) {
    SCOPED_TRACE(mala ? "mala" : "ula");
    auto layer = *LangevinLayer::Create({u, 0.03, 3, mala, true});
    auto fixed = *LangevinLayer::Create({u, 0.03, 3, mala, false});
    ASSERT_EQ(layer->NumParameters(), 1);
    EXPECT_EQ(fixed->NumParameters(), 0);
    EXPECT_NEAR(layer->step_size(), 0.03, 1e-15);
    Tensor a = layer->Parameters()[0];
    auto log_w = [&](const Flow& f) {
      Rng rng(23);
      FlowResult out = f.Inverse(x, {}, &rng);
      return Sum(out.logdet - u->Value(out.value)) + Sum(out.value * r);
    };
    {
      NoGradScope ng;
      EXPECT_NEAR(log_w(*layer).item(), log_w(*fixed).item(), 1e-12);
    }
    TapeScope scope;
    const double g = Grad({log_w(*layer)}, {a})[0].item();
    double* pa = a.mutable_data<double>();
    const double a0 = pa[0], h = 1e-6;
    NoGradScope ng;
    pa[0] = a0 + h;
    const double fp = log_w(*layer).item();
    pa[0] = a0 - h;
    const double fm = log_w(*layer).item();
    pa[0] = a0;
    const double fd = (fp - fm) / (2 * h);
    EXPECT_GT(std::fabs(fd), 0.1);  // eps matters
    EXPECT_NEAR(g, fd, 1e-6 * std::max(1.0, std::fabs(fd)));
  }
}

// SNF layers built with learn_step_size each carry one step-size parameter.
TEST(Snf, LangevinLayersCanLearnTheirStepSizes) {
  Rng r1(2), r2(2);
  SnfOptions o;
  o.target = *RezendeEnergy::Create("u1");
  o.blocks = 3;
  o.hidden = {8};
  o.kind = StochasticKind::kLangevin;
  const int64_t fixed = (*MakeSnf(o, r1))->NumParameters();
  o.learn_step_size = true;
  EXPECT_EQ((*MakeSnf(o, r2))->NumParameters(), fixed + 3);
}

TEST(Stochastic, BadOptionsAreErrorsAndNullRngFailsLoudly) {
  auto u = *RezendeEnergy::Create("u1");
  EXPECT_FALSE(LangevinLayer::Create({nullptr, 0.1, 1}).ok());
  EXPECT_FALSE(LangevinLayer::Create({u, 0.0, 1}).ok());
  EXPECT_FALSE(LangevinLayer::Create({u, 0.1, 0}).ok());
  EXPECT_FALSE(MetropolisLayer::Create({u, -1.0, 1}).ok());
  EXPECT_FALSE(MetropolisLayer::Create({u, NAN, 1}).ok());
  auto mh = *MetropolisLayer::Create({u, 0.1, 1});
  EXPECT_DEATH(mh->Inverse(Tensor::Zeros({2, 2})), "needs an rng");
  EXPECT_DEATH(mh->Inverse(Tensor::Zeros({2, 3}), {}, nullptr), "");
}

// The deterministic part of an SNF (kind = kNone) is an ordinary flow.
std::shared_ptr<Flow> MakeDeterministicSnf(Rng& rng) {
  SnfOptions o;
  o.target = *RezendeEnergy::Create("u1");
  o.kind = StochasticKind::kNone;
  o.blocks = 2;
  o.hidden = {8};
  return *MakeSnf(o, rng);
}

FLOWTAPE_FLOW_CASES(Snf, testing::FlowCase("snf_deterministic_part",
                                           MakeDeterministicSnf, {2}));

TEST(Snf, StochasticLayersSitAfterEachBlock) {
  Rng rng(1);
  SnfOptions o;
  o.target = *RezendeEnergy::Create("u2");
  o.blocks = 3;
  auto snf = *MakeSnf(o, rng);
  EXPECT_FALSE(snf->analytic_inverse());
  EXPECT_NE(snf->name().find("metropolis"), std::string::npos) << snf->name();
  o.kind = StochasticKind::kNone;
  EXPECT_TRUE((*MakeSnf(o, rng))->analytic_inverse());
  o.target = GaussianEnergy::Standard(1);
  EXPECT_FALSE(MakeSnf(o, rng).ok());
}

}  // namespace
}  // namespace flowtape::flows

#include "flows/stochastic.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
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
// In float32 the chains run on the float32-rounded starts (the layer
// converted with Module::To; the kernels draw the same streams).
void ExpectReachesTarget(const Flow& layer, double want_var,
                         DType dtype = kFloat64) {
  Rng rng(11);
  Tensor x0 = Cast(-3.0 + 0.5 * Tensor::Randn({4000, 1}, rng), dtype);
  NoGradScope off;
  const Tensor x = layer.Inverse(x0, {}, &rng).value;
  ASSERT_EQ(x.dtype(), dtype) << layer.name();
  const Moments m = MomentsOf(x);
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

// ---- float32 ----
// The layers compute in their input's dtype and draw the same streams in
// either dtype (Tensor::Randn rounds the same normals; the accept uniforms
// are doubles), so a float32 step and a float64 step from the same
// float32-rounded input with the same seed follow the same path. The
// tolerances are the flow harness's (Float32Tolerances for an event of 2
// numbers; relative errors |a - b| / (1 + |b|)).
const testing::Float32Tolerances& Float32Tol() {
  static const testing::Float32Tolerances tol(
      testing::FlowCase("stochastic_2d", nullptr, {2}));
  return tol;
}

// |a - b| / (1 + |b|), NaN as +inf.
double Float32Err(double a, double b) {
  const double e = std::fabs(a - b) / (1 + std::fabs(b));
  return std::isnan(e) ? INFINITY : e;
}
double MaxFloat32Err(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    m = std::max(m, Float32Err(a[i], b[i]));
  return m;
}

struct NamedLayer {
  std::string name;
  std::shared_ptr<Flow> flow;
};

// Every kernel, with fixed and learned step sizes, on the Rezende energies
// (3 kernel steps per layer). Built anew on each call (same parameters).
std::vector<NamedLayer> Float32Layers() {
  auto u1 = *RezendeEnergy::Create("u1");
  auto u2 = *RezendeEnergy::Create("u2");
  auto u4 = *RezendeEnergy::Create("u4");
  return {
      {"langevin", *LangevinLayer::Create({u4, 0.05, 3, false})},
      {"langevin_learned", *LangevinLayer::Create({u4, 0.05, 3, false, true})},
      {"mala", *LangevinLayer::Create({u2, 0.03, 3, true})},
      {"mala_learned", *LangevinLayer::Create({u2, 0.03, 3, true, true})},
      {"metropolis", *MetropolisLayer::Create({u1, 0.5, 3})},
  };
}

// Runs `a` (float32) and `b` (float64, the same float32-rounded parameters)
// from the same float32-rounded input with the same seed, both directions:
// equal accept counts, values and path weights within the float32
// tolerances, and the same number of draws taken from the two streams.
void ExpectFloat32PathMatchesFloat64(const Flow& a, const Flow& b,
                                     const Tensor& x32,
                                     const std::string& what) {
  const Tensor x64 = Cast(x32, kFloat64).Detach();
  for (bool inverse : {true, false}) {
    SCOPED_TRACE(what + (inverse ? " inverse" : " forward"));
    Rng r32(31), r64(31);
    NoGradScope off;
    FlowResult f32 =
        inverse ? a.Inverse(x32, {}, &r32) : a.Forward(x32, {}, &r32);
    FlowResult f64 =
        inverse ? b.Inverse(x64, {}, &r64) : b.Forward(x64, {}, &r64);
    ASSERT_EQ(f32.value.dtype(), kFloat32);
    ASSERT_EQ(f32.logdet.dtype(), kFloat32);
    ASSERT_TRUE(f64.extra(kMcmcAccepted).defined());
    ASSERT_TRUE(f32.extra(kMcmcAccepted).defined());
    EXPECT_EQ(f32.extra(kMcmcAccepted).ToVector(),
              f64.extra(kMcmcAccepted).ToVector())
        << "accept decisions differ";
    EXPECT_LT(MaxFloat32Err(f32.value, f64.value), Float32Tol().value)
        << "values, float32 vs float64";
    EXPECT_LT(MaxFloat32Err(f32.logdet, f64.logdet), Float32Tol().logdet)
        << "path weights, float32 vs float64";
    EXPECT_EQ(r32.Uniform(), r64.Uniform()) << "the streams diverged";
  }
}

TEST(Stochastic, Float32PathWeightsAgreeWithFloat64OnTheSameNoise) {
  Rng data(41);
  const Tensor x32 = Cast(2.0 * Tensor::Randn({64, 2}, data), kFloat32);
  std::vector<NamedLayer> l32 = Float32Layers(), l64 = Float32Layers();
  for (size_t k = 0; k < l32.size(); ++k) {
    l32[k].flow->To(kFloat32);
    l64[k].flow->To(kFloat32);  // the float32 parameters, held in float64
    l64[k].flow->To(kFloat64);
    ExpectFloat32PathMatchesFloat64(*l32[k].flow, *l64[k].flow, x32,
                                    l32[k].name);
  }
}

// In float32 the weights keep their closed forms (computed in float64 from
// the float32 inputs and outputs): for ULA on a Gaussian the ratio of the
// Gaussian transition densities (one step); for MALA and Metropolis, whose
// kernels satisfy detailed balance for exp(-u), the energy change u(y) -
// u(x) over three steps, with some proposals accepted and some rejected.
TEST(Stochastic, Float32WeightsKeepTheirClosedForms) {
  const testing::Float32Tolerances& tol = Float32Tol();
  Rng data(43);
  const Tensor x32 = Cast(Tensor::Randn({32, 2}, data), kFloat32);
  const std::vector<double> a = x32.ToVector();
  {
    const std::vector<double> mu = {0.5, -1.0}, sigma = {0.8, 1.5};
    auto u = *GaussianEnergy::Create(mu, sigma);
    const double eps = 0.1;
    auto layer = *LangevinLayer::Create({u, eps, 1, false});
    for (bool inverse : {true, false}) {
      Rng rng(9);
      NoGradScope off;
      FlowResult r = inverse ? layer->Inverse(x32, {}, &rng)
                             : layer->Forward(x32, {}, &rng);
      ASSERT_EQ(r.logdet.dtype(), kFloat32);
      const std::vector<double> b = r.value.ToVector();
      double worst = 0;
      for (int i = 0; i < 32; ++i) {
        double ma[2], mb[2];
        for (int j = 0; j < 2; ++j) {
          ma[j] = a[2 * i + j] -
                  eps * (a[2 * i + j] - mu[j]) / (sigma[j] * sigma[j]);
          mb[j] = b[2 * i + j] -
                  eps * (b[2 * i + j] - mu[j]) / (sigma[j] * sigma[j]);
        }
        const double want = LogNormal(&a[2 * i], mb, 2 * eps, 2) -
                            LogNormal(&b[2 * i], ma, 2 * eps, 2);
        worst = std::max(worst, Float32Err(r.logdet[i], want));
      }
      EXPECT_LT(worst, tol.logdet) << (inverse ? "inverse" : "forward");
    }
  }
  auto u = *RezendeEnergy::Create("u1");
  const Tensor x = Cast(x32, kFloat64);
  for (bool mh : {false, true}) {
    SCOPED_TRACE(mh ? "metropolis" : "mala");
    std::shared_ptr<Flow> layer;
    if (mh)
      layer = *MetropolisLayer::Create({u, 0.5, 3});
    else
      layer = *LangevinLayer::Create({u, 0.02, 3, true});
    Rng rng(5);
    NoGradScope off;
    FlowResult r = layer->Inverse(x32, {}, &rng);
    ASSERT_EQ(r.logdet.dtype(), kFloat32);
    const Tensor du = u->Value(Cast(r.value, kFloat64)) - u->Value(x);
    double accepted = 0;
    for (int i = 0; i < 32; ++i) {
      EXPECT_LT(Float32Err(r.logdet[i], du[i]), tol.logdet) << "row " << i;
      accepted += r.extra(kMcmcAccepted)[i];
    }
    EXPECT_GT(accepted, 10);  // some moves were made ...
    EXPECT_LT(accepted, 96);  // ... and some rejected
  }
}

// The float32 Metropolis and MALA chains keep N(1, 4) invariant: the same
// 4000 chains and 200 steps as in float64, the same 4-standard-error bounds.
TEST(Stochastic, Float32ChainsPreserveAOneDimensionalGaussian) {
  auto mh = *MetropolisLayer::Create({Gauss1d(), 2.5, 200});
  ExpectReachesTarget(*mh, 4.0, kFloat32);
  auto mala = *LangevinLayer::Create({Gauss1d(), 1.0, 200, true});
  ExpectReachesTarget(*mala, 4.0, kFloat32);
}

// A whole SNF (RealNVP blocks with a stochastic layer after each) in float32
// against float64 at the same float32-rounded parameters and noise: the
// generative path x and its log-weight contribution (the couplings'
// log-dets plus the path weights), and the normalizing direction.
TEST(Snf, Float32AgreesWithFloat64OnTheSameNoise) {
  for (StochasticKind kind :
       {StochasticKind::kMetropolis, StochasticKind::kLangevin,
        StochasticKind::kMala}) {
    SnfOptions o;
    o.target = *RezendeEnergy::Create("u1");
    o.kind = kind;
    o.blocks = 2;
    o.hidden = {8};
    o.mcmc_steps = 3;
    o.step_size = 0.02;
    o.learn_step_size = kind != StochasticKind::kMetropolis;
    Rng b32(3), b64(3);
    std::shared_ptr<Sequential> f32 = *MakeSnf(o, b32), f64 = *MakeSnf(o, b64);
    Rng n32(4), n64(4);  // the same perturbed parameters
    testing::PerturbParameters(*f32, n32, 0.1);
    testing::PerturbParameters(*f64, n64, 0.1);
    f32->To(kFloat32);
    f64->To(kFloat32);
    f64->To(kFloat64);
    Rng data(45);
    const Tensor z32 = Cast(Tensor::Randn({64, 2}, data), kFloat32);
    ExpectFloat32PathMatchesFloat64(*f32, *f64, z32, f32->name());
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

// A FlowModel scores a stochastic flow without an rng (as a plot or a
// model file's reader does) with a fixed stream: finite, the same every
// call, and equal to passing Rng(kDefaultScoreSeed); a given rng draws anew.
TEST(Snf, FlowModelScoresWithoutAnRngOnAFixedStream) {
  Rng rng(1);
  SnfOptions o;
  o.target = *RezendeEnergy::Create("u1");
  o.kind = StochasticKind::kLangevin;
  o.blocks = 2;
  o.hidden = {8};
  o.step_size = 0.05;
  FlowModel model(StandardNormal::Create(Shape{2}).value(), *MakeSnf(o, rng));
  Rng data(5);
  const Tensor x = Tensor::Randn({16, 2}, data);
  const std::vector<double> a = model.LogProb(x).ToVector();
  EXPECT_EQ(model.LogProb(x).ToVector(), a);
  Rng fixed(FlowModel::kDefaultScoreSeed), other(7);
  EXPECT_EQ(model.LogProb(x, Tensor(), &fixed).ToVector(), a);
  EXPECT_NE(model.LogProb(x, Tensor(), &other).ToVector(), a);
  for (double v : a) EXPECT_TRUE(std::isfinite(v));
}

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

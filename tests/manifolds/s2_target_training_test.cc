// Reverse-KL training of RecursiveSphereFlow on the S^2 target of Rezende et
// al. 2020 (s2_target.h), as benchmarks/sphere_target.cc runs it: the
// untrained flow is the uniform density, whose KL(U || p) = log Z -
// log(4 pi) - mean_U log p~ is known by quadrature, and the Monte Carlo
// evaluation (free energy + log Z) reproduces it; a few hundred Adam steps
// bring KL(q || p) below a bound the uniform density is far above, the
// trained flow's importance-sampling log Z agrees with the quadrature, and
// its ESS rises above the uniform's.
#include <cmath>
#include <memory>
#include <vector>

#include "flows/flow_model.h"
#include "flows/invert.h"
#include "flows/sequential.h"
#include "gtest/gtest.h"
#include "manifolds/recursive_sphere_flow.h"
#include "manifolds/s2_target.h"
#include "manifolds/sphere_quadrature.h"
#include "manifolds/uniform_sphere_base.h"
#include "nn/optim.h"
#include "training/importance.h"
#include "training/reverse_kl.h"

namespace flowtape::manifolds {
namespace {

constexpr S2Target kTarget = S2Target::kRezende2020;

// Under the uniform density U, by the Gauss product rule: KL(U || p) =
// log Z - log(4 pi) - mean_U log p~, and var_U log p~ (the variance of the
// Monte Carlo log weights).
struct UniformMoments {
  double kl, var;
};
UniformMoments Uniform() {
  const int n = 64;
  QuadratureRule rule = GaussLegendre(n);
  double m1 = 0, m2 = 0;
  for (int j = 0; j < n; ++j) {
    const double z = rule.nodes[j], r = std::sqrt((1 - z) * (1 + z));
    for (int k = 0; k < 2 * n; ++k) {
      const double phi = M_PI * k / n, w = rule.weights[j] / (4 * n);
      const double lp =
          S2TargetLogDensity(kTarget, r * std::cos(phi), r * std::sin(phi), z);
      m1 += w * lp;
      m2 += w * lp * lp;
    }
  }
  return {S2TargetLogNormalizerClosedForm() - std::log(4 * M_PI) - m1,
          m2 - m1 * m1};
}

flows::FlowModel MakeModel(Rng& rng) {
  RecursiveSphereFlowOptions o;
  o.hidden = {16, 16};
  o.height_bins = 8;
  o.azimuth.kind = CircleMapKind::kMobius;
  o.azimuth.components = 4;
  auto layer = *RecursiveSphereFlow::Create(o, rng);
  return flows::FlowModel(
      std::make_shared<UniformSphereBase>(),
      std::make_shared<flows::Invert>(std::make_shared<flows::Sequential>(
          std::vector<std::shared_ptr<flows::Flow>>{layer})));
}

struct Score {
  double kl, ess, log_z;
};

Score Evaluate(const flows::FlowModel& model, uint64_t seed) {
  Rng rng(seed);
  training::LogDensityFn log_p = [](const Tensor& x) {
    return S2TargetLogDensity(kTarget, x);
  };
  auto est = training::EstimateLogNormalizer(model, log_p, 20000, rng);
  EXPECT_TRUE(est.ok()) << est.status();
  return {est->free_energy + S2TargetLogNormalizerClosedForm(),
          est->ess_fraction, est->log_z};
}

TEST(S2TargetTraining, UntrainedFlowIsUniformWithTheQuadratureKl) {
  Rng init(1);
  flows::FlowModel model = MakeModel(init);
  const UniformMoments u = Uniform();
  EXPECT_GT(u.kl, 1.0);  // the target is far from uniform
  Score s = Evaluate(model, 2);
  // The mean of 20000 log weights errs by sd / sqrt(20000) (~0.01 nats).
  EXPECT_NEAR(s.kl, u.kl, 4 * std::sqrt(u.var / 20000));
  EXPECT_LT(s.ess, 0.45);  // Z^2 / (4 pi int p~^2) ~ 0.4
}

TEST(S2TargetTraining, AFewHundredStepsBringKlBelowABound) {
  Rng init(3);
  flows::FlowModel model = MakeModel(init);
  nn::AdamOptions adam;
  adam.lr = 5e-3;
  auto opt = nn::Adam::Create(model, adam).value();
  training::ReverseKlOptions o;
  o.batch_size = 128;
  o.steps = 400;
  o.log_every = 0;
  o.clip_grad_norm = 100.0;
  training::LogDensityFn log_p = [](const Tensor& x) {
    return S2TargetLogDensity(kTarget, x);
  };
  auto r = training::TrainReverseKl(model, log_p, *opt, o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_FALSE(r->diverged) << r->message;
  Score s = Evaluate(model, 4);
  EXPECT_GT(s.kl, -0.01);  // KL >= 0 up to Monte Carlo error
  EXPECT_LT(s.kl, 0.25);   // the uniform density: Uniform().kl > 1
  EXPECT_GT(s.ess, 0.6);
  EXPECT_NEAR(s.log_z, S2TargetLogNormalizerClosedForm(), 0.02);
}

}  // namespace
}  // namespace flowtape::manifolds

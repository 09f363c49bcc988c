#include "training/importance.h"

#include <cmath>
#include <memory>
#include <vector>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/coupling.h"
#include "flows/distribution.h"
#include "flows/energies.h"
#include "flows/flow_model.h"
#include "flows/sequential.h"
#include "flows/snf.h"
#include "flows/stochastic.h"
#include "gtest/gtest.h"
#include "nn/optim.h"
#include "training/reverse_kl.h"

namespace flowtape::training {
namespace {

using flows::EnergyPtr;

TEST(Importance, FromLogWeights) {
  auto e = *ImportanceFromLogWeights({-2.0, -2.0, -2.0, -2.0});
  EXPECT_NEAR(e.log_z, -2.0, 1e-14);
  EXPECT_NEAR(e.ess, 4.0, 1e-12);
  EXPECT_NEAR(e.ess_fraction, 1.0, 1e-12);
  EXPECT_NEAR(e.free_energy, 2.0, 1e-14);
  EXPECT_NEAR(e.log_z_stderr, 0.0, 1e-14);
  // Weights 1 and 3 (times e^10): Z = 2, ESS = 16 / 10.
  auto f = *ImportanceFromLogWeights({10.0, 10.0 + std::log(3.0)});
  EXPECT_NEAR(f.log_z, 10.0 + std::log(2.0), 1e-12);
  EXPECT_NEAR(f.ess, 1.6, 1e-12);
  // A zero weight counts in n but not in the sums.
  auto g = *ImportanceFromLogWeights({0.0, -INFINITY});
  EXPECT_NEAR(g.log_z, std::log(0.5), 1e-14);
  EXPECT_EQ(g.free_energy, INFINITY);
  EXPECT_FALSE(ImportanceFromLogWeights({}).ok());
  EXPECT_FALSE(ImportanceFromLogWeights({0.0, NAN}).ok());
  EXPECT_FALSE(ImportanceFromLogWeights({INFINITY}).ok());
  EXPECT_FALSE(ImportanceFromLogWeights({-INFINITY, -INFINITY}).ok());
}

std::shared_ptr<flows::GaussianEnergy> Target() {
  // log Z = log(2 pi) + log(1.3 * 0.6)
  return *flows::GaussianEnergy::Create({0.7, -0.4}, {1.3, 0.6});
}

// log Z of a Gaussian energy from a flow's samples: within 4 standard errors
// of the closed form.
void ExpectLogZ(const flows::FlowModel& model, const std::string& what) {
  auto u = Target();
  Rng rng(21);
  auto e = *EstimateLogNormalizer(model, EnergyLogDensity(u), 20000, rng, 3000);
  EXPECT_EQ(e.n, 20000);
  EXPECT_LT(e.log_z_stderr, 0.05) << what;
  EXPECT_NEAR(e.log_z, u->LogNormalizer(), 4 * e.log_z_stderr)
      << what << ": stderr " << e.log_z_stderr << ", ESS " << e.ess_fraction;
  EXPECT_GT(e.free_energy, -u->LogNormalizer()) << what;  // F >= -log Z
}

TEST(Importance, LogZOfAGaussianThroughADeterministicFlow) {
  Rng rng(1);
  flows::CouplingOptions c;
  c.hidden = {8};
  auto coupling = *flows::Coupling::Create(c, rng);
  for (Tensor& p : coupling->Parameters()) {
    NoGradScope off;
    p.mutable_data<double>()[0] += 0.3;  // away from the identity
  }
  flows::FlowModel model(flows::StandardNormal::Create(Shape{2}).value(),
                         coupling);
  ExpectLogZ(model, "coupling");
}

// Stochastic layers alone (no trainable part): the path weights keep the
// estimator unbiased although the samples' density is unknown.
TEST(Importance, LogZOfAGaussianThroughStochasticLayers) {
  auto u = Target();
  EnergyPtr half = *flows::InterpolatedEnergy::Create(
      flows::GaussianEnergy::Standard(2), u, 0.5);
  auto ula = *flows::LangevinLayer::Create({half, 0.1, 3, false});
  auto mala = *flows::LangevinLayer::Create({u, 0.1, 2, true});
  auto mh = *flows::MetropolisLayer::Create({u, 0.5, 2});
  auto snf = std::make_shared<flows::Sequential>(
      std::vector<std::shared_ptr<flows::Flow>>{mh, mala, ula});
  flows::FlowModel model(flows::StandardNormal::Create(Shape{2}).value(), snf);
  ExpectLogZ(model, "langevin + mala + metropolis");
}

// A whole SNF (random couplings with stochastic layers between them): the
// couplings' log-dets and the layers' path weights add up to unbiased
// weights for every kind of layer.
TEST(Importance, LogZOfAGaussianThroughAnSnf) {
  for (auto kind :
       {flows::StochasticKind::kMetropolis, flows::StochasticKind::kLangevin,
        flows::StochasticKind::kMala}) {
    Rng rng(4);
    flows::SnfOptions o;
    o.target = Target();
    o.blocks = 2;
    o.hidden = {8};
    o.kind = kind;
    o.mcmc_steps = 2;
    o.step_size = 0.05;
    o.proposal_scale = 0.4;
    auto snf = *flows::MakeSnf(o, rng);
    for (Tensor& p : snf->Parameters()) {
      NoGradScope off;
      p.mutable_data<double>()[0] += 0.1;
    }
    flows::FlowModel model(flows::StandardNormal::Create(Shape{2}).value(),
                           snf);
    ExpectLogZ(model, snf->name());
  }
}

// Reverse-KL training of an SNF on U1 lowers the free energy
// F = E[u(x) + log_prob] of its paths, which stays above -log Z.
TEST(Importance, ReverseKlTrainsAnSnf) {
  Rng rng(2);
  flows::SnfOptions o;
  o.target = *flows::RezendeEnergy::Create("u1");
  o.blocks = 2;
  o.hidden = {16, 16};
  o.mcmc_steps = 3;
  o.proposal_scale = 0.5;
  auto snf = *flows::MakeSnf(o, rng);
  flows::FlowModel model(flows::StandardNormal::Create(Shape{2}).value(), snf);
  const LogDensityFn log_p = EnergyLogDensity(o.target);
  Rng eval(3);
  const double before = FreeEnergy(model, log_p, 4000, eval);
  nn::AdamOptions adam_options;
  adam_options.lr = 3e-3;
  auto adam = nn::Adam::Create(model, adam_options).value();
  ReverseKlOptions t;
  t.batch_size = 128;
  t.steps = 150;
  t.log_every = 0;
  auto r = *TrainReverseKl(model, log_p, *adam, t);
  EXPECT_FALSE(r.diverged) << r.message;
  const double after = FreeEnergy(model, log_p, 4000, eval);
  EXPECT_LT(after, before - 0.7) << before << " -> " << after;  // 1.07 -> -0.05
  const double log_z = *flows::LogNormalizer2D(*o.target, 5.0, 1000);
  EXPECT_GT(after, -log_z - 0.05);  // F >= -log Z (up to Monte Carlo error)
}

}  // namespace
}  // namespace flowtape::training

// MAF and IAF: both directions are inverse to each other, the log-determinant
// equals log|det| of the brute-force Jacobian (one-pass and D-pass
// directions), logdets are antisymmetric, and the NLL gradient matches finite
// differences. IAF is checked to be MAF turned around.
#include "flows/autoregressive.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include "nn/checkpoint.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/flows/bijection_checks.h"
#include "tests/flows/harness.h"

namespace flowtape::flows {
namespace {

using testing::AntisymmetryError;
using testing::LogdetError;
using testing::ParamGradError;
using testing::RoundTripError;

MadeOptions Options(int64_t dim, int64_t context) {
  MadeOptions o;
  o.dim = dim;
  o.hidden = {16, 16};
  o.context_dim = context;
  o.ordering = Ordering::kRandom;
  o.activation = nn::Activation::kTanh;
  return o;
}

class MafTest : public ::testing::TestWithParam<bool> {};

TEST_P(MafTest, Bijection) {
  const bool inverted = GetParam();
  Rng rng(5);
  Maf flow(Options(5, 3), rng, inverted);
  testing::Perturb(flow, 0.1, rng);
  Tensor x = Tensor::Randn({4, 5}, rng);
  Tensor ctx = Tensor::Randn({4, 3}, rng);
  EXPECT_LT(RoundTripError(flow, x, ctx), 1e-12);
  EXPECT_LT(LogdetError(flow, x, ctx), 1e-10);
  EXPECT_LT(AntisymmetryError(flow, x, ctx), 1e-12);
  EXPECT_LT(ParamGradError(flow, x, ctx), 1e-6);
  EXPECT_EQ(flow.name(), inverted ? "iaf" : "maf");
}

INSTANTIATE_TEST_SUITE_P(MafIaf, MafTest, ::testing::Bool());

TEST(MafTest, DensityIsOnePassAndMatchesFormula) {
  Rng rng(2);
  Maf flow(Options(3, 0), rng);
  testing::Perturb(flow, 0.2, rng);
  Tensor x = Tensor::Randn({2, 3}, rng);
  NoGradScope no_grad;
  Tensor h = flow.made()(x);  // [2, 6]: (mu_i, alpha_i) pairs
  FlowResult r = flow.Forward(x);
  for (int64_t n = 0; n < 2; ++n) {
    double sum_alpha = 0;
    for (int64_t i = 0; i < 3; ++i) {
      double mu = h[n * 6 + 2 * i], alpha = h[n * 6 + 2 * i + 1];
      EXPECT_NEAR(r.value[n * 3 + i], (x[n * 3 + i] - mu) * std::exp(-alpha),
                  1e-14);
      sum_alpha += alpha;
    }
    EXPECT_NEAR(r.logdet[n], -sum_alpha, 1e-14);
  }
}

TEST(MafTest, IafIsMafTurnedAround) {
  Rng a(9), b(9);
  Maf maf(Options(4, 0), a);
  Maf iaf(Options(4, 0), b, /*inverted=*/true);  // same masks and parameters
  // The output layer starts at zero (both the identity): perturb both alike.
  Rng pa(10), pb(10);
  testing::Perturb(maf, 0.3, pa);
  testing::Perturb(iaf, 0.3, pb);
  Tensor x = Tensor::Randn({3, 4}, a);
  NoGradScope no_grad;
  FlowResult m = maf.Forward(x), i = iaf.Inverse(x);
  FlowResult mi = maf.Inverse(x), f = iaf.Forward(x);
  double moved = 0;
  for (int64_t k = 0; k < 12; ++k) {
    EXPECT_EQ(m.value[k], i.value[k]);
    EXPECT_EQ(mi.value[k], f.value[k]);
    moved = std::max(moved, std::fabs(m.value[k] - x[k]));
  }
  for (int64_t k = 0; k < 3; ++k) {
    EXPECT_EQ(m.logdet[k], i.logdet[k]);
    EXPECT_EQ(mi.logdet[k], f.logdet[k]);
    EXPECT_NE(m.logdet[k], 0.0);
  }
  EXPECT_GT(moved, 0.1);  // not the identity
}

std::shared_ptr<Flow> Maf2(Rng& r) {
  return std::make_shared<Maf>(Options(2, 0), r);
}
std::shared_ptr<Flow> Maf5Cond(Rng& r) {
  return std::make_shared<Maf>(Options(5, 3), r);
}
std::shared_ptr<Flow> Iaf3Cond(Rng& r) { return MakeIaf(Options(3, 2), r); }

FLOWTAPE_FLOW_CASES(
    Autoregressive, testing::FlowCase("maf_2d", Maf2, {2}),
    testing::FlowCase("maf_5d_cond", Maf5Cond, {5}, 3),
    testing::FlowCase("iaf_2d",
                      [](Rng& r) { return MakeIaf(Options(2, 0), r); }, {2}),
    testing::FlowCase("iaf_3d_cond", Iaf3Cond, {3}, 2));

// A random ordering and random hidden degrees are drawn at construction:
// the masks (MaskedLinear buffers) and the order (a Made buffer) must come
// back with a checkpoint, so a MAF built from another seed gives the same
// log-likelihood log N(z; 0, I) + logdet after loading.
TEST(MafTest, CheckpointRestoresRandomMasksAcrossSeeds) {
  MadeOptions o = Options(5, 0);
  o.hidden_degrees = HiddenDegrees::kRandom;
  Rng r1(31), r2(32), rx(33);
  Maf saved(o, r1), fresh(o, r2);
  ASSERT_NE(saved.made().order(), fresh.made().order());
  testing::Perturb(saved, 0.3, rx);
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path =
      std::string(dir != nullptr ? dir : "/tmp") + "/maf.ckpt";
  ASSERT_TRUE(nn::SaveCheckpoint(path, saved).ok());
  absl::Status st = nn::LoadCheckpoint(path, fresh);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(fresh.made().order(), saved.made().order());
  NoGradScope no_grad;
  Tensor x = Tensor::Randn({6, 5}, rx);
  auto log_likelihood = [&](const Flow& f) {
    FlowResult r = f.Forward(x);
    return (Sum(Square(r.value), 1) * -0.5 + r.logdet) -
           2.5 * std::log(2 * M_PI);
  };
  Tensor want = log_likelihood(saved), got = log_likelihood(fresh);
  for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR(got[i], want[i], 1e-14) << i;
  // The inverse (D sequential passes) agrees too.
  Tensor back = fresh.Inverse(saved.Forward(x).value).value;
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_NEAR(back[i], x[i], 1e-12);
}

}  // namespace
}  // namespace flowtape::flows

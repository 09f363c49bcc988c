// MAF, IAF and autoregressive splines: both directions are inverse to each
// other, the log-determinant equals log|det| of the brute-force Jacobian
// (one-pass and D-pass directions), logdets are antisymmetric, and the NLL
// gradient matches finite differences. IAF is checked to be MAF turned
// around; options are validated.
#include "flows/autoregressive.h"

#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "nn/checkpoint.h"
#include "tests/flows/bijection_checks.h"
#include "tests/flows/harness.h"

namespace flowtape::flows {
namespace {

using testing::AntisymmetryError;
using testing::LogdetError;
using testing::ParamGradError;
using testing::RoundTripError;

AutoregressiveOptions Options(int64_t dim, int64_t context,
                              bool inverted = false) {
  AutoregressiveOptions o;
  o.made.dim = dim;
  o.made.hidden = {16, 16};
  o.made.context_dim = context;
  o.made.ordering = Ordering::kRandom;
  o.made.activation = nn::Activation::kTanh;
  o.inverted = inverted;
  return o;
}

std::shared_ptr<Autoregressive> Make(const AutoregressiveOptions& o, Rng& r) {
  return Autoregressive::Create(o, r).value();
}

AutoregressiveOptions SplineOptions(int64_t dim, int64_t context,
                                    bool inverted) {
  AutoregressiveOptions o = Options(dim, context, inverted);
  o.made.hidden = {8, 8};
  o.made.ordering = Ordering::kNatural;
  o.transform.kind = ElementwiseKind::kSpline;
  o.transform.spline.bins = 4;
  return o;
}

class MafTest : public ::testing::TestWithParam<bool> {};

TEST_P(MafTest, Bijection) {
  const bool inverted = GetParam();
  Rng rng(5);
  auto keep = Make(Options(5, 3, inverted), rng);
  Autoregressive& flow = *keep;
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
  auto keep = Make(Options(3, 0), rng);
  Autoregressive& flow = *keep;
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
  auto keep_maf = Make(Options(4, 0), a);
  auto keep_iaf = Make(Options(4, 0, /*inverted=*/true), b);  // same masks
  Autoregressive &maf = *keep_maf, &iaf = *keep_iaf;          // and params
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

testing::FlowFactory Factory(AutoregressiveOptions o) {
  return [o](Rng& r) -> std::shared_ptr<Flow> { return Make(o, r); };
}

// Splines: Perturb(0.5), far from the identity.
FLOWTAPE_FLOW_CASES(
    Autoregressive, testing::FlowCase("maf_2d", Factory(Options(2, 0)), {2}),
    testing::FlowCase("maf_5d_cond", Factory(Options(5, 3)), {5}, 3),
    testing::FlowCase("iaf_2d", Factory(Options(2, 0, true)), {2}),
    testing::FlowCase("iaf_3d_cond", Factory(Options(3, 2, true)), {3}, 2),
    testing::FlowCase("spline_maf_2d", Factory(SplineOptions(2, 0, false)), {2})
        .Perturb(0.5)
        .Quadrature(7, 1000),  // the density has kinks at the knots
    testing::FlowCase("spline_maf_4d_cond", Factory(SplineOptions(4, 3, false)),
                      {4}, 3)
        .Perturb(0.5)
        .InputScale(2.0),
    testing::FlowCase("spline_iaf_3d_cond", Factory(SplineOptions(3, 2, true)),
                      {3}, 2)
        .Perturb(0.5));

TEST(AutoregressiveTest, CreateValidatesOptions) {
  Rng rng(3);
  auto bad = [&](const AutoregressiveOptions& o, const std::string& needle) {
    absl::Status s = Autoregressive::Create(o, rng).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s;
  };
  AutoregressiveOptions o = SplineOptions(4, 0, true);
  EXPECT_EQ(Make(o, rng)->name(), "spline_iaf");
  o.transform.spline.min_bin_height = -0.2;
  bad(o, "min height -0.2");
  o = SplineOptions(4, 0, false);
  o.transform.spline.bins = 1;
  bad(o, "bins >= 2");
  o = SplineOptions(4, 0, false);
  o.made.order = {1, 2, 2, 4};
  bad(o, "order [1, 2, 2, 4] is not a permutation of 1..4");
  o = SplineOptions(4, 0, false);
  o.made.hidden = {};
  bad(o, "at least one hidden layer");
  o = Options(3, 0);
  o.transform.kind = ElementwiseKind::kAffine;
  EXPECT_EQ(Make(o, rng)->name(), "affine_maf");
}

// A random ordering and random hidden degrees are drawn at construction:
// the masks (MaskedLinear buffers) and the order (a Made buffer) must come
// back with a checkpoint, so a MAF built from another seed gives the same
// log-likelihood log N(z; 0, I) + logdet after loading.
TEST(MafTest, CheckpointRestoresRandomMasksAcrossSeeds) {
  AutoregressiveOptions o = Options(5, 0);
  o.made.hidden_degrees = HiddenDegrees::kRandom;
  Rng r1(31), r2(32), rx(33);
  auto keep_saved = Make(o, r1), keep_fresh = Make(o, r2);
  Autoregressive &saved = *keep_saved, &fresh = *keep_fresh;
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

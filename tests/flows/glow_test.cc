// Glow's pieces (ActNorm, invertible 1x1 convolution, affine coupling,
// squeeze) and the multi-scale Glow: exact bijections whose log-determinants
// equal log|det| of the brute-force autodiff Jacobian, plus the properties
// specific to each piece. (Squeeze changes the shape, which the harness does
// not allow; it is checked directly.)
#include "flows/glow.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include "nn/checkpoint.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/actnorm.h"
#include "flows/glow_coupling.h"
#include "flows/invconv.h"
#include "flows/squeeze.h"
#include "gtest/gtest.h"
#include "tests/flows/bijection_checks.h"
#include "tests/flows/harness.h"

namespace flowtape::flows {
namespace {

void ExpectBijection(Flow& f, const Tensor& x, const Tensor& ctx = Tensor(),
                     bool grads = true) {
  SCOPED_TRACE(f.name());
  EXPECT_LT(testing::RoundTripError(f, x, ctx), 1e-10);
  EXPECT_LT(testing::LogdetError(f, x, ctx), 1e-9);
  EXPECT_LT(testing::AntisymmetryError(f, x, ctx), 1e-10);
  if (grads) {
    EXPECT_LT(testing::ParamGradError(f, x, ctx), 1e-6);
  }
}

TEST(ActNorm, DataDependentInitThenBijection) {
  Rng rng(1);
  ActNorm an(3);
  Tensor x = Tensor::Randn({5, 3, 4, 2}, rng) * 3.0 + 1.5;
  EXPECT_FALSE(an.initialized());
  FlowResult r = an.Forward(x);
  EXPECT_TRUE(an.initialized());
  for (int64_t c = 0; c < 3; ++c) {
    double s = 0, sq = 0;
    for (int64_t n = 0; n < 5; ++n)
      for (int64_t p = 0; p < 8; ++p) {
        double v = r.value[(n * 3 + c) * 8 + p];
        s += v;
        sq += v * v;
      }
    EXPECT_NEAR(s / 40, 0.0, 1e-12);
    EXPECT_NEAR(sq / 40, 1.0, 1e-5);
  }
  double sum_log_scale = 0;
  for (int64_t c = 0; c < 3; ++c) sum_log_scale += an.log_scale()[c];
  EXPECT_NEAR(r.logdet[0], 8 * sum_log_scale, 1e-12);
  // Parameters that are not all zero (e.g. loaded) are kept by Forward.
  ActNorm loaded(3);
  Tensor ls = loaded.log_scale();
  ls.mutable_data()[1] = 0.5;
  loaded.Forward(x);
  EXPECT_EQ(loaded.log_scale()[0], 0.0);
  EXPECT_EQ(loaded.log_scale()[1], 0.5);
  EXPECT_TRUE(loaded.initialized());
  testing::Perturb(an, 0.2, rng);
  ExpectBijection(an, x);
  ActNorm vec(4);  // [N, C] inputs
  ExpectBijection(vec, Tensor::Randn({3, 4}, rng));
}

// The initialised flag is a buffer: an identity ActNorm marked initialised
// (all-zero parameters, which Forward would otherwise re-initialise from the
// batch) keeps being the identity after a checkpoint round trip.
TEST(ActNorm, InitializedFlagSurvivesCheckpoint) {
  Rng rng(4);
  ActNorm saved(3), fresh(3);
  saved.set_initialized(true);
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path =
      std::string(dir != nullptr ? dir : "/tmp") + "/actnorm.ckpt";
  ASSERT_TRUE(nn::SaveCheckpoint(path, saved).ok());
  ASSERT_FALSE(fresh.initialized());
  absl::Status s = nn::LoadCheckpoint(path, fresh);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(fresh.initialized());
  Tensor x = Tensor::Randn({4, 3, 2, 2}, rng) * 3.0 + 1.5;
  FlowResult r = fresh.Forward(x);
  EXPECT_EQ(r.value.ToVector(), x.ToVector());
  EXPECT_EQ(r.logdet[0], 0.0);
  // And an initialised flag set by data-dependent init is saved as 1.
  ActNorm trained(3), other(3);
  trained.Forward(x);
  ASSERT_TRUE(nn::SaveCheckpoint(path, trained).ok());
  ASSERT_TRUE(nn::LoadCheckpoint(path, other).ok());
  EXPECT_TRUE(other.initialized());
  EXPECT_EQ(other.Forward(x).value.ToVector(),
            trained.Forward(x).value.ToVector());
}

TEST(InvConv1x1, LuAndFullAreBijections) {
  Rng rng(2);
  Tensor img = Tensor::Randn({2, 4, 3, 3}, rng);
  for (InvConvParam p : {InvConvParam::kLu, InvConvParam::kFull}) {
    InvConv1x1 f(4, rng, p);
    testing::Perturb(f, 0.2, rng);
    ExpectBijection(f, img);
    ExpectBijection(f, Tensor::Randn({3, 4}, rng));
    // log|det W| of the parametrisation is the determinant of W itself.
    NoGradScope no_grad;
    EXPECT_NEAR(f.LogAbsDetWeight().item(), LogAbsDet(f.Weight()).item(),
                1e-12);
  }
}

TEST(InvConv1x1, CreateAndValidateRejectSingularOrNonFiniteWeights) {
  auto bad = [](const absl::Status& s, const std::string& needle) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s;
  };
  // A full-rank W gives the linear flow z = W x.
  auto ok = InvConv1x1::Create(Tensor::FromVector({2, 2}, {2, 1, 0, 3}));
  ASSERT_TRUE(ok.ok()) << ok.status();
  FlowResult r = (*ok)->Forward(Tensor::FromVector({1, 2}, {1, 1}));
  EXPECT_DOUBLE_EQ(r.value[0], 3);
  EXPECT_DOUBLE_EQ(r.value[1], 3);
  EXPECT_NEAR(r.logdet[0], std::log(6.0), 1e-14);
  bad(InvConv1x1::Create(Tensor::FromVector({2, 2}, {1, 2, 2, 4})).status(),
      "invconv: W is singular");
  bad(InvConv1x1::Create(Tensor::FromVector({2, 2}, {1, 2, 1, 2 + 1e-14}))
          .status(),
      "singular");
  bad(InvConv1x1::Create(Tensor::FromVector({2, 2}, {1, NAN, 0, 1})).status(),
      "W[0, 1] = nan is not finite");
  bad(InvConv1x1::Create(Tensor::Zeros({2, 3})).status(), "must be square");
  // After a (bad) checkpoint: both parametrisations.
  Rng rng(5);
  InvConv1x1 full(3, rng, InvConvParam::kFull);
  EXPECT_TRUE(full.Validate().ok());
  Tensor w = full.Parameters()[0];
  for (int64_t j = 0; j < 3; ++j) w.mutable_data()[3 + j] = 2 * w[j];
  bad(full.Validate(), "invconv: W is singular");
  InvConv1x1 lu(3, rng);
  EXPECT_TRUE(lu.Validate().ok());
  for (auto& [name, p] : lu.NamedParameters())
    if (name == "log_s") p.mutable_data()[1] = -1000;  // exp underflows to 0
  bad(lu.Validate(), "invconv_lu: W is singular");
  for (auto& [name, p] : lu.NamedParameters())
    if (name == "lower") p.mutable_data()[3] = INFINITY;
  bad(lu.Validate(), "is not finite");
}

TEST(InvConv1x1, LuStartsAtARotation) {
  Rng rng(3);
  InvConv1x1 f(5, rng);
  NoGradScope no_grad;
  Tensor w = f.Weight();
  Tensor wtw = MatMulT(w, w, true, false);
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 5; ++j)
      EXPECT_NEAR(wtw[i * 5 + j], i == j ? 1.0 : 0.0, 1e-12);
  EXPECT_NEAR(f.LogAbsDetWeight().item(), 0.0, 1e-12);
}

TEST(GlowCoupling, ConditionalBijection) {
  Rng rng(4);
  GlowCoupling f(3, 6, rng, /*context_dim=*/2);
  testing::Perturb(f, 0.2, rng);
  Tensor x = Tensor::Randn({2, 3, 4, 4}, rng);
  Tensor ctx = Tensor::Randn({2, 2}, rng);
  ExpectBijection(f, x, ctx);
  NoGradScope no_grad;
  // The identity half passes through; the context changes the output.
  Tensor z = f.Forward(x, ctx).value;
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t p = 0; p < 16; ++p) EXPECT_EQ(z[n * 48 + p], x[n * 48 + p]);
  Tensor z2 = f.Forward(x, ctx + 1.0).value;
  EXPECT_NE(z[20], z2[20]);
}

TEST(Squeeze, SpaceToDepthLayout) {
  Rng rng(5);
  Squeeze sq(2, 4, 6);
  Tensor x = Tensor::Randn({2, 2, 4, 6}, rng);
  FlowResult r = sq.Forward(x);
  ASSERT_EQ(r.value.shape(), Shape({2, 8, 2, 3}));
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 2; ++j)
          for (int64_t h = 0; h < 2; ++h)
            for (int64_t w = 0; w < 3; ++w)
              EXPECT_EQ(r.value[((n * 8 + 4 * c + 2 * i + j) * 2 + h) * 3 + w],
                        x[((n * 2 + c) * 4 + 2 * h + i) * 6 + 2 * w + j]);
  ExpectBijection(sq, x, Tensor(), /*grads=*/false);
}

TEST(Glow, MultiScaleBijection) {
  for (int64_t context : {0, 3}) {
    Rng rng(6 + context);
    GlowOptions o;
    o.channels = 2;
    o.height = o.width = 4;
    o.levels = 2;
    o.depth = 2;
    o.hidden = 6;
    o.context_dim = context;
    Glow glow(o, rng);
    Tensor x = Tensor::Randn({3, 2, 4, 4}, rng);
    Tensor ctx = context ? Tensor::Randn({3, context}, rng) : Tensor();
    glow.Forward(x, ctx);  // data-dependent init
    testing::Perturb(glow, 0.1, rng);
    ExpectBijection(glow, x, ctx);
    EXPECT_EQ(glow.Forward(x, ctx).value.shape(), Shape({3, 2, 4, 4}));
  }
}

TEST(Glow, MapsMnistShapedImages) {
  Rng rng(7);
  GlowOptions o;  // 1x28x28, 2 levels
  o.depth = 1;
  o.hidden = 8;
  Glow glow(o, rng);
  Tensor x = Tensor::Rand({2, 1, 28, 28}, rng);
  glow.Forward(x);
  testing::Perturb(glow, 0.05, rng);
  NoGradScope no_grad;
  FlowResult r = glow.Forward(x);
  EXPECT_EQ(r.value.shape(), Shape({2, 1, 28, 28}));
  EXPECT_LT(testing::RoundTripError(glow, x), 1e-10);
  EXPECT_LT(testing::AntisymmetryError(glow, x), 1e-10);
  GlowOptions bad = o;
  bad.levels = 3;  // 28 is not divisible by 8
  EXPECT_FALSE(ValidateGlowOptions(bad).ok());
}

std::shared_ptr<Flow> SmallGlow(int64_t context, InvConvParam p, Rng& r) {
  GlowOptions o;
  o.channels = 2;
  o.height = o.width = 4;
  o.depth = 2;
  o.hidden = 6;
  o.context_dim = context;
  o.invconv = p;
  return std::make_shared<Glow>(o, r);
}

// Saves `saved` (parameters moved off their start by 0.2 N(0, 1)) and loads
// it into `fresh`, built from another seed: every random choice made at
// construction (InvConv1x1's P and sign_s) must come back with the file, so
// both compute the same function and log-det.
void ExpectCheckpointRestoresFunction(Flow& saved, Flow& fresh, const Tensor& x,
                                      const std::string& file) {
  Rng rng(99);
  for (Tensor p : saved.Parameters())
    for (int64_t j = 0; j < p.numel(); ++j)
      p.mutable_data()[j] += 0.2 * rng.Normal();
  NoGradScope no_grad;
  FlowResult want = saved.Forward(x);  // also initialises any ActNorm
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path =
      std::string(dir != nullptr ? dir : "/tmp") + "/" + file;
  ASSERT_TRUE(nn::SaveCheckpoint(path, saved).ok());
  absl::Status s = nn::LoadCheckpoint(path, fresh);
  ASSERT_TRUE(s.ok()) << s;
  FlowResult got = fresh.Forward(x);
  ASSERT_EQ(got.value.numel(), want.value.numel());
  for (int64_t i = 0; i < want.value.numel(); ++i)
    ASSERT_NEAR(got.value[i], want.value[i], 1e-14) << file << " entry " << i;
  for (int64_t i = 0; i < want.logdet.numel(); ++i)
    ASSERT_NEAR(got.logdet[i], want.logdet[i], 1e-14) << file << " row " << i;
}

TEST(InvConv1x1, LuCheckpointRestoresPermutationAndSigns) {
  Rng r1(5), r2(6), rx(7);
  InvConv1x1 saved(4, r1), fresh(4, r2);
  ExpectCheckpointRestoresFunction(
      saved, fresh, Tensor::Randn({3, 4, 2, 2}, rx), "invconv.ckpt");
  InvConv1x1 full(4, r1, InvConvParam::kFull),
      full_fresh(4, r2, InvConvParam::kFull);
  ExpectCheckpointRestoresFunction(full, full_fresh, Tensor::Randn({3, 4}, rx),
                                   "invconv_full.ckpt");
}

TEST(Glow, CheckpointRestoresFunctionAcrossSeeds) {
  Rng r1(8), r2(9), rx(10);
  auto saved = SmallGlow(0, InvConvParam::kLu, r1);
  auto fresh = SmallGlow(0, InvConvParam::kLu, r2);
  ExpectCheckpointRestoresFunction(
      *saved, *fresh, Tensor::Randn({3, 2, 4, 4}, rx) * 2.0 + 0.5, "glow.ckpt");
}

// ActNorm with its parameters as given (data-dependent init is tested above;
// the quadrature grid is no data batch).
std::shared_ptr<Flow> PlainActNorm(int64_t c) {
  auto a = std::make_shared<ActNorm>(c);
  a->set_initialized(true);
  return a;
}

FLOWTAPE_FLOW_CASES(
    Glow,
    testing::FlowCase("actnorm_image", [](Rng&) { return PlainActNorm(3); },
                      {3, 2, 2}),
    testing::FlowCase("actnorm_vector", [](Rng&) { return PlainActNorm(2); },
                      {2}),
    testing::FlowCase("invconv_lu",
                      [](Rng& r) { return std::make_shared<InvConv1x1>(4, r); },
                      {4, 2, 2}),
    testing::FlowCase("invconv_full",
                      [](Rng& r) {
                        return std::make_shared<InvConv1x1>(
                            4, r, InvConvParam::kFull);
                      },
                      {4, 2, 2}),
    testing::FlowCase("invconv_lu_vector",
                      [](Rng& r) { return std::make_shared<InvConv1x1>(2, r); },
                      {2}),
    testing::FlowCase(
        "glow_coupling_cond",
        [](Rng& r) { return std::make_shared<GlowCoupling>(4, 6, r, 2); },
        {4, 2, 2}, 2),
    testing::FlowCase("glow_2x4x4",
                      [](Rng& r) { return SmallGlow(0, InvConvParam::kLu, r); },
                      {2, 4, 4}),
    testing::FlowCase(
        "glow_2x4x4_cond_full",
        [](Rng& r) { return SmallGlow(3, InvConvParam::kFull, r); }, {2, 4, 4},
        3));

}  // namespace
}  // namespace flowtape::flows

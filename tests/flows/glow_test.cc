// Glow's pieces (ActNorm, invertible 1x1 convolution, squeeze; its coupling
// runs in coupling_test) and the multi-scale Glow: exact bijections whose
// log-determinants equal log|det| of the brute-force autodiff Jacobian, plus
// the properties specific to each piece: ActNorm's explicit, thread-safe
// data-dependent initialisation, checkpoints restoring random choices.
// (Squeeze changes the shape, which the harness does not allow; it is
// checked directly.)
//
// Glow's generative direction explodes after aggressive training
// (Behrmann et al. 2021, "Understanding and mitigating exploding inverses in
// invertible neural networks"): the split prior's exp(log sigma) and the
// coupling's 1 / sigmoid(r + 2) are unbounded, and each level amplifies the
// next. After 20 Adam steps at lr 0.1 (the harness's default) base samples
// reach ~1e99 and then overflow; at 0.05 they overflow float32. The
// unconditional case therefore trains at lr 0.03 in SamplesFiniteAfterTraining.
#include "flows/glow.h"

#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/actnorm.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "flows/invconv.h"
#include "flows/squeeze.h"
#include "gtest/gtest.h"
#include "nn/checkpoint.h"
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

std::shared_ptr<ActNorm> MakeActNorm(int64_t c) {
  return ActNorm::Create(c).value();
}

TEST(ActNorm, DataDependentInitIsAnExplicitPass) {
  Rng rng(1);
  auto keep = MakeActNorm(3);
  ActNorm& an = *keep;
  Tensor x = Tensor::Randn({5, 3, 4, 2}, rng) * 3.0 + 1.5;
  // Outside the pass: the identity, nothing written.
  FlowResult id = an.Forward(x);
  EXPECT_EQ(id.value.ToVector(), x.ToVector());
  EXPECT_FALSE(an.initialized());
  ASSERT_TRUE(InitializeFromData(an, x).ok());
  EXPECT_TRUE(an.initialized());
  FlowResult r = an.Forward(x);
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
  // Once: a second pass on other data changes nothing.
  const std::vector<double> before = an.log_scale().ToVector();
  ASSERT_TRUE(InitializeFromData(an, x * 2.0).ok());
  EXPECT_EQ(an.log_scale().ToVector(), before);
  // Parameters that are not all zero (e.g. set by hand) are kept.
  auto keep_loaded = MakeActNorm(3);
  Tensor ls = keep_loaded->log_scale();
  ls.mutable_data<double>()[1] = 0.5;
  ASSERT_TRUE(InitializeFromData(*keep_loaded, x).ok());
  EXPECT_EQ(keep_loaded->log_scale()[0], 0.0);
  EXPECT_EQ(keep_loaded->log_scale()[1], 0.5);
  EXPECT_TRUE(keep_loaded->initialized());
  testing::Perturb(an, 0.2, rng);
  ExpectBijection(an, x);
  auto vec = MakeActNorm(4);  // [N, C] inputs
  ExpectBijection(*vec, Tensor::Randn({3, 4}, rng));
}

// Two threads score one shared, uninitialised model: both see the same
// function as a lone caller, and nothing is written (the initialisation is
// an explicit pass, never a side effect of LogProb).
TEST(ActNorm, ConcurrentScoringOfAnUninitialisedModelWritesNothing) {
  Rng rng(11);
  GlowOptions o;
  o.channels = 2;
  o.height = o.width = 4;
  o.depth = 2;
  o.hidden = 6;
  auto glow = Glow::Create(o, rng).value();
  FlowModel model(StandardNormal::Create(Shape{2, 4, 4}).value(), glow);
  Tensor x = Tensor::Randn({8, 2, 4, 4}, rng) * 3.0 + 1.0;
  std::vector<double> alone;
  {
    NoGradScope no_grad;
    alone = model.LogProb(x).ToVector();
  }
  std::vector<double> got[2];
  auto score = [&](int t) {
    NoGradScope no_grad;
    for (int k = 0; k < 20; ++k) got[t] = model.LogProb(x).ToVector();
  };
  std::thread a(score, 0), b(score, 1);
  a.join();
  b.join();
  EXPECT_EQ(got[0], alone);
  EXPECT_EQ(got[1], alone);
  for (const auto& [name, t] : model.NamedBuffers())
    if (name.find("initialized") != std::string::npos) {
      EXPECT_EQ(t.item(), 0.0) << name;
    }
  // The explicit pass (one thread) then initialises every ActNorm.
  ASSERT_TRUE(model.InitializeFromData(x).ok());
  int initialised = 0;
  for (const auto& [name, t] : model.NamedBuffers())
    if (name.find("initialized") != std::string::npos) {
      EXPECT_EQ(t.item(), 1.0) << name;
      ++initialised;
    }
  EXPECT_EQ(initialised, 2 * o.levels);
}

// The initialised flag is a buffer: it comes back with a checkpoint, so a
// loaded model is not re-initialised by a later pass.
TEST(ActNorm, InitializedFlagSurvivesCheckpoint) {
  Rng rng(4);
  auto trained = MakeActNorm(3), other = MakeActNorm(3);
  Tensor x = Tensor::Randn({4, 3, 2, 2}, rng) * 3.0 + 1.5;
  ASSERT_TRUE(InitializeFromData(*trained, x).ok());
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path =
      std::string(dir != nullptr ? dir : "/tmp") + "/actnorm.ckpt";
  ASSERT_TRUE(nn::SaveCheckpoint(path, *trained).ok());
  ASSERT_FALSE(other->initialized());
  absl::Status s = nn::LoadCheckpoint(path, *other);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(other->initialized());
  ASSERT_TRUE(InitializeFromData(*other, x * 5.0).ok());  // keeps its values
  EXPECT_EQ(other->Forward(x).value.ToVector(),
            trained->Forward(x).value.ToVector());
}

TEST(InvConv1x1, LuAndFullAreBijections) {
  Rng rng(2);
  Tensor img = Tensor::Randn({2, 4, 3, 3}, rng);
  for (InvConvParam p : {InvConvParam::kLu, InvConvParam::kFull}) {
    auto keep = InvConv1x1::Create(4, rng, p).value();
    InvConv1x1& f = *keep;
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
  auto full = InvConv1x1::Create(3, rng, InvConvParam::kFull).value();
  EXPECT_TRUE(full->Validate().ok());
  Tensor w = full->Parameters()[0];
  for (int64_t j = 0; j < 3; ++j) w.mutable_data<double>()[3 + j] = 2 * w[j];
  bad(full->Validate(), "invconv: W is singular");
  auto lu = InvConv1x1::Create(3, rng).value();
  EXPECT_TRUE(lu->Validate().ok());
  // In float32 the threshold is float32's: a W with sigma_min / sigma_max =
  // 1e-7 is fine in float64 and singular in float32.
  for (auto& [name, p] : lu->NamedParameters())
    if (name == "log_s") p.mutable_data<double>()[1] = std::log(1e-7);
  EXPECT_TRUE(lu->Validate().ok());
  lu->To(kFloat32);
  bad(lu->Validate(), "invconv_lu: W is singular");
  lu->To(kFloat64);
  for (auto& [name, p] : lu->NamedParameters())
    if (name == "log_s") p.mutable_data<double>()[1] = -1000;  // exp: 0
  bad(lu->Validate(), "invconv_lu: W is singular");
  for (auto& [name, p] : lu->NamedParameters())
    if (name == "lower") p.mutable_data<double>()[3] = INFINITY;
  bad(lu->Validate(), "is not finite");
  EXPECT_EQ(InvConv1x1::Create(0, rng).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(InvConv1x1, LuStartsAtARotation) {
  Rng rng(3);
  auto keep = InvConv1x1::Create(5, rng).value();
  InvConv1x1& f = *keep;
  NoGradScope no_grad;
  Tensor w = f.Weight();
  Tensor wtw = MatMulT(w, w, true, false);
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 5; ++j)
      EXPECT_NEAR(wtw[i * 5 + j], i == j ? 1.0 : 0.0, 1e-12);
  EXPECT_NEAR(f.LogAbsDetWeight().item(), 0.0, 1e-12);
}

TEST(Squeeze, SpaceToDepthLayout) {
  Rng rng(5);
  auto keep = Squeeze::Create(2, 4, 6).value();
  Squeeze& sq = *keep;
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
  EXPECT_FALSE(Squeeze::Create(2, 3, 4).ok());
  EXPECT_FALSE(Squeeze::Create(0, 2, 2).ok());
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
    auto keep = Glow::Create(o, rng).value();
    Glow& glow = *keep;
    Tensor x = Tensor::Randn({3, 2, 4, 4}, rng);
    Tensor ctx = context ? Tensor::Randn({3, context}, rng) : Tensor();
    ASSERT_TRUE(InitializeFromData(glow, x, ctx).ok());
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
  auto keep = Glow::Create(o, rng).value();
  Glow& glow = *keep;
  Tensor x = Tensor::Rand({2, 1, 28, 28}, rng);
  ASSERT_TRUE(InitializeFromData(glow, x).ok());
  testing::Perturb(glow, 0.05, rng);
  NoGradScope no_grad;
  FlowResult r = glow.Forward(x);
  EXPECT_EQ(r.value.shape(), Shape({2, 1, 28, 28}));
  EXPECT_LT(testing::RoundTripError(glow, x), 1e-10);
  EXPECT_LT(testing::AntisymmetryError(glow, x), 1e-10);
  GlowOptions bad = o;
  bad.levels = 3;  // 28 is not divisible by 8
  EXPECT_FALSE(bad.Validate().ok());
  EXPECT_FALSE(Glow::Create(bad, rng).ok());
}

// 0 and negative sides are multiples of 2^L too; they, and sides below
// 2^L, leave a level without an even image to squeeze: a Status, not an abort
// inside Create.
TEST(Glow, EmptyNegativeOrTooSmallImagesAreAStatus) {
  Rng rng(7);
  for (auto [h, w] :
       {std::pair<int64_t, int64_t>{0, 8}, {8, 0}, {-4, 8}, {8, -8}, {2, 8}}) {
    GlowOptions o;
    o.height = h, o.width = w, o.levels = 2, o.depth = 1, o.hidden = 4;
    auto g = Glow::Create(o, rng);
    EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(g.status().message().find(absl::StrCat("image ", h, "x", w)),
              std::string::npos)
        << g.status();
  }
  GlowOptions ok;
  ok.height = ok.width = 4, ok.levels = 2, ok.depth = 1, ok.hidden = 4;
  EXPECT_TRUE(Glow::Create(ok, rng).ok());
}

std::shared_ptr<Flow> SmallGlow(int64_t context, InvConvParam p, Rng& r) {
  GlowOptions o;
  o.channels = 2;
  o.height = o.width = 4;
  o.depth = 2;
  o.hidden = 6;
  o.context_dim = context;
  o.invconv = p;
  return Glow::Create(o, r).value();
}

// Saves `saved` (parameters moved off their start by 0.2 N(0, 1)) and loads
// it into `fresh`, built from another seed: every random choice made at
// construction (InvConv1x1's P and sign_s) must come back with the file, so
// both compute the same function and log-det.
void ExpectCheckpointRestoresFunction(Flow& saved, Flow& fresh, const Tensor& x,
                                      const std::string& file) {
  Rng rng(99);
  ASSERT_TRUE(InitializeFromData(saved, x).ok());
  for (Tensor p : saved.Parameters())
    for (int64_t j = 0; j < p.numel(); ++j)
      p.mutable_data<double>()[j] += 0.2 * rng.Normal();
  NoGradScope no_grad;
  FlowResult want = saved.Forward(x);
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
  auto saved = InvConv1x1::Create(4, r1).value();
  auto fresh = InvConv1x1::Create(4, r2).value();
  ExpectCheckpointRestoresFunction(
      *saved, *fresh, Tensor::Randn({3, 4, 2, 2}, rx), "invconv.ckpt");
  auto full = InvConv1x1::Create(4, r1, InvConvParam::kFull).value();
  auto full_fresh = InvConv1x1::Create(4, r2, InvConvParam::kFull).value();
  ExpectCheckpointRestoresFunction(
      *full, *full_fresh, Tensor::Randn({3, 4}, rx), "invconv_full.ckpt");
}

TEST(Glow, CheckpointRestoresFunctionAcrossSeeds) {
  Rng r1(8), r2(9), rx(10);
  auto saved = SmallGlow(0, InvConvParam::kLu, r1);
  auto fresh = SmallGlow(0, InvConvParam::kLu, r2);
  ExpectCheckpointRestoresFunction(
      *saved, *fresh, Tensor::Randn({3, 2, 4, 4}, rx) * 2.0 + 0.5, "glow.ckpt");
}

// ActNorm with its parameters as given (outside an initialisation pass the
// layer is the affine map of its parameters; the quadrature grid is no data
// batch).
FLOWTAPE_FLOW_CASES(
    Glow,
    testing::FlowCase("actnorm_image", [](Rng&) { return MakeActNorm(3); },
                      {3, 2, 2}),
    testing::FlowCase("actnorm_vector", [](Rng&) { return MakeActNorm(2); },
                      {2}),
    testing::FlowCase("invconv_lu",
                      [](Rng& r) { return InvConv1x1::Create(4, r).value(); },
                      {4, 2, 2}),
    testing::FlowCase(
        "invconv_full",
        [](Rng& r) {
          return InvConv1x1::Create(4, r, InvConvParam::kFull).value();
        },
        {4, 2, 2}),
    testing::FlowCase("invconv_lu_vector",
                      [](Rng& r) { return InvConv1x1::Create(2, r).value(); },
                      {2}),
    testing::FlowCase("glow_2x4x4",
                      [](Rng& r) { return SmallGlow(0, InvConvParam::kLu, r); },
                      {2, 4, 4})
        .TrainLr(0.03),  // exploding inverses: see the top of the file
    testing::FlowCase(
        "glow_2x4x4_cond_full",
        [](Rng& r) { return SmallGlow(3, InvConvParam::kFull, r); }, {2, 4, 4},
        3));

}  // namespace
}  // namespace flowtape::flows

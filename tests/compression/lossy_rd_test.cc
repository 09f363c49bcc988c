#include "compression/lossy_rd.h"

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/rng.h"
#include "autodiff/tape.h"
#include "autodiff/tensor.h"
#include "compression/lossy.h"
#include "flows/coupling.h"
#include "flows/householder.h"
#include "flows/sequential.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace flowtape::compression {
namespace {

// Integer images [n, 1, 4, 4]: a level per image plus noise of +-spread,
// clamped to 0..255 (neighbouring pixels correlate, so a flow can gain).
Tensor Images(int64_t n, int spread, Rng& rng) {
  std::vector<double> v(n * 16);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t level = 20 + rng.UniformInt(216);
    for (int k = 0; k < 16; ++k) {
      const int64_t p = level + rng.UniformInt(2 * spread + 1) - spread;
      v[i * 16 + k] = static_cast<double>(std::clamp<int64_t>(p, 0, 255));
    }
  }
  return Tensor::FromVector(Shape{n, 1, 4, 4}, v);
}

// Householder reflections and two affine couplings on 4 x 4 images seen as
// R^16 (float64), the couplings' weights perturbed away from the identity,
// with the prior fitted to the latents of training images.
LossyModel CouplingModel(PixelMap map) {
  Rng rng(3);
  auto seq = std::make_shared<flows::Sequential>();
  seq->Add(*flows::Householder::Create(16, 4, rng));
  for (bool flip : {false, true}) {
    flows::CouplingOptions o;
    o.event = Shape{16};
    o.hidden = {8};
    o.flip = flip;
    o.activation = nn::Activation::kTanh;
    seq->Add(*flows::Coupling::Create(o, rng));
  }
  for (Tensor& p : seq->Parameters()) {
    double* v = p.mutable_data<double>();
    for (int64_t i = 0; i < p.numel(); ++i) v[i] += 0.05 * rng.Normal();
  }
  LossyModel m;
  m.flow = seq;
  m.image = Shape{1, 4, 4};
  m.event = Shape{16};
  m.pixel_map = map;
  m.prior.mean.assign(16, 0.0);
  m.prior.scale.assign(16, 1.0);
  absl::StatusOr<Tensor> z = Latents(m, Images(300, 30, rng));
  EXPECT_TRUE(z.ok()) << z.status();
  absl::StatusOr<LatentPrior> prior = FitLatentPrior(*z);
  EXPECT_TRUE(prior.ok()) << prior.status();
  m.prior = *prior;
  return m;
}

TEST(LatentBits, IsMinusLog2OfTheLogisticMassOfTheBin) {
  const double mu = 0.3, s = 0.7, step = 0.5;
  auto cdf = [&](double v) { return 1 / (1 + std::exp(-(v - mu) / s)); };
  for (double t : {-6.0, -1.0, 0.0, 0.25, 2.0, 7.5}) {
    const Tensor bits = LatentBits(Tensor::FromVector(Shape{1, 1}, {t}),
                                   Tensor::FromVector({1}, {mu}),
                                   Tensor::FromVector({1}, {std::log(s)}),
                                   Tensor::FromVector({1}, {step}));
    const double want = -std::log2(cdf(t + step / 2) - cdf(t - step / 2));
    EXPECT_NEAR(bits[0], want, 1e-12 * std::max(1.0, want)) << t;
  }
  // Far in the tail the direct difference cancels; the stable form does not
  // (there bits ~ (t - mu) / (s log 2) - log2(2 sinh(Delta / (2 s)))).
  const double t = 60.0;
  const Tensor bits = LatentBits(
      Tensor::FromVector(Shape{1, 1}, {t}), Tensor::FromVector({1}, {mu}),
      Tensor::FromVector({1}, {std::log(s)}), Tensor::FromVector({1}, {step}));
  const double tail =
      (t - mu) / (s * std::log(2.0)) - std::log2(2 * std::sinh(step / (2 * s)));
  EXPECT_NEAR(bits[0], tail, 1e-9 * tail);
}

TEST(LatentBits, GradientsMatchFiniteDifferences) {
  Rng rng(5);
  const Tensor t = Tensor::Randn(Shape{3, 4}, rng) * 2.0;
  const Tensor mean = Tensor::Randn(Shape{4}, rng);
  const Tensor log_scale = Tensor::Randn(Shape{4}, rng) * 0.5;
  const Tensor steps = Tensor::FromVector(Shape{4}, {0.1, 0.5, 1.0, 3.0});
  const testing::ScalarFn f = [&](const std::vector<Tensor>& in) {
    return Sum(LatentBits(in[0], in[1], in[2], steps) *
               Tensor::FromVector(Shape{3}, {1.0, -0.5, 2.0}));
  };
  EXPECT_LT(testing::GradientError(f, {t, mean, log_scale}), 1e-7);
  EXPECT_LT(testing::HessianVectorError(f, {t, mean, log_scale}), 1e-6);
}

// The proxy loss as the trainer computes it, with the same noise each call.
double ProxyLoss(const LossyModel& m, const LearnedLatentPrior& prior,
                 const Tensor& x, double delta, double lambda,
                 QuantizationProxy proxy, Tensor* loss_out = nullptr) {
  Rng rng(11);
  absl::StatusOr<RateDistortionTerms> t =
      RateDistortion(m, prior, x, delta, proxy, &rng);
  EXPECT_TRUE(t.ok()) << t.status();
  const Tensor loss = (Mean(t->bits) + lambda * Mean(t->sq_error)) * (1.0 / 16);
  if (loss_out != nullptr) *loss_out = loss;
  return loss.item();
}

TEST(RateDistortion, ProxyGradientMatchesFiniteDifferencesThroughTheFlow) {
  for (PixelMap map : {PixelMap::kIdentity, PixelMap::kLogit}) {
    const LossyModel m = CouplingModel(map);
    auto learned = LearnedLatentPrior::Create(m.prior).value();
    LearnedLatentPrior& prior = *learned;
    Rng rng(2);
    const Tensor x = Images(6, 30, rng);
    const double delta = map == PixelMap::kIdentity ? 8.0 : 0.25;
    const double lambda = 0.01;
    std::vector<Tensor> params = m.flow->Parameters();
    for (const Tensor& p : prior.Parameters()) params.push_back(p);
    std::vector<Tensor> grads;
    {
      TapeScope scope;
      Tensor loss;
      ProxyLoss(m, prior, x, delta, lambda, QuantizationProxy::kUniformNoise,
                &loss);
      grads = Grad({loss}, params);
    }
    const double h = 1e-6;
    double worst = 0;
    int64_t nonzero = 0;
    NoGradScope no_grad;
    for (size_t i = 0; i < params.size(); ++i) {
      double* v = params[i].mutable_data<double>();
      for (int64_t j = 0; j < params[i].numel(); ++j) {
        const double old = v[j];
        v[j] = old + h;
        const double up = ProxyLoss(m, prior, x, delta, lambda,
                                    QuantizationProxy::kUniformNoise);
        v[j] = old - h;
        const double down = ProxyLoss(m, prior, x, delta, lambda,
                                      QuantizationProxy::kUniformNoise);
        v[j] = old;
        const double fd = (up - down) / (2 * h);
        nonzero += std::abs(fd) > 1e-6;
        worst = std::max(
            worst, std::abs(grads[i][j] - fd) / std::max(1e-3, std::abs(fd)));
      }
    }
    EXPECT_LT(worst, 1e-5) << static_cast<int>(map);
    EXPECT_GT(nonzero, 300) << static_cast<int>(map);
  }
}

TEST(RateDistortion, StraightThroughHasTheRoundedValueAndAnIdentityPassage) {
  const LossyModel m = CouplingModel(PixelMap::kIdentity);
  auto learned = LearnedLatentPrior::Create(m.prior).value();
  LearnedLatentPrior& prior = *learned;
  Rng rng(4);
  const Tensor x = Images(5, 30, rng);
  auto terms = [&](QuantizationProxy p) {
    return *RateDistortion(m, prior, x, 8.0, p, nullptr);
  };
  TapeScope scope;
  const RateDistortionTerms ste = terms(QuantizationProxy::kStraightThrough);
  const RateDistortionTerms round = terms(QuantizationProxy::kRound);
  for (int64_t i = 0; i < 5; ++i) {
    EXPECT_EQ(ste.bits[i], round.bits[i]);
    EXPECT_EQ(ste.sq_error[i], round.sq_error[i]);
  }
  // d bits / d theta: zero through z for kRound, nonzero for the STE.
  const std::vector<Tensor> flow = m.flow->Parameters();
  const Tensor g_ste = Grad({Sum(ste.bits)}, {flow[0]})[0];
  EXPECT_GT(Max(Abs(g_ste)).item(), 1e-6);
  // The prior's gradient is the same for both: same z~ value.
  const std::vector<Tensor> a = Grad({Sum(ste.bits)}, prior.Parameters());
  const std::vector<Tensor> b = Grad({Sum(round.bits)}, prior.Parameters());
  for (size_t k = 0; k < a.size(); ++k)
    for (int64_t j = 0; j < a[k].numel(); ++j) EXPECT_EQ(a[k][j], b[k][j]);
}

TEST(RateDistortion, RoundedRateIsTheCodecsCodeLengthAndNearlyTheFileSize) {
  for (PixelMap map : {PixelMap::kIdentity, PixelMap::kLogit}) {
    LossyModel m = CouplingModel(map);
    Rng rng(8);
    m.step_scale.resize(16);
    for (double& w : m.step_scale) w = 0.5 + 1.5 * rng.Uniform();
    const double delta = map == PixelMap::kIdentity ? 4.0 : 0.125;
    auto learned = LearnedLatentPrior::Create(m.prior).value();
    LearnedLatentPrior& prior = *learned;
    const Tensor x = Images(300, 30, rng);
    const double estimate =
        Sum(RateDistortion(m, prior, x, delta, QuantizationProxy::kRound,
                           nullptr)
                ->bits)
            .item();
    absl::StatusOr<LossyCodec> codec = LossyCodec::Create(m, delta, 20);
    ASSERT_TRUE(codec.ok()) << codec.status();
    absl::StatusOr<std::vector<int32_t>> symbols =
        codec->Quantize(*Latents(m, x));
    ASSERT_TRUE(symbols.ok());
    const double ideal = codec->IdealBits(*symbols);
    EXPECT_NEAR(estimate, ideal, 1e-4 * ideal);
    absl::StatusOr<std::vector<uint8_t>> bytes = codec->Encode(x);
    ASSERT_TRUE(bytes.ok());
    const double file_bits = 8.0 * bytes->size();
    // Header, CRC and the rANS flush: 60 bytes, less up to 3 of rounding.
    EXPECT_GE(file_bits - estimate, 8.0 * (kLossyHeaderBytes + 4));
    EXPECT_LE(file_bits - estimate, 8.0 * (kLossyHeaderBytes + 4 + 8) + 1);
  }
}

TEST(TrainRateDistortion, LowersTheCodecsRateDistortionLoss) {
  const LossyModel m = CouplingModel(PixelMap::kIdentity);
  auto learned = LearnedLatentPrior::Create(m.prior).value();
  LearnedLatentPrior& prior = *learned;
  Rng rng(9);
  const Tensor x = Images(400, 10, rng);
  const double delta = 8.0;
  // The codec's own loss: rounded latents, bits per pixel + lambda MSE.
  auto loss = [&](double lambda) {
    const RateDistortionTerms t =
        *RateDistortion(m, prior, x, delta, QuantizationProxy::kRound, nullptr);
    return (Mean(t.bits).item() + lambda * Mean(t.sq_error).item()) / 16;
  };
  const RateDistortionTerms t0 =
      *RateDistortion(m, prior, x, delta, QuantizationProxy::kRound, nullptr);
  const double lambda = MatchedLambda(Mean(t0.sq_error).item() / 16);
  const double before = loss(lambda);
  RdTrainOptions o;
  o.delta = delta;
  o.lambda = lambda;
  o.steps = 300;
  o.batch = 32;
  o.lr = 1e-2;
  o.prior_lr = 5e-2;
  int64_t seen = 0;
  absl::StatusOr<std::vector<RdStep>> h = TrainRateDistortion(
      m, prior, x, o, [&](const RdStep& s) { seen = s.step; });
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(seen, 300);
  const double after = loss(lambda);
  EXPECT_LT(after, 0.8 * before) << before;
}

TEST(RateDistortion, BadInputIsInvalidArgument) {
  const LossyModel m = CouplingModel(PixelMap::kIdentity);
  auto learned = LearnedLatentPrior::Create(m.prior).value();
  LearnedLatentPrior& prior = *learned;
  Rng rng(1);
  const Tensor x = Images(2, 3, rng);
  auto code = [&](const Tensor& px, double delta, QuantizationProxy p, Rng* r) {
    return RateDistortion(m, prior, px, delta, p, r).status().code();
  };
  const auto kBad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(code(x, 1.0, QuantizationProxy::kUniformNoise, nullptr), kBad);
  EXPECT_EQ(code(x, 0.0, QuantizationProxy::kRound, nullptr), kBad);
  EXPECT_EQ(code(x, NAN, QuantizationProxy::kRound, nullptr), kBad);
  EXPECT_EQ(code(x * 0.5, 1.0, QuantizationProxy::kRound, nullptr), kBad);
  EXPECT_EQ(code(Reshape(x, {2, 16}), 1.0, QuantizationProxy::kRound, nullptr),
            kBad);
  LatentPrior small;
  small.mean = {0.0};
  small.scale = {1.0};
  EXPECT_EQ(RateDistortion(m, *LearnedLatentPrior::Create(small).value(), x,
                           1.0, QuantizationProxy::kRound, nullptr)
                .status()
                .code(),
            kBad);
  for (auto edit : std::vector<void (*)(RdTrainOptions&)>{
           [](RdTrainOptions& o) { o.delta = -1; },
           [](RdTrainOptions& o) { o.lambda = NAN; },
           [](RdTrainOptions& o) { o.lr = 0; },
           [](RdTrainOptions& o) { o.prior_lr = INFINITY; },
           [](RdTrainOptions& o) { o.steps = 0; },
           [](RdTrainOptions& o) { o.batch = 0; },
           [](RdTrainOptions& o) { o.proxy = QuantizationProxy::kRound; }}) {
    RdTrainOptions o;
    edit(o);
    EXPECT_EQ(o.Validate().code(), kBad);
    EXPECT_EQ(TrainRateDistortion(m, prior, x, o).status().code(), kBad);
  }
}

// LearnedLatentPrior::Create refuses priors the constructor aborts on (or
// would turn into NaN parameters), naming the problem; a valid one holds
// mu and log s and gives them back through Values().
TEST(LearnedLatentPrior, CreateRefusesBadPriorsWithAStatus) {
  auto expect_bad = [](const LatentPrior& p, const std::string& what) {
    const absl::Status s = LearnedLatentPrior::Create(p).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(what), std::string::npos) << s;
  };
  expect_bad({{0.0, 1.0}, {1.0}}, "got 2 means and 1 scales");
  expect_bad({{}, {}}, "want D >= 1 means");
  expect_bad({{0.0, NAN}, {1.0, 2.0}}, "mean 1 = nan is not finite");
  expect_bad({{0.0, 1.0}, {1.0, 0.0}}, "scale 1 = 0 must be finite and > 0");
  expect_bad({{0.0}, {-2.0}}, "scale 0 = -2");
  expect_bad({{0.0}, {INFINITY}}, "scale 0 = inf");
  auto prior = LearnedLatentPrior::Create({{0.5, -1.0}, {2.0, 0.25}});
  ASSERT_TRUE(prior.ok()) << prior.status();
  EXPECT_EQ((*prior)->mean().ToVector(), (std::vector<double>{0.5, -1.0}));
  EXPECT_EQ((*prior)->log_scale().ToVector(),
            (std::vector<double>{std::log(2.0), std::log(0.25)}));
  const LatentPrior back = (*prior)->Values();
  EXPECT_NEAR(back.scale[0], 2.0, 1e-15);
  EXPECT_NEAR(back.scale[1], 0.25, 1e-15);
}

}  // namespace
}  // namespace flowtape::compression

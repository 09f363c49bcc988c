// The integer discrete flow (compression/idf.h): exact inverse on integers,
// the discrete NLL against the prior's pmf and a brute-force sum over Z^2,
// straight-through gradients against finite differences of the un-rounded
// map, the prior's gradient, and the model file.
#include "compression/idf.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/rng.h"
#include "autodiff/tape.h"
#include "autodiff/tensor.h"
#include "compression/frequencies.h"
#include "gtest/gtest.h"
#include "nn/checkpoint.h"

namespace flowtape::compression {
namespace {

std::shared_ptr<IntegerDiscreteFlow> MakeFlow(const IdfOptions& o,
                                              uint64_t seed) {
  Rng rng(seed);
  auto flow = IntegerDiscreteFlow::Create(o, rng);
  EXPECT_TRUE(flow.ok()) << flow.status();
  return *flow;
}

// Every coupling parameter set to N(0, scale^2): translations of order
// scale * sqrt(fan-in) * (hidden activations), far from the identity.
void Randomize(const IntegerDiscreteFlow& flow, double scale, uint64_t seed) {
  Rng rng(seed);
  for (auto& [name, p] : flow.NamedParameters()) {
    if (name.rfind("coupling", 0) != 0) continue;
    double* v = p.mutable_data<double>();
    for (int64_t i = 0; i < p.numel(); ++i) v[i] = scale * rng.Normal();
  }
}

Tensor RandomIntegers(int64_t n, int64_t d, int64_t lo, int64_t hi,
                      uint64_t seed) {
  Rng rng(seed);
  std::vector<double> v(n * d);
  for (double& x : v) x = lo + static_cast<double>(rng.UniformInt(hi - lo + 1));
  return Tensor::FromVector({n, d}, v);
}

IdfOptions Small() {
  IdfOptions o;
  o.height = 4;
  o.width = 5;
  o.couplings = 4;
  o.hidden = {12, 7};
  o.components = 3;
  return o;
}

TEST(IdfTest, OptionsAreValidated) {
  IdfOptions o = Small();
  EXPECT_TRUE(o.Validate().ok());
  o.couplings = 0;
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
  o = Small();
  o.height = o.width = 1;
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
  o = Small();
  o.hidden = {};
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
  auto parsed = IdfOptions::FromJson(Small().ToJson());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->ToJson(), Small().ToJson());
  EXPECT_EQ(MakeFlow(Small(), 1)->NumParameters(), Small().NumParameters());
  for (const char* bad :
       {"couplings\": 4294967297", "couplings\": -9223372036854775808",
        "couplings\": 2.5", "couplings\": 65"}) {
    std::string text = Small().ToJson().dump();
    const size_t at = text.find("couplings\":");
    text.replace(at, text.find(',', at) - at, bad);
    auto j = io::ParseJson(text, "test");
    ASSERT_TRUE(j.ok()) << text;
    EXPECT_EQ(IdfOptions::FromJson(*j).status().code(),
              absl::StatusCode::kInvalidArgument)
        << text;
  }
}

TEST(IdfTest, RoundTripIsExactOnIntegers) {
  NoGradScope no_grad;
  auto flow = MakeFlow(Small(), 1);
  Randomize(*flow, 2.0, 2);
  for (auto [lo, hi] : {std::pair<int64_t, int64_t>{0, 255}, {-5000, 5000}}) {
    Tensor x = RandomIntegers(50, 20, lo, hi, 3);
    Tensor z = flow->Forward(x);
    Tensor back = flow->Inverse(z);
    double moved = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      ASSERT_EQ(back[i], x[i]) << "entry " << i;
      ASSERT_EQ(z[i], std::round(z[i]));
      moved = std::max(moved, std::abs(z[i] - x[i]));
    }
    EXPECT_GT(moved, 10.0);  // the map is far from the identity
  }
}

TEST(IdfTest, NllIsSumOfLatentLogPmf) {
  NoGradScope no_grad;
  auto flow = MakeFlow(Small(), 4);
  Randomize(*flow, 0.3, 5);
  // Spread the prior too.
  Rng rng(6);
  for (Tensor p :
       {flow->prior_logits(), flow->prior_means(), flow->prior_log_scales()}) {
    double* v = p.mutable_data<double>();
    for (int64_t i = 0; i < p.numel(); ++i) v[i] += 0.5 * rng.Normal();
  }
  Tensor x = RandomIntegers(8, 20, 0, 255, 7);
  Tensor z = flow->Forward(x);
  Tensor log_p = flow->LogProb(x);
  const int k = Small().components;
  const int offset = -300;  // symbol s stands for z = offset + s
  for (int64_t n = 0; n < 8; ++n) {
    double bits = 0;
    for (int64_t d = 0; d < 20; ++d) {
      std::vector<LogisticComponent> comps(k);
      for (int c = 0; c < k; ++c) {
        comps[c].weight = std::exp(flow->prior_logits()[d * k + c]);
        comps[c].mean = flow->prior_means()[d * k + c] * kIdfMeanUnit - offset;
        comps[c].scale =
            std::exp(flow->prior_log_scales()[d * k + c] * kIdfLogScaleUnit);
      }
      auto pmf = DiscretizedLogisticMixturePmf(comps, 900);
      ASSERT_TRUE(pmf.ok());
      const int64_t s = static_cast<int64_t>(z[n * 20 + d]) - offset;
      ASSERT_GT(s, 0);
      ASSERT_LT(s, 899);  // an interior bin
      bits -= std::log2((*pmf)[s]);
    }
    EXPECT_NEAR(-log_p[n] / std::log(2.0), bits, 1e-9 * bits) << "image " << n;
  }
}

TEST(IdfTest, PmfSumsToOneOverZ2) {
  NoGradScope no_grad;
  IdfOptions o;
  o.height = 1;
  o.width = 2;
  o.couplings = 3;
  o.hidden = {8};
  o.components = 2;
  auto flow = MakeFlow(o, 8);
  Randomize(*flow, 2.0, 9);
  Tensor means = flow->prior_means();
  double* m = means.mutable_data<double>();
  Tensor log_scales = flow->prior_log_scales();
  double* g = log_scales.mutable_data<double>();
  for (int i = 0; i < 4; ++i) {
    m[i] = (-20.0 + 13.0 * i) / kIdfMeanUnit;
    g[i] = std::log(3.0 + i) / kIdfLogScaleUnit;
  }
  // The map is a bijection of Z^2, so sum_x P(x) over a box B is P_Z(f(B)),
  // which tends to 1 as B grows (here: tails below 1e-9).
  const int64_t w = 400;
  std::vector<double> row;
  double total = 0, biggest_shift = 0;
  for (int64_t a = -w; a <= w; ++a) {
    row.clear();
    for (int64_t b = -w; b <= w; ++b) {
      row.push_back(static_cast<double>(a));
      row.push_back(static_cast<double>(b));
    }
    Tensor x = Tensor::FromVector({2 * w + 1, 2}, row);
    Tensor lp = flow->LogProb(x);
    Tensor z = flow->Forward(x);
    for (int64_t i = 0; i < lp.numel(); ++i) {
      total += std::exp(lp[i]);
      for (int64_t j = 2 * i; j < 2 * i + 2; ++j) {
        biggest_shift = std::max(biggest_shift, std::abs(z[j] - x[j]));
      }
    }
  }
  EXPECT_NEAR(total, 1.0, 1e-8);
  EXPECT_GT(biggest_shift, 20.0);
}

// Straight-through: with one coupling and the loss L = sum c . z, the
// gradient through round(t) equals the exact gradient of sum c_b . t(theta)
// (the un-rounded translation), checked by central differences.
TEST(IdfTest, StraightThroughGradientMatchesUnroundedFiniteDifferences) {
  IdfOptions o = Small();
  o.couplings = 1;
  auto flow = MakeFlow(o, 10);
  Randomize(*flow, 0.4, 11);
  Tensor x = RandomIntegers(6, 20, 0, 255, 12);
  Rng rng(13);
  std::vector<double> cv(6 * 20);
  for (double& c : cv) c = rng.Normal();
  Tensor c = Tensor::FromVector({6, 20}, cv);
  flow->ZeroGrad();
  Backward(Sum(flow->Forward(x) * c));
  const auto& b = flow->updated(0);
  auto relaxed = [&]() {
    NoGradScope no_grad;
    Tensor xa = IndexSelect(x, 1, flow->conditioning(0));
    Tensor t = flow->net(0)((xa - kIdfInputCenter) * kIdfInputScale);
    return Sum(t * IndexSelect(c, 1, b)).item();
  };
  double worst = 0;
  int checked = 0;
  for (auto& [name, p] : flow->NamedParameters()) {
    if (name.rfind("coupling", 0) != 0) continue;
    Tensor grad = p.grad();
    ASSERT_TRUE(grad.defined()) << name;
    double* v = p.mutable_data<double>();
    for (int64_t i = 0; i < p.numel(); i += 7) {
      const double keep = v[i], h = 1e-6;
      v[i] = keep + h;
      const double up = relaxed();
      v[i] = keep - h;
      const double down = relaxed();
      v[i] = keep;
      const double fd = (up - down) / (2 * h);
      worst =
          std::max(worst, std::abs(grad[i] - fd) / std::max(1.0, std::abs(fd)));
      ++checked;
    }
  }
  EXPECT_GT(checked, 20);
  EXPECT_LT(worst, 1e-6);
}

TEST(IdfTest, RoundStraightThroughValueAndGradient) {
  Tensor x = Tensor::FromVector({5}, {-1.5, -0.4, 0.5, 2.49, 7.0});
  x.set_requires_grad(true);
  Tensor y = RoundStraightThrough(x);
  const double want[] = {-2.0, -0.0, 1.0, 2.0, 7.0};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(y[i], want[i]);
  Tensor g = Grad({Sum(y * Tensor::FromVector({5}, {1, 2, 3, 4, 5}))}, {x})[0];
  for (int i = 0; i < 5; ++i) EXPECT_EQ(g[i], i + 1.0);
}

// The prior has no rounding: its gradient is exact (central differences).
TEST(IdfTest, PriorGradientMatchesFiniteDifferences) {
  auto flow = MakeFlow(Small(), 14);
  Randomize(*flow, 0.3, 15);
  Tensor x = RandomIntegers(5, 20, 0, 255, 16);
  flow->ZeroGrad();
  Backward(flow->Nll(x));
  double worst = 0;
  for (Tensor p :
       {flow->prior_logits(), flow->prior_means(), flow->prior_log_scales()}) {
    Tensor grad = p.grad();
    ASSERT_TRUE(grad.defined());
    double* v = p.mutable_data<double>();
    for (int64_t i = 0; i < p.numel(); i += 5) {
      const double keep = v[i], h = 1e-5;
      NoGradScope no_grad;
      v[i] = keep + h;
      const double up = flow->Nll(x).item();
      v[i] = keep - h;
      const double down = flow->Nll(x).item();
      v[i] = keep;
      const double fd = (up - down) / (2 * h);
      worst =
          std::max(worst, std::abs(grad[i] - fd) / std::max(1.0, std::abs(fd)));
    }
  }
  EXPECT_LT(worst, 1e-7);
}

TEST(IdfTest, ModelFileRoundTrip) {
  auto flow = MakeFlow(Small(), 17);
  Randomize(*flow, 0.5, 18);
  const std::string path =
      std::string(std::getenv("TEST_TMPDIR")) + "/idf_model.ckpt";
  ASSERT_TRUE(SaveIdf(path, *flow).ok());
  auto loaded = LoadIdf(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  NoGradScope no_grad;
  Tensor x = RandomIntegers(4, 20, 0, 255, 19);
  Tensor a = flow->LogProb(x), b = (*loaded)->LogProb(x);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a[i], b[i]);
  // A plain checkpoint has no description.
  Rng rng(0);
  nn::Linear plain(2, 2, rng);
  ASSERT_TRUE(nn::SaveCheckpoint(path, plain).ok());
  auto refused = LoadIdf(path);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("no IDF description"),
            std::string::npos)
      << refused.status();
}

}  // namespace
}  // namespace flowtape::compression

// The multi-scale integer discrete flow (compression/idf.h): exact inverse on
// integers, the conditional priors as normalised pmfs equal to frequencies.h's
// discretised logistic mixture, P(x) summing to 1 over a box of Z^4,
// straight-through gradients against finite differences of the un-rounded
// map, the prior's gradient against finite differences, and the model file.
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
#include "nn/layers.h"

namespace flowtape::compression {
namespace {

std::shared_ptr<IntegerDiscreteFlow> MakeFlow(const IdfOptions& o,
                                              uint64_t seed) {
  Rng rng(seed);
  auto flow = IntegerDiscreteFlow::Create(o, rng);
  EXPECT_TRUE(flow.ok()) << flow.status();
  return *flow;
}

bool IsCoupling(const std::string& name) {
  return name.find(".coupling") != std::string::npos;
}
bool IsPriorNet(const std::string& name) {
  return name.find(".prior.") != std::string::npos;
}

// Coupling parameters N(0, scale^2): translations far from the identity;
// prior-net parameters moved by N(0, prior^2) (weights start at zero).
void Randomize(const IntegerDiscreteFlow& flow, double scale, double prior,
               uint64_t seed) {
  Rng rng(seed);
  for (auto& [name, p] : flow.NamedParameters()) {
    double* v = p.mutable_data<double>();
    for (int64_t i = 0; i < p.numel(); ++i) {
      if (IsCoupling(name)) v[i] = scale * rng.Normal();
      if (IsPriorNet(name)) v[i] += prior * rng.Normal();
    }
  }
}

Tensor RandomIntegers(int64_t n, int64_t d, int64_t lo, int64_t hi,
                      uint64_t seed) {
  Rng rng(seed);
  std::vector<double> v(n * d);
  for (double& x : v) x = lo + static_cast<double>(rng.UniformInt(hi - lo + 1));
  return Tensor::FromVector({n, d}, v);
}

// 8 x 4: 4 x 4 x 2 (factor 2) -> 8 x 2 x 1 (factor 4) -> 4 x 2 x 1
// (factor 2) -> final 2 x 2 x 1.
IdfOptions Small() {
  IdfOptions o;
  o.height = 8;
  o.width = 4;
  o.levels = {{true, 2}, {true, 2}, {false, 1}, {false, 0}};
  o.hidden = {6, 5};
  o.components = 3;
  return o;
}

TEST(IdfTest, OptionsAreValidated) {
  IdfOptions o = Small();
  EXPECT_TRUE(o.Validate().ok());
  EXPECT_EQ(o.LevelShape(0).size(), 32);
  EXPECT_EQ(o.LevelShape(1).c, 8);
  EXPECT_EQ(o.LevelShape(3).size(), 4);
  EXPECT_EQ(IdfOptions().LevelShape(4).size(), 49);  // MNIST default
  EXPECT_TRUE(IdfOptions().Validate().ok());
  auto expect_bad = [](const IdfOptions& bad, const std::string& what) {
    const absl::Status s = bad.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << what;
    EXPECT_NE(s.message().find(what), std::string::npos) << s;
  };
  o.levels[0].couplings = 17;
  expect_bad(o, "levels[0]");
  o = Small();
  o.levels.push_back({true, 0});  // 2 x 1 cannot be squeezed
  expect_bad(o, "sides must be even");
  o = Small();
  o.levels.push_back({false, 0});  // factors out the single channel left
  o.levels.push_back({false, 0});
  expect_bad(o, "single channel");
  o = Small();
  o.levels[0].squeeze = false;  // couples one channel
  expect_bad(o, "single channel");
  o = Small();
  o.hidden = {};
  expect_bad(o, "hidden");
  auto parsed = IdfOptions::FromJson(Small().ToJson());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->ToJson(), Small().ToJson());
  EXPECT_EQ(MakeFlow(Small(), 1)->NumParameters(), Small().NumParameters());
  EXPECT_EQ(MakeFlow(IdfOptions(), 1)->NumParameters(),
            IdfOptions().NumParameters());
  for (const char* bad :
       {"\"couplings\":4294967297", "\"couplings\":-9223372036854775808",
        "\"couplings\":2.5", "\"couplings\":17", "\"couplings\":true"}) {
    std::string text = Small().ToJson().dump();
    const size_t at = text.find("\"couplings\":");
    text.replace(at, text.find('}', at) - at, bad);
    auto j = io::ParseJson(text, "test");
    ASSERT_TRUE(j.ok()) << text;
    EXPECT_EQ(IdfOptions::FromJson(*j).status().code(),
              absl::StatusCode::kInvalidArgument)
        << text;
  }
}

// IdfConvNet::Create refuses what nn::Conv2d's constructor aborts on, naming
// it; a valid net maps [N, in, h, w] to [N, out, h, w] and starts at zero
// (its last convolution is zero-initialised).
TEST(IdfTest, ConvNetCreateRefusesBadSizesWithAStatus) {
  Rng rng(3);
  auto expect_bad = [](const absl::Status& s, const std::string& what) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(what), std::string::npos) << s;
  };
  expect_bad(IdfConvNet::Create(0, {4}, 2, rng).status(), "in = 0");
  expect_bad(IdfConvNet::Create(2, {4}, -1, rng).status(), "out = -1");
  expect_bad(IdfConvNet::Create(2, {4, 0}, 2, rng).status(),
             "hidden[1] = 0 must be >= 1");
  auto net = IdfConvNet::Create(2, {4, 3}, 5, rng);
  ASSERT_TRUE(net.ok()) << net.status();
  ASSERT_EQ((*net)->layers().size(), 3u);
  NoGradScope no_grad;
  Tensor y = (**net)(Tensor::Randn({2, 2, 4, 6}, rng));
  EXPECT_EQ(y.shape(), (Shape{2, 5, 4, 6}));
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_EQ(y[i], 0.0);
}

TEST(IdfTest, RoundTripIsExactOnIntegers) {
  NoGradScope no_grad;
  auto flow = MakeFlow(Small(), 1);
  Randomize(*flow, 1.0, 0.0, 2);
  for (auto [lo, hi] : {std::pair<int64_t, int64_t>{0, 255}, {-5000, 5000}}) {
    Tensor x = RandomIntegers(50, 32, lo, hi, 3);
    Tensor z = flow->Forward(x);
    Tensor back = flow->Inverse(z);
    double moved = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      ASSERT_EQ(back[i], x[i]) << "entry " << i;
      ASSERT_EQ(z[i], std::round(z[i]));
    }
    // The latents are the squeezed pixels moved by the couplings.
    Tensor plain = MakeFlow(Small(), 1)->Forward(x);
    for (int64_t i = 0; i < x.numel(); ++i) {
      moved = std::max(moved, std::abs(z[i] - plain[i]));
    }
    EXPECT_GT(moved, 10.0);  // the map is far from a permutation
  }
}

// At each pixel, the conditional prior is frequencies.h's discretised
// logistic mixture with the prior net's parameters (interior bins), and
// exp(log P(z)) sums to 1 over the integers, for random contexts.
TEST(IdfTest, ConditionalPriorIsANormalisedMixture) {
  NoGradScope no_grad;
  IdfOptions o = Small();
  auto flow = MakeFlow(o, 4);
  Randomize(*flow, 0.3, 0.05, 5);
  const int kc = o.components;
  for (int l = 0; l < 3; ++l) {
    const IdfShape s = o.LevelShape(l);
    const int64_t hw = s.h * s.w, f = s.factored();
    // One context, the values z = -1500..1500 at every factored latent.
    const int64_t lo = -1500, n = 3001;
    Tensor kept = Reshape(RandomIntegers(1, s.kept() * hw, 0, 255, 6 + l),
                          {1, s.kept(), s.h, s.w});
    std::vector<double> zs;
    for (int64_t v = 0; v < n; ++v) {
      for (int64_t i = 0; i < f * hw; ++i) zs.push_back(lo + v);
    }
    Tensor z = Tensor::FromVector({n, f, s.h, s.w}, zs);
    std::vector<double> kv;
    for (int64_t v = 0; v < n; ++v) {
      for (int64_t i = 0; i < kept.numel(); ++i) kv.push_back(kept[i]);
    }
    Tensor lp = flow->ConditionalLogProb(
        l, z, Tensor::FromVector({n, s.kept(), s.h, s.w}, kv));
    Tensor params = flow->prior_net(l)((kept - kIdfInputCenter) *
                                       kIdfInputScale);  // [1, 3fK, h, w]
    for (int64_t i = 0; i < f * hw; ++i) {
      const int64_t ch = i / hw, px = i % hw;
      std::vector<LogisticComponent> comps(kc);
      for (int c = 0; c < kc; ++c) {
        auto at = [&](int p) {
          return params[((p * f + ch) * kc + c) * hw + px];
        };
        comps[c].weight = std::exp(at(0));
        comps[c].mean = at(1) * kIdfNetMeanUnit - lo;
        comps[c].scale = std::exp(at(2) * kIdfNetLogScaleUnit);
      }
      auto pmf = DiscretizedLogisticMixturePmf(comps, n);
      ASSERT_TRUE(pmf.ok());
      double total = 0;
      for (int64_t v = 0; v < n; ++v) {
        const double p = std::exp(lp[v * f * hw + i]);
        total += p;
        if (v > 0 && v + 1 < n && (*pmf)[v] > 1e-12) {
          ASSERT_NEAR(p, (*pmf)[v], 1e-9 * (*pmf)[v])
              << "level " << l << " latent " << i << " z " << lo + v;
        }
      }
      EXPECT_NEAR(total, 1.0, 1e-9) << "level " << l << " latent " << i;
    }
  }
}

// The whole model on 2 x 2 images: sum over a box of Z^4 of P(x) is
// P_Z(f(box)), near 1 when the priors' mass (and the shifts) sit well inside.
TEST(IdfTest, PmfSumsToOneOverABoxOfZ4) {
  NoGradScope no_grad;
  IdfOptions o;
  o.height = 2;
  o.width = 2;
  o.levels = {{true, 2}, {false, 1}, {false, 0}};
  o.hidden = {4};
  o.components = 2;
  auto flow = MakeFlow(o, 8);
  Randomize(*flow, 1.5, 0.0, 9);
  // Priors near 0 with scales ~0.35 (conditional means still depend on the
  // context through small weights).
  Rng rng(10);
  for (auto& [name, p] : flow->NamedParameters()) {
    double* v = p.mutable_data<double>();
    if (IsPriorNet(name)) {
      for (int64_t i = 0; i < p.numel(); ++i) v[i] = 0.02 * rng.Normal();
    }
  }
  for (int l = 0; l < 2; ++l) {
    Tensor b = flow->prior_net(l).layers().back()->bias();
    const int64_t f = o.LevelShape(l).factored(), kc = 2;
    for (int64_t i = 0; i < 3 * f * kc; ++i) {
      const int64_t p = i / (f * kc);
      b.mutable_data<double>()[i] = p == 0 ? rng.Normal()
                                    : p == 1
                                        ? (i % 2 - 0.5) / kIdfNetMeanUnit
                                        : std::log(0.35) / kIdfNetLogScaleUnit;
    }
  }
  Tensor means = flow->prior_means(), log_scales = flow->prior_log_scales();
  for (int i = 0; i < means.numel(); ++i) {
    means.mutable_data<double>()[i] = (i % 2) / kIdfMeanUnit;
    log_scales.mutable_data<double>()[i] = std::log(0.35) / kIdfLogScaleUnit;
  }
  const int64_t w = 12, side = 2 * w + 1;
  double total = 0, biggest_shift = 0;
  std::vector<double> rows;
  for (int64_t a = -w; a <= w; ++a) {
    rows.clear();
    for (int64_t b = -w; b <= w; ++b)
      for (int64_t c = -w; c <= w; ++c)
        for (int64_t d = -w; d <= w; ++d) {
          rows.insert(rows.end(),
                      {static_cast<double>(a), static_cast<double>(b),
                       static_cast<double>(c), static_cast<double>(d)});
        }
    Tensor x = Tensor::FromVector({side * side * side, 4}, rows);
    Tensor lp = flow->LogProb(x);
    for (int64_t i = 0; i < lp.numel(); ++i) total += std::exp(lp[i]);
    if (a == 0) {
      Tensor z = flow->Forward(x);
      Tensor plain = MakeFlow(o, 8)->Forward(x);
      for (int64_t i = 0; i < z.numel(); ++i) {
        biggest_shift = std::max(biggest_shift, std::abs(z[i] - plain[i]));
      }
    }
  }
  EXPECT_NEAR(total, 1.0, 1e-9);
  EXPECT_GT(biggest_shift, 3.0);
  EXPECT_LT(biggest_shift, 6.0);
}

// Straight-through: with one coupling and the loss L = sum c . z, the
// gradient through round(t) equals the exact gradient of sum c_b . t(theta)
// (the un-rounded translation), checked by central differences.
TEST(IdfTest, StraightThroughGradientMatchesUnroundedFiniteDifferences) {
  IdfOptions o;
  o.height = 4;
  o.width = 6;
  o.levels = {{true, 1}, {false, 0}};
  o.hidden = {5};
  o.components = 2;
  auto flow = MakeFlow(o, 10);
  Randomize(*flow, 0.4, 0.0, 11);
  Tensor x = RandomIntegers(6, 24, 0, 255, 12);
  Rng rng(13);
  std::vector<double> cv(6 * 24);
  for (double& c : cv) c = rng.Normal();
  Tensor c = Tensor::FromVector({6, 24}, cv);
  flow->ZeroGrad();
  Backward(Sum(flow->Forward(x) * c));
  // Level 0 (4 x 2 x 3): a = channels 0, 1 (kept, latents 0..11), b =
  // channels 2, 3 (factored, latents 12..23).
  auto relaxed = [&]() {
    NoGradScope no_grad;
    const std::vector<int64_t> index = IdfSqueezeIndex(1, 4, 6);
    Tensor sq = Reshape(IndexSelect(x, 1, index), {6, 4, 2, 3});
    Tensor xa = Narrow(sq, 1, 0, 2);
    Tensor t = flow->coupling(0, 0)((xa - kIdfInputCenter) * kIdfInputScale);
    return Sum(Reshape(t, {6, 12}) * Narrow(c, 1, 12, 12)).item();
  };
  double worst = 0;
  int checked = 0;
  for (auto& [name, p] : flow->NamedParameters()) {
    if (!IsCoupling(name)) continue;
    Tensor grad = p.grad();
    ASSERT_TRUE(grad.defined()) << name;
    double* v = p.mutable_data<double>();
    for (int64_t i = 0; i < p.numel(); i += 3) {
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

// The priors have no rounding: the gradient of the NLL in the final prior's
// and the prior nets' parameters is exact (central differences, float64).
TEST(IdfTest, PriorGradientMatchesFiniteDifferences) {
  auto flow = MakeFlow(Small(), 14);
  Randomize(*flow, 0.3, 0.1, 15);
  Tensor x = RandomIntegers(5, 32, 0, 255, 16);
  flow->ZeroGrad();
  Backward(flow->Nll(x));
  double worst = 0;
  int checked = 0;
  for (auto& [name, p] : flow->NamedParameters()) {
    if (IsCoupling(name)) continue;
    Tensor grad = p.grad();
    ASSERT_TRUE(grad.defined()) << name;
    double* v = p.mutable_data<double>();
    for (int64_t i = 0; i < p.numel(); i += 4) {
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
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
  EXPECT_LT(worst, 1e-7);
}

TEST(IdfTest, ModelFileRoundTrip) {
  auto flow = MakeFlow(Small(), 17);
  Randomize(*flow, 0.5, 0.1, 18);
  const std::string path =
      std::string(std::getenv("TEST_TMPDIR")) + "/idf_model.ckpt";
  ASSERT_TRUE(SaveIdf(path, *flow).ok());
  auto loaded = LoadIdf(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  NoGradScope no_grad;
  Tensor x = RandomIntegers(4, 32, 0, 255, 19);
  Tensor a = flow->LogProb(x), b = (*loaded)->LogProb(x);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a[i], b[i]);
  // A plain checkpoint has no description; a format-1 (single-scale) model
  // file is named as such.
  Rng rng(0);
  auto plain_ptr = nn::Linear::Create(2, 2, rng).value();
  nn::Linear& plain = *plain_ptr;
  ASSERT_TRUE(nn::SaveCheckpoint(path, plain).ok());
  auto refused = LoadIdf(path);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("no IDF description"),
            std::string::npos)
      << refused.status();
  ASSERT_TRUE(nn::SaveCheckpoint(path, plain, nullptr, {{"idf", "{}"}}).ok());
  refused = LoadIdf(path);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("format 1"), std::string::npos)
      << refused.status();
}

}  // namespace
}  // namespace flowtape::compression

// The flow zoo: every entry builds for its domain, is a normalised density
// model in its own right (sampling then scoring round-trips through
// Forward(Inverse(z)) = z; a stochastic entry, which is no bijection, is
// instead a normalised density in expectation), and bad names / shapes are
// errors. The image
// pipeline's bits/dim agree with its NLL.
#include "models/zoo.h"

#include <cmath>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "data/preprocess.h"
#include "flows/distribution.h"
#include "flows/matching/cfm_flow.h"
#include "gtest/gtest.h"
#include "models/image_flow.h"

namespace flowtape::models {
namespace {

TEST(Zoo, EveryEntryBuildsAndInvertsItsOwnSamples) {
  for (const ZooEntry& e : ZooEntries()) {
    // Stochastic layers are not bijections (Forward(Inverse(z)) != z):
    // Zoo.StochasticEntryIsNormalisedInExpectation checks those entries.
    if (e.stochastic) continue;
    Rng rng(1);
    ModelConfig c;
    c.layers = 2;
    c.hidden = {8};
    c.channels = 4;
    c.levels = 1;
    c.depth = 1;
    c.event = e.domain == Domain::kVectors ? Shape{3} : Shape{1, 4, 4};
    auto model = MakeModel(e.name, c, rng);
    ASSERT_TRUE(model.ok()) << e.name << ": " << model.status();
    // Random parameters, so the flow is not the identity.
    for (Tensor p : (*model)->Parameters())
      for (int64_t i = 0; i < p.numel(); ++i)
        p.mutable_data<double>()[i] += 0.1 * rng.Normal();
    NoGradScope no_grad;
    Tensor z = (*model)->base()->Sample(5, rng);
    flows::FlowResult x = (*model)->flow()->Inverse(z);
    flows::FlowResult back = (*model)->flow()->Forward(x.value);
    // Numeric inverses (planar root finding, ODE solves) to their tolerance.
    const double tol = (*model)->flow()->analytic_inverse() ? 1e-6 : 1e-4;
    for (int64_t i = 0; i < z.numel(); ++i)
      EXPECT_NEAR(back.value[i], z[i], tol) << e.name;
    for (int64_t i = 0; i < 5; ++i)
      EXPECT_NEAR(back.logdet[i], -x.logdet[i], tol) << e.name;
  }
}

// config.dtype = float32: the model is float32 throughout (the CNFs' ODE
// solves included), scores float64 data, and agrees with itself converted
// to float64 (the same parameter values) to float32 rounding.
TEST(Zoo, EveryEntryRunsInFloat32) {
  for (const ZooEntry& e : ZooEntries()) {
    SCOPED_TRACE(e.name);
    Rng rng(4);
    ModelConfig c;
    c.layers = 2;
    c.hidden = {8};
    c.channels = 4;
    c.levels = 1;
    c.depth = 1;
    c.dtype = kFloat32;
    c.event = e.domain == Domain::kVectors ? Shape{3} : Shape{1, 4, 4};
    auto model = MakeModel(e.name, c, rng);
    ASSERT_TRUE(model.ok()) << model.status();
    flows::FlowModel& m = **model;
    EXPECT_EQ(m.dtype(), kFloat32);
    for (const auto& [name, p] : m.NamedParameters())
      ASSERT_EQ(p.dtype(), kFloat32) << name;
    for (Tensor p : m.Parameters())
      for (int64_t i = 0; i < p.numel(); ++i)
        p.mutable_data<float>()[i] += static_cast<float>(0.1 * rng.Normal());
    std::vector<int64_t> dims = {5};
    for (int64_t d : c.event.dims()) dims.push_back(d);
    Tensor x = Tensor::Randn(Shape(dims), rng);  // float64 data
    NoGradScope no_grad;
    // The same noise for both precisions (stochastic entries draw some).
    Rng noise32(9), noise64(9);
    Tensor lp32 = m.LogProb(x, Tensor(), &noise32);
    ASSERT_EQ(lp32.dtype(), kFloat32);
    EXPECT_EQ(m.Sample(3, rng).dtype(), kFloat32);
    m.To(kFloat64);
    Tensor lp64 = m.LogProb(x, Tensor(), &noise64);
    for (int64_t i = 0; i < 5; ++i) {
      ASSERT_TRUE(std::isfinite(lp32[i]));
      EXPECT_NEAR(lp32[i], lp64[i], 1e-4 * (1 + std::fabs(lp64[i])));
    }
  }
}

TEST(Zoo, ContinuousFlowsTakeLearnedTimeAndContext) {
  for (const std::string name : {"ffjord", "rnode"}) {
    Rng rng(2);
    ModelConfig c;
    c.hidden = {8};
    auto fixed = MakeModel(name, c, rng);
    c.train_t = true;
    c.context_dim = 2;
    auto learned = MakeModel(name, c, rng);
    ASSERT_TRUE(fixed.ok() && learned.ok()) << name;
    auto has_t = [](const flows::FlowModel& m) {
      for (const auto& [n, p] : m.NamedParameters())
        if (n.find("sqrt_end_time") != std::string::npos) return true;
      return false;
    };
    EXPECT_FALSE(has_t(**fixed)) << name;
    EXPECT_TRUE(has_t(**learned)) << name;
    // The context changes the map.
    NoGradScope no_grad;
    Tensor x = Tensor::Randn({3, 2}, rng);
    for (Tensor p : (*learned)->Parameters())
      for (int64_t i = 0; i < p.numel(); ++i)
        p.mutable_data<double>()[i] += 0.1 * rng.Normal();
    Tensor a = (*learned)->flow()->Forward(x, Tensor::Zeros({3, 2})).value;
    Tensor b = (*learned)->flow()->Forward(x, Tensor::Ones({3, 2})).value;
    double diff = 0;
    for (int64_t i = 0; i < a.numel(); ++i) diff += std::fabs(a[i] - b[i]);
    EXPECT_GT(diff, 1e-6) << name;
  }
}

// A context is never silently ignored: every catalogue entry either refuses
// context_dim > 0 with InvalidArgument, or (with random parameters, so no
// zero-initialised layer hides the context) gives log p(x | c1) != log p(x |
// c2) for every sample.
TEST(Zoo, EveryEntryUsesTheContextOrRefusesIt) {
  int conditional = 0, refused = 0;
  for (const ZooEntry& e : ZooEntries()) {
    SCOPED_TRACE(e.name);
    Rng rng(5);
    ModelConfig c;
    c.layers = 2;
    c.hidden = {8};
    c.channels = 4;
    c.levels = 1;
    c.depth = 1;
    c.context_dim = 3;
    c.event = e.domain == Domain::kVectors ? Shape{3} : Shape{1, 4, 4};
    auto model = MakeModel(e.name, c, rng);
    EXPECT_EQ(model.ok(), e.takes_context) << model.status();
    if (!model.ok()) {
      EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(model.status().message().find("flow '" + e.name +
                                              "' does not support a context"),
                std::string::npos)
          << model.status();
      ++refused;
      continue;
    }
    ++conditional;
    for (Tensor p : (*model)->Parameters())
      for (int64_t i = 0; i < p.numel(); ++i)
        p.mutable_data<double>()[i] += 0.3 * rng.Normal();
    NoGradScope no_grad;
    std::vector<int64_t> dims = {4};
    for (int64_t d : c.event.dims()) dims.push_back(d);
    Tensor x = Tensor::Randn(Shape(dims), rng);
    Tensor c1 = OneHot({0, 1, 2, 0}, 3), c2 = OneHot({1, 2, 0, 2}, 3);
    Tensor a = (*model)->LogProb(x, c1), b = (*model)->LogProb(x, c2);
    for (int64_t i = 0; i < 4; ++i) {
      ASSERT_TRUE(std::isfinite(a[i]) && std::isfinite(b[i]));
      EXPECT_GT(std::fabs(a[i] - b[i]), 1e-9) << "sample " << i;
    }
  }
  EXPECT_GT(conditional, 0);
  EXPECT_GT(refused, 0);
}

// config.base = kGaussianMixture puts a trainable K-component mixture under
// any vector flow; the flow is built as without it (same parameters), and
// image flows refuse it.
TEST(Zoo, GaussianMixtureBase) {
  ModelConfig c;
  c.layers = 2;
  c.hidden = {8};
  c.components = 5;
  Rng r1(3), r2(3);
  auto plain = MakeModel("realnvp", c, r1).value();
  c.base = BaseChoice::kGaussianMixture;
  auto gmm = MakeModel("realnvp", c, r2).value();
  auto mixture = std::dynamic_pointer_cast<flows::GaussianMixture>(gmm->base());
  ASSERT_NE(mixture, nullptr);
  EXPECT_EQ(mixture->num_components(), 5);
  EXPECT_EQ(gmm->NumParameters(),
            plain->NumParameters() + 5 + 2 * 5 * 2);  // logits, means, scales
  const auto a = plain->flow()->NamedParameters(),
             b = gmm->flow()->NamedParameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(a[i].second.ToVector(), b[i].second.ToVector()) << a[i].first;
  // log p = log q_mixture(z) + logdet.
  NoGradScope no_grad;
  Tensor x = Tensor::Randn({4, 2}, r1);
  flows::FlowResult f = gmm->flow()->Forward(x);
  Tensor want = mixture->LogProb(f.value) + f.logdet, got = gmm->LogProb(x);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(got[i], want[i], 1e-12);
  c.event = Shape{1, 4, 4};
  c.channels = 4;
  EXPECT_EQ(MakeModel("realnvp", c, r1).status().code(),
            absl::StatusCode::kInvalidArgument);
  c.event = Shape{2};
  c.components = 0;
  EXPECT_FALSE(MakeModel("maf", c, r1).ok());
}

// A stochastic entry's LogProb is a random estimate log q^(x) whose
// exponential is unbiased for the marginal density q(x) of its sampler
// (flows/stochastic.h). So E[q^] integrates to one: the grid integral over
// [-7, 7]^2 of the mean of K draws of exp(log q^) is 1 up to the Monte Carlo
// error. The estimate is random (two noise streams differ) and reproducible
// (one seed, one value); samples come with an rng; D = 1 is refused.
TEST(Zoo, StochasticEntryIsNormalisedInExpectation) {
  int stochastic = 0;
  for (const ZooEntry& e : ZooEntries()) {
    if (!e.stochastic) continue;
    SCOPED_TRACE(e.name);
    ++stochastic;
    Rng rng(6);
    ModelConfig c;
    c.layers = 2;
    c.hidden = {8};
    auto model = MakeModel(e.name, c, rng);
    ASSERT_TRUE(model.ok()) << model.status();
    flows::FlowModel& m = **model;
    bool has_step = false;
    for (auto& [name, p] : m.NamedParameters()) {
      for (int64_t i = 0; i < p.numel(); ++i)
        p.mutable_data<double>()[i] += 0.3 * rng.Normal();
      // Langevin steps large enough to move the density: eps = 0.2.
      if (name.find("log_step_size") != std::string::npos) {
        p.mutable_data<double>()[0] = std::log(0.2);
        has_step = true;
      }
    }
    EXPECT_TRUE(has_step);
    NoGradScope no_grad;
    const int grid = 141;
    const double lim = 7.0, h = 2 * lim / (grid - 1);
    std::vector<double> points;
    for (int i = 0; i < grid; ++i)
      for (int j = 0; j < grid; ++j) {
        points.push_back(-lim + i * h);
        points.push_back(-lim + j * h);
      }
    Tensor x = Tensor::FromVector({grid * grid, 2}, points);
    const int draws = 32;
    double integral = 0;
    Rng noise(7);
    for (int k = 0; k < draws; ++k) {
      const std::vector<double> lp = m.LogProb(x, Tensor(), &noise).ToVector();
      for (double v : lp) {
        ASSERT_TRUE(std::isfinite(v));
        integral += std::exp(v) * h * h / draws;
      }
    }
    EXPECT_NEAR(integral, 1.0, 0.02);
    Tensor few = Tensor::Randn({4, 2}, rng);
    Rng a(1), b(1), d(2);
    const Tensor la = m.LogProb(few, Tensor(), &a),
                 lb = m.LogProb(few, Tensor(), &b),
                 ld = m.LogProb(few, Tensor(), &d);
    for (int64_t i = 0; i < 4; ++i) {
      EXPECT_EQ(la[i], lb[i]);
      EXPECT_GT(std::fabs(la[i] - ld[i]), 1e-9);
    }
    Tensor s = m.Sample(6, rng);
    EXPECT_EQ(s.shape(), (Shape{6, 2}));
    c.event = Shape{1};
    EXPECT_EQ(MakeModel(e.name, c, rng).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  EXPECT_GT(stochastic, 0);
}

TEST(Zoo, UnknownNamesAndWrongDomainsAreErrors) {
  Rng rng(0);
  ModelConfig c;
  auto bad = MakeModel("realnvq", c, rng);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("realnvp"), std::string::npos);
  EXPECT_FALSE(MakeModel("glow", c, rng).ok());  // vectors
  c.event = Shape{1, 6, 6};                      // not divisible by 2^2
  EXPECT_FALSE(MakeModel("glow", c, rng).ok());
  c.event = Shape{2, 2};
  EXPECT_FALSE(MakeModel("maf", c, rng).ok());
  EXPECT_TRUE(FindFlow("maf", Domain::kVectors).ok());
  EXPECT_FALSE(FindFlow("maf", Domain::kImages).ok());
}

TEST(Zoo, ConfigValidateNamesTheField) {
  Rng rng(0);
  auto expect = [&](const ModelConfig& c, const std::string& what) {
    EXPECT_NE(c.Validate().message().find(what), std::string::npos)
        << c.Validate();
    auto m = MakeModel("maf", c, rng);
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(m.status().message().find(what), std::string::npos) << m.status();
  };
  ModelConfig c;
  EXPECT_TRUE(c.Validate().ok());
  c.layers = 0;
  expect(c, "layers = 0");
  c = ModelConfig{};
  c.context_dim = -1;
  expect(c, "context_dim = -1");
  c = ModelConfig{};
  c.components = 0;
  expect(c, "components = 0");
  c = ModelConfig{};
  c.event = Shape{2, 2};
  expect(c, "neither [D] nor [C, H, W]");
}

TEST(ImageFlow, BitsPerDimAgreeWithTheNll) {
  Rng rng(2);
  ModelConfig c;
  c.layers = 2;
  c.hidden = {16};
  for (const std::string name : {"maf", "realnvp"}) {
    auto f = MakeImageFlow(name, c, Shape{1, 4, 4}, 17, rng).value();
    EXPECT_EQ(f.flatten, name == "maf");
    Tensor pixels = Tensor::Empty(Shape{6, 1, 4, 4});
    for (int64_t i = 0; i < pixels.numel(); ++i)
      pixels.mutable_data<double>()[i] =
          static_cast<double>(rng.UniformInt(17));
    std::vector<double> bpd = f.BitsPerDim(pixels, 4, Tensor(), /*seed=*/5);
    double mean = 0;
    for (double b : bpd) mean += b / bpd.size();
    Rng same(5);  // the same dequantisation noise as BitsPerDim's
    NoGradScope no_grad;
    const double nll = f.Nll(pixels, same).item();
    EXPECT_NEAR(mean, data::BitsPerDim(nll, 16, 17), 1e-9) << name;
  }
}

// images --conditional with a family that ignores contexts: an error, not
// an unconditional sample grid labelled conditional.
TEST(ImageFlow, ConditionalRunOfAFamilyWithoutContextIsRefused) {
  Rng rng(3);
  ModelConfig c;
  c.layers = 2;
  c.context_dim = 10;
  for (const std::string name : {"planar", "radial", "sylvester"}) {
    auto f = MakeImageFlow(name, c, Shape{1, 4, 4}, 256, rng);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_NE(f.status().message().find("does not support a context"),
              std::string::npos)
        << f.status();
  }
}

TEST(ImageFlow, TheContextReachesTheConditionalModel) {
  Rng rng(3);
  ModelConfig c;
  c.layers = 2;
  c.channels = 4;
  c.context_dim = 3;
  auto f = MakeImageFlow("realnvp", c, Shape{1, 4, 4}, 256, rng).value();
  for (Tensor p : f.model->Parameters())
    for (int64_t i = 0; i < p.numel(); ++i)
      p.mutable_data<double>()[i] += 0.1 * rng.Normal();
  Tensor pixels = Tensor::Full(Shape{2, 1, 4, 4}, 100.0);
  Tensor a = OneHot({0, 1}, 3), b = OneHot({2, 2}, 3);
  EXPECT_EQ(a.ToVector(), (std::vector<double>{1, 0, 0, 0, 1, 0}));
  NoGradScope no_grad;
  training::NllFn nll = f.AsNllFn();
  Rng r1(4), r2(4), r3(4);
  const double with_a = nll(pixels, a, r1).item();
  EXPECT_DOUBLE_EQ(with_a, f.Nll(pixels, r2, a).item());
  EXPECT_GT(std::abs(with_a - nll(pixels, b, r3).item()), 1e-6);
}

// The flow-matching entry: its velocity is reachable for TrainFlowMatching,
// it takes a context, and a learnable T is refused (the field maps [0, 1]).
TEST(Zoo, FlowMatchingEntryExposesItsVelocity) {
  Rng rng(7);
  ModelConfig c;
  c.hidden = {8};
  c.context_dim = 2;
  auto model = MakeModel("cfm", c, rng);
  ASSERT_TRUE(model.ok()) << model.status();
  auto v = flows::matching::MatchedVelocity(*(*model)->flow());
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->context_dim(), 2);
  EXPECT_EQ((*model)->flow()->name(), "cfm");
  c.train_t = true;
  EXPECT_EQ(MakeModel("cfm", c, rng).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flowtape::models

// Composition, permutation, inversion and FlowModel, on flows whose maps are
// known in closed form (Scaling: z = x e^s; Permute); FlowModel::CheckInput
// refuses inputs of another shape with a Status.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "flows/invert.h"
#include "flows/permute.h"
#include "flows/scaling.h"
#include "flows/sequential.h"
#include "gtest/gtest.h"

namespace flowtape::flows {
namespace {

std::shared_ptr<Scaling> MakeScaling(std::vector<double> s) {
  auto f = Scaling::Create(Shape({static_cast<int64_t>(s.size())})).value();
  Tensor ls = f->log_scale();
  std::copy(s.begin(), s.end(), ls.mutable_data<double>());
  return f;
}

TEST(Sequential, ComposesInOrderAndInvertsInReverse) {
  // x -> permute (swap) -> scale by e^{(1, 2)}: z = (x1 e, x0 e^2).
  Sequential seq({Reverse(2).value(), MakeScaling({1.0, 2.0})});
  Tensor x = Tensor::FromVector({1, 2}, {3.0, 5.0});
  FlowResult r = seq.Forward(x);
  EXPECT_NEAR(r.value[0], 5.0 * std::exp(1.0), 1e-13);
  EXPECT_NEAR(r.value[1], 3.0 * std::exp(2.0), 1e-13);
  EXPECT_NEAR(r.logdet[0], 3.0, 1e-15);
  FlowResult b = seq.Inverse(r.value);
  EXPECT_NEAR(b.value[0], 3.0, 1e-13);
  EXPECT_NEAR(b.value[1], 5.0, 1e-13);
  EXPECT_NEAR(b.logdet[0], -3.0, 1e-15);
  EXPECT_EQ(seq.name(), "sequential(permute, scaling)");
  EXPECT_EQ(seq.NamedParameters()[0].first, "1.log_scale");
  EXPECT_TRUE(seq.analytic_inverse());
}

TEST(Invert, SwapsDirections) {
  auto s = MakeScaling({0.5});
  Invert inv(s);
  Tensor x = Tensor::FromVector({2, 1}, {1.0, -2.0});
  FlowResult a = inv.Forward(x), b = s->Inverse(x);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(a.value[i], b.value[i]);
    EXPECT_EQ(a.logdet[i], -0.5);
  }
  EXPECT_EQ(inv.Inverse(x).value[0], s->Forward(x).value[0]);
  EXPECT_EQ(inv.name(), "invert(scaling)");
  EXPECT_EQ(inv.NumParameters(), 1);
}

TEST(Permute, RandomIsAPermutationAndBadListsAreRefused) {
  Rng rng(3);
  auto p = RandomPermutation(7, rng).value();
  std::vector<int64_t> sorted = p->perm();
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 7; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_EQ(Reverse(3).value()->perm(), (std::vector<int64_t>{2, 1, 0}));
  for (int64_t d : {0, -2}) {
    auto r = Reverse(d);
    EXPECT_NE(r.status().message().find(absl::StrCat("d = ", d)),
              std::string::npos)
        << r.status();
    auto s = RandomPermutation(d, rng);
    EXPECT_NE(s.status().message().find(absl::StrCat("d = ", d)),
              std::string::npos)
        << s.status();
  }
  auto dup = Permute::Create({0, 1, 1});
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("entry 2"), std::string::npos);
  EXPECT_FALSE(Permute::Create({0, 3}).ok());
  // Channels of an image: Forward picks channel perm[i] into slot i.
  auto q = Permute::Create({2, 0, 1});
  ASSERT_TRUE(q.ok());
  Tensor img = Tensor::FromVector({1, 3, 1, 2}, {0, 1, 10, 11, 20, 21});
  EXPECT_EQ((*q)->Forward(img).value.ToVector(),
            (std::vector<double>{20, 21, 0, 1, 10, 11}));
}

TEST(FlowModel, LogProbSampleAndNll) {
  // z = x e^s with a standard normal base: x ~ N(0, e^{-2s}).
  const double s0 = 0.7, s1 = -0.4;
  FlowModel model(StandardNormal::Create(Shape({2})).value(),
                  MakeScaling({s0, s1}));
  Tensor x = Tensor::FromVector({2, 2}, {0.3, -1.2, 2.0, 0.1});
  Tensor lp = model.LogProb(x);
  for (int i = 0; i < 2; ++i) {
    double expect = 0;
    const double s[2] = {s0, s1};
    for (int j = 0; j < 2; ++j) {
      double sd = std::exp(-s[j]);
      expect += -0.5 * std::pow(x[i * 2 + j] / sd, 2) - std::log(sd) -
                0.5 * std::log(2 * M_PI);
    }
    EXPECT_NEAR(lp[i], expect, 1e-13);
  }
  EXPECT_NEAR(model.Nll(x).item(), -(lp[0] + lp[1]) / 2, 1e-14);
  Rng rng(4);
  Tensor xs;
  {
    NoGradScope ng;
    xs = model.Sample(100000, rng);
  }
  double v0 = 0, v1 = 0;
  for (int64_t i = 0; i < 100000; ++i) {
    v0 += xs[2 * i] * xs[2 * i] / 1e5;
    v1 += xs[2 * i + 1] * xs[2 * i + 1] / 1e5;
  }
  EXPECT_NEAR(v0, std::exp(-2 * s0), 0.01);
  EXPECT_NEAR(v1, std::exp(-2 * s1), 0.03);
}

TEST(FlowModel, SampleWithLogProbMatchesLogProb) {
  auto flow = std::make_shared<Sequential>(std::vector<std::shared_ptr<Flow>>{
      MakeScaling({0.3, -0.2, 0.1}), Reverse(3).value()});
  FlowModel model(DiagonalNormal::Create(Shape({3})).value(), flow);
  Rng rng(5);
  TapeScope scope;
  FlowModel::SampleResult s = model.SampleWithLogProb(5, rng);
  Tensor lp = model.LogProb(s.x);
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(s.log_prob[i], lp[i], 1e-13);
  // Differentiable in every parameter (reverse-KL training).
  Backward(Mean(s.log_prob));
  for (auto& [name, p] : model.NamedParameters())
    EXPECT_TRUE(p.grad().defined()) << name;
}

// Inputs of the wrong shape are a Status, for code that scores user data.
TEST(FlowModel, CheckInputRefusesOtherShapes) {
  FlowModel model(StandardNormal::Create(Shape({2})).value(),
                  MakeScaling({0.7, -0.4}));
  EXPECT_TRUE(model.CheckInput(Tensor::Zeros({3, 2})).ok());
  EXPECT_TRUE(
      model.CheckInput(Tensor::Zeros({3, 2}), Tensor::Zeros({3, 4})).ok());
  absl::Status s = model.CheckInput(Tensor::Zeros({3, 5}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "flow_model: x [3, 5] for event [2] (want [N, 2])");
  EXPECT_FALSE(model.CheckInput(Tensor::Zeros({3, 1, 28, 28})).ok());
  EXPECT_FALSE(model.CheckInput(Tensor::Zeros({2})).ok());
  EXPECT_FALSE(model.CheckInput(Tensor()).ok());
  s = model.CheckInput(Tensor::Zeros({3, 2}), Tensor::Zeros({4, 3}));
  EXPECT_EQ(s.message(),
            "flow_model: context [4, 3] for batch 3 (want [3, K])");
  EXPECT_FALSE(
      model.CheckInput(Tensor::Zeros({3, 2}), Tensor::Zeros({3})).ok());
  // The initialisation pass returns the same status instead of aborting.
  EXPECT_EQ(model.InitializeFromData(Tensor::Zeros({3, 5})).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      model.InitializeFromData(Tensor::Zeros({3, 2}), Tensor::Zeros({2, 1}))
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(FlowModel, ConvertsItsInputsToItsDtype) {
  // A float32 model scores float64 data (converted, with its gradient) and
  // samples in float32; the base knows its dtype from its buffer.
  FlowModel model(StandardNormal::Create(Shape({2})).value(),
                  MakeScaling({0.7, -0.4}));
  Tensor x = Tensor::FromVector({2, 2}, {0.3, -1.2, 2.0, 0.1});
  const std::vector<double> want = model.LogProb(x).ToVector();
  model.To(kFloat32);
  EXPECT_EQ(model.dtype(), kFloat32);
  EXPECT_EQ(model.base()->dtype(), kFloat32);
  TapeScope scope;
  Tensor xg = x.Detach().set_requires_grad(true);
  Tensor lp = model.LogProb(xg);
  ASSERT_EQ(lp.dtype(), kFloat32);
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(lp[i], want[i], 1e-5);
  Tensor g = Grad({Sum(lp)}, {xg})[0];
  ASSERT_EQ(g.dtype(), kFloat64);
  // d log p / dx = -x e^{2s}.
  EXPECT_NEAR(g[0], -0.3 * std::exp(1.4), 1e-5);
  Rng rng(6);
  NoGradScope ng;
  EXPECT_EQ(model.Sample(3, rng).dtype(), kFloat32);
  EXPECT_EQ(model.Sample(3, rng, Tensor()).shape(), Shape({3, 2}));
}

}  // namespace
}  // namespace flowtape::flows

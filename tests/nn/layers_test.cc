// Linear / MaskedLinear / MLP: parameter gradients (Backward into p.grad())
// and input gradients against central finite differences.
#include "nn/layers.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace flowtape::nn {
namespace {

using LossFn = std::function<Tensor()>;

// Worst relative error of every parameter's Backward() gradient against
// (L(p + h e_j) - L(p - h e_j)) / 2h, perturbing the parameters in place.
double ModuleGradError(const Module& m, const LossFn& loss, double h = 1e-6) {
  Module& mm = const_cast<Module&>(m);
  mm.ZeroGrad();
  Backward(loss());
  Tape::Get().Reset();
  double worst = 0;
  for (auto& [name, p] : m.NamedParameters()) {
    Tensor g = p.grad();
    EXPECT_TRUE(g.defined()) << name;
    if (!g.defined()) return 1e9;
    Tensor q = p;
    double* v = q.mutable_data<double>();
    for (int64_t j = 0; j < p.numel(); ++j) {
      NoGradScope no_grad;
      const double old = v[j];
      v[j] = old + h;
      const double fp = loss().item();
      v[j] = old - h;
      const double fm = loss().item();
      v[j] = old;
      const double n = (fp - fm) / (2 * h);
      worst =
          std::max(worst, std::fabs(g[j] - n) / std::max(1.0, std::fabs(n)));
    }
  }
  return worst;
}

TEST(Linear, ForwardIsXWPlusB) {
  Rng rng(1);
  auto lin_ptr = Linear::Create(3, 2, rng).value();
  Linear& lin = *lin_ptr;
  Tensor x = Tensor::FromVector({1, 3}, {1.0, 2.0, -1.0});
  NoGradScope ng;
  Tensor y = lin(x);
  const Tensor& w = lin.weight();
  for (int o = 0; o < 2; ++o)
    EXPECT_NEAR(y[o], w[0 * 2 + o] + 2 * w[1 * 2 + o] - w[2 * 2 + o], 1e-15);
  EXPECT_EQ(lin.NamedParameters()[0].first, "weight");
  EXPECT_EQ(lin.NamedParameters()[1].first, "bias");
}

TEST(Linear, GradientsMatchFiniteDifferences) {
  Rng rng(2);
  auto lin_ptr = Linear::Create(4, 3, rng).value();
  Linear& lin = *lin_ptr;
  // Non-zero bias so that it matters.
  Tensor b = lin.bias();
  for (int i = 0; i < 3; ++i) b.mutable_data<double>()[i] = 0.1 * (i + 1);
  Tensor x = Tensor::Randn({5, 4}, rng);
  EXPECT_LT(ModuleGradError(lin, [&] { return Sum(Square(lin(x))); }), 1e-7);
  auto f = [&](const std::vector<Tensor>& v) { return Sum(Tanh(lin(v[0]))); };
  EXPECT_LT(testing::GradientError(f, {x}), 1e-7);
  EXPECT_LT(testing::HessianVectorError(f, {x}), 1e-6);
}

TEST(Linear, SecondOrderThroughWeightGradient) {
  // f(x) = <dL/dW (x), V> with L = sum((x W + b)^2): differentiating the
  // weight gradient again (create_graph) against finite differences in x.
  Rng rng(6);
  auto lin_ptr = Linear::Create(3, 2, rng).value();
  Linear& lin = *lin_ptr;
  Tensor v = Tensor::Randn({3, 2}, rng), x = Tensor::Randn({4, 3}, rng);
  auto f = [&](const std::vector<Tensor>& in) {
    EnableGradScope record;
    Tensor loss = Sum(Square(lin(in[0])));
    Tensor gw = Grad({loss}, {lin.weight()}, {}, /*create_graph=*/true)[0];
    return Sum(gw * v);
  };
  EXPECT_LT(testing::GradientError(f, {x}), 1e-7);
}

TEST(MaskedLinear, GradientsRespectMask) {
  Rng rng(3);
  Tensor mask = Tensor::FromVector({3, 2}, {1, 0, 1, 1, 0, 1});
  auto lin_ptr = MaskedLinear::Create(mask, rng).value();
  MaskedLinear& lin = *lin_ptr;
  Tensor x = Tensor::Randn({4, 3}, rng);
  auto loss = [&] { return Sum(Square(lin(x) - 0.3)); };
  EXPECT_LT(ModuleGradError(lin, loss), 1e-7);
  // Masked weights get exactly zero gradient and do not influence outputs.
  Tensor gw = lin.NamedParameters()[0].second.grad();
  EXPECT_EQ(gw[1], 0.0);
  EXPECT_EQ(gw[4], 0.0);
  Tensor x1 = Tensor::Zeros({1, 3});
  x1.mutable_data<double>()[2] = 1.0;  // input 2 only reaches output 1
  NoGradScope ng;
  Tensor y = lin(x1);
  EXPECT_EQ(y[0], lin.NamedParameters()[1].second[0]);
}

TEST(MLP, GradientsMatchFiniteDifferencesForEveryActivation) {
  for (Activation a :
       {Activation::kTanh, Activation::kElu, Activation::kSoftplus,
        Activation::kSigmoid, Activation::kLeakyRelu}) {
    Rng rng(4);
    auto mlp_ptr = MLP::Create({3, 6, 5, 2}, a, rng).value();
    MLP& mlp = *mlp_ptr;
    Tensor x = Tensor::Randn({7, 3}, rng);
    EXPECT_LT(ModuleGradError(mlp, [&] { return Mean(Square(mlp(x))); }), 1e-7)
        << static_cast<int>(a);
    auto f = [&](const std::vector<Tensor>& v) { return Sum(mlp(v[0])); };
    EXPECT_LT(testing::GradientError(f, {x}), 1e-7);
  }
}

TEST(MLP, ZeroLastStartsAtZeroOutputAndNamesParameters) {
  Rng rng(5);
  auto mlp_ptr =
      MLP::Create({2, 4, 3}, Activation::kTanh, rng, /*zero_last=*/true)
          .value();
  MLP& mlp = *mlp_ptr;
  NoGradScope ng;
  Tensor y = mlp(Tensor::Randn({5, 2}, rng));
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_EQ(y[i], 0.0);
  auto named = mlp.NamedParameters();
  ASSERT_EQ(named.size(), 4u);
  EXPECT_EQ(named[2].first, "layer1.weight");
  EXPECT_EQ(mlp.NumParameters(), 2 * 4 + 4 + 4 * 3 + 3);
}

// Create refuses what the (private) constructors abort on, and sizes < 1,
// naming the problem.
void ExpectInvalid(const absl::Status& s, const std::string& part) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(part), std::string::npos) << s;
}

TEST(Linear, CreateRefusesBadSizesWithAStatus) {
  Rng rng(6);
  ExpectInvalid(Linear::Create(0, 2, rng).status(), "in = 0, out = 2");
  ExpectInvalid(Linear::Create(3, -1, rng).status(), "out = -1");
  EXPECT_TRUE(Linear::Create(1, 1, rng).ok());
}

TEST(MLP, CreateRefusesBadSizesWithAStatus) {
  Rng rng(6);
  ExpectInvalid(MLP::Create({}, Activation::kTanh, rng).status(),
                "at least {in, out} sizes, got 0 sizes");
  ExpectInvalid(MLP::Create({3}, Activation::kTanh, rng).status(),
                "got 1 size");
  ExpectInvalid(MLP::Create({3, 0, 2}, Activation::kTanh, rng).status(),
                "sizes[1] = 0 must be >= 1");
  ExpectInvalid(MLP::Create({3, 4, -2}, Activation::kTanh, rng).status(),
                "sizes[2] = -2");
  Rng a(7);
  auto made = MLP::Create({2, 4, 3}, Activation::kTanh, a);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ((*made)->NumParameters(), 2 * 4 + 4 + 4 * 3 + 3);
}

TEST(MaskedLinear, CreateRefusesBadMasksWithAStatus) {
  Rng rng(8);
  ExpectInvalid(MaskedLinear::Create(Tensor::Ones({3}), rng).status(),
                "mask must be [in, out]");
  ExpectInvalid(MaskedLinear::Create(Tensor::Ones({2, 3, 1}), rng).status(),
                "got [2, 3, 1]");
  ExpectInvalid(MaskedLinear::Create(Tensor::Ones({0, 3}), rng).status(),
                "in, out >= 1");
  ExpectInvalid(MaskedLinear::Create(Tensor(), rng).status(), "undefined");
  ExpectInvalid(
      MaskedLinear::Create(Tensor::FromVector({2, 2}, {1, 0, 0.5, 1}), rng)
          .status(),
      "entry 2 is 0.5");
  Tensor mask = Tensor::FromVector({3, 2}, {1, 0, 1, 1, 0, 1});
  Rng a(9);
  auto made = MaskedLinear::Create(mask, a);
  ASSERT_TRUE(made.ok()) << made.status();
  // Output 0 sees inputs 0 and 1 only (mask column 0 = {1, 1, 0}).
  Tensor x = Tensor::Randn({4, 3}, a);
  Tensor x2 = Tensor::FromVector(x.shape(), x.ToVector());
  for (int64_t i = 0; i < 4; ++i) x2.mutable_data<double>()[i * 3 + 2] += 1.0;
  NoGradScope ng;
  const Tensor y = (**made)(x), y2 = (**made)(x2);
  for (int64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(y[i * 2], y2[i * 2]) << i;
    EXPECT_NE(y[i * 2 + 1], y2[i * 2 + 1]) << i;
  }
}

}  // namespace
}  // namespace flowtape::nn

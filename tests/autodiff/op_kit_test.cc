// The op kit (autodiff/op_kit.h): its worked example compiled as written and
// checked like every op (first and second order vs finite differences, both
// dtypes), NewView's zero-copy output, and DependsOn (autodiff/grad.h).
#include "autodiff/op_kit.h"

#include <cmath>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/float32_tolerance.h"
#include "tests/gradcheck.h"

namespace flowtape {
namespace {
using testing::Float32Tol;
using testing::GradientError;
using testing::HessianVectorError;

// op_kit.h's example, verbatim: y = x^2 + 1,  dx = 2 x g.
Tensor SquarePlusOne(const Tensor& x) {
  Op op("square_plus_one", {x});
  Tensor y = op.NewOutput(x.shape());
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.data<T>();
    T* py = y.mutable_data<T>();
    for (int64_t i = 0; i < x.numel(); ++i) py[i] = px[i] * px[i] + 1;
  });
  return op.Finish(
      y, [](const OpContext& c, const Tensor& g, Tensor* grad_inputs) {
        grad_inputs[0] = GradMul(g, 2.0 * c.input(0));
      });
}

TEST(OpKitExample, ValueAndGradientsToSecondOrder) {
  const Tensor x = Tensor::FromVector({2, 2}, {0.5, -1.25, 2.0, 0.0});
  const Tensor y = SquarePlusOne(x);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(y[i], x[i] * x[i] + 1);
  auto f = [](const std::vector<Tensor>& v) {
    return Sum(Sin(SquarePlusOne(v[0])));
  };
  EXPECT_LT(GradientError(f, {x}), 1e-8);
  EXPECT_LT(HessianVectorError(f, {x}), 1e-7);
  // float32: the same op on the rounded inputs, value and gradient.
  Tensor x32 = Cast(x, kFloat32);
  Tensor x64 = Cast(x32, kFloat64);
  x32.set_requires_grad(true);
  x64.set_requires_grad(true);
  Tensor g32 = Grad({f({x32})}, {x32})[0];
  Tensor g64 = Grad({f({x64})}, {x64})[0];
  ASSERT_EQ(g32.dtype(), kFloat32);
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_NEAR(g32[i], g64[i], Float32Tol(std::abs(g64[i]) + 1));
  Tape::Get().Reset();
}

TEST(OpKitView, ReshapeOnTheTapeSharesTheInputsValues) {
  Tensor p = Tensor::FromVector({2, 3}, {1, 2, 3, 4, 5, 6});
  p.set_requires_grad(true);
  Tensor h = p * 2.0;
  Tensor v = Reshape(h, {3, 2});
  EXPECT_EQ(v.raw_data(), h.raw_data());  // zero-copy
  Tensor seed = Tensor::FromVector({3, 2}, {1, -1, 2, -2, 3, -3});
  EXPECT_EQ(Grad({v}, {p}, {seed})[0].ToVector(),
            (std::vector<double>{2, -2, 4, -4, 6, -6}));
  Tape::Get().Reset();
}

TEST(OpKitView, NotRecordedAConstantIsSharedATapeValueCopied) {
  Tensor c = Tensor::FromVector({4}, {1, 2, 3, 4});
  EXPECT_EQ(Reshape(c, {2, 2}).raw_data(), c.raw_data());
  Tensor p = Tensor::FromVector({4}, {1, 2, 3, 4}).set_requires_grad(true);
  Tensor h = p * 1.0;
  Tensor v;
  {
    NoGradScope no_grad;
    v = Reshape(h, {2, 2});
  }
  EXPECT_TRUE(v.is_constant());
  EXPECT_NE(v.raw_data(), h.raw_data());
  Tape::Get().Reset();  // the arena is reused; v keeps its values
  EXPECT_EQ(v.ToVector(), (std::vector<double>{1, 2, 3, 4}));
}

TEST(OpKitViewDeathTest, AViewOfAnotherSizeNamesTheOp) {
  Tensor x = Tensor::Zeros({2, 3}).set_requires_grad(true);
  EXPECT_DEATH(
      {
        Op op("my_view", {x});
        op.NewView(0, Shape{4});
      },
      "my_view: \\[2, 3\\] cannot be viewed as \\[4\\]");
}

// w, u parameters; c = w u; e = c^2 + w; q a parameter made after e.
TEST(DependsOn, FollowsRecordedOpsOnly) {
  Tensor w = Tensor::Scalar(0.3).set_requires_grad(true);
  Tensor u = Tensor::Scalar(0.8).set_requires_grad(true);
  Tensor k = Tensor::Scalar(2.0);  // a constant
  Tensor c = w * u;
  Tensor e = c * c + w * k;
  Tensor q = Tensor::Scalar(1.0).set_requires_grad(true);
  const std::vector<Tensor> all{w, u, k, c, e, q};
  EXPECT_EQ(DependsOn(e, all),
            (std::vector<bool>{true, true, false, true, true, false}));
  EXPECT_EQ(DependsOn(c, all),
            (std::vector<bool>{true, true, false, true, false, false}));
  EXPECT_EQ(DependsOn(w, all),
            (std::vector<bool>{true, false, false, false, false, false}));
  EXPECT_EQ(DependsOn(k, all), std::vector<bool>(6, false));
  Tensor r;
  {
    NoGradScope no_grad;
    r = e * 2.0;  // not recorded: no path back
  }
  EXPECT_EQ(DependsOn(r, all), std::vector<bool>(6, false));
  Tape::Get().Reset();
}

}  // namespace
}  // namespace flowtape

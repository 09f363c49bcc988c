#include <cmath>

#include "autodiff/grad.h"
#include "autodiff/op_kit.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace flowtape {
namespace {
using testing::GradientError;
using testing::HessianVectorError;

TEST(Core, SimpleGradient) {
  Tensor x = Tensor::FromVector({3}, {1, 2, 3}).set_requires_grad(true);
  Tensor y = Sum(x * x);
  EXPECT_DOUBLE_EQ(y.item(), 14.0);
  auto g = Grad({y}, {x});
  EXPECT_DOUBLE_EQ(g[0][0], 2.0);
  EXPECT_DOUBLE_EQ(g[0][2], 6.0);
  Tape::Get().Reset();
}

TEST(Core, BroadcastMulGradient) {
  Rng rng(1);
  Tensor a = Tensor::Randn({4, 3}, rng), b = Tensor::Randn({3}, rng);
  auto f = [](const std::vector<Tensor>& v) {
    return Sum(Tanh(v[0] * v[1] + v[1]));
  };
  EXPECT_LT(GradientError(f, {a, b}), 1e-6);
  EXPECT_LT(HessianVectorError(f, {a, b}), 1e-6);
}

TEST(Core, MatMulGradient) {
  Rng rng(2);
  Tensor a = Tensor::Randn({4, 3}, rng), b = Tensor::Randn({3, 5}, rng);
  auto f = [](const std::vector<Tensor>& v) {
    return Sum(Square(MatMul(v[0], v[1])));
  };
  EXPECT_LT(GradientError(f, {a, b}), 1e-6);
  EXPECT_LT(HessianVectorError(f, {a, b}), 1e-6);
}

TEST(Core, LogSumExpSoftmaxGradient) {
  Rng rng(3);
  Tensor a = Tensor::Randn({4, 3}, rng);
  auto f = [](const std::vector<Tensor>& v) {
    return Sum(LogSoftmax(v[0], 1) * Softmax(v[0] * 2.0, 0));
  };
  EXPECT_LT(GradientError(f, {a}), 1e-6);
  EXPECT_LT(HessianVectorError(f, {a}), 1e-6);
}

TEST(Core, ZeroAdjointNeverNaN) {
  Tensor x = Tensor::FromVector({2}, {0.0, 1.0}).set_requires_grad(true);
  Tensor y = Sum(Narrow(Log(x), 0, 1, 1));  // log(0) unused
  auto g = Grad({y}, {x});
  EXPECT_EQ(g[0][0], 0.0);
  EXPECT_DOUBLE_EQ(g[0][1], 1.0);
}

// y = x^2 whose create_graph gradient is off by a constant 1 (so its
// derivative, H v, is right) while the plain gradient 2x is right.
Tensor SquarePlusOneWhenRecorded(const Tensor& x) {
  Op op("square_plus_one", {x});
  Tensor out = op.NewOutput(x.shape());
  for (int64_t i = 0; i < x.numel(); ++i)
    out.mutable_data<double>()[i] = x[i] * x[i];
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    gin[0] = g * 2.0 * c.input(0);
    if (c.create_graph()) gin[0] = gin[0] + 1.0;  // the bug
  });
}

TEST(GradCheck, HessianVectorErrorChecksTheCreateGraphGradient) {
  Tensor x = Tensor::FromVector({3}, {0.5, -1.0, 2.0});
  auto bad = [](const std::vector<Tensor>& v) {
    return Sum(SquarePlusOneWhenRecorded(v[0]));
  };
  auto good = [](const std::vector<Tensor>& v) { return Sum(Square(v[0])); };
  EXPECT_LT(GradientError(bad, {x}), 1e-8);  // plain gradient is right
  EXPECT_GT(HessianVectorError(bad, {x}), 0.3);
  EXPECT_LT(HessianVectorError(good, {x}), 1e-8);
}

// An output that is the parameter itself (no op recorded) has gradient 1.
TEST(Core, GradOfIdentityIsOne) {
  Tensor p = Tensor::FromVector({3}, {1, -2, 5}).set_requires_grad(true);
  EXPECT_EQ(Grad({p}, {p})[0].ToVector(), (std::vector<double>{1, 1, 1}));
  Tensor seed = Tensor::FromVector({3}, {2, 3, 4});
  EXPECT_EQ(Grad({Reshape(p, {3})}, {p}, {seed})[0].ToVector(),
            seed.ToVector());
  // Also when p was already used on this tape (same leaf), and twice.
  Tensor y = Sum(p * p);
  auto g = Grad({y, p}, {p});
  EXPECT_EQ(g[0].ToVector(), (std::vector<double>{3, -3, 11}));  // 2p + 1
  Tape::Get().Reset();
}

TEST(Core, BackwardThroughNoOpReshape) {
  Tensor p = Tensor::FromVector({2, 2}, {1, 2, 3, 4}).set_requires_grad(true);
  Tensor q = Reshape(p, {2, 2});  // same shape: returns p itself
  Backward(Sum(q));
  ASSERT_TRUE(p.grad().defined());
  EXPECT_EQ(p.grad().ToVector(), (std::vector<double>{1, 1, 1, 1}));
  Backward(Narrow(q, 0, 0, 2), Tensor::Full({2, 2}, 2.0));  // loss = p
  EXPECT_EQ(p.grad().ToVector(), (std::vector<double>{3, 3, 3, 3}));
  Tape::Get().Reset();
}

}  // namespace
}  // namespace flowtape

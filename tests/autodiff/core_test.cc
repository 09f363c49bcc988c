#include <cmath>

#include "autodiff/grad.h"
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

}  // namespace
}  // namespace flowtape

// Conv2d: values against a naive direct convolution, gradients of first,
// second and third order against finite differences.
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace flowtape {
namespace {
using testing::GradientError;
using testing::HessianVectorError;
using Fn = std::vector<Tensor>;

// y[n,o,h,w] = b[o] + sum_{i,p,q} W[o,i,p,q] x[n,i,h+p-P,w+q-Q], zero padded.
std::vector<double> NaiveConv(const Tensor& x, const Tensor& w,
                              const Tensor& b) {
  const int64_t n = x.dim(0), ci = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const int64_t co = w.dim(0), kh = w.dim(2), kw = w.dim(3);
  std::vector<double> y(n * co * h * wd, 0.0);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t o = 0; o < co; ++o)
      for (int64_t r = 0; r < h; ++r)
        for (int64_t c = 0; c < wd; ++c) {
          double acc = b.defined() ? b[o] : 0.0;
          for (int64_t i = 0; i < ci; ++i)
            for (int64_t p = 0; p < kh; ++p)
              for (int64_t q = 0; q < kw; ++q) {
                int64_t rr = r + p - kh / 2, cc = c + q - kw / 2;
                if (rr < 0 || rr >= h || cc < 0 || cc >= wd) continue;
                acc += w[((o * ci + i) * kh + p) * kw + q] *
                       x[((s * ci + i) * h + rr) * wd + cc];
              }
          y[((s * co + o) * h + r) * wd + c] = acc;
        }
  return y;
}

struct ConvCase {
  Shape x, w;
  bool bias;
};

class ConvTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvTest, MatchesNaiveConvolution) {
  const ConvCase cc = GetParam();
  Rng rng(1);
  Tensor x = Tensor::Randn(cc.x, rng), w = Tensor::Randn(cc.w, rng);
  Tensor b = cc.bias ? Tensor::Randn({cc.w[0]}, rng) : Tensor();
  Tensor y = Conv2d(x, w, b);
  ASSERT_EQ(y.shape(), (Shape{cc.x[0], cc.w[0], cc.x[2], cc.x[3]}));
  std::vector<double> want = NaiveConv(x, w, b);
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(y[i], want[i], 1e-12) << i;
}

TEST_P(ConvTest, GradientsFirstAndSecondOrder) {
  const ConvCase cc = GetParam();
  Rng rng(2);
  Fn in = {Tensor::Randn(cc.x, rng), Tensor::Randn(cc.w, rng)};
  if (cc.bias) in.push_back(Tensor::Randn({cc.w[0]}, rng));
  Tensor r = Tensor::Randn({cc.x[0], cc.w[0], cc.x[2], cc.x[3]}, rng);
  auto f = [&](const Fn& v) {
    return Sum(Tanh(Conv2d(v[0], v[1], v.size() > 2 ? v[2] : Tensor())) * r);
  };
  EXPECT_LT(GradientError(f, in), 1e-6);
  EXPECT_LT(HessianVectorError(f, in), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvTest,
    ::testing::Values(ConvCase{{2, 3, 5, 4}, {4, 3, 3, 3}, true},
                      ConvCase{{2, 3, 5, 4}, {4, 3, 3, 3}, false},
                      ConvCase{{1, 2, 4, 6}, {3, 2, 1, 1}, true},
                      ConvCase{{2, 2, 4, 5}, {2, 2, 5, 3}, true},
                      ConvCase{{2, 4, 4, 5}, {2, 4, 3, 3}, true},  // Cout < Cin
                      ConvCase{{1, 3, 3, 4}, {1, 3, 5, 3}, false},
                      ConvCase{{1, 3, 2, 2}, {1, 3, 5, 5}, true},
                      ConvCase{{1, 1, 2, 3}, {2, 1, 5, 5}, false},  // k > image
                      ConvCase{
                          {0, 2, 3, 3}, {2, 2, 3, 3}, true},  // empty batch
                      ConvCase{{1, 1, 1, 1}, {1, 1, 3, 3}, true}));

// Third order: the gradient of a function that contains a create_graph
// gradient of the convolution, checked to second order.
TEST(Conv2d, ThirdOrderThroughNestedGrad) {
  Rng rng(3);
  Tensor x = Tensor::Randn({1, 2, 3, 3}, rng),
         w = Tensor::Randn({2, 2, 3, 3}, rng);
  auto f = [](const Fn& v) {
    EnableGradScope on;  // the checker evaluates f under NoGradScope
    Tensor inner = Sum(Tanh(Conv2d(v[0], v[1])));
    std::vector<Tensor> g = Grad({inner}, {v[0], v[1]}, {}, true);
    return Sum(Square(g[0])) + Sum(g[1] * g[1] * g[1]);
  };
  EXPECT_LT(GradientError(f, {x, w}), 1e-6);
  EXPECT_LT(HessianVectorError(f, {x, w}), 1e-6);
}

TEST(Conv2dDeath, ShapeMismatchNamesOpAndShapes) {
  EXPECT_DEATH(Conv2d(Tensor::Zeros({1, 3, 4, 4}), Tensor::Zeros({2, 2, 3, 3})),
               "conv2d: .*\\[1, 3, 4, 4\\] and \\[2, 2, 3, 3\\]");
  EXPECT_DEATH(Conv2d(Tensor::Zeros({1, 2, 4, 4}), Tensor::Zeros({2, 2, 2, 3})),
               "conv2d: .*odd kernel");
  EXPECT_DEATH(Conv2d(Tensor::Zeros({1, 2, 4, 4}), Tensor::Zeros({2, 2, 3, 3}),
                      Tensor::Zeros({3})),
               "conv2d: bias \\[3\\] does not match w \\[2, 2, 3, 3\\]");
}

}  // namespace
}  // namespace flowtape

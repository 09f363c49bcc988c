// Conv2d module: forward against a direct sum, initialisers, and parameter /
// input gradients against finite differences.
#include "nn/conv.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/status/status.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace flowtape::nn {
namespace {

// y[n,o,i,j] = b[o] + sum_{c,u,v} W[o,c,u,v] x[n,c,i+u-K/2,j+v-K/2].
double Direct(const Tensor& x, const Tensor& w, const Tensor& b, int64_t n,
              int64_t o, int64_t i, int64_t j) {
  const int64_t C = x.dim(1), H = x.dim(2), W = x.dim(3), K = w.dim(2);
  double s = b[o];
  for (int64_t c = 0; c < C; ++c)
    for (int64_t u = 0; u < K; ++u)
      for (int64_t v = 0; v < K; ++v) {
        const int64_t ii = i + u - K / 2, jj = j + v - K / 2;
        if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
        s += w[((o * C + c) * K + u) * K + v] *
             x[((n * C + c) * H + ii) * W + jj];
      }
  return s;
}

TEST(Conv2dModule, ForwardMatchesDirectSum) {
  Rng rng(1);
  auto conv_ptr = Conv2d::Create(2, 3, 3, rng).value();
  Conv2d& conv = *conv_ptr;
  Tensor b = conv.bias();
  for (int o = 0; o < 3; ++o) b.mutable_data<double>()[o] = 0.1 * (o - 1);
  Tensor x = Tensor::Randn({2, 2, 4, 5}, rng);
  NoGradScope ng;
  Tensor y = conv(x);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 4, 5}));
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t o = 0; o < 3; ++o)
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = 0; j < 5; ++j)
          EXPECT_NEAR(y[((n * 3 + o) * 4 + i) * 5 + j],
                      Direct(x, conv.weight(), b, n, o, i, j), 1e-13);
}

TEST(Conv2dModule, Initialisers) {
  Rng rng(2);
  auto he_ptr = Conv2d::Create(16, 32, 3, rng).value();
  auto xav_ptr = Conv2d::Create(16, 32, 3, rng, ConvInit::kXavier).value();
  auto zero_ptr =
      Conv2d::Create(16, 32, 3, rng, ConvInit::kZeros, /*bias=*/false).value();
  const Conv2d &he = *he_ptr, &xav = *xav_ptr, &zero = *zero_ptr;
  auto var = [](const Tensor& t) {
    double s = 0;
    for (int64_t i = 0; i < t.numel(); ++i) s += t[i] * t[i];
    return s / t.numel();
  };
  // He: Var = 2 / fan_in, fan_in = 16 * 9. Xavier: Var = a^2 / 3 with
  // a^2 = 6 / (fan_in + fan_out) = 6 / (144 + 288). 4608 samples: ~4% error.
  EXPECT_NEAR(var(he.weight()) / (2.0 / 144.0), 1.0, 0.1);
  EXPECT_NEAR(var(xav.weight()) / (2.0 / 432.0), 1.0, 0.1);
  const double a = std::sqrt(6.0 / 432.0);
  for (int64_t i = 0; i < xav.weight().numel(); ++i)
    EXPECT_LE(std::fabs(xav.weight()[i]), a);
  EXPECT_EQ(var(zero.weight()), 0.0);
  EXPECT_FALSE(zero.bias().defined());
  EXPECT_EQ(zero.NamedParameters().size(), 1u);
}

TEST(Conv2dModule, GradientsMatchFiniteDifferences) {
  Rng rng(3);
  auto conv_ptr = Conv2d::Create(2, 2, 3, rng).value();
  Conv2d& conv = *conv_ptr;
  Tensor x = Tensor::Randn({1, 2, 4, 3}, rng);
  conv.ZeroGrad();
  auto loss = [&] { return Sum(Tanh(conv(x))); };
  Backward(loss());
  Tape::Get().Reset();
  double worst = 0;
  const double h = 1e-6;
  for (auto& [name, p] : conv.NamedParameters()) {
    Tensor g = p.grad(), q = p;
    ASSERT_TRUE(g.defined()) << name;
    for (int64_t j = 0; j < p.numel(); ++j) {
      NoGradScope ng;
      double* v = q.mutable_data<double>();
      const double old = v[j];
      v[j] = old + h;
      const double fp = loss().item();
      v[j] = old - h;
      const double fm = loss().item();
      v[j] = old;
      worst = std::max(worst, std::fabs(g[j] - (fp - fm) / (2 * h)));
    }
  }
  EXPECT_LT(worst, 1e-7);
  auto f = [&](const std::vector<Tensor>& v) {
    return Sum(Square(conv(v[0])));
  };
  EXPECT_LT(testing::GradientError(f, {x}), 1e-7);
}

// Create refuses what the constructor aborts on, naming the bad argument.
TEST(Conv2dModule, CreateRefusesBadArgumentsWithAStatus) {
  Rng rng(12);
  struct Bad {
    int64_t in, out, k;
    const char* says;
  };
  for (const Bad& b :
       {Bad{0, 4, 3, "in_channels = 0"}, Bad{2, -1, 3, "out_channels = -1"},
        Bad{2, 4, 2, "kernel_size must be odd and >= 1"}, Bad{2, 4, 0, "got 0"},
        Bad{2, 4, -3, "got -3"}}) {
    absl::Status s = Conv2d::Create(b.in, b.out, b.k, rng).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(b.says), std::string::npos) << s;
  }
  Rng a(13);
  auto made = Conv2d::Create(2, 4, 3, a, ConvInit::kXavier);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ((*made)->weight().shape(), (Shape{4, 2, 3, 3}));
}

}  // namespace
}  // namespace flowtape::nn

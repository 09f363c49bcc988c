// MaskedAffine (block-sparse x (w .* m) + b) against the dense masked product:
// values in both dtypes, gradients first and second order, on staircase
// masks (prefix and suffix runs, MADE-like sorted degrees, empty columns)
// and on a mask with no run structure (one dense block).
#include "nn/masked_matmul.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "autodiff/thread_pool.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace flowtape::nn {
namespace {

// m[i, j] = 1 iff allowed(i, j).
template <typename F>
Tensor MakeMask(int64_t in, int64_t out, F allowed) {
  std::vector<double> m(in * out);
  for (int64_t i = 0; i < in; ++i)
    for (int64_t j = 0; j < out; ++j) m[i * out + j] = allowed(i, j) ? 1 : 0;
  return Tensor::FromVector({in, out}, m);
}

struct Case {
  const char* name;
  Tensor mask;
  bool staircase;  // expect more than one block
};

std::vector<Case> Cases() {
  Rng rng(5);
  // MADE-like: input degrees 1..in, hidden degrees sorted ascending.
  std::vector<int64_t> hidden(40);
  for (int64_t& h : hidden) h = 1 + rng.UniformInt(11);
  std::sort(hidden.begin(), hidden.end());
  return {
      {"prefix",
       MakeMask(12, 40,
                [&](int64_t i, int64_t j) { return i + 1 <= hidden[j]; }),
       true},
      {"suffix",
       MakeMask(12, 40,
                [&](int64_t i, int64_t j) { return 12 - i <= hidden[j]; }),
       true},
      {"empty_columns",
       MakeMask(12, 30,
                [](int64_t i, int64_t j) { return j % 3 != 0 && i < j / 3; }),
       true},
      {"unstructured",
       MakeMask(9, 13,
                [](int64_t i, int64_t j) { return (i * 7 + j * 3) % 4 != 0; }),
       false},
  };
}

TEST(MaskedMatMul, PlanCoversEveryColumnsRunWithBoundedWaste) {
  for (const Case& c : Cases()) {
    const std::vector<MaskBlock> plan = PlanMaskBlocks(c.mask);
    EXPECT_EQ(plan.size() > 1, c.staircase) << c.name;
    const int64_t in = c.mask.dim(0), out = c.mask.dim(1);
    int64_t next = 0;
    for (const MaskBlock& b : plan) {
      EXPECT_EQ(b.c0, next) << c.name;
      next = b.c1;
      for (int64_t j = b.c0; j < b.c1; ++j)
        for (int64_t i = 0; i < in; ++i) {
          if (c.mask[i * out + j] != 0) {
            EXPECT_TRUE(i >= b.lo && i < b.hi) << c.name << " " << i << j;
          }
        }
    }
    EXPECT_EQ(next, out) << c.name;
  }
}

Tensor Dense(const Tensor& x, const Tensor& w, const Tensor& m,
             const Tensor& b) {
  return MatMul(x, w * m) + b;
}

TEST(MaskedMatMul, ValuesMatchTheDenseProductInBothDtypes) {
  Rng rng(1);
  for (const Case& c : Cases()) {
    const int64_t in = c.mask.dim(0), out = c.mask.dim(1);
    Tensor x = Tensor::Randn({17, in}, rng), w = Tensor::Randn({in, out}, rng),
           b = Tensor::Randn({out}, rng);
    Tensor want = Dense(x, w, c.mask, b);
    Tensor got = MaskedAffine(x, w, c.mask, b);
    for (int64_t i = 0; i < want.numel(); ++i)
      EXPECT_NEAR(got[i], want[i], 1e-13 * (1 + std::fabs(want[i])))
          << c.name << " " << i;
    Tensor got32 = MaskedAffine(Cast(x, kFloat32), Cast(w, kFloat32),
                                Cast(c.mask, kFloat32), Cast(b, kFloat32));
    ASSERT_EQ(got32.dtype(), kFloat32);
    for (int64_t i = 0; i < want.numel(); ++i)
      EXPECT_NEAR(got32[i], want[i], 1e-5 * (1 + std::fabs(want[i])))
          << c.name << " " << i;
    Tensor nobias = MaskedAffine(x, w, c.mask);
    Tensor want_nobias = MatMul(x, w * c.mask);
    for (int64_t i = 0; i < want.numel(); ++i)
      EXPECT_NEAR(nobias[i], want_nobias[i], 1e-13 * (1 + std::fabs(want[i])));
  }
}

TEST(MaskedMatMul, GradientsFirstAndSecondOrder) {
  Rng rng(2);
  for (const Case& c : Cases()) {
    const int64_t in = c.mask.dim(0), out = c.mask.dim(1);
    Tensor x = Tensor::Randn({5, in}, rng), w = Tensor::Randn({in, out}, rng),
           b = Tensor::Randn({out}, rng);
    Tensor mask = c.mask;
    // Nonlinear in the output so second derivatives couple x and w.
    auto f = [mask](const std::vector<Tensor>& v) {
      return Sum(Tanh(MaskedAffine(v[0], v[1], mask, v[2])));
    };
    EXPECT_LT(testing::GradientError(f, {x, w, b}), 1e-7) << c.name;
    EXPECT_LT(testing::HessianVectorError(f, {x, w, b}), 1e-6) << c.name;
    // The gradient equals the dense product's (masked weights get zero).
    Tensor xv = x.Detach().set_requires_grad(true),
           wv = w.Detach().set_requires_grad(true),
           bv = b.Detach().set_requires_grad(true);
    auto g = Grad({Sum(Tanh(MaskedAffine(xv, wv, mask, bv)))}, {xv, wv, bv});
    auto d = Grad({Sum(Tanh(Dense(xv, wv, mask, bv)))}, {xv, wv, bv});
    for (int k = 0; k < 3; ++k)
      for (int64_t i = 0; i < g[k].numel(); ++i)
        EXPECT_NEAR(g[k][i], d[k][i], 1e-12) << c.name << " " << k << " " << i;
    Tape::Get().Reset();
  }
}

// Products above the threshold run in row chunks (A, T) and block chunks
// (O) over the intra-op pool: equal to the dense product, and bitwise the
// same on 1 and 2 threads, value and both gradients.
TEST(MaskedMatMul, LargeProductsAreChunkedTheSameOnAnyThreadCount) {
  Rng rng(3);
  std::vector<int64_t> deg(192);
  for (int64_t& h : deg) h = 1 + rng.UniformInt(63);
  std::sort(deg.begin(), deg.end());
  const Tensor mask =
      MakeMask(64, 192, [&](int64_t i, int64_t j) { return i + 1 <= deg[j]; });
  ASSERT_GT(PlanMaskBlocks(mask).size(), 1u);
  const Tensor x = Tensor::Randn({600, 64}, rng),
               w = Tensor::Randn({64, 192}, rng), b = Tensor::Randn({192}, rng);
  std::vector<std::vector<double>> runs;
  for (int threads : {1, 2}) {
    SetIntraOpThreads(threads);
    Tensor xv = x.Detach().set_requires_grad(true),
           wv = w.Detach().set_requires_grad(true);
    Tensor y = MaskedAffine(xv, wv, mask, b);
    auto g = Grad({Sum(Tanh(y))}, {xv, wv});
    std::vector<double> all = y.ToVector();
    for (const Tensor& t : g) {
      std::vector<double> v = t.ToVector();
      all.insert(all.end(), v.begin(), v.end());
    }
    runs.push_back(all);
    if (threads == 1) {
      Tensor want = Dense(x, w, mask, b);
      for (int64_t i = 0; i < want.numel(); ++i)
        EXPECT_NEAR(y[i], want[i], 1e-12 * (1 + std::fabs(want[i]))) << i;
      auto d = Grad({Sum(Tanh(Dense(xv, wv, mask, b)))}, {xv, wv});
      for (int k = 0; k < 2; ++k)
        for (int64_t i = 0; i < d[k].numel(); ++i)
          EXPECT_NEAR(g[k][i], d[k][i], 1e-10) << k << " " << i;
    }
    Tape::Get().Reset();
  }
  SetIntraOpThreads(1);
  EXPECT_TRUE(runs[0] == runs[1]);
}

}  // namespace
}  // namespace flowtape::nn

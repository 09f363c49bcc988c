// MaskedAffine (block-sparse x (w .* m) + b) against the dense masked product:
// values in both dtypes, gradients first and second order, on staircase
// masks (prefix and suffix runs, MADE-like sorted degrees, empty columns),
// on masks with no run structure and at sizes no tile divides.
#include "nn/masked_matmul.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
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
  bool staircase;  // expect the plan to skip work
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

TEST(MaskedMatMul, PlanCoversEveryNonzeroAndSkipsStaircaseZeros) {
  for (const Case& c : Cases()) {
    for (DType dtype : {kFloat64, kFloat32}) {
      const Tensor mask = Cast(c.mask, dtype);
      const std::vector<MaskBlock> plan = PlanMaskBlocks(mask);
      const int64_t in = mask.dim(0), out = mask.dim(1);
      int64_t next = 0, computed = 0;
      for (const MaskBlock& b : plan) {
        EXPECT_EQ(b.c0, next) << c.name;
        EXPECT_GT(b.c1, b.c0) << c.name;
        EXPECT_TRUE(0 <= b.lo && b.lo <= b.hi && b.hi <= in) << c.name;
        next = b.c1;
        computed += (b.c1 - b.c0) * (b.hi - b.lo);
        for (int64_t j = b.c0; j < b.c1; ++j)
          for (int64_t i = 0; i < in; ++i) {
            if (c.mask[i * out + j] != 0) {
              EXPECT_TRUE(i >= b.lo && i < b.hi) << c.name << " " << i << j;
            }
          }
      }
      EXPECT_EQ(next, out) << c.name;
      if (c.staircase) {
        EXPECT_LT(computed, in * out) << c.name;
      }
    }
  }
}

// The structured product against loops over the dense masked matrix, in
// both dtypes, at sizes that are not multiples of any tile (rows, columns,
// one-column and one-row cases): the value x (w .* m) + b and the adjoints
// an output weight r gives, dx = r (w .* m)', dw = m .* (x' r), db = sum r.
TEST(MaskedMatMul, MatchesDenseLoopsAtOddSizesInBothDtypes) {
  Rng rng(11);
  struct Size {
    int64_t n, in, out;
  };
  const std::vector<Size> sizes = {{1, 1, 1},    {3, 2, 5},    {8, 7, 16},
                                   {13, 19, 17}, {37, 33, 67}, {9, 40, 3}};
  for (const Size& z : sizes) {
    std::vector<int64_t> deg(z.out);
    for (int64_t& d : deg) d = rng.UniformInt(z.in + 1);
    std::sort(deg.begin(), deg.end());
    const std::vector<std::pair<const char*, Tensor>> masks = {
        {"prefix", MakeMask(z.in, z.out,
                            [&](int64_t i, int64_t j) { return i < deg[j]; })},
        {"suffix",
         MakeMask(z.in, z.out,
                  [&](int64_t i, int64_t j) { return z.in - i <= deg[j]; })},
        {"scattered", MakeMask(z.in, z.out,
                               [](int64_t i, int64_t j) {
                                 return (i * 5 + j * 3) % 7 < 3;
                               })},
        {"zero", MakeMask(z.in, z.out, [](int64_t, int64_t) { return false; })},
    };
    for (const auto& [name, m] : masks) {
      const Tensor x = Tensor::Randn({z.n, z.in}, rng),
                   w = Tensor::Randn({z.in, z.out}, rng),
                   b = Tensor::Randn({z.out}, rng),
                   r = Tensor::Randn({z.n, z.out}, rng);
      // Dense loops in float64, and for each entry the sum of |terms|.
      auto at = [](const Tensor& t, int64_t i, int64_t j) {
        return t[i * t.dim(1) + j];
      };
      std::vector<double> y(z.n * z.out), ys(z.n * z.out), dx(z.n * z.in),
          dxs(z.n * z.in), dw(z.in * z.out), dws(z.in * z.out), db(z.out, 0.0);
      for (int64_t n = 0; n < z.n; ++n)
        for (int64_t j = 0; j < z.out; ++j) {
          y[n * z.out + j] = b[j];
          ys[n * z.out + j] = std::fabs(b[j]);
          db[j] += at(r, n, j);
          for (int64_t i = 0; i < z.in; ++i) {
            const double wm = at(w, i, j) * at(m, i, j);
            y[n * z.out + j] += at(x, n, i) * wm;
            ys[n * z.out + j] += std::fabs(at(x, n, i) * wm);
            dx[n * z.in + i] += at(r, n, j) * wm;
            dxs[n * z.in + i] += std::fabs(at(r, n, j) * wm);
            dw[i * z.out + j] += at(m, i, j) * at(x, n, i) * at(r, n, j);
            dws[i * z.out + j] += std::fabs(at(x, n, i) * at(r, n, j));
          }
        }
      for (DType dtype : {kFloat64, kFloat32}) {
        const double tol = dtype == kFloat64 ? 1e-13 : 1e-5;
        Tensor xv = Cast(x, dtype).Detach().set_requires_grad(true),
               wv = Cast(w, dtype).Detach().set_requires_grad(true),
               bv = Cast(b, dtype).Detach().set_requires_grad(true);
        Tensor got = MaskedAffine(xv, wv, Cast(m, dtype), bv);
        auto g = Grad({Sum(got * Cast(r, dtype))}, {xv, wv, bv});
        const std::string what = std::string(name) + " " + DTypeName(dtype) +
                                 " n=" + std::to_string(z.n) +
                                 " in=" + std::to_string(z.in) +
                                 " out=" + std::to_string(z.out);
        for (int64_t k = 0; k < got.numel(); ++k)
          ASSERT_NEAR(got[k], y[k], tol * (1 + ys[k])) << what << " y " << k;
        for (int64_t k = 0; k < g[0].numel(); ++k)
          ASSERT_NEAR(g[0][k], dx[k], tol * (1 + dxs[k]))
              << what << " dx " << k;
        for (int64_t k = 0; k < g[1].numel(); ++k) {
          ASSERT_NEAR(g[1][k], dw[k], tol * (1 + dws[k]))
              << what << " dw " << k;
          if (m[k] == 0) {
            ASSERT_EQ(g[1][k], 0.0) << what << " masked dw " << k;
          }
        }
        for (int64_t k = 0; k < z.out; ++k)
          ASSERT_NEAR(g[2][k], db[k], tol * (1 + z.n * 4.0))
              << what << " db " << k;
        Tape::Get().Reset();
      }
    }
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
  const Tensor x = Tensor::Randn({2400, 64}, rng),
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

// Reductions, shape ops and matrix products: values against naive loops,
// gradients (first and second order) against finite differences, negative
// axes, keepdim, empty and size-1 dims, adjoint pairs, and shape errors.
#include <cmath>
#include <limits>
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
using Index = std::vector<int64_t>;

// Row-major flat index of a multi-index.
int64_t Flat(const Shape& s, const Index& idx) {
  int64_t f = 0;
  for (int i = 0; i < s.rank(); ++i) f = f * s[i] + idx[i];
  return f;
}

// Calls fn(idx) for every multi-index of s, in row-major order.
template <typename F>
void ForEach(const Shape& s, F fn) {
  if (s.numel() == 0) return;
  Index idx(s.rank(), 0);
  for (int64_t k = 0; k < s.numel(); ++k) {
    fn(idx);
    for (int i = s.rank() - 1; i >= 0; --i) {
      if (++idx[i] < s[i]) break;
      idx[i] = 0;
    }
  }
}

// Checks f's gradient and Hessian-vector products on `inputs`.
void ExpectGradientsMatch(const testing::ScalarFn& f, const Fn& inputs,
                          const std::string& what) {
  EXPECT_LT(GradientError(f, inputs), 1e-6) << what;
  EXPECT_LT(HessianVectorError(f, inputs), 1e-6) << what;
}

// Sum(w * tanh(y)) for a random w shaped like y: a nonlinear scalar probe.
Tensor Probe(const Tensor& y, uint64_t seed = 99) {
  Rng rng(seed);
  return Sum(Tanh(y) * Tensor::Randn(y.shape(), rng));
}

const std::vector<Shape>& ReduceShapes() {
  static const auto* s = new std::vector<Shape>{
      {5}, {3, 4}, {2, 3, 4}, {2, 1, 3, 2}, {1, 1}, {3, 1, 2}};
  return *s;
}

// ---- reductions ----

TEST(Sum, AllAndAlongEachAxis) {
  Rng rng(1);
  for (const Shape& s : ReduceShapes()) {
    Tensor x = Tensor::Randn(s, rng);
    double total = 0;
    for (double v : x.ToVector()) total += v;
    EXPECT_NEAR(Sum(x).item(), total, 1e-12);
    EXPECT_NEAR(Mean(x).item(), total / s.numel(), 1e-12);
    ExpectGradientsMatch([](const Fn& v) { return Square(Sum(v[0])); }, {x},
                         "sum " + s.ToString());
    for (int axis = -s.rank(); axis < s.rank(); ++axis) {
      const int a = s.NormalizeAxis(axis);
      for (bool keep : {false, true}) {
        Tensor y = Sum(x, axis, keep), m = Mean(x, axis, keep);
        Shape want = keep ? s.WithDim(a, 1) : s.WithDim(a, -1);
        ASSERT_EQ(y.shape(), want);
        ASSERT_EQ(m.shape(), want);
        std::vector<double> ref(want.numel(), 0.0);
        ForEach(s, [&](const Index& idx) {
          Index r = idx;
          if (keep)
            r[a] = 0;
          else
            r.erase(r.begin() + a);
          ref[Flat(want, r)] += x[Flat(s, idx)];
        });
        for (int64_t i = 0; i < want.numel(); ++i) {
          EXPECT_NEAR(y[i], ref[i], 1e-12);
          EXPECT_NEAR(m[i], ref[i] / s[a], 1e-12);
        }
        ExpectGradientsMatch(
            [axis, keep](const Fn& v) {
              return Probe(Sum(v[0], axis, keep)) +
                     Probe(Mean(v[0], axis, keep), 5);
            },
            {x}, "sum axis " + std::to_string(axis) + s.ToString());
      }
    }
  }
}

TEST(Sum, EmptyTensors) {
  Tensor e = Tensor::Zeros({2, 0, 3}).set_requires_grad(true);
  EXPECT_EQ(Sum(e).item(), 0.0);
  EXPECT_EQ(Mean(e).item(), 0.0);  // defined as 0, never NaN
  Tensor s1 = Sum(e, 1);
  EXPECT_EQ(s1.shape(), (Shape{2, 3}));
  for (double v : s1.ToVector()) EXPECT_EQ(v, 0.0);
  EXPECT_EQ(Sum(e, -1).shape(), (Shape{2, 0}));
  Tensor g = Grad({Sum(e) + Sum(s1)}, {e})[0];
  EXPECT_EQ(g.shape(), e.shape());
  Tape::Get().Reset();
}

TEST(Max, ValuesAndGradientsAwayFromTies) {
  Rng rng(2);
  for (const Shape& s : ReduceShapes()) {
    Tensor x = Tensor::Randn(s, rng);  // distinct values almost surely
    std::vector<double> v = x.ToVector();
    EXPECT_EQ(Max(x).item(), *std::max_element(v.begin(), v.end()));
    ExpectGradientsMatch([](const Fn& t) { return Square(Max(t[0])); }, {x},
                         "max " + s.ToString());
    for (int axis = -s.rank(); axis < s.rank(); ++axis) {
      const int a = s.NormalizeAxis(axis);
      Tensor y = Max(x, axis, /*keepdim=*/true);
      Shape want = s.WithDim(a, 1);
      ASSERT_EQ(y.shape(), want);
      EXPECT_EQ(Max(x, axis).shape(), s.WithDim(a, -1));
      std::vector<double> ref(want.numel(), -1e300);
      ForEach(s, [&](const Index& idx) {
        Index r = idx;
        r[a] = 0;
        ref[Flat(want, r)] = std::max(ref[Flat(want, r)], x[Flat(s, idx)]);
      });
      for (int64_t i = 0; i < want.numel(); ++i) EXPECT_EQ(y[i], ref[i]);
      ExpectGradientsMatch(
          [axis](const Fn& t) { return Probe(Max(t[0], axis)); }, {x},
          "max axis " + std::to_string(axis) + s.ToString());
    }
  }
}

TEST(Max, TieSendsGradientToFirstArgMax) {
  Tensor x =
      Tensor::FromVector({2, 3}, {1, 5, 5, 2, 2, 0}).set_requires_grad(true);
  Tensor g = Grad({Sum(Max(x, 1))}, {x})[0];
  EXPECT_EQ(g.ToVector(), (std::vector<double>{0, 1, 0, 1, 0, 0}));
  Tensor g2 = Grad({Max(x)}, {x})[0];
  EXPECT_EQ(g2.ToVector(), (std::vector<double>{0, 1, 0, 0, 0, 0}));
  Tape::Get().Reset();
}

// A NaN anywhere in the reduced set gives NaN, whatever its position, and the
// gradient goes to that NaN slot (full and per-axis alike).
TEST(Max, NaNPropagatesAndTakesTheGradient) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const std::vector<double>& v :
       {std::vector<double>{nan, 1}, std::vector<double>{1, nan}}) {
    const std::vector<double> hot = {std::isnan(v[0]) ? 1.0 : 0.0,
                                     std::isnan(v[1]) ? 1.0 : 0.0};
    Tensor x = Tensor::FromVector({2}, v).set_requires_grad(true);
    Tensor full = Max(x), axis = Max(x, 0);
    EXPECT_TRUE(std::isnan(full.item()));
    EXPECT_TRUE(std::isnan(axis.item()));
    EXPECT_EQ(Grad({full}, {x})[0].ToVector(), hot);
    EXPECT_EQ(Grad({axis}, {x})[0].ToVector(), hot);
    // Per row of a matrix: only the row holding the NaN is NaN.
    Tensor m = Tensor::FromVector({2, 2}, {v[0], v[1], 3, 2});
    m.set_requires_grad(true);
    Tensor rows = Max(m, 1);
    EXPECT_TRUE(std::isnan(rows[0]));
    EXPECT_EQ(rows[1], 3.0);
    EXPECT_EQ(Grad({Sum(rows)}, {m})[0].ToVector(),
              (std::vector<double>{hot[0], hot[1], 1, 0}));
    Tape::Get().Reset();
  }
}

TEST(LogSumExp, ValuesStableAndGradients) {
  Rng rng(3);
  for (const Shape& s : ReduceShapes()) {
    Tensor x = Tensor::Randn(s, rng);
    for (int axis = -s.rank(); axis < s.rank(); ++axis) {
      const int a = s.NormalizeAxis(axis);
      Tensor y = LogSumExp(x, axis, true);
      Shape want = s.WithDim(a, 1);
      std::vector<double> ref(want.numel(), 0.0);
      ForEach(s, [&](const Index& idx) {
        Index r = idx;
        r[a] = 0;
        ref[Flat(want, r)] += std::exp(x[Flat(s, idx)]);
      });
      for (int64_t i = 0; i < want.numel(); ++i)
        EXPECT_NEAR(y[i], std::log(ref[i]), 1e-12);
      EXPECT_EQ(LogSumExp(x, axis).shape(), s.WithDim(a, -1));
      ExpectGradientsMatch(
          [axis](const Fn& t) {
            return Probe(LogSumExp(t[0], axis)) +
                   Probe(Softmax(t[0], axis), 3) +
                   Probe(LogSoftmax(t[0], axis), 4);
          },
          {x}, "logsumexp/softmax axis " + std::to_string(axis) + s.ToString());
    }
  }
  const double inf = std::numeric_limits<double>::infinity();
  Tensor big =
      Tensor::FromVector({3, 2}, {1000, 1000, -1000, -1001, -inf, -inf});
  std::vector<double> l = LogSumExp(big, 1).ToVector();
  EXPECT_DOUBLE_EQ(l[0], 1000 + std::log(2.0));
  EXPECT_DOUBLE_EQ(l[1], -1000 + std::log1p(std::exp(-1.0)));
  EXPECT_EQ(l[2], -inf);
  std::vector<double> sm = Softmax(Narrow(big, 0, 0, 2), -1).ToVector();
  EXPECT_EQ(sm[0], 0.5);  // shifted by the max: exact
  EXPECT_DOUBLE_EQ(sm[2], 1 / (1 + std::exp(-1.0)));
  std::vector<double> lsm = LogSoftmax(Narrow(big, 0, 0, 2), 1).ToVector();
  EXPECT_DOUBLE_EQ(lsm[0], -std::log(2.0));
  EXPECT_DOUBLE_EQ(lsm[3], -std::log1p(std::exp(-1.0)) - 1.0);
}

TEST(Softmax, RowsSumToOne) {
  Rng rng(4);
  Tensor x = (10.0 * Tensor::Randn({3, 5}, rng)).Detach();
  Tensor s = Sum(Softmax(x, 1), 1);
  for (double v : s.ToVector()) EXPECT_NEAR(v, 1.0, 1e-14);
  Tensor ls = LogSoftmax(x, 0);
  Tensor e = Sum(Exp(ls), 0);
  for (double v : e.ToVector()) EXPECT_NEAR(v, 1.0, 1e-14);
}

// ---- broadcasting utilities ----

TEST(BroadcastTo, AdjointOfSumTo) {
  Rng rng(5);
  for (const auto& [small, big] :
       std::vector<std::pair<Shape, Shape>>{{{}, {3, 2}},
                                            {{2}, {3, 2}},
                                            {{3, 1}, {3, 4}},
                                            {{2, 1, 4}, {3, 2, 3, 4}},
                                            {{1, 1}, {1, 1}},
                                            {{3}, {0, 3}}}) {
    Tensor x = Tensor::Randn(small, rng), y = Tensor::Randn(big, rng);
    Tensor bx = BroadcastTo(x, big);
    ASSERT_EQ(bx.shape(), big);
    Tensor sy = SumTo(y, small);
    ASSERT_EQ(sy.shape(), small);
    // <B x, y> = <x, S y>
    EXPECT_NEAR(Sum(bx * y).item(), Sum(x * sy).item(), 1e-12);
    if (big.numel() == 0) continue;
    ExpectGradientsMatch(
        [big = big](const Fn& v) { return Probe(BroadcastTo(v[0], big)); }, {x},
        "broadcast_to " + big.ToString());
    ExpectGradientsMatch(
        [small = small](const Fn& v) { return Probe(SumTo(v[0], small)); }, {y},
        "sum_to " + small.ToString());
  }
}

// ---- shape ops ----

TEST(Reshape, ValuesInferredDimAndGradients) {
  Rng rng(6);
  Tensor x = Tensor::Randn({2, 3, 4}, rng);
  Tensor r = Reshape(x, {4, -1});
  EXPECT_EQ(r.shape(), (Shape{4, 6}));
  EXPECT_EQ(r.ToVector(), x.ToVector());
  EXPECT_EQ(Reshape(x, {-1}).shape(), (Shape{24}));
  EXPECT_EQ(Reshape(Tensor::Zeros({0, 3}), {-1, 3}).shape(), (Shape{0, 3}));
  EXPECT_EQ(Reshape(Tensor::Scalar(2), {1, 1, 1}).shape(), (Shape{1, 1, 1}));
  ExpectGradientsMatch(
      [](const Fn& v) {
        return Probe(Reshape(v[0], {3, 2, 4}) * 2.0);
      },
      {x}, "reshape");
}

TEST(Permute, MatchesIndexMappingWithNegativeAxes) {
  Rng rng(7);
  for (const auto& [s, axes] : std::vector<std::pair<Shape, std::vector<int>>>{
           {{2, 3}, {1, 0}},
           {{2, 3, 4}, {2, 0, 1}},
           {{2, 3, 4}, {-1, -3, -2}},
           {{2, 3, 1, 2}, {3, 1, 0, 2}},
           {{1, 2, 3, 2}, {0, 3, 2, 1}},
           {{4}, {0}}}) {
    Tensor x = Tensor::Randn(s, rng);
    Tensor y = Permute(x, axes);
    std::vector<int> a(axes.size());
    for (size_t i = 0; i < axes.size(); ++i) a[i] = s.NormalizeAxis(axes[i]);
    ForEach(y.shape(), [&](const Index& idx) {
      Index src(s.rank());
      for (int i = 0; i < s.rank(); ++i) src[a[i]] = idx[i];
      EXPECT_EQ(y[Flat(y.shape(), idx)], x[Flat(s, src)]);
    });
    ExpectGradientsMatch(
        [axes = axes](const Fn& v) { return Probe(Permute(v[0], axes)); }, {x},
        "permute " + s.ToString());
  }
}

TEST(Transpose, SwapsLastTwoAxes) {
  Rng rng(8);
  Tensor x = Tensor::Randn({2, 3, 4}, rng);
  Tensor t = Transpose(x);
  EXPECT_EQ(t.shape(), (Shape{2, 4, 3}));
  EXPECT_EQ(t[Flat(t.shape(), {1, 3, 2})], x[Flat(x.shape(), {1, 2, 3})]);
  ExpectGradientsMatch([](const Fn& v) { return Probe(Transpose(v[0])); }, {x},
                       "transpose");
}

TEST(Narrow, EachAxisWithNegativeIndex) {
  Rng rng(9);
  Tensor x = Tensor::Randn({3, 4, 5}, rng);
  for (int axis = -3; axis < 3; ++axis) {
    const int a = x.shape().NormalizeAxis(axis);
    for (auto [start, len] : std::vector<std::pair<int64_t, int64_t>>{
             {0, 1}, {1, 2}, {2, 1}, {0, 3}, {1, 0}}) {
      Tensor y = Narrow(x, axis, start, len);
      ASSERT_EQ(y.shape(), x.shape().WithDim(a, len));
      ForEach(y.shape(), [&](const Index& idx) {
        Index src = idx;
        src[a] += start;
        EXPECT_EQ(y[Flat(y.shape(), idx)], x[Flat(x.shape(), src)]);
      });
      if (len == 0) continue;
      ExpectGradientsMatch(
          [axis = axis, start = start, len = len](const Fn& v) {
            return Probe(Narrow(v[0], axis, start, len));
          },
          {x}, "narrow axis " + std::to_string(axis));
    }
  }
}

TEST(Concat, InverseOfNarrowWithEmptyParts) {
  Rng rng(10);
  for (int axis : {0, 1, -1, -2}) {
    Shape base{2, 3};
    const int a = base.NormalizeAxis(axis);
    Fn parts = {Tensor::Randn(base.WithDim(a, 2), rng),
                Tensor::Randn(base.WithDim(a, 0), rng),
                Tensor::Randn(base.WithDim(a, 1), rng)};
    Tensor c = Concat(parts, axis);
    ASSERT_EQ(c.shape(), base.WithDim(a, 3));
    EXPECT_EQ(Narrow(c, axis, 0, 2).ToVector(), parts[0].ToVector());
    EXPECT_EQ(Narrow(c, axis, 2, 1).ToVector(), parts[2].ToVector());
    ExpectGradientsMatch(
        [axis](const Fn& v) {
          return Probe(Concat({v[0], v[1], Square(v[2]), v[0]}, axis));
        },
        parts, "concat axis " + std::to_string(axis));
  }
}

TEST(IndexSelect, GatherWithRepeatsAndScatterAddGradient) {
  Rng rng(11);
  Tensor x = Tensor::Randn({3, 4}, rng);
  const std::vector<int64_t> idx = {3, 0, 3, 1};
  Tensor y = IndexSelect(x, -1, idx);
  ASSERT_EQ(y.shape(), (Shape{3, 4}));
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(y[r * 4 + j], x[r * 4 + idx[j]]);
  EXPECT_EQ(IndexSelect(x, 0, {}).shape(), (Shape{0, 4}));
  // Repeated column 3 receives both adjoints; column 2 none.
  Tensor p = x.Detach().set_requires_grad(true);
  Tensor g = Grad({Sum(IndexSelect(p, 1, idx))}, {p})[0];
  EXPECT_EQ(Narrow(g, 0, 0, 1).ToVector(), (std::vector<double>{1, 1, 0, 2}));
  Tape::Get().Reset();
  for (int axis : {0, 1}) {
    std::vector<int64_t> ix = axis == 0 ? std::vector<int64_t>{2, 2, 0}
                                        : std::vector<int64_t>{1, 3, 1, 0, 3};
    ExpectGradientsMatch(
        [axis, ix](const Fn& v) { return Probe(IndexSelect(v[0], axis, ix)); },
        {x}, "index_select axis " + std::to_string(axis));
  }
}

TEST(Where, PicksByConstantMaskWithBroadcasting) {
  Rng rng(12);
  Tensor cond = Tensor::FromVector({3, 1}, {1, 0, 1});
  Tensor a = Tensor::Randn({3, 4}, rng), b = Tensor::Randn({4}, rng);
  Tensor y = Where(cond, a, b);
  ASSERT_EQ(y.shape(), (Shape{3, 4}));
  for (int64_t r = 0; r < 3; ++r)
    for (int64_t j = 0; j < 4; ++j)
      EXPECT_EQ(y[r * 4 + j], cond[r] != 0 ? a[r * 4 + j] : b[j]);
  ExpectGradientsMatch(
      [cond](const Fn& v) { return Probe(Where(cond, v[0], v[1])); }, {a, b},
      "where");
  // Masking by a constant 0/1 mask (the MaskedLinear pattern).
  Tensor mask =
      Tensor::FromVector({3, 4}, {1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0});
  ExpectGradientsMatch([mask](const Fn& v) { return Probe(v[0] * mask); }, {a},
                       "mask");
}

// ---- matrix products ----

// C = op(A) op(B) by the definition.
std::vector<double> NaiveMatMul(const Tensor& a, const Tensor& b, bool ta,
                                bool tb) {
  const int r = a.rank();
  const int64_t batch = r == 3 ? a.dim(0) : 1;
  const int64_t ar = a.dim(r - 2), ac = a.dim(r - 1), br = b.dim(r - 2),
                bc = b.dim(r - 1);
  const int64_t m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc;
  std::vector<double> c(batch * m * n, 0.0);
  for (int64_t s = 0; s < batch; ++s)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t l = 0; l < k; ++l) {
          double av =
              ta ? a[s * ar * ac + l * ac + i] : a[s * ar * ac + i * ac + l];
          double bv =
              tb ? b[s * br * bc + j * bc + l] : b[s * br * bc + l * bc + j];
          c[(s * m + i) * n + j] += av * bv;
        }
  return c;
}

TEST(MatMul, AllTransposesPlainAndBatched) {
  Rng rng(13);
  for (int64_t batch : {0, 1, 2}) {  // 0 means plain 2-D
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        auto shape = [&](int64_t r, int64_t c) {
          return batch == 0 ? Shape{r, c} : Shape{batch, r, c};
        };
        Tensor a = Tensor::Randn(ta ? shape(4, 3) : shape(3, 4), rng);
        Tensor b = Tensor::Randn(tb ? shape(2, 4) : shape(4, 2), rng);
        Tensor c = MatMulT(a, b, ta, tb);
        ASSERT_EQ(c.shape(), shape(3, 2));
        std::vector<double> want = NaiveMatMul(a, b, ta, tb);
        for (size_t i = 0; i < want.size(); ++i)
          EXPECT_NEAR(c[i], want[i], 1e-12);
        ExpectGradientsMatch(
            [ta, tb](const Fn& v) {
              return Probe(MatMulT(v[0], v[1], ta, tb));
            },
            {a, b}, "matmul");
      }
  }
}

TEST(MatMul, SharedRightFactorAndEmptyInnerDim) {
  Rng rng(14);
  Tensor a = Tensor::Randn({2, 3, 4}, rng), b = Tensor::Randn({4, 5}, rng);
  Tensor c = MatMul(a, b);
  ASSERT_EQ(c.shape(), (Shape{2, 3, 5}));
  for (int64_t s = 0; s < 2; ++s) {
    Tensor cs = MatMul(Reshape(Narrow(a, 0, s, 1), {3, 4}), b);
    for (int64_t i = 0; i < 15; ++i) EXPECT_NEAR(c[s * 15 + i], cs[i], 1e-12);
  }
  ExpectGradientsMatch([](const Fn& v) { return Probe(MatMul(v[0], v[1])); },
                       {a, b}, "matmul shared right factor");
  Tensor z = MatMul(Tensor::Zeros({3, 0}), Tensor::Zeros({0, 2}));
  EXPECT_EQ(z.ToVector(), std::vector<double>(6, 0.0));
}

TEST(Affine, MatchesProductPlusBiasRowWithGradients) {
  Rng rng(15);
  Tensor x = Tensor::Randn({5, 4}, rng), w = Tensor::Randn({4, 3}, rng);
  for (Shape bs : {Shape{3}, Shape{1, 3}}) {
    Tensor b = Tensor::Randn(bs, rng);
    Tensor y = Affine(x, w, b);
    ASSERT_EQ(y.shape(), (Shape{5, 3}));
    std::vector<double> want = NaiveMatMul(x, w, false, false);
    for (int64_t i = 0; i < 15; ++i)
      EXPECT_NEAR(y[i], want[i] + b[i % 3], 1e-12) << bs.ToString();
    ExpectGradientsMatch(
        [](const Fn& v) { return Probe(Affine(v[0], v[1], v[2])); }, {x, w, b},
        "affine");
  }
  EXPECT_DEATH(Affine(x, w, Tensor::Zeros({2, 3})),
               "affine: want x \\[n, k\\], w \\[k, m\\], b \\[m\\] or "
               "\\[1, m\\], got \\[5, 4\\], \\[4, 3\\], \\[2, 3\\]");
}

// ---- shape errors name the op and the shapes ----

TEST(ShapeDeath, OpsNameThemselvesAndTheShapes) {
  EXPECT_DEATH(MatMul(Tensor::Zeros({2, 3}), Tensor::Zeros({4, 5})),
               "matmul: inner sizes differ: \\[2, 3\\] x \\[4, 5\\]");
  EXPECT_DEATH(MatMul(Tensor::Zeros({2, 2, 3}), Tensor::Zeros({3, 3, 5})),
               "matmul: batch sizes differ: \\[2, 2, 3\\] and \\[3, 3, 5\\]");
  EXPECT_DEATH(Reshape(Tensor::Zeros({2, 3}), {4, 2}),
               "reshape: \\[2, 3\\] has 6 elements, cannot view as \\[4, 2\\]");
  EXPECT_DEATH(Concat({Tensor::Zeros({2, 3}), Tensor::Zeros({2, 4})}, 0),
               "concat: shapes \\[2, 3\\] and \\[2, 4\\] differ off axis 0");
  EXPECT_DEATH(Narrow(Tensor::Zeros({2, 3}), 1, 2, 2),
               "narrow: \\[2, 4\\) out of range for axis 1 of \\[2, 3\\]");
  EXPECT_DEATH(SumTo(Tensor::Zeros({2, 3}), Shape{4}),
               "sum_to: .*\\[4\\].*\\[2, 3\\]");
  EXPECT_DEATH(BroadcastTo(Tensor::Zeros({3}), Shape{2, 4}),
               "broadcast_to: .*\\[3\\].*\\[2, 4\\]");
  EXPECT_DEATH(Where(Tensor::Ones({2}), Tensor::Zeros({3}), Tensor::Zeros({3})),
               "where: shapes \\[2\\] and \\[3\\] do not broadcast");
  EXPECT_DEATH(Sum(Tensor::Zeros({2, 3}), 2),
               "axis 2 out of range for shape \\[2, 3\\]");
  EXPECT_DEATH(IndexSelect(Tensor::Zeros({2, 3}), 1, {3}),
               "index_select: index 3 out of range for axis 1 of \\[2, 3\\]");
  EXPECT_DEATH(Permute(Tensor::Zeros({2, 3}), {0}),
               "permute: 1 axes for shape \\[2, 3\\]");
}

}  // namespace
}  // namespace flowtape

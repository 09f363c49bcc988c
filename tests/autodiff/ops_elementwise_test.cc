// Elementwise ops: values against <cmath>, gradients (first and second
// order) against finite differences, NumPy broadcasting (scalar, row, column,
// rank 3/4, empty and size-1 dims), numerically stable forms, and the rule
// that a zero adjoint never becomes NaN where a derivative is infinite.
#include <array>
#include <cctype>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
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
constexpr double kInf = std::numeric_limits<double>::infinity();

// Random values in [lo, hi].
Tensor Uniform(const Shape& s, double lo, double hi, Rng& rng) {
  return (lo + (hi - lo) * Tensor::Rand(s, rng)).Detach();
}

// Random values with |x| in [0.2, 2] (away from kinks at 0).
Tensor AwayFromZero(const Shape& s, Rng& rng) {
  Tensor t = Uniform(s, 0.2, 2.0, rng);
  double* p = t.mutable_data<double>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (rng.Uniform() < 0.5) p[i] = -p[i];
  return t;
}

struct UnaryCase {
  std::string name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double lo, hi;        // domain sampled for the checks
  bool away_from_zero;  // keep |x| >= 0.2 (kinks at 0)
};

double Sigm(double v) { return 1.0 / (1.0 + std::exp(-v)); }

std::vector<UnaryCase> UnaryCases() {
  return {
      {"neg", Neg, [](double v) { return -v; }, -2, 2, false},
      {"exp", Exp, [](double v) { return std::exp(v); }, -2, 2, false},
      {"log", Log, [](double v) { return std::log(v); }, 0.3, 3, false},
      {"log1p", Log1p, [](double v) { return std::log1p(v); }, -0.7, 2, false},
      {"expm1", Expm1, [](double v) { return std::expm1(v); }, -2, 2, false},
      {"sqrt", Sqrt, [](double v) { return std::sqrt(v); }, 0.3, 3, false},
      {"square", Square, [](double v) { return v * v; }, -2, 2, false},
      {"pow2.5", [](const Tensor& x) { return Pow(x, 2.5); },
       [](double v) { return std::pow(v, 2.5); }, 0.3, 2, false},
      {"pow3", [](const Tensor& x) { return Pow(x, 3.0); },
       [](double v) { return v * v * v; }, -2, 2, false},
      {"pow-1.5", [](const Tensor& x) { return Pow(x, -1.5); },
       [](double v) { return std::pow(v, -1.5); }, 0.5, 2, false},
      {"pow1", [](const Tensor& x) { return Pow(x, 1.0); },
       [](double v) { return v; }, -2, 2, false},
      {"pow0", [](const Tensor& x) { return Pow(x, 0.0); },
       [](double) { return 1.0; }, -2, 2, false},
      {"abs", Abs, [](double v) { return std::fabs(v); }, -2, 2, true},
      {"sin", Sin, [](double v) { return std::sin(v); }, -3, 3, false},
      {"cos", Cos, [](double v) { return std::cos(v); }, -3, 3, false},
      {"tanh", Tanh, [](double v) { return std::tanh(v); }, -2, 2, false},
      {"sigmoid", Sigmoid, Sigm, -4, 4, false},
      {"softplus", Softplus, [](double v) { return std::log(1 + std::exp(v)); },
       -4, 4, false},
      {"log_sigmoid", LogSigmoid, [](double v) { return std::log(Sigm(v)); },
       -4, 4, false},
      {"relu", Relu, [](double v) { return v > 0 ? v : 0; }, -2, 2, true},
      {"elu", [](const Tensor& x) { return Elu(x, 0.7); },
       [](double v) { return v > 0 ? v : 0.7 * (std::exp(v) - 1); }, -2, 2,
       true},
      {"leaky_relu", [](const Tensor& x) { return LeakyRelu(x, 0.1); },
       [](double v) { return v > 0 ? v : 0.1 * v; }, -2, 2, true},
      {"clamp", [](const Tensor& x) { return Clamp(x, -1.0, 1.5); },
       [](double v) { return std::min(std::max(v, -1.0), 1.5); }, -3, 3, false},
  };
}

class UnaryTest : public ::testing::TestWithParam<UnaryCase> {};

Tensor Sample(const UnaryCase& c, const Shape& s, Rng& rng) {
  Tensor x =
      c.away_from_zero ? AwayFromZero(s, rng) : Uniform(s, c.lo, c.hi, rng);
  if (c.name == "clamp") {  // keep away from the bounds -1 and 1.5
    double* p = x.mutable_data<double>();
    for (int64_t i = 0; i < x.numel(); ++i)
      if (std::fabs(p[i] + 1) < 0.1 || std::fabs(p[i] - 1.5) < 0.1) p[i] = 0.3;
  }
  return x;
}

TEST_P(UnaryTest, ValuesMatchCmath) {
  const UnaryCase& c = GetParam();
  Rng rng(1);
  Tensor x = Sample(c, {3, 4}, rng);
  Tensor y = c.op(x);
  ASSERT_EQ(y.shape(), x.shape());
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_NEAR(y[i], c.ref(x[i]), 1e-14 * std::max(1.0, std::fabs(y[i])))
        << c.name << "(" << x[i] << ")";
}

TEST_P(UnaryTest, GradientsFirstAndSecondOrder) {
  const UnaryCase& c = GetParam();
  Rng rng(2);
  for (Shape s : {Shape{}, Shape{5}, Shape{2, 3}, Shape{2, 1, 3, 2}}) {
    Tensor x = Sample(c, s, rng);
    Tensor w = Tensor::Randn(s, rng);  // random weights: not just sum
    auto f = [&](const Fn& v) { return Sum(c.op(v[0]) * w); };
    EXPECT_LT(GradientError(f, {x}), 1e-6) << c.name << s.ToString();
    EXPECT_LT(HessianVectorError(f, {x}), 1e-6) << c.name << s.ToString();
  }
}

TEST_P(UnaryTest, EmptyAndSizeOneShapes) {
  const UnaryCase& c = GetParam();
  for (Shape s : {Shape{0}, Shape{2, 0, 3}, Shape{1, 1}}) {
    Tensor x = Tensor::Full(s, 0.5).set_requires_grad(true);
    Tensor y = c.op(x);
    EXPECT_EQ(y.shape(), s);
    Tensor g = Grad({Sum(y)}, {x})[0];
    EXPECT_EQ(g.shape(), s);
    Tape::Get().Reset();
  }
  // A [1, 1] result broadcast against [2, 3] weights: dx = f'(x) sum(w).
  Tensor x = Tensor::Full({1, 1}, 0.5).set_requires_grad(true);
  Tensor w = Tensor::FromVector({2, 3}, {1, -2, 3, 0.5, 4, -1});
  Tensor y = c.op(x) * w;
  ASSERT_EQ(y.shape(), (Shape{2, 3}));
  for (int64_t i = 0; i < 6; ++i) EXPECT_DOUBLE_EQ(y[i], c.ref(0.5) * w[i]);
  const double h = 1e-6, fd = (c.ref(0.5 + h) - c.ref(0.5 - h)) / (2 * h);
  Tensor g = Grad({Sum(y)}, {x})[0];
  ASSERT_EQ(g.shape(), (Shape{1, 1}));
  EXPECT_NEAR(g.item(), fd * 5.5, 1e-8) << c.name;
  Tape::Get().Reset();
}

INSTANTIATE_TEST_SUITE_P(AllUnary, UnaryTest, ::testing::ValuesIn(UnaryCases()),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch)))
                               ch = '_';
                           return n;
                         });

// Where f' is infinite (or f overflows), a zero adjoint must stay exactly zero,
// also for the second derivative.
TEST(ZeroAdjoint, NeverNaNWhereDerivativeIsInfinite) {
  struct Point {
    std::string name;
    std::function<Tensor(const Tensor&)> op;
    double x;
  };
  std::vector<Point> points = {
      {"log", Log, 0.0},
      {"log", Log, -1.0},
      {"log1p", Log1p, -1.0},
      {"sqrt", Sqrt, 0.0},
      {"pow0.5", [](const Tensor& t) { return Pow(t, 0.5); }, 0.0},
      {"pow-1", [](const Tensor& t) { return Pow(t, -1.0); }, 0.0},
      {"exp", Exp, 1000.0},
      {"expm1", Expm1, 1000.0},
      {"square", Square, 1e200},
      {"softplus", Softplus, 1000.0},
      {"elu", [](const Tensor& t) { return Elu(t); }, -1000.0},
      {"tanh", Tanh, 1000.0},
      {"sigmoid", Sigmoid, -1000.0},
      {"log_sigmoid", LogSigmoid, -1000.0},
      {"div", [](const Tensor& t) { return 1.0 / t; }, 0.0},
      {"div_num", [](const Tensor& t) { return t / Tensor::Scalar(0.0); }, 1.0},
      {"mul_inf", [](const Tensor& t) { return t * kInf; }, 1.0},
  };
  for (const Point& p : points) {
    Tensor x = Tensor::FromVector({2}, {p.x, 0.5}).set_requires_grad(true);
    Tensor y = p.op(x);
    // Seed zero on the bad entry, one on the good one.
    Tensor seed = Tensor::FromVector({2}, {0.0, 1.0});
    Tensor g = Grad({y}, {x}, {seed}, /*create_graph=*/true)[0];
    EXPECT_EQ(g[0], 0.0) << p.name << " at " << p.x;
    Tensor h = Grad({Sum(g * seed)}, {x})[0];
    EXPECT_EQ(h[0], 0.0) << p.name << " (second order) at " << p.x;
    Tape::Get().Reset();
  }
}

// Tanh's recorded adjoint g (1 - y^2) differentiated in both of its inputs
// (the adjoint g = v^2 depends on v, y = tanh x on x), by the fused plain
// rule and by the op-built one (create_graph), against the closed form of
// f = sum w (1 - tanh^2 x) v^2:
//   df/dx = -2 w v^2 tanh x (1 - tanh^2 x),  df/dv = 2 w (1 - tanh^2 x) v.
TEST(TanhAdjoint, BothInputsFusedAndOpBuiltMatchClosedForm) {
  Rng rng(9);
  Tensor x = Uniform({3, 4}, -2, 2, rng).set_requires_grad(true);
  Tensor v = Uniform({3, 4}, -1, 1, rng).set_requires_grad(true);
  Tensor w = Tensor::Randn({3, 4}, rng);
  for (bool create_graph : {false, true}) {
    Tensor dx = Grad({Sum(Tanh(x) * Square(v))}, {x}, {},
                     /*create_graph=*/true)[0];
    std::vector<Tensor> g = Grad({Sum(dx * w)}, {x, v}, {}, create_graph);
    for (int64_t i = 0; i < 12; ++i) {
      const double t = std::tanh(x[i]), s = 1 - t * t;
      EXPECT_NEAR(g[0][i], -2 * w[i] * v[i] * v[i] * t * s, 1e-14);
      EXPECT_NEAR(g[1][i], 2 * w[i] * s * v[i], 1e-14);
    }
    Tape::Get().Reset();
  }
}

// Distance of `got` from the exact value (long double) in units in the last
// place of the double nearest to it.
double UlpError(double got, long double exact) {
  const double nearest = static_cast<double>(exact);
  const double a = std::fabs(nearest);
  const double ulp = a < std::numeric_limits<double>::min()
                         ? std::numeric_limits<double>::denorm_min()
                         : std::nextafter(a, kInf) - a;
  return static_cast<double>(std::fabs(got - exact) / ulp);
}

// The float64 kernel is our own (vectorised, one division): within 2 ulp
// of tanh on a dense grid through both branches (|x| <= 0.625 and above),
// tiny and subnormal arguments, and the saturated range; signed zeros,
// infinities and NaN as std::tanh has them.
TEST(Stability, TanhFloat64WithinTwoUlpOnADenseGrid) {
  std::vector<double> xs;
  for (double v = -25.0; v <= 25.0; v += 1.0 / 4096) xs.push_back(v);
  for (double v = 0.6; v <= 0.65; v += 1e-7) xs.push_back(v);   // the seam
  for (double v = 1e-320; v < 2.0; v *= 1.01) xs.push_back(v);  // tiny
  for (double v = 1.0; v < 1e300; v *= 1.5) xs.push_back(v);    // large
  const size_t half = xs.size();
  for (size_t i = 0; i < half; ++i) xs.push_back(-xs[i]);
  Tensor x = Tensor::FromVector({static_cast<int64_t>(xs.size())}, xs);
  Tensor y = Tanh(x);
  double worst = 0, at = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double e = UlpError(y[i], std::tanh(static_cast<long double>(xs[i])));
    if (e > worst) worst = e, at = xs[i];
  }
  EXPECT_LE(worst, 2.0) << "worst at x = " << at;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> special = {0.0, -0.0, kInf, -kInf, nan, 1e308, -1e308};
  Tensor ys = Tanh(Tensor::FromVector({7}, special));
  for (int i = 0; i < 7; ++i) {
    const double want = std::tanh(special[i]);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(ys[i]));
    } else {
      EXPECT_EQ(ys[i], want) << special[i];
      EXPECT_EQ(std::signbit(ys[i]), std::signbit(want)) << special[i];
    }
  }
}

// float32 (Eigen's vectorised rational tanh) on the same kind of grid: a
// few ulp (measured: 5).
TEST(Stability, TanhFloat32WithinFewUlp) {
  std::vector<double> xs;
  for (double v = -12.0; v <= 12.0; v += 1.0 / 1024) xs.push_back(v);
  for (double v = 1e-30; v < 1.0; v *= 1.05) xs.push_back(-v), xs.push_back(v);
  Tensor y =
      Tanh(Tensor::FromVector({static_cast<int64_t>(xs.size())}, xs, kFloat32));
  const float* py = y.data<float>();
  double worst = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const float xf = static_cast<float>(xs[i]);
    const float exact = static_cast<float>(std::tanh(static_cast<double>(xf)));
    const float ulp =
        std::max(std::nextafter(std::fabs(exact), 2.0f) - std::fabs(exact),
                 std::numeric_limits<float>::denorm_min());
    worst =
        std::max(worst, std::fabs(static_cast<double>(py[i]) - exact) / ulp);
  }
  EXPECT_LE(worst, 6.0);
}

TEST(Stability, ExtremeArgumentsStayFinite) {
  Tensor x = Tensor::FromVector({4}, {-1000, -40, 40, 1000});
  std::vector<double> sp = Softplus(x).ToVector();
  EXPECT_EQ(sp[0], 0.0);
  EXPECT_NEAR(sp[1], std::exp(-40.0), 1e-30);
  EXPECT_DOUBLE_EQ(sp[2], 40.0);
  EXPECT_EQ(sp[3], 1000.0);
  std::vector<double> ls = LogSigmoid(x).ToVector();
  EXPECT_EQ(ls[0], -1000.0);
  EXPECT_NEAR(ls[3], 0.0, 1e-300);
  std::vector<double> sg = Sigmoid(x).ToVector();
  EXPECT_EQ(sg[0], 0.0);
  EXPECT_EQ(sg[3], 1.0);
  Tensor tiny = Tensor::FromVector({1}, {1e-18});
  EXPECT_EQ(Log1p(tiny).item(), 1e-18);
  EXPECT_EQ(Expm1(tiny).item(), 1e-18);
}

TEST(Step, IsConstantZeroOne) {
  Tensor x = Tensor::FromVector({3}, {-1, 0, 2}).set_requires_grad(true);
  Tensor s = Step(x);
  EXPECT_TRUE(s.is_constant());
  EXPECT_EQ(s.ToVector(), (std::vector<double>{0, 0, 1}));
}

// d/dx x^0 = 0 everywhere, also at x = 0 (not 0 * 0^-1 = NaN), to any
// order; x^p for 0 < p < 1 at 0 is 0 with derivative +inf.
TEST(Pow, ZeroAndFractionalPowersAtZero) {
  Tensor x = Tensor::FromVector({3}, {0.0, -1.5, 2.0}).set_requires_grad(true);
  Tensor y = Pow(x, 0.0);
  EXPECT_EQ(y.ToVector(), (std::vector<double>{1, 1, 1}));
  Tensor g = Grad({Sum(y)}, {x}, {}, /*create_graph=*/true)[0];
  EXPECT_EQ(g.ToVector(), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(Grad({Sum(g * x)}, {x})[0].ToVector(),
            (std::vector<double>{0, 0, 0}));
  // Through x^2 = Pow(x, 2): its derivative 2 x^1, then 2 x^0 -> 2.
  Tensor g2 = Grad({Sum(Pow(x, 2.0))}, {x}, {}, /*create_graph=*/true)[0];
  EXPECT_EQ(g2.ToVector(), (std::vector<double>{0, -3, 4}));
  EXPECT_EQ(Grad({Sum(g2)}, {x})[0].ToVector(), (std::vector<double>{2, 2, 2}));
  Tensor z = Tensor::FromVector({2}, {0.0, 4.0}).set_requires_grad(true);
  Tensor r = Pow(z, 0.5);
  EXPECT_EQ(r.ToVector(), (std::vector<double>{0, 2}));
  Tensor gr = Grad({Sum(r)}, {z})[0];
  EXPECT_EQ(gr[0], kInf);
  EXPECT_EQ(gr[1], 0.25);
  Tape::Get().Reset();
}

TEST(Abs, DerivativeIsZeroAtZero) {
  Tensor x = Tensor::FromVector({3}, {-2, 0, 3}).set_requires_grad(true);
  Tensor g = Grad({Sum(Abs(x))}, {x})[0];
  EXPECT_EQ(g.ToVector(), (std::vector<double>{-1, 0, 1}));
  Tape::Get().Reset();
}

// ---- binary ops with broadcasting ----

// Value of t at the output multi-index `idx` (rank-4 padded) under
// broadcasting.
double At(const Tensor& t, const std::array<int64_t, 4>& idx) {
  int64_t flat = 0;
  for (int i = 0; i < t.rank(); ++i) {
    int64_t k = idx[4 - t.rank() + i];
    flat = flat * t.dim(i) + (t.dim(i) == 1 ? 0 : k);
  }
  return t[flat];
}

struct BinaryCase {
  std::string name;
  std::function<Tensor(const Tensor&, const Tensor&)> op;
  std::function<double(double, double)> ref;
};

std::vector<BinaryCase> BinaryCases() {
  return {
      {"add", Add, [](double a, double b) { return a + b; }},
      {"sub", Sub, [](double a, double b) { return a - b; }},
      {"mul", Mul, [](double a, double b) { return a * b; }},
      {"div", Div, [](double a, double b) { return a / b; }},
      {"grad_mul", GradMul, [](double a, double b) { return a * b; }},
      {"op+", [](const Tensor& a, const Tensor& b) { return a + b; },
       [](double a, double b) { return a + b; }},
      {"op-", [](const Tensor& a, const Tensor& b) { return a - b; },
       [](double a, double b) { return a - b; }},
      {"op*", [](const Tensor& a, const Tensor& b) { return a * b; },
       [](double a, double b) { return a * b; }},
      {"op/", [](const Tensor& a, const Tensor& b) { return a / b; },
       [](double a, double b) { return a / b; }},
  };
}

const std::vector<std::pair<Shape, Shape>>& BroadcastPairs() {
  static const auto* pairs =
      new std::vector<std::pair<Shape, Shape>>{{{3, 4}, {3, 4}},
                                               {{3, 4}, {}},
                                               {{}, {3, 4}},
                                               {{3, 4}, {4}},
                                               {{3, 4}, {3, 1}},
                                               {{3, 1}, {1, 4}},
                                               {{2, 3, 4}, {3, 1}},
                                               {{2, 1, 4}, {3, 1}},
                                               {{2, 3, 4, 2}, {3, 1, 2}},
                                               {{2, 3, 1, 2}, {4, 1}},
                                               {{1}, {2, 3}},
                                               {{1, 1}, {1}},
                                               {{2, 1, 1, 1}, {1, 3, 1, 2}},
                                               {{}, {}}};
  return *pairs;
}

class BinaryTest : public ::testing::TestWithParam<BinaryCase> {};

TEST_P(BinaryTest, BroadcastValues) {
  const BinaryCase& c = GetParam();
  Rng rng(3);
  for (const auto& [as, bs] : BroadcastPairs()) {
    Tensor a = AwayFromZero(as, rng), b = AwayFromZero(bs, rng);
    Tensor y = c.op(a, b);
    Shape os = BroadcastShapes("test", as, bs);
    ASSERT_EQ(y.shape(), os) << as.ToString() << bs.ToString();
    std::array<int64_t, 4> d{1, 1, 1, 1};
    for (int i = 0; i < os.rank(); ++i) d[4 - os.rank() + i] = os[i];
    int64_t k = 0;
    for (int64_t i0 = 0; i0 < d[0]; ++i0)
      for (int64_t i1 = 0; i1 < d[1]; ++i1)
        for (int64_t i2 = 0; i2 < d[2]; ++i2)
          for (int64_t i3 = 0; i3 < d[3]; ++i3, ++k)
            EXPECT_DOUBLE_EQ(
                y[k], c.ref(At(a, {i0, i1, i2, i3}), At(b, {i0, i1, i2, i3})))
                << c.name << as.ToString() << bs.ToString();
  }
}

TEST_P(BinaryTest, BroadcastGradientsFirstAndSecondOrder) {
  const BinaryCase& c = GetParam();
  Rng rng(4);
  for (const auto& [as, bs] : BroadcastPairs()) {
    Tensor a = AwayFromZero(as, rng), b = AwayFromZero(bs, rng);
    Tensor w = Tensor::Randn(BroadcastShapes("test", as, bs), rng);
    // Tanh makes the second derivative non-trivial for linear ops too.
    auto f = [&](const Fn& v) { return Sum(Tanh(c.op(v[0], v[1])) * w); };
    EXPECT_LT(GradientError(f, {a, b}), 1e-6)
        << c.name << as.ToString() << bs.ToString();
    EXPECT_LT(HessianVectorError(f, {a, b}), 1e-6)
        << c.name << as.ToString() << bs.ToString();
  }
}

TEST_P(BinaryTest, EmptyDimsBroadcast) {
  const BinaryCase& c = GetParam();
  for (const auto& [as, bs] : std::vector<std::pair<Shape, Shape>>{
           {{0, 3}, {3}}, {{2, 0}, {2, 1}}, {{0}, {}}, {{1, 0}, {4, 1}}}) {
    Tensor a = Tensor::Ones(as).set_requires_grad(true);
    Tensor b = Tensor::Full(bs, 2.0).set_requires_grad(true);
    Tensor y = c.op(a, b);
    EXPECT_EQ(y.shape(), BroadcastShapes("test", as, bs));
    auto g = Grad({Sum(y)}, {a, b});
    EXPECT_EQ(g[0].shape(), as);
    EXPECT_EQ(g[1].shape(), bs);
    for (double v : g[1].ToVector()) EXPECT_EQ(v, 0.0);  // nothing summed
    Tape::Get().Reset();
  }
}

// Size-1 dims broadcast: gradient values are the per-element partials
// (central differences of the reference) summed over the broadcast axes.
TEST_P(BinaryTest, SizeOneDimsGradientValues) {
  const BinaryCase& c = GetParam();
  const double h = 1e-6;
  for (const auto& [as, bs] : std::vector<std::pair<Shape, Shape>>{
           {{1, 1}, {2, 3}}, {{2, 1}, {1, 3}}, {{1}, {2, 1}}}) {
    Rng rng(6);
    Tensor a = AwayFromZero(as, rng).set_requires_grad(true);
    Tensor b = AwayFromZero(bs, rng).set_requires_grad(true);
    auto g = Grad({Sum(c.op(a, b))}, {a, b});
    std::vector<double> da(a.numel(), 0.0), db(b.numel(), 0.0);
    Shape os = BroadcastShapes("test", as, bs);  // all rank 2
    for (int64_t i = 0; i < os[0]; ++i)
      for (int64_t j = 0; j < os[1]; ++j) {
        const std::array<int64_t, 4> idx{0, 0, i, j};
        const double va = At(a, idx), vb = At(b, idx);
        int64_t ka = 0, kb = 0;  // flat indices of the broadcast elements
        for (int r = 0; r < a.rank(); ++r)
          ka = ka * a.dim(r) + (a.dim(r) == 1 ? 0 : idx[4 - a.rank() + r]);
        for (int r = 0; r < b.rank(); ++r)
          kb = kb * b.dim(r) + (b.dim(r) == 1 ? 0 : idx[4 - b.rank() + r]);
        da[ka] += (c.ref(va + h, vb) - c.ref(va - h, vb)) / (2 * h);
        db[kb] += (c.ref(va, vb + h) - c.ref(va, vb - h)) / (2 * h);
      }
    for (int64_t k = 0; k < a.numel(); ++k)
      EXPECT_NEAR(g[0][k], da[k], 1e-7) << c.name << as.ToString();
    for (int64_t k = 0; k < b.numel(); ++k)
      EXPECT_NEAR(g[1][k], db[k], 1e-7) << c.name << bs.ToString();
    Tape::Get().Reset();
  }
}

INSTANTIATE_TEST_SUITE_P(AllBinary, BinaryTest,
                         ::testing::ValuesIn(BinaryCases()),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           if (n == "op+") return std::string("op_plus");
                           if (n == "op-") return std::string("op_minus");
                           if (n == "op*") return std::string("op_times");
                           if (n == "op/") return std::string("op_div");
                           return n;
                         });

TEST(ScalarOperators, DoubleOnEitherSide) {
  Rng rng(5);
  Tensor x = AwayFromZero({2, 3}, rng);
  auto f = [](const Fn& v) {
    const Tensor& t = v[0];
    return Sum((t + 1.5) * (2.0 - t) / (t * 3.0 - 0.5) + 2.0 / t +
               (t / 4.0) * (-t) - (0.5 * t) + (1.0 + t));
  };
  EXPECT_LT(GradientError(f, {x}), 1e-6);
  EXPECT_LT(HessianVectorError(f, {x}), 1e-6);
  Tensor y = (x + 1.5) * 2.0 - 1.0 / x;
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_DOUBLE_EQ(y[i], (x[i] + 1.5) * 2.0 - 1.0 / x[i]);
}

TEST(GradMul, ZeroTimesInfinityIsZero) {
  Tensor g = Tensor::FromVector({3}, {0.0, 2.0, 0.0});
  Tensor d = Tensor::FromVector({3}, {kInf, 3.0, std::nan("")});
  EXPECT_EQ(GradMul(g, d).ToVector(), (std::vector<double>{0, 6, 0}));
}

TEST(BroadcastDeath, MismatchNamesOpAndBothShapes) {
  EXPECT_DEATH(Add(Tensor::Zeros({2, 3}), Tensor::Zeros({4})),
               "add: shapes \\[2, 3\\] and \\[4\\] do not broadcast");
  EXPECT_DEATH(Mul(Tensor::Zeros({2, 3, 4}), Tensor::Zeros({2, 4, 4})),
               "mul: shapes \\[2, 3, 4\\] and \\[2, 4, 4\\] do not broadcast");
  EXPECT_DEATH(Div(Tensor::Zeros({5}), Tensor::Zeros({3})),
               "div: shapes \\[5\\] and \\[3\\]");
  EXPECT_DEATH(Sub(Tensor::Zeros({3, 2}), Tensor::Zeros({3})),
               "sub: shapes \\[3, 2\\] and \\[3\\]");
}

}  // namespace
}  // namespace flowtape

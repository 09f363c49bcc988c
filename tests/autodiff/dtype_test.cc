// float32 against float64, op by op: every public op (ops.h) and functional
// transform (functional.h) run on the same inputs (drawn in float64, rounded
// to float32 so both dtypes see one set of numbers) in both dtypes. The
// float32 value, its gradient (the fused first-order rules and the
// op-built create_graph rules) and the double-backward H v must equal the
// float64 ones to tests/float32_tolerance.h's tolerances, and stay float32.
// Cast converts with its gradient (finite differences in float64 and the
// chain rule, exactly), and an op whose inputs mix dtypes dies naming the
// op and both dtypes.
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autodiff/functional.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/float32_tolerance.h"
#include "tests/gradcheck.h"

namespace flowtape {
namespace {
using testing::Float32Err;
using testing::Float32Tol;
using Inputs = std::vector<Tensor>;

// Rounded to float32 and held in float64.
Tensor Rounded(const Tensor& t) {
  return Cast(Cast(t, kFloat32), kFloat64).Detach();
}

// Values in [lo, hi].
Tensor U(const Shape& s, double lo, double hi, Rng& rng) {
  return Rounded(lo + (hi - lo) * Tensor::Rand(s, rng));
}

// Values with |x| in [0.2, 2], random signs (away from kinks at 0).
Tensor Away(const Shape& s, Rng& rng) {
  Tensor t = U(s, 0.2, 2.0, rng);
  double* p = t.mutable_data<double>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (rng.Uniform() < 0.5) p[i] = -p[i];
  return t;
}

// 2 I + U[-0.5, 0.5] entries: [n, n] or [B, n, n], well conditioned
// (diagonally dominant), positive determinant.
Tensor WellConditioned(std::vector<int64_t> dims, Rng& rng) {
  const int64_t n = dims.back();
  Tensor t = U(Shape(dims), -0.5, 0.5, rng);
  double* p = t.mutable_data<double>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if ((i % (n * n)) / n == i % n) p[i] += 2.0;
  return t;
}

// The triangle (lower or upper) of a well-conditioned [n, n] matrix.
Tensor Triangle(int64_t n, bool upper, Rng& rng) {
  Tensor t = WellConditioned({n, n}, rng);
  double* p = t.mutable_data<double>();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < n; ++c)
      if (upper ? c < r : c > r) p[r * n + c] = 0;
  return t;
}

struct OpCase {
  std::string name;
  // float64 inputs (float32-representable), all differentiable.
  std::function<Inputs(Rng&)> make;
  std::function<Tensor(const Inputs&)> f;
  // Float32Tol's d: roundings mixed into one entry of the value or of a
  // gradient (inner sizes of products and reductions).
  double terms = 1;
  // The op's name in its messages; non-empty for ops of several inputs:
  // the mixed-dtype death test mixes input 0 (float64) with input 1
  // (float32).
  std::string op;
  bool differentiable = true;  // false: value only (Step)
  bool second_order = true;    // false: H v not compared (gradient constant)
};

std::ostream& operator<<(std::ostream& os, const OpCase& c) {
  return os << c.name;
}

OpCase Unary(std::string name, std::function<Tensor(const Tensor&)> op,
             double lo, double hi) {
  return {name,
          [lo, hi](Rng& r) {
            return Inputs{U({3, 4}, lo, hi, r)};
          },
          [op](const Inputs& x) { return op(x[0]); }, 1, ""};
}
// Ops with a kink at 0: inputs away from it.
OpCase Kinked(std::string name, std::function<Tensor(const Tensor&)> op) {
  return {name,
          [](Rng& r) {
            return Inputs{Away({3, 4}, r)};
          },
          [op](const Inputs& x) { return op(x[0]); }, 1, ""};
}
OpCase Binary(std::string name, std::string op_name,
              std::function<Tensor(const Tensor&, const Tensor&)> op, Shape sa,
              Shape sb, double lo = -2, double hi = 2) {
  return {name,
          [=](Rng& r) {
            return Inputs{U(sa, lo, hi, r), U(sb, lo, hi, r)};
          },
          [op](const Inputs& x) { return op(x[0], x[1]); }, 1, op_name};
}

std::vector<OpCase> OpCases() {
  std::vector<OpCase> c;
  // ---- elementwise, broadcasting ----
  c.push_back(Binary("add", "add", Add, {3, 4}, {4}));
  c.push_back(Binary("sub", "sub", Sub, {3, 1}, {3, 4}));
  c.push_back(Binary("mul", "mul", Mul, {3, 4}, {3, 4}));
  c.push_back(Binary("mul_broadcast", "mul", Mul, {2, 3, 4}, {3, 1}));
  c.push_back(Binary("div", "div", Div, {3, 4}, {4}, 0.5, 2));
  c.push_back(Binary("grad_mul", "grad_mul", GradMul, {3, 4}, {3, 4}));
  c.push_back(Binary("operator_plus", "add",
                     [](const Tensor& a, const Tensor& b) { return a + b; },
                     {3, 4}, {1}));
  c.push_back(Binary("operator_minus", "sub",
                     [](const Tensor& a, const Tensor& b) { return a - b; },
                     {3, 4}, {3, 4}));
  c.push_back(Binary("operator_times", "mul",
                     [](const Tensor& a, const Tensor& b) { return a * b; },
                     {3, 4}, {3, 4}));
  c.push_back(Binary(
      "operator_divide", "div",
      [](const Tensor& a, const Tensor& b) { return a / b; }, {3, 4}, {3, 4},
      0.5, 2));
  c.push_back(Unary(
      "scalar_operators",
      [](const Tensor& x) {
        return ((2.5 - x) * 1.5 + 0.25) / 3.0 - 0.5 / (x + 3.0) * 2.0 +
               -(x - 1.0) + 1.0 * x;
      },
      -1, 1));
  // ---- elementwise, unary ----
  c.push_back(Unary("neg", Neg, -2, 2));
  c.push_back(Unary("exp", Exp, -2, 2));
  c.push_back(Unary("log", Log, 0.3, 3));
  c.push_back(Unary("log1p", Log1p, -0.7, 2));
  c.push_back(Unary("expm1", Expm1, -2, 2));
  c.push_back(Unary("sqrt", Sqrt, 0.3, 3));
  c.push_back(Unary("square", Square, -2, 2));
  c.push_back(Unary(
      "pow2_5", [](const Tensor& x) { return Pow(x, 2.5); }, 0.3, 2));
  c.push_back(Unary(
      "pow3", [](const Tensor& x) { return Pow(x, 3.0); }, -2, 2));
  c.push_back(Unary(
      "pow_minus1_5", [](const Tensor& x) { return Pow(x, -1.5); }, 0.5, 2));
  c.push_back(Kinked("abs", Abs));
  c.push_back(Unary("sin", Sin, -3, 3));
  c.push_back(Unary("cos", Cos, -3, 3));
  c.push_back(Unary("tanh", Tanh, -3, 3));
  c.push_back(Unary("sigmoid", Sigmoid, -4, 4));
  c.push_back(Unary("softplus", Softplus, -4, 4));
  c.push_back(Unary("log_sigmoid", LogSigmoid, -4, 4));
  c.push_back(Kinked("relu", Relu));
  c.push_back(Kinked("elu", [](const Tensor& x) { return Elu(x, 0.7); }));
  c.push_back(
      Kinked("leaky_relu", [](const Tensor& x) { return LeakyRelu(x, 0.1); }));
  OpCase step = Kinked("step", Step);
  step.differentiable = false;
  c.push_back(step);
  // ---- reductions ----
  auto reduce = [](std::string name, std::function<Tensor(const Tensor&)> op,
                   bool kinked = false) {
    OpCase r = kinked ? Kinked(name, op) : Unary(name, op, -2, 2);
    r.make = [kinked](Rng& rng) {
      return Inputs{kinked ? Away({3, 5}, rng) : U({3, 5}, -2, 2, rng)};
    };
    r.terms = 15;
    return r;
  };
  c.push_back(reduce("sum", [](const Tensor& x) { return Sum(x); }));
  c.push_back(reduce("sum_axis", [](const Tensor& x) { return Sum(x, 1); }));
  c.push_back(reduce("sum_axis0_keepdim",
                     [](const Tensor& x) { return Sum(x, 0, true); }));
  c.push_back(reduce("mean", [](const Tensor& x) { return Mean(x); }));
  c.push_back(
      reduce("mean_axis", [](const Tensor& x) { return Mean(x, -1, true); }));
  c.push_back(reduce("max", [](const Tensor& x) { return Max(x); }));
  c.push_back(reduce("max_axis", [](const Tensor& x) { return Max(x, 0); }));
  c.push_back(
      reduce("logsumexp", [](const Tensor& x) { return LogSumExp(x, 1); }));
  c.push_back(reduce("logsumexp_keepdim",
                     [](const Tensor& x) { return LogSumExp(x, 0, true); }));
  c.push_back(reduce("softmax", [](const Tensor& x) { return Softmax(x, 1); }));
  c.push_back(
      reduce("log_softmax", [](const Tensor& x) { return LogSoftmax(x, 0); }));
  // ---- shape ----
  auto shape = [](std::string name, std::function<Tensor(const Tensor&)> op) {
    OpCase s = Unary(name, op, -2, 2);
    s.make = [](Rng& rng) { return Inputs{U({2, 3, 4}, -2, 2, rng)}; };
    return s;
  };
  c.push_back(shape("broadcast_to", [](const Tensor& x) {
    return BroadcastTo(Reshape(x, {1, 2, 3, 4}), Shape({3, 2, 3, 4}));
  }));
  c.push_back(shape("sum_to", [](const Tensor& x) {
    return SumTo(x, Shape({1, 3, 1}));
  }));
  c.push_back(shape("reshape", [](const Tensor& x) {
    return Reshape(x, {4, -1});
  }));
  c.push_back(shape("transpose", Transpose));
  c.push_back(shape("permute", [](const Tensor& x) {
    return Permute(x, {2, 0, 1});
  }));
  c.push_back(
      shape("narrow", [](const Tensor& x) { return Narrow(x, 2, 1, 2); }));
  c.push_back(shape("index_select", [](const Tensor& x) {
    return IndexSelect(x, 1, {2, 0, 2});
  }));
  c.push_back(shape("clamp", [](const Tensor& x) {
    // Bounds that no draw of either seed comes near (no ties).
    return Clamp(x, -1.0001, 0.9999);
  }));
  c.push_back(Binary("concat", "concat",
                     [](const Tensor& a, const Tensor& b) {
                       return Concat({a, b, a}, 1);
                     },
                     {2, 3}, {2, 2}));
  c.push_back({"where",
               [](Rng& r) {
                 return Inputs{U({3, 4}, -2, 2, r), U({4}, -2, 2, r)};
               },
               [](const Inputs& x) {
                 // The condition may have any dtype: here always the other one.
                 Tensor cond = Tensor::FromVector(
                     {3, 1}, {1, 0, 1},
                     x[0].dtype() == kFloat32 ? kFloat64 : kFloat32);
                 return Where(cond, x[0], x[1]);
               },
               1, "where"});
  // ---- matrix products ----
  c.push_back({"matmul",
               [](Rng& r) {
                 return Inputs{U({3, 5}, -1, 1, r), U({5, 4}, -1, 1, r)};
               },
               [](const Inputs& x) { return MatMul(x[0], x[1]); }, 5,
               "matmul"});
  c.push_back({"matmul_batched",
               [](Rng& r) {
                 return Inputs{U({2, 3, 5}, -1, 1, r), U({2, 5, 4}, -1, 1, r)};
               },
               [](const Inputs& x) { return MatMul(x[0], x[1]); }, 5,
               "matmul"});
  c.push_back({"matmul_shared_right",
               [](Rng& r) {
                 return Inputs{U({2, 3, 5}, -1, 1, r), U({5, 4}, -1, 1, r)};
               },
               [](const Inputs& x) { return MatMul(x[0], x[1]); }, 6,
               "matmul"});
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      c.push_back(
          {std::string("matmul_t") + (ta ? "t" : "n") + (tb ? "t" : "n"),
           [ta, tb](Rng& r) {
             return Inputs{U(ta ? Shape{5, 3} : Shape{3, 5}, -1, 1, r),
                           U(tb ? Shape{4, 5} : Shape{5, 4}, -1, 1, r)};
           },
           [ta, tb](const Inputs& x) { return MatMulT(x[0], x[1], ta, tb); }, 5,
           "matmul"});
  c.push_back({"affine",
               [](Rng& r) {
                 return Inputs{U({6, 5}, -1, 1, r), U({5, 4}, -1, 1, r),
                               U({4}, -1, 1, r)};
               },
               [](const Inputs& x) { return Affine(x[0], x[1], x[2]); }, 6,
               "affine"});
  // ---- convolution ----
  c.push_back({"conv2d",
               [](Rng& r) {
                 return Inputs{U({2, 2, 4, 5}, -1, 1, r),
                               U({3, 2, 3, 3}, -1, 1, r), U({3}, -1, 1, r)};
               },
               [](const Inputs& x) { return Conv2d(x[0], x[1], x[2]); }, 40,
               "conv2d"});
  c.push_back(
      {"conv2d_1x1_no_bias",
       [](Rng& r) {
         return Inputs{U({2, 3, 3, 3}, -1, 1, r), U({4, 3, 1, 1}, -1, 1, r)};
       },
       [](const Inputs& x) { return Conv2d(x[0], x[1]); }, 18, "conv2d"});
  // ---- linear algebra ----
  c.push_back({"solve",
               [](Rng& r) {
                 return Inputs{WellConditioned({4, 4}, r), U({4, 3}, -1, 1, r)};
               },
               [](const Inputs& x) { return Solve(x[0], x[1]); }, 16, "solve"});
  c.push_back({"solve_vector",
               [](Rng& r) {
                 return Inputs{WellConditioned({4, 4}, r), U({4}, -1, 1, r)};
               },
               [](const Inputs& x) { return Solve(x[0], x[1]); }, 16, "solve"});
  c.push_back(
      {"solve_batched",
       [](Rng& r) {
         return Inputs{WellConditioned({2, 3, 3}, r), U({2, 3, 2}, -1, 1, r)};
       },
       [](const Inputs& x) { return Solve(x[0], x[1]); }, 9, "solve"});
  c.push_back({"inverse",
               [](Rng& r) {
                 return Inputs{WellConditioned({4, 4}, r)};
               },
               [](const Inputs& x) { return Inverse(x[0]); }, 16, ""});
  c.push_back({"slogdet",
               [](Rng& r) {
                 return Inputs{WellConditioned({4, 4}, r)};
               },
               [](const Inputs& x) { return Slogdet(x[0]).logabsdet; }, 16,
               ""});
  c.push_back({"slogdet_batched",
               [](Rng& r) {
                 return Inputs{WellConditioned({2, 3, 3}, r)};
               },
               [](const Inputs& x) { return Slogdet(x[0]).logabsdet; }, 9, ""});
  c.push_back({"logabsdet",
               [](Rng& r) {
                 return Inputs{WellConditioned({3, 3}, r)};
               },
               [](const Inputs& x) { return LogAbsDet(x[0]); }, 9, ""});
  for (bool upper : {false, true})
    for (bool transpose : {false, true})
      for (bool unit : {false, true})
        c.push_back(
            {std::string("triangular_solve_") + (upper ? "upper" : "lower") +
                 (transpose ? "_t" : "") + (unit ? "_unit" : ""),
             [upper](Rng& r) {
               return Inputs{Triangle(4, upper, r), U({4, 2}, -1, 1, r)};
             },
             [upper, transpose, unit](const Inputs& x) {
               return TriangularSolve(x[0], x[1], upper, transpose, unit);
             },
             16, "triangular_solve"});
  c.push_back({"qr",
               [](Rng& r) {
                 return Inputs{WellConditioned({4, 4}, r)};
               },
               [](const Inputs& x) {
                 QrResult qr = Qr(x[0]);
                 return Concat({qr.q, qr.r}, 0);
               },
               16, ""});
  c.push_back({"qr_tall",
               [](Rng& r) {
                 return Inputs{U({5, 3}, -1, 1, r)};
               },
               [](const Inputs& x) {
                 QrResult qr = Qr(x[0]);
                 return Concat({qr.q, qr.r}, 0);
               },
               15, ""});
  return c;
}

Inputs InDType(const Inputs& xs, DType dtype, bool requires_grad) {
  Inputs out;
  for (const Tensor& x : xs) {
    Tensor t = Cast(x, dtype).Detach();
    if (requires_grad) t.set_requires_grad(true);
    out.push_back(t);
  }
  return out;
}

void ExpectAgrees(const Tensor& t32, const Tensor& t64, double tol,
                  const std::string& what) {
  ASSERT_TRUE(t32.defined() && t64.defined()) << what;
  ASSERT_EQ(t32.dtype(), kFloat32) << what;
  ASSERT_EQ(t64.dtype(), kFloat64) << what;
  ASSERT_EQ(t32.shape(), t64.shape()) << what;
  double worst = 0;
  int64_t at = 0;
  for (int64_t i = 0; i < t64.numel(); ++i) {
    const double e = Float32Err(t32[i], t64[i]);
    if (!(e <= worst)) worst = e, at = i;
  }
  EXPECT_LT(worst, tol) << what << ": worst at [" << at << "] float32 "
                        << t32[at] << ", float64 " << t64[at];
}

// The parts of one op's check in one dtype: value, first-order gradients
// (fused rules), create_graph gradients (op-built rules) and H v.
struct Evaluation {
  Tensor value;
  Inputs grad, graph_grad, hvp;
};

Evaluation Evaluate(const OpCase& c, const Inputs& x64, const Tensor& r64,
                    const Inputs& v64, DType dtype) {
  TapeScope scope;
  Evaluation e;
  {
    NoGradScope no_grad;
    e.value = c.f(InDType(x64, dtype, false)).Detach();
  }
  if (!c.differentiable) return e;
  const Tensor r = Cast(r64, dtype);
  for (bool graph : {false, true}) {
    Inputs xs = InDType(x64, dtype, true);
    Tensor loss = Sum(c.f(xs) * r);
    Inputs g = Grad({loss}, xs, {}, graph);
    for (const Tensor& t : g) (graph ? e.graph_grad : e.grad).push_back(t);
    if (graph && c.second_order) {
      Tensor gv = Tensor::Scalar(0.0, dtype);
      for (size_t i = 0; i < xs.size(); ++i)
        gv = gv + Sum(g[i] * Cast(v64[i], dtype));
      for (const Tensor& t : Grad({gv}, xs)) e.hvp.push_back(t);
    }
  }
  for (Inputs* list : {&e.grad, &e.graph_grad, &e.hvp})
    for (Tensor& t : *list) t = t.Detach();
  return e;
}

class OpDTypeTest : public ::testing::TestWithParam<OpCase> {};

// Values, gradients and H v of every op in float32 against float64.
TEST_P(OpDTypeTest, Float32MatchesFloat64) {
  const OpCase& c = GetParam();
  const double tol = Float32Tol(c.terms);
  for (uint64_t seed : {1, 2}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Rng rng(seed);
    const Inputs x = c.make(rng);
    Tensor y;
    {
      NoGradScope no_grad;
      y = c.f(x);
    }
    const Tensor r = Rounded(Tensor::Randn(y.shape(), rng));
    Inputs v;
    for (const Tensor& t : x)
      v.push_back(Rounded(Tensor::Randn(t.shape(), rng)));
    const Evaluation e32 = Evaluate(c, x, r, v, kFloat32);
    const Evaluation e64 = Evaluate(c, x, r, v, kFloat64);
    ExpectAgrees(e32.value, e64.value, tol, "value");
    for (size_t i = 0; i < e64.grad.size(); ++i) {
      const std::string in = " of input " + std::to_string(i);
      ExpectAgrees(e32.grad[i], e64.grad[i], tol, "gradient" + in);
      ExpectAgrees(e32.graph_grad[i], e64.graph_grad[i], tol,
                   "create_graph gradient" + in);
    }
    for (size_t i = 0; i < e64.hvp.size(); ++i)
      ExpectAgrees(e32.hvp[i], e64.hvp[i], tol,
                   "H v of input " + std::to_string(i));
  }
}

using OpDTypeDeathTest = OpDTypeTest;

// Inputs of two dtypes: the op dies naming itself and both dtypes.
TEST_P(OpDTypeDeathTest, MixedDTypesDieNamingTheOpAndBothDTypes) {
  const OpCase& c = GetParam();
  if (c.op.empty()) GTEST_SKIP() << "one input: nothing to mix";
  Rng rng(3);
  Inputs x = c.make(rng);
  ASSERT_GE(x.size(), 2u);
  x[1] = Cast(x[1], kFloat32).Detach();
  EXPECT_DEATH(c.f(x), c.op + ": mixed dtypes float64 .* and float32 ");
}

std::string CaseName(const ::testing::TestParamInfo<OpCase>& info) {
  return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Ops, OpDTypeTest, ::testing::ValuesIn(OpCases()),
                         CaseName);
INSTANTIATE_TEST_SUITE_P(Ops, OpDTypeDeathTest, ::testing::ValuesIn(OpCases()),
                         CaseName);

// ---- Cast ----

TEST(Cast, RoundsToNearestAndWidensExactly) {
  Rng rng(4);
  Tensor x = Tensor::Randn({50}, rng) * 3.0;
  Tensor x32 = Cast(x, kFloat32);
  ASSERT_EQ(x32.dtype(), kFloat32);
  ASSERT_EQ(x32.shape(), x.shape());
  const float* p = x32.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_EQ(p[i], static_cast<float>(x[i])) << i;
  Tensor back = Cast(x32, kFloat64);
  ASSERT_EQ(back.dtype(), kFloat64);
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_EQ(back.data<double>()[i], static_cast<double>(p[i])) << i;
  // To its own dtype: the tensor itself.
  EXPECT_EQ(Cast(x, kFloat64).raw_data(), x.raw_data());
  EXPECT_EQ(Cast(x32, kFloat32).raw_data(), x32.raw_data());
}

// L(x) = sum r (tanh(x32) in float32, widened)^2 for float64 x: through both
// casts. Central differences in float64 with h = 2^-7: their error is
// eps |term| / h (float32 rounding of the perturbed term) ~ 1.5e-5 plus
// h^2 |L'''| / 6 ~ 1e-5, inside Float32Tol().
TEST(Cast, GradientMatchesFiniteDifferencesInFloat64) {
  Rng rng(5);
  const Tensor r = Tensor::Randn({3, 4}, rng);
  const Tensor x = Tensor::Randn({3, 4}, rng);
  auto narrow_then_widen = [&](const Inputs& in) {
    Tensor t = Cast(Tanh(Cast(in[0], kFloat32)), kFloat64);
    return Sum(Square(t) * r);
  };
  auto both_casts_first = [&](const Inputs& in) {
    Tensor t = Cast(Cast(in[0], kFloat32), kFloat64);
    return Sum(Square(Tanh(t)) * r);
  };
  const double h = 1.0 / 128;
  EXPECT_LT(testing::GradientError(narrow_then_widen, {x}, h), Float32Tol());
  EXPECT_LT(testing::GradientError(both_casts_first, {x}, h), Float32Tol());
  // The float32 function must actually be float32: its values differ from
  // the float64 one's (else the casts were no-ops).
  NoGradScope no_grad;
  const Tensor t32 = Cast(Tanh(Cast(x, kFloat32)), kFloat64);
  const Tensor t64 = Tanh(x);
  double differ = 0;
  for (int64_t i = 0; i < x.numel(); ++i)
    differ = std::max(differ, std::fabs(t32[i] - t64[i]));
  EXPECT_GT(differ, 0.0);
}

// Chain rule, exactly: the gradient through Cast(x, to) is the gradient at
// the cast value converted back to x's dtype (float32 -> float64 widens
// exactly; float64 -> float32 rounds to nearest), first and second order.
TEST(Cast, ChainRuleConvertsTheAdjointBack) {
  Rng rng(6);
  const Tensor x0 = Rounded(Tensor::Randn({2, 5}, rng));
  const Tensor r0 = Rounded(Tensor::Randn({2, 5}, rng));
  const Tensor v0 = Rounded(Tensor::Randn({2, 5}, rng));
  auto h = [](const Tensor& t, const Tensor& r) {
    return Sum(Sin(t) * Exp(t * 0.5) * r);
  };
  for (DType from : {kFloat64, kFloat32}) {
    const DType to = from == kFloat64 ? kFloat32 : kFloat64;
    SCOPED_TRACE(std::string(DTypeName(from)) + " -> " + DTypeName(to));
    TapeScope scope;
    // Through the cast: x in `from`, h computed in `to`.
    Tensor x = Cast(x0, from).Detach().set_requires_grad(true);
    Tensor g = Grad({h(Cast(x, to), Cast(r0, to))}, {x}, {}, true)[0];
    ASSERT_EQ(g.dtype(), from);
    Tensor hv = Grad({Sum(g * Cast(v0, from))}, {x})[0];
    ASSERT_EQ(hv.dtype(), from);
    // Directly in `to` at the cast value.
    Tensor y = Cast(x0, to).Detach().set_requires_grad(true);
    Tensor gy = Grad({h(y, Cast(r0, to))}, {y}, {}, true)[0];
    Tensor hy = Grad({Sum(gy * Cast(v0, to))}, {y})[0];
    const Tensor want_g = Cast(gy, from), want_hv = Cast(hy, from);
    for (int64_t i = 0; i < x0.numel(); ++i) {
      EXPECT_EQ(g[i], want_g[i]) << i;
      EXPECT_EQ(hv[i], want_hv[i]) << i;
    }
  }
}

// A grad_output of the other dtype is the same programming error.
TEST(CastDeathTest, GradOutputOfTheOtherDTypeDies) {
  auto run = [] {
    Tensor x = Tensor::Ones({2}, kFloat32).set_requires_grad(true);
    Grad({x * 2.0}, {x}, {Tensor::Ones({2}, kFloat64)});
  };
  EXPECT_DEATH(run(), "grad_output is float64.*float32");
}

// ---- functional transforms ----

// f(x) = tanh(x W + b) in x's dtype: [N, 3] -> [N, 3].
struct Net {
  Tensor w, b;
  Tensor operator()(const Tensor& x) const {
    return Tanh(Affine(x, Cast(w, x.dtype()), Cast(b, x.dtype())));
  }
};

TEST(Functional, Float32MatchesFloat64) {
  Rng rng(7);
  const Net f{Rounded(Tensor::Randn({3, 3}, rng)),
              Rounded(Tensor::Randn({3}, rng))};
  const Tensor x = Rounded(Tensor::Randn({4, 3}, rng));
  const Tensor u = Rounded(Tensor::Randn({4, 3}, rng));
  const Tensor eps = Rounded(Tensor::Rademacher({4, 3}, rng));
  const Tensor xv = Rounded(Tensor::Randn({12}, rng));
  auto scalar = [&f](const Tensor& t) {
    return Sum(Square(f(Reshape(t, {4, 3}))));
  };
  using Fn = std::function<Tensor(DType)>;
  const std::vector<std::pair<std::string, Fn>> cases = {
      {"vjp", [&](DType d) { return Vjp(f, Cast(x, d), Cast(u, d)).second; }},
      {"vjp_value",
       [&](DType d) { return Vjp(f, Cast(x, d), Cast(u, d)).first; }},
      {"jvp", [&](DType d) { return Jvp(f, Cast(x, d), Cast(u, d)).second; }},
      {"jacobian", [&](DType d) { return Jacobian(f, Cast(x, d)); }},
      {"batch_jacobian", [&](DType d) { return BatchJacobian(f, Cast(x, d)); }},
      {"hessian_vector_product",
       [&](DType d) {
         return HessianVectorProduct(scalar, Cast(xv, d), Cast(xv, d) * 0.5);
       }},
      {"exact_trace", [&](DType d) { return ExactTrace(f, Cast(x, d)); }},
      {"hutchinson_trace",
       [&](DType d) { return HutchinsonTrace(f, Cast(x, d), Cast(eps, d)); }},
      {"grad_columns",
       [&](DType d) {
         Tensor xd = Cast(x, d).Detach().set_requires_grad(true);
         return GradColumns({f(xd)}, xd, 1, 2, {Cast(u, d)});
       }},
      // Differentiable results: the gradient of the exact trace.
      {"exact_trace_create_graph",
       [&](DType d) {
         Tensor xd = Cast(x, d).Detach().set_requires_grad(true);
         Tensor tr = ExactTrace(f, xd, /*create_graph=*/true);
         return Grad({Sum(tr)}, {xd})[0];
       }},
  };
  for (const auto& [name, run] : cases) {
    TapeScope scope;
    const Tensor a = run(kFloat32).Detach(), b = run(kFloat64).Detach();
    ExpectAgrees(a, b, Float32Tol(12), name);
  }
  for (DType d : {kFloat32, kFloat64})
    for (Noise n : {Noise::kGaussian, Noise::kRademacher})
      EXPECT_EQ(SampleNoise({2, 3}, n, rng, d).dtype(), d);
}

// Mixed dtypes inside a transform: the op that meets them dies naming both.
TEST(FunctionalDeathTest, MixedDTypesDie) {
  Rng rng(8);
  const Tensor w = Tensor::Randn({3, 3}, rng);  // float64
  auto f = [&w](const Tensor& x) { return MatMul(x, w); };
  EXPECT_DEATH(
      Vjp(f, Tensor::Ones({2, 3}, kFloat32), Tensor::Ones({2, 3}, kFloat32)),
      "matmul: mixed dtypes float32 .* and float64 ");
}

}  // namespace
}  // namespace flowtape

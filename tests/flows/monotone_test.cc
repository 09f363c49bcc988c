// The monotone elementwise maps (dsf.h, sos_polynomial.h, bernstein.h,
// umnn.h) and their numeric inverse (monotone_inverse.h), checked as kernels:
// increasing, inverse to each other, log-derivatives equal to finite
// differences of the value, parameter and input gradients of both directions
// equal to finite differences (float64), closed forms (the paper's formula
// evaluated directly, the polynomial integral, Clenshaw-Curtis exactness),
// and a failed inverse reported in the status. The flows built on them run
// through the harness in monotone_flows_test.
#include <cmath>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/elementwise.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace flowtape::flows {
namespace {

using K = ElementwiseKind;

ElementwiseOptions Kind(K kind) {
  ElementwiseOptions o(kind);
  o.dsf.units = 4;
  o.sos.polynomials = 2;
  o.sos.degree = 2;
  o.sos.scale = 3.0;
  o.bernstein.degree = 6;
  o.bernstein.bound = 3.0;
  o.umnn.units = 3;
  return o;
}

struct Named {
  std::string name;
  K kind;
};
void PrintTo(const Named& n, std::ostream* os) { *os << n.name; }
const std::vector<Named>& Kinds() {
  static const auto* k = new std::vector<Named>{{"dsf", K::kDsf},
                                                {"sos", K::kSos},
                                                {"bernstein", K::kBernstein},
                                                {"umnn", K::kUmnn}};
  return *k;
}

// n grid values on [lo, hi], one per row, with the same random parameters
// (scale `scale`) in every row.
struct Grid {
  Tensor v, params;
};
Grid MakeGrid(const ElementwiseOptions& o, double lo, double hi, int64_t n,
              Rng& rng, double scale) {
  const int64_t p = o.params_per_entry();
  Tensor one = Tensor::Randn({p}, rng) * scale;
  Grid g{Tensor::Zeros({n, 1}), Tensor::Zeros({n, 1, p})};
  for (int64_t i = 0; i < n; ++i) {
    g.v.mutable_data<double>()[i] = lo + (hi - lo) * i / (n - 1);
    for (int64_t j = 0; j < p; ++j)
      g.params.mutable_data<double>()[i * p + j] = one[j];
  }
  return g;
}

class MonotoneKernel : public ::testing::TestWithParam<Named> {};

TEST_P(MonotoneKernel, IncreasingAndInverse) {
  const ElementwiseOptions o = Kind(GetParam().kind);
  for (uint64_t seed : {1, 2, 3}) {
    Rng rng(seed);
    Grid g = MakeGrid(o, -6, 6, 601, rng, 0.8);
    ElementwiseResult f = ApplyElementwise(o, g.v, g.params, false);
    ElementwiseResult b = ApplyElementwise(o, f.value, g.params, true);
    ASSERT_TRUE(b.status.ok()) << b.status;
    for (int64_t i = 0; i < 601; ++i) {
      if (i > 0) {
        EXPECT_GT(f.value[i], f.value[i - 1]) << i;
      }
      EXPECT_NEAR(b.value[i], g.v[i], 1e-12 * (1 + std::fabs(g.v[i]))) << i;
      EXPECT_NEAR(b.logabsdet[i], -f.logabsdet[i], 1e-10) << i;
    }
  }
}

// log f' against central differences of f (UMNN: its log-derivative is the
// integrand, which the quadrature's derivative matches to ~1e-10).
TEST_P(MonotoneKernel, LogDerivativeMatchesFiniteDifferences) {
  const ElementwiseOptions o = Kind(GetParam().kind);
  Rng rng(4);
  Grid g = MakeGrid(o, -5.01, 5.01, 301, rng, 0.8);
  const double h = 1e-5;
  ElementwiseResult f = ApplyElementwise(o, g.v, g.params, false);
  ElementwiseResult fp = ApplyElementwise(o, g.v + h, g.params, false);
  ElementwiseResult fm = ApplyElementwise(o, g.v - h, g.params, false);
  for (int64_t i = 0; i < 301; ++i) {
    const double fd = (fp.value[i] - fm.value[i]) / (2 * h);
    EXPECT_NEAR(std::exp(f.logabsdet[i]), fd, 1e-7 * std::max(1.0, fd)) << i;
  }
}

// Gradients w.r.t. the input and every parameter, forward and inverse, of a
// loss that weighs the value and the log-det: central differences (float64).
TEST_P(MonotoneKernel, GradientsMatchFiniteDifferences) {
  const ElementwiseOptions o = Kind(GetParam().kind);
  Rng rng(5);
  const int64_t p = o.params_per_entry();
  Tensor v = Tensor::Randn({3, 2}, rng) * 2.0;
  Tensor params = Tensor::Randn({3, 2, p}, rng) * 0.7;
  Tensor r = Tensor::Randn({3, 2}, rng);
  for (bool inverse : {false, true}) {
    auto loss = [&](const std::vector<Tensor>& in) {
      ElementwiseResult e = ApplyElementwise(o, in[0], in[1], inverse);
      return Sum(e.value * r) + Sum(e.logabsdet);
    };
    EXPECT_LT(testing::GradientError(loss, {v, params}), 1e-6)
        << "inverse " << inverse;
    EXPECT_LT(testing::HessianVectorError(loss, {v, params}), 1e-5)
        << "inverse " << inverse;
  }
}

TEST_P(MonotoneKernel, Float32AgreesWithFloat64) {
  const ElementwiseOptions o = Kind(GetParam().kind);
  Rng rng(6);
  Tensor v = Cast(Cast(Tensor::Randn({5, 3}, rng) * 2.0, kFloat32), kFloat64);
  Tensor params = Cast(
      Cast(Tensor::Randn({5, 3, o.params_per_entry()}, rng) * 0.7, kFloat32),
      kFloat64);
  for (bool inverse : {false, true}) {
    ElementwiseResult a = ApplyElementwise(o, v, params, inverse);
    ElementwiseResult b =
        ApplyElementwise(o, Cast(v, kFloat32), Cast(params, kFloat32), inverse);
    ASSERT_TRUE(b.status.ok()) << b.status;
    ASSERT_EQ(b.value.dtype(), kFloat32);
    for (int64_t i = 0; i < 15; ++i) {
      EXPECT_NEAR(b.value[i], a.value[i], 2e-5 * (1 + std::fabs(a.value[i])));
      EXPECT_NEAR(b.logabsdet[i], a.logabsdet[i], 2e-5);
    }
  }
}

// A non-finite input or parameter fails its own entries only, with a status
// naming the map and the entry; the others are inverted as usual.
TEST_P(MonotoneKernel, FailedInverseIsReported) {
  const ElementwiseOptions o = Kind(GetParam().kind);
  Rng rng(7);
  const int64_t p = o.params_per_entry();
  Tensor params = Tensor::Randn({2, 2, p}, rng) * 0.5;
  Tensor v = Tensor::Randn({2, 2}, rng);
  Tensor u = ApplyElementwise(o, v, params, false).value.Detach();
  u.mutable_data<double>()[1] = std::nan("");
  params.mutable_data<double>()[3 * p] = INFINITY;  // entry (1, 1)
  ElementwiseResult b = ApplyElementwise(o, u, params, true);
  ASSERT_FALSE(b.status.ok());
  EXPECT_EQ(b.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(
      b.status.message().find(o.name() == "sos" ? "sos_polynomial" : o.name()),
      std::string::npos)
      << b.status;
  EXPECT_NE(b.status.message().find("entry (0, 1)"), std::string::npos)
      << b.status;
  for (int64_t i : {1, 3}) {
    EXPECT_TRUE(std::isnan(b.value[i])) << i;
    EXPECT_TRUE(std::isnan(b.logabsdet[i])) << i;
  }
  for (int64_t i : {0, 2}) EXPECT_NEAR(b.value[i], v[i], 1e-12) << i;
}

TEST_P(MonotoneKernel, OptionsAreValidated) {
  ElementwiseOptions o = Kind(GetParam().kind);
  EXPECT_TRUE(o.Validate().ok());
  o.dsf.units = 0;
  o.sos.polynomials = 0;
  o.bernstein.degree = 3;
  o.umnn.intervals = 7;
  const absl::Status s = o.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
}

INSTANTIATE_TEST_SUITE_P(Kinds, MonotoneKernel, ::testing::ValuesIn(Kinds()),
                         [](const ::testing::TestParamInfo<Named>& i) {
                           return i.param.name;
                         });

// Huang et al.'s formula evaluated directly (moderate v, where the naive
// logit and derivative are accurate).
TEST(Dsf, MatchesTheDirectFormula) {
  DsfOptions o;
  o.units = 5;
  Rng rng(8);
  Tensor params = Tensor::Randn({1, 1, 15}, rng);
  for (double v : {-3.0, -0.7, 0.0, 0.4, 2.5}) {
    MonotoneEval e = DsfEval(Tensor::Full({1, 1}, v), params, o);
    double s = 0, ds = 0, zw = 0;
    std::vector<double> w(5);
    for (int j = 0; j < 5; ++j) zw += w[j] = std::exp(params[10 + j]);
    for (int j = 0; j < 5; ++j) {
      const double a = std::log1p(std::exp(params[j] + std::log(M_E - 1)));
      const double b = params[5 + j] - 2.0 + j;  // offsets -2, -1, 0, 1, 2
      const double sg = 1 / (1 + std::exp(-(a * v + b)));
      s += w[j] / zw * sg;
      ds += w[j] / zw * a * sg * (1 - sg);
    }
    EXPECT_NEAR(e.value[0], std::log(s / (1 - s)), 1e-12) << v;
    EXPECT_NEAR(e.logderiv[0], std::log(ds / (s * (1 - s))), 1e-12) << v;
  }
}

// Far in the tails the log-space evaluation stays finite and exact where
// the naive sum rounds to 0 or 1.
TEST(Dsf, TailsAreFiniteAndAsymptoticallyLinear) {
  DsfOptions o;
  o.units = 3;
  Tensor params = Tensor::Zeros({1, 2, 9});
  Tensor v = Tensor::FromVector({1, 2}, {-200, 300});
  MonotoneEval e = DsfEval(v, params, o);
  // theta = 0: a = 1, w uniform, b = (-2, 0, 2); far out u = v + log mean e^b
  // on the left and v - log mean e^-b on the right, slope 1.
  const double m = std::log((std::exp(-2.0) + 1 + std::exp(2.0)) / 3);
  EXPECT_NEAR(e.value[0], -200 + m, 1e-9);
  EXPECT_NEAR(e.value[1], 300 - m, 1e-9);
  EXPECT_NEAR(e.logderiv[0], 0, 1e-9);
  EXPECT_NEAR(e.logderiv[1], 0, 1e-9);
}

// The closed-form integral against composite Simpson quadrature of g.
TEST(Sos, IntegralIsThePolynomialIntegral) {
  SosOptions o;
  o.polynomials = 3;
  o.degree = 3;
  o.scale = 2.0;
  o.linear_tails = false;  // the bare polynomial, also beyond +-B
  Rng rng(9);
  Tensor params = Tensor::Randn({1, 1, o.num_params()}, rng) * 0.5;
  const double c = params[o.num_params() - 1];
  for (double v : {-2.5, -0.3, 1.7, 3.0}) {
    const int m = 2000;  // Simpson is exact for cubics; g has degree 6
    double sum = 0;
    for (int i = 0; i <= m; ++i) {
      const double t = v * i / m;
      const double g =
          std::exp(SosEval(Tensor::Full({1, 1}, t), params, o).logderiv[0]);
      sum += g * (i == 0 || i == m ? 1 : (i % 2 == 1 ? 4 : 2));
    }
    const double want = c + sum * v / (3 * m);
    EXPECT_NEAR(SosEval(Tensor::Full({1, 1}, v), params, o).value[0], want,
                1e-10 * (1 + std::fabs(want)))
        << v;
  }
}

TEST(Sos, ThetaZeroIsTheDocumentedCubic) {
  SosOptions o;
  o.polynomials = 3;  // offsets -1/2, 0, 1/2: mean(o^2) = 1/6
  o.degree = 2;
  o.scale = 2.0;
  o.linear_tails = false;
  Tensor params = Tensor::Zeros({1, 1, o.num_params()});
  for (double v : {-3.0, 0.5, 2.0}) {
    MonotoneEval e = SosEval(Tensor::Full({1, 1}, v), params, o);
    EXPECT_NEAR(e.value[0], v + v * v * v / (6.0 * 3 * 4), 1e-13);
    EXPECT_NEAR(e.logderiv[0], std::log(1 + v * v / (6.0 * 4)), 1e-13);
  }
}

// Inside [-B, B] the tailed map is the bare polynomial, bit for bit; beyond,
// the tangent at the bound: u(v) = u(+-B) + g(+-B) (v -+ B), log g(+-B).
TEST(Sos, LinearTailsAreTheEndTangents) {
  SosOptions bare;
  bare.polynomials = 3;
  bare.degree = 3;
  bare.scale = 2.0;
  bare.linear_tails = false;
  SosOptions tailed = bare;
  tailed.linear_tails = true;
  Rng rng(11);
  Tensor params = Tensor::Randn({1, 1, bare.num_params()}, rng) * 0.5;
  auto at = [&](const SosOptions& o, double v) {
    return SosEval(Tensor::Full({1, 1}, v), params, o);
  };
  for (double v : {-2.0, -1.3, 0.0, 0.4, 1.999, 2.0}) {
    EXPECT_EQ(at(tailed, v).value[0], at(bare, v).value[0]) << v;
    EXPECT_EQ(at(tailed, v).logderiv[0], at(bare, v).logderiv[0]) << v;
  }
  for (double edge : {-2.0, 2.0}) {
    const MonotoneEval end = at(bare, edge);
    for (double d : {1e-3, 0.5, 3.0, 1e4}) {
      const double v = edge + std::copysign(d, edge);
      const MonotoneEval e = at(tailed, v);
      const double want = end.value[0] + std::exp(end.logderiv[0]) * (v - edge);
      EXPECT_NEAR(e.value[0], want, 1e-12 * (1 + std::fabs(want))) << v;
      EXPECT_NEAR(e.logderiv[0], end.logderiv[0], 1e-14) << v;
      // The bare polynomial has left the tangent (it is not affine there).
      if (d >= 0.5) {
        EXPECT_GT(std::fabs(at(bare, v).value[0] - want),
                  1e-3 * (1 + std::fabs(want)))
            << v;
      }
    }
  }
}

// Extreme but finite inputs in both dtypes: the value, log-det and inverse
// stay finite (the bare degree-7 polynomial overflows: (v / B)^7 exceeds
// 3.4e38 from |v| ~ 1e6 in float32 and 1.8e308 from |v| ~ 1e44 in float64),
// and the inverse recovers the input.
TEST(Sos, ExtremeInputsStayFinite) {
  SosOptions o;  // R = 3, L = 3, B = 4: zoo's sospf
  Rng rng(12);
  for (DType dt : {kFloat32, kFloat64}) {
    const double big = dt == kFloat32 ? 1e30 : 1e300;
    const std::vector<double> vs = {-big, -1e7, -1e6, -40, 40, 1e6, 1e7, big};
    const int64_t n = static_cast<int64_t>(vs.size());
    Tensor v = Tensor::FromVector({n, 1}, vs, dt);
    Tensor params = Cast(Tensor::Randn({n, 1, o.num_params()}, rng) * 0.5, dt);
    MonotoneResult f = SosPolynomial(v, params, o, false);
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_TRUE(std::isfinite(f.value[i])) << DTypeName(dt) << " " << vs[i];
      EXPECT_TRUE(std::isfinite(f.logabsdet[i]))
          << DTypeName(dt) << " " << vs[i];
      EXPECT_GT(f.value[i] * vs[i], 0) << DTypeName(dt) << " " << vs[i];
    }
    // The numeric inverse brackets |v| < 2^128: invert from at most 1e30.
    std::vector<double> ws = vs;
    ws.front() = -1e30;
    ws.back() = 1e30;
    Tensor w = Tensor::FromVector({n, 1}, ws, dt);
    MonotoneResult g = SosPolynomial(w, params, o, false);
    MonotoneResult b = SosPolynomial(g.value, params, o, true);
    ASSERT_TRUE(b.status.ok()) << b.status;
    const double tol = dt == kFloat32 ? 1e-5 : 1e-12;
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(b.value[i], ws[i], tol * std::fabs(ws[i]))
          << DTypeName(dt) << " " << ws[i];
      EXPECT_NEAR(b.logabsdet[i], -g.logabsdet[i], tol * 10)
          << DTypeName(dt) << " " << ws[i];
    }
  }
}

// theta = 0 is the identity; the tails are linear with the end slopes, and
// value, slope and curvature are continuous across +-B.
TEST(Bernstein, IdentityAtZeroAndSmoothAcrossTheBounds) {
  BernsteinOptions o;
  o.degree = 7;
  o.bound = 2.0;
  Tensor zero = Tensor::Zeros({3, 1, 6});
  Tensor v = Tensor::FromVector({3, 1}, {-3.0, 0.3, 2.5});
  MonotoneEval id = BernsteinEval(v, zero, o);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(id.value[i], v[i], 1e-13);
    EXPECT_NEAR(id.logderiv[i], 0, 1e-13);
  }
  Rng rng(10);
  Tensor params = Tensor::Randn({1, 1, 6}, rng);
  auto at = [&](double x) {
    return BernsteinEval(Tensor::Full({1, 1}, x), params, o);
  };
  const double h = 1e-4;
  for (double edge : {-2.0, 2.0}) {
    MonotoneEval in = at(edge - std::copysign(1e-12, edge));
    MonotoneEval out = at(edge + std::copysign(1e-12, edge));
    EXPECT_NEAR(in.value[0], out.value[0], 1e-10) << edge;
    EXPECT_NEAR(in.logderiv[0], out.logderiv[0], 1e-10) << edge;
    // One-sided second differences of log f' on each side: both ~0.
    const double s = std::copysign(1.0, edge);
    for (double side : {-s, s}) {
      const double d1 = at(edge + side * h).logderiv[0] - in.logderiv[0];
      EXPECT_NEAR(d1 / h, 0, 1e-3) << edge << " " << side;
    }
    // Linear tail: f(edge + 1) = f(edge) + slope.
    MonotoneEval far = at(edge + s);
    EXPECT_NEAR(far.value[0], out.value[0] + s * std::exp(out.logderiv[0]),
                1e-10);
  }
}

TEST(Umnn, ClenshawCurtisIsExactForPolynomials) {
  for (int64_t n : {2, 8, 48}) {
    Quadrature q = ClenshawCurtis(n);
    for (int64_t deg = 0; deg <= n; ++deg) {
      double sum = 0;
      for (int64_t i = 0; i <= n; ++i)
        sum += q.weights[i] * std::pow(q.nodes[i], deg);
      const double want = deg % 2 == 1 ? 0 : 2.0 / (deg + 1);
      EXPECT_NEAR(sum, want, 1e-14) << n << " " << deg;
    }
  }
}

// theta = 0 is the identity; a constant integrand (c = 0) integrates
// exactly: u = b + softplus(d + log(e - 1)) v.
TEST(Umnn, ConstantIntegrandsIntegrateExactly) {
  UmnnOptions o;
  o.units = 2;
  Tensor params = Tensor::Zeros({2, 1, 8});
  params.mutable_data<double>()[8 + 6] = 0.7;   // d
  params.mutable_data<double>()[8 + 7] = -1.5;  // b
  params.mutable_data<double>()[8 + 0] = 3.0;   // slope (unused: c = 0)
  Tensor v = Tensor::FromVector({2, 1}, {1.3, -2.2});
  MonotoneEval e = UmnnEval(v, params, o);
  EXPECT_NEAR(e.value[0], 1.3, 1e-14);
  EXPECT_NEAR(e.logderiv[0], 0, 1e-14);
  const double g = std::log1p(std::exp(0.7 + std::log(M_E - 1)));
  EXPECT_NEAR(e.value[1], -1.5 - 2.2 * g, 1e-13);
  EXPECT_NEAR(e.logderiv[1], std::log(g), 1e-14);
}

// The quadrature converges geometrically: 48 intervals reach the integral
// of a 256-interval rule to 1e-12 for a random integrand on [0, 5].
TEST(Umnn, QuadratureConverges) {
  UmnnOptions coarse, fine;
  fine.intervals = 256;
  Rng rng(11);
  Tensor params = Tensor::Randn({1, 1, coarse.num_params()}, rng) * 0.8;
  Tensor v = Tensor::Full({1, 1}, 5.0);
  const double a = UmnnEval(v, params, coarse).value[0];
  const double b = UmnnEval(v, params, fine).value[0];
  EXPECT_NEAR(a, b, 1e-12 * (1 + std::fabs(b)));
  coarse.intervals = 8;
  EXPECT_GT(std::fabs(UmnnEval(v, params, coarse).value[0] - b), 1e-8);
}

}  // namespace
}  // namespace flowtape::flows

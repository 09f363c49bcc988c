// Rational-quadratic spline kernel (rq_spline.h) checked directly, and the
// coupling / autoregressive spline flows checked as bijections.
#include "flows/spline.h"

#include <cmath>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/flows/bijection_checks.h"
#include "tests/flows/harness.h"
#include "tests/gradcheck.h"

namespace flowtape::flows {
namespace {

RqSplineOptions Opts(int64_t bins) {
  RqSplineOptions o;
  o.bins = bins;
  o.bound = 3.0;
  return o;
}

// A grid of x values (one per row) with the same random spline on each row.
struct Grid {
  Tensor x, params;
};
Grid MakeGrid(const RqSplineOptions& o, double lo, double hi, int64_t n,
              Rng& rng, double scale = 1.5) {
  Tensor p1 = Tensor::Randn({1, 1, o.num_params()}, rng) * scale;
  Grid g{Tensor::Zeros({n, 1}), Tensor::Zeros({n, 1, o.num_params()})};
  for (int64_t i = 0; i < n; ++i) {
    g.x.mutable_data()[i] = lo + (hi - lo) * i / (n - 1);
    for (int64_t j = 0; j < o.num_params(); ++j)
      g.params.mutable_data()[i * o.num_params() + j] = p1[j];
  }
  return g;
}

TEST(RqSpline, MonotoneAndInverse) {
  for (int64_t bins : {2, 3, 5, 10}) {
    Rng rng(bins);
    RqSplineOptions o = Opts(bins);
    Grid g = MakeGrid(o, -4.5, 4.5, 2001, rng);
    RqSplineResult f = RqSpline(g.x, g.params, o);
    RqSplineResult b = RqSpline(f.value, g.params, o, /*inverse=*/true);
    for (int64_t i = 0; i < 2001; ++i) {
      if (i > 0) {
        EXPECT_GT(f.value[i], f.value[i - 1]) << i;
      }
      EXPECT_NEAR(b.value[i], g.x[i], 1e-10);
      EXPECT_NEAR(b.logabsdet[i], -f.logabsdet[i], 1e-10);
    }
  }
}

TEST(RqSpline, DerivativeMatchesFiniteDifferences) {
  Rng rng(4);
  RqSplineOptions o = Opts(6);
  Grid g = MakeGrid(o, -3.3, 3.3, 333, rng);
  const double h = 1e-6;
  RqSplineResult f = RqSpline(g.x, g.params, o);
  RqSplineResult fp = RqSpline(g.x + h, g.params, o);
  RqSplineResult fm = RqSpline(g.x - h, g.params, o);
  RqKnots kn = RqSplineKnots(g.params, o);
  for (int64_t i = 0; i < 333; ++i) {
    bool near_knot = false;
    for (int64_t k = 0; k <= 6; ++k)
      near_knot |= std::fabs(g.x[i] - kn.x[k]) < 10 * h;
    if (near_knot) continue;
    const double fd = (fp.value[i] - fm.value[i]) / (2 * h);
    EXPECT_NEAR(std::exp(f.logabsdet[i]), fd, 1e-7 * std::max(1.0, fd)) << i;
  }
}

TEST(RqSpline, KnotsAreInterpolatedContinuouslyWithTheirDerivatives) {
  Rng rng(8);
  RqSplineOptions o = Opts(7);
  Tensor params = Tensor::Randn({1, 1, o.num_params()}, rng) * 2.0;
  RqKnots kn = RqSplineKnots(params, o);
  EXPECT_DOUBLE_EQ(kn.x[0], -3.0);
  EXPECT_DOUBLE_EQ(kn.x[7], 3.0);
  EXPECT_DOUBLE_EQ(kn.y[0], -3.0);
  EXPECT_DOUBLE_EQ(kn.y[7], 3.0);
  // Close enough that the slope's own change, |f''| eps, stays far below
  // the 1e-6 tolerance even for steep random bins.
  const double eps = 1e-12;
  for (int64_t k = 0; k <= 7; ++k) {
    EXPECT_GT(kn.derivative[k], 0.0);
    if (k > 0) {
      EXPECT_GT(kn.x[k], kn.x[k - 1]);
      EXPECT_GT(kn.y[k], kn.y[k - 1]);
    }
    for (double side : {-1.0, 1.0}) {
      Tensor x = Tensor::Full({1, 1}, kn.x[k] + side * eps);
      RqSplineResult r = RqSpline(x, params, o);
      // Both neighbouring bins reach the knot's value and slope.
      EXPECT_NEAR(r.value[0], kn.y[k], 1e-8);
      EXPECT_NEAR(std::exp(r.logabsdet[0]), kn.derivative[k], 1e-6);
    }
  }
}

TEST(RqSpline, TailsAreIdentityAndZeroParamsAreIdentity) {
  Rng rng(2);
  RqSplineOptions o = Opts(4);
  Tensor x = Tensor::FromVector({4, 1}, {-7.0, -3.0, 3.0, 50.0});
  Tensor params = Tensor::Randn({4, 1, o.num_params()}, rng);
  for (bool inv : {false, true}) {
    RqSplineResult r = RqSpline(x, params, o, inv);
    for (int64_t i = 0; i < 4; ++i) {
      EXPECT_EQ(r.value[i], x[i]);
      EXPECT_EQ(r.logabsdet[i], 0.0);
    }
  }
  Grid g = MakeGrid(o, -2.9, 2.9, 50, rng, 0.0);
  RqSplineResult r = RqSpline(g.x, g.params, o);
  for (int64_t i = 0; i < 50; ++i) {
    EXPECT_NEAR(r.value[i], g.x[i], 1e-14);
    EXPECT_NEAR(r.logabsdet[i], 0.0, 1e-14);
  }
}

TEST(RqSpline, ValidatesOptions) {
  EXPECT_TRUE(ValidateRqSplineOptions(Opts(8)).ok());
  RqSplineOptions o = Opts(8);
  o.bound = 0;
  EXPECT_FALSE(ValidateRqSplineOptions(o).ok());
  o = Opts(2000);  // 2000 bins of at least 1e-3 do not fit
  EXPECT_FALSE(ValidateRqSplineOptions(o).ok());
  // Negative minima give decreasing knots (a NaN log-det); zero is fine.
  auto bad = [](RqSplineOptions o) {
    absl::Status s = ValidateRqSplineOptions(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  };
  o = Opts(8);
  o.min_bin_width = -0.05;
  bad(o);
  o = Opts(8);
  o.min_bin_height = -1e-3;
  bad(o);
  o = Opts(8);
  o.min_bin_width = o.min_bin_height = 0;
  EXPECT_TRUE(ValidateRqSplineOptions(o).ok());
  bad(Opts(1));  // one bin is the identity whatever its parameters
  bad(Opts(0));
  for (double b : {-1.0, double{INFINITY}, double{NAN}}) {
    o = Opts(8);
    o.bound = b;
    bad(o);
  }
  for (double m : {0.0, 1.0, double{NAN}}) {
    o = Opts(8);
    o.min_derivative = m;
    bad(o);
  }
  o = Opts(8);
  o.min_bin_width = NAN;
  bad(o);
}

MadeOptions Made4(int64_t context) {
  MadeOptions m;
  m.dim = 4;
  m.hidden = {16, 16};
  m.context_dim = context;
  m.activation = nn::Activation::kTanh;
  return m;
}

TEST(SplineFlows, CreateValidatesOptions) {
  Rng rng(3);
  SplineCouplingOptions c;
  c.dim = 4;
  c.hidden = {8};
  c.spline = Opts(4);
  auto ok = SplineCoupling::Create(c, rng);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)->Forward(Tensor::Zeros({2, 4})).value.shape(), Shape({2, 4}));
  auto bad = [](const absl::Status& s, const std::string& needle) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s;
  };
  SplineCouplingOptions b = c;
  b.spline.min_bin_width = -0.1;
  bad(SplineCoupling::Create(b, rng).status(), "min width -0.1");
  b = c;
  b.dim = 1;
  bad(SplineCoupling::Create(b, rng).status(), "got dim 1");
  b = c;
  b.parity = 2;
  bad(SplineCoupling::Create(b, rng).status(), "parity 2");
  b = c;
  b.hidden = {8, 0};
  bad(SplineCoupling::Create(b, rng).status(), "hidden [8, 0]");

  MadeOptions m = Made4(0);
  auto maf = SplineAutoregressive::Create(m, Opts(4), rng, true);
  ASSERT_TRUE(maf.ok()) << maf.status();
  EXPECT_EQ((*maf)->name(), "spline_iaf");
  RqSplineOptions s = Opts(4);
  s.min_bin_height = -0.2;
  bad(SplineAutoregressive::Create(m, s, rng).status(), "min height -0.2");
  bad(SplineAutoregressive::Create(m, Opts(1), rng).status(), "bins >= 2");
  m.order = {1, 2, 2, 4};
  bad(SplineAutoregressive::Create(m, Opts(4), rng).status(),
      "order [1, 2, 2, 4] is not a permutation of 1..4");
  m = Made4(0);
  m.hidden = {};
  bad(SplineAutoregressive::Create(m, Opts(4), rng).status(),
      "at least one hidden layer");
}

TEST(RqSpline, GradientsMatchFiniteDifferences) {
  Rng rng(6);
  RqSplineOptions o = Opts(5);
  Tensor x = Tensor::Randn({3, 2}, rng) * 2.0;
  Tensor params = Tensor::Randn({3, 2, o.num_params()}, rng);
  for (bool inv : {false, true}) {
    auto f = [&](const std::vector<Tensor>& in) {
      RqSplineResult r = RqSpline(in[0], in[1], o, inv);
      return Sum(Square(r.value)) + 3.0 * Sum(r.logabsdet);
    };
    EXPECT_LT(testing::GradientError(f, {x, params}), 1e-6);
  }
}

TEST(SplineFlows, CouplingAndAutoregressiveAreBijections) {
  Rng rng(12);
  RqSplineOptions s = Opts(5);
  SplineCouplingOptions c;
  c.dim = 5;
  c.hidden = {16};
  c.context_dim = 2;
  c.spline = s;
  std::vector<std::shared_ptr<Flow>> flows;
  for (int parity : {0, 1}) {
    c.parity = parity;
    flows.push_back(std::make_shared<SplineCoupling>(c, rng));
  }
  for (bool inverted : {false, true}) {
    MadeOptions m = Made4(2);
    m.dim = 5;
    flows.push_back(
        std::make_shared<SplineAutoregressive>(m, s, rng, inverted));
  }
  Tensor x = Tensor::Randn({4, 5}, rng) * 2.0;
  Tensor ctx = Tensor::Randn({4, 2}, rng);
  for (auto& f : flows) {
    testing::Perturb(*f, 0.3, rng);
    SCOPED_TRACE(f->name());
    EXPECT_LT(testing::RoundTripError(*f, x, ctx), 1e-10);
    EXPECT_LT(testing::LogdetError(*f, x, ctx), 1e-9);
    EXPECT_LT(testing::AntisymmetryError(*f, x, ctx), 1e-10);
    EXPECT_LT(testing::ParamGradError(*f, x, ctx), 1e-6);
  }
}

std::shared_ptr<Flow> Coupling(int64_t dim, int64_t context, int parity,
                               Rng& r) {
  SplineCouplingOptions c;
  c.dim = dim;
  c.hidden = {8};
  c.context_dim = context;
  c.parity = parity;
  c.spline = Opts(4);
  return std::make_shared<SplineCoupling>(c, r);
}
std::shared_ptr<Flow> Autoregressive(int64_t dim, int64_t context,
                                     bool inverted, Rng& r) {
  MadeOptions m = Made4(context);
  m.dim = dim;
  m.hidden = {8, 8};
  return std::make_shared<SplineAutoregressive>(m, Opts(4), r, inverted);
}

// Perturb(0.5): splines far from the identity.
FLOWTAPE_FLOW_CASES(
    Spline,
    testing::FlowCase("spline_coupling_2d",
                      [](Rng& r) { return Coupling(2, 0, 0, r); }, {2})
        .Perturb(0.5)
        .Quadrature(7, 1000),  // the density has kinks at the knots
    testing::FlowCase(
        "spline_coupling_5d_cond", [](Rng& r) { return Coupling(5, 2, 1, r); },
        {5}, 2)
        .Perturb(0.5)
        .InputScale(2.0),
    testing::FlowCase("spline_maf_2d",
                      [](Rng& r) { return Autoregressive(2, 0, false, r); },
                      {2})
        .Perturb(0.5)
        .Quadrature(7, 1000),  // the density has kinks at the knots
    testing::FlowCase(
        "spline_maf_4d_cond",
        [](Rng& r) { return Autoregressive(4, 3, false, r); }, {4}, 3)
        .Perturb(0.5)
        .InputScale(2.0),
    testing::FlowCase(
        "spline_iaf_3d_cond",
        [](Rng& r) { return Autoregressive(3, 2, true, r); }, {3}, 2)
        .Perturb(0.5));

}  // namespace
}  // namespace flowtape::flows

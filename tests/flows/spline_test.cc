// The rational-quadratic spline kernel (rq_spline.h) checked directly; the
// spline couplings and autoregressive splines run through the harness in
// coupling_test and autoregressive_test.
#include <cmath>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/rq_spline.h"
#include "gtest/gtest.h"
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
    g.x.mutable_data<double>()[i] = lo + (hi - lo) * i / (n - 1);
    for (int64_t j = 0; j < o.num_params(); ++j)
      g.params.mutable_data<double>()[i * o.num_params() + j] = p1[j];
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
  EXPECT_TRUE(Opts(8).Validate().ok());
  RqSplineOptions o = Opts(8);
  o.bound = 0;
  EXPECT_FALSE(o.Validate().ok());
  o = Opts(2000);  // 2000 bins of at least 1e-3 do not fit
  EXPECT_FALSE(o.Validate().ok());
  // Negative minima give decreasing knots (a NaN log-det); zero is fine.
  auto bad = [](RqSplineOptions o) {
    absl::Status s = o.Validate();
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
  EXPECT_TRUE(o.Validate().ok());
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

TEST(RqSpline, Float32MatchesFloat64) {
  // The same (rounded) inputs and parameters in both dtypes: the float32
  // values and log-derivatives agree to float32 rounding, both directions.
  Rng rng(9);
  RqSplineOptions o = Opts(6);
  Tensor x = Cast(Cast(Tensor::Randn({50, 3}, rng) * 2.0, kFloat32), kFloat64);
  Tensor p = Cast(Cast(Tensor::Randn({50, 3, o.num_params()}, rng), kFloat32),
                  kFloat64);
  for (bool inv : {false, true}) {
    RqSplineResult a = RqSpline(x, p, o, inv);
    RqSplineResult b = RqSpline(Cast(x, kFloat32), Cast(p, kFloat32), o, inv);
    ASSERT_EQ(b.value.dtype(), kFloat32);
    for (int64_t i = 0; i < x.numel(); ++i) {
      EXPECT_NEAR(b.value[i], a.value[i], 2e-5 * (1 + std::fabs(a.value[i])));
      EXPECT_NEAR(b.logabsdet[i], a.logabsdet[i], 2e-5);
    }
  }
}

}  // namespace
}  // namespace flowtape::flows

// Circle maps (circle_maps.h): every map is a bijection of [0, 2 pi) (round
// trips to 1e-12, monotone with winding number one), log-dets equal finite
// differences, the pushed-forward uniform density integrates to 1, the
// Moebius lift equals arg h_w(e^{i theta}) - arg h_w(1) computed in complex
// numbers, gradients w.r.t. angles and parameters (both directions) equal
// finite differences, float32 agrees with float64, and a failed bisection
// returns a Status.
#include "manifolds/circle_maps.h"

#include <cmath>
#include <complex>
#include <limits>
#include <string>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "manifolds/angle.h"
#include "tests/gradcheck.h"

namespace flowtape::manifolds {
namespace {

constexpr double kPi = kTwoPi / 2;

// The signed circular difference a - b in [-pi, pi).
double CircDiff(double a, double b) {
  double d = std::fmod(a - b + kPi, kTwoPi);
  if (d < 0) d += kTwoPi;
  return d - kPi;
}

struct Case {
  std::string name;
  CircleMapOptions options;
  double scale;  // parameter noise
};

std::vector<Case> Cases() {
  CircleMapOptions mobius1;
  mobius1.kind = CircleMapKind::kMobius;
  CircleMapOptions mobius4 = mobius1;
  mobius4.components = 4;
  CircleMapOptions spline;
  spline.bins = 8;
  return {{"mobius", mobius1, 1.0},
          {"mobius_mixture", mobius4, 1.0},
          {"circle_spline", spline, 1.0}};
}

// Parameters [N, K, P] with N(0, scale^2) entries.
Tensor RandomParams(const CircleMapOptions& o, int64_t n, int64_t k,
                    double scale, Rng& rng) {
  Tensor p = Tensor::Randn({n, k, o.params_per_entry()}, rng);
  return p * scale;
}

Tensor RandomAngles(int64_t n, int64_t k, Rng& rng) {
  return Tensor::Rand({n, k}, rng) * kTwoPi;
}

TEST(CircleMaps, OptionsValidate) {
  CircleMapOptions o;
  EXPECT_TRUE(o.Validate().ok());
  o.bins = 1;
  EXPECT_FALSE(o.Validate().ok());
  o.kind = CircleMapKind::kMobius;
  o.components = 0;
  EXPECT_FALSE(o.Validate().ok());
  o.components = 2;
  EXPECT_TRUE(o.Validate().ok());
  EXPECT_EQ(o.params_per_entry(), 6);
}

TEST(CircleMaps, ZeroParametersAreTheIdentity) {
  Rng rng(1);
  for (const Case& c : Cases()) {
    Tensor x = RandomAngles(50, 2, rng);
    Tensor p = Tensor::Zeros({50, 2, c.options.params_per_entry()});
    for (bool inverse : {false, true}) {
      CircleMapResult r = ApplyCircleMap(c.options, x, p, inverse);
      for (int64_t i = 0; i < x.numel(); ++i) {
        EXPECT_NEAR(r.value[i], x[i], 1e-13) << c.name;
        EXPECT_NEAR(r.logabsdet[i], 0.0, 1e-13) << c.name;
      }
    }
  }
}

TEST(CircleMaps, RoundTripsToMachinePrecision) {
  Rng rng(2);
  for (const Case& c : Cases()) {
    Tensor x = RandomAngles(400, 3, rng);
    Tensor p = RandomParams(c.options, 400, 3, c.scale, rng);
    CircleMapResult f = ApplyCircleMap(c.options, x, p, false);
    ASSERT_TRUE(f.status.ok()) << c.name;
    CircleMapResult b = ApplyCircleMap(c.options, f.value, p, true);
    ASSERT_TRUE(b.status.ok()) << c.name << ": " << b.status;
    CircleMapResult f2 = ApplyCircleMap(c.options, b.value, p, false);
    for (int64_t i = 0; i < x.numel(); ++i) {
      EXPECT_LT(std::abs(CircDiff(b.value[i], x[i])), 1e-12) << c.name;
      EXPECT_LT(std::abs(CircDiff(f2.value[i], f.value[i])), 1e-12) << c.name;
      EXPECT_NEAR(b.logabsdet[i], -f.logabsdet[i], 1e-10) << c.name;
      for (const Tensor* v : {&f.value, &b.value}) {
        EXPECT_GE((*v)[i], 0.0) << c.name;
        EXPECT_LT((*v)[i], kTwoPi) << c.name;
      }
    }
  }
}

// On a fine grid of [0, 2 pi) every step moves forward by less than pi and
// the steps add up to one full turn: f is monotone, onto, winding number 1.
TEST(CircleMaps, MonotoneAndOnto) {
  Rng rng(3);
  const int64_t grid = 4000, sets = 20;
  for (const Case& c : Cases()) {
    std::vector<double> xs(sets * grid);
    for (int64_t s = 0; s < sets; ++s)
      for (int64_t i = 0; i < grid; ++i) xs[s * grid + i] = kTwoPi * i / grid;
    Tensor x = Tensor::FromVector({sets, grid}, xs);
    Tensor p1 = RandomParams(c.options, sets, 1, 2.0 * c.scale, rng);
    Tensor p = BroadcastTo(p1, {sets, grid, c.options.params_per_entry()});
    Tensor y = ApplyCircleMap(c.options, x, p, false).value;
    for (int64_t s = 0; s < sets; ++s) {
      double turn = 0.0;
      for (int64_t i = 0; i < grid; ++i) {
        const double step =
            CircDiff(y[s * grid + (i + 1) % grid], y[s * grid + i]);
        ASSERT_GT(step, 0.0) << c.name << " set " << s << " at " << i;
        turn += step;
      }
      EXPECT_NEAR(turn, kTwoPi, 1e-9) << c.name;
    }
  }
}

TEST(CircleMaps, LogdetIsTheDerivative) {
  Rng rng(4);
  const double h = 1e-6;
  for (const Case& c : Cases()) {
    Tensor x = RandomAngles(200, 2, rng);
    Tensor p = RandomParams(c.options, 200, 2, c.scale, rng);
    for (bool inverse : {false, true}) {
      CircleMapResult r = ApplyCircleMap(c.options, x, p, inverse);
      Tensor yp = ApplyCircleMap(c.options, x + h, p, inverse).value;
      Tensor ym = ApplyCircleMap(c.options, x - h, p, inverse).value;
      for (int64_t i = 0; i < x.numel(); ++i) {
        const double fd = CircDiff(yp[i], ym[i]) / (2 * h);
        EXPECT_NEAR(std::exp(r.logabsdet[i]), fd, 1e-6 * std::max(1.0, fd))
            << c.name << (inverse ? " inverse" : " forward");
      }
    }
  }
}

// q(theta) = f'(theta) / (2 pi) is the density of f^-1(uniform): its
// midpoint sum over [0, 2 pi) is 1 (to O(h^2): the spline's f'' jumps at
// its knots; the Moebius maps are smooth and periodic, spectrally accurate).
TEST(CircleMaps, PushedUniformDensityIntegratesToOne) {
  Rng rng(5);
  const int64_t grid = 200000;
  for (const Case& c : Cases()) {
    for (int rep = 0; rep < 5; ++rep) {
      std::vector<double> xs(grid);
      for (int64_t i = 0; i < grid; ++i) xs[i] = kTwoPi * (i + 0.5) / grid;
      Tensor p1 = RandomParams(c.options, 1, 1, 2.0 * c.scale, rng);
      Tensor p = BroadcastTo(p1, {grid, 1, c.options.params_per_entry()});
      Tensor lad =
          ApplyCircleMap(c.options, Tensor::FromVector({grid, 1}, xs), p, false)
              .logabsdet;
      const double mass = Sum(Exp(lad)).item() / grid;
      EXPECT_NEAR(mass, 1.0, 1e-6) << c.name;
    }
  }
}

TEST(CircleMaps, MobiusIsTheComplexMap) {
  Rng rng(6);
  CircleMapOptions o;
  o.kind = CircleMapKind::kMobius;
  Tensor x = RandomAngles(100, 1, rng);
  Tensor p = RandomParams(o, 100, 1, 1.5, rng);
  Tensor y = ApplyCircleMap(o, x, p, false).value;
  for (int64_t i = 0; i < 100; ++i) {
    const double vx = p[3 * i], vy = p[3 * i + 1], phi = p[3 * i + 2];
    const double s = 1.0 / std::sqrt(1.0 + vx * vx + vy * vy);
    const std::complex<double> w(vx * s, vy * s);
    auto h = [&](std::complex<double> z) {
      return (1.0 - std::norm(w)) * (z - w) / std::norm(z - w) - w;
    };
    const double want =
        std::arg(h(std::polar(1.0, x[i]))) - std::arg(h(1.0)) + phi;
    EXPECT_LT(std::abs(CircDiff(y[i], want)), 1e-13);
  }
}

// Equal boundary derivatives: f' is continuous across theta = 0 = 2 pi.
TEST(CircleMaps, SplineDerivativeIsContinuousAcrossZero) {
  Rng rng(7);
  CircleMapOptions o;
  Tensor p1 = RandomParams(o, 1, 1, 2.0, rng);
  Tensor p = BroadcastTo(p1, {2, 1, o.params_per_entry()});
  Tensor x = Tensor::FromVector({2, 1}, {1e-12, kTwoPi - 1e-12});
  Tensor lad = ApplyCircleMap(o, x, p, false).logabsdet;
  EXPECT_NEAR(lad[0], lad[1], 1e-9);
}

// First derivatives (central differences) and Hessian-vector products of
// sum(sin(value) * r) + sum(logabsdet) w.r.t. the angles and the
// parameters, in both directions (the Moebius mixture's inverse through its
// recorded Newton steps).
TEST(CircleMaps, GradientsMatchFiniteDifferences) {
  Rng rng(8);
  for (const Case& c : Cases()) {
    for (bool inverse : {false, true}) {
      Tensor x = RandomAngles(6, 2, rng);
      Tensor p = RandomParams(c.options, 6, 2, c.scale, rng);
      Tensor r = Tensor::Randn({6, 2}, rng);
      auto loss = [&](const std::vector<Tensor>& in) {
        CircleMapResult res = ApplyCircleMap(c.options, in[0], in[1], inverse);
        return Sum(Sin(res.value) * r) + Sum(res.logabsdet);
      };
      const std::string what = c.name + (inverse ? " inverse" : " forward");
      EXPECT_LT(testing::GradientError(loss, {x, p}), 1e-6) << what;
      EXPECT_LT(testing::HessianVectorError(loss, {x, p}), 1e-5) << what;
    }
  }
}

TEST(CircleMaps, Float32AgreesWithFloat64) {
  Rng rng(9);
  for (const Case& c : Cases()) {
    Tensor x32 = Cast(RandomAngles(300, 2, rng), kFloat32);
    Tensor p32 = Cast(RandomParams(c.options, 300, 2, c.scale, rng), kFloat32);
    Tensor x = Cast(x32, kFloat64), p = Cast(p32, kFloat64);
    for (bool inverse : {false, true}) {
      CircleMapResult r32 = ApplyCircleMap(c.options, x32, p32, inverse);
      CircleMapResult r64 = ApplyCircleMap(c.options, x, p, inverse);
      ASSERT_TRUE(r32.status.ok()) << c.name << ": " << r32.status;
      ASSERT_EQ(r32.value.dtype(), kFloat32);
      ASSERT_EQ(r32.logabsdet.dtype(), kFloat32);
      for (int64_t i = 0; i < x.numel(); ++i) {
        const double scale =
            std::max(1.0, std::exp(std::abs(r64.logabsdet[i])));
        EXPECT_LT(std::abs(CircDiff(r32.value[i], r64.value[i])), 2e-5 * scale)
            << c.name;
        EXPECT_NEAR(r32.logabsdet[i], r64.logabsdet[i], 2e-4 * scale) << c.name;
        EXPECT_GE(r32.value[i], 0.0);
        EXPECT_LT(r32.value[i], static_cast<float>(kTwoPi));
      }
    }
    // Round trip in float32.
    CircleMapResult f = ApplyCircleMap(c.options, x32, p32, false);
    CircleMapResult b = ApplyCircleMap(c.options, f.value, p32, true);
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double scale = std::max(1.0, std::exp(-f.logabsdet[i]));
      EXPECT_LT(std::abs(CircDiff(b.value[i], x32[i])), 2e-5 * scale) << c.name;
    }
  }
}

TEST(CircleMaps, FailedBisectionReturnsAStatus) {
  CircleMapOptions o;
  o.kind = CircleMapKind::kMobius;
  o.components = 3;
  Tensor x = Tensor::Full({4, 1}, 1.0);
  Tensor p = Tensor::Zeros({4, 1, o.params_per_entry()});
  p.mutable_data<double>()[5] = std::numeric_limits<double>::quiet_NaN();
  CircleMapResult r = ApplyCircleMap(o, x, p, true);
  EXPECT_FALSE(r.status.ok());
  EXPECT_TRUE(std::isnan(r.value[0]));
  EXPECT_TRUE(std::isnan(r.logabsdet[3]));
}

}  // namespace
}  // namespace flowtape::manifolds

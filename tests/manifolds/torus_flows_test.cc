// TorusFlow (torus_flows.h) with every structure and circle map: round trips
// to 1e-12 with outputs in [0, 2 pi)^n, log-dets equal the log|det| of the
// brute-force Jacobian (circular central differences), the pushed-forward
// uniform density integrates to 1 on T^2 (midpoint quadrature), gradients
// and Hessian-vector products w.r.t. angles and parameters equal finite
// differences in both directions, float32 agrees with float64, and a failed
// bisection reaches the status.
#include "manifolds/torus_flows.h"

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "Eigen/Dense"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "manifolds/angle.h"
#include "tests/gradcheck.h"
#include "tests/manifolds/test_util.h"

namespace flowtape::manifolds {
namespace {

constexpr double kPi = kTwoPi / 2;

double CircDiff(double a, double b) {
  double d = std::fmod(a - b + kPi, kTwoPi);
  if (d < 0) d += kTwoPi;
  return d - kPi;
}

struct Case {
  std::string name;
  TorusFlowOptions options;
};

std::vector<Case> Cases(int64_t dims) {
  CircleMapOptions mobius;
  mobius.kind = CircleMapKind::kMobius;
  CircleMapOptions mixture = mobius;
  mixture.components = 3;
  CircleMapOptions spline;
  spline.bins = 6;
  std::vector<Case> cases;
  for (auto s : {TorusStructure::kElementwise, TorusStructure::kCoupling,
                 TorusStructure::kAutoregressive})
    for (const CircleMapOptions& m : {mobius, mixture, spline}) {
      TorusFlowOptions o;
      o.dims = dims;
      o.structure = s;
      o.map = m;
      o.hidden = {8};
      cases.push_back({"", o});
      if (s == TorusStructure::kCoupling) {
        o.flip = true;
        cases.push_back({"", o});
      }
    }
  for (Case& c : cases) {
    Rng rng(0);
    c.name = (*TorusFlow::Create(c.options, rng))->name() +
             (c.options.flip ? "_flip" : "");
  }
  return cases;
}

// A flow with N(0, noise^2) added to every parameter.
std::shared_ptr<TorusFlow> Make(const TorusFlowOptions& o, Rng& rng,
                                double noise = 0.7) {
  auto f = *TorusFlow::Create(o, rng);
  for (Tensor& p : f->Parameters()) {
    double* d = p.mutable_data<double>();
    for (int64_t i = 0; i < p.numel(); ++i) d[i] += noise * rng.Normal();
  }
  return f;
}

Tensor RandomAngles(int64_t n, int64_t k, Rng& rng) {
  return Tensor::Rand({n, k}, rng) * kTwoPi;
}

TEST(TorusFlow, CreateRejectsBadOptions) {
  Rng rng(1);
  TorusFlowOptions o;
  EXPECT_TRUE(TorusFlow::Create(o, rng).ok());
  o.dims = 1;
  EXPECT_FALSE(TorusFlow::Create(o, rng).ok());  // a coupling needs 2
  o.structure = TorusStructure::kAutoregressive;
  EXPECT_TRUE(TorusFlow::Create(o, rng).ok());
  o.hidden = {};
  EXPECT_FALSE(TorusFlow::Create(o, rng).ok());
  o.hidden = {4};
  o.map.bins = 1;
  EXPECT_FALSE(TorusFlow::Create(o, rng).ok());
}

TEST(TorusFlow, StartsAtTheIdentity) {
  Rng rng(2);
  for (const Case& c : Cases(3)) {
    auto f = *TorusFlow::Create(c.options, rng);
    Tensor x = RandomAngles(20, 3, rng);
    flows::FlowResult r = f->Forward(x);
    for (int64_t i = 0; i < x.numel(); ++i)
      EXPECT_NEAR(r.value[i], x[i], 1e-13) << c.name;
    for (int64_t i = 0; i < 20; ++i)
      EXPECT_NEAR(r.logdet[i], 0.0, 1e-13) << c.name;
  }
}

TEST(TorusFlow, RoundTrips) {
  Rng rng(3);
  for (const Case& c : Cases(3)) {
    auto f = Make(c.options, rng);
    NoGradScope no_grad;
    Tensor x = RandomAngles(200, 3, rng);
    flows::FlowResult fwd = f->Forward(x);
    flows::FlowResult inv = f->Inverse(fwd.value);
    ASSERT_TRUE(fwd.status.ok() && inv.status.ok()) << c.name;
    flows::FlowResult fwd2 = f->Forward(inv.value);
    for (int64_t i = 0; i < x.numel(); ++i) {
      // Rounding in z becomes rounding / f' in x: 1e-12 times the condition.
      const double cond = std::max(1.0, std::exp(std::abs(fwd.logdet[i / 3])));
      EXPECT_LT(std::abs(CircDiff(inv.value[i], x[i])), 1e-12 * cond) << c.name;
      EXPECT_LT(std::abs(CircDiff(fwd2.value[i], fwd.value[i])), 1e-12)
          << c.name;
      for (const Tensor* v : {&fwd.value, &inv.value}) {
        EXPECT_GE((*v)[i], 0.0) << c.name;
        EXPECT_LT((*v)[i], kTwoPi) << c.name;
      }
    }
    for (int64_t i = 0; i < 200; ++i)
      EXPECT_NEAR(inv.logdet[i], -fwd.logdet[i],
                  1e-10 * std::max(1.0, std::abs(fwd.logdet[i])))
          << c.name;
  }
}

// log|det| of the 3 x 3 Jacobian from circular central differences; the
// conditioned angles must depend on the conditioning ones.
TEST(TorusFlow, LogdetIsTheJacobian) {
  Rng rng(4);
  const double h = 1e-6;
  for (const Case& c : Cases(3)) {
    auto f = Make(c.options, rng);
    NoGradScope no_grad;
    Tensor x = RandomAngles(10, 3, rng);
    for (bool inverse : {false, true}) {
      auto apply = [&](const Tensor& v) {
        return inverse ? f->Inverse(v) : f->Forward(v);
      };
      flows::FlowResult r = apply(x);
      Eigen::MatrixXd cross = Eigen::MatrixXd::Zero(3, 3);
      for (int64_t i = 0; i < 10; ++i) {
        Eigen::Matrix3d jac;
        for (int64_t j = 0; j < 3; ++j) {
          Tensor xp = x.Clone(), xm = x.Clone();
          xp.mutable_data<double>()[i * 3 + j] += h;
          xm.mutable_data<double>()[i * 3 + j] -= h;
          Tensor yp = apply(xp).value, ym = apply(xm).value;
          for (int64_t k = 0; k < 3; ++k)
            jac(k, j) = CircDiff(yp[i * 3 + k], ym[i * 3 + k]) / (2 * h);
        }
        EXPECT_NEAR(r.logdet[i], std::log(std::abs(jac.determinant())), 1e-6)
            << c.name << (inverse ? " inverse" : " forward");
        cross += jac.cwiseAbs();
      }
      if (c.options.structure != TorusStructure::kElementwise) {
        EXPECT_GT(cross.sum() - cross.diagonal().sum(), 1e-3) << c.name;
      }
    }
  }
}

// With the uniform base (2 pi)^-2, the density exp(logdet) / (2 pi)^2
// integrates to 1 over T^2 (midpoint rule: smooth periodic integrands
// converge spectrally, the splines' piecewise ones as h^2; parameters of
// moderate size keep the integrands resolved by the grid).
TEST(TorusFlow, DensityIntegratesToOneOnT2) {
  Rng rng(5);
  const int64_t g = 300;
  std::vector<double> grid(2 * g * g);
  for (int64_t i = 0; i < g; ++i)
    for (int64_t j = 0; j < g; ++j) {
      grid[2 * (i * g + j)] = kTwoPi * (i + 0.5) / g;
      grid[2 * (i * g + j) + 1] = kTwoPi * (j + 0.5) / g;
    }
  Tensor x = Tensor::FromVector({g * g, 2}, grid);
  for (const Case& c : Cases(2)) {
    auto f = Make(c.options, rng, 0.3);
    NoGradScope no_grad;
    const double mass = Sum(Exp(f->Forward(x).logdet)).item() / (g * g);
    const double tol =
        c.options.map.kind == CircleMapKind::kSpline ? 1e-4 : 1e-9;
    EXPECT_NEAR(mass, 1.0, tol) << c.name;
  }
}

// First derivatives of a density-style loss (sin of the outputs plus the
// log-det) w.r.t. the angles and every parameter, and its Hessian-vector
// products jointly over the angles and every parameter, in both directions.
TEST(TorusFlow, GradientsMatchFiniteDifferences) {
  Rng rng(6);
  for (const Case& c : Cases(3)) {
    auto f = Make(c.options, rng);
    Tensor r = Tensor::Randn({4, 3}, rng);
    Tensor x = RandomAngles(4, 3, rng);
    for (bool inverse : {false, true}) {
      auto loss = [&](const std::vector<Tensor>& in) {
        flows::FlowResult res = inverse ? f->Inverse(in[0]) : f->Forward(in[0]);
        return Sum(Sin(res.value) * r) + Sum(res.logdet);
      };
      const std::string what = c.name + (inverse ? " inverse" : " forward");
      EXPECT_LT(flowtape::testing::GradientError(loss, {x}), 1e-6) << what;
      EXPECT_LT(flowtape::testing::HessianVectorErrorWithParameters(
                    loss, {x}, f->Parameters()),
                1e-5)
          << what;
      EXPECT_LT(testing::ParameterGradientError(*f, [&] { return loss({x}); }),
                1e-6)
          << what;
    }
  }
}

TEST(TorusFlow, Float32AgreesWithFloat64) {
  Rng rng(7);
  for (const Case& c : Cases(3)) {
    auto f64 = Make(c.options, rng);
    Rng same(0);
    auto f32 = *TorusFlow::Create(c.options, same);
    std::vector<Tensor> p64 = f64->Parameters(), p32 = f32->Parameters();
    for (size_t k = 0; k < p64.size(); ++k) {  // float32-rounded copies
      Tensor rounded = Cast(Cast(p64[k], kFloat32), kFloat64);
      std::copy(rounded.data<double>(), rounded.data<double>() + p64[k].numel(),
                p64[k].mutable_data<double>());
      std::copy(rounded.data<double>(), rounded.data<double>() + p64[k].numel(),
                p32[k].mutable_data<double>());
    }
    f32->To(kFloat32);
    NoGradScope no_grad;
    Tensor x32 = Cast(RandomAngles(100, 3, rng), kFloat32);
    Tensor x = Cast(x32, kFloat64);
    for (bool inverse : {false, true}) {
      flows::FlowResult a = inverse ? f32->Inverse(x32) : f32->Forward(x32);
      flows::FlowResult b = inverse ? f64->Inverse(x) : f64->Forward(x);
      ASSERT_TRUE(a.status.ok()) << c.name << ": " << a.status;
      ASSERT_EQ(a.value.dtype(), kFloat32);
      for (int64_t i = 0; i < x.numel(); ++i)
        EXPECT_LT(std::abs(CircDiff(a.value[i], b.value[i])), 1e-4) << c.name;
      for (int64_t i = 0; i < 100; ++i)
        EXPECT_NEAR(a.logdet[i], b.logdet[i], 1e-3) << c.name;
    }
  }
}

TEST(TorusFlow, FailedBisectionReachesTheStatus) {
  Rng rng(8);
  TorusFlowOptions o;
  o.dims = 2;
  o.structure = TorusStructure::kAutoregressive;
  o.map.kind = CircleMapKind::kMobius;
  o.map.components = 2;
  auto f = Make(o, rng);
  f->Parameters()[0].mutable_data<double>()[0] =
      std::numeric_limits<double>::quiet_NaN();
  flows::FlowResult r = f->Inverse(RandomAngles(3, 2, rng));
  EXPECT_FALSE(r.status.ok());
  EXPECT_TRUE(std::isnan(r.logdet[0]));
}

}  // namespace
}  // namespace flowtape::manifolds

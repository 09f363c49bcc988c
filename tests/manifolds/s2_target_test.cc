// The S^2 target of Rezende et al. 2020 (s2_target.h), the Gauss product
// quadrature on S^2 (sphere_quadrature.h) and the uniform base
// (uniform_sphere_base.h): Gauss-Legendre nodes and weights against known
// values, the product rule exact on spherical polynomials up to degree
// 2n - 1 and not beyond, the single vMF term's closed form
// 4 pi sinh(kappa) / kappa with geometric convergence, the target's
// log-density equal to its formula, its density integrating to 1 by
// quadrature (log Z equal to the closed form 16 pi sinh(10) / 10), and the
// base's samples uniform on the sphere with log p = -log(4 pi).
#include "manifolds/s2_target.h"

#include <cmath>
#include <vector>

#include "autodiff/ops.h"
#include "gtest/gtest.h"
#include "manifolds/sphere_quadrature.h"
#include "manifolds/uniform_sphere_base.h"

namespace flowtape::manifolds {
namespace {

double LogVmfTerm(double kappa) {  // log int exp(kappa mu.x) dA
  return std::log(4 * M_PI * std::sinh(kappa) / kappa);
}

TEST(GaussLegendre, NodesAndWeightsAreTheKnownOnes) {
  QuadratureRule r3 = GaussLegendre(3);
  EXPECT_NEAR(r3.nodes[0], -std::sqrt(0.6), 1e-15);
  EXPECT_NEAR(r3.nodes[1], 0.0, 1e-15);
  EXPECT_NEAR(r3.nodes[2], std::sqrt(0.6), 1e-15);
  EXPECT_NEAR(r3.weights[0], 5.0 / 9, 1e-15);
  EXPECT_NEAR(r3.weights[1], 8.0 / 9, 1e-15);
  for (int n : {1, 2, 7, 64, 200}) {
    QuadratureRule r = GaussLegendre(n);
    double sum = 0;
    for (int i = 0; i < n; ++i) {
      sum += r.weights[i];
      EXPECT_GT(r.weights[i], 0);
      if (i > 0) {
        EXPECT_LT(r.nodes[i - 1], r.nodes[i]);
      }
    }
    EXPECT_NEAR(sum, 2.0, 1e-13) << n;
    // Exact for z^(2n - 2) (int = 2 / (2n - 1)).
    double moment = 0;
    for (int i = 0; i < n; ++i)
      moment += r.weights[i] * std::pow(r.nodes[i], 2 * n - 2);
    EXPECT_NEAR(moment, 2.0 / (2 * n - 1), 1e-13) << n;
  }
}

// int x^(2a) y^(2b) z^(2c) dA over S^2 =
//   2 Gamma(a + 1/2) Gamma(b + 1/2) Gamma(c + 1/2) / Gamma(a + b + c + 3/2).
double Moment(int a, int b, int c) {
  return 2 * std::tgamma(a + 0.5) * std::tgamma(b + 0.5) *
         std::tgamma(c + 0.5) / std::tgamma(a + b + c + 1.5);
}

TEST(SphereLogIntegral, ExactOnPolynomialsUpToDegreeTwoNMinusOne) {
  const int n = 4;  // exact through degree 7
  struct Case {
    int a, b, c;
  };
  for (Case k : {Case{0, 0, 0}, Case{1, 0, 0}, Case{0, 0, 3}, Case{1, 1, 1},
                 Case{2, 1, 0}, Case{0, 3, 0}}) {
    auto log_f = [&](double x, double y, double z) {
      return std::log(std::pow(x, 2 * k.a) * std::pow(y, 2 * k.b) *
                      std::pow(z, 2 * k.c));
    };
    EXPECT_NEAR(std::exp(SphereLogIntegral(log_f, n)), Moment(k.a, k.b, k.c),
                1e-14)
        << k.a << k.b << k.c;
  }
  // Degree 8 = 2n: no longer exact.
  auto z8 = [](double, double, double z) { return 8 * std::log(std::abs(z)); };
  EXPECT_GT(std::abs(std::exp(SphereLogIntegral(z8, n)) - Moment(0, 0, 4)),
            1e-6);
  EXPECT_NEAR(std::exp(SphereLogIntegral(z8, n + 1)), Moment(0, 0, 4), 1e-14);
}

// One vMF term, in a direction off every axis: the closed form, with an
// error that falls geometrically in n and reaches rounding level.
TEST(SphereLogIntegral, VmfTermConvergesToTheClosedForm) {
  const double mu[3] = {0.48, -0.6, 0.64};  // unit
  for (double kappa : {1.0, 10.0, 50.0}) {
    auto log_f = [&](double x, double y, double z) {
      return kappa * (mu[0] * x + mu[1] * y + mu[2] * z);
    };
    const double exact = LogVmfTerm(kappa);
    EXPECT_NEAR(SphereLogIntegral(log_f, 96), exact, 1e-13) << kappa;
    if (kappa == 10.0) {
      EXPECT_NEAR(SphereLogIntegral(log_f, 24), exact, 1e-13);
      const double e4 = std::abs(SphereLogIntegral(log_f, 4) - exact);
      const double e8 = std::abs(SphereLogIntegral(log_f, 8) - exact);
      const double e12 = std::abs(SphereLogIntegral(log_f, 12) - exact);
      EXPECT_GT(e4, 1e-3);
      EXPECT_LT(e8, 0.1 * e4);
      EXPECT_LT(e12, 0.01 * e8);
    }
  }
}

TEST(S2Target, ModesAreUnitAndTheStatedDirections) {
  for (S2Target t : AllS2Targets()) {
    const auto mu = S2TargetModes(t);
    ASSERT_EQ(mu.size(), 4u);
    for (const auto& m : mu)
      EXPECT_NEAR(m[0] * m[0] + m[1] * m[1] + m[2] * m[2], 1.0, 1e-15);
    // Mode 1: polar angle 0.7 + pi / 2, azimuth 1.5.
    const double theta = 0.7 + M_PI / 2;
    EXPECT_NEAR(mu[0][0], std::sin(theta) * std::cos(1.5), 1e-15);
    EXPECT_NEAR(mu[0][1], std::sin(theta) * std::sin(1.5), 1e-15);
    EXPECT_NEAR(mu[0][2], std::cos(theta), 1e-15);
    // Mode 3's azimuth: 5 (the figure's) or 0.5 (as printed).
    const double b3 = t == S2Target::kRezende2020 ? 5.0 : 0.5;
    EXPECT_NEAR(std::atan2(mu[2][1], mu[2][0]), std::remainder(b3, 2 * M_PI),
                1e-14);
    EXPECT_EQ(*ParseS2Target(S2TargetName(t)), t);
  }
  EXPECT_FALSE(ParseS2Target("s2").ok());
}

TEST(S2Target, LogDensityIsTheFormulaInBothDtypes) {
  Rng rng(3);
  UniformSphereBase base;
  Tensor x = base.Sample(40, rng);
  for (S2Target t : AllS2Targets()) {
    const auto mu = S2TargetModes(t);
    for (DType dtype : {kFloat64, kFloat32}) {
      Tensor lp = S2TargetLogDensity(t, Cast(x, dtype));
      ASSERT_EQ(lp.shape(), Shape({40}));
      ASSERT_EQ(lp.dtype(), dtype);
      for (int64_t i = 0; i < 40; ++i) {
        double p = 0;
        for (const auto& m : mu)
          p += std::exp(10 * (m[0] * x[3 * i] + m[1] * x[3 * i + 1] +
                              m[2] * x[3 * i + 2]));
        const double tol = dtype == kFloat64 ? 1e-12 : 1e-4;
        EXPECT_NEAR(lp[i], std::log(p), tol);
        EXPECT_NEAR(S2TargetLogDensity(t, x[3 * i], x[3 * i + 1], x[3 * i + 2]),
                    std::log(p), 1e-12);
      }
    }
  }
}

// p = p~ / Z integrates to 1: the quadrature's log Z is the closed form
// log(16 pi sinh(10) / 10), and stable from n = 24 to n = 128.
TEST(S2Target, DensityIntegratesToOne) {
  const double closed = S2TargetLogNormalizerClosedForm();
  EXPECT_NEAR(closed, std::log(16 * M_PI * std::sinh(10.0) / 10), 1e-14);
  for (S2Target t : AllS2Targets()) {
    for (int n : {24, 64, 128})
      EXPECT_NEAR(S2TargetLogNormalizer(t, n), closed, 1e-13) << n;
    const double log_z = S2TargetLogNormalizer(t);
    const double mass = std::exp(SphereLogIntegral(
        [&](double x, double y, double z) {
          return S2TargetLogDensity(t, x, y, z) - log_z;
        },
        64));
    EXPECT_NEAR(mass, 1.0, 1e-13);
    // Too coarse a rule misses the modes' mass.
    EXPECT_GT(std::abs(S2TargetLogNormalizer(t, 4) - closed), 1e-3);
  }
}

TEST(UniformSphereBase, SamplesTheSphereUniformlyInEitherDtype) {
  for (DType dtype : {kFloat64, kFloat32}) {
    UniformSphereBase base;
    base.To(dtype);
    Rng rng(7);
    const int64_t n = 40000;
    Tensor x = base.Sample(n, rng);
    ASSERT_EQ(x.shape(), Shape({n, 3}));
    ASSERT_EQ(x.dtype(), dtype);
    double mean[3] = {0, 0, 0}, second[3] = {0, 0, 0};
    for (int64_t i = 0; i < n; ++i) {
      double norm2 = 0;
      for (int d = 0; d < 3; ++d) {
        const double v = x[3 * i + d];
        norm2 += v * v;
        mean[d] += v / n;
        second[d] += v * v / n;
      }
      ASSERT_NEAR(norm2, 1.0, dtype == kFloat64 ? 1e-14 : 1e-6);
    }
    // Uniform on S^2: E x = 0, E x_d^2 = 1/3 (sd of the means ~ 0.003).
    for (int d = 0; d < 3; ++d) {
      EXPECT_NEAR(mean[d], 0.0, 0.015);
      EXPECT_NEAR(second[d], 1.0 / 3, 0.01);
    }
    Tensor lp = base.LogProb(x);
    ASSERT_EQ(lp.dtype(), dtype);
    EXPECT_NEAR(lp[5], -std::log(4 * M_PI), 1e-6);
  }
}

}  // namespace
}  // namespace flowtape::manifolds

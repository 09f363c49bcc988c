// Densities on S^2 integrate to 1 by quadrature in (z, phi) (dA = dz dphi),
// on the 2-simplex by quadrature in the flat coordinates, and on S^4 by Monte
// Carlo; the vMF normaliser is stable for large kappa; the samplers match
// known moments.
#include <cmath>
#include <memory>
#include <vector>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "manifolds/calibration.h"
#include "manifolds/dirichlet.h"
#include "manifolds/manifold.h"
#include "manifolds/manifold_flow.h"
#include "manifolds/neural_sphere_flow.h"
#include "manifolds/sphere_densities.h"
#include "manifolds/sphere_flows.h"
#include "tests/manifolds/test_util.h"

namespace flowtape::manifolds {
namespace {
using testing::RandomInvertible;

// Gauss-Legendre nodes and weights on [a, b] (Newton on P_k).
void GaussLegendre(int k, double a, double b, std::vector<double>* x,
                   std::vector<double>* w) {
  x->resize(k);
  w->resize(k);
  for (int i = 0; i < k; ++i) {
    double t = std::cos(M_PI * (i + 0.75) / (k + 0.5)), dp = 0.0;
    for (int it = 0; it < 100; ++it) {
      double p0 = 1.0, p1 = t;
      for (int j = 2; j <= k; ++j) {
        const double p2 = ((2.0 * j - 1) * t * p1 - (j - 1.0) * p0) / j;
        p0 = p1;
        p1 = p2;
      }
      dp = k * (t * p1 - p0) / (t * t - 1.0);
      const double step = p1 / dp;
      t -= step;
      if (std::abs(step) < 1e-16) break;
    }
    (*x)[i] = 0.5 * (a + b) + 0.5 * (b - a) * t;
    (*w)[i] = (b - a) / ((1.0 - t * t) * dp * dp);
  }
}

// int_{S^2} exp(log_prob) dA with Gauss-Legendre in z, trapezoid in phi.
double IntegrateS2(const ManifoldDensity& d, int nz, int nphi) {
  std::vector<double> z, w;
  GaussLegendre(nz, -1.0, 1.0, &z, &w);
  Tensor pts = Tensor::Empty({nz * nphi, 3});
  double* p = pts.mutable_data();
  for (int i = 0; i < nz; ++i)
    for (int j = 0; j < nphi; ++j) {
      const double phi = 2.0 * M_PI * (j + 0.5) / nphi;
      const double r = std::sqrt(1.0 - z[i] * z[i]);
      double* row = p + (i * nphi + j) * 3;
      row[0] = r * std::cos(phi);
      row[1] = r * std::sin(phi);
      row[2] = z[i];
    }
  TapeScope scope;
  Tensor lp = d.LogProb(pts).Detach();
  double total = 0.0;
  for (int i = 0; i < nz; ++i)
    for (int j = 0; j < nphi; ++j)
      total += w[i] * (2.0 * M_PI / nphi) * std::exp(lp[i * nphi + j]);
  return total;
}

// int over the 2-simplex in flat coordinates, x1 = u, x2 = (1 - u) v.
double IntegrateSimplex2(const ManifoldDensity& d, int k) {
  std::vector<double> t, w;
  GaussLegendre(k, 0.0, 1.0, &t, &w);
  Tensor pts = Tensor::Empty({k * k, 3});
  double* p = pts.mutable_data();
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < k; ++j) {
      double* row = p + (i * k + j) * 3;
      row[0] = t[i];
      row[1] = (1.0 - t[i]) * t[j];
      row[2] = 1.0 - row[0] - row[1];
    }
  NoGradScope no_grad;
  Tensor lp = d.LogProb(pts);
  double total = 0.0;
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < k; ++j)
      total += w[i] * w[j] * (1.0 - t[i]) * std::exp(lp[i * k + j]);
  return total;
}

TEST(Densities, SphereDensitiesIntegrateToOneOnS2) {
  Rng rng(21);
  Eigen::MatrixXd m = RandomInvertible(3, rng);
  Eigen::Vector3d mu(0.6, 0.0, 0.8);
  EXPECT_NEAR(IntegrateS2(UniformSphere(3), 8, 8), 1.0, 1e-14);
  EXPECT_NEAR(IntegrateS2(**AngularCentralGaussian::Create(m * m.transpose()),
                          200, 200),
              1.0, 1e-8);
  EXPECT_NEAR(IntegrateS2(**VonMisesFisher::Create(mu, 0.01), 50, 50), 1.0,
              1e-12);
  EXPECT_NEAR(IntegrateS2(**VonMisesFisher::Create(mu, 20.0), 200, 200), 1.0,
              1e-8);
}

TEST(Densities, FlowModelsIntegrateToOneOnS2) {
  Rng rng(22);
  auto base = std::make_shared<UniformSphere>(3);
  std::vector<std::shared_ptr<flows::Flow>> chain;
  for (int k = 0; k < 4; ++k)
    chain.push_back(std::make_shared<NormalizedAffine>(3, rng, 0.4));
  auto model = std::make_shared<ManifoldFlowModel>(base, chain);
  EXPECT_NEAR(IntegrateS2(*model, 200, 200), 1.0, 1e-7);
  auto other = std::make_shared<ManifoldFlowModel>(
      base, std::vector<std::shared_ptr<flows::Flow>>{
                std::make_shared<NormalizedAffine>(3, rng, 0.4)});
  FlowMixture mixture({model, other});
  EXPECT_NEAR(IntegrateS2(mixture, 200, 200), 1.0, 1e-7);
  // The neural flow's density goes through the generic volume ratio.
  auto nf = std::make_shared<CylindricalCouplingFlow>(3, 8, rng);
  for (Tensor p : nf->Parameters())
    for (int64_t j = 0; j < p.numel(); ++j)
      p.mutable_data()[j] += 0.3 * rng.Normal();
  ManifoldFlowModel neural(base, {nf});
  EXPECT_NEAR(IntegrateS2(neural, 120, 120), 1.0, 1e-5);
}

TEST(Densities, SimplexDensitiesIntegrateToOne) {
  Rng rng(23);
  auto dir = std::shared_ptr<Dirichlet>(*Dirichlet::Create({2.0, 3.0, 4.0}));
  EXPECT_NEAR(IntegrateSimplex2(*dir, 10), 1.0, 1e-13);
  EXPECT_NEAR(IntegrateSimplex2(**Dirichlet::Create({1, 1, 1}), 2), 1.0, 1e-14);
  std::shared_ptr<flows::Flow> fcal(
      *SimplexCalibration::Create(0.8, {0.3, -0.2, 0.5}));
  EXPECT_NEAR(IntegrateSimplex2(ManifoldFlowModel(dir, {fcal}), 300), 1.0,
              1e-6);
  auto gcal = std::make_shared<GeneralizedCalibration>(3, rng, 0.2);
  EXPECT_NEAR(IntegrateSimplex2(ManifoldFlowModel(dir, {gcal}), 300), 1.0,
              1e-5);
}

TEST(Densities, MonteCarloOnS4) {
  Rng rng(24);
  const int64_t n = 5, num = 200000;
  Manifold s = Manifold::Sphere(n);
  Eigen::MatrixXd m =
      Eigen::MatrixXd::Identity(n, n) + 0.15 * testing::RandomMatrix(n, n, rng);
  Eigen::VectorXd mu = Eigen::VectorXd::Ones(n).normalized();
  std::vector<std::shared_ptr<flows::Flow>> chain;
  for (int k = 0; k < 3; ++k)
    chain.push_back(std::make_shared<NormalizedAffine>(n, rng, 0.1));
  std::vector<std::shared_ptr<ManifoldDensity>> ds = {
      std::shared_ptr<ManifoldDensity>(
          *AngularCentralGaussian::Create(m * m.transpose())),
      std::shared_ptr<ManifoldDensity>(*VonMisesFisher::Create(mu, 2.0)),
      std::make_shared<ManifoldFlowModel>(std::make_shared<UniformSphere>(n),
                                          chain)};
  Tensor x = s.SampleUniform(num, rng);
  for (const auto& d : ds) {
    NoGradScope no_grad;
    // E_uniform[q / u] = 1 with u = 1/|S^4|.
    Tensor ratio = Exp(d->LogProb(x) + s.LogVolume());
    const double mean = Mean(ratio).item();
    const double sd = std::sqrt(Mean(Square(ratio - mean)).item());
    EXPECT_NEAR(mean, 1.0, 5.0 * sd / std::sqrt(static_cast<double>(num)))
        << d->name();
    EXPECT_LT(5.0 * sd / std::sqrt(static_cast<double>(num)), 0.02);
  }
}

TEST(Densities, VmfNormalizerIsStable) {
  // I_{1/2}(k) = sqrt(2 / (pi k)) sinh(k), on both sides of the switch.
  for (double k : {0.1, 10.0, 499.0, 501.0, 5000.0, 1e6}) {
    const double exact = 0.5 * std::log(2.0 / (M_PI * k)) + k +
                         std::log1p(-std::exp(-2.0 * k)) - std::log(2.0);
    EXPECT_NEAR(LogBesselI(0.5, k), exact, 1e-12 * std::max(1.0, k)) << k;
  }
  for (double v : {0.0, 1.0, 1.5, 3.0})
    EXPECT_NEAR(LogBesselI(v, 500.0 - 1e-9), LogBesselI(v, 500.0 + 1e-9),
                5e-9);  // |slope| * 2e-9
  EXPECT_TRUE(std::isfinite(LogVmfNormalizer(5, 1e5)));
  EXPECT_TRUE(std::isfinite(LogVmfNormalizer(3, 1e8)));
  EXPECT_NEAR(LogVmfNormalizer(4, 1e-12), -Manifold::Sphere(4).LogVolume(),
              1e-9);
}

TEST(Densities, SamplersMatchMoments) {
  Rng rng(25);
  const int64_t num = 40000;
  // vMF: E[mu.x] = I_{n/2}(k) / I_{n/2-1}(k).
  for (int64_t n : {3, 5}) {
    for (double kappa : {0.5, 4.0, 50.0}) {
      Eigen::VectorXd mu = Eigen::VectorXd::Zero(n);
      mu[n - 1] = 1.0;
      auto d = *VonMisesFisher::Create(mu, kappa);
      Tensor x = d->Sample(num, rng);
      ASSERT_TRUE(d->manifold().ContainsAll(x, 1e-12));
      Tensor w = Narrow(x, 1, n - 1, 1);
      const double mean = Mean(w).item();
      const double sd = std::sqrt(Mean(Square(w - mean)).item());
      const double expect = std::exp(LogBesselI(0.5 * n, kappa) -
                                     LogBesselI(0.5 * n - 1.0, kappa));
      EXPECT_NEAR(mean, expect, 5.0 * sd / std::sqrt(double(num)))
          << "n=" << n << " kappa=" << kappa;
    }
  }
  // Dirichlet: E[x] = alpha / sum(alpha).
  auto dir = *Dirichlet::Create({0.5, 2.0, 3.5});
  Tensor p = dir->Sample(num, rng);
  ASSERT_TRUE(dir->manifold().ContainsAll(p, 1e-12));
  Tensor mean = Mean(p, 0);
  EXPECT_NEAR(mean[0], 0.5 / 6.0, 0.005);
  EXPECT_NEAR(mean[2], 3.5 / 6.0, 0.005);
  // ACG sample second moment vs quadrature-free check: sample from the model
  // that pushes uniform through a normalized linear flow, compare densities
  // via E_q[u / q] = 1.
  Eigen::MatrixXd m = RandomInvertible(3, rng);
  auto acg = *AngularCentralGaussian::Create(m * m.transpose());
  Tensor y = acg->Sample(num, rng);
  Tensor r = Exp(-acg->LogProb(y) - Manifold::Sphere(3).LogVolume());
  const double mr = Mean(r).item();
  const double sr = std::sqrt(Mean(Square(r - mr)).item());
  EXPECT_NEAR(mr, 1.0, 5.0 * sr / std::sqrt(double(num)));
}

}  // namespace
}  // namespace flowtape::manifolds

// Riemannian flow matching on the sphere: exp/log maps, the geodesic path
// (on the sphere, tangent targets, targets = d/dt of the path), tangent
// fields, the projected RK4 flow (stays on the sphere, round trip, log-det
// = the generic volume ratio of its map, density integrating to 1 on S^2),
// and a short training that beats the uniform density on held-out NLL.
#include "manifolds/sphere_flow_matching.h"

#include <Eigen/Dense>
#include <cmath>
#include <iostream>
#include <memory>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "manifolds/manifold.h"
#include "manifolds/sphere_densities.h"
#include "manifolds/volume_ratio.h"
#include "nn/optim.h"

namespace flowtape::manifolds {
namespace {

using flows::cnf::ConcatSquashNet;

Tensor UniformPoints(int64_t rows, int64_t n, uint64_t seed) {
  Rng rng(seed);
  return UniformSphereSource(n)(rows, kFloat64, rng);
}

double RowDot(const Tensor& a, const Tensor& b, int64_t i) {
  double s = 0;
  for (int64_t k = 0; k < a.dim(1); ++k)
    s += a[i * a.dim(1) + k] * b[i * a.dim(1) + k];
  return s;
}

TEST(SphereGeometryTest, ExpInvertsLog) {
  for (int64_t n : {2, 3, 5}) {
    Tensor x = UniformPoints(20, n, 1), y = UniformPoints(20, n, 2);
    Tensor v = SphereLog(x, y), back = SphereExp(x, v);
    for (int64_t i = 0; i < 20; ++i) {
      EXPECT_NEAR(RowDot(x, v, i), 0, 1e-12);  // tangent
      EXPECT_NEAR(std::sqrt(RowDot(v, v, i)),
                  std::acos(std::clamp(RowDot(x, y, i), -1.0, 1.0)), 1e-7);
      for (int64_t k = 0; k < n; ++k)
        EXPECT_NEAR(back[i * n + k], y[i * n + k], 1e-12);
    }
  }
}

TEST(GeodesicPathTest, OnTheSphereTangentAndTheDerivative) {
  GeodesicSpherePath path;
  const int64_t rows = 30, n = 3;
  Tensor x0 = UniformPoints(rows, n, 3), x1 = UniformPoints(rows, n, 4);
  Rng rng(5);
  Tensor t = Tensor::Rand({rows, 1}, rng);
  auto s = path.Sample(x0, x1, t);
  const double h = 1e-5;
  auto up = path.Sample(x0, x1, t + h), down = path.Sample(x0, x1, t - h);
  for (int64_t i = 0; i < rows; ++i) {
    EXPECT_NEAR(RowDot(s.x, s.x, i), 1, 1e-12);
    EXPECT_NEAR(RowDot(s.x, s.velocity, i), 0, 1e-12);
    for (int64_t k = 0; k < n; ++k)
      EXPECT_NEAR(s.velocity[i * n + k],
                  (up.x[i * n + k] - down.x[i * n + k]) / (2 * h), 1e-8);
  }
  auto ends = path.Sample(x0, x1, Tensor::Zeros({rows, 1}));
  auto last = path.Sample(x0, x1, Tensor::Full({rows, 1}, 1.0));
  for (int64_t i = 0; i < rows * n; ++i) {
    EXPECT_NEAR(ends.x[i], x0[i], 1e-15);
    EXPECT_NEAR(last.x[i], x1[i], 1e-12);
  }
}

std::shared_ptr<TangentProjectedField> Field(uint64_t seed, double scale) {
  Rng rng(seed);
  auto net =
      ConcatSquashNet::Create(3, {16}, nn::Activation::kTanh, rng).value();
  for (const Tensor& p : net->Parameters()) {
    Tensor q = p;
    double* v = q.mutable_data<double>();
    for (int64_t i = 0; i < q.numel(); ++i) v[i] *= scale;
  }
  return std::make_shared<TangentProjectedField>(net);
}

TEST(SphereCnfTest, FieldIsTangentAndTheFlowStaysOnTheSphere) {
  auto field = Field(6, 2.0);
  Tensor z = UniformPoints(50, 3, 7);
  Tensor f = (*field)(Tensor::Scalar(0.3), z, Tensor());
  for (int64_t i = 0; i < 50; ++i) EXPECT_NEAR(RowDot(z, f, i), 0, 1e-12);
  auto cnf = SphereCnf::Create(field, 0.02).value();
  NoGradScope no_grad;
  auto fwd = cnf->Forward(z);
  auto back = cnf->Inverse(fwd.value);
  EXPECT_TRUE(Manifold::Sphere(3).ContainsAll(fwd.value, 1e-12));
  EXPECT_TRUE(Manifold::Sphere(3).ContainsAll(back.value, 1e-12));
  // RK4 at h = 0.02 on a field that shrinks areas by e^-6: errors ~1e-7.
  for (int64_t i = 0; i < 150; ++i) EXPECT_NEAR(back.value[i], z[i], 1e-6);
  for (int64_t i = 0; i < 50; ++i)
    EXPECT_NEAR(fwd.logdet[i], -back.logdet[i], 2e-6);
  EXPECT_EQ(fwd.extra(flows::cnf::kNfe)[0], 200);
}

// The integrated Riemannian divergence is log R of the time-1 map (the
// volume ratio of its autodiff Jacobian, volume_ratio.h): equal up to the
// RK4 error of the two computations.
TEST(SphereCnfTest, LogdetIsTheVolumeRatio) {
  auto cnf = SphereCnf::Create(Field(8, 2.0), 0.01).value();
  const Manifold sphere = Manifold::Sphere(3);
  Tensor x = UniformPoints(5, 3, 9);
  TensorFn map = [&](const Tensor& y) { return cnf->Forward(y).value; };
  Tensor logdet;
  {
    NoGradScope no_grad;
    logdet = cnf->Forward(x).logdet;
  }
  double spread = 0;
  for (int64_t i = 0; i < 5; ++i) {
    const double ratio = VolumeRatio(sphere, map, Row(x, i));
    EXPECT_NEAR(std::log(ratio), logdet[i], 1e-7) << i;
    spread = std::max(spread, std::fabs(logdet[i]));
  }
  EXPECT_GT(spread, 0.05);  // a flow that changes volume
}

// The same for a field on random Fourier features of x and t: its
// divergence (autodiff through sin and cos) is log R of the time-1 map, and
// per-sample times [N, 1] give the scalar time's values.
TEST(SphereCnfTest, FourierFieldLogdetIsTheVolumeRatio) {
  Rng rng(12);
  auto net =
      FourierFeatureField::Create(3, 8, 2.0, {16}, nn::Activation::kTanh, rng)
          .value();
  Tensor x = UniformPoints(5, 3, 13);
  Tensor one = (*net)(Tensor::Scalar(0.3), x, Tensor());
  Tensor each = (*net)(Tensor::Full({5, 1}, 0.3), x, Tensor());
  for (int64_t i = 0; i < 15; ++i) EXPECT_EQ(one[i], each[i]);
  auto cnf =
      SphereCnf::Create(std::make_shared<TangentProjectedField>(net), 0.01)
          .value();
  TensorFn map = [&](const Tensor& y) { return cnf->Forward(y).value; };
  Tensor logdet;
  {
    NoGradScope no_grad;
    logdet = cnf->Forward(x).logdet;
  }
  double spread = 0;
  for (int64_t i = 0; i < 5; ++i) {
    const double ratio = VolumeRatio(Manifold::Sphere(3), map, Row(x, i));
    EXPECT_NEAR(std::log(ratio), logdet[i], 1e-7) << i;
    spread = std::max(spread, std::fabs(logdet[i]));
  }
  EXPECT_GT(spread, 0.05);
  EXPECT_FALSE(
      FourierFeatureField::Create(3, 8, 0.0, {16}, nn::Activation::kTanh, rng)
          .ok());
}

// With a uniform base, q(x) = exp(logdet) / (4 pi) integrates to 1 over S^2
// (midpoint rule in (z, phi): dA = dz dphi).
TEST(SphereCnfTest, DensityIntegratesToOneOnS2) {
  auto cnf = SphereCnf::Create(Field(10, 2.0), 0.02).value();
  const int mz = 60, mp = 120;
  std::vector<double> pts;
  for (int i = 0; i < mz; ++i)
    for (int j = 0; j < mp; ++j) {
      const double z = -1 + (i + 0.5) * 2.0 / mz;
      const double phi = (j + 0.5) * 2 * M_PI / mp, r = std::sqrt(1 - z * z);
      pts.insert(pts.end(), {r * std::cos(phi), r * std::sin(phi), z});
    }
  NoGradScope no_grad;
  auto fwd = cnf->Forward(Tensor::FromVector({mz * mp, 3}, pts));
  double total = 0, lo = 1e300, hi = 0;
  for (int64_t i = 0; i < mz * mp; ++i) {
    const double q = std::exp(fwd.logdet[i]) / (4 * M_PI);
    total += q * (2.0 / mz) * (2 * M_PI / mp);
    lo = std::min(lo, q);
    hi = std::max(hi, q);
  }
  EXPECT_NEAR(total, 1.0, 1e-3);
  EXPECT_GT(hi / lo, 2.0);  // far from uniform
}

TEST(SphereCnfTest, TrainedFieldBeatsUniform) {
  Eigen::Vector3d mu(0, 0.6, 0.8);
  auto vmf = VonMisesFisher::Create(mu, 5.0).value();
  Rng rng(11);
  Tensor train = vmf->Sample(2048, rng), test = vmf->Sample(512, rng);
  auto net =
      ConcatSquashNet::Create(3, {32, 32}, nn::Activation::kTanh, rng).value();
  auto field = std::make_shared<TangentProjectedField>(net);
  auto fm = flows::matching::FlowMatching::Create(
                field, std::make_shared<GeodesicSpherePath>(), {},
                UniformSphereSource(3))
                .value();
  nn::AdamOptions adam_options;
  adam_options.lr = 5e-3;
  auto adam = nn::Adam::Create(*net, adam_options).value();
  for (int step = 0; step < 300; ++step) {
    std::vector<int64_t> rows(256);
    for (auto& r : rows) r = rng.UniformInt(2048);
    adam->ZeroGrad();
    Tensor loss = fm->Loss(IndexSelect(train, 0, rows), Tensor(), rng).value();
    Backward(loss);
    adam->Step();
    Tape::Get().Reset();
  }
  auto cnf = SphereCnf::Create(field, 0.05).value();
  NoGradScope no_grad;
  auto fwd = cnf->Forward(test);
  const double nll = -Mean(fwd.logdet).item() + std::log(4 * M_PI);
  const double truth = -Mean(vmf->LogProb(test)).item();
  EXPECT_LT(nll, std::log(4 * M_PI) - 0.8) << nll << " (vMF " << truth << ")";
  EXPECT_GT(nll, truth - 0.1);
  std::cout << "held-out NLL " << nll << ", vMF " << truth << ", uniform "
            << std::log(4 * M_PI) << "\n";
}

}  // namespace
}  // namespace flowtape::manifolds

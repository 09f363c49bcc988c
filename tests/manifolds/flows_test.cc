// Closed-form manifold flows: inverse round trips (1e-10), outputs stay on
// the manifold, Status for parameters outside the invertible domain, the
// generalized calibration group law, temperature scaling as a special case,
// the normalized linear flow pushing uniform to the ACG, the neural flow.
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "manifolds/calibration.h"
#include "manifolds/manifold.h"
#include "manifolds/manifold_flow.h"
#include "manifolds/neural_sphere_flow.h"
#include "manifolds/sphere_densities.h"
#include "manifolds/sphere_flows.h"
#include "manifolds/volume_ratio.h"
#include "nn/checkpoint.h"
#include "tests/manifolds/test_util.h"

namespace flowtape::manifolds {
namespace {
using testing::AffineOptions;
using testing::CalibrationOptions;
using testing::CouplingOptions;
using testing::RandomInvertible;
using testing::RandomVector;
using testing::SimplexOptions;

double MaxAbsDiff(const Tensor& a, const Tensor& b) {
  double worst = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

void ExpectRoundTrip(const flows::Flow& f, const Manifold& m, const Tensor& x,
                     double tol) {
  NoGradScope no_grad;
  flows::FlowResult fwd = f.Forward(x);
  ASSERT_TRUE(m.ContainsAll(fwd.value, 1e-12)) << f.name();
  flows::FlowResult inv = f.Inverse(fwd.value);
  EXPECT_LT(MaxAbsDiff(inv.value, x), tol) << f.name();
  EXPECT_LT(MaxAbsDiff(inv.logdet, -fwd.logdet), 1e-9) << f.name();
}

TEST(SphereFlows, RoundTrips) {
  Rng rng(11);
  for (int64_t n = 2; n <= 6; ++n) {
    Manifold s = Manifold::Sphere(n);
    Tensor x = s.SampleUniform(50, rng);
    ExpectRoundTrip(
        *NormalizedAffine::Create(AffineOptions(n, 0.5), rng).value(), s, x,
        1e-10);
    ExpectRoundTrip(
        *NormalizedTranslation::Create(AffineOptions(n, 0.5), rng).value(), s,
        x, 1e-10);
    ExpectRoundTrip(
        *NormalizedLinear::Create(AffineOptions(n, 0.5), rng).value(), s, x,
        1e-10);
    Eigen::MatrixXd m = RandomInvertible(n, rng);
    Eigen::VectorXd b = RandomVector(n, rng).normalized() * 0.95;
    ExpectRoundTrip(**NormalizedAffine::Create(m, m * b), s, x, 1e-10);
  }
}

TEST(SphereFlows, TranslationInverseIsTheIssueFormula) {
  Rng rng(12);
  Eigen::VectorXd c(3);
  c << 0.3, -0.5, 0.2;
  auto f = *NormalizedTranslation::Create(c);
  Tensor y = Manifold::Sphere(3).SampleUniform(5, rng);
  Tensor x = f->Inverse(y).value;
  for (int64_t i = 0; i < 5; ++i) {
    Eigen::VectorXd yi = Row(y, i);
    const double yc = yi.dot(c);
    const double rho = yc + std::sqrt(yc * yc + 1.0 - c.squaredNorm());
    EXPECT_LT((Row(x, i) - (rho * yi - c)).norm(), 1e-14);
  }
}

TEST(SphereFlows, RejectsParametersOutsideTheDomain) {
  Eigen::MatrixXd eye = Eigen::MatrixXd::Identity(3, 3);
  Eigen::VectorXd c = Eigen::VectorXd::Constant(3, 0.7);  // |c| = 1.21
  EXPECT_FALSE(NormalizedTranslation::Create(c).ok());
  EXPECT_FALSE(NormalizedAffine::Create(eye, c).ok());
  EXPECT_TRUE(NormalizedAffine::Create(2.0 * eye, c).ok());  // |M^-1 c| < 1
  Eigen::MatrixXd singular = eye;
  singular(2, 2) = 0.0;
  auto s = NormalizedLinear::Create(singular);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("singular"), std::string::npos);
  EXPECT_FALSE(
      NormalizedLinear::Create(Eigen::MatrixXd::Constant(3, 3, NAN)).ok());
}

// Bad options of the random constructors are a Status naming the field.
TEST(SphereFlows, BadOptionsAreAStatus) {
  Rng rng(1);
  auto expect = [](const absl::Status& s, const std::string& what) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(what), std::string::npos) << s;
  };
  expect(NormalizedAffine::Create(AffineOptions(1), rng).status(), "n = 1");
  expect(NormalizedTranslation::Create(AffineOptions(0), rng).status(),
         "n = 0");
  expect(NormalizedLinear::Create(AffineOptions(3, NAN), rng).status(),
         "noise = nan");
  expect(NormalizedAffine::Create(AffineOptions(3, -1), rng).status(),
         "noise = -1");
  CylindricalCouplingFlowOptions no_components, negative_hidden;
  no_components.components = 0;
  negative_hidden.hidden = -2;
  expect(CylindricalCouplingFlow::Create(no_components, rng).status(),
         "components = 0");
  expect(CylindricalCouplingFlow::Create(negative_hidden, rng).status(),
         "hidden = -2");
  expect(SimplexCalibration::Create(SimplexOptions(1)).status(), "n = 1");
  expect(GeneralizedCalibration::Create(CalibrationOptions(0), rng).status(),
         "n = 0");
  expect(GeneralizedCalibration::Create(CalibrationOptions(3, INFINITY), rng)
             .status(),
         "noise = inf");
  // Valid options: the identity map at zero noise.
  auto f = NormalizedAffine::Create(AffineOptions(3), rng).value();
  Tensor x = Manifold::Sphere(3).SampleUniform(4, rng);
  EXPECT_LT(MaxAbsDiff(f->Forward(x).value, x), 1e-15);
  EXPECT_TRUE(CylindricalCouplingFlow::Create({}, rng).ok());
}

TEST(SphereFlows, ParametrisationStaysInvertibleForWildParameters) {
  Rng rng(13);
  auto f = NormalizedAffine::Create(AffineOptions(4, 1.5), rng)
               .value();  // large random parameters
  Manifold s = Manifold::Sphere(4);
  NoGradScope no_grad;
  double bb = Sum(Square(f->B())).item();
  EXPECT_LT(bb, 1.0);
  EXPECT_GT(std::abs(f->MValue().determinant()), 0.0);
  ExpectRoundTrip(*f, s, s.SampleUniform(20, rng), 1e-8);
}

TEST(SphereFlows, NormalizedLinearPushesUniformToAcg) {
  Rng rng(14);
  for (int64_t n = 2; n <= 5; ++n) {
    Eigen::MatrixXd m = RandomInvertible(n, rng);
    auto acg = *AngularCentralGaussian::Create(m * m.transpose());
    ManifoldFlowModel model(
        UniformSphere::Create(n).value(),
        {std::shared_ptr<flows::Flow>(*NormalizedLinear::Create(m.inverse()))});
    // The model's generative map is f = (y -> M^-1 y / |.|)^-1 = (x -> Mx/|.|).
    Tensor y = Manifold::Sphere(n).SampleUniform(20, rng);
    NoGradScope no_grad;
    EXPECT_LT(MaxAbsDiff(model.LogProb(y), acg->LogProb(y)), 1e-10);
  }
}

TEST(Calibration, RoundTripsAndStaysOnSimplex) {
  Rng rng(15);
  for (int64_t n = 2; n <= 6; ++n) {
    Manifold d = Manifold::Simplex(n);
    Tensor p = d.SampleUniform(50, rng);
    std::vector<double> c(n);
    for (double& v : c) v = rng.Normal();
    ExpectRoundTrip(**SimplexCalibration::Create(0.4, c), d, p, 1e-10);
    ExpectRoundTrip(**SimplexCalibration::Create(-2.5, c), d, p, 1e-10);
    ExpectRoundTrip(
        *GeneralizedCalibration::Create(CalibrationOptions(n, 0.4), rng)
             .value(),
        d, p, 1e-10);
  }
}

TEST(Calibration, TemperatureScalingIsSoftmaxOfScaledLogits) {
  auto t = *SimplexCalibration::Create(2.0, {0, 0, 0}, true);
  Tensor logits = Tensor::FromVector({1, 3}, {1.0, -0.5, 2.0});
  Tensor q = t->Forward(Softmax(logits, 1)).value;
  Tensor expect = Softmax(logits / 2.0, 1);
  EXPECT_LT(MaxAbsDiff(q, expect), 1e-15);
  EXPECT_TRUE(t->Parameters().size() == 1u);  // only the temperature
  EXPECT_FALSE(SimplexCalibration::Create(0.0, {0, 0}).ok());
  // c sets n: an empty c (or n = 1) has no simplex to act on.
  EXPECT_EQ(SimplexCalibration::Create(2.0, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SimplexCalibration::Create(2.0, {0.0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(SimplexCalibration::Create(1.0, {1, 0}, true).ok());
}

TEST(Calibration, GeneralizedConstraintHoldsExactlyByConstruction) {
  Rng rng(16);
  auto g =
      GeneralizedCalibration::Create(CalibrationOptions(6, 1.0), rng).value();
  Eigen::MatrixXd a = g->AValue();
  Eigen::VectorXd row_sums = a.rowwise().sum();
  EXPECT_LT((row_sums.array() - g->lambda()).abs().maxCoeff(), 1e-13);
  // A 1 != lambda 1 and singular A are rejected.
  Eigen::MatrixXd bad = Eigen::MatrixXd::Identity(3, 3);
  bad(0, 1) = 0.5;
  EXPECT_FALSE(
      GeneralizedCalibration::Create(bad, Eigen::VectorXd::Zero(3)).ok());
  EXPECT_FALSE(GeneralizedCalibration::Create(Eigen::MatrixXd::Ones(3, 3),
                                              Eigen::VectorXd::Zero(3))
                   .ok());
}

TEST(Calibration, GeneralizedCalibrationIsAGroup) {
  Rng rng(17);
  for (int64_t n = 2; n <= 6; ++n) {
    auto f1 =
        GeneralizedCalibration::Create(CalibrationOptions(n, 0.5), rng).value();
    auto f2 =
        GeneralizedCalibration::Create(CalibrationOptions(n, 0.5), rng).value();
    Eigen::MatrixXd a = f2->AValue() * f1->AValue();
    Eigen::VectorXd c = f2->AValue() * f1->CValue() + f2->CValue();
    auto f21 = *GeneralizedCalibration::Create(a, c);
    EXPECT_NEAR(f21->lambda(), f1->lambda() * f2->lambda(), 1e-12);
    Tensor p = Manifold::Simplex(n).SampleUniform(20, rng);
    NoGradScope no_grad;
    flows::FlowResult r1 = f1->Forward(p), r2 = f2->Forward(r1.value);
    flows::FlowResult r21 = f21->Forward(p);
    EXPECT_LT(MaxAbsDiff(r21.value, r2.value), 1e-12);
    EXPECT_LT(MaxAbsDiff(r21.logdet, r1.logdet + r2.logdet), 1e-10);
    // The identity element and inverses are in the family too.
    auto inv = *GeneralizedCalibration::Create(
        f1->AValue().inverse(), -f1->AValue().inverse() * f1->CValue());
    EXPECT_LT(MaxAbsDiff(inv->Forward(r1.value).value, p), 1e-12);
  }
}

TEST(NeuralSphereFlow, RoundTripAndOnSphere) {
  Rng rng(18);
  auto f = CylindricalCouplingFlow::Create(CouplingOptions(4, 16), rng).value();
  for (Tensor p : f->Parameters())
    for (int64_t j = 0; j < p.numel(); ++j)
      p.mutable_data<double>()[j] += 0.3 * rng.Normal();
  Manifold s = Manifold::Sphere(3);
  Tensor x = s.SampleUniform(40, rng);
  flows::FlowResult fwd = f->Forward(x);
  ASSERT_TRUE(s.ContainsAll(fwd.value.Detach(), 1e-12));
  flows::FlowResult inv = f->Inverse(fwd.value.Detach());
  EXPECT_LT(MaxAbsDiff(inv.value, x), 1e-10);
  EXPECT_LT(MaxAbsDiff(inv.logdet, fwd.logdet.Detach() * -1.0), 1e-9);
  Tape::Get().Reset();
}

// The random rotation Q is chosen at construction: a checkpoint must carry it,
// so a flow built from another seed computes the same map after loading.
TEST(NeuralSphereFlow, CheckpointRestoresRotationAcrossSeeds) {
  Rng r1(21), r2(22), rx(23);
  auto saved =
      CylindricalCouplingFlow::Create(CouplingOptions(3, 8), r1).value();
  auto fresh =
      CylindricalCouplingFlow::Create(CouplingOptions(3, 8), r2).value();
  for (Tensor p : saved->Parameters())
    for (int64_t j = 0; j < p.numel(); ++j)
      p.mutable_data<double>()[j] += 0.3 * rx.Normal();
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path =
      std::string(dir != nullptr ? dir : "/tmp") + "/sphere_flow.ckpt";
  ASSERT_TRUE(nn::SaveCheckpoint(path, *saved).ok());
  absl::Status st = nn::LoadCheckpoint(path, *fresh);
  ASSERT_TRUE(st.ok()) << st;
  NoGradScope no_grad;
  Tensor x = Manifold::Sphere(3).SampleUniform(20, rx);
  flows::FlowResult want = saved->Forward(x), got = fresh->Forward(x);
  EXPECT_LT(MaxAbsDiff(got.value, want.value), 1e-14);
  EXPECT_LT(MaxAbsDiff(got.logdet, want.logdet), 1e-14);
}

// A factored M (Create) carries a permutation and signs: they are buffers, so
// a checkpoint restores them into a flow built another way.
TEST(SphereFlows, CheckpointRestoresPermutationAndSigns) {
  Rng rng(24);
  Eigen::MatrixXd m(3, 3);
  m << 0.1, -2.0, 0.3, 1.5, 0.2, -0.4, 0.3, 0.5, -1.2;  // pivots, signs < 0
  auto saved = *NormalizedAffine::Create(m, Eigen::Vector3d(0.2, 0.1, -0.3));
  auto fresh = NormalizedAffine::Create(AffineOptions(3, 0.1), rng).value();
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path =
      std::string(dir != nullptr ? dir : "/tmp") + "/affine.ckpt";
  ASSERT_TRUE(nn::SaveCheckpoint(path, *saved).ok());
  absl::Status st = nn::LoadCheckpoint(path, *fresh);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_LT((fresh->MValue() - m).cwiseAbs().maxCoeff(), 1e-14);
  NoGradScope no_grad;
  Tensor x = Manifold::Sphere(3).SampleUniform(10, rng);
  EXPECT_LT(MaxAbsDiff(fresh->Forward(x).value, saved->Forward(x).value),
            1e-15);
}

// Near and at the poles of the cylinder (z = +-1, where z rounds to +-1
// below ~1e-8 rad and the azimuth is undefined at the pole itself): values
// on the sphere, log R finite and equal to the QR-basis determinant of the
// tangent Jacobian (a separate code path), log R -> log 0.05 at the poles
// (1 - u' ~ 0.05 (1 - u) there), full-precision round trips, finite
// parameter gradients, and continuity of the map into the pole.
TEST(NeuralSphereFlow, FiniteAndAccurateAtThePoles) {
  Rng rng(3);
  auto f = CylindricalCouplingFlow::Create(CouplingOptions(3, 8), rng).value();
  for (Tensor p : f->Parameters())
    for (int64_t j = 0; j < p.numel(); ++j)
      p.mutable_data<double>()[j] += 0.3 * rng.Normal();
  const Manifold s = Manifold::Sphere(3);
  auto map = [&](const Tensor& v) { return f->Map(v); };
  for (double pole : {1.0, -1.0}) {
    std::vector<double> rows;
    const std::vector<double> angles{1e-3, 1e-8, 1e-12, 1e-20, 1e-40, 0.0};
    for (double a : angles)
      rows.insert(rows.end(),
                  {std::sin(a) * std::cos(0.7), std::sin(a) * std::sin(0.7),
                   pole * std::cos(a)});
    const int64_t n = static_cast<int64_t>(angles.size());
    Tensor x = Tensor::FromVector({n, 3}, rows);
    {
      NoGradScope no_grad;
      flows::FlowResult fwd = f->Forward(x);
      ASSERT_TRUE(s.ContainsAll(fwd.value, 1e-15));
      for (int64_t i = 0; i < n; ++i) {
        const Eigen::Vector3d xi(x[3 * i], x[3 * i + 1], x[3 * i + 2]);
        ASSERT_TRUE(std::isfinite(fwd.logdet[i])) << angles[i];
        EXPECT_NEAR(fwd.logdet[i], std::log(VolumeRatio(s, map, xi)), 1e-9)
            << "angle " << angles[i];
        // Continuity: |f(x) - f(pole)| <= C |x - pole| (C ~ sqrt(0.05)).
        double d2 = 0;
        for (int64_t j = 0; j < 3; ++j)
          d2 += std::pow(fwd.value[3 * i + j] - fwd.value[3 * (n - 1) + j], 2);
        EXPECT_LT(std::sqrt(d2), 0.5 * angles[i] + 1e-15) << angles[i];
      }
      EXPECT_NEAR(fwd.logdet[n - 1], std::log(0.05), 1e-12);  // the pole
      EXPECT_NEAR(fwd.logdet[n - 2], std::log(0.05), 1e-12);  // 1e-40 rad
      ExpectRoundTrip(*f, s, x, 1e-14);
    }
    Tape::Get().Reset();
    Backward(Sum(f->Forward(x).logdet));
    for (const Tensor& p : f->Parameters())
      for (int64_t j = 0; j < p.numel(); ++j)
        ASSERT_TRUE(std::isfinite(p.grad()[j]));
    f->ZeroGrad();
    Tape::Get().Reset();
  }
}

}  // namespace
}  // namespace flowtape::manifolds

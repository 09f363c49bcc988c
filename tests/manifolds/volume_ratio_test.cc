// Every closed-form volume ratio against the generic |det(T_y' F_x T_x)|
// (autodiff Jacobian, QR tangent bases), n = 2..6; basis invariance;
// R_f R_{f^-1} = 1; multiplicativity; flat simplex form; the differentiable
// Gram form and its gradients.
#include "manifolds/volume_ratio.h"

#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "manifolds/calibration.h"
#include "manifolds/manifold.h"
#include "manifolds/neural_sphere_flow.h"
#include "manifolds/sphere_flows.h"
#include "tests/manifolds/test_util.h"

namespace flowtape::manifolds {
namespace {
using testing::AffineOptions;
using testing::CalibrationOptions;
using testing::CouplingOptions;
using testing::ParameterGradientError;
using testing::RandomInvertible;
using testing::RandomMatrix;
using testing::RandomVector;
using testing::SimplexOptions;

TensorFn ForwardMap(const flows::Flow& f) {
  return [&f](const Tensor& x) { return f.Forward(x).value; };
}
TensorFn InverseMap(const flows::Flow& f) {
  return [&f](const Tensor& x) { return f.Inverse(x).value; };
}
double ClosedLogR(const flows::Flow& f, const Eigen::VectorXd& x) {
  NoGradScope no_grad;
  return f.Forward(FromRows(x.transpose())).logdet.item();
}

// Random flows of every closed-form family on the sphere S^(n-1).
std::vector<std::shared_ptr<NormalizedAffine>> SphereFlows(int64_t n,
                                                           Rng& rng) {
  std::vector<std::shared_ptr<NormalizedAffine>> out;
  Eigen::MatrixXd m = RandomInvertible(n, rng);
  Eigen::VectorXd b = RandomVector(n, rng);
  b *= 0.8 / b.norm();
  out.push_back(*NormalizedAffine::Create(m, m * b));
  out.push_back(*NormalizedTranslation::Create(b));
  out.push_back(*NormalizedLinear::Create(m));
  return out;
}

std::vector<std::shared_ptr<flows::Flow>> SimplexFlows(int64_t n, Rng& rng) {
  std::vector<std::shared_ptr<flows::Flow>> out;
  std::vector<double> c(n);
  for (double& v : c) v = rng.Normal();
  out.push_back(*SimplexCalibration::Create(0.3 + 2.0 * rng.Uniform(), c));
  out.push_back(*SimplexCalibration::Create(-1.7, c));
  out.push_back(*SimplexCalibration::Create(0.6, std::vector<double>(n, 0.0),
                                            /*temperature_only=*/true));
  Eigen::MatrixXd a = RandomInvertible(n, rng);
  a -= (a.rowwise().sum().array() - 1.3).matrix() *
       Eigen::RowVectorXd::Ones(n) / n;  // now A 1 = 1.3 * 1
  out.push_back(*GeneralizedCalibration::Create(a, RandomVector(n, rng)));
  return out;
}

TEST(VolumeRatio, SphereClosedFormsMatchGenericQr) {
  Rng rng(1);
  for (int64_t n = 2; n <= 6; ++n) {
    Manifold s = Manifold::Sphere(n);
    for (int trial = 0; trial < 3; ++trial)
      for (auto& f : SphereFlows(n, rng)) {
        Eigen::VectorXd x = s.Project(RandomVector(n, rng));
        const double generic = VolumeRatio(s, ForwardMap(*f), x);
        EXPECT_NEAR(std::log(generic), ClosedLogR(*f, x), 1e-9)
            << f->name() << " n=" << n;
      }
  }
}

TEST(VolumeRatio, SimplexClosedFormsMatchGenericQrAndFlatForm) {
  Rng rng(2);
  for (int64_t n = 2; n <= 6; ++n) {
    Manifold d = Manifold::Simplex(n);
    for (int trial = 0; trial < 3; ++trial)
      for (auto& f : SimplexFlows(n, rng)) {
        Eigen::VectorXd p = Row(d.SampleUniform(1, rng), 0);
        const double closed = ClosedLogR(*f, p);
        EXPECT_NEAR(std::log(VolumeRatio(d, ForwardMap(*f), p)), closed, 1e-9)
            << f->name() << " n=" << n;
        EXPECT_NEAR(std::log(FlatSimplexVolumeRatio(ForwardMap(*f), p)), closed,
                    1e-9)
            << f->name() << " n=" << n;
      }
  }
}

// An orthonormal tangent basis built independently of Manifold::TangentBasis:
// Gram-Schmidt (twice, for accuracy) on random vectors projected onto the
// tangent space (sphere: I - x x'; simplex: I - 1 1'/n).
Eigen::MatrixXd GramSchmidtBasis(const Manifold& m, const Eigen::VectorXd& x,
                                 Rng& rng) {
  const int64_t n = x.size();
  const Eigen::VectorXd nu = m.kind() == ManifoldKind::kSphere
                                 ? Eigen::VectorXd(x / x.norm())
                                 : Eigen::VectorXd::Ones(n) / std::sqrt(n);
  Eigen::MatrixXd t(n, n - 1);
  for (int64_t k = 0; k < n - 1; ++k) {
    Eigen::VectorXd v = RandomVector(n, rng);
    for (int pass = 0; pass < 2; ++pass) {
      v -= nu.dot(v) * nu;
      for (int64_t j = 0; j < k; ++j) v -= t.col(j).dot(v) * t.col(j);
    }
    t.col(k) = v / v.norm();
  }
  return t;
}

// R from Gram-Schmidt bases at x and y equals the library's QR-basis
// VolumeRatio(m, f, x) and the closed form, on the sphere and the simplex,
// also for the neural flow (no closed form).
TEST(VolumeRatio, GenericRatioDoesNotDependOnTheBasis) {
  Rng rng(3);
  auto check = [&](const Manifold& m, const TensorFn& f,
                   const Eigen::VectorXd& x, double closed_log_r) {
    Eigen::VectorXd y;
    {
      NoGradScope no_grad;
      y = Row(f(FromRows(x.transpose())), 0);
    }
    Eigen::MatrixXd tx = GramSchmidtBasis(m, x, rng);
    Eigen::MatrixXd ty = GramSchmidtBasis(m, y, rng);
    const double gs = VolumeRatio(AmbientJacobian(f, x), tx, ty);
    const double qr = VolumeRatio(m, f, x);
    EXPECT_NEAR(gs, qr, 1e-11 * qr) << m.name() << " n=" << x.size();
    EXPECT_NEAR(std::log(gs), closed_log_r, 1e-9) << m.name();
    // The library's bases are orthonormal and tangent too.
    Eigen::MatrixXd tq = m.TangentBasis(x);
    const int64_t k = x.size() - 1;
    EXPECT_LT((tq.transpose() * tq - Eigen::MatrixXd::Identity(k, k)).norm(),
              1e-12);
    EXPECT_LT((m.ProjectionJacobian(x) * tq - tq).norm(), 1e-12);
  };
  for (int64_t n = 2; n <= 6; ++n) {
    Manifold s = Manifold::Sphere(n), d = Manifold::Simplex(n);
    for (auto& f : SphereFlows(n, rng)) {
      Eigen::VectorXd x = s.Project(RandomVector(n, rng));
      check(s, ForwardMap(*f), x, ClosedLogR(*f, x));
    }
    for (auto& f : SimplexFlows(n, rng)) {
      Eigen::VectorXd p = Row(d.SampleUniform(1, rng), 0);
      check(d, ForwardMap(*f), p, ClosedLogR(*f, p));
    }
  }
  auto neural =
      CylindricalCouplingFlow::Create(CouplingOptions(3, 8), rng).value();
  for (Tensor p : neural->Parameters())
    for (int64_t j = 0; j < p.numel(); ++j)
      p.mutable_data<double>()[j] += 0.3 * rng.Normal();
  const Manifold s3 = Manifold::Sphere(3);
  for (int trial = 0; trial < 3; ++trial) {
    Eigen::VectorXd x = s3.Project(RandomVector(3, rng));
    check(
        s3, [&](const Tensor& v) { return neural->Map(v); }, x,
        ClosedLogR(*neural, x));  // its Forward uses the Gram form
  }
}

TEST(VolumeRatio, RatioOfInverseIsReciprocal) {
  Rng rng(4);
  for (int64_t n = 2; n <= 6; ++n) {
    Manifold s = Manifold::Sphere(n), d = Manifold::Simplex(n);
    for (auto& f : SphereFlows(n, rng)) {
      Eigen::VectorXd x = s.Project(RandomVector(n, rng));
      Eigen::VectorXd y = Row(f->Forward(FromRows(x.transpose())).value, 0);
      EXPECT_NEAR(
          VolumeRatio(s, ForwardMap(*f), x) * VolumeRatio(s, InverseMap(*f), y),
          1.0, 1e-9);
    }
    for (auto& f : SimplexFlows(n, rng)) {
      Eigen::VectorXd p = Row(d.SampleUniform(1, rng), 0);
      Eigen::VectorXd q = Row(f->Forward(FromRows(p.transpose())).value, 0);
      EXPECT_NEAR(
          VolumeRatio(d, ForwardMap(*f), p) * VolumeRatio(d, InverseMap(*f), q),
          1.0, 1e-9);
    }
  }
}

TEST(VolumeRatio, MultiplicativeUnderComposition) {
  Rng rng(5);
  for (int64_t n = 2; n <= 6; ++n) {
    Manifold s = Manifold::Sphere(n);
    auto flows = SphereFlows(n, rng);
    TensorFn g = ForwardMap(*flows[1]), h = ForwardMap(*flows[0]);
    TensorFn hg = [&](const Tensor& x) { return h(g(x)); };
    Eigen::VectorXd x = s.Project(RandomVector(n, rng));
    Eigen::VectorXd gx = Row(g(FromRows(x.transpose())), 0);
    EXPECT_NEAR(VolumeRatio(s, hg, x),
                VolumeRatio(s, g, x) * VolumeRatio(s, h, gx),
                1e-9 * VolumeRatio(s, hg, x));
  }
}

TEST(VolumeRatio, GramFormMatchesClosedFormBatched) {
  Rng rng(6);
  for (int64_t n = 2; n <= 6; ++n) {
    Manifold s = Manifold::Sphere(n);
    auto f = NormalizedAffine::Create(AffineOptions(n, 0.3), rng).value();
    Tensor x = s.SampleUniform(7, rng);
    Tensor generic = LogVolumeRatio(s, ForwardMap(*f), x);
    NoGradScope no_grad;
    Tensor closed = f->Forward(x).logdet;
    for (int64_t i = 0; i < 7; ++i) EXPECT_NEAR(generic[i], closed[i], 1e-9);
    Tape::Get().Reset();
  }
}

TEST(VolumeRatio, LogDetSpdMatchesEigen) {
  Rng rng(7);
  for (int64_t k = 1; k <= 5; ++k) {
    Eigen::MatrixXd b = RandomMatrix(k, k, rng);
    Eigen::MatrixXd g = b * b.transpose() + Eigen::MatrixXd::Identity(k, k);
    Tensor t = Reshape(FromRows(g), {1, k, k});
    EXPECT_NEAR(LogDetSpd(t).item(), std::log(g.determinant()), 1e-12);
  }
}

TEST(VolumeRatioGradient, ClosedFormLogRMatchesFiniteDifferences) {
  Rng rng(8);
  Manifold s = Manifold::Sphere(4);
  Tensor x = s.SampleUniform(5, rng);
  auto f = NormalizedAffine::Create(AffineOptions(4, 0.3), rng).value();
  EXPECT_LT(
      ParameterGradientError(*f, [&] { return Sum(f->Forward(x).logdet); }),
      1e-6);
  Tensor p = Manifold::Simplex(5).SampleUniform(5, rng);
  auto g =
      GeneralizedCalibration::Create(CalibrationOptions(5, 0.3), rng).value();
  EXPECT_LT(
      ParameterGradientError(*g, [&] { return Sum(g->Forward(p).logdet); }),
      1e-6);
  auto c = SimplexCalibration::Create(SimplexOptions(5)).value();
  EXPECT_LT(
      ParameterGradientError(*c, [&] { return Sum(c->Forward(p).logdet); }),
      1e-6);
}

TEST(VolumeRatioGradient, GenericLogRMatchesFiniteDifferences) {
  Rng rng(9);
  Manifold s = Manifold::Sphere(3);
  Tensor x = s.SampleUniform(4, rng);
  auto f = NormalizedAffine::Create(AffineOptions(3, 0.3), rng).value();
  auto generic = [&] { return Sum(LogVolumeRatio(s, ForwardMap(*f), x)); };
  EXPECT_LT(ParameterGradientError(*f, generic), 1e-6);
  auto nf = CylindricalCouplingFlow::Create(CouplingOptions(3, 8), rng).value();
  // Move off the zero-initialised last layers so every parameter matters.
  for (Tensor p : nf->Parameters())
    for (int64_t j = 0; j < p.numel(); ++j)
      p.mutable_data<double>()[j] += 0.3 * rng.Normal();
  EXPECT_LT(
      ParameterGradientError(*nf, [&] { return Sum(nf->Forward(x).logdet); }),
      1e-6);
}

TEST(VolumeRatioGradient, GenericLogRGradientFlowsThroughItsInput) {
  // The point x = g(x0) depends on g's parameters: the generic ratio must be
  // differentiated through x as well (a constant basis at x would be wrong).
  // At this seed the simplex points stay well inside (min coordinate after
  // the map ~0.03): near the boundary (~1e-5) the generic ratio loses digits
  // and central differences become noise-dominated (error grows as h falls).
  Rng rng(13);
  Manifold s = Manifold::Sphere(3);
  Tensor x0 = s.SampleUniform(4, rng);
  auto g = NormalizedAffine::Create(AffineOptions(3, 0.3), rng).value();
  auto f = NormalizedAffine::Create(AffineOptions(3, 0.3), rng).value();
  EXPECT_LT(
      ParameterGradientError(*g,
                             [&] {
                               return Sum(LogVolumeRatio(s, ForwardMap(*f),
                                                         g->Forward(x0).value));
                             }),
      1e-6);
  Manifold d = Manifold::Simplex(4);
  Tensor p0 = d.SampleUniform(4, rng);
  auto gc =
      GeneralizedCalibration::Create(CalibrationOptions(4, 0.3), rng).value();
  auto fc =
      GeneralizedCalibration::Create(CalibrationOptions(4, 0.3), rng).value();
  EXPECT_LT(
      ParameterGradientError(*gc,
                             [&] {
                               return Sum(LogVolumeRatio(
                                   d, ForwardMap(*fc), gc->Forward(p0).value));
                             }),
      1e-6);
  // Simplex values too: generic Gram form against the closed form.
  Tensor generic = LogVolumeRatio(d, ForwardMap(*fc), p0);
  NoGradScope no_grad;
  Tensor closed = fc->Forward(p0).logdet;
  for (int64_t i = 0; i < 4; ++i) EXPECT_NEAR(generic[i], closed[i], 1e-9);
}

}  // namespace
}  // namespace flowtape::manifolds

// Manifold basics: pi is idempotent and its Jacobian Pi_x matches the
// autodiff Jacobian; T_x is an orthonormal basis of the tangent space from
// the QR of Pi_x; membership; uniform samples; total measures.
#include "manifolds/manifold.h"

#include <cmath>

#include "autodiff/ops.h"
#include "gtest/gtest.h"
#include "manifolds/volume_ratio.h"
#include "tests/manifolds/test_util.h"

namespace flowtape::manifolds {
namespace {
using testing::RandomVector;

TEST(Manifold, ProjectionJacobianMatchesAutodiffAndIsIdempotent) {
  Rng rng(31);
  for (int64_t n = 2; n <= 6; ++n)
    for (Manifold m : {Manifold::Sphere(n), Manifold::Simplex(n)}) {
      Eigen::VectorXd z = RandomVector(n, rng);
      if (m.kind() == ManifoldKind::kSimplex) z = z.cwiseAbs().array() + 0.1;
      TensorFn pi = [&m](const Tensor& t) { return m.Project(t); };
      EXPECT_LT((AmbientJacobian(pi, z) - m.ProjectionJacobian(z)).norm(),
                1e-12);
      Eigen::VectorXd x = m.Project(z);
      EXPECT_TRUE(m.Contains(x, 1e-12));
      EXPECT_LT((m.Project(x) - x).norm(), 1e-15);
      Eigen::MatrixXd p = m.ProjectionJacobian(x);
      EXPECT_LT((p * p - p).norm(), 1e-12);  // on M, Pi_x is a projector
      // T_x: orthonormal, spans the range of Pi_x (= tangent space).
      Eigen::MatrixXd t = m.TangentBasis(x);
      ASSERT_EQ(t.cols(), n - 1);
      EXPECT_LT(
          (t.transpose() * t - Eigen::MatrixXd::Identity(n - 1, n - 1)).norm(),
          1e-12);
      EXPECT_LT((p * t - t).norm(), 1e-12);
      if (m.kind() == ManifoldKind::kSphere)
        EXPECT_LT((x.transpose() * t).norm(), 1e-12);
      else
        EXPECT_LT((Eigen::RowVectorXd::Ones(n) * t).norm(), 1e-12);
    }
}

TEST(Manifold, BasisAtCoordinatePoints) {
  // Pi at e_1 has a zero first column: column pivoting still finds a basis.
  Manifold s = Manifold::Sphere(4);
  Eigen::VectorXd e1 = Eigen::VectorXd::Unit(4, 0);
  Eigen::MatrixXd t = s.TangentBasis(e1);
  EXPECT_LT((e1.transpose() * t).norm(), 1e-15);
  EXPECT_NEAR(std::abs((t.transpose() * t).determinant()), 1.0, 1e-14);
}

TEST(Manifold, MembershipAndSampling) {
  Rng rng(32);
  Manifold s = Manifold::Sphere(3), d = Manifold::Simplex(3);
  EXPECT_FALSE(s.Contains(Eigen::Vector3d(1, 1, 0), 1e-6));
  EXPECT_TRUE(s.Contains(Eigen::Vector3d(1 + 1e-10, 0, 0), 1e-9));
  EXPECT_FALSE(d.Contains(Eigen::Vector3d(1.2, -0.2, 0), 1e-9));
  EXPECT_FALSE(d.Contains(Eigen::Vector3d(NAN, 0.5, 0.5), 1e-9));
  Tensor x = s.SampleUniform(20000, rng);
  ASSERT_TRUE(s.ContainsAll(x, 1e-12));
  // E[x x'] = I / n for the uniform sphere.
  Tensor second = MatMulT(x, x, true, false) / 20000.0;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      EXPECT_NEAR(second[i * 3 + j], i == j ? 1.0 / 3 : 0.0, 0.01);
  Tensor p = d.SampleUniform(20000, rng);
  ASSERT_TRUE(d.ContainsAll(p, 1e-12));
  EXPECT_NEAR(Mean(Narrow(p, 1, 0, 1)).item(), 1.0 / 3, 0.01);
}

TEST(Manifold, TotalMeasure) {
  EXPECT_NEAR(Manifold::Sphere(3).LogVolume(), std::log(4 * M_PI), 1e-14);
  EXPECT_NEAR(Manifold::Sphere(2).LogVolume(), std::log(2 * M_PI), 1e-14);
  EXPECT_NEAR(Manifold::Sphere(5).LogVolume(), std::log(8 * M_PI * M_PI / 3),
              1e-14);
  EXPECT_NEAR(Manifold::Simplex(3).LogVolume(), std::log(0.5), 1e-14);
}

}  // namespace
}  // namespace flowtape::manifolds

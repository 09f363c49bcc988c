#include "flows/matching/cost.h"

#include <cmath>

#include "autodiff/tensor.h"
#include "gtest/gtest.h"

namespace flowtape::flows::matching {
namespace {

TEST(CostTest, MatchesDirectDifferences) {
  Rng rng(0);
  Eigen::MatrixXd x0(7, 3), x1(5, 3);
  for (int i = 0; i < x0.size(); ++i) x0.data()[i] = 3 * rng.Normal();
  for (int i = 0; i < x1.size(); ++i) x1.data()[i] = rng.Normal() + 1;
  absl::StatusOr<Eigen::MatrixXd> c = SquaredEuclideanCost(x0, x1);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->rows(), 7);
  ASSERT_EQ(c->cols(), 5);
  for (int i = 0; i < 7; ++i) {
    for (int j = 0; j < 5; ++j) {
      const double direct = (x0.row(i) - x1.row(j)).squaredNorm();
      const double scale = x0.row(i).squaredNorm() + x1.row(j).squaredNorm();
      EXPECT_NEAR((*c)(i, j), direct, 1e-14 * scale) << i << ", " << j;
    }
  }
  // Identical points: ~0 and never negative.
  absl::StatusOr<Eigen::MatrixXd> self = SquaredEuclideanCost(x0, x0);
  ASSERT_TRUE(self.ok());
  EXPECT_GE(self->minCoeff(), 0.0);
  for (int i = 0; i < 7; ++i)
    EXPECT_LE((*self)(i, i), 1e-14 * x0.row(i).squaredNorm());
}

TEST(CostTest, NeverNegativeUnderCancellation) {
  // Far from the origin the expanded form cancels ~1e6-sized terms; without
  // the clamp some C_ii come out slightly negative.
  Rng rng(1);
  Eigen::MatrixXd x(64, 5);
  for (int i = 0; i < x.size(); ++i) x.data()[i] = 1e3 + rng.Normal();
  absl::StatusOr<Eigen::MatrixXd> c = SquaredEuclideanCost(x, x);
  ASSERT_TRUE(c.ok());
  EXPECT_GE(c->minCoeff(), 0.0);
  // cost.h: error <= ~4 d eps_mach (2 ||x||^2) = 4 * 5 * 2.2e-16 * 1e7.
  for (int i = 0; i < 64; ++i) EXPECT_LE((*c)(i, i), 5e-8);
}

TEST(CostTest, RejectsBadInput) {
  const auto kBad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(
      SquaredEuclideanCost(Eigen::MatrixXd(2, 3), Eigen::MatrixXd::Zero(2, 4))
          .status()
          .code(),
      kBad);
  EXPECT_EQ(
      SquaredEuclideanCost(Eigen::MatrixXd(0, 3), Eigen::MatrixXd::Zero(2, 3))
          .status()
          .code(),
      kBad);
  Eigen::MatrixXd x = Eigen::MatrixXd::Zero(2, 2);
  x(1, 0) = std::nan("");
  EXPECT_EQ(
      SquaredEuclideanCost(Eigen::MatrixXd::Zero(3, 2), x).status().code(),
      kBad);
  x(1, 0) = 1e200;  // squared norm overflows
  EXPECT_EQ(SquaredEuclideanCost(x, x).status().code(), kBad);
}

}  // namespace
}  // namespace flowtape::flows::matching

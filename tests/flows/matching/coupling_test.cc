#include "flows/matching/coupling.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace flowtape::flows::matching {
namespace {

// Pearson's statistic sum (O - E)^2 / E over the cells with P_ij > 0 for k
// draws from a 4 x 5 plan (19 cells, 18 degrees of freedom). With a fixed
// seed the statistic is a fixed number; under the null it exceeds 50 with
// probability < 1e-4, and a single misplaced index (off-by-one row/column
// split, unnormalised total) pushes it into the thousands.
TEST(CouplingTest, SampleFrequenciesMatchThePlan) {
  Eigen::MatrixXd plan(4, 5);
  plan << 0.10, 0.02, 0.05, 0.00, 0.03,  //
      0.01, 0.20, 0.01, 0.04, 0.02,      //
      0.03, 0.01, 0.15, 0.01, 0.05,      //
      0.02, 0.06, 0.01, 0.12, 0.06;
  plan *= 3.0;  // unnormalised plans are fine
  const int k = 200000;
  Rng rng(123);
  absl::StatusOr<std::vector<IndexPair>> pairs = SampleCoupling(plan, k, rng);
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  ASSERT_EQ(pairs->size(), static_cast<size_t>(k));
  Eigen::MatrixXd counts = Eigen::MatrixXd::Zero(4, 5);
  for (const IndexPair& p : *pairs) {
    ASSERT_GE(p.i, 0);
    ASSERT_LT(p.i, 4);
    ASSERT_GE(p.j, 0);
    ASSERT_LT(p.j, 5);
    counts(p.i, p.j) += 1;
  }
  EXPECT_EQ(counts(0, 3), 0) << "a zero-mass entry was drawn";
  const double total = plan.sum();
  double chi2 = 0.0;
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 5; ++j) {
      if (plan(i, j) == 0.0) continue;
      const double e = k * plan(i, j) / total;
      chi2 += (counts(i, j) - e) * (counts(i, j) - e) / e;
    }
  }
  EXPECT_LT(chi2, 50.0);
}

TEST(CouplingTest, SingleMassPointAndSeeds) {
  Eigen::MatrixXd plan = Eigen::MatrixXd::Zero(3, 3);
  plan(2, 1) = 1e-300;  // tiny but positive
  Rng rng(1);
  absl::StatusOr<std::vector<IndexPair>> pairs = SampleCoupling(plan, 50, rng);
  ASSERT_TRUE(pairs.ok());
  for (const IndexPair& p : *pairs) EXPECT_EQ(p, (IndexPair{2, 1}));

  Eigen::MatrixXd uniform = Eigen::MatrixXd::Ones(6, 7);
  Rng r1(42), r2(42), r3(43);
  auto p1 = SampleCoupling(uniform, 100, r1);
  auto p2 = SampleCoupling(uniform, 100, r2);
  auto p3 = SampleCoupling(uniform, 100, r3);
  ASSERT_TRUE(p1.ok() && p2.ok() && p3.ok());
  EXPECT_EQ(*p1, *p2);
  EXPECT_NE(*p1, *p3);
  EXPECT_TRUE(SampleCoupling(uniform, 0, r1)->empty());
}

TEST(CouplingTest, RejectsBadPlans) {
  Rng rng(0);
  const auto kBad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(SampleCoupling(Eigen::MatrixXd(0, 2), 1, rng).status().code(),
            kBad);
  EXPECT_EQ(SampleCoupling(Eigen::MatrixXd::Zero(2, 2), 1, rng).status().code(),
            kBad);
  Eigen::MatrixXd p = Eigen::MatrixXd::Ones(2, 2);
  EXPECT_EQ(SampleCoupling(p, -1, rng).status().code(), kBad);
  p(0, 1) = -0.5;
  absl::Status neg = SampleCoupling(p, 1, rng).status();
  EXPECT_EQ(neg.code(), kBad);
  EXPECT_NE(neg.message().find("P(0, 1)"), std::string::npos) << neg;
  p(0, 1) = std::nan("");
  EXPECT_EQ(SampleCoupling(p, 1, rng).status().code(), kBad);
  p(0, 1) = std::numeric_limits<double>::infinity();
  EXPECT_EQ(SampleCoupling(p, 1, rng).status().code(), kBad);
  p(0, 1) = std::numeric_limits<double>::max();
  p(1, 1) = std::numeric_limits<double>::max();  // total overflows
  EXPECT_EQ(SampleCoupling(p, 1, rng).status().code(), kBad);
}

TEST(CouplingTest, AssignmentToPairs) {
  const std::vector<IndexPair> pairs = AssignmentToPairs({2, 0, 3});
  const std::vector<IndexPair> expected = {{0, 2}, {1, 0}, {2, 3}};
  EXPECT_EQ(pairs, expected);
  EXPECT_TRUE(AssignmentToPairs({}).empty());
}

}  // namespace
}  // namespace flowtape::flows::matching

#include "flows/matching/assignment.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "autodiff/tensor.h"
#include "gtest/gtest.h"

namespace flowtape::flows::matching {
namespace {

// Minimum of sum_i C(i, sigma(i)) over all injective sigma (n <= m <= 9).
double BruteForceMin(const Eigen::MatrixXd& c) {
  const int n = static_cast<int>(c.rows()), m = static_cast<int>(c.cols());
  std::vector<int> cols(m);
  std::iota(cols.begin(), cols.end(), 0);
  double best = std::numeric_limits<double>::infinity();
  // Every injective map is the first n entries of some permutation of the
  // columns; enumerating all m! permutations visits each (m - n)! times.
  do {
    double s = 0.0;
    for (int i = 0; i < n; ++i) s += c(i, cols[i]);
    best = std::min(best, s);
  } while (std::next_permutation(cols.begin(), cols.end()));
  return best;
}

Eigen::MatrixXd RandomCost(int n, int m, Rng& rng, double lo, double hi) {
  Eigen::MatrixXd c(n, m);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) c(i, j) = lo + (hi - lo) * rng.Uniform();
  return c;
}

Eigen::MatrixXd RandomIntCost(int n, int m, Rng& rng, int levels) {
  Eigen::MatrixXd c(n, m);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j)
      c(i, j) = static_cast<double>(rng.UniformInt(levels));
  return c;
}

// Squared distances between n points of N(0, I_2) and m points of
// N((1.5, 1.5), 0.25 I_2): the OT-CFM case, where the column minima collide
// and the solver starts from auction prices.
Eigen::MatrixXd PointCloudCost(int n, int m, Rng& rng) {
  Eigen::MatrixXd x(n, 2), y(m, 2);
  for (int i = 0; i < x.size(); ++i) x.data()[i] = rng.Normal();
  for (int i = 0; i < y.size(); ++i) y.data()[i] = 1.5 + 0.5 * rng.Normal();
  Eigen::MatrixXd c(n, m);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) c(i, j) = (x.row(i) - y.row(j)).squaredNorm();
  return c;
}

// The plain shortest-augmenting-path method (Crouse 2016, scipy's
// linear_sum_assignment), one row at a time from zero potentials, with no
// initialisation, vectorisation or auction: the reference the solver must
// agree with. Returns sigma (col_for_row).
std::vector<int> ReferenceAssignment(const Eigen::MatrixXd& c) {
  const int n = static_cast<int>(c.rows()), m = static_cast<int>(c.cols());
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> u(n, 0.0), v(m, 0.0), shortest(m), dist(m);
  std::vector<int> col4row(n, -1), row4col(m, -1), path(m, -1);
  for (int cur = 0; cur < n; ++cur) {
    std::fill(dist.begin(), dist.end(), inf);
    std::vector<char> done_col(m, 0);
    std::vector<int> rows_seen, cols_seen;
    double min_val = 0.0;
    int i = cur, sink = -1;
    while (sink == -1) {
      rows_seen.push_back(i);
      int best = -1;
      double lowest = inf;
      for (int j = 0; j < m; ++j) {
        if (done_col[j]) continue;
        const double r = min_val + c(i, j) - u[i] - v[j];
        if (r < dist[j]) {
          dist[j] = r;
          path[j] = i;
        }
        if (dist[j] < lowest ||
            (dist[j] == lowest && row4col[j] == -1 && row4col[best] != -1)) {
          lowest = dist[j];
          best = j;
        }
      }
      min_val = lowest;
      shortest[best] = lowest;
      done_col[best] = 1;
      cols_seen.push_back(best);
      if (row4col[best] == -1) {
        sink = best;
      } else {
        i = row4col[best];
      }
    }
    u[cur] += min_val;
    for (int r : rows_seen)
      if (r != cur) u[r] += min_val - shortest[col4row[r]];
    for (int j : cols_seen) v[j] -= min_val - shortest[j];
    for (int j = sink;;) {
      const int r = path[j];
      row4col[j] = r;
      std::swap(col4row[r], j);
      if (r == cur) break;
    }
  }
  return col4row;
}

double CostOf(const Eigen::MatrixXd& c, const std::vector<int>& sigma) {
  double s = 0.0;
  for (int i = 0; i < c.rows(); ++i) s += c(i, sigma[i]);
  return s;
}

// Independent of VerifyAssignment: injective, in range, sum matches.
void ExpectValidAssignment(const Eigen::MatrixXd& c, const Assignment& a) {
  ASSERT_EQ(a.col_for_row.size(), static_cast<size_t>(c.rows()));
  std::vector<char> used(c.cols(), 0);
  double s = 0.0;
  for (int i = 0; i < c.rows(); ++i) {
    const int j = a.col_for_row[i];
    ASSERT_GE(j, 0);
    ASSERT_LT(j, c.cols());
    ASSERT_FALSE(used[j]) << "column " << j << " used twice";
    used[j] = 1;
    s += c(i, j);
  }
  EXPECT_NEAR(s, a.cost,
              1e-12 * c.rows() * std::max(1.0, c.cwiseAbs().maxCoeff()));
}

// The dual certificate checked directly (not through VerifyAssignment).
void ExpectCertificate(const Eigen::MatrixXd& c, const Assignment& a,
                       double tol) {
  const Eigen::Index n = c.rows(), m = c.cols();
  ASSERT_EQ(a.row_potential.size(), n);
  ASSERT_EQ(a.col_potential.size(), m);
  double worst_slack = 0.0;
  for (Eigen::Index i = 0; i < n; ++i)
    for (Eigen::Index j = 0; j < m; ++j)
      worst_slack = std::min(worst_slack,
                             c(i, j) - a.row_potential(i) - a.col_potential(j));
  EXPECT_GE(worst_slack, -tol) << "u_i + v_j > C_ij somewhere";
  std::vector<char> used(m, 0);
  for (Eigen::Index i = 0; i < n; ++i) {
    const int j = a.col_for_row[i];
    used[j] = 1;
    EXPECT_NEAR(a.row_potential(i) + a.col_potential(j), c(i, j), tol)
        << "not tight at row " << i;
  }
  for (Eigen::Index j = 0; j < m; ++j) {
    EXPECT_LE(a.col_potential(j), tol);
    if (!used[j]) {
      EXPECT_NEAR(a.col_potential(j), 0.0, tol);
    }
  }
  // Strong duality: the dual objective equals the primal cost.
  EXPECT_NEAR(a.row_potential.sum() + a.col_potential.sum(), a.cost,
              tol * (n + m));
}

struct BruteCase {
  const char* name;
  int kind;  // 0: uniform [0, 1), 1: integers 0..3 (ties), 2: uniform
             // [-5, 5), 3: point-cloud squared distances
};

TEST(AssignmentTest, MatchesBruteForceOnSmallProblems) {
  Rng rng(7);
  const BruteCase kinds[] = {
      {"uniform", 0}, {"ties", 1}, {"negative", 2}, {"points", 3}};
  int checked = 0;
  for (const BruteCase& kind : kinds) {
    for (int n = 1; n <= 8; ++n) {
      for (int extra = 0; extra <= 2 && n + extra <= 9; ++extra) {
        const int m = n + extra;
        const int reps = m >= 8 ? 3 : 20;
        for (int rep = 0; rep < reps; ++rep) {
          Eigen::MatrixXd c = kind.kind == 0   ? RandomCost(n, m, rng, 0, 1)
                              : kind.kind == 1 ? RandomIntCost(n, m, rng, 4)
                              : kind.kind == 2 ? RandomCost(n, m, rng, -5, 5)
                                               : PointCloudCost(n, m, rng);
          absl::StatusOr<Assignment> a = SolveAssignmentWithDuals(c);
          ASSERT_TRUE(a.ok()) << a.status();
          ExpectValidAssignment(c, *a);
          EXPECT_NEAR(a->cost, BruteForceMin(c), 1e-12 * n * 5)
              << kind.name << " " << n << " x " << m << " rep " << rep;
          ExpectCertificate(c, *a, 1e-12 * 5);
          EXPECT_TRUE(VerifyAssignment(c, *a).ok());
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 400);
}

// All n! permutations of small square problems, n <= 7, from each family
// including all-integer costs with many ties.
TEST(AssignmentTest, MatchesEveryPermutationOnSquareProblems) {
  Rng rng(17);
  for (int kind = 0; kind < 4; ++kind) {
    for (int n = 2; n <= 7; ++n) {
      for (int rep = 0; rep < 6; ++rep) {
        const Eigen::MatrixXd c = kind == 0   ? RandomCost(n, n, rng, 0, 1)
                                  : kind == 1 ? RandomIntCost(n, n, rng, 3)
                                  : kind == 2 ? RandomCost(n, n, rng, -5, 5)
                                              : PointCloudCost(n, n, rng);
        absl::StatusOr<Assignment> a = SolveAssignmentWithDuals(c);
        ASSERT_TRUE(a.ok()) << a.status();
        std::vector<int> perm(n);
        std::iota(perm.begin(), perm.end(), 0);
        double best = std::numeric_limits<double>::infinity();
        do {
          best = std::min(best, CostOf(c, perm));
        } while (std::next_permutation(perm.begin(), perm.end()));
        EXPECT_NEAR(a->cost, best, 1e-12 * n * 5)
            << "kind " << kind << " n " << n << " rep " << rep;
        ExpectCertificate(c, *a, 1e-12 * 5);
      }
    }
  }
}

// The same optimum as the plain shortest-augmenting-path method on large
// problems: equal cost, and on continuous costs (a unique optimum almost
// surely) the same permutation; on integer costs (massive ties) the cost.
TEST(AssignmentTest, AgreesWithReferenceOnLargeProblems) {
  Rng rng(23);
  for (int n : {256, 512}) {
    for (int kind = 0; kind < 3; ++kind) {
      const Eigen::MatrixXd c = kind == 0   ? RandomCost(n, n, rng, 0, 1)
                                : kind == 1 ? PointCloudCost(n, n, rng)
                                            : RandomIntCost(n, n, rng, 10);
      absl::StatusOr<Assignment> a = SolveAssignmentWithDuals(c);
      ASSERT_TRUE(a.ok()) << a.status();
      const std::vector<int> ref = ReferenceAssignment(c);
      const double ref_cost = CostOf(c, ref);
      EXPECT_NEAR(a->cost, ref_cost, 1e-12 * n * c.cwiseAbs().maxCoeff())
          << "n " << n << " kind " << kind;
      if (kind < 2) {
        EXPECT_EQ(a->col_for_row, ref) << "n " << n << " kind " << kind;
      }
      ExpectCertificate(c, *a, 1e-9);
      EXPECT_TRUE(VerifyAssignment(c, *a).ok()) << VerifyAssignment(c, *a);
    }
  }
  // Rectangular (n < m): the same augmenting paths with no initialisation.
  const Eigen::MatrixXd c = PointCloudCost(200, 256, rng);
  absl::StatusOr<Assignment> a = SolveAssignmentWithDuals(c);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->col_for_row, ReferenceAssignment(c));
  ExpectCertificate(c, *a, 1e-9);
}

TEST(AssignmentTest, DualCertificateOnLargeRandomProblems) {
  Rng rng(11);
  for (auto [n, m] :
       {std::pair{100, 100}, std::pair{100, 150}, std::pair{512, 512}}) {
    const Eigen::MatrixXd c = RandomCost(n, m, rng, 0, 1);
    absl::StatusOr<Assignment> a = SolveAssignmentWithDuals(c);
    ASSERT_TRUE(a.ok()) << a.status();
    ExpectValidAssignment(c, *a);
    ExpectCertificate(c, *a, 1e-10);
    EXPECT_TRUE(VerifyAssignment(c, *a).ok()) << VerifyAssignment(c, *a);
  }
}

// Scaling the cost scales nothing else: the same permutation from tiny
// costs up to the overflow limit (where the auction's potentials would
// grow too large and the solver starts from zero potentials instead).
TEST(AssignmentTest, ScaleInvariantUpToTheOverflowLimit) {
  Rng rng(29);
  const int n = 64;
  const Eigen::MatrixXd c = PointCloudCost(n, n, rng);
  const std::vector<int> ref = ReferenceAssignment(c);
  const double limit = DBL_MAX / (4.0 * (n + 1.0));
  for (double scale : {1e-200, 1.0, 1e290, 0.9 * limit / c.maxCoeff()}) {
    const Eigen::MatrixXd scaled = c * scale;
    absl::StatusOr<Assignment> a = SolveAssignmentWithDuals(scaled);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->col_for_row, ref) << "scale " << scale;
    EXPECT_TRUE(VerifyAssignment(scaled, *a).ok()) << "scale " << scale;
  }
}

TEST(AssignmentTest, IdentityCost) {
  // C = 1 - I: the identity permutation costs 0, every other >= 2.
  const int n = 30;
  const Eigen::MatrixXd c =
      Eigen::MatrixXd::Ones(n, n) - Eigen::MatrixXd::Identity(n, n);
  absl::StatusOr<Assignment> a = SolveAssignmentWithDuals(c);
  ASSERT_TRUE(a.ok());
  for (int i = 0; i < n; ++i) EXPECT_EQ(a->col_for_row[i], i);
  EXPECT_EQ(a->cost, 0.0);
  ExpectCertificate(c, *a, 1e-12);
}

TEST(AssignmentTest, ShiftedIdentityIsTheUniqueOptimum) {
  // C(i, j) = 0 iff j = (i + 3) mod m (rectangular: m = n + 2), else >= 1.
  const int n = 12, m = 14;
  Rng rng(3);
  Eigen::MatrixXd c = RandomCost(n, m, rng, 1, 2);
  for (int i = 0; i < n; ++i) c(i, (i + 3) % m) = 0.0;
  absl::StatusOr<std::vector<int>> sigma = SolveAssignment(c);
  ASSERT_TRUE(sigma.ok());
  for (int i = 0; i < n; ++i) EXPECT_EQ((*sigma)[i], (i + 3) % m);
}

TEST(AssignmentTest, OneDimensionalSquaredDistanceIsMonotone) {
  // For convex costs on a line the sorted (monotone) matching is optimal.
  Rng rng(5);
  const int n = 60;
  std::vector<double> x(n), y(n);
  for (double& v : x) v = rng.Normal();
  for (double& v : y) v = 2.0 + 0.5 * rng.Normal();
  Eigen::MatrixXd c(n, n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) c(i, j) = (x[i] - y[j]) * (x[i] - y[j]);
  absl::StatusOr<std::vector<int>> sigma = SolveAssignment(c);
  ASSERT_TRUE(sigma.ok());
  std::vector<int> rx(n), ry(n);
  std::iota(rx.begin(), rx.end(), 0);
  std::iota(ry.begin(), ry.end(), 0);
  std::sort(rx.begin(), rx.end(), [&](int a, int b) { return x[a] < x[b]; });
  std::sort(ry.begin(), ry.end(), [&](int a, int b) { return y[a] < y[b]; });
  for (int k = 0; k < n; ++k) EXPECT_EQ((*sigma)[rx[k]], ry[k]);
}

TEST(AssignmentTest, ConstantCostAnyPermutation) {
  const Eigen::MatrixXd c = Eigen::MatrixXd::Constant(9, 9, -2.5);
  absl::StatusOr<Assignment> a = SolveAssignmentWithDuals(c);
  ASSERT_TRUE(a.ok());
  ExpectValidAssignment(c, *a);
  EXPECT_DOUBLE_EQ(a->cost, -22.5);
  ExpectCertificate(c, *a, 1e-12);
}

TEST(AssignmentTest, RejectsBadInput) {
  EXPECT_EQ(SolveAssignment(Eigen::MatrixXd(0, 3)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SolveAssignment(Eigen::MatrixXd(3, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status tall = SolveAssignment(Eigen::MatrixXd::Zero(4, 3)).status();
  EXPECT_EQ(tall.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(tall.message().find("more rows than columns"), std::string::npos);
  Eigen::MatrixXd c = Eigen::MatrixXd::Zero(3, 3);
  c(1, 2) = std::nan("");
  absl::Status nan = SolveAssignment(c).status();
  EXPECT_EQ(nan.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(nan.message().find("C(1, 2)"), std::string::npos) << nan;
  c(1, 2) = std::numeric_limits<double>::infinity();
  EXPECT_EQ(SolveAssignment(c).status().code(),
            absl::StatusCode::kInvalidArgument);
  c(1, 2) = 1e308;
  EXPECT_EQ(SolveAssignment(c).status().code(),
            absl::StatusCode::kInvalidArgument);
  c(1, 2) = 1e300;  // within DBL_MAX / (4 (n + 1)): solvable
  absl::StatusOr<Assignment> a = SolveAssignmentWithDuals(c);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->cost, 0.0);
}

TEST(AssignmentTest, VerifyRejectsTamperedCertificates) {
  Rng rng(9);
  const Eigen::MatrixXd c = RandomCost(6, 8, rng, 0, 1);
  absl::StatusOr<Assignment> a = SolveAssignmentWithDuals(c);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(VerifyAssignment(c, *a).ok());

  Assignment swapped = *a;  // a different (worse or equal-cost) assignment
  std::swap(swapped.col_for_row[0], swapped.col_for_row[1]);
  swapped.cost = 0.0;
  for (int i = 0; i < 6; ++i) swapped.cost += c(i, swapped.col_for_row[i]);
  EXPECT_FALSE(VerifyAssignment(c, swapped).ok());

  Assignment raised = *a;  // dual infeasible somewhere
  raised.row_potential(2) += 0.5;
  raised.col_potential(a->col_for_row[2]) -= 0.5;  // still tight on sigma
  EXPECT_FALSE(VerifyAssignment(c, raised).ok());

  Assignment twice = *a;
  twice.col_for_row[1] = twice.col_for_row[0];
  EXPECT_FALSE(VerifyAssignment(c, twice).ok());

  Assignment positive_v = *a;  // unassigned column with v != 0
  for (int j = 0; j < 8; ++j) {
    if (std::find(a->col_for_row.begin(), a->col_for_row.end(), j) ==
        a->col_for_row.end()) {
      positive_v.col_potential(j) = -0.1;
      break;
    }
  }
  EXPECT_FALSE(VerifyAssignment(c, positive_v).ok());
}

}  // namespace
}  // namespace flowtape::flows::matching

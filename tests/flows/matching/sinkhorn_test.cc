#include "flows/matching/sinkhorn.h"

#include <cmath>
#include <cstdio>
#include <limits>

#include "autodiff/tensor.h"
#include "flows/matching/assignment.h"
#include "gtest/gtest.h"

namespace flowtape::flows::matching {
namespace {

Eigen::MatrixXd RandomCost(int n, int m, Rng& rng) {
  Eigen::MatrixXd c(n, m);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) c(i, j) = rng.Uniform();
  return c;
}

Eigen::VectorXd RandomSimplex(int n, Rng& rng) {
  Eigen::VectorXd w(n);
  for (int i = 0; i < n; ++i) w(i) = 0.1 + rng.Uniform();
  return w / w.sum();
}

TEST(SinkhornTest, MarginalsWithinToleranceAndGibbsForm) {
  Rng rng(1);
  const Eigen::MatrixXd c = RandomCost(7, 9, rng);
  const Eigen::VectorXd a = RandomSimplex(7, rng), b = RandomSimplex(9, rng);
  SinkhornOptions opt;
  opt.epsilon = 0.1;
  opt.tol = 1e-10;
  absl::StatusOr<SinkhornResult> r = Sinkhorn(c, a, b, opt);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->converged);
  EXPECT_GT(r->iterations, 1);
  const double row_err = (r->plan.rowwise().sum() - a).cwiseAbs().sum();
  const double col_err =
      (r->plan.colwise().sum().transpose() - b).cwiseAbs().sum();
  EXPECT_LE(row_err + col_err, opt.tol);
  EXPECT_NEAR(r->marginal_error, row_err + col_err, 1e-15);
  EXPECT_GE(r->plan.minCoeff(), 0.0);
  // P_ij = exp((f_i + g_j - C_ij) / eps), i.e. P = diag(e^{f/eps}) K
  // diag(e^{g/eps}) with K = exp(-C / eps).
  const Eigen::MatrixXd k = (-c / opt.epsilon).array().exp();
  const Eigen::MatrixXd gibbs =
      (r->f / opt.epsilon).array().exp().matrix().asDiagonal() * k *
      (r->g / opt.epsilon).array().exp().matrix().asDiagonal();
  EXPECT_LE((gibbs - r->plan).cwiseAbs().maxCoeff(), 1e-14);
  EXPECT_NEAR(r->transport_cost, (r->plan.array() * c.array()).sum(), 1e-15);
}

// 2 x 2: P = [[t, a1 - t], [b1 - t, 1 - a1 - b1 + t]] has the right marginals
// for any t; the Gibbs form forces P11 P22 / (P12 P21) = exp(-(C11 + C22 -
// C12 - C21) / eps) = kappa, a quadratic in t:
//   (1 - kappa) t^2 + (1 - a1 - b1 + kappa (a1 + b1)) t - kappa a1 b1 = 0.
TEST(SinkhornTest, TwoByTwoClosedForm) {
  const double a1 = 0.3, b1 = 0.6, eps = 0.5;
  Eigen::MatrixXd c(2, 2);
  c << 0.0, 1.0, 2.0, 0.5;
  const double kappa = std::exp(-(c(0, 0) + c(1, 1) - c(0, 1) - c(1, 0)) / eps);
  const double qa = 1.0 - kappa, qb = 1.0 - a1 - b1 + kappa * (a1 + b1),
               qc = -kappa * a1 * b1;
  const double disc = std::sqrt(qb * qb - 4 * qa * qc);
  double t = (-qb + disc) / (2 * qa);
  if (t < std::max(0.0, a1 + b1 - 1) || t > std::min(a1, b1))
    t = (-qb - disc) / (2 * qa);
  ASSERT_GE(t, std::max(0.0, a1 + b1 - 1));
  ASSERT_LE(t, std::min(a1, b1));
  Eigen::MatrixXd expected(2, 2);
  expected << t, a1 - t, b1 - t, 1 - a1 - b1 + t;

  Eigen::VectorXd a(2), b(2);
  a << a1, 1 - a1;
  b << b1, 1 - b1;
  SinkhornOptions opt;
  opt.epsilon = eps;
  opt.tol = 1e-13;
  absl::StatusOr<SinkhornResult> r = Sinkhorn(c, a, b, opt);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->converged);
  EXPECT_LE((r->plan - expected).cwiseAbs().maxCoeff(), 1e-12)
      << r->plan << "\nvs\n"
      << expected;
}

// As eps -> 0 the entropic transport cost approaches the exact one from above:
// 0 <= <P_eps, C> - OT_0 <= eps log n (uniform marginals, n = m; sinkhorn.h),
// OT_0 = (optimal assignment cost) / n. The iterate has the Gibbs form, so it
// is the exact entropic plan for its own marginals, which are off by the
// reported marginal error delta; with C in [0, 1) that moves both bounds by at
// most delta. Near-degenerate problems converge slowly at small eps (this one
// needs ~1e5 iterations for 1e-7 at eps = 0.01), hence the loose tol.
TEST(SinkhornTest, SmallEpsilonApproachesExactAssignmentCost) {
  Rng rng(4);
  const int n = 8;
  const Eigen::MatrixXd c = RandomCost(n, n, rng);
  absl::StatusOr<Assignment> exact = SolveAssignmentWithDuals(c);
  ASSERT_TRUE(exact.ok());
  const double ot0 = exact->cost / n;
  double previous = std::numeric_limits<double>::infinity();
  double previous_delta = 0.0;
  SinkhornResult last;
  for (double eps : {0.3, 0.1, 0.03, 0.01, 0.003, 0.001}) {
    SinkhornOptions opt;
    opt.epsilon = eps;
    opt.tol = 1e-6;
    opt.max_iters = 200000;
    opt.initial_epsilon = 1.0;
    absl::StatusOr<SinkhornResult> r = Sinkhorn(c, opt);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->converged)
        << "eps " << eps << " error " << r->marginal_error;
    const double delta = r->marginal_error;
    const double gap = r->transport_cost - ot0;
    EXPECT_GE(gap, -delta) << "eps " << eps;
    EXPECT_LE(gap, eps * std::log(n) + delta) << "eps " << eps;
    // <P_eps, C> is non-decreasing in eps (up to both marginal errors).
    EXPECT_LE(r->transport_cost, previous + previous_delta + delta + 1e-14)
        << "eps " << eps;
    previous = r->transport_cost;
    previous_delta = delta;
    last = *std::move(r);
  }
  EXPECT_LT(previous - ot0, 1e-3 * std::log(n) + 1e-6);

  // The plan concentrates on optimal assignments. With the assignment's dual
  // certificate (u, v) and reduced costs r_ij = C_ij - u_i - v_j >= 0,
  //   <P, C> - OT_0 = sum_ij P_ij r_ij + (P 1 - a).u + (P^T 1 - b).v,
  // so the mass on entries with r_ij >= rho is at most
  //   (<P, C> - OT_0 + delta (max|u| + max|v|)) / rho.
  const Eigen::MatrixXd r =
      c - exact->row_potential * Eigen::RowVectorXd::Ones(n) -
      Eigen::VectorXd::Ones(n) * exact->col_potential.transpose();
  double rho = std::numeric_limits<double>::infinity(), off = 0.0;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      if (r(i, j) > 1e-12) {
        rho = std::min(rho, r(i, j));
        off += last.plan(i, j);
      }
    }
  }
  const double delta = last.marginal_error;
  const double bound = (last.transport_cost - ot0 +
                        delta * (exact->row_potential.cwiseAbs().maxCoeff() +
                                 exact->col_potential.cwiseAbs().maxCoeff())) /
                       rho;
  std::printf("off %g bound %g rho %g\n", off, bound, rho);
  EXPECT_LE(off, bound + 1e-12) << "rho " << rho;
  EXPECT_LE(bound, 0.1) << "this instance should not be near-degenerate";
}

TEST(SinkhornTest, EpsilonScalingReachesTheSamePlan) {
  Rng rng(6);
  const Eigen::MatrixXd c = RandomCost(10, 12, rng);
  SinkhornOptions plain;
  plain.epsilon = 0.05;
  plain.tol = 1e-12;
  plain.max_iters = 100000;
  SinkhornOptions scaled = plain;
  scaled.initial_epsilon = 2.0;
  absl::StatusOr<SinkhornResult> r1 = Sinkhorn(c, plain);
  absl::StatusOr<SinkhornResult> r2 = Sinkhorn(c, scaled);
  ASSERT_TRUE(r1.ok() && r2.ok());
  ASSERT_TRUE(r1->converged && r2->converged);
  EXPECT_LE((r1->plan - r2->plan).cwiseAbs().maxCoeff(), 1e-10);
}

TEST(SinkhornTest, TinyEpsilonStaysFinite) {
  // exp(-C / eps) underflows to 0 for eps = 1e-4 and C ~ 1: the plain
  // (kernel) Sinkhorn would divide 0 by 0; the log domain does not.
  Rng rng(8);
  const Eigen::MatrixXd c = RandomCost(5, 5, rng);
  SinkhornOptions opt;
  opt.epsilon = 1e-4;
  opt.tol = 1e-9;
  opt.max_iters = 100000;
  opt.initial_epsilon = 1.0;
  absl::StatusOr<SinkhornResult> r = Sinkhorn(c, opt);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->plan.allFinite());
  EXPECT_TRUE(r->converged) << r->marginal_error;
}

TEST(SinkhornTest, NonConvergenceIsReportedNotAnError) {
  Rng rng(2);
  const Eigen::MatrixXd c = RandomCost(6, 6, rng);
  SinkhornOptions opt;
  opt.epsilon = 0.001;
  opt.max_iters = 3;
  opt.tol = 1e-12;
  absl::StatusOr<SinkhornResult> r = Sinkhorn(c, opt);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->converged);
  EXPECT_EQ(r->iterations, 3);
  EXPECT_GT(r->marginal_error, opt.tol);
  EXPECT_TRUE(r->plan.allFinite());
}

TEST(SinkhornTest, ZeroMarginalEntryGivesZeroRow) {
  Rng rng(3);
  const Eigen::MatrixXd c = RandomCost(3, 4, rng);
  Eigen::VectorXd a(3), b(4);
  a << 0.5, 0.0, 0.5;
  b << 0.25, 0.25, 0.25, 0.25;
  SinkhornOptions opt;
  opt.epsilon = 0.1;
  absl::StatusOr<SinkhornResult> r = Sinkhorn(c, a, b, opt);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->converged);
  EXPECT_EQ(r->plan.row(1).cwiseAbs().maxCoeff(), 0.0);
  EXPECT_TRUE(r->plan.allFinite());
}

TEST(SinkhornTest, RejectsBadInput) {
  const Eigen::MatrixXd c = Eigen::MatrixXd::Ones(2, 3);
  const Eigen::VectorXd a = Eigen::VectorXd::Constant(2, 0.5);
  const Eigen::VectorXd b = Eigen::VectorXd::Constant(3, 1.0 / 3);
  auto code = [](const absl::StatusOr<SinkhornResult>& r) {
    return r.status().code();
  };
  const auto kBad = absl::StatusCode::kInvalidArgument;
  EXPECT_EQ(code(Sinkhorn(Eigen::MatrixXd(0, 0))), kBad);
  EXPECT_EQ(code(Sinkhorn(c, b, a)), kBad);  // sizes swapped
  Eigen::VectorXd neg = a;
  neg(0) = -0.1;
  EXPECT_EQ(code(Sinkhorn(c, neg, b)), kBad);
  EXPECT_EQ(code(Sinkhorn(c, 2 * a, b)), kBad);  // unequal mass
  EXPECT_EQ(code(Sinkhorn(c, 0 * a, 0 * b)), kBad);
  Eigen::MatrixXd nan = c;
  nan(1, 1) = std::nan("");
  EXPECT_EQ(code(Sinkhorn(nan)), kBad);
  Eigen::VectorXd nan_b = b;
  nan_b(2) = std::nan("");
  EXPECT_EQ(code(Sinkhorn(c, a, nan_b)), kBad);
  for (double eps :
       {0.0, -1.0, std::numeric_limits<double>::infinity(), 1e-300}) {
    SinkhornOptions o;
    o.epsilon = eps;
    absl::StatusOr<SinkhornResult> r = Sinkhorn(c, o);
    EXPECT_EQ(code(r), kBad) << eps;
    EXPECT_NE(r.status().message().find("epsilon"), std::string::npos);
  }
  SinkhornOptions o;
  o.max_iters = 0;
  EXPECT_EQ(code(Sinkhorn(c, o)), kBad);
  o = {};
  o.tol = 0.0;
  EXPECT_EQ(code(Sinkhorn(c, o)), kBad);
  o = {};
  o.initial_epsilon = 0.01;  // below epsilon
  EXPECT_EQ(code(Sinkhorn(c, o)), kBad);
  o = {};
  o.initial_epsilon = 1.0;
  o.scaling_factor = 1.0;
  EXPECT_EQ(code(Sinkhorn(c, o)), kBad);
}

// The option checks alone, without a problem to solve.
TEST(SinkhornTest, OptionsValidateNamesTheField) {
  EXPECT_TRUE(SinkhornOptions{}.Validate().ok());
  auto message = [](const SinkhornOptions& o) {
    return std::string(o.Validate().message());
  };
  SinkhornOptions o;
  o.epsilon = std::nan("");
  EXPECT_NE(message(o).find("epsilon must be finite"), std::string::npos);
  o = {};
  o.max_iters = -1;
  EXPECT_NE(message(o).find("max_iters must be >= 1, got -1"),
            std::string::npos);
  o = {};
  o.tol = std::numeric_limits<double>::infinity();
  EXPECT_NE(message(o).find("tol must be finite"), std::string::npos);
  o = {};
  o.initial_epsilon = 1.0;
  o.scaling_factor = 0.0;
  EXPECT_NE(message(o).find("scaling_factor must be in (0, 1)"),
            std::string::npos);
}

}  // namespace
}  // namespace flowtape::flows::matching

// Linear algebra ops: values against Eigen, gradients (first and second order)
// against finite differences, QR invariants, singular inputs.
#include <Eigen/Dense>
#include <cmath>
#include <limits>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace flowtape {
namespace {
using testing::GradientError;
using testing::HessianVectorError;
using Fn = std::vector<Tensor>;
using RowMat =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

RowMat ToEigen(const Tensor& t) {
  const int64_t cols = t.rank() == 2 ? t.dim(1) : 1;
  return Eigen::Map<const RowMat>(t.data<double>(), t.dim(0), cols);
}

// Random well-conditioned [n, n]: I + 0.3 * N(0, 1).
Tensor WellConditioned(int64_t n, Rng& rng) {
  return (Tensor::Eye(n) + 0.3 * Tensor::Randn({n, n}, rng)).Detach();
}

double MaxAbsDiff(const RowMat& a, const RowMat& b) {
  return (a - b).cwiseAbs().maxCoeff();
}

TEST(Solve, MatchesEigenForMatrixAndVectorRhs) {
  Rng rng(1);
  Tensor a = WellConditioned(5, rng);
  for (Shape bs : {Shape{5, 3}, Shape{5}}) {
    Tensor b = Tensor::Randn(bs, rng);
    Tensor x = Solve(a, b);
    EXPECT_EQ(x.shape(), bs);
    RowMat want = ToEigen(a).fullPivLu().solve(ToEigen(b));
    EXPECT_LT(MaxAbsDiff(ToEigen(x), want), 1e-12);
  }
}

TEST(Solve, GradientsFirstAndSecondOrder) {
  Rng rng(2);
  Tensor a = WellConditioned(4, rng);
  Tensor w = Tensor::Randn({4, 2}, rng);
  for (Shape bs : {Shape{4, 2}, Shape{4}}) {
    Tensor b = Tensor::Randn(bs, rng);
    auto f = [&](const Fn& v) {
      Tensor x = Solve(v[0], v[1]);
      Tensor wx = bs.rank() == 1 ? Narrow(w, 1, 0, 1) : w;
      return Sum(Square(x) * Reshape(wx, x.shape().dims()));
    };
    EXPECT_LT(GradientError(f, {a, b}), 1e-6) << bs.ToString();
    EXPECT_LT(HessianVectorError(f, {a, b}), 1e-6) << bs.ToString();
  }
}

TEST(Inverse, MatchesEigenAndGradients) {
  Rng rng(3);
  Tensor a = WellConditioned(4, rng);
  Tensor inv = Inverse(a);
  EXPECT_LT(MaxAbsDiff(ToEigen(inv), ToEigen(a).inverse()), 1e-12);
  EXPECT_LT(MaxAbsDiff(ToEigen(a) * ToEigen(inv), RowMat::Identity(4, 4)),
            1e-12);
  Tensor w = Tensor::Randn({4, 4}, rng);
  auto f = [&](const Fn& v) { return Sum(Tanh(Inverse(v[0])) * w); };
  EXPECT_LT(GradientError(f, {a}), 1e-6);
  EXPECT_LT(HessianVectorError(f, {a}), 1e-6);
}

TEST(Slogdet, MatchesEigenDeterminantWithSign) {
  Rng rng(4);
  for (int trial = 0; trial < 6; ++trial) {
    Tensor a = Tensor::Randn({5, 5}, rng);
    double det = ToEigen(a).determinant();
    SlogdetResult s = Slogdet(a);
    EXPECT_EQ(s.sign, det > 0 ? 1.0 : -1.0);
    EXPECT_NEAR(s.logabsdet.item(), std::log(std::fabs(det)), 1e-12);
    EXPECT_DOUBLE_EQ(LogAbsDet(a).item(), s.logabsdet.item());
  }
  EXPECT_EQ(Slogdet(Tensor::Zeros({0, 0})).sign, 1.0);
  EXPECT_EQ(Slogdet(Tensor::Zeros({0, 0})).logabsdet.item(), 0.0);
}

TEST(Slogdet, GradientIsInverseTransposeAndSecondOrder) {
  Rng rng(5);
  Tensor a = Tensor::Randn({4, 4}, rng);
  a.set_requires_grad(true);
  Tensor g = Grad({LogAbsDet(a)}, {a})[0];
  RowMat want = ToEigen(a).inverse().transpose();
  EXPECT_LT(MaxAbsDiff(ToEigen(g), want), 1e-12);
  Tape::Get().Reset();
  auto f = [](const Fn& v) { return LogAbsDet(v[0]); };
  EXPECT_LT(GradientError(f, {a.Detach()}), 1e-6);
  EXPECT_LT(HessianVectorError(f, {a.Detach()}), 1e-6);
}

TEST(Slogdet, SingularGivesSignZeroAndMinusInfinity) {
  Tensor a = Tensor::FromVector({3, 3}, {1, 2, 3, 2, 4, 6, 0, 1, 1});
  SlogdetResult s = Slogdet(a);
  EXPECT_EQ(s.sign, 0.0);
  EXPECT_EQ(s.logabsdet.item(), -std::numeric_limits<double>::infinity());
  // A zero adjoint at a singular matrix stays zero (no NaN, no abort).
  a.set_requires_grad(true);
  Tensor l = Slogdet(a).logabsdet;
  Tensor g = Grad({l}, {a}, {Tensor::Scalar(0.0)})[0];
  for (double v : g.ToVector()) EXPECT_EQ(v, 0.0);
  Tape::Get().Reset();
}

struct TriCase {
  bool upper, transpose, unit;
};

class TriangularSolveTest : public ::testing::TestWithParam<TriCase> {};

TEST_P(TriangularSolveTest, ValuesAndGradients) {
  const TriCase tc = GetParam();
  Rng rng(6);
  const int64_t n = 4;
  // Full random matrix: the op must read only the chosen triangle.
  Tensor t = (Tensor::Randn({n, n}, rng) + 3.0 * Tensor::Eye(n)).Detach();
  RowMat tm = ToEigen(t);
  RowMat tri = tc.upper ? RowMat(tm.triangularView<Eigen::Upper>())
                        : RowMat(tm.triangularView<Eigen::Lower>());
  if (tc.unit) tri.diagonal().setOnes();
  RowMat op = tc.transpose ? RowMat(tri.transpose()) : tri;
  Tensor w = Tensor::Randn({n, 3}, rng);
  for (Shape bs : {Shape{n, 3}, Shape{n}}) {
    Tensor b = Tensor::Randn(bs, rng);
    Tensor x = TriangularSolve(t, b, tc.upper, tc.transpose, tc.unit);
    EXPECT_LT(MaxAbsDiff(op * ToEigen(x), ToEigen(b)), 1e-12);
    auto f = [&](const Fn& v) {
      Tensor y = TriangularSolve(v[0], v[1], tc.upper, tc.transpose, tc.unit);
      Tensor wy = bs.rank() == 1 ? Reshape(Narrow(w, 1, 0, 1), {n}) : w;
      return Sum(Square(y) * wy);
    };
    EXPECT_LT(GradientError(f, {t, b}), 1e-6) << bs.ToString();
    EXPECT_LT(HessianVectorError(f, {t, b}), 1e-6) << bs.ToString();
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllModes, TriangularSolveTest,
    ::testing::Values(TriCase{false, false, false}, TriCase{false, false, true},
                      TriCase{false, true, false}, TriCase{false, true, true},
                      TriCase{true, false, false}, TriCase{true, false, true},
                      TriCase{true, true, false}, TriCase{true, true, true}));

class QrTest : public ::testing::TestWithParam<std::pair<int64_t, int64_t>> {};

TEST_P(QrTest, InvariantsAndEigenAgreement) {
  const auto [m, n] = GetParam();
  Rng rng(7);
  Tensor a = Tensor::Randn({m, n}, rng);
  QrResult qr = Qr(a);
  ASSERT_EQ(qr.q.shape(), (Shape{m, n}));
  ASSERT_EQ(qr.r.shape(), (Shape{n, n}));
  RowMat q = ToEigen(qr.q), r = ToEigen(qr.r);
  EXPECT_LT(MaxAbsDiff(q.transpose() * q, RowMat::Identity(n, n)), 1e-13);
  EXPECT_LT(MaxAbsDiff(q * r, ToEigen(a)), 1e-13);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_GE(r(i, i), 0.0);
    for (int64_t j = 0; j < i; ++j) EXPECT_EQ(r(i, j), 0.0);
  }
  // Same R as Eigen's Householder QR up to the row signs.
  Eigen::HouseholderQR<RowMat> ref(ToEigen(a));
  RowMat rr = ref.matrixQR().topRows(n).triangularView<Eigen::Upper>();
  EXPECT_LT(MaxAbsDiff(r.cwiseAbs(), rr.cwiseAbs()), 1e-12);
}

TEST_P(QrTest, GradientsFirstAndSecondOrder) {
  const auto [m, n] = GetParam();
  Rng rng(8);
  Tensor a = Tensor::Randn({m, n}, rng);
  Tensor wq = Tensor::Randn({m, n}, rng), wr = Tensor::Randn({n, n}, rng);
  auto both = [&](const Fn& v) {
    QrResult qr = Qr(v[0]);
    return Sum(Sin(qr.q) * wq) + Sum(Square(qr.r) * wr);
  };
  auto q_only = [&](const Fn& v) { return Sum(Qr(v[0]).q * wq); };
  auto r_only = [&](const Fn& v) { return Sum(Qr(v[0]).r * wr); };
  for (const auto& f : {testing::ScalarFn(both), testing::ScalarFn(q_only),
                        testing::ScalarFn(r_only)}) {
    EXPECT_LT(GradientError(f, {a}), 1e-6);
    EXPECT_LT(HessianVectorError(f, {a}), 1e-6);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, QrTest,
                         ::testing::Values(std::make_pair(4, 4),
                                           std::make_pair(5, 3),
                                           std::make_pair(6, 1),
                                           std::make_pair(1, 1)));

TEST(Qr, RankDeficientValuesAndNaNGradient) {
  // Column 2 = 2 * column 0: values still factor A, the gradient is undefined.
  Tensor a = Tensor::FromVector({3, 3}, {1, 0, 2, 2, 1, 4, 0, 3, 0});
  QrResult qr = Qr(a);
  RowMat q = ToEigen(qr.q), r = ToEigen(qr.r);
  EXPECT_LT(MaxAbsDiff(q * r, ToEigen(a)), 1e-13);
  EXPECT_LT(MaxAbsDiff(q.transpose() * q, RowMat::Identity(3, 3)), 1e-13);
  EXPECT_NEAR(r(2, 2), 0.0, 1e-13);
  // Training can reach a rank-deficient matrix: NaN for the guard, no abort.
  Tensor p = Tensor::FromVector({2, 2}, {1, 2, 2, 4}).set_requires_grad(true);
  Tensor g = Grad({Sum(Qr(p).r)}, {p})[0];
  for (int k = 0; k < 4; ++k) EXPECT_TRUE(std::isnan(g[k])) << k;
  // Full rank: finite.
  Tensor full =
      Tensor::FromVector({2, 2}, {1, 2, 2, 5}).set_requires_grad(true);
  EXPECT_TRUE(std::isfinite(Sum(Grad({Sum(Qr(full).r)}, {full})[0]).item()));
  Tape::Get().Reset();
}

// A singular matrix is a state data and training can reach: NaN, no abort.
TEST(Linalg, SingularSolveInverseAndTriangularSolveGiveNaN) {
  Tensor a = Tensor::FromVector({2, 2}, {1, 2, 2, 4});
  auto all_nan = [](const Tensor& t) {
    for (int64_t i = 0; i < t.numel(); ++i)
      if (!std::isnan(t[i])) return false;
    return true;
  };
  EXPECT_TRUE(all_nan(Solve(a, Tensor::Ones({2}))));
  EXPECT_TRUE(all_nan(Inverse(a)));
  EXPECT_TRUE(
      all_nan(TriangularSolve(Tensor::Zeros({2, 2}), Tensor::Ones({2}), true)));
  // Batched: only the singular member.
  Tensor sing = Tensor::FromVector({2, 2, 2}, {1, 0, 0, 1, 1, 2, 2, 4});
  Tensor x = Solve(sing, Tensor::Ones({2, 2}));
  EXPECT_EQ(x[0], 1.0);
  EXPECT_EQ(x[1], 1.0);
  EXPECT_TRUE(std::isnan(x[2]) && std::isnan(x[3]));
  // Slogdet at a singular matrix with a nonzero adjoint: NaN gradient.
  Tensor s = sing.Detach().set_requires_grad(true);
  Tensor g = Grad({Sum(Slogdet(s).logabsdet)}, {s})[0];
  for (int k = 0; k < 4; ++k) EXPECT_TRUE(std::isfinite(g[k])) << k;
  for (int k = 4; k < 8; ++k) EXPECT_TRUE(std::isnan(g[k])) << k;
  Tensor one = Tensor::FromVector({2, 2}, {1, 2, 2, 4}).set_requires_grad(true);
  Tensor g1 = Grad({LogAbsDet(one)}, {one})[0];
  for (int k = 0; k < 4; ++k) EXPECT_TRUE(std::isnan(g1[k])) << k;
  Tape::Get().Reset();
}

TEST(LinalgDeath, ShapeMismatchNamesOpAndShapes) {
  EXPECT_DEATH(Solve(Tensor::Eye(3), Tensor::Ones({2, 4})),
               "solve: matrix \\[3, 3\\] and right-hand side \\[2, 4\\]");
  EXPECT_DEATH(Inverse(Tensor::Ones({2, 3})), "inverse: .*\\[2, 3\\]");
  EXPECT_DEATH(Slogdet(Tensor::Ones({3})), "slogdet: .*\\[3\\]");
  EXPECT_DEATH(Qr(Tensor::Ones({2, 3})), "qr: .*\\[2, 3\\]");
}

// ---- batched Solve / Slogdet: [B, n, n] against the rank-2 ops per member --

// Member i of a batch [B, ...] as a tensor of shape `dims`.
Tensor Member(const Tensor& t, int64_t i, const std::vector<int64_t>& dims) {
  return Reshape(Narrow(t, 0, i, 1), dims).Detach();
}

// B well-conditioned [n, n] matrices, [B, n, n].
Tensor WellConditionedBatch(int64_t batch, int64_t n, Rng& rng) {
  Tensor eye = BroadcastTo(Tensor::Eye(n), {batch, n, n});
  return (eye + 0.3 * Tensor::Randn({batch, n, n}, rng)).Detach();
}

TEST(BatchedSolve, ValuesAndGradientsMatchPerMatrixSolve) {
  Rng rng(11);
  const int64_t batch = 3, n = 4;
  Tensor a = WellConditionedBatch(batch, n, rng);
  for (Shape bs : {Shape{batch, n, 2}, Shape{batch, n}}) {
    std::vector<int64_t> member = bs.dims();
    member.erase(member.begin());
    Tensor b = Tensor::Randn(bs, rng);
    Tensor w = Tensor::Randn(bs, rng);
    Tensor av = a.Detach().set_requires_grad(true);
    Tensor bv = b.Detach().set_requires_grad(true);
    Tensor x = Solve(av, bv);
    ASSERT_EQ(x.shape(), bs);
    std::vector<Tensor> g = Grad({Sum(Square(x) * w)}, {av, bv});
    for (int64_t i = 0; i < batch; ++i) {
      Tensor ai = Member(a, i, {n, n}).set_requires_grad(true);
      Tensor bi = Member(b, i, member).set_requires_grad(true);
      Tensor xi = Solve(ai, bi);
      std::vector<Tensor> gi =
          Grad({Sum(Square(xi) * Member(w, i, member))}, {ai, bi});
      EXPECT_LT(MaxAbsDiff(ToEigen(Member(x, i, member)), ToEigen(xi)), 1e-14);
      EXPECT_LT(MaxAbsDiff(ToEigen(Member(g[0], i, {n, n})), ToEigen(gi[0])),
                1e-12);
      EXPECT_LT(MaxAbsDiff(ToEigen(Member(g[1], i, member)), ToEigen(gi[1])),
                1e-12);
    }
    Tape::Get().Reset();
  }
}

TEST(BatchedSolve, GradientsFirstAndSecondOrder) {
  Rng rng(12);
  const int64_t batch = 2, n = 3;
  Tensor a = WellConditionedBatch(batch, n, rng);
  for (Shape bs : {Shape{batch, n, 2}, Shape{batch, n}}) {
    Tensor b = Tensor::Randn(bs, rng);
    Tensor w = Tensor::Randn(bs, rng);
    auto f = [&](const Fn& v) { return Sum(Square(Solve(v[0], v[1])) * w); };
    EXPECT_LT(GradientError(f, {a, b}), 1e-6) << bs.ToString();
    EXPECT_LT(HessianVectorError(f, {a, b}), 1e-6) << bs.ToString();
  }
}

TEST(BatchedSlogdet, ValuesSignsAndGradientsMatchPerMatrix) {
  Rng rng(14);
  const int64_t batch = 5, n = 4;
  Tensor a = Tensor::Randn({batch, n, n}, rng);  // mixed signs of det
  Tensor w = Tensor::Randn({batch}, rng);
  Tensor av = a.Detach().set_requires_grad(true);
  SlogdetResult s = Slogdet(av);
  ASSERT_EQ(s.logabsdet.shape(), Shape({batch}));
  ASSERT_EQ(s.signs.shape(), Shape({batch}));
  Tensor g = Grad({Sum(s.logabsdet * w)}, {av})[0];
  double prod = 1.0;
  bool negative = false, positive = false;
  for (int64_t i = 0; i < batch; ++i) {
    Tensor ai = Member(a, i, {n, n});
    SlogdetResult si = Slogdet(ai);
    EXPECT_EQ(s.signs[i], si.sign);
    prod *= si.sign;
    (si.sign < 0 ? negative : positive) = true;
    EXPECT_NEAR(s.logabsdet[i], si.logabsdet.item(), 1e-14);
    RowMat want = w[i] * ToEigen(ai).inverse().transpose();
    EXPECT_LT(MaxAbsDiff(ToEigen(Member(g, i, {n, n})), want), 1e-12);
  }
  EXPECT_TRUE(negative && positive);  // the seed covers both signs
  EXPECT_EQ(s.sign, prod);
  Tape::Get().Reset();
  auto f = [&](const Fn& v) { return Sum(LogAbsDet(v[0]) * w); };
  EXPECT_LT(GradientError(f, {a}), 1e-6);
  EXPECT_LT(HessianVectorError(f, {a}), 1e-6);
}

TEST(BatchedSlogdet, SingularMemberAsRankTwo) {
  Tensor a = Tensor::FromVector({3, 2, 2}, {2, 1, 1, 3,    // det 5
                                            1, 2, 2, 4,    // singular
                                            0, 1, 1, 0});  // det -1
  SlogdetResult s = Slogdet(a);
  EXPECT_EQ(s.sign, 0.0);
  EXPECT_EQ(s.signs.ToVector(), std::vector<double>({1.0, 0.0, -1.0}));
  EXPECT_DOUBLE_EQ(s.logabsdet[0], std::log(5.0));
  EXPECT_EQ(s.logabsdet[1], -std::numeric_limits<double>::infinity());
  EXPECT_EQ(s.logabsdet[2], 0.0);
  // A zero adjoint on the singular member: zero gradient there (no NaN), the
  // others g_i A_i^-T; first and second order, as the rank-2 op.
  Tensor av = a.Detach().set_requires_grad(true);
  Tensor gout = Tensor::FromVector({3}, {2.0, 0.0, -3.0});
  Tensor g = Grad({Slogdet(av).logabsdet}, {av}, {gout}, true)[0];
  std::vector<double> want = {2 * 0.6, 2 * -0.2, 2 * -0.2, 2 * 0.4, 0,  0,
                              0,       0,        0,        -3,      -3, 0};
  for (int k = 0; k < 12; ++k) EXPECT_NEAR(g[k], want[k], 1e-15) << k;
  // d(sum g)/dA = -A^-T 1 A^-T per member (gout fixed); 0 on the singular one.
  Tensor h = Grad({Sum(g)}, {av})[0];
  for (int k = 4; k < 8; ++k) EXPECT_EQ(h[k], 0.0);
  EXPECT_TRUE(std::isfinite(Sum(h).item()));
  Tape::Get().Reset();
}

TEST(LinalgDeath, BatchedShapeErrors) {
  Tensor a = Tensor::Ones({2, 3, 3});
  EXPECT_DEATH(Solve(a, Tensor::Ones({2, 4})),
               "solve: matrices \\[2, 3, 3\\] and right-hand side \\[2, 4\\]");
  EXPECT_DEATH(Solve(a, Tensor::Ones({3, 3, 1})),
               "solve: matrices \\[2, 3, 3\\] and right-hand side "
               "\\[3, 3, 1\\]");
  EXPECT_DEATH(Solve(a, Tensor::Ones({3})),
               "solve: matrices \\[2, 3, 3\\] and right-hand side \\[3\\]");
  EXPECT_DEATH(Solve(Tensor::Ones({2, 3, 4}), Tensor::Ones({2, 3})),
               "solve: .*\\[2, 3, 4\\]");
  EXPECT_DEATH(Slogdet(Tensor::Ones({2, 3, 4})), "slogdet: .*\\[2, 3, 4\\]");
  EXPECT_DEATH(Slogdet(Tensor::Ones({1, 2, 2, 2})),
               "slogdet: .*\\[1, 2, 2, 2\\]");
}

}  // namespace
}  // namespace flowtape

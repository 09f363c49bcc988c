// Functional autodiff: Jacobians against finite differences, JVP = J u,
// VJP = v' J, per-sample Jacobians, HVPs, exact traces, and the Hutchinson
// estimator's unbiasedness and variance for Gaussian and Rademacher noise.
#include "autodiff/functional.h"

#include <cmath>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/gradcheck.h"

namespace flowtape {
namespace {

// A nonlinear map [N, D] -> [N, M] with rows processed independently:
// f(x) = tanh(x A + b) * (x B) (elementwise), with a full (non-diagonal)
// Jacobian.
struct RowMap {
  Tensor a, b, bb;
  RowMap(int64_t d, int64_t m, Rng& rng)
      : a(Tensor::Randn({d, m}, rng)),
        b(Tensor::Randn({m}, rng)),
        bb(Tensor::Randn({d, m}, rng)) {}
  Tensor operator()(const Tensor& x) const {
    return Tanh(MatMul(x, a) + b) * MatMul(x, bb) + Square(MatMul(x, a)) * 0.1;
  }
};

// Central finite-difference Jacobian [numel(f), numel(x)].
std::vector<double> FdJacobian(const TensorFn& f, const Tensor& x,
                               double h = 1e-6) {
  NoGradScope no_grad;
  const int64_t m = f(x).numel(), n = x.numel();
  std::vector<double> j(m * n);
  Tensor xp = x.Detach();
  for (int64_t c = 0; c < n; ++c) {
    double* p = xp.mutable_data<double>();
    const double old = p[c];
    p[c] = old + h;
    Tensor fp = f(xp);
    p[c] = old - h;
    Tensor fm = f(xp);
    p[c] = old;
    for (int64_t r = 0; r < m; ++r) j[r * n + c] = (fp[r] - fm[r]) / (2 * h);
  }
  return j;
}

TEST(Functional, JacobianMatchesFiniteDifferences) {
  Rng rng(1);
  RowMap g(3, 3, rng);
  Tensor x = Tensor::Randn({2, 3}, rng);
  TensorFn f = [&](const Tensor& t) { return Narrow(g(t), 1, 0, 2); };
  Tensor j = Jacobian(f, x);
  ASSERT_EQ(j.shape(), (Shape{4, 6}));
  std::vector<double> fd = FdJacobian(f, x);
  for (int64_t i = 0; i < j.numel(); ++i) EXPECT_NEAR(j[i], fd[i], 1e-8) << i;
  Tape::Get().Reset();
}

TEST(Functional, JvpAndVjpAgreeWithJacobian) {
  Rng rng(2);
  RowMap g(3, 4, rng);
  Tensor x = Tensor::Randn({2, 3}, rng);
  Tensor u = Tensor::Randn({2, 3}, rng), v = Tensor::Randn({2, 4}, rng);
  Tensor j = Jacobian(g, x);  // [8, 6]
  auto [y1, ju] = Jvp(g, x, u);
  auto [y2, vj] = Vjp(g, x, v);
  ASSERT_EQ(ju.shape(), (Shape{2, 4}));
  ASSERT_EQ(vj.shape(), (Shape{2, 3}));
  Tensor y = g(x);
  for (int64_t i = 0; i < 8; ++i) {
    EXPECT_NEAR(y1[i], y[i], 1e-15);
    double want = 0;
    for (int64_t k = 0; k < 6; ++k) want += j[i * 6 + k] * u[k];
    EXPECT_NEAR(ju[i], want, 1e-12);
  }
  for (int64_t k = 0; k < 6; ++k) {
    double want = 0;
    for (int64_t i = 0; i < 8; ++i) want += v[i] * j[i * 6 + k];
    EXPECT_NEAR(vj[k], want, 1e-12);
  }
  Tape::Get().Reset();
}

TEST(Functional, BatchJacobianIsPerSampleJacobian) {
  Rng rng(3);
  RowMap g(3, 2, rng);
  Tensor x = Tensor::Randn({4, 3}, rng);
  Tensor bj = BatchJacobian(g, x);
  ASSERT_EQ(bj.shape(), (Shape{4, 2, 3}));
  for (int64_t n = 0; n < 4; ++n) {
    Tensor xn = Narrow(x, 0, n, 1).Detach();
    std::vector<double> fd = FdJacobian(g, xn);  // [2, 3]
    for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR(bj[n * 6 + i], fd[i], 1e-8);
  }
  Tape::Get().Reset();
}

TEST(Functional, HessianVectorProductMatchesFiniteDifferences) {
  Rng rng(4);
  Tensor w = Tensor::Randn({4, 4}, rng);
  TensorFn f = [&](const Tensor& x) {
    return Sum(Tanh(MatMul(Reshape(x, {1, 4}), w))) * Sum(Square(x));
  };
  Tensor x = Tensor::Randn({4}, rng), v = Tensor::Randn({4}, rng);
  Tensor hv = HessianVectorProduct(f, x, v);
  // (grad(x + h v) - grad(x - h v)) / 2h
  const double h = 1e-5;
  auto grad_at = [&](double t) {
    auto [y, g] = Vjp(f, (x + t * v).Detach(), Tensor::Scalar(1.0));
    return g.Detach();
  };
  Tensor fd = (grad_at(h) - grad_at(-h)) / (2 * h);
  for (int64_t i = 0; i < 4; ++i) EXPECT_NEAR(hv[i], fd[i], 1e-8);
  Tape::Get().Reset();
}

TEST(Functional, ExactTraceIsTraceOfBatchJacobian) {
  Rng rng(5);
  RowMap g(4, 4, rng);
  Tensor x = Tensor::Randn({3, 4}, rng);
  Tensor tr = ExactTrace(g, x);
  Tensor bj = BatchJacobian(g, x);
  ASSERT_EQ(tr.shape(), (Shape{3}));
  for (int64_t n = 0; n < 3; ++n) {
    double want = 0;
    for (int64_t i = 0; i < 4; ++i) want += bj[n * 16 + i * 4 + i];
    EXPECT_NEAR(tr[n], want, 1e-12);
  }
  Tape::Get().Reset();
}

TEST(Functional, TracesAreDifferentiableWithCreateGraph) {
  Rng rng(6);
  RowMap g(3, 3, rng);
  Tensor x = Tensor::Randn({2, 3}, rng), eps = Tensor::Randn({2, 3}, rng);
  auto exact = [&](const std::vector<Tensor>& v) {
    return Sum(ExactTrace(g, v[0], /*create_graph=*/true));
  };
  auto hutch = [&](const std::vector<Tensor>& v) {
    return Sum(Square(HutchinsonTrace(g, v[0], eps, /*create_graph=*/true)));
  };
  EXPECT_LT(testing::GradientError(exact, {x}), 1e-6);
  EXPECT_LT(testing::GradientError(hutch, {x}), 1e-6);
}

// The Hutchinson estimate eps' J eps is unbiased for tr J when E[eps eps'] = I;
// its variance is 2 |S|_F^2 (Gaussian) and 2 (|S|_F^2 - sum_i J_ii^2)
// (Rademacher), S = (J + J') / 2. One call with K copies of the same point
// gives K independent draws.
void CheckHutchinson(Noise noise) {
  Rng rng(noise == Noise::kGaussian ? 9 : 8);
  const int64_t d = 4, k = 10000;
  RowMap g(d, d, rng);
  Tensor x0 = Tensor::Randn({1, d}, rng);
  Tensor x = BroadcastTo(x0, {k, d}).Detach();
  Tensor j = Reshape(BatchJacobian(g, x0), {d, d});
  double trace = 0, s_f2 = 0, diag2 = 0;
  for (int64_t a = 0; a < d; ++a) {
    trace += j[a * d + a];
    diag2 += j[a * d + a] * j[a * d + a];
    for (int64_t b = 0; b < d; ++b) {
      double s = 0.5 * (j[a * d + b] + j[b * d + a]);
      s_f2 += s * s;
    }
  }
  const double var_theory =
      noise == Noise::kGaussian ? 2 * s_f2 : 2 * (s_f2 - diag2);
  ASSERT_GT(var_theory, 0.1);  // a test with zero variance could not fail
  Tensor eps = SampleNoise(x.shape(), noise, rng);
  Tensor est = HutchinsonTrace(g, x, eps);
  ASSERT_EQ(est.shape(), (Shape{k}));
  double mean = 0, m2 = 0;
  for (int64_t i = 0; i < k; ++i) mean += est[i] / k;
  for (int64_t i = 0; i < k; ++i) m2 += (est[i] - mean) * (est[i] - mean);
  const double var = m2 / (k - 1), se = std::sqrt(var / k);
  EXPECT_LT(std::fabs(mean - trace), 4 * se)
      << "mean " << mean << " trace " << trace << " se " << se;
  // The sample variance matches theory (checks the noise law, not only its
  // mean); the relative sd of a sample variance here is a few percent.
  EXPECT_NEAR(var / var_theory, 1.0, 0.2) << var << " vs " << var_theory;
  // Power: the same draws scaled by 1.2 (E[eps eps'] = 1.44 I, a biased
  // estimator) are rejected by the same 4-standard-error test. The seed is
  // one whose trace makes that bias, 0.44 tr, far larger than the noise.
  ASSERT_GT(0.44 * std::fabs(trace), 10 * 1.44 * se);
  Tensor bad = HutchinsonTrace(g, x, 1.2 * eps);
  double bad_mean = Mean(bad).item();
  EXPECT_GT(std::fabs(bad_mean - trace), 4 * 1.44 * se) << bad_mean;
  Tape::Get().Reset();
}

TEST(Functional, HutchinsonUnbiasedGaussian) {
  CheckHutchinson(Noise::kGaussian);
}
TEST(Functional, HutchinsonUnbiasedRademacher) {
  CheckHutchinson(Noise::kRademacher);
}

// Pass-through maps (no op recorded: f returns its input, or a no-op reshape,
// narrow, concat, broadcast of it) have Jacobian I, not 0.
TEST(Functional, IdentityMapsHaveIdentityJacobian) {
  const std::vector<TensorFn> ids = {
      [](const Tensor& t) { return t; },
      [](const Tensor& t) {
        return Reshape(t, {2, 3});
      },
      [](const Tensor& t) { return Narrow(t, 1, 0, 3); },
      [](const Tensor& t) { return Concat({t}, 0); },
      [](const Tensor& t) {
        return SumTo(BroadcastTo(t, {2, 3}), {2, 3});
      }};
  Rng rng(10);
  Tensor x = Tensor::Randn({2, 3}, rng), u = Tensor::Randn({2, 3}, rng);
  for (size_t f = 0; f < ids.size(); ++f) {
    Tensor j = Jacobian(ids[f], x);
    ASSERT_EQ(j.shape(), (Shape{6, 6}));
    for (int64_t r = 0; r < 6; ++r)
      for (int64_t c = 0; c < 6; ++c)
        EXPECT_EQ(j[r * 6 + c], r == c ? 1.0 : 0.0) << f << " " << r << c;
    Tensor tr = ExactTrace(ids[f], x);
    EXPECT_EQ(tr.ToVector(), (std::vector<double>{3.0, 3.0})) << f;
    EXPECT_EQ(Jvp(ids[f], x, u).second.ToVector(), u.ToVector()) << f;
    EXPECT_EQ(Vjp(ids[f], x, u).second.ToVector(), u.ToVector()) << f;
    Tensor hutch = HutchinsonTrace(ids[f], x, u);  // u' I u per row
    for (int64_t n = 0; n < 2; ++n)
      EXPECT_DOUBLE_EQ(hutch[n], u[3 * n] * u[3 * n] +
                                     u[3 * n + 1] * u[3 * n + 1] +
                                     u[3 * n + 2] * u[3 * n + 2]);
    Tensor bj = BatchJacobian(ids[f], x);
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t i = 0; i < 9; ++i)
        EXPECT_EQ(bj[n * 9 + i], i % 4 == 0 ? 1.0 : 0.0) << f;
    Tape::Get().Reset();
  }
}

TEST(Functional, SampleNoiseMoments) {
  Rng rng(9);
  Tensor r = SampleNoise({20000}, Noise::kRademacher, rng);
  for (double v : r.ToVector()) ASSERT_TRUE(v == 1.0 || v == -1.0);
  EXPECT_NEAR(Mean(r).item(), 0.0, 4 / std::sqrt(20000.0));
  Tensor g = SampleNoise({20000}, Noise::kGaussian, rng);
  EXPECT_NEAR(Mean(g).item(), 0.0, 4 / std::sqrt(20000.0));
  EXPECT_NEAR(Mean(Square(g)).item(), 1.0, 4 * std::sqrt(2 / 20000.0));
}

}  // namespace
}  // namespace flowtape

// Numeric ODE solves: accuracy against the exact solution of dy/dt = A y,
// convergence orders, cost counters, requested-time edge cases and errors.
#include "ode/solver.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ode/solve.h"
#include "tests/ode/linear_ode.h"

namespace flowtape::ode {
namespace {
using testing::Mat;

using testing::TestA;
using testing::TestY0;

// Solves the linear ODE numerically on the flattened rows.
absl::StatusOr<std::vector<std::vector<double>>> SolveLinear(
    const Mat& a, const Mat& y0, const std::vector<double>& times,
    const SolverOptions& o, SolverCounters* c = nullptr) {
  VectorField<double> f = [a](double, const std::vector<double>& y,
                              std::vector<double>& dy) {
    Eigen::Map<const Mat> ym(y.data(), y.size() / 3, 3);
    Eigen::Map<Mat>(dy.data(), y.size() / 3, 3) = ym * a.transpose();
  };
  std::vector<double> v(y0.data(), y0.data() + y0.size());
  return Integrate(f, v, times, o, c);
}

double MaxRelError(const std::vector<double>& got, const Mat& want) {
  double err = 0, scale = want.cwiseAbs().maxCoeff();
  for (int64_t i = 0; i < want.size(); ++i)
    err = std::max(err, std::fabs(got[i] - want.data()[i]));
  return err / scale;
}

TEST(SolverTest, Dopri5MatchesMatrixExponential) {
  for (ErrorNorm norm : {ErrorNorm::kRms, ErrorNorm::kMax}) {
    SolverOptions o;
    o.rtol = 1e-10;
    o.atol = 1e-12;
    o.norm = norm;
    std::vector<double> times{0.0, 0.4, 1.3, 2.0};
    auto ys = SolveLinear(TestA(), TestY0(), times, o);
    ASSERT_TRUE(ys.ok()) << ys.status();
    ASSERT_EQ(ys->size(), times.size());
    for (size_t i = 0; i < times.size(); ++i)
      EXPECT_LT(MaxRelError((*ys)[i], testing::LinearSolution(TestA(), TestY0(),
                                                              times[i])),
                1e-9)
          << "t=" << times[i];
  }
}

TEST(SolverTest, BackwardInTime) {
  SolverOptions o;
  o.rtol = 1e-10;
  o.atol = 1e-12;
  std::vector<double> times{1.0, 0.2, -0.5};
  auto ys = SolveLinear(TestA(), TestY0(), times, o);
  ASSERT_TRUE(ys.ok()) << ys.status();
  for (size_t i = 0; i < times.size(); ++i)
    EXPECT_LT(MaxRelError((*ys)[i], testing::LinearSolution(TestA(), TestY0(),
                                                            times[i] - 1.0)),
              1e-9);
}

// Global error ~ h^p: halving h divides it by 2^p.
TEST(SolverTest, FixedStepConvergenceOrders) {
  const Mat want = testing::LinearSolution(TestA(), TestY0(), 1.0);
  for (auto [method, order] :
       {std::pair{Method::kRk4, 4}, {Method::kEuler, 1}}) {
    SolverOptions o;
    o.method = method;
    o.step_size = 0.05;
    double e1 =
        MaxRelError(SolveLinear(TestA(), TestY0(), {0, 1}, o)->back(), want);
    o.step_size = 0.025;
    double e2 =
        MaxRelError(SolveLinear(TestA(), TestY0(), {0, 1}, o)->back(), want);
    EXPECT_NEAR(std::log2(e1 / e2), order, 0.15) << MethodName(method);
  }
}

TEST(SolverTest, CountersAreExact) {
  SolverOptions o;
  o.rtol = 1e-8;
  SolverCounters c;
  ASSERT_TRUE(SolveLinear(TestA(), TestY0(), {0.0, 0.7, 3.0}, o, &c).ok());
  EXPECT_GT(c.accepted, 5);
  // f(t0) once, one probe for the first step, then 6 per attempted step
  // (FSAL: the 7th stage is the next step's first).
  EXPECT_EQ(c.nfe, 2 + 6 * (c.accepted + c.rejected));

  o.first_step = 1.0;  // too large: forces rejections
  SolverCounters c2;
  ASSERT_TRUE(SolveLinear(TestA(), TestY0(), {0.0, 3.0}, o, &c2).ok());
  EXPECT_GT(c2.rejected, 0);
  EXPECT_EQ(c2.nfe, 1 + 6 * (c2.accepted + c2.rejected));

  SolverOptions fixed;
  fixed.method = Method::kRk4;
  fixed.step_size = 0.3;  // [0, 1]: 4 steps, [1, 2.5]: 5 steps
  SolverCounters c3;
  ASSERT_TRUE(SolveLinear(TestA(), TestY0(), {0.0, 1.0, 2.5}, fixed, &c3).ok());
  EXPECT_EQ(c3.accepted, 9);
  EXPECT_EQ(c3.nfe, 36);
}

// y' = c: dopri5 is exact and its error estimate 0, so the only steps are
// the ramp from Hairer's first step h = min(100 h0, (0.01 / d1)^(1/5))
// (h0 = 0.01 d0 / d1, d0 = |y0|_w, d1 = |c|_w) growing by Odeint's largest
// factor, 0.9 * 5 = 4.5, until t_end. A step cap or a slower growth shows
// up here as extra steps.
TEST(SolverTest, StraightLineTakesOnlyTheStartingRamp) {
  const std::vector<double> c{1.0, -2.0, 0.5, 3.0}, y0{1.0, 1.0, -1.0, 2.0};
  VectorField<double> f = [&c](double, const std::vector<double>&,
                               std::vector<double>& dy) { dy = c; };
  for (double tol : {1e-3, 1e-5, 1e-7}) {
    SolverOptions o;
    o.rtol = o.atol = tol;
    double d0 = 0, d1 = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      const double w = tol + tol * std::fabs(y0[i]);
      d0 += y0[i] * y0[i] / (w * w) / c.size();
      d1 += c[i] * c[i] / (w * w) / c.size();
    }
    double h = std::min(100 * 0.01 * std::sqrt(d0 / d1),
                        std::pow(0.01 / std::sqrt(d1), 0.2));
    std::vector<double> want;
    for (double t = 0; t < 1 - 1e-12; t += h, h *= 4.5)
      want.push_back(std::min(h, 1 - t));
    SolverCounters counters;
    std::vector<Step> steps;
    auto y = Integrate(f, y0, {0.0, 1.0}, o, &counters, &steps);
    ASSERT_TRUE(y.ok());
    ASSERT_EQ(steps.size(), want.size()) << "tol " << tol;
    for (size_t k = 0; k < want.size(); ++k)
      EXPECT_NEAR(steps[k].dt, want[k], 1e-12)
          << "tol " << tol << " step " << k;
    EXPECT_EQ(counters.rejected, 0);
    EXPECT_EQ(counters.nfe, 2 + 6 * counters.accepted);
    for (size_t i = 0; i < c.size(); ++i)
      EXPECT_NEAR(y->back()[i], y0[i] + c[i], 1e-13);
  }
  // Given a first step of the whole interval: one step.
  SolverOptions o;
  o.rtol = o.atol = 1e-5;
  o.first_step = 1.0;
  SolverCounters counters;
  ASSERT_TRUE(Integrate(f, y0, {0.0, 1.0}, o, &counters).ok());
  EXPECT_EQ(counters.accepted, 1);
  EXPECT_EQ(counters.nfe, 7);
}

TEST(SolverTest, TighterToleranceCostsMoreAndMaxDtIsRespected) {
  SolverOptions o;
  SolverCounters loose, tight, capped;
  o.rtol = 1e-4;
  ASSERT_TRUE(SolveLinear(TestA(), TestY0(), {0, 3}, o, &loose).ok());
  o.rtol = 1e-10;
  ASSERT_TRUE(SolveLinear(TestA(), TestY0(), {0, 3}, o, &tight).ok());
  EXPECT_GT(tight.accepted, 2 * loose.accepted);
  o.rtol = 1e-4;
  o.max_dt = 0.01;
  ASSERT_TRUE(SolveLinear(TestA(), TestY0(), {0, 3}, o, &capped).ok());
  EXPECT_GE(capped.accepted, 300);
}

TEST(SolverTest, RequestedTimeEdgeCases) {
  SolverOptions o;
  SolverCounters c;
  // A single time returns y0 and evaluates nothing.
  auto one = SolveLinear(TestA(), TestY0(), {0.5}, o, &c);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ(MaxRelError((*one)[0], TestY0()), 0.0);
  EXPECT_EQ(c.nfe, 0);
  // Very close requested times are each hit exactly.
  auto close = SolveLinear(TestA(), TestY0(), {0.0, 1e-9, 2e-9, 1.0}, o);
  ASSERT_TRUE(close.ok()) << close.status();
  EXPECT_LT(MaxRelError((*close)[2],
                        testing::LinearSolution(TestA(), TestY0(), 2e-9)),
            1e-12);
  // Repeated, non-monotone, empty and non-finite times are errors.
  for (std::vector<double> bad : {std::vector<double>{0.0, 1.0, 1.0},
                                  {0.0, 1.0, 0.5},
                                  {},
                                  {0.0, std::nan("")}}) {
    auto r = SolveLinear(TestA(), TestY0(), bad, o);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(SolverTest, TooManyStepsAndUnderflowAreErrors) {
  SolverOptions o;
  o.max_steps = 5;
  auto r = SolveLinear(TestA(), TestY0(), {0.0, 10.0}, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("max_steps"), std::string::npos);

  // dy/dt = y^2, y(0) = 1 blows up at t = 1.
  VectorField<double> blowup = [](double, const std::vector<double>& y,
                                  std::vector<double>& dy) {
    dy[0] = y[0] * y[0];
  };
  SolverOptions o2;
  auto r2 = Integrate<double>(blowup, {1.0}, {0.0, 2.0}, o2);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("t="), std::string::npos) << r2.status();

  SolverOptions fixed;
  fixed.method = Method::kEuler;
  fixed.step_size = 0.0;
  EXPECT_EQ(SolveLinear(TestA(), TestY0(), {0, 1}, fixed).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SolverTest, SeminormIgnoresUncontrolledComponents) {
  // Component 1 oscillates fast but only component 0 is error-controlled.
  VectorField<double> f = [](double t, const std::vector<double>& y,
                             std::vector<double>& dy) {
    dy[0] = -y[0];
    dy[1] = 50.0 * std::cos(50.0 * t);
  };
  SolverOptions o;
  o.rtol = 1e-8;
  SolverCounters full, semi;
  auto r1 = Integrate<double>(f, {1.0, 0.0}, {0.0, 2.0}, o, &full);
  o.error_control_size = 1;
  auto r2 = Integrate<double>(f, {1.0, 0.0}, {0.0, 2.0}, o, &semi);
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_LT(semi.accepted, full.accepted);
  EXPECT_NEAR((*r2)[1][0], std::exp(-2.0), 1e-7);
  EXPECT_NEAR((*r1)[1][1], std::sin(100.0), 1e-6);
}

// float32 state: the solver integrates floats (f sees and returns float
// vectors). At FFJORD's rtol = 1e-5 and at 1e-6 it takes float64's steps
// and its error is set by rtol; at the floor MinRtol(float32) = 2^-24 it
// still converges at about float64's cost, its error now at the float
// rounding level (above float64's), which is why tighter tolerances are
// refused.
TEST(SolverTest, Float32StateAccuracyAndCost) {
  const Mat a = TestA(), y0 = TestY0();
  VectorField<float> f = [a](double, const std::vector<float>& y,
                             std::vector<float>& dy) {
    for (size_t r = 0; r < y.size() / 3; ++r)
      for (int i = 0; i < 3; ++i) {
        double acc = 0;
        for (int j = 0; j < 3; ++j) acc += a(i, j) * y[3 * r + j];
        dy[3 * r + i] = static_cast<float>(acc);
      }
  };
  std::vector<float> v(y0.data(), y0.data() + y0.size());
  const Mat want = testing::LinearSolution(a, y0, 2.0);
  EXPECT_EQ(MinRtol(kFloat32), std::ldexp(1.0, -24));
  EXPECT_EQ(MinRtol(kFloat64), std::ldexp(1.0, -53));
  for (double rtol : {1e-5, 1e-6, MinRtol(kFloat32)}) {
    SolverOptions o;
    o.rtol = rtol;
    o.atol = rtol * 1e-2;
    SolverCounters c32, c64;
    auto ys = Integrate<float>(f, v, {0.0, 2.0}, o, &c32);
    ASSERT_TRUE(ys.ok()) << ys.status();
    auto yd = SolveLinear(a, y0, {0.0, 2.0}, o, &c64);
    ASSERT_TRUE(yd.ok());
    std::vector<double> got((*ys)[1].begin(), (*ys)[1].end());
    const double err32 = MaxRelError(got, want);
    const double err64 = MaxRelError((*yd)[1], want);
    EXPECT_LE(c32.accepted + c32.rejected, c64.accepted + c64.rejected + 2)
        << rtol;
    if (rtol >= 1e-6) {
      EXPECT_LT(err32, 1.5 * err64) << rtol;
    } else {
      EXPECT_GT(err32, 1.5 * err64);  // float rounding shows
      EXPECT_LT(err32, 1e-6);
    }
  }
}

// Tolerances below the unit roundoff of the state are refused by name.
TEST(SolverTest, RtolFloorIsPerDtype) {
  SolverOptions o;
  o.rtol = 5e-8;
  EXPECT_TRUE(o.Validate(kFloat64).ok());
  absl::Status s = o.Validate(kFloat32);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("below the float32 floor"), std::string::npos)
      << s;
  o.rtol = 1e-16;
  EXPECT_EQ(o.Validate(kFloat64).code(), absl::StatusCode::kInvalidArgument);
  o.method = Method::kRk4;  // fixed step: no error control, no floor
  EXPECT_TRUE(o.Validate(kFloat32).ok());
  VectorField<float> zero = [](double, const std::vector<float>&,
                               std::vector<float>& dy) {
    std::fill(dy.begin(), dy.end(), 0.0f);
  };
  SolverOptions tight;
  tight.rtol = 1e-8;
  EXPECT_EQ(Integrate<float>(zero, {1.0f}, {0.0, 1.0}, tight).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flowtape::ode

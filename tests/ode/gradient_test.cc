// Gradients through ODE solves: continuous adjoint vs discretise-then-
// optimise vs exact (linear ODE, matrix exponentials) vs central finite
// differences of the whole solve, at rtol = 1e-10.
#include <cmath>
#include <cstdio>
#include <string>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "nn/layers.h"
#include "ode/solve.h"
#include "tests/ode/linear_ode.h"

namespace flowtape::ode {
namespace {
using testing::Mat;
using testing::ToMat;
using testing::ToTensor;

using testing::TestA;
using testing::TestY0;
Mat Weights(int i) {  // loss weights for the i-th requested time
  Mat w(2, 3);
  w << 0.3, -1.0, 0.5, 0.7, 0.2, -0.4;
  return w * (1.0 + 0.5 * i);
}

OdeOptions Tight(Gradient g) {
  OdeOptions o;
  o.gradient = g;
  o.rtol = 1e-10;
  o.atol = 1e-12;
  return o;
}

double RelErr(const Mat& got, const Mat& want) {
  return (got - want).cwiseAbs().maxCoeff() /
         std::max(1e-300, want.cwiseAbs().maxCoeff());
}

struct Grads {
  Mat y0, a;
  OdeStats stats;  // forward and backward counters of the solve
};

// L = sum_i sum(W_i * y(times[i])), gradients wrt y0 and A, computed in
// `dtype` (converted to double for comparison).
Grads LinearGrads(const std::vector<double>& times, OdeOptions o,
                  DType dtype = kFloat64) {
  Tape::Get().Reset();
  o.stats = std::make_shared<OdeStatsSink>();
  Tensor y0 = Cast(ToTensor(TestY0()), dtype).set_requires_grad(true);
  Tensor a = Cast(ToTensor(TestA()), dtype).set_requires_grad(true);
  OdeFn f = [a](double, const Tensor& y) { return testing::LinearField(a, y); };
  auto sol = OdeSolve(f, y0, times, {a}, o);
  EXPECT_TRUE(sol.ok()) << sol.status();
  Tensor loss = Tensor::Scalar(0.0, dtype);
  for (size_t i = 0; i < times.size(); ++i)
    loss = loss + Sum(sol->ys[i] * Cast(ToTensor(Weights(i)), dtype));
  auto g = Grad({loss}, {y0, a});
  Grads out{ToMat(Cast(g[0], kFloat64)), ToMat(Cast(g[1], kFloat64)),
            o.stats->Get()};
  EXPECT_EQ(out.stats.forward.nfe, sol->forward.nfe);
  Tape::Get().Reset();
  return out;
}

Grads ExactGrads(const std::vector<double>& times) {
  Grads g{Mat::Zero(2, 3), Mat::Zero(3, 3), {}};
  for (size_t i = 0; i < times.size(); ++i) {
    double t = times[i] - times[0];
    g.y0 += testing::LinearGradY0(TestA(), Weights(i), t);
    g.a += testing::LinearGradA(TestA(), TestY0(), Weights(i), t);
  }
  return g;
}

TEST(OdeGradientTest, LinearOdeAdjointAndDiscreteMatchExact) {
  const std::vector<double> times{0.0, 0.5, 1.2, 2.0};
  Grads exact = ExactGrads(times);
  for (Gradient mode : {Gradient::kAdjoint, Gradient::kDiscretize}) {
    Grads g = LinearGrads(times, Tight(mode));
    std::printf(
        "mode %d: rel err dL/dy0 %.2e dL/dA %.2e, nfe fwd %ld bwd %ld\n",
        static_cast<int>(mode), RelErr(g.y0, exact.y0), RelErr(g.a, exact.a),
        static_cast<long>(g.stats.forward.nfe),
        static_cast<long>(g.stats.backward.nfe));
    EXPECT_LT(RelErr(g.y0, exact.y0), 1e-8) << static_cast<int>(mode);
    EXPECT_LT(RelErr(g.a, exact.a), 1e-8) << static_cast<int>(mode);
  }
}

// float32 state (y0, A and the solve in float32): both gradient modes still
// give the exact gradients, to the float32 tolerance rtol = 1e-5 allows
// (gradient checks proper stay float64). The adjoint's parameter adjoints
// accumulate in the float32 augmented state.
TEST(OdeGradientTest, Float32GradientsMatchExact) {
  const std::vector<double> times{0.0, 0.5, 2.0};
  Grads exact = ExactGrads(times);
  for (Gradient mode : {Gradient::kAdjoint, Gradient::kDiscretize}) {
    OdeOptions o;
    o.gradient = mode;
    o.rtol = 1e-5;
    o.atol = 1e-7;
    Grads g = LinearGrads(times, o, kFloat32);
    EXPECT_LT(RelErr(g.y0, exact.y0), 1e-4) << static_cast<int>(mode);
    EXPECT_LT(RelErr(g.a, exact.a), 1e-4) << static_cast<int>(mode);
    EXPECT_GT(RelErr(g.a, exact.a), 1e-9);  // genuinely float32
  }
}

TEST(OdeGradientTest, BackwardInTimeSolve) {
  const std::vector<double> times{1.5, 0.9, -0.4};
  Grads exact = ExactGrads(times);
  for (Gradient mode : {Gradient::kAdjoint, Gradient::kDiscretize}) {
    Grads g = LinearGrads(times, Tight(mode));
    EXPECT_LT(RelErr(g.y0, exact.y0), 1e-8);
    EXPECT_LT(RelErr(g.a, exact.a), 1e-8);
  }
}

TEST(OdeGradientTest, SingleRequestedTimeIsIdentity) {
  for (Gradient mode : {Gradient::kAdjoint, Gradient::kDiscretize}) {
    Grads g = LinearGrads({0.3}, Tight(mode));
    EXPECT_EQ(RelErr(g.y0, Weights(0)), 0.0);
    EXPECT_EQ(g.a.cwiseAbs().maxCoeff(), 0.0);
  }
}

TEST(OdeGradientTest, SeminormKeepsAccuracyWithFewerBackwardEvaluations) {
  const std::vector<double> times{0.0, 2.0};
  Grads exact = ExactGrads(times);
  OdeOptions o = Tight(Gradient::kAdjoint);
  Grads full = LinearGrads(times, o);
  o.seminorm = true;
  Grads semi = LinearGrads(times, o);
  EXPECT_LT(RelErr(semi.a, exact.a), 1e-8);
  EXPECT_LT(semi.stats.backward.nfe, full.stats.backward.nfe);
  EXPECT_GT(semi.stats.backward.nfe, 0);
  EXPECT_TRUE(full.stats.backward_status.ok());
}

// adjoint_rtol/atol drive the backward solve only: looser ones cost fewer
// backward evaluations (the forward count is unchanged) and lose accuracy
// in proportion; tighter ones than the forward solve's cost more.
TEST(OdeGradientTest, AdjointTolerancesControlTheBackwardSolve) {
  const std::vector<double> times{0.0, 2.0};
  Grads exact = ExactGrads(times);
  OdeOptions o = Tight(Gradient::kAdjoint);
  o.rtol = 1e-8;
  o.atol = 1e-10;
  Grads same = LinearGrads(times, o);
  o.adjoint_rtol = 1e-4;
  o.adjoint_atol = 1e-6;
  Grads loose = LinearGrads(times, o);
  o.adjoint_rtol = 1e-11;
  o.adjoint_atol = 1e-13;
  Grads tight = LinearGrads(times, o);
  EXPECT_EQ(loose.stats.forward.nfe, same.stats.forward.nfe);
  EXPECT_EQ(tight.stats.forward.nfe, same.stats.forward.nfe);
  EXPECT_LT(loose.stats.backward.nfe, same.stats.backward.nfe);
  EXPECT_GT(tight.stats.backward.nfe, same.stats.backward.nfe);
  EXPECT_LT(RelErr(same.a, exact.a), 1e-6);
  EXPECT_GT(RelErr(loose.a, exact.a), 10 * RelErr(same.a, exact.a));
  EXPECT_LT(RelErr(loose.a, exact.a), 1e-2);
}

// A backward solve that fails (here: the tight adjoint tolerance needs more
// than max_steps steps, which the forward solve did not) leaves NaN
// gradients and the error in the stats sink's backward_status.
TEST(OdeGradientTest, BackwardFailureGivesNanGradientsAndAStatus) {
  OdeOptions o = Tight(Gradient::kAdjoint);
  o.rtol = 1e-4;
  o.atol = 1e-6;
  Grads ok = LinearGrads({0.0, 2.0}, o);
  ASSERT_TRUE(ok.stats.backward_status.ok());
  o.max_steps = ok.stats.forward.accepted + 2;
  o.adjoint_rtol = 1e-12;
  o.adjoint_atol = 1e-14;
  Grads g = LinearGrads({0.0, 2.0}, o);
  EXPECT_EQ(g.stats.backward_status.code(),
            absl::StatusCode::kResourceExhausted)
      << g.stats.backward_status;
  EXPECT_GT(g.stats.backward.nfe, 0);
  for (int64_t i = 0; i < g.y0.size(); ++i)
    EXPECT_TRUE(std::isnan(g.y0.data()[i]));
  for (int64_t i = 0; i < g.a.size(); ++i)
    EXPECT_TRUE(std::isnan(g.a.data()[i]));
}

// The adjoint's gradients are constants: asking for their graph
// (create_graph) aborts instead of returning a silently zero Hessian.
TEST(OdeGradientDeathTest, CreateGraphThroughTheAdjointAborts) {
  auto second = [] {
    Tape::Get().Reset();
    Tensor th = Tensor::Scalar(0.7).set_requires_grad(true);
    OdeFn f = [th](double, const Tensor& y) { return y * th; };
    auto sol = OdeSolve(f, Tensor::FromVector({1}, {1.0}), {0.0, 1.0}, {th},
                        Tight(Gradient::kAdjoint));
    Grad({Sum(sol->ys[1])}, {th}, {}, /*create_graph=*/true);
  };
  EXPECT_DEATH(second(),
               "ode adjoint: create_graph through the adjoint is unsupported; "
               "use Gradient::kDiscretize");
}

// L = e^(theta) at t = 1 for dy/dt = theta y, y0 = 1: the adjoint's first
// derivative is exact, and discretise-then-optimise gives the second too.
TEST(OdeGradientTest, SecondDerivativeByDiscretize) {
  Tape::Get().Reset();
  Tensor th = Tensor::Scalar(0.7).set_requires_grad(true);
  OdeFn f = [th](double, const Tensor& y) { return y * th; };
  auto sol = OdeSolve(f, Tensor::FromVector({1}, {1.0}), {0.0, 1.0}, {th},
                      Tight(Gradient::kDiscretize));
  ASSERT_TRUE(sol.ok());
  Tensor g = Grad({Sum(sol->ys[1])}, {th}, {}, /*create_graph=*/true)[0];
  EXPECT_NEAR(g.item(), std::exp(0.7), 1e-8);
  EXPECT_NEAR(Grad({g}, {th})[0].item(), std::exp(0.7), 1e-8);
  Tape::Get().Reset();
}

// Listed params may depend on each other: with w, u parameters, c = w u,
// e = c^2 + w and f = y (w + c + e) / 2, y(0) = 1, L = y(1) = e^s with
// s = (w + c + e) / 2, so dL/dw = L (2 + u + 2 c u) / 2 and
// dL/du = L (w + 2 c w) / 2. f reads w, c and e, so all three are listed
// (in any order, c twice, or with u, which f only reaches through c): the
// adjoint counts every path once, like discretise-then-optimise.
TEST(OdeGradientTest, ParamsComputedFromOtherParams) {
  const double w0 = 0.3, u0 = 0.8, c0 = w0 * u0, e0 = c0 * c0 + w0;
  const double l0 = std::exp(0.5 * (w0 + c0 + e0));
  const double dw = l0 * (2 + u0 + 2 * c0 * u0) / 2;
  const double du = l0 * (w0 + 2 * c0 * w0) / 2;
  const std::vector<std::vector<int>> listings{
      {0, 1, 2}, {2, 1, 0}, {1, 1, 2, 0}, {3, 0, 1, 2}, {1, 3, 2, 0}};
  for (Gradient mode : {Gradient::kAdjoint, Gradient::kDiscretize}) {
    for (const std::vector<int>& listing : listings) {
      Tape::Get().Reset();
      Tensor w = Tensor::Scalar(w0).set_requires_grad(true);
      Tensor u = Tensor::Scalar(u0).set_requires_grad(true);
      Tensor c = w * u;
      Tensor e = c * c + w;
      const Tensor all[] = {w, c, e, u};
      std::vector<Tensor> params;
      for (int k : listing) params.push_back(all[k]);
      OdeFn f = [w, c, e](double, const Tensor& y) {
        return y * (w + c + e) * 0.5;
      };
      auto sol = OdeSolve(f, Tensor::FromVector({1}, {1.0}), {0.0, 1.0}, params,
                          Tight(mode));
      ASSERT_TRUE(sol.ok()) << sol.status();
      std::vector<Tensor> g = Grad({Sum(sol->ys[1])}, {w, u});
      EXPECT_NEAR(g[0].item(), dw, 1e-8 * dw)
          << static_cast<int>(mode) << " listing " << listing[0] << "...";
      EXPECT_NEAR(g[1].item(), du, 1e-8 * du)
          << static_cast<int>(mode) << " listing " << listing[0] << "...";
    }
  }
  Tape::Get().Reset();
}

// Fixed-step rk4: discretise-then-optimise is the exact gradient of the
// discrete map (finite differences of the same rk4 solve agree to ~1e-9),
// while the continuous adjoint differs from it by the O(h^4) solver error.
TEST(OdeGradientTest, DiscreteGradientIsExactForTheDiscreteMap) {
  OdeOptions o;
  o.method = Method::kRk4;
  o.step_size = 0.25;
  o.gradient = Gradient::kDiscretize;
  const std::vector<double> times{0.0, 2.0};
  Grads g = LinearGrads(times, o);
  Mat fd(3, 3);
  const double h = 1e-5;
  for (int k = 0; k < 9; ++k) {
    double v[2];
    for (int s = 0; s < 2; ++s) {
      Mat a = TestA();
      a.data()[k] += s == 0 ? h : -h;
      Tensor at = ToTensor(a);
      OdeFn f = [at](double, const Tensor& y) {
        return testing::LinearField(at, y);
      };
      auto sol = OdeSolve(f, ToTensor(TestY0()), times, {}, o);
      v[s] = Sum(sol->ys[0] * ToTensor(Weights(0))).item() +
             Sum(sol->ys[1] * ToTensor(Weights(1))).item();
    }
    fd.data()[k] = (v[0] - v[1]) / (2 * h);
  }
  EXPECT_LT(RelErr(g.a, fd), 1e-8);
  EXPECT_EQ(g.stats.forward.nfe, 4 * 8);
  EXPECT_EQ(g.stats.backward_solves, 0);
  o.gradient = Gradient::kAdjoint;
  Grads adj = LinearGrads(times, o);
  double gap = RelErr(adj.a, g.a);
  EXPECT_GT(gap, 1e-7);  // genuinely different gradients ...
  EXPECT_LT(gap, 1e-2);  // ... that agree to the solver's accuracy
}

// A nonlinear neural ODE: f = tanh MLP of (y, t). Adjoint vs discretise-then-
// optimise vs central differences of the whole adaptive solve.
TEST(OdeGradientTest, NeuralOdeAdjointMatchesDiscreteAndFiniteDifferences) {
  Rng rng(3);
  auto net_ptr = nn::MLP::Create({3, 8, 2}, nn::Activation::kTanh, rng).value();
  nn::MLP& net = *net_ptr;
  OdeFn f = [&net](double t, const Tensor& y) {
    return net(Concat({y, Tensor::Full({y.dim(0), 1}, t)}, 1));
  };
  Tensor y0 = Tensor::FromVector({2, 2}, {0.5, -0.3, 1.2, 0.4});
  const std::vector<double> times{0.0, 0.6, 1.5};
  auto loss_of = [&](const std::vector<Tensor>& ys) {
    return Sum(Square(ys[1])) +
           Sum(ys[2] * Tensor::FromVector({2}, {1.0, -2.0}));
  };
  std::vector<Tensor> params = net.Parameters();
  std::vector<std::vector<Tensor>> grads;
  for (Gradient mode : {Gradient::kAdjoint, Gradient::kDiscretize}) {
    Tape::Get().Reset();
    auto sol = OdeSolve(f, y0, times, params, Tight(mode));
    ASSERT_TRUE(sol.ok()) << sol.status();
    std::vector<Tensor> g = Grad({loss_of(sol->ys)}, params);
    for (Tensor& t : g) t = t.Detach();
    grads.push_back(g);
  }
  Tape::Get().Reset();
  double worst_ad = 0, worst_fd = 0, scale = 0;
  const double h = 1e-5;
  for (size_t k = 0; k < params.size(); ++k) {
    for (int64_t j = 0; j < params[k].numel(); ++j) {
      double* p = params[k].mutable_data<double>();
      const double old = p[j];
      double v[2];
      for (int s = 0; s < 2; ++s) {
        p[j] = old + (s == 0 ? h : -h);
        NoGradScope no_grad;
        v[s] = loss_of(OdeSolve(f, y0, times, {}, Tight(Gradient::kNone))->ys)
                   .item();
      }
      p[j] = old;
      const double fd = (v[0] - v[1]) / (2 * h);
      const double adj = grads[0][k][j], dto = grads[1][k][j];
      scale = std::max(scale, std::fabs(fd));
      worst_ad = std::max(worst_ad, std::fabs(adj - dto));
      worst_fd = std::max(worst_fd, std::fabs(adj - fd));
    }
  }
  std::printf("adjoint vs discrete %.2e, adjoint vs central FD %.2e\n",
              worst_ad / scale, worst_fd / scale);
  EXPECT_LT(worst_ad / scale, 1e-8);
  EXPECT_LT(worst_fd / scale, 1e-8);
}

TEST(OdeGradientTest, AdjointBackwardLeavesNoTapeBehind) {
  Tape::Get().Reset();
  Tensor y0 = ToTensor(TestY0()).set_requires_grad(true);
  Tensor a = ToTensor(TestA()).set_requires_grad(true);
  OdeFn f = [a](double, const Tensor& y) { return testing::LinearField(a, y); };
  OdeOptions o = Tight(Gradient::kAdjoint);
  o.stats = std::make_shared<OdeStatsSink>();
  auto sol = OdeSolve(f, y0, {0.0, 1.0}, {a}, o);
  Tensor loss = Sum(sol->ys[1]);
  const int64_t nodes = Tape::Get().num_nodes();
  Grad({loss}, {y0, a});
  EXPECT_GT(o.stats->Get().backward.nfe, 10);
  EXPECT_EQ(Tape::Get().num_nodes(), nodes);
  Tape::Get().Reset();
}

TEST(OdeGradientTest, ForwardErrorsAreReported) {
  Tensor y0 = Tensor::FromVector({1}, {1.0}).set_requires_grad(true);
  OdeFn blowup = [](double, const Tensor& y) { return Square(y); };
  for (Gradient mode : {Gradient::kAdjoint, Gradient::kDiscretize}) {
    OdeOptions o;
    o.gradient = mode;
    auto sol = OdeSolve(blowup, y0, {0.0, 2.0}, {}, o);
    EXPECT_FALSE(sol.ok());
  }
  OdeOptions o;
  EXPECT_EQ(OdeSolve(blowup, y0, {0.0, 0.0}, {}, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  Tape::Get().Reset();
}

}  // namespace
}  // namespace flowtape::ode

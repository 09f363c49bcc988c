// CNF (FFJORD/RNODE): exact answers for linear dynamics, log-det against the
// brute-force Jacobian of the solve map, Hutchinson unbiasedness, round
// trips, adjoint vs discretise-then-optimise vs finite differences, and the
// common flow harness; fixed-T results equal values recorded before learnable
// T and conditioning existed (cnf_train_t_test, cnf_context_test test those).
#include "flows/cnf/cnf.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <unsupported/Eigen/MatrixFunctions>
#include <utility>
#include <vector>

#include "autodiff/functional.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "gtest/gtest.h"
#include "tests/flows/cnf/cnf_fixtures.h"
#include "tests/flows/harness.h"

namespace flowtape::flows::cnf {
namespace {
using testing::FlowCase;
using testing::FlowFactory;
using testing_cnf::ConcatSquashRk4;
using testing_cnf::LinearDynamics;
using testing_cnf::Mat;

CnfOptions Tight(ode::Gradient g = ode::Gradient::kAdjoint) {
  CnfOptions o;
  o.ode.rtol = 1e-10;
  o.ode.atol = 1e-12;
  o.ode.gradient = g;
  return o;
}

std::shared_ptr<CnfDynamics> SmallNet(uint64_t seed, int64_t d = 2) {
  Rng rng(seed);
  return std::make_shared<ConcatSquashNet>(d, std::vector<int64_t>{8, 8},
                                           nn::Activation::kTanh, rng);
}

Tensor Points(int64_t n, int64_t d, uint64_t seed) {
  Rng rng(seed);
  return Tensor::Randn({n, d}, rng);
}

// z(T) = expm(A T) x, logdet = T tr A, |J|_F^2 integral = T |A|_F^2, and the
// kinetic energy int_0^T |A z(t)|^2 dt by composite Simpson quadrature.
TEST(CnfTest, LinearDynamicsExactAnswers) {
  Mat a(2, 2);
  a << -0.4, 1.1, -0.7, 0.3;
  CnfOptions o = Tight();
  o.t_end = 1.5;
  o.regularize = true;
  Cnf cnf(std::make_shared<LinearDynamics>(a), o);
  Tensor x = Points(3, 2, 1);
  NoGradScope no_grad;
  auto r = cnf.Solve(x, true);
  ASSERT_TRUE(r.ok()) << r.status();
  Mat xm = Eigen::Map<const Mat>(x.data(), 3, 2);
  Mat want = xm * (a * o.t_end).exp().transpose();
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(r->value[2 * i], want(i, 0), 1e-9);
    EXPECT_NEAR(r->value[2 * i + 1], want(i, 1), 1e-9);
    EXPECT_NEAR(r->logdet[i], o.t_end * a.trace(), 1e-9);
    EXPECT_NEAR(r->jacobian[i], o.t_end * a.squaredNorm(), 1e-9);
    const int m = 2000;
    double k = 0;
    for (int j = 0; j <= m; ++j) {
      double t = o.t_end * j / m;
      Mat v = xm.row(i) * (a * t).exp().transpose() * a.transpose();
      double w = (j == 0 || j == m) ? 1 : (j % 2 ? 4 : 2);
      k += w * v.squaredNorm();
    }
    k *= o.t_end / m / 3;
    EXPECT_NEAR(r->kinetic[i], k, 1e-9);
  }
}

// Fixed T is integrated exactly as recorded: solution, log-det,
// regularisers, loss, parameter gradients and an inverse solve, recorded
// (%.17g) from this code's fixed-T path, agree to 1e-9 relative. Not
// tighter: the solves are adaptive dopri5 (rtol 1e-8), whose step sizes are
// continuous functions of error estimates, so a last-bit change anywhere
// (another -O level or FMA contraction, a reordered sum in an op) moves the
// step sequence and the result by far more than rounding. 1e-9 is still 10x
// below rtol, so a change to the integrator or dynamics, which moves the
// results by about the solve tolerance or more, fails.
TEST(CnfTest, FixedTimeResultsAreUnchanged) {
  const std::vector<std::vector<double>> before = {
      {// concat_squash_adjoint
       -1.1772185922194105, 2.0809263234952029, -0.0046938671053925081,
       0.50577776493194804, -1.2313951713708997, 1.0254340802606254,
       -0.16058030983169974, 1.2896766048765123, 0.035577406904094035,
       -0.1718841703273517, 1.6483691562071452, 0.018081184041638641,
       -0.23660008442959576, 1.3790370879301566, 0.062014903927562585,
       1.7645992292558614, -0.075605165487700479, -0.00077396347983434491,
       -0.014542569991438851, -0.072172337178871671, 0.0073585694945027405,
       -0.069908168799781525, 0.1145193709193152, -0.8434877330370345,
       0.81355518675816774, 0.17609925818155264},
      {// concat_squash_discretize
       -1.1772185922194105, 2.080926323495202, -0.0046938671053924075,
       0.50577776493194815, -1.2313951713708999, 1.025434080260625,
       -0.1605803098316998, 1.2896766048765123, 0.035577406904094049,
       -0.17188417032735173, 1.6483691562071454, 0.018081184041638644,
       -0.23660008442959574, 1.3790370879301568, 0.062014903927562585,
       1.764599229255861, -0.075605164861092949, -0.0007739635979668875,
       -0.014542568022133167, -0.072172337529840036, 0.0073585692543328678,
       -0.069908168466153539, 0.11451937130705056, -0.84348773393955145,
       0.81355518675816729, 0.17609925818155259},
      {// time_mlp_hutchinson_adjoint
       1.6474944644763887, 3.3133185021645986, -0.76476847604913734,
       -1.1733265071072041, 1.1461556161275719, 2.3851040261303358,
       -0.56784957761168164, 5.0783054668744105, 0.46790293321898307,
       0.22172988621692225, 4.6596149454189701, 0.96631896506300008,
       -1.4716243109000959, 3.8719365427400825, 2.8522686948493896,
       5.1213888276997288, -0.20274209230978707, 0.67653725471032589,
       -4.7822248720881646, -1.5786261838512785},
      {// time_mlp_hutchinson_discretize
       1.6474944644763885, 3.3133185021645972, -0.76476847604913722,
       -1.1733265071072041, 1.1461556161275721, 2.3851040261303353,
       -0.56784957761168209, 5.0783054668744105, 0.46790293321898357,
       0.22172988621692233, 4.6596149454189693, 0.96631896506300063,
       -1.4716243109000955, 3.8719365427400829, 2.8522686948493901,
       5.121388827699727, -0.2027421122725476, 0.67653725105751927,
       -4.7822248720881655, -1.5786261838512772},
  };
  int row = 0;
  for (int net_kind = 0; net_kind < 2; ++net_kind) {
    for (ode::Gradient g :
         {ode::Gradient::kAdjoint, ode::Gradient::kDiscretize}) {
      Rng rng(21);
      std::shared_ptr<CnfDynamics> net;
      if (net_kind == 0)
        net = std::make_shared<ConcatSquashNet>(2, std::vector<int64_t>{8, 8},
                                                nn::Activation::kTanh, rng);
      else
        net = std::make_shared<TimeMlp>(2, std::vector<int64_t>{8},
                                        nn::Activation::kTanh, rng);
      testing::PerturbParameters(*net, *std::make_unique<Rng>(22), 0.5);
      CnfOptions o;
      o.ode.rtol = 1e-8;
      o.ode.atol = 1e-9;
      o.ode.gradient = g;
      o.t_end = 1.3;
      o.lambda_kinetic = 0.1;
      o.lambda_jacobian = 0.2;
      if (net_kind == 1) {
        o.trace = TraceEstimator::kHutchinson;
        o.seed = 5;
      }
      Cnf cnf(net, o);
      Tensor x = Tensor::Randn({3, 2}, *std::make_unique<Rng>(23));
      Tape::Get().Reset();
      auto r = cnf.Solve(x, true);
      ASSERT_TRUE(r.ok()) << r.status();
      Tensor loss = Mean(Sum(Square(r->value), 1) * 0.5 - r->logdet) +
                    cnf.Regularization(*r);
      Backward(loss);
      std::vector<double> now;
      for (int64_t i = 0; i < 6; ++i) now.push_back(r->value[i]);
      for (int64_t i = 0; i < 3; ++i)
        now.insert(now.end(), {r->logdet[i], r->kinetic[i], r->jacobian[i]});
      now.push_back(loss.item());
      std::vector<Tensor> ps = net->Parameters();
      for (size_t k = 0; k < ps.size(); k += 2) now.push_back(ps[k].grad()[0]);
      FlowResult inv = cnf.Inverse(x);
      now.insert(now.end(), {inv.value[0], inv.logdet[2]});
      Tape::Get().Reset();
      const std::vector<double>& want = before[row++];
      ASSERT_EQ(now.size(), want.size());
      for (size_t i = 0; i < want.size(); ++i)
        EXPECT_NEAR(now[i], want[i], 1e-9 * std::max(1.0, std::fabs(want[i])))
            << "row " << row - 1 << " entry " << i;
    }
  }
}

// Regularization() in both lambda units, on linear dynamics in d = 3 where
// J = T |A|_F^2 exactly: kIntegral weighs K and J as they are, kPerDimMean
// (the reference code's 0.5 mean_i f_i^2 and mean_i (eps'J)_i^2) as K/(2d)
// and J/d. MakeFfjord's RNODE uses the reference units.
TEST(CnfTest, RegularizerUnits) {
  Mat a(3, 3);
  a << -0.4, 1.1, 0.2, -0.7, 0.3, 0.5, 0.1, -0.6, -0.2;
  CnfOptions o = Tight();
  o.t_end = 0.8;
  o.lambda_kinetic = 0.3;
  o.lambda_jacobian = 0.05;
  Tensor x = Points(4, 3, 2);
  NoGradScope no_grad;
  Cnf integral(std::make_shared<LinearDynamics>(a), o);
  auto r = integral.Solve(x, true);
  ASSERT_TRUE(r.ok()) << r.status();
  double k = 0;
  for (int64_t i = 0; i < 4; ++i) k += r->kinetic[i] / 4;
  const double j = o.t_end * a.squaredNorm();
  EXPECT_GT(k, 0.1);
  EXPECT_NEAR(integral.Regularization(*r).item(), 0.3 * k + 0.05 * j, 1e-9);
  o.regularizer_units = RegularizerUnits::kPerDimMean;
  Cnf per_dim(std::make_shared<LinearDynamics>(a), o);
  EXPECT_NEAR(per_dim.Regularization(*r).item(), 0.3 * k / 6 + 0.05 * j / 3,
              1e-9);
  Rng rng(1);
  auto rnode = MakeFfjord(2, {8}, /*rnode=*/true, rng);
  EXPECT_EQ(rnode->options().regularizer_units, RegularizerUnits::kPerDimMean);
  EXPECT_EQ(rnode->options().lambda_kinetic, 0.01);
  EXPECT_EQ(rnode->options().lambda_jacobian, 0.01);
}

// Wrong-shaped input is bad user input: a status naming both shapes.
TEST(CnfTest, SolveRejectsWrongShapes) {
  Cnf cnf(SmallNet(1), Tight());
  NoGradScope no_grad;
  for (const Tensor& x :
       {Tensor::Zeros({4, 3}), Tensor::Zeros({2}), Tensor::Zeros({2, 2, 1})}) {
    auto r = cnf.Solve(x, true);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("must be [N, 2], got " +
                                        x.shape().ToString()),
              std::string::npos)
        << r.status();
  }
  EXPECT_TRUE(cnf.Solve(Tensor::Zeros({4, 2}), false).ok());
}

// log|det dz/dx| of the discrete solve map, by autodiff through the
// recorded steps (and through the adjoint), equals the integrated trace.
TEST(CnfTest, LogdetMatchesBruteForceJacobianOfTheSolve) {
  auto net = SmallNet(2);
  testing::PerturbParameters(*net, *std::make_unique<Rng>(5), 0.5);
  Tensor x = Points(4, 2, 3);
  for (ode::Gradient g :
       {ode::Gradient::kDiscretize, ode::Gradient::kAdjoint}) {
    Cnf cnf(net, Tight(g));
    Tape::Get().Reset();
    Tensor logdet = cnf.Forward(x).logdet.Detach();
    Tensor jac = BatchJacobian(
        [&](const Tensor& xi) { return cnf.Forward(xi).value; }, x);  // [4,2,2]
    for (int64_t i = 0; i < 4; ++i) {
      const double* j = jac.data() + 4 * i;
      double det = j[0] * j[3] - j[1] * j[2];
      EXPECT_NEAR(logdet[i], std::log(std::fabs(det)), 1e-8);
    }
    EXPECT_GT(std::fabs(logdet[0]), 1e-2);  // a non-trivial map
  }
  Tape::Get().Reset();
}

// E[eps' J eps] = tr J: the mean of the Hutchinson log-det over many noise
// draws (one per row of a replicated batch) matches the exact log-det within
// 4 standard errors; likewise the Frobenius regulariser.
TEST(CnfTest, HutchinsonIsUnbiased) {
  auto net = SmallNet(4);
  testing::PerturbParameters(*net, *std::make_unique<Rng>(6), 0.5);
  const int64_t reps = 2000;
  Tensor x1 = Points(1, 2, 9);
  Tensor x = BroadcastTo(x1, Shape({reps, 2})).Detach();
  NoGradScope no_grad;
  CnfOptions exact_o = Tight();
  exact_o.regularize = true;
  auto exact = Cnf(net, exact_o).Solve(x1, true);
  ASSERT_TRUE(exact.ok());
  for (Noise noise : {Noise::kGaussian, Noise::kRademacher}) {
    CnfOptions o = exact_o;
    o.trace = TraceEstimator::kHutchinson;
    o.noise = noise;
    o.seed = 17;
    auto r = Cnf(net, o).Solve(x, true);
    ASSERT_TRUE(r.ok());
    for (auto [est, want] : {std::pair{r->logdet, exact->logdet[0]},
                             {r->jacobian, exact->jacobian[0]}}) {
      double mean = 0, sq = 0;
      for (int64_t i = 0; i < reps; ++i) mean += est[i];
      mean /= reps;
      for (int64_t i = 0; i < reps; ++i)
        sq += (est[i] - mean) * (est[i] - mean);
      double se = std::sqrt(sq / (reps - 1) / reps);
      EXPECT_GT(se, 1e-4);  // genuinely random
      EXPECT_LT(std::fabs(mean - want), 4 * se)
          << "mean " << mean << " exact " << want << " se " << se;
    }
    // The trajectory itself does not depend on the noise.
    EXPECT_NEAR(r->value[0], exact->value[0], 1e-8);
  }
}

TEST(CnfTest, ForwardThenInverseReturnsTheInput) {
  auto net = SmallNet(7);
  testing::PerturbParameters(*net, *std::make_unique<Rng>(8), 0.5);
  Cnf cnf(net, Tight());
  Tensor x = Points(5, 2, 10);
  NoGradScope no_grad;
  FlowResult f = cnf.Forward(x);
  FlowResult b = cnf.Inverse(f.value);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_NEAR(b.value[i], x[i], 1e-8);
  for (int64_t i = 0; i < 5; ++i) EXPECT_NEAR(b.logdet[i], -f.logdet[i], 1e-8);
  EXPECT_GT(std::fabs(f.value[0] - x[0]), 1e-2);
}

// NLL gradients: adjoint == discretise-then-optimise == central differences,
// with exact trace and with Hutchinson (same seed: the adjoint must reuse
// the forward noise to agree), and the RNODE regularisers included.
TEST(CnfTest, GradientsAgreeAcrossMethods) {
  Tensor x = Points(3, 2, 11);
  for (TraceEstimator tr :
       {TraceEstimator::kExact, TraceEstimator::kHutchinson}) {
    auto net = SmallNet(12);
    std::vector<std::vector<double>> grads;
    for (ode::Gradient g :
         {ode::Gradient::kAdjoint, ode::Gradient::kDiscretize}) {
      CnfOptions o = Tight(g);
      o.trace = tr;
      o.seed = 3;
      o.lambda_kinetic = 0.1;
      o.lambda_jacobian = 0.2;
      Cnf cnf(net, o);
      Tape::Get().Reset();
      net->ZeroGrad();
      auto r = cnf.Solve(x, true);
      ASSERT_TRUE(r.ok());
      Tensor loss = Mean(Sum(Square(r->value), 1) * 0.5 - r->logdet) +
                    cnf.Regularization(*r);
      Backward(loss);
      std::vector<double> flat;
      for (const Tensor& p : net->Parameters())
        for (double v : p.grad().ToVector()) flat.push_back(v);
      grads.push_back(flat);
      if (g == ode::Gradient::kAdjoint) {
        EXPECT_GT(r->stats->backward.nfe, 0);
        EXPECT_TRUE(r->stats->backward_status.ok());
      }
    }
    Tape::Get().Reset();
    double worst = 0, scale = 0;
    for (size_t i = 0; i < grads[0].size(); ++i) {
      worst = std::max(worst, std::fabs(grads[0][i] - grads[1][i]));
      scale = std::max(scale, std::fabs(grads[1][i]));
    }
    EXPECT_LT(worst / scale, 1e-7) << "trace " << static_cast<int>(tr);
    if (tr == TraceEstimator::kExact) {  // central differences, a few entries
      CnfOptions o = Tight(ode::Gradient::kNone);
      o.lambda_kinetic = 0.1;
      o.lambda_jacobian = 0.2;
      Cnf cnf(net, o);
      auto loss = [&] {
        NoGradScope no_grad;
        auto r = cnf.Solve(x, true);
        return (Mean(Sum(Square(r->value), 1) * 0.5 - r->logdet) +
                cnf.Regularization(*r))
            .item();
      };
      int64_t offset = 0;
      for (Tensor p : net->Parameters()) {
        for (int64_t j = 0; j < p.numel(); j += 7) {
          double* v = p.mutable_data();
          const double old = v[j], h = 1e-5;
          v[j] = old + h;
          double lp = loss();
          v[j] = old - h;
          double lm = loss();
          v[j] = old;
          EXPECT_NEAR(grads[0][offset + j], (lp - lm) / (2 * h), 1e-6 * scale);
        }
        offset += p.numel();
      }
    }
  }
}

// Sampling (base -> data via Inverse) and density (data -> base) agree.
TEST(CnfTest, SamplesCarryTheirLogDensity) {
  auto net = SmallNet(13);
  testing::PerturbParameters(*net, *std::make_unique<Rng>(14), 0.5);
  auto cnf = std::make_shared<Cnf>(net, Tight());
  FlowModel model(std::make_shared<StandardNormal>(Shape({2})), cnf);
  Rng rng(15);
  NoGradScope no_grad;
  auto s = model.SampleWithLogProb(6, rng);
  Tensor lp = model.LogProb(s.x);
  for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR(lp[i], s.log_prob[i], 1e-8);
}

TEST(CnfTest, SolveFailureIsReported) {
  CnfOptions o;
  o.ode.max_steps = 2;
  o.ode.rtol = 1e-12;
  o.t_end = 100.0;
  Cnf cnf(SmallNet(16), o);
  NoGradScope no_grad;
  EXPECT_FALSE(cnf.Solve(Points(2, 2, 1), true).ok());
  FlowResult r = cnf.Forward(Points(2, 2, 1));
  EXPECT_TRUE(std::isnan(r.logdet[0]));
  EXPECT_EQ(cnf.last_status().code(), absl::StatusCode::kResourceExhausted);
}

std::shared_ptr<Flow> FfjordRk4Adjoint(Rng& rng) {
  return ConcatSquashRk4(rng, ode::Gradient::kAdjoint);
}
std::shared_ptr<Flow> FfjordRk4Discrete(Rng& rng) {
  return ConcatSquashRk4(rng, ode::Gradient::kDiscretize);
}
std::shared_ptr<Flow> FfjordDopri5Discrete(Rng& rng) {
  CnfOptions o = Tight(ode::Gradient::kDiscretize);
  o.ode.rtol = 1e-12;
  o.ode.atol = 1e-13;
  return std::make_shared<Cnf>(
      std::make_shared<TimeMlp>(2, std::vector<int64_t>{6},
                                nn::Activation::kTanh, rng),
      o);
}

FlowCase Rk4Case(const char* name, FlowFactory make) {
  return FlowCase(name, std::move(make), {2})
      .Perturb(0.3)
      .LogdetTol(1e-6)
      .InverseTol(1e-6)
      .GradTol(1e-6)
      .Quadrature(7, 70)
      .IntegralTol(2e-3)
      .MaxGradEntries(40)
      .Float64Only("the CNF's ODE solves run in float64");
}

FLOWTAPE_FLOW_CASES(
    Cnf, Rk4Case("ffjord_rk4_discrete", FfjordRk4Discrete),
    FlowCase("ffjord_dopri5_discrete", FfjordDopri5Discrete, {2})
        .Perturb(0.3)
        .LogdetTol(1e-9)
        .InverseTol(1e-9)
        .GradTol(1e-5)
        .Quadrature(7, 70)
        .IntegralTol(2e-3)
        .MaxGradEntries(40)
        .Float64Only("the CNF's ODE solves run in float64"),
    // The adjoint's gradients are constants (ode/solve.h):
    // a Hessian through it aborts (death test below).
    Rk4Case("ffjord_rk4_adjoint", FfjordRk4Adjoint).FirstOrderOnly());

TEST(CnfDeathTest, NllHessianThroughTheAdjointAborts) {
  auto hessian = [] {
    Rng rng(1);
    FlowModel model(std::make_shared<StandardNormal>(Shape({2})),
                    FfjordRk4Adjoint(rng));
    Tensor x = Points(3, 2, 4).set_requires_grad(true);
    Tensor g = Grad({model.Nll(x)}, {x}, {}, /*create_graph=*/true)[0];
    Grad({Sum(g)}, {x});
  };
  EXPECT_DEATH(hessian(), "create_graph through the adjoint is unsupported");
}

}  // namespace
}  // namespace flowtape::flows::cnf

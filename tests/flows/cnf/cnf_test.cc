// CNF (FFJORD/RNODE): exact answers for linear dynamics (float64 and
// float32), log-det against the brute-force Jacobian of the solve map,
// Hutchinson unbiasedness, round trips, adjoint vs discretise-then-optimise
// vs finite differences, the result's extras (regularisers, cost), options
// validation, float32 against float64, and the common flow harness; fixed-T
// results equal values recorded before learnable T and conditioning existed
// (cnf_train_t_test, cnf_context_test test those); Transport (the map
// without the log-density): exact on a straight map in the fewest dopri5
// steps, and Forward's / Inverse's value and gradients.
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
#include "flows/sequential.h"
#include "gtest/gtest.h"
#include "tests/flows/cnf/cnf_fixtures.h"
#include "tests/flows/harness.h"

namespace flowtape::flows::cnf {
namespace {
using testing::FlowCase;
using testing::FlowFactory;
using testing_cnf::ConcatSquashRk4;
using testing_cnf::LinearDynamics;
using testing_cnf::MakeCnf;
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
  return ConcatSquashNet::Create(d, {8, 8}, nn::Activation::kTanh, rng).value();
}

Tensor Points(int64_t n, int64_t d, uint64_t seed, DType dtype = kFloat64) {
  Rng rng(seed);
  return Tensor::Randn({n, d}, rng, dtype);
}

// NLL of a standard normal base plus the RNODE penalty (when present).
Tensor Loss(const FlowResult& r) {
  Tensor loss = Mean(Sum(Square(r.value), 1) * 0.5 - r.logdet);
  Tensor reg = r.extra(kRegularization);
  return reg.defined() ? loss + Mean(reg) : loss;
}

// z(T) = expm(A T) x, logdet = T tr A, |J|_F^2 integral = T |A|_F^2, and the
// kinetic energy int_0^T |A z(t)|^2 dt by composite Simpson quadrature, in
// float64 (rtol 1e-10, to 1e-9) and float32 (FFJORD's rtol = 1e-5, to
// 2e-5: the solve's tolerance, not rounding, sets the error).
TEST(CnfTest, LinearDynamicsExactAnswers) {
  Mat a(2, 2);
  a << -0.4, 1.1, -0.7, 0.3;
  for (DType dtype : {kFloat64, kFloat32}) {
    CnfOptions o = Tight();
    if (dtype == kFloat32) o.ode = CnfOptions::DefaultOde();
    const double tol = dtype == kFloat64 ? 1e-9 : 2e-5;
    o.t_end = 1.5;
    o.regularize = true;
    auto dynamics = std::make_shared<LinearDynamics>(a);
    dynamics->To(dtype);
    auto cnf = MakeCnf(dynamics, o);
    Tensor x = Points(3, 2, 1);
    NoGradScope no_grad;
    FlowResult r = cnf->Forward(Cast(x, dtype));
    ASSERT_TRUE(r.status.ok()) << r.status;
    ASSERT_EQ(r.value.dtype(), dtype);
    ASSERT_EQ(r.extra(kKinetic).dtype(), dtype);
    Mat xm = Eigen::Map<const Mat>(x.data<double>(), 3, 2);
    Mat want = xm * (a * o.t_end).exp().transpose();
    for (int64_t i = 0; i < 3; ++i) {
      EXPECT_NEAR(r.value[2 * i], want(i, 0), tol);
      EXPECT_NEAR(r.value[2 * i + 1], want(i, 1), tol);
      EXPECT_NEAR(r.logdet[i], o.t_end * a.trace(), tol);
      EXPECT_NEAR(r.extra(kJacobian)[i], o.t_end * a.squaredNorm(), tol);
      const int m = 2000;
      double k = 0;
      for (int j = 0; j <= m; ++j) {
        double t = o.t_end * j / m;
        Mat v = xm.row(i) * (a * t).exp().transpose() * a.transpose();
        double w = (j == 0 || j == m) ? 1 : (j % 2 ? 4 : 2);
        k += w * v.squaredNorm();
      }
      k *= o.t_end / m / 3;
      EXPECT_NEAR(r.extra(kKinetic)[i], k, tol * std::max(1.0, k));
    }
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
// results by about the solve tolerance or more, fails. The Hutchinson rows
// draw their noise from one Rng(5) passed to the forward, then the inverse
// pass.
TEST(CnfTest, FixedTimeResultsAreUnchanged) {
  const std::vector<std::vector<double>> before = {
      {// concat_squash_adjoint
       -1.1772185922194105,   2.0809263234952029,    -0.0046938671053925081,
       0.50577776493194804,   -1.2313951713708997,   1.0254340802606254,
       -0.16058030983169974,  1.2896766048765123,    0.035577406904094035,
       -0.1718841703273517,   1.6483691562071452,    0.018081184041638641,
       -0.23660008442959576,  1.3790370879301566,    0.062014903927562585,
       1.7645992292558614,    -0.075605165487700479, -0.00077396347983434491,
       -0.014542569991438851, -0.072172337178871671, 0.0073585694945027405,
       -0.069908168799781525, 0.1145193709193152,    -0.8434877330370345,
       0.81355518675816774,   0.17609925818155264},
      {// concat_squash_discretize
       -1.1772185922194105,   2.080926323495202,     -0.0046938671053924075,
       0.50577776493194815,   -1.2313951713708999,   1.025434080260625,
       -0.1605803098316998,   1.2896766048765123,    0.035577406904094049,
       -0.17188417032735173,  1.6483691562071454,    0.018081184041638644,
       -0.23660008442959574,  1.3790370879301568,    0.062014903927562585,
       1.764599229255861,     -0.075605164861092949, -0.0007739635979668875,
       -0.014542568022133167, -0.072172337529840036, 0.0073585692543328678,
       -0.069908168466153539, 0.11451937130705056,   -0.84348773393955145,
       0.81355518675816729,   0.17609925818155259},
      {// time_mlp_hutchinson_adjoint
       1.6474944644763887,   3.3133185021645986,   -0.76476847604913734,
       -1.1733265071072041,  1.1461556161275719,   2.3851040261303358,
       -0.56784957761168164, 5.0783054668744105,   0.46790293321898307,
       0.22172988621692225,  4.6596149454189701,   0.96631896506300008,
       -1.4716243109000959,  3.8719365427400825,   2.8522686948493896,
       5.1213888276997288,   -0.20274209230978707, 0.67653725471032589,
       -4.7822248720881646,  -1.5786261838512785},
      {// time_mlp_hutchinson_discretize
       1.6474944644763885,   3.3133185021645972,  -0.76476847604913722,
       -1.1733265071072041,  1.1461556161275721,  2.3851040261303353,
       -0.56784957761168209, 5.0783054668744105,  0.46790293321898357,
       0.22172988621692233,  4.6596149454189693,  0.96631896506300063,
       -1.4716243109000955,  3.8719365427400829,  2.8522686948493901,
       5.121388827699727,    -0.2027421122725476, 0.67653725105751927,
       -4.7822248720881655,  -1.5786261838512772},
  };
  int row = 0;
  for (int net_kind = 0; net_kind < 2; ++net_kind) {
    for (ode::Gradient g :
         {ode::Gradient::kAdjoint, ode::Gradient::kDiscretize}) {
      Rng rng(21);
      std::shared_ptr<CnfDynamics> net;
      if (net_kind == 0)
        net = ConcatSquashNet::Create(2, {8, 8}, nn::Activation::kTanh, rng)
                  .value();
      else
        net = TimeMlp::Create(2, {8}, nn::Activation::kTanh, rng).value();
      testing::PerturbParameters(*net, *std::make_unique<Rng>(22), 0.5);
      CnfOptions o;
      o.ode.rtol = 1e-8;
      o.ode.atol = 1e-9;
      o.ode.gradient = g;
      o.t_end = 1.3;
      o.lambda_kinetic = 0.1;
      o.lambda_jacobian = 0.2;
      if (net_kind == 1) o.trace = TraceEstimator::kHutchinson;
      auto cnf = MakeCnf(net, o);
      Rng noise(5);
      Tensor x = Tensor::Randn({3, 2}, *std::make_unique<Rng>(23));
      Tape::Get().Reset();
      FlowResult r = cnf->Forward(x, Tensor(), &noise);
      ASSERT_TRUE(r.status.ok()) << r.status;
      Tensor loss = Loss(r);
      Backward(loss);
      std::vector<double> now;
      for (int64_t i = 0; i < 6; ++i) now.push_back(r.value[i]);
      for (int64_t i = 0; i < 3; ++i)
        now.insert(now.end(),
                   {r.logdet[i], r.extra(kKinetic)[i], r.extra(kJacobian)[i]});
      now.push_back(loss.item());
      std::vector<Tensor> ps = net->Parameters();
      for (size_t k = 0; k < ps.size(); k += 2) now.push_back(ps[k].grad()[0]);
      FlowResult inv = cnf->Inverse(x, Tensor(), &noise);
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

// The "regularization" extra in both lambda units, on linear dynamics in
// d = 3 where J = T |A|_F^2 exactly: kIntegral weighs K and J as they are,
// kPerDimMean (the reference code's 0.5 mean_i f_i^2 and mean_i
// (eps'J)_i^2) as K/(2d) and J/d, per sample. MakeFfjord's RNODE uses the
// reference units. Without lambdas there is no penalty (regularize alone
// only tracks K and J), without regularisers neither.
TEST(CnfTest, RegularizerUnits) {
  Mat a(3, 3);
  a << -0.4, 1.1, 0.2, -0.7, 0.3, 0.5, 0.1, -0.6, -0.2;
  CnfOptions o = Tight();
  o.t_end = 0.8;
  o.lambda_kinetic = 0.3;
  o.lambda_jacobian = 0.05;
  Tensor x = Points(4, 3, 2);
  NoGradScope no_grad;
  FlowResult r = MakeCnf(std::make_shared<LinearDynamics>(a), o)->Forward(x);
  ASSERT_TRUE(r.status.ok()) << r.status;
  const double j = o.t_end * a.squaredNorm();
  EXPECT_GT(r.extra(kKinetic)[0], 0.1);
  for (int64_t i = 0; i < 4; ++i)
    EXPECT_NEAR(r.extra(kRegularization)[i],
                0.3 * r.extra(kKinetic)[i] + 0.05 * j, 1e-9);
  o.regularizer_units = RegularizerUnits::kPerDimMean;
  FlowResult p = MakeCnf(std::make_shared<LinearDynamics>(a), o)->Forward(x);
  for (int64_t i = 0; i < 4; ++i)
    EXPECT_NEAR(p.extra(kRegularization)[i],
                0.3 * r.extra(kKinetic)[i] / 6 + 0.05 * j / 3, 1e-9);
  o.lambda_kinetic = o.lambda_jacobian = 0;
  o.regularize = true;
  FlowResult q = MakeCnf(std::make_shared<LinearDynamics>(a), o)->Forward(x);
  EXPECT_TRUE(q.extra(kKinetic).defined());
  EXPECT_FALSE(q.extra(kRegularization).defined());
  o.regularize = false;
  FlowResult plain =
      MakeCnf(std::make_shared<LinearDynamics>(a), o)->Forward(x);
  EXPECT_FALSE(plain.extra(kKinetic).defined());
  Rng rng(1);
  auto rnode = MakeFfjord(2, {8}, /*rnode=*/true, rng).value();
  EXPECT_EQ(rnode->options().regularizer_units, RegularizerUnits::kPerDimMean);
  EXPECT_EQ(rnode->options().lambda_kinetic, 0.01);
  EXPECT_EQ(rnode->options().lambda_jacobian, 0.01);
}

// The closed-form trace (ConcatSquashNet::ValueAndTrace) equals the trace
// from d VJPs (functional.h's ExactTrace) for 0, 1 and 2 hidden layers and
// every activation that has one, in d = 3, at a time where the gate
// matters; nets without one say so. Through whole solves: kExact (closed
// form) and kExactVjp give the same log-det and the same adjoint NLL
// gradients.
TEST(CnfTest, ClosedFormTraceMatchesVjps) {
  const std::vector<std::vector<int64_t>> shapes = {{}, {5}, {5, 4}};
  for (nn::Activation act :
       {nn::Activation::kTanh, nn::Activation::kSigmoid,
        nn::Activation::kSoftplus, nn::Activation::kRelu}) {
    for (const auto& hidden : shapes) {
      Rng rng(50);
      auto net = ConcatSquashNet::Create(3, hidden, act, rng).value();
      testing::PerturbParameters(*net, rng, 0.5);
      ASSERT_TRUE(net->has_closed_form_trace());
      Tensor z = Points(6, 3, 51);
      Tensor t = Tensor::Scalar(0.7);
      Tensor tr;
      Tensor f = net->ValueAndTrace(t, z, Tensor(), &tr);
      Tensor want =
          ExactTrace([&](const Tensor& x) { return (*net)(0.7, x); }, z);
      Tensor fv = (*net)(0.7, z);
      ASSERT_EQ(tr.shape(), Shape({6, 1}));
      for (int64_t i = 0; i < 6; ++i)
        EXPECT_NEAR(tr[i], want[i], 1e-12 * std::max(1.0, std::fabs(want[i])))
            << hidden.size() << " hidden, activation " << static_cast<int>(act);
      for (int64_t i = 0; i < f.numel(); ++i) EXPECT_NEAR(f[i], fv[i], 1e-12);
      if (!hidden.empty()) {  // a nonlinear net: the trace depends on z
        EXPECT_GT(std::fabs(want[0] - want[1]), 1e-3);
      }
    }
  }
  Rng rng(52);
  EXPECT_FALSE(ConcatSquashNet::Create(3, {4, 4, 4}, nn::Activation::kTanh, rng)
                   .value()
                   ->has_closed_form_trace());
  EXPECT_FALSE(ConcatSquashNet::Create(3, {4}, nn::Activation::kElu, rng)
                   .value()
                   ->has_closed_form_trace());
  EXPECT_FALSE(ConcatSquashNet::Create(3, {4}, nn::Activation::kTanh, rng, 2)
                   .value()
                   ->has_closed_form_trace());
  // Whole solves, both traces, adjoint gradients.
  auto net = SmallNet(53, 3);
  testing::PerturbParameters(*net, *std::make_unique<Rng>(54), 0.5);
  Tensor x = Points(4, 3, 55);
  std::vector<std::vector<double>> out;
  for (TraceEstimator tr :
       {TraceEstimator::kExact, TraceEstimator::kExactVjp}) {
    CnfOptions o = Tight();
    o.trace = tr;
    auto cnf = MakeCnf(net, o);
    Tape::Get().Reset();
    net->ZeroGrad();
    FlowResult r = cnf->Forward(x);
    ASSERT_TRUE(r.status.ok());
    Backward(Loss(r));
    std::vector<double> v = r.logdet.ToVector();
    for (const Tensor& p : net->Parameters())
      for (double g : p.grad().ToVector()) v.push_back(g);
    out.push_back(v);
    Tape::Get().Reset();
  }
  EXPECT_GT(std::fabs(out[0][0]), 1e-2);
  for (size_t i = 0; i < out[0].size(); ++i)
    EXPECT_NEAR(out[0][i], out[1][i],
                1e-8 * std::max(1.0, std::fabs(out[1][i])))
        << i;
}

// ZeroOutput: f = 0 at any (t, z), yet the gradient of a loss in the output
// layer's weight is not 0 (the residual can learn), and the hidden layers
// keep their values.
TEST(CnfTest, ConcatSquashZeroOutput) {
  auto net = SmallNet(60, 3);
  const std::vector<double> first = net->Parameters()[0].ToVector();
  std::static_pointer_cast<ConcatSquashNet>(net)->ZeroOutput();
  EXPECT_EQ(net->Parameters()[0].ToVector(), first);
  Tensor z = Points(4, 3, 61);
  for (double t : {0.0, 0.5, 1.0}) {
    Tensor f = (*net)(t, z);
    for (int64_t i = 0; i < f.numel(); ++i) EXPECT_EQ(f[i], 0.0);
  }
  Tape::Get().Reset();
  net->ZeroGrad();
  Backward(Sum(Square((*net)(0.5, z) - 1.0)));
  double norm = 0;
  for (const auto& [name, p] : net->NamedParameters())
    if (name == "layer2.layer.weight")
      for (double g : p.grad().ToVector()) norm += g * g;
  EXPECT_GT(norm, 1e-6);
  Tape::Get().Reset();
}

// The cost extras: "nfe" is the forward solve's evaluation count (what the
// options' stats sink receives) broadcast to every sample, with the step
// counts; dopri5's NFE = 2 + 6 (accepted + rejected). The adjoint's backward
// solve reports to the sink only, when Backward runs.
TEST(CnfTest, CostExtrasAndStatsSink) {
  CnfOptions o;
  o.ode.stats = std::make_shared<ode::OdeStatsSink>();
  auto cnf = MakeCnf(SmallNet(3), o);
  Tape::Get().Reset();
  FlowResult r = cnf->Forward(Points(5, 2, 4));
  ASSERT_TRUE(r.status.ok());
  const ode::OdeStats fwd = o.ode.stats->Get();
  EXPECT_EQ(fwd.solves, 1);
  EXPECT_EQ(fwd.backward_solves, 0);
  const double nfe = r.extra(kNfe)[0];
  const double acc = r.extra(kAcceptedSteps)[0];
  const double rej = r.extra(kRejectedSteps)[0];
  EXPECT_EQ(nfe, static_cast<double>(fwd.forward.nfe));
  EXPECT_EQ(acc, static_cast<double>(fwd.forward.accepted));
  EXPECT_EQ(nfe, 2 + 6 * (acc + rej));
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(r.extra(kNfe)[i], nfe);
  Backward(Loss(r));
  const ode::OdeStats both = o.ode.stats->Get();
  EXPECT_EQ(both.backward_solves, 1);
  EXPECT_GT(both.backward.nfe, 0);
  EXPECT_TRUE(both.backward_status.ok());
  Tape::Get().Reset();
  o.ode.stats->Reset();
  EXPECT_EQ(o.ode.stats->Get().forward.nfe, 0);
}

// Options are checked at creation: InvalidArgument naming the field.
TEST(CnfTest, CreateRejectsBadOptions) {
  auto expect_bad = [](const CnfOptions& o, const std::string& needle) {
    auto c = Cnf::Create(SmallNet(1), o);
    ASSERT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_NE(c.status().message().find(needle), std::string::npos)
        << c.status();
  };
  CnfOptions o;
  o.t_end = 0;
  expect_bad(o, "t_end");
  o.t_end = std::nan("");
  expect_bad(o, "t_end");
  o = CnfOptions();
  o.train_t = true;
  o.t_end = -1;
  expect_bad(o, "train_t needs t_end > 0");
  o = CnfOptions();
  o.lambda_jacobian = -0.1;
  expect_bad(o, "lambda");
  o = CnfOptions();
  o.ode.rtol = 0;
  expect_bad(o, "rtol");
  o = CnfOptions();
  o.ode.max_steps = 0;
  expect_bad(o, "max_steps");
  EXPECT_EQ(Cnf::Create(nullptr, CnfOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
  Rng rng(1);
  EXPECT_EQ(MakeFfjord(0, {8}, false, rng).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeFfjord(2, {0}, false, rng).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Cnf::Create(SmallNet(1), CnfOptions()).ok());
}

// Wrong-shaped input is bad user input: a status naming both shapes, NaN
// outputs.
TEST(CnfTest, ForwardRejectsWrongShapes) {
  auto cnf = MakeCnf(SmallNet(1), Tight());
  NoGradScope no_grad;
  for (const Tensor& x :
       {Tensor::Zeros({4, 3}), Tensor::Zeros({2}), Tensor::Zeros({2, 2, 1})}) {
    FlowResult r = cnf->Forward(x);
    EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(
        r.status.message().find("must be [N, 2], got " + x.shape().ToString()),
        std::string::npos)
        << r.status;
    EXPECT_TRUE(std::isnan(r.logdet[0]));
  }
  EXPECT_TRUE(cnf->Inverse(Tensor::Zeros({4, 2})).status.ok());
}

// log|det dz/dx| of the discrete solve map, by autodiff through the
// recorded steps (and through the adjoint), equals the integrated trace.
TEST(CnfTest, LogdetMatchesBruteForceJacobianOfTheSolve) {
  auto net = SmallNet(2);
  testing::PerturbParameters(*net, *std::make_unique<Rng>(5), 0.5);
  Tensor x = Points(4, 2, 3);
  for (ode::Gradient g :
       {ode::Gradient::kDiscretize, ode::Gradient::kAdjoint}) {
    auto cnf = MakeCnf(net, Tight(g));
    Tape::Get().Reset();
    Tensor logdet = cnf->Forward(x).logdet.Detach();
    Tensor jac = BatchJacobian(
        [&](const Tensor& xi) { return cnf->Forward(xi).value; }, x);
    for (int64_t i = 0; i < 4; ++i) {
      const double* j = jac.data<double>() + 4 * i;
      double det = j[0] * j[3] - j[1] * j[2];
      EXPECT_NEAR(logdet[i], std::log(std::fabs(det)), 1e-8);
    }
    EXPECT_GT(std::fabs(logdet[0]), 1e-2);  // a non-trivial map
  }
  Tape::Get().Reset();
}

// E[eps' J eps] = tr J: the mean of the Hutchinson log-det over many noise
// draws (one per row of a replicated batch) matches the exact log-det within
// 4 standard errors; likewise the Frobenius regulariser. A Hutchinson pass
// without an Rng dies naming the missing argument.
TEST(CnfTest, HutchinsonIsUnbiased) {
  auto net = SmallNet(4);
  testing::PerturbParameters(*net, *std::make_unique<Rng>(6), 0.5);
  const int64_t reps = 2000;
  Tensor x1 = Points(1, 2, 9);
  Tensor x = BroadcastTo(x1, Shape({reps, 2})).Detach();
  NoGradScope no_grad;
  CnfOptions exact_o = Tight();
  exact_o.regularize = true;
  FlowResult exact = MakeCnf(net, exact_o)->Forward(x1);
  ASSERT_TRUE(exact.status.ok());
  for (Noise noise : {Noise::kGaussian, Noise::kRademacher}) {
    CnfOptions o = exact_o;
    o.trace = TraceEstimator::kHutchinson;
    o.noise = noise;
    Rng rng(17);
    FlowResult r = MakeCnf(net, o)->Forward(x, Tensor(), &rng);
    ASSERT_TRUE(r.status.ok());
    for (auto [est, want] : {std::pair{r.logdet, exact.logdet[0]},
                             {r.extra(kJacobian), exact.extra(kJacobian)[0]}}) {
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
    EXPECT_NEAR(r.value[0], exact.value[0], 1e-8);
  }
}

TEST(CnfDeathTest, HutchinsonWithoutRngDies) {
  CnfOptions o;
  o.trace = TraceEstimator::kHutchinson;
  auto cnf = MakeCnf(SmallNet(4), o);
  EXPECT_DEATH(cnf->Forward(Points(2, 2, 1)), "Hutchinson trace needs an Rng");
}

TEST(CnfTest, ForwardThenInverseReturnsTheInput) {
  auto net = SmallNet(7);
  testing::PerturbParameters(*net, *std::make_unique<Rng>(8), 0.5);
  auto cnf = MakeCnf(net, Tight());
  Tensor x = Points(5, 2, 10);
  NoGradScope no_grad;
  FlowResult f = cnf->Forward(x);
  FlowResult b = cnf->Inverse(f.value);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_NEAR(b.value[i], x[i], 1e-8);
  for (int64_t i = 0; i < 5; ++i) EXPECT_NEAR(b.logdet[i], -f.logdet[i], 1e-8);
  EXPECT_GT(std::fabs(f.value[0] - x[0]), 1e-2);
}

// NLL gradients: adjoint == discretise-then-optimise == central differences,
// with exact trace and with Hutchinson (same Rng seed for both passes: the
// adjoint must reuse the forward noise to agree), and the RNODE regularisers
// included.
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
      o.lambda_kinetic = 0.1;
      o.lambda_jacobian = 0.2;
      o.ode.stats = std::make_shared<ode::OdeStatsSink>();
      auto cnf = MakeCnf(net, o);
      Tape::Get().Reset();
      net->ZeroGrad();
      Rng rng(3);
      FlowResult r = cnf->Forward(x, Tensor(), &rng);
      ASSERT_TRUE(r.status.ok());
      Backward(Loss(r));
      std::vector<double> flat;
      for (const Tensor& p : net->Parameters())
        for (double v : p.grad().ToVector()) flat.push_back(v);
      grads.push_back(flat);
      const ode::OdeStats stats = o.ode.stats->Get();
      if (g == ode::Gradient::kAdjoint) {
        EXPECT_GT(stats.backward.nfe, 0);
        EXPECT_TRUE(stats.backward_status.ok());
      } else {
        EXPECT_EQ(stats.backward_solves, 0);
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
      auto cnf = MakeCnf(net, o);
      auto loss = [&] {
        NoGradScope no_grad;
        return Loss(cnf->Forward(x)).item();
      };
      int64_t offset = 0;
      for (Tensor p : net->Parameters()) {
        for (int64_t j = 0; j < p.numel(); j += 7) {
          double* v = p.mutable_data<double>();
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

// Float32 against float64 for the same net (converted with Module::To), at
// FFJORD's rtol = atol = 1e-5: values, log-dets and the RNODE terms agree
// to the solve tolerance, and the float32 adjoint's NLL gradient matches the
// float64 one to 1e-3 relative (both solves are 1e-5-accurate; the
// gradient is a difference of such solves). Float32 options below the
// floor fail the pass with InvalidArgument.
TEST(CnfTest, Float32AgreesWithFloat64) {
  Tensor x = Points(16, 2, 30);
  std::vector<std::vector<double>> grads, values;
  for (DType dtype : {kFloat64, kFloat32}) {
    auto net = SmallNet(31);
    testing::PerturbParameters(*net, *std::make_unique<Rng>(32), 0.5);
    net->To(dtype);
    CnfOptions o;
    o.lambda_kinetic = 0.1;
    o.lambda_jacobian = 0.2;
    auto cnf = MakeCnf(net, o);
    Tape::Get().Reset();
    FlowResult r = cnf->Forward(Cast(x, dtype));
    ASSERT_TRUE(r.status.ok()) << r.status;
    Backward(Loss(r));
    std::vector<double> v = r.value.ToVector();
    for (const char* e : {"", kKinetic, kJacobian}) {
      const std::vector<double> u = (*e ? r.extra(e) : r.logdet).ToVector();
      v.insert(v.end(), u.begin(), u.end());
    }
    values.push_back(v);
    std::vector<double> flat;
    for (const Tensor& p : net->Parameters()) {
      ASSERT_EQ(p.grad().dtype(), dtype);
      for (double g : p.grad().ToVector()) flat.push_back(g);
    }
    grads.push_back(flat);
    Tape::Get().Reset();
    if (dtype == kFloat32) {
      CnfOptions tight = Tight();
      FlowResult bad = MakeCnf(net, tight)->Forward(Cast(x, dtype));
      EXPECT_EQ(bad.status.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(bad.status.message().find("float32 floor"), std::string::npos)
          << bad.status;
    }
  }
  double worst_v = 0, worst_g = 0, scale = 0;
  for (size_t i = 0; i < values[0].size(); ++i)
    worst_v = std::max(worst_v, std::fabs(values[0][i] - values[1][i]) /
                                    std::max(1.0, std::fabs(values[0][i])));
  for (size_t i = 0; i < grads[0].size(); ++i) {
    worst_g = std::max(worst_g, std::fabs(grads[0][i] - grads[1][i]));
    scale = std::max(scale, std::fabs(grads[0][i]));
  }
  EXPECT_LT(worst_v, 1e-4);
  EXPECT_GT(worst_v, 1e-9);  // genuinely another precision
  EXPECT_LT(worst_g / scale, 1e-3);
}

// Sampling (base -> data via Inverse) and density (data -> base) agree.
TEST(CnfTest, SamplesCarryTheirLogDensity) {
  auto net = SmallNet(13);
  testing::PerturbParameters(*net, *std::make_unique<Rng>(14), 0.5);
  FlowModel model(StandardNormal::Create(Shape({2})).value(),
                  MakeCnf(net, Tight()));
  Rng rng(15);
  NoGradScope no_grad;
  auto s = model.SampleWithLogProb(6, rng);
  Tensor lp = model.LogProb(s.x);
  for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR(lp[i], s.log_prob[i], 1e-8);
}

// The straight-line (displacement) interpolation between x ~ N(mu, s^2 I)
// at t = 0 and z = (x - mu) / s ~ N(0, I) at t = 1: every path
// y(t) = (1 - t) x + t z is a straight line at constant speed, so dopri5 is
// exact on it, while the log-density's integrand
// tr(df/dy) = d (1/s - 1) / a(t), a(t) = 1 - t + t/s, varies with t.
//   f(t, y) = (y + t mu / s) (1/s - 1) / a(t) - mu / s.
class StraightAffineField : public CnfDynamics {
 public:
  StraightAffineField(std::vector<double> mu, double s)
      : mu_(std::move(mu)), s_(s) {}
  Tensor operator()(double t, const Tensor& y) const override {
    const int64_t d = dim();
    Tensor mu = Tensor::FromVector({1, d}, mu_, y.dtype());
    const double a = 1 - t + t / s_;
    return (y + mu * (t / s_)) * ((1 / s_ - 1) / a) - mu * (1 / s_);
  }
  int64_t dim() const override { return static_cast<int64_t>(mu_.size()); }

 private:
  std::vector<double> mu_;
  double s_;
};

TEST(CnfTest, TransportIsTheMapWithoutTheDensity) {
  const std::vector<double> mu{1.5, -0.5};
  const double s = 0.3;
  auto cnf =
      MakeCnf(std::make_shared<StraightAffineField>(mu, s), CnfOptions());
  NoGradScope no_grad;
  Tensor z = Points(200, 2, 21);
  FlowResult sample = cnf->Transport(z);
  FlowResult inverse = cnf->Inverse(z);
  ASSERT_TRUE(sample.status.ok() && inverse.status.ok());
  EXPECT_FALSE(sample.logdet.defined());
  for (int64_t i = 0; i < z.numel(); ++i) {
    const double x = mu[i % 2] + s * z[i];  // the exact map
    EXPECT_NEAR(sample.value[i], x, 1e-12);
    EXPECT_NEAR(inverse.value[i], x, 1e-5);
  }
  // Straight paths: only the starting ramp (Hairer's first step, then at
  // most 4.5x per step; tests/ode/solver_test.cc), no rejection. The
  // density solve must also follow l(t) = -d log a(t) and takes more.
  const double steps = sample.extra(kAcceptedSteps)[0];
  EXPECT_LE(steps, 3);
  EXPECT_EQ(sample.extra(kRejectedSteps)[0], 0);
  EXPECT_EQ(sample.extra(kNfe)[0], 2 + 6 * steps);
  EXPECT_GE(inverse.extra(kNfe)[0], sample.extra(kNfe)[0] + 12);
  // Forward direction: the data -> base map, as Forward's value.
  Tensor x = cnf->Transport(sample.value, Tensor(), true).value;
  for (int64_t i = 0; i < z.numel(); ++i) EXPECT_NEAR(x[i], z[i], 1e-12);
}

// FlowModel::Sample goes through InverseValue, which Sequential chains and a
// CNF answers with Transport: the map without its log-density solve.
TEST(CnfTest, ModelSamplesSkipTheDensitySolve) {
  const std::vector<double> mu{1.5, -0.5};
  const double s = 0.3;
  auto cnf =
      MakeCnf(std::make_shared<StraightAffineField>(mu, s), CnfOptions());
  auto chain = std::make_shared<Sequential>();
  chain->Add(cnf);
  FlowModel model(StandardNormal::Create(Shape({2})).value(), chain);
  NoGradScope no_grad;
  Rng a(31), b(31), c(31);
  Tensor x = model.Sample(200, a);
  Tensor expected =
      cnf->Transport(StandardNormal::Create(Shape({2})).value()->Sample(200, b))
          .value;
  Tensor with_density = model.SampleWithLogProb(200, c).x;
  double differs = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    EXPECT_EQ(x[i], expected[i]);
    differs = std::max(differs, std::abs(x[i] - with_density[i]));
  }
  // Inverse's steps also control the density, so its x is another (equally
  // accurate) solve: different in the last digits, not the same numbers.
  EXPECT_GT(differs, 0);
  EXPECT_LT(differs, 1e-5);
}

// With a context, a learnable T and the adjoint: Transport's value and its
// gradients (x, parameters, T, context) are Forward's / Inverse's.
TEST(CnfTest, TransportMatchesTheFlowWithContextAndLearnableT) {
  Rng rng(22);
  CnfOptions o = Tight();
  o.train_t = true;
  o.t_end = 0.7;
  auto cnf = MakeCnf(
      ConcatSquashNet::Create(2, {8}, nn::Activation::kTanh, rng, 2).value(),
      o);
  testing::PerturbParameters(*cnf, rng, 0.5);
  Tensor x = Points(5, 2, 23);
  Tensor c = Points(5, 2, 24);
  x.set_requires_grad(true);
  c.set_requires_grad(true);
  std::vector<Tensor> inputs = cnf->Parameters();
  inputs.insert(inputs.end(), {x, c});
  for (bool forward : {true, false}) {
    Tensor want = forward ? cnf->Forward(x, c).value : cnf->Inverse(x, c).value;
    Tensor got = cnf->Transport(x, c, forward).value;
    for (int64_t i = 0; i < x.numel(); ++i) EXPECT_NEAR(got[i], want[i], 1e-9);
    Tensor w = Points(5, 2, 25);  // a fixed linear functional of the value
    std::vector<Tensor> gw = Grad({Sum(want * w)}, inputs);
    std::vector<Tensor> gg = Grad({Sum(got * w)}, inputs);
    for (size_t k = 0; k < inputs.size(); ++k)
      for (int64_t i = 0; i < gw[k].numel(); ++i)
        EXPECT_NEAR(gg[k][i], gw[k][i], 1e-7) << k << " " << i;
    Tape::Get().Reset();
  }
}

TEST(CnfTest, SolveFailureIsReported) {
  CnfOptions o;
  o.ode.max_steps = 2;
  o.ode.rtol = 1e-12;
  o.t_end = 100.0;
  auto cnf = MakeCnf(SmallNet(16), o);
  NoGradScope no_grad;
  FlowResult r = cnf->Forward(Points(2, 2, 1));
  EXPECT_TRUE(std::isnan(r.logdet[0]));
  EXPECT_TRUE(std::isnan(r.value[0]));
  EXPECT_EQ(r.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(r.extra(kNfe).defined());
}

std::shared_ptr<Flow> FfjordRk4Adjoint(Rng& rng) {
  return ConcatSquashRk4(rng, ode::Gradient::kAdjoint);
}
std::shared_ptr<Flow> FfjordRk4Discrete(Rng& rng) {
  return ConcatSquashRk4(rng, ode::Gradient::kDiscretize);
}
std::shared_ptr<Flow> Dopri5Discrete(Rng& rng, double rtol, double atol) {
  CnfOptions o = Tight(ode::Gradient::kDiscretize);
  o.ode.rtol = rtol;
  o.ode.atol = atol;
  return MakeCnf(TimeMlp::Create(2, {6}, nn::Activation::kTanh, rng).value(),
                 o);
}
std::shared_ptr<Flow> FfjordDopri5Discrete(Rng& rng) {
  return Dopri5Discrete(rng, 1e-12, 1e-13);
}
// float32: rtol = atol = 1e-6, where float32's solves still track float64's
// (ode/solver.h) and the solve error stays far below the float32
// tolerances (~1e-4).
std::shared_ptr<Flow> FfjordDopri5DiscreteFloat32(Rng& rng) {
  return Dopri5Discrete(rng, 1e-6, 1e-6);
}

// The adjoint with adaptive steps: at rtol 1e-10 in float64; at FFJORD's
// defaults (rtol = atol = 1e-5, CnfOptions) in float32.
std::shared_ptr<Flow> FfjordDopri5Adjoint(Rng& rng) {
  return MakeCnf(TimeMlp::Create(2, {6}, nn::Activation::kTanh, rng).value(),
                 Tight(ode::Gradient::kAdjoint));
}
std::shared_ptr<Flow> FfjordDopri5AdjointFloat32(Rng& rng) {
  return MakeCnf(TimeMlp::Create(2, {6}, nn::Activation::kTanh, rng).value(),
                 CnfOptions());
}

FlowCase Rk4Case(const char* name, FlowFactory make) {
  return FlowCase(name, std::move(make), {2})
      .Perturb(0.3)
      .LogdetTol(1e-6)
      .InverseTol(1e-6)
      .GradTol(1e-6)
      .Quadrature(7, 70)
      .IntegralTol(2e-3)
      .MaxGradEntries(40);
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
        .Float32Factory(FfjordDopri5DiscreteFloat32,
                        "its rtol 1e-12 (what the 1e-9 checks need) is below "
                        "float32's floor 6e-8 (ode/solver.h): rtol = atol = "
                        "1e-6 in float32"),
    // The adjoint's gradients are constants (ode/solve.h):
    // a Hessian through it aborts (death test below).
    Rk4Case("ffjord_rk4_adjoint", FfjordRk4Adjoint).FirstOrderOnly(),
    FlowCase("ffjord_dopri5_adjoint", FfjordDopri5Adjoint, {2})
        .Perturb(0.3)
        .LogdetTol(1e-7)
        .InverseTol(1e-7)
        .GradTol(1e-5)
        .Quadrature(7, 70)
        .IntegralTol(2e-3)
        .MaxGradEntries(40)
        .FirstOrderOnly()
        .Float32Factory(FfjordDopri5AdjointFloat32,
                        "its rtol 1e-10 is below float32's floor 6e-8 "
                        "(ode/solver.h): FFJORD's rtol = atol = 1e-5 in "
                        "float32"));

TEST(CnfDeathTest, NllHessianThroughTheAdjointAborts) {
  auto hessian = [] {
    Rng rng(1);
    FlowModel model(StandardNormal::Create(Shape({2})).value(),
                    FfjordRk4Adjoint(rng));
    Tensor x = Points(3, 2, 4).set_requires_grad(true);
    Tensor g = Grad({model.Nll(x)}, {x}, {}, /*create_graph=*/true)[0];
    Grad({Sum(g)}, {x});
  };
  EXPECT_DEATH(hessian(), "create_graph through the adjoint is unsupported");
}

}  // namespace
}  // namespace flowtape::flows::cnf

// Conditional CNF (dynamics f(t, z, c), context c [N, K]): the common flow
// harness with context (ContextMatters and dL/dc against finite differences
// included), the adjoint's context gradients against discretise-then-
// optimise (also for a context computed from a listed dynamics parameter),
// and bad context shapes.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/cnf/cnf.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "gtest/gtest.h"
#include "tests/flows/cnf/cnf_fixtures.h"
#include "tests/flows/harness.h"

namespace flowtape::flows::cnf {
namespace {
using testing::FlowCase;

constexpr int64_t kContext = 2;

// TimeMlp with context and a learnable T, adaptive dopri5 at rtol, atol.
std::shared_ptr<Flow> TimeMlpDopri5TrainT(Rng& rng, double rtol = 1e-12,
                                          double atol = 1e-13) {
  CnfOptions o;
  o.ode.rtol = rtol;
  o.ode.atol = atol;
  o.ode.gradient = ode::Gradient::kDiscretize;
  o.train_t = true;
  o.t_end = 0.8;
  return testing_cnf::MakeCnf(
      TimeMlp::Create(2, {6}, nn::Activation::kTanh, rng, kContext).value(), o);
}

FlowCase Rk4Case(const char* name, ode::Gradient g) {
  return FlowCase(
             name,
             [g](Rng& rng) {
               return testing_cnf::ConcatSquashRk4(rng, g, kContext);
             },
             {2}, kContext)
      .Perturb(0.3)
      .LogdetTol(1e-6)
      .InverseTol(1e-6)
      .GradTol(1e-6)
      .Quadrature(7, 70)
      .IntegralTol(2e-3)
      .MaxGradEntries(40);
}

FLOWTAPE_FLOW_CASES(
    ConditionalCnf,
    Rk4Case("ffjord_cond_rk4_discrete", ode::Gradient::kDiscretize),
    FlowCase(
        "ffjord_cond_train_t_dopri5_discrete",
        [](Rng& rng) { return TimeMlpDopri5TrainT(rng); }, {2}, kContext)
        .Perturb(0.3)
        .LogdetTol(1e-9)
        .InverseTol(1e-9)
        .GradTol(1e-5)
        .Quadrature(7, 70)
        .IntegralTol(2e-3)
        .MaxGradEntries(40)
        .Float32Factory(
            [](Rng& rng) { return TimeMlpDopri5TrainT(rng, 1e-6, 1e-6); },
            "its rtol 1e-12 (what the 1e-9 checks need) is "
            "below float32's floor 6e-8 (ode/solver.h): rtol "
            "= atol = 1e-6 in float32"),
    // The adjoint: every check but the Hessian (its
    // gradients are constants).
    Rk4Case("ffjord_cond_rk4_adjoint", ode::Gradient::kAdjoint)
        .FirstOrderOnly());

// Adjoint == discretise-then-optimise for the gradients w.r.t. every
// dynamics parameter and the context's sources, with the RNODE terms on:
// c = u W0[:, :3] + c0, where W0 is a listed dynamics parameter (the adjoint
// must count the path through c once) and u, c0 are leaves. Both
// directions (Forward: NLL; Inverse: a sampling loss).
TEST(ConditionalCnfTest, AdjointContextGradientsMatchDiscretize) {
  Rng rng(3);
  auto net =
      ConcatSquashNet::Create(2, {8, 8}, nn::Activation::kTanh, rng, 3).value();
  testing::PerturbParameters(*net, rng, 0.5);
  Tensor x = Tensor::Randn({4, 2}, rng);
  Tensor u = Tensor::Randn({4, 2}, rng).set_requires_grad(true);
  Tensor c0 = Tensor::Randn({4, 3}, rng).set_requires_grad(true);
  Tensor w0 = net->Parameters()[0];  // layer0.layer.weight [2, 8]
  ASSERT_EQ(w0.shape(), Shape({2, 8}));
  for (bool forward : {true, false}) {
    std::vector<std::vector<double>> grads;
    for (ode::Gradient g :
         {ode::Gradient::kAdjoint, ode::Gradient::kDiscretize}) {
      CnfOptions o;
      o.ode.rtol = 1e-10;
      o.ode.atol = 1e-12;
      o.ode.gradient = g;
      o.lambda_kinetic = 0.1;
      o.lambda_jacobian = 0.2;
      auto cnf = testing_cnf::MakeCnf(net, o);
      Tape::Get().Reset();
      cnf->ZeroGrad();
      Tensor context = MatMul(u, Narrow(w0, 1, 0, 3)) + c0;
      FlowResult r =
          forward ? cnf->Forward(x, context) : cnf->Inverse(x, context);
      ASSERT_TRUE(r.status.ok()) << r.status;
      Tensor loss = Mean(Sum(Square(r.value), 1) * 0.5 - r.logdet) +
                    Mean(r.extra(kRegularization));
      std::vector<Tensor> wrt = net->Parameters();
      wrt.insert(wrt.end(), {u, c0});
      std::vector<double> flat;
      for (const Tensor& gi : Grad({loss}, wrt))
        for (double v : gi.ToVector()) flat.push_back(v);
      grads.push_back(flat);
    }
    Tape::Get().Reset();
    double worst = 0, scale = 0, context_scale = 0;
    const size_t n = grads[0].size();
    for (size_t i = 0; i < n; ++i) {
      worst = std::max(worst, std::fabs(grads[0][i] - grads[1][i]));
      scale = std::max(scale, std::fabs(grads[1][i]));
      if (i >= n - 20)
        context_scale = std::max(context_scale, std::fabs(grads[1][i]));
    }
    EXPECT_GT(context_scale, 1e-3);  // the context gradient is not trivial
    EXPECT_LT(worst / scale, 1e-9) << (forward ? "forward" : "inverse");
  }
}

// Bad contexts are bad input: the pass's status names the problem.
TEST(ConditionalCnfTest, ForwardRejectsWrongContexts) {
  Rng rng(1);
  auto cond = testing_cnf::MakeCnf(
      ConcatSquashNet::Create(2, {4}, nn::Activation::kTanh, rng, 3).value(),
      CnfOptions());
  auto plain = testing_cnf::MakeCnf(
      ConcatSquashNet::Create(2, {4}, nn::Activation::kTanh, rng).value(),
      CnfOptions());
  Tensor x = Tensor::Zeros({4, 2});
  NoGradScope no_grad;
  for (const Tensor& c : {Tensor(), Tensor::Zeros({4, 2}),
                          Tensor::Zeros({5, 3}), Tensor::Zeros({4, 3, 1})}) {
    FlowResult r = cond->Forward(x, c);
    EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status.message().find("context must be [4, 3], got"),
              std::string::npos)
        << r.status;
  }
  FlowResult r = plain->Forward(x, Tensor::Zeros({4, 3}));
  EXPECT_EQ(r.status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status.message().find("context_dim 0"), std::string::npos);
  EXPECT_TRUE(cond->Inverse(x, Tensor::Zeros({4, 3})).status.ok());
  EXPECT_EQ(MakeFfjord(2, {4}, false, rng, 3).value()->context_dim(), 3);
}

// float32 (Module::To) with a context, both gradient modes: the round trip
// holds to float32 tolerance, the context changes the map, and dL/dc comes
// back in float32, equal to the float64 one to 1e-3 relative.
TEST(ConditionalCnfTest, Float32RoundTripAndContextGradient) {
  for (ode::Gradient g :
       {ode::Gradient::kAdjoint, ode::Gradient::kDiscretize}) {
    std::vector<double> grads[2];
    for (DType dtype : {kFloat64, kFloat32}) {
      Rng rng(9);
      auto flow = testing_cnf::ConcatSquashRk4(rng, g, kContext);
      testing::PerturbParameters(*flow, rng, 0.3);
      flow->To(dtype);
      Tensor x = Tensor::Randn({4, 2}, rng, dtype);
      Tensor c =
          Tensor::Randn({4, kContext}, rng, dtype).set_requires_grad(true);
      Tape::Get().Reset();
      FlowResult f = flow->Forward(x, c);
      ASSERT_TRUE(f.status.ok()) << f.status;
      ASSERT_EQ(f.value.dtype(), dtype);
      Tensor gc =
          Grad({Mean(Sum(Square(f.value), 1) * 0.5 - f.logdet)}, {c})[0];
      ASSERT_EQ(gc.dtype(), dtype);
      grads[dtype == kFloat32] = gc.ToVector();
      if (dtype == kFloat32) {
        NoGradScope no_grad;
        FlowResult b = flow->Inverse(f.value.Detach(), c);
        for (int64_t i = 0; i < x.numel(); ++i)
          EXPECT_NEAR(b.value[i], x[i], 2e-4);
        FlowResult other =
            flow->Forward(x, Tensor::Zeros({4, kContext}, dtype));
        EXPECT_GT(std::fabs(other.value[0] - f.value[0]), 1e-3);
      }
      Tape::Get().Reset();
    }
    double worst = 0, scale = 0;
    for (size_t i = 0; i < grads[0].size(); ++i) {
      worst = std::max(worst, std::fabs(grads[0][i] - grads[1][i]));
      scale = std::max(scale, std::fabs(grads[0][i]));
    }
    EXPECT_GT(scale, 1e-3);
    EXPECT_LT(worst / scale, 1e-3) << static_cast<int>(g);
  }
}

// A conditional model: p(x | c) for samples drawn given c.
TEST(ConditionalCnfTest, SamplesCarryTheirConditionalLogDensity) {
  Rng rng(4);
  CnfOptions o;
  o.ode.rtol = 1e-10;
  o.ode.atol = 1e-12;
  auto flow = testing_cnf::MakeCnf(
      MakeFfjord(2, {8}, /*rnode=*/false, rng, kContext).value()->dynamics(),
      o);
  testing::PerturbParameters(*flow, rng, 0.3);
  FlowModel model(StandardNormal::Create(Shape({2})).value(), flow);
  Tensor c = Tensor::Randn({5, kContext}, rng);
  NoGradScope no_grad;
  auto s = model.SampleWithLogProb(5, rng, c);
  Tensor lp = model.LogProb(s.x, c);
  for (int64_t i = 0; i < 5; ++i) EXPECT_NEAR(lp[i], s.log_prob[i], 1e-8);
}

}  // namespace
}  // namespace flowtape::flows::cnf

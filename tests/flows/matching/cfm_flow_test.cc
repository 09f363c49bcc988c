// The flow of a matched field is a Cnf: exact answers for a linear field
// (map expm(-A), log-det -tr A), the time reversal f(t) = -v(1 - t), the
// closed-form, VJP and Hutchinson traces agreeing, and the flow harness
// (round trips, brute-force log-dets, normalisation, gradients; float64 and
// float32) for unconditional and conditional fields.
#include "flows/matching/cfm_flow.h"

#include <Eigen/Dense>
#include <cmath>
#include <memory>
#include <unsupported/Eigen/MatrixFunctions>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "tests/flows/cnf/cnf_fixtures.h"
#include "tests/flows/harness.h"

namespace flowtape::flows::matching {
namespace {
using cnf::CnfOptions;
using cnf::ConcatSquashNet;
using testing::FlowCase;
using testing::FlowFactory;

TEST(CfmFlowTest, LinearFieldHasTheExactMapAndLogdet) {
  cnf::testing_cnf::Mat a(2, 2);
  a << 0.3, -0.7, 0.4, -0.2;
  auto v = std::make_shared<cnf::testing_cnf::LinearDynamics>(a);
  CnfOptions o;
  o.ode.rtol = 1e-10;
  o.ode.atol = 1e-12;
  auto cnf = MakeFlowMatchingCnf(v, o).value();
  EXPECT_EQ(cnf->name(), "cfm");
  Rng rng(1);
  Tensor x = Tensor::Randn({3, 2}, rng);
  NoGradScope no_grad;
  FlowResult f = cnf->Forward(x);  // data -> noise: expm(-A)
  FlowResult b = cnf->Inverse(x);  // noise -> data: expm(A)
  ASSERT_TRUE(f.status.ok());
  const Eigen::MatrixXd back = (-Eigen::MatrixXd(a)).exp();
  const Eigen::MatrixXd fwd = Eigen::MatrixXd(a).exp();
  for (int64_t i = 0; i < 3; ++i) {
    for (int k = 0; k < 2; ++k) {
      EXPECT_NEAR(f.value[2 * i + k],
                  back(k, 0) * x[2 * i] + back(k, 1) * x[2 * i + 1], 1e-8);
      EXPECT_NEAR(b.value[2 * i + k],
                  fwd(k, 0) * x[2 * i] + fwd(k, 1) * x[2 * i + 1], 1e-8);
    }
    EXPECT_NEAR(f.logdet[i], -0.1, 1e-9);  // -tr A
    EXPECT_NEAR(b.logdet[i], 0.1, 1e-9);
  }
  EXPECT_GT(f.extra(cnf::kNfe)[0], 0);
}

TEST(CfmFlowTest, ReversedFieldAndItsTraces) {
  Rng rng(2);
  auto v =
      ConcatSquashNet::Create(3, {7, 7}, nn::Activation::kTanh, rng).value();
  testing::PerturbParameters(*v, rng, 0.3);
  TimeReversedField f(v);
  Tensor z = Tensor::Randn({5, 3}, rng);
  Tensor fz = f(Tensor::Scalar(0.3), z, Tensor());
  Tensor vz = (*v)(0.7, z);
  for (int64_t i = 0; i < 15; ++i) EXPECT_NEAR(fz[i], -vz[i], 1e-15);
  ASSERT_TRUE(f.has_closed_form_trace());
  // Closed-form, VJP and (averaged) Hutchinson log-dets of the same solve.
  CnfOptions o;
  o.ode.method = ode::Method::kRk4;
  o.ode.step_size = 0.05;
  Tensor x = Tensor::Randn({2, 3}, rng);
  NoGradScope no_grad;
  o.trace = cnf::TraceEstimator::kExact;
  Tensor exact = MakeFlowMatchingCnf(v, o).value()->Forward(x).logdet;
  o.trace = cnf::TraceEstimator::kExactVjp;
  Tensor vjp = MakeFlowMatchingCnf(v, o).value()->Forward(x).logdet;
  o.trace = cnf::TraceEstimator::kHutchinson;
  auto hutch = MakeFlowMatchingCnf(v, o).value();
  const int64_t reps = 4000;
  std::vector<int64_t> rows(reps);
  for (int64_t r = 0; r < reps; ++r) rows[r] = 0;
  Tensor est = hutch->Forward(IndexSelect(x, 0, rows), Tensor(), &rng).logdet;
  const double mean = Mean(est).item();
  const double sd = std::sqrt(Mean(Square(est - mean)).item() / reps);
  EXPECT_NEAR(exact[0], vjp[0], 1e-12);
  EXPECT_NEAR(exact[1], vjp[1], 1e-12);
  EXPECT_NEAR(mean, exact[0], 4 * sd + 1e-12) << "sd " << sd;
}

TEST(CfmFlowTest, OptionsTheFieldWasNotTrainedForAreRejected) {
  Rng rng(3);
  auto v = ConcatSquashNet::Create(2, {4}, nn::Activation::kTanh, rng).value();
  CnfOptions o;
  o.t_end = 2;
  EXPECT_FALSE(MakeFlowMatchingCnf(v, o).ok());
  o = CnfOptions();
  o.train_t = true;
  EXPECT_FALSE(MakeFlowMatchingCnf(v, o).ok());
  o = CnfOptions();
  o.lambda_kinetic = 0.01;
  EXPECT_FALSE(MakeFlowMatchingCnf(v, o).ok());
  EXPECT_FALSE(MakeFlowMatchingCnf(nullptr).ok());
}

std::shared_ptr<Flow> Make(Rng& rng, int64_t context_dim,
                           ode::Gradient gradient, ode::Method method) {
  CnfOptions o;
  o.ode.method = method;
  o.ode.step_size = 0.05;
  o.ode.gradient = gradient;
  if (method == ode::Method::kDopri5) {
    o.ode.rtol = 1e-10;
    o.ode.atol = 1e-12;
  }
  return MakeFlowMatchingCnf(
             ConcatSquashNet::Create(2, {6}, nn::Activation::kTanh, rng,
                                     context_dim)
                 .value(),
             o)
      .value();
}

FlowCase Case(const char* name, FlowFactory make, int64_t context_dim = 0) {
  return FlowCase(name, std::move(make), {2}, context_dim)
      .Perturb(0.3)
      .LogdetTol(1e-6)
      .InverseTol(1e-6)
      .GradTol(1e-6)
      .Quadrature(7, 70)
      .IntegralTol(2e-3)
      .MaxGradEntries(40);
}

FLOWTAPE_FLOW_CASES(
    Cfm,
    Case("cfm_rk4_discrete",
         [](Rng& rng) {
           return Make(rng, 0, ode::Gradient::kDiscretize, ode::Method::kRk4);
         }),
    Case(
        "cfm_context_rk4_discrete",
        [](Rng& rng) {
          return Make(rng, 2, ode::Gradient::kDiscretize, ode::Method::kRk4);
        },
        2),
    // The adjoint's gradients are constants: first order only.
    Case("cfm_dopri5_adjoint",
         [](Rng& rng) {
           return Make(rng, 0, ode::Gradient::kAdjoint, ode::Method::kDopri5);
         })
        .LogdetTol(1e-8)
        .InverseTol(1e-8)
        .FirstOrderOnly()
        .Float64Only(
            "its rtol 1e-10 (what the 1e-8 log-det check needs) is below "
            "float32's floor; the rk4 cases run in float32"));

}  // namespace
}  // namespace flowtape::flows::matching

#include "flows/cnf/mixture_baseline_velocity.h"

#include <cmath>
#include <memory>
#include <vector>

#include "autodiff/functional.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/cnf/cnf.h"
#include "flows/cnf/dynamics.h"
#include "flows/matching/cfm_flow.h"
#include "gtest/gtest.h"
#include "tests/flows/harness.h"

namespace flowtape::flows::cnf {
namespace {

constexpr double kLog2Pi = 1.8378770664093453;

// Per dimension k: weights w[j][k], means m[j][k], variances q[j][k].
struct Mixture {
  std::vector<double> w, m, q;  // [K * d], row j = component j
  int64_t k, d;
  Tensor W() const { return Tensor::FromVector({k, d}, w); }
  Tensor M() const { return Tensor::FromVector({k, d}, m); }
  Tensor Q() const { return Tensor::FromVector({k, d}, q); }
};

Mixture TwoComponents() {
  // d = 3: a sharp spike plus a broad mode, a balanced pair, a lone mode
  // (second weight tiny).
  return {{0.8, 0.5, 0.999, 0.2, 0.5, 0.001},
          {-2.9, -1.0, 0.3, 0.5, 1.5, 2.0},
          {0.0005, 0.3, 0.4, 1.5, 0.2, 0.1},
          2,
          3};
}

std::shared_ptr<ConcatSquashNet> Net(int64_t d, uint64_t seed, bool zero) {
  Rng rng(seed);
  auto net =
      ConcatSquashNet::Create(d, {5}, nn::Activation::kTanh, rng).value();
  if (zero) {
    for (const Tensor& p : net->Parameters()) {
      Tensor q = p;
      for (int64_t i = 0; i < q.numel(); ++i) q.mutable_data<double>()[i] = 0;
    }
  } else {
    testing::PerturbParameters(*net, rng, 0.5);
  }
  return net;
}

Tensor Points(int64_t n, int64_t d, uint64_t seed) {
  Rng rng(seed);
  return Tensor::Randn({n, d}, rng);
}

// With F = 0 the field is g alone, whose flow carries N(0, I) to the
// mixture convolved with N(0, s^2): per dimension
//   log q(y_k) = log sum_j w_jk N(y_k; m_jk, q_jk + s^2).
// Checked through whole dopri5 solves (MakeFlowMatchingCnf) with the
// closed-form trace and with d VJPs, and by the round trip.
TEST(MixtureBaselineVelocityTest, FlowOfTheBaselineReachesTheMixture) {
  const Mixture mix = TwoComponents();
  const double s = 0.01;
  for (TraceEstimator trace :
       {TraceEstimator::kExact, TraceEstimator::kExactVjp}) {
    auto field =
        MixtureBaselineVelocity::Create(Net(3, 1, /*zero=*/true), 2, s).value();
    ASSERT_TRUE(field->SetMixture(mix.W(), mix.M(), mix.Q()).ok());
    CnfOptions o;
    o.trace = trace;
    o.ode.rtol = 1e-10;
    o.ode.atol = 1e-10;
    auto cnf = matching::MakeFlowMatchingCnf(field, o).value();
    NoGradScope no_grad;
    // Points near each mode, the spike's included.
    Tensor y = Tensor::FromVector({4, 3}, {-2.9, -1.0, 0.3, -2.88, 1.5, 2.0,
                                           0.5, 0.0, 0.5, 1.0, -0.5, 1.0});
    FlowResult r = cnf->Forward(y);
    ASSERT_TRUE(r.status.ok()) << r.status;
    for (int64_t i = 0; i < 4; ++i) {
      double got = r.logdet[i] - 0.5 * 3 * kLog2Pi, want = 0;
      for (int64_t c = 0; c < 3; ++c) {
        got -= 0.5 * r.value[i * 3 + c] * r.value[i * 3 + c];
        double p = 0;
        for (int64_t j = 0; j < 2; ++j) {
          const double v = mix.q[j * 3 + c] + s * s;
          const double dy = y[i * 3 + c] - mix.m[j * 3 + c];
          p += mix.w[j * 3 + c] * std::exp(-0.5 * dy * dy / v) /
               std::sqrt(2 * M_PI * v);
        }
        want += std::log(p);
      }
      EXPECT_NEAR(got, want, 1e-5 * std::max(1.0, std::fabs(want)))
          << "point " << i << " trace " << static_cast<int>(trace);
    }
    FlowResult back = cnf->Inverse(r.value);
    ASSERT_TRUE(back.status.ok()) << back.status;
    for (int64_t i = 0; i < y.numel(); ++i)
      EXPECT_NEAR(back.value[i], y[i], 1e-5);
  }
}

// g + F: the double, scalar and per-sample time forms agree, and the
// closed-form trace equals the trace from d VJPs.
TEST(MixtureBaselineVelocityTest, ClosedFormTraceMatchesVjps) {
  const Mixture mix = TwoComponents();
  auto net = Net(3, 2, /*zero=*/false);
  auto field = MixtureBaselineVelocity::Create(net, 2, 1e-3).value();
  ASSERT_TRUE(field->SetMixture(mix.W(), mix.M(), mix.Q()).ok());
  ASSERT_TRUE(field->has_closed_form_trace());
  Tensor z = Points(5, 3, 3) - 1.0;
  for (double t : {0.0, 0.4, 0.97, 1.0}) {
    Tensor a = (*field)(t, z);
    Tensor tr;
    Tensor b = field->ValueAndTrace(Tensor::Scalar(t), z, Tensor(), &tr);
    Tensor want =
        ExactTrace([&](const Tensor& x) { return (*field)(t, x); }, z);
    for (int64_t i = 0; i < z.numel(); ++i) EXPECT_NEAR(a[i], b[i], 1e-12);
    for (int64_t i = 0; i < 5; ++i)
      EXPECT_NEAR(tr[i], want[i], 1e-9 * std::max(1.0, std::fabs(want[i])))
          << "t " << t << " row " << i;
    EXPECT_GT(std::fabs(want[0] - want[1]), 1e-3);
  }
  Tensor ts = Tensor::FromVector({5, 1}, {0.0, 0.2, 0.5, 0.9, 0.999});
  Tensor per = (*field)(ts, z, Tensor());
  for (int64_t i = 0; i < 5; ++i) {
    Tensor row = (*field)(ts[i], Narrow(z, 0, i, 1));
    for (int64_t c = 0; c < 3; ++c)
      EXPECT_NEAR(per[i * 3 + c], row[c], 1e-12) << i;
  }
}

// Until SetMixture the field is the residual net exactly.
TEST(MixtureBaselineVelocityTest, DisabledIsTheResidual) {
  auto net = Net(3, 4, /*zero=*/false);
  auto field = MixtureBaselineVelocity::Create(net, 2, 1e-4).value();
  EXPECT_FALSE(field->enabled());
  Tensor z = Points(4, 3, 5);
  Tensor a = (*field)(0.3, z), b = (*net)(0.3, z);
  Tensor tr_a, tr_b;
  field->ValueAndTrace(Tensor::Scalar(0.3), z, Tensor(), &tr_a);
  net->ValueAndTrace(Tensor::Scalar(0.3), z, Tensor(), &tr_b);
  for (int64_t i = 0; i < a.numel(); ++i) EXPECT_EQ(a[i], b[i]);
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(tr_a[i], tr_b[i]);
  EXPECT_EQ(field->NamedBuffers().size(), 4u);
}

TEST(MixtureBaselineVelocityTest, RejectsBadArguments) {
  auto net = Net(3, 6, false);
  EXPECT_FALSE(MixtureBaselineVelocity::Create(nullptr, 2, 0.1).ok());
  EXPECT_FALSE(MixtureBaselineVelocity::Create(net, 0, 0.1).ok());
  for (double s : {0.0, 1.0, std::nan("")})
    EXPECT_FALSE(MixtureBaselineVelocity::Create(net, 2, s).ok()) << s;
  auto field = MixtureBaselineVelocity::Create(net, 2, 0.1).value();
  const Mixture mix = TwoComponents();
  EXPECT_FALSE(
      field->SetMixture(Tensor::Full({2, 2}, 1.0), mix.M(), mix.Q()).ok());
  Mixture bad = mix;
  bad.q[1] = 0;
  EXPECT_FALSE(field->SetMixture(bad.W(), bad.M(), bad.Q()).ok());
  bad = mix;
  bad.w[2] = -1;
  EXPECT_FALSE(field->SetMixture(bad.W(), bad.M(), bad.Q()).ok());
  bad = mix;
  bad.m[0] = std::nan("");
  EXPECT_FALSE(field->SetMixture(bad.W(), bad.M(), bad.Q()).ok());
  EXPECT_FALSE(field->enabled());
}

}  // namespace
}  // namespace flowtape::flows::cnf

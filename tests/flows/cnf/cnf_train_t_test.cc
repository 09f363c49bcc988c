// CNF with a learnable integration time (CnfOptions::train_t, T =
// sqrt_end_time^2, solved in rescaled time s = t / T): the exact dL/dT of
// linear dynamics, the same solution as a fixed-T solve, and dL/d
// sqrt_end_time against central differences of the whole adaptive solve,
// in both gradient modes.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <unsupported/Eigen/MatrixFunctions>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/cnf/cnf.h"
#include "gtest/gtest.h"
#include "tests/flows/cnf/cnf_fixtures.h"
#include "tests/flows/harness.h"

namespace flowtape::flows::cnf {
namespace {
using testing_cnf::LinearDynamics;
using testing_cnf::MakeCnf;
using testing_cnf::Mat;

CnfOptions Tight(ode::Gradient g, bool train_t, double t_end) {
  CnfOptions o;
  o.ode.rtol = 1e-10;
  o.ode.atol = 1e-12;
  o.ode.gradient = g;
  o.train_t = train_t;
  o.t_end = t_end;
  return o;
}

std::shared_ptr<CnfDynamics> PerturbedNet(uint64_t seed) {
  Rng rng(seed);
  std::shared_ptr<CnfDynamics> net =
      ConcatSquashNet::Create(2, {8, 8}, nn::Activation::kTanh, rng).value();
  testing::PerturbParameters(*net, rng, 0.5);
  return net;
}

Tensor Points(int64_t n, uint64_t seed) {
  Rng rng(seed);
  return Tensor::Randn({n, 2}, rng);
}

const ode::Gradient kModes[] = {ode::Gradient::kAdjoint,
                                ode::Gradient::kDiscretize};

// L = sum(w * z(T)) + mean(logdet) with z(T) = expm(A T) x and logdet =
// T tr A, so dL/dT = sum(w * z(T) A') + tr A and dL/dr = 2 r dL/dT (r =
// sqrt_end_time).
TEST(CnfTrainTTest, LinearDynamicsExactTimeDerivative) {
  Mat a(2, 2);
  a << -0.4, 1.1, -0.7, 0.3;
  Mat w(3, 2);
  w << 0.3, -1.2, 0.8, 0.5, -0.6, 0.9;
  Tensor x = Points(3, 1);
  for (ode::Gradient g : kModes) {
    auto cnf =
        MakeCnf(std::make_shared<LinearDynamics>(a), Tight(g, true, 1.3));
    ASSERT_EQ(cnf->Parameters().size(), 2u);  // A and sqrt_end_time
    EXPECT_NEAR(cnf->end_time(), 1.3, 1e-15);
    Tape::Get().Reset();
    cnf->ZeroGrad();
    FlowResult r = cnf->Forward(x);
    ASSERT_TRUE(r.status.ok()) << r.status;
    Tensor wt =
        Tensor::FromVector({3, 2}, std::vector<double>(w.data(), w.data() + 6));
    Backward(Sum(r.value * wt) + Mean(r.logdet));
    const Mat xm = Eigen::Map<const Mat>(x.data<double>(), 3, 2);
    const Mat zt = xm * (a * 1.3).exp().transpose();
    const double dldt =
        (w.array() * (zt * a.transpose()).array()).sum() + a.trace();
    for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR(r.value[i], zt.data()[i], 1e-9);
    EXPECT_NEAR(r.logdet[0], 1.3 * a.trace(), 1e-9);
    const double r0 = std::sqrt(1.3);
    EXPECT_NEAR(cnf->sqrt_end_time().grad().item(), 2 * r0 * dldt, 1e-9)
        << static_cast<int>(g);
    Tape::Get().Reset();
  }
}

// Rescaled time gives the fixed-T solution (time-dependent dynamics, with
// the regularisers), forward and inverse.
TEST(CnfTrainTTest, SameSolutionAsFixedTime) {
  auto net = PerturbedNet(4);
  Tensor x = Points(4, 3);
  NoGradScope no_grad;
  for (bool forward : {true, false}) {
    CnfOptions o = Tight(ode::Gradient::kNone, false, 0.7);
    o.regularize = true;
    auto solve = [&](const CnfOptions& opt) {
      auto cnf = MakeCnf(net, opt);
      return forward ? cnf->Forward(x) : cnf->Inverse(x);
    };
    FlowResult fixed = solve(o);
    o.train_t = true;
    FlowResult learnable = solve(o);
    ASSERT_TRUE(fixed.status.ok() && learnable.status.ok());
    for (auto [u, v] : {std::pair{fixed.value, learnable.value},
                        {fixed.logdet, learnable.logdet},
                        {fixed.extra(kKinetic), learnable.extra(kKinetic)},
                        {fixed.extra(kJacobian), learnable.extra(kJacobian)}})
      for (int64_t i = 0; i < u.numel(); ++i) EXPECT_NEAR(u[i], v[i], 1e-8);
    EXPECT_GT(std::fabs(fixed.logdet[0]), 1e-2);
  }
}

// dL/d sqrt_end_time (L = NLL + RNODE terms) against central differences of
// the adaptive solve, in both gradient modes; both modes also agree on
// every parameter. The dynamics depend on t, so dL/dT includes the path
// through f's time input (s T).
TEST(CnfTrainTTest, GradientMatchesFiniteDifferences) {
  Tensor x = Points(3, 4);
  auto net = PerturbedNet(5);
  auto loss_of = [&](const Cnf& cnf) {
    FlowResult r = cnf.Forward(x);
    EXPECT_TRUE(r.status.ok()) << r.status;
    return Mean(Sum(Square(r.value), 1) * 0.5 - r.logdet) +
           Mean(r.extra(kRegularization));
  };
  std::vector<std::vector<double>> grads;
  for (ode::Gradient g : kModes) {
    CnfOptions o = Tight(g, true, 0.8);
    o.lambda_kinetic = 0.1;
    o.lambda_jacobian = 0.2;
    auto cnf = MakeCnf(net, o);
    Tape::Get().Reset();
    cnf->ZeroGrad();
    Backward(loss_of(*cnf));
    std::vector<double> flat;
    for (const Tensor& p : cnf->Parameters())
      for (double v : p.grad().ToVector()) flat.push_back(v);
    grads.push_back(flat);
    Tape::Get().Reset();

    Tensor r = cnf->sqrt_end_time();
    const double analytic = r.grad().item(), r0 = r.item(), h = 1e-5;
    auto at = [&](double v) {
      r.mutable_data<double>()[0] = v;
      NoGradScope no_grad;
      return loss_of(*cnf).item();
    };
    const double fd = (at(r0 + h) - at(r0 - h)) / (2 * h);
    r.mutable_data<double>()[0] = r0;
    EXPECT_GT(std::fabs(analytic), 1e-2);
    EXPECT_NEAR(analytic, fd, 5e-9 * std::fabs(fd)) << static_cast<int>(g);
  }
  double worst = 0, scale = 0;
  for (size_t i = 0; i < grads[0].size(); ++i) {
    worst = std::max(worst, std::fabs(grads[0][i] - grads[1][i]));
    scale = std::max(scale, std::fabs(grads[1][i]));
  }
  EXPECT_LT(worst / scale, 1e-9);
}

// float32 with a learnable T (sqrt_end_time converted with the net): the
// rescaled solve equals the fixed-T one to float32 tolerance at FFJORD's
// rtol, and dL/d sqrt_end_time matches the float64 one to 1e-3 relative.
TEST(CnfTrainTTest, Float32MatchesFloat64) {
  Tensor x = Points(4, 8);
  double dr[2];
  for (DType dtype : {kFloat64, kFloat32}) {
    CnfOptions o;
    o.train_t = true;
    o.t_end = 0.8;
    auto cnf = MakeCnf(PerturbedNet(9), o);
    cnf->To(dtype);
    ASSERT_EQ(cnf->sqrt_end_time().dtype(), dtype);
    Tape::Get().Reset();
    FlowResult r = cnf->Forward(Cast(x, dtype));
    ASSERT_TRUE(r.status.ok()) << r.status;
    Backward(Mean(Sum(Square(r.value), 1) * 0.5 - r.logdet));
    dr[dtype == kFloat32] = cnf->sqrt_end_time().grad().item();
    const std::vector<double> z = r.value.ToVector();
    Tape::Get().Reset();
    if (dtype == kFloat32) {
      NoGradScope no_grad;
      CnfOptions fixed_o;
      fixed_o.t_end = 0.8;
      auto net = PerturbedNet(9);
      net->To(kFloat32);
      FlowResult fixed = MakeCnf(net, fixed_o)->Forward(Cast(x, dtype));
      for (int64_t i = 0; i < x.numel(); ++i)
        EXPECT_NEAR(fixed.value[i], z[i], 1e-4);
    }
  }
  EXPECT_GT(std::fabs(dr[0]), 1e-2);
  EXPECT_NEAR(dr[1], dr[0], 1e-3 * std::fabs(dr[0]));
}

// A trained T moves the flow: round trip at a changed sqrt_end_time.
TEST(CnfTrainTTest, RoundTripAfterChangingT) {
  auto net = PerturbedNet(6);
  auto cnf = MakeCnf(net, Tight(ode::Gradient::kAdjoint, true, 1.0));
  Tensor r = cnf->sqrt_end_time();
  r.mutable_data<double>()[0] = 1.3;
  EXPECT_NEAR(cnf->end_time(), 1.69, 1e-15);
  Tensor x = Points(5, 7);
  NoGradScope no_grad;
  FlowResult f = cnf->Forward(x);
  FlowResult b = cnf->Inverse(f.value);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_NEAR(b.value[i], x[i], 1e-8);
  for (int64_t i = 0; i < 5; ++i) EXPECT_NEAR(b.logdet[i], -f.logdet[i], 1e-8);
  CnfOptions o = Tight(ode::Gradient::kNone, false, 1.69);
  FlowResult fixed = MakeCnf(net, o)->Forward(x);
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_NEAR(fixed.value[i], f.value[i], 1e-8);
}

// Dynamics without a differentiable time input cannot give dL/dT: a
// learnable T with them is a programming error, reported by name.
class TimeAsDouble : public CnfDynamics {
 public:
  Tensor operator()(double, const Tensor& z) const override { return z; }
  int64_t dim() const override { return 2; }
};

TEST(CnfTrainTDeathTest, NeedsDifferentiableTime) {
  Rng rng(1);
  auto ffjord =
      MakeFfjord(2, {4}, /*rnode=*/false, rng, 0, /*train_t=*/true).value();
  EXPECT_TRUE(ffjord->sqrt_end_time().requires_grad());
  int found = 0;
  for (const auto& [name, p] : ffjord->NamedParameters())
    if (name == "sqrt_end_time" &&
        p.raw_data() == ffjord->sqrt_end_time().raw_data())
      ++found;
  EXPECT_EQ(found, 1);
  EXPECT_FALSE(
      MakeFfjord(2, {4}, false, rng).value()->sqrt_end_time().defined());
  CnfOptions o;
  o.train_t = true;
  auto cnf = MakeCnf(std::make_shared<TimeAsDouble>(), o);
  EXPECT_DEATH(cnf->Forward(Points(2, 1)), "learnable T");
}

}  // namespace
}  // namespace flowtape::flows::cnf

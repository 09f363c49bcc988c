// Augmented neural ODE: the padding, gradients through the solve, and the
// representational gap of Dupont et al. on 1-D nested intervals: the
// time-T map of a 1-D ODE is increasing, so no linear head on it can output
// +1 at x = -1.2 and x = 1.2 but -1 at x = 0; one extra dimension can.
#include "flows/cnf/anode.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "nn/optim.h"
#include "tests/gradcheck.h"

namespace flowtape::flows::cnf {
namespace {

NeuralOdeOptions Options(int64_t augment) {
  NeuralOdeOptions o;
  o.augment_dim = augment;
  o.hidden = {16};
  o.activation = nn::Activation::kTanh;
  o.ode.method = ode::Method::kRk4;
  o.ode.step_size = 0.1;
  return o;
}

TEST(AnodeTest, AugmentedStateStartsAtZeroPadding) {
  Rng rng(1);
  NeuralOdeOptions o = Options(3);
  o.t_end = 1e-12;  // h(T) = h(0) to ~1e-12
  auto m = NeuralOdeModel::Create(2, o, rng).value();
  Tensor x = Tensor::FromVector({2, 2}, {0.5, -1.0, 2.0, 0.25});
  NoGradScope no_grad;
  auto h = m->Features(x);
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->shape(), Shape({2, 5}));
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 5; ++j)
      EXPECT_NEAR((*h)[i * 5 + j], j < 2 ? x[i * 2 + j] : 0.0, 1e-10);
}

TEST(AnodeTest, WrongInputShapeIsAStatus) {
  Rng rng(1);
  auto m = NeuralOdeModel::Create(2, Options(1), rng).value();
  NoGradScope no_grad;
  for (const Tensor& x : {Tensor::Zeros({3, 3}), Tensor::Zeros({2})}) {
    auto h = m->Features(x);
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(h.status().message().find("must be [N, 2], got " +
                                        x.shape().ToString()),
              std::string::npos)
        << h.status();
    EXPECT_EQ((*m)(x).status().code(), absl::StatusCode::kInvalidArgument);
  }
  auto ok = (*m)(Tensor::Zeros({3, 2}));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->shape(), Shape({3, 1}));
}

TEST(AnodeTest, InputGradientMatchesFiniteDifferences) {
  Rng rng(2);
  NeuralOdeOptions o = Options(2);
  o.ode.method = ode::Method::kDopri5;
  o.ode.rtol = 1e-10;
  o.ode.atol = 1e-12;
  auto m = NeuralOdeModel::Create(2, o, rng).value();
  double err = testing::GradientError(
      [&](const std::vector<Tensor>& in) { return Sum(Square(*(*m)(in[0]))); },
      {Tensor::FromVector({2, 2}, {0.5, -1.0, 2.0, 0.25})}, 1e-5);
  EXPECT_LT(err, 1e-6);
}

double TrainNestedIntervals(int64_t augment) {
  Rng rng(3);
  auto m = NeuralOdeModel::Create(1, Options(augment), rng).value();
  nn::AdamOptions ao;
  ao.lr = 0.02;
  auto adam = nn::Adam::Create(*m, ao).value();
  // -1 on |x| < 0.5, +1 on 1 <= |x| <= 1.5.
  std::vector<double> xs, ys;
  for (int i = 0; i < 40; ++i) {
    double u = (i + 0.5) / 40;
    xs.push_back(i % 2 ? -0.5 + u : (i % 4 ? -1 : 1) * (1 + 0.5 * u));
    ys.push_back(i % 2 ? -1.0 : 1.0);
  }
  Tensor x = Tensor::FromVector({40, 1}, xs),
         y = Tensor::FromVector({40, 1}, ys);
  double loss = 0;
  for (int step = 0; step < 150; ++step) {
    Tensor l = Mean(Square(*(*m)(x)-y));
    loss = l.item();
    adam->ZeroGrad();
    Backward(l);
    adam->Step();
    Tape::Get().Reset();
  }
  return loss;
}

// Bad options and sizes are InvalidArgument naming the field.
TEST(AnodeTest, CreateRejectsBadOptions) {
  Rng rng(1);
  auto bad = [&](const NeuralOdeOptions& o, int64_t in, const char* needle) {
    auto m = NeuralOdeModel::Create(in, o, rng);
    ASSERT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_NE(m.status().message().find(needle), std::string::npos)
        << m.status();
  };
  NeuralOdeOptions o = Options(1);
  bad(o, 0, "in_dim");
  o.augment_dim = -1;
  bad(o, 2, "augment_dim");
  o = Options(1);
  o.hidden = {4, 0};
  bad(o, 2, "hidden");
  o = Options(1);
  o.out_dim = 0;
  bad(o, 2, "out_dim");
  o = Options(1);
  o.t_end = 0;
  bad(o, 2, "t_end");
  o = Options(1);
  o.ode.step_size = -1;
  bad(o, 2, "step_size");
  EXPECT_TRUE(NeuralOdeModel::Create(2, Options(1), rng).ok());
}

// Float32 (Module::To): the same features as float64 to the solver's
// accuracy (fixed-step rk4: float rounding only), in float32; the stats
// sink counts the adjoint's backward evaluations.
TEST(AnodeTest, Float32MatchesFloat64AndReportsCost) {
  std::vector<double> out[2];
  for (int k = 0; k < 2; ++k) {
    Rng rng(5);
    NeuralOdeOptions o = Options(2);
    o.ode.stats = std::make_shared<ode::OdeStatsSink>();
    auto m = NeuralOdeModel::Create(2, o, rng).value();
    const DType dtype = k == 0 ? kFloat64 : kFloat32;
    m->To(dtype);
    Tensor x = Tensor::FromVector({2, 2}, {0.5, -1.0, 2.0, 0.25}, dtype);
    Tape::Get().Reset();
    auto y = (*m)(x);
    ASSERT_TRUE(y.ok());
    ASSERT_EQ(y->dtype(), dtype);
    out[k] = y->ToVector();
    Backward(Sum(*y));
    const ode::OdeStats s = o.ode.stats->Get();
    EXPECT_EQ(s.forward.nfe, 40);  // rk4, 10 steps
    EXPECT_GT(s.backward.nfe, 0);
    Tape::Get().Reset();
  }
  for (size_t i = 0; i < out[0].size(); ++i) {
    EXPECT_NEAR(out[1][i], out[0][i], 1e-5);
    EXPECT_NE(out[1][i], out[0][i]);
  }
}

TEST(AnodeTest, AugmentationSeparatesNestedIntervals) {
  double plain = TrainNestedIntervals(0);
  double augmented = TrainNestedIntervals(1);
  // Best monotone fit of (+1 x10, -1 x20, +1 x10) in x order pools 30
  // values: MSE >= (10 (4/3)^2 + 20 (2/3)^2) / 40 = 2/3, whatever the net.
  EXPECT_GT(plain, 2.0 / 3.0 - 1e-9);
  EXPECT_LT(augmented, 0.1);
}

}  // namespace
}  // namespace flowtape::flows::cnf

// TrainFlowMatching: a trained 2-D model beats the base on held-out NLL and
// its density integrates to 1; a Riemannian model on S^2 (a module with its
// own nll, not a FlowModel) beats the uniform density; the EMA recursion; the
// NaN guard restores parameters, optimizer and EMA together; checkpoints
// restore all three; option errors.
#include "training/train_flow_matching.h"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/cnf/dynamics.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "flows/matching/cfm.h"
#include "flows/matching/cfm_flow.h"
#include "gtest/gtest.h"
#include "manifolds/manifold_flow.h"
#include "manifolds/sphere_densities.h"
#include "manifolds/sphere_flow_matching.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"

namespace flowtape::training {
namespace {

using flows::matching::AffinePath;
using flows::matching::FlowMatching;

// Two Gaussians at (+-1.5, 0), sd 0.5.
Tensor TwoGaussians(int64_t n, Rng& rng) {
  Tensor x = Tensor::Zeros({n, 2});
  double* p = x.mutable_data<double>();
  for (int64_t i = 0; i < n; ++i) {
    p[2 * i] = (rng.Bernoulli(0.5) ? 1.5 : -1.5) + 0.5 * rng.Normal();
    p[2 * i + 1] = 0.5 * rng.Normal();
  }
  return x;
}

struct Rig {
  std::shared_ptr<flows::cnf::ConcatSquashNet> velocity;
  std::shared_ptr<flows::FlowModel> model;
  std::shared_ptr<FlowMatching> objective;
  std::shared_ptr<nn::Adam> adam;
  FlowMatchingLossFn loss;
};

Rig Make(uint64_t seed, double lr = 1e-2) {
  Rig s;
  Rng rng(seed);
  s.velocity = flows::cnf::ConcatSquashNet::Create(2, {32, 32},
                                                   nn::Activation::kTanh, rng)
                   .value();
  flows::cnf::CnfOptions o;
  o.ode.rtol = o.ode.atol = 1e-6;
  s.model = std::make_shared<flows::FlowModel>(
      flows::StandardNormal::Create(Shape({2})).value(),
      flows::matching::MakeFlowMatchingCnf(s.velocity, o).value());
  s.objective =
      FlowMatching::Create(s.velocity, AffinePath::OptimalTransport().value())
          .value();
  s.adam = nn::Adam::Create(*s.model, nn::AdamOptions{/*lr=*/lr}).value();
  s.loss = [obj = s.objective](const Tensor& x, const Tensor& c, Rng& rng) {
    return obj->Loss(x, c, rng);
  };
  return s;
}

std::vector<double> Values(const nn::Module& m) {
  std::vector<double> v;
  for (const Tensor& p : m.Parameters())
    for (int64_t i = 0; i < p.numel(); ++i) v.push_back(p[i]);
  return v;
}

TEST(TrainFlowMatchingTest, TrainedModelBeatsTheBaseAndIsNormalised) {
  Rng data_rng(1);
  TrainData data;
  data.train = TwoGaussians(2048, data_rng);
  data.val = TwoGaussians(256, data_rng);
  Rig s = Make(2);
  FlowMatchingTrainOptions o;
  o.batch_size = 256;
  o.max_steps = 400;
  o.eval_every = 200;
  o.ema_decay = 0.99;
  std::ostringstream log;
  o.log = &log;
  o.log_every = 200;
  auto r = TrainFlowMatching(*s.model, s.loss, *s.adam, data, o).value();
  EXPECT_EQ(r.steps, 400);
  ASSERT_EQ(r.val_history.size(), 2u);
  EXPECT_NE(log.str().find("step 400/400  loss "), std::string::npos)
      << log.str();
  EXPECT_NE(log.str().find("val "), std::string::npos);
  // N(0, I) scores this data at about 2.9 nats; the mixture's own entropy
  // is about 1.6.
  const double base_nll = EvaluateNll(
      [](const Tensor& x, const Tensor&, Rng&) {
        return Mean(Sum(Square(x), 1) * 0.5 + std::log(2 * M_PI));
      },
      data.val, Tensor(), 256);
  EXPECT_LT(r.best_val_nll, base_nll - 0.5)
      << r.best_val_nll << " vs " << base_nll;
  // The model (EMA weights) integrates to 1: midpoint rule on [-6, 6]^2.
  const int m = 80;
  const double lo = -6, h = 12.0 / m;
  std::vector<double> grid;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j) {
      grid.push_back(lo + (i + 0.5) * h);
      grid.push_back(lo + (j + 0.5) * h);
    }
  NoGradScope no_grad;
  Tensor lp = s.model->LogProb(Tensor::FromVector({m * m, 2}, grid));
  double total = 0;
  for (int64_t i = 0; i < m * m; ++i) total += std::exp(lp[i]) * h * h;
  EXPECT_NEAR(total, 1.0, 1e-3);
  std::cout << "best val NLL " << r.best_val_nll << " (N(0, I): " << base_nll
            << "), integral " << total << "\n";
}

// Riemannian flow matching on S^2 through the generic overload: the model is
// a ManifoldFlowModel (uniform base, SphereCnf), validated by -mean log q.
// On held-out vMF(kappa = 5) draws it must beat the uniform density by most
// of the gap to the truth; a check_model that refuses makes the run fail.
TEST(TrainFlowMatchingTest, SphereModelWithItsOwnNll) {
  using manifolds::ManifoldFlowModel;
  auto vmf =
      manifolds::VonMisesFisher::Create(Eigen::Vector3d(0, 0.6, 0.8), 5.0)
          .value();
  Rng rng(13);
  TrainData data;
  data.train = vmf->Sample(2048, rng);
  data.val = vmf->Sample(256, rng);
  auto net = flows::cnf::ConcatSquashNet::Create(3, {32, 32},
                                                 nn::Activation::kTanh, rng)
                 .value();
  auto field = std::make_shared<manifolds::TangentProjectedField>(net);
  auto model = std::make_shared<ManifoldFlowModel>(
      manifolds::UniformSphere::Create(3).value(),
      std::vector<std::shared_ptr<flows::Flow>>{
          manifolds::SphereCnf::Create(field, 0.05).value()});
  auto objective = FlowMatching::Create(
                       field, std::make_shared<manifolds::GeodesicSpherePath>(),
                       {}, manifolds::UniformSphereSource(3))
                       .value();
  FlowMatchingLossFn loss = [&](const Tensor& x, const Tensor& c, Rng& r) {
    return objective->Loss(x, c, r);
  };
  NllFn nll = [&](const Tensor& x, const Tensor&, Rng&) {
    return -Mean(model->LogProb(x));
  };
  auto adam = nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/5e-3}).value();
  FlowMatchingTrainOptions o;
  o.batch_size = 256;
  o.max_steps = 300;
  o.eval_every = 150;
  o.ema_decay = 0.95;
  o.log_every = 0;
  auto r = TrainFlowMatching(*model, nll, loss, *adam, data, o).value();
  ASSERT_EQ(r.val_history.size(), 2u);
  EXPECT_EQ(r.elapsed.size(), 300u);
  const double uniform = std::log(4 * M_PI);
  const double truth = -Mean(vmf->LogProb(data.val)).item();
  EXPECT_LT(r.best_val_nll, uniform - 0.8 * (uniform - truth))
      << r.best_val_nll << " (uniform " << uniform << ", vMF " << truth << ")";
  // The returned model is the one that was scored.
  EXPECT_NEAR(EvaluateNll(nll, data.val, Tensor(), 1024), r.best_val_nll,
              1e-12);
  std::cout << "sphere: best val NLL " << r.best_val_nll << " (uniform "
            << uniform << ", vMF " << truth << ")\n";

  o.max_steps = 2;
  o.check_model = [](Rng&) { return absl::InternalError("refused"); };
  EXPECT_EQ(
      TrainFlowMatching(*model, nll, loss, *adam, data, o).status().code(),
      absl::StatusCode::kFailedPrecondition);
}

TEST(TrainFlowMatchingTest, EmaRecursionAndSwap) {
  Rig s = Make(3);
  const std::vector<double> start = Values(*s.model);
  ParameterEma ema(*s.model);
  for (const Tensor& p : s.model->Parameters()) {
    Tensor q = p;
    double* v = q.mutable_data<double>();
    for (int64_t i = 0; i < q.numel(); ++i) v[i] += 1.0;
  }
  ema.Update(0.75);
  ema.Swap();  // the model now holds the EMA
  const std::vector<double> averaged = Values(*s.model);
  for (size_t i = 0; i < start.size(); ++i)
    EXPECT_NEAR(averaged[i], 0.75 * start[i] + 0.25 * (start[i] + 1), 1e-15);
  ema.Swap();
  const std::vector<double> back = Values(*s.model);
  for (size_t i = 0; i < start.size(); ++i) EXPECT_EQ(back[i], start[i] + 1.0);
}

// A NaN loss at step 7 (guard_every 1) condemns the state it was computed
// from (after 6 updates): the state after 5 updates is restored, EMA
// included, and the result equals a 5-step run's.
TEST(TrainFlowMatchingTest, NanGuardRestoresParametersOptimizerAndEma) {
  Rng data_rng(4);
  TrainData data;
  data.train = TwoGaussians(512, data_rng);
  FlowMatchingTrainOptions o;
  o.batch_size = 64;
  o.guard_every = 1;
  o.ema_decay = 0.9;
  o.log_every = 0;
  o.max_steps = 20;
  o.checkpoint_every = 6;
  o.checkpoint_path = std::string(std::getenv("TEST_TMPDIR")) + "/nan.ckpt";
  Rig bad = Make(5, 0.05);
  int calls = 0;
  auto poisoned = [&](const Tensor& x, const Tensor& c, Rng& rng) {
    absl::StatusOr<Tensor> l = bad.loss(x, c, rng);
    if (++calls == 7) return absl::StatusOr<Tensor>(*l * NAN);
    return l;
  };
  ParameterEma bad_ema(*bad.model);
  auto r = TrainFlowMatching(*bad.model, poisoned, *bad.adam, data, o, &bad_ema)
               .value();
  EXPECT_TRUE(r.diverged);
  EXPECT_EQ(r.steps, 5);
  EXPECT_EQ(bad.adam->step_count(), 5);
  // The checkpoint of step 6 (the condemned state) now holds step 5's.
  Rig loaded = Make(12);
  ASSERT_TRUE(LoadFlowMatchingCheckpoint(o.checkpoint_path, *loaded.model,
                                         loaded.adam.get(), nullptr)
                  .ok());
  EXPECT_EQ(loaded.adam->step_count(), 5);
  o.checkpoint_every = 0;

  Rig good = Make(5, 0.05);
  o.max_steps = 5;
  ParameterEma good_ema(*good.model);
  auto g =
      TrainFlowMatching(*good.model, good.loss, *good.adam, data, o, &good_ema)
          .value();
  EXPECT_FALSE(g.diverged);
  EXPECT_EQ(Values(*bad.model), Values(*good.model));  // the EMA weights
  bad_ema.Swap();
  good_ema.Swap();
  EXPECT_EQ(Values(*bad.model), Values(*good.model));
}

TEST(TrainFlowMatchingTest, CheckpointsHoldRawParametersOptimizerAndEma) {
  Rng data_rng(6);
  TrainData data;
  data.train = TwoGaussians(512, data_rng);
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/fm.ckpt";
  FlowMatchingTrainOptions o;
  o.batch_size = 64;
  o.max_steps = 10;
  o.checkpoint_every = 5;
  o.checkpoint_path = path;
  o.ema_decay = 0.9;
  o.log_every = 0;
  Rig s = Make(7);
  ParameterEma ema(*s.model);
  ASSERT_TRUE(TrainFlowMatching(*s.model, s.loss, *s.adam, data, o, &ema).ok());
  // The EMA file is the returned model.
  Rig fresh = Make(8);
  ASSERT_TRUE(nn::LoadCheckpoint(path + ".ema", *fresh.model).ok());
  EXPECT_EQ(Values(*fresh.model), Values(*s.model));
  // Resume state: optimizer at step 10, EMA as the caller's.
  Rig resumed = Make(9);
  ParameterEma resumed_ema(*resumed.model);
  ASSERT_TRUE(LoadFlowMatchingCheckpoint(path, *resumed.model,
                                         resumed.adam.get(), &resumed_ema)
                  .ok());
  EXPECT_EQ(resumed.adam->step_count(), 10);
  resumed_ema.Swap();
  EXPECT_EQ(Values(*resumed.model), Values(*s.model));
}

TEST(TrainFlowMatchingTest, BadOptionsAreStatuses) {
  Rng data_rng(10);
  TrainData data;
  data.train = TwoGaussians(64, data_rng);
  Rig s = Make(11);
  FlowMatchingTrainOptions o;
  o.log_every = 0;
  o.ema_decay = 1.0;
  EXPECT_EQ(
      TrainFlowMatching(*s.model, s.loss, *s.adam, data, o).status().code(),
      absl::StatusCode::kInvalidArgument);
  o.ema_decay = 0.5;
  o.checkpoint_every = 1;
  EXPECT_FALSE(TrainFlowMatching(*s.model, s.loss, *s.adam, data, o).ok());
  // Bad data: the checks of training::ValidateTrainData, named by this loop.
  o.checkpoint_every = 0;
  TrainData bad = data;
  bad.train = Tensor::FromVector(data.train.shape(), data.train.ToVector());
  bad.train.mutable_data<double>()[5] = std::nan("");
  absl::Status nan =
      TrainFlowMatching(*s.model, s.loss, *s.adam, bad, o).status();
  EXPECT_EQ(nan.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(nan.message().rfind("train_flow_matching: training data row 2", 0),
            0u)
      << nan;
  bad = data;
  bad.train_context = Tensor::Zeros({3, 1});
  EXPECT_EQ(
      TrainFlowMatching(*s.model, s.loss, *s.adam, bad, o).status().message(),
      "train_flow_matching: context rows do not match the data rows");
  // A loss error ends training with it.
  o.checkpoint_every = 0;
  o.max_steps = 3;
  auto failing = [](const Tensor&, const Tensor&,
                    Rng&) -> absl::StatusOr<Tensor> {
    return absl::InvalidArgumentError("batch too large");
  };
  EXPECT_EQ(
      TrainFlowMatching(*s.model, failing, *s.adam, data, o).status().message(),
      "batch too large");
}

}  // namespace
}  // namespace flowtape::training

// The NaN/inf guard leaves a usable model: SGD with large rates blows up a
// residual flow, NICE and MAF, and Adam with lr = 1e308 overflows a mixture
// base's logits; a run that diverges is restored to its last good snapshot
// (bit for bit), which the model and the checkpoint the guard left then
// hold, and a model that cannot sample is an error naming why. The
// restored state includes buffers (a residual flow's spectral-norm vectors)
// and the optimizer's state.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/flow.h"
#include "gtest/gtest.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "training/module_state.h"
#include "training/train.h"

namespace flowtape::training {
namespace {

std::shared_ptr<flows::FlowModel> Make(
    const std::string& name,
    models::BaseChoice base = models::BaseChoice::kFamily) {
  Rng rng(3);
  models::ModelConfig c;
  c.event = Shape{2};
  c.layers = 2;
  c.hidden = {16, 16};
  c.base = base;
  return models::MakeModel(name, c, rng).value();
}

// Samples and log-densities of n draws: all finite?
bool CanSampleAndScore(const flows::FlowModel& m, int64_t n = 400) {
  NoGradScope no_grad;
  TapeScope scope;
  Rng rng(9);
  Tensor x = m.Sample(n, rng);
  Tensor lp = m.LogProb(x, Tensor(), &rng);
  for (int64_t i = 0; i < x.numel(); ++i)
    if (!std::isfinite(x[i])) return false;
  for (int64_t i = 0; i < lp.numel(); ++i)
    if (!std::isfinite(lp[i])) return false;
  return true;
}

// Every parameter value, in registration order.
std::vector<double> Params(const nn::Module& m) {
  std::vector<double> v;
  for (const Tensor& t : m.Parameters())
    for (double x : t.ToVector()) v.push_back(x);
  return v;
}

// Every parameter and buffer value.
std::vector<double> State(const nn::Module& m) {
  std::vector<double> v = Params(m);
  for (const auto& [name, t] : m.NamedBuffers())
    for (double x : t.ToVector()) v.push_back(x);
  return v;
}

TrainData Data() {
  Rng rng(5);
  TrainData data;
  data.train = Tensor::Randn(Shape{512, 2}, rng) * 3.0;
  return data;
}

TrainOptions Options(const std::string& file) {
  TrainOptions o;
  o.batch_size = 64;
  o.max_steps = 200;
  o.log_every = 0;
  o.checkpoint_every = 1;
  o.checkpoint_path = std::string(std::getenv("TEST_TMPDIR")) + "/" + file;
  std::remove(o.checkpoint_path.c_str());
  return o;
}

// The model's parameters when training starts: after the initialisation
// pass (ActNorm), before any update (one step of SGD with lr = 0; its
// forward pass moves buffers such as spectral-norm vectors, so those are
// not compared).
std::vector<double> StartParams(const std::string& name,
                                models::BaseChoice base) {
  auto m = Make(name, base);
  auto sgd_ptr = nn::Sgd::Create(*m, nn::SgdOptions{/*lr=*/0.0}).value();
  nn::Sgd& sgd = *sgd_ptr;
  TrainOptions o = Options(name + "_start.ckpt");
  o.max_steps = 1;
  o.checkpoint_every = 0;
  EXPECT_TRUE(TrainNll(*m, sgd, Data(), o).ok());
  return Params(*m);
}

// A run that diverges within its first guard_every (10) steps: train.h says
// the guard restores the last good snapshot, the state before the first
// update, which samples and scores; the run is ok, diverged, with 0 updates
// and the starting parameters, and the checkpoint the guard rewrote holds
// exactly that state.
struct Divergent {
  std::string flow;
  double lr;
};

class GuardTest : public testing::TestWithParam<Divergent> {};

TEST_P(GuardTest, ADivergedRunIsRestoredToAUsableModel) {
  const Divergent& c = GetParam();
  auto model = Make(c.flow);
  auto sgd_ptr = nn::Sgd::Create(*model, nn::SgdOptions{/*lr=*/c.lr}).value();
  nn::Sgd& sgd = *sgd_ptr;
  TrainOptions o = Options(c.flow + "_guard.ckpt");
  absl::StatusOr<TrainResult> r = TrainNll(*model, sgd, Data(), o);
  ASSERT_TRUE(r.ok()) << r.status();
  std::cerr << c.flow << ": " << r->message << "\n";
  EXPECT_TRUE(r->diverged) << r->message;
  EXPECT_EQ(r->steps, 0) << r->message;
  EXPECT_TRUE(r->model_status.ok());
  EXPECT_TRUE(CanSampleAndScore(*model)) << r->message;
  EXPECT_EQ(Params(*model), StartParams(c.flow, models::BaseChoice::kFamily));
  auto loaded = Make(c.flow);
  ASSERT_TRUE(nn::LoadCheckpoint(o.checkpoint_path, *loaded).ok());
  EXPECT_EQ(State(*loaded), State(*model));
  EXPECT_TRUE(CanSampleAndScore(*loaded));
}

INSTANTIATE_TEST_SUITE_P(Flows, GuardTest,
                         testing::Values(Divergent{"resflow", 100.0},
                                         Divergent{"nice", 1e4},
                                         Divergent{"maf", 10.0}),
                         [](const testing::TestParamInfo<Divergent>& info) {
                           return info.param.flow;
                         });

// With guard_every = 1 the guard restores the state of exactly the last
// step whose loss was finite: that of a run stopped there. Here that state
// cannot sample (SGD with these rates overflows the inverse first), so
// TrainNllOutcome reports it and TrainNll returns FailedPrecondition; a
// periodic checkpoint, if one is left, is of a model that samples.
TEST_P(GuardTest, GuardEveryStepRestoresTheLastFiniteStep) {
  const Divergent& c = GetParam();
  auto model = Make(c.flow);
  auto sgd_ptr = nn::Sgd::Create(*model, nn::SgdOptions{/*lr=*/c.lr}).value();
  nn::Sgd& sgd = *sgd_ptr;
  TrainOptions o = Options(c.flow + "_every.ckpt");
  o.guard_every = 1;
  TrainResult r =
      TrainNllOutcome(*model, ModelNll(*model), sgd, Data(), o).value();
  ASSERT_TRUE(r.diverged) << r.message;
  ASSERT_GE(r.steps, 1) << r.message;
  auto again = Make(c.flow);
  auto sgd2_ptr = nn::Sgd::Create(*again, nn::SgdOptions{/*lr=*/c.lr}).value();
  nn::Sgd& sgd2 = *sgd2_ptr;
  TrainOptions stop = o;
  stop.max_steps = r.steps;
  stop.checkpoint_every = 0;
  ASSERT_TRUE(
      TrainNllOutcome(*again, ModelNll(*again), sgd2, Data(), stop).ok());
  EXPECT_EQ(State(*model), State(*again));
  EXPECT_EQ(r.model_status.ok(), CanSampleAndScore(*model, 64)) << r.message;
  if (!r.model_status.ok()) {
    auto other = Make(c.flow);
    auto sgd3_ptr =
        nn::Sgd::Create(*other, nn::SgdOptions{/*lr=*/c.lr}).value();
    nn::Sgd& sgd3 = *sgd3_ptr;
    absl::Status s = TrainNll(*other, sgd3, Data(), o).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(s.message().find("cannot"), absl::string_view::npos) << s;
  }
  auto loaded = Make(c.flow);
  if (nn::LoadCheckpoint(o.checkpoint_path, *loaded).ok()) {
    EXPECT_TRUE(CanSampleAndScore(*loaded));
  }
}

// A run whose loss stays finite but whose model ends unable to sample (NICE
// with SGD lr = 10 overflows its inverse) is an error naming why, and leaves
// no checkpoint of a model that cannot sample.
TEST(TrainNll, AFiniteRunThatCannotSampleIsAnError) {
  auto model = Make("nice");
  auto sgd_ptr = nn::Sgd::Create(*model, nn::SgdOptions{/*lr=*/10.0}).value();
  nn::Sgd& sgd = *sgd_ptr;
  TrainOptions o = Options("nice_finite.ckpt");
  absl::StatusOr<TrainResult> r = TrainNll(*model, sgd, Data(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("cannot sample"), absl::string_view::npos)
      << r.status();
  EXPECT_FALSE(CanSampleAndScore(*model));
  auto loaded = Make("nice");
  if (nn::LoadCheckpoint(o.checkpoint_path, *loaded).ok()) {
    EXPECT_TRUE(CanSampleAndScore(*loaded));
  }
}

// Mixture bases: the gradient of the mixture logits is bounded by 1, but
// Adam's steps are ~lr whatever the gradient, so with lr = 1e308 on the
// logits alone the third update overflows one to +inf (the loss of the
// steps before stays finite). Sampling that mixture gives NaN rows (the
// draw of the components does not abort), so the checkpoint of that step
// is skipped, the next loss is not finite, and the guard restores the
// start; a run stopped right after the overflowing update is an error
// naming the samples.
class MixtureBaseTest : public testing::TestWithParam<models::BaseChoice> {};

std::shared_ptr<nn::Adam> LogitsAdam(const nn::Module& m) {
  std::vector<Tensor> logits;
  for (const auto& [name, p] : m.NamedParameters())
    if (name.find("logits") != std::string::npos) logits.push_back(p);
  EXPECT_FALSE(logits.empty());
  return nn::Adam::Create(logits, nn::AdamOptions{/*lr=*/1e308}).value();
}

TEST_P(MixtureBaseTest, AnOverflowingLogitIsRestoredOrReported) {
  auto model = Make("nice", GetParam());
  auto adam = LogitsAdam(*model);
  TrainOptions o = Options("mixture_guard.ckpt");
  o.max_steps = 20;
  absl::StatusOr<TrainResult> r = TrainNll(*model, *adam, Data(), o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->diverged) << r->message;
  EXPECT_EQ(r->steps, 0) << r->message;
  EXPECT_TRUE(CanSampleAndScore(*model)) << r->message;
  EXPECT_EQ(Params(*model), StartParams("nice", GetParam()));
  auto loaded = Make("nice", GetParam());
  ASSERT_TRUE(nn::LoadCheckpoint(o.checkpoint_path, *loaded).ok());
  EXPECT_EQ(State(*loaded), State(*model));

  // Stopped right after the overflowing update: a clear error.
  auto stopped = Make("nice", GetParam());
  auto adam2 = LogitsAdam(*stopped);
  o.max_steps = 3;
  o.checkpoint_every = 0;
  absl::Status s = TrainNll(*stopped, *adam2, Data(), o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("cannot sample"), absl::string_view::npos) << s;
  EXPECT_FALSE(CanSampleAndScore(*stopped));
}

INSTANTIATE_TEST_SUITE_P(
    Bases, MixtureBaseTest,
    testing::Values(models::BaseChoice::kGaussianMixture,
                    models::BaseChoice::kGaussianMixtureFull,
                    models::BaseChoice::kFactorizedMixture));

TEST(TrainNll, TheGuardRestoresBuffers) {
  // A weight of a residual block turns NaN before the 6th step's forward
  // pass, whose power iteration then writes NaN into that layer's (u, v)
  // buffers. Restoring the parameters alone would leave them NaN (finite
  // parameters, NaN samples); the guard restores them too.
  auto model = Make("resflow");
  auto adam = nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/1e-3}).value();
  Tensor weight;
  for (const auto& [name, p] : model->NamedParameters())
    if (name.find("weight") != std::string::npos) weight = p;
  ASSERT_TRUE(weight.defined());
  int calls = 0;
  NllFn nll = [&](const Tensor& x, const Tensor& c, Rng& rng) {
    if (flows::InInitializationPass()) return model->Nll(x, c, &rng);
    if (++calls == 6) weight.mutable_data<double>()[0] = std::nan("");
    return model->Nll(x, c, &rng);
  };
  Rng rng(5);
  TrainData data;
  data.train = Tensor::Randn(Shape{256, 2}, rng);
  TrainOptions o;
  o.batch_size = 64;
  o.max_steps = 20;
  o.log_every = 0;
  o.guard_every = 1;
  o.checkpoint_every = 1;
  o.checkpoint_path =
      std::string(std::getenv("TEST_TMPDIR")) + "/resflow_nan.ckpt";
  TrainResult r = TrainNll(*model, nll, *adam, data, o).value();
  EXPECT_TRUE(r.diverged);
  EXPECT_EQ(r.steps, 4);
  EXPECT_TRUE(CanSampleAndScore(*model)) << r.message;
  auto loaded = Make("resflow");
  ASSERT_TRUE(nn::LoadCheckpoint(o.checkpoint_path, *loaded).ok());
  EXPECT_TRUE(CanSampleAndScore(*loaded));
}

TEST(TrainNllOutcome, ReportsAnUnusableModelInTheResult) {
  // A model whose samples are NaN: TrainNllOutcome returns the run with
  // model_status saying why; TrainNll turns it into an error.
  auto model = Make("maf");
  auto adam = nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/1e-3}).value();
  Rng rng(5);
  TrainData data;
  data.train = Tensor::Randn(Shape{64, 2}, rng);
  TrainOptions o;
  o.batch_size = 32;
  o.max_steps = 3;
  o.log_every = 0;
  o.check_model = [](Rng&) {
    return absl::FailedPreconditionError("the model cannot sample: test");
  };
  TrainResult r =
      TrainNllOutcome(*model, ModelNll(*model), *adam, data, o).value();
  EXPECT_EQ(r.steps, 3);
  EXPECT_EQ(r.model_status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.message.find("finished 3 steps; the model cannot sample: test"),
            std::string::npos)
      << r.message;
  absl::Status s = TrainNll(*model, *adam, data, o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("cannot sample"), absl::string_view::npos) << s;
}

TEST(ModuleState, RestoresParametersBuffersAndOptimizerState) {
  auto model = Make("resflow");  // buffers: spectral-norm u, v; ActNorm flag
  auto adam = nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/1e-2}).value();
  ModuleState state(*model, adam.get());
  auto values = [&] {  // parameters, buffers, optimizer state
    std::vector<double> v;
    for (const Tensor& t : model->Parameters())
      for (double x : t.ToVector()) v.push_back(x);
    for (const auto& [name, t] : model->NamedBuffers())
      for (double x : t.ToVector()) v.push_back(x);
    for (const auto& [name, t] : adam->NamedState())
      for (double x : t.ToVector()) v.push_back(x);
    return v;
  };
  int64_t buffers = 0;
  for (const auto& [name, b] : model->NamedBuffers()) buffers += b.numel();
  ASSERT_GT(buffers, 0);
  const std::vector<double> before = values();
  // One training step changes parameters, buffers and Adam's moments.
  Rng rng(6);
  Tensor x = Tensor::Randn(Shape{32, 2}, rng);
  adam->ZeroGrad();
  Backward(model->Nll(x, Tensor(), &rng));
  adam->Step();
  Tape::Get().Reset();
  ASSERT_NE(values(), before);
  state.Restore();
  EXPECT_EQ(values(), before);
  EXPECT_EQ(adam->step_count(), 0);
}

}  // namespace
}  // namespace flowtape::training

// The NaN/inf guard leaves a usable model: SGD with lr = 10 blows up a
// residual flow, NICE and MAF; whatever TrainNll returns, an ok result means
// the model (and the checkpoint the guard left) samples and scores finite
// values, and a model that cannot is an error naming why. The restored
// state includes buffers (a residual flow's spectral-norm vectors) and the
// optimizer's state.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

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

std::shared_ptr<flows::FlowModel> Make(const std::string& name) {
  Rng rng(3);
  models::ModelConfig c;
  c.event = Shape{2};
  c.layers = 2;
  c.hidden = {16, 16};
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

class GuardTest : public testing::TestWithParam<std::string> {};

TEST_P(GuardTest, ADivergedRunLeavesAUsableModelOrAnError) {
  auto model = Make(GetParam());
  auto sgd = nn::Sgd::Create(*model, {.lr = 10.0}).value();
  Rng rng(5);
  TrainData data;
  data.train = Tensor::Randn(Shape{512, 2}, rng) * 3.0;
  TrainOptions o;
  o.batch_size = 64;
  o.max_steps = 200;
  o.log_every = 0;
  o.checkpoint_every = 1;
  o.checkpoint_path = std::string(std::getenv("TEST_TMPDIR")) + "/" +
                      GetParam() + "_guard.ckpt";
  std::remove(o.checkpoint_path.c_str());
  absl::StatusOr<TrainResult> r = TrainNll(*model, *sgd, data, o);
  if (r.ok()) {
    EXPECT_TRUE(r->model_status.ok());
    EXPECT_TRUE(CanSampleAndScore(*model)) << r->message;
    // The checkpoint the guard left reproduces a usable model.
    auto loaded = Make(GetParam());
    ASSERT_TRUE(nn::LoadCheckpoint(o.checkpoint_path, *loaded).ok());
    EXPECT_TRUE(CanSampleAndScore(*loaded)) << r->message;
  } else {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(r.status().message().find("cannot"), absl::string_view::npos)
        << r.status();
    EXPECT_FALSE(CanSampleAndScore(*model));
    // A checkpoint left behind is of a usable model (periodic checkpoints of
    // a model that cannot sample are skipped, and one of a state whose loss
    // was not finite is deleted).
    auto loaded = Make(GetParam());
    if (nn::LoadCheckpoint(o.checkpoint_path, *loaded).ok()) {
      EXPECT_TRUE(CanSampleAndScore(*loaded));
    }
  }
  std::cerr << GetParam() << ": "
            << (r.ok() ? r->message : std::string(r.status().message()))
            << "\n";
}

INSTANTIATE_TEST_SUITE_P(Flows, GuardTest,
                         testing::Values("resflow", "nice", "maf"));

TEST(TrainNll, TheGuardRestoresBuffers) {
  // A weight of a residual block turns NaN before the 6th step's forward
  // pass, whose power iteration then writes NaN into that layer's (u, v)
  // buffers. Restoring the parameters alone would leave them NaN (finite
  // parameters, NaN samples); the guard restores them too.
  auto model = Make("resflow");
  auto adam = nn::Adam::Create(*model, {.lr = 1e-3}).value();
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
  auto adam = nn::Adam::Create(*model, {.lr = 1e-3}).value();
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
  auto adam = nn::Adam::Create(*model, {.lr = 1e-2}).value();
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

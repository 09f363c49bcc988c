// Glow (ActNorm + invertible 1x1 convolutions + affine couplings) trained,
// checkpointed, stopped and resumed into a model built from another seed
// continues bit-identically to an uninterrupted run, in float64 and float32:
// ActNorm's data-dependent scales and its "initialised" flag, the 1x1
// convolutions' fixed factors and Adam's moments and step count all come
// back from the checkpoint, so the loop's initialisation pass after the
// resume changes nothing. (tests/nn:checkpoint_recovery_test kills an MLP
// run with SIGKILL; this is the same contract for a model with buffers and
// data-dependent initialisation.)
#include <cstdlib>
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

namespace flowtape::models {
namespace {

constexpr int64_t kSteps = 6;  // steps before the stop, and after the resume

// A training run whose step t sees a batch that depends on t only.
struct GlowRun {
  GlowRun(uint64_t init_seed, DType dtype) : dtype(dtype) {
    ModelConfig c;
    c.event = Shape{2, 4, 4};
    c.levels = 1;
    c.depth = 2;
    c.channels = 8;
    c.dtype = dtype;
    Rng rng(init_seed);
    auto m = MakeModel("glow", c, rng);
    EXPECT_TRUE(m.ok()) << m.status();
    model = *m;
    nn::AdamOptions o;
    o.lr = 1e-2;
    opt = nn::Adam::Create(*model, o).value();
  }
  Tensor Batch(int64_t t) const {
    Rng data(1000 + static_cast<uint64_t>(t));
    return Tensor::Randn({16, 2, 4, 4}, data, dtype) * 0.7 + 0.2;
  }
  // The loop's data-dependent initialisation on its first batch (a no-op
  // once ActNorm's flag is set).
  void Initialize() const {
    ASSERT_TRUE(flows::InitializeFromData(*model->flow(), Batch(0)).ok());
  }
  double Step(int64_t t) {
    opt->ZeroGrad();
    Tensor loss = model->Nll(Batch(t));
    Backward(loss);
    const double value = loss.item();
    Tape::Get().Reset();
    opt->Step();
    return value;
  }
  // Parameters, buffers and optimizer state, as doubles.
  std::vector<std::vector<double>> State() const {
    std::vector<std::vector<double>> v;
    for (const auto& [name, t] : model->NamedParameters())
      v.push_back(t.ToVector());
    for (const auto& [name, t] : model->NamedBuffers())
      v.push_back(t.ToVector());
    for (const auto& [name, t] : opt->NamedState()) v.push_back(t.ToVector());
    return v;
  }
  DType dtype;
  std::shared_ptr<flows::FlowModel> model;
  std::shared_ptr<nn::Adam> opt;
};

TEST(GlowResume, CheckpointedRunContinuesBitIdentically) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path =
      std::string(tmp != nullptr ? tmp : "/tmp") + "/glow.ckpt";
  for (DType dtype : {kFloat64, kFloat32}) {
    SCOPED_TRACE(DTypeName(dtype));
    GlowRun reference(1, dtype);
    reference.Initialize();
    std::vector<double> losses;
    std::vector<std::vector<double>> at_stop;
    for (int64_t t = 0; t < 2 * kSteps; ++t) {
      if (t == kSteps) at_stop = reference.State();
      losses.push_back(reference.Step(t));
    }

    {  // The interrupted run: the same start, stopped after kSteps.
      GlowRun first(1, dtype);
      first.Initialize();
      for (int64_t t = 0; t < kSteps; ++t)
        ASSERT_EQ(first.Step(t), losses[t]) << "step " << t;
      ASSERT_TRUE(SaveCheckpoint(path, *first.model, first.opt.get()).ok());
    }
    GlowRun resumed(2, dtype);  // other parameters, ActNorm not initialised
    ASSERT_NE(resumed.State(), at_stop);
    absl::Status st = LoadCheckpoint(path, *resumed.model, resumed.opt.get());
    ASSERT_TRUE(st.ok()) << st;
    resumed.Initialize();  // the loop runs it again: must change nothing
    ASSERT_EQ(resumed.State(), at_stop);
    ASSERT_EQ(resumed.opt->step_count(), kSteps);
    for (int64_t t = kSteps; t < 2 * kSteps; ++t)
      EXPECT_EQ(resumed.Step(t), losses[t]) << "step " << t;
    EXPECT_EQ(resumed.State(), reference.State());
  }
}

}  // namespace
}  // namespace flowtape::models

// Two threads scoring with one shared model (inference on a shared flow):
// each thread records on its own tape with its own leaves for the shared
// parameters, so concurrent LogProb calls neither race (run under
// --config=tsan) nor change each other's results: every thread gets the
// bits the main thread got. A residual flow, under NoGradScope: a recorded
// call in its default SpectralMode::kTrain runs power iteration and writes
// its (u, v) buffers, so only no-grad scoring of it may be shared. A Glow,
// recorded and not: its ActNorms are initialised (InitializeFromData, the
// one pass that writes them; flows/actnorm.h) before the threads start.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "autodiff/tape.h"
#include "flows/flow_model.h"
#include "gtest/gtest.h"
#include "models/zoo.h"

namespace flowtape {
namespace {

std::shared_ptr<flows::FlowModel> Make(const std::string& name, Shape event) {
  Rng rng(1);
  models::ModelConfig c;
  c.event = event;
  c.layers = 2;
  c.hidden = {8, 8};
  c.levels = 2;
  c.depth = 2;
  c.channels = 8;
  return models::MakeModel(name, c, rng).value();
}

// Runs LogProb(x) `reps` times on each of two threads (recording unless
// no_grad) and checks every result against `want`.
void ScoreOnTwoThreads(const flows::FlowModel& model, const Tensor& x,
                       const std::vector<double>& want, bool no_grad) {
  std::vector<int> mismatches(2, 0);
  auto work = [&](int t) {
    for (int rep = 0; rep < 5; ++rep) {
      std::unique_ptr<NoGradScope> scope;
      if (no_grad) scope = std::make_unique<NoGradScope>();
      Rng rng(3);
      if (model.LogProb(x, Tensor(), &rng).ToVector() != want) ++mismatches[t];
      Tape::Get().Reset();
    }
  };
  std::thread other(work, 1);
  work(0);
  other.join();
  EXPECT_EQ(mismatches, std::vector<int>(2, 0));
}

TEST(SharedInference, ResidualFlowScoresFromTwoThreads) {
  auto model = Make("resflow", Shape{2});
  Rng rng(2);
  Tensor x = Tensor::Randn(Shape{16, 2}, rng);
  std::vector<double> want;
  {
    NoGradScope no_grad;
    Rng r(3);
    want = model->LogProb(x, Tensor(), &r).ToVector();
  }
  Tape::Get().Reset();
  ScoreOnTwoThreads(*model, x, want, /*no_grad=*/true);
}

TEST(SharedInference, GlowScoresFromTwoThreads) {
  auto model = Make("glow", Shape{2, 4, 4});
  Rng rng(2);
  Tensor x = Tensor::Randn(Shape{8, 2, 4, 4}, rng);
  std::vector<double> want;
  {
    Rng r(3);
    ASSERT_TRUE(model->InitializeFromData(x, Tensor(), &r).ok());
    want = model->LogProb(x, Tensor(), &r).ToVector();
  }
  Tape::Get().Reset();
  ScoreOnTwoThreads(*model, x, want, /*no_grad=*/true);
  ScoreOnTwoThreads(*model, x, want, /*no_grad=*/false);  // recording
}

}  // namespace
}  // namespace flowtape

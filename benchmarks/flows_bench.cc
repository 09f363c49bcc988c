// One maximum-likelihood training step (forward, NLL, backward, Adam update,
// tape reset) of the three reference models; the steps/s counter is
// the figure to compare with PyTorch CPU implementations of the same
// architectures.
//
//   ./bazelw run --config=opt //benchmarks:flows_bench
//
//   RealNVP 2-D:  8 affine couplings, MLP conditioners 2 x 64 (ReLU),
//                 alternating half masks; batch 256 of two moons.
//   MAF 64-D:     5 MADE layers (two hidden layers of 128, ReLU) with
//                 reversals between; batch 256 of sklearn's 8x8 digits,
//                 dequantised and logit-transformed (installs Debian's
//                 python3-sklearn through experiments/setup_data.sh if
//                 missing; skipped, with the reason, if that fails).
//   Glow 1x28x28: 2 levels, depth 4, 64 coupling channels, LU 1x1 convs;
//                 batch 16 of dequantised, logit-transformed pixels (uniform
//                 random levels: the cost does not depend on the values).
//
// The NaN guard's per-step copy of the MAF's state (parameters, buffers and
// Adam's moments): into fresh vectors of doubles (Tensor::ToVector per
// tensor, as TrainNll once did) and into a preallocated ModuleState; and a
// whole TrainNll step (batch 256, random data; time per step).
#include <time.h>

#include <chrono>
#include <memory>

#include "autodiff/grad.h"
#include "nn/optim.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "benchmark/benchmark.h"
#include "experiments/common.h"
#include "models/zoo.h"
#include "data/datasets.h"
#include "data/preprocess.h"
#include "data/toy2d.h"
#include "training/module_state.h"
#include "training/train.h"

namespace flowtape {
namespace {




void RunSteps(benchmark::State& state, flows::FlowModel& model,
              const Tensor& x) {
  nn::Adam adam(model, {.lr = 1e-4});
  for (auto _ : state) {
    adam.ZeroGrad();
    Tensor loss = model.Nll(x);
    Backward(loss);
    adam.Step();
    benchmark::DoNotOptimize(loss.item());
    Tape::Get().Reset();
  }
  state.counters["steps/s"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
  state.counters["params"] = model.NumParameters();
}

Tensor Logit(const Tensor& pixels, int levels, Rng& rng) {
  return data::LogitTransform(data::Dequantize(pixels, levels, rng), 0.05).y;
}

void BM_RealNvp2dStep(benchmark::State& state) {
  Rng rng(0);
  models::ModelConfig c;  // [2], 8 layers, hidden {64, 64}
  auto model = models::MakeModel("realnvp", c, rng).value();
  Tensor x = data::SampleToy2d("moons", 256, rng).value();
  RunSteps(state, *model, x);
}
BENCHMARK(BM_RealNvp2dStep)->Unit(benchmark::kMillisecond);

void BM_Maf64dDigitsStep(benchmark::State& state) {
  auto digits = experiments::LoadImageSetOrSetup("digits", "train");
  if (!digits.ok()) {
    state.SkipWithError(std::string(digits.status().message()).c_str());
    return;
  }
  Rng rng(0);
  models::ModelConfig c;
  c.event = Shape{64};
  c.layers = 5;
  c.hidden = {128, 128};
  auto model = models::MakeModel("maf", c, rng).value();
  Tensor pixels = data::TakeRows(digits->images, data::Permutation(256, rng));
  Tensor x = Reshape(Logit(pixels, digits->levels, rng), {256, 64});
  RunSteps(state, *model, x);
}
BENCHMARK(BM_Maf64dDigitsStep)->Unit(benchmark::kMillisecond);

void BM_Glow28x28Step(benchmark::State& state) {
  Rng rng(0);
  models::ModelConfig c;
  c.event = Shape{1, 28, 28};
  c.levels = 2;
  c.depth = 4;
  c.channels = 64;
  auto model = models::MakeModel("glow", c, rng).value();
  Tensor pixels = Tensor::Empty(Shape{16, 1, 28, 28});
  for (int64_t i = 0; i < pixels.numel(); ++i)
    pixels.mutable_data()[i] = static_cast<double>(rng.UniformInt(256));
  RunSteps(state, *model, Logit(pixels, 256, rng));
}
BENCHMARK(BM_Glow28x28Step)->Unit(benchmark::kMillisecond);

std::shared_ptr<flows::FlowModel> Maf64() {
  Rng rng(0);
  models::ModelConfig c;
  c.event = Shape{64};
  c.layers = 5;
  c.hidden = {128, 128};
  return models::MakeModel("maf", c, rng).value();
}

void BM_Maf64dGuardSnapshotVectors(benchmark::State& state) {
  auto model = Maf64();
  nn::Adam adam(*model, {.lr = 1e-4});
  for (auto _ : state) {
    std::vector<std::vector<double>> params, moments;
    for (const Tensor& t : model->Parameters()) params.push_back(t.ToVector());
    for (const auto& [name, t] : adam.NamedState())
      moments.push_back(t.ToVector());
    benchmark::DoNotOptimize(params.data());
    benchmark::DoNotOptimize(moments.data());
  }
}
BENCHMARK(BM_Maf64dGuardSnapshotVectors)->Unit(benchmark::kMicrosecond);

void BM_Maf64dGuardSnapshotPreallocated(benchmark::State& state) {
  auto model = Maf64();
  nn::Adam adam(*model, {.lr = 1e-4});
  training::ModuleState snapshot(*model, &adam);
  for (auto _ : state) {
    snapshot.Capture();
    benchmark::ClobberMemory();
  }
  state.counters["MB"] = snapshot.bytes() / 1e6;
}
BENCHMARK(BM_Maf64dGuardSnapshotPreallocated)->Unit(benchmark::kMicrosecond);

// TrainNll's cost per step: runs of 20 and 40 steps, differenced, so the
// fixed costs of a run (setup, the final model check) cancel. Time is wall
// time per step; cpu_ms is this thread's CPU time per step (steadier on a
// loaded machine).
void BM_Maf64dTrainNllStep(benchmark::State& state) {
  auto model = Maf64();
  nn::Adam adam(*model, {.lr = 1e-4});
  Rng rng(1);
  training::TrainData data;
  data.train = Tensor::Randn(Shape{1024, 64}, rng);
  training::TrainOptions o;
  o.batch_size = 256;
  o.log_every = 0;
  auto thread_cpu = [] {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
  };
  auto wall = [] {
    return std::chrono::duration<double>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  double cpu = 0.0;
  for (auto _ : state) {
    double w[2], c[2];
    for (int k = 0; k < 2; ++k) {
      o.max_steps = 20 * (k + 1);
      const double w0 = wall(), c0 = thread_cpu();
      auto r = training::TrainNll(*model, adam, data, o);
      if (!r.ok()) {
        state.SkipWithError(std::string(r.status().message()).c_str());
        return;
      }
      w[k] = wall() - w0;
      c[k] = thread_cpu() - c0;
    }
    state.SetIterationTime((w[1] - w[0]) / 20);
    cpu += (c[1] - c[0]) / 20;
  }
  state.counters["cpu_ms"] = 1e3 * cpu / state.iterations();
}
BENCHMARK(BM_Maf64dTrainNllStep)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flowtape

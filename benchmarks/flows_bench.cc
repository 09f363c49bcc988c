// One maximum-likelihood training step (forward, NLL, backward, Adam update,
// tape reset) of three reference models, in float32 and float64, on 1 and 2
// threads; the flowtape side of benchmarks/flows_torch_reference.py, whose
// model names (RealNVP2d, MAF64d, MAF64d/4096, Glow28x28) start the names
// here, so its rows (--dtype f32|f64 --threads 1|2 --maf_batch 4096) pair
// with ours:
//
//   ./bazelw run --config=opt //benchmarks:flows_bench
//
//   RealNVP2d:    8 affine couplings, MLP conditioners 2 x 64 (ReLU),
//                 alternating half masks; batch 256 of two moons.
//   MAF64d:       5 MADE layers (two hidden layers of 128, ReLU; the
//                 reversals between them folded into the orderings,
//                 models/zoo.cc); batch 256, and 4096 (MAF64d/4096), of
//                 N(0, I) rows (the reference's data; the cost does not
//                 depend on the values).
//   Glow28x28:    2 levels, depth 4, 64 coupling channels, LU 1x1 convs;
//                 batch 16 of dequantised, logit-transformed pixels (uniform
//                 random levels).
//
// Args dtype (32 | 64) and threads (1 | 2), two meanings of "threads":
//   <model>/dtype:D/threads:T                 one model, one step at a time,
//       T threads in the intra-op pool (autodiff/thread_pool.h: large GEMMs
//       and masked GEMMs split by rows): what PyTorch's --threads does.
//   <model>/data_parallel/dtype:D/threads:T   TrainNllThreads (training/
//       train_threads.h): T replicas, each on B / T rows of the batch, the
//       gradients all-reduced; the whole TrainNll step (batch gather, NaN
//       guard, all-reduce), timed as runs of 20 and 40 steps differenced.
// Time is wall time per step (UseRealTime); cpu_ms is the process CPU time
// (all threads) per step; on a shared machine compare cpu_ms too.
//
// Also: the NaN guard's per-step copy of the MAF's state (parameters,
// buffers and Adam's moments) into fresh vectors of doubles (Tensor::
// ToVector per tensor, as TrainNll once did) and into a preallocated
// ModuleState; a whole single-thread TrainNll step (MAF64d, float64); and
// MADE's mask plans (BM_MadeMaskPlan: per masked layer of one MAF64d MADE,
// the share of the dense multiply-adds its blocks compute).
#include <time.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "autodiff/thread_pool.h"
#include "benchmark/benchmark.h"
#include "data/preprocess.h"
#include "data/toy2d.h"
#include "flows/autoregressive.h"
#include "flows/sequential.h"
#include "models/zoo.h"
#include "nn/masked_matmul.h"
#include "nn/optim.h"
#include "training/module_state.h"
#include "training/train.h"
#include "training/train_threads.h"

namespace flowtape::benchmarks {
namespace {

double ProcessCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

double WallSeconds() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Tensor Logit(const Tensor& pixels, int levels, Rng& rng) {
  return data::LogitTransform(data::Dequantize(pixels, levels, rng), 0.05).y;
}

// A reference model: its zoo family and config, and its batch.
struct Case {
  std::string family;
  models::ModelConfig config;
  std::function<Tensor(Rng&)> batch;  // float64
};

Case MakeCase(const std::string& name) {
  Case c;
  if (name == "RealNVP2d") {
    c.family = "realnvp";  // ModelConfig{}: [2], 8 layers, hidden {64, 64}
    c.batch = [](Rng& rng) {
      return data::SampleToy2d("moons", 256, rng).value();
    };
  } else if (name == "Glow28x28") {
    c.family = "glow";
    c.config.event = Shape{1, 28, 28};
    c.config.levels = 2;
    c.config.depth = 4;
    c.config.channels = 64;
    c.batch = [](Rng& rng) {
      Tensor pixels = Tensor::Empty(Shape{16, 1, 28, 28});
      double* p = pixels.mutable_data<double>();
      for (int64_t i = 0; i < pixels.numel(); ++i)
        p[i] = static_cast<double>(rng.UniformInt(256));
      return Logit(pixels, 256, rng);
    };
  } else {  // MAF64d, MAF64d/4096
    const int64_t batch = name == "MAF64d" ? 256 : 4096;
    c.family = "maf";
    c.config.event = Shape{64};
    c.config.layers = 5;
    c.config.hidden = {128, 128};
    c.batch = [batch](Rng& rng) {
      return Tensor::Randn(Shape{batch, 64}, rng);
    };
  }
  return c;
}

DType ArgDType(const benchmark::State& state) {
  return state.range(0) == 32 ? kFloat32 : kFloat64;
}

// One model, one step at a time, state.range(1) intra-op threads.
void StepBench(benchmark::State& state, const std::string& name) {
  Case k = MakeCase(name);
  k.config.dtype = ArgDType(state);
  Rng rng(0);
  auto model = models::MakeModel(k.family, k.config, rng).value();
  const Tensor x = Cast(k.batch(rng), k.config.dtype).Detach();
  auto adam = nn::Adam::Create(*model, {/*lr=*/1e-4}).value();
  SetIntraOpThreads(static_cast<int>(state.range(1)));
  const double cpu0 = ProcessCpuSeconds();
  for (auto _ : state) {
    adam->ZeroGrad();
    Tensor loss = model->Nll(x);
    Backward(loss);
    adam->Step();
    benchmark::DoNotOptimize(loss.item());
    Tape::Get().Reset();
  }
  const double cpu = ProcessCpuSeconds() - cpu0;
  SetIntraOpThreads(1);
  state.counters["cpu_ms"] = 1e3 * cpu / state.iterations();
  state.counters["steps/s"] =
      benchmark::Counter(state.iterations(), benchmark::Counter::kIsRate);
  state.counters["params"] = model->NumParameters();
}

// TrainNllThreads with state.range(1) replicas: runs of 20 and 40 steps,
// differenced, so the fixed costs of a run (building the replicas, the
// initialisation pass) cancel.
void DataParallelBench(benchmark::State& state, const std::string& name) {
  Case k = MakeCase(name);
  k.config.dtype = ArgDType(state);
  Rng rng(0);
  training::TrainData data;
  const Tensor batch = k.batch(rng);
  data.train = Concat({batch, batch, batch, batch}, 0);
  training::TrainOptions o;
  o.batch_size = batch.dim(0);
  o.log_every = 0;
  o.threads = static_cast<int>(state.range(1));
  o.check_model = [](Rng&) { return absl::OkStatus(); };
  training::ReplicaFactory make =
      [&](int) -> absl::StatusOr<training::Replica> {
    Rng r(0);
    FT_ASSIGN_OR_RETURN(std::shared_ptr<flows::FlowModel> model,
                        models::MakeModel(k.family, k.config, r));
    FT_ASSIGN_OR_RETURN(auto adam,
                        nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/1e-4}));
    return training::Replica{model, training::ModelNll(*model), adam};
  };
  double cpu = 0.0;
  for (auto _ : state) {
    double w[2], c[2];
    for (int run = 0; run < 2; ++run) {
      o.max_steps = 20 * (run + 1);
      const double w0 = WallSeconds(), c0 = ProcessCpuSeconds();
      auto r = training::TrainNllThreads(make, data, o);
      if (!r.ok()) {
        state.SkipWithError(std::string(r.status().message()).c_str());
        return;
      }
      w[run] = WallSeconds() - w0;
      c[run] = ProcessCpuSeconds() - c0;
    }
    state.SetIterationTime((w[1] - w[0]) / 20);
    cpu += (c[1] - c[0]) / 20;
  }
  state.counters["cpu_ms"] = 1e3 * cpu / state.iterations();
}

const int kRegistered = [] {
  for (const char* name : {"RealNVP2d", "MAF64d", "MAF64d/4096", "Glow28x28"}) {
    const std::string n = name;
    benchmark::RegisterBenchmark(name,
                                 [n](benchmark::State& s) { StepBench(s, n); })
        ->ArgNames({"dtype", "threads"})
        ->ArgsProduct({{32, 64}, {1, 2}})
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(
        (n + "/data_parallel").c_str(),
        [n](benchmark::State& s) { DataParallelBench(s, n); })
        ->ArgNames({"dtype", "threads"})
        ->ArgsProduct({{32, 64}, {1, 2}})
        ->UseManualTime()
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
  }
  return 0;
}();

// Per masked layer of one MAF64d MADE: blocks, and the multiply-adds its
// plan computes as a share of the dense product's (the same share in the
// forward product and both backward ones).
void BM_MadeMaskPlan(benchmark::State& state) {
  Rng rng(0);
  models::ModelConfig c = MakeCase("MAF64d").config;
  auto model = models::MakeModel("maf", c, rng).value();
  const auto& stack = dynamic_cast<const flows::Sequential&>(*model->flow());
  const auto& made =
      dynamic_cast<const flows::Autoregressive&>(*stack.step(state.range(0)))
          .made();
  for (auto _ : state) {
    int layer = 0;
    for (const auto& [name, mask] : made.NamedBuffers()) {
      if (name.find("mask") == std::string::npos) continue;
      const std::vector<nn::MaskBlock> plan = nn::PlanMaskBlocks(mask);
      int64_t computed = 0;
      for (const nn::MaskBlock& b : plan)
        computed += (b.c1 - b.c0) * (b.hi - b.lo);
      const std::string l = "layer" + std::to_string(layer++);
      state.counters[l + "_blocks"] = static_cast<double>(plan.size());
      state.counters[l + "_computed"] =
          static_cast<double>(computed) / static_cast<double>(mask.numel());
      state.counters[l + "_nonzero"] =
          Sum(mask).item() / static_cast<double>(mask.numel());
    }
  }
}
BENCHMARK(BM_MadeMaskPlan)->ArgName("step")->Arg(0)->Arg(1)->Iterations(1);

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
  auto adam = nn::Adam::Create(*model, {/*lr=*/1e-4}).value();
  for (auto _ : state) {
    std::vector<std::vector<double>> params, moments;
    for (const Tensor& t : model->Parameters()) params.push_back(t.ToVector());
    for (const auto& [name, t] : adam->NamedState())
      moments.push_back(t.ToVector());
    benchmark::DoNotOptimize(params.data());
    benchmark::DoNotOptimize(moments.data());
  }
}
BENCHMARK(BM_Maf64dGuardSnapshotVectors)->Unit(benchmark::kMicrosecond);

void BM_Maf64dGuardSnapshotPreallocated(benchmark::State& state) {
  auto model = Maf64();
  auto adam = nn::Adam::Create(*model, {/*lr=*/1e-4}).value();
  training::ModuleState snapshot(*model, adam.get());
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
  auto adam = nn::Adam::Create(*model, {/*lr=*/1e-4}).value();
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
      auto r = training::TrainNll(*model, *adam, data, o);
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
}  // namespace flowtape::benchmarks

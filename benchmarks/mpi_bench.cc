// Data-parallel training over MPI: one TrainNll step of a 64-D MAF (5 MADE
// layers, two hidden layers of 128; 203k parameters; batch 1024) and of a
// Glow on 3x16x16 images (2 levels of 4 steps, 64 coupling channels;
// batch 64), in --dtype=f64 (default) or f32, on the ranks of the job it is
// launched in:
//
//   ./bazelw build --config=opt //benchmarks:mpi_bench
//   bazel-bin/benchmarks/mpi_bench                       # 1 rank
//   mpirun --oversubscribe -np 2 bazel-bin/benchmarks/mpi_bench   # 2 ranks
//   bazel-bin/benchmarks/mpi_bench --dtype=f32           # float32
//
// --dtype=f32|f64: the models are built in float64 and converted (Module::To,
// models/zoo.h), the data is cast, so training, its gradient all-reduce and
// BM_MpiAllReduce's buffer are in that dtype; every row's label and the
// context's "dtype" name it. Any other value exits 1 naming the flag; ranks
// launched with different --dtype values all exit 1 before any benchmark
// (an all-reduce of the ranks' choices).
//
// Rank 0 runs Google Benchmark and reports; before every iteration it
// broadcasts which case to run (or stop), and the other ranks follow. Time
// is wall time per step inside TrainNll's loop (manual timing: model
// building, the initial broadcast and the final model check excluded).
// Counters: ranks; allreduce_ms (rank 0's time per step in the gradient
// all-reduce, waiting for the slower rank included; 0 on one rank);
// allreduce_MB (bytes each rank all-reduces per step: the gradient in the
// model's dtype, one flag per parameter tensor and the loss; on one rank,
// the bytes it would send). BM_MpiAllReduce: the all-reduce alone (the
// order broadcast included) of 8 kB and of 1654 kB (the MAF's float64 step;
// float32 halves what a step sends) of --dtype elements.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "autodiff/dtype.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "benchmark/benchmark.h"
#include "models/zoo.h"
#include "nn/optim.h"
#include "parallel/mpi/mpi_communicator.h"
#include "training/train.h"

namespace flowtape::benchmarks {
namespace {

parallel::Communicator* comm = nullptr;  // nullptr: one process
DType dtype = kFloat64;                  // --dtype

const char* DTypeLabel(DType d) { return d == kFloat32 ? "f32" : "f64"; }

struct Case {
  std::shared_ptr<flows::FlowModel> model;
  training::TrainData data;
  int64_t batch, steps;
};

// case 0: MAF, 1: Glow.
Case Make(int which) {
  Rng rng(0);
  models::ModelConfig c;
  Case k;
  if (which == 0) {
    c.event = Shape{64};
    c.layers = 5;
    c.hidden = {128, 128};
    k.batch = 1024;
    k.steps = 10;
  } else {
    c.event = Shape{3, 16, 16};
    c.levels = 2;
    c.depth = 4;
    c.channels = 64;
    k.batch = 64;
    k.steps = 3;
  }
  c.dtype = dtype;
  k.model = models::MakeModel(which == 0 ? "maf" : "glow", c, rng).value();
  std::vector<int64_t> dims = {2 * k.batch};
  for (int64_t d : c.event.dims()) dims.push_back(d);
  k.data.train = Cast(Tensor::Randn(Shape(dims), rng), dtype);
  return k;
}

absl::StatusOr<training::TrainResult> Steps(Case& k) {
  auto adam = nn::Adam::Create(*k.model, {/*lr=*/1e-5}).value();
  training::TrainOptions o;
  o.batch_size = k.batch;
  o.max_steps = k.steps;
  o.log_every = 0;
  o.communicator = comm;
  o.check_model = [](Rng&) { return absl::OkStatus(); };
  return training::TrainNllOutcome(*k.model, training::ModelNll(*k.model),
                                   *adam, k.data, o);
}

// Rank 0's order to the others: {case, 1, n} = run it once (case 2: an
// all-reduce of n elements of --dtype), {0, 0, 0} = stop.
absl::Status Order(int which, int go, int64_t n = 0) {
  if (comm == nullptr) return absl::OkStatus();
  double order[3] = {static_cast<double>(which), static_cast<double>(go),
                     static_cast<double>(n)};
  return comm->Broadcast(absl::MakeSpan(order), 0);
}

// Every rank must run the same --dtype: FailedPrecondition (on every rank)
// when the group disagrees.
absl::Status CheckSameDType() {
  if (comm == nullptr) return absl::OkStatus();
  double count[2] = {dtype == kFloat32 ? 1.0 : 0.0, 1.0};  // f32 ranks, ranks
  if (absl::Status s = comm->AllReduceSum(absl::MakeSpan(count)); !s.ok())
    return s;
  if (count[0] == 0 || count[0] == count[1]) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "--dtype differs across ranks: %.0f of %.0f ranks have f32 (rank %d: "
      "%s)",
      count[0], count[1], comm->rank(), DTypeLabel(dtype)));
}

// An all-reduce of n ones in --dtype.
absl::Status AllReduce(int64_t n) {
  if (comm == nullptr) return absl::OkStatus();
  if (dtype == kFloat32) {
    std::vector<float> buffer(n, 1.0f);
    return comm->AllReduceSum(absl::MakeSpan(buffer));
  }
  std::vector<double> buffer(n, 1.0);
  return comm->AllReduceSum(absl::MakeSpan(buffer));
}

void BM_MpiStep(benchmark::State& state) {
  const int which = static_cast<int>(state.range(0));
  Case k = Make(which);
  double allreduce = 0.0;
  int64_t runs = 0, bytes = 0;
  for (auto _ : state) {
    absl::Status s = Order(which, 1);
    absl::StatusOr<training::TrainResult> r =
        s.ok() ? Steps(k) : absl::StatusOr<training::TrainResult>(s);
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    state.SetIterationTime(r->seconds / k.steps);
    allreduce += r->allreduce_seconds / k.steps;
    bytes = r->allreduce_bytes_per_step;
    ++runs;
  }
  if (bytes == 0) {  // one rank: what it would all-reduce
    const std::vector<Tensor> params = k.model->Parameters();
    bytes = (k.model->NumParameters() + params.size() + 1) * DTypeSize(dtype);
  }
  state.SetLabel(DTypeLabel(dtype));
  state.counters["ranks"] = comm == nullptr ? 1 : comm->size();
  state.counters["allreduce_ms"] = 1e3 * allreduce / std::max<int64_t>(runs, 1);
  state.counters["allreduce_MB"] = bytes / 1e6;
}
BENCHMARK(BM_MpiStep)
    ->ArgName("glow")
    ->Arg(0)
    ->Arg(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// The communicator alone: an all-reduce of kB kilobytes of --dtype elements
// (rank order sum; the 1.65 MB of the MAF's float64 step, split as TrainNll's
// 1 MB buckets would not be: one call).
void BM_MpiAllReduce(benchmark::State& state) {
  const int64_t bytes = state.range(0) * 1000;  // range: kB
  const int64_t n = bytes / static_cast<int64_t>(DTypeSize(dtype));
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    absl::Status s = Order(2, 1, n);
    if (s.ok()) s = AllReduce(n);
    if (!s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      return;
    }
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count());
  }
  state.counters["ranks"] = comm == nullptr ? 1 : comm->size();
  state.SetBytesProcessed(state.iterations() * bytes);
  state.SetLabel(DTypeLabel(dtype));
}
BENCHMARK(BM_MpiAllReduce)
    ->ArgName("kB")
    ->Arg(8)
    ->Arg(1654)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// Takes --dtype=V (or --dtype V) out of argv: f32 / f64 into `dtype`; false
// (with the message on stderr) for another value or a missing one.
bool ParseDTypeFlag(int* argc, char** argv) {
  int out = 1;
  bool ok = true;
  for (int i = 1; i < *argc; ++i) {
    std::string value;
    if (std::strncmp(argv[i], "--dtype=", 8) == 0) {
      value = argv[i] + 8;
    } else if (std::strcmp(argv[i], "--dtype") == 0 && i + 1 < *argc) {
      value = argv[++i];
    } else if (std::strcmp(argv[i], "--dtype") == 0) {
      std::fprintf(stderr, "mpi_bench: --dtype: missing value (f32 or f64)\n");
      ok = false;
      continue;
    } else {
      argv[out++] = argv[i];
      continue;
    }
    if (value == "f32" || value == "f64") {
      dtype = value == "f32" ? kFloat32 : kFloat64;
    } else {
      std::fprintf(stderr, "mpi_bench: --dtype=%s: must be f32 or f64\n",
                   value.c_str());
      ok = false;
    }
  }
  *argc = out;
  argv[out] = nullptr;
  return ok;
}

}  // namespace
}  // namespace flowtape::benchmarks

int main(int argc, char** argv) {
  using flowtape::benchmarks::comm;
  if (!flowtape::benchmarks::ParseDTypeFlag(&argc, argv)) return 1;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--help") == 0)
      std::printf(
          "mpi_bench [--dtype=f32|f64 (default f64)] [benchmark flags]\n");
  absl::StatusOr<flowtape::parallel::Communicator*> c =
      flowtape::parallel::mpi::CommunicatorFromEnvironment();
  if (!c.ok()) {
    std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
    return 2;
  }
  comm = *c;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext(
      "dtype", flowtape::benchmarks::DTypeLabel(flowtape::benchmarks::dtype));
  if (absl::Status s = flowtape::benchmarks::CheckSameDType(); !s.ok()) {
    std::fprintf(stderr, "mpi_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  if (comm == nullptr || comm->rank() == 0) {
    benchmark::RunSpecifiedBenchmarks();
    return flowtape::benchmarks::Order(0, 0).ok() ? 0 : 1;
  }
  // Follow rank 0's orders; one model per case, kept across iterations.
  std::unique_ptr<flowtape::benchmarks::Case> cases[2];
  for (;;) {
    double order[3];
    if (!comm->Broadcast(absl::MakeSpan(order), 0).ok()) return 1;
    if (order[1] == 0) return 0;
    const int which = static_cast<int>(order[0]);
    if (which == 2) {
      if (!flowtape::benchmarks::AllReduce(static_cast<int64_t>(order[2])).ok())
        return 1;
      continue;
    }
    if (!cases[which])
      cases[which] = std::make_unique<flowtape::benchmarks::Case>(
          flowtape::benchmarks::Make(which));
    if (!flowtape::benchmarks::Steps(*cases[which]).ok()) return 1;
  }
}

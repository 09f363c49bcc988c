// Data-parallel training on threads: one TrainNll step of a 64-D MAF (5 MADE
// layers, two hidden layers of 128, ReLU; 203k parameters) at global batch
// 256 and 4096, on 1 and 2 threads (ThreadCommunicator), float32 and
// float64.
//
//   ./bazelw run --config=opt //benchmarks:parallel_bench --
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// (one line)
//
// Time is wall time per step inside TrainNll's loop (manual timing: model
// building, the initial broadcast and the final model check are excluded).
// Counters: allreduce_ms (rank 0's time in gradient all-reduces per step,
// waiting for the slower rank included), allreduce_MB (bytes each rank
// all-reduces per step: the gradient, in the model's dtype, plus a few
// scalars). Each benchmark iteration runs `steps` steps on threads that
// persist across iterations (warm tapes).
#include <memory>
#include <vector>

#include "autodiff/tape.h"
#include "benchmark/benchmark.h"
#include "models/zoo.h"
#include "nn/optim.h"
#include "parallel/thread_communicator.h"
#include "training/train.h"

namespace flowtape::benchmarks {
namespace {

std::shared_ptr<flows::FlowModel> Maf64(DType dtype) {
  Rng rng(0);
  models::ModelConfig c;
  c.event = Shape{64};
  c.layers = 5;
  c.hidden = {128, 128};
  auto model = models::MakeModel("maf", c, rng).value();
  model->To(dtype);
  return model;
}

// args: threads, global batch, dtype (0 = float32, 1 = float64).
void BM_Maf64dStep(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t batch = state.range(1);
  const DType dtype = state.range(2) == 0 ? kFloat32 : kFloat64;
  const int64_t steps = batch >= 4096 ? 4 : 20;
  Rng rng(1);
  training::TrainData data;
  data.train = Tensor::Randn(Shape{4 * batch, 64}, rng, dtype);
  training::TrainOptions o;
  o.batch_size = batch;
  o.max_steps = steps;
  o.log_every = 0;
  o.check_model = [](Rng&) { return absl::OkStatus(); };
  double allreduce = 0.0;
  int64_t bytes = 0, runs = 0;
  absl::Status s = parallel::RunOnThreads(
      threads, [&](parallel::Communicator& comm) -> absl::Status {
        auto model = Maf64(dtype);
        auto adam = nn::Adam::Create(*model, {/*lr=*/1e-4}).value();
        training::TrainOptions mine = o;
        mine.communicator = &comm;
        auto run = [&]() -> absl::StatusOr<training::TrainResult> {
          return training::TrainNllOutcome(*model, training::ModelNll(*model),
                                           *adam, data, mine);
        };
        // Rank 0 drives the benchmark loop and tells the others whether to
        // run another iteration (1) or stop (0).
        double go[1];
        if (comm.rank() == 0) {
          for (auto _ : state) {
            go[0] = 1;
            if (absl::Status b = comm.Broadcast(absl::MakeSpan(go), 0); !b.ok())
              return b;
            absl::StatusOr<training::TrainResult> r = run();
            if (!r.ok()) return r.status();
            state.SetIterationTime(r->seconds / steps);
            allreduce += r->allreduce_seconds / steps;
            bytes = r->allreduce_bytes_per_step;
            ++runs;
          }
          go[0] = 0;
          return comm.Broadcast(absl::MakeSpan(go), 0);
        }
        for (;;) {
          if (absl::Status b = comm.Broadcast(absl::MakeSpan(go), 0); !b.ok())
            return b;
          if (go[0] == 0) return absl::OkStatus();
          if (absl::StatusOr<training::TrainResult> r = run(); !r.ok())
            return r.status();
        }
      });
  if (!s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  state.counters["allreduce_ms"] = 1e3 * allreduce / std::max<int64_t>(runs, 1);
  state.counters["allreduce_MB"] = bytes / 1e6;
}
BENCHMARK(BM_Maf64dStep)
    ->ArgNames({"threads", "batch", "f64"})
    ->ArgsProduct({{1, 2}, {256, 4096}, {0, 1}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flowtape::benchmarks

// Cost of one function evaluation (NFE) of an FFJORD CNF in the forward
// solve and in the adjoint (backward) solve, float32 and float64, 1 and 2
// threads: the flowtape side of benchmarks/cnf_torch_reference.py (PyTorch
// + torchdiffeq, the same cases and measurement).
//   ./bazelw run --config=opt //benchmarks:cnf_cost_bench
//
// Case (args d/trace/dtype/threads): ConcatSquash d-64-64-d, tanh, batch
// 256, x ~ N(0, 1), d = 2 and 64; trace 2 = exact by d VJPs (kExactVjp,
// what FFJORD does), 1 = exact in closed form (kExact: ConcatSquashNet's
// ValueAndTrace), 0 = Hutchinson (one VJP, Gaussian noise drawn once per
// pass); dtype 32 or 64. One step is
// FFJORD's training step at initialisation: Cnf::Forward over t in [0, 1]
// (dopri5, rtol = atol = 1e-5, adjoint gradients; the forward solve records
// nothing), loss = mean(|z|^2 / 2 - logdet), Backward (the adjoint solve).
// Counters, per NFE of that phase, the least over the steps run (the
// least-disturbed one on a shared machine; the reference script does the
// same):
//   fwd_us, adj_us          wall time of the phase / its NFE (forward: the
//                           pass's "nfe" extra; adjoint: the options' stats
//                           sink)
//   fwd_cpu_us, adj_cpu_us  process CPU time (all threads) / NFE
//   nfe_fwd, nfe_adj        NFE per solve (of the last step)
// Threads: the intra-op pool (autodiff/thread_pool.h) splits only products
// of at least 2^23 multiply-adds (kParallelFlops), and this net's largest
// is 256 x 64 x 64 (2^20), so one step cannot use a second core; threads = 2
// runs two independent steps at once (one replica model, tape and batch per
// thread, phases aligned by a barrier) and reports wall / (NFE of both):
// throughput per NFE on two cores. PyTorch at 2 threads splits each op instead.
// Read fwd_cpu_us / adj_cpu_us on a shared machine (wall time includes
// waiting for the cores).
#include <time.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "benchmark/benchmark.h"
#include "flows/cnf/cnf.h"
#include "flows/cnf/dynamics.h"

namespace flowtape::flows::cnf {
namespace {

constexpr int64_t kBatch = 256;

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) +
         1e-9 * static_cast<double>(ts.tv_nsec);
}

double WallSeconds() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Waits until `n` threads arrived, then releases them (reusable). Returns
// the wall and process CPU clocks read by the last to arrive, at the
// release: between two releases every thread did exactly its phase's work.
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  std::pair<double, double> Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t gen = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      clocks_ = {WallSeconds(), ProcessCpuSeconds()};
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
    return clocks_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_, arrived_ = 0;
  int64_t generation_ = 0;
  std::pair<double, double> clocks_;
};

// One replica: the CNF at initialisation (same seed: same weights), its
// batch and noise, and its stats sink.
struct Replica {
  std::shared_ptr<Cnf> cnf;
  std::shared_ptr<ode::OdeStatsSink> stats;
  Tensor x;
  Replica(int64_t d, TraceEstimator trace, DType dtype) {
    Rng rng(1);
    auto net = ConcatSquashNet::Create(d, {64, 64}, nn::Activation::kTanh, rng)
                   .value();
    net->To(dtype);
    CnfOptions o;
    o.trace = trace;
    stats = o.ode.stats = std::make_shared<ode::OdeStatsSink>();
    cnf = Cnf::Create(net, o).value();
    x = Tensor::Randn({kBatch, d}, rng, dtype);
  }
};

// Phase timings of one step on all threads.
struct StepCost {
  double fwd_wall = 0, fwd_cpu = 0, adj_wall = 0, adj_cpu = 0;
  int64_t fwd_nfe = 0, adj_nfe = 0;
};

void BM_CnfStep(benchmark::State& state) {
  const int64_t d = state.range(0);
  const TraceEstimator trace = state.range(1) == 2 ? TraceEstimator::kExactVjp
                               : state.range(1) == 1
                                   ? TraceEstimator::kExact
                                   : TraceEstimator::kHutchinson;
  const DType dtype = state.range(2) == 32 ? kFloat32 : kFloat64;
  const int threads = static_cast<int>(state.range(3));
  std::vector<std::unique_ptr<Replica>> reps;
  for (int k = 0; k < threads; ++k)
    reps.push_back(std::make_unique<Replica>(d, trace, dtype));
  constexpr double kInf = std::numeric_limits<double>::infinity();
  StepCost best{kInf, kInf, kInf, kInf, 0, 0};  // per NFE, over the steps
  for (auto _ : state) {
    Barrier barrier(threads);
    StepCost c;
    std::mutex mu;
    auto run = [&](int k) {
      Replica& r = *reps[k];
      Rng noise(7 + k);
      r.stats->Reset();
      const auto [w0, c0] = barrier.Wait();
      FlowResult pass = r.cnf->Forward(r.x, Tensor(), &noise);
      const auto [w1, c1] = barrier.Wait();
      Tensor loss = Mean(Sum(Square(pass.value), 1) * 0.5 - pass.logdet);
      r.cnf->ZeroGrad();
      const auto [w2, c2] = barrier.Wait();
      Backward(loss);
      const auto [w3, c3] = barrier.Wait();
      Tape::Get().Reset();
      std::lock_guard<std::mutex> lock(mu);
      c.fwd_nfe += static_cast<int64_t>(pass.extra(kNfe)[0]);
      c.adj_nfe += r.stats->Get().backward.nfe;
      if (k == 0) {
        c.fwd_wall = w1 - w0, c.fwd_cpu = c1 - c0;
        c.adj_wall = w3 - w2, c.adj_cpu = c3 - c2;
      }
    };
    if (threads == 1) {
      run(0);
    } else {
      std::vector<std::thread> pool;
      for (int k = 0; k < threads; ++k) pool.emplace_back(run, k);
      for (std::thread& t : pool) t.join();
    }
    state.SetIterationTime(c.fwd_wall + c.adj_wall);
    const double f = static_cast<double>(c.fwd_nfe);
    const double a = static_cast<double>(c.adj_nfe);
    best.fwd_wall = std::min(best.fwd_wall, c.fwd_wall / f);
    best.fwd_cpu = std::min(best.fwd_cpu, c.fwd_cpu / f);
    best.adj_wall = std::min(best.adj_wall, c.adj_wall / a);
    best.adj_cpu = std::min(best.adj_cpu, c.adj_cpu / a);
    best.fwd_nfe = c.fwd_nfe / threads, best.adj_nfe = c.adj_nfe / threads;
  }
  state.counters["fwd_us"] = 1e6 * best.fwd_wall;
  state.counters["fwd_cpu_us"] = 1e6 * best.fwd_cpu;
  state.counters["adj_us"] = 1e6 * best.adj_wall;
  state.counters["adj_cpu_us"] = 1e6 * best.adj_cpu;
  state.counters["nfe_fwd"] = static_cast<double>(best.fwd_nfe);
  state.counters["nfe_adj"] = static_cast<double>(best.adj_nfe);
  const char* names[] = {"hutchinson", "exact closed form", "exact d VJPs"};
  state.SetLabel(std::string(names[state.range(1)]) + " " + DTypeName(dtype) +
                 (threads > 1 ? " 2 threads" : ""));
}

BENCHMARK(BM_CnfStep)
    ->ArgNames({"d", "trace", "dtype", "threads"})
    ->ArgsProduct({{2, 64}, {2, 1, 0}, {32, 64}, {1, 2}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flowtape::flows::cnf

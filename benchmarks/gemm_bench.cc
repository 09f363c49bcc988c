// The GEMM kernel (autodiff/gemm.h) at the sizes flowtape's models run,
// with 1 and 2 intra-op threads, in both dtypes: where splitting pays, and
// the threshold kParallelFlops.
//
//   ./bazelw run --config=opt //benchmarks:gemm_bench
//
// Args: m, k, n, threads, dtype (0 = float64, 1 = float32). Shapes: MAF
// hidden layers at batch 256 and 4096 ([N, 128] x [128, 128]), a Glow
// coupling convolution as im2col GEMM ([64, 576] x [576, 784]), and a sweep
// of square sizes around the threshold.
#include <vector>

#include "autodiff/gemm.h"
#include "autodiff/rng.h"
#include "autodiff/thread_pool.h"
#include "benchmark/benchmark.h"

namespace flowtape::benchmarks {
namespace {

template <typename T>
void Run(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  SetIntraOpThreads(static_cast<int>(state.range(3)));
  Rng rng(1);
  std::vector<T> a(m * k), b(k * n), c(m * n);
  for (T& v : a) v = T(rng.Normal());
  for (T& v : b) v = T(rng.Normal());
  for (auto _ : state) {
    internal::Gemm(a.data(), m, k, false, b.data(), k, n, false, c.data());
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFlop/s"] = benchmark::Counter(
      2.0 * m * n * k * state.iterations(), benchmark::Counter::kIsRate,
      benchmark::Counter::kIs1000);
  SetIntraOpThreads(1);
}

void BM_Gemm(benchmark::State& state) {
  if (state.range(4) == 1)
    Run<float>(state);
  else
    Run<double>(state);
}

void Shapes(benchmark::internal::Benchmark* b) {
  const std::vector<std::vector<int64_t>> shapes = {
      {256, 128, 128}, {4096, 128, 128}, {256, 64, 128},
      {64, 576, 784},  {64, 64, 64},     {96, 96, 96},
      {128, 128, 128}, {192, 192, 192},  {256, 256, 256}};
  for (const auto& s : shapes)
    for (int64_t threads : {1, 2})
      for (int64_t dtype : {0, 1}) b->Args({s[0], s[1], s[2], threads, dtype});
}
BENCHMARK(BM_Gemm)->Apply(Shapes)->UseRealTime();

}  // namespace
}  // namespace flowtape::benchmarks

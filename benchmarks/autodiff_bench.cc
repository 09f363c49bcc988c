// Autodiff performance: run with
//   ./bazelw run --config=opt //benchmarks:autodiff_bench
//
// (a) SumMatMul: value and gradient of f(A, B) = sum(A B) (matrix product)
//     for n x n A, B, against the plain Eigen evaluation `(A * B).sum()` of
//     the value alone: the "matrix_product" problem of the published C++ AD
//     comparisons (FastAD's ADBenchmark; Stan Math). Counter
//     `ratio_vs_eigen` = time(AD value + gradient) / time(Eigen value).
//     Target <= 3.5. EigenSumMatMulHandGradient is the three-GEMM
//     hand-written reference: the value plus dA = 1 B^T and dB = A^T 1 as
//     two more GEMMs, the work the tape's generic matmul rule does. It is
//     not a floor: dA = 1 B^T is only the row sums of B repeated (and dB the
//     column sums of A), so a rank-one shortcut would cost about 1x the
//     value; the tape deliberately runs the generic two GEMMs.
// (a') SumMul: the same for the elementwise sum(A .* B), a memory-bound
//     problem whose hand-written gradient (value + copies dA = B, dB = A) is
//     already 2.5-4x the value; reported, not targeted.
// (b) Mlp: 2-64-64-2 tanh MLP, batch 256, mean squared output: forward and
//     backward (gradients accumulated into the parameters) per step.
// (c) TinyOps: a chain of K adds/muls on [2] tensors, recorded and then
//     differentiated; counter `ns_per_op` (forward + backward per op).
//     Target < 1000 ns.
// (d) MlpTapeBytes: tape bytes of one MLP training step, and of its forward
//     pass alone, against the bytes of the layer activations
//     (batch x (64 + 64 + 2) doubles).
#include <time.h>

#include <Eigen/Dense>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "benchmark/benchmark.h"
#include "nn/layers.h"

namespace flowtape::benchmarks {
namespace {

// Per-thread CPU time: the ratios stay meaningful on a busy machine.
struct Clock {
  static double now() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
  }
};

using RowMat =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Seconds per plain Eigen evaluation of sum(A B), timed over >= 0.2 s. The
// product goes into a preallocated C: `(A * B).sum()` would allocate a fresh
// temporary per call, which at n = 256 (512 KB, fresh pages) costs 2.2x the
// GEMM itself and would flatter every AD ratio.
double EigenSumMatMulSeconds(const Tensor& a, const Tensor& b, int64_t n) {
  Eigen::Map<const RowMat> A(a.data<double>(), n, n), B(b.data<double>(), n, n);
  RowMat C(n, n);
  int64_t reps = 0;
  auto t0 = Clock::now();
  double t = 0;
  while (t < 0.2) {
    for (int i = 0; i < 10; ++i) {
      C.noalias() = A * B;
      double v = C.sum();
      benchmark::DoNotOptimize(v);
    }
    reps += 10;
    t = (Clock::now() - t0);
  }
  return t / static_cast<double>(reps);
}

void BM_EigenSumMatMul(benchmark::State& state) {
  const int64_t n = state.range(0);
  Rng rng(1);
  Tensor a = Tensor::Randn({n, n}, rng), b = Tensor::Randn({n, n}, rng);
  Eigen::Map<const RowMat> A(a.data<double>(), n, n), B(b.data<double>(), n, n);
  RowMat C(n, n);
  for (auto _ : state) {
    C.noalias() = A * B;
    double v = C.sum();
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_EigenSumMatMul)->Arg(64)->Arg(128)->Arg(256);

// Hand-written value and gradient (no AD): dA = 1 B^T, dB = A^T 1 as two
// GEMMs, the same work as the tape's generic rule (a reference, not a floor:
// the rank-one row/column sums would be ~1x the value).
void BM_EigenSumMatMulHandGradient(benchmark::State& state) {
  const int64_t n = state.range(0);
  Rng rng(1);
  Tensor a = Tensor::Randn({n, n}, rng), b = Tensor::Randn({n, n}, rng);
  Eigen::Map<const RowMat> A(a.data<double>(), n, n), B(b.data<double>(), n, n);
  const RowMat ones = RowMat::Ones(n, n);
  RowMat C(n, n), dA(n, n), dB(n, n);
  const double eigen = EigenSumMatMulSeconds(a, b, n);
  const double t0 = Clock::now();
  int64_t iters = 0;
  for (auto _ : state) {
    C.noalias() = A * B;
    double v = C.sum();
    benchmark::DoNotOptimize(v);
    dA.noalias() = ones * B.transpose();
    dB.noalias() = A.transpose() * ones;
    benchmark::DoNotOptimize(dA.data());
    benchmark::DoNotOptimize(dB.data());
    ++iters;
  }
  const double t = (Clock::now() - t0) / static_cast<double>(iters);
  state.counters["ratio_vs_eigen"] = t / eigen;
}
BENCHMARK(BM_EigenSumMatMulHandGradient)->Arg(64)->Arg(128)->Arg(256);

// Grad({sum(A B)}, {A, B}) through the tape.
void BM_GradSumMatMul(benchmark::State& state) {
  const int64_t n = state.range(0);
  Rng rng(1);
  Tensor a = Tensor::Randn({n, n}, rng).set_requires_grad(true);
  Tensor b = Tensor::Randn({n, n}, rng).set_requires_grad(true);
  const double eigen = EigenSumMatMulSeconds(a, b, n);
  Tape& tape = Tape::Get();
  tape.Reset();
  int64_t iters = 0;
  auto t0 = Clock::now();
  for (auto _ : state) {
    std::vector<Tensor> g = Grad({Sum(MatMul(a, b))}, {a, b});
    benchmark::DoNotOptimize(g[0].data<double>());
    tape.Reset();
    ++iters;
  }
  const double ad = (Clock::now() - t0) / static_cast<double>(iters);
  state.counters["eigen_us"] = eigen * 1e6;
  state.counters["ratio_vs_eigen"] = ad / eigen;
}
BENCHMARK(BM_GradSumMatMul)->Arg(64)->Arg(128)->Arg(256);

// Seconds per plain Eigen evaluation of sum(A .* B), timed over >= 0.2 s.
double EigenSumMulSeconds(const Tensor& a, const Tensor& b, int64_t n) {
  Eigen::Map<const RowMat> A(a.data<double>(), n, n), B(b.data<double>(), n, n);
  int64_t reps = 0;
  auto t0 = Clock::now();
  double t = 0;
  while (t < 0.2) {
    for (int i = 0; i < 100; ++i) {
      double v = (A.array() * B.array()).sum();
      benchmark::DoNotOptimize(v);
    }
    reps += 100;
    t = (Clock::now() - t0);
  }
  return t / static_cast<double>(reps);
}

void BM_EigenSumMul(benchmark::State& state) {
  const int64_t n = state.range(0);
  Rng rng(1);
  Tensor a = Tensor::Randn({n, n}, rng), b = Tensor::Randn({n, n}, rng);
  Eigen::Map<const RowMat> A(a.data<double>(), n, n), B(b.data<double>(), n, n);
  for (auto _ : state) {
    double v = (A.array() * B.array()).sum();
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_EigenSumMul)->Arg(64)->Arg(128)->Arg(256);

// The floor for any method that returns the gradients as arrays: the value
// plus hand-written dA = B, dB = A into preallocated buffers (no AD).
void BM_EigenSumMulHandGradient(benchmark::State& state) {
  const int64_t n = state.range(0);
  Rng rng(1);
  Tensor a = Tensor::Randn({n, n}, rng), b = Tensor::Randn({n, n}, rng);
  Eigen::Map<const RowMat> A(a.data<double>(), n, n), B(b.data<double>(), n, n);
  RowMat dA(n, n), dB(n, n);
  const double eigen = EigenSumMulSeconds(a, b, n);
  const double t0 = Clock::now();
  int64_t iters = 0;
  for (auto _ : state) {
    double v = (A.array() * B.array()).sum();
    benchmark::DoNotOptimize(v);
    dA = B;
    dB = A;
    benchmark::DoNotOptimize(dA.data());
    benchmark::DoNotOptimize(dB.data());
    ++iters;
  }
  const double t = (Clock::now() - t0) / static_cast<double>(iters);
  state.counters["ratio_vs_eigen"] = t / eigen;
}
BENCHMARK(BM_EigenSumMulHandGradient)->Arg(64)->Arg(128)->Arg(256);

// mode 0: Grad({sum(A*B)}, {A, B}); mode 1: a training step's ZeroGrad and
// Backward() into A.grad(), B.grad().
void SumMul(benchmark::State& state, int mode) {
  const int64_t n = state.range(0);
  Rng rng(1);
  Tensor a = Tensor::Randn({n, n}, rng).set_requires_grad(true);
  Tensor b = Tensor::Randn({n, n}, rng).set_requires_grad(true);
  const double eigen = EigenSumMulSeconds(a, b, n);
  Tape& tape = Tape::Get();
  tape.Reset();
  int64_t iters = 0;
  auto t0 = Clock::now();
  for (auto _ : state) {
    Tensor loss = Sum(a * b);
    if (mode == 0) {
      std::vector<Tensor> g = Grad({loss}, {a, b});
      benchmark::DoNotOptimize(g[0].data<double>());
    } else {
      a.ZeroGrad();
      b.ZeroGrad();
      Backward(loss);
      benchmark::DoNotOptimize(a.grad().data<double>());
    }
    tape.Reset();
    ++iters;
  }
  const double ad = (Clock::now() - t0) / static_cast<double>(iters);
  state.counters["eigen_us"] = eigen * 1e6;
  state.counters["ratio_vs_eigen"] = ad / eigen;
}
void BM_GradSumMul(benchmark::State& s) { SumMul(s, 0); }
void BM_BackwardSumMul(benchmark::State& s) { SumMul(s, 1); }
BENCHMARK(BM_GradSumMul)->Arg(64)->Arg(128)->Arg(256);
BENCHMARK(BM_BackwardSumMul)->Arg(64)->Arg(128)->Arg(256);

// Benchmarks with a dtype argument: 0 = float64, 1 = float32.
DType ArgDType(const benchmark::State& state, int i) {
  return state.range(i) == 1 ? kFloat32 : kFloat64;
}

struct MlpSetup {
  explicit MlpSetup(DType dtype) {
    mlp.To(dtype);
    x = Cast(x, dtype);
  }
  Rng rng{3};
  std::shared_ptr<nn::MLP> net =
      nn::MLP::Create({2, 64, 64, 2}, nn::Activation::kTanh, rng).value();
  nn::MLP& mlp = *net;
  Tensor x = Tensor::Randn({256, 2}, rng);
  Tensor Loss() const { return Mean(Square(mlp(x))); }
};

void BM_MlpForwardBackward(benchmark::State& state) {
  MlpSetup s(ArgDType(state, 0));
  Tape& tape = Tape::Get();
  tape.Reset();
  for (auto _ : state) {
    s.mlp.ZeroGrad();
    Backward(s.Loss());
    tape.Reset();
  }
}
BENCHMARK(BM_MlpForwardBackward)->Arg(0)->Arg(1);

void BM_MlpForwardNoGrad(benchmark::State& state) {
  MlpSetup s(ArgDType(state, 0));
  NoGradScope ng;
  for (auto _ : state) benchmark::DoNotOptimize(s.Loss().item());
}
BENCHMARK(BM_MlpForwardNoGrad)->Arg(0)->Arg(1);

// K ops on [2] tensors (alternating add and mul), then Backward.
void BM_TinyOps(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  const DType dtype = ArgDType(state, 1);
  Tensor x =
      Tensor::FromVector({2}, {0.5, -0.25}, dtype).set_requires_grad(true);
  Tensor c = Tensor::FromVector({2}, {1.0, 0.999}, dtype);
  Tape& tape = Tape::Get();
  tape.Reset();
  int64_t iters = 0;
  auto t0 = Clock::now();
  for (auto _ : state) {
    Tensor y = x;
    for (int i = 0; i < k; ++i) y = (i % 2 == 0) ? y + x : y * c;
    Backward(y, Tensor::Ones({2}, dtype));
    tape.Reset();
    ++iters;
  }
  const double t = (Clock::now() - t0) / static_cast<double>(iters);
  state.counters["ns_per_op"] = t / k * 1e9;
  x.ZeroGrad();
}
BENCHMARK(BM_TinyOps)->ArgsProduct({{100, 1000}, {0, 1}});

void BM_MlpTapeBytes(benchmark::State& state) {
  MlpSetup s(kFloat64);
  Tape& tape = Tape::Get();
  tape.Reset();
  size_t forward = 0, step = 0;
  for (auto _ : state) {
    s.mlp.ZeroGrad();
    Tensor loss = s.Loss();
    forward = tape.bytes_in_use();
    Backward(loss);
    step = tape.bytes_in_use();
    tape.Reset();
  }
  const double activations = 256.0 * (64 + 64 + 2) * sizeof(double);
  state.counters["tape_bytes_step"] = static_cast<double>(step);
  state.counters["tape_bytes_forward"] = static_cast<double>(forward);
  state.counters["activation_bytes"] = activations;
  state.counters["step_over_activations"] = step / activations;
  state.counters["reserved_bytes"] = static_cast<double>(tape.bytes_reserved());
}
BENCHMARK(BM_MlpTapeBytes);

}  // namespace
}  // namespace flowtape::benchmarks

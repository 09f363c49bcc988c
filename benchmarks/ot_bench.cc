// Minibatch optimal-transport couplings (flows/matching): run with
//   ./bazelw run --config=opt //benchmarks:ot_bench
//
// Assignment/n: exact assignment (SolveAssignment) of an n x n cost with
//   i.i.d. uniform [0, 1) entries, the usual LAP benchmark. Aim: well under
//   100 ms at n = 512.
// AssignmentGaussian/n: the OT-CFM case, squared Euclidean costs between n
//   standard normal points and n points of a shifted, scaled normal in d = 2
//   (more structured than uniform costs: longer augmenting paths).
// AssignmentToy/<set>/n: what OT-CFM solves per training batch in
//   //benchmarks:cnf_training_methods: n standard normal draws against n
//   rows of a toy set (0: 8gaussians, 1: moons, 2: checkerboard).
// Sinkhorn/n: log-domain Sinkhorn on the same Gaussian cost divided by its
//   maximum, uniform marginals, eps = 0.05, tol 1e-6; counters `iters`,
//   `converged`.
// SquaredEuclideanCost/n: the n x n cost for d = 784 (MNIST-sized points).
#include <Eigen/Dense>

#include "autodiff/tensor.h"
#include "benchmark/benchmark.h"
#include "data/toy2d.h"
#include "flows/matching/assignment.h"
#include "flows/matching/cost.h"
#include "flows/matching/sinkhorn.h"

namespace flowtape::flows::matching {
namespace {

Eigen::MatrixXd UniformCost(int n, uint64_t seed) {
  Rng rng(seed);
  Eigen::MatrixXd c(n, n);
  for (int i = 0; i < c.size(); ++i) c.data()[i] = rng.Uniform();
  return c;
}

Eigen::MatrixXd Points(int n, int d, double shift, double scale, Rng& rng) {
  Eigen::MatrixXd x(n, d);
  for (int i = 0; i < x.size(); ++i) x.data()[i] = shift + scale * rng.Normal();
  return x;
}

Eigen::MatrixXd GaussianCost(int n, uint64_t seed) {
  Rng rng(seed);
  const Eigen::MatrixXd x0 = Points(n, 2, 0.0, 1.0, rng);
  const Eigen::MatrixXd x1 = Points(n, 2, 1.5, 0.5, rng);
  return SquaredEuclideanCost(x0, x1).value();
}

void BM_Assignment(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const Eigen::MatrixXd c = UniformCost(n, 1);
  for (auto _ : state) {
    benchmark::DoNotOptimize(SolveAssignment(c).value());
  }
}
BENCHMARK(BM_Assignment)
    ->Arg(64)
    ->Arg(128)
    ->Arg(256)
    ->Arg(512)
    ->Unit(benchmark::kMillisecond);

void BM_AssignmentGaussian(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const Eigen::MatrixXd c = GaussianCost(n, 2);
  for (auto _ : state) {
    benchmark::DoNotOptimize(SolveAssignment(c).value());
  }
}
BENCHMARK(BM_AssignmentGaussian)
    ->Arg(64)
    ->Arg(128)
    ->Arg(256)
    ->Arg(512)
    ->Unit(benchmark::kMillisecond);

void BM_AssignmentToy(benchmark::State& state) {
  const char* const kSets[] = {"8gaussians", "moons", "checkerboard"};
  const int n = static_cast<int>(state.range(1));
  Rng rng(5);
  const Eigen::MatrixXd x0 = Points(n, 2, 0.0, 1.0, rng);
  const Tensor t = data::SampleToy2d(kSets[state.range(0)], n, rng).value();
  Eigen::MatrixXd x1(n, 2);
  for (int i = 0; i < x1.size(); ++i) x1(i / 2, i % 2) = t[i];
  const Eigen::MatrixXd c = SquaredEuclideanCost(x0, x1).value();
  for (auto _ : state) {
    benchmark::DoNotOptimize(SolveAssignment(c).value());
  }
}
BENCHMARK(BM_AssignmentToy)
    ->ArgsProduct({{0, 1, 2}, {256}})
    ->Unit(benchmark::kMillisecond);

void BM_Sinkhorn(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Eigen::MatrixXd c = GaussianCost(n, 3);
  c /= c.maxCoeff();
  SinkhornOptions opt;
  opt.epsilon = 0.05;
  opt.tol = 1e-6;
  opt.max_iters = 10000;
  int iters = 0;
  bool converged = false;
  for (auto _ : state) {
    SinkhornResult r = Sinkhorn(c, opt).value();
    iters = r.iterations;
    converged = r.converged;
    benchmark::DoNotOptimize(r.plan.data());
  }
  state.counters["iters"] = iters;
  state.counters["converged"] = converged;
}
BENCHMARK(BM_Sinkhorn)->Arg(128)->Arg(512)->Unit(benchmark::kMillisecond);

void BM_SquaredEuclideanCost(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Rng rng(4);
  const Eigen::MatrixXd x0 = Points(n, 784, 0.0, 1.0, rng);
  const Eigen::MatrixXd x1 = Points(n, 784, 0.5, 1.0, rng);
  for (auto _ : state) {
    benchmark::DoNotOptimize(SquaredEuclideanCost(x0, x1).value().data());
  }
}
BENCHMARK(BM_SquaredEuclideanCost)->Arg(512)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flowtape::flows::matching

// Cost of one function evaluation (NFE) of a CNF and of one adjoint step:
//   ./bazelw run --config=opt //benchmarks:cnf_cost_bench
//
// Dynamics: FFJORD ConcatSquash net d -> 64 -> 64 -> d (tanh), batch 256.
// (a) FieldValue: one forward-solve evaluation of the augmented field
//     [f, tr df/dz] with the exact trace (d VJPs) or Hutchinson (1 VJP).
// (b) AdjointEval: one backward-solve evaluation: the field recorded with
//     create_graph, then one VJP w.r.t. the state and all parameters (what
//     the continuous adjoint does per NFE; a dopri5 step is 6 of them).
// (c) Train step: one FFJORD NLL training step (adjoint, dopri5,
//     rtol = atol = 1e-5) at initialisation; counters nfe_fwd / nfe_bwd.
// Read the CPU column (the machine is shared; wall time includes waiting).
#include <memory>
#include <vector>

#include "autodiff/functional.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "benchmark/benchmark.h"
#include "flows/cnf/cnf.h"
#include "flows/cnf/dynamics.h"

namespace flowtape::flows::cnf {
namespace {

constexpr int64_t kBatch = 256;

struct Setup {
  std::shared_ptr<ConcatSquashNet> net;
  Tensor z, eps;
  explicit Setup(int64_t d) {
    Rng rng(1);
    net = std::make_shared<ConcatSquashNet>(d, std::vector<int64_t>{64, 64},
                                            nn::Activation::kTanh, rng);
    z = Tensor::Randn({kBatch, d}, rng);
    eps = Tensor::Randn({kBatch, d}, rng);
  }
};

// [f, tr J] with `build` graphs (create_graph) or values only.
Tensor Field(const Setup& s, bool exact, const Tensor& z, bool build) {
  const int64_t d = s.net->dim();
  Tensor f = (*s.net)(0.5, z);
  Tensor tr;
  if (exact) {
    for (int64_t i = 0; i < d; ++i) {
      Tensor e = Tensor::Zeros(z.shape());
      for (int64_t k = 0; k < kBatch; ++k) e.mutable_data()[k * d + i] = 1.0;
      Tensor di = Narrow(Grad({f}, {z}, {e}, build)[0], 1, i, 1);
      tr = tr.defined() ? tr + di : di;
    }
  } else {
    tr = Sum(Grad({f}, {z}, {s.eps}, build)[0] * s.eps, 1, true);
  }
  return Concat({f, tr}, 1);
}

void BM_FieldValue(benchmark::State& state) {
  Setup s(state.range(0));
  const bool exact = state.range(1) == 1;
  for (auto _ : state) {
    TapeScope scope;
    Tensor z = s.z.Detach().set_requires_grad(true);
    Tensor out = Field(s, exact, z, false).Detach();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(exact ? "exact trace" : "hutchinson");
}

void BM_AdjointEval(benchmark::State& state) {
  Setup s(state.range(0));
  const bool exact = state.range(1) == 1;
  std::vector<Tensor> params = s.net->Parameters();
  Tensor a =
      Tensor::Randn({kBatch, s.net->dim() + 1}, *std::make_unique<Rng>(2));
  for (auto _ : state) {
    TapeScope scope;
    Tensor z = s.z.Detach().set_requires_grad(true);
    Tensor out = Field(s, exact, z, true);
    std::vector<Tensor> inputs{z};
    inputs.insert(inputs.end(), params.begin(), params.end());
    std::vector<Tensor> g = Grad({out}, inputs, {a});
    benchmark::DoNotOptimize(g[0].data());
  }
  state.SetLabel(exact ? "exact trace" : "hutchinson");
}

void BM_TrainStep(benchmark::State& state) {
  const int64_t d = state.range(0);
  Rng rng(3);
  CnfOptions o;
  o.trace = state.range(1) == 1 ? TraceEstimator::kExact
                                : TraceEstimator::kHutchinson;
  Cnf cnf(std::make_shared<ConcatSquashNet>(d, std::vector<int64_t>{64, 64},
                                            nn::Activation::kTanh, rng),
          o);
  Tensor x = Tensor::Randn({kBatch, d}, rng);
  double fwd = 0, bwd = 0;
  for (auto _ : state) {
    auto r = cnf.Solve(x, true);
    Tensor loss = Mean(Sum(Square(r->value), 1) * 0.5 - r->logdet);
    cnf.ZeroGrad();
    Backward(loss);
    Tape::Get().Reset();
    fwd = static_cast<double>(r->stats->forward.nfe);
    bwd = static_cast<double>(r->stats->backward.nfe);
  }
  state.counters["nfe_fwd"] = fwd;
  state.counters["nfe_bwd"] = bwd;
  state.SetLabel(o.trace == TraceEstimator::kExact ? "exact trace"
                                                   : "hutchinson");
}

BENCHMARK(BM_FieldValue)
    ->ArgsProduct({{2, 64}, {1, 0}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AdjointEval)
    ->ArgsProduct({{2, 64}, {1, 0}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TrainStep)
    ->ArgsProduct({{2, 64}, {1, 0}})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flowtape::flows::cnf

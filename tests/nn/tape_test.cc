// Concurrency and memory of training loops: two threads train two models at
// once on their thread-local tapes (bit-identical to sequential runs), and
// the tape's memory stays flat over 1000 steps with Reset() each step.
#include "autodiff/tape.h"

#include <thread>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "gtest/gtest.h"
#include "nn/layers.h"
#include "nn/optim.h"

namespace flowtape::nn {
namespace {

// Trains a small regression MLP from `seed`; returns the final parameters
// and the loss curve.
struct TrainResult {
  std::vector<std::vector<double>> params;
  std::vector<double> losses;
};

TrainResult Train(uint64_t seed, int steps) {
  Rng rng(seed);
  auto mlp_ptr = MLP::Create({2, 16, 16, 1}, Activation::kTanh, rng).value();
  MLP& mlp = *mlp_ptr;
  auto opt = Adam::Create(mlp, AdamOptions()).value();
  Tensor x = Tensor::Randn({64, 2}, rng);
  Tensor y;
  {
    NoGradScope ng;
    y = Sin(Sum(x, 1, /*keepdim=*/true) * 2.0).Detach();
  }
  TrainResult result;
  for (int t = 0; t < steps; ++t) {
    opt->ZeroGrad();
    Tensor loss = Mean(Square(mlp(x) - y));
    result.losses.push_back(loss.item());
    Backward(loss);
    Tape::Get().Reset();
    opt->Step();
  }
  for (auto& [name, p] : mlp.NamedParameters())
    result.params.push_back(p.ToVector());
  return result;
}

TEST(Threads, TwoModelsTrainConcurrentlyLikeSequentially) {
  constexpr int kSteps = 1000;
  TrainResult seq_a = Train(1, kSteps), seq_b = Train(2, kSteps);
  TrainResult par_a, par_b;
  std::thread ta([&] { par_a = Train(1, kSteps); });
  std::thread tb([&] { par_b = Train(2, kSteps); });
  ta.join();
  tb.join();
  EXPECT_EQ(par_a.params, seq_a.params);
  EXPECT_EQ(par_b.params, seq_b.params);
  EXPECT_EQ(par_a.losses, seq_a.losses);
  EXPECT_EQ(par_b.losses, seq_b.losses);
  EXPECT_NE(seq_a.params, seq_b.params);
  EXPECT_LT(seq_a.losses.back(), 0.5 * seq_a.losses.front());  // it learned
}

TEST(Threads, EachThreadHasItsOwnTape) {
  Tape* main_tape = &Tape::Get();
  Tape* other = nullptr;
  std::thread t([&] { other = &Tape::Get(); });
  t.join();
  EXPECT_NE(main_tape, other);
}

TEST(TapeMemory, FlatOver1000StepsWithReset) {
  Rng rng(3);
  auto mlp_ptr = MLP::Create({2, 32, 32, 2}, Activation::kTanh, rng).value();
  MLP& mlp = *mlp_ptr;
  auto opt = Sgd::Create(mlp, SgdOptions()).value();
  Tensor x = Tensor::Randn({128, 2}, rng);
  Tape& tape = Tape::Get();
  tape.Reset();
  const size_t baseline = tape.bytes_in_use();
  size_t reserved_after_warmup = 0, peak_in_use = 0;
  for (int t = 0; t < 1000; ++t) {
    opt->ZeroGrad();
    Backward(Mean(Square(mlp(x))));
    peak_in_use = std::max(peak_in_use, tape.bytes_in_use());
    tape.Reset();
    opt->Step();
    EXPECT_EQ(tape.bytes_in_use(), baseline) << "step " << t;
    if (t == 2) reserved_after_warmup = tape.bytes_reserved();
    if (t > 2) {
      ASSERT_EQ(tape.bytes_reserved(), reserved_after_warmup) << t;
    }
  }
  EXPECT_EQ(tape.num_nodes(), 0);
  // The forward values alone are 128 x (32 + 32 + 32 + 32 + 2 ...) doubles.
  EXPECT_GT(peak_in_use, size_t{128 * 64 * 8});
  EXPECT_GE(reserved_after_warmup, peak_in_use);
}

}  // namespace
}  // namespace flowtape::nn

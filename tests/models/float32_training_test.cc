// Training in float32 reaches what float64 reaches: a RealNVP trained on two
// moons in float32 ends within 0.01 nats of the float64 model's test NLL,
// with the same seed (the float32 model starts at the float64 one's rounded
// parameters), the same data and the same minibatches and Adam steps.
#include <cmath>
#include <cstdio>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "data/preprocess.h"
#include "data/toy2d.h"
#include "gtest/gtest.h"
#include "models/zoo.h"
#include "nn/optim.h"
#include "nn/schedule.h"

namespace flowtape::models {
namespace {

// Test NLL (nats) after `steps` Adam steps (cosine-annealed from 2e-3) on
// batches of 256.
double TrainedTestNll(DType dtype, int steps) {
  Rng rng(0);
  ModelConfig c;  // [2], 8 affine couplings, MLP 64-64
  c.dtype = dtype;
  auto model = MakeModel("realnvp", c, rng).value();
  EXPECT_EQ(model->dtype(), dtype);
  Rng data(1);
  Tensor train = data::SampleToy2d("moons", 4096, data).value();
  Tensor test = data::SampleToy2d("moons", 8192, data).value();
  nn::AdamOptions adam_options;
  adam_options.lr = 2e-3;
  auto adam = nn::Adam::Create(*model, adam_options).value();
  adam->set_schedule(nn::CosineAnnealingLr(2e-3, steps));
  Rng order(2);
  std::vector<int64_t> batch(256);
  for (int step = 0; step < steps; ++step) {
    for (int64_t& i : batch) i = order.UniformInt(train.dim(0));
    TapeScope scope;
    adam->ZeroGrad();
    Backward(model->Nll(data::TakeRows(train, batch)));
    adam->Step();
  }
  NoGradScope no_grad;
  return model->Nll(test).item();
}

TEST(Float32Training, RealNvpOnTwoMoonsMatchesFloat64) {
  const int steps = 1500;
  const double nll64 = TrainedTestNll(kFloat64, steps);
  const double nll32 = TrainedTestNll(kFloat32, steps);
  std::printf(
      "two moons, RealNVP, %d steps: test NLL float64 %.4f, float32 "
      "%.4f nats\n",
      steps, nll64, nll32);
  EXPECT_LT(nll64, 2.55);  // trained (quickstart: 2.42 after 5000 steps)
  EXPECT_NEAR(nll32, nll64, 0.01);
}

}  // namespace
}  // namespace flowtape::models

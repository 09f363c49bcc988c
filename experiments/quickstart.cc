// Quickstart: RealNVP on two moons in a few lines of flowtape.
//
//   bazel run --config=opt //experiments:quickstart
//
// Trains 8 affine couplings (MLP 2 x 64) by maximum likelihood on 30k points,
// prints the test NLL (nats) and writes density.png (the learned density),
// samples.png (data | model samples) and loss.png (training and validation
// NLL per step) to the directory you ran it from.
#include <iostream>

#include "absl/strings/str_format.h"
#include "autodiff/tape.h"
#include "data/toy2d.h"
#include "experiments/common.h"
#include "experiments/figures.h"
#include "models/zoo.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "parallel/mpi/mpi_communicator.h"
#include "training/train.h"
#include "viz/heatmap.h"

using namespace flowtape;  // NOLINT: a demo reads better without prefixes

int main() {
  Rng rng(0);
  // 1. Data: train / validation / test samples of FFJORD's two moons.
  training::TrainData data;
  data.train = data::SampleToy2d("moons", 30000, rng).value();
  data.val = data::SampleToy2d("moons", 2000, rng).value();
  Tensor test = data::SampleToy2d("moons", 5000, rng).value();

  // 2. Model: standard normal base + 8 RealNVP couplings.
  models::ModelConfig config;  // event [2], 8 layers, hidden {64, 64}
  auto model = models::MakeModel("realnvp", config, rng).value();

  // 3. Train: Adam with cosine decay, validation every 250 steps.
  const int64_t steps = 5000;
  nn::Adam adam(*model, {.lr = 2e-3});
  adam.set_schedule(nn::CosineAnnealingLr(2e-3, steps));
  training::TrainOptions options;
  options.batch_size = 256;
  options.max_steps = steps;
  options.eval_every = 500;
  options.log_every = 1000;
  auto comm = parallel::CommunicatorFromEnvironment();  // under mpirun
  if (!comm.ok()) {
    std::cerr << comm.status() << "\n";
    return 1;
  }
  options.communicator = *comm;
  auto result = training::TrainNll(*model, adam, data, options);
  if (!result.ok()) {
    std::cerr << result.status() << "\n";
    return 1;
  }
  if (*comm != nullptr && (*comm)->rank() != 0) return 0;  // rank 0 reports

  // 4. Evaluate and draw.
  const double nll =
      training::EvaluateNll(training::ModelNll(*model), test, Tensor(), 5000);
  std::cout << absl::StrFormat(
      "RealNVP on moons: test NLL %.4f nats (%d steps, %.1f s)\n", nll,
      result->steps, result->seconds);
  const viz::Box box{-4, 4, -4, 4};
  auto log_prob = [&](const Tensor& x) { return model->LogProb(x); };
  viz::Figure density;
  density.Add(viz::DensityHeatmap(log_prob, box));
  experiments::WriteFigureOrWarn(density, "density.png");
  Tensor samples;
  {
    NoGradScope no_grad;
    samples = model->Sample(5000, rng);
  }
  experiments::WriteFigureOrWarn(experiments::SamplesFigure(test, samples, box),
                                 "samples.png");
  experiments::WriteFigureOrWarn(
      experiments::LossFigure(*result, "RealNVP on moons"), "loss.png");
  return 0;
}

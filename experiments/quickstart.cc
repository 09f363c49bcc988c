// Quickstart: RealNVP on two moons in a few lines of flowtape.
//
//   ./bazelw run --config=opt //experiments:quickstart [-- --steps=2000]
//
// Trains 8 affine couplings (MLP 2 x 64) by maximum likelihood on 30k points,
// prints the test NLL (nats) and writes, to --out_dir (cli/cli.h),
// model.ftm (models/model_file.h), density.png (the learned density),
// samples.png (data | model samples), loss.png (training and validation NLL
// per step), results.json and history.csv.
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "cli/figures.h"
#include "data/toy2d.h"
#include "models/model_file.h"
#include "models/zoo.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "training/train.h"
#include "viz/heatmap.h"

ABSL_FLAG(int64_t, steps, 5000, "optimizer steps");
ABSL_FLAG(uint64_t, seed, 0, "random seed");

using namespace flowtape;  // NOLINT: a demo reads better without prefixes

absl::Status Run(cli::Experiment& ex) {
  const int64_t steps = absl::GetFlag(FLAGS_steps);
  FT_RETURN_IF_ERROR(cli::CheckFlags({{"steps", steps, steps > 0, "> 0"}}));
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  ex.set_seed(seed);
  Rng rng(seed);
  // 1. Data: train / validation / test samples of FFJORD's two moons, in the
  //    model's dtype.
  training::TrainData data;
  FT_ASSIGN_OR_RETURN(Tensor train, data::SampleToy2d("moons", 30000, rng));
  FT_ASSIGN_OR_RETURN(Tensor val, data::SampleToy2d("moons", 2000, rng));
  FT_ASSIGN_OR_RETURN(Tensor test, data::SampleToy2d("moons", 5000, rng));
  data.train = Cast(train, ex.dtype());
  data.val = Cast(val, ex.dtype());
  test = Cast(test, ex.dtype());

  // 2. Model: standard normal base + 8 RealNVP couplings, one replica per
  //    thread (rank 0's parameters are broadcast).
  models::ModelSpec spec{"realnvp", models::ModelConfig{}, ex.dtype()};
  spec.config.dtype = ex.dtype();  // event [2], 8 layers, hidden {64, 64}
  auto make = [&](int) -> absl::StatusOr<training::Replica> {
    Rng init(seed);
    FT_ASSIGN_OR_RETURN(auto model,
                        models::MakeModel(spec.family, spec.config, init));
    FT_ASSIGN_OR_RETURN(auto adam,
                        nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/2e-3}));
    adam->set_schedule(nn::CosineAnnealingLr(2e-3, steps));
    return training::Replica{model, training::ModelNll(*model), adam};
  };

  // 3. Train: Adam with cosine decay, validation every 500 steps.
  training::TrainOptions options;
  options.batch_size = 256;
  options.max_steps = steps;
  options.eval_every = std::max<int64_t>(1, std::min<int64_t>(500, steps / 10));
  options.log_every = std::max<int64_t>(1, std::min<int64_t>(1000, steps / 5));
  options.seed = seed;
  FT_ASSIGN_OR_RETURN(training::ThreadedTraining run,
                      ex.Train(make, data, options));
  const auto& model = static_cast<const flows::FlowModel&>(*run.replica.model);
  ex.history().AddTraining(run.result, options.log_every, "realnvp");

  // 4. Evaluate, save and draw.
  const double nll =
      training::EvaluateNll(training::ModelNll(model), test, Tensor(), 5000);
  std::cout << absl::StrFormat(
      "RealNVP on moons: test NLL %.4f nats (%d steps, %.1f s)\n", nll,
      run.result.steps, run.result.seconds);
  ex.metrics()["test_nll"] = nll;
  ex.metrics()["best_val_nll"] = run.result.best_val_nll;
  ex.metrics()["steps"] = run.result.steps;
  ex.timings()["train_s"] = run.result.seconds;
  FT_ASSIGN_OR_RETURN(ex.config()["model"],
                      io::ParseJson(models::ModelSpecToJson(spec), "spec"));
  FT_RETURN_IF_ERROR(models::SaveModel(ex.Output("model.ftm"), spec, model));
  const viz::Box box{-4, 4, -4, 4};
  auto log_prob = [&](const Tensor& x) {
    return Cast(model.LogProb(x), kFloat64);
  };
  viz::Figure density;
  FT_ASSIGN_OR_RETURN(viz::Heatmap heatmap, viz::DensityHeatmap(log_prob, box));
  density.Add(heatmap);
  FT_RETURN_IF_ERROR(ex.WriteFigure(density, "density.png"));
  Tensor samples;
  {
    NoGradScope no_grad;
    samples = model.Sample(5000, rng);
  }
  FT_RETURN_IF_ERROR(ex.WriteFigure(
      cli::SamplesFigure(Cast(test, kFloat64), Cast(samples, kFloat64), box),
      "samples.png"));
  return ex.WriteFigure(cli::LossFigure(run.result, "RealNVP on moons"),
                        "loss.png");
}

int main(int argc, char** argv) {
  return cli::Main(
      {"quickstart",
       "RealNVP on two moons: test NLL, model.ftm, density / samples / loss "
       "figures.\n  ./bazelw run --config=opt //experiments:quickstart -- "
       "--steps=2000 --out_dir=runs/moons",
       kFloat32},
      argc, argv, Run);
}

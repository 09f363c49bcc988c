// Density estimation on MNIST / Fashion-MNIST (or sklearn's 8x8 digits):
// RealNVP, Glow, MAF, FFJORD, CFM (any zoo flow; cfm trains by flow matching,
// experiments/image_run.h) on dequantised, logit-transformed pixels; reports
// test bits/dim and writes, to --out_dir (cli/cli.h), model.ftm,
// samples.png (a grid of samples), loss.png, results.json and history.csv.
// Training runs on --threads replicas (experiments/image_run.h).
//
//   bazel run --config=opt //experiments:images -- --flow=glow --data=fashion
//   bazel run --config=opt //experiments:images -- --flow=maf --paper
//   bazel run --config=opt //experiments:images -- --flow=glow --conditional
//
// Default: a small configuration that finishes in minutes on 2 cores
// (a subset of the training set, 1000 steps of 64). --paper: the papers'
// model sizes on the full training set, 100k steps (models/image_flow.h) — days
// on a CPU.
// Missing data sets are installed by data/setup_data.sh.
#include <cmath>
#include <iostream>
#include <numeric>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "cli/figures.h"
#include "data/image_setup.h"
#include "experiments/image_run.h"
#include "models/image_flow.h"
#include "models/model_file.h"
#include "training/train.h"
#include "viz/image_grid.h"

ABSL_FLAG(std::string, flow, "realnvp",
          "realnvp | glow | maf | ffjord | cfm (any zoo flow)");
ABSL_FLAG(std::string, data, "mnist", "mnist | fashion | digits");
ABSL_FLAG(bool, paper, false, "paper-sized model and schedule");
ABSL_FLAG(bool, conditional, false,
          "class-conditional model (one-hot label as context)");
ABSL_FLAG(int64_t, steps, -1, "optimizer steps (-1: the config's)");
ABSL_FLAG(int64_t, batch, -1, "minibatch size (-1: the config's)");
ABSL_FLAG(int64_t, n_train, -1, "training images used (-1: the config's)");
ABSL_FLAG(int64_t, n_test, -1, "test images scored (-1: the config's)");
ABSL_FLAG(double, lr, -1,
          "Adam learning rate, warm-up + cosine (-1: config's)");
ABSL_FLAG(double, alpha, 0.05, "logit transform alpha (data/preprocess.h)");
ABSL_FLAG(uint64_t, seed, 0, "random seed");

namespace flowtape::experiments {
namespace {

absl::Status Run(cli::Experiment& ex) {
  const std::string flow = absl::GetFlag(FLAGS_flow);
  const std::string name = absl::GetFlag(FLAGS_data);
  const int64_t steps = absl::GetFlag(FLAGS_steps);
  const int64_t batch = absl::GetFlag(FLAGS_batch);
  const int64_t n_train = absl::GetFlag(FLAGS_n_train);
  const int64_t n_test = absl::GetFlag(FLAGS_n_test);
  const double lr = absl::GetFlag(FLAGS_lr);
  const double alpha = absl::GetFlag(FLAGS_alpha);
  const char* or_config = "-1 (the config's) or > 0";
  if (absl::Status s = cli::CheckFlags({
          {"steps", steps, steps == -1 || steps > 0, or_config},
          {"batch", batch, batch == -1 || batch > 0, or_config},
          {"n_train", n_train, n_train == -1 || n_train > 0, or_config},
          {"n_test", n_test, n_test == -1 || n_test > 0, or_config},
          {"lr", lr, lr == -1 || (std::isfinite(lr) && lr > 0),
           "-1 (the config's) or finite and > 0"},
          {"alpha", alpha, alpha >= 0 && alpha < 0.5, "in [0, 0.5)"},
      });
      !s.ok())
    return s;
  models::ImageRunConfig c =
      models::DefaultImageConfig(flow, absl::GetFlag(FLAGS_paper));
  auto flag = [](int64_t v, int64_t def) { return v > 0 ? v : def; };
  c.steps = flag(steps, c.steps);
  c.batch = flag(batch, c.batch);
  c.n_train = flag(n_train, c.n_train);
  c.n_test = flag(n_test, c.n_test);
  if (lr > 0) c.lr = lr;
  c.seed = absl::GetFlag(FLAGS_seed);
  ex.set_seed(c.seed);
  c.zoo.dtype = ex.dtype();
  const bool conditional = absl::GetFlag(FLAGS_conditional);
  const Shape expected = name == "digits" ? Shape{1, 8, 8} : Shape{1, 28, 28};
  // n_train and n_test are capped by the data set; the batch and the
  // config's model decide the footprint.
  if (absl::Status s = cli::CheckRunMemory(
          cli::ImageFlowFootprint(flow, c.zoo.layers, c.zoo.levels, c.zoo.depth,
                                  c.zoo.channels, c.zoo.hidden,
                                  conditional ? 10 : 0, expected[0],
                                  expected[1], expected[2], c.batch),
          absl::StrCat("--batch=", c.batch, " (--flow=", flow,
                       absl::GetFlag(FLAGS_paper) ? " --paper" : "", ")"));
      !s.ok())
    return s;

  auto train_set = data::LoadImageSetOrSetup(name, "train");
  if (!train_set.ok()) return train_set.status();
  auto test_set = data::LoadImageSetOrSetup(name, "test");
  if (!test_set.ok()) return test_set.status();
  if (absl::Status s =
          cli::CheckImageSet(*train_set, name + " train", expected, 10, 10);
      !s.ok())
    return s;
  if (absl::Status s =
          cli::CheckImageSet(*test_set, name + " test", expected, 10, 1);
      !s.ok())
    return s;
  Tensor test = Narrow(test_set->images, 0, 0,
                       std::min(c.n_test, test_set->images.dim(0)));
  const Tensor& all = train_set->images;
  const Shape image{all.dim(1), all.dim(2), all.dim(3)};
  Rng rng(c.seed);
  Tensor train_ctx, test_ctx;
  if (conditional) {
    c.zoo.context_dim = 10;
    train_ctx = models::OneHot(train_set->labels, 10);
    test_ctx = Narrow(models::OneHot(test_set->labels, 10), 0, 0, test.dim(0));
  }
  FT_ASSIGN_OR_RETURN(ImageRun run,
                      TrainImages(ex, flow, c, image, train_set->levels, alpha,
                                  all, rng, train_ctx));
  const models::ImageFlow* f = &run.flow;
  const training::TrainResult* r = &run.result;

  std::vector<double> bpd = f->BitsPerDim(test, 256, test_ctx);
  const double mean = std::accumulate(bpd.begin(), bpd.end(), 0.0) / bpd.size();
  std::cout << absl::StrFormat(
      "%s on %s: test %.4f bits/dim over %d images (val NLL %.2f nats; "
      "%d steps in %.1f s; %s)\n",
      flow, name, mean, bpd.size(), r->best_val_nll, r->steps, r->seconds,
      r->message);
  ex.metrics()["test_bits_per_dim"] = mean;
  ex.metrics()["test_images"] = bpd.size();
  ex.metrics()["best_val_nll"] = r->best_val_nll;
  ex.metrics()["steps"] = r->steps;
  ex.timings()["train_s"] = r->seconds;
  FT_RETURN_IF_ERROR(
      models::SaveModel(ex.Output("model.ftm"), run.spec, *f->model));
  // Unconditional: 64 samples. Conditional: row k holds 8 samples of class k.
  Tensor sample_ctx;
  if (conditional) {
    std::vector<int> classes;
    for (int k = 0; k < 10; ++k) classes.insert(classes.end(), 8, k);
    sample_ctx = models::OneHot(classes, 10);
  }
  viz::ImageGrid grid;
  grid.title = absl::StrCat(flow, " samples (", name, ")");
  grid.images =
      Cast(f->SampleImages(conditional ? 80 : 64, rng, sample_ctx), kFloat64);
  for (int k = 0; conditional && k < 10; ++k)
    grid.row_labels.push_back(absl::StrCat(k));
  viz::FigureOptions size;
  size.width = 560;
  size.height = conditional ? 680 : 580;
  viz::Figure samples(size);
  samples.Add(grid);
  FT_RETURN_IF_ERROR(ex.WriteFigure(samples, "samples.png"));
  return ex.WriteFigure(cli::LossFigure(*r, absl::StrCat(flow, " on ", name)),
                        "loss.png");
}

}  // namespace
}  // namespace flowtape::experiments

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"images",
       "density estimation on MNIST, Fashion-MNIST or 8x8 digits with any zoo "
       "flow: test bits/dim, samples, loss curve.\n"
       "  ./bazelw run --config=opt //experiments:images -- --flow=glow "
       "--data=fashion\n"
       "  ./bazelw run --config=opt //experiments:images -- --flow=maf --paper",
       flowtape::kFloat32},
      argc, argv, flowtape::experiments::Run);
}

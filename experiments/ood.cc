// Out-of-distribution likelihoods (Nalisnick et al. 2019, "Do Deep
// Generative Models Know What They Don't Know?"): a flow trained on
// Fashion-MNIST scores MNIST test images, which it has never seen, and
// typically assigns them HIGHER likelihood (lower bits/dim) than the
// Fashion-MNIST test images it was trained to model.
//
//   bazel run --config=opt //experiments:ood -- --flow=glow
//
// Prints the mean test bits/dim of both sets, the fraction of MNIST images
// scored above the Fashion median likelihood, and the AUROC of likelihood
// as an in-distribution detector (0.5 = chance; below 0.5 = the failure
// mode); writes, to --out_dir (cli/cli.h), histogram.png (bits/dim
// of Fashion-MNIST test and MNIST test images, low = likely), samples.png,
// model.ftm, results.json and history.csv. Training runs on --threads
// replicas (experiments/image_run.h).
#include <algorithm>
#include <cmath>
#include <iostream>
#include <numeric>
#include <tuple>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "data/image_setup.h"
#include "experiments/image_run.h"
#include "models/image_flow.h"
#include "models/model_file.h"
#include "viz/histogram.h"
#include "viz/image_grid.h"

ABSL_FLAG(std::string, flow, "glow", "realnvp | glow | maf (any zoo flow)");
ABSL_FLAG(bool, paper, false, "paper-sized model and schedule");
ABSL_FLAG(int64_t, steps, -1, "optimizer steps (-1: the config's)");
ABSL_FLAG(int64_t, n_train, -1, "training images used (-1: the config's)");
ABSL_FLAG(int64_t, n_test, -1, "test images scored per set (-1: config's)");
ABSL_FLAG(uint64_t, seed, 0, "random seed");

namespace flowtape::experiments {
namespace {

double Mean(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / v.size();
}

// P(score of a random in-distribution image < that of a random OOD image):
// the AUROC of "bits/dim below threshold => in distribution".
double Auroc(std::vector<double> in, std::vector<double> out) {
  std::sort(out.begin(), out.end());
  double wins = 0;
  for (double v : in) {
    auto lo = std::lower_bound(out.begin(), out.end(), v);
    auto hi = std::upper_bound(out.begin(), out.end(), v);
    wins += (out.end() - hi) + 0.5 * (hi - lo);
  }
  return wins / (static_cast<double>(in.size()) * out.size());
}

absl::Status Run(cli::Experiment& ex) {
  const std::string flow = absl::GetFlag(FLAGS_flow);
  const int64_t steps = absl::GetFlag(FLAGS_steps);
  const int64_t n_train = absl::GetFlag(FLAGS_n_train);
  const int64_t n_test = absl::GetFlag(FLAGS_n_test);
  const char* or_config = "-1 (the config's) or > 0";
  if (absl::Status s = cli::CheckFlags({
          {"steps", steps, steps == -1 || steps > 0, or_config},
          {"n_train", n_train, n_train == -1 || n_train > 0, or_config},
          {"n_test", n_test, n_test == -1 || n_test > 0, or_config},
      });
      !s.ok())
    return s;
  models::ImageRunConfig c =
      models::DefaultImageConfig(flow, absl::GetFlag(FLAGS_paper));
  if (steps > 0) c.steps = steps;
  if (n_train > 0) c.n_train = n_train;
  if (n_test > 0) c.n_test = n_test;
  c.seed = absl::GetFlag(FLAGS_seed);
  c.zoo.dtype = ex.dtype();
  ex.set_seed(c.seed);
  // n_train and n_test are capped by the data sets; the config's model and
  // batch decide the footprint.
  if (absl::Status s = cli::CheckRunMemory(
          cli::ImageFlowFootprint(flow, c.zoo.layers, c.zoo.levels, c.zoo.depth,
                                  c.zoo.channels, c.zoo.hidden, 0, 1, 28, 28,
                                  c.batch),
          absl::StrCat("--flow=", flow,
                       absl::GetFlag(FLAGS_paper) ? " --paper" : ""));
      !s.ok())
    return s;
  auto fashion = data::LoadImageSetOrSetup("fashion", "train");
  if (!fashion.ok()) return fashion.status();
  auto fashion_test = data::LoadImageSetOrSetup("fashion", "test");
  if (!fashion_test.ok()) return fashion_test.status();
  auto mnist_test = data::LoadImageSetOrSetup("mnist", "test");
  if (!mnist_test.ok()) return mnist_test.status();
  const Shape mnist_shape{1, 28, 28};
  for (auto [set, what, min_n] :
       {std::make_tuple(&*fashion, "fashion train", 10),
        std::make_tuple(&*fashion_test, "fashion test", 1),
        std::make_tuple(&*mnist_test, "mnist test", 1)})
    if (absl::Status s = cli::CheckImageSet(*set, what, mnist_shape, 10, min_n);
        !s.ok())
      return s;

  Rng rng(c.seed);
  FT_ASSIGN_OR_RETURN(ImageRun run, TrainImages(ex, flow, c, mnist_shape, 256,
                                                0.05, fashion->images, rng));
  const models::ImageFlow* f = &run.flow;
  const training::TrainResult* r = &run.result;
  FT_RETURN_IF_ERROR(
      models::SaveModel(ex.Output("model.ftm"), run.spec, *f->model));

  const int64_t n = std::min(
      {c.n_test, fashion_test->images.dim(0), mnist_test->images.dim(0)});
  std::vector<double> in =
      f->BitsPerDim(Narrow(fashion_test->images, 0, 0, n), 256);
  std::vector<double> out =
      f->BitsPerDim(Narrow(mnist_test->images, 0, 0, n), 256);
  std::vector<double> sorted_in = in;
  std::nth_element(sorted_in.begin(), sorted_in.begin() + n / 2,
                   sorted_in.end());
  const double median_in = sorted_in[n / 2];
  const double above = std::count_if(out.begin(), out.end(),
                                     [&](double v) { return v < median_in; }) /
                       static_cast<double>(n);
  std::cout << absl::StrFormat(
      "%s trained on Fashion-MNIST (%d steps, %.0f s)\n"
      "  Fashion-MNIST test (in-distribution): %.4f bits/dim\n"
      "  MNIST test (out-of-distribution):     %.4f bits/dim\n"
      "  MNIST images more likely than the Fashion median: %.1f%%\n"
      "  AUROC of likelihood as in-distribution score: %.3f%s\n",
      flow, r->steps, r->seconds, Mean(in), Mean(out), 100 * above,
      Auroc(in, out),
      Mean(out) < Mean(in) ? "  => OOD set is MORE likely (Nalisnick et al.)"
                           : "");
  ex.metrics()["fashion_test_bits_per_dim"] = Mean(in);
  ex.metrics()["mnist_test_bits_per_dim"] = Mean(out);
  ex.metrics()["mnist_above_fashion_median"] = above;
  ex.metrics()["auroc"] = Auroc(in, out);
  ex.metrics()["steps"] = r->steps;
  ex.timings()["train_s"] = r->seconds;
  const auto [lo, hi] = std::minmax_element(in.begin(), in.end());
  const auto [lo2, hi2] = std::minmax_element(out.begin(), out.end());
  const double x0 = std::floor(std::min(*lo, *lo2));
  const double x1 = std::ceil(std::max(*hi, *hi2));
  std::cout << absl::StrFormat("  histogram: bits/dim from %.0f to %.0f\n", x0,
                               x1);
  viz::Histogram histogram;
  histogram.title = flow + " trained on Fashion-MNIST";
  histogram.xlabel = "bits/dim";
  histogram.series = {{"Fashion-MNIST test (in-distribution)", in, {}},
                      {"MNIST test (out-of-distribution)", out, {}}};
  histogram.bins = 80;
  histogram.lo = x0;
  histogram.hi = x1;
  viz::FigureOptions wide;
  wide.width = 720;
  wide.height = 420;
  viz::Figure hist(wide);
  hist.Add(histogram);
  FT_RETURN_IF_ERROR(ex.WriteFigure(hist, "histogram.png"));
  viz::ImageGrid grid;
  grid.title = flow + " samples (Fashion-MNIST)";
  grid.images = Cast(f->SampleImages(64, rng), kFloat64);
  viz::FigureOptions square;
  square.width = 560;
  square.height = 580;
  viz::Figure samples(square);
  samples.Add(grid);
  return ex.WriteFigure(samples, "samples.png");
}

}  // namespace
}  // namespace flowtape::experiments

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"ood",
       "train a flow on Fashion-MNIST, score MNIST test images (Nalisnick et "
       "al. 2019): bits/dim of both sets, AUROC, histogram.\n"
       "  ./bazelw run --config=opt //experiments:ood -- --flow=glow",
       flowtape::kFloat32},
      argc, argv, flowtape::experiments::Run);
}

// Calibrating a Fashion-MNIST classifier with flows on the simplex.
//
//   ./bazelw run --config=opt //experiments:calibration [-- --epochs=N]
//
// 1. Trains a softmax classifier (MLP 784-256-256-10, ReLU, Adam, in
//    --dtype, on --threads replicas: the log-loss is the NLL of the labels,
//    fed to training::TrainNll as one-hot context) on 50k of the 60k
//    training images (pixels / 255), long enough to be overconfident.
// 2. Takes the remaining 10k training images as the held-out calibration
//    split and fits, by minimising the held-out log-loss -log q_y:
//      temperature scaling   q = softmax(log(p) / a)            (fcal, c = 0)
//      fcal                  q = softmax(log(p) / a + c)
//      generalized           q = softmax(A log(p) + c), A 1 = lambda 1
//    (manifolds/calibration.h; all start at the identity map; float64).
// 3. Prints test log-loss, accuracy and 15-bin ECE before and after, and
//    writes reliability.png: one reliability diagram per method in a 2 x 2
//    grid (uncalibrated, temperature; fcal, generalized), each titled with
//    its ECE (viz/reliability.h: accuracy bars per confidence bin, the gap to
//    the bin's mean confidence hatched red, the diagonal dashed).
// 4. Saves each calibrated classifier (the classifier and one map) as a
//    model file that models::LoadCalibrationModel rebuilds alone
//    (models/calibration_model.h): uncalibrated.ftm, temperature.ftm,
//    fcal.ftm, generalized.ftm. The test metrics are computed by these
//    models, so a loaded file reproduces them.
// Output in --out_dir (cli/cli.h): reliability.png, the four model
// files, results.json (their specs under config.models), history.csv (the
// classifier's log-loss, then each map's, by "run").
// A calibration map whose fit meets a failed pass or a non-finite loss or
// gradient stops the run with an error naming the map and the step (exit 1,
// recorded in results.json).
// The data set is Debian's dataset-fashion-mnist; if it is missing the
// experiment runs data/setup_data.sh fashion.
#include "manifolds/calibration.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "data/image_setup.h"
#include "models/calibration_model.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "viz/figure.h"
#include "viz/reliability.h"

ABSL_FLAG(int, epochs, 15, "classifier training epochs");
ABSL_FLAG(int, calib_steps, 1500, "Adam steps for each calibration map");
ABSL_FLAG(uint64_t, seed, 0, "random seed");
ABSL_FLAG(bool, print_bins, false, "print the reliability bins");

namespace flowtape {
namespace {
using manifolds::GeneralizedCalibration;
using manifolds::SimplexCalibration;

constexpr int kClasses = 10, kBins = 15;
constexpr int64_t kCalibration = 10000;  // held-out calibration images
constexpr int64_t kBatch = 128;          // classifier minibatch

// Rows idx of images [N, 1, 28, 28] as [len, 784] in [0, 1].
Tensor Features(const Tensor& images, const std::vector<int64_t>& idx) {
  const int64_t d = 784;
  FT_CHECK(images.rank() == 4 && images.numel() == images.dim(0) * d,
           "Features: images ", images.shape().ToString(),
           ", expected [N, 1, 28, 28]");
  Tensor out = Tensor::Empty({static_cast<int64_t>(idx.size()), d});
  for (size_t i = 0; i < idx.size(); ++i)
    for (int64_t j = 0; j < d; ++j)
      out.mutable_data<double>()[i * d + j] =
          images.data<double>()[idx[i] * d + j] / 255.0;
  return out;
}

// Mean -log q_y over rows of log-probabilities [N, K].
Tensor LogLoss(const Tensor& log_q, const std::vector<int>& y) {
  const int64_t n = log_q.dim(0);
  Tensor onehot = Tensor::Zeros({n, kClasses});
  for (int64_t i = 0; i < n; ++i)
    onehot.mutable_data<double>()[i * kClasses + y[i]] = 1;
  return -Sum(log_q * onehot) / static_cast<double>(n);
}

struct Metrics {
  double log_loss, accuracy, ece;
  std::vector<double> bin_acc, bin_conf;
  std::vector<int64_t> bin_count;
};

Metrics Evaluate(const Tensor& q, const std::vector<int>& y) {
  const int64_t n = q.dim(0);
  Metrics m{0,
            0,
            0,
            std::vector<double>(kBins, 0),
            std::vector<double>(kBins, 0),
            std::vector<int64_t>(kBins, 0)};
  for (int64_t i = 0; i < n; ++i) {
    const double* row = q.data<double>() + i * kClasses;
    const int pred = std::max_element(row, row + kClasses) - row;
    const double conf = row[pred];
    const bool hit = pred == y[i];
    m.log_loss -= std::log(std::max(row[y[i]], 1e-300));
    m.accuracy += hit;
    const int b = std::min(kBins - 1, static_cast<int>(conf * kBins));
    m.bin_acc[b] += hit;
    m.bin_conf[b] += conf;
    ++m.bin_count[b];
  }
  for (int b = 0; b < kBins; ++b) {
    if (m.bin_count[b] == 0) continue;
    m.ece += std::abs(m.bin_acc[b] - m.bin_conf[b]) / n;
    m.bin_acc[b] /= m.bin_count[b];
    m.bin_conf[b] /= m.bin_count[b];
  }
  m.log_loss /= n;
  m.accuracy /= n;
  return m;
}

viz::Reliability Reliability(const std::string& name, const Metrics& m,
                             bool legend) {
  viz::Reliability r;
  r.title = absl::StrFormat("%s: ECE %.3f", name, m.ece);
  r.accuracy = m.bin_acc;
  r.confidence = m.bin_conf;
  r.count = m.bin_count;
  r.legend = legend;
  return r;
}

// Fits `flow` on held-out probabilities p by minimising the log-loss; the
// loss every 100 steps goes to the history as run `name`. A failed forward
// pass, or a non-finite loss or gradient, stops the fit with an error naming
// the map, the step and the cause (cli::CheckStepFinite).
absl::Status Fit(const flows::Flow& flow, const Tensor& p,
                 const std::vector<int>& y, int steps, double lr,
                 const std::string& name, cli::History& history) {
  nn::AdamOptions o;
  o.lr = lr;
  auto opt = nn::Adam::Create(flow, o).value();
  for (int s = 0; s < steps; ++s) {
    flows::FlowResult q = flow.Forward(p);
    if (!q.status.ok()) {
      Tape::Get().Reset();
      return absl::Status(q.status.code(), absl::StrCat(name, ": step ", s + 1,
                                                        ": the map failed: ",
                                                        q.status.message()));
    }
    Tensor loss = LogLoss(Log(q.value), y);
    const double value = loss.item();
    if ((s + 1) % 100 == 0 || s + 1 == steps)
      history.Add({s + 1, value, NAN, NAN, NAN, name});
    opt->ZeroGrad();
    if (std::isfinite(value)) Backward(loss);
    Tape::Get().Reset();
    FT_RETURN_IF_ERROR(
        cli::CheckStepFinite(name, s + 1, value, flow.Parameters()));
    opt->Step();
  }
  opt->ZeroGrad();
  return absl::OkStatus();
}

absl::Status Run(cli::Experiment& ex) {
  const int epochs = absl::GetFlag(FLAGS_epochs);
  const int steps = absl::GetFlag(FLAGS_calib_steps);
  if (absl::Status s = cli::CheckFlags({
          {"epochs", epochs, epochs > 0, "> 0"},
          {"calib_steps", steps, steps >= 0, ">= 0"},
      });
      !s.ok())
    return s;
  auto train = data::LoadImageSetOrSetup("fashion", "train");
  if (!train.ok()) return train.status();
  auto test = data::LoadImageSetOrSetup("fashion", "test");
  if (!test.ok()) return test.status();
  // Features() reads 784 pixels per image and the labels index one-hot
  // rows; the calibration split takes kCalibration training images and the
  // classifier needs at least one minibatch of the rest.
  const Shape image{1, 28, 28};
  if (absl::Status s = cli::CheckImageSet(*train, "fashion train", image,
                                          kClasses, kCalibration + kBatch);
      !s.ok())
    return s;
  if (absl::Status s =
          cli::CheckImageSet(*test, "fashion test", image, kClasses, 1);
      !s.ok())
    return s;
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  ex.set_seed(seed);
  Rng rng(seed);
  std::vector<int64_t> perm(train->labels.size());
  std::iota(perm.begin(), perm.end(), 0);
  rng.Shuffle(perm);
  std::vector<int64_t> fit_idx(perm.begin(), perm.end() - kCalibration),
      cal_idx(perm.end() - kCalibration, perm.end()),
      test_idx(test->labels.size());
  std::iota(test_idx.begin(), test_idx.end(), 0);
  auto labels = [](const data::ImageSet& s, const std::vector<int64_t>& idx) {
    std::vector<int> y;
    for (int64_t i : idx) y.push_back(s.labels[i]);
    return y;
  };
  Tensor x_fit = Features(train->images, fit_idx);
  Tensor x_cal = Features(train->images, cal_idx);
  Tensor x_test = Features(test->images, test_idx);
  std::vector<int> y_fit = labels(*train, fit_idx),
                   y_cal = labels(*train, cal_idx),
                   y_test = labels(*test, test_idx);

  // 1. Classifier: log-loss = NLL of the one-hot labels (the context).
  auto onehot = [](const std::vector<int>& y) {
    Tensor t = Tensor::Zeros({static_cast<int64_t>(y.size()), kClasses});
    for (size_t i = 0; i < y.size(); ++i)
      t.mutable_data<double>()[i * kClasses + y[i]] = 1;
    return t;
  };
  const DType dtype = ex.dtype();
  models::CalibrationModelSpec spec;
  spec.sizes = {784, 256, 256, kClasses};
  spec.activation = "relu";
  spec.dtype = dtype;
  training::TrainData data;
  data.train = Cast(x_fit, dtype);
  data.train_context = Cast(onehot(y_fit), dtype);
  auto make = [&](int) -> absl::StatusOr<training::Replica> {
    Rng init(seed);
    FT_ASSIGN_OR_RETURN(
        auto net, nn::MLP::Create(spec.sizes, nn::Activation::kRelu, init));
    net->To(dtype);
    const nn::MLP* m = net.get();
    training::NllFn nll = [m](const Tensor& x, const Tensor& c, Rng&) {
      return -Sum(LogSoftmax((*m)(x), 1) * c) / static_cast<double>(x.dim(0));
    };
    FT_ASSIGN_OR_RETURN(auto adam,
                        nn::Adam::Create(*net, nn::AdamOptions{/*lr=*/1e-3}));
    return training::Replica{net, nll, adam};
  };
  const int64_t per_epoch = x_fit.dim(0) / kBatch;
  training::TrainOptions topt;
  topt.batch_size = kBatch;
  topt.max_steps = epochs * per_epoch;
  topt.log_every = per_epoch;
  topt.seed = seed;
  FT_ASSIGN_OR_RETURN(training::ThreadedTraining run,
                      ex.Train(make, data, topt));
  ex.history().AddTraining(run.result, topt.log_every, "classifier");
  ex.timings()["classifier_s"] = run.result.seconds;
  // The trained net (made by `make` above; Replica holds it as const).
  const auto classifier = std::const_pointer_cast<nn::MLP>(
      std::static_pointer_cast<const nn::MLP>(run.replica.model));
  Tensor p_cal;
  {
    NoGradScope no_grad;
    p_cal = Cast(Softmax((*classifier)(Cast(x_cal, dtype)), 1), kFloat64);
  }

  // 2. Calibration maps, fitted on the held-out split.
  FT_ASSIGN_OR_RETURN(
      auto temperature,
      SimplexCalibration::Create({/*n=*/kClasses, /*temperature_only=*/true}));
  FT_ASSIGN_OR_RETURN(auto fcal, SimplexCalibration::Create({/*n=*/kClasses}));
  FT_ASSIGN_OR_RETURN(auto general,
                      GeneralizedCalibration::Create({/*n=*/kClasses}, rng));
  FT_RETURN_IF_ERROR(Fit(*temperature, p_cal, y_cal, steps, 0.02, "temperature",
                         ex.history()));
  FT_RETURN_IF_ERROR(
      Fit(*fcal, p_cal, y_cal, steps, 0.02, "fcal", ex.history()));
  FT_RETURN_IF_ERROR(
      Fit(*general, p_cal, y_cal, steps, 0.01, "generalized", ex.history()));
  const char* keys[] = {"uncalibrated", "temperature", "fcal", "generalized"};
  const std::shared_ptr<flows::Flow> maps[] = {nullptr, temperature, fcal,
                                               general};
  std::vector<std::shared_ptr<models::CalibratedClassifier>> calibrated;
  for (int k = 0; k < 4; ++k) {
    spec.map = k == 0 ? "none" : keys[k];
    calibrated.push_back(
        std::make_shared<models::CalibratedClassifier>(classifier, maps[k]));
    FT_RETURN_IF_ERROR(models::SaveCalibrationModel(
        ex.Output(std::string(keys[k]) + ".ftm"), spec, *calibrated.back()));
    FT_ASSIGN_OR_RETURN(
        ex.config()["models"][keys[k]],
        io::ParseJson(models::CalibrationModelSpecToJson(spec), "spec"));
  }

  // 3. Test metrics and reliability diagrams.
  struct Row {
    std::string name;
    Metrics m;
  };
  std::vector<Row> rows;
  NoGradScope no_grad;
  const std::string names[] = {
      "uncalibrated",
      absl::StrFormat("temperature (T = %.3f)", temperature->a()),
      absl::StrFormat("fcal (a = %.3f)", fcal->a()),
      "generalized (A 10x10, c)"};
  for (int k = 0; k < 4; ++k)
    rows.push_back(
        {names[k], Evaluate(calibrated[k]->Probabilities(x_test), y_test)});
  std::cout << absl::StrFormat("\nFashion-MNIST test set (%d images)\n",
                               static_cast<int>(y_test.size()));
  std::cout << absl::StrFormat("%-30s %10s %10s %10s\n", "method", "log-loss",
                               "ECE (15)", "accuracy");
  viz::FigureOptions grid;
  grid.cols = 2;
  viz::Figure reliability(grid);
  for (size_t k = 0; k < rows.size(); ++k) {
    const Row& r = rows[k];
    ex.metrics()[keys[k]] = {{"log_loss", r.m.log_loss},
                             {"ece", r.m.ece},
                             {"accuracy", r.m.accuracy}};
    std::cout << absl::StrFormat("%-30s %10.4f %10.4f %10.4f\n", r.name,
                                 r.m.log_loss, r.m.ece, r.m.accuracy);
    reliability.Add(Reliability(r.name, r.m, reliability.size() == 0));
    if (absl::GetFlag(FLAGS_print_bins))
      for (int b = 0; b < kBins; ++b)
        std::cout << absl::StrFormat(
            "    bin %2d  n %5d  acc %.3f  conf %.3f\n", b, r.m.bin_count[b],
            r.m.bin_acc[b], r.m.bin_conf[b]);
  }
  return ex.WriteFigure(reliability, "reliability.png");
}

}  // namespace
}  // namespace flowtape

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"calibration",
       "calibrate a Fashion-MNIST MLP classifier with flows on the simplex "
       "(temperature, fcal, generalized): log-loss, ECE, reliability "
       "diagrams.\n"
       "  ./bazelw run --config=opt //experiments:calibration -- --epochs=15",
       flowtape::kFloat32},
      argc, argv, flowtape::Run);
}

// Calibrating a Fashion-MNIST classifier with flows on the simplex.
//
//   ./bazelw run --config=opt //experiments:calibration [-- --epochs=N]
//
// 1. Trains a softmax classifier (MLP 784-256-256-10, ReLU, Adam) on 50k of
//    the 60k training images (pixels / 255), long enough to be overconfident.
// 2. Takes the remaining 10k training images as the held-out calibration
//    split and fits, by minimising the held-out log-loss -log q_y:
//      temperature scaling   q = softmax(log(p) / a)            (fcal, c = 0)
//      fcal                  q = softmax(log(p) / a + c)
//      generalized           q = softmax(A log(p) + c), A 1 = lambda 1
//    (manifolds/calibration.h; all start at the identity map).
// 3. Prints test log-loss, accuracy and 15-bin ECE before and after, and
//    writes reliability.png: one reliability diagram per method in a 2 x 2
//    grid (uncalibrated, temperature; fcal, generalized), each titled with
//    its ECE (viz/reliability.h: accuracy bars per confidence bin, the gap to
//    the bin's mean confidence hatched red, the diagonal dashed).
// The data set is Debian's dataset-fashion-mnist; if it is missing the
// experiment runs experiments/setup_data.sh fashion.
#include "manifolds/calibration.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "experiments/common.h"
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
      out.mutable_data()[i * d + j] = images.data()[idx[i] * d + j] / 255.0;
  return out;
}

// Mean -log q_y over rows of log-probabilities [N, K].
Tensor LogLoss(const Tensor& log_q, const std::vector<int>& y) {
  const int64_t n = log_q.dim(0);
  Tensor onehot = Tensor::Zeros({n, kClasses});
  for (int64_t i = 0; i < n; ++i)
    onehot.mutable_data()[i * kClasses + y[i]] = 1;
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
    const double* row = q.data() + i * kClasses;
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

// Fits `flow` on held-out probabilities p by minimising the log-loss.
void Fit(const flows::Flow& flow, const Tensor& p, const std::vector<int>& y,
         int steps, double lr) {
  nn::AdamOptions o;
  o.lr = lr;
  nn::Adam opt(flow, o);
  for (int s = 0; s < steps; ++s) {
    Tensor loss = LogLoss(Log(flow.Forward(p).value), y);
    Backward(loss);
    opt.Step();
    opt.ZeroGrad();
    Tape::Get().Reset();
  }
}

absl::Status Run() {
  const int epochs = absl::GetFlag(FLAGS_epochs);
  const int steps = absl::GetFlag(FLAGS_calib_steps);
  if (absl::Status s = experiments::CheckFlags({
          {"epochs", epochs, epochs > 0, "> 0"},
          {"calib_steps", steps, steps >= 0, ">= 0"},
      });
      !s.ok())
    return s;
  auto train = experiments::LoadImageSetOrSetup("fashion", "train");
  if (!train.ok()) return train.status();
  auto test = experiments::LoadImageSetOrSetup("fashion", "test");
  if (!test.ok()) return test.status();
  // Features() reads 784 pixels per image and the labels index one-hot
  // rows; the calibration split takes kCalibration training images and the
  // classifier needs at least one minibatch of the rest.
  const Shape image{1, 28, 28};
  if (absl::Status s = experiments::CheckImageSet(
          *train, "fashion train", image, kClasses, kCalibration + kBatch);
      !s.ok())
    return s;
  if (absl::Status s =
          experiments::CheckImageSet(*test, "fashion test", image, kClasses, 1);
      !s.ok())
    return s;
  Rng rng(absl::GetFlag(FLAGS_seed));
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

  // 1. Classifier.
  nn::MLP net({784, 256, 256, kClasses}, nn::Activation::kRelu, rng);
  nn::AdamOptions o;
  o.lr = 1e-3;
  nn::Adam opt(net, o);
  const int64_t batch = kBatch, n_fit = x_fit.dim(0);
  for (int epoch = 0; epoch < epochs; ++epoch) {
    std::vector<int64_t> order(n_fit);
    std::iota(order.begin(), order.end(), 0);
    rng.Shuffle(order);
    double total = 0;
    for (int64_t s = 0; s + batch <= n_fit; s += batch) {
      std::vector<int64_t> idx(order.begin() + s, order.begin() + s + batch);
      std::vector<int> yb;
      for (int64_t i : idx) yb.push_back(y_fit[i]);
      Tensor loss = LogLoss(LogSoftmax(net(IndexSelect(x_fit, 0, idx)), 1), yb);
      total += loss.item() * batch;
      Backward(loss);
      opt.Step();
      opt.ZeroGrad();
      Tape::Get().Reset();
    }
    std::cout << absl::StrFormat("epoch %2d  train log-loss %.4f\n", epoch + 1,
                                 total / (n_fit - n_fit % batch))
              << std::flush;
  }
  Tensor p_cal, p_test;
  {
    NoGradScope no_grad;
    p_cal = Softmax(net(x_cal), 1);
    p_test = Softmax(net(x_test), 1);
  }

  // 2. Calibration maps, fitted on the held-out split.
  auto temperature = std::make_unique<SimplexCalibration>(kClasses, true);
  auto fcal = std::make_unique<SimplexCalibration>(kClasses);
  auto general = std::make_unique<GeneralizedCalibration>(kClasses, rng);
  Fit(*temperature, p_cal, y_cal, steps, 0.02);
  Fit(*fcal, p_cal, y_cal, steps, 0.02);
  Fit(*general, p_cal, y_cal, steps, 0.01);

  // 3. Test metrics and reliability diagrams.
  struct Row {
    std::string name;
    Metrics m;
  };
  std::vector<Row> rows;
  NoGradScope no_grad;
  rows.push_back({"uncalibrated", Evaluate(p_test, y_test)});
  rows.push_back({absl::StrFormat("temperature (T = %.3f)", temperature->a()),
                  Evaluate(temperature->Forward(p_test).value, y_test)});
  rows.push_back({absl::StrFormat("fcal (a = %.3f)", fcal->a()),
                  Evaluate(fcal->Forward(p_test).value, y_test)});
  rows.push_back({"generalized (A 10x10, c)",
                  Evaluate(general->Forward(p_test).value, y_test)});
  std::cout << absl::StrFormat("\nFashion-MNIST test set (%d images)\n",
                               static_cast<int>(y_test.size()));
  std::cout << absl::StrFormat("%-30s %10s %10s %10s\n", "method", "log-loss",
                               "ECE (15)", "accuracy");
  viz::FigureOptions grid;
  grid.cols = 2;
  viz::Figure reliability(grid);
  for (const Row& r : rows) {
    std::cout << absl::StrFormat("%-30s %10.4f %10.4f %10.4f\n", r.name,
                                 r.m.log_loss, r.m.ece, r.m.accuracy);
    reliability.Add(Reliability(r.name, r.m, reliability.size() == 0));
    if (absl::GetFlag(FLAGS_print_bins))
      for (int b = 0; b < kBins; ++b)
        std::cout << absl::StrFormat(
            "    bin %2d  n %5d  acc %.3f  conf %.3f\n", b, r.m.bin_count[b],
            r.m.bin_acc[b], r.m.bin_conf[b]);
  }
  experiments::WriteFigureOrWarn(reliability, "reliability.png");
  return absl::OkStatus();
}

}  // namespace
}  // namespace flowtape

int main(int argc, char** argv) {
  return flowtape::experiments::RunMain(argc, argv, "calibration",
                                        flowtape::Run);
}

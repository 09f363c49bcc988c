// Augmented neural ODEs (Dupont, Doucet & Teh 2019), concentric spheres:
//   g(x) = -1 for |x| <= r1,  g(x) = +1 for r2 <= |x| <= r3  (x in R^d)
// with r1 = 0.5, r2 = 1, r3 = 1.5. A neural ODE's time-1 map is a
// homeomorphism of R^d, so no linear head on it separates the ball from the
// shell: the loss plateaus and the flow stiffens (NFE grows) trying. The
// augmented ODE (state padded with p zeros) lifts the ball out of the shell.
//
//   ./bazelw run --config=opt //benchmarks:anode_spheres -- [flags]
//   flags: --dim=2 --augment=1 --steps=1500 --batch=128 --train_size=2000
//
// Both models: TimeMlp dynamics (hidden 32, relu), linear head, MSE loss,
// Adam (--lr, default 1e-3), dopri5 rtol = atol = 1e-3 (Dupont's), adjoint
// gradients. Prints loss and forward/backward NFE along training, then a
// table. Writes to --out_dir (cli/cli.h) node_loss.png,
// anode_loss.png, results.json (the table; config: the flags and the model
// settings) and history.csv (MSE and NFE per 50 steps, run "node" /
// "anode"), and each trained model as node.ckpt / anode.ckpt: an
// nn/checkpoint.h file of the NeuralOdeModel's parameters, whose metadata
// "neural_ode" holds {"dim", "augment_dim", "hidden", "activation", "rtol",
// "atol", "dtype"} (NeuralOdeModel::Create with those options rebuilds it;
// LoadCheckpoint restores it). --dtype: default f64 (Dupont's runs).
// A failed ODE solve, or a non-finite loss or gradient, stops the run: the
// error names the model, the step and the cause, results.json records it
// (the metrics of a model trained before stay) and the exit code is 1. There
// is no retry: a loss that is not finite has no result to report.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "cli/figures.h"
#include "flows/cnf/anode.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"

ABSL_FLAG(int64_t, dim, 2, "data dimension d");
ABSL_FLAG(int64_t, augment, 1, "augmented dimensions p of the ANODE");
ABSL_FLAG(int64_t, steps, 1500, "Adam steps");
ABSL_FLAG(int64_t, batch, 128, "batch size");
ABSL_FLAG(int64_t, train_size, 2000, "training points");
ABSL_FLAG(double, lr, 1e-3, "Adam learning rate");
ABSL_FLAG(uint64_t, seed, 1, "seed");

namespace flowtape::benchmarks {
namespace {

// n points, half in the ball |x| <= 0.5 (label -1), half in the shell
// 1 <= |x| <= 1.5 (label +1), uniform in radius, direction uniform.
void Spheres(int64_t n, int64_t d, Rng& rng, Tensor* x, Tensor* y) {
  *x = Tensor::Empty({n, d});
  *y = Tensor::Empty({n, 1});
  for (int64_t i = 0; i < n; ++i) {
    double* xi = x->mutable_data<double>() + i * d;
    double norm = 0;
    for (int64_t j = 0; j < d; ++j) {
      xi[j] = rng.Normal();
      norm += xi[j] * xi[j];
    }
    norm = std::sqrt(norm);
    const bool inner = i % 2 == 0;
    const double r = inner ? 0.5 * rng.Uniform() : 1.0 + 0.5 * rng.Uniform();
    for (int64_t j = 0; j < d; ++j) xi[j] *= r / norm;
    y->mutable_data<double>()[i] = inner ? -1.0 : 1.0;
  }
}

struct Row {
  double loss_final, accuracy, test_mse, nfe_f, nfe_b, nfe_f_late, nfe_b_late,
      seconds;
  training::TrainResult losses;  // per step
};

absl::StatusOr<Row> Train(int64_t augment, const Tensor& x, const Tensor& y,
                          const Tensor& xt, const Tensor& yt,
                          cli::Experiment& ex) {
  const int64_t d = absl::GetFlag(FLAGS_dim),
                steps = absl::GetFlag(FLAGS_steps);
  const int64_t batch = absl::GetFlag(FLAGS_batch), n = x.dim(0);
  Rng rng(absl::GetFlag(FLAGS_seed));
  flows::cnf::NeuralOdeOptions o;
  o.augment_dim = augment;
  o.hidden = {32};
  o.activation = nn::Activation::kRelu;
  o.ode.rtol = o.ode.atol = 1e-3;
  o.ode.stats = std::make_shared<ode::OdeStatsSink>();  // NFE per step
  FT_ASSIGN_OR_RETURN(std::shared_ptr<flows::cnf::NeuralOdeModel> created,
                      flows::cnf::NeuralOdeModel::Create(d, o, rng));
  const flows::cnf::NeuralOdeModel& model = *created;
  created->To(ex.dtype());
  FT_ASSIGN_OR_RETURN(
      auto adam,
      nn::Adam::Create(model, nn::AdamOptions{/*lr=*/absl::GetFlag(FLAGS_lr)}));
  Row row{0, 0, 0, 0, 0, 0, 0, 0, {}};
  int64_t late = 0, done = 0;  // steps completed
  const char* name = augment > 0 ? "anode" : "node";
  cli::HistoryWindow history(ex.history(), name, 50);
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < steps; ++step) {
    std::vector<int64_t> idx;
    for (int64_t k = 0; k < batch; ++k) idx.push_back(rng.UniformInt(n));
    Tensor xb = IndexSelect(x, 0, idx), yb = IndexSelect(y, 0, idx);
    o.ode.stats->Reset();
    auto out = model(xb);
    if (!out.ok())
      return absl::Status(
          out.status().code(),
          absl::StrCat(name, ": step ", step,
                       ": the ODE solve failed: ", out.status().message()));
    Tensor loss = Mean(Square(*out - yb));
    const double value = loss.item();
    adam->ZeroGrad();
    if (std::isfinite(value)) Backward(loss);
    Tape::Get().Reset();
    FT_RETURN_IF_ERROR(
        cli::CheckStepFinite(name, step, value, model.Parameters()));
    adam->Step();
    const ode::OdeStats stats = o.ode.stats->Get();
    const double f = stats.forward.nfe, b = stats.backward.nfe;
    row.nfe_f += f, row.nfe_b += b;
    row.losses.losses.push_back(value);
    history.Step(value, f + b);
    if (step >= steps * 3 / 4) row.nfe_f_late += f, row.nfe_b_late += b, ++late;
    if (step % 50 == 0 || step + 1 == steps)
      std::printf("  %-5s step %4ld  loss %.4f  nfe fwd %3.0f bwd %3.0f\n",
                  name, static_cast<long>(step), value, f, b);
    done = step + 1;
  }
  history.Flush();
  row.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  // Per completed step (NaN if training stopped before the first).
  auto per = [](double total, int64_t n) { return n > 0 ? total / n : NAN; };
  row.nfe_f = per(row.nfe_f, done), row.nfe_b = per(row.nfe_b, done);
  row.nfe_f_late = per(row.nfe_f_late, late);
  row.nfe_b_late = per(row.nfe_b_late, late);
  NoGradScope no_grad;
  auto out = model(x);
  if (!out.ok())
    return absl::Status(out.status().code(),
                        absl::StrCat(name, ": the training-set solve failed: ",
                                     out.status().message()));
  row.loss_final = Mean(Square(*out - y)).item();
  int64_t right = 0;
  for (int64_t i = 0; i < n; ++i) right += ((*out)[i] > 0) == (y[i] > 0);
  row.accuracy = static_cast<double>(right) / n;
  auto test_out = model(xt);
  if (!test_out.ok())
    return absl::Status(test_out.status().code(),
                        absl::StrCat(name, ": the test-set solve failed: ",
                                     test_out.status().message()));
  row.test_mse = Mean(Square(*test_out - yt)).item();
  if (!std::isfinite(row.loss_final) || !std::isfinite(row.test_mse))
    return absl::FailedPreconditionError(
        absl::StrCat(name, ": non-finite MSE of the trained model (train ",
                     row.loss_final, ", test ", row.test_mse, ")"));
  const io::Json meta = {{"dim", d},
                         {"augment_dim", augment},
                         {"hidden", o.hidden},
                         {"activation", "relu"},
                         {"rtol", o.ode.rtol},
                         {"atol", o.ode.atol},
                         {"dtype", cli::DTypeFlagName(ex.dtype())}};
  FT_RETURN_IF_ERROR(nn::SaveCheckpoint(ex.Output(absl::StrCat(name, ".ckpt")),
                                        model, nullptr,
                                        {{"neural_ode", meta.dump()}}));
  return row;
}

}  // namespace
}  // namespace flowtape::benchmarks

// Flags, and the run's memory (an MLP of (d + p) -> 32 -> (d + p) with up to
// ~100 function evaluations per step on the tape) before anything is made.
absl::Status CheckAnodeFlags() {
  namespace cli = flowtape::cli;
  const int64_t d = absl::GetFlag(FLAGS_dim), p = absl::GetFlag(FLAGS_augment),
                steps = absl::GetFlag(FLAGS_steps),
                batch = absl::GetFlag(FLAGS_batch),
                n = absl::GetFlag(FLAGS_train_size);
  if (absl::Status s = cli::CheckFlags({
          {"dim", d, d > 0, "> 0"},
          {"augment", p, p >= 0, ">= 0"},
          {"steps", steps, steps > 0, "> 0"},
          {"batch", batch, batch > 0, "> 0"},
          {"train_size", n, n > 0, "> 0"},
          {"lr", absl::GetFlag(FLAGS_lr),
           std::isfinite(absl::GetFlag(FLAGS_lr)) &&
               absl::GetFlag(FLAGS_lr) > 0,
           "finite and > 0"},
      });
      !s.ok())
    return s;
  const double width = static_cast<double>(d) + static_cast<double>(p);
  return cli::CheckRunMemory(
      cli::FlowFootprint(100, width, 0, {32}, batch,
                         (static_cast<double>(n) + 2000.0) * (d + 1)),
      absl::StrCat("--dim=", d, " --augment=", p, " --batch=", batch,
                   " --train_size=", n));
}

absl::Status Run(flowtape::cli::Experiment& ex) {
  using namespace flowtape;              // NOLINT
  using namespace flowtape::benchmarks;  // NOLINT
  FT_RETURN_IF_ERROR(CheckAnodeFlags());
  ex.SingleThreaded("the ODE models train in one loop counting NFE");
  ex.set_seed(absl::GetFlag(FLAGS_seed));
  Rng rng(absl::GetFlag(FLAGS_seed) + 7);
  Tensor x, y;
  Spheres(absl::GetFlag(FLAGS_train_size), absl::GetFlag(FLAGS_dim), rng, &x,
          &y);
  Tensor xt, yt;  // fresh points from the same regions
  Spheres(2000, absl::GetFlag(FLAGS_dim), rng, &xt, &yt);
  for (Tensor* t : {&x, &y, &xt, &yt}) *t = Cast(*t, ex.dtype());
  const int64_t p = absl::GetFlag(FLAGS_augment);
  std::printf("concentric spheres in R^%ld, %ld points, %ld Adam steps\n",
              static_cast<long>(absl::GetFlag(FLAGS_dim)),
              static_cast<long>(x.dim(0)),
              static_cast<long>(absl::GetFlag(FLAGS_steps)));
  ex.history().set_has_nfe(true);
  ex.config() = {{"dim", absl::GetFlag(FLAGS_dim)},
                 {"augment", p},
                 {"steps", absl::GetFlag(FLAGS_steps)},
                 {"batch", absl::GetFlag(FLAGS_batch)},
                 {"train_size", absl::GetFlag(FLAGS_train_size)},
                 {"test_size", 2000},
                 {"lr", absl::GetFlag(FLAGS_lr)},
                 {"hidden", std::vector<int64_t>{32}},
                 {"activation", "relu"},
                 {"rtol", 1e-3},
                 {"atol", 1e-3},
                 {"gradients", "adjoint"},
                 {"loss", "MSE"}};
  Row node, anode;
  for (const auto& [name, aug, row] :
       {std::tuple<const char*, int64_t, Row*>{"node", 0, &node},
        {"anode", p, &anode}}) {
    FT_ASSIGN_OR_RETURN(*row, Train(aug, x, y, xt, yt, ex));
    const Row& r = *row;
    ex.metrics()[name] = {{"train_mse", r.loss_final},
                          {"accuracy", r.accuracy},
                          {"test_mse", r.test_mse},
                          {"nfe_forward", r.nfe_f},
                          {"nfe_backward", r.nfe_b},
                          {"nfe_forward_late", r.nfe_f_late},
                          {"nfe_backward_late", r.nfe_b_late},
                          {"seconds", r.seconds}};
    FT_RETURN_IF_ERROR(
        ex.WriteFigure(cli::LossFigure(r.losses, absl::StrCat(name, ": MSE")),
                       absl::StrCat(name, "_loss.png")));
  }
  std::printf(
      "\n| model       | train MSE | accuracy | test MSE | NFE fwd/step | NFE "
      "bwd/step | "
      "last 25%% fwd | last 25%% bwd | wall s |\n");
  std::printf(
      "|-------------|-----------|----------|----------|--------------|--------"
      "------|-----"
      "---------|--------------|--------|\n");
  std::printf(
      "| node        | %9.4f | %8.3f | %8.4f | %12.1f | %12.1f | %12.1f | "
      "%12.1f | "
      "%6.1f |\n",
      node.loss_final, node.accuracy, node.test_mse, node.nfe_f, node.nfe_b,
      node.nfe_f_late, node.nfe_b_late, node.seconds);
  std::printf(
      "| anode (p=%ld) | %9.4f | %8.3f | %8.4f | %12.1f | %12.1f | %12.1f | "
      "%12.1f | "
      "%6.1f |\n",
      static_cast<long>(p), anode.loss_final, anode.accuracy, anode.test_mse,
      anode.nfe_f, anode.nfe_b, anode.nfe_f_late, anode.nfe_b_late,
      anode.seconds);
  return absl::OkStatus();
}

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"anode_spheres",
       "Dupont et al. 2019 concentric spheres: neural ODE vs augmented neural "
       "ODE, MSE, accuracy and NFE per step.\n"
       "  ./bazelw run --config=opt //benchmarks:anode_spheres -- --dim=2 "
       "--augment=1",
       flowtape::kFloat64},
      argc, argv, Run);
}

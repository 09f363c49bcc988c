// RNODE vs FFJORD (Finlay et al. 2020, Table/Fig. "training time"): the
// same CNF (ConcatSquash 2 -> 64 -> 64 -> 2, tanh, exact trace or
// --trace=hutchinson, dopri5 rtol = atol = 1e-5, adjoint), the same data and
// the same budget of Adam steps, trained by maximum likelihood with and without
// the optimal-transport regularisers. Models (--models, comma-separated):
//   ffjord:    no regulariser;
//   rnode:     lambda_k int |f|^2 dt + lambda_j int |df/dz|_F^2 dt (the
//              paper's equations as written, CnfOptions kIntegral units);
//   rnode_ref: the paper's lambda = --ref_lambda (0.01) in the units of the
//              reference code (cfinlay/ffjord-rnode: 0.5 mean_i f_i^2 and
//              mean_i (eps'J)_i^2, kPerDimMean), i.e. lambda/(2d) int |f|^2
//              + lambda/d int |J|_F^2: the paper's actual setting.
//
//   ./bazelw run --config=opt //benchmarks:rnode_vs_ffjord -- [--data=...]
//   flags: --data=8gaussians --steps=3000 --batch=256 --lambda_k=0.1
//          --lambda_j=0.1 --ref_lambda=0.01 --trace=exact
//          --models=ffjord,rnode,rnode_ref
//
// Prints per model: test NLL (nats, exact trace, rtol 1e-5), mean forward
// NFE (the pass's "nfe" extra) and backward NFE (an ode::OdeStatsSink in the
// options) per training step (whole run and the last quarter),
// wall time and time per step. RNODE's claim: similar NLL with fewer NFE,
// hence less training time. Writes to --out_dir (cli/cli.h)
// <model>_loss.png, results.json (the table; config: the flags and the
// CNF's settings), history.csv (NLL + penalty and NFE per 50 steps, run =
// the model) and <model>.ckpt per model: an nn/checkpoint.h file of the
// ConcatSquashNet's parameters, whose metadata "cnf" holds {"dim", "hidden",
// "activation", "rtol", "atol", "dtype"} (ConcatSquashNet::Create with
// those, then LoadCheckpoint, rebuilds the field; Cnf::Create on it the
// flow). --dtype: default f64.
// A failed ODE solve (training or the test NLL), or a non-finite loss or
// gradient, stops the run: the error names the model, the step and the
// cause, results.json records it (the metrics of the models trained before
// stay) and the exit code is 1. There is no retry.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "cli/figures.h"
#include "data/toy2d.h"
#include "flows/cnf/cnf.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"

ABSL_FLAG(std::string, data, "8gaussians", "toy density");
ABSL_FLAG(int64_t, steps, 3000, "Adam steps per model (~2.5 min each)");
ABSL_FLAG(int64_t, batch, 256, "batch size");
ABSL_FLAG(double, lr, 1e-3, "Adam learning rate");
ABSL_FLAG(double, lambda_k, 0.1,
          "rnode: kinetic-energy weight (int |f|^2 units)");
ABSL_FLAG(double, lambda_j, 0.1,
          "rnode: Jacobian-Frobenius weight (int |J|_F^2 units)");
ABSL_FLAG(double, ref_lambda, 0.01,
          "rnode_ref: both weights in the reference code's per-dim units");
ABSL_FLAG(std::string, models, "ffjord,rnode,rnode_ref",
          "comma-separated subset of ffjord, rnode, rnode_ref");
ABSL_FLAG(int64_t, test_size, 2000, "test points");
ABSL_FLAG(uint64_t, seed, 1, "seed (the same for every model)");
ABSL_FLAG(std::string, trace, "exact", "exact | hutchinson (Gaussian)");

namespace flowtape::benchmarks {
namespace {
constexpr double kLog2Pi = 1.8378770664093453;

struct Row {
  std::string name;
  double test_nll, nfe_f, nfe_b, nfe_f_late, nfe_b_late, seconds;
  int64_t steps;
  training::TrainResult losses;  // per step
};

// total / n, NaN when nothing was counted (training stopped at step 0).
double PerStep(double total, int64_t n) { return n > 0 ? total / n : NAN; }

// -mean log p(x) with a standard normal base.
Tensor Nll(const flows::FlowResult& r) {
  Tensor logp0 = Sum(Square(r.value), 1) * -0.5 - kLog2Pi;
  return -Mean(logp0 + r.logdet);
}

absl::StatusOr<Row> Train(const std::string& name, double lk, double lj,
                          flows::cnf::RegularizerUnits units,
                          const Tensor& test, cli::Experiment& ex) {
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  Rng rng(seed);
  flows::cnf::CnfOptions o;
  o.lambda_kinetic = lk;
  o.lambda_jacobian = lj;
  o.regularizer_units = units;
  o.ode.stats = std::make_shared<ode::OdeStatsSink>();  // backward NFE
  if (absl::GetFlag(FLAGS_trace) == "hutchinson")
    o.trace = flows::cnf::TraceEstimator::kHutchinson;
  FT_ASSIGN_OR_RETURN(std::shared_ptr<flows::cnf::ConcatSquashNet> net,
                      flows::cnf::ConcatSquashNet::Create(
                          2, {64, 64}, nn::Activation::kTanh, rng));
  FT_ASSIGN_OR_RETURN(std::shared_ptr<flows::cnf::Cnf> cnf,
                      flows::cnf::Cnf::Create(net, o));
  cnf->To(ex.dtype());
  nn::AdamOptions ao;
  ao.lr = absl::GetFlag(FLAGS_lr);
  auto adam = nn::Adam::Create(*cnf, ao).value();
  Rng data_rng(seed + 100), noise_rng(seed + 200);
  const int64_t steps = absl::GetFlag(FLAGS_steps);
  Row row{name, 0, 0, 0, 0, 0, 0, 0, {}};
  cli::HistoryWindow history(ex.history(), name, 50);
  int64_t late = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < steps; ++step) {
    Tensor x = Cast(*data::SampleToy2d(absl::GetFlag(FLAGS_data),
                                       absl::GetFlag(FLAGS_batch), data_rng),
                    ex.dtype());
    o.ode.stats->Reset();
    flows::FlowResult r = cnf->Forward(x, Tensor(), &noise_rng);
    if (!r.status.ok())
      return absl::Status(
          r.status.code(),
          absl::StrCat(name, ": step ", step,
                       ": the ODE solve failed: ", r.status.message()));
    Tensor nll = Nll(r);
    Tensor penalty = r.extra(flows::cnf::kRegularization);
    Tensor loss = penalty.defined() ? nll + Mean(penalty) : nll;
    const double value = loss.item(), nll_value = nll.item();
    adam->ZeroGrad();
    if (std::isfinite(value)) Backward(loss);
    Tape::Get().Reset();
    FT_RETURN_IF_ERROR(
        cli::CheckStepFinite(name, step, value, cnf->Parameters()));
    adam->Step();
    const double f = r.extra(flows::cnf::kNfe)[0];
    const double b = static_cast<double>(o.ode.stats->Get().backward.nfe);
    row.nfe_f += f;
    row.nfe_b += b;
    row.losses.losses.push_back(value);
    history.Step(value, f + b);
    if (step >= steps * 3 / 4) row.nfe_f_late += f, row.nfe_b_late += b, ++late;
    if (step % 50 == 0 || step + 1 == steps)
      std::printf(
          "  %-7s step %4ld  nll %.4f  loss %.4f  nfe fwd %3.0f bwd %3.0f\n",
          name.c_str(), static_cast<long>(step), nll_value, value, f, b);
    row.steps = step + 1;
  }
  history.Flush();
  row.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  row.nfe_f = PerStep(row.nfe_f, row.steps);
  row.nfe_b = PerStep(row.nfe_b, row.steps);
  row.nfe_f_late = PerStep(row.nfe_f_late, late);
  row.nfe_b_late = PerStep(row.nfe_b_late, late);
  NoGradScope no_grad;
  flows::cnf::CnfOptions exact = o;
  exact.trace = flows::cnf::TraceEstimator::kExact;
  FT_ASSIGN_OR_RETURN(std::shared_ptr<flows::cnf::Cnf> eval,
                      flows::cnf::Cnf::Create(net, exact));
  flows::FlowResult r = eval->Forward(test);
  if (!r.status.ok())
    return absl::Status(r.status.code(),
                        absl::StrCat(name, ": the test NLL solve failed: ",
                                     r.status.message()));
  row.test_nll = Nll(r).item();
  if (!std::isfinite(row.test_nll))
    return absl::FailedPreconditionError(absl::StrCat(
        name, ": non-finite test NLL (", row.test_nll, ") after training"));
  const io::Json meta = {{"dim", 2},
                         {"hidden", std::vector<int64_t>{64, 64}},
                         {"activation", "tanh"},
                         {"rtol", o.ode.rtol},
                         {"atol", o.ode.atol},
                         {"dtype", cli::DTypeFlagName(ex.dtype())}};
  FT_RETURN_IF_ERROR(nn::SaveCheckpoint(ex.Output(name + ".ckpt"), *net,
                                        nullptr, {{"cnf", meta.dump()}}));
  return row;
}

}  // namespace
}  // namespace flowtape::benchmarks

// Flags, and the run's memory (ConcatSquash 2-64-64-2 with up to ~100
// function evaluations per step on the tape) before anything is made.
absl::Status CheckRnodeFlags() {
  namespace cli = flowtape::cli;
  const int64_t steps = absl::GetFlag(FLAGS_steps),
                batch = absl::GetFlag(FLAGS_batch),
                test_size = absl::GetFlag(FLAGS_test_size);
  const double lr = absl::GetFlag(FLAGS_lr), lk = absl::GetFlag(FLAGS_lambda_k),
               lj = absl::GetFlag(FLAGS_lambda_j),
               lr_ref = absl::GetFlag(FLAGS_ref_lambda);
  const std::string trace = absl::GetFlag(FLAGS_trace);
  auto finite_nonneg = [](double v) { return std::isfinite(v) && v >= 0; };
  if (absl::Status s = cli::CheckFlags({
          {"steps", steps, steps > 0, "> 0"},
          {"batch", batch, batch > 0, "> 0"},
          {"test_size", test_size, test_size > 0, "> 0"},
          {"lr", lr, std::isfinite(lr) && lr > 0, "finite and > 0"},
          {"lambda_k", lk, finite_nonneg(lk), "finite and >= 0"},
          {"lambda_j", lj, finite_nonneg(lj), "finite and >= 0"},
          {"ref_lambda", lr_ref, finite_nonneg(lr_ref), "finite and >= 0"},
          {"trace", trace, trace == "exact" || trace == "hutchinson",
           "exact or hutchinson"},
      });
      !s.ok())
    return s;
  return cli::CheckRunMemory(
      cli::FlowFootprint(
          100, 2, 1, {64, 64}, batch,
          2.0 * (static_cast<double>(test_size) + static_cast<double>(batch))),
      absl::StrCat("--batch=", batch, " --test_size=", test_size));
}

absl::Status Run(flowtape::cli::Experiment& ex) {
  using namespace flowtape;              // NOLINT
  using namespace flowtape::benchmarks;  // NOLINT
  FT_RETURN_IF_ERROR(CheckRnodeFlags());
  ex.SingleThreaded("the CNFs train in one loop counting NFE");
  ex.set_seed(absl::GetFlag(FLAGS_seed));
  Rng test_rng(12345);
  FT_ASSIGN_OR_RETURN(
      Tensor test, data::SampleToy2d(absl::GetFlag(FLAGS_data),
                                     absl::GetFlag(FLAGS_test_size), test_rng));
  test = Cast(test, ex.dtype());
  ex.history().set_has_nfe(true);
  ex.config() = {{"data", absl::GetFlag(FLAGS_data)},
                 {"models", absl::GetFlag(FLAGS_models)},
                 {"steps", absl::GetFlag(FLAGS_steps)},
                 {"batch", absl::GetFlag(FLAGS_batch)},
                 {"lr", absl::GetFlag(FLAGS_lr)},
                 {"lambda_k", absl::GetFlag(FLAGS_lambda_k)},
                 {"lambda_j", absl::GetFlag(FLAGS_lambda_j)},
                 {"ref_lambda", absl::GetFlag(FLAGS_ref_lambda)},
                 {"test_size", absl::GetFlag(FLAGS_test_size)},
                 {"trace", absl::GetFlag(FLAGS_trace)},
                 {"net", "ConcatSquash 2-64-64-2 tanh"},
                 {"ode", "dopri5 rtol = atol = 1e-5, adjoint"}};
  std::printf(
      "data %s, %ld Adam steps, batch %ld, ConcatSquash 2-64-64-2 tanh,"
      " %s trace, dopri5 rtol=atol=1e-5, adjoint\n",
      absl::GetFlag(FLAGS_data).c_str(),
      static_cast<long>(absl::GetFlag(FLAGS_steps)),
      static_cast<long>(absl::GetFlag(FLAGS_batch)),
      absl::GetFlag(FLAGS_trace).c_str());
  const std::vector<std::string> models =
      absl::StrSplit(absl::GetFlag(FLAGS_models), ',');
  for (const std::string& m : models)
    if (m != "ffjord" && m != "rnode" && m != "rnode_ref")
      return absl::InvalidArgumentError(absl::StrCat(
          "--models: unknown '", m, "' (ffjord, rnode, rnode_ref)"));
  std::vector<Row> rows;
  for (const std::string& m : models) {
    absl::StatusOr<Row> row;
    if (m == "ffjord") {
      row = Train(m, 0, 0, flows::cnf::RegularizerUnits::kIntegral, test, ex);
    } else if (m == "rnode") {
      row =
          Train(m, absl::GetFlag(FLAGS_lambda_k), absl::GetFlag(FLAGS_lambda_j),
                flows::cnf::RegularizerUnits::kIntegral, test, ex);
    } else {  // rnode_ref
      const double l = absl::GetFlag(FLAGS_ref_lambda);
      row = Train(m, l, l, flows::cnf::RegularizerUnits::kPerDimMean, test, ex);
    }
    if (!row.ok()) return row.status();
    rows.push_back(*row);
    const Row& r = rows.back();
    ex.metrics()[m] = {{"test_nll", r.test_nll},
                       {"nfe_forward", r.nfe_f},
                       {"nfe_backward", r.nfe_b},
                       {"nfe_forward_late", r.nfe_f_late},
                       {"nfe_backward_late", r.nfe_b_late},
                       {"seconds", r.seconds},
                       {"steps", r.steps}};
    FT_RETURN_IF_ERROR(ex.WriteFigure(
        cli::LossFigure(r.losses, m + ": NLL + penalty"), m + "_loss.png"));
  }
  std::printf(
      "\n| model     | test NLL | NFE fwd/step | NFE bwd/step | last 25%% fwd "
      "| "
      "last 25%% bwd | wall s | s/step |\n");
  std::printf(
      "|-----------|----------|--------------|--------------|--------------|---"
      "-----------|--------|--------|\n");
  for (const Row& r : rows)
    std::printf(
        "| %-9s | %8.4f | %12.1f | %12.1f | %12.1f | %12.1f | %6.1f | %6.3f "
        "|\n",
        r.name.c_str(), r.test_nll, r.nfe_f, r.nfe_b, r.nfe_f_late,
        r.nfe_b_late, r.seconds, PerStep(r.seconds, r.steps));
  std::printf(
      "\nrnode: lambda_K=%g, lambda_J=%g (int |f|^2, int |J|_F^2); rnode_ref: "
      "lambda=%g in per-dim units (= %g int |f|^2 + %g int |J|_F^2 in d=2)\n",
      absl::GetFlag(FLAGS_lambda_k), absl::GetFlag(FLAGS_lambda_j),
      absl::GetFlag(FLAGS_ref_lambda), absl::GetFlag(FLAGS_ref_lambda) / 4,
      absl::GetFlag(FLAGS_ref_lambda) / 2);
  if (!rows.empty() && rows[0].name == "ffjord")
    for (size_t k = 1; k < rows.size(); ++k)
      std::printf(
          "%s/ffjord: NFE (fwd+bwd) x%.2f, wall time x%.2f\n",
          rows[k].name.c_str(),
          (rows[k].nfe_f + rows[k].nfe_b) / (rows[0].nfe_f + rows[0].nfe_b),
          rows[k].seconds / rows[0].seconds);
  return absl::OkStatus();
}

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"rnode_vs_ffjord",
       "RNODE vs FFJORD (Finlay et al. 2020) on a 2-D toy density: test NLL, "
       "NFE per step, wall time.\n"
       "  ./bazelw run --config=opt //benchmarks:rnode_vs_ffjord -- "
       "--data=8gaussians --steps=3000",
       flowtape::kFloat64},
      argc, argv, Run);
}

// Four ways to train the same continuous flow on toy 2-D densities:
//   ffjord:  maximum likelihood through the ODE (Grathwohl et al. 2019);
//   rnode:   the same plus the kinetic and Jacobian regularisers
//            (Finlay et al. 2020; lambda = 0.01 in the reference code's
//            per-dimension units);
//   cfm:     conditional flow matching on the OT path, sigma_min = 1e-4,
//            independent pairs (Lipman et al. 2023): no ODE solve in
//            training;
//   otcfm:   the same with each minibatch paired by the exact assignment
//            (Tong et al. 2023).
// Every method trains ConcatSquash 2-64-64-2 (tanh) with Adam for the same
// number of steps and batch, from the same initial weights, and is scored
// as the same kind of flow: test NLL by the exact trace with dopri5
// (rtol = atol = 1e-5), sampling NFE = the dopri5 evaluations of one
// generative solve of 1000 base draws. Training NFE per step: the forward
// solve's plus the adjoint's backward solve's evaluations (ML methods);
// 1 field evaluation (flow matching). "to ffjord" is the training wall time
// (evaluations excluded) after which the method's test NLL, evaluated every
// --eval_every steps, first reaches FFJORD's final test NLL ("-" if never).
//
//   ./bazelw run --config=opt //benchmarks:cnf_training_methods -- --quick
//   flags: --data=8gaussians,moons,checkerboard --steps=2000 --batch=256
//          --lr=1e-3 --eval_every=200 --test_size=2000 --seed=1 --quick
//   (--quick: 150 steps, evaluation every 50, 500 test points.)
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "data/toy2d.h"
#include "experiments/budget.h"
#include "experiments/cli.h"
#include "experiments/common.h"
#include "flows/cnf/cnf.h"
#include "flows/matching/cfm.h"
#include "flows/matching/cfm_flow.h"
#include "nn/optim.h"

ABSL_FLAG(std::string, data, "8gaussians,moons,checkerboard",
          "comma-separated toy densities");
ABSL_FLAG(int64_t, steps, 2000, "Adam steps per method");
ABSL_FLAG(int64_t, batch, 256, "batch size");
ABSL_FLAG(double, lr, 1e-3, "Adam learning rate");
ABSL_FLAG(int64_t, eval_every, 200, "test NLL every N steps");
ABSL_FLAG(int64_t, test_size, 2000, "test points");
ABSL_FLAG(uint64_t, seed, 1, "seed (the same for every method)");
ABSL_FLAG(bool, quick, false, "150 steps, eval every 50, 500 test points");

namespace flowtape {
namespace {
constexpr double kLog2Pi = 1.8378770664093453;
const char* const kMethods[] = {"ffjord", "rnode", "cfm", "otcfm"};

struct Settings {
  int64_t steps, batch, eval_every, test_size;
  double lr;
  uint64_t seed;
};

struct Row {
  std::string data, method;
  double test_nll = NAN, nfe_per_step = 0, sampling_nfe = NAN, seconds = 0;
  std::vector<std::pair<double, double>> curve;  // (train seconds, test NLL)
};

Tensor Nll(const flows::FlowResult& r) {
  return -Mean(Sum(Square(r.value), 1) * -0.5 - kLog2Pi + r.logdet);
}

// Test NLL and sampling NFE of the field's flow (dopri5, 1e-5).
void Score(const flows::cnf::Cnf& cnf, const Tensor& test, Rng& rng, Row* row,
           bool final) {
  NoGradScope no_grad;
  flows::FlowResult r = cnf.Forward(test);
  const double nll = r.status.ok() ? Nll(r).item() : NAN;
  row->curve.emplace_back(row->seconds, nll);
  if (!final) return;
  row->test_nll = nll;
  flows::FlowResult s = cnf.Inverse(Tensor::Randn({1000, 2}, rng));
  if (s.status.ok()) row->sampling_nfe = s.extra(flows::cnf::kNfe)[0];
}

absl::StatusOr<Row> Train(const std::string& data, const std::string& method,
                          const Settings& st, const Tensor& test) {
  Rng rng(st.seed);
  FT_ASSIGN_OR_RETURN(std::shared_ptr<flows::cnf::ConcatSquashNet> net,
                      flows::cnf::ConcatSquashNet::Create(
                          2, {64, 64}, nn::Activation::kTanh, rng));
  const bool ml = method == "ffjord" || method == "rnode";
  flows::cnf::CnfOptions o;  // dopri5, rtol = atol = 1e-5, adjoint
  o.ode.stats = std::make_shared<ode::OdeStatsSink>();
  std::shared_ptr<flows::cnf::Cnf> cnf;  // what is scored
  std::shared_ptr<flows::cnf::Cnf> trained;
  std::shared_ptr<flows::matching::FlowMatching> fm;
  if (ml) {
    FT_ASSIGN_OR_RETURN(cnf, flows::cnf::Cnf::Create(net, o));
    if (method == "rnode") {
      flows::cnf::CnfOptions r = o;
      r.lambda_kinetic = r.lambda_jacobian = 0.01;
      r.regularizer_units = flows::cnf::RegularizerUnits::kPerDimMean;
      FT_ASSIGN_OR_RETURN(trained, flows::cnf::Cnf::Create(net, r));
    } else {
      trained = cnf;
    }
  } else {
    FT_ASSIGN_OR_RETURN(cnf, flows::matching::MakeFlowMatchingCnf(net, o));
    flows::matching::FlowMatchingOptions fo;
    if (method == "otcfm")
      fo.coupling = flows::matching::CouplingKind::kExactOt;
    FT_ASSIGN_OR_RETURN(auto path,
                        flows::matching::AffinePath::OptimalTransport(1e-4));
    FT_ASSIGN_OR_RETURN(fm,
                        flows::matching::FlowMatching::Create(net, path, fo));
  }
  nn::Adam adam(*net, nn::AdamOptions{.lr = st.lr});
  Rng data_rng(st.seed + 100), noise_rng(st.seed + 200),
      eval_rng(st.seed + 300);
  Row row;
  row.data = data;
  row.method = method;
  double nfe = 0;
  for (int64_t step = 1; step <= st.steps; ++step) {
    FT_ASSIGN_OR_RETURN(Tensor x, data::SampleToy2d(data, st.batch, data_rng));
    const auto t0 = std::chrono::steady_clock::now();
    adam.ZeroGrad();
    Tensor loss;
    if (ml) {
      o.ode.stats->Reset();
      flows::FlowResult r = trained->Forward(x, Tensor(), &noise_rng);
      if (!r.status.ok())
        return absl::InternalError(absl::StrCat(method, " on ", data,
                                                ": solve failed at step ", step,
                                                ": ", r.status.message()));
      loss = Nll(r);
      if (Tensor p = r.extra(flows::cnf::kRegularization); p.defined())
        loss = loss + Mean(p);
      Backward(loss);
      nfe += r.extra(flows::cnf::kNfe)[0] +
             static_cast<double>(o.ode.stats->Get().backward.nfe);
    } else {
      FT_ASSIGN_OR_RETURN(loss, fm->Loss(x, Tensor(), noise_rng));
      Backward(loss);
      nfe += 1;
    }
    adam.Step();
    const double loss_value = loss.item();
    Tape::Get().Reset();
    row.seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    if (step % st.eval_every == 0 || step == st.steps) {
      Score(*cnf, test, eval_rng, &row, step == st.steps);
      std::printf("  %-12s %-7s step %5ld  loss %.4f  test NLL %.4f\n",
                  data.c_str(), method.c_str(), static_cast<long>(step),
                  loss_value, row.curve.back().second);
    }
  }
  row.nfe_per_step = nfe / st.steps;
  return row;
}

std::string TimeTo(const Row& r, double target) {
  for (const auto& [seconds, nll] : r.curve)
    if (nll <= target) return absl::StrCat(absl::SixDigits(seconds));
  return "-";
}

absl::Status Run(experiments::Experiment& ex) {
  if (ex.dtype() != kFloat64)
    return absl::UnimplementedError(
        "--dtype=f32: cnf_training_methods compares the methods in float64");
  ex.SingleThreaded("each method runs its own training loop");
  ex.set_seed(absl::GetFlag(FLAGS_seed));
  Settings st{absl::GetFlag(FLAGS_steps),      absl::GetFlag(FLAGS_batch),
              absl::GetFlag(FLAGS_eval_every), absl::GetFlag(FLAGS_test_size),
              absl::GetFlag(FLAGS_lr),         absl::GetFlag(FLAGS_seed)};
  if (absl::GetFlag(FLAGS_quick)) {
    st.steps = 150;
    st.eval_every = 50;
    st.test_size = 500;
  }
  const std::vector<std::string> sets =
      absl::StrSplit(absl::GetFlag(FLAGS_data), ',');
  bool known = true;
  for (const std::string& d : sets) {
    bool found = false;
    for (const std::string& n : data::Toy2dNames()) found |= n == d;
    known &= found;
  }
  FT_RETURN_IF_ERROR(experiments::CheckFlags({
      {"data", absl::GetFlag(FLAGS_data), known,
       "toy densities (data/toy2d.h)"},
      {"steps", st.steps, st.steps > 0, "> 0"},
      {"batch", st.batch, st.batch > 0 && st.batch <= 512,
       "in [1, 512] (the exact OT coupling)"},
      {"lr", st.lr, std::isfinite(st.lr) && st.lr > 0, "finite and > 0"},
      {"eval_every", st.eval_every, st.eval_every > 0, "> 0"},
      {"test_size", st.test_size, st.test_size > 0, "> 0"},
  }));
  FT_RETURN_IF_ERROR(experiments::CheckRunMemory(
      experiments::FlowFootprint(100, 2, 0, {64, 64},
                                 std::max<int64_t>(st.batch, st.test_size),
                                 2.0 * (st.test_size + st.batch)),
      absl::StrCat("--batch=", st.batch, " --test_size=", st.test_size)));
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf(
      "ConcatSquash 2-64-64-2 tanh, Adam lr %g, %ld steps, batch %ld; "
      "scored by dopri5 rtol=atol=1e-5, exact trace, %ld test points\n",
      st.lr, static_cast<long>(st.steps), static_cast<long>(st.batch),
      static_cast<long>(st.test_size));
  std::vector<Row> rows;
  for (const std::string& d : sets) {
    Rng test_rng(12345);
    FT_ASSIGN_OR_RETURN(Tensor test,
                        data::SampleToy2d(d, st.test_size, test_rng));
    for (const char* m : kMethods) {
      FT_ASSIGN_OR_RETURN(Row r, Train(d, m, st, test));
      rows.push_back(r);
    }
  }
  std::printf(
      "\n| data         | method | test NLL | NFE/step | sampling NFE | train "
      "s "
      "| s to ffjord NLL |\n|--------------|--------|----------|----------|---"
      "-----------|---------|-----------------|\n");
  for (const Row& r : rows) {
    double target = NAN;
    for (const Row& f : rows)
      if (f.data == r.data && f.method == "ffjord") target = f.test_nll;
    ex.metrics()[r.data + "/" + r.method] = {{"test_nll", r.test_nll},
                                             {"nfe_per_step", r.nfe_per_step},
                                             {"sampling_nfe", r.sampling_nfe},
                                             {"seconds", r.seconds}};
    std::printf("| %-12s | %-6s | %8.4f | %8.1f | %12.0f | %7.1f | %15s |\n",
                r.data.c_str(), r.method.c_str(), r.test_nll, r.nfe_per_step,
                r.sampling_nfe, r.seconds, TimeTo(r, target).c_str());
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace flowtape

int main(int argc, char** argv) {
  return flowtape::experiments::Main(
      {"cnf_training_methods",
       "FFJORD, RNODE, CFM and OT-CFM on toy densities: test NLL, NFE per "
       "step, sampling NFE, time to FFJORD's test NLL.\n"
       "  ./bazelw run --config=opt //benchmarks:cnf_training_methods -- "
       "--quick",
       flowtape::kFloat64},
      argc, argv, flowtape::Run);
}

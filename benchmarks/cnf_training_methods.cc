// Four ways to train the same continuous flow, on toy 2-D densities and on
// sklearn's 8x8 digits as 64-D vectors (--data=digits; the pixel levels
// 0..16 dequantised with uniform noise, v = (k + u) / 17, and
// logit-transformed, y = logit(0.05 + 0.9 v), as the image pipeline does:
// fresh noise per training batch, one fixed draw for the 300 test rows;
// test NLL in nats of y, 1497 training rows; installs python3-sklearn on
// first use):
//   ffjord:  maximum likelihood through the ODE (Grathwohl et al. 2019);
//   rnode:   the same plus the kinetic and Jacobian regularisers
//            (Finlay et al. 2020; lambda = --rnode_lambda, default the
//            paper's 0.01, in the reference code's per-dimension units);
//   cfm:     conditional flow matching on the OT path (sigma_min 1e-4),
//            independent pairs (Lipman et al. 2023): no ODE solve in
//            training;
//   otcfm:   the same with each minibatch paired by the exact assignment
//            (Tong et al. 2023).
// Two flags vary the flow-matching methods without new method names:
//   --fm_path=vp       both train on the variance-preserving path (Lipman et
//                      al. 2023 eq. 18-19, beta_min 0.1, beta_max 20,
//                      sigma_min = --fm_sigma_min, which must be > 0 then;
//                      flows/matching/path.h) instead of the OT path;
//   --coupling=sinkhorn  otcfm pairs each minibatch by pairs drawn from the
//                      entropic plan (--sinkhorn_epsilon relative to the
//                      batch's largest cost, at most --sinkhorn_max_iters
//                      iterations to an L1 marginal error of --sinkhorn_tol;
//                      a plan that does not get there stops the run,
//                      flows/matching/cfm.h) instead of the exact
//                      assignment (--otcfm_batch may then be up to 2048);
//                      cfm keeps independent pairs.
// A non-default choice is part of the method's label in the tables,
// results.json, history.csv and checkpoint names: cfm-vp, otcfm-sinkhorn,
// otcfm-vp-sinkhorn.
// Every method trains ConcatSquash d-h-h-d (tanh; h = 64 for d = 2, 256 for the
// digits) with Adam from the same initial weights. The ML methods run --lr
// (--lr_schedule) at --batch; flow matching its own recipe: a linear warm-up to
// --fm_lr = 3e-2 over the first --fm_warmup = 10% of its steps, then cosine to
// 0 over the rest (--fm_lr_schedule), batch --fm_batch (default --batch) for
// CFM and --otcfm_batch = 128 for OT-CFM (on the toy sets it needs about as
// many steps at 128 as at 256, and a 128-assignment costs a fraction of a 256
// one), sigma_min --fm_sigma_min, and it is scored with the EMA of its
// parameters (--fm_ema_decay = 0.999, with TrainFlowMatching's warm-up d =
// min(decay, (1 + k) / (10 + k)) after update k; the update is part of the
// timed step). Every method is scored as the same kind of flow: test NLL by the
// exact trace (the net's closed form) with dopri5 (rtol = atol = 1e-5; the ML
// methods train with that trace in d = 2 and with Hutchinson's estimator on the
// digits), sampling NFE = the dopri5 evaluations of one generative solve of
// 1000 base draws (Cnf::Inverse: x and the log-density). The ML methods run
// --steps steps, the flow-matching ones --fm_steps (default: the same).
// Training NFE per step: the forward solve's plus the adjoint's backward
// solve's evaluations (ML methods), also as its mean over the first, middle and
// last 10% of the steps ("NFE 10/50/90%": FFJORD's dynamics stiffen as it
// trains, RNODE's regularisers are meant to keep them flat, Finlay et al.
// 2020); 1 field evaluation (flow matching). "s to ffjord" is the training wall
// time (evaluations excluded) after which the method's test NLL, evaluated
// every --eval_every steps, first reaches FFJORD's final test NLL ("-" if
// never; FFJORD trained in the same run). results.json keeps each method's
// evaluations as `curve_step_wall_cpu_nll` ([step, train wall s, train CPU s,
// test NLL]), so runs of one method each (--methods=) compare too.
//
// Sampling, the second table (every method, the same 1000 base draws z as
// "sampling NFE"): the generative map alone (Cnf::Transport: no
// log-density), whose cost and error reflect how straight the learned paths
// are (Tong et al. 2023, Liu et al. 2023):
//   x-only NFE   dopri5 evaluations at rtol = atol = each of --sample_tols
//                (first step: Hairer's rule, or --first_step). "sampling
//                NFE" above also integrates the log-density, whose integrand
//                tr(df/dz) varies along straight paths too, and its count
//                can hide the difference (flows/cnf/cnf.h, Transport);
//   Euler error  mean_i |x_k,i - x_ref,i| (Euclidean) after k equal Euler
//                steps, k in --euler_steps, x_ref by dopri5 at 1e-9
//                (float32: 1e-6);
//   S            straightness, int_0^1 E |(x_1 - x_0) - dx/ds|^2 ds along
//                the reference paths (0 for straight ones; trapezoid on 32
//                intervals), and S / E |x_1 - x_0|^2 in results.json.
//
// Times are given as wall / CPU seconds of training (this process's CPU
// time; on a machine shared with other jobs the CPU column is the fair
// one).
//
// --dtype=f64 (default) or f32: every method trains and is scored in that
// dtype (the net is built in float64 and converted, Module::To, so both start
// from the same rounded weights; data, test set and base draws are cast).
// Tolerances by dtype (dopri5, rtol = atol):
//                      float64              float32
//   training, test NLL,
//   sampling NFE       1e-5                 1e-5 (far above float32's floor
//                                           6e-8, ode/solver.h: the two
//                                           dtypes take the same steps)
//   --sample_tols      1e-3,1e-5,1e-7       1e-3,1e-5,1e-6 (default; each
//                      (each in [1e-9, 1))  in [1e-6, 1): 1e-7 is below
//                                           float32's epsilon 1.2e-7)
//   x_ref, S paths     1e-9                 1e-6 (the tightest rtol at which
//                                           float32's solves still track
//                                           float64's, ode/solver.h)
// results.json's "dtype" and each checkpoint's "cnf_field" metadata record
// the dtype.
//
// Output in --out_dir (cli/cli.h): results.json (both tables per
// "<data>/<method>"; config: the settings), history.csv (per --eval_every
// steps and run "<data>/<method>": the mean training loss and NFE per step)
// and <data>_<method>.ckpt, an nn/checkpoint.h file of the scored field's
// parameters (flow matching: the EMA's) whose metadata "cnf_field" holds
// {"data", "method", "dim", "hidden", "activation", "parameters": "ema" |
// "raw", "dtype"}: ConcatSquashNet::Create(dim, hidden, tanh) and
// LoadCheckpoint rebuild it.
// A failed ODE solve (training, the test NLL or a sampling measure), or a
// non-finite loss, gradient or measure, stops the run: the error names the
// method, data set, step and cause, results.json records it and the exit
// code is 1. There is no retry: FFJORD's stiffening is reported by its NFE,
// never by NaN in the tables.
//
//   ./bazelw run --config=opt //benchmarks:cnf_training_methods -- --quick
//   ./bazelw run --config=opt //benchmarks:cnf_training_methods --
//     --data=digits --steps=1000 --fm_steps=5000 --batch=64 --eval_every=100
//   (one command line; the digits table of ode/README.md: about 6
//   CPU-minutes)
//   flags: --data=8gaussians,moons,checkerboard[,digits] --steps=2000
//          --fm_steps=0 (= --steps) --batch=256 --lr=1e-3
//          --lr_schedule=constant (or cosine) --fm_lr=3e-2
//          --fm_lr_schedule=cosine (or constant) --fm_warmup=0.1
//          --fm_ema_decay=0.999 (0: raw parameters) --fm_batch=0 (= --batch)
//          --otcfm_batch=128 (0 = --fm_batch)
//          --fm_sigma_min=1e-4 --fm_path=ot (or vp) --coupling=exact
//          (or sinkhorn) --sinkhorn_epsilon=0.05 --sinkhorn_max_iters=1000
//          --sinkhorn_tol=1e-6 --eval_every=200
//          --test_size=2000 (toy sets) --seed=1 --quick
//          --methods=ffjord,rnode,cfm,otcfm (a subset) --rnode_lambda=0.01
//          --sample_tols= (dtype's default) --euler_steps=1,2,4,8,16
//          --first_step=0 (Hairer's rule)
//   (--quick: 150 steps, evaluation every 50, 500 test points.)
#include <time.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "cli/budget.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "data/datasets.h"
#include "data/image_setup.h"
#include "data/preprocess.h"
#include "data/toy2d.h"
#include "flows/cnf/cnf.h"
#include "flows/matching/cfm.h"
#include "flows/matching/cfm_flow.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "ode/solve.h"
#include "training/train_flow_matching.h"

ABSL_FLAG(std::string, data, "8gaussians,moons,checkerboard",
          "comma-separated toy densities (data/toy2d.h) and/or digits");
ABSL_FLAG(int64_t, steps, 2000, "Adam steps of the ML methods");
ABSL_FLAG(int64_t, fm_steps, 0,
          "Adam steps of the flow-matching methods (0 = --steps)");
ABSL_FLAG(int64_t, batch, 256, "batch size");
ABSL_FLAG(double, lr, 1e-3, "Adam learning rate of the ML methods");
ABSL_FLAG(std::string, lr_schedule, "constant",
          "the ML methods' schedule: constant, or cosine: lr (1 + cos(pi t / "
          "T)) / 2 over their T = --steps steps");
ABSL_FLAG(double, fm_lr, 3e-2, "peak Adam learning rate of flow matching");
ABSL_FLAG(std::string, fm_lr_schedule, "cosine",
          "flow matching's schedule: constant, or cosine from --fm_lr to 0 "
          "over the --fm_steps steps after the warm-up");
ABSL_FLAG(double, fm_warmup, 0.1,
          "flow matching's linear warm-up to --fm_lr, as a fraction of its "
          "steps (0: none)");
ABSL_FLAG(double, fm_ema_decay, 0.999,
          "flow matching is scored with the parameter EMA of this decay "
          "(0: the raw parameters)");
ABSL_FLAG(int64_t, fm_batch, 0, "CFM's batch (0 = --batch)");
ABSL_FLAG(int64_t, otcfm_batch, 128, "OT-CFM's batch (0 = --fm_batch)");
ABSL_FLAG(double, fm_sigma_min, 1e-4,
          "sigma_min of flow matching's path (OT: [0, 1), VP: (0, 1))");
ABSL_FLAG(std::string, fm_path, "ot",
          "flow matching's conditional path: ot (the linear path) or vp (the "
          "variance-preserving one, beta_min 0.1, beta_max 20)");
ABSL_FLAG(std::string, coupling, "exact",
          "otcfm's minibatch coupling: exact (the optimal assignment) or "
          "sinkhorn (pairs drawn from the entropic plan)");
ABSL_FLAG(double, sinkhorn_epsilon, 0.05,
          "the Sinkhorn coupling's epsilon, relative to the batch's largest "
          "cost");
ABSL_FLAG(int64_t, sinkhorn_max_iters, 1000,
          "the Sinkhorn coupling's iteration budget (not converged: the run "
          "stops)");
ABSL_FLAG(double, sinkhorn_tol, 1e-6,
          "the Sinkhorn coupling's L1 marginal error at convergence");
ABSL_FLAG(int64_t, eval_every, 200, "test NLL every N steps");
ABSL_FLAG(int64_t, test_size, 2000, "test points");
ABSL_FLAG(uint64_t, seed, 1, "seed (the same for every method)");
ABSL_FLAG(std::string, methods, "ffjord,rnode,cfm,otcfm",
          "comma-separated subset of ffjord, rnode, cfm, otcfm");
ABSL_FLAG(double, rnode_lambda, 0.01,
          "RNODE's lambda (kinetic and Jacobian, per-dimension units)");
ABSL_FLAG(bool, quick, false, "150 steps, eval every 50, 500 test points");
ABSL_FLAG(std::string, sample_tols, "",
          "dopri5 tolerances (rtol = atol) of the x-only sampling solves "
          "(empty: 1e-3,1e-5,1e-7 in float64, 1e-3,1e-5,1e-6 in float32)");
ABSL_FLAG(std::string, euler_steps, "1,2,4,8,16",
          "Euler step counts of the fixed-step sampling error");
ABSL_FLAG(double, first_step, 0.0,
          "first dopri5 step of the x-only sampling solves (0: Hairer's rule)");

namespace flowtape::benchmarks {
namespace {
constexpr double kLog2Pi = 1.8378770664093453;
constexpr double kDigitsAlpha = 0.05;
const char* const kMethods[] = {"ffjord", "rnode", "cfm", "otcfm"};

struct Settings {
  int64_t steps, fm_steps, batch, eval_every, test_size;
  double lr, rnode_lambda;
  bool cosine;
  uint64_t seed;
  std::vector<double> sample_tols;
  std::vector<int64_t> euler_steps;
  double first_step;
  // Flow matching's own recipe (the ML methods use steps, batch, lr, cosine).
  double fm_lr = 0;
  bool fm_cosine = false;
  int64_t fm_batch = 0, otcfm_batch = 0;
  double fm_warmup = 0, fm_ema_decay = 0, fm_sigma_min = 0;
  bool fm_vp = false, sinkhorn = false;  // --fm_path=vp, --coupling=sinkhorn
  flows::matching::FlowMatchingOptions fm_options{};  // the Sinkhorn settings
  DType dtype = kFloat64;       // --dtype: training and scoring
  double reference_tol = 1e-9;  // x_ref and the straightness paths
};

// The method's label in the tables and files: the method name plus the
// non-default path and coupling of the flow-matching methods.
std::string Label(const std::string& method, const Settings& st) {
  if (method != "cfm" && method != "otcfm") return method;
  std::string label = method;
  if (st.fm_vp) label += "-vp";
  if (method == "otcfm" && st.sinkhorn) label += "-sinkhorn";
  return label;
}

constexpr int64_t kSamples = 1000;  // base draws of the sampling measures
// The x_ref / straightness tolerance and the default --sample_tols by dtype
// (the header's table).
double ReferenceTol(DType dtype) { return dtype == kFloat32 ? 1e-6 : 1e-9; }
const char* DefaultSampleTols(DType dtype) {
  return dtype == kFloat32 ? "1e-3,1e-5,1e-6" : "1e-3,1e-5,1e-7";
}
constexpr int64_t kStraightnessIntervals = 32;

// A data set: training minibatches drawn on demand, a fixed test set.
struct Problem {
  std::string name;
  int64_t dim;
  std::function<absl::StatusOr<Tensor>(int64_t n, Rng& rng)> sample;
  Tensor test;
};

// Digits rows [N, 64] of levels 0..16 -> dequantised, logit-transformed.
Tensor DigitsInput(const Tensor& rows, Rng& rng) {
  return data::LogitTransform(data::Dequantize(rows, 17, rng), kDigitsAlpha).y;
}

absl::StatusOr<Problem> MakeProblem(const std::string& name,
                                    int64_t test_size) {
  if (name != "digits") {
    Rng test_rng(12345);
    FT_ASSIGN_OR_RETURN(Tensor test,
                        data::SampleToy2d(name, test_size, test_rng));
    return Problem{
        name, 2,
        [name](int64_t n, Rng& rng) { return data::SampleToy2d(name, n, rng); },
        test};
  }
  FT_ASSIGN_OR_RETURN(data::ImageSet train,
                      data::LoadImageSetOrSetup("digits", "train"));
  FT_ASSIGN_OR_RETURN(data::ImageSet test,
                      data::LoadImageSetOrSetup("digits", "test"));
  FT_RETURN_IF_ERROR(
      cli::CheckImageSet(train, "digits train", Shape{1, 8, 8}, 17, 10));
  FT_RETURN_IF_ERROR(
      cli::CheckImageSet(test, "digits test", Shape{1, 8, 8}, 17, 1));
  Tensor rows = Reshape(train.images, {train.images.dim(0), 64});
  Rng test_noise(12345);
  Tensor test_y =
      DigitsInput(Reshape(test.images, {test.images.dim(0), 64}), test_noise);
  return Problem{"digits", 64,
                 [rows](int64_t n, Rng& rng) -> absl::StatusOr<Tensor> {
                   std::vector<int64_t> pick(n);
                   for (int64_t& i : pick) i = rng.UniformInt(rows.dim(0));
                   return DigitsInput(data::TakeRows(rows, pick), rng);
                 },
                 test_y};
}

std::vector<int64_t> Hidden(int64_t dim) {
  return dim > 2 ? std::vector<int64_t>{256, 256}
                 : std::vector<int64_t>{64, 64};
}

struct Row {
  std::string data, method;
  double test_nll = NAN, nfe_per_step = 0, sampling_nfe = NAN;
  double seconds = 0, cpu_seconds = 0;  // training only (wall, this process)
  std::vector<double> sample_nfe;       // x only, per --sample_tols
  std::vector<double> euler_error;      // per --euler_steps
  double straightness = NAN, straightness_rel = NAN;
  std::vector<double> nfe;  // per step
  // (step, train wall seconds, train CPU seconds, test NLL)
  std::vector<std::array<double, 4>> curve;
};

// CPU seconds of this process (one thread trains: robust to other load).
double CpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

Tensor Nll(const flows::FlowResult& r) {
  const double d = r.value.dim(1);
  return -Mean(Sum(Square(r.value), 1) * -0.5 - 0.5 * d * kLog2Pi + r.logdet);
}

// Mean NFE per step over the first 10%, the middle 10% and the last 10% of
// the steps, "a/b/c" ("-" below 10 steps).
std::string NfeWindows(const std::vector<double>& nfe) {
  const size_t n = nfe.size(), w = n / 10;
  if (w == 0) return "-";
  std::vector<std::string> parts;
  for (size_t lo : {size_t{0}, (n - w) / 2, n - w}) {
    double sum = 0;
    for (size_t i = lo; i < lo + w; ++i) sum += nfe[i];
    parts.push_back(absl::StrFormat("%.0f", sum / w));
  }
  return absl::StrJoin(parts, "/");
}

// Mean over rows of the Euclidean norm of a - b ([N, d] each).
double MeanDistance(const Tensor& a, const Tensor& b) {
  return Mean(Sqrt(Sum(Square(a - b), 1))).item();
}

// `what` failed: the solve's status with `run` and `what` in front.
absl::Status SolveFailed(const std::string& run, const std::string& what,
                         const absl::Status& status) {
  return absl::Status(
      status.ok() ? absl::StatusCode::kInternal : status.code(),
      absl::StrCat(run, ": ", what,
                   " failed: ", status.ok() ? "no value" : status.message()));
}

// OK when v is finite, else FailedPrecondition naming `what`.
absl::Status CheckFinite(const std::string& run, const std::string& what,
                         double v) {
  if (std::isfinite(v)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(run, ": ", what, " is not finite (", v, ")"));
}

// The x-only sampling measures of the header comment from base draws z
// (t: T -> 0; the fields here have T = 1). `run` names the method in errors.
absl::Status SamplingMeasures(const flows::cnf::Cnf& cnf, const Tensor& z,
                              const Settings& st, const std::string& run,
                              Row* row) {
  auto transport =
      [&](const ode::OdeOptions& ode) -> absl::StatusOr<flows::FlowResult> {
    flows::cnf::CnfOptions o = cnf.options();
    o.ode = ode;
    o.ode.stats = nullptr;
    FT_ASSIGN_OR_RETURN(std::shared_ptr<flows::cnf::Cnf> c,
                        flows::cnf::Cnf::Create(cnf.dynamics(), o));
    return c->Transport(z);
  };
  ode::OdeOptions tol = cnf.options().ode;
  tol.first_step = st.first_step;
  for (double t : st.sample_tols) {
    tol.rtol = tol.atol = t;
    FT_ASSIGN_OR_RETURN(flows::FlowResult r, transport(tol));
    const std::string what = absl::StrCat("the x-only sampling solve at ", t);
    if (!r.status.ok() || !r.value.defined())
      return SolveFailed(run, what, r.status);
    row->sample_nfe.push_back(r.extra(flows::cnf::kNfe)[0]);
  }
  ode::OdeOptions ref = cnf.options().ode;
  ref.rtol = ref.atol = st.reference_tol;
  FT_ASSIGN_OR_RETURN(flows::FlowResult x_ref, transport(ref));
  if (!x_ref.status.ok() || !x_ref.value.defined())
    return SolveFailed(run, "the reference sampling solve", x_ref.status);
  for (int64_t k : st.euler_steps) {
    ode::OdeOptions euler = cnf.options().ode;
    euler.method = ode::Method::kEuler;
    euler.step_size = 1.0 / static_cast<double>(k);
    FT_ASSIGN_OR_RETURN(flows::FlowResult r, transport(euler));
    const std::string what = absl::StrCat("the ", k, "-step Euler sampling");
    if (!r.status.ok() || !r.value.defined())
      return SolveFailed(run, what, r.status);
    row->euler_error.push_back(MeanDistance(r.value, x_ref.value));
    FT_RETURN_IF_ERROR(
        CheckFinite(run, what + " error", row->euler_error.back()));
  }
  // Straightness on the reference paths, in generative time s = 1 - t.
  const flows::cnf::CnfDynamics& f = *cnf.dynamics();
  std::vector<double> times;
  for (int64_t k = 0; k <= kStraightnessIntervals; ++k)
    times.push_back(1.0 - static_cast<double>(k) / kStraightnessIntervals);
  ref.gradient = ode::Gradient::kNone;
  ref.stats = nullptr;
  absl::StatusOr<ode::OdeSolution> sol = ode::OdeSolve(
      [&f](double t, const Tensor& y) { return f(t, y); }, z, times, {}, ref);
  if (!sol.ok())
    return SolveFailed(run, "the straightness solve", sol.status());
  Tensor delta = sol->ys.back() - z;
  double s = 0;
  for (int64_t k = 0; k <= kStraightnessIntervals; ++k) {
    Tensor dxds = -f(times[k], sol->ys[k]);
    const double e = Mean(Sum(Square(delta - dxds), 1)).item();
    s += (k == 0 || k == kStraightnessIntervals ? 0.5 : 1.0) * e;
  }
  row->straightness = s / kStraightnessIntervals;
  row->straightness_rel =
      row->straightness / Mean(Sum(Square(delta), 1)).item();
  return CheckFinite(run, "the straightness", row->straightness);
}

// Test NLL; at the end also the sampling NFE of the field's flow (dopri5,
// 1e-5, with the log-density) and the x-only sampling measures.
absl::Status Score(const flows::cnf::Cnf& cnf, const Tensor& test, Rng& rng,
                   const Settings& st, Row* row, bool final) {
  NoGradScope no_grad;
  const std::string run = absl::StrCat(row->method, " on ", row->data,
                                       " after step ", row->nfe.size());
  flows::FlowResult r = cnf.Forward(test);
  if (!r.status.ok()) return SolveFailed(run, "the test NLL solve", r.status);
  const double nll = Nll(r).item();
  FT_RETURN_IF_ERROR(CheckFinite(run, "the test NLL", nll));
  row->curve.push_back({static_cast<double>(row->nfe.size()), row->seconds,
                        row->cpu_seconds, nll});
  if (!final) return absl::OkStatus();
  row->test_nll = nll;
  Tensor z = Cast(Tensor::Randn({kSamples, test.dim(1)}, rng), st.dtype);
  flows::FlowResult s = cnf.Inverse(z);
  if (!s.status.ok()) return SolveFailed(run, "the sampling solve", s.status);
  row->sampling_nfe = s.extra(flows::cnf::kNfe)[0];
  return SamplingMeasures(cnf, z, st, run, row);
}

absl::StatusOr<Row> Train(const Problem& problem, const std::string& method,
                          const Settings& st, cli::Experiment& ex) {
  const std::string& data = problem.name;
  const Tensor test = Cast(problem.test, st.dtype);
  Rng rng(st.seed);
  FT_ASSIGN_OR_RETURN(
      std::shared_ptr<flows::cnf::ConcatSquashNet> net,
      flows::cnf::ConcatSquashNet::Create(problem.dim, Hidden(problem.dim),
                                          nn::Activation::kTanh, rng));
  net->To(st.dtype);  // built in float64: the same rounded weights in f32
  const bool ml = method == "ffjord" || method == "rnode";
  flows::cnf::CnfOptions o;  // dopri5, rtol = atol = 1e-5, adjoint
  o.ode.stats = std::make_shared<ode::OdeStatsSink>();
  std::shared_ptr<flows::cnf::Cnf> cnf;  // what is scored
  std::shared_ptr<flows::cnf::Cnf> trained;
  std::shared_ptr<flows::matching::FlowMatching> fm;
  if (ml) {
    FT_ASSIGN_OR_RETURN(cnf, flows::cnf::Cnf::Create(net, o));
    // Training pass: in d > 8 Hutchinson's estimator (FFJORD's image
    // setting; RNODE's |J|_F^2 would otherwise cost d VJPs per evaluation).
    flows::cnf::CnfOptions r = o;
    if (problem.dim > 8) r.trace = flows::cnf::TraceEstimator::kHutchinson;
    if (method == "rnode") {
      r.lambda_kinetic = r.lambda_jacobian = st.rnode_lambda;
      r.regularizer_units = flows::cnf::RegularizerUnits::kPerDimMean;
    }
    FT_ASSIGN_OR_RETURN(trained, flows::cnf::Cnf::Create(net, r));
  } else {
    FT_ASSIGN_OR_RETURN(cnf, flows::matching::MakeFlowMatchingCnf(net, o));
    flows::matching::FlowMatchingOptions fo = st.fm_options;
    fo.coupling = method != "otcfm"
                      ? flows::matching::CouplingKind::kIndependent
                  : st.sinkhorn ? flows::matching::CouplingKind::kSinkhorn
                                : flows::matching::CouplingKind::kExactOt;
    FT_ASSIGN_OR_RETURN(
        std::shared_ptr<flows::matching::AffinePath> path,
        st.fm_vp
            ? flows::matching::AffinePath::VariancePreserving(0.1, 20.0,
                                                              st.fm_sigma_min)
            : flows::matching::AffinePath::OptimalTransport(st.fm_sigma_min));
    FT_ASSIGN_OR_RETURN(fm,
                        flows::matching::FlowMatching::Create(net, path, fo));
  }
  const double lr = ml ? st.lr : st.fm_lr;
  auto adam = nn::Adam::Create(*net, nn::AdamOptions{/*lr=*/lr}).value();
  std::unique_ptr<training::ParameterEma> ema;  // flow matching's, scored
  if (!ml && st.fm_ema_decay > 0)
    ema = std::make_unique<training::ParameterEma>(*net);
  Rng data_rng(st.seed + 100), noise_rng(st.seed + 200),
      eval_rng(st.seed + 300);
  Row row;
  row.data = data;
  const std::string label = Label(method, st);
  row.method = label;
  const int64_t steps = ml ? st.steps : st.fm_steps;
  const int64_t batch =
      ml ? st.batch : (method == "otcfm" ? st.otcfm_batch : st.fm_batch);
  const int64_t warmup =  // < steps: the cosine needs one step of its own
      ml ? 0 : std::min<int64_t>(std::llround(st.fm_warmup * steps), steps - 1);
  nn::Schedule schedule = (ml ? st.cosine : st.fm_cosine)
                              ? nn::CosineAnnealingLr(lr, steps - warmup)
                              : nn::ConstantLr(lr);
  if (warmup > 0) schedule = nn::LinearWarmup(warmup, schedule);
  adam->set_schedule(schedule);
  const std::string run = data + "/" + label;
  cli::HistoryWindow history(ex.history(), run, st.eval_every);
  for (int64_t step = 1; step <= steps; ++step) {
    FT_ASSIGN_OR_RETURN(Tensor x, problem.sample(batch, data_rng));
    x = Cast(x, st.dtype);
    const auto t0 = std::chrono::steady_clock::now();
    const double cpu0 = CpuSeconds();
    adam->ZeroGrad();
    Tensor loss;
    if (ml) {
      o.ode.stats->Reset();
      flows::FlowResult r = trained->Forward(x, Tensor(), &noise_rng);
      if (!r.status.ok())
        return absl::Status(
            r.status.code(),
            absl::StrCat(run, ": step ", step,
                         ": the ODE solve failed: ", r.status.message()));
      loss = Nll(r);
      if (Tensor p = r.extra(flows::cnf::kRegularization); p.defined())
        loss = loss + Mean(p);
      if (std::isfinite(loss.item())) Backward(loss);
      row.nfe.push_back(r.extra(flows::cnf::kNfe)[0] +
                        static_cast<double>(o.ode.stats->Get().backward.nfe));
    } else {
      absl::StatusOr<Tensor> l = fm->Loss(x, Tensor(), noise_rng);
      if (!l.ok())  // e.g. a Sinkhorn plan that did not converge
        return absl::Status(
            l.status().code(),
            absl::StrCat(run, ": step ", step, ": ", l.status().message()));
      loss = *std::move(l);
      if (std::isfinite(loss.item())) Backward(loss);
      row.nfe.push_back(1);
    }
    if (absl::Status s =
            cli::CheckStepFinite(run, step, loss.item(), net->Parameters());
        !s.ok()) {
      Tape::Get().Reset();
      return s;
    }
    adam->Step();
    if (ema)  // TrainFlowMatching's warm-up: d = min(decay, (1 + k) / (10 + k))
      ema->Update(std::min(st.fm_ema_decay, (1.0 + step) / (10.0 + step)));
    const double loss_value = loss.item();
    Tape::Get().Reset();
    history.Step(loss_value, row.nfe.back());
    row.seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    row.cpu_seconds += CpuSeconds() - cpu0;
    if (step % st.eval_every == 0 || step == steps) {
      if (ema) ema->Swap();
      const absl::Status scored =
          Score(*cnf, test, eval_rng, st, &row, step == steps);
      if (ema) ema->Swap();
      FT_RETURN_IF_ERROR(scored);
      const int64_t window = std::min<int64_t>(st.eval_every, step);
      double recent = 0;  // mean NFE per step since the last evaluation
      for (int64_t i = step - window; i < step; ++i) recent += row.nfe[i];
      std::printf(
          "  %-12s %-7s step %5ld  loss %.4f  test NLL %.4f  NFE/step %.1f "
          "(train %.2f s wall, %.2f s CPU)\n",
          data.c_str(), label.c_str(), static_cast<long>(step), loss_value,
          row.curve.back()[3], recent / window, row.seconds, row.cpu_seconds);
    }
  }
  history.Flush();
  double nfe = 0;
  for (double n : row.nfe) nfe += n;
  row.nfe_per_step = nfe / steps;
  // The scored parameters: flow matching's EMA, else the trained ones.
  const io::Json meta = {{"data", data},
                         {"method", label},
                         {"dim", problem.dim},
                         {"hidden", Hidden(problem.dim)},
                         {"activation", "tanh"},
                         {"parameters", ema ? "ema" : "raw"},
                         {"dtype", cli::DTypeFlagName(st.dtype)}};
  if (ema) ema->Swap();
  const absl::Status saved =
      nn::SaveCheckpoint(ex.Output(data + "_" + label + ".ckpt"), *net, nullptr,
                         {{"cnf_field", meta.dump()}});
  if (ema) ema->Swap();
  FT_RETURN_IF_ERROR(saved);
  return row;
}

std::string TimeTo(const Row& r, double target) {
  for (const auto& [step, seconds, cpu, nll] : r.curve)
    if (nll <= target) return absl::StrFormat("%.1f / %.1f", seconds, cpu);
  return "-";
}

absl::Status Run(cli::Experiment& ex) {
  ex.SingleThreaded("each method runs its own training loop");
  ex.set_seed(absl::GetFlag(FLAGS_seed));
  Settings st{absl::GetFlag(FLAGS_steps),
              absl::GetFlag(FLAGS_fm_steps),
              absl::GetFlag(FLAGS_batch),
              absl::GetFlag(FLAGS_eval_every),
              absl::GetFlag(FLAGS_test_size),
              absl::GetFlag(FLAGS_lr),
              absl::GetFlag(FLAGS_rnode_lambda),
              absl::GetFlag(FLAGS_lr_schedule) == "cosine",
              absl::GetFlag(FLAGS_seed),
              {},
              {},
              absl::GetFlag(FLAGS_first_step)};
  st.fm_lr = absl::GetFlag(FLAGS_fm_lr);
  st.fm_cosine = absl::GetFlag(FLAGS_fm_lr_schedule) == "cosine";
  st.fm_warmup = absl::GetFlag(FLAGS_fm_warmup);
  st.fm_batch = absl::GetFlag(FLAGS_fm_batch);
  st.otcfm_batch = absl::GetFlag(FLAGS_otcfm_batch);
  st.fm_ema_decay = absl::GetFlag(FLAGS_fm_ema_decay);
  st.fm_sigma_min = absl::GetFlag(FLAGS_fm_sigma_min);
  const std::string fm_path = absl::GetFlag(FLAGS_fm_path);
  const std::string coupling = absl::GetFlag(FLAGS_coupling);
  st.fm_vp = fm_path == "vp";
  st.sinkhorn = coupling == "sinkhorn";
  st.fm_options.sinkhorn_epsilon = absl::GetFlag(FLAGS_sinkhorn_epsilon);
  const int64_t sinkhorn_max_iters = absl::GetFlag(FLAGS_sinkhorn_max_iters);
  st.fm_options.sinkhorn_max_iters =
      static_cast<int>(std::clamp<int64_t>(sinkhorn_max_iters, 0, 1000000000));
  st.fm_options.sinkhorn_tol = absl::GetFlag(FLAGS_sinkhorn_tol);
  st.dtype = ex.dtype();
  st.reference_tol = ReferenceTol(st.dtype);
  std::string sample_tols = absl::GetFlag(FLAGS_sample_tols);
  if (sample_tols.empty()) sample_tols = DefaultSampleTols(st.dtype);
  const double reference_tol = st.reference_tol;
  FT_ASSIGN_OR_RETURN(
      st.sample_tols,
      cli::ParseDecimalList(
          "sample_tols", sample_tols,
          st.dtype == kFloat32 ? "in [1e-6, 1) (float32)" : "in [1e-9, 1)",
          [reference_tol](double v) { return v >= reference_tol && v < 1; }));
  FT_ASSIGN_OR_RETURN(
      st.euler_steps,
      cli::ParseIntegerList("euler_steps", absl::GetFlag(FLAGS_euler_steps), 1,
                            100000));
  if (absl::GetFlag(FLAGS_quick)) {
    st.steps = 150;
    st.eval_every = 50;
    st.test_size = 500;
  }
  const bool fm_own = st.fm_steps > 0;
  if (st.fm_steps == 0) st.fm_steps = st.steps;
  if (st.fm_batch == 0) st.fm_batch = st.batch;
  if (st.otcfm_batch == 0) st.otcfm_batch = st.fm_batch;
  const std::vector<std::string> sets =
      absl::StrSplit(absl::GetFlag(FLAGS_data), ',');
  bool known = true;
  for (const std::string& d : sets) {
    bool found = d == "digits";
    for (const std::string& n : data::Toy2dNames()) found |= n == d;
    known &= found;
  }
  const std::vector<std::string> methods =
      absl::StrSplit(absl::GetFlag(FLAGS_methods), ',');
  bool known_methods = true;
  for (const std::string& m : methods)
    known_methods &= std::find(std::begin(kMethods), std::end(kMethods), m) !=
                     std::end(kMethods);
  FT_RETURN_IF_ERROR(cli::CheckFlags({
      {"data", absl::GetFlag(FLAGS_data), known,
       "toy densities (data/toy2d.h) or digits"},
      {"methods", absl::GetFlag(FLAGS_methods), known_methods,
       "a comma-separated subset of ffjord, rnode, cfm, otcfm"},
      {"steps", st.steps, st.steps > 0, "> 0"},
      {"fm_steps", absl::GetFlag(FLAGS_fm_steps),
       absl::GetFlag(FLAGS_fm_steps) >= 0, ">= 0 (0: --steps)"},
      {"batch", st.batch, st.batch > 0 && st.batch <= 512,
       "in [1, 512] (the exact OT coupling)"},
      {"lr", st.lr, std::isfinite(st.lr) && st.lr > 0, "finite and > 0"},
      {"lr_schedule", absl::GetFlag(FLAGS_lr_schedule),
       absl::GetFlag(FLAGS_lr_schedule) == "constant" || st.cosine,
       "constant or cosine"},
      {"fm_lr", st.fm_lr, std::isfinite(st.fm_lr) && st.fm_lr > 0,
       "finite and > 0"},
      {"fm_lr_schedule", absl::GetFlag(FLAGS_fm_lr_schedule),
       absl::GetFlag(FLAGS_fm_lr_schedule) == "constant" || st.fm_cosine,
       "constant or cosine"},
      {"fm_warmup", st.fm_warmup, st.fm_warmup >= 0 && st.fm_warmup < 1,
       "in [0, 1) (a fraction of the flow-matching steps)"},
      {"fm_ema_decay", st.fm_ema_decay,
       st.fm_ema_decay >= 0 && st.fm_ema_decay < 1, "in [0, 1) (0: no EMA)"},
      {"fm_batch", absl::GetFlag(FLAGS_fm_batch),
       st.fm_batch > 0 && st.fm_batch <= 512,
       "in [1, 512] (the exact OT coupling; 0: --batch)"},
      {"otcfm_batch", absl::GetFlag(FLAGS_otcfm_batch),
       st.otcfm_batch > 0 && st.otcfm_batch <= (st.sinkhorn ? 2048 : 512),
       st.sinkhorn ? "in [1, 2048] (the Sinkhorn coupling; 0: --fm_batch)"
                   : "in [1, 512] (the exact OT coupling; 0: --fm_batch)"},
      {"fm_path", fm_path, st.fm_vp || fm_path == "ot", "ot or vp"},
      {"fm_sigma_min", st.fm_sigma_min,
       (st.fm_vp ? st.fm_sigma_min > 0 : st.fm_sigma_min >= 0) &&
           st.fm_sigma_min < 1,
       st.fm_vp ? "in (0, 1) (the VP path)" : "in [0, 1)"},
      {"coupling", coupling, st.sinkhorn || coupling == "exact",
       "exact or sinkhorn"},
      {"sinkhorn_epsilon", st.fm_options.sinkhorn_epsilon,
       std::isfinite(st.fm_options.sinkhorn_epsilon) &&
           st.fm_options.sinkhorn_epsilon > 0,
       "finite and > 0 (relative to the batch's largest cost)"},
      {"sinkhorn_max_iters", sinkhorn_max_iters,
       sinkhorn_max_iters >= 1 && sinkhorn_max_iters <= 1000000000,
       "in [1, 1e9]"},
      {"sinkhorn_tol", st.fm_options.sinkhorn_tol,
       std::isfinite(st.fm_options.sinkhorn_tol) &&
           st.fm_options.sinkhorn_tol > 0,
       "finite and > 0"},
      {"rnode_lambda", st.rnode_lambda,
       std::isfinite(st.rnode_lambda) && st.rnode_lambda >= 0,
       "finite and >= 0"},
      {"eval_every", st.eval_every, st.eval_every > 0, "> 0"},
      {"test_size", st.test_size, st.test_size > 0, "> 0"},
      {"first_step", st.first_step,
       std::isfinite(st.first_step) && st.first_step >= 0 && st.first_step <= 1,
       "in [0, 1] (0: Hairer's rule)"},
  }));
  FT_RETURN_IF_ERROR(cli::CheckRunMemory(
      cli::FlowFootprint(100, 64, 0, {256, 256},
                         std::max<int64_t>(st.batch, st.test_size),
                         64.0 * (st.test_size + st.batch)),
      absl::StrCat("--batch=", st.batch, " --test_size=", st.test_size)));
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string coupling_desc =
      st.sinkhorn
          ? absl::StrFormat("sinkhorn (eps %g, <= %d iterations, tol %g)",
                            st.fm_options.sinkhorn_epsilon,
                            st.fm_options.sinkhorn_max_iters,
                            st.fm_options.sinkhorn_tol)
          : "exact";
  std::printf(
      "ConcatSquash d-h-h-d tanh (h = 64, 256 for digits), Adam; ML: lr %g "
      "(%s), batch %ld, %ld steps; flow matching: lr %g (%s, warm-up %g), "
      "batch %ld (OT-CFM %ld), %ld steps, %s path, sigma_min %g, EMA %g, "
      "OT-CFM coupling %s; %s; scored by dopri5 rtol=atol=1e-5, exact trace, "
      "%ld test points (toy sets)\n",
      st.lr, st.cosine ? "cosine" : "constant", static_cast<long>(st.batch),
      static_cast<long>(st.steps), st.fm_lr,
      st.fm_cosine ? "cosine" : "constant", st.fm_warmup,
      static_cast<long>(st.fm_batch), static_cast<long>(st.otcfm_batch),
      static_cast<long>(st.fm_steps), st.fm_vp ? "VP" : "OT", st.fm_sigma_min,
      st.fm_ema_decay, coupling_desc.c_str(),
      st.dtype == kFloat32 ? "float32" : "float64",
      static_cast<long>(st.test_size));
  ex.config()["data"] = sets;
  ex.config()["methods"] = methods;
  ex.config()["steps"] = st.steps;
  ex.config()["batch"] = st.batch;
  ex.config()["lr"] = st.lr;
  ex.config()["eval_every"] = st.eval_every;
  ex.config()["test_size"] = st.test_size;
  ex.config()["quick"] = absl::GetFlag(FLAGS_quick);
  ex.config()["fm_steps"] = st.fm_steps;
  ex.config()["fm_steps_own"] = fm_own;
  ex.config()["rnode_lambda"] = st.rnode_lambda;
  ex.config()["lr_schedule"] = absl::GetFlag(FLAGS_lr_schedule);
  ex.config()["fm_lr"] = st.fm_lr;
  ex.config()["fm_lr_schedule"] = absl::GetFlag(FLAGS_fm_lr_schedule);
  ex.config()["fm_warmup"] = st.fm_warmup;
  ex.config()["fm_batch"] = st.fm_batch;
  ex.config()["otcfm_batch"] = st.otcfm_batch;
  ex.config()["fm_ema_decay"] = st.fm_ema_decay;
  ex.config()["fm_sigma_min"] = st.fm_sigma_min;
  ex.config()["fm_path"] = fm_path;
  ex.config()["coupling"] = coupling;
  ex.config()["sinkhorn_epsilon"] = st.fm_options.sinkhorn_epsilon;
  ex.config()["sinkhorn_max_iters"] = st.fm_options.sinkhorn_max_iters;
  ex.config()["sinkhorn_tol"] = st.fm_options.sinkhorn_tol;
  ex.config()["sample_tols"] = st.sample_tols;
  ex.config()["reference_tol"] = st.reference_tol;
  ex.config()["euler_steps"] = st.euler_steps;
  ex.config()["first_step"] = st.first_step;
  ex.history().set_has_nfe(true);
  std::vector<Row> rows;
  for (const std::string& d : sets) {
    FT_ASSIGN_OR_RETURN(Problem problem, MakeProblem(d, st.test_size));
    for (const std::string& m : methods) {
      FT_ASSIGN_OR_RETURN(Row r, Train(problem, m, st, ex));
      rows.push_back(r);
    }
  }
  std::printf(
      "\n| data         | method | steps | test NLL | NFE/step | NFE "
      "10/50/90%%   | sampling NFE | train s (wall / CPU) | s to ffjord NLL "
      "(wall / CPU) |\n"
      "|--------------|--------|-------|----------|----------|---------------"
      "--|--------------|----------------------|-----------------------------"
      "|\n");
  for (const Row& r : rows) {
    double target = NAN;
    for (const Row& f : rows)
      if (f.data == r.data && f.method == "ffjord") target = f.test_nll;
    ex.metrics()[r.data + "/" + r.method] = {
        {"steps", r.nfe.size()},
        {"test_nll", r.test_nll},
        {"nfe_per_step", r.nfe_per_step},
        {"nfe_first_mid_last_10pct", NfeWindows(r.nfe)},
        {"sampling_nfe", r.sampling_nfe},
        {"seconds", r.seconds},
        {"cpu_seconds", r.cpu_seconds},
        {"seconds_to_ffjord", TimeTo(r, target)},
        {"x_only_sampling_nfe", r.sample_nfe},
        {"euler_error", r.euler_error},
        {"straightness", r.straightness},
        {"straightness_relative", r.straightness_rel},
        {"curve_step_wall_cpu_nll", r.curve}};
    std::printf(
        "| %-12s | %-6s | %5zu | %8.4f | %8.1f | %15s | %12.0f | %20s | "
        "%27s |\n",
        r.data.c_str(), r.method.c_str(), r.nfe.size(), r.test_nll,
        r.nfe_per_step, NfeWindows(r.nfe).c_str(), r.sampling_nfe,
        absl::StrFormat("%.1f / %.1f", r.seconds, r.cpu_seconds).c_str(),
        TimeTo(r, target).c_str());
  }
  std::printf(
      "\nSampling (the map alone, %ld base draws; x_ref: dopri5 at %g):\n\n"
      "| data | method | x-only NFE at tol %s | Euler error at k = %s | "
      "S |\n| --- | --- | --- | --- | --- |\n",
      static_cast<long>(kSamples), st.reference_tol, sample_tols.c_str(),
      absl::GetFlag(FLAGS_euler_steps).c_str());
  for (const Row& r : rows)
    std::printf(
        "| %s | %s | %s | %s | %.3g |\n", r.data.c_str(), r.method.c_str(),
        absl::StrJoin(r.sample_nfe, "/",
                      [](std::string* out, double x) {
                        absl::StrAppend(out, absl::StrFormat("%.0f", x));
                      })
            .c_str(),
        absl::StrJoin(r.euler_error, "/",
                      [](std::string* out, double x) {
                        absl::StrAppend(out, absl::StrFormat("%.3g", x));
                      })
            .c_str(),
        r.straightness);
  return absl::OkStatus();
}

}  // namespace
}  // namespace flowtape::benchmarks

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"cnf_training_methods",
       "FFJORD, RNODE, CFM and OT-CFM on toy densities and 64-D digits: "
       "test NLL, NFE per step over training, sampling NFE, time to "
       "FFJORD's test NLL.\n"
       "  ./bazelw run --config=opt //benchmarks:cnf_training_methods -- "
       "--quick",
       flowtape::kFloat64},
      argc, argv, flowtape::benchmarks::Run);
}

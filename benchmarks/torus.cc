// Flows on the torus T^2 against the three targets of Rezende et al. 2020
// ("Normalizing flows on tori and spheres", Section 5; definitions in
// manifolds/torus_densities.h): unimodal, multimodal and correlated von
// Mises-type densities. No data: the flows are trained by reverse KL (the
// paper's protocol), minimising F(q) = E_q[log q - log p~] over
// reparametrised samples x = f(u), u ~ uniform on T^2
// (training/reverse_kl.h), and scored on 100000 fresh samples:
//   KL(q || p) = E_q[log q - log p~] + log Z,  log Z by the trapezoid rule
//                (64 x 64 points: exact to rounding; printed with the
//                32 x 32 value and the closed form of torus_densities.h),
//   ESS = (sum w)^2 / (M sum w^2),  w = p~ / q, in % of the M samples.
// Models (uniform base; the generative map x = f(u) is the flows' Forward,
// closed form for every map, so training never bisects):
//   ar_spline      autoregressive (theta_1 free, theta_2 | theta_1) with
//                  circular rational-quadratic splines, K bins
//   ar_mobius      the same with mixtures of M Moebius maps
//   coupling_spline, coupling_mobius
//                  --layers pairs of couplings (theta_2 | theta_1 then
//                  theta_1 | theta_2) with those maps
// Usage:
//   ./bazelw run --config=opt //benchmarks:torus
//       quick: 3 seeds x 3 targets x 4 models, 1000 steps
//   ./bazelw run --config=opt //benchmarks:torus -- --full
//       5 seeds, 20000 steps (the paper's count; tens of CPU-minutes)
// Writes results.json (KL and ESS per target, model and seed; config: the
// settings), history.csv (F per step, run "<target>/<model>/seed<k>") and
// <target>_<model>_seed<k>.ckpt per trained flow to --out_dir: an
// nn/checkpoint.h file of the FlowModel's parameters whose metadata
// "torus_flow" holds {"target", "model", "seed", "layers", "bins",
// "components", "hidden", "dtype"} (MakeFlow below with those settings in a
// FlowModel with a UniformTorus(2) base, then LoadCheckpoint, rebuilds it).
// Published numbers: the paper's T^2 table could not be found in the
// sources searched, so none is printed beside ours; its S^2 table, quoted
// second-hand, is in README.md (`torus` under the measured results).
// --threads: replicas per run (Experiment::TrainReverseKl, each taking its
// share of every step's samples; the same run on any thread count, up to
// rounding); under mpirun the ranks are the replicas.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "benchmarks/reverse_kl_settings.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "flows/flow_model.h"
#include "flows/invert.h"
#include "flows/sequential.h"
#include "io/json.h"
#include "manifolds/angle.h"
#include "manifolds/torus_densities.h"
#include "manifolds/torus_flows.h"
#include "manifolds/uniform_torus.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "training/reverse_kl.h"
#include "training/train_threads.h"

ABSL_FLAG(bool, full, false, "5 seeds, 20000 steps");
ABSL_FLAG(int, seeds, 0, "seeds per cell (0 = mode default: 3, --full 5)");
ABSL_FLAG(int, steps, 0, "training steps (0 = mode default: 1000, 20000)");
ABSL_FLAG(std::string, targets, "unimodal,multimodal,correlated",
          "comma-separated subset");
ABSL_FLAG(std::string, models,
          "ar_spline,ar_mobius,coupling_spline,coupling_mobius",
          "comma-separated subset");
ABSL_FLAG(int, layers, 1, "coupling pairs / autoregressive layers");
ABSL_FLAG(int, bins, 16, "spline bins K");
ABSL_FLAG(int, components, 8, "Moebius mixture components M");
ABSL_FLAG(int, hidden, 64, "conditioner width (two hidden layers)");
ABSL_FLAG(int, batch, 256, "samples per step");
ABSL_FLAG(double, lr, 2e-3, "Adam learning rate");
ABSL_FLAG(int, eval_samples, 100000, "samples for KL and ESS");

namespace flowtape::benchmarks {
namespace {
using manifolds::CircleMapKind;
using manifolds::TorusFlow;
using manifolds::TorusFlowOptions;
using manifolds::TorusStructure;

const std::vector<std::string> kModels = {"ar_spline", "ar_mobius",
                                          "coupling_spline", "coupling_mobius"};

struct Settings {
  int layers, bins, components, hidden;
};

std::shared_ptr<flows::Flow> MakeFlow(const std::string& name,
                                      const Settings& s, Rng& rng) {
  TorusFlowOptions o;
  o.dims = 2;
  o.hidden = {s.hidden, s.hidden};
  if (absl::EndsWith(name, "mobius")) {
    o.map.kind = CircleMapKind::kMobius;
    o.map.components = s.components;
  } else {
    o.map.bins = s.bins;
  }
  std::vector<std::shared_ptr<flows::Flow>> steps;
  for (int l = 0; l < s.layers; ++l) {
    if (absl::StartsWith(name, "ar")) {
      o.structure = TorusStructure::kAutoregressive;
      steps.push_back(*TorusFlow::Create(o, rng));
    } else {
      o.structure = TorusStructure::kCoupling;
      for (bool flip : {false, true}) {
        o.flip = flip;
        steps.push_back(*TorusFlow::Create(o, rng));
      }
    }
  }
  // The torus flows' Forward is the generative map u -> x.
  return std::make_shared<flows::Invert>(
      std::make_shared<flows::Sequential>(steps));
}

struct Score {
  double kl, ess, log_z_is;  // KL, ESS in %, importance-sampling log Z
};

Score Evaluate(const flows::FlowModel& model, manifolds::TorusTarget target,
               double log_z, int64_t m, Rng& rng) {
  std::vector<double> log_w;
  const int64_t chunk = 10000;
  for (int64_t done = 0; done < m; done += chunk) {
    TapeScope scope;
    NoGradScope no_grad;
    auto s = model.SampleWithLogProb(std::min(chunk, m - done), rng);
    Tensor lw = manifolds::TorusTargetLogDensity(target, s.x) - s.log_prob;
    for (int64_t i = 0; i < lw.numel(); ++i) log_w.push_back(lw[i]);
  }
  double top = -1e300, mean_log_w = 0;
  for (double v : log_w) {
    top = std::max(top, v);
    mean_log_w += v / log_w.size();
  }
  double s1 = 0, s2 = 0;
  for (double v : log_w) {
    s1 += std::exp(v - top);
    s2 += std::exp(2 * (v - top));
  }
  return {log_z - mean_log_w, 100.0 * s1 * s1 / (log_w.size() * s2),
          top + std::log(s1 / log_w.size())};
}

struct Cell {
  std::vector<double> kl, ess;
};

absl::Status Run(cli::Experiment& ex) {
  benchmarks::ReverseKlSettings rk;
  rk.full = absl::GetFlag(FLAGS_full);
  rk.seeds = absl::GetFlag(FLAGS_seeds);
  rk.steps = absl::GetFlag(FLAGS_steps);
  rk.layers = absl::GetFlag(FLAGS_layers);
  rk.bins = absl::GetFlag(FLAGS_bins);
  rk.components = absl::GetFlag(FLAGS_components);
  rk.hidden = absl::GetFlag(FLAGS_hidden);
  rk.batch = absl::GetFlag(FLAGS_batch);
  rk.eval_samples = absl::GetFlag(FLAGS_eval_samples);
  rk.lr = absl::GetFlag(FLAGS_lr);
  FT_RETURN_IF_ERROR(benchmarks::ReadReverseKlSettings(rk, 1000));
  FT_RETURN_IF_ERROR(benchmarks::CheckReverseKlMemory(rk, 3.0, 10000));
  const bool full = rk.full;
  const int seeds = rk.seeds, steps = rk.steps, batch = rk.batch;
  const int eval_samples = rk.eval_samples;
  const double lr = rk.lr;
  const Settings settings{rk.layers, rk.bins, rk.components, rk.hidden};
  std::vector<manifolds::TorusTarget> targets;
  for (const std::string& t : std::vector<std::string>(
           absl::StrSplit(absl::GetFlag(FLAGS_targets), ','))) {
    FT_ASSIGN_OR_RETURN(manifolds::TorusTarget target,
                        manifolds::ParseTorusTarget(t));
    targets.push_back(target);
  }
  std::vector<std::string> models =
      absl::StrSplit(absl::GetFlag(FLAGS_models), ',');
  for (const std::string& m : models)
    if (std::find(kModels.begin(), kModels.end(), m) == kModels.end())
      return absl::InvalidArgumentError(absl::StrCat(
          "--models: unknown '", m, "' (", absl::StrJoin(kModels, ", "), ")"));
  ex.config() = {{"steps", steps},
                 {"seeds", seeds},
                 {"layers", settings.layers},
                 {"bins", settings.bins},
                 {"components", settings.components},
                 {"hidden", settings.hidden},
                 {"batch", batch},
                 {"lr", lr},
                 {"eval_samples", eval_samples},
                 {"objective", "reverse KL"}};
  ex.set_seed(0);  // seed k: initialisation 300 + k, samples k
  std::map<std::string, std::map<std::string, Cell>> cells;  // model, target
  for (manifolds::TorusTarget target : targets) {
    const std::string tname = manifolds::TorusTargetName(target);
    const double log_z = manifolds::TorusLogNormalizer(target, 64);
    const double log_z32 = manifolds::TorusLogNormalizer(target, 32);
    const double closed_form = manifolds::TorusLogNormalizerClosedForm(target);
    std::cout << absl::StrFormat(
        "%-10s log Z (trapezoid 64^2) = %.15f, |64^2 - 32^2| = %.1e, "
        "|64^2 - closed form| = %.1e\n",
        tname, log_z, std::abs(log_z - log_z32), std::abs(log_z - closed_form));
    ex.metrics()["log_z"][tname] = log_z;
    training::LogDensityFn log_p = [target](const Tensor& x) {
      return manifolds::TorusTargetLogDensity(target, x);
    };
    for (const std::string& name : models) {
      for (int seed = 0; seed < seeds; ++seed) {
        training::ReverseKlReplicaFactory make =
            [&](int) -> absl::StatusOr<training::ReverseKlReplica> {
          Rng init(300 + seed);
          auto model = std::make_shared<flows::FlowModel>(
              manifolds::UniformTorus::Create(2).value(),
              MakeFlow(name, settings, init));
          model->To(ex.dtype());
          FT_ASSIGN_OR_RETURN(
              auto opt, nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/lr}));
          return training::ReverseKlReplica{model, log_p, opt};
        };
        training::ReverseKlOptions o;
        o.batch_size = batch;
        o.steps = steps;
        o.log_every = 0;
        o.seed = seed;
        o.clip_grad_norm = 100.0;
        const auto start = std::chrono::steady_clock::now();
        FT_ASSIGN_OR_RETURN(training::ThreadedReverseKl trained,
                            ex.TrainReverseKl(make, o));
        const training::ReverseKlResult& r = trained.result;
        const flows::FlowModel& model = *trained.replica.model;
        const double secs = std::chrono::duration<double>(
                                std::chrono::steady_clock::now() - start)
                                .count();
        training::TrainResult as_losses;
        as_losses.losses = r.free_energy;
        ex.history().AddTraining(as_losses, std::max(1, steps / 50),
                                 absl::StrCat(tname, "/", name, "/seed", seed));
        const io::Json meta = {{"target", tname},
                               {"model", name},
                               {"seed", seed},
                               {"layers", settings.layers},
                               {"bins", settings.bins},
                               {"components", settings.components},
                               {"hidden", settings.hidden},
                               {"dtype", cli::DTypeFlagName(ex.dtype())}};
        FT_RETURN_IF_ERROR(nn::SaveCheckpoint(
            ex.Output(absl::StrCat(tname, "_", name, "_seed", seed, ".ckpt")),
            model, nullptr, {{"torus_flow", meta.dump()}}));
        Rng eval(1000 + seed);
        Score sc = Evaluate(model, target, log_z, eval_samples, eval);
        cells[name][tname].kl.push_back(sc.kl);
        cells[name][tname].ess.push_back(sc.ess);
        ex.metrics()["per_seed"][tname][name].push_back(
            {{"kl", sc.kl},
             {"ess_percent", sc.ess},
             {"log_z_is", sc.log_z_is}});
        std::cout << absl::StrFormat(
                         "%-10s %-16s seed %d: KL %.4f nats  ESS %5.1f%%  "
                         "IS log Z %.4f  (%d steps, %.1fs%s)",
                         tname, name, seed, sc.kl, sc.ess, sc.log_z_is, r.steps,
                         secs, r.diverged ? ", diverged" : "")
                  << std::endl;
      }
    }
  }
  std::cout << absl::StrFormat(
      "\nReverse KL on T^2: KL(q || p) nats / ESS %% (mean +- std over %d "
      "seeds, %d steps, batch %d, %d eval samples)%s\n",
      seeds, steps, batch, eval_samples, full ? " [--full]" : " [quick]");
  std::cout << absl::StrFormat("%-34s", "model");
  for (auto t : targets)
    std::cout << absl::StrFormat("%-30s", manifolds::TorusTargetName(t));
  std::cout << "\n";
  for (const std::string& name : models) {
    const std::string label = absl::StrCat(
        name, " (", settings.layers, " layer", settings.layers > 1 ? "s" : "",
        absl::EndsWith(name, "mobius")
            ? absl::StrCat(", M = ", settings.components)
            : absl::StrCat(", K = ", settings.bins),
        ")");
    std::cout << absl::StrFormat("%-34s", label);
    for (auto t : targets) {
      const Cell& c = cells[name][manifolds::TorusTargetName(t)];
      std::cout << absl::StrFormat(
          "%-30s", benchmarks::MeanSd(c.kl, "%.4f+-%.4f") + " / " +
                       benchmarks::MeanSd(c.ess, "%.1f+-%.1f%%"));
      ex.metrics()["kl"][manifolds::TorusTargetName(t)][name] =
          benchmarks::MeanSd(c.kl, "%.4f +- %.4f");
    }
    std::cout << "\n";
  }
  std::cout << "Rezende et al. 2020's own T^2 numbers: not quoted (their "
               "table could not be found; see README.md)\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace flowtape::benchmarks

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"torus",
       "torus flows (circle splines, Moebius mixtures) trained by reverse KL "
       "on the unimodal, multimodal and correlated T^2 targets of Rezende et "
       "al. 2020: KL and ESS.\n"
       "  ./bazelw run --config=opt //benchmarks:torus [-- --full]",
       flowtape::kFloat64},
      argc, argv, flowtape::benchmarks::Run);
}

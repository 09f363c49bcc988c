// Stochastic normalizing flows (Wu, Koehler & Noe 2020) against the same
// RealNVP without stochastic layers, trained by reverse KL on the 2-D
// energies U1-U4 of Rezende & Mohamed 2015 and the SNF paper's double well
// (flows/energies.h). U2-U4 are improper along z1 and are confined to the
// box [-4, 4]^2 by a soft wall (ConfinedEnergy, width 0.1).
//
//   ./bazelw run --config=opt //benchmarks:snf_energies -- [flags]
//   flags: --energies=u1,u2,u3,u4,double_well
//          --models=realnvp,snf_mh,snf_langevin (also snf_mala)
//          --steps=600 --batch=256 --blocks=3 --hidden=32 --lr=2e-3
//          --mcmc_steps=5 --proposal_scale=0.3 --step_size=0.005
//          --learn_step_size (Langevin / MALA layers learn eps = exp(a))
//          --eval=20000 --seed=1
// Models (flows/snf.h): `blocks` RealNVP blocks (two affine couplings, MLP
// 2 x hidden); the SNFs add after each block a stochastic layer with
// mcmc_steps Metropolis (snf_mh), unadjusted Langevin (snf_langevin) or MALA
// (snf_mala) steps on the energy interpolated from |x|^2 / 2 to u. Adam,
// cosine schedule, inverse temperature annealed from 0.01 to 1 over the
// first half (as Rezende & Mohamed), training by TrainReverseKl on --threads
// replicas or the ranks of mpirun (Experiment::TrainReverseKl; an SNF's
// stochastic layers then draw their noise per replica, so runs on different
// replica counts agree in distribution, not bit for bit).
// Evaluation on --eval fresh samples (training/importance.h): the free
// energy F = E[u(x) + log_prob] (for SNFs over paths), KL = F + log Z with
// log Z by quadrature (midpoint rule, h = 0.01), the importance-weighted
// log Z and its standard error, and the effective sample size.
// Prints a table. Output in --out_dir (cli/cli.h): results.json
// (every number; config: the flags), history.csv (the free energy per
// --steps/4 steps, run "<energy>/<model>") and <energy>_<model>.ckpt per
// trained model: an nn/checkpoint.h file of the FlowModel's parameters and
// buffers whose metadata "snf" holds {"energy", "model", "blocks", "hidden",
// "mcmc_steps", "proposal_scale", "step_size", "learn_step_size", "dtype"}:
// flows::MakeSnf with those options (the target from MakeTarget(energy)) in
// a FlowModel with a standard normal base, then LoadCheckpoint, rebuilds it.
// Training that diverges stops at the NaN guard's restored state
// (training/reverse_kl.h) and is scored there; its row says "[diverged]" and
// results.json's "note" holds the guard's message. Published numbers: none
// printed beside ours: the tables of Wu, Koehler & Noe 2020 could not be
// read from the sources searched (README.md, `snf_energies`).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "autodiff/status_macros.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "flows/distribution.h"
#include "flows/energies.h"
#include "flows/flow_model.h"
#include "flows/snf.h"
#include "io/json.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "training/importance.h"
#include "training/reverse_kl.h"
#include "training/train_threads.h"

ABSL_FLAG(std::string, energies, "u1,u2,u3,u4,double_well",
          "targets: u1..u4 (Rezende & Mohamed), double_well (SNF paper)");
ABSL_FLAG(std::string, models, "realnvp,snf_mh,snf_langevin",
          "realnvp, snf_mh, snf_langevin, snf_mala");
ABSL_FLAG(int64_t, steps, 600, "Adam steps");
ABSL_FLAG(int64_t, batch, 256, "samples per step");
ABSL_FLAG(int64_t, blocks, 3, "RealNVP blocks (two couplings each)");
ABSL_FLAG(int64_t, hidden, 32, "width of the couplings' two hidden layers");
ABSL_FLAG(double, lr, 2e-3, "Adam learning rate (cosine schedule)");
ABSL_FLAG(int64_t, mcmc_steps, 5, "kernel steps per stochastic layer");
ABSL_FLAG(double, proposal_scale, 0.3, "Metropolis random-walk sd");
ABSL_FLAG(double, step_size, 0.005, "Langevin / MALA step size");
ABSL_FLAG(bool, learn_step_size, false,
          "Langevin / MALA: learn each layer's step size (from --step_size)");
ABSL_FLAG(int64_t, eval, 20000, "samples for the importance estimates");
ABSL_FLAG(uint64_t, seed, 1, "seed");

namespace flowtape::benchmarks {
namespace {

absl::StatusOr<flows::EnergyPtr> MakeTarget(const std::string& name) {
  if (name == "double_well") {
    FT_ASSIGN_OR_RETURN(auto dw, flows::DoubleWellEnergy::Create({}));
    return flows::EnergyPtr(dw);
  }
  auto rezende = flows::RezendeEnergy::Create(name);
  if (!rezende.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("--energies: unknown energy '", name,
                     "'; expected u1, u2, u3, u4 or double_well"));
  flows::EnergyPtr u = *rezende;
  if (name == "u1") return u;
  FT_ASSIGN_OR_RETURN(auto c, flows::ConfinedEnergy::Create(u, 4.0, 0.1));
  return flows::EnergyPtr(c);
}

absl::StatusOr<flows::StochasticKind> ParseModel(const std::string& m) {
  if (m == "realnvp") return flows::StochasticKind::kNone;
  if (m == "snf_mh") return flows::StochasticKind::kMetropolis;
  if (m == "snf_langevin") return flows::StochasticKind::kLangevin;
  if (m == "snf_mala") return flows::StochasticKind::kMala;
  return absl::InvalidArgumentError(
      absl::StrCat("--models: unknown model '", m,
                   "'; expected realnvp, snf_mh, snf_langevin or snf_mala"));
}

struct Row {
  std::string energy, model;
  double log_z_quad = 0, seconds = 0;
  training::ImportanceEstimate est;
  std::string note;
  std::vector<double> step_sizes;  // learned eps per stochastic layer
};

absl::StatusOr<Row> TrainOne(cli::Experiment& ex,
                             const flows::EnergyPtr& target,
                             const std::string& model_name, double log_z) {
  FT_ASSIGN_OR_RETURN(flows::StochasticKind kind, ParseModel(model_name));
  flows::SnfOptions o;
  o.target = target;
  o.blocks = absl::GetFlag(FLAGS_blocks);
  o.hidden = {absl::GetFlag(FLAGS_hidden), absl::GetFlag(FLAGS_hidden)};
  o.kind = kind;
  o.mcmc_steps = absl::GetFlag(FLAGS_mcmc_steps);
  o.proposal_scale = absl::GetFlag(FLAGS_proposal_scale);
  o.step_size = absl::GetFlag(FLAGS_step_size);
  o.learn_step_size = absl::GetFlag(FLAGS_learn_step_size);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const int64_t steps = absl::GetFlag(FLAGS_steps);
  const double lr = absl::GetFlag(FLAGS_lr);
  const training::LogDensityFn log_p = training::EnergyLogDensity(target);
  // One replica per --threads thread (or mpirun rank), each taking its
  // share of every step's samples (training/reverse_kl.h: the base draws
  // are shared, a stochastic layer's draws are each replica's own).
  training::ReverseKlReplicaFactory make =
      [&](int) -> absl::StatusOr<training::ReverseKlReplica> {
    Rng init(seed);
    FT_ASSIGN_OR_RETURN(auto flow, flows::MakeSnf(o, init));
    auto model = std::make_shared<flows::FlowModel>(
        flows::StandardNormal::Create(Shape{target->dim()}).value(), flow);
    model->To(ex.dtype());
    FT_ASSIGN_OR_RETURN(auto adam,
                        nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/lr}));
    adam->set_schedule(nn::CosineAnnealingLr(lr, steps));
    return training::ReverseKlReplica{model, log_p, adam};
  };
  training::ReverseKlOptions t;
  t.batch_size = absl::GetFlag(FLAGS_batch);
  t.steps = steps;
  t.anneal_steps = steps / 2;
  t.log_every = std::max<int64_t>(1, steps / 4);
  t.seed = seed + 1;
  const auto start = std::chrono::steady_clock::now();
  FT_ASSIGN_OR_RETURN(training::ThreadedReverseKl trained,
                      ex.TrainReverseKl(make, t));
  const training::ReverseKlResult& r = trained.result;
  const flows::FlowModel& model = *trained.replica.model;
  Row row;
  row.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  training::TrainResult as_losses;
  as_losses.losses = r.free_energy;
  const std::string run = absl::StrCat(target->name(), "/", model_name);
  ex.history().AddTraining(as_losses, t.log_every, run);
  if (r.diverged) row.note = r.message;
  Rng eval(seed + 2);
  FT_ASSIGN_OR_RETURN(row.est,
                      training::EstimateLogNormalizer(
                          model, log_p, absl::GetFlag(FLAGS_eval), eval, 4000));
  for (const auto& [name, p] : model.NamedParameters())
    if (absl::EndsWith(name, "log_step_size"))
      row.step_sizes.push_back(std::exp(p.item()));
  const io::Json meta = {{"energy", target->name()},
                         {"model", model_name},
                         {"blocks", o.blocks},
                         {"hidden", o.hidden},
                         {"mcmc_steps", o.mcmc_steps},
                         {"proposal_scale", o.proposal_scale},
                         {"step_size", o.step_size},
                         {"learn_step_size", o.learn_step_size},
                         {"dtype", cli::DTypeFlagName(ex.dtype())}};
  FT_RETURN_IF_ERROR(nn::SaveCheckpoint(
      ex.Output(absl::StrCat(target->name(), "_", model_name, ".ckpt")), model,
      nullptr, {{"snf", meta.dump()}}));
  row.energy = target->name();
  row.model = model_name;
  row.log_z_quad = log_z;
  return row;
}

absl::Status CheckSnfFlags() {
  const int64_t steps = absl::GetFlag(FLAGS_steps),
                batch = absl::GetFlag(FLAGS_batch),
                blocks = absl::GetFlag(FLAGS_blocks),
                hidden = absl::GetFlag(FLAGS_hidden),
                mcmc = absl::GetFlag(FLAGS_mcmc_steps),
                eval = absl::GetFlag(FLAGS_eval);
  const double lr = absl::GetFlag(FLAGS_lr),
               scale = absl::GetFlag(FLAGS_proposal_scale),
               eps = absl::GetFlag(FLAGS_step_size);
  FT_RETURN_IF_ERROR(cli::CheckFlags({
      {"steps", steps, steps > 0, "> 0"},
      {"batch", batch, batch > 0, "> 0"},
      {"blocks", blocks, blocks > 0 && blocks <= 64, "in [1, 64]"},
      {"hidden", hidden, hidden > 0, "> 0"},
      {"mcmc_steps", mcmc, mcmc > 0 && mcmc <= 1000, "in [1, 1000]"},
      {"eval", eval, eval > 0, "> 0"},
      {"lr", lr, lr > 0 && lr < 1, "in (0, 1)"},
      {"proposal_scale", scale, scale > 0 && scale < 100, "in (0, 100)"},
      {"step_size", eps, eps > 0 && eps < 10, "in (0, 10)"},
  }));
  // Each kernel step keeps an MLP-sized handful of [batch, 2] values per
  // layer on the tape; count them as extra flow layers.
  return cli::CheckRunMemory(
      cli::FlowFootprint(2.0 * blocks + blocks * mcmc, 2, 0, {hidden, hidden},
                         std::max(batch, int64_t{4000}), 0),
      absl::StrCat("--batch=", batch, " --blocks=", blocks,
                   " --hidden=", hidden, " --mcmc_steps=", mcmc));
}

absl::Status Run(cli::Experiment& ex) {
  FT_RETURN_IF_ERROR(CheckSnfFlags());
  ex.set_seed(absl::GetFlag(FLAGS_seed));
  const std::vector<std::string> energies =
      absl::StrSplit(absl::GetFlag(FLAGS_energies), ',', absl::SkipEmpty());
  const std::vector<std::string> models =
      absl::StrSplit(absl::GetFlag(FLAGS_models), ',', absl::SkipEmpty());
  if (energies.empty() || models.empty())
    return absl::InvalidArgumentError(
        "--energies and --models must name one "
        "or more targets and models");
  for (const std::string& m : models)
    FT_RETURN_IF_ERROR(ParseModel(m).status());
  for (const std::string& name : energies)
    FT_RETURN_IF_ERROR(MakeTarget(name).status());
  ex.config() = {{"energies", energies},
                 {"models", models},
                 {"steps", absl::GetFlag(FLAGS_steps)},
                 {"batch", absl::GetFlag(FLAGS_batch)},
                 {"blocks", absl::GetFlag(FLAGS_blocks)},
                 {"hidden", absl::GetFlag(FLAGS_hidden)},
                 {"lr", absl::GetFlag(FLAGS_lr)},
                 {"lr_schedule", "cosine"},
                 {"anneal", "inverse temperature 0.01 -> 1 over steps / 2"},
                 {"mcmc_steps", absl::GetFlag(FLAGS_mcmc_steps)},
                 {"proposal_scale", absl::GetFlag(FLAGS_proposal_scale)},
                 {"step_size", absl::GetFlag(FLAGS_step_size)},
                 {"learn_step_size", absl::GetFlag(FLAGS_learn_step_size)},
                 {"eval", absl::GetFlag(FLAGS_eval)},
                 {"objective", "reverse KL"}};
  std::vector<Row> rows;
  for (const std::string& name : energies) {
    FT_ASSIGN_OR_RETURN(flows::EnergyPtr target, MakeTarget(name));
    // The double well's x2 is a unit Gaussian: integrate to |x| <= 7.
    const double lim = name == "double_well" ? 7.0 : 5.0;
    FT_ASSIGN_OR_RETURN(double log_z,
                        flows::LogNormalizer2D(*target, lim, int(200 * lim)));
    for (const std::string& m : models) {
      FT_ASSIGN_OR_RETURN(Row row, TrainOne(ex, target, m, log_z));
      std::printf(
          "%-12s %-13s F %8.4f  KL %7.4f  log Z %8.4f +- %.4f "
          "(quadrature %8.4f)  ESS %5.1f%%  %5.1f s%s\n",
          row.energy.c_str(), m.c_str(), row.est.free_energy,
          row.est.free_energy + log_z, row.est.log_z, row.est.log_z_stderr,
          log_z, 100 * row.est.ess_fraction, row.seconds,
          row.note.empty() ? "" : "  [diverged]");
      if (!row.step_sizes.empty())
        std::printf(
            "%-12s %-13s learned step sizes (S_K, the target's layer, "
            "first): %s\n",
            row.energy.c_str(), m.c_str(),
            absl::StrJoin(row.step_sizes, ", ").c_str());
      std::fflush(stdout);
      ex.metrics()[row.energy][m] = {{"free_energy", row.est.free_energy},
                                     {"kl", row.est.free_energy + log_z},
                                     {"log_z_is", row.est.log_z},
                                     {"log_z_is_stderr", row.est.log_z_stderr},
                                     {"log_z_quadrature", log_z},
                                     {"ess_fraction", row.est.ess_fraction},
                                     {"train_seconds", row.seconds},
                                     {"step_sizes", row.step_sizes},
                                     {"note", row.note}};
      rows.push_back(row);
    }
  }
  std::printf(
      "\n| energy | model | F | KL = F + log Z | log Z (IS) | log Z "
      "(quadrature) | ESS | train s |\n| --- | --- | --- | --- | --- | --- | "
      "--- | --- |\n");
  for (const Row& r : rows)
    std::printf(
        "| %s | %s | %.3f | %.3f | %.3f +- %.3f | %.3f | %.1f%% | "
        "%.0f |\n",
        r.energy.c_str(), r.model.c_str(), r.est.free_energy,
        r.est.free_energy + r.log_z_quad, r.est.log_z, r.est.log_z_stderr,
        r.log_z_quad, 100 * r.est.ess_fraction, r.seconds);
  return absl::OkStatus();
}

}  // namespace
}  // namespace flowtape::benchmarks

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"snf_energies",
       "Stochastic normalizing flows vs RealNVP by reverse KL on U1-U4 and "
       "the double well:\n  ./bazelw run --config=opt "
       "//benchmarks:snf_energies -- --steps=600",
       flowtape::kFloat64},
      argc, argv, flowtape::benchmarks::Run);
}

// Any zoo flow on any 2-D toy density (maximum likelihood), or on a
// Rezende & Mohamed energy U1-U4 (reverse KL, variational inference).
//
//   bazel run --config=opt //experiments:toy2d -- --flow=maf --data=pinwheel
//   bazel run --config=opt //experiments:toy2d -- --flow=planar --energy=u2
//   bazel run //experiments:toy2d -- --list
//
// Maximum likelihood: --n_train samples (plus 10% validation and a 10000
// point test set), prints the test NLL in nats and writes
// <prefix>_density.png, <prefix>_samples.png (data | model) and
// <prefix>_loss.png (training and validation NLL per step).
// Reverse KL: prints the free energy F = E_q[log q - log p~] and, for U1,
// KL(q || p) = F + log Z (log Z by quadrature; U2-U4 are improper along z1,
// so only F is meaningful), and writes <prefix>_density.png (target | q)
// and <prefix>_samples.png (samples of q).
#include "data/toy2d.h"

#include <cmath>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "experiments/common.h"
#include "experiments/figures.h"
#include "flows/cnf/cnf.h"
#include "models/zoo.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "parallel/mpi/mpi_communicator.h"
#include "training/energies.h"
#include "training/reverse_kl.h"
#include "training/train.h"
#include "viz/heatmap.h"

ABSL_FLAG(std::string, flow, "realnvp", "zoo flow name (--list)");
ABSL_FLAG(std::string, data, "moons", "toy data set (--list)");
ABSL_FLAG(std::string, energy, "",
          "u1..u4: fit the flow to exp(-U) by reverse KL instead of data");
ABSL_FLAG(bool, list, false, "list flows and data sets, then exit");
ABSL_FLAG(int64_t, steps, 5000, "optimizer steps");
ABSL_FLAG(int64_t, batch, 256, "minibatch size");
ABSL_FLAG(double, lr, 2e-3, "Adam learning rate (cosine-annealed)");
ABSL_FLAG(int, layers, 8, "flow layers (couplings, MADEs, planar units)");
ABSL_FLAG(std::string, hidden, "64,64", "hidden sizes of conditioner nets");
ABSL_FLAG(int64_t, n_train, 30000, "training samples");
ABSL_FLAG(int64_t, patience, 0, "early stopping patience (evaluations)");
ABSL_FLAG(uint64_t, seed, 0, "random seed");
ABSL_FLAG(bool, train_t, false, "ffjord/rnode: learn the integration time T");
ABSL_FLAG(std::string, prefix, "", "output file prefix (default flow_data)");

namespace flowtape::experiments {
namespace {

absl::Status Run() {
  if (absl::GetFlag(FLAGS_list)) {
    for (const models::ZooEntry& e : models::ZooEntries())
      std::cout << absl::StrFormat(
          "%-14s %-7s %s\n", e.name,
          e.domain == models::Domain::kVectors ? "vectors" : "images",
          e.description);
    std::cout << "data:";
    for (const std::string& d : data::Toy2dNames()) std::cout << " " << d;
    std::cout << "\nenergies: u1 u2 u3 u4\n";
    return absl::OkStatus();
  }
  const int64_t steps = absl::GetFlag(FLAGS_steps);
  const int64_t batch = absl::GetFlag(FLAGS_batch);
  const double lr = absl::GetFlag(FLAGS_lr);
  const int layers = absl::GetFlag(FLAGS_layers);
  const int64_t n_train = absl::GetFlag(FLAGS_n_train);
  const int64_t patience = absl::GetFlag(FLAGS_patience);
  auto hidden = ParseSizeList("hidden", absl::GetFlag(FLAGS_hidden));
  if (!hidden.ok()) return hidden.status();
  if (absl::Status s = CheckFlags({
          {"steps", steps, steps > 0, "> 0"},
          {"batch", batch, batch > 0, "> 0"},
          {"lr", lr, std::isfinite(lr) && lr > 0, "finite and > 0"},
          {"layers", layers, layers > 0, "> 0"},
          {"n_train", n_train, n_train > 0, "> 0"},
          {"patience", patience, patience >= 0, ">= 0"},
      });
      !s.ok())
    return s;
  // Train + validation (n/10) + 10000 test points of 2 values; evaluation
  // and plots run in chunks of at most 5000 without a tape.
  const double data_values =
      2.0 * (static_cast<double>(n_train) * 1.1 + 10000.0);
  if (absl::Status s = CheckRunMemory(
          FlowFootprint(layers, 2, 0, *hidden, std::max<int64_t>(batch, 5000),
                        data_values),
          absl::StrCat("--layers=", layers,
                       " --hidden=", absl::GetFlag(FLAGS_hidden),
                       " --batch=", batch, " --n_train=", n_train));
      !s.ok())
    return s;
  models::ModelConfig config;
  config.layers = layers;
  config.train_t = absl::GetFlag(FLAGS_train_t);
  config.hidden = *hidden;
  Rng rng(absl::GetFlag(FLAGS_seed));
  const std::string flow = absl::GetFlag(FLAGS_flow);
  auto model_or = models::MakeModel(flow, config, rng);
  if (!model_or.ok()) return model_or.status();
  flows::FlowModel& model = **model_or;
  nn::Adam adam(model, {.lr = lr});
  adam.set_schedule(nn::CosineAnnealingLr(lr, steps));
  const std::string energy_name = absl::GetFlag(FLAGS_energy);
  const std::string what =
      energy_name.empty() ? absl::GetFlag(FLAGS_data) : energy_name;
  std::string prefix = absl::GetFlag(FLAGS_prefix);
  if (prefix.empty()) prefix = flow + "_" + what;
  std::cout << absl::StrFormat("%s on %s: %d parameters\n", model.name(), what,
                               model.NumParameters());
  const viz::Box box{-4, 4, -4, 4};
  auto log_q = [&](const Tensor& x) { return model.LogProb(x); };

  Tensor shown;  // data samples for the left scatter plot
  if (!energy_name.empty()) {
    auto energy = training::ParseEnergy(energy_name);
    if (!energy.ok()) return energy.status();
    auto log_p = training::EnergyLogDensity(*energy);
    training::ReverseKlOptions o;
    o.batch_size = batch;
    o.steps = steps;
    o.anneal_steps = steps / 2;
    o.log_every = std::max<int64_t>(1, steps / 10);
    o.seed = absl::GetFlag(FLAGS_seed);
    auto r = training::TrainReverseKl(model, log_p, adam, o);
    if (!r.ok()) return r.status();
    Rng eval(123);
    const double f = training::FreeEnergy(model, log_p, 20000, eval);
    std::string kl = "KL undefined: exp(-U) is improper along z1";
    if (*energy == training::Energy::kU1) {
      const double log_z = training::LogNormalizer(*energy);
      kl = absl::StrFormat("KL(q || p) = %.4f nats, log Z = %.4f", f + log_z,
                           log_z);
    }
    std::cout << absl::StrFormat("%s: F = E_q[log q - log p~] = %.4f (%s)%s\n",
                                 what, f, kl,
                                 r->diverged ? "  [" + r->message + "]" : "");
    viz::Heatmap target = viz::DensityHeatmap(log_p, box);
    target.title = "target exp(\u2212U)";
    target.colorbar_label = "exp(\u2212U(x))";
    viz::Figure density;
    density.Add(target).Add(viz::DensityHeatmap(log_q, box));
    WriteFigureOrWarn(density, prefix + "_density.png");
  } else {
    const int64_t n = n_train;
    const std::string name = absl::GetFlag(FLAGS_data);
    training::TrainData data;
    auto train = data::SampleToy2d(name, n, rng);
    if (!train.ok()) return train.status();
    data.train = *train;
    data.val =
        data::SampleToy2d(name, std::max<int64_t>(n / 10, 1), rng).value();
    Tensor test = data::SampleToy2d(name, 10000, rng).value();
    training::TrainOptions o;
    o.batch_size = batch;
    o.max_steps = steps;
    o.eval_every = std::max<int64_t>(1, steps / 20);
    o.log_every = std::max<int64_t>(1, steps / 10);
    o.patience = patience;
    o.seed = absl::GetFlag(FLAGS_seed);
    // Under mpirun: one replica per process; rank 0 reports.
    FT_ASSIGN_OR_RETURN(o.communicator,
                        parallel::CommunicatorFromEnvironment());
    // RNODE: a pass's "regularization" extra (the CNF's kinetic/Jacobian
    // penalty) joins the training loss; other flows have none.
    training::NllFn nll_fn = [&model](const Tensor& x, const Tensor& c,
                                      Rng& rng) {
      flows::FlowModel::Density d = model.Score(x, c, &rng);
      Tensor loss = -Mean(d.log_prob);
      Tensor penalty = d.pass.extra(flows::cnf::kRegularization);
      return penalty.defined() ? loss + Mean(penalty) : loss;
    };
    auto r = training::TrainNll(model, nll_fn, adam, data, o);
    if (!r.ok()) return r.status();
    if (o.communicator != nullptr && o.communicator->rank() != 0)
      return absl::OkStatus();
    const double nll =
        training::EvaluateNll(training::ModelNll(model), test, Tensor(), 2000);
    std::cout << absl::StrFormat(
        "%s: test NLL %.4f nats (%d steps, %.1f s, %s)\n", what, nll, r->steps,
        r->seconds, r->message);
    viz::Figure density;
    density.Add(viz::DensityHeatmap(log_q, box));
    WriteFigureOrWarn(density, prefix + "_density.png");
    WriteFigureOrWarn(LossFigure(*r, model.name() + " on " + what),
                      prefix + "_loss.png");
    shown = test;
  }
  Tensor samples;
  {
    NoGradScope no_grad;
    samples = model.Sample(5000, rng);
  }
  WriteFigureOrWarn(SamplesFigure(shown, samples, box),
                    prefix + "_samples.png");
  return absl::OkStatus();
}

}  // namespace
}  // namespace flowtape::experiments

int main(int argc, char** argv) {
  return flowtape::experiments::RunMain(argc, argv, "toy2d",
                                        flowtape::experiments::Run);
}

// Any zoo flow on any 2-D toy density (maximum likelihood), or on a
// Rezende & Mohamed energy U1-U4 (reverse KL, variational inference).
//
//   bazel run --config=opt //experiments:toy2d -- --flow=maf --data=pinwheel
//   bazel run --config=opt //experiments:toy2d -- --flow=planar --energy=u2
//   bazel run //experiments:toy2d -- --list
//
// Maximum likelihood (on --threads replicas): --n_train samples (plus 10%
// validation and a 10000 point test set), prints the test NLL in nats and
// writes density.png, samples.png (data | model) and loss.png (training and
// validation NLL per step).
// Reverse KL (on --threads replicas, each taking its share of every step's
// samples): prints the free energy F = E_q[log q - log p~] and, for U1,
// KL(q || p) = F + log Z (log Z by quadrature; U2-U4 are improper along z1,
// so only F is meaningful), and writes density.png (target | q) and
// samples.png (samples of q); history.csv's train_loss is the minibatch F.
// A stochastic flow (snf) has no exact log q(x): the test NLL is that of
// its single-path estimate (an upper bound on -log q in expectation), and
// test_nll_iw that of the --iw_samples-path importance-weighted estimate
// log (1/K) sum_k exp(log q_k(x)) (a lower bound on log q(x) in expectation,
// tightening as K grows), which density.png shows too.
// cfm (the catalogue's flow-matching field) is not trained by maximum
// likelihood but by conditional flow matching on the OT path (sigma_min
// 1e-4, independent pairs; training/train_flow_matching.h, EMA 0.999),
// validated and scored by its exact NLL like the others.
// Both write model.ftm, results.json and history.csv to --out_dir
// (cli/cli.h).
#include "data/toy2d.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "cli/figures.h"
#include "flows/cnf/cnf.h"
#include "flows/matching/cfm.h"
#include "flows/matching/cfm_flow.h"
#include "flows/matching/path.h"
#include "models/model_file.h"
#include "models/zoo.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "training/energies.h"
#include "training/reverse_kl.h"
#include "training/train.h"
#include "training/train_flow_matching.h"
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
ABSL_FLAG(std::string, base, "family",
          "base distribution: family (the flow's own), gmm (a trainable "
          "Gaussian mixture of --components diagonal components), "
          "gmm_full (full covariances) or resampled (a standard normal "
          "resampled by a learned acceptance, Stimper et al. 2022)");
ABSL_FLAG(int64_t, iw_samples, 16,
          "stochastic flows (snf): paths per point of the importance-weighted "
          "test NLL and of the density plot");
ABSL_FLAG(int64_t, components, 8,
          "mixture components: gf's kernels per layer, the gmm base's");

namespace flowtape::experiments {
namespace {

// cfm's training (see the top): replicas from the NLL factory `make`, whose
// model's flow is a matched field, regressed by flow matching instead.
absl::StatusOr<training::ThreadedTraining> TrainByFlowMatching(
    cli::Experiment& ex, const training::ReplicaFactory& make,
    const training::TrainData& data, const training::TrainOptions& base) {
  training::FlowMatchingReplicaFactory make_fm =
      [&](int rank) -> absl::StatusOr<training::FlowMatchingReplica> {
    FT_ASSIGN_OR_RETURN(training::Replica r, make(rank));
    const auto* model = dynamic_cast<const flows::FlowModel*>(r.model.get());
    std::shared_ptr<flows::cnf::CnfDynamics> velocity =
        model == nullptr ? nullptr
                         : flows::matching::MatchedVelocity(*model->flow());
    if (velocity == nullptr)
      return absl::InternalError("toy2d: cfm's model has no matched field");
    FT_ASSIGN_OR_RETURN(auto path,
                        flows::matching::AffinePath::OptimalTransport(1e-4));
    FT_ASSIGN_OR_RETURN(
        std::shared_ptr<flows::matching::FlowMatching> fm,
        flows::matching::FlowMatching::Create(std::move(velocity), path));
    training::ShardedFlowMatchingLossFn loss =
        [fm](const Tensor& x, const Tensor& c, Rng& rng, int64_t begin,
             int64_t end) { return fm->LossOfRows(x, c, rng, begin, end); };
    return training::FlowMatchingReplica{r.model, r.nll, loss, r.optimizer,
                                         nullptr};
  };
  training::FlowMatchingTrainOptions o;
  static_cast<training::TrainOptions&>(o) = base;
  o.ema_decay = 0.999;
  FT_ASSIGN_OR_RETURN(training::ThreadedFlowMatching run,
                      ex.TrainFlowMatching(make_fm, data, o));
  return training::ThreadedTraining{
      run.result, {run.replica.model, run.replica.nll, run.replica.optimizer}};
}

absl::Status Run(cli::Experiment& ex) {
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
  const std::string base = absl::GetFlag(FLAGS_base);
  const int64_t components = absl::GetFlag(FLAGS_components);
  const int64_t iw_samples = absl::GetFlag(FLAGS_iw_samples);
  auto hidden = cli::ParseSizeList("hidden", absl::GetFlag(FLAGS_hidden));
  if (!hidden.ok()) return hidden.status();
  if (absl::Status s = cli::CheckFlags({
          {"steps", steps, steps > 0, "> 0"},
          {"batch", batch, batch > 0, "> 0"},
          {"lr", lr, std::isfinite(lr) && lr > 0, "finite and > 0"},
          {"layers", layers, layers > 0, "> 0"},
          {"n_train", n_train, n_train > 0, "> 0"},
          {"patience", patience, patience >= 0, ">= 0"},
          {"components", components, components >= 1 && components <= 4096,
           "in [1, 4096]"},
          {"iw_samples", iw_samples, iw_samples >= 1 && iw_samples <= 4096,
           "in [1, 4096]"},
      });
      !s.ok())
    return s;
  // Train + validation (n/10) + 10000 test points of 2 values; evaluation
  // and plots run in chunks of at most 5000 without a tape.
  const double data_values =
      2.0 * (static_cast<double>(n_train) * 1.1 + 10000.0);
  if (absl::Status s = cli::CheckRunMemory(
          cli::FlowFootprint(layers, 2, 0, *hidden,
                             std::max<int64_t>(batch, 5000), data_values),
          absl::StrCat("--layers=", layers,
                       " --hidden=", absl::GetFlag(FLAGS_hidden),
                       " --batch=", batch, " --n_train=", n_train));
      !s.ok())
    return s;
  models::ModelConfig config;
  config.layers = layers;
  config.train_t = absl::GetFlag(FLAGS_train_t);
  config.hidden = *hidden;
  config.components = components;
  if (base != "family" && base != "gmm" && base != "gmm_full" &&
      base != "resampled")
    return absl::InvalidArgumentError(absl::StrCat(
        "--base=", base, ": want family, gmm, gmm_full or resampled"));
  if (base == "gmm") config.base = models::BaseChoice::kGaussianMixture;
  if (base == "gmm_full")
    config.base = models::BaseChoice::kGaussianMixtureFull;
  if (base == "resampled") config.base = models::BaseChoice::kResampled;
  config.dtype = ex.dtype();
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  ex.set_seed(seed);
  Rng rng(seed);
  const std::string flow = absl::GetFlag(FLAGS_flow);
  FT_ASSIGN_OR_RETURN(const models::ZooEntry entry,
                      models::FindFlow(flow, models::Domain::kVectors));
  // log q(x) in float64 without a tape: LogProb for a deterministic flow;
  // for a stochastic one the iw_samples-path importance-weighted estimate.
  auto log_density = [&](const flows::FlowModel& m, const Tensor& x, Rng& r) {
    NoGradScope no_grad;
    if (!entry.stochastic) return Cast(m.LogProb(x, Tensor(), &r), kFloat64);
    const int64_t n = x.dim(0);
    std::vector<std::vector<double>> paths;
    for (int64_t k = 0; k < iw_samples; ++k)
      paths.push_back(Cast(m.LogProb(x, Tensor(), &r), kFloat64).ToVector());
    std::vector<double> out(n);
    for (int64_t i = 0; i < n; ++i) {
      double top = -std::numeric_limits<double>::infinity();
      for (const auto& p : paths) top = std::max(top, p[i]);
      double sum = 0;
      if (std::isfinite(top))
        for (const auto& p : paths) sum += std::exp(p[i] - top);
      out[i] = std::isfinite(top)
                   ? top + std::log(sum / static_cast<double>(iw_samples))
                   : top;
    }
    return Tensor::FromVector({n}, out);
  };
  const std::string energy_name = absl::GetFlag(FLAGS_energy);
  const std::string what =
      energy_name.empty() ? absl::GetFlag(FLAGS_data) : energy_name;
  // One replica per thread; every replica starts from Rng(seed) (rank 0's
  // model is broadcast anyway).
  auto make = [&](int) -> absl::StatusOr<training::Replica> {
    Rng init(seed);
    FT_ASSIGN_OR_RETURN(std::shared_ptr<flows::FlowModel> model,
                        models::MakeModel(flow, config, init));
    FT_ASSIGN_OR_RETURN(auto adam,
                        nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/lr}));
    adam->set_schedule(nn::CosineAnnealingLr(lr, steps));
    // RNODE: a pass's "regularization" extra (the CNF's kinetic/Jacobian
    // penalty) joins the training loss; other flows have none.
    const flows::FlowModel* m = model.get();
    training::NllFn nll = [m](const Tensor& x, const Tensor& c, Rng& rng) {
      flows::FlowModel::Density d = m->Score(x, c, &rng);
      Tensor loss = -Mean(d.log_prob);
      Tensor penalty = d.pass.extra(flows::cnf::kRegularization);
      return penalty.defined() ? loss + Mean(penalty) : loss;
    };
    return training::Replica{model, nll, adam};
  };
  const viz::Box box{-4, 4, -4, 4};
  std::shared_ptr<const flows::FlowModel> trained;
  Tensor shown;  // data samples for the left scatter plot
  if (!energy_name.empty()) {
    FT_ASSIGN_OR_RETURN(training::Energy energy,
                        training::ParseEnergy(energy_name));
    auto log_p = training::EnergyLogDensity(energy);
    // Replicas on --threads threads or the ranks of mpirun, each taking its
    // share of every step's samples (training/reverse_kl.h).
    training::ReverseKlReplicaFactory make_kl =
        [&](int rank) -> absl::StatusOr<training::ReverseKlReplica> {
      FT_ASSIGN_OR_RETURN(training::Replica replica, make(rank));
      return training::ReverseKlReplica{
          std::static_pointer_cast<const flows::FlowModel>(replica.model),
          log_p, replica.optimizer};
    };
    training::ReverseKlOptions o;
    o.batch_size = batch;
    o.steps = steps;
    o.anneal_steps = steps / 2;
    o.log_every = std::max<int64_t>(1, steps / 10);
    o.seed = seed;
    FT_ASSIGN_OR_RETURN(training::ThreadedReverseKl run,
                        ex.TrainReverseKl(make_kl, o));
    const training::ReverseKlResult& r = run.result;
    training::ReverseKlReplica& replica = run.replica;
    const flows::FlowModel& model = *replica.model;
    std::cout << absl::StrFormat("%s on %s: %d parameters, %d replica(s)\n",
                                 model.name(), what, model.NumParameters(),
                                 r.ranks);
    training::TrainResult as_losses;
    as_losses.losses = r.free_energy;
    ex.history().AddTraining(as_losses, o.log_every, flow);
    Rng eval(123);
    const double f = training::FreeEnergy(model, log_p, 20000, eval);
    Rng heat(seed + 1);
    ex.metrics()["free_energy"] = f;
    ex.metrics()["steps"] = r.steps;
    std::string kl = "KL undefined: exp(-U) is improper along z1";
    if (energy == training::Energy::kU1) {
      const double log_z = training::LogNormalizer(energy);
      kl = absl::StrFormat("KL(q || p) = %.4f nats, log Z = %.4f", f + log_z,
                           log_z);
      ex.metrics()["kl"] = f + log_z;
    }
    std::cout << absl::StrFormat("%s: F = E_q[log q - log p~] = %.4f (%s)%s\n",
                                 what, f, kl,
                                 r.diverged ? "  [" + r.message + "]" : "");
    FT_ASSIGN_OR_RETURN(viz::Heatmap target, viz::DensityHeatmap(log_p, box));
    target.title = "target exp(\u2212U)";
    target.colorbar_label = "exp(\u2212U(x))";
    viz::Figure density;
    FT_ASSIGN_OR_RETURN(
        viz::Heatmap learned,
        viz::DensityHeatmap(
            [&](const Tensor& x) { return log_density(model, x, heat); }, box));
    density.Add(target).Add(learned);
    FT_RETURN_IF_ERROR(ex.WriteFigure(density, "density.png"));
    trained = replica.model;
  } else {
    const int64_t n = n_train;
    const std::string name = absl::GetFlag(FLAGS_data);
    training::TrainData data;
    FT_ASSIGN_OR_RETURN(Tensor train, data::SampleToy2d(name, n, rng));
    FT_ASSIGN_OR_RETURN(
        Tensor val, data::SampleToy2d(name, std::max<int64_t>(n / 10, 1), rng));
    FT_ASSIGN_OR_RETURN(Tensor test, data::SampleToy2d(name, 10000, rng));
    data.train = Cast(train, ex.dtype());
    data.val = Cast(val, ex.dtype());
    test = Cast(test, ex.dtype());
    training::TrainOptions o;
    o.batch_size = batch;
    o.max_steps = steps;
    o.eval_every = std::max<int64_t>(1, steps / 20);
    o.log_every = std::max<int64_t>(1, steps / 10);
    o.patience = patience;
    o.seed = seed;
    FT_ASSIGN_OR_RETURN(training::ThreadedTraining run,
                        flow == "cfm" ? TrainByFlowMatching(ex, make, data, o)
                                      : ex.Train(make, data, o));
    const training::TrainResult& r = run.result;
    const auto& model =
        static_cast<const flows::FlowModel&>(*run.replica.model);
    ex.history().AddTraining(r, o.log_every, flow);
    const double nll =
        training::EvaluateNll(run.replica.nll, test, Tensor(), 2000);
    std::cout << absl::StrFormat(
        "%s on %s: test NLL %.4f nats (%d parameters, %d steps, %.1f s, %s)\n",
        model.name(), what, nll, model.NumParameters(), r.steps, r.seconds,
        r.message);
    ex.config()["objective"] =
        flow == "cfm" ? "flow_matching" : "maximum_likelihood";
    ex.metrics()["test_nll"] = nll;
    ex.metrics()["best_val_nll"] = r.best_val_nll;
    ex.metrics()["steps"] = r.steps;
    ex.metrics()["parameters"] = model.NumParameters();
    ex.timings()["train_s"] = r.seconds;
    Rng heat(seed + 1);
    if (entry.stochastic) {
      double total = 0;
      for (int64_t i = 0; i < test.dim(0); i += 2000) {
        const int64_t m = std::min<int64_t>(2000, test.dim(0) - i);
        const std::vector<double> lp =
            log_density(model, Narrow(test, 0, i, m), heat).ToVector();
        for (double v : lp) total -= v;
      }
      const double iw = total / static_cast<double>(test.dim(0));
      std::cout << absl::StrFormat(
          "  stochastic flow: test NLL above of the single-path estimate, "
          "%d-path importance-weighted %.4f nats (both upper bounds on the "
          "NLL in expectation; the second tighter)\n",
          iw_samples, iw);
      ex.metrics()["test_nll_iw"] = iw;
      ex.metrics()["iw_samples"] = iw_samples;
    }
    viz::Figure density;
    FT_ASSIGN_OR_RETURN(
        viz::Heatmap learned,
        viz::DensityHeatmap(
            [&](const Tensor& x) { return log_density(model, x, heat); }, box));
    density.Add(learned);
    FT_RETURN_IF_ERROR(ex.WriteFigure(density, "density.png"));
    FT_RETURN_IF_ERROR(ex.WriteFigure(
        cli::LossFigure(r, model.name() + " on " + what), "loss.png"));
    shown = test;
    trained =
        std::static_pointer_cast<const flows::FlowModel>(run.replica.model);
  }
  const models::ModelSpec spec{flow, config, ex.dtype()};
  FT_ASSIGN_OR_RETURN(ex.config()["model"],
                      io::ParseJson(models::ModelSpecToJson(spec), "spec"));
  FT_RETURN_IF_ERROR(models::SaveModel(ex.Output("model.ftm"), spec, *trained));
  Tensor samples;
  {
    NoGradScope no_grad;
    samples = trained->Sample(5000, rng);
  }
  return ex.WriteFigure(
      cli::SamplesFigure(shown.defined() ? Cast(shown, kFloat64) : shown,
                         Cast(samples, kFloat64), box),
      "samples.png");
}

}  // namespace
}  // namespace flowtape::experiments

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"toy2d",
       "any zoo flow on a 2-D toy density (maximum likelihood) or a Rezende & "
       "Mohamed energy (reverse KL).\n"
       "  ./bazelw run --config=opt //experiments:toy2d -- --flow=maf "
       "--data=pinwheel\n"
       "  ./bazelw run --config=opt //experiments:toy2d -- --flow=planar "
       "--energy=u2\n"
       "  ./bazelw run //experiments:toy2d -- --list",
       flowtape::kFloat32},
      argc, argv, flowtape::experiments::Run);
}

// Density estimation on the sphere: the four earth-science catalogues
// (volcano, earthquake, flood, fire) with manifold flows, protocol of the
// published table (data/earth/README.md, which also gives the
// data's sources and licences): random 80/10/10 split,
// maximum likelihood with the validation NLL picking the best parameters,
// test NLL in nats w.r.t. the area of the unit sphere, mean +- std over seeds.
//
// Models (all with a uniform base density on S^2):
//   affine   a deep chain of normalized affine flows (closed-form log R)
//   mixture  a mixture of chains of normalized affine flows
//   neural   normalized affine flows alternating with cylindrical coupling
//            flows whose log R is the generic volume ratio (autodiff Jacobian,
//            Gram form of |det(T_y' F T_x)|)
//   recursive, recursive_mobius (not run by default)
//            normalized affine flows alternating with recursive sphere
//            flows (manifolds/recursive_sphere_flow.h: an interval spline
//            for the height, a circle spline / a mixture of 4 Moebius maps
//            for the azimuth; closed-form log R): affine, then 2 x
//            (recursive flow + affine), 32 bins, conditioners 64-64, Adam
//            5e-3 with cosine decay to 0 over 4000 steps of 512 (--full:
//            8000 steps); --recursive_{blocks,bins,hidden,batch,lr,
//            weight_decay} change them (weight decay > 0: AdamW). Quick
//            mode, 5 seeds (README, "Paper targets"): below the --full
//            affine mixture on volcano (-3.48) and fire (-0.99), above it
//            on earthquake (0.06) and flood (0.70); ~65 CPU s a run
//   recursive_mixture (not run by default)
//            a mixture of --recursive_components (4) chains of the
//            recursive model, each centred on a random training row, with
//            trained weights (manifolds/manifold_flow.h, FlowMixture);
//            trained like recursive, but its chains have 16 bins,
//            conditioners 32-32 and AdamW weight decay 0.1 (the
//            --recursive_ flags set both models); ~125 CPU s a run (README,
//            "Paper targets")
//   rfm      (not run by default) Riemannian flow matching (Chen & Lipman
//            2024; manifolds/sphere_flow_matching.h): a tanh MLP on 64
//            random Fourier features of x (frequencies N(0, 8^2);
//            --rfm_fourier=0: a ConcatSquash net on raw x, which learns the
//            catalogues' fine structure far more slowly) and of t
//            (--rfm_width x --rfm_depth), projected on the tangent plane,
//            regressed on geodesic paths from the uniform density with
//            minibatch exact OT pairs (--rfm_coupling: the assignment of
//            the chordal cost |x0 - x1|^2, monotone in the geodesic
//            distance; batch 256, at most 512) and times t = 1 - (1 - u)^2
//            (--rfm_t_power: more of the batch near the data)
//            (Experiment::TrainFlowMatching on the --threads replicas,
//            each drawing the whole batch's x0, t and pairs and regressing
//            on its rows: Adam 5e-3 with cosine decay, EMA 0.999,
//            validation NLL every steps / 2); likelihoods by the
//            projected RK4 flow with the exact Riemannian divergence, step
//            0.02 for validation and 0.01 for the test NLL and the map
//            (a 180 x 90 grid: the map costs 800 field passes per point);
//            the first seed also scores 256 test rows at steps 0.01 and
//            0.005 (the ODE's share of the error)
// Usage:
//   ./bazelw run --config=opt //benchmarks:earth
//       quick: 5 seeds x 4 sets x 3 models, ~3.5 CPU-minutes
//   ./bazelw run --config=opt //benchmarks:earth -- --full
//       bigger models, 3x the steps: ~18 CPU-minutes (results are
//       deterministic, so --datasets=flood etc. can run in parallel processes)
//   ./bazelw run --config=opt //benchmarks:earth -- --models=rfm [--full]
//       flow matching: quick 3 x 128 field, 6000 steps of 256 (flood and
//       fire 12000; --steps sets all);
//       --full 4 x 256 on 128 features, 20000 steps of 512
// Writes to --out_dir (cli/cli.h) equirectangular density maps
// <data>_<model>.png (the first seed, --first_seed), its trained models as
// <data>_<model>.ftm (models/sphere_model.h: LoadSphereModel rebuilds them),
// results.json (test NLL per data set, model and seed) and history.csv (run
// "<data>/<model>/seed<k>"). --threads: replicas per training run
// (training/train_threads.h); under mpirun the ranks are the replicas.
#include "data/earth.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "cli/budget.h"
#include "cli/checks.h"
#include "cli/cli.h"
#include "data/earth.h"
#include "flows/matching/cfm.h"
#include "manifolds/manifold.h"
#include "manifolds/manifold_flow.h"
#include "manifolds/neural_sphere_flow.h"
#include "manifolds/recursive_sphere_flow.h"
#include "manifolds/sphere_densities.h"
#include "manifolds/sphere_flow_matching.h"
#include "manifolds/sphere_flows.h"
#include "models/sphere_model.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "training/train.h"
#include "training/train_flow_matching.h"
#include "viz/figure.h"
#include "viz/sphere_map.h"

ABSL_FLAG(bool, full, false, "bigger models, more steps (tens of minutes)");
ABSL_FLAG(std::string, data_dir, "",
          "directory of the csv files (default: data/earth from "
          "the runfiles or the workspace; relative: to the directory bazel "
          "run was called from)");
ABSL_FLAG(int, seeds, 5, "number of random splits / initialisations");
ABSL_FLAG(int, first_seed, 0,
          "the first seed (runs first_seed ... + seeds - 1)");
ABSL_FLAG(std::string, datasets, "volcano,earthquake,flood,fire",
          "comma-separated subset");
ABSL_FLAG(std::string, models, "affine,mixture,neural",
          "comma-separated subset of affine, mixture, neural, recursive, "
          "recursive_mobius, recursive_mixture, rfm");
ABSL_FLAG(bool, maps, true, "write density maps for seed 0");
ABSL_FLAG(bool, verbose, false, "print training progress");
ABSL_FLAG(int, components, 0, "mixture components (0 = mode default)");
ABSL_FLAG(int, layers, 0, "layers per mixture chain (0 = mode default)");
ABSL_FLAG(int, steps, 0, "training steps (0 = mode default)");
ABSL_FLAG(double, neural_lr, 0, "neural model learning rate (0 = default)");
ABSL_FLAG(int, recursive_blocks, 0,
          "recursive: recursive layers per chain (0 = mode default)");
ABSL_FLAG(int, recursive_bins, 0, "recursive: spline bins (0 = mode default)");
ABSL_FLAG(int, recursive_hidden, 0,
          "recursive: conditioner width (0 = mode default)");
ABSL_FLAG(int, recursive_batch, 0, "recursive: minibatch (0 = mode default)");
ABSL_FLAG(double, recursive_lr, 0,
          "recursive: peak learning rate (0 = mode default)");
ABSL_FLAG(double, recursive_weight_decay, -1,
          "recursive: AdamW's decoupled weight decay (0 = Adam; -1 = mode "
          "default)");
ABSL_FLAG(int, recursive_components, 0,
          "recursive_mixture: recursive chains mixed (0 = mode default)");
ABSL_FLAG(int, rfm_width, 0, "rfm field hidden width (0 = mode default)");
ABSL_FLAG(int, rfm_depth, 0, "rfm field hidden layers (0 = mode default)");
ABSL_FLAG(int, rfm_batch, 0, "rfm minibatch (0 = mode default)");
ABSL_FLAG(int, rfm_fourier, -1,
          "rfm: random Fourier features of x (0 = a ConcatSquash field on "
          "x; -1 = mode default)");
ABSL_FLAG(double, rfm_fourier_scale, 0,
          "rfm: their frequencies' standard deviation (0 = mode default)");
ABSL_FLAG(double, rfm_lr, 0, "rfm peak learning rate (0 = mode default)");
ABSL_FLAG(std::string, rfm_activation, "",
          "rfm field activation (nn::Activation name; empty = mode default)");
ABSL_FLAG(std::string, rfm_coupling, "",
          "rfm minibatch coupling: independent, exact_ot, sinkhorn (empty = "
          "mode default)");
ABSL_FLAG(double, rfm_t_power, 0,
          "rfm: training times t = 1 - (1 - u)^p, u ~ U[0, 1) (1 = uniform; "
          "p > 1 weights the data end; 0 = mode default)");

namespace flowtape::benchmarks {
namespace {
using manifolds::ManifoldDensity;
using manifolds::ManifoldFlowModel;
using manifolds::UniformSphere;

const std::vector<std::string> kDatasets = {"volcano", "earthquake", "flood",
                                            "fire"};
struct Published {
  std::string method;
  std::vector<std::string> cells;
};
// Sources. The first five rows: the README of oxcsml/riemannian-score-sde
// (commit b35b739; De Bortoli et al. 2022). Its Mixture of Kent fire cell
// reads "1.18" there but "-1.18" in the same README before its commit
// 0eb46e2; the paper's own table was not reached. The RFM row (Chen & Lipman
// 2024, Table 2) is second-hand, means only: the "RFM" row of the earth table
// in zhaoyang97/Paper-Notes-en,
// docs/ICLR2026/image_generation/generalised_flow_maps_for_few-step_generative_modelling_on_riemannian_manifolds.md
// (a note on a later paper); the paper itself was not reached.
const std::vector<Published> kPublished = {
    {"Mixture of Kent",
     {"-0.80 +- 0.47", "0.33 +- 0.05", "0.73 +- 0.07", "1.18 +- 0.06"}},
    {"Riemannian CNF",
     {"-6.05 +- 0.61", "0.14 +- 0.23", "1.11 +- 0.19", "-0.80 +- 0.54"}},
    {"Moser flow",
     {"-4.21 +- 0.17", "-0.16 +- 0.06", "0.57 +- 0.10", "-1.28 +- 0.05"}},
    {"Stereographic score-based",
     {"-3.80 +- 0.27", "-0.19 +- 0.05", "0.59 +- 0.07", "-1.28 +- 0.12"}},
    {"Riemannian score-based",
     {"-4.92 +- 0.25", "-0.19 +- 0.07", "0.48 +- 0.09", "-1.33 +- 0.06"}},
    {"RFM (second-hand)", {"-7.93", "-0.28", "0.42", "-1.86"}},
};

struct Config {
  int affine_layers, mixture_components, mixture_layers, neural_blocks;
  int64_t hidden, steps, neural_steps, batch, neural_batch;
  double lr, neural_lr;
  // Recursive flows: spline bins (height and azimuth), conditioner width.
  int64_t recursive_bins = 32, recursive_hidden = 64, recursive_steps = 4000;
  int recursive_blocks = 2, recursive_components = 4;
  int64_t recursive_batch = 512;
  double recursive_lr = 5e-3;
  double recursive_weight_decay = 0;  // > 0: AdamW
  // recursive_mixture's chains: narrower, coarser and decayed (README,
  // "Paper targets": at the single chain's sizes the mixture overfits).
  int64_t mixture_chain_bins = 16, mixture_chain_hidden = 32;
  double mixture_chain_weight_decay = 0.1;
};
Config MakeConfig(bool full) {
  if (!full) return {12, 32, 2, 2, 32, 1000, 500, 1024, 512, 2e-2, 1e-2};
  Config c{24, 48, 2, 3, 32, 3000, 1500, 1024, 512, 1e-2, 1e-2};
  c.recursive_steps = 8000;
  return c;
}

// `c` with the recursive sizes model `name` trains with.
Config ForModel(Config c, const std::string& name) {
  if (name == "recursive_mixture") {
    c.recursive_bins = c.mixture_chain_bins;
    c.recursive_hidden = c.mixture_chain_hidden;
    c.recursive_weight_decay = c.mixture_chain_weight_decay;
  }
  return c;
}

// x is a nonempty training split (RandomSplit guarantees >= 8 rows).
Eigen::Vector3d RandomRow(const Tensor& x, Rng& rng) {
  FT_CHECK(x.dim(0) > 0, "earth: RandomRow of an empty set");
  return manifolds::Row(x, rng.UniformInt(x.dim(0)));
}

Eigen::Vector3d MeanDirection(const Tensor& x) {
  Eigen::Vector3d m = Eigen::Vector3d::Zero();
  for (int64_t i = 0; i < x.dim(0); ++i) m += manifolds::Row(x, i);
  return m.norm() > 1e-9 ? Eigen::Vector3d(m.normalized())
                         : Eigen::Vector3d(0, 0, 1);
}

// The model `name` of models/sphere_model.h with the sizes of `c`.
models::SphereModelSpec Spec(const std::string& name, const Config& c,
                             DType dtype) {
  models::SphereModelSpec spec;
  spec.kind = name;
  spec.layers = name == "affine" ? c.affine_layers : c.mixture_layers;
  spec.components = name == "recursive_mixture" ? c.recursive_components
                                                : c.mixture_components;
  spec.blocks = c.neural_blocks;
  const bool recursive = absl::StartsWith(name, "recursive");
  spec.hidden = recursive ? c.recursive_hidden : c.hidden;
  if (recursive) {
    spec.bins = c.recursive_bins;
    spec.blocks = c.recursive_blocks;
  }
  spec.dtype = dtype;
  return spec;
}

absl::StatusOr<std::shared_ptr<ManifoldDensity>> MakeModel(
    const models::SphereModelSpec& spec, const Tensor& train, Rng& rng) {
  models::SphereModelInit init;
  init.mean_direction = MeanDirection(train);
  init.random_point = [&train](Rng& r) { return RandomRow(train, r); };
  return models::MakeSphereModel(spec, init, rng);
}

// Riemannian flow matching (see the header comment): the field and the
// test step in `spec` (kind "rfm"), the training run's sizes beside it.
struct RfmConfig {
  models::SphereModelSpec spec;
  int64_t steps, batch;
  double lr;
  double t_power;      // t = 1 - (1 - u)^t_power
  bool steps_doubled;  // on flood and fire (RfmFor)
  flows::matching::CouplingKind coupling;
};
RfmConfig MakeRfmConfig(bool full, DType dtype) {
  RfmConfig c;
  c.spec.kind = "rfm";
  c.spec.dtype = dtype;
  c.spec.field.width = full ? 256 : 128;
  c.spec.field.depth = full ? 4 : 3;
  c.spec.field.fourier = full ? 128 : 64;
  c.spec.field.fourier_scale = 8;
  c.steps = full ? 20000 : 6000;
  c.batch = full ? 512 : 256;
  c.lr = full ? 2e-3 : 5e-3;
  c.t_power = 2;
  c.steps_doubled = !full;
  c.coupling = flows::matching::CouplingKind::kExactOt;
  return c;
}

// The quick config trains flood's and fire's fields twice as long
// (measured, seed 0: fire -0.755 at 6000 steps, -0.880 at 12000; flood
// 0.681 and 0.549).
RfmConfig RfmFor(RfmConfig c, const std::string& set) {
  if (c.steps_doubled && (set == "fire" || set == "flood")) c.steps *= 2;
  return c;
}

// The memory of each model in `models` (trained one at a time, on the same
// data), checked against the machine before anything is allocated, naming
// the flags that size it. Data: at most kEarthMaxBytes of "lat,lon" text,
// i.e. under 1.5 M points of 3 values; the density map is 720 x 360 points,
// evaluated in chunks of at most 4096.
absl::Status CheckModelMemory(const Config& c, const RfmConfig& rfm,
                              const std::vector<std::string>& models) {
  auto wants = [&](const std::string& name) {
    return std::find(models.begin(), models.end(), name) != models.end();
  };
  const double data = 3.0 * (data::kEarthMaxBytes / 11.0) + 720.0 * 360 * 3;
  auto batch = [](int64_t b) {
    return std::max(static_cast<double>(b), 4096.0);
  };
  // Normalized affine flows on S^2: 12 parameters (3x3 A, b) and ~30 values
  // per point each.
  const double flows =
      static_cast<double>(c.mixture_components) * c.mixture_layers +
      c.affine_layers + 2.0 * c.neural_blocks;
  if (wants("affine") || wants("mixture") || wants("neural"))
    FT_RETURN_IF_ERROR(
        cli::CheckRunMemory({12.0 * flows, 30.0 * flows,
                             batch(std::max(c.batch, c.neural_batch)), data},
                            absl::StrCat("--components=", c.mixture_components,
                                         " --layers=", c.mixture_layers)));
  // Recursive chains: per block an interval and a circle spline, each from
  // a conditioner hidden-hidden to 3 bins + 1 knots; K chains in a mixture.
  for (const std::string name :
       {"recursive", "recursive_mobius", "recursive_mixture"}) {
    if (!wants(name)) continue;
    const Config r = ForModel(c, name);
    const int64_t h = r.recursive_hidden;
    const double knots = 3.0 * r.recursive_bins + 1;
    const double splines =
        2.0 * r.recursive_blocks *
        (name == "recursive_mixture" ? r.recursive_components : 1);
    FT_RETURN_IF_ERROR(cli::CheckRunMemory(
        {splines * cli::MlpParameters(4, {h, h}, knots),
         splines * (cli::MlpActivations(4, {h, h}, knots) + 3 * knots),
         batch(r.recursive_batch), data},
        absl::StrCat(
            "--models=", name, " --recursive_components=",
            r.recursive_components, " --recursive_blocks=", r.recursive_blocks,
            " --recursive_bins=", r.recursive_bins, " --recursive_hidden=", h,
            " --recursive_batch=", r.recursive_batch)));
  }
  if (!wants("rfm")) return absl::OkStatus();
  // The rfm field: depth x width on 2 fourier features of x, x and t's;
  // its divergence takes three passes.
  const models::SphereFieldSpec& f = rfm.spec.field;
  const std::vector<int64_t> layers(f.depth, f.width);
  const double in = 2.0 * f.fourier + 12;
  return cli::CheckRunMemory(
      {cli::MlpParameters(in, layers, 3),
       3 * cli::MlpActivations(in, layers, 3), batch(rfm.batch), data},
      absl::StrCat("--rfm_width=", f.width, " --rfm_depth=", f.depth,
                   " --rfm_fourier=", f.fourier, " --rfm_batch=", rfm.batch));
}

struct RfmModel {
  std::shared_ptr<ManifoldDensity> trained;  // validation step 0.02
  std::shared_ptr<ManifoldDensity> fine;     // the spec's model (test step)
  std::shared_ptr<ManifoldDensity> half;     // the same at half the step
};

// Flow matching on the experiment's replicas (Experiment::TrainFlowMatching:
// --threads threads or the ranks of mpirun): every replica draws x0, t and
// the OT pairs of the whole global batch from the shared stream and
// regresses on its rows, so the run does not depend on the replica count.
// This process's models (rank 0's on threads) land in `out`.
absl::StatusOr<training::ThreadedTraining> TrainRfm(
    cli::Experiment& ex, const RfmConfig& c, const training::TrainData& data,
    const training::TrainOptions& base, RfmModel* out) {
  flows::matching::FlowMatchingOptions fm_options;
  fm_options.coupling = c.coupling;
  const auto path = std::make_shared<manifolds::GeodesicSpherePath>();
  const flows::matching::SourceSampler source =
      manifolds::UniformSphereSource(3);
  std::mutex mu;
  training::FlowMatchingReplicaFactory make =
      [&](int rank) -> absl::StatusOr<training::FlowMatchingReplica> {
    RfmModel m;
    Rng rng(77 + base.seed);
    FT_ASSIGN_OR_RETURN(m.fine, models::MakeSphereModel(c.spec, {}, rng));
    const auto& chain = static_cast<const ManifoldFlowModel&>(*m.fine).flows();
    const std::shared_ptr<flows::cnf::CnfDynamics> field =
        static_cast<const manifolds::SphereCnf&>(*chain.at(0)).field();
    auto with_step =
        [&](double h) -> absl::StatusOr<std::shared_ptr<ManifoldDensity>> {
      FT_ASSIGN_OR_RETURN(std::shared_ptr<manifolds::SphereCnf> cnf,
                          manifolds::SphereCnf::Create(field, h));
      return std::make_shared<ManifoldFlowModel>(
          UniformSphere::Create(3).value(),
          std::vector<std::shared_ptr<flows::Flow>>{cnf});
    };
    FT_ASSIGN_OR_RETURN(m.trained, with_step(0.02));
    FT_ASSIGN_OR_RETURN(m.half, with_step(c.spec.field.step_size / 2));
    // The CFM loss with t = 1 - (1 - u)^p (the minimiser is still the
    // marginal field at every t; p > 1 spends more of the batch near the
    // data), of rows [begin, end) of the batch.
    training::ShardedFlowMatchingLossFn loss =
        [=](const Tensor& x1, const Tensor&, Rng& r, int64_t begin,
            int64_t end) -> absl::StatusOr<Tensor> {
      const int64_t n = x1.dim(0);
      const Tensor x0 = source(n, x1.dtype(), r);
      std::vector<double> tv(n);
      for (double& v : tv) {
        v = r.Uniform();
        if (c.t_power != 1) v = 1.0 - std::pow(1.0 - v, c.t_power);
      }
      const Tensor t = Tensor::FromVector({n, 1}, tv, x1.dtype());
      auto part = [&](const Tensor& v) {
        return begin == 0 && end == n ? v : Narrow(v, 0, begin, end - begin);
      };
      if (fm_options.coupling == flows::matching::CouplingKind::kIndependent)
        return flows::matching::CfmLoss(*field, *path, part(x0), part(x1),
                                        part(t));
      FT_ASSIGN_OR_RETURN(
          std::vector<flows::matching::IndexPair> pairs,
          flows::matching::PairMinibatch(x0, x1, Tensor(), fm_options, r));
      std::vector<int64_t> is, js;
      for (int64_t k = begin; k < end; ++k) {
        is.push_back(pairs[k].i);
        js.push_back(pairs[k].j);
      }
      return flows::matching::CfmLoss(*field, *path, IndexSelect(x0, 0, is),
                                      IndexSelect(x1, 0, js), part(t));
    };
    training::NllFn nll = [trained = m.trained](const Tensor& b, const Tensor&,
                                                Rng&) {
      return -Mean(trained->LogProb(b));
    };
    FT_ASSIGN_OR_RETURN(auto adam,
                        nn::Adam::Create(*field, nn::AdamOptions{/*lr=*/c.lr}));
    adam->set_schedule(nn::CosineAnnealingLr(c.lr, c.steps));
    if (rank == ex.rank()) {
      std::lock_guard<std::mutex> lock(mu);
      *out = m;
    }
    return training::FlowMatchingReplica{m.trained, nll, loss, adam, nullptr};
  };
  training::FlowMatchingTrainOptions o;
  static_cast<training::TrainOptions&>(o) = base;
  o.batch_size = c.batch;
  o.max_steps = c.steps;
  o.eval_every = std::max<int64_t>(1, c.steps / 2);
  o.clip_grad_norm = 0;
  o.ema_decay = 0.999;
  FT_ASSIGN_OR_RETURN(training::ThreadedFlowMatching run,
                      ex.TrainFlowMatching(make, data, o));
  return training::ThreadedTraining{
      run.result, {run.replica.model, run.replica.nll, run.replica.optimizer}};
}

// -mean log p(x); a flow that fails (e.g. a numeric inverse) is its error.
absl::StatusOr<double> MeanNll(const ManifoldDensity& model, const Tensor& x) {
  double total = 0.0;
  const int64_t chunk = 2048;
  for (int64_t s = 0; s < x.dim(0); s += chunk) {
    TapeScope scope;
    NoGradScope no_grad;
    FT_ASSIGN_OR_RETURN(
        Tensor lp,
        model.TryLogProb(Narrow(x, 0, s, std::min(chunk, x.dim(0) - s))));
    total -= Sum(lp).item();
  }
  return total / x.dim(0);
}

// Log density on a lat/lon grid, shown over the 10 nats below its maximum,
// with the test points in red, coastlines and a lat/lon grid.
absl::StatusOr<viz::Figure> DensityMap(
    const ManifoldDensity& model, const Tensor& points,
    const std::string& title, const viz::SphereDensityOptions& grid = {}) {
  FT_ASSIGN_OR_RETURN(viz::SphereMap map,
                      viz::SphereDensityMap(
                          [&](const Tensor& x) {
                            return Cast(model.LogProb(Cast(x, model.dtype())),
                                        kFloat64);
                          },
                          grid));
  map.title = title;
  map.colorbar_label = "log p(x) (nats, unit sphere)";
  viz::SpherePoints test;
  test.label = "test events";
  test.points = Cast(points, kFloat64);
  test.radius = 1.3;
  map.points.push_back(test);
  viz::FigureOptions size;
  size.width = 960;
  size.height = 480;
  viz::Figure figure(size);
  figure.Add(map);
  return figure;
}

struct Cell {
  std::vector<double> nll;
  double Mean() const {
    double m = 0;
    for (double x : nll) m += x;
    return m / nll.size();
  }
  double Sd() const {
    double v = 0, m = Mean();
    for (double x : nll) v += (x - m) * (x - m);
    return nll.size() > 1 ? std::sqrt(v / (nll.size() - 1)) : 0.0;
  }
  std::string Format() const {
    if (nll.empty()) return "-";
    return absl::StrFormat("%.2f +- %.2f", Mean(), Sd());
  }
};

absl::Status Run(cli::Experiment& ex) {
  const bool full = absl::GetFlag(FLAGS_full);
  Config cfg = MakeConfig(full);
  RfmConfig rfm = MakeRfmConfig(full, ex.dtype());
  const int rfm_width = absl::GetFlag(FLAGS_rfm_width);
  const int rfm_depth = absl::GetFlag(FLAGS_rfm_depth);
  const int rfm_batch = absl::GetFlag(FLAGS_rfm_batch);
  const double rfm_lr = absl::GetFlag(FLAGS_rfm_lr);
  const int rfm_fourier = absl::GetFlag(FLAGS_rfm_fourier);
  const double rfm_fourier_scale = absl::GetFlag(FLAGS_rfm_fourier_scale);
  const std::string rfm_activation = absl::GetFlag(FLAGS_rfm_activation);
  const std::string rfm_coupling = absl::GetFlag(FLAGS_rfm_coupling);
  const double rfm_t_power = absl::GetFlag(FLAGS_rfm_t_power);
  const int first_seed = absl::GetFlag(FLAGS_first_seed);
  const int seeds = absl::GetFlag(FLAGS_seeds);
  const int components = absl::GetFlag(FLAGS_components);
  const int layers = absl::GetFlag(FLAGS_layers);
  const int steps = absl::GetFlag(FLAGS_steps);
  const double neural_lr = absl::GetFlag(FLAGS_neural_lr);
  const int recursive_blocks = absl::GetFlag(FLAGS_recursive_blocks);
  const int recursive_bins = absl::GetFlag(FLAGS_recursive_bins);
  const int recursive_hidden = absl::GetFlag(FLAGS_recursive_hidden);
  const int recursive_batch = absl::GetFlag(FLAGS_recursive_batch);
  const double recursive_lr = absl::GetFlag(FLAGS_recursive_lr);
  const int recursive_components = absl::GetFlag(FLAGS_recursive_components);
  const double recursive_weight_decay =
      absl::GetFlag(FLAGS_recursive_weight_decay);
  if (absl::Status s = cli::CheckFlags({
          {"seeds", seeds, seeds > 0, "> 0"},
          {"first_seed", first_seed, first_seed >= 0 && first_seed <= 1000000,
           "in [0, 1e6]"},
          {"rfm_t_power", rfm_t_power,
           std::isfinite(rfm_t_power) && rfm_t_power >= 0 && rfm_t_power <= 100,
           "in [0, 100]"},
          {"components", components, components >= 0, ">= 0"},
          {"layers", layers, layers >= 0, ">= 0"},
          {"steps", steps, steps >= 0, ">= 0"},
          {"neural_lr", neural_lr, std::isfinite(neural_lr) && neural_lr >= 0,
           "finite and >= 0"},
          {"recursive_blocks", recursive_blocks,
           recursive_blocks >= 0 && recursive_blocks <= 64, "in [0, 64]"},
          {"recursive_bins", recursive_bins,
           recursive_bins >= 0 && recursive_bins <= 1024, "in [0, 1024]"},
          {"recursive_hidden", recursive_hidden,
           recursive_hidden >= 0 && recursive_hidden <= 4096, "in [0, 4096]"},
          {"recursive_batch", recursive_batch,
           recursive_batch >= 0 && recursive_batch <= 65536, "in [0, 65536]"},
          {"recursive_lr", recursive_lr,
           std::isfinite(recursive_lr) && recursive_lr >= 0 && recursive_lr < 1,
           "finite, in [0, 1)"},
          {"recursive_weight_decay", recursive_weight_decay,
           recursive_weight_decay == -1 ||
               (recursive_weight_decay >= 0 && recursive_weight_decay < 1),
           "-1 or in [0, 1)"},
          {"recursive_components", recursive_components,
           recursive_components >= 0 && recursive_components <= 64,
           "in [0, 64]"},
          {"rfm_width", rfm_width, rfm_width >= 0 && rfm_width <= 4096,
           "in [0, 4096]"},
          {"rfm_depth", rfm_depth, rfm_depth >= 0 && rfm_depth <= 16,
           "in [0, 16]"},
          {"rfm_batch", rfm_batch, rfm_batch >= 0 && rfm_batch <= 65536,
           "in [0, 65536]"},
          {"rfm_fourier", rfm_fourier, rfm_fourier >= -1 && rfm_fourier <= 4096,
           "in [-1, 4096]"},
          {"rfm_fourier_scale", rfm_fourier_scale,
           std::isfinite(rfm_fourier_scale) && rfm_fourier_scale >= 0 &&
               rfm_fourier_scale <= 1e4,
           "in [0, 1e4]"},
          {"rfm_lr", rfm_lr, std::isfinite(rfm_lr) && rfm_lr >= 0 && rfm_lr < 1,
           "finite, in [0, 1)"},
      });
      !s.ok())
    return s;
  if (components) cfg.mixture_components = components;
  if (layers) cfg.mixture_layers = layers;
  if (steps) {
    cfg.steps = cfg.neural_steps = cfg.recursive_steps = rfm.steps = steps;
    rfm.steps_doubled = false;
  }
  if (rfm_width) rfm.spec.field.width = rfm_width;
  if (rfm_depth) rfm.spec.field.depth = rfm_depth;
  if (rfm_batch) rfm.batch = rfm_batch;
  if (rfm_lr) rfm.lr = rfm_lr;
  if (rfm_fourier >= 0) rfm.spec.field.fourier = rfm_fourier;
  if (rfm_fourier_scale) rfm.spec.field.fourier_scale = rfm_fourier_scale;
  if (!rfm_activation.empty()) {
    if (absl::Status s = nn::ParseActivation(rfm_activation).status(); !s.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("--rfm_activation: ", s.message()));
    rfm.spec.field.activation = rfm_activation;
  }
  if (!rfm_coupling.empty()) {
    absl::StatusOr<flows::matching::CouplingKind> kind =
        flows::matching::ParseCouplingKind(rfm_coupling);
    if (!kind.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("--rfm_coupling: ", kind.status().message()));
    rfm.coupling = *kind;
  }
  if (rfm.coupling == flows::matching::CouplingKind::kExactOt &&
      rfm.batch > 512)
    return absl::InvalidArgumentError(
        absl::StrCat("--rfm_coupling=exact_ot: the batch (", rfm.batch,
                     ") must be <= 512 (the assignment is O(batch^3))"));
  if (rfm_t_power) rfm.t_power = rfm_t_power;
  if (neural_lr) cfg.neural_lr = neural_lr;
  if (recursive_blocks) cfg.recursive_blocks = recursive_blocks;
  if (recursive_bins)
    cfg.recursive_bins = cfg.mixture_chain_bins = recursive_bins;
  if (recursive_hidden)
    cfg.recursive_hidden = cfg.mixture_chain_hidden = recursive_hidden;
  if (recursive_batch) cfg.recursive_batch = recursive_batch;
  if (recursive_lr) cfg.recursive_lr = recursive_lr;
  if (recursive_components) cfg.recursive_components = recursive_components;
  if (recursive_weight_decay >= 0)
    cfg.recursive_weight_decay = cfg.mixture_chain_weight_decay =
        recursive_weight_decay;
  ex.config() = {
      {"affine_layers", cfg.affine_layers},
      {"mixture_components", cfg.mixture_components},
      {"mixture_layers", cfg.mixture_layers},
      {"neural_blocks", cfg.neural_blocks},
      {"hidden", cfg.hidden},
      {"steps", cfg.steps},
      {"neural_steps", cfg.neural_steps},
      {"batch", cfg.batch},
      {"neural_batch", cfg.neural_batch},
      {"lr", cfg.lr},
      {"neural_lr", cfg.neural_lr},
      {"recursive_bins", cfg.recursive_bins},
      {"recursive_hidden", cfg.recursive_hidden},
      {"recursive_steps", cfg.recursive_steps},
      {"recursive_lr", cfg.recursive_lr},
      {"recursive_blocks", cfg.recursive_blocks},
      {"recursive_batch", cfg.recursive_batch},
      {"recursive_components", cfg.recursive_components},
      {"recursive_weight_decay", cfg.recursive_weight_decay},
      {"mixture_chain_bins", cfg.mixture_chain_bins},
      {"mixture_chain_hidden", cfg.mixture_chain_hidden},
      {"mixture_chain_weight_decay", cfg.mixture_chain_weight_decay},
      {"rfm",
       {{"width", rfm.spec.field.width},
        {"depth", rfm.spec.field.depth},
        {"activation", rfm.spec.field.activation},
        {"fourier", rfm.spec.field.fourier},
        {"fourier_scale", rfm.spec.field.fourier_scale},
        {"step_size", rfm.spec.field.step_size},
        {"steps", rfm.steps},
        {"steps_doubled_on_flood_fire", rfm.steps_doubled},
        {"batch", rfm.batch},
        {"lr", rfm.lr},
        {"t_power", rfm.t_power},
        {"coupling", flows::matching::CouplingKindName(rfm.coupling)}}}};
  std::string dir = absl::GetFlag(FLAGS_data_dir);
  dir = dir.empty() ? data::DefaultEarthDataDir() : cli::ResolvePath(dir);
  ex.set_seed(0);  // seed k: split 1000 + k, initialisation 77 + k
  const DType dtype = ex.dtype();
  std::vector<std::string> sets =
      absl::StrSplit(absl::GetFlag(FLAGS_datasets), ',');
  std::vector<std::string> models =
      absl::StrSplit(absl::GetFlag(FLAGS_models), ',');
  for (const std::string& set : sets)
    if (std::find(kDatasets.begin(), kDatasets.end(), set) == kDatasets.end())
      return absl::InvalidArgumentError(
          absl::StrCat("--datasets: unknown '", set,
                       "' (volcano, earthquake, flood, fire)"));
  for (const std::string& name : models)
    if (name != "affine" && name != "mixture" && name != "neural" &&
        name != "recursive" && name != "recursive_mobius" &&
        name != "recursive_mixture" && name != "rfm")
      return absl::InvalidArgumentError(
          absl::StrCat("--models: unknown '", name,
                       "' (affine, mixture, neural, recursive, "
                       "recursive_mobius, recursive_mixture, rfm)"));
  FT_RETURN_IF_ERROR(CheckModelMemory(cfg, rfm, models));
  std::map<std::string, std::map<std::string, Cell>> results;  // model, data
  for (const std::string& set : sets) {
    const std::string path = absl::StrCat(dir, "/", set, ".csv");
    auto points = data::LoadEarthCsv(path);
    if (!points.ok()) return points.status();
    for (int seed = first_seed; seed < first_seed + seeds; ++seed) {
      auto split_or = data::RandomSplit(*points, 1000 + seed, path);
      if (!split_or.ok()) return split_or.status();
      const data::Split& split = *split_or;
      for (const std::string& name : models) {
        const bool neural = name != "affine" && name != "mixture";
        const bool recursive = absl::StartsWith(name, "recursive");
        const Config mcfg = ForModel(cfg, name);
        auto make = [&](int) -> absl::StatusOr<training::Replica> {
          Rng rng(77 + seed);
          FT_ASSIGN_OR_RETURN(
              std::shared_ptr<ManifoldDensity> model,
              MakeModel(Spec(name, mcfg, dtype), split.train, rng));
          const ManifoldDensity* m = model.get();
          training::NllFn nll = [m](const Tensor& b, const Tensor&, Rng&) {
            return -Mean(m->LogProb(b));
          };
          nn::AdamOptions adam;
          adam.lr = recursive ? mcfg.recursive_lr
                    : neural  ? mcfg.neural_lr
                              : mcfg.lr;
          std::shared_ptr<nn::Adam> opt;
          if (recursive && mcfg.recursive_weight_decay > 0) {
            adam.weight_decay = mcfg.recursive_weight_decay;
            opt = nn::AdamW::Create(*model, adam).value();
          } else {
            opt = nn::Adam::Create(*model, adam).value();
          }
          if (recursive)
            opt->set_schedule(
                nn::CosineAnnealingLr(mcfg.recursive_lr, mcfg.recursive_steps));
          return training::Replica{model, nll, opt};
        };
        training::TrainOptions topt;
        topt.batch_size = recursive ? mcfg.recursive_batch
                          : neural  ? mcfg.neural_batch
                                    : mcfg.batch;
        topt.max_steps = recursive ? mcfg.recursive_steps
                         : neural  ? mcfg.neural_steps
                                   : mcfg.steps;
        topt.eval_every = 100;
        topt.log_every = absl::GetFlag(FLAGS_verbose) ? 50 : 0;
        topt.seed = seed;
        topt.clip_grad_norm = 100.0;
        const training::TrainData data{
            Cast(split.train, dtype), Cast(split.val, dtype), {}, {}};
        RfmModel rfm_model;
        absl::StatusOr<training::ThreadedTraining> trained =
            name == "rfm"
                ? TrainRfm(ex, RfmFor(rfm, set), data, topt, &rfm_model)
                : ex.Train(make, data, topt);
        FT_ASSIGN_OR_RETURN(training::ThreadedTraining run, trained);
        const training::TrainResult* r = &run.result;
        const auto& model =
            name == "rfm"
                ? *rfm_model.fine
                : static_cast<const ManifoldDensity&>(*run.replica.model);
        ex.history().AddTraining(*r, topt.eval_every,
                                 absl::StrCat(set, "/", name, "/seed", seed));
        FT_ASSIGN_OR_RETURN(const double test,
                            MeanNll(model, Cast(split.test, dtype)));
        results[name][set].nll.push_back(test);
        // The ODE's share of the error: the first (up to) 256 test rows at
        // the test step and at half of it.
        std::string half_step;
        if (name == "rfm" && seed == first_seed) {
          const Tensor rows =
              Cast(Narrow(split.test, 0, 0,
                          std::min<int64_t>(256, split.test.dim(0))),
                   dtype);
          FT_ASSIGN_OR_RETURN(const double at_h, MeanNll(model, rows));
          FT_ASSIGN_OR_RETURN(const double at_half,
                              MeanNll(*rfm_model.half, rows));
          ex.metrics()["rfm_ode_check"][set] = {
              {"rows", rows.dim(0)}, {"step", at_h}, {"half_step", at_half}};
          half_step = absl::StrFormat(
              ", ODE check on %d test rows: %.4f at step %g, %.4f at %g",
              rows.dim(0), at_h, rfm.spec.field.step_size, at_half,
              rfm.spec.field.step_size / 2);
        }
        std::cout << absl::StrFormat(
                         "%-10s %-8s seed %d: val %.3f test %.3f  (%lld steps, "
                         "%.1fs%s%s)",
                         set, name, seed, r->best_val_nll, test, r->steps,
                         r->seconds, r->diverged ? ", diverged" : "", half_step)
                  << std::endl;
        if (seed == first_seed)
          FT_RETURN_IF_ERROR(models::SaveSphereModel(
              ex.Output(absl::StrCat(set, "_", name, ".ftm")),
              name == "rfm" ? rfm.spec : Spec(name, mcfg, dtype), model));
        if (seed == first_seed && absl::GetFlag(FLAGS_maps)) {
          FT_ASSIGN_OR_RETURN(
              viz::Figure map,
              DensityMap(model, split.test,
                         absl::StrCat(set, ": ", name, " model (seed 0)"),
                         name == "rfm" ? viz::SphereDensityOptions{180, 90}
                                       : viz::SphereDensityOptions{}));
          FT_RETURN_IF_ERROR(
              ex.WriteFigure(map, absl::StrCat(set, "_", name, ".png")));
        }
      }
    }
  }
  for (const auto& [name, by_set] : results)
    for (const auto& [set, cell] : by_set)
      ex.metrics()["test_nll"][set][name] = {
          {"mean", cell.Mean()}, {"std", cell.Sd()}, {"per_seed", cell.nll}};
  // Table: published rows, then ours.
  std::cout
      << "\nTest NLL (nats, unit sphere; uniform = 2.53), mean +- std over "
      << seeds << " seeds" << (full ? " [--full]" : " [quick]") << "\n";
  std::cout << absl::StrFormat("%-40s", "method");
  for (const auto& d : kDatasets) std::cout << absl::StrFormat("%-16s", d);
  std::cout << "\n";
  for (const auto& p : kPublished) {
    std::cout << absl::StrFormat("%-40s", p.method + " (published)");
    for (const auto& c : p.cells) std::cout << absl::StrFormat("%-16s", c);
    std::cout << "\n";
  }
  const std::map<std::string, std::string> label = {
      {"affine", absl::StrCat("Normalized affine x", cfg.affine_layers)},
      {"mixture", absl::StrCat("Mixture ", cfg.mixture_components, " x ",
                               cfg.mixture_layers, " affine")},
      {"neural",
       absl::StrCat("Affine + cylindrical coupling x", cfg.neural_blocks)},
      {"recursive",
       absl::StrCat("Affine + recursive (spline K=", cfg.recursive_bins, ") x",
                    cfg.recursive_blocks)},
      {"recursive_mobius",
       absl::StrCat("Affine + recursive (Moebius) x", cfg.recursive_blocks)},
      {"recursive_mixture",
       absl::StrCat("Mixture ", cfg.recursive_components, " x recursive (K=",
                    cfg.mixture_chain_bins, ") x", cfg.recursive_blocks)},
      {"rfm", absl::StrCat("Riemannian flow matching ", rfm.spec.field.depth,
                           " x ", rfm.spec.field.width)}};
  for (const std::string& name : models) {
    std::cout << absl::StrFormat("%-40s", label.at(name) + " (ours)");
    for (const auto& d : kDatasets) {
      auto it = results[name].find(d);
      std::cout << absl::StrFormat(
          "%-16s", it == results[name].end() ? "-" : it->second.Format());
    }
    std::cout << "\n";
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace flowtape::benchmarks

int main(int argc, char** argv) {
  return flowtape::cli::Main(
      {"earth",
       "spherical flows on the volcano, earthquake, flood and fire catalogues "
       "vs the published table (test NLL, mean +- std over seeds).\n"
       "  ./bazelw run --config=opt //benchmarks:earth [-- --full]",
       flowtape::kFloat64},
      argc, argv, flowtape::benchmarks::Run);
}

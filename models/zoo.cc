#include "models/zoo.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autodiff/status_macros.h"
#include "flows/autoregressive.h"
#include "flows/cnf/cnf.h"
#include "flows/cnf/mixture_baseline_velocity.h"
#include "flows/coupling.h"
#include "flows/distribution.h"
#include "flows/gaussianization.h"
#include "flows/glow.h"
#include "flows/householder.h"
#include "flows/linear.h"
#include "flows/matching/cfm_flow.h"
#include "flows/planar.h"
#include "flows/radial.h"
#include "flows/resampled.h"
#include "flows/resflow.h"
#include "flows/scaling.h"
#include "flows/sequential.h"
#include "flows/snf.h"
#include "flows/sylvester.h"

namespace flowtape::models {
namespace {

using flows::Flow;
using FlowPtr = absl::StatusOr<std::shared_ptr<Flow>>;

int64_t Dim(const ModelConfig& c) { return c.event[0]; }

// `layers` steps from make(i) (each a StatusOr of a flow).
template <typename F>
FlowPtr Stack(const ModelConfig& c, F make) {
  auto seq = std::make_shared<flows::Sequential>();
  for (int i = 0; i < c.layers; ++i) {
    FT_ASSIGN_OR_RETURN(auto step, make(i));
    seq->Add(step);
  }
  return std::shared_ptr<Flow>(seq);
}

flows::MadeOptions Made(const ModelConfig& c) {
  flows::MadeOptions m;
  m.dim = Dim(c);
  m.hidden = c.hidden;
  m.context_dim = c.context_dim;
  return m;
}

flows::RqSplineOptions Spline(const ModelConfig& c) {
  flows::RqSplineOptions s;
  s.bins = c.bins;
  s.bound = c.bound;
  return s;
}

FlowPtr Planar(const ModelConfig& c, Rng& rng) {
  return Stack(c, [&](int) { return flows::Planar::Create(Dim(c), rng); });
}

FlowPtr Radial(const ModelConfig& c, Rng& rng) {
  return Stack(c, [&](int) { return flows::Radial::Create(Dim(c), rng); });
}

// Orthogonal Sylvester flows with M = D (each layer its own Q).
FlowPtr Sylvester(const ModelConfig& c, Rng& rng) {
  flows::SylvesterOptions o;
  o.dim = Dim(c);
  return Stack(c, [&](int) { return flows::Sylvester::Create(o, rng); });
}

// Tomczak & Welling's use: a diagonal Gaussian rotated by `layers`
// reflections, i.e. x = H_K ... H_1 (exp(-s) * z), a full covariance.
FlowPtr Householder(const ModelConfig& c, Rng& rng) {
  FT_ASSIGN_OR_RETURN(auto reflections,
                      flows::Householder::Create(Dim(c), c.layers, rng));
  FT_ASSIGN_OR_RETURN(auto scaling, flows::Scaling::Create(Shape{Dim(c)}));
  return std::shared_ptr<Flow>(std::make_shared<flows::Sequential>(
      std::vector<std::shared_ptr<Flow>>{reflections, scaling}));
}

// Residual Flows: `layers` x (ActNorm, residual block with an MLP of the
// hidden sizes, c = 0.9); exact log-det up to D = 4, Russian roulette above.
FlowPtr ResFlow(const ModelConfig& c, Rng& rng) {
  flows::ResidualOptions o;
  o.dim = Dim(c);
  o.hidden = c.hidden;
  if (o.dim > 4) o.estimator = flows::LogdetEstimator::kRussianRoulette;
  return flows::ResidualFlow(o, c.layers, rng);
}

// `layers` autoregressive steps, the data reversed between them (R, the
// reversal of the D features): A_0, R, A_1, R, A_2, ... Since R A R is A
// with the reversed ordering (its first layer's rows and its output
// dimensions reversed), the reversals are folded into the orderings: step i
// uses the natural ordering for even i and the reversed one for odd i, and
// no permutation layer runs. An even number of steps leaves one R at the
// end, which the bases (iid standard normal or logistic) do not see: the
// density is that of the stack with reversals, z comes out reversed.
FlowPtr Autoregressive(const ModelConfig& c, Rng& rng,
                       flows::ElementwiseKind kind, bool inverted) {
  flows::AutoregressiveOptions o;
  o.made = Made(c);
  o.transform.kind = kind;
  o.transform.spline = Spline(c);
  o.inverted = inverted;
  return Stack(c, [&](int i) {
    o.made.ordering =
        i % 2 == 1 ? flows::Ordering::kReversed : flows::Ordering::kNatural;
    return flows::Autoregressive::Create(o, rng);
  });
}

// `layers` autoregressive layers (MAF direction) on a monotone map with a
// numeric inverse (flows/elementwise.h), orderings alternating as above.
FlowPtr MonotoneMaf(const ModelConfig& c, Rng& rng,
                    const flows::ElementwiseOptions& transform) {
  flows::AutoregressiveOptions o;
  o.made = Made(c);
  o.transform = transform;
  return Stack(c, [&](int i) {
    o.made.ordering =
        i % 2 == 1 ? flows::Ordering::kReversed : flows::Ordering::kNatural;
    return flows::Autoregressive::Create(o, rng);
  });
}

FlowPtr Naf(const ModelConfig& c, Rng& rng) {
  flows::ElementwiseOptions t(flows::ElementwiseKind::kDsf);
  t.dsf.units = 8;
  return MonotoneMaf(c, rng, t);
}

FlowPtr Unaf(const ModelConfig& c, Rng& rng) {
  flows::ElementwiseOptions t(flows::ElementwiseKind::kUmnn);
  t.umnn.units = 8;
  t.umnn.intervals = 32;
  return MonotoneMaf(c, rng, t);
}

// Three squares of degree 3 (a degree-7 map on [-bound, bound], linear
// tails beyond: sos_polynomial.h). Without the tails stacked layers compose
// their degrees and overflow float32 (zuko's SOSPF puts a soft clip between
// layers instead).
FlowPtr Sospf(const ModelConfig& c, Rng& rng) {
  flows::ElementwiseOptions t(flows::ElementwiseKind::kSos);
  t.sos.polynomials = 3;
  t.sos.degree = 3;
  t.sos.scale = c.bound;
  return MonotoneMaf(c, rng, t);
}

// Degree 2 * bins on [-bound, bound], linear tails.
FlowPtr Bpf(const ModelConfig& c, Rng& rng) {
  flows::ElementwiseOptions t(flows::ElementwiseKind::kBernstein);
  t.bernstein.degree = 2 * c.bins;
  t.bernstein.bound = c.bound;
  return MonotoneMaf(c, rng, t);
}

// `layers` couplings of `kind` with alternating half masks (vectors: MLP
// conditioners; images: checkerboard masks and conv conditioners).
FlowPtr Couplings(const ModelConfig& c, Rng& rng, flows::ElementwiseKind kind) {
  flows::CouplingOptions o;
  o.event = c.event;
  o.hidden = c.hidden;
  o.context_dim = c.context_dim;
  o.transform.kind = kind;
  o.transform.spline = Spline(c);
  if (c.event.rank() == 3) {
    o.mask = flows::CouplingMask::kCheckerboard;
    o.hidden = {c.channels, c.channels};
  }
  return Stack(c, [&](int i) {
    o.flip = i % 2 == 1;
    return flows::Coupling::Create(o, rng);
  });
}

FlowPtr RealNvp(const ModelConfig& c, Rng& rng) {
  return Couplings(c, rng, flows::ElementwiseKind::kAffine);
}

// NICE: additive couplings, then the diagonal scaling layer.
FlowPtr Nice(const ModelConfig& c, Rng& rng) {
  FT_ASSIGN_OR_RETURN(auto couplings,
                      Couplings(c, rng, flows::ElementwiseKind::kAdditive));
  FT_ASSIGN_OR_RETURN(auto scaling, flows::Scaling::Create(c.event));
  return std::shared_ptr<Flow>(std::make_shared<flows::Sequential>(
      std::vector<std::shared_ptr<Flow>>{couplings, scaling}));
}

// Gaussianization flow: `layers` kernel-density marginal layers of
// `components` kernels, Householder rotations between them.
FlowPtr Gf(const ModelConfig& c, Rng& rng,
           flows::GaussianizationKernel kernel) {
  flows::GaussianizationFlowOptions o;
  o.dim = Dim(c);
  o.layers = c.layers;
  o.components = c.components;
  o.kernel = kernel;
  return flows::GaussianizationFlow(o, rng);
}

// Stochastic normalizing flow for data (zoo.h): RealNVP blocks with one
// learned-step Langevin layer after each, all sampling the prior's energy.
FlowPtr Snf(const ModelConfig& c, Rng& rng) {
  if (Dim(c) < 2)
    return absl::InvalidArgumentError(absl::StrCat(
        "flow 'snf' needs D >= 2 (its couplings split the vector), got D = ",
        Dim(c)));
  flows::SnfOptions o;
  o.target = flows::GaussianEnergy::Standard(Dim(c));
  o.blocks = (c.layers + 1) / 2;
  o.hidden = c.hidden;
  o.kind = flows::StochasticKind::kLangevin;
  o.mcmc_steps = 1;
  o.step_size = 0.01;
  o.learn_step_size = true;
  FT_ASSIGN_OR_RETURN(auto snf, flows::MakeSnf(o, rng));
  return std::shared_ptr<Flow>(snf);
}

FlowPtr Glow(const ModelConfig& c, Rng& rng) {
  flows::GlowOptions o;
  o.channels = c.event[0];
  o.height = c.event[1];
  o.width = c.event[2];
  o.levels = c.levels;
  o.depth = c.depth;
  o.hidden = c.channels;
  o.context_dim = c.context_dim;
  FT_ASSIGN_OR_RETURN(auto glow, flows::Glow::Create(o, rng));
  return std::shared_ptr<Flow>(glow);
}

}  // namespace

const std::vector<ZooEntry>& ZooEntries() {
  using D = Domain;
  using B = BaseKind;
  static const auto* entries = new std::vector<ZooEntry>{
      {"realnvp", "affine coupling, MLP conditioners (Dinh et al. 2017)",
       D::kVectors, B::kNormal, RealNvp},
      {"realnvp", "affine conv coupling, checkerboard masks (Dinh 2017)",
       D::kImages, B::kNormal, RealNvp},
      {"nice", "additive coupling + scaling (Dinh et al. 2014)", D::kVectors,
       B::kLogistic, Nice},
      {"glow", "multi-scale Glow (Kingma & Dhariwal 2018)", D::kImages,
       B::kNormal, Glow},
      {"ica", "linear flow x = W s, logistic base: Infomax ICA (K = 1)",
       D::kVectors, B::kLogistic,
       [](const ModelConfig& c, Rng&) -> FlowPtr {
         FT_ASSIGN_OR_RETURN(auto f, flows::LinearFlow::Create(Dim(c)));
         return std::shared_ptr<Flow>(f);
       },
       false, false},
      {"planar", "planar flows (Rezende & Mohamed 2015), numeric inverse",
       D::kVectors, B::kNormal, Planar, false, false},
      {"radial", "radial flows (Rezende & Mohamed 2015)", D::kVectors,
       B::kNormal, Radial, false, false},
      {"sylvester", "orthogonal Sylvester flows (van den Berg 2018), M = D",
       D::kVectors, B::kNormal, Sylvester, false, false},
      {"householder", "Householder reflections on a diagonal Gaussian (TW16)",
       D::kVectors, B::kNormal, Householder, false, false},
      {"maf", "masked autoregressive flow (Papamakarios et al. 2017)",
       D::kVectors, B::kNormal,
       [](const ModelConfig& c, Rng& r) {
         return Autoregressive(c, r, flows::ElementwiseKind::kAffineMaf, false);
       }},
      {"iaf", "inverse autoregressive flow (Kingma et al. 2016)", D::kVectors,
       B::kNormal,
       [](const ModelConfig& c, Rng& r) {
         return Autoregressive(c, r, flows::ElementwiseKind::kAffineMaf, true);
       }},
      {"nsf_coupling", "rational-quadratic spline coupling (Durkan 2019)",
       D::kVectors, B::kNormal,
       [](const ModelConfig& c, Rng& r) {
         return Couplings(c, r, flows::ElementwiseKind::kSpline);
       }},
      {"nsf_ar", "rational-quadratic autoregressive spline (Durkan 2019)",
       D::kVectors, B::kNormal,
       [](const ModelConfig& c, Rng& r) {
         return Autoregressive(c, r, flows::ElementwiseKind::kSpline, false);
       }},
      {"ffjord", "continuous flow, ConcatSquash ODE (Grathwohl et al. 2019)",
       D::kVectors, B::kNormal,
       [](const ModelConfig& c, Rng& r) -> FlowPtr {
         return flows::cnf::MakeFfjord(Dim(c), c.hidden, /*rnode=*/false, r,
                                       c.context_dim, c.train_t);
       }},
      {"rnode", "FFJORD + kinetic/Jacobian regularisers (Finlay et al. 2020)",
       D::kVectors, B::kNormal,
       [](const ModelConfig& c, Rng& r) -> FlowPtr {
         return flows::cnf::MakeFfjord(Dim(c), c.hidden, /*rnode=*/true, r,
                                       c.context_dim, c.train_t);
       }},
      {"cfm",
       "flow matching field as a CNF (Lipman 2023; train with "
       "TrainFlowMatching)",
       D::kVectors, B::kNormal,
       [](const ModelConfig& c, Rng& r) -> FlowPtr {
         flows::cnf::CnfOptions o;
         o.train_t = c.train_t;  // refused: the field maps over [0, 1]
         FT_ASSIGN_OR_RETURN(
             auto net,
             flows::cnf::ConcatSquashNet::Create(
                 Dim(c), c.hidden, nn::Activation::kTanh, r, c.context_dim));
         // The closed-form trace where the net has one, else Hutchinson's
         // in d > 8 (d VJPs per evaluation would be too dear).
         if (Dim(c) > 8 && !net->has_closed_form_trace())
           o.trace = flows::cnf::TraceEstimator::kHutchinson;
         // ConcatSquash residual over a 2-component per-dimension mixture
         // field (OT path, sigma_min 1e-4), off until fitted to data
         // (flows/cnf/mixture_baseline_velocity.h; the image pipeline
         // fits it, experiments/image_run.h).
         FT_ASSIGN_OR_RETURN(auto field,
                             flows::cnf::MixtureBaselineVelocity::Create(
                                 std::move(net), /*components=*/2, 1e-4));
         return flows::matching::MakeFlowMatchingCnf(std::move(field), o);
       }},
      {"resflow", "invertible residual blocks, Residual Flows (Chen 2019)",
       D::kVectors, B::kNormal, ResFlow, false, false},
      {"naf", "neural autoregressive flow, deep sigmoidal (Huang 2018)",
       D::kVectors, B::kNormal, Naf},
      {"unaf", "UMNN autoregressive flow, quadrature (Wehenkel 2019)",
       D::kVectors, B::kNormal, Unaf},
      {"sospf", "sum-of-squares polynomial flow (Jaini et al. 2019)",
       D::kVectors, B::kNormal, Sospf},
      {"bpf", "Bernstein polynomial flow (Sick 2021, Arpogaus 2022)",
       D::kVectors, B::kNormal, Bpf},
      {"gf", "Gaussianization flow, Gaussian kernels (Meng et al. 2020)",
       D::kVectors, B::kNormal,
       [](const ModelConfig& c, Rng& r) {
         return Gf(c, r, flows::GaussianizationKernel::kGaussian);
       },
       false, false},
      {"gf_logistic", "Gaussianization flow, logistic kernels (Meng 2020)",
       D::kVectors, B::kNormal,
       [](const ModelConfig& c, Rng& r) {
         return Gf(c, r, flows::GaussianizationKernel::kLogistic);
       },
       false, false},
      {"snf", "stochastic NF: RealNVP + Langevin layers (Wu et al. 2020)",
       D::kVectors, B::kNormal, Snf, false, false, /*stochastic=*/true},
  };
  return *entries;
}

std::vector<std::string> ZooNames() {
  std::vector<std::string> names;
  for (const ZooEntry& e : ZooEntries())
    if (names.empty() || names.back() != e.name) names.push_back(e.name);
  return names;
}

absl::StatusOr<ZooEntry> FindFlow(const std::string& name, Domain domain) {
  bool known = false;
  for (const ZooEntry& e : ZooEntries()) {
    if (e.name != name) continue;
    if (e.domain == domain) return e;
    known = true;
  }
  if (known)
    return absl::InvalidArgumentError(
        absl::StrCat("flow '", name, "' does not take ",
                     domain == Domain::kVectors ? "vector data [N, D]"
                                                : "image data [N, C, H, W]"));
  return absl::InvalidArgumentError(
      absl::StrCat("unknown flow '", name,
                   "'; available: ", absl::StrJoin(ZooNames(), ", ")));
}

absl::Status ModelConfig::Validate() const {
  if (event.rank() != 1 && event.rank() != 3)
    return absl::InvalidArgumentError(
        absl::StrCat("zoo: event shape ", event.ToString(),
                     " is neither [D] nor [C, H, W]"));
  if (layers < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("zoo: layers = ", layers, " must be >= 1"));
  if (context_dim < 0)
    return absl::InvalidArgumentError(
        absl::StrCat("zoo: context_dim = ", context_dim, " must be >= 0"));
  if (components < 1 || components > 4096)
    return absl::InvalidArgumentError(absl::StrCat(
        "zoo: components = ", components, " must be in [1, 4096]"));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<flows::FlowModel>> MakeModel(
    const std::string& name, const ModelConfig& config, Rng& rng) {
  if (config.event.rank() != 1 && config.event.rank() != 3)
    return absl::InvalidArgumentError(
        absl::StrCat("zoo: event shape ", config.event.ToString(),
                     " is neither [D] nor [C, H, W]"));
  FT_ASSIGN_OR_RETURN(
      const ZooEntry entry,
      FindFlow(name,
               config.event.rank() == 1 ? Domain::kVectors : Domain::kImages));
  FT_RETURN_IF_ERROR(config.Validate());
  if (config.context_dim > 0 && !entry.takes_context) {
    std::vector<std::string> conditional;
    for (const ZooEntry& e : ZooEntries())
      if (e.takes_context && e.domain == entry.domain &&
          (conditional.empty() || conditional.back() != e.name))
        conditional.push_back(e.name);
    return absl::InvalidArgumentError(absl::StrCat(
        "flow '", name,
        "' does not support a context (context_dim = ", config.context_dim,
        "); conditional families here: ", absl::StrJoin(conditional, ", ")));
  }
  if (config.base != BaseChoice::kFamily &&
      (entry.domain != Domain::kVectors || entry.flat_output))
    return absl::InvalidArgumentError(
        absl::StrCat("zoo: a mixture or resampled base takes vector flows; '",
                     name, "' is an image flow"));
  FT_ASSIGN_OR_RETURN(std::shared_ptr<Flow> flow, entry.make(config, rng));
  Shape base_event =
      entry.flat_output ? Shape{config.event.numel()} : config.event;
  std::shared_ptr<flows::Distribution> base;
  flows::MixtureOptions mixture;
  mixture.components = config.components;
  mixture.dims = Dim(config);
  if (config.base == BaseChoice::kGaussianMixture) {
    FT_ASSIGN_OR_RETURN(base, flows::GaussianMixture::Create(mixture, rng));
  } else if (config.base == BaseChoice::kGaussianMixtureFull) {
    FT_ASSIGN_OR_RETURN(base, flows::FullGaussianMixture::Create(mixture, rng));
  } else if (config.base == BaseChoice::kFactorizedMixture) {
    FT_ASSIGN_OR_RETURN(base, flows::FactorizedMixture::Create(mixture));
  } else if (config.base == BaseChoice::kResampled) {
    flows::ResampledOptions o;
    o.dim = Dim(config);
    o.hidden = config.hidden;
    o.truncation = 100;
    o.normaliser_samples = 4096;
    FT_ASSIGN_OR_RETURN(base, flows::ResampledNormal::Create(o, rng));
  } else if (entry.base == BaseKind::kLogistic) {
    FT_ASSIGN_OR_RETURN(base, flows::Logistic::Create(base_event));
  } else {
    FT_ASSIGN_OR_RETURN(base, flows::StandardNormal::Create(base_event));
  }
  auto model = std::make_shared<flows::FlowModel>(base, std::move(flow));
  model->To(config.dtype);
  return model;
}

namespace {

// t viewed as [outer, n, inner] with n = d blocks: the blocks in reverse
// order (d = n: single rows or entries).
Tensor ReverseBlocks(const Tensor& t, int64_t outer, int64_t n, int64_t inner,
                     int64_t d) {
  const std::vector<double> v = t.ToVector();
  std::vector<double> out(v.size());
  const int64_t block = n / d * inner;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t b = 0; b < d; ++b)
      std::copy_n(v.begin() + (o * n * inner + (d - 1 - b) * block), block,
                  out.begin() + (o * n * inner + b * block));
  return Tensor::FromVector(t.shape(), out, t.dtype());
}

}  // namespace

void UpgradeFoldedReversals(
    const std::string& family, const ModelConfig& config,
    std::vector<std::pair<std::string, Tensor>>* tensors) {
  if (family != "maf" && family != "iaf" && family != "nsf_ar") return;
  const int layers = config.layers;
  const std::string last = absl::StrCat("buffer/flow.", 2 * (layers - 1), ".");
  if (layers < 2 ||
      std::none_of(tensors->begin(), tensors->end(), [&](const auto& e) {
        return e.first == last + "made.order";
      }))
    return;
  const int64_t d = Dim(config);
  const std::string out_layer =
      absl::StrCat("made.layer", config.hidden.size(), ".");
  for (auto& [name, t] : *tensors) {
    const bool buffer = absl::StartsWith(name, "buffer/");
    const std::string prefix = buffer ? "buffer/flow." : "flow.";
    int step = 0;
    const size_t dot = name.find('.', prefix.size());
    if (!absl::StartsWith(name, prefix) || dot == std::string::npos ||
        !absl::SimpleAtoi(name.substr(prefix.size(), dot - prefix.size()),
                          &step) ||
        step % 2 != 0)
      continue;
    const std::string rest = name.substr(dot + 1);
    name = absl::StrCat(prefix, step / 2, ".", rest);
    if (step / 2 % 2 == 0 || t.rank() == 0) continue;
    if (rest == "made.order" || rest == "made.layer0.weight" ||
        rest == "made.layer0.mask")
      t = ReverseBlocks(t, 1, d, t.numel() / d, d);
    else if (rest == out_layer + "weight" || rest == out_layer + "mask")
      t = ReverseBlocks(t, t.dim(0), t.dim(1), 1, d);
    else if (rest == out_layer + "bias")
      t = ReverseBlocks(t, 1, t.numel(), 1, d);
  }
}

}  // namespace flowtape::models

#include "models/zoo.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "flows/autoregressive.h"
#include "flows/cnf/cnf.h"
#include "flows/coupling.h"
#include "flows/distribution.h"
#include "flows/glow.h"
#include "flows/householder.h"
#include "flows/linear.h"
#include "flows/masked_coupling.h"
#include "flows/permute.h"
#include "flows/planar.h"
#include "flows/radial.h"
#include "flows/resflow.h"
#include "flows/scaling.h"
#include "flows/sequential.h"
#include "flows/spline.h"
#include "flows/sylvester.h"

namespace flowtape::models {
namespace {

using flows::Flow;
using FlowPtr = absl::StatusOr<std::shared_ptr<Flow>>;

int64_t Dim(const ModelConfig& c) { return c.event[0]; }

// `layers` steps from make(i), with a Reverse permutation between steps.
template <typename F>
std::shared_ptr<Flow> Stack(const ModelConfig& c, bool reverse_between,
                            F make) {
  auto seq = std::make_shared<flows::Sequential>();
  for (int i = 0; i < c.layers; ++i) {
    if (reverse_between && i > 0) seq->Add(flows::Reverse(Dim(c)));
    seq->Add(make(i));
  }
  return seq;
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
  return Stack(c, false, [&](int) {
    return std::make_shared<flows::Planar>(Dim(c), rng);
  });
}

FlowPtr Radial(const ModelConfig& c, Rng& rng) {
  return Stack(c, false, [&](int) {
    return std::make_shared<flows::Radial>(Dim(c), rng);
  });
}

// Orthogonal Sylvester flows with M = D (each layer its own Q).
FlowPtr Sylvester(const ModelConfig& c, Rng& rng) {
  flows::SylvesterOptions o;
  o.dim = Dim(c);
  if (absl::Status s = flows::ValidateSylvesterOptions(o); !s.ok()) return s;
  return Stack(c, false,
               [&](int) { return std::make_shared<flows::Sylvester>(o, rng); });
}

// Tomczak & Welling's use: a diagonal Gaussian rotated by `layers`
// reflections, i.e. x = H_K ... H_1 (exp(-s) * z), a full covariance.
FlowPtr Householder(const ModelConfig& c, Rng& rng) {
  auto seq = std::make_shared<flows::Sequential>();
  seq->Add(std::make_shared<flows::Householder>(Dim(c), c.layers, rng));
  seq->Add(std::make_shared<flows::Scaling>(Shape{Dim(c)}));
  return seq;
}

// Residual Flows: `layers` x (ActNorm, residual block with an MLP of the
// hidden sizes, c = 0.9); exact log-det up to D = 4, Russian roulette above.
FlowPtr ResFlow(const ModelConfig& c, Rng& rng) {
  flows::ResidualOptions o;
  o.dim = Dim(c);
  o.hidden = c.hidden;
  if (o.dim > 4) o.estimator = flows::LogdetEstimator::kRussianRoulette;
  if (absl::Status s = flows::ValidateResidualOptions(o); !s.ok()) return s;
  return flows::ResidualFlow(o, c.layers, rng);
}

FlowPtr Maf(const ModelConfig& c, Rng& rng, bool inverted) {
  if (absl::Status s = flows::ValidateMadeOptions(Made(c)); !s.ok()) return s;
  return Stack(c, true, [&](int) {
    return std::make_shared<flows::Maf>(Made(c), rng, inverted);
  });
}

FlowPtr SplineCoupling(const ModelConfig& c, Rng& rng) {
  if (absl::Status s = flows::ValidateRqSplineOptions(Spline(c)); !s.ok())
    return s;
  return Stack(c, false, [&](int i) {
    flows::SplineCouplingOptions o;
    o.dim = Dim(c);
    o.hidden = c.hidden;
    o.context_dim = c.context_dim;
    o.parity = i % 2;
    o.spline = Spline(c);
    return std::make_shared<flows::SplineCoupling>(o, rng);
  });
}

FlowPtr SplineAr(const ModelConfig& c, Rng& rng) {
  if (absl::Status s = flows::ValidateRqSplineOptions(Spline(c)); !s.ok())
    return s;
  if (absl::Status s = flows::ValidateMadeOptions(Made(c)); !s.ok()) return s;
  return Stack(c, true, [&](int) {
    return std::make_shared<flows::SplineAutoregressive>(Made(c), Spline(c),
                                                         rng);
  });
}

FlowPtr RealNvpVectors(const ModelConfig& c, Rng& rng) {
  return flows::RealNvp(Dim(c), c.layers, c.hidden, rng, c.context_dim);
}

FlowPtr NiceVectors(const ModelConfig& c, Rng& rng) {
  return flows::Nice(Dim(c), c.layers, c.hidden, rng, c.context_dim);
}

// Single-scale RealNVP on images: affine conv couplings with alternating
// checkerboard masks.
FlowPtr RealNvpImages(const ModelConfig& c, Rng& rng) {
  return Stack(c, false, [&](int i) {
    return flows::ConvCoupling(
        flows::CheckerboardMask(c.event[0], c.event[1], c.event[2], i % 2),
        c.channels, flows::CouplingKind::kAffineTanh, rng, c.context_dim);
  });
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
  if (absl::Status s = flows::ValidateGlowOptions(o); !s.ok()) return s;
  return std::make_shared<flows::Glow>(o, rng);
}

}  // namespace

const std::vector<ZooEntry>& ZooEntries() {
  using D = Domain;
  using B = BaseKind;
  static const auto* entries = new std::vector<ZooEntry>{
      {"realnvp", "affine coupling, MLP conditioners (Dinh et al. 2017)",
       D::kVectors, B::kNormal, RealNvpVectors},
      {"realnvp", "affine conv coupling, checkerboard masks (Dinh 2017)",
       D::kImages, B::kNormal, RealNvpImages},
      {"nice", "additive coupling + scaling (Dinh et al. 2014)", D::kVectors,
       B::kLogistic, NiceVectors},
      {"glow", "multi-scale Glow (Kingma & Dhariwal 2018)", D::kImages,
       B::kNormal, Glow},
      {"ica", "linear flow x = W s, logistic base: Infomax ICA (K = 1)",
       D::kVectors, B::kLogistic,
       [](const ModelConfig& c, Rng&) -> FlowPtr {
         return std::make_shared<flows::LinearFlow>(Dim(c));
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
       [](const ModelConfig& c, Rng& r) { return Maf(c, r, false); }},
      {"iaf", "inverse autoregressive flow (Kingma et al. 2016)", D::kVectors,
       B::kNormal,
       [](const ModelConfig& c, Rng& r) { return Maf(c, r, true); }},
      {"nsf_coupling", "rational-quadratic spline coupling (Durkan 2019)",
       D::kVectors, B::kNormal, SplineCoupling},
      {"nsf_ar", "rational-quadratic autoregressive spline (Durkan 2019)",
       D::kVectors, B::kNormal, SplineAr},
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
      {"resflow", "invertible residual blocks, Residual Flows (Chen 2019)",
       D::kVectors, B::kNormal, ResFlow, false, false},
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

absl::StatusOr<std::shared_ptr<flows::FlowModel>> MakeModel(
    const std::string& name, const ModelConfig& config, Rng& rng) {
  if (config.event.rank() != 1 && config.event.rank() != 3)
    return absl::InvalidArgumentError(
        absl::StrCat("zoo: event shape ", config.event.ToString(),
                     " is neither [D] nor [C, H, W]"));
  auto entry = FindFlow(
      name, config.event.rank() == 1 ? Domain::kVectors : Domain::kImages);
  if (!entry.ok()) return entry.status();
  if (config.layers < 1)
    return absl::InvalidArgumentError("zoo: layers must be >= 1");
  if (config.context_dim < 0)
    return absl::InvalidArgumentError("zoo: context_dim must be >= 0");
  if (config.context_dim > 0 && !entry->takes_context) {
    std::vector<std::string> conditional;
    for (const ZooEntry& e : ZooEntries())
      if (e.takes_context && e.domain == entry->domain &&
          (conditional.empty() || conditional.back() != e.name))
        conditional.push_back(e.name);
    return absl::InvalidArgumentError(absl::StrCat(
        "flow '", name,
        "' does not support a context (context_dim = ", config.context_dim,
        "); conditional families here: ", absl::StrJoin(conditional, ", ")));
  }
  auto flow = entry->make(config, rng);
  if (!flow.ok()) return flow.status();
  Shape base_event =
      entry->flat_output ? Shape{config.event.numel()} : config.event;
  std::shared_ptr<flows::Distribution> base;
  if (entry->base == BaseKind::kLogistic)
    base = std::make_shared<flows::Logistic>(base_event);
  else
    base = std::make_shared<flows::StandardNormal>(base_event);
  return std::make_shared<flows::FlowModel>(base, *std::move(flow));
}

}  // namespace flowtape::models

#include "flows/snf.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "flows/coupling.h"
#include "flows/stochastic.h"

namespace flowtape::flows {
namespace {

absl::StatusOr<std::shared_ptr<Flow>> StochasticLayer(const SnfOptions& o,
                                                      EnergyPtr u) {
  if (o.kind == StochasticKind::kMetropolis) {
    FT_ASSIGN_OR_RETURN(
        auto m, MetropolisLayer::Create({u, o.proposal_scale, o.mcmc_steps}));
    return std::shared_ptr<Flow>(m);
  }
  FT_ASSIGN_OR_RETURN(auto l,
                      LangevinLayer::Create({u, o.step_size, o.mcmc_steps,
                                             o.kind == StochasticKind::kMala,
                                             o.learn_step_size}));
  return std::shared_ptr<Flow>(l);
}

}  // namespace

absl::Status SnfOptions::Validate() const {
  if (target == nullptr || target->dim() < 2)
    return absl::InvalidArgumentError(
        "snf: the target energy must be set, with dim >= 2");
  if (blocks < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("snf: blocks must be >= 1, got ", blocks));
  if (hidden.empty() || *std::min_element(hidden.begin(), hidden.end()) < 1)
    return absl::InvalidArgumentError("snf: hidden sizes must be >= 1");
  if (kind == StochasticKind::kMetropolis)
    return MetropolisOptions{target, proposal_scale, mcmc_steps}.Validate();
  if (kind != StochasticKind::kNone)
    return LangevinOptions{target, step_size, mcmc_steps}.Validate();
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Sequential>> MakeSnf(const SnfOptions& o,
                                                    Rng& rng) {
  FT_RETURN_IF_ERROR(o.Validate());
  const int64_t d = o.target->dim();
  const EnergyPtr prior = GaussianEnergy::Standard(d);
  std::vector<std::shared_ptr<Flow>> generative;  // z -> x order
  CouplingOptions c;
  c.event = Shape{d};
  c.hidden = o.hidden;
  c.transform.kind = ElementwiseKind::kAffine;
  for (int64_t k = 1; k <= o.blocks; ++k) {
    for (bool flip : {false, true}) {
      c.flip = flip;
      FT_ASSIGN_OR_RETURN(auto coupling, Coupling::Create(c, rng));
      generative.push_back(coupling);
    }
    if (o.kind == StochasticKind::kNone) continue;
    FT_ASSIGN_OR_RETURN(
        EnergyPtr u, InterpolatedEnergy::Create(
                         prior, o.target, static_cast<double>(k) / o.blocks));
    FT_ASSIGN_OR_RETURN(auto layer, StochasticLayer(o, u));
    generative.push_back(layer);
  }
  std::reverse(generative.begin(), generative.end());
  return std::make_shared<Sequential>(generative);
}

}  // namespace flowtape::flows

#include "flows/flow.h"

#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::flows {
namespace {
thread_local bool initialization_pass = false;
}  // namespace

bool InInitializationPass() { return initialization_pass; }

InitializationPassScope::InitializationPassScope()
    : previous_(initialization_pass) {
  initialization_pass = true;
}
InitializationPassScope::~InitializationPassScope() {
  initialization_pass = previous_;
}

absl::Status InitializeFromData(const Flow& flow, const Tensor& x,
                                const Tensor& context, Rng* rng) {
  NoGradScope no_grad;
  InitializationPassScope pass;
  return flow.Forward(x, context, rng).status;
}

Tensor FlowResult::extra(const std::string& name) const {
  for (const auto& [n, t] : extras)
    if (n == name) return t;
  return Tensor();
}

void FlowResult::AddExtra(const std::string& name, const Tensor& t) {
  for (auto& [n, v] : extras)
    if (n == name) {
      v = v + t;
      return;
    }
  extras.emplace_back(name, t);
}

void FlowResult::Absorb(const FlowResult& step) {
  if (status.ok() && !step.status.ok()) status = step.status;
  for (const auto& [n, t] : step.extras) AddExtra(n, t);
}

}  // namespace flowtape::flows

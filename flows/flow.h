// Flow: an invertible, differentiable map with a tractable log-determinant.
//
// Direction and sign conventions (used by every flow in flowtape):
//   Forward(x) -> (z, logdet): the normalizing direction, data -> base, with
//     logdet = log|det dz/dx| per sample (shape [N]).
//   Inverse(z) -> (x, logdet): the generative direction, base -> data, with
//     logdet = log|det dx/dz| = -(Forward logdet at x).
//   Density: log p(x) = log p0(Forward(x).z) + Forward(x).logdet.
// Inputs are batched: [N, D] vectors or [N, C, H, W] images. `context` is an
// optional conditioning tensor [N, K] passed to conditioner nets (undefined
// Tensor = unconditional).
//
// A flow whose inverse has no closed form (planar, CNFs) computes it
// numerically and reports analytic_inverse() == false; a numeric pass that
// fails reports it in FlowResult::status (never an abort: data can cause it).
// Flows keep no per-call state: what a pass learns (status, regulariser
// terms, statistics) comes back in its FlowResult, and randomness comes in
// through `rng`.
//
// Construction: a flow family T is built by T::Create(options, rng) (or
// its own arguments), which returns InvalidArgument for bad options (each
// options struct has Validate()); constructors are private. The
// combinators Sequential and Invert, which have no options, are
// constructed directly.
//
// dtype: flows are built in float64 and converted with Module::To; a flow
// computes in its parameters' dtype and makes constants in its input's.
//
// Data-dependent initialisation (ActNorm): InitializeFromData(flow, x, c)
// runs one Forward(x, c) with recording off as an *initialisation pass*, in
// which such layers set their parameters from the batch reaching them (once:
// a flag buffer records it). Outside that pass Forward and Inverse only read
// module state, so a shared model may be evaluated from many threads; run
// the pass from one thread before sharing the model.
#ifndef FLOWTAPE_FLOWS_FLOW_H_
#define FLOWTAPE_FLOWS_FLOW_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "autodiff/tensor.h"
#include "nn/module.h"

namespace flowtape::flows {

struct FlowResult {
  FlowResult() = default;
  FlowResult(Tensor v, Tensor ld)
      : value(std::move(v)), logdet(std::move(ld)) {}

  Tensor value;   // z for Forward, x for Inverse
  Tensor logdet;  // [N]
  // Not ok when a numeric inverse or an ODE solve failed; value and logdet
  // are then NaN (a loss built from them is non-finite) and this says why.
  absl::Status status;
  // Per-sample side results of the pass, [N] each (a CNF's regulariser
  // integrals "kinetic" and "jacobian", ...); a composition sums equal names.
  std::vector<std::pair<std::string, Tensor>> extras;

  // The extra named `name`, or an undefined tensor.
  Tensor extra(const std::string& name) const;
  // Adds `t` to the extra `name` (creating it).
  void AddExtra(const std::string& name, const Tensor& t);
  // Folds in the status and extras of a step of a composition.
  void Absorb(const FlowResult& step);
};

class Flow : public nn::Module {
 public:
  // `rng` drives stochastic estimators (Hutchinson traces, Russian-roulette
  // series); a flow that draws no randomness ignores it, one that does fails
  // loudly when it is null. Deterministic flows never need it.
  virtual FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                             Rng* rng = nullptr) const = 0;
  virtual FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                             Rng* rng = nullptr) const = 0;
  // Inverse(z) without the log-determinant, for sampling: value, status and
  // extras, logdet possibly undefined. The default runs Inverse; a flow whose
  // log-det costs work of its own (a CNF integrates it beside the state)
  // overrides it to skip that work, and Sequential chains its steps'.
  virtual FlowResult InverseValue(const Tensor& z,
                                  const Tensor& context = Tensor(),
                                  Rng* rng = nullptr) const {
    return Inverse(z, context, rng);
  }
  virtual bool analytic_inverse() const { return true; }
  virtual std::string name() const = 0;
};

// The initialisation pass above; returns the pass's status.
absl::Status InitializeFromData(const Flow& flow, const Tensor& x,
                                const Tensor& context = Tensor(),
                                Rng* rng = nullptr);
// True on this thread while InitializeFromData runs or an
// InitializationPassScope lives.
bool InInitializationPass();
// Makes every flow evaluation on this thread part of an initialisation pass
// while it lives (for passes through code that wraps the flow, e.g. a
// training loop's loss function). Turn recording off yourself.
class InitializationPassScope {
 public:
  InitializationPassScope();
  ~InitializationPassScope();
  InitializationPassScope(const InitializationPassScope&) = delete;
  InitializationPassScope& operator=(const InitializationPassScope&) = delete;

 private:
  bool previous_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_FLOW_H_

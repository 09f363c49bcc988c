// FlowModel: a normalizing-flow density = base distribution + flow.
//
//   LogProb(x | c) = base.LogProb(z) + logdet,
//                    (z, logdet) = flow.Forward(x, c)
//   Sample(n | c):   z ~ base,  x = flow.InverseValue(z, c).value (Inverse
//                    without its log-det: a CNF skips the density solve)
//   SampleWithLogProb(n | c): x as above and log q(x | c) = log p0(z) - ldj,
//                    ldj = flow.Inverse(z, c).logdet (log|det dx/dz|); this
//                    is differentiable in the flow's (and base's) parameters,
//                    for reverse-KL / variational training.
//   Nll(x | c) = -mean_i LogProb(x_i | c_i)  (a scalar, in nats)
// x is [N, E...] with E the base's event shape; context [N, K] or undefined.
// CheckInput(x, c) says whether x and c have those shapes (InvalidArgument
// "flow_model: x [3, 5] for event [2] (want [N, 2])" or "... context [4, 3]
// for batch 3 (want [3, K])"); the scoring calls may abort (FT_CHECK, here
// or in the flow's layers) on inputs it refuses, so code that scores data it
// did not make (files, user input) calls CheckInput first.
// InitializeFromData returns its status instead of aborting.
// Whether the flow takes a context, and of which K, is the flow's to check.
// dtype: the model computes in dtype(), its base's (Module::To converts
// base and flow together); x and the context are converted to it (with
// their gradients), so float64 data can feed a float32 model, and results
// come back in dtype().
#ifndef FLOWTAPE_FLOWS_FLOW_MODEL_H_
#define FLOWTAPE_FLOWS_FLOW_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "autodiff/tensor.h"
#include "flows/distribution.h"
#include "flows/flow.h"
#include "nn/module.h"

namespace flowtape::flows {

class FlowModel : public nn::Module {
 public:
  // Parameters are named "flow.*" and "base.*".
  FlowModel(std::shared_ptr<Distribution> base, std::shared_ptr<Flow> flow);

  // `rng` feeds stochastic flows (flow.h) and, while a tape records, a
  // base's Monte Carlo estimate (Distribution::LogProbEstimate);
  // deterministic ones ignore it. Null: the flow gets a fresh
  // Rng(kDefaultScoreSeed) per call, so a stochastic flow (Hutchinson or
  // Russian-roulette log-dets, Langevin layers) scores reproducibly, with
  // the same draws every call, and the base its exact or stored-sample
  // density; pass an rng for independent draws (training,
  // importance-weighted estimates).
  static constexpr uint64_t kDefaultScoreSeed = 0x5c0e;
  Tensor LogProb(const Tensor& x, const Tensor& context = Tensor(),
                 Rng* rng = nullptr) const;
  // LogProb with the flow pass it came from (its status and extras).
  struct Density {
    Tensor log_prob;  // [N]
    FlowResult pass;  // Forward(x, c): z, logdet, status, extras
  };
  Density Score(const Tensor& x, const Tensor& context = Tensor(),
                Rng* rng = nullptr) const;
  Tensor Sample(int64_t n, Rng& rng, const Tensor& context = Tensor()) const;
  struct SampleResult {
    Tensor x;         // [n, E...]
    Tensor log_prob;  // [n]
  };
  SampleResult SampleWithLogProb(int64_t n, Rng& rng,
                                 const Tensor& context = Tensor()) const;
  Tensor Nll(const Tensor& x, const Tensor& context = Tensor(),
             Rng* rng = nullptr) const;
  // OK iff x is [N, E...] and the context undefined or [N, K] (see above).
  absl::Status CheckInput(const Tensor& x,
                          const Tensor& context = Tensor()) const;
  // The flow's data-dependent initialisation pass on a batch (flow.h).
  absl::Status InitializeFromData(const Tensor& x,
                                  const Tensor& context = Tensor(),
                                  Rng* rng = nullptr) const;
  DType dtype() const { return base_->dtype(); }

  const std::shared_ptr<Distribution>& base() const { return base_; }
  const std::shared_ptr<Flow>& flow() const { return flow_; }
  std::string name() const { return flow_->name() + " | " + base_->name(); }

 private:
  std::shared_ptr<Flow> flow_;
  std::shared_ptr<Distribution> base_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_FLOW_MODEL_H_

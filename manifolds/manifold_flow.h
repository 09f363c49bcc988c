// ManifoldFlowModel: a base density on a manifold pushed through a chain of
// manifold flows, and FlowMixture, a mixture of such models.
//
// Chain (flow.h direction: Forward goes data -> base):
//   x_0 = y,  (x_k, l_k) = flows[k-1].Forward(x_(k-1)),  x = x_K,
//   log q(y) = log p(x) + sum_k l_k
// which is log q(y) = log p(x) - log R_f(x) for the generative map
// f = (F_K o ... o F_1)^-1 (log R of an inverse is minus log R, and R is
// multiplicative under composition). Sample: x ~ p, then the Inverses in
// reverse order.
// Mixture of any K densities q_j on one manifold (chains of affine flows, of
// recursive sphere flows, ...):
//   log q(y) = logsumexp_j (log w_j + log q_j(y)),  w = softmax(logits),
// logits [K] a trained parameter ("logits", zero at the start: equal
// weights), so q integrates to 1 when every q_j does. Sample: component j_i
// ~ Categorical(w) per draw (flows::MixtureWeights), then counts[j] draws of
// q_j in one call per component, put back in draw order; logits that define
// no weights (a NaN or +inf entry: MixtureWeights) give rows of NaN from
// Sample and InvalidArgument from TrySample.
// Failures: a flow step whose numeric inverse or ODE solve fails reports it
// in its FlowResult::status (flows/flow.h). ManifoldFlowModel stops at the
// first failing step: Score / SamplePass return that status with NaN values
// (log-densities [N], draws [num, n]); TryLogProb / TrySample return it as
// the error; LogProb / Sample keep the NaN values only. FlowMixture's
// TryLogProb / TrySample pass a component's error on.
// Randomness: Score(y, rng) gives the flows `rng` (stochastic flows draw from
// it); null gives them a fresh Rng(kDefaultScoreSeed) per call, as
// flows::FlowModel does. Sample's Inverses draw from its rng.
// Construction: FlowMixture::Create returns InvalidArgument for no
// components, a null one, or components on different manifolds.
// dtype: LogProb computes in y's dtype; Sample returns the model's dtype()
// (the base's draws are cast to it).
#ifndef FLOWTAPE_MANIFOLDS_MANIFOLD_FLOW_H_
#define FLOWTAPE_MANIFOLDS_MANIFOLD_FLOW_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flows/flow.h"
#include "flows/flow_model.h"
#include "manifolds/density.h"

namespace flowtape::manifolds {

class ManifoldFlowModel : public ManifoldDensity {
 public:
  ManifoldFlowModel(std::shared_ptr<ManifoldDensity> base,
                    std::vector<std::shared_ptr<flows::Flow>> flows);
  static constexpr uint64_t kDefaultScoreSeed =
      flows::FlowModel::kDefaultScoreSeed;
  // log q(y) with the chain's pass: status and extras of every Forward.
  struct Density {
    Tensor log_prob;         // [N]; NaN when pass.status is not ok
    flows::FlowResult pass;  // value x_K, logdet sum_k l_k, status, extras
  };
  Density Score(const Tensor& y, Rng* rng = nullptr) const;
  // Draws [num, n] with the Inverses' status and extras (value NaN when the
  // status is not ok; logdet undefined).
  flows::FlowResult SamplePass(int64_t num, Rng& rng) const;

  Tensor LogProb(const Tensor& y) const override;
  Tensor Sample(int64_t num, Rng& rng) const override;
  absl::StatusOr<Tensor> TryLogProb(const Tensor& y) const override;
  absl::StatusOr<Tensor> TrySample(int64_t num, Rng& rng) const override;
  std::string name() const override { return "ManifoldFlowModel"; }
  const std::vector<std::shared_ptr<flows::Flow>>& flows() const {
    return flows_;
  }

 private:
  std::shared_ptr<ManifoldDensity> base_;
  std::vector<std::shared_ptr<flows::Flow>> flows_;
};

class FlowMixture : public ManifoldDensity {
 public:
  // Equal weights at the start; the logits are trained.
  static absl::StatusOr<std::shared_ptr<FlowMixture>> Create(
      std::vector<std::shared_ptr<ManifoldDensity>> parts);
  Tensor LogProb(const Tensor& y) const override;
  Tensor Sample(int64_t num, Rng& rng) const override;
  absl::StatusOr<Tensor> TryLogProb(const Tensor& y) const override;
  absl::StatusOr<Tensor> TrySample(int64_t num, Rng& rng) const override;
  std::string name() const override { return "FlowMixture"; }

 private:
  explicit FlowMixture(std::vector<std::shared_ptr<ManifoldDensity>> parts);
  // log q from the components' log-densities ([N] each).
  Tensor Mix(const std::vector<Tensor>& part_log_probs) const;
  // Sample with the components' draws from `draw` (Sample or TrySample).
  absl::StatusOr<Tensor> SampleWith(
      int64_t num, Rng& rng,
      const std::function<absl::StatusOr<Tensor>(const ManifoldDensity&,
                                                 int64_t, Rng&)>& draw) const;
  std::vector<std::shared_ptr<ManifoldDensity>> parts_;
  Tensor logits_;
};

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_MANIFOLD_FLOW_H_

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
// no weights (a NaN or +inf entry: MixtureWeights) give rows of NaN.
// dtype: LogProb computes in y's dtype; Sample returns the model's dtype()
// (the base's draws are cast to it).
#ifndef FLOWTAPE_MANIFOLDS_MANIFOLD_FLOW_H_
#define FLOWTAPE_MANIFOLDS_MANIFOLD_FLOW_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "flows/flow.h"
#include "manifolds/density.h"

namespace flowtape::manifolds {

class ManifoldFlowModel : public ManifoldDensity {
 public:
  ManifoldFlowModel(std::shared_ptr<ManifoldDensity> base,
                    std::vector<std::shared_ptr<flows::Flow>> flows);
  Tensor LogProb(const Tensor& y) const override;
  Tensor Sample(int64_t num, Rng& rng) const override;
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
  explicit FlowMixture(std::vector<std::shared_ptr<ManifoldDensity>> parts);
  Tensor LogProb(const Tensor& y) const override;
  Tensor Sample(int64_t num, Rng& rng) const override;
  std::string name() const override { return "FlowMixture"; }

 private:
  std::vector<std::shared_ptr<ManifoldDensity>> parts_;
  Tensor logits_;
};

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_MANIFOLD_FLOW_H_

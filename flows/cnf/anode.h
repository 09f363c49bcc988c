// Neural ODE and augmented neural ODE (Dupont, Doucet & Teh 2019) with a
// linear classifier/regressor head.
//
//   h(0) = [x, 0_p]  (the input padded with p = augment_dim zeros)
//   dh/dt = f(t, h)  (TimeMlp on d + p dimensions),   t in [0, T]
//   y = h(T) W + b   (nn::Linear head, out_dim outputs)
// p = 0 is the plain neural ODE (Chen et al. 2018), whose time-T map is a
// homeomorphism of R^d and so cannot separate nested regions; p > 0 lifts
// the flow to R^(d+p) where it can. Gradients by the ODE options (adjoint by
// default). Cost counters of the latest solve: last_stats().
#ifndef FLOWTAPE_FLOWS_CNF_ANODE_H_
#define FLOWTAPE_FLOWS_CNF_ANODE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "autodiff/tensor.h"
#include "flows/cnf/dynamics.h"
#include "ode/solve.h"

namespace flowtape::flows::cnf {

struct NeuralOdeOptions {
  int64_t augment_dim = 0;
  std::vector<int64_t> hidden = {32};
  nn::Activation activation = nn::Activation::kRelu;
  int64_t out_dim = 1;
  double t_end = 1.0;
  ode::OdeOptions ode;
};

class NeuralOdeModel : public nn::Module {
 public:
  NeuralOdeModel(int64_t in_dim, const NeuralOdeOptions& options, Rng& rng);

  // x [N, in_dim] -> h(T) [N, in_dim + augment_dim]; other shapes of x give
  // InvalidArgument, a failed solve its status.
  absl::StatusOr<Tensor> Features(const Tensor& x) const;
  // x [N, in_dim] -> head output [N, out_dim].
  absl::StatusOr<Tensor> operator()(const Tensor& x) const;

  const std::shared_ptr<ode::OdeStats>& last_stats() const { return stats_; }
  const NeuralOdeOptions& options() const { return options_; }

 private:
  int64_t in_dim_;
  NeuralOdeOptions options_;
  std::shared_ptr<TimeMlp> dynamics_;
  std::shared_ptr<nn::Linear> head_;
  mutable std::shared_ptr<ode::OdeStats> stats_;
};

}  // namespace flowtape::flows::cnf

#endif  // FLOWTAPE_FLOWS_CNF_ANODE_H_

// Neural ODE and augmented neural ODE (Dupont, Doucet & Teh 2019) with a
// linear classifier/regressor head.
//
//   h(0) = [x, 0_p]  (the input padded with p = augment_dim zeros)
//   dh/dt = f(t, h)  (TimeMlp on d + p dimensions),   t in [0, T]
//   y = h(T) W + b   (nn::Linear head, out_dim outputs)
// p = 0 is the plain neural ODE (Chen et al. 2018), whose time-T map is a
// homeomorphism of R^d and so cannot separate nested regions; p > 0 lifts
// the flow to R^(d+p) where it can. Gradients by the ODE options (adjoint by
// default). Cost counters, the adjoint's backward solves included, go to
// the caller's sink options.ode.stats (ode/solve.h) when it is set.
// Built in float64 by Create (InvalidArgument from NeuralOdeOptions::
// Validate or a bad in_dim); Module::To converts, and the model then
// computes in the dtype of x.
#ifndef FLOWTAPE_FLOWS_CNF_ANODE_H_
#define FLOWTAPE_FLOWS_CNF_ANODE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "flows/cnf/dynamics.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "ode/solve.h"

namespace flowtape::flows::cnf {

struct NeuralOdeOptions {
  // InvalidArgument naming the field: augment_dim >= 0, hidden widths >= 1,
  // out_dim >= 1, t_end finite and nonzero, ode options valid.
  absl::Status Validate() const;

  int64_t augment_dim = 0;
  std::vector<int64_t> hidden = {32};
  nn::Activation activation = nn::Activation::kRelu;
  int64_t out_dim = 1;
  double t_end = 1.0;
  ode::OdeOptions ode;
};

class NeuralOdeModel : public nn::Module {
 public:
  static absl::StatusOr<std::shared_ptr<NeuralOdeModel>> Create(
      int64_t in_dim, const NeuralOdeOptions& options, Rng& rng);

  // x [N, in_dim] -> h(T) [N, in_dim + augment_dim]; other shapes of x give
  // InvalidArgument, a failed solve its status.
  absl::StatusOr<Tensor> Features(const Tensor& x) const;
  // x [N, in_dim] -> head output [N, out_dim].
  absl::StatusOr<Tensor> operator()(const Tensor& x) const;

  const NeuralOdeOptions& options() const { return options_; }

 private:
  NeuralOdeModel(int64_t in_dim, const NeuralOdeOptions& options,
                 std::shared_ptr<TimeMlp> dynamics, Rng& rng);
  int64_t in_dim_;
  NeuralOdeOptions options_;
  std::shared_ptr<TimeMlp> dynamics_;
  std::shared_ptr<nn::Linear> head_;
};

}  // namespace flowtape::flows::cnf

#endif  // FLOWTAPE_FLOWS_CNF_ANODE_H_

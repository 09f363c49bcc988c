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
// numerically and reports analytic_inverse() == false.
#ifndef FLOWTAPE_FLOWS_FLOW_H_
#define FLOWTAPE_FLOWS_FLOW_H_

#include <string>

#include "nn/module.h"
#include "autodiff/tensor.h"

namespace flowtape::flows {

struct FlowResult {
  Tensor value;   // z for Forward, x for Inverse
  Tensor logdet;  // [N]
};

class Flow : public nn::Module {
 public:
  virtual FlowResult Forward(const Tensor& x,
                             const Tensor& context = Tensor()) const = 0;
  virtual FlowResult Inverse(const Tensor& z,
                             const Tensor& context = Tensor()) const = 0;
  virtual bool analytic_inverse() const { return true; }
  virtual std::string name() const = 0;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_FLOW_H_

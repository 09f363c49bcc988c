// Dynamics nets f(t, z, c) for continuous flows and neural ODEs:
// R x R^d (x R^K) -> R^d on batches z [N, d] (t is one scalar shared by the
// batch; c an optional per-sample context [N, K], K = context_dim()).
//
//   TimeMlp:        f = MLP([z, t, c])  (t, then c, appended as columns)
//   ConcatSquashNet (FFJORD, Grathwohl et al. 2019): layers
//                   h' = (h W + b) * sigmoid(u w_g + b_g) + u w_b,
//                   u = [t, c] (the hyper-net input; u = t without context,
//                   as in FFJORD; with context as in PointFlow's conditional
//                   CNF), activation between layers, none after the last.
//                   Without context u is shared by the batch and the layer
//                   is computed as h (W diag(g)) + (b g + c), g = sigmoid(.),
//                   c = u w_b: the same function, one [N, out] product.
// Weights start Xavier-uniform (nn::Linear); hyper-net weights w_g, b_g, w_b
// are Linear(1 + K, out) layers (w_b without bias). context_dim = 0 builds
// (and draws from the Rng) exactly what the unconditional nets always did.
// Built in float64 by Create (InvalidArgument for dim < 1, a hidden width
// < 1 or context_dim < 0); Module::To converts, and the nets compute in
// the dtype of z (t and c follow it).
//
// Two call forms:
//   f(t, z):             double t, no context (neural ODEs, benchmarks).
//   f(t, z, c):          t a scalar Tensor, which may be a tape node: a CNF
//                        with learnable integration time T evaluates
//                        f(s T, z, c), and dL/dT needs df/dt. c is [N, K] or
//                        undefined (K = 0). t may also be [N, 1], one time
//                        per sample (flow matching regresses the field at
//                        random (t_i, x_i)). The base class's default
//                        accepts neither a context, a t that requires grad
//                        nor per-sample times; TimeMlp and ConcatSquashNet
//                        handle all three (ValueAndTrace: scalar t only).
//
// Closed-form trace (ValueAndTrace): f and tr(df/dz) per sample from the
// net's structure instead of d VJPs. ConcatSquashNet without context has
// one for up to two hidden layers and tanh, sigmoid, softplus or relu: with
// A_l = W_l diag(g_l) the folded weights, a_l the pre-activations and
// S_l = sigma'(a_l) [N, h_l], the row-Jacobian is A_1 D_1 A_2 D_2 A_3
// (D_l = diag of a row of S_l), so
//   no hidden layer:  tr = tr(A_1)
//   one:              tr = S_1 diag(A_2 A_1)
//   two:              tr = rowsum(S_1 .* (S_2 M')),  M = A_2 .* (A_3 A_1)'
// i.e. one [N, h2] x [h2, h1] product per evaluation for any d (d VJPs cost
// d backward passes). Built from ops, so it is differentiable (adjoint,
// second order).
#ifndef FLOWTAPE_FLOWS_CNF_DYNAMICS_H_
#define FLOWTAPE_FLOWS_CNF_DYNAMICS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace flowtape::flows::cnf {

class CnfDynamics : public nn::Module {
 public:
  // z [N, dim()] -> dz/dt [N, dim()].
  virtual Tensor operator()(double t, const Tensor& z) const = 0;
  // t scalar (rank 0 or numel 1) or [N, 1], z [N, dim()], context
  // [N, context_dim()]
  // (undefined iff context_dim() == 0) -> dz/dt [N, dim()].
  virtual Tensor operator()(const Tensor& t, const Tensor& z,
                            const Tensor& context) const;
  virtual int64_t dim() const = 0;
  virtual int64_t context_dim() const { return 0; }
  // Whether ValueAndTrace is available (see the header comment).
  virtual bool has_closed_form_trace() const { return false; }
  // f(t, z, c), with tr(df/dz) [N, 1] in closed form in *trace. Same
  // arguments as the tensor call form; only when has_closed_form_trace().
  virtual Tensor ValueAndTrace(const Tensor& t, const Tensor& z,
                               const Tensor& context, Tensor* trace) const;
};

class TimeMlp : public CnfDynamics {
 public:
  // hidden: hidden layer widths.
  static absl::StatusOr<std::shared_ptr<TimeMlp>> Create(
      int64_t dim, const std::vector<int64_t>& hidden, nn::Activation act,
      Rng& rng, int64_t context_dim = 0);
  Tensor operator()(double t, const Tensor& z) const override;
  Tensor operator()(const Tensor& t, const Tensor& z,
                    const Tensor& context) const override;
  int64_t dim() const override { return dim_; }
  int64_t context_dim() const override { return context_dim_; }

 private:
  TimeMlp(int64_t dim, const std::vector<int64_t>& hidden, nn::Activation act,
          Rng& rng, int64_t context_dim);
  int64_t dim_, context_dim_;
  std::shared_ptr<nn::MLP> mlp_;
};

namespace internal {
class ConcatSquashLinear;  // one layer (dynamics.cc)
}  // namespace internal

class ConcatSquashNet : public CnfDynamics {
 public:
  static absl::StatusOr<std::shared_ptr<ConcatSquashNet>> Create(
      int64_t dim, const std::vector<int64_t>& hidden, nn::Activation act,
      Rng& rng, int64_t context_dim = 0);
  Tensor operator()(double t, const Tensor& z) const override;
  Tensor operator()(const Tensor& t, const Tensor& z,
                    const Tensor& context) const override;
  int64_t dim() const override { return dim_; }
  int64_t context_dim() const override { return context_dim_; }
  bool has_closed_form_trace() const override;
  Tensor ValueAndTrace(const Tensor& t, const Tensor& z, const Tensor& context,
                       Tensor* trace) const override;
  // Sets the output layer's weight, bias and hyper-bias to 0 (in place):
  // f = 0 everywhere, while the gradient of f in those parameters is not
  // (a residual net that starts as no correction).
  void ZeroOutput();

 private:
  ConcatSquashNet(int64_t dim, const std::vector<int64_t>& hidden,
                  nn::Activation act, Rng& rng, int64_t context_dim);
  int64_t dim_, context_dim_;
  nn::Activation act_;
  std::vector<std::shared_ptr<internal::ConcatSquashLinear>> layers_;
};

}  // namespace flowtape::flows::cnf

#endif  // FLOWTAPE_FLOWS_CNF_DYNAMICS_H_

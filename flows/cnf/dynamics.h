// Dynamics nets f(t, z) for continuous flows and neural ODEs: R x R^d -> R^d
// on batches z [N, d] (t is one scalar shared by the batch).
//
//   TimeMlp:        f = MLP([z, t])  (t appended as an input column)
//   ConcatSquashNet (FFJORD, Grathwohl et al. 2019): layers
//                   h' = (h W + b) * sigmoid(t w_g + b_g) + t w_b,
//                   activation between layers, none after the last.
// Weights start Xavier-uniform (nn::Linear); hyper-net weights w_g, b_g, w_b
// are Linear(1, out) layers (w_b without bias).
#ifndef FLOWTAPE_FLOWS_CNF_DYNAMICS_H_
#define FLOWTAPE_FLOWS_CNF_DYNAMICS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "autodiff/nn/layers.h"
#include "autodiff/nn/module.h"
#include "autodiff/tensor.h"

namespace flowtape::flows {

class CnfDynamics : public nn::Module {
 public:
  // z [N, dim()] -> dz/dt [N, dim()].
  virtual Tensor operator()(double t, const Tensor& z) const = 0;
  virtual int64_t dim() const = 0;
};

class TimeMlp : public CnfDynamics {
 public:
  // hidden: hidden layer widths.
  TimeMlp(int64_t dim, const std::vector<int64_t>& hidden, nn::Activation act,
          Rng& rng);
  Tensor operator()(double t, const Tensor& z) const override;
  int64_t dim() const override { return dim_; }

 private:
  int64_t dim_;
  std::shared_ptr<nn::MLP> mlp_;
};

class ConcatSquashLinear : public nn::Module {
 public:
  ConcatSquashLinear(int64_t in, int64_t out, Rng& rng);
  Tensor operator()(double t, const Tensor& h) const;

 private:
  std::shared_ptr<nn::Linear> layer_, gate_, hyper_bias_;
};

class ConcatSquashNet : public CnfDynamics {
 public:
  ConcatSquashNet(int64_t dim, const std::vector<int64_t>& hidden,
                  nn::Activation act, Rng& rng);
  Tensor operator()(double t, const Tensor& z) const override;
  int64_t dim() const override { return dim_; }

 private:
  int64_t dim_;
  nn::Activation act_;
  std::vector<std::shared_ptr<ConcatSquashLinear>> layers_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_CNF_DYNAMICS_H_

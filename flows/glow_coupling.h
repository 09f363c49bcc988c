// Glow's affine coupling for images (Kingma & Dhariwal 2018), conditional.
//
// Split the channels x = [x_a | x_b] (x_a the first C/2). A conv net NN
// (3x3 conv -> ReLU -> 1x1 conv -> ReLU -> 3x3 conv started at zero) maps
// x_a (plus, with a context c [N, K], a per-channel bias Linear(c) added after
// the first conv) to (shift, r) with 2 (C - C/2) channels:
//   scale = sigmoid(r + 2)                      (bounded in (0, 1): stable)
//   Forward  z_a = x_a,  z_b = (x_b + shift) * scale,
//            logdet = sum_{c,h,w} log scale
//   Inverse  x_b = z_b / scale - shift,  logdet = -sum log scale
// Conventions of flow.h: Forward is data -> base, logdet = log|det dz/dx|.
#ifndef FLOWTAPE_FLOWS_GLOW_COUPLING_H_
#define FLOWTAPE_FLOWS_GLOW_COUPLING_H_

#include <cstdint>
#include <memory>
#include <string>

#include "nn/conv.h"
#include "nn/layers.h"
#include "flows/flow.h"

namespace flowtape::flows {

class GlowCoupling : public Flow {
 public:
  GlowCoupling(int64_t channels, int64_t hidden, Rng& rng,
               int64_t context_dim = 0);
  FlowResult Forward(const Tensor& x,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z,
                     const Tensor& context = Tensor(), Rng* rng = nullptr) const override;
  std::string name() const override { return "glow_coupling"; }

 private:
  // (shift, log scale) from the identity half.
  void ShiftLogScale(const Tensor& xa, const Tensor& context, Tensor* shift,
                     Tensor* log_scale) const;
  FlowResult Apply(const Tensor& in, const Tensor& context, bool inverse) const;

  int64_t c_, ca_, cb_, hidden_, context_dim_;
  std::shared_ptr<nn::Conv2d> conv1_, conv2_, conv3_;
  std::shared_ptr<nn::Linear> context_;
};

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_GLOW_COUPLING_H_

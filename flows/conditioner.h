// Conditioner: the network inside a coupling layer, "any Module with a call
// operator", held as the module (for its parameters) plus a function.
//
//   Net net = MakeNet(nn::MLP::Create(sizes, act, rng).value());
//   Tensor h = net(input);
// Also the standard conditioners of the coupling flows:
//   MlpNet(in, hidden, out):  MLP in -> hidden... -> out, last layer zero
//                             (the coupling starts at its theta = 0 map)
//   ConvNet(in_c, hidden, out_c): conv3x3 (in_c -> hidden[0]), act, then a
//                             conv1x1 and act per further hidden width, then
//                             conv3x3 (-> out_c, zero-initialised); "same"
//                             padding, [N, in_c, H, W] -> [N, out_c, H, W].
//                             hidden = {h, h} is RealNVP's and Glow's net.
// and WithContext(x, context), the conditioner input with the context
// appended: [N, D] ++ [N, K] -> [N, D + K] for vectors, and for images the
// context broadcast to K constant channels: [N, C + K, H, W].
// Sizes are checked by the flows that build these (CouplingOptions).
#ifndef FLOWTAPE_FLOWS_CONDITIONER_H_
#define FLOWTAPE_FLOWS_CONDITIONER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "autodiff/tensor.h"
#include "nn/layers.h"
#include "nn/module.h"

namespace flowtape::flows {

struct Net {
  std::shared_ptr<nn::Module> module;  // owns the parameters
  std::function<Tensor(const Tensor&)> fn;
  Tensor operator()(const Tensor& x) const { return fn(x); }
};

template <typename M>
Net MakeNet(std::shared_ptr<M> m) {
  return {m, [raw = m.get()](const Tensor& x) { return (*raw)(x); }};
}

Net MlpNet(int64_t in, const std::vector<int64_t>& hidden, int64_t out,
           Rng& rng, nn::Activation act = nn::Activation::kRelu);
Net ConvNet(int64_t in_channels, const std::vector<int64_t>& hidden,
            int64_t out_channels, Rng& rng,
            nn::Activation act = nn::Activation::kRelu);

// x with the context appended (x returned as is when context is undefined).
Tensor WithContext(const Tensor& x, const Tensor& context);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_CONDITIONER_H_

// Conv2d module: y = conv2d(x, W) + b (autodiff/ops.h Conv2d: stride 1, zero
// padding "same", odd square kernel).
//   x [N, Cin, H, W] -> y [N, Cout, H, W];  W [Cout, Cin, K, K];  b [Cout]
//   y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] x[n, c, i + u - K/2,
//                                                       j + v - K/2]
// Initialisation (init.h, fan_in = Cin K^2, fan_out = Cout K^2): He normal
// (default, for ReLU nets), Xavier uniform, or zeros (Glow starts the last
// conv of each coupling net at zero so the flow begins at the identity).
// Biases start at zero.
// Construction: Create returns InvalidArgument unless the channel counts are
// >= 1 and the kernel size odd and >= 1 (the message names the bad one). It
// is the only way to build one (the constructor is private); code holding
// arguments it has already validated calls Create(...).value().
#ifndef FLOWTAPE_NN_CONV_H_
#define FLOWTAPE_NN_CONV_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "nn/module.h"

namespace flowtape::nn {

enum class ConvInit { kHe, kXavier, kZeros };

class Conv2d : public Module {
 public:
  static absl::StatusOr<std::shared_ptr<Conv2d>> Create(
      int64_t in_channels, int64_t out_channels, int64_t kernel_size, Rng& rng,
      ConvInit init = ConvInit::kHe, bool bias = true);
  Tensor operator()(const Tensor& x) const;
  const Tensor& weight() const { return w_; }
  const Tensor& bias() const { return b_; }  // undefined when bias=false

 private:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
         Rng& rng, ConvInit init, bool bias);
  Tensor w_, b_;
};

}  // namespace flowtape::nn

#endif  // FLOWTAPE_NN_CONV_H_

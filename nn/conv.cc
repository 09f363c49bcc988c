#include "nn/conv.h"

#include "autodiff/check.h"
#include "nn/init.h"
#include "autodiff/ops.h"

namespace flowtape::nn {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
               Rng& rng, ConvInit init, bool bias) {
  FT_CHECK(in_channels > 0 && out_channels > 0 && kernel_size > 0 &&
               kernel_size % 2 == 1,
           "conv2d: want positive channels and an odd kernel size, got in=",
           in_channels, " out=", out_channels, " k=", kernel_size);
  Shape s{out_channels, in_channels, kernel_size, kernel_size};
  switch (init) {
    case ConvInit::kHe:
      w_ = HeNormal(s, rng);
      break;
    case ConvInit::kXavier:
      w_ = XavierUniform(s, rng);
      break;
    case ConvInit::kZeros:
      w_ = Zeros(s);
      break;
  }
  w_ = RegisterParameter("weight", w_);
  if (bias) b_ = RegisterParameter("bias", Zeros({out_channels}));
}

Tensor Conv2d::operator()(const Tensor& x) const {
  FT_CHECK(x.rank() == 4 && x.dim(1) == w_.dim(1), "conv2d module: input ",
           x.shape().ToString(), " vs weight ", w_.shape().ToString(),
           " (want [N, ", w_.dim(1), ", H, W])");
  return ::flowtape::Conv2d(x, w_, b_);
}

}  // namespace flowtape::nn

#include "nn/conv.h"

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "nn/init.h"

namespace flowtape::nn {
namespace {

absl::Status CheckConv(int64_t in_channels, int64_t out_channels,
                       int64_t kernel_size) {
  if (in_channels < 1 || out_channels < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "conv2d: channels must be >= 1, got in_channels = ", in_channels,
        ", out_channels = ", out_channels));
  if (kernel_size < 1 || kernel_size % 2 != 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "conv2d: kernel_size must be odd and >= 1 (\"same\" padding), got ",
        kernel_size));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<Conv2d>> Conv2d::Create(int64_t in_channels,
                                                       int64_t out_channels,
                                                       int64_t kernel_size,
                                                       Rng& rng, ConvInit init,
                                                       bool bias) {
  FT_RETURN_IF_ERROR(CheckConv(in_channels, out_channels, kernel_size));
  return std::shared_ptr<Conv2d>(
      new Conv2d(in_channels, out_channels, kernel_size, rng, init, bias));
}

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
               Rng& rng, ConvInit init, bool bias) {
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

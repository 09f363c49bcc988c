#include "flows/squeeze.h"

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {

absl::StatusOr<std::shared_ptr<Squeeze>> Squeeze::Create(int64_t channels,
                                                         int64_t height,
                                                         int64_t width) {
  if (channels < 1 || height < 2 || width < 2 || height % 2 != 0 ||
      width % 2 != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("squeeze: image ", channels, "x", height, "x", width,
                     " needs channels >= 1 and even height and width"));
  return std::shared_ptr<Squeeze>(new Squeeze(channels, height, width));
}

Squeeze::Squeeze(int64_t channels, int64_t height, int64_t width)
    : c_(channels), h_(height), w_(width) {
  const int64_t h2 = h_ / 2, w2 = w_ / 2, d = c_ * h_ * w_;
  forward_index_.resize(d);
  inverse_index_.resize(d);
  for (int64_t c = 0; c < c_; ++c)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 2; ++j)
        for (int64_t h = 0; h < h2; ++h)
          for (int64_t w = 0; w < w2; ++w) {
            const int64_t out = (((4 * c + 2 * i + j) * h2) + h) * w2 + w;
            const int64_t in = (c * h_ + 2 * h + i) * w_ + 2 * w + j;
            forward_index_[out] = in;
            inverse_index_[in] = out;
          }
}

FlowResult Squeeze::Forward(const Tensor& x, const Tensor&, Rng*) const {
  FT_CHECK(x.rank() == 4 && x.dim(1) == c_ && x.dim(2) == h_ && x.dim(3) == w_,
           "squeeze: input ", x.shape().ToString(), " for image ", c_, "x", h_,
           "x", w_);
  const int64_t n = x.dim(0);
  Tensor z = IndexSelect(Reshape(x, {n, -1}), 1, forward_index_);
  return {Reshape(z, {n, 4 * c_, h_ / 2, w_ / 2}),
          Tensor::Zeros({n}, x.dtype())};
}

FlowResult Squeeze::Inverse(const Tensor& z, const Tensor&, Rng*) const {
  FT_CHECK(z.rank() == 4 && z.dim(1) == 4 * c_ && z.dim(2) == h_ / 2 &&
               z.dim(3) == w_ / 2,
           "squeeze: inverse input ", z.shape().ToString(), " for image ", c_,
           "x", h_, "x", w_);
  const int64_t n = z.dim(0);
  Tensor x = IndexSelect(Reshape(z, {n, -1}), 1, inverse_index_);
  return {Reshape(x, {n, c_, h_, w_}), Tensor::Zeros({n}, z.dtype())};
}

}  // namespace flowtape::flows

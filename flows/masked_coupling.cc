#include "flows/masked_coupling.h"

#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {

Tensor CheckerboardMask(int64_t c, int64_t h, int64_t w, bool flip) {
  Tensor m = Tensor::Empty({c, h, w});
  double* p = m.mutable_data();
  for (int64_t k = 0; k < c; ++k)
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j)
        p[(k * h + i) * w + j] = ((i + j) % 2 == 0) != flip ? 1.0 : 0.0;
  return m;
}

Tensor ChannelMask(int64_t c, int64_t h, int64_t w, bool flip) {
  FT_CHECK(c >= 2, "channel_mask: need at least 2 channels, got ", c);
  Tensor m = Tensor::Empty({c, h, w});
  double* p = m.mutable_data();
  for (int64_t k = 0; k < c; ++k)
    for (int64_t i = 0; i < h * w; ++i)
      p[k * h * w + i] = (k < c / 2) != flip ? 1.0 : 0.0;
  return m;
}

MaskedCoupling::MaskedCoupling(const Tensor& mask, Net net, CouplingKind kind,
                               int64_t context_dim, double scale_bound)
    : mask_(mask.Detach()),
      net_(std::move(net)),
      kind_(kind),
      context_dim_(context_dim),
      scale_bound_(scale_bound) {
  FT_CHECK(mask.rank() == 3, "masked_coupling: mask must be [C, H, W], got ",
           mask.shape().ToString());
  FT_CHECK(net_.module != nullptr, "masked_coupling: null conditioner");
  double ones = 0;
  for (int64_t i = 0; i < mask.numel(); ++i) {
    FT_CHECK(mask[i] == 0.0 || mask[i] == 1.0, "masked_coupling: mask entry ",
             i, " = ", mask[i], " is not 0 or 1");
    ones += mask[i];
  }
  FT_CHECK(ones > 0 && ones < mask.numel(),
           "masked_coupling: mask must keep some and transform some entries");
  inv_mask_ = (1.0 - mask_).Detach();
  RegisterModule("net", net_.module);
}

FlowResult MaskedCoupling::Apply(const Tensor& x, const Tensor& context,
                                 bool inverse) const {
  const int64_t c = mask_.dim(0);
  FT_CHECK(x.rank() == 4 && x.dim(1) == c && x.dim(2) == mask_.dim(1) &&
               x.dim(3) == mask_.dim(2),
           "masked_coupling: input ", x.shape().ToString(), " vs mask ",
           mask_.shape().ToString());
  FT_CHECK(context_dim_ == 0 ? !context.defined()
                             : context.defined() && context.rank() == 2 &&
                                   context.dim(1) == context_dim_,
           "masked_coupling: context ", context.shape().ToString(),
           " vs context_dim ", context_dim_);
  const int64_t n = x.dim(0);
  Tensor h = net_(WithContext(x * mask_, context));
  FT_CHECK(h.rank() == 4 && h.dim(0) == n &&
               h.dim(1) == ParamsPerFeature(kind_) * c &&
               h.dim(2) == x.dim(2) && h.dim(3) == x.dim(3),
           "masked_coupling: conditioner output ", h.shape().ToString(),
           " for input ", x.shape().ToString());
  Tensor t = Narrow(h, 1, 0, c) * inv_mask_;
  if (kind_ == CouplingKind::kAdditive)
    return {inverse ? x - t : x + t, Tensor::Zeros({n})};
  Tensor log_s = LogScale(kind_, Narrow(h, 1, c, c), scale_bound_) * inv_mask_;
  Tensor logdet = Sum(Reshape(log_s, {n, -1}), 1);
  if (inverse) return {(x - t) * Exp(-log_s), -logdet};
  return {x * Exp(log_s) + t, logdet};
}

FlowResult MaskedCoupling::Forward(const Tensor& x,
                                   const Tensor& context, Rng* /*rng*/) const {
  return Apply(x, context, /*inverse=*/false);
}

FlowResult MaskedCoupling::Inverse(const Tensor& z,
                                   const Tensor& context, Rng* /*rng*/) const {
  return Apply(z, context, /*inverse=*/true);
}

std::shared_ptr<MaskedCoupling> ConvCoupling(const Tensor& mask, int64_t hidden,
                                             CouplingKind kind, Rng& rng,
                                             int64_t context_dim) {
  const int64_t c = mask.dim(0);
  Net net = ConvNet(c + context_dim, hidden, ParamsPerFeature(kind) * c, rng);
  return std::make_shared<MaskedCoupling>(mask, std::move(net), kind,
                                          context_dim);
}

}  // namespace flowtape::flows

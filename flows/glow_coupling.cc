#include "flows/glow_coupling.h"

#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {

GlowCoupling::GlowCoupling(int64_t channels, int64_t hidden, Rng& rng,
                           int64_t context_dim)
    : c_(channels),
      ca_(channels / 2),
      cb_(channels - channels / 2),
      hidden_(hidden),
      context_dim_(context_dim) {
  FT_CHECK(channels >= 2 && hidden >= 1, "glow_coupling: channels ", channels,
           " hidden ", hidden);
  conv1_ = RegisterModule("conv1",
                          std::make_shared<nn::Conv2d>(ca_, hidden, 3, rng));
  conv2_ = RegisterModule("conv2",
                          std::make_shared<nn::Conv2d>(hidden, hidden, 1, rng));
  conv3_ = RegisterModule("conv3",
                          std::make_shared<nn::Conv2d>(hidden, 2 * cb_, 3, rng,
                                                       nn::ConvInit::kZeros));
  if (context_dim > 0)
    context_ = RegisterModule(
        "context", std::make_shared<nn::Linear>(context_dim, hidden, rng));
}

void GlowCoupling::ShiftLogScale(const Tensor& xa, const Tensor& context,
                                 Tensor* shift, Tensor* log_scale) const {
  FT_CHECK(context.defined() == (context_dim_ > 0), name(), ": context ",
           context.shape().ToString(), " but context_dim ", context_dim_);
  Tensor h = (*conv1_)(xa);
  if (context_) {
    FT_CHECK(context.rank() == 2 && context.dim(0) == xa.dim(0), name(),
             ": context ", context.shape().ToString(), " for input ",
             xa.shape().ToString());
    h = h + Reshape((*context_)(context), {xa.dim(0), hidden_, 1, 1});
  }
  h = (*conv3_)(Relu((*conv2_)(Relu(h))));
  *shift = Narrow(h, 1, 0, cb_);
  *log_scale = LogSigmoid(Narrow(h, 1, cb_, cb_) + 2.0);
}

FlowResult GlowCoupling::Apply(const Tensor& in, const Tensor& context,
                               bool inverse) const {
  FT_CHECK(in.rank() == 4 && in.dim(1) == c_, name(), ": input ",
           in.shape().ToString(), " for ", c_, " channels");
  Tensor a = Narrow(in, 1, 0, ca_), b = Narrow(in, 1, ca_, cb_);
  Tensor shift, log_scale;
  ShiftLogScale(a, context, &shift, &log_scale);
  Tensor logdet = Sum(Reshape(log_scale, {in.dim(0), -1}), 1);
  if (!inverse) return {Concat({a, (b + shift) * Exp(log_scale)}, 1), logdet};
  return {Concat({a, b * Exp(-log_scale) - shift}, 1), -logdet};
}

FlowResult GlowCoupling::Forward(const Tensor& x, const Tensor& context, Rng* /*rng*/) const {
  return Apply(x, context, /*inverse=*/false);
}

FlowResult GlowCoupling::Inverse(const Tensor& z, const Tensor& context, Rng* /*rng*/) const {
  return Apply(z, context, /*inverse=*/true);
}

}  // namespace flowtape::flows

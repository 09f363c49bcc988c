#include "flows/autoregressive.h"

#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {

MadeAutoregressive::MadeAutoregressive(MadeOptions made, bool inverted,
                                       Rng& rng)
    : inverted_(inverted) {
  made.zero_last = true;
  made_ = RegisterModule("made", std::make_shared<Made>(made, rng));
}

Tensor MadeAutoregressive::Params(const Tensor& v,
                                  const Tensor& context) const {
  Tensor h = (*made_)(v, context);
  return Reshape(h, {v.dim(0), made_->dim(), made_->params_per_dim()});
}

FlowResult MadeAutoregressive::OnePass(const Tensor& v,
                                       const Tensor& context) const {
  return Transform(v, Params(v, context), /*inverse=*/false);
}

FlowResult MadeAutoregressive::Sequential(const Tensor& u,
                                          const Tensor& context) const {
  FT_CHECK(u.rank() == 2 && u.dim(1) == made_->dim(), name(), ": input ",
           u.shape().ToString(), " for dim ", made_->dim());
  // After pass k the dimensions at positions <= k are exact, so after D passes
  // all are, and the last pass's parameters are those of the exact v_<i.
  Tensor v = Tensor::Zeros(u.shape(), u.dtype());
  FlowResult r;
  for (int64_t k = 0; k < made_->dim(); ++k) {
    r = Transform(u, Params(v, context), /*inverse=*/true);
    v = r.value;
  }
  return r;
}

FlowResult MadeAutoregressive::Forward(const Tensor& x,
                                       const Tensor& context, Rng* /*rng*/) const {
  return inverted_ ? Sequential(x, context) : OnePass(x, context);
}

FlowResult MadeAutoregressive::Inverse(const Tensor& z,
                                       const Tensor& context, Rng* /*rng*/) const {
  return inverted_ ? OnePass(z, context) : Sequential(z, context);
}

FlowResult Maf::Transform(const Tensor& in, const Tensor& params,
                          bool inverse) const {
  const int64_t n = in.dim(0), d = in.dim(1);
  Tensor mu = Reshape(Narrow(params, 2, 0, 1), {n, d});
  Tensor alpha = Reshape(Narrow(params, 2, 1, 1), {n, d});
  if (!inverse) return {(in - mu) * Exp(-alpha), -Sum(alpha, 1)};
  return {in * Exp(alpha) + mu, Sum(alpha, 1)};
}

}  // namespace flowtape::flows

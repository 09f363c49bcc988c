#include "flows/glow.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "flows/actnorm.h"
#include "flows/coupling.h"
#include "flows/squeeze.h"

namespace flowtape::flows {

absl::Status GlowOptions::Validate() const {
  const GlowOptions& o = *this;
  if (o.levels < 1 || o.depth < 1 || o.hidden < 1 || o.channels < 1 ||
      o.context_dim < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "glow: need levels, depth, hidden, channels >= 1 and context_dim >= "
        "0, got ",
        o.levels, ", ", o.depth, ", ", o.hidden, ", ", o.channels, ", ",
        o.context_dim));
  if (o.levels > 20)
    return absl::InvalidArgumentError(
        absl::StrCat("glow: levels = ", o.levels, " > 20"));
  const int64_t f = int64_t{1} << o.levels;
  if (o.height < f || o.width < f || o.height % f != 0 || o.width % f != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("glow: image ", o.height, "x", o.width,
                     " needs height and width positive multiples of 2^",
                     o.levels, " = ", f, " (one squeeze per level)"));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Glow>> Glow::Create(const GlowOptions& options,
                                                   Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<Glow>(new Glow(options, rng));
}

// Sub-flows of validated options cannot fail to build.
Glow::Glow(const GlowOptions& o, Rng& rng) : options_(o) {
  int64_t c = o.channels, h = o.height, w = o.width;
  for (int l = 0; l < o.levels; ++l) {
    Level lv;
    const std::string pre = absl::StrCat("level", l, ".");
    lv.squeeze =
        RegisterModule(pre + "squeeze", Squeeze::Create(c, h, w).value());
    c *= 4, h /= 2, w /= 2;
    lv.c = c, lv.h = h, lv.w = w;
    for (int k = 0; k < o.depth; ++k) {
      const std::string s = absl::StrCat(pre, "step", k, ".");
      CouplingOptions co;
      co.event = Shape{c, h, w};
      co.hidden = {o.hidden, o.hidden};
      co.context_dim = o.context_dim;
      co.transform.kind = ElementwiseKind::kAffineSigmoid;
      lv.steps.push_back(
          RegisterModule(s + "actnorm", ActNorm::Create(c).value()));
      lv.steps.push_back(RegisterModule(
          s + "invconv", InvConv1x1::Create(c, rng, o.invconv).value()));
      lv.steps.push_back(
          RegisterModule(s + "coupling", Coupling::Create(co, rng).value()));
    }
    const bool last = l + 1 == o.levels;
    lv.out_channels = last ? c : c - c / 2;
    if (!last)
      lv.prior = RegisterModule(
          pre + "prior", nn::Conv2d::Create(c / 2, 2 * lv.out_channels, 3, rng,
                                            nn::ConvInit::kZeros)
                             .value());
    if (o.context_dim > 0) {
      lv.context = RegisterModule(
          pre + "prior_context",
          nn::Linear::Create(o.context_dim, 2 * lv.out_channels, rng).value());
      for (Tensor p : lv.context->Parameters())
        std::fill_n(p.mutable_data<double>(), p.numel(), 0.0);
    }
    levels_.push_back(std::move(lv));
    if (!last) c = c / 2;
  }
}

void Glow::Prior(const Level& lv, const Tensor& h1, const Tensor& context,
                 int64_t n, Tensor* mu, Tensor* log_sigma) const {
  FT_CHECK(context.defined() == (options_.context_dim > 0), "glow: context ",
           context.shape().ToString(), " but context_dim ",
           options_.context_dim);
  const int64_t co = lv.out_channels;
  Tensor p;
  if (lv.prior) p = (*lv.prior)(h1);
  if (lv.context) {
    Tensor b = Reshape((*lv.context)(context), {n, 2 * co, 1, 1});
    p = p.defined() ? p + b : BroadcastTo(b, {n, 2 * co, lv.h, lv.w});
  }
  if (!p.defined()) return;  // top level, unconditional: N(0, I)
  *mu = Narrow(p, 1, 0, co);
  *log_sigma = Narrow(p, 1, co, co);
}

FlowResult Glow::Forward(const Tensor& x, const Tensor& context,
                         Rng* rng) const {
  const GlowOptions& o = options_;
  FT_CHECK(x.rank() == 4 && x.dim(1) == o.channels && x.dim(2) == o.height &&
               x.dim(3) == o.width,
           "glow: input ", x.shape().ToString(), " for images ", o.channels,
           "x", o.height, "x", o.width);
  const int64_t n = x.dim(0);
  Tensor h = x, logdet = Tensor::Zeros({n}, x.dtype());
  std::vector<Tensor> outs;
  for (const Level& lv : levels_) {
    h = lv.squeeze->Forward(h).value;
    for (const auto& step : lv.steps) {
      FlowResult r = step->Forward(h, context, rng);
      h = r.value;
      logdet = logdet + r.logdet;
    }
    const bool last = &lv == &levels_.back();
    Tensor kept = last ? Tensor() : Narrow(h, 1, 0, lv.c / 2);
    Tensor eps = last ? h : Narrow(h, 1, lv.c / 2, lv.out_channels);
    Tensor mu, log_sigma;
    Prior(lv, kept, context, n, &mu, &log_sigma);
    if (mu.defined()) {
      eps = (eps - mu) * Exp(-log_sigma);
      logdet = logdet - Sum(Reshape(log_sigma, {n, -1}), 1);
    }
    outs.push_back(Reshape(eps, {n, -1}));
    h = kept;
  }
  return {Reshape(Concat(outs, 1), x.shape().dims()), logdet};
}

FlowResult Glow::Inverse(const Tensor& z, const Tensor& context,
                         Rng* rng) const {
  const GlowOptions& o = options_;
  const int64_t d = o.channels * o.height * o.width;
  FT_CHECK((z.rank() == 2 || z.rank() == 4) && z.numel() == z.dim(0) * d,
           "glow: inverse input ", z.shape().ToString(), " for images ",
           o.channels, "x", o.height, "x", o.width);
  const int64_t n = z.dim(0);
  const Tensor flat = Reshape(z, {n, d});
  // Offsets of each level's eps in z.
  std::vector<int64_t> offset;
  int64_t at = 0;
  for (const Level& lv : levels_) {
    offset.push_back(at);
    at += lv.out_channels * lv.h * lv.w;
  }
  Tensor h, logdet = Tensor::Zeros({n}, z.dtype());
  for (int l = static_cast<int>(levels_.size()) - 1; l >= 0; --l) {
    const Level& lv = levels_[l];
    const int64_t size = lv.out_channels * lv.h * lv.w;
    Tensor eps = Reshape(Narrow(flat, 1, offset[l], size),
                         {n, lv.out_channels, lv.h, lv.w});
    Tensor mu, log_sigma;
    Prior(lv, h, context, n, &mu, &log_sigma);
    if (mu.defined()) {
      eps = eps * Exp(log_sigma) + mu;
      logdet = logdet + Sum(Reshape(log_sigma, {n, -1}), 1);
    }
    h = h.defined() ? Concat({h, eps}, 1) : eps;
    for (auto it = lv.steps.rbegin(); it != lv.steps.rend(); ++it) {
      FlowResult r = (*it)->Inverse(h, context, rng);
      h = r.value;
      logdet = logdet + r.logdet;
    }
    h = lv.squeeze->Inverse(h).value;
  }
  return {h, logdet};
}

}  // namespace flowtape::flows

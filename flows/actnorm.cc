#include "flows/actnorm.h"

#include <cmath>

#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {
namespace {

int64_t Pixels(const Tensor& x) {
  return x.rank() == 4 ? x.dim(2) * x.dim(3) : 1;
}

}  // namespace

ActNorm::ActNorm(int64_t channels) : channels_(channels) {
  log_scale_ = RegisterParameter("log_scale", Tensor::Zeros({channels}));
  bias_ = RegisterParameter("bias", Tensor::Zeros({channels}));
  initialized_ = RegisterBuffer("initialized", Tensor::Scalar(0.0));
}

void ActNorm::set_initialized(bool on) const {
  Tensor flag = initialized_;  // shared storage
  flag.mutable_data()[0] = on ? 1.0 : 0.0;
}

Tensor ActNorm::View(const Tensor& p, const Tensor& x) const {
  FT_CHECK((x.rank() == 2 || x.rank() == 4) && x.dim(1) == channels_,
           "actnorm: input ", x.shape().ToString(), " for ", channels_,
           " channels (want [N, C] or [N, C, H, W])");
  return x.rank() == 4 ? Reshape(p, {1, channels_, 1, 1})
                       : Reshape(p, {1, channels_});
}

void ActNorm::Initialize(const Tensor& x) const {
  View(bias_, x);  // shape check
  const int64_t n = x.dim(0), c = channels_, hw = Pixels(x);
  const double* px = x.data();
  Tensor ls = log_scale_, b = bias_;  // shared storage
  double* pls = ls.mutable_data();
  double* pb = b.mutable_data();
  for (int64_t ch = 0; ch < c; ++ch) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < hw; ++j) {
        const double v = px[(i * c + ch) * hw + j];
        sum += v;
        sq += v * v;
      }
    const double m = static_cast<double>(n * hw);
    const double mean = sum / m;
    const double var = std::max(sq / m - mean * mean, 0.0);
    pls[ch] = -std::log(std::sqrt(var) + 1e-6);
    pb[ch] = -mean * std::exp(pls[ch]);
  }
  set_initialized(true);
}

FlowResult ActNorm::Forward(const Tensor& x, const Tensor&, Rng* /*rng*/) const {
  if (!initialized()) {
    bool untouched = true;
    for (int64_t c = 0; c < channels_; ++c)
      untouched = untouched && log_scale_[c] == 0.0 && bias_[c] == 0.0;
    if (untouched) Initialize(x);
    set_initialized(true);
  }
  Tensor logdet =
      BroadcastTo(Sum(log_scale_) * static_cast<double>(Pixels(x)), {x.dim(0)});
  return {x * Exp(View(log_scale_, x)) + View(bias_, x), logdet};
}

FlowResult ActNorm::Inverse(const Tensor& z, const Tensor&, Rng* /*rng*/) const {
  Tensor logdet = BroadcastTo(Sum(log_scale_) * static_cast<double>(-Pixels(z)),
                              {z.dim(0)});
  return {(z - View(bias_, z)) * Exp(-View(log_scale_, z)), logdet};
}

}  // namespace flowtape::flows

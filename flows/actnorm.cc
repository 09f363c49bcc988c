#include "flows/actnorm.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {
namespace {

int64_t Pixels(const Tensor& x) {
  return x.rank() == 4 ? x.dim(2) * x.dim(3) : 1;
}

}  // namespace

absl::StatusOr<std::shared_ptr<ActNorm>> ActNorm::Create(int64_t channels) {
  if (channels < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("actnorm: channels = ", channels, " must be >= 1"));
  return std::shared_ptr<ActNorm>(new ActNorm(channels));
}

ActNorm::ActNorm(int64_t channels) : channels_(channels) {
  log_scale_ = RegisterParameter("log_scale", Tensor::Zeros({channels}));
  bias_ = RegisterParameter("bias", Tensor::Zeros({channels}));
  initialized_ = RegisterBuffer("initialized", Tensor::Scalar(0.0));
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
  const std::vector<double> ls0 = log_scale_.ToVector(), b0 = bias_.ToVector();
  bool untouched = true;
  for (int64_t c = 0; c < channels_; ++c)
    untouched = untouched && ls0[c] == 0.0 && b0[c] == 0.0;
  Tensor ls = log_scale_, b = bias_, flag = initialized_;  // shared storage
  VisitDType(ls.dtype(), [&](auto zero) {
    using T = decltype(zero);
    flag.mutable_data<T>()[0] = 1;
    if (!untouched) return;
    const int64_t n = x.dim(0), c = channels_, hw = Pixels(x);
    const T* px = x.data<T>();
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
      const T log_scale = static_cast<T>(-std::log(std::sqrt(var) + 1e-6));
      ls.mutable_data<T>()[ch] = log_scale;
      b.mutable_data<T>()[ch] = static_cast<T>(-mean * std::exp(log_scale));
    }
  });
}

FlowResult ActNorm::Forward(const Tensor& x, const Tensor&, Rng*) const {
  if (InInitializationPass() && !initialized()) Initialize(x);
  Tensor logdet =
      BroadcastTo(Sum(log_scale_) * static_cast<double>(Pixels(x)), {x.dim(0)});
  return {x * Exp(View(log_scale_, x)) + View(bias_, x), logdet};
}

FlowResult ActNorm::Inverse(const Tensor& z, const Tensor&, Rng*) const {
  Tensor logdet = BroadcastTo(Sum(log_scale_) * static_cast<double>(-Pixels(z)),
                              {z.dim(0)});
  return {(z - View(bias_, z)) * Exp(-View(log_scale_, z)), logdet};
}

}  // namespace flowtape::flows

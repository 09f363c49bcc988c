#include "flows/cnf/mixture_baseline_velocity.h"

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"

namespace flowtape::flows::cnf {

absl::StatusOr<std::shared_ptr<MixtureBaselineVelocity>>
MixtureBaselineVelocity::Create(std::shared_ptr<CnfDynamics> residual,
                                int64_t components, double sigma_min) {
  if (residual == nullptr)
    return absl::InvalidArgumentError("mixture baseline: null residual net");
  if (components < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "mixture baseline: components must be >= 1, got ", components));
  if (!(sigma_min > 0 && sigma_min < 1))
    return absl::InvalidArgumentError(absl::StrCat(
        "mixture baseline: sigma_min must be in (0, 1), got ", sigma_min));
  return std::shared_ptr<MixtureBaselineVelocity>(
      new MixtureBaselineVelocity(std::move(residual), components, sigma_min));
}

MixtureBaselineVelocity::MixtureBaselineVelocity(
    std::shared_ptr<CnfDynamics> residual, int64_t components, double sigma_min)
    : residual_(RegisterModule("residual", std::move(residual))),
      components_(components),
      sigma_min_(sigma_min) {
  const int64_t d = residual_->dim();
  log_weight_ = RegisterBuffer(
      "log_weight", Tensor::Full({components, d},
                                 -std::log(static_cast<double>(components))));
  mean_ = RegisterBuffer("mean", Tensor::Zeros({components, d}));
  variance_ = RegisterBuffer("variance", Tensor::Full({components, d}, 1.0));
  enabled_ = RegisterBuffer("enabled", Tensor::Scalar(0.0));
}

absl::Status MixtureBaselineVelocity::SetMixture(const Tensor& weights,
                                                 const Tensor& means,
                                                 const Tensor& variances) {
  const Shape want{components_, residual_->dim()};
  for (const auto& [name, x] :
       {std::pair<const char*, const Tensor*>{"weights", &weights},
        {"means", &means},
        {"variances", &variances}}) {
    if (!x->defined() || x->shape() != want)
      return absl::InvalidArgumentError(absl::StrCat(
          "mixture baseline: ", name, " must be ", want.ToString(), ", got ",
          x->defined() ? x->shape().ToString() : "undefined"));
    for (int64_t i = 0; i < x->numel(); ++i)
      if (!std::isfinite((*x)[i]) || (x != &means && !((*x)[i] > 0)))
        return absl::InvalidArgumentError(absl::StrCat(
            "mixture baseline: ", name, "[", i, "] = ", (*x)[i],
            x == &means ? " is not finite" : " is not finite and > 0"));
  }
  const int64_t k = components_, d = residual_->dim();
  std::vector<double> lw(k * d);
  for (int64_t c = 0; c < d; ++c) {
    double total = 0;
    for (int64_t j = 0; j < k; ++j) total += weights[j * d + c];
    for (int64_t j = 0; j < k; ++j)
      lw[j * d + c] = std::log(weights[j * d + c] / total);
  }
  VisitDType(log_weight_.dtype(), [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < k * d; ++i) {
      log_weight_.mutable_data<T>()[i] = static_cast<T>(lw[i]);
      mean_.mutable_data<T>()[i] = static_cast<T>(means[i]);
      variance_.mutable_data<T>()[i] = static_cast<T>(variances[i]);
    }
    enabled_.mutable_data<T>()[0] = 1;
  });
  return absl::OkStatus();
}

bool MixtureBaselineVelocity::enabled() const { return enabled_.item() != 0; }

Tensor MixtureBaselineVelocity::Baseline(const Tensor& t_in, const Tensor& z,
                                         Tensor* trace) const {
  const int64_t n = z.dim(0), d = z.dim(1), k = components_;
  if (!enabled()) {
    if (trace != nullptr) *trace = Tensor::Zeros({n, 1}, z.dtype());
    return Tensor::Zeros(z.shape(), z.dtype());
  }
  const double keep = 1 - sigma_min_;
  const Tensor t = t_in.dtype() == z.dtype() ? t_in : Cast(t_in, z.dtype());
  const Tensor st = 1.0 - t * keep;  // s_t
  std::vector<Tensor> logits, ends, slopes, centred;
  for (int64_t j = 0; j < k; ++j) {
    const Tensor m = Narrow(mean_, 0, j, 1), q = Narrow(variance_, 0, j, 1);
    const Tensor v = Square(t) * q + Square(st);  // V_j
    const Tensor dx = z - t * m;
    const Tensor c = t * q / v;  // c_j = t q_j / V_j
    logits.push_back(Reshape(
        Narrow(log_weight_, 0, j, 1) - 0.5 * Log(v) - 0.5 * Square(dx) / v,
        {n, d, 1}));
    ends.push_back(m + c * dx);  // e_j
    slopes.push_back(c);
    centred.push_back(-dx / v);  // l'_j
  }
  const Tensor r = Softmax(Concat(logits, 2), 2);  // [N, d, K]
  Tensor e, de, lbar;
  for (int64_t j = 0; j < k; ++j) {
    const Tensor rj = Reshape(Narrow(r, 2, j, 1), {n, d});
    e = j == 0 ? rj * ends[j] : e + rj * ends[j];
    if (trace == nullptr) continue;
    de = j == 0 ? rj * slopes[j] : de + rj * slopes[j];
    lbar = j == 0 ? rj * centred[j] : lbar + rj * centred[j];
  }
  if (trace != nullptr) {
    for (int64_t j = 0; j < k; ++j)
      de = de +
           Reshape(Narrow(r, 2, j, 1), {n, d}) * ends[j] * (centred[j] - lbar);
    *trace = Sum((de - keep) / st, 1, /*keepdim=*/true);
  }
  return (e - z * keep) / st;
}

Tensor MixtureBaselineVelocity::operator()(double t, const Tensor& z) const {
  if (!enabled()) return (*residual_)(t, z);
  return Baseline(Tensor::Scalar(t, z.dtype()), z, nullptr) +
         (*residual_)(t, z);
}

Tensor MixtureBaselineVelocity::operator()(const Tensor& t, const Tensor& z,
                                           const Tensor& context) const {
  if (!enabled()) return (*residual_)(t, z, context);
  return Baseline(t, z, nullptr) + (*residual_)(t, z, context);
}

Tensor MixtureBaselineVelocity::ValueAndTrace(const Tensor& t, const Tensor& z,
                                              const Tensor& context,
                                              Tensor* trace) const {
  Tensor tr_f, tr_g;
  Tensor f = residual_->ValueAndTrace(t, z, context, &tr_f);
  if (!enabled()) {
    *trace = tr_f;
    return f;
  }
  Tensor g = Baseline(t, z, &tr_g);
  *trace = tr_f + tr_g;
  return f + g;
}

}  // namespace flowtape::flows::cnf

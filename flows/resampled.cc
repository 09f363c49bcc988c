#include "flows/resampled.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"

namespace flowtape::flows {

absl::Status ResampledOptions::Validate() const {
  bool hidden_ok = !hidden.empty();
  for (int64_t h : hidden) hidden_ok &= h >= 1;
  if (dim >= 1 && hidden_ok && truncation >= 1 && normaliser_samples >= 1 &&
      normaliser_samples <= (int64_t{1} << 24))
    return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "resampled_normal: need dim >= 1, hidden sizes >= 1 (at least one), "
      "truncation >= 1, 1 <= normaliser_samples <= 2^24; got dim ",
      dim, ", hidden [", absl::StrJoin(hidden, ", "), "], truncation ",
      truncation, ", normaliser_samples ", normaliser_samples));
}

absl::StatusOr<std::shared_ptr<ResampledNormal>> ResampledNormal::Create(
    const ResampledOptions& options, Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<ResampledNormal>(new ResampledNormal(options, rng));
}

ResampledNormal::ResampledNormal(const ResampledOptions& o, Rng& rng)
    : Distribution(Shape{o.dim}), o_(o) {
  std::vector<int64_t> sizes = {o.dim};
  sizes.insert(sizes.end(), o.hidden.begin(), o.hidden.end());
  sizes.push_back(1);
  net_ = RegisterModule("acceptance",
                        nn::MLP::Create(sizes, nn::Activation::kTanh, rng,
                                        /*zero_last=*/true)
                            .value());
  proposals_ = RegisterBuffer(
      "proposals", Tensor::Randn({o.normaliser_samples, o.dim}, rng));
  log_norm_ = RegisterBuffer("log_norm",
                             Tensor::Scalar(-0.5 * std::log(2 * M_PI) * o.dim));
}

Tensor ResampledNormal::Acceptance(const Tensor& z) const {
  return Reshape(Sigmoid((*net_)(z)), {z.dim(0)});
}

Tensor ResampledNormal::Normaliser() const {
  return Mean(Acceptance(proposals_));
}

void ResampledNormal::Redraw(Rng& rng) {
  const Tensor fresh = Tensor::Randn(proposals_.shape(), rng);
  VisitDType(proposals_.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* p = proposals_.mutable_data<T>();
    const double* f = fresh.data<double>();
    for (int64_t i = 0; i < proposals_.numel(); ++i) p[i] = f[i];
  });
}

Tensor ResampledNormal::LogProbGiven(const Tensor& x, const Tensor& z) const {
  // alpha_T = (1 - Z)^(T - 1).
  const Tensor alpha = Exp(Log1p(-z) * static_cast<double>(o_.truncation - 1));
  const Tensor weight = (1.0 - alpha) * Acceptance(x) / z + alpha;
  return Sum(Square(x), 1) * -0.5 + log_norm_ + Log(weight);
}

Tensor ResampledNormal::LogProb(const Tensor& x) const {
  CheckEvent("resampled_normal.log_prob", x);
  return LogProbGiven(x, Normaliser());
}

Tensor ResampledNormal::LogProbEstimate(const Tensor& x, Rng* rng) const {
  CheckEvent("resampled_normal.log_prob", x);
  if (rng == nullptr || !Tape::Get().grad_enabled())
    return LogProbGiven(x, Normaliser());
  const Tensor fresh =
      Tensor::Randn(proposals_.shape(), *rng, proposals_.dtype());
  return LogProbGiven(x, Mean(Acceptance(fresh)));
}

Tensor ResampledNormal::Sample(int64_t n, Rng& rng) const {
  NoGradScope no_grad;
  const DType dt = log_norm_.dtype();
  const int64_t d = o_.dim;
  std::vector<double> out(n * d);
  std::vector<int64_t> pending(n);
  for (int64_t i = 0; i < n; ++i) pending[i] = i;
  for (int64_t round = 1; !pending.empty(); ++round) {
    const int64_t m = pending.size();
    const Tensor z = Tensor::Randn({m, d}, rng, dt);
    const Tensor a = Acceptance(z);
    std::vector<int64_t> still;
    for (int64_t j = 0; j < m; ++j) {
      if (round < o_.truncation && !(rng.Uniform() < a[j])) {
        still.push_back(pending[j]);
        continue;
      }
      for (int64_t c = 0; c < d; ++c) out[pending[j] * d + c] = z[j * d + c];
    }
    pending.swap(still);
  }
  return Tensor::FromVector({n, d}, out, dt);
}

}  // namespace flowtape::flows

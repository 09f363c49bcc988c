#include "flows/distribution.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"

namespace flowtape::flows {
namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;

// Sums a per-coordinate [N, E...] tensor over the event axes: [N].
Tensor SumEvent(const Tensor& t) { return Sum(Reshape(t, {t.dim(0), -1}), 1); }

absl::Status CheckPositiveFinite(const char* who, const char* what,
                                 const Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (!std::isfinite(t[i]) || t[i] <= 0)
      return absl::InvalidArgumentError(
          absl::StrCat(who, ": ", what, "[", i, "] = ", t[i],
                       " must be positive and finite"));
  }
  return absl::OkStatus();
}

absl::Status CheckFinite(const char* who, const char* what, const Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (!std::isfinite(t[i]))
      return absl::InvalidArgumentError(
          absl::StrCat(who, ": ", what, "[", i, "] = ", t[i], " not finite"));
  }
  return absl::OkStatus();
}

// log of every entry, as a float64 tensor (parameters are built in float64).
Tensor LogOf(const Tensor& t) {
  std::vector<double> v = t.ToVector();
  for (double& e : v) e = std::log(e);
  return Tensor::FromVector(t.shape(), v);
}

// n rows of D NaNs: the samples of a mixture whose logits define no
// weights (MixtureWeights).
Tensor NanRows(int64_t n, int64_t d, DType dtype) {
  return Tensor::Full({n, d}, std::numeric_limits<double>::quiet_NaN(), dtype);
}

// Copies t's values into the float64 parameter p.
void CopyInto(const Tensor& t, Tensor p) {
  const std::vector<double> v = t.ToVector();
  std::copy(v.begin(), v.end(), p.mutable_data<double>());
}

}  // namespace

std::vector<double> MixtureWeights(const Tensor& logits, int64_t offset,
                                   int64_t k) {
  FT_CHECK(k >= 1 && offset >= 0 && offset + k <= logits.numel(),
           "MixtureWeights: components [", offset, ", ", offset + k,
           ") of logits ", logits.shape().ToString());
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t c = 0; c < k; ++c) {
    const double a = logits[offset + c];
    if (std::isnan(a) || a == std::numeric_limits<double>::infinity())
      return {};
    mx = std::max(mx, a);
  }
  if (!std::isfinite(mx)) return {};  // every logit -inf
  std::vector<double> w(k);
  for (int64_t c = 0; c < k; ++c) w[c] = std::exp(logits[offset + c] - mx);
  return w;
}

absl::Status MixtureOptions::Validate() const {
  if (components < 1 || dims < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("mixture: components = ", components, " and dims = ", dims,
                     " must be >= 1"));
  if (!std::isfinite(init_spread) || init_spread < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "mixture: init_spread = ", init_spread, " must be finite and >= 0"));
  return absl::OkStatus();
}

absl::Status Distribution::ValidateEventShape(const char* who,
                                              const Shape& event_shape) {
  bool ok = event_shape.rank() >= 1 && event_shape.rank() <= 3;
  for (int i = 0; ok && i < event_shape.rank(); ++i) ok = event_shape[i] >= 1;
  if (!ok)
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": event shape ", event_shape.ToString(),
                     " needs rank 1..3 and every dimension >= 1"));
  return absl::OkStatus();
}

Distribution::Distribution(const Shape& event_shape)
    : event_shape_(event_shape) {
  FT_CHECK(event_shape.rank() >= 1 && event_shape.rank() <= 3,
           "distribution: event shape must have rank 1..3, got ",
           event_shape.ToString());
}

void Distribution::CheckEvent(const char* who, const Tensor& x) const {
  bool ok = x.rank() == event_shape_.rank() + 1;
  for (int i = 0; ok && i < event_shape_.rank(); ++i)
    ok = x.dim(i + 1) == event_shape_[i];
  FT_CHECK(ok, who, ": x ", x.shape().ToString(), " vs event shape ",
           event_shape_.ToString());
}

Shape Distribution::BatchShape(int64_t n) const {
  std::vector<int64_t> d = event_shape_.dims();
  d.insert(d.begin(), n);
  return Shape(d);
}

// ---- StandardNormal ----
absl::StatusOr<std::shared_ptr<StandardNormal>> StandardNormal::Create(
    const Shape& event_shape) {
  FT_RETURN_IF_ERROR(ValidateEventShape("standard_normal", event_shape));
  return std::shared_ptr<StandardNormal>(new StandardNormal(event_shape));
}

StandardNormal::StandardNormal(const Shape& event_shape)
    : Distribution(event_shape) {
  log_norm_ = RegisterBuffer(
      "log_norm", Tensor::Scalar(-kHalfLog2Pi * event_shape.numel()));
}

Tensor StandardNormal::LogProb(const Tensor& x) const {
  CheckEvent("standard_normal.log_prob", x);
  return SumEvent(Square(x)) * -0.5 + log_norm_;
}

Tensor StandardNormal::Sample(int64_t n, Rng& rng) const {
  return Tensor::Randn(BatchShape(n), rng, log_norm_.dtype());
}

// ---- DiagonalNormal ----
absl::StatusOr<std::shared_ptr<DiagonalNormal>> DiagonalNormal::Create(
    const Shape& event_shape) {
  FT_RETURN_IF_ERROR(ValidateEventShape("diagonal_normal", event_shape));
  return std::shared_ptr<DiagonalNormal>(new DiagonalNormal(event_shape));
}

DiagonalNormal::DiagonalNormal(const Shape& event_shape)
    : Distribution(event_shape) {
  loc_ = RegisterParameter("loc", Tensor::Zeros(event_shape));
  log_scale_ = RegisterParameter("log_scale", Tensor::Zeros(event_shape));
}

absl::StatusOr<std::shared_ptr<DiagonalNormal>> DiagonalNormal::Create(
    const Tensor& loc, const Tensor& scale) {
  if (loc.shape() != scale.shape() || loc.rank() < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "diagonal_normal: loc ", loc.shape().ToString(), " and scale ",
        scale.shape().ToString(), " must have the same event shape"));
  FT_RETURN_IF_ERROR(ValidateEventShape("diagonal_normal", loc.shape()));
  FT_RETURN_IF_ERROR(CheckFinite("diagonal_normal", "loc", loc));
  FT_RETURN_IF_ERROR(CheckPositiveFinite("diagonal_normal", "scale", scale));
  std::shared_ptr<DiagonalNormal> d(new DiagonalNormal(loc.shape()));
  CopyInto(loc, d->loc_);
  CopyInto(LogOf(scale), d->log_scale_);
  return d;
}

Tensor DiagonalNormal::LogProb(const Tensor& x) const {
  CheckEvent("diagonal_normal.log_prob", x);
  Tensor y = (x - loc_) * Exp(-log_scale_);
  return SumEvent(Square(y) * -0.5) - Sum(log_scale_) -
         kHalfLog2Pi * event_numel();
}

Tensor DiagonalNormal::Sample(int64_t n, Rng& rng) const {
  return loc_ +
         Exp(log_scale_) * Tensor::Randn(BatchShape(n), rng, loc_.dtype());
}

// ---- Logistic ----
absl::StatusOr<std::shared_ptr<Logistic>> Logistic::Create(
    const Shape& event_shape, bool learnable) {
  FT_RETURN_IF_ERROR(ValidateEventShape("logistic", event_shape));
  return std::shared_ptr<Logistic>(new Logistic(event_shape, learnable));
}

Logistic::Logistic(const Shape& event_shape, bool learnable)
    : Distribution(event_shape) {
  auto add = [&](const char* name) {
    Tensor t = Tensor::Zeros(event_shape);
    return learnable ? RegisterParameter(name, t) : RegisterBuffer(name, t);
  };
  loc_ = add("loc");
  log_scale_ = add("log_scale");
}

absl::StatusOr<std::shared_ptr<Logistic>> Logistic::Create(const Tensor& loc,
                                                           const Tensor& scale,
                                                           bool learnable) {
  if (loc.shape() != scale.shape() || loc.rank() < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "logistic: loc ", loc.shape().ToString(), " and scale ",
        scale.shape().ToString(), " must have the same event shape"));
  FT_RETURN_IF_ERROR(ValidateEventShape("logistic", loc.shape()));
  FT_RETURN_IF_ERROR(CheckFinite("logistic", "loc", loc));
  FT_RETURN_IF_ERROR(CheckPositiveFinite("logistic", "scale", scale));
  std::shared_ptr<Logistic> d(new Logistic(loc.shape(), learnable));
  CopyInto(loc, d->loc_);
  CopyInto(LogOf(scale), d->log_scale_);
  return d;
}

Tensor Logistic::LogProb(const Tensor& x) const {
  CheckEvent("logistic.log_prob", x);
  Tensor y = (x - loc_) * Exp(-log_scale_);
  return SumEvent(-Softplus(y) - Softplus(-y)) - Sum(log_scale_);
}

Tensor Logistic::Sample(int64_t n, Rng& rng) const {
  const Shape shape = BatchShape(n);
  std::vector<double> u(shape.numel());
  for (double& e : u) {
    double v = rng.Uniform();
    while (v == 0.0) v = rng.Uniform();
    e = std::log(v) - std::log1p(-v);
  }
  return loc_ + Exp(log_scale_) * Tensor::FromVector(shape, u, loc_.dtype());
}

// ---- GaussianMixture ----
GaussianMixture::GaussianMixture(const Tensor& logits, const Tensor& means,
                                 const Tensor& log_scales)
    : Distribution({means.dim(1)}) {
  logits_ = RegisterParameter("logits", logits);
  means_ = RegisterParameter("means", means);
  log_scales_ = RegisterParameter("log_scales", log_scales);
}

absl::StatusOr<std::shared_ptr<GaussianMixture>> GaussianMixture::Create(
    const MixtureOptions& o, Rng& rng) {
  FT_RETURN_IF_ERROR(o.Validate());
  const int64_t k = o.components, d = o.dims;
  return std::shared_ptr<GaussianMixture>(new GaussianMixture(
      Tensor::Zeros({k}), (Tensor::Randn({k, d}, rng) * o.init_spread).Detach(),
      Tensor::Zeros({k, d})));
}

absl::StatusOr<std::shared_ptr<GaussianMixture>> GaussianMixture::Create(
    const Tensor& weights, const Tensor& means, const Tensor& scales) {
  if (weights.rank() != 1 || means.rank() != 2 ||
      means.dim(0) != weights.dim(0) || scales.shape() != means.shape())
    return absl::InvalidArgumentError(absl::StrCat(
        "gaussian_mixture: want weights [K], means [K, D], scales [K, D]; got ",
        weights.shape().ToString(), ", ", means.shape().ToString(), ", ",
        scales.shape().ToString()));
  FT_RETURN_IF_ERROR(
      CheckPositiveFinite("gaussian_mixture", "weights", weights));
  FT_RETURN_IF_ERROR(CheckFinite("gaussian_mixture", "means", means));
  FT_RETURN_IF_ERROR(CheckPositiveFinite("gaussian_mixture", "scales", scales));
  return std::shared_ptr<GaussianMixture>(new GaussianMixture(
      LogOf(weights), Tensor::FromVector(means.shape(), means.ToVector()),
      LogOf(scales)));
}

Tensor GaussianMixture::LogProb(const Tensor& x) const {
  CheckEvent("gaussian_mixture.log_prob", x);
  const int64_t n = x.dim(0), d = x.dim(1);
  // [N, 1, D] against [K, D] -> [N, K, D].
  Tensor y = (Reshape(x, {n, 1, d}) - means_) * Exp(-log_scales_);
  Tensor comp = Sum(Square(y) * -0.5 - log_scales_, 2) - kHalfLog2Pi * d;
  return LogSumExp(comp + LogSoftmax(logits_, 0), 1);
}

Tensor GaussianMixture::Sample(int64_t n, Rng& rng) const {
  const int64_t k = num_components(), d = means_.dim(1);
  const std::vector<double> w = MixtureWeights(logits_, 0, k);
  if (w.empty()) return NanRows(n, d, means_.dtype());
  std::vector<int64_t> idx(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = rng.Categorical(w);
  return IndexSelect(means_, 0, idx) +
         Exp(IndexSelect(log_scales_, 0, idx)) *
             Tensor::Randn({n, d}, rng, means_.dtype());
}

// ---- FullGaussianMixture ----
FullGaussianMixture::FullGaussianMixture(const Tensor& logits,
                                         const Tensor& means,
                                         const Tensor& log_scales,
                                         const Tensor& lower)
    : Distribution({means.dim(1)}) {
  logits_ = RegisterParameter("logits", logits);
  means_ = RegisterParameter("means", means);
  log_scales_ = RegisterParameter("log_scales", log_scales);
  lower_ = RegisterParameter("lower", lower);
  const int64_t d = means.dim(1);
  gather_.assign(d * d, 0);
  for (int64_t i = 0, p = 0; i < d; ++i) {
    gather_[i * d + i] = 1 + i;
    for (int64_t j = 0; j < i; ++j) gather_[i * d + j] = 1 + d + p++;
  }
}

absl::StatusOr<std::shared_ptr<FullGaussianMixture>>
FullGaussianMixture::Create(const MixtureOptions& o, Rng& rng) {
  FT_RETURN_IF_ERROR(o.Validate());
  const int64_t k = o.components, d = o.dims;
  return std::shared_ptr<FullGaussianMixture>(new FullGaussianMixture(
      Tensor::Zeros({k}), (Tensor::Randn({k, d}, rng) * o.init_spread).Detach(),
      Tensor::Zeros({k, d}), Tensor::Zeros({k, d * (d - 1) / 2})));
}

absl::StatusOr<std::shared_ptr<FullGaussianMixture>>
FullGaussianMixture::Create(const Tensor& weights, const Tensor& means,
                            const Tensor& scale_tril) {
  if (weights.rank() != 1 || means.rank() != 2 ||
      means.dim(0) != weights.dim(0) || scale_tril.rank() != 3 ||
      scale_tril.dim(0) != means.dim(0) || scale_tril.dim(1) != means.dim(1) ||
      scale_tril.dim(2) != means.dim(1))
    return absl::InvalidArgumentError(absl::StrCat(
        "full_gaussian_mixture: want weights [K], means [K, D], scale_tril "
        "[K, D, D]; got ",
        weights.shape().ToString(), ", ", means.shape().ToString(), ", ",
        scale_tril.shape().ToString()));
  FT_RETURN_IF_ERROR(
      CheckPositiveFinite("full_gaussian_mixture", "weights", weights));
  FT_RETURN_IF_ERROR(CheckFinite("full_gaussian_mixture", "means", means));
  FT_RETURN_IF_ERROR(
      CheckFinite("full_gaussian_mixture", "scale_tril", scale_tril));
  const int64_t k = means.dim(0), d = means.dim(1);
  std::vector<double> log_s(k * d), lower;
  for (int64_t c = 0; c < k; ++c)
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) {
        const int64_t at = (c * d + i) * d + j;
        const double v = scale_tril[at];
        if (j < i) lower.push_back(v);
        if (j == i && !(v > 0))
          return absl::InvalidArgumentError(
              absl::StrCat("full_gaussian_mixture: scale_tril[", c, ", ", i,
                           ", ", i, "] = ", v, " must be positive"));
        if (j == i) log_s[c * d + i] = std::log(v);
        if (j > i && v != 0)
          return absl::InvalidArgumentError(absl::StrCat(
              "full_gaussian_mixture: scale_tril[", c, ", ", i, ", ", j,
              "] = ", v, " above the diagonal must be 0"));
      }
  return std::shared_ptr<FullGaussianMixture>(new FullGaussianMixture(
      LogOf(weights), Tensor::FromVector(means.shape(), means.ToVector()),
      Tensor::FromVector({k, d}, log_s),
      Tensor::FromVector({k, d * (d - 1) / 2}, lower)));
}

Tensor FullGaussianMixture::ScaleTril() const {
  const int64_t k = num_components(), d = means_.dim(1);
  std::vector<Tensor> pool = {Tensor::Zeros({k, 1}, means_.dtype()),
                              Exp(log_scales_)};
  if (d > 1) pool.push_back(lower_);
  return Reshape(IndexSelect(Concat(pool, 1), 1, gather_), {k, d, d});
}

Tensor FullGaussianMixture::LogProb(const Tensor& x) const {
  CheckEvent("full_gaussian_mixture.log_prob", x);
  const int64_t n = x.dim(0), d = x.dim(1), k = num_components();
  const Tensor l = ScaleTril();
  std::vector<Tensor> comp(k);
  for (int64_t c = 0; c < k; ++c) {
    // y = L_c^-1 (x - mu_c)^T, [D, N].
    Tensor y = TriangularSolve(Reshape(Narrow(l, 0, c, 1), {d, d}),
                               Transpose(x - Narrow(means_, 0, c, 1)),
                               /*upper=*/false);
    comp[c] = Reshape(Sum(Square(y), 0) * -0.5, {n, 1});
  }
  Tensor log_det = Sum(log_scales_, 1) + kHalfLog2Pi * d;  // [K]
  return LogSumExp(Concat(comp, 1) - log_det + LogSoftmax(logits_, 0), 1);
}

Tensor FullGaussianMixture::Sample(int64_t n, Rng& rng) const {
  const int64_t k = num_components(), d = means_.dim(1);
  const std::vector<double> w = MixtureWeights(logits_, 0, k);
  if (w.empty()) return NanRows(n, d, means_.dtype());
  std::vector<int64_t> idx(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = rng.Categorical(w);
  // [n, D, D] x [n, D, 1]: L_k eps per sample.
  Tensor l = IndexSelect(ScaleTril(), 0, idx);
  Tensor eps = Tensor::Randn({n, d, 1}, rng, means_.dtype());
  return IndexSelect(means_, 0, idx) + Reshape(MatMul(l, eps), {n, d});
}

// ---- FactorizedMixture ----
absl::StatusOr<std::shared_ptr<FactorizedMixture>> FactorizedMixture::Create(
    const MixtureOptions& o) {
  FT_RETURN_IF_ERROR(o.Validate());
  return std::shared_ptr<FactorizedMixture>(
      new FactorizedMixture(o.dims, o.components));
}

FactorizedMixture::FactorizedMixture(int64_t d, int64_t k) : Distribution({d}) {
  Tensor means = Tensor::Empty({d, k});
  for (int64_t j = 0; j < d; ++j)
    for (int64_t c = 0; c < k; ++c)
      means.mutable_data<double>()[j * k + c] =
          k == 1 ? 0.0 : -1.0 + 2.0 * c / (k - 1);
  logits_ = RegisterParameter("logits", Tensor::Zeros({d, k}));
  means_ = RegisterParameter("means", means);
  log_scales_ = RegisterParameter("log_scales", Tensor::Zeros({d, k}));
}

Tensor FactorizedMixture::LogProb(const Tensor& x) const {
  CheckEvent("factorized_mixture.log_prob", x);
  const int64_t n = x.dim(0), d = x.dim(1);
  // [N, D, 1] against [D, K] -> [N, D, K].
  Tensor y = (Reshape(x, {n, d, 1}) - means_) * Exp(-log_scales_);
  Tensor comp = Square(y) * -0.5 - log_scales_ - kHalfLog2Pi;
  return Sum(LogSumExp(comp + LogSoftmax(logits_, 1), 2), 1);
}

Tensor FactorizedMixture::Sample(int64_t n, Rng& rng) const {
  const int64_t d = means_.dim(0), k = means_.dim(1);
  // Per coordinate j: component c_ij by weight, then mu + s * eps; gathered
  // from the flattened [D * K] parameters (reparametrised given c).
  std::vector<int64_t> idx(n * d);
  for (int64_t j = 0; j < d; ++j) {
    const std::vector<double> w = MixtureWeights(logits_, j * k, k);
    if (w.empty()) return NanRows(n, d, means_.dtype());
    for (int64_t i = 0; i < n; ++i) idx[i * d + j] = j * k + rng.Categorical(w);
  }
  Tensor mu = Reshape(IndexSelect(Reshape(means_, {d * k}), 0, idx), {n, d});
  Tensor ls =
      Reshape(IndexSelect(Reshape(log_scales_, {d * k}), 0, idx), {n, d});
  return mu + Exp(ls) * Tensor::Randn({n, d}, rng, means_.dtype());
}

}  // namespace flowtape::flows

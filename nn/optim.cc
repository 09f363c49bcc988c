#include "nn/optim.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/status_macros.h"

namespace flowtape::nn {
namespace {

// InvalidArgument "<who>: <field> = <v> must be <what>" unless ok.
absl::Status Require(bool ok, const char* who, const char* field, double v,
                     const char* what) {
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(who, ": ", field, " = ", v, " must be ", what));
}

}  // namespace

NamedTensors Optimizer::NameList(std::vector<Tensor> params) {
  NamedTensors out;
  for (size_t i = 0; i < params.size(); ++i)
    out.emplace_back(absl::StrCat("param", i), std::move(params[i]));
  return out;
}

absl::Status Optimizer::ValidateParameters(const NamedTensors& params) {
  for (const auto& [name, p] : params)
    if (!p.defined() || !p.is_constant() || !p.requires_grad())
      return absl::InvalidArgumentError(
          absl::StrCat("optimizer: '", name,
                       "' is not a parameter (a constant with requires_grad)"));
  return absl::OkStatus();
}

Optimizer::Optimizer(NamedTensors params, double lr)
    : params_(std::move(params)), schedule_(ConstantLr(lr)) {
  for (const auto& [name, p] : params_)
    FT_CHECK(p.defined() && p.is_constant() && p.requires_grad(),
             "optimizer: '", name,
             "' is not a parameter (a constant with "
             "requires_grad)");
  state_.emplace_back("step", step_);
}

void Optimizer::set_schedule(Schedule s) {
  FT_CHECK(s != nullptr, "optimizer: empty schedule");
  schedule_ = std::move(s);
}

std::vector<Tensor> Optimizer::AddSlot(const std::string& slot, bool scalar) {
  // Counters stay float64 (exact); moments take the parameter's dtype.
  std::vector<Tensor> bufs;
  param_slots_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [name, p] = params_[i];
    bufs.push_back(scalar ? Tensor::Scalar(0.0)
                          : Tensor::Zeros(p.shape(), p.dtype()));
    state_.emplace_back(absl::StrCat(name, ".", slot), bufs.back());
    if (!scalar) param_slots_[i].push_back(bufs.back());
  }
  return bufs;
}

NamedTensors Optimizer::NamedState() const { return state_; }

void Optimizer::Step() {
  const int64_t t = step_count();
  const double lr = schedule_(t);
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].second;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    // A module converted (Module::To) after this optimizer was built: its
    // state follows the parameter's dtype.
    if (i < param_slots_.size())
      for (Tensor& slot : param_slots_[i])
        if (slot.dtype() != p.dtype()) slot.storage()->ConvertTo(p.dtype());
    FT_CHECK(g.dtype() == p.dtype(), "optimizer: '", params_[i].first, "' is ",
             DTypeName(p.dtype()), " but its gradient is ",
             DTypeName(g.dtype()));
    Update(i, p, g, lr, t + 1);
  }
  step_.mutable_data<double>()[0] = static_cast<double>(t + 1);
}

void Optimizer::ZeroGrad() {
  for (auto& [name, p] : params_) p.ZeroGrad();
}

// ---- SGD ----
absl::Status SgdOptions::Validate() const {
  FT_RETURN_IF_ERROR(Require(std::isfinite(lr) && lr >= 0, "sgd", "lr", lr,
                             "finite and >= 0"));
  FT_RETURN_IF_ERROR(Require(std::isfinite(momentum) && momentum >= 0, "sgd",
                             "momentum", momentum, "finite and >= 0"));
  FT_RETURN_IF_ERROR(Require(std::isfinite(weight_decay) && weight_decay >= 0,
                             "sgd", "weight_decay", weight_decay,
                             "finite and >= 0"));
  if (nesterov && !(momentum > 0))
    return absl::InvalidArgumentError(
        "sgd: nesterov needs momentum > 0, got momentum = 0");
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Sgd>> Sgd::Create(std::vector<Tensor> params,
                                                 const SgdOptions& options) {
  return CreateNamed(NameList(std::move(params)), options);
}
absl::StatusOr<std::shared_ptr<Sgd>> Sgd::Create(const Module& module,
                                                 const SgdOptions& options) {
  return CreateNamed(module.NamedParameters(), options);
}
absl::StatusOr<std::shared_ptr<Sgd>> Sgd::CreateNamed(
    NamedTensors params, const SgdOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  FT_RETURN_IF_ERROR(ValidateParameters(params));
  return std::shared_ptr<Sgd>(new Sgd(std::move(params), options));
}

Sgd::Sgd(NamedTensors params, const SgdOptions& options)
    : Optimizer(std::move(params), options.lr), o_(options) {
  if (o_.momentum != 0.0) momentum_ = AddSlot("momentum");
}

void Sgd::Update(size_t i, Tensor& param, const Tensor& grad, double lr,
                 int64_t) {
  VisitDType(param.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T wd = o_.weight_decay, mu = o_.momentum, step = lr;
    T* p = param.mutable_data<T>();
    const T* g = grad.data<T>();
    T* b = momentum_.empty() ? nullptr : momentum_[i].mutable_data<T>();
    for (int64_t k = 0, n = param.numel(); k < n; ++k) {
      T d = g[k] + wd * p[k];
      if (b != nullptr) {
        b[k] = mu * b[k] + d;
        d = o_.nesterov ? d + mu * b[k] : b[k];
      }
      p[k] -= step * d;
    }
  });
}

// ---- Adam / AdamW ----
absl::Status AdamOptions::Validate() const {
  FT_RETURN_IF_ERROR(Require(std::isfinite(lr) && lr >= 0, "adam", "lr", lr,
                             "finite and >= 0"));
  FT_RETURN_IF_ERROR(
      Require(beta1 >= 0 && beta1 < 1, "adam", "beta1", beta1, "in [0, 1)"));
  FT_RETURN_IF_ERROR(
      Require(beta2 >= 0 && beta2 < 1, "adam", "beta2", beta2, "in [0, 1)"));
  FT_RETURN_IF_ERROR(Require(std::isfinite(eps) && eps > 0, "adam", "eps", eps,
                             "finite and > 0"));
  FT_RETURN_IF_ERROR(Require(std::isfinite(weight_decay) && weight_decay >= 0,
                             "adam", "weight_decay", weight_decay,
                             "finite and >= 0"));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Adam>> Adam::Create(std::vector<Tensor> params,
                                                   const AdamOptions& options) {
  return CreateNamed(NameList(std::move(params)), options);
}
absl::StatusOr<std::shared_ptr<Adam>> Adam::Create(const Module& module,
                                                   const AdamOptions& options) {
  return CreateNamed(module.NamedParameters(), options);
}
absl::StatusOr<std::shared_ptr<Adam>> Adam::CreateNamed(
    NamedTensors params, const AdamOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  FT_RETURN_IF_ERROR(ValidateParameters(params));
  return std::shared_ptr<Adam>(
      new Adam(std::move(params), options, /*decoupled=*/false));
}

Adam::Adam(NamedTensors params, const AdamOptions& options, bool decoupled)
    : Optimizer(std::move(params), options.lr),
      o_(options),
      decoupled_(decoupled) {
  m_ = AddSlot("exp_avg");
  v_ = AddSlot("exp_avg_sq");
  k_ = AddSlot("step", /*scalar=*/true);
}

void Adam::Update(size_t i, Tensor& param, const Tensor& grad, double lr,
                  int64_t) {
  // Coefficients in double, applied in the parameter's dtype.
  const double k = (k_[i].mutable_data<double>()[0] += 1.0);  // its step
  const double c1 = 1.0 - std::pow(o_.beta1, k);
  const double c2 = 1.0 - std::pow(o_.beta2, k);
  VisitDType(param.dtype(), [&](auto zero) {
    using T = decltype(zero);
    using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
    const T b1 = o_.beta1, b2 = o_.beta2, eps = o_.eps;
    const T l2 = decoupled_ ? 0.0 : o_.weight_decay;
    const T shrink = decoupled_ ? 1.0 - lr * o_.weight_decay : 1.0;
    const T step = lr, tc1 = c1, tc2 = c2;
    const int64_t n = param.numel();
    T *p = param.mutable_data<T>(), *m = m_[i].mutable_data<T>(),
      *v = v_[i].mutable_data<T>();
    const T* g = grad.data<T>();
    // Eigen expressions (vectorised sqrt and division) over chunks small
    // enough that the three passes reuse them from L1.
    constexpr int64_t kChunk = 512;
    for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
      const int64_t len = std::min(kChunk, n - c0);
      Eigen::Map<Array> P(p + c0, len), M(m + c0, len), V(v + c0, len);
      Eigen::Map<const Array> G(g + c0, len);
      M = b1 * M + (T(1) - b1) * (G + l2 * P);
      V = b2 * V + (T(1) - b2) * (G + l2 * P).square();
      P = shrink * P - step * (M / tc1) / ((V / tc2).sqrt() + eps);
    }
  });
}

absl::StatusOr<std::shared_ptr<AdamW>> AdamW::Create(
    std::vector<Tensor> params, const AdamOptions& options) {
  return CreateNamed(NameList(std::move(params)), options);
}
absl::StatusOr<std::shared_ptr<AdamW>> AdamW::Create(
    const Module& module, const AdamOptions& options) {
  return CreateNamed(module.NamedParameters(), options);
}
absl::StatusOr<std::shared_ptr<AdamW>> AdamW::CreateNamed(
    NamedTensors params, const AdamOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  FT_RETURN_IF_ERROR(ValidateParameters(params));
  return std::shared_ptr<AdamW>(new AdamW(std::move(params), options));
}

// ---- clipping ----
double ClipGradNorm(const std::vector<Tensor>& params, double max_norm) {
  FT_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ",
           max_norm);
  // Visits every gradient entry as a double (written back in its dtype).
  auto for_each = [&](auto fn) {
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      VisitDType(g.dtype(), [&](auto zero) {
        using T = decltype(zero);
        T* d = g.mutable_data<T>();
        for (int64_t k = 0; k < g.numel(); ++k) {
          double v = d[k];
          fn(v);
          d[k] = static_cast<T>(v);
        }
      });
    }
  };
  // n = m sqrt(sum (g / m)^2) with m = max |g|: the squares neither overflow
  // (|g| > 1e154) nor underflow (|g| < 1e-154).
  // A NaN entry makes the norm NaN and leaves every gradient as it is, so
  // the caller's finiteness check sees it (std::max would skip it).
  double m = 0, sq = 0;
  bool nan = false;
  for_each([&](double& v) {
    nan = nan || std::isnan(v);
    m = std::max(m, std::fabs(v));
  });
  if (nan) return std::numeric_limits<double>::quiet_NaN();
  if (m > 0 && std::isfinite(m))
    for_each([&](double& v) { sq += (v / m) * (v / m); });
  const double root = std::sqrt(sq), norm = std::isfinite(m) ? m * root : m;
  if (norm > max_norm) {
    // max_norm / n without forming n, which may overflow (returned as inf).
    const double s = std::isfinite(m) ? max_norm / m / root : 0.0;
    for_each([&](double& v) { v *= s; });
  }
  return norm;
}

void ClipGradValue(const std::vector<Tensor>& params, double clip) {
  FT_CHECK(clip >= 0, "clip_grad_value: clip must be >= 0, got ", clip);
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    VisitDType(g.dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* d = g.mutable_data<T>();
      for (int64_t k = 0; k < g.numel(); ++k)
        d[k] = std::clamp(d[k], static_cast<T>(-clip), static_cast<T>(clip));
    });
  }
}

}  // namespace flowtape::nn

#include "nn/optim.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"

namespace flowtape::nn {
namespace {

NamedTensors NameList(std::vector<Tensor> params) {
  NamedTensors out;
  for (size_t i = 0; i < params.size(); ++i)
    out.emplace_back(absl::StrCat("param", i), std::move(params[i]));
  return out;
}

}  // namespace

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
  std::vector<Tensor> bufs;
  for (const auto& [name, p] : params_) {
    bufs.push_back(Tensor::Zeros(scalar ? Shape{} : p.shape()));
    state_.emplace_back(absl::StrCat(name, ".", slot), bufs.back());
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
    Update(i, p.mutable_data(), g.data(), p.numel(), lr, t + 1);
  }
  step_.mutable_data()[0] = static_cast<double>(t + 1);
}

void Optimizer::ZeroGrad() {
  for (auto& [name, p] : params_) p.ZeroGrad();
}

// ---- SGD ----
Sgd::Sgd(std::vector<Tensor> params, const SgdOptions& options)
    : Sgd(NameList(std::move(params)), options) {}
Sgd::Sgd(const Module& module, const SgdOptions& options)
    : Sgd(module.NamedParameters(), options) {}
Sgd::Sgd(NamedTensors params, const SgdOptions& options)
    : Optimizer(std::move(params), options.lr), o_(options) {
  FT_CHECK(!o_.nesterov || o_.momentum > 0, "sgd: nesterov needs momentum > 0");
  if (o_.momentum != 0.0) momentum_ = AddSlot("momentum");
}

void Sgd::Update(size_t i, double* p, const double* g, int64_t n, double lr,
                 int64_t) {
  const double wd = o_.weight_decay, mu = o_.momentum;
  double* b = momentum_.empty() ? nullptr : momentum_[i].mutable_data();
  for (int64_t k = 0; k < n; ++k) {
    double d = g[k] + wd * p[k];
    if (b != nullptr) {
      b[k] = mu * b[k] + d;
      d = o_.nesterov ? d + mu * b[k] : b[k];
    }
    p[k] -= lr * d;
  }
}

// ---- Adam / AdamW ----
Adam::Adam(std::vector<Tensor> params, const AdamOptions& options)
    : Adam(NameList(std::move(params)), options, /*decoupled=*/false) {}
Adam::Adam(const Module& module, const AdamOptions& options)
    : Adam(module.NamedParameters(), options, /*decoupled=*/false) {}
Adam::Adam(NamedTensors params, const AdamOptions& options, bool decoupled)
    : Optimizer(std::move(params), options.lr),
      o_(options),
      decoupled_(decoupled) {
  FT_CHECK(o_.beta1 >= 0 && o_.beta1 < 1 && o_.beta2 >= 0 && o_.beta2 < 1,
           "adam: betas must lie in [0, 1), got ", o_.beta1, ", ", o_.beta2);
  m_ = AddSlot("exp_avg");
  v_ = AddSlot("exp_avg_sq");
  k_ = AddSlot("step", /*scalar=*/true);
}

void Adam::Update(size_t i, double* p, const double* g, int64_t n, double lr,
                  int64_t) {
  const double b1 = o_.beta1, b2 = o_.beta2, eps = o_.eps;
  const double k = (k_[i].mutable_data()[0] += 1.0);  // this parameter's step
  const double c1 = 1.0 - std::pow(b1, k);
  const double c2 = 1.0 - std::pow(b2, k);
  const double l2 = decoupled_ ? 0.0 : o_.weight_decay;
  const double shrink = decoupled_ ? 1.0 - lr * o_.weight_decay : 1.0;
  // Whole-array Eigen expressions: vectorised sqrt and division.
  Eigen::Map<Eigen::ArrayXd> P(p, n), M(m_[i].mutable_data(), n),
      V(v_[i].mutable_data(), n);
  Eigen::Map<const Eigen::ArrayXd> G(g, n);
  M = b1 * M + (1.0 - b1) * (G + l2 * P);
  V = b2 * V + (1.0 - b2) * (G + l2 * P).square();
  P = shrink * P - lr * (M / c1) / ((V / c2).sqrt() + eps);
}

AdamW::AdamW(std::vector<Tensor> params, const AdamOptions& options)
    : Adam(NameList(std::move(params)), options, /*decoupled=*/true) {}
AdamW::AdamW(const Module& module, const AdamOptions& options)
    : Adam(module.NamedParameters(), options, /*decoupled=*/true) {}

// ---- clipping ----
double ClipGradNorm(const std::vector<Tensor>& params, double max_norm) {
  FT_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ",
           max_norm);
  auto for_each = [&](auto fn) {
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      double* d = g.mutable_data();
      for (int64_t k = 0; k < g.numel(); ++k) fn(d[k]);
    }
  };
  // n = m sqrt(sum (g / m)^2) with m = max |g|: the squares neither overflow
  // (|g| > 1e154) nor underflow (|g| < 1e-154).
  double m = 0, sq = 0;
  for_each([&](double& v) { m = std::max(m, std::fabs(v)); });
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
    double* d = g.mutable_data();
    for (int64_t k = 0; k < g.numel(); ++k)
      d[k] = std::clamp(d[k], -clip, clip);
  }
}

}  // namespace flowtape::nn

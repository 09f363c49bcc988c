#include "flows/stochastic.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"

namespace flowtape::flows {
namespace {

void CheckStep(const char* op, const Energy& u, const Tensor& x,
               const Rng* rng) {
  FT_CHECK(rng != nullptr, op, ": a stochastic layer needs an rng");
  FT_CHECK(x.rank() == 2 && x.dim(1) == u.dim(), op, ": x ",
           x.shape().ToString(), ", want [N, ", u.dim(), "] (", u.name(), ")");
}

// Row-wise accept decisions: a[i] = 1 when log U_i < log_alpha[i] (U_i ~
// U[0, 1)); NaN log_alpha rejects. Returns a as [N, 1] in `dtype` and adds
// the decisions to `count`.
Tensor Accept(const Tensor& log_alpha, Rng& rng, DType dtype,
              std::vector<double>& count) {
  const std::vector<double> la = log_alpha.ToVector();
  std::vector<double> a(la.size());
  for (size_t i = 0; i < la.size(); ++i) {
    a[i] = std::log(rng.Uniform()) < la[i] ? 1.0 : 0.0;
    count[i] += a[i];
  }
  return Tensor::FromVector({static_cast<int64_t>(a.size()), 1}, a, dtype);
}

FlowResult Finish(const Tensor& y, const Tensor& ds,
                  const std::vector<double>& accepted, DType dtype) {
  FlowResult r(y, ds);
  r.AddExtra(kMcmcAccepted,
             Tensor::FromVector({static_cast<int64_t>(accepted.size())},
                                accepted, dtype));
  return r;
}

absl::Status CheckCommon(const char* what, const EnergyPtr& energy,
                         double scale, int64_t steps) {
  if (energy == nullptr)
    return absl::InvalidArgumentError(absl::StrCat(what, ": energy not set"));
  if (!std::isfinite(scale) || !(scale > 0))
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": step size / scale must be finite and > 0, got ", scale));
  if (steps < 1)
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": steps must be >= 1, got ", steps));
  return absl::OkStatus();
}

}  // namespace

absl::Status LangevinOptions::Validate() const {
  return CheckCommon("langevin", energy, step_size, steps);
}

absl::StatusOr<std::shared_ptr<LangevinLayer>> LangevinLayer::Create(
    const LangevinOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<LangevinLayer>(new LangevinLayer(options));
}

LangevinLayer::LangevinLayer(const LangevinOptions& o) : o_(o) {
  if (o.learn_step_size)
    log_step_size_ = RegisterParameter("log_step_size",
                                       Tensor::Scalar(std::log(o.step_size)));
}

Tensor LangevinLayer::StepSize(DType dtype) const {
  if (!o_.learn_step_size) return Tensor::Scalar(o_.step_size, dtype);
  return Exp(log_step_size_);
}

double LangevinLayer::step_size() const {
  return o_.learn_step_size ? std::exp(log_step_size_.item()) : o_.step_size;
}

std::string LangevinLayer::name() const {
  return o_.metropolis_adjusted ? "mala" : "langevin";
}

FlowResult LangevinLayer::Step(const char* op, const Tensor& x0,
                               Rng* rng) const {
  const Energy& u = *o_.energy;
  CheckStep(op, u, x0, rng);
  const int64_t n = x0.dim(0);
  const Tensor eps = StepSize(x0.dtype());
  const Tensor s =
      o_.learn_step_size
          ? Sqrt(eps * 2.0)
          : Tensor::Scalar(std::sqrt(2 * o_.step_size), x0.dtype());
  std::vector<double> accepted(n, 0.0);
  Tensor x = x0;
  auto [ux, gx] = u.ValueAndGradient(x);
  const Tensor ux0 = ux;
  Tensor ds = Tensor::Zeros({n}, x.dtype());
  for (int64_t k = 0; k < o_.steps; ++k) {
    Tensor xi = Tensor::Randn(x.shape(), *rng, x.dtype());
    Tensor y = x - eps * gx + s * xi;
    auto [uy, gy] = u.ValueAndGradient(y);
    Tensor xi_back = (x - y + eps * gy) / s;
    Tensor ds_ula = 0.5 * (Sum(Square(xi), 1) - Sum(Square(xi_back), 1));
    if (!o_.metropolis_adjusted) {
      ds = ds + ds_ula;
      for (double& c : accepted) c += 1.0;
      x = y, ux = uy, gx = gy;
      continue;
    }
    // MALA: log alpha = u(x) - u(y) + log q(x | y) - log q(y | x).
    Tensor a = Accept(ux - uy + ds_ula, *rng, x.dtype(), accepted);
    x = Where(a, y, x);
    gx = Where(a, gy, gx);
    ux = Where(Reshape(a, {-1}), uy, ux);
  }
  if (o_.metropolis_adjusted) ds = ux - ux0;  // detailed balance
  return Finish(x, ds, accepted, x.dtype());
}

FlowResult LangevinLayer::Forward(const Tensor& x, const Tensor&,
                                  Rng* rng) const {
  return Step("langevin.forward", x, rng);
}

FlowResult LangevinLayer::Inverse(const Tensor& z, const Tensor&,
                                  Rng* rng) const {
  return Step("langevin.inverse", z, rng);
}

absl::Status MetropolisOptions::Validate() const {
  return CheckCommon("metropolis", energy, proposal_scale, steps);
}

absl::StatusOr<std::shared_ptr<MetropolisLayer>> MetropolisLayer::Create(
    const MetropolisOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<MetropolisLayer>(new MetropolisLayer(options));
}

FlowResult MetropolisLayer::Step(const char* op, const Tensor& x0,
                                 Rng* rng) const {
  const Energy& u = *o_.energy;
  CheckStep(op, u, x0, rng);
  const int64_t n = x0.dim(0);
  std::vector<double> accepted(n, 0.0);
  Tensor x = x0;
  Tensor ux = u.Value(x);
  const Tensor ux0 = ux;
  for (int64_t k = 0; k < o_.steps; ++k) {
    Tensor y =
        x + o_.proposal_scale * Tensor::Randn(x.shape(), *rng, x.dtype());
    Tensor uy = u.Value(y);
    Tensor a = Accept(ux - uy, *rng, x.dtype(), accepted);
    x = Where(a, y, x);
    ux = Where(Reshape(a, {-1}), uy, ux);
  }
  return Finish(x, ux - ux0, accepted, x.dtype());
}

FlowResult MetropolisLayer::Forward(const Tensor& x, const Tensor&,
                                    Rng* rng) const {
  return Step("metropolis.forward", x, rng);
}

FlowResult MetropolisLayer::Inverse(const Tensor& z, const Tensor&,
                                    Rng* rng) const {
  return Step("metropolis.inverse", z, rng);
}

}  // namespace flowtape::flows

#include "flows/planar.h"

#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::flows {
namespace {

void CheckInput(const char* who, const Tensor& x, int64_t d) {
  FT_CHECK(x.rank() == 2 && x.dim(1) == d, who, ": input ",
           x.shape().ToString(), " vs dimension ", d);
}

// Root of a + c tanh(a + b) = y with c >= -1 (safeguarded Newton).
double SolveAlongW(double y, double c, double b) {
  double lo = y - std::fabs(c), hi = y + std::fabs(c);
  double a = y - c * std::tanh(y + b);
  if (a < lo || a > hi) a = 0.5 * (lo + hi);
  for (int it = 0; it < 200; ++it) {
    const double t = std::tanh(a + b);
    const double g = a + c * t - y;
    if (g == 0) break;
    (g > 0 ? hi : lo) = a;
    const double gp = 1 + c * (1 - t * t);
    double next = a - g / gp;
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
    if (std::fabs(next - a) <= 1e-16 * (1 + std::fabs(a))) {
      a = next;
      break;
    }
    a = next;
  }
  return a;
}

}  // namespace

Planar::Planar(int64_t d, Rng& rng) {
  const double s = 1.0 / std::sqrt(static_cast<double>(d));
  w_ = RegisterParameter("w", (Tensor::Randn({d}, rng) * s).Detach());
  u_ = RegisterParameter("u", (Tensor::Randn({d}, rng) * s).Detach());
  b_ = RegisterParameter("b", Tensor::Zeros({1}));
}

absl::StatusOr<std::shared_ptr<Planar>> Planar::Create(const Tensor& w,
                                                       const Tensor& u,
                                                       double b) {
  if (w.rank() != 1 || u.shape() != w.shape())
    return absl::InvalidArgumentError(
        absl::StrCat("planar: w ", w.shape().ToString(), " and u ",
                     u.shape().ToString(), " must both be [D]"));
  double wu = 0, ww = 0;
  for (int64_t i = 0; i < w.numel(); ++i) {
    wu += w[i] * u[i];
    ww += w[i] * w[i];
  }
  if (!std::isfinite(wu) || !std::isfinite(ww) || !std::isfinite(b))
    return absl::InvalidArgumentError("planar: w, u and b must be finite");
  if (ww == 0) return absl::InvalidArgumentError("planar: w must be nonzero");
  if (!(wu > -1))
    return absl::InvalidArgumentError(absl::StrCat(
        "planar: w.u = ", wu,
        " must be > -1 for the map to be invertible (Rezende & Mohamed 2015)"));
  Rng rng(0);
  auto f = std::make_shared<Planar>(w.numel(), rng);
  // Free u whose reparametrisation is the given u: w.u_free =
  // softplus^-1(wu+1).
  const double y = wu + 1, s = y + std::log(-std::expm1(-y));
  for (int64_t i = 0; i < w.numel(); ++i) {
    f->w_.mutable_data()[i] = w[i];
    f->u_.mutable_data()[i] = u[i] + (s - wu) * w[i] / ww;
  }
  f->b_.mutable_data()[0] = b;
  return f;
}

Tensor Planar::u_hat() const {
  Tensor wu = Sum(w_ * u_);
  return u_ + (Softplus(wu) - 1.0 - wu) / Sum(Square(w_)) * w_;
}

FlowResult Planar::Inverse(const Tensor& z, const Tensor&, Rng* /*rng*/) const {
  const int64_t d = w_.numel();
  CheckInput("planar.inverse", z, d);
  Tensor uh = u_hat();
  Tensor t = Tanh(MatMul(z, Reshape(w_, {d, 1})) + b_);  // [N, 1]
  Tensor x = z + t * uh;
  Tensor logdet = Log1p((1.0 - Square(t)) * Sum(w_ * uh));
  return {x, Reshape(logdet, {z.dim(0)})};
}

FlowResult Planar::Forward(const Tensor& x, const Tensor&, Rng* /*rng*/) const {
  const int64_t n = x.dim(0), d = w_.numel();
  CheckInput("planar.forward", x, d);
  Tensor uh = u_hat();
  Tensor wuh = Sum(w_ * uh);
  Tensor wx = MatMul(x, Reshape(w_, {d, 1}));  // [N, 1]
  // Numeric root per sample, on values.
  Tensor a0 = Tensor::Empty({n, 1});
  for (int64_t i = 0; i < n; ++i)
    a0.mutable_data()[i] = SolveAlongW(wx[i], wuh.item(), b_[0]);
  // Two recorded Newton steps: exact first and second derivatives of the root.
  auto newton = [&](const Tensor& a) {
    Tensor t = Tanh(a + b_);
    return a - (a + wuh * t - wx) / (1.0 + wuh * (1.0 - Square(t)));
  };
  Tensor a = newton(newton(a0));
  Tensor t = Tanh(a + b_);
  Tensor z = x - t * uh;
  Tensor logdet = -Log1p((1.0 - Square(t)) * wuh);
  return {z, Reshape(logdet, {n})};
}

}  // namespace flowtape::flows

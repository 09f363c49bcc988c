#include "flows/planar.h"

#include <cmath>
#include <limits>
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

absl::StatusOr<std::shared_ptr<Planar>> Planar::Create(int64_t d, Rng& rng) {
  if (d < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("planar: dimension d = ", d, " must be >= 1"));
  return std::shared_ptr<Planar>(new Planar(d, rng));
}

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
  std::shared_ptr<Planar> f(new Planar(w.numel(), rng));
  // Free u whose reparametrisation is the given u: w.u_free =
  // softplus^-1(wu+1).
  const double y = wu + 1, s = y + std::log(-std::expm1(-y));
  for (int64_t i = 0; i < w.numel(); ++i) {
    f->w_.mutable_data<double>()[i] = w[i];
    f->u_.mutable_data<double>()[i] = u[i] + (s - wu) * w[i] / ww;
  }
  f->b_.mutable_data<double>()[0] = b;
  return f;
}

Tensor Planar::u_hat() const {
  Tensor wu = Sum(w_ * u_);
  return u_ + (Softplus(wu) - 1.0 - wu) / Sum(Square(w_)) * w_;
}

FlowResult Planar::Inverse(const Tensor& z, const Tensor&, Rng*) const {
  const int64_t d = w_.numel();
  CheckInput("planar.inverse", z, d);
  Tensor uh = u_hat();
  Tensor t = Tanh(MatMul(z, Reshape(w_, {d, 1})) + b_);  // [N, 1]
  Tensor x = z + t * uh;
  Tensor logdet = Log1p((1.0 - Square(t)) * Sum(w_ * uh));
  return {x, Reshape(logdet, {z.dim(0)})};
}

FlowResult Planar::Forward(const Tensor& x, const Tensor&, Rng*) const {
  const int64_t n = x.dim(0), d = w_.numel();
  CheckInput("planar.forward", x, d);
  Tensor uh = u_hat();
  Tensor wuh = Sum(w_ * uh);
  Tensor wx = MatMul(x, Reshape(w_, {d, 1}));  // [N, 1]
  // Numeric root per sample, on values (in double).
  std::vector<double> roots(n);
  const double c = wuh.item(), b = b_[0];
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(wx[i]) || !std::isfinite(c) || !std::isfinite(b)) {
      const double nan = std::numeric_limits<double>::quiet_NaN();
      FlowResult r{Tensor::Full(x.shape(), nan, x.dtype()),
                   Tensor::Full({n}, nan, x.dtype())};
      r.status = absl::InvalidArgumentError(absl::StrCat(
          "planar.forward: w.x = ", wx[i], " (sample ", i, "), w.u^ = ", c,
          ", b = ", b, ": the root along w needs finite values"));
      return r;
    }
    roots[i] = SolveAlongW(wx[i], c, b);
  }
  Tensor a0 = Tensor::FromVector({n, 1}, roots, x.dtype());
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

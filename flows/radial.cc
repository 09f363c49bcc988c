#include "flows/radial.h"

#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {
namespace {
double SoftplusInverse(double y) { return y + std::log(-std::expm1(-y)); }

void CheckInput(const char* who, const Tensor& x, int64_t d) {
  FT_CHECK(x.rank() == 2 && x.dim(1) == d, who, ": input ",
           x.shape().ToString(), " vs dimension ", d);
}

// |v| per row, [N, 1].
Tensor RowNorm(const Tensor& v) { return Sqrt(Sum(Square(v), 1, true)); }
}  // namespace

absl::StatusOr<std::shared_ptr<Radial>> Radial::Create(int64_t d, Rng& rng) {
  if (d < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("radial: dimension d = ", d, " must be >= 1"));
  return std::shared_ptr<Radial>(new Radial(d, rng));
}

Radial::Radial(int64_t d, Rng& rng) {
  z0_ = RegisterParameter("z0", Tensor::Randn({d}, rng));
  alpha_raw_ =
      RegisterParameter("alpha", Tensor::Full({1}, SoftplusInverse(1.0)));
  beta_raw_ =
      RegisterParameter("beta", Tensor::Full({1}, SoftplusInverse(1.0)));
}

absl::StatusOr<std::shared_ptr<Radial>> Radial::Create(const Tensor& z0,
                                                       double alpha,
                                                       double beta) {
  if (z0.rank() != 1)
    return absl::InvalidArgumentError(
        absl::StrCat("radial: z0 must be [D], got ", z0.shape().ToString()));
  for (int64_t i = 0; i < z0.numel(); ++i)
    if (!std::isfinite(z0[i]))
      return absl::InvalidArgumentError(
          absl::StrCat("radial: z0[", i, "] = ", z0[i], " not finite"));
  if (!(alpha > 0) || !std::isfinite(alpha))
    return absl::InvalidArgumentError(
        absl::StrCat("radial: alpha = ", alpha, " must be positive"));
  if (!(beta > -alpha) || !std::isfinite(beta))
    return absl::InvalidArgumentError(
        absl::StrCat("radial: beta = ", beta, " must be > -alpha = ", -alpha,
                     " for the map to be invertible"));
  Rng rng(0);
  std::shared_ptr<Radial> f(new Radial(z0.numel(), rng));
  const std::vector<double> c = z0.ToVector();
  std::copy(c.begin(), c.end(), f->z0_.mutable_data<double>());
  f->alpha_raw_.mutable_data<double>()[0] = SoftplusInverse(alpha);
  f->beta_raw_.mutable_data<double>()[0] = SoftplusInverse(beta + alpha);
  return f;
}

Tensor Radial::Alpha() const { return Softplus(alpha_raw_); }
Tensor Radial::Beta() const { return Softplus(beta_raw_) - Alpha(); }

FlowResult Radial::Inverse(const Tensor& z, const Tensor&, Rng*) const {
  const int64_t d = z0_.numel();
  CheckInput("radial.inverse", z, d);
  Tensor alpha = Alpha(), beta = Beta();
  Tensor diff = z - z0_;
  Tensor h = 1.0 / (alpha + RowNorm(diff));  // [N, 1]
  Tensor x = z + beta * h * diff;
  Tensor logdet = (d - 1.0) * Log1p(beta * h) + Log1p(beta * alpha * Square(h));
  return {x, Reshape(logdet, {z.dim(0)})};
}

FlowResult Radial::Forward(const Tensor& x, const Tensor&, Rng*) const {
  const int64_t d = z0_.numel();
  CheckInput("radial.forward", x, d);
  Tensor alpha = Alpha(), beta = Beta();
  Tensor diff = x - z0_;
  Tensor big_r = RowNorm(diff);  // R = |x - z0|
  // Positive root of r^2 + p r - alpha R = 0, p = alpha + beta - R.
  Tensor p = alpha + beta - big_r;
  Tensor q = Sqrt(Square(p) + 4.0 * alpha * big_r);
  Tensor cond = Step(p);  // p > 0: 2 alpha R / (p + q) avoids cancellation
  Tensor r = Where(cond, 2.0 * alpha * big_r / (p + q), 0.5 * (q - p));
  Tensor h = 1.0 / (alpha + r);
  Tensor z = z0_ + diff / (1.0 + beta * h);
  Tensor logdet =
      -((d - 1.0) * Log1p(beta * h) + Log1p(beta * alpha * Square(h)));
  return {z, Reshape(logdet, {x.dim(0)})};
}

}  // namespace flowtape::flows

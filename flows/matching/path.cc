#include "flows/matching/path.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::flows::matching {
namespace {

// Per-row coefficients [N, 1] in `dtype` from t [N, 1].
Tensor Column(const Tensor& t, DType dtype,
              double (*pick)(const AffinePath::Coefficients&),
              const AffinePath& path) {
  std::vector<double> v(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = pick(path.At(t[i]));
  return Tensor::FromVector({t.numel(), 1}, v, dtype);
}

void CheckArgs(const char* op, const Tensor& x0, const Tensor& x1,
               const Tensor& t) {
  FT_CHECK(x0.rank() == 2 && x0.shape() == x1.shape() && t.rank() == 2 &&
               t.dim(0) == x0.dim(0) && t.dim(1) == 1,
           op, ": x0 ", x0.shape().ToString(), ", x1 ", x1.shape().ToString(),
           ", t ", t.shape().ToString(), " (expected [N, d], [N, d], [N, 1])");
}

}  // namespace

absl::StatusOr<std::shared_ptr<AffinePath>> AffinePath::OptimalTransport(
    double sigma_min) {
  if (!(sigma_min >= 0 && sigma_min < 1))
    return absl::InvalidArgumentError(
        absl::StrCat("ot path: sigma_min must be in [0, 1), got ", sigma_min));
  return std::shared_ptr<AffinePath>(
      new AffinePath(Schedule::kOptimalTransport, 0, 0, sigma_min));
}

absl::StatusOr<std::shared_ptr<AffinePath>> AffinePath::VariancePreserving(
    double beta_min, double beta_max, double sigma_min) {
  if (!(beta_min > 0 && beta_max >= beta_min && std::isfinite(beta_max)))
    return absl::InvalidArgumentError(
        absl::StrCat("vp path: need 0 < beta_min <= beta_max finite, got ",
                     beta_min, ", ", beta_max));
  if (!(sigma_min > 0 && sigma_min < 1))
    return absl::InvalidArgumentError(
        absl::StrCat("vp path: sigma_min must be in (0, 1), got ", sigma_min));
  return std::shared_ptr<AffinePath>(new AffinePath(
      Schedule::kVariancePreserving, beta_min, beta_max, sigma_min));
}

std::string AffinePath::name() const {
  return schedule_ == Schedule::kOptimalTransport ? "ot" : "vp";
}

AffinePath::Coefficients AffinePath::At(double t) const {
  if (schedule_ == Schedule::kOptimalTransport)
    return {t, 1 - (1 - sigma_min_) * t, 1.0, -(1 - sigma_min_)};
  const double s = 1 - t;
  const double big_t = beta_min_ * s + 0.5 * (beta_max_ - beta_min_) * s * s;
  const double beta = beta_min_ + (beta_max_ - beta_min_) * s;
  const double alpha = std::exp(-0.5 * big_t);
  const double dalpha = 0.5 * alpha * beta;
  const double keep = 1 - sigma_min_ * sigma_min_;
  // 1 - keep alpha^2 = (1 - e^-T) + sigma_min^2 alpha^2, without cancelling.
  const double sigma =
      std::sqrt(-std::expm1(-big_t) + sigma_min_ * sigma_min_ * alpha * alpha);
  return {alpha, sigma, dalpha, -keep * alpha * dalpha / sigma};
}

PathSample AffinePath::Sample(const Tensor& x0, const Tensor& x1,
                              const Tensor& t) const {
  CheckArgs("affine_path", x0, x1, t);
  NoGradScope no_grad;
  const DType d = x0.dtype();
  Tensor a = Column(
      t, d, [](const Coefficients& c) { return c.alpha; }, *this);
  Tensor s = Column(
      t, d, [](const Coefficients& c) { return c.sigma; }, *this);
  Tensor da = Column(
      t, d, [](const Coefficients& c) { return c.dalpha; }, *this);
  Tensor ds = Column(
      t, d, [](const Coefficients& c) { return c.dsigma; }, *this);
  return {a * x1 + s * x0, da * x1 + ds * x0};
}

Tensor AffinePath::ConditionalField(const Tensor& x, const Tensor& x1,
                                    const Tensor& t) const {
  CheckArgs("affine_path", x, x1, t);
  NoGradScope no_grad;
  const DType d = x.dtype();
  Tensor a = Column(
      t, d, [](const Coefficients& c) { return c.alpha; }, *this);
  Tensor rate = Column(
      t, d, [](const Coefficients& c) { return c.dsigma / c.sigma; }, *this);
  Tensor da = Column(
      t, d, [](const Coefficients& c) { return c.dalpha; }, *this);
  return rate * (x - a * x1) + da * x1;
}

}  // namespace flowtape::flows::matching

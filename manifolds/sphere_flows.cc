#include "manifolds/sphere_flows.h"

#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "manifolds/manifold.h"

namespace flowtape::manifolds {
namespace {
Tensor RowNorm(const Tensor& v) { return Sqrt(Sum(Square(v), 1)); }
// w with b = w / sqrt(1 + |w|^2), for |b| < 1.
absl::StatusOr<Tensor> TranslationParameter(const Eigen::VectorXd& b,
                                            const char* what) {
  if (!b.allFinite())
    return absl::InvalidArgumentError(absl::StrCat(what, ": non-finite c"));
  const double nb = b.norm();
  if (!(nb < 1.0))
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": needs ||M^-1 c|| < 1 to be invertible, got ", nb));
  const Eigen::VectorXd w = b / std::sqrt(1.0 - nb * nb);
  return Tensor::FromVector({w.size()}, {w.data(), w.data() + w.size()});
}
}  // namespace

absl::Status NormalizedAffineOptions::Validate() const {
  if (n < 2)
    return absl::InvalidArgumentError(
        absl::StrCat("NormalizedAffine: n = ", n, " must be >= 2"));
  if (!std::isfinite(noise) || noise < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "NormalizedAffine: noise = ", noise, " must be finite and >= 0"));
  return absl::OkStatus();
}

NormalizedAffine::NormalizedAffine(const NormalizedAffineOptions& o, Rng& rng,
                                   Kind kind)
    : n_(o.n), kind_(kind) {
  if (kind != Kind::kTranslation)
    m_ = RegisterModule(  // o validated: Create cannot fail
        "m", InvertibleMatrix::Create(o.n, rng, o.noise).value());
  if (kind != Kind::kLinear)
    w_ = RegisterParameter("w", Tensor::Randn({o.n}, rng) * o.noise);
}

absl::StatusOr<std::shared_ptr<NormalizedAffine>> NormalizedAffine::Create(
    const NormalizedAffineOptions& options, Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<NormalizedAffine>(
      new NormalizedAffine(options, rng, Kind::kAffine));
}

absl::StatusOr<std::shared_ptr<NormalizedTranslation>>
NormalizedTranslation::Create(const NormalizedAffineOptions& options,
                              Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<NormalizedTranslation>(
      new NormalizedTranslation(options, rng));
}

absl::StatusOr<std::shared_ptr<NormalizedLinear>> NormalizedLinear::Create(
    const NormalizedAffineOptions& options, Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<NormalizedLinear>(new NormalizedLinear(options, rng));
}

absl::StatusOr<std::shared_ptr<NormalizedAffine>> NormalizedAffine::Create(
    const Eigen::MatrixXd& m, const Eigen::VectorXd& c) {
  FT_ASSIGN_OR_RETURN(auto mat, InvertibleMatrix::Create(m));
  if (c.size() != m.rows())
    return absl::InvalidArgumentError(absl::StrCat(
        "NormalizedAffine: c has size ", c.size(), ", M is ", m.rows()));
  FT_ASSIGN_OR_RETURN(
      Tensor w, TranslationParameter(mat->Inverse() * c, "NormalizedAffine"));
  std::shared_ptr<NormalizedAffine> out(
      new NormalizedAffine(m.rows(), Kind::kAffine));
  out->m_ = out->RegisterModule("m", mat);
  out->w_ = out->RegisterParameter("w", w);
  return out;
}

absl::StatusOr<std::shared_ptr<NormalizedTranslation>>
NormalizedTranslation::Create(const Eigen::VectorXd& c) {
  if (c.size() < 2)
    return absl::InvalidArgumentError("NormalizedTranslation: n must be >= 2");
  FT_ASSIGN_OR_RETURN(Tensor w,
                      TranslationParameter(c, "NormalizedTranslation"));
  std::shared_ptr<NormalizedTranslation> out(
      new NormalizedTranslation(c.size()));
  out->w_ = out->RegisterParameter("w", w);
  return out;
}

absl::StatusOr<std::shared_ptr<NormalizedLinear>> NormalizedLinear::Create(
    const Eigen::MatrixXd& m) {
  FT_ASSIGN_OR_RETURN(auto mat, InvertibleMatrix::Create(m));
  std::shared_ptr<NormalizedLinear> out(new NormalizedLinear(m.rows()));
  out->m_ = out->RegisterModule("m", mat);
  return out;
}

std::string NormalizedAffine::name() const {
  switch (kind_) {
    case Kind::kTranslation:
      return "NormalizedTranslation";
    case Kind::kLinear:
      return "NormalizedLinear";
    default:
      return "NormalizedAffine";
  }
}

Tensor NormalizedAffine::M() const {
  return m_ ? m_->Matrix() : Tensor::Eye(n_, dtype());
}

Tensor NormalizedAffine::B() const {
  if (!w_.defined()) return Tensor::Zeros({n_}, dtype());
  return w_ / Sqrt(1.0 + Sum(Square(w_)));
}

Eigen::MatrixXd NormalizedAffine::MValue() const {
  return m_ ? m_->Value() : Eigen::MatrixXd::Identity(n_, n_);
}

Eigen::VectorXd NormalizedAffine::CValue() const {
  NoGradScope no_grad;
  return MValue() * Rows(B());
}

flows::FlowResult NormalizedAffine::Forward(const Tensor& x, const Tensor&,
                                            Rng* /*rng*/) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == n_, name(), "::Forward: needs [N, ", n_,
           "], got ", x.shape().ToString());
  Tensor u = x, logdet = Tensor::Zeros({x.dim(0)}, x.dtype());
  if (w_.defined()) {
    Tensor b = B();
    u = x + Reshape(b, {1, n_});
    logdet = Log1p(Sum(x * Reshape(b, {1, n_}), 1));
  }
  Tensor v = m_ ? MatMulT(u, m_->Matrix(), false, true) : u;  // rows M u
  Tensor norm = RowNorm(v);
  logdet = logdet - static_cast<double>(n_) * Log(norm);
  if (m_) logdet = logdet + m_->LogAbsDet();
  return {v / Reshape(norm, {-1, 1}), logdet};
}

flows::FlowResult NormalizedAffine::Inverse(const Tensor& y, const Tensor&,
                                            Rng* /*rng*/) const {
  FT_CHECK(y.rank() == 2 && y.dim(1) == n_, name(), "::Inverse: needs [N, ", n_,
           "], got ", y.shape().ToString());
  Tensor b, log_det_m = Tensor::Scalar(0.0, y.dtype());
  {
    NoGradScope no_grad;
    b = Reshape(B(), {1, n_});
    if (m_) log_det_m = m_->LogAbsDet();
  }
  Tensor z =
      m_ ? MatMulT(y, FromRows(m_->Inverse(), y.dtype()), false, true) : y;
  Tensor a = Sum(Square(z), 1);  // y' W y
  Tensor beta = Sum(z * b, 1);   // b' M^-1 y
  const double bb = Sum(Square(b)).item();
  Tensor s = (beta + Sqrt(Square(beta) + a * (1.0 - bb))) / a;
  Tensor x = Reshape(s, {-1, 1}) * z - b;
  // Forward log R at x: log|det M| + log(1 + x.b) - n log s (||M(x+b)|| = s).
  Tensor logdet =
      -(log_det_m + Log1p(Sum(x * b, 1)) - static_cast<double>(n_) * Log(s));
  return {x, logdet};
}

}  // namespace flowtape::manifolds

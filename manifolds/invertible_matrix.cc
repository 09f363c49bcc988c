#include "manifolds/invertible_matrix.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/eigen.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"

namespace flowtape::manifolds {

InvertibleMatrix::InvertibleMatrix(int64_t n) : n_(n) {
  perm_ = RegisterBuffer("perm", Tensor::Eye(n));
  signs_ = RegisterBuffer("signs", Tensor::Ones({n}));
  Eigen::MatrixXd lo = Eigen::MatrixXd::Zero(n, n), up = lo;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) (i > j ? lo : up)(i, j) = i != j;
  lower_mask_ = RegisterBuffer("lower_mask", FromMatrix(lo));
  upper_mask_ = RegisterBuffer("upper_mask", FromMatrix(up));
}

InvertibleMatrix::InvertibleMatrix(int64_t n, Rng& rng, double noise)
    : InvertibleMatrix(n) {
  lower_ = RegisterParameter("lower",
                             Tensor::Randn({n, n}, rng) * noise * lower_mask_);
  log_diag_ = RegisterParameter("log_diag", Tensor::Randn({n}, rng) * noise);
  upper_ = RegisterParameter("upper",
                             Tensor::Randn({n, n}, rng) * noise * upper_mask_);
}

absl::StatusOr<std::shared_ptr<InvertibleMatrix>> InvertibleMatrix::Create(
    int64_t n, Rng& rng, double noise) {
  if (n < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("InvertibleMatrix: n = ", n, " must be >= 1"));
  if (!std::isfinite(noise) || noise < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "InvertibleMatrix: noise = ", noise, " must be finite and >= 0"));
  return std::shared_ptr<InvertibleMatrix>(new InvertibleMatrix(n, rng, noise));
}

absl::StatusOr<std::shared_ptr<InvertibleMatrix>> InvertibleMatrix::Create(
    const Eigen::MatrixXd& m) {
  const int64_t n = m.rows();
  if (n < 1 || m.cols() != n)
    return absl::InvalidArgumentError(
        absl::StrCat("InvertibleMatrix: matrix must be square, got ", m.rows(),
                     "x", m.cols()));
  if (!m.allFinite())
    return absl::InvalidArgumentError("InvertibleMatrix: non-finite entries");
  Eigen::PartialPivLU<Eigen::MatrixXd> lu(m);
  Eigen::MatrixXd packed = lu.matrixLU();
  const double scale = m.cwiseAbs().maxCoeff();
  for (int64_t i = 0; i < n; ++i)
    if (!(std::abs(packed(i, i)) > 1e-13 * scale))
      return absl::InvalidArgumentError(
          absl::StrCat("InvertibleMatrix: matrix is singular (pivot ", i, " = ",
                       packed(i, i), ")"));
  std::shared_ptr<InvertibleMatrix> out(new InvertibleMatrix(n));
  // m = P^-1 L U  (Eigen's convention: P m = L U).
  // The buffers are float64 here (a fresh module): set them in place.
  Eigen::MatrixXd p = lu.permutationP();
  MatrixMap(out->perm_.mutable_data<double>(), n, n) = p.transpose();
  Eigen::MatrixXd lo = Eigen::MatrixXd::Zero(n, n), up = lo;
  Tensor d = Tensor::Empty({n});
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) (i > j ? lo : up)(i, j) = packed(i, j);
    up(i, i) = 0.0;
    d.mutable_data<double>()[i] = std::log(std::abs(packed(i, i)));
    out->signs_.mutable_data<double>()[i] = packed(i, i) > 0 ? 1.0 : -1.0;
  }
  out->lower_ = out->RegisterParameter("lower", FromMatrix(lo));
  out->log_diag_ = out->RegisterParameter("log_diag", d);
  out->upper_ = out->RegisterParameter("upper", FromMatrix(up));
  return out;
}

Tensor InvertibleMatrix::Matrix() const {
  Tensor eye = Tensor::Eye(n_, log_diag_.dtype());
  Tensor l = lower_ * lower_mask_ + eye;
  Tensor diag = Reshape(signs_ * Exp(log_diag_), {1, n_}) * eye;
  Tensor u = upper_ * upper_mask_ + diag;
  return MatMul(perm_, MatMul(l, u));
}

Tensor InvertibleMatrix::LogAbsDet() const { return Sum(log_diag_); }

Eigen::MatrixXd InvertibleMatrix::Value() const {
  NoGradScope no_grad;
  return AsMatrix(Cast(Matrix(), kFloat64));
}

Eigen::MatrixXd InvertibleMatrix::Inverse() const {
  NoGradScope no_grad;
  // In double from the (possibly float32) parameters' values.
  auto d64 = [](const Tensor& t) { return Cast(t, kFloat64); };
  Tensor eye = Tensor::Eye(n_);
  Eigen::MatrixXd l = AsMatrix(d64(lower_) * d64(lower_mask_) + eye);
  Eigen::MatrixXd u =
      AsMatrix(d64(upper_) * d64(upper_mask_) +
               Reshape(d64(signs_) * Exp(d64(log_diag_)), {1, n_}) * eye);
  Eigen::MatrixXd pt = AsMatrix(d64(perm_)).transpose();
  // M^-1 = U^-1 L^-1 P^-1 = U^-1 L^-1 P'.
  Eigen::MatrixXd y = l.triangularView<Eigen::UnitLower>().solve(pt);
  return u.triangularView<Eigen::Upper>().solve(y);
}

}  // namespace flowtape::manifolds

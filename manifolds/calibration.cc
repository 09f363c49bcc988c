#include "manifolds/calibration.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/eigen.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "manifolds/manifold.h"

namespace flowtape::manifolds {
namespace {
void CheckInput(const char* op, const Tensor& x, int64_t n) {
  FT_CHECK(x.rank() == 2 && x.dim(1) == n, op, ": needs [N, ", n, "], got ",
           x.shape().ToString());
}
// sum_i log(q_i / p_i) per row.
Tensor LogRatio(const Tensor& log_q, const Tensor& log_p) {
  return Sum(log_q - log_p, 1);
}
Tensor VectorTensor(const Eigen::VectorXd& v) {
  return Tensor::FromVector({v.size()}, {v.data(), v.data() + v.size()});
}
}  // namespace

// ---- SimplexCalibration ----
absl::Status SimplexCalibrationOptions::Validate() const {
  if (n < 2)
    return absl::InvalidArgumentError(
        absl::StrCat("SimplexCalibration: n = ", n, " must be >= 2"));
  return absl::OkStatus();
}

SimplexCalibration::SimplexCalibration(const SimplexCalibrationOptions& o)
    : n_(o.n) {
  log_abs_a_ = RegisterParameter("log_abs_a", Tensor::Scalar(0.0));
  c_ = o.temperature_only ? RegisterBuffer("c", Tensor::Zeros({o.n}))
                          : RegisterParameter("c", Tensor::Zeros({o.n}));
}

absl::StatusOr<std::shared_ptr<SimplexCalibration>> SimplexCalibration::Create(
    const SimplexCalibrationOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<SimplexCalibration>(new SimplexCalibration(options));
}

absl::StatusOr<std::shared_ptr<SimplexCalibration>> SimplexCalibration::Create(
    double a, const std::vector<double>& c, bool temperature_only) {
  if (!std::isfinite(a) || a == 0.0)
    return absl::InvalidArgumentError(absl::StrCat(
        "SimplexCalibration: a must be finite and non-zero, got ", a));
  if (c.size() < 2)
    return absl::InvalidArgumentError(
        "SimplexCalibration: c must have n >= 2 entries");
  for (double v : c)
    if (!std::isfinite(v))
      return absl::InvalidArgumentError("SimplexCalibration: non-finite c");
  if (temperature_only)
    for (double v : c)
      if (v != 0.0)
        return absl::InvalidArgumentError(
            "SimplexCalibration: temperature scaling needs c = 0");
  SimplexCalibrationOptions options;
  options.n = static_cast<int64_t>(c.size());
  options.temperature_only = temperature_only;
  std::shared_ptr<SimplexCalibration> out(new SimplexCalibration(options));
  out->sign_ = a > 0 ? 1.0 : -1.0;
  out->log_abs_a_.mutable_data<double>()[0] = std::log(std::abs(a));
  std::copy(c.begin(), c.end(), out->c_.mutable_data<double>());
  return out;
}

double SimplexCalibration::a() const {
  return sign_ * std::exp(log_abs_a_.item());
}

flows::FlowResult SimplexCalibration::Forward(const Tensor& p, const Tensor&,
                                              Rng* /*rng*/) const {
  CheckInput("SimplexCalibration::Forward", p, n_);
  Tensor log_p = Log(p);
  Tensor inv_a = sign_ * Exp(-log_abs_a_);
  Tensor log_q = LogSoftmax(log_p * inv_a + c_, 1);
  Tensor logdet = (1.0 - n_) * log_abs_a_ + LogRatio(log_q, log_p);
  return {Exp(log_q), logdet};
}

flows::FlowResult SimplexCalibration::Inverse(const Tensor& q, const Tensor&,
                                              Rng* /*rng*/) const {
  CheckInput("SimplexCalibration::Inverse", q, n_);
  Tensor log_q = Log(q);
  Tensor log_p = LogSoftmax((log_q - c_.Detach()) * a(), 1);
  Tensor logdet = (n_ - 1.0) * std::log(std::abs(a())) - LogRatio(log_q, log_p);
  return {Exp(log_p), logdet};
}

// ---- GeneralizedCalibration ----
Eigen::MatrixXd OnesComplementBasis(int64_t n) {
  Eigen::MatrixXd v = Eigen::MatrixXd::Zero(n, n - 1);
  for (int64_t k = 1; k < n; ++k) {  // column k-1: (1,..,1,-k,0..)/sqrt(k(k+1))
    const double s = 1.0 / std::sqrt(static_cast<double>(k * (k + 1)));
    for (int64_t i = 0; i < k; ++i) v(i, k - 1) = s;
    v(k, k - 1) = -k * s;
  }
  return v;
}

GeneralizedCalibration::GeneralizedCalibration(
    int64_t n, std::shared_ptr<InvertibleMatrix> k, double log_lambda,
    const Eigen::VectorXd& c)
    : n_(n) {
  basis_ = RegisterBuffer("basis", FromMatrix(OnesComplementBasis(n)));
  k_ = RegisterModule("k", std::move(k));
  // Not trained (see header): a buffer.
  log_lambda_ = RegisterBuffer("log_lambda", Tensor::Scalar(log_lambda));
  c_ = RegisterParameter("c", VectorTensor(c));
}

absl::Status GeneralizedCalibrationOptions::Validate() const {
  if (n < 2)
    return absl::InvalidArgumentError(
        absl::StrCat("GeneralizedCalibration: n = ", n, " must be >= 2"));
  if (!std::isfinite(noise) || noise < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "GeneralizedCalibration: noise = ", noise, " must be finite and >= 0"));
  return absl::OkStatus();
}

GeneralizedCalibration::GeneralizedCalibration(
    const GeneralizedCalibrationOptions& o, Rng& rng)
    : GeneralizedCalibration(
          o.n,  // o validated: Create cannot fail
          InvertibleMatrix::Create(o.n - 1, rng, o.noise).value(),
          o.noise * rng.Normal(), Eigen::VectorXd::Zero(o.n)) {
  if (o.noise > 0)
    for (int64_t i = 0; i < o.n; ++i)
      c_.mutable_data<double>()[i] = o.noise * rng.Normal();
}

absl::StatusOr<std::shared_ptr<GeneralizedCalibration>>
GeneralizedCalibration::Create(const GeneralizedCalibrationOptions& options,
                               Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<GeneralizedCalibration>(
      new GeneralizedCalibration(options, rng));
}

absl::StatusOr<std::shared_ptr<GeneralizedCalibration>>
GeneralizedCalibration::Create(const Eigen::MatrixXd& a,
                               const Eigen::VectorXd& c) {
  const int64_t n = a.rows();
  if (n < 2 || a.cols() != n || c.size() != n)
    return absl::InvalidArgumentError(absl::StrCat(
        "GeneralizedCalibration: need A n x n and c of size n, got ", a.rows(),
        "x", a.cols(), " and ", c.size()));
  if (!a.allFinite() || !c.allFinite())
    return absl::InvalidArgumentError(
        "GeneralizedCalibration: non-finite A or c");
  Eigen::VectorXd a1 = a.rowwise().sum();
  const double lambda = a1.mean();
  if ((a1.array() - lambda).abs().maxCoeff() >
      1e-9 * std::max(1.0, a.cwiseAbs().maxCoeff()))
    return absl::InvalidArgumentError(
        "GeneralizedCalibration: A 1 must equal lambda 1 (row sums differ)");
  if (!(lambda > 0))
    return absl::InvalidArgumentError(absl::StrCat(
        "GeneralizedCalibration: lambda must be > 0, got ", lambda));
  Eigen::MatrixXd v = OnesComplementBasis(n);
  auto k = InvertibleMatrix::Create(v.transpose() * a * v);
  if (!k.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("GeneralizedCalibration: A is singular on 1-perp: ",
                     k.status().message()));
  return std::shared_ptr<GeneralizedCalibration>(
      new GeneralizedCalibration(n, *k, std::log(lambda), c));
}

Tensor GeneralizedCalibration::A() const {
  Tensor uu = Tensor::Full({n_, n_}, 1.0 / n_, c_.dtype());
  Tensor vkv = MatMulT(MatMul(basis_, k_->Matrix()), basis_, false, true);
  return Exp(log_lambda_) * uu + vkv;
}

double GeneralizedCalibration::lambda() const {
  return std::exp(log_lambda_.item());
}

Eigen::MatrixXd GeneralizedCalibration::AValue() const {
  NoGradScope no_grad;
  return Rows(A());
}

Eigen::VectorXd GeneralizedCalibration::CValue() const { return Rows(c_); }

flows::FlowResult GeneralizedCalibration::Forward(const Tensor& p,
                                                  const Tensor&,
                                                  Rng* /*rng*/) const {
  CheckInput("GeneralizedCalibration::Forward", p, n_);
  Tensor log_p = Log(p);
  Tensor log_q = LogSoftmax(MatMulT(log_p, A(), false, true) + c_, 1);
  // log|det A| - log(lambda) = log|det K|.
  Tensor logdet = k_->LogAbsDet() + LogRatio(log_q, log_p);
  return {Exp(log_q), logdet};
}

flows::FlowResult GeneralizedCalibration::Inverse(const Tensor& q,
                                                  const Tensor&,
                                                  Rng* /*rng*/) const {
  CheckInput("GeneralizedCalibration::Inverse", q, n_);
  Eigen::MatrixXd a_inv = AValue().inverse();
  Tensor log_q = Log(q);
  Tensor log_p = LogSoftmax(
      MatMulT(log_q - c_.Detach(), FromRows(a_inv, q.dtype()), false, true), 1);
  double log_det_k;
  {
    NoGradScope no_grad;
    log_det_k = k_->LogAbsDet().item();
  }
  Tensor logdet = -log_det_k - LogRatio(log_q, log_p);
  return {Exp(log_p), logdet};
}

}  // namespace flowtape::manifolds

#include "flows/invconv.h"

#include <Eigen/Dense>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/eigen.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"

namespace flowtape::flows {
namespace {
using RowMat = RowMatrix;

int64_t Pixels(const Tensor& x) {
  return x.rank() == 4 ? x.dim(2) * x.dim(3) : 1;
}

}  // namespace

absl::StatusOr<std::shared_ptr<InvConv1x1>> InvConv1x1::Create(
    int64_t channels, Rng& rng, InvConvParam param) {
  if (channels < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("invconv: channels = ", channels, " must be >= 1"));
  return std::shared_ptr<InvConv1x1>(new InvConv1x1(channels, rng, param));
}

InvConv1x1::InvConv1x1(int64_t channels, Rng& rng, InvConvParam param)
    : c_(channels), param_(param) {
  RowMat g(c_, c_);
  for (int64_t i = 0; i < c_; ++i)
    for (int64_t j = 0; j < c_; ++j) g(i, j) = rng.Normal();
  RowMat q = Eigen::HouseholderQR<RowMat>(g).householderQ();
  if (param_ == InvConvParam::kFull) {
    w_ = RegisterParameter("weight", FromMatrix(q));
    return;
  }
  // q = P^T L U  (Eigen: P q = L U).
  Eigen::PartialPivLU<RowMat> lu(q);
  RowMat lu_m = lu.matrixLU();
  RowMat l = lu_m.triangularView<Eigen::StrictlyLower>();
  RowMat u = lu_m.triangularView<Eigen::StrictlyUpper>();
  RowMat p = lu.permutationP().transpose() * RowMat::Identity(c_, c_);
  RowMat sign(c_, 1), log_s(c_, 1), lm = RowMat::Zero(c_, c_);
  for (int64_t i = 0; i < c_; ++i) {
    sign(i, 0) = lu_m(i, i) < 0 ? -1.0 : 1.0;
    log_s(i, 0) = std::log(std::fabs(lu_m(i, i)));
    for (int64_t j = 0; j < i; ++j) lm(i, j) = 1.0;
  }
  // P and sign_s come from the random starting rotation: buffers, so a
  // checkpoint restores the function exactly (the masks are fixed by C).
  perm_ = RegisterBuffer("perm", FromMatrix(p));
  sign_s_ = RegisterBuffer("sign_s", Reshape(FromMatrix(sign), {c_}).Detach());
  l_mask_ = RegisterBuffer("l_mask", FromMatrix(lm));
  u_mask_ = RegisterBuffer("u_mask", FromMatrix(RowMat(lm.transpose())));
  lower_ = RegisterParameter("lower", FromMatrix(l));
  upper_ = RegisterParameter("upper", FromMatrix(u));
  log_s_ =
      RegisterParameter("log_s", Reshape(FromMatrix(log_s), {c_}).Detach());
}

absl::StatusOr<std::shared_ptr<InvConv1x1>> InvConv1x1::Create(
    const Tensor& w) {
  if (w.rank() != 2 || w.dim(0) != w.dim(1) || w.dim(0) < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "invconv: W must be square [C, C], got ", w.shape().ToString()));
  Rng rng(0);
  std::shared_ptr<InvConv1x1> f(
      new InvConv1x1(w.dim(0), rng, InvConvParam::kFull));
  const std::vector<double> v = w.ToVector();
  std::copy(v.begin(), v.end(), f->w_.mutable_data<double>());
  FT_RETURN_IF_ERROR(f->Validate());
  return f;
}

absl::Status InvConv1x1::Validate() const {
  NoGradScope no_grad;
  const double rcond = dtype() == kFloat32 ? 1e-5 : 1e-12;
  Tensor w = Cast(Weight(), kFloat64);
  for (int64_t i = 0; i < w.numel(); ++i)
    if (!std::isfinite(w[i]))
      return absl::InvalidArgumentError(absl::StrCat(name(), ": W[", i / c_,
                                                     ", ", i % c_, "] = ", w[i],
                                                     " is not finite"));
  Eigen::VectorXd sv = Eigen::JacobiSVD<RowMat>(AsMatrix(w)).singularValues();
  if (!(sv(c_ - 1) > rcond * sv(0)))
    return absl::InvalidArgumentError(
        absl::StrCat(name(), ": W is singular (singular values ", sv(0), " to ",
                     sv(c_ - 1), "): not invertible"));
  return absl::OkStatus();
}

Tensor InvConv1x1::Lower() const {
  return lower_ * l_mask_ + Tensor::Eye(c_, lower_.dtype());
}

Tensor InvConv1x1::Upper() const {
  return upper_ * u_mask_ +
         Tensor::Eye(c_, upper_.dtype()) * (sign_s_ * Exp(log_s_));
}

Tensor InvConv1x1::Weight() const {
  if (param_ == InvConvParam::kFull) return w_;
  return MatMul(perm_, MatMul(Lower(), Upper()));
}

Tensor InvConv1x1::LogAbsDetWeight() const {
  return param_ == InvConvParam::kFull ? LogAbsDet(w_) : Sum(log_s_);
}

Tensor InvConv1x1::InverseWeight() const {
  if (param_ == InvConvParam::kFull) return flowtape::Inverse(w_);
  // W^-1 = U'^-1 L^-1 P^T.
  Tensor linv_pt = TriangularSolve(Lower(), Transpose(perm_), /*upper=*/false,
                                   /*transpose=*/false, /*unit_diagonal=*/true);
  return TriangularSolve(Upper(), linv_pt, /*upper=*/true);
}

Tensor InvConv1x1::Mix(const Tensor& m, const Tensor& x) const {
  FT_CHECK((x.rank() == 2 || x.rank() == 4) && x.dim(1) == c_, name(),
           ": input ", x.shape().ToString(), " for ", c_,
           " channels (want [N, C] or [N, C, H, W])");
  if (x.rank() == 2) return MatMulT(x, m, false, true);  // rows x W^T
  const int64_t n = x.dim(0);
  Tensor flat = Reshape(x, {n, c_, x.dim(2) * x.dim(3)});
  Tensor y = MatMul(BroadcastTo(m, {n, c_, c_}), flat);
  return Reshape(y, x.shape().dims());
}

FlowResult InvConv1x1::Forward(const Tensor& x, const Tensor&, Rng*) const {
  Tensor ld = LogAbsDetWeight() * static_cast<double>(Pixels(x));
  return {Mix(Weight(), x), BroadcastTo(ld, {x.dim(0)})};
}

FlowResult InvConv1x1::Inverse(const Tensor& z, const Tensor&, Rng*) const {
  Tensor ld = LogAbsDetWeight() * static_cast<double>(-Pixels(z));
  return {Mix(InverseWeight(), z), BroadcastTo(ld, {z.dim(0)})};
}

}  // namespace flowtape::flows

#include "flows/householder.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {

Tensor ReflectRows(const Tensor& x, const Tensor& v, bool transposed) {
  FT_CHECK(x.rank() == 2 && v.rank() == 2 && x.dim(1) == v.dim(1),
           "householder: input ", x.shape().ToString(), " vs vectors ",
           v.shape().ToString());
  const int64_t k = v.dim(0);
  Tensor y = x;
  for (int64_t i = 0; i < k; ++i) {
    // Row x^T -> (H x)^T = x^T - (2 / |v|^2) (x . v) v^T.
    Tensor vi = Narrow(v, 0, transposed ? k - 1 - i : i, 1);  // [1, D]
    y = y - MatMulT(y, vi, false, true) * vi * (2.0 / Sum(Square(vi)));
  }
  return y;
}

Tensor HouseholderProduct(const Tensor& v) {
  // Rows of ReflectRows(I) are (H_K ... H_1 e_i)^T: the transpose.
  return Transpose(ReflectRows(Tensor::Eye(v.dim(1), v.dtype()), v));
}

absl::StatusOr<std::shared_ptr<Householder>> Householder::Create(
    int64_t d, int64_t reflections, Rng& rng) {
  if (d < 1 || reflections < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "householder: need d >= 1 and reflections >= 1, got d = ", d,
        ", reflections = ", reflections));
  return std::shared_ptr<Householder>(new Householder(d, reflections, rng));
}

Householder::Householder(int64_t d, int64_t k, Rng& rng) {
  v_ = RegisterParameter("v", Tensor::Randn({k, d}, rng));
}

absl::StatusOr<std::shared_ptr<Householder>> Householder::Create(
    const Tensor& v) {
  if (v.rank() != 2 || v.dim(0) < 1 || v.dim(1) < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "householder: v ", v.shape().ToString(), " must be [K, D]"));
  for (int64_t i = 0; i < v.dim(0); ++i) {
    double norm = 0;
    for (int64_t j = 0; j < v.dim(1); ++j) {
      const double e = v[i * v.dim(1) + j];
      if (!std::isfinite(e))
        return absl::InvalidArgumentError("householder: v must be finite");
      norm += e * e;
    }
    if (norm == 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "householder: v_", i, " is zero (a reflection needs a direction)"));
  }
  Rng rng(0);
  std::shared_ptr<Householder> f(new Householder(v.dim(1), v.dim(0), rng));
  for (int64_t i = 0; i < v.numel(); ++i)
    f->v_.mutable_data<double>()[i] = v[i];
  return f;
}

FlowResult Householder::Inverse(const Tensor& z, const Tensor&, Rng*) const {
  return {ReflectRows(z, v_), Tensor::Zeros({z.dim(0)}, z.dtype())};
}

FlowResult Householder::Forward(const Tensor& x, const Tensor&, Rng*) const {
  return {ReflectRows(x, v_, /*transposed=*/true),
          Tensor::Zeros({x.dim(0)}, x.dtype())};
}

}  // namespace flowtape::flows

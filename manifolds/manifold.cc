#include "manifolds/manifold.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/eigen.h"
#include "autodiff/ops.h"

namespace flowtape::manifolds {

Manifold Manifold::Sphere(int64_t n) {
  FT_CHECK(n >= 2, "Manifold::Sphere: n must be >= 2, got ", n);
  return Manifold(ManifoldKind::kSphere, n);
}

Manifold Manifold::Simplex(int64_t n) {
  FT_CHECK(n >= 2, "Manifold::Simplex: n must be >= 2, got ", n);
  return Manifold(ManifoldKind::kSimplex, n);
}

std::string Manifold::name() const {
  return kind_ == ManifoldKind::kSphere ? absl::StrCat("S^", n_ - 1)
                                        : absl::StrCat("Delta^", n_ - 1);
}

Tensor Manifold::Project(const Tensor& z) const {
  FT_CHECK(z.rank() == 2 && z.dim(1) == n_, "Manifold::Project: ", name(),
           " needs [N, ", n_, "], got ", z.shape().ToString());
  if (kind_ == ManifoldKind::kSphere)
    return z / Sqrt(Sum(Square(z), 1, /*keepdim=*/true));
  return z / Sum(z, 1, /*keepdim=*/true);
}

Eigen::VectorXd Manifold::Project(const Eigen::VectorXd& z) const {
  return kind_ == ManifoldKind::kSphere ? Eigen::VectorXd(z / z.norm())
                                        : Eigen::VectorXd(z / z.sum());
}

Eigen::MatrixXd Manifold::ProjectionJacobian(const Eigen::VectorXd& z) const {
  FT_CHECK(z.size() == n_, "ProjectionJacobian: size ", z.size(), " vs ", n_);
  const Eigen::VectorXd x = Project(z);
  const Eigen::MatrixXd eye = Eigen::MatrixXd::Identity(n_, n_);
  if (kind_ == ManifoldKind::kSphere)
    return (eye - x * x.transpose()) / z.norm();
  return (eye - x * Eigen::RowVectorXd::Ones(n_)) / z.sum();
}

Eigen::MatrixXd Manifold::TangentBasis(const Eigen::VectorXd& x) const {
  Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(ProjectionJacobian(x));
  Eigen::MatrixXd q = qr.householderQ();
  return q.leftCols(dim());
}

Tensor Manifold::TangentBases(const Tensor& x) const {
  const int64_t num = x.dim(0), m = dim();
  std::vector<double> v(num * n_ * m);
  for (int64_t i = 0; i < num; ++i) {
    Eigen::MatrixXd t = TangentBasis(Row(x, i));
    for (int64_t r = 0; r < n_; ++r)
      for (int64_t c = 0; c < m; ++c) v[(i * n_ + r) * m + c] = t(r, c);
  }
  return Tensor::FromVector({num, n_, m}, v, x.dtype());
}

bool Manifold::Contains(const Eigen::VectorXd& x, double tol) const {
  if (x.size() != n_ || !x.allFinite()) return false;
  if (kind_ == ManifoldKind::kSphere) return std::abs(x.norm() - 1.0) <= tol;
  return std::abs(x.sum() - 1.0) <= tol && x.minCoeff() >= -tol;
}

bool Manifold::ContainsAll(const Tensor& x, double tol) const {
  if (x.rank() != 2 || x.dim(1) != n_) return false;
  for (int64_t i = 0; i < x.dim(0); ++i)
    if (!Contains(Row(x, i), tol)) return false;
  return true;
}

Tensor Manifold::SampleUniform(int64_t num, Rng& rng, DType dtype) const {
  Eigen::MatrixXd rows(num, n_);
  for (int64_t i = 0; i < num; ++i) {
    Eigen::VectorXd z(n_);
    for (int64_t j = 0; j < n_; ++j)
      z[j] = kind_ == ManifoldKind::kSphere ? rng.Normal()
                                            : -std::log1p(-rng.Uniform());
    rows.row(i) = Project(z).transpose();
  }
  return FromRows(rows, dtype);
}

double Manifold::LogVolume() const {
  const double n = static_cast<double>(n_);
  if (kind_ == ManifoldKind::kSphere)
    return std::log(2.0) + 0.5 * n * std::log(M_PI) - std::lgamma(0.5 * n);
  return -std::lgamma(n);
}

Eigen::VectorXd Row(const Tensor& x, int64_t i) {
  FT_CHECK(x.shape().rank() == 2 && i >= 0 && i < x.dim(0), "Row: row ", i,
           " of ", x.shape().ToString());
  const int64_t n = x.dim(1);
  return VisitDType(x.dtype(), [&](auto zero) -> Eigen::VectorXd {
    using T = decltype(zero);
    return Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(
               x.data<T>() + i * n, n)
        .template cast<double>();
  });
}

Eigen::MatrixXd Rows(const Tensor& x) {
  FT_CHECK(x.rank() == 1 || x.rank() == 2, "Rows: needs [N, n] or [n], got ",
           x.shape().ToString());
  return VisitDType(x.dtype(), [&](auto zero) -> Eigen::MatrixXd {
    using T = decltype(zero);
    return AsMatrix<T>(x).template cast<double>();
  });
}

Tensor FromRows(const Eigen::MatrixXd& rows, DType dtype) {
  return VisitDType(dtype, [&](auto zero) {
    using T = decltype(zero);
    return FromMatrix(rows.cast<T>());
  });
}

}  // namespace flowtape::manifolds

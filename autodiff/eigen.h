// Eigen views of tensors, for dense kernels (GEMM, LU, QR) and for code that
// computes constants with Eigen.
//   AsMatrix<T>(t): a zero-copy row-major map of a [rows, cols] tensor of
//                   dtype T (a rank-1 tensor is a column); T defaults to
//                   double.
//   FromMatrix(m): a new constant tensor [rows, cols] with m's values, of
//                  m's scalar type (float or double).
// Tensors are row-major; Eigen's default is column-major, so the maps carry
// RowMajor and converting from a column-major matrix copies.
#ifndef FLOWTAPE_AUTODIFF_EIGEN_H_
#define FLOWTAPE_AUTODIFF_EIGEN_H_

#include <Eigen/Dense>

#include "autodiff/check.h"
#include "autodiff/tensor.h"

namespace flowtape {

template <typename T>
using RowMatrixT =
    Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ConstMatrixMapT = Eigen::Map<const RowMatrixT<T>>;
template <typename T>
using MatrixMapT = Eigen::Map<RowMatrixT<T>>;
using RowMatrix = RowMatrixT<double>;
using ConstMatrixMap = ConstMatrixMapT<double>;
using MatrixMap = MatrixMapT<double>;

template <typename T = double>
ConstMatrixMapT<T> AsMatrix(const Tensor& t) {
  FT_CHECK(t.rank() == 1 || t.rank() == 2, "as_matrix: want rank 1 or 2, got ",
           t.shape().ToString());
  return ConstMatrixMapT<T>(t.data<T>(), t.dim(0),
                            t.rank() == 2 ? t.dim(1) : 1);
}

template <typename Derived>
Tensor FromMatrix(const Eigen::MatrixBase<Derived>& m) {
  using T = typename Derived::Scalar;
  Tensor t = Tensor::Empty({m.rows(), m.cols()}, kDTypeOf<T>);
  MatrixMapT<T>(t.mutable_data<T>(), m.rows(), m.cols()) = m;
  return t;
}

}  // namespace flowtape

#endif  // FLOWTAPE_AUTODIFF_EIGEN_H_

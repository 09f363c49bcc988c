// Eigen views of tensors, for dense kernels (GEMM, LU, QR) and for code that
// computes constants with Eigen.
//   AsMatrix(t): a zero-copy row-major map of a [rows, cols] tensor (a rank-1
//                tensor is a column); writable only through constants.
//   FromMatrix(m): a new constant tensor [rows, cols] with m's values.
// Tensors are row-major; Eigen's default is column-major, so the maps carry
// RowMajor and converting from a column-major matrix copies.
#ifndef FLOWTAPE_AUTODIFF_EIGEN_H_
#define FLOWTAPE_AUTODIFF_EIGEN_H_

#include <Eigen/Dense>

#include "autodiff/check.h"
#include "autodiff/tensor.h"

namespace flowtape {

using RowMatrix =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMatrixMap = Eigen::Map<const RowMatrix>;
using MatrixMap = Eigen::Map<RowMatrix>;

inline Eigen::Map<const RowMatrix> AsMatrix(const Tensor& t) {
  FT_CHECK(t.rank() == 1 || t.rank() == 2, "as_matrix: want rank 1 or 2, got ",
           t.shape().ToString());
  return Eigen::Map<const RowMatrix>(t.data(), t.dim(0),
                                     t.rank() == 2 ? t.dim(1) : 1);
}

template <typename Derived>
Tensor FromMatrix(const Eigen::MatrixBase<Derived>& m) {
  Tensor t = Tensor::Empty({m.rows(), m.cols()});
  Eigen::Map<RowMatrix>(t.mutable_data(), m.rows(), m.cols()) = m;
  return t;
}

}  // namespace flowtape

#endif  // FLOWTAPE_AUTODIFF_EIGEN_H_

// The matrix-product kernel behind MatMul, Conv2d and nn::Linear:
//
//   C = op(A) op(B)    (C += op(A) op(B) when accumulate)
//
// A is a row-major [ar, ac] array, op(A) = A or A' (transpose_a); likewise
// B [br, bc]; C is row-major [m, n] with m = rows of op(A), n = columns of
// op(B). Values by Eigen's GEMM, for T = float or double.
//
// Parallelism (thread_pool.h): a product of at least kParallelFlops
// multiply-adds is cut into fixed blocks of rows of C (or of columns, when C
// is short and wide), chosen from the sizes alone and computed even with one
// thread, so the result is bitwise the same for every thread count; the
// blocks are spread over the intra-op pool. Smaller products run as one call.
//
// Structured zeros: when at most a quarter of op(A)'s columns are nonzero
// (a reverse pass seeded with unit vectors: the rows of a Jacobian, the d
// VJPs of an exact trace), only those columns and the matching rows of op(B)
// are multiplied; when at most a quarter of op(B)'s columns are nonzero, only
// those columns of C are computed and the rest are zero. The shortcut is
// taken only when the skipped factor is finite, so NaN and Inf propagate as
// in the full product; the values may differ from the full product's in the
// last bit (another summation order). It depends on the values alone, so
// results stay the same for every thread count. The zeros are found by a
// scan, or told: a_unit / b_unit >= 0 says that column of the row-major A
// (B) array is its only nonzero one (Tensor::UnitColumn), as a scan would
// find.
#ifndef FLOWTAPE_AUTODIFF_GEMM_H_
#define FLOWTAPE_AUTODIFF_GEMM_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "autodiff/eigen.h"
#include "autodiff/kernels.h"
#include "autodiff/thread_pool.h"

namespace flowtape::internal {

// m * n * k at which a product is split (measured: benchmarks/gemm_bench).
inline constexpr int64_t kParallelFlops = int64_t{1} << 23;
// Smallest block: rows (or columns) of C per chunk.
inline constexpr int64_t kMinBlock = 32;

template <typename T, typename CBlock, typename AExpr, typename BExpr>
void GemmInto(CBlock c, const AExpr& a, const BExpr& b, bool accumulate) {
  if (accumulate)
    c.noalias() += a * b;
  else
    c.noalias() = a * b;
}

// Rows [r0, r0 + len) of C (by_rows) or its columns [r0, r0 + len).
template <typename T>
void GemmBlock(const T* a, int64_t ar, int64_t ac, bool ta, const T* b,
               int64_t br, int64_t bc, bool tb, T* c, int64_t m, int64_t n,
               bool accumulate, bool by_rows, int64_t r0, int64_t len) {
  ConstMatrixMapT<T> A(a, ar, ac), B(b, br, bc);
  MatrixMapT<T> C(c, m, n);
  if (by_rows) {
    auto cb = C.middleRows(r0, len);
    if (!ta && !tb) GemmInto<T>(cb, A.middleRows(r0, len), B, accumulate);
    if (!ta && tb)
      GemmInto<T>(cb, A.middleRows(r0, len), B.transpose(), accumulate);
    if (ta && !tb)
      GemmInto<T>(cb, A.middleCols(r0, len).transpose(), B, accumulate);
    if (ta && tb)
      GemmInto<T>(cb, A.middleCols(r0, len).transpose(), B.transpose(),
                  accumulate);
  } else {
    auto cb = C.middleCols(r0, len);
    if (!ta && !tb) GemmInto<T>(cb, A, B.middleCols(r0, len), accumulate);
    if (!ta && tb)
      GemmInto<T>(cb, A, B.middleRows(r0, len).transpose(), accumulate);
    if (ta && !tb)
      GemmInto<T>(cb, A.transpose(), B.middleCols(r0, len), accumulate);
    if (ta && tb)
      GemmInto<T>(cb, A.transpose(), B.middleRows(r0, len).transpose(),
                  accumulate);
  }
}

// Products below this many multiply-adds skip the zero scan.
inline constexpr int64_t kSparseScanFlops = int64_t{1} << 14;

FLOWTAPE_VECTORIZE_BEGIN
// The lines of the row-major [rows, cols] array p (its columns, or its rows
// when !columns) holding a nonzero (NaN counts), if there are at most
// `limit`; false as soon as that is known to fail.
template <typename T>
bool NonzeroLines(const T* p, int64_t rows, int64_t cols, bool columns,
                  int64_t limit, std::vector<int64_t>* lines) {
  lines->clear();
  auto nonzero = [](T v) { return v != T{0}; };
  if (!columns) {
    for (int64_t r = 0; r < rows; ++r) {
      if (!std::any_of(p + r * cols, p + (r + 1) * cols, nonzero)) continue;
      if (static_cast<int64_t>(lines->size()) == limit) return false;
      lines->push_back(r);
    }
    return true;
  }
  // A dense first row settles it; then |column| sums (NaN stays NaN, and a
  // sum of magnitudes is zero only when every term is).
  if (std::count_if(p, p + cols, nonzero) > limit) return false;
  // Sixteen columns at a time, their sums held in registers.
  constexpr int64_t kWidth = 16;
  for (int64_t j0 = 0; j0 < cols; j0 += kWidth) {
    T mass[kWidth] = {};
    const T* block = p + j0;
    if (cols - j0 >= kWidth) {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t l = 0; l < kWidth; ++l)
          mass[l] += std::abs(block[r * cols + l]);
    } else {
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t l = 0; l < cols - j0; ++l)
          mass[l] += std::abs(block[r * cols + l]);
    }
    for (int64_t l = 0; l < kWidth && j0 + l < cols; ++l) {
      if (!nonzero(mass[l])) continue;
      if (static_cast<int64_t>(lines->size()) == limit) return false;
      lines->push_back(j0 + l);
    }
  }
  return true;
}
FLOWTAPE_VECTORIZE_END

// Every entry finite: 0 * x is 0 exactly when x is finite.
template <typename T>
bool AllFinite(const T* p, int64_t count) {
  return (Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(p, count) * T{0})
             .sum() == T{0};
}

// The structured-zeros shortcut of the header comment; false when it does
// not apply (the caller then runs the full product).
template <typename T>
bool SparseGemm(const T* a, int64_t ar, int64_t ac, bool ta, const T* b,
                int64_t br, int64_t bc, bool tb, T* c, bool accumulate,
                int64_t a_unit, int64_t b_unit) {
  const int64_t m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc;
  if (m * n * k < kSparseScanFlops) return false;
  std::vector<int64_t> s;
  MatrixMapT<T> C(c, m, n);
  // op(X)(r, j) of a row-major [xr, xc] array.
  auto at = [](const T* x, int64_t xc, bool t, int64_t r, int64_t j) {
    return t ? x[j * xc + r] : x[r * xc + j];
  };
  // Nonzero columns of op(A): C = op(A)[:, s] op(B)[s, :] (an outer product
  // for one column), if op(B) is finite.
  // A told column is a nonzero column of op(X) when X is not transposed.
  auto lines = [&](const T* x, int64_t xr, int64_t xc, bool t, int64_t unit,
                   int64_t limit) {
    if (unit < 0 || t) return NonzeroLines(x, xr, xc, !t, limit, &s);
    s.assign(1, unit);
    return limit >= 1;
  };
  if (lines(a, ar, ac, ta, a_unit, k / 4)) {
    if (!AllFinite(b, br * bc)) return false;
    RowMatrixT<T> as(m, s.size()), bs(s.size(), n);
    for (size_t j = 0; j < s.size(); ++j) {
      for (int64_t r = 0; r < m; ++r) as(r, j) = at(a, ac, ta, r, s[j]);
      for (int64_t q = 0; q < n; ++q) bs(j, q) = at(b, bc, tb, s[j], q);
    }
    if (s.size() != 1)
      GemmInto<T>(C, as, bs, accumulate);
    else if (accumulate)
      C.noalias() += as.col(0) * bs.row(0);
    else
      C.noalias() = as.col(0) * bs.row(0);
    return true;
  }
  // Nonzero columns of op(B): only those columns of C, if op(A) is finite.
  if (!lines(b, br, bc, tb, b_unit, n / 4) || !AllFinite(a, ar * ac))
    return false;
  RowMatrixT<T> bs(k, s.size()), cs(m, s.size());
  for (size_t j = 0; j < s.size(); ++j)
    for (int64_t q = 0; q < k; ++q) bs(q, j) = at(b, bc, tb, q, s[j]);
  ConstMatrixMapT<T> A(a, ar, ac);
  if (ta)
    cs.noalias() = A.transpose() * bs;
  else
    cs.noalias() = A * bs;
  if (!accumulate) C.setZero();
  for (size_t j = 0; j < s.size(); ++j) C.col(s[j]) += cs.col(j);
  return true;
}

template <typename T>
void Gemm(const T* a, int64_t ar, int64_t ac, bool ta, const T* b, int64_t br,
          int64_t bc, bool tb, T* c, bool accumulate = false,
          int64_t a_unit = -1, int64_t b_unit = -1) {
  if (SparseGemm(a, ar, ac, ta, b, br, bc, tb, c, accumulate, a_unit, b_unit))
    return;
  const int64_t m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc;
  const bool large = m * n * k >= kParallelFlops;
  const bool by_rows = m >= n || n < 2 * kMinBlock;
  const int64_t extent = by_rows ? m : n;
  if (!large || extent < 2 * kMinBlock) {
    GemmBlock(a, ar, ac, ta, b, br, bc, tb, c, m, n, accumulate, true, 0, m);
    return;
  }
  // At most 16 blocks of at least kMinBlock, rounded to a multiple of 8.
  int64_t block = std::max(kMinBlock, (extent + 15) / 16);
  block = (block + 7) / 8 * 8;
  const int64_t chunks = (extent + block - 1) / block;
  ParallelChunks(chunks, [&](int64_t i) {
    const int64_t r0 = i * block, len = std::min(block, extent - r0);
    GemmBlock(a, ar, ac, ta, b, br, bc, tb, c, m, n, accumulate, by_rows, r0,
              len);
  });
}

}  // namespace flowtape::internal

#endif  // FLOWTAPE_AUTODIFF_GEMM_H_

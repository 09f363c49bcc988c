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
#ifndef FLOWTAPE_AUTODIFF_GEMM_H_
#define FLOWTAPE_AUTODIFF_GEMM_H_

#include <algorithm>
#include <cstdint>

#include "autodiff/eigen.h"
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

template <typename T>
void Gemm(const T* a, int64_t ar, int64_t ac, bool ta, const T* b, int64_t br,
          int64_t bc, bool tb, T* c, bool accumulate = false) {
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

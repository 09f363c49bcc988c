// Masked matrix products that skip the zeros of their mask (MADE's layers).
//
//   MaskedAffine(x, w, m, b) = x (w .* m) + b     x [N, in], w, m [in, out]
//
// m is a constant 0/1 mask. The plan (derived from m's values on every
// call, so a mask loaded from a checkpoint, in any order, is always computed
// right): with [lo_i, hi_i) the columns from row i's first to its last
// nonzero, the columns of m are cut into tiles of the kernel's width (two
// SIMD packets of T: 32 floats or 16 doubles with AVX-512; then one packet,
// then single columns), and a tile computes only the rows i whose [lo_i,
// hi_i) meets it:
//   y[:, c0:c1] = b[c0:c1] + x[:, lo:hi] (w .* m)[lo:hi, c0:c1].
// This covers every nonzero of any mask; for a mask whose rows are runs (an
// autoregressive mask with units ordered by degree is a staircase) it skips
// whole zero blocks, and a mask without structure runs dense. The products
// read x, w .* m and g in place (no packing): each tile of 8 rows keeps its
// sums in registers and adds x[r, k] (w .* m)[k, c0:c1] over k in order.
//
// Gradients, with W = w .* m (bilinear maps that close under
// differentiation, so every order works):
//   A(x, w) = x W           gx = T(g, w),   gw = O(x, g),   gb = sum_n g
//   T(g, w) = g W'          gg = A(gz, w),  gw = O(gz, g)
//   O(x, g) = m .* (x' g)   gx = T(g, go),  gg = A(x, go)
// T tiles the columns of W' (the rows of m) the same way; O computes the
// blocks of A's tiles (its masked entries are exactly zero). The plan is
// made once per MaskedAffine and rides on the tape to the backward ops.
//
// Threads (autodiff/thread_pool.h): a product of at least kParallelFlops
// computed multiply-adds is split into fixed chunks chosen from the sizes
// alone, as autodiff/gemm.h does (A and T: chunks of rows of x or g; O: one
// chunk per tile), so results are the same for every thread count.
#ifndef FLOWTAPE_NN_MASKED_MATMUL_H_
#define FLOWTAPE_NN_MASKED_MATMUL_H_

#include <cstdint>
#include <vector>

#include "autodiff/tensor.h"

namespace flowtape::nn {

// The tiles of the plan of x (w .* m), in column order (exposed for tests
// and benchmarks; tile widths depend on the mask's dtype and on the SIMD
// width the library was built for).
struct MaskBlock {
  int64_t c0, c1;  // columns [c0, c1)
  int64_t lo, hi;  // rows [lo, hi)
};
std::vector<MaskBlock> PlanMaskBlocks(const Tensor& mask);

// x (w .* mask) + b; b [out] may be undefined (no bias).
Tensor MaskedAffine(const Tensor& x, const Tensor& w, const Tensor& mask,
                    const Tensor& b = Tensor());

}  // namespace flowtape::nn

#endif  // FLOWTAPE_NN_MASKED_MATMUL_H_

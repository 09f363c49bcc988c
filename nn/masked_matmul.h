// Masked matrix products that skip the zeros of their mask (MADE's layers).
//
//   MaskedAffine(x, w, m, b) = x (w .* m) + b     x [N, in], w, m [in, out]
//
// m is a constant 0/1 mask. When every column j of m is a contiguous run of
// ones, rows [lo_j, hi_j) (an autoregressive mask whose units are ordered by
// degree is a staircase of such runs), consecutive columns are grouped into
// blocks whose row ranges overlap well, and each block is one GEMM over its
// rows only:  y[:, c0:c1] = x[:, lo:hi] (w .* m)[lo:hi, c0:c1] + b[c0:c1].
// Any other mask runs as one dense block. The plan is derived from m's
// values on every call, so a mask loaded from a checkpoint (any order) is
// always computed right.
//
// Gradients, with W = w .* m (bilinear maps that close under
// differentiation, so every order works):
//   A(x, w) = x W           gx = T(g, w),   gw = O(x, g),   gb = sum_n g
//   T(g, w) = g W'          gg = A(gz, w),  gw = O(gz, g)
//   O(x, g) = m .* (x' g)   gx = T(g, go),  gg = A(x, go)
// each computed block by block with the same plan (O only on the blocks:
// its masked entries are exactly zero).
//
// Threads (autodiff/thread_pool.h): a product of at least kParallelFlops
// computed multiply-adds is split into fixed chunks chosen from the sizes
// alone, as autodiff/gemm.h does (A and T: chunks of rows of x or g; O: one
// chunk per block), so results are the same for every thread count.
#ifndef FLOWTAPE_NN_MASKED_MATMUL_H_
#define FLOWTAPE_NN_MASKED_MATMUL_H_

#include <cstdint>
#include <vector>

#include "autodiff/tensor.h"

namespace flowtape::nn {

// The block plan of a mask (exposed for tests and benchmarks).
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

#include "nn/masked_matmul.h"

#include <algorithm>

#include "autodiff/check.h"
#include "autodiff/eigen.h"
#include "autodiff/gemm.h"
#include "autodiff/op_kit.h"
#include "autodiff/ops.h"

namespace flowtape::nn {

std::vector<MaskBlock> PlanMaskBlocks(const Tensor& mask) {
  const int64_t in = mask.dim(0), out = mask.dim(1);
  std::vector<int64_t> lo(out, 0), hi(out, 0);
  bool runs = true;
  VisitDType(mask.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* m = mask.data<T>();
    for (int64_t j = 0; j < out && runs; ++j) {
      int64_t i = 0;
      while (i < in && m[i * out + j] == T(0)) ++i;
      lo[j] = hi[j] = i;
      while (i < in && m[i * out + j] != T(0)) ++i;
      hi[j] = i;
      while (i < in && m[i * out + j] == T(0)) ++i;
      runs = i == in;                         // nothing after the run
      if (lo[j] == hi[j]) lo[j] = hi[j] = 0;  // empty column
    }
  });
  if (!runs) return {{0, out, 0, in}};
  // Greedy: extend a block while its GEMM does at most 25% more work than
  // its columns' own runs, or while it is narrower than 8 columns (tiny
  // GEMMs cost more than the zeros they skip).
  std::vector<MaskBlock> blocks;
  int64_t c0 = 0;
  while (c0 < out) {
    MaskBlock b{c0, c0 + 1, lo[c0], hi[c0]};
    int64_t useful = hi[c0] - lo[c0];
    for (int64_t c = c0 + 1; c < out; ++c) {
      const bool empty = hi[c] == lo[c];
      const int64_t l = empty ? b.lo : std::min(b.lo, lo[c]);
      const int64_t h = empty ? b.hi : std::max(b.hi, hi[c]);
      const int64_t u = useful + hi[c] - lo[c];
      if ((c - c0 + 1) * (h - l) * 4 > u * 5 && c - c0 >= 8) break;
      b = {c0, c + 1, l, h};
      useful = u;
    }
    if (b.hi == b.lo) b.lo = b.hi = 0;
    blocks.push_back(b);
    c0 = b.c1;
  }
  return blocks;
}

namespace {

Tensor MaskedMatMulT(const Tensor& g, const Tensor& w, const Tensor& mask);
Tensor MaskedOuter(const Tensor& x, const Tensor& g, const Tensor& mask);

template <typename T>
using Mat = MatrixMapT<T>;
template <typename T>
using CMat = ConstMatrixMapT<T>;

// W = w .* m as a row-major [in, out] matrix.
template <typename T>
RowMatrixT<T> MaskedWeight(const Tensor& w, const Tensor& mask) {
  const int64_t in = w.dim(0), out = w.dim(1);
  return CMat<T>(w.data<T>(), in, out)
      .cwiseProduct(CMat<T>(mask.data<T>(), in, out));
}

// Multiply-adds per row of x that a plan computes.
int64_t PlanWork(const std::vector<MaskBlock>& plan) {
  int64_t work = 0;
  for (const MaskBlock& k : plan) work += (k.c1 - k.c0) * (k.hi - k.lo);
  return work;
}

// f(r0, len) over rows [0, n): one call for a small product, else at most
// 8 fixed chunks of at least 128 rows, chosen from the sizes alone (as
// autodiff/gemm.h does) and spread over the intra-op pool, so the result is
// the same for every thread count. The chunks are larger than gemm.h's:
// each runs one small GEMM per block of the plan, and on one thread smaller
// chunks cost more than they save (MAF64d at batch 256: 32-row chunks
// took 5% longer).
template <typename F>
void ForRowChunks(int64_t n, int64_t work_per_row, const F& f) {
  constexpr int64_t kMinRows = 128;
  if (n * work_per_row < internal::kParallelFlops || n < 2 * kMinRows) {
    f(0, n);
    return;
  }
  int64_t block = std::max(kMinRows, (n + 7) / 8);
  block = (block + 7) / 8 * 8;
  internal::ParallelChunks((n + block - 1) / block, [&](int64_t i) {
    f(i * block, std::min(block, n - i * block));
  });
}

void CheckShapes(const char* op, const Tensor& x, int64_t rows, const Tensor& w,
                 const Tensor& mask) {
  FT_CHECK(x.rank() == 2 && w.rank() == 2 && mask.shape() == w.shape() &&
               x.dim(1) == rows,
           op, ": input ", x.shape().ToString(), ", weight ",
           w.shape().ToString(), ", mask ", mask.shape().ToString());
  FT_CHECK(!mask.requires_grad(), op, ": the mask must be a constant");
}

}  // namespace

// y = x W + b.
Tensor MaskedAffine(const Tensor& x, const Tensor& w, const Tensor& mask,
                    const Tensor& b) {
  CheckShapes("masked_affine", x, w.dim(0), w, mask);
  const int64_t n = x.dim(0), in = w.dim(0), out = w.dim(1);
  FT_CHECK(!b.defined() || b.shape() == Shape{out}, "masked_affine: bias ",
           b.shape().ToString(), " for weight ", w.shape().ToString());
  const std::vector<MaskBlock> plan = PlanMaskBlocks(mask);
  Op op("masked_affine", {x, w, mask, b});
  Tensor y = op.NewOutput(Shape{n, out});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const RowMatrixT<T> wm = MaskedWeight<T>(w, mask);
    CMat<T> X(x.data<T>(), n, in);
    Mat<T> Y(y.mutable_data<T>(), n, out);
    ForRowChunks(n, PlanWork(plan), [&](int64_t r0, int64_t len) {
      auto yr = Y.middleRows(r0, len);
      if (b.defined())
        yr.rowwise() = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(
            b.data<T>(), out);
      else
        yr.setZero();
      for (const MaskBlock& k : plan)
        if (k.hi > k.lo)
          yr.middleCols(k.c0, k.c1 - k.c0).noalias() +=
              X.block(r0, k.lo, len, k.hi - k.lo) *
              wm.block(k.lo, k.c0, k.hi - k.lo, k.c1 - k.c0);
    });
  });
  return op.Finish(y, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    const Tensor mask = c.input(2);
    if (c.needs_grad(0)) gin[0] = MaskedMatMulT(g, c.input(1), mask);
    if (c.needs_grad(1)) gin[1] = MaskedOuter(c.input(0), g, mask);
    if (c.num_inputs() == 4 && c.needs_grad(3)) gin[3] = Sum(g, 0);
  });
}

namespace {

// z = g W' : [N, out] -> [N, in].
Tensor MaskedMatMulT(const Tensor& g, const Tensor& w, const Tensor& mask) {
  CheckShapes("masked_matmul_t", g, w.dim(1), w, mask);
  const int64_t n = g.dim(0), in = w.dim(0), out = w.dim(1);
  const std::vector<MaskBlock> plan = PlanMaskBlocks(mask);
  Op op("masked_matmul_t", {g, w, mask});
  Tensor z = op.NewOutput(Shape{n, in});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const RowMatrixT<T> wm = MaskedWeight<T>(w, mask);
    CMat<T> G(g.data<T>(), n, out);
    Mat<T> Z(z.mutable_data<T>(), n, in);
    ForRowChunks(n, PlanWork(plan), [&](int64_t r0, int64_t len) {
      auto zr = Z.middleRows(r0, len);
      zr.setZero();
      for (const MaskBlock& k : plan)
        if (k.hi > k.lo)
          zr.middleCols(k.lo, k.hi - k.lo).noalias() +=
              G.block(r0, k.c0, len, k.c1 - k.c0) *
              wm.block(k.lo, k.c0, k.hi - k.lo, k.c1 - k.c0).transpose();
    });
  });
  return op.Finish(z, [](const OpContext& c, const Tensor& gz, Tensor* gin) {
    const Tensor mask = c.input(2);
    if (c.needs_grad(0)) gin[0] = MaskedAffine(gz, c.input(1), mask);
    if (c.needs_grad(1)) gin[1] = MaskedOuter(gz, c.input(0), mask);
  });
}

// o = m .* (x' g) : [in, out], zero off the blocks.
Tensor MaskedOuter(const Tensor& x, const Tensor& g, const Tensor& mask) {
  const int64_t n = x.dim(0), in = mask.dim(0), out = mask.dim(1);
  FT_CHECK(x.rank() == 2 && g.rank() == 2 && x.dim(1) == in &&
               g.dim(1) == out && g.dim(0) == n,
           "masked_outer: x ", x.shape().ToString(), ", g ",
           g.shape().ToString(), ", mask ", mask.shape().ToString());
  const std::vector<MaskBlock> plan = PlanMaskBlocks(mask);
  Op op("masked_outer", {x, g, mask});
  Tensor o = op.NewOutput(Shape{in, out});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    CMat<T> X(x.data<T>(), n, in), G(g.data<T>(), n, out),
        M(mask.data<T>(), in, out);
    Mat<T> O(o.mutable_data<T>(), in, out);
    O.setZero();
    // Blocks write disjoint columns: one chunk per block when large.
    auto one = [&](int64_t i) {
      const MaskBlock& k = plan[i];
      if (k.hi == k.lo) return;
      auto ob = O.block(k.lo, k.c0, k.hi - k.lo, k.c1 - k.c0);
      ob.noalias() = X.middleCols(k.lo, k.hi - k.lo).transpose() *
                     G.middleCols(k.c0, k.c1 - k.c0);
      ob = ob.cwiseProduct(M.block(k.lo, k.c0, k.hi - k.lo, k.c1 - k.c0));
    };
    const int64_t blocks = static_cast<int64_t>(plan.size());
    if (n * PlanWork(plan) < internal::kParallelFlops || blocks == 1)
      for (int64_t i = 0; i < blocks; ++i) one(i);
    else
      internal::ParallelChunks(blocks, one);
  });
  return op.Finish(o, [](const OpContext& c, const Tensor& go, Tensor* gin) {
    const Tensor mask = c.input(2);
    if (c.needs_grad(0)) gin[0] = MaskedMatMulT(c.input(1), go, mask);
    if (c.needs_grad(1)) gin[1] = MaskedAffine(c.input(0), go, mask);
  });
}

}  // namespace
}  // namespace flowtape::nn

// Matrix products with Eigen GEMM: value and backward rule side by side.
#include <Eigen/Dense>

#include "autodiff/check.h"
#include "autodiff/eigen.h"
#include "autodiff/gemm.h"
#include "autodiff/op_kit.h"
#include "autodiff/ops.h"

namespace flowtape {
namespace {

// dA = G B' for A [n, k], B [k, m] (tb: B' given as [m, k]), or only its
// columns [begin, + width) when that is all the sweep wants of input 0:
// G times rows [begin, + width) of B.
Tensor LeftAdjoint(const OpContext& c, const Tensor& g, const Tensor& b,
                   bool tb) {
  int64_t begin, width;
  if (b.rank() == 2 && c.wanted_columns(0, &begin, &width))
    return MatMulT(g, Narrow(b, tb ? 1 : 0, begin, width), false, !tb);
  return MatMulT(g, b, false, !tb);
}

void MatMulBackward(const OpContext& c, const Tensor& g, Tensor* gin) {
  const bool ta = c.saved_int(0), tb = c.saved_int(1);
  // C = op(A) op(B); each case keeps the transposes implicit.
  if (c.needs_grad(0)) {
    Tensor b = c.input(1);
    gin[0] = !ta ? LeftAdjoint(c, g, b, tb) : MatMulT(b, g, tb, true);
  }
  if (c.needs_grad(1)) {
    Tensor a = c.input(0);
    gin[1] = !tb ? MatMulT(a, g, !ta, false) : MatMulT(g, a, true, ta);
  }
}
// The column a Tensor::UnitColumn x is told to hold its nonzeros in (on
// its storage, or on its leaf once recorded), or -1.
int64_t UnitColumnOf(const Tensor& x) {
  int64_t column = -1, width = 0;
  if (const auto& s = x.storage()) {
    column = s->unit_column, width = s->unit_width;
  } else if (const Node* n = x.NodeForOp(/*materialize=*/false);
             n != nullptr && (n->flags & kUnitColumnLeaf)) {
    column = n->saved_ints[0], width = n->saved_ints[1];
  }
  return x.rank() == 2 && x.dim(1) == width ? column : -1;
}
}  // namespace

Tensor MatMulT(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  FT_CHECK(a.rank() == b.rank() && (a.rank() == 2 || a.rank() == 3),
           "matmul: want two [m,k] or two [B,m,k] tensors, got ",
           a.shape().ToString(), " and ", b.shape().ToString());
  const int r = a.rank();
  const int64_t batch = r == 3 ? a.dim(0) : 1;
  FT_CHECK(r == 2 || b.dim(0) == batch,
           "matmul: batch sizes differ: ", a.shape().ToString(), " and ",
           b.shape().ToString());
  const int64_t ar = a.dim(r - 2), ac = a.dim(r - 1);
  const int64_t br = b.dim(r - 2), bc = b.dim(r - 1);
  const int64_t m = ta ? ac : ar, k = ta ? ar : ac;
  const int64_t k2 = tb ? bc : br, n = tb ? br : bc;
  FT_CHECK(k == k2, "matmul: inner sizes differ: ", a.shape().ToString(),
           (ta ? "^T" : ""), " x ", b.shape().ToString(), (tb ? "^T" : ""));
  Op op("matmul", {a, b});
  Tensor out = op.NewOutput(r == 3 ? Shape{batch, m, n} : Shape{m, n});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    const T *pa = a.data<T>(), *pb = b.data<T>();
    if (r == 2) {
      internal::Gemm(pa, ar, ac, ta, pb, br, bc, tb, po, false, UnitColumnOf(a),
                     UnitColumnOf(b));
      return;
    }
    for (int64_t i = 0; i < batch; ++i)
      internal::Gemm(pa + i * ar * ac, ar, ac, ta, pb + i * br * bc, br, bc, tb,
                     po + i * m * n);
  });
  op.SaveInt(ta);
  op.SaveInt(tb);
  return op.Finish(out, MatMulBackward);
}

Tensor Affine(const Tensor& x, const Tensor& w, const Tensor& b) {
  FT_CHECK(x.rank() == 2 && w.rank() == 2 && x.dim(1) == w.dim(0) &&
               b.numel() == w.dim(1) &&
               (b.rank() == 1 || (b.rank() == 2 && b.dim(0) == 1)),
           "affine: want x [n, k], w [k, m], b [m] or [1, m], got ",
           x.shape().ToString(), ", ", w.shape().ToString(), ", ",
           b.shape().ToString());
  const int64_t n = x.dim(0), k = w.dim(0), m = w.dim(1);
  Op op("affine", {x, w, b});
  Tensor y = op.NewOutput(Shape{n, m});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    // Start from the bias: GEMM accumulates into y, so this saves both the
    // zero fill and a second pass for the bias.
    MatrixMapT<T>(y.mutable_data<T>(), n, m).rowwise() =
        Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(b.data<T>(), m);
    internal::Gemm(x.data<T>(), n, k, false, w.data<T>(), k, m, false,
                   y.mutable_data<T>(), /*accumulate=*/true);
  });
  return op.Finish(y, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    if (c.needs_grad(0)) gin[0] = LeftAdjoint(c, g, c.input(1), false);
    if (c.needs_grad(1)) gin[1] = MatMulT(c.input(0), g, true, false);
    if (c.needs_grad(2)) gin[2] = Sum(g, 0, c.input_shape(2).rank() == 2);
  });
}

Tensor MatMul(const Tensor& a, const Tensor& b) {
  if (a.rank() == 3 && b.rank() == 2) {
    // Shared right factor: fold the batch into rows.
    Tensor c =
        MatMulT(Reshape(a, {a.dim(0) * a.dim(1), a.dim(2)}), b, false, false);
    return Reshape(c, {a.dim(0), a.dim(1), b.dim(1)});
  }
  return MatMulT(a, b, false, false);
}

}  // namespace flowtape

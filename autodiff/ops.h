// Differentiable tensor operations. Each op computes its value and, when any
// input requires grad, records one tape node whose backward rule sits next to
// the value code in ops_*.cc (written with these same ops, so every rule is
// itself differentiable: gradients of gradients to any order). They are
// written with the public op kit (op_kit.h), as your own ops can be.
//
// Conventions:
// - float32 and float64: an op's inputs share one dtype (a mismatch fails
//   loudly naming the op and both dtypes); the result has it too. A double
//   operand of an arithmetic operator (x * 2.0) takes the tensor's dtype.
//   Cast converts, with its gradient.
// - Binary elementwise ops broadcast as NumPy does (scalar, row, column ...).
// - Axis arguments may be negative (from the back).
// - Matrices are row-major [rows, cols]; batched matrices are [B, rows, cols].
// - Backward rules never turn a zero adjoint into NaN: where a derivative is
//   infinite (log at 0, sqrt at 0, ...) a zero incoming adjoint stays zero.
// - Shape mistakes abort with the op name and the offending shapes.
#ifndef FLOWTAPE_AUTODIFF_OPS_H_
#define FLOWTAPE_AUTODIFF_OPS_H_

#include <cstdint>
#include <vector>

#include "autodiff/dtype.h"
#include "autodiff/tensor.h"

namespace flowtape {

// ---- elementwise, broadcasting ----
Tensor Add(const Tensor& a, const Tensor& b);
Tensor Sub(const Tensor& a, const Tensor& b);
Tensor Mul(const Tensor& a, const Tensor& b);
Tensor Div(const Tensor& a, const Tensor& b);
// g * d, except that g == 0 gives 0 even where d is inf/NaN. Used by backward
// rules; differentiable.
Tensor GradMul(const Tensor& g, const Tensor& d);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);
Tensor operator-(const Tensor& a);

// y = x converted to `dtype` (x itself if it has it); dx = g converted back.
Tensor Cast(const Tensor& x, DType dtype);

// ---- elementwise, unary ----
Tensor Neg(const Tensor& x);
Tensor Exp(const Tensor& x);
Tensor Log(const Tensor& x);
Tensor Log1p(const Tensor& x);
Tensor Expm1(const Tensor& x);
Tensor Sqrt(const Tensor& x);
Tensor Square(const Tensor& x);
// x^p (x > 0 unless p is an integer); dx = p x^(p-1), except 0 for p = 0
// (also at x = 0). At x = 0 with 0 < p < 1 the derivative is +inf.
Tensor Pow(const Tensor& x, double p);
Tensor Abs(const Tensor& x);  // derivative sign(x), 0 at 0
Tensor Sin(const Tensor& x);
Tensor Cos(const Tensor& x);
Tensor Tanh(const Tensor& x);
Tensor Sigmoid(const Tensor& x);
Tensor Softplus(const Tensor& x);    // log(1 + e^x), stable
Tensor LogSigmoid(const Tensor& x);  // -softplus(-x), stable
Tensor Relu(const Tensor& x);
Tensor Elu(const Tensor& x, double alpha = 1.0);
Tensor LeakyRelu(const Tensor& x, double slope = 0.01);
// Constant 0/1 step of x > 0 (no gradient), used by relu-like rules.
Tensor Step(const Tensor& x);

// ---- reductions ----
Tensor Sum(const Tensor& x);  // scalar
Tensor Sum(const Tensor& x, int axis, bool keepdim = false);
Tensor Mean(const Tensor& x);
Tensor Mean(const Tensor& x, int axis, bool keepdim = false);
// Max: NaN if any reduced entry is NaN (gradient to the first NaN), else the
// maximum with its gradient to the first arg-max.
Tensor Max(const Tensor& x);
Tensor Max(const Tensor& x, int axis, bool keepdim = false);
Tensor LogSumExp(const Tensor& x, int axis, bool keepdim = false);
Tensor Softmax(const Tensor& x, int axis);
Tensor LogSoftmax(const Tensor& x, int axis);

// ---- shape ----
Tensor BroadcastTo(const Tensor& x, const Shape& shape);
Tensor SumTo(const Tensor& x, const Shape& shape);  // adjoint of BroadcastTo
// One dimension may be -1 (inferred). Zero-copy.
Tensor Reshape(const Tensor& x, const std::vector<int64_t>& dims);
Tensor Transpose(const Tensor& x);  // swaps the last two axes
Tensor Permute(const Tensor& x, const std::vector<int>& axes);
Tensor Narrow(const Tensor& x, int axis, int64_t start, int64_t length);
Tensor Concat(const std::vector<Tensor>& xs, int axis);
// Picks `index` entries along `axis` (gather/permute of columns; repeats ok).
Tensor IndexSelect(const Tensor& x, int axis,
                   const std::vector<int64_t>& index);
// cond is a constant 0/1 tensor of any dtype (broadcasting); picks a where
// cond != 0.
Tensor Where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor Clamp(const Tensor& x, double lo, double hi);  // gradient 0 outside

// ---- matrix products ----
// [m,k] x [k,n]; [B,m,k] x [B,k,n]; [B,m,k] x [k,n] (shared right factor).
Tensor MatMul(const Tensor& a, const Tensor& b);
// op(a) op(b) with op = transpose when the flag is set (no copies).
Tensor MatMulT(const Tensor& a, const Tensor& b, bool transpose_a,
               bool transpose_b);
// x w + b: x [n, k], w [k, m], b [m] or [1, m] added to every row, as one
// product that starts from b (no separate pass for the bias).
Tensor Affine(const Tensor& x, const Tensor& w, const Tensor& b);

// ---- convolution (Glow's coupling nets) ----
// x [N, Cin, H, W], w [Cout, Cin, KH, KW] (odd KH, KW), stride 1, zero
// padding "same"; bias [Cout] optional (undefined tensor = none).
Tensor Conv2d(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor());

// ---- linear algebra (square [n, n] unless stated) ----
// A singular (or, for QR's gradient, rank-deficient) matrix is a state that
// data and training dynamics can reach, so it never aborts: the affected
// values or gradients are NaN, which a training loop's NaN guard handles.
// a^-1 b, b [n] or [n, k]. Batched: a [B, n, n], b [B, n] or [B, n, k], one
// solve per member. Gradients gb = a^-T g, ga = -gb x'. Singular (a zero
// pivot in the LU factorization): x is NaN (per member when batched).
Tensor Solve(const Tensor& a, const Tensor& b);
Tensor Inverse(const Tensor& a);  // NaN if singular
// log|det a| for a [n, n] (scalar) or, batched, a [B, n, n] ([B]); gradient
// g a^-T per member. Singular: sign 0, logabsdet -inf, and a gradient of 0
// where its incoming adjoint is 0, else NaN (it is infinite).
struct SlogdetResult {
  double sign;       // -1, 0 or +1 (a constant); batched: sign of prod det
  Tensor logabsdet;  // scalar, or [B] for a [B, n, n]
  Tensor signs;      // constant, logabsdet's shape: each member's sign
};
SlogdetResult Slogdet(const Tensor& a);
Tensor LogAbsDet(const Tensor& a);  // Slogdet(a).logabsdet
// Solves op(t) x = b for triangular t (lower unless upper), b [n] or [n, k].
// A zero on t's diagonal (not unit_diagonal): x is NaN.
Tensor TriangularSolve(const Tensor& t, const Tensor& b, bool upper,
                       bool transpose = false, bool unit_diagonal = false);
struct QrResult {
  Tensor q;  // [m, n] orthonormal columns (reduced QR, m >= n)
  Tensor r;  // [n, n] upper triangular, diagonal made non-negative
};
// Householder QR. Gradient defined for full-rank a with m >= n; NaN when
// diag(R) has an entry <= max(m, n) eps max|R_ii| (numpy's matrix_rank test).
QrResult Qr(const Tensor& a);

}  // namespace flowtape

#endif  // FLOWTAPE_AUTODIFF_OPS_H_

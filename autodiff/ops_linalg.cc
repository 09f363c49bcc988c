// Linear algebra ops (values with Eigen, backward rules with flowtape ops so
// that gradients of gradients work):
//   X = A^-1 B          gB = A^-T G,  gA = -gB X'
//   Y = A^-1            gA = -Y' G Y'
//   l = log|det A|      gA = g A^-T                (sign is a constant)
//   X = op(T)^-1 B      gB = op(T)^-T G, gT = tri(-gB X') (or its transpose)
//   A = Q R (reduced)   gA = [gQ + Q copyltu(M)] R^-T,  M = R gR' - gQ' Q
// where copyltu(M) is the symmetric matrix with M's lower triangle. The QR
// rule holds for any full-rank m >= n: it equals (I - QQ') gQ R^-T + Q gR +
// Q (the part of Q' gQ - gR R' fixed by the skew-symmetry of Q' dQ) R^-T.
// Solve and Slogdet also take batches A [B, n, n]: the same rules per member,
// one tape node for the batch.
// Singular inputs are states that data and training can reach, so they give
// NaN (never an abort): see ops.h.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>

#include "autodiff/check.h"
#include "autodiff/eigen.h"
#include "autodiff/op_kit.h"
#include "autodiff/ops.h"

namespace flowtape {
namespace {

template <typename T>
ConstMatrixMapT<T> AsMat(const Tensor& t) {
  const int64_t cols = t.rank() == 2 ? t.dim(1) : 1;
  return ConstMatrixMapT<T>(t.data<T>(), t.dim(0), cols);
}
template <typename T>
MatrixMapT<T> AsMutableMat(Tensor& t) {
  const int64_t cols = t.rank() == 2 ? t.dim(1) : 1;
  return MatrixMapT<T>(t.mutable_data<T>(), t.dim(0), cols);
}
// A vector right-hand side [n] seen as the matrix [n, 1].
Tensor AsColumns(const Tensor& t) {
  return t.rank() == 1 ? Reshape(t, {t.dim(0), 1}) : t;
}

void CheckSquare(const char* op, const Tensor& a) {
  FT_CHECK(a.rank() == 2 && a.dim(0) == a.dim(1), op,
           ": want a square [n, n] matrix, got ", a.shape().ToString());
}

void CheckRhs(const char* op, const Tensor& a, const Tensor& b) {
  FT_CHECK((b.rank() == 1 || b.rank() == 2) && b.dim(0) == a.dim(0), op,
           ": matrix ", a.shape().ToString(), " and right-hand side ",
           b.shape().ToString(), " do not match (want [n] or [n, k])");
}

// Batched forms: a [B, n, n] with rhs [B, n] or [B, n, k].
void CheckBatchedRhs(const char* op, const Tensor& a, const Tensor& b) {
  FT_CHECK((b.rank() == 2 || b.rank() == 3) && b.dim(0) == a.dim(0) &&
               b.dim(1) == a.dim(1),
           op, ": matrices ", a.shape().ToString(), " and right-hand side ",
           b.shape().ToString(), " do not match (want [B, n] or [B, n, k])");
}
// A batched vector right-hand side [B, n] seen as [B, n, 1].
Tensor AsBatchedColumns(const Tensor& t) {
  return t.rank() == 2 ? Reshape(t, {t.dim(0), t.dim(1), 1}) : t;
}

template <typename T>
bool HasZeroPivot(const Eigen::PartialPivLU<RowMatrixT<T>>& lu) {
  const auto& m = lu.matrixLU();
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    if (m(i, i) == T(0)) return true;
  return false;
}

template <typename T>
constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();

// sign(det m) (+-1, 0 if singular) and log|det m| (-inf if singular) from
// the factorization m = P L U.
template <typename T>
T LogAbsDetOf(const Eigen::PartialPivLU<RowMatrixT<T>>& lu, T* sign) {
  *sign = lu.permutationP().determinant();  // +-1
  T lad = 0;
  const auto& f = lu.matrixLU();
  for (Eigen::Index i = 0; i < f.rows(); ++i) {
    const T u = f(i, i);
    if (u == T(0)) {
      *sign = 0;
      return -std::numeric_limits<T>::infinity();
    }
    if (u < 0) *sign = -*sign;
    lad += std::log(std::fabs(u));
  }
  return lad;
}

// Constant 0/1 mask of a triangle of an [n, n] matrix; `diag` keeps the
// diagonal.
Tensor TriangleMask(int64_t n, bool upper, bool diag, DType dtype) {
  std::vector<double> m(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      if ((upper ? j > i : j < i) || (diag && i == j)) m[i * n + j] = 1.0;
  return Tensor::FromVector({n, n}, m, dtype);
}

// NaN where g is nonzero, else 0: the infinite gradient at a singular
// matrix, times g (a zero adjoint stays zero).
Tensor NaNWhereNonzero(const Tensor& g) {
  return MapUnary("nan_where_nonzero", g, nullptr, [](auto v) {
    using T = decltype(v);
    return v == T(0) ? T(0) : kNaN<T>;
  });
}
}  // namespace

// ---- solve: X = A^-1 B ----
namespace {
Tensor BatchedSolve(const Tensor& a, const Tensor& b);

void SolveBackward(const OpContext& c, const Tensor& g, Tensor* gin) {
  Tensor gb = Solve(Transpose(c.input(0)), g);  // A^-T G
  const bool batched = c.input_shape(0).rank() == 3;
  if (c.needs_grad(0))
    gin[0] = batched ? -MatMulT(AsBatchedColumns(gb),
                                AsBatchedColumns(c.output()), false, true)
                     : -MatMulT(AsColumns(gb), AsColumns(c.output()), false,
                                true);
  if (c.needs_grad(1)) gin[1] = gb;
}
}  // namespace

Tensor Solve(const Tensor& a, const Tensor& b) {
  if (a.rank() == 3) return BatchedSolve(a, b);
  CheckSquare("solve", a);
  CheckRhs("solve", a, b);
  Op op("solve", {a, b});
  Tensor out = op.NewOutput(b.shape());
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    Eigen::PartialPivLU<RowMatrixT<T>> lu(RowMatrixT<T>(AsMat<T>(a)));
    if (HasZeroPivot(lu))
      AsMutableMat<T>(out).setConstant(kNaN<T>);
    else
      AsMutableMat<T>(out) = lu.solve(RowMatrixT<T>(AsMat<T>(b)));
  });
  return op.Finish(out, SolveBackward);
}

namespace {
// Per member i: X_i = A_i^-1 B_i; gB_i = A_i^-T G_i, gA_i = -gB_i X_i'.
Tensor BatchedSolve(const Tensor& a, const Tensor& b) {
  FT_CHECK(a.dim(1) == a.dim(2), "solve: want square [B, n, n] matrices, got ",
           a.shape().ToString());
  CheckBatchedRhs("solve", a, b);
  const int64_t batch = a.dim(0), n = a.dim(1);
  const int64_t k = b.rank() == 3 ? b.dim(2) : 1;
  Op op("solve", {a, b});
  Tensor out = op.NewOutput(b.shape());
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    Eigen::PartialPivLU<RowMatrixT<T>> lu(n);  // storage reused per member
    for (int64_t i = 0; i < batch; ++i) {
      lu.compute(ConstMatrixMapT<T>(a.data<T>() + i * n * n, n, n));
      MatrixMapT<T> x(po + i * n * k, n, k);
      if (HasZeroPivot(lu))
        x.setConstant(kNaN<T>);
      else
        x = lu.solve(ConstMatrixMapT<T>(b.data<T>() + i * n * k, n, k));
    }
  });
  return op.Finish(out, SolveBackward);
}
}  // namespace

// ---- inverse: Y = A^-1 ----
Tensor Inverse(const Tensor& a) {
  CheckSquare("inverse", a);
  Op op("inverse", {a});
  Tensor out = op.NewOutput(a.shape());
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    Eigen::PartialPivLU<RowMatrixT<T>> lu(RowMatrixT<T>(AsMat<T>(a)));
    if (HasZeroPivot(lu))
      AsMutableMat<T>(out).setConstant(kNaN<T>);
    else
      AsMutableMat<T>(out) = lu.inverse();
  });
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    Tensor y = c.output();
    gin[0] = -MatMulT(MatMulT(y, g, true, false), y, false, true);
  });
}

// ---- slogdet: log|det A| = sum_i log|U_ii| of A = P L U ----
namespace {
SlogdetResult BatchedSlogdet(const Tensor& a);
}  // namespace

SlogdetResult Slogdet(const Tensor& a) {
  if (a.rank() == 3) return BatchedSlogdet(a);
  CheckSquare("slogdet", a);
  Op op("slogdet", {a});
  Tensor out = op.NewOutput(Shape{});
  double sign = 0;
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    Eigen::PartialPivLU<RowMatrixT<T>> lu(RowMatrixT<T>(AsMat<T>(a)));
    T s;
    out.mutable_data<T>()[0] = LogAbsDetOf(lu, &s);
    sign = s;
  });
  op.SaveInt(sign == 0.0);
  Tensor t =
      op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
        if (c.saved_int(0) != 0) {  // singular: the gradient is infinite
          gin[0] = BroadcastTo(NaNWhereNonzero(g), c.input_shape(0));
          return;
        }
        gin[0] = g * Transpose(Inverse(c.input(0)));
      });
  return {sign, t, Tensor::Scalar(sign, a.dtype())};
}

namespace {
// Per member i: l_i = log|det A_i|, gA_i = g_i A_i^-T. A singular member has
// l_i = -inf, sign 0 and gradient 0 if g_i = 0, else NaN. saved_int(0)
// counts the singular members; they are the l_i = -inf.
SlogdetResult BatchedSlogdet(const Tensor& a) {
  FT_CHECK(a.dim(1) == a.dim(2),
           "slogdet: want square [B, n, n] matrices, got ",
           a.shape().ToString());
  const int64_t batch = a.dim(0), n = a.dim(1);
  Tensor signs = Tensor::Empty(Shape{batch}, a.dtype());
  Op op("slogdet", {a});
  Tensor out = op.NewOutput(Shape{batch});
  double sign = 1.0;
  int64_t singular = 0;
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* po = out.mutable_data<T>();
    T* ps = signs.mutable_data<T>();
    Eigen::PartialPivLU<RowMatrixT<T>> lu(n);  // storage reused per member
    for (int64_t i = 0; i < batch; ++i) {
      lu.compute(ConstMatrixMapT<T>(a.data<T>() + i * n * n, n, n));
      po[i] = LogAbsDetOf(lu, &ps[i]);
      sign *= ps[i];
      singular += ps[i] == T(0);
    }
  });
  op.SaveInt(singular);
  Tensor t = op.Finish(out, [](const OpContext& c, const Tensor& g,
                               Tensor* gin) {
    Tensor a = c.input(0);
    const int64_t batch = a.dim(0), n = a.dim(1);
    Tensor eye = BroadcastTo(Tensor::Eye(n, a.dtype()), a.shape());
    Tensor gm = g;
    if (c.saved_int(0) != 0) {  // mask the singular members out
      std::vector<double> keep(batch, 1.0);
      const std::vector<double> l = c.output().ToVector();
      for (int64_t i = 0; i < batch; ++i)
        if (l[i] == -std::numeric_limits<double>::infinity()) keep[i] = 0.0;
      Tensor k = Tensor::FromVector({batch}, keep, a.dtype());
      a = Where(Reshape(k, {batch, 1, 1}), a, eye);
      // The singular members' gradient: 0 for a zero adjoint, else NaN.
      gm = Where(k, g, NaNWhereNonzero(g));
    }
    // A^-T = (A')^-1, one batched solve against I.
    gin[0] = Reshape(gm, {batch, 1, 1}) * Solve(Transpose(a), eye);
  });
  return {singular > 0 ? 0.0 : sign, t, signs};
}
}  // namespace

Tensor LogAbsDet(const Tensor& a) { return Slogdet(a).logabsdet; }

// ---- triangular solve: X = op(T)^-1 B ----
Tensor TriangularSolve(const Tensor& t, const Tensor& b, bool upper,
                       bool transpose, bool unit_diagonal) {
  CheckSquare("triangular_solve", t);
  CheckRhs("triangular_solve", t, b);
  const int64_t n = t.dim(0);
  Op op("triangular_solve", {t, b});
  Tensor out = op.NewOutput(b.shape());
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    MatrixMapT<T> x = AsMutableMat<T>(out);
    const T* pt = t.data<T>();
    for (int64_t i = 0; i < n && !unit_diagonal; ++i)
      if (pt[i * n + i] == T(0)) {  // singular
        x.setConstant(kNaN<T>);
        return;
      }
    x = AsMat<T>(b);
    // op(T) is upper triangular iff (upper xor transpose).
    RowMatrixT<T> opt = transpose ? RowMatrixT<T>(AsMat<T>(t).transpose())
                                  : RowMatrixT<T>(AsMat<T>(t));
    const bool up = upper != transpose;
    if (up && unit_diagonal)
      opt.template triangularView<Eigen::UnitUpper>().solveInPlace(x);
    if (up && !unit_diagonal)
      opt.template triangularView<Eigen::Upper>().solveInPlace(x);
    if (!up && unit_diagonal)
      opt.template triangularView<Eigen::UnitLower>().solveInPlace(x);
    if (!up && !unit_diagonal)
      opt.template triangularView<Eigen::Lower>().solveInPlace(x);
  });
  op.SaveInt(upper);
  op.SaveInt(transpose);
  op.SaveInt(unit_diagonal);
  return op.Finish(out, [](const OpContext& c, const Tensor& g, Tensor* gin) {
    const bool upper = c.saved_int(0), transpose = c.saved_int(1),
               unit = c.saved_int(2);
    Tensor t = c.input(0);
    Tensor gb = TriangularSolve(t, g, upper, !transpose, unit);
    if (c.needs_grad(0)) {
      Tensor gbm = AsColumns(gb), xm = AsColumns(c.output());
      // d op(T) = -gB X'; only T's own triangle is an input.
      Tensor gop = transpose ? MatMulT(xm, gbm, false, true)
                             : MatMulT(gbm, xm, false, true);
      gin[0] = -(gop * TriangleMask(t.dim(0), upper, !unit, c.dtype()));
    }
    if (c.needs_grad(1)) gin[1] = gb;
  });
}

// ---- Householder QR, reduced: A [m, n] = Q [m, n] R [n, n] ----
// One tape node holds Q and R packed as [m*n + n*n]; q and r are views.
QrResult Qr(const Tensor& a) {
  FT_CHECK(a.rank() == 2 && a.dim(0) >= a.dim(1),
           "qr: want an [m, n] matrix with m >= n, got ", a.shape().ToString());
  const int64_t m = a.dim(0), n = a.dim(1);
  Op op("qr", {a});
  Tensor packed = op.NewOutput(Shape{m * n + n * n});
  VisitDType(op.dtype(), [&](auto zero) {
    using T = decltype(zero);
    Eigen::HouseholderQR<RowMatrixT<T>> qr{RowMatrixT<T>(AsMat<T>(a))};
    RowMatrixT<T> q = qr.householderQ() * RowMatrixT<T>::Identity(m, n);
    RowMatrixT<T> r =
        qr.matrixQR().topRows(n).template triangularView<Eigen::Upper>();
    for (int64_t i = 0; i < n; ++i)
      if (r(i, i) < 0) {  // make diag(R) >= 0: Q D, D R with D = diag(+-1)
        r.row(i) *= T(-1);
        q.col(i) *= T(-1);
      }
    T* p = packed.mutable_data<T>();
    MatrixMapT<T>(p, m, n) = q;
    MatrixMapT<T>(p + m * n, n, n) = r;
  });
  op.SaveInt(m);
  op.SaveInt(n);
  packed = op.Finish(packed, [](const OpContext& c, const Tensor& g,
                                Tensor* gin) {
    const int64_t m = c.saved_int(0), n = c.saved_int(1);
    Tensor out = c.output();
    Tensor q = Reshape(Narrow(out, 0, 0, m * n), {m, n});
    Tensor r = Reshape(Narrow(out, 0, m * n, n * n), {n, n});
    Tensor gq = Reshape(Narrow(g, 0, 0, m * n), {m, n});
    Tensor gr = Reshape(Narrow(g, 0, m * n, n * n), {n, n});
    // Rank test as numpy's matrix_rank: diag(R) <= max(m, n) eps max|R_ii|.
    // A rank-deficient A (reachable by training) has no gradient: NaN.
    const std::vector<double> pr = r.ToVector();
    double rmax = 0;
    for (int64_t i = 0; i < n; ++i) rmax = std::max(rmax, pr[i * n + i]);
    const double eps = c.dtype() == kFloat32
                           ? std::numeric_limits<float>::epsilon()
                           : std::numeric_limits<double>::epsilon();
    const double tol = m * eps * rmax;
    for (int64_t i = 0; i < n; ++i)
      if (!(pr[i * n + i] > tol)) {
        gin[0] = Tensor::Full({m, n}, kNaN<double>, c.dtype());
        return;
      }
    Tensor mm = MatMulT(r, gr, false, true) - MatMulT(gq, q, true, false);
    Tensor sym =
        mm * TriangleMask(n, /*upper=*/false, /*diag=*/true, c.dtype()) +
        Transpose(mm * TriangleMask(n, false, false, c.dtype()));
    Tensor bq = gq + MatMul(q, sym);
    // gA = B R^-T  <=>  R gA' = B'.
    gin[0] = Transpose(TriangularSolve(r, Transpose(bq), /*upper=*/true));
  });
  return {Reshape(Narrow(packed, 0, 0, m * n), {m, n}),
          Reshape(Narrow(packed, 0, m * n, n * n), {n, n})};
}

}  // namespace flowtape

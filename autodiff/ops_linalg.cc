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
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>

#include "autodiff/check.h"
#include "autodiff/eigen.h"
#include "autodiff/kernels.h"
#include "autodiff/ops.h"

namespace flowtape {
namespace {
using internal::NewOutput;
using internal::Record;
using internal::ShouldRecord;

ConstMatrixMap AsMat(const Tensor& t) {
  const int64_t cols = t.rank() == 2 ? t.dim(1) : 1;
  return ConstMatrixMap(t.data(), t.dim(0), cols);
}
MatrixMap AsMat(Tensor& t) {
  const int64_t cols = t.rank() == 2 ? t.dim(1) : 1;
  return MatrixMap(const_cast<double*>(t.data()), t.dim(0), cols);
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

bool HasZeroPivot(const Eigen::PartialPivLU<RowMatrix>& lu) {
  const auto& m = lu.matrixLU();
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    if (m(i, i) == 0.0) return true;
  return false;
}

Eigen::PartialPivLU<RowMatrix> FactorOrDie(const char* op, const Tensor& a) {
  Eigen::PartialPivLU<RowMatrix> lu(RowMatrix(AsMat(a)));
  FT_CHECK(!HasZeroPivot(lu), op, ": matrix ", a.shape().ToString(),
           " is singular (zero pivot in its LU factorization)");
  return lu;
}

// sign(det m) (+-1, 0 if singular) and log|det m| (-inf if singular) from
// the factorization m = P L U.
double LogAbsDetOf(const Eigen::PartialPivLU<RowMatrix>& lu, double* sign) {
  *sign = lu.permutationP().determinant();  // +-1
  double lad = 0.0;
  const auto& f = lu.matrixLU();
  for (Eigen::Index i = 0; i < f.rows(); ++i) {
    const double u = f(i, i);
    if (u == 0.0) {
      *sign = 0.0;
      return -std::numeric_limits<double>::infinity();
    }
    if (u < 0) *sign = -*sign;
    lad += std::log(std::fabs(u));
  }
  return lad;
}

// Constant 0/1 mask of a triangle of an [n, n] matrix; `diag` keeps the
// diagonal.
Tensor TriangleMask(int64_t n, bool upper, bool diag) {
  Tensor m = Tensor::Zeros({n, n});
  double* p = m.mutable_data();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      if ((upper ? j > i : j < i) || (diag && i == j)) p[i * n + j] = 1.0;
  return m;
}

// True when every entry is exactly zero (a zero adjoint).
bool AllZero(const Tensor& g) {
  const double* p = g.data();
  for (int64_t i = 0, n = g.numel(); i < n; ++i)
    if (p[i] != 0.0) return false;
  return true;
}
}  // namespace

// ---- solve: X = A^-1 B ----
namespace {
Tensor BatchedSolve(const Tensor& a, const Tensor& b);
}  // namespace

Tensor Solve(const Tensor& a, const Tensor& b) {
  if (a.rank() == 3) return BatchedSolve(a, b);
  CheckSquare("solve", a);
  CheckRhs("solve", a, b);
  auto lu = FactorOrDie("solve", a);
  const bool rec = ShouldRecord({&a, &b});
  Tensor out = NewOutput(b.shape(), rec);
  AsMat(out) = lu.solve(RowMatrix(AsMat(b)));
  return Record(out, rec, "solve", {&a, &b},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  Tensor gb = Solve(Transpose(c.in(0)), g);  // A^-T G
                  if (c.node->inputs[0]->requires_grad)
                    gin[0] = -MatMulT(AsColumns(gb), AsColumns(c.out()), false,
                                      true);
                  if (c.node->inputs[1]->requires_grad) gin[1] = gb;
                });
}

namespace {
// Per member i: X_i = A_i^-1 B_i; gB_i = A_i^-T G_i, gA_i = -gB_i X_i'.
Tensor BatchedSolve(const Tensor& a, const Tensor& b) {
  FT_CHECK(a.dim(1) == a.dim(2), "solve: want square [B, n, n] matrices, got ",
           a.shape().ToString());
  CheckBatchedRhs("solve", a, b);
  const int64_t batch = a.dim(0), n = a.dim(1);
  const int64_t k = b.rank() == 3 ? b.dim(2) : 1;
  const bool rec = ShouldRecord({&a, &b});
  Tensor out = NewOutput(b.shape(), rec);
  double* po = const_cast<double*>(out.data());
  Eigen::PartialPivLU<RowMatrix> lu(n);  // storage reused by every member
  for (int64_t i = 0; i < batch; ++i) {
    lu.compute(ConstMatrixMap(a.data() + i * n * n, n, n));
    FT_CHECK(!HasZeroPivot(lu), "solve: matrix ", i, " of ",
             a.shape().ToString(),
             " is singular (zero pivot in its LU factorization)");
    MatrixMap(po + i * n * k, n, k) =
        lu.solve(ConstMatrixMap(b.data() + i * n * k, n, k));
  }
  return Record(out, rec, "solve", {&a, &b},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  Tensor gb = Solve(Transpose(c.in(0)), g);  // A^-T G
                  if (c.node->inputs[0]->requires_grad)
                    gin[0] = -MatMulT(AsBatchedColumns(gb),
                                      AsBatchedColumns(c.out()), false, true);
                  if (c.node->inputs[1]->requires_grad) gin[1] = gb;
                });
}
}  // namespace

// ---- inverse: Y = A^-1 ----
Tensor Inverse(const Tensor& a) {
  CheckSquare("inverse", a);
  auto lu = FactorOrDie("inverse", a);
  const bool rec = ShouldRecord({&a});
  Tensor out = NewOutput(a.shape(), rec);
  AsMat(out) = lu.inverse();
  return Record(out, rec, "inverse", {&a},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  Tensor y = c.out();
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
  Eigen::PartialPivLU<RowMatrix> lu(RowMatrix(AsMat(a)));
  double sign;
  const double lad = LogAbsDetOf(lu, &sign);
  const bool rec = ShouldRecord({&a});
  Tensor out = NewOutput(Shape{}, rec);
  const_cast<double*>(out.data())[0] = lad;
  Tensor t = Record(
      out, rec, "slogdet", {&a},
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        if (c.iaux()[0] != 0) {  // singular: the gradient is infinite
          FT_CHECK(AllZero(g), "slogdet: gradient at the singular matrix ",
                   c.node->inputs[0]->shape.ToString(), " is infinite");
          gin[0] = Tensor::Zeros(c.node->inputs[0]->shape);
          return;
        }
        gin[0] = g * Transpose(Inverse(c.in(0)));
      },
      {{}, {sign == 0.0 ? 1 : 0}});
  return {sign, t, Tensor::Scalar(sign)};
}

namespace {
// Per member i: l_i = log|det A_i|, gA_i = g_i A_i^-T. A singular member has
// l_i = -inf, sign 0 and (as the rank-2 op) gradient 0 if g_i = 0, else it
// aborts. iaux[0] counts the singular members; they are the l_i = -inf.
SlogdetResult BatchedSlogdet(const Tensor& a) {
  FT_CHECK(a.dim(1) == a.dim(2),
           "slogdet: want square [B, n, n] matrices, got ",
           a.shape().ToString());
  const int64_t batch = a.dim(0), n = a.dim(1);
  Tensor signs = Tensor::Empty(Shape{batch});
  const bool rec = ShouldRecord({&a});
  Tensor out = NewOutput(Shape{batch}, rec);
  double* po = const_cast<double*>(out.data());
  double* ps = signs.mutable_data();
  double sign = 1.0;
  int64_t singular = 0;
  Eigen::PartialPivLU<RowMatrix> lu(n);  // storage reused by every member
  for (int64_t i = 0; i < batch; ++i) {
    lu.compute(ConstMatrixMap(a.data() + i * n * n, n, n));
    po[i] = LogAbsDetOf(lu, &ps[i]);
    sign *= ps[i];
    singular += ps[i] == 0.0;
  }
  Tensor t =
      Record(out, rec, "slogdet", {&a},
             [](const OpContext& c, const Tensor& g, Tensor* gin) {
               Tensor a = c.in(0);
               const int64_t batch = a.dim(0), n = a.dim(1);
               Tensor eye = BroadcastTo(Tensor::Eye(n), a.shape());
               Tensor gm = g;
               if (c.iaux()[0] != 0) {  // mask the singular members out
                 Tensor keep = Tensor::Ones(Shape{batch});
                 const double* pl = c.out().data();
                 for (int64_t i = 0; i < batch; ++i) {
                   if (pl[i] != -std::numeric_limits<double>::infinity())
                     continue;
                   FT_CHECK(g.data()[i] == 0.0,
                            "slogdet: gradient at the singular ", "matrix ", i,
                            " of ", a.shape().ToString(), " is infinite");
                   keep.mutable_data()[i] = 0.0;
                 }
                 a = Where(Reshape(keep, {batch, 1, 1}), a, eye);
                 gm = g * keep;
               }
               // A^-T = (A')^-1, one batched solve against I.
               gin[0] = Reshape(gm, {batch, 1, 1}) * Solve(Transpose(a), eye);
             },
             {{}, {singular}});
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
  if (!unit_diagonal) {
    const double* pt = t.data();
    for (int64_t i = 0; i < n; ++i)
      FT_CHECK(pt[i * n + i] != 0.0, "triangular_solve: matrix ",
               t.shape().ToString(), " has a zero on its diagonal (row ", i,
               ")");
  }
  const bool rec = ShouldRecord({&t, &b});
  Tensor out = NewOutput(b.shape(), rec);
  MatrixMap x = AsMat(out);
  x = AsMat(b);
  // op(T) is upper triangular iff (upper xor transpose).
  RowMatrix opt =
      transpose ? RowMatrix(AsMat(t).transpose()) : RowMatrix(AsMat(t));
  const bool up = upper != transpose;
  if (up && unit_diagonal)
    opt.triangularView<Eigen::UnitUpper>().solveInPlace(x);
  if (up && !unit_diagonal) opt.triangularView<Eigen::Upper>().solveInPlace(x);
  if (!up && unit_diagonal)
    opt.triangularView<Eigen::UnitLower>().solveInPlace(x);
  if (!up && !unit_diagonal) opt.triangularView<Eigen::Lower>().solveInPlace(x);
  return Record(out, rec, "triangular_solve", {&t, &b},
                [](const OpContext& c, const Tensor& g, Tensor* gin) {
                  const bool upper = c.iaux()[0], transpose = c.iaux()[1],
                             unit = c.iaux()[2];
                  Tensor t = c.in(0);
                  Tensor gb = TriangularSolve(t, g, upper, !transpose, unit);
                  if (c.node->inputs[0]->requires_grad) {
                    Tensor gbm = AsColumns(gb), xm = AsColumns(c.out());
                    // d op(T) = -gB X'; only T's own triangle is an input.
                    Tensor gop = transpose ? MatMulT(xm, gbm, false, true)
                                           : MatMulT(gbm, xm, false, true);
                    gin[0] = -(gop * TriangleMask(t.dim(0), upper, !unit));
                  }
                  if (c.node->inputs[1]->requires_grad) gin[1] = gb;
                },
                {{}, {upper, transpose, unit_diagonal}});
}

// ---- Householder QR, reduced: A [m, n] = Q [m, n] R [n, n] ----
// One tape node holds Q and R packed as [m*n + n*n]; q and r are views.
QrResult Qr(const Tensor& a) {
  FT_CHECK(a.rank() == 2 && a.dim(0) >= a.dim(1),
           "qr: want an [m, n] matrix with m >= n, got ", a.shape().ToString());
  const int64_t m = a.dim(0), n = a.dim(1);
  Eigen::HouseholderQR<RowMatrix> qr{RowMatrix(AsMat(a))};
  RowMatrix q = qr.householderQ() * RowMatrix::Identity(m, n);
  RowMatrix r = qr.matrixQR().topRows(n).triangularView<Eigen::Upper>();
  for (int64_t i = 0; i < n; ++i)
    if (r(i, i) < 0) {  // make diag(R) >= 0: Q D, D R with D = diag(+-1)
      r.row(i) *= -1.0;
      q.col(i) *= -1.0;
    }
  const bool rec = ShouldRecord({&a});
  Tensor packed = NewOutput(Shape{m * n + n * n}, rec);
  double* p = const_cast<double*>(packed.data());
  MatrixMap(p, m, n) = q;
  MatrixMap(p + m * n, n, n) = r;
  packed = Record(
      packed, rec, "qr", {&a},
      [](const OpContext& c, const Tensor& g, Tensor* gin) {
        const int64_t m = c.iaux()[0], n = c.iaux()[1];
        Tensor out = c.out();
        Tensor q = Reshape(Narrow(out, 0, 0, m * n), {m, n});
        Tensor r = Reshape(Narrow(out, 0, m * n, n * n), {n, n});
        Tensor gq = Reshape(Narrow(g, 0, 0, m * n), {m, n});
        Tensor gr = Reshape(Narrow(g, 0, m * n, n * n), {n, n});
        // Rank test as numpy's matrix_rank: diag(R) <= max(m, n) eps max|R_ii|.
        const double* pr = r.data();
        double rmax = 0;
        for (int64_t i = 0; i < n; ++i) rmax = std::max(rmax, pr[i * n + i]);
        const double tol = m * std::numeric_limits<double>::epsilon() * rmax;
        for (int64_t i = 0; i < n; ++i)
          FT_CHECK(pr[i * n + i] > tol,
                   "qr: gradient undefined for the rank-deficient input ",
                   c.node->inputs[0]->shape.ToString(), " (R[", i, ",", i,
                   "] = ", pr[i * n + i], ")");
        Tensor mm = MatMulT(r, gr, false, true) - MatMulT(gq, q, true, false);
        Tensor sym = mm * TriangleMask(n, /*upper=*/false, /*diag=*/true) +
                     Transpose(mm * TriangleMask(n, false, false));
        Tensor bq = gq + MatMul(q, sym);
        // gA = B R^-T  <=>  R gA' = B'.
        gin[0] = Transpose(TriangularSolve(r, Transpose(bq), /*upper=*/true));
      },
      {{}, {m, n}});
  return {Reshape(Narrow(packed, 0, 0, m * n), {m, n}),
          Reshape(Narrow(packed, 0, m * n, n * n), {n, n})};
}

}  // namespace flowtape

// The GEMM (autodiff/gemm.h): right against Eigen and bitwise identical for
// every thread count; and its structured-zeros shortcut: products whose op(A)
// or op(B) has few nonzero columns equal the full product, for every
// transpose combination, overwrite and +=, and NaN or Inf in the skipped
// factor still reaches the result.
#include "autodiff/gemm.h"

#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "autodiff/eigen.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/rng.h"
#include "autodiff/tape.h"
#include "autodiff/thread_pool.h"
#include "gtest/gtest.h"

namespace flowtape {
namespace {

template <typename T>
RowMatrixT<T> Random(int64_t r, int64_t c, Rng& rng) {
  RowMatrixT<T> m(r, c);
  for (int64_t i = 0; i < m.size(); ++i) m.data()[i] = T(rng.Normal());
  return m;
}

// Shapes above the split threshold: tall (rows split), short and wide
// (columns split); all four transpose combinations; overwrite and +=.
template <typename T>
void CheckGemm() {
  Rng rng(3);
  // (Large k too: Eigen blocks k by sizes that depend on m and n, the case
  // where a thread-dependent chunking would change the sums.)
  for (auto [m, k, n] : {std::array<int64_t, 3>{1100, 96, 80},
                         std::array<int64_t, 3>{40, 256, 900},
                         std::array<int64_t, 3>{300, 3000, 48},
                         std::array<int64_t, 3>{7, 5, 3}}) {
    if (m > 7) {
      EXPECT_GE(m * k * n, internal::kParallelFlops) << m << k << n;
    }
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        RowMatrixT<T> a = ta ? Random<T>(k, m, rng) : Random<T>(m, k, rng);
        RowMatrixT<T> b = tb ? Random<T>(n, k, rng) : Random<T>(k, n, rng);
        RowMatrixT<T> c0 = Random<T>(m, n, rng);
        RowMatrixT<T> want = (ta ? RowMatrixT<T>(a.transpose()) : a) *
                             (tb ? RowMatrixT<T>(b.transpose()) : b);
        std::vector<RowMatrixT<T>> got;
        for (int threads : {1, 3}) {
          SetIntraOpThreads(threads);
          RowMatrixT<T> c = c0;
          internal::Gemm(a.data(), a.rows(), a.cols(), ta, b.data(), b.rows(),
                         b.cols(), tb, c.data(), /*accumulate=*/true);
          got.push_back(c);
        }
        const double tol = sizeof(T) == 4 ? 1e-4 : 1e-12;
        EXPECT_LT((got[0] - c0 - want).cwiseAbs().maxCoeff(),
                  tol * (1 + want.cwiseAbs().maxCoeff()))
            << m << "x" << k << "x" << n << " " << ta << tb;
        EXPECT_TRUE(got[0] == got[1]) << "thread counts disagree: " << m << "x"
                                      << k << "x" << n << " " << ta << tb;
      }
  }
}

// Once, not per pool size: CheckGemm sets the thread counts it compares
// (the repeats only cost time, minutes under ThreadSanitizer).
TEST(Gemm, IsRightAndBitwiseTheSameForEveryThreadCount) {
  CheckGemm<double>();
  CheckGemm<float>();
  SetIntraOpThreads(1);
}

// op(X) with all columns but `keep` zeroed, stored transposed when t.
template <typename T>
RowMatrixT<T> Sparse(int64_t rows, int64_t cols, const std::vector<int>& keep,
                     bool t, Rng& rng) {
  RowMatrixT<T> x = RowMatrixT<T>::Zero(rows, cols);
  for (int j : keep) x.col(j) = Random<T>(rows, 1, rng);
  return t ? RowMatrixT<T>(x.transpose()) : x;
}

template <typename T>
RowMatrixT<T> Op(const RowMatrixT<T>& x, bool t) {
  return t ? RowMatrixT<T>(x.transpose()) : x;
}

// C (+)= op(A) op(B) by the library's Gemm.
template <typename T>
RowMatrixT<T> Product(const RowMatrixT<T>& a, bool ta, const RowMatrixT<T>& b,
                      bool tb, const RowMatrixT<T>& c0, bool accumulate) {
  RowMatrixT<T> c = c0;
  internal::Gemm(a.data(), a.rows(), a.cols(), ta, b.data(), b.rows(), b.cols(),
                 tb, c.data(), accumulate);
  return c;
}

template <typename T>
void CheckStructuredZeros() {
  const int64_t m = 96, k = 64, n = 48;
  const double tol = sizeof(T) == 4 ? 1e-5 : 1e-14;
  Rng rng(5);
  // Sparse op(A) columns (the unit-seeded reverse pass), then sparse op(B)
  // columns (its weight gradient), then a dense pair (no shortcut).
  for (int which : {0, 1, 2})
    for (const std::vector<int>& keep :
         {std::vector<int>{}, std::vector<int>{7}, std::vector<int>{0, 5, 11}})
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (bool accumulate : {false, true}) {
            RowMatrixT<T> a = which == 0 ? Sparse<T>(m, k, keep, ta, rng)
                                         : Op(Random<T>(m, k, rng), ta);
            RowMatrixT<T> b = which == 1 ? Sparse<T>(k, n, keep, tb, rng)
                                         : Op(Random<T>(k, n, rng), tb);
            RowMatrixT<T> c0 = Random<T>(m, n, rng);
            RowMatrixT<T> want = Op(a, ta) * Op(b, tb);
            if (accumulate) want += c0;
            RowMatrixT<T> got = Product(a, ta, b, tb, c0, accumulate);
            EXPECT_LT((got - want).cwiseAbs().maxCoeff(),
                      tol * (1 + want.cwiseAbs().maxCoeff()))
                << which << " " << keep.size() << " " << ta << tb << accumulate;
          }
}

TEST(Gemm, StructuredZerosGiveTheFullProduct) {
  CheckStructuredZeros<double>();
  CheckStructuredZeros<float>();
}

// 0 * NaN is NaN: a zero column of op(A) facing a NaN row of op(B), and a
// zero column of op(B) facing an Inf in op(A), poison the result as the
// full product does.
TEST(Gemm, NonFiniteValuesFacingTheZerosPropagate) {
  const int64_t m = 96, k = 64, n = 48;
  Rng rng(6);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  RowMatrix a = Sparse<double>(m, k, {3}, false, rng);
  RowMatrix b = Random<double>(k, n, rng);
  b(10, 4) = nan;  // row 10 of op(B) meets the zero column 10 of op(A)
  RowMatrix c =
      Product<double>(a, false, b, false, RowMatrix::Zero(m, n), false);
  for (int64_t r = 0; r < m; ++r) EXPECT_TRUE(std::isnan(c(r, 4))) << r;
  EXPECT_FALSE(std::isnan(c(0, 5)));

  RowMatrix a2 = Random<double>(m, k, rng);
  a2(2, 9) = std::numeric_limits<double>::infinity();
  RowMatrix b2 = Sparse<double>(k, n, {1}, false, rng);
  RowMatrix c2 =
      Product<double>(a2, false, b2, false, RowMatrix::Zero(m, n), false);
  for (int64_t q = 0; q < n; ++q) {
    if (q == 1) continue;
    EXPECT_TRUE(std::isnan(c2(2, q))) << q;  // Inf * 0
  }
  EXPECT_FALSE(std::isnan(c2(3, 0)));
}

// Tensor::UnitColumn tells the product its zeros (no scan): the same result
// as the scanned product of the same values, forward and in a recorded
// backward (the leaf carries it), and forgotten once the values are written.
TEST(Gemm, ToldUnitColumnsGiveTheScannedProduct) {
  Rng rng(8);
  const int64_t n = 256, d = 64;
  Tensor w = Tensor::Randn({48, d}, rng).set_requires_grad(true);
  Tensor h = Tensor::Randn({n, d}, rng), g = Tensor::Randn({n, 48}, rng);
  Tensor told = Tensor::UnitColumn(n, d, 5);
  auto scanned = [&] {  // the same values, nothing told
    return Tensor::FromVector(told.shape(), told.ToVector());
  };
  auto same = [](const Tensor& a, const Tensor& b) {
    return a.ToVector() == b.ToVector();
  };
  EXPECT_TRUE(
      same(MatMulT(told, w, false, true), MatMulT(scanned(), w, false, true)));
  EXPECT_TRUE(
      same(MatMulT(h, told, true, false), MatMulT(h, scanned(), true, false)));
  // dW = G' e: the told seed read back from its leaf.
  EXPECT_TRUE(same(Grad({MatMulT(told, w, false, true)}, {w}, {g})[0],
                   Grad({MatMulT(scanned(), w, false, true)}, {w}, {g})[0]));
  // A write anywhere makes the zeros unknown again, on the storage and on
  // the leaf the tape keeps for it.
  told.mutable_data<double>()[3 * d + 7] = 2.0;
  Tensor plain = scanned();
  EXPECT_TRUE(
      same(MatMulT(told, w, false, true), MatMulT(plain, w, false, true)));
  EXPECT_TRUE(
      same(MatMulT(h, told, true, false), MatMulT(h, plain, true, false)));
  EXPECT_TRUE(same(Grad({MatMulT(told, w, false, true)}, {w}, {g})[0],
                   Grad({MatMulT(plain, w, false, true)}, {w}, {g})[0]));
  Tape::Get().Reset();
}

}  // namespace
}  // namespace flowtape

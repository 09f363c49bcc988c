// The intra-op pool and the chunked GEMM: every chunk runs exactly once,
// nested and concurrent calls are safe, and products are bitwise identical
// for every thread count (and right against Eigen).
#include "autodiff/thread_pool.h"

#include <atomic>
#include <thread>
#include <vector>

#include "autodiff/eigen.h"
#include "autodiff/gemm.h"
#include "autodiff/rng.h"
#include "gtest/gtest.h"

namespace flowtape {
namespace {

class ThreadPoolTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { SetIntraOpThreads(GetParam()); }
  void TearDown() override { SetIntraOpThreads(1); }
};

TEST_P(ThreadPoolTest, EveryChunkRunsExactlyOnce) {
  for (int64_t chunks : {0, 1, 2, 7, 100}) {
    std::vector<std::atomic<int>> hits(chunks);
    internal::ParallelChunks(chunks, [&](int64_t i) { hits[i]++; });
    for (int64_t i = 0; i < chunks; ++i) EXPECT_EQ(hits[i].load(), 1) << i;
  }
}

TEST_P(ThreadPoolTest, NestedAndConcurrentCallsRunEverything) {
  std::atomic<int64_t> total{0};
  auto job = [&] {
    for (int rep = 0; rep < 50; ++rep)
      internal::ParallelChunks(8, [&](int64_t) {
        internal::ParallelChunks(4, [&](int64_t j) { total += j + 1; });
      });
  };
  std::thread a(job), b(job);
  a.join();
  b.join();
  EXPECT_EQ(total.load(), 2 * 50 * 8 * (1 + 2 + 3 + 4));
}

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
TEST(ThreadPool, GemmIsRightAndBitwiseTheSameForEveryThreadCount) {
  CheckGemm<double>();
  CheckGemm<float>();
  SetIntraOpThreads(1);
}

INSTANTIATE_TEST_SUITE_P(Threads, ThreadPoolTest, ::testing::Values(1, 2, 4));

}  // namespace
}  // namespace flowtape

// The intra-op pool: every chunk runs exactly once, and nested and
// concurrent calls are safe (the GEMM across thread counts: gemm_test.cc).
#include "autodiff/thread_pool.h"

#include <atomic>
#include <thread>
#include <vector>

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

INSTANTIATE_TEST_SUITE_P(Threads, ThreadPoolTest, ::testing::Values(1, 2, 4));

}  // namespace
}  // namespace flowtape

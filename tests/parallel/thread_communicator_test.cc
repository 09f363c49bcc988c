// ThreadCommunicator: all-reduce sums in rank order (the same bits on every
// rank, matching a sequential sum, even where the order changes the result),
// uneven and tiny buffers, broadcast from any root, barriers order memory,
// and failures (an aborting rank, a rank that never arrives, a thread the
// system cannot start) reach every peer as a Status instead of a hang.
#include "parallel/thread_communicator.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "autodiff/rng.h"
#include "autodiff/status_macros.h"
#include "gtest/gtest.h"

namespace flowtape::parallel {
namespace {

// Rank r's buffer: n values that differ per rank (some huge, some tiny, so
// the summation order shows in the low bits).
template <typename T>
std::vector<T> Values(int rank, int64_t n) {
  Rng rng(7, rank);
  std::vector<T> v(n);
  for (int64_t i = 0; i < n; ++i)
    v[i] = static_cast<T>(rng.Normal() * (i % 3 == 0 ? 1e8 : 1e-3));
  return v;
}

template <typename T>
void CheckAllReduce(int ranks, int64_t n) {
  std::vector<T> want = Values<T>(0, n);
  for (int q = 1; q < ranks; ++q) {
    std::vector<T> x = Values<T>(q, n);
    for (int64_t i = 0; i < n; ++i) want[i] += x[i];
  }
  std::vector<std::vector<T>> got(ranks);
  absl::Status s = RunOnThreads(ranks, [&](Communicator& c) {
    got[c.rank()] = Values<T>(c.rank(), n);
    return c.AllReduceSum(absl::MakeSpan(got[c.rank()]));
  });
  ASSERT_TRUE(s.ok()) << s;
  for (int r = 0; r < ranks; ++r)
    for (int64_t i = 0; i < n; ++i)  // bit-identical, not merely close
      ASSERT_EQ(got[r][i], want[i]) << "rank " << r << " element " << i;
}

// A group's options validate: a non-positive timeout or a negative spin is
// InvalidArgument from RunOnThreads, before any thread starts.
TEST(ThreadCommunicator, BadGroupOptionsAreAStatus) {
  EXPECT_TRUE(ThreadGroupOptions{}.Validate().ok());
  ThreadGroupOptions o;
  o.timeout = absl::ZeroDuration();
  bool ran = false;
  absl::Status s = RunOnThreads(
      2,
      [&](Communicator&) {
        ran = true;
        return absl::OkStatus();
      },
      o);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("timeout must be positive"), std::string::npos);
  EXPECT_FALSE(ran);
  o = ThreadGroupOptions{};
  o.spin = -absl::Microseconds(1);
  EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ThreadCommunicator, AllReduceIsTheRankOrderSumOnEveryRank) {
  for (int ranks : {1, 2, 3, 4})
    for (int64_t n : {0, 1, 2, 7, 1000, 4099}) {
      SCOPED_TRACE(testing::Message() << ranks << " ranks, n = " << n);
      CheckAllReduce<double>(ranks, n);
      CheckAllReduce<float>(ranks, n);
    }
}

TEST(ThreadCommunicator, AllReduceSumsInRankOrder) {
  // (1e16 + 1) - 1e16 = 0 in rank order; any other order gives 1 or 2.
  std::vector<double> x = {1e16, 1.0, -1e16};
  std::vector<std::vector<double>> got(3);
  ASSERT_TRUE(RunOnThreads(3, [&](Communicator& c) {
                got[c.rank()] = std::vector<double>(5, x[c.rank()]);
                return c.AllReduceSum(absl::MakeSpan(got[c.rank()]));
              }).ok());
  for (const auto& g : got)
    for (double v : g) EXPECT_EQ(v, 0.0);
}

TEST(ThreadCommunicator, RepeatedCollectivesAreReproducible) {
  // Many back-to-back collectives (the barrier's generations wrap around
  // ranks arriving in any order), twice: the same bits both times.
  auto run = [] {
    std::vector<double> out;
    RunOnThreads(3, [&](Communicator& c) {
      std::vector<double> v = Values<double>(c.rank(), 37);
      for (int k = 0; k < 300; ++k) {
        FT_RETURN_IF_ERROR(c.AllReduceSum(absl::MakeSpan(v)));
        for (double& e : v) e *= 1.0 / 3.0;
      }
      if (c.rank() == 0) out = v;
      return absl::OkStatus();
    }).IgnoreError();
    return out;
  };
  std::vector<double> a = run(), b = run();
  ASSERT_EQ(a.size(), 37u);
  EXPECT_EQ(a, b);
}

TEST(ThreadCommunicator, BroadcastCopiesTheRoot) {
  for (int root : {0, 1, 2}) {
    std::vector<std::vector<float>> got(3);
    ASSERT_TRUE(RunOnThreads(3, [&](Communicator& c) {
                  got[c.rank()] = Values<float>(c.rank(), 11);
                  return c.Broadcast(absl::MakeSpan(got[c.rank()]), root);
                }).ok());
    for (int r = 0; r < 3; ++r) EXPECT_EQ(got[r], Values<float>(root, 11));
  }
}

TEST(ThreadCommunicator, BarrierOrdersWrites) {
  // Plain (non-atomic) writes before the barrier are visible after it.
  std::vector<int> slot(4, 0);
  std::vector<int> seen(4, 0);
  ASSERT_TRUE(RunOnThreads(4, [&](Communicator& c) {
                slot[c.rank()] = c.rank() + 1;
                FT_RETURN_IF_ERROR(c.Barrier());
                int sum = 0;
                for (int v : slot) sum += v;
                seen[c.rank()] = sum;
                return absl::OkStatus();
              }).ok());
  EXPECT_EQ(seen, std::vector<int>(4, 10));
}

TEST(ThreadCommunicator, RunOnThreadsReturnsRankZerosResult) {
  absl::StatusOr<int> r =
      RunOnThreads(3, [](Communicator& c) -> absl::StatusOr<int> {
        std::vector<double> v = {static_cast<double>(c.rank())};
        FT_RETURN_IF_ERROR(c.AllReduceSum(absl::MakeSpan(v)));
        return 100 * c.rank() + static_cast<int>(v[0]);
      });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, 3);  // rank 0: 0 + (0 + 1 + 2)
  EXPECT_EQ(
      RunOnThreads(0, [](Communicator&) { return absl::OkStatus(); }).code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(ThreadCommunicator, AFailedRankReleasesItsPeers) {
  // Rank 2 fails before the collective the others wait in: they return its
  // error, and so does the launcher.
  std::atomic<int> released{0};
  absl::Status s = RunOnThreads(3, [&](Communicator& c) -> absl::Status {
    if (c.rank() == 2) return absl::NotFoundError("no data file");
    std::vector<double> v(4, 1.0);
    absl::Status t = c.AllReduceSum(absl::MakeSpan(v));
    if (!t.ok()) ++released;
    EXPECT_NE(t.message().find("no data file"), absl::string_view::npos) << t;
    return t;
  });
  EXPECT_EQ(released.load(), 2);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "rank 2: no data file");
}

TEST(ThreadCommunicator, APeerThatNeverArrivesTimesOut) {
  ThreadGroupOptions o;
  o.timeout = absl::Milliseconds(50);
  auto comms = ThreadCommunicator::MakeGroup(2, o);
  // Rank 1 never calls: rank 0 gives up after the timeout, and the group
  // stays failed for every later collective of any rank.
  absl::Status s = comms[0]->Barrier();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_NE(s.message().find("rank 0 waited"), absl::string_view::npos) << s;
  std::vector<double> v(3);
  EXPECT_EQ(comms[1]->AllReduceSum(absl::MakeSpan(v)).code(),
            absl::StatusCode::kDeadlineExceeded);
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
// Threads the system cannot start (here: an address-space limit leaves no
// room for their stacks) are a ResourceExhausted status, not an uncaught
// std::system_error; the ranks already started return.
// In a child process: limits the address space to what is in use plus 32
// MiB (not enough for 255 thread stacks) and exits 0 iff RunOnThreads(256)
// returns ResourceExhausted naming the thread it could not start.
void RunWithoutRoomForThreads() {
  long pages = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld", &pages) != 1) pages = 0;
    std::fclose(f);
  }
  const rlim_t limit =
      static_cast<rlim_t>(pages) * ::sysconf(_SC_PAGE_SIZE) + (32 << 20);
  rlimit r;
  r.rlim_cur = r.rlim_max = limit;
  if (pages <= 0 || ::setrlimit(RLIMIT_AS, &r) != 0) std::_Exit(3);
  std::atomic<int> ran{0};
  absl::Status s = RunOnThreads(256, [&](Communicator& c) {
    ++ran;
    return c.Barrier();
  });
  const bool named = s.message().find("cannot start the thread of rank") !=
                     absl::string_view::npos;
  const bool ok = s.code() == absl::StatusCode::kResourceExhausted && named &&
                  ran.load() < 256;
  std::_Exit(ok ? 0 : 2);
}

TEST(ThreadCommunicatorDeathTest, ThreadsThatCannotStartAreAStatus) {
  EXPECT_EXIT(RunWithoutRoomForThreads(), ::testing::ExitedWithCode(0), "");
}
#endif

TEST(SoloCommunicator, IsAGroupOfOne) {
  SoloCommunicator c;
  std::vector<double> v = {1.5, -2.0};
  EXPECT_TRUE(c.AllReduceSum(absl::MakeSpan(v)).ok());
  EXPECT_TRUE(c.Broadcast(absl::MakeSpan(v), 0).ok());
  EXPECT_EQ(v, (std::vector<double>{1.5, -2.0}));
  c.Abort(absl::InternalError("x"));
  EXPECT_EQ(c.Barrier().code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace flowtape::parallel

// MpiCommunicator under mpirun (mpi_communicator_test.sh runs it on 1, 2 and
// 3 ranks; every rank runs every test): the all-reduce returns, on every
// rank, the same bits as summing the ranks' buffers in rank order in one
// process (data whose sum depends on the order: magnitudes spanning 16
// decades), for lengths shorter and longer than the group; broadcast from
// every root; barrier. Failure tests (--gtest_filter=MpiFailure.*, a run of
// its own: a failed group leaves MPI unfinalised): a rank's Abort reaches
// every peer blocked in a collective, naming it; a rank that never arrives
// makes the others time out.
#include "parallel/mpi/mpi_communicator.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "autodiff/rng.h"
#include "gtest/gtest.h"

namespace flowtape::parallel::mpi {
namespace {

MpiEnvironment* env = nullptr;

std::unique_ptr<MpiCommunicator> Make(absl::Duration timeout) {
  MpiOptions options;
  options.timeout = timeout;
  return MpiCommunicator::Create(*env, options).value();
}

// Rank r's buffer: normals scaled by 10^k, k uniform in -8..8.
template <typename T>
std::vector<T> Values(int r, int64_t n) {
  Rng rng(100 + r);
  std::vector<T> v(n);
  for (T& x : v)
    x = static_cast<T>(
        rng.Normal() *
        std::pow(10.0, static_cast<double>(rng.UniformInt(17)) - 8));
  return v;
}

template <typename T>
void CheckAllReduce() {
  auto comm = Make(absl::Seconds(60));
  const int size = comm->size();
  int order_matters = 0;
  for (int64_t n : {0, 1, 2, 5, 1000, 4097}) {
    SCOPED_TRACE(absl::StrCat(n, " elements, ", size, " ranks"));
    std::vector<T> buf = Values<T>(comm->rank(), n);
    ASSERT_TRUE(comm->AllReduceSum(absl::MakeSpan(buf)).ok());
    std::vector<T> want = Values<T>(0, n), reversed = Values<T>(size - 1, n);
    for (int r = 1; r < size; ++r) {
      const std::vector<T> x = Values<T>(r, n), y = Values<T>(size - 1 - r, n);
      for (int64_t i = 0; i < n; ++i) {
        want[i] += x[i];
        reversed[i] += y[i];
      }
    }
    ASSERT_EQ(buf.size(), want.size());
    EXPECT_EQ(std::memcmp(buf.data(), want.data(), n * sizeof(T)), 0);
    for (int64_t i = 0; i < n; ++i) order_matters += want[i] != reversed[i];
  }
  // The data can tell the orders apart (two ranks' sums commute).
  if (size >= 3) {
    EXPECT_GT(order_matters, 0);
  }
}

// A non-positive timeout is InvalidArgument, from Validate and from Create.
TEST(MpiCommunicator, BadOptionsAreAStatus) {
  EXPECT_TRUE(MpiOptions{}.Validate().ok());
  MpiOptions zero;
  zero.timeout = absl::ZeroDuration();
  EXPECT_EQ(zero.Validate().code(), absl::StatusCode::kInvalidArgument);
  auto c = MpiCommunicator::Create(*env, zero);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("timeout must be positive"),
            std::string::npos)
      << c.status();
}

TEST(MpiCommunicator, AllReduceDoubleIsTheRankOrderSum) {
  CheckAllReduce<double>();
}
TEST(MpiCommunicator, AllReduceFloatIsTheRankOrderSum) {
  CheckAllReduce<float>();
}

TEST(MpiCommunicator, BroadcastFromEveryRoot) {
  auto comm = Make(absl::Seconds(60));
  for (int root = 0; root < comm->size(); ++root) {
    std::vector<double> d = Values<double>(comm->rank(), 300);
    std::vector<float> f = Values<float>(comm->rank(), 7);
    ASSERT_TRUE(comm->Broadcast(absl::MakeSpan(d), root).ok());
    ASSERT_TRUE(comm->Broadcast(absl::MakeSpan(f), root).ok());
    EXPECT_EQ(d, Values<double>(root, 300));
    EXPECT_EQ(f, Values<float>(root, 7));
  }
  EXPECT_TRUE(comm->Barrier().ok());
  EXPECT_EQ(comm->size(), env->world_size());
  EXPECT_EQ(comm->rank(), env->world_rank());
}

TEST(MpiFailure, AbortReachesEveryPeer) {
  auto comm = Make(absl::Seconds(60));
  const int last = comm->size() - 1;
  if (comm->rank() == last) {
    comm->Abort(absl::InternalError("planted"));
    const absl::Status s = comm->Barrier();
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
    EXPECT_EQ(s.message(), absl::StrCat("rank ", last, ": planted"));
    return;
  }
  std::vector<double> buf(10, 1.0);
  const absl::Status s = comm->AllReduceSum(absl::MakeSpan(buf));
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(s.message(), absl::StrCat("mpi: rank ", comm->rank(),
                                      " stopped at all_reduce_sum: rank ", last,
                                      " failed: rank ", last, ": planted"));
  EXPECT_EQ(comm->Barrier(), s);  // every later collective
}

TEST(MpiFailure, AbsentRankTimesOut) {
  auto comm = Make(absl::Milliseconds(300));
  auto after = Make(absl::Seconds(60));
  if (comm->rank() == 0) {  // never arrives; joins the others afterwards
    EXPECT_TRUE(after->Barrier().ok());
    return;
  }
  const absl::Status s = comm->Barrier();
  EXPECT_TRUE(after->Barrier().ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(absl::StrContains(
      s.message(), absl::StrCat("mpi: rank ", comm->rank(), " waited ")))
      << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "at barrier")) << s;
}

}  // namespace
}  // namespace flowtape::parallel::mpi

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  auto env = flowtape::parallel::mpi::MpiEnvironment::Create();
  if (!env.ok()) {
    fprintf(stderr, "%s\n", env.status().ToString().c_str());
    return 2;
  }
  flowtape::parallel::mpi::env = env->get();
  // Only rank 0 prints gtest's report (every rank's failures still print).
  if ((*env)->world_rank() != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  // Every rank reports before any exits (after a failure test the ranks exit
  // without MPI_Finalize, and mpirun then ends the job).
  printf("rank %d: %s\n", (*env)->world_rank(), failed ? "FAILED" : "OK");
  fflush(stdout);
  auto comm = flowtape::parallel::mpi::MpiCommunicator::Create(**env);
  if (!comm.ok() || !(*comm)->Barrier().ok()) return 2;
  return failed;
}

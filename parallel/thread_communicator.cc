#include "parallel/thread_communicator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/status_macros.h"

namespace flowtape::parallel {

absl::Status ThreadGroupOptions::Validate() const {
  if (timeout <= absl::ZeroDuration() || spin < absl::ZeroDuration())
    return absl::InvalidArgumentError(absl::StrCat(
        "parallel: the timeout must be positive and the spin >= 0, got ",
        absl::FormatDuration(timeout), " and ", absl::FormatDuration(spin)));
  return absl::OkStatus();
}

namespace internal {

using Clock = std::chrono::steady_clock;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Shared state of one group: a generation-counting barrier that spins, then
// blocks, and the buffers published for the current collective.
struct Group {
  Group(int n, const ThreadGroupOptions& o)
      : size(n),
        spin(absl::ToChronoNanoseconds(o.spin)),
        timeout(absl::ToChronoNanoseconds(o.timeout)),
        buffers(n, nullptr),
        lengths(n, 0) {}

  absl::Status Failure() {
    std::lock_guard<std::mutex> lock(mu);
    return failure;
  }
  void Fail(const absl::Status& s) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (failure.ok()) failure = s;
      failed.store(true, std::memory_order_release);
    }
    cv.notify_all();
  }

  // Returns once all `size` ranks have called it (or the group failed).
  absl::Status Wait(int rank) {
    if (failed.load(std::memory_order_acquire)) return Failure();
    const uint64_t gen = generation.load(std::memory_order_acquire);
    if (arrived.fetch_add(1, std::memory_order_acq_rel) == size - 1) {
      arrived.store(0, std::memory_order_relaxed);
      {
        std::lock_guard<std::mutex> lock(mu);
        generation.store(gen + 1, std::memory_order_release);
      }
      cv.notify_all();
      return absl::OkStatus();
    }
    auto passed = [&] {
      return generation.load(std::memory_order_acquire) != gen;
    };
    const Clock::time_point start = Clock::now();
    for (int i = 1;; ++i) {
      if (passed()) return absl::OkStatus();
      if (failed.load(std::memory_order_acquire)) return Failure();
      if (i % 64 == 0 && Clock::now() - start >= spin) break;
      CpuRelax();
    }
    std::unique_lock<std::mutex> lock(mu);
    const Clock::time_point deadline = start + timeout;
    while (!passed() && !failed.load(std::memory_order_acquire)) {
      if (cv.wait_until(lock, deadline) == std::cv_status::timeout &&
          !passed() && !failed.load(std::memory_order_acquire)) {
        if (failure.ok())
          failure = absl::DeadlineExceededError(
              absl::StrCat("parallel: rank ", rank, " waited ",
                           std::chrono::duration<double>(timeout).count(),
                           " s at a collective for its peers (timeout)"));
        failed.store(true, std::memory_order_release);
        lock.unlock();
        cv.notify_all();
        return Failure();
      }
    }
    if (passed()) return absl::OkStatus();
    return failure;
  }

  const int size;
  const Clock::duration spin, timeout;
  std::atomic<int> arrived{0};
  std::atomic<uint64_t> generation{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::condition_variable cv;
  absl::Status failure;  // guarded by mu
  // Published by each rank before the first barrier of a collective.
  std::vector<void*> buffers;
  std::vector<int64_t> lengths;
};

absl::Status RunRanks(int n,
                      const std::function<absl::Status(Communicator&)>& fn,
                      const ThreadGroupOptions& options) {
  if (n < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("parallel: need at least 1 thread, got ", n));
  FT_RETURN_IF_ERROR(options.Validate());
  auto comms = ThreadCommunicator::MakeGroup(n, options);
  auto run = [&](int r) {
    absl::Status s = fn(*comms[r]);
    if (!s.ok()) comms[r]->Abort(s);
  };
  std::vector<std::thread> threads;
  threads.reserve(n - 1);
  absl::Status started;
  for (int r = 1; r < n && started.ok(); ++r) {
    try {
      threads.emplace_back(run, r);
    } catch (const std::system_error& e) {
      // Out of threads (EAGAIN) or memory for a stack: fail the group, so
      // the ranks already running return from their next collective.
      started = absl::ResourceExhaustedError(
          absl::StrCat("parallel: cannot start the thread of rank ", r, " of ",
                       n, ": ", e.what()));
      comms[0]->Abort(started);
    }
  }
  if (started.ok()) run(0);
  for (std::thread& t : threads) t.join();
  return comms[0]->failure();
}

}  // namespace internal

std::vector<std::unique_ptr<ThreadCommunicator>> ThreadCommunicator::MakeGroup(
    int n, const ThreadGroupOptions& options) {
  FT_CHECK(n >= 1, "ThreadCommunicator::MakeGroup: n = ", n);
  auto group = std::make_shared<internal::Group>(n, options);
  std::vector<std::unique_ptr<ThreadCommunicator>> comms;
  for (int r = 0; r < n; ++r)
    comms.emplace_back(new ThreadCommunicator(group, r));
  return comms;
}

int ThreadCommunicator::size() const { return group_->size; }

absl::Status ThreadCommunicator::failure() const { return group_->Failure(); }

void ThreadCommunicator::Abort(const absl::Status& status) {
  group_->Fail(absl::Status(
      status.code(), absl::StrCat("rank ", rank_, ": ", status.message())));
}

absl::Status ThreadCommunicator::Barrier() { return group_->Wait(rank_); }

template <typename T>
absl::Status ThreadCommunicator::AllReduce(absl::Span<T> buffer) {
  internal::Group& g = *group_;
  if (g.size == 1) return g.failed.load() ? g.Failure() : absl::OkStatus();
  const int64_t n = static_cast<int64_t>(buffer.size());
  g.buffers[rank_] = buffer.data();
  g.lengths[rank_] = n;
  FT_RETURN_IF_ERROR(g.Wait(rank_));
  for (int q = 0; q < g.size; ++q)
    FT_CHECK(g.lengths[q] == n, "all_reduce_sum: rank ", rank_, " has ", n,
             " elements, rank ", q, " has ", g.lengths[q]);
  const int64_t lo = n * rank_ / g.size, hi = n * (rank_ + 1) / g.size;
  constexpr int64_t kBlock = 512;
  T sum[kBlock];
  for (int64_t b = lo; b < hi; b += kBlock) {
    const int64_t len = std::min(kBlock, hi - b);
    const T* first = static_cast<const T*>(g.buffers[0]) + b;
    std::copy(first, first + len, sum);
    for (int q = 1; q < g.size; ++q) {
      const T* x = static_cast<const T*>(g.buffers[q]) + b;
      for (int64_t i = 0; i < len; ++i) sum[i] += x[i];
    }
    for (int q = 0; q < g.size; ++q)
      std::copy(sum, sum + len, static_cast<T*>(g.buffers[q]) + b);
  }
  return g.Wait(rank_);
}

template <typename T>
absl::Status ThreadCommunicator::Bcast(absl::Span<T> buffer, int root) {
  internal::Group& g = *group_;
  FT_CHECK(root >= 0 && root < g.size, "broadcast: root ", root, " of ", g.size,
           " ranks");
  if (g.size == 1) return g.failed.load() ? g.Failure() : absl::OkStatus();
  const int64_t n = static_cast<int64_t>(buffer.size());
  g.buffers[rank_] = buffer.data();
  g.lengths[rank_] = n;
  FT_RETURN_IF_ERROR(g.Wait(rank_));
  FT_CHECK(g.lengths[root] == n, "broadcast: rank ", rank_, " has ", n,
           " elements, root ", root, " has ", g.lengths[root]);
  if (rank_ != root && n > 0)
    std::memcpy(buffer.data(), g.buffers[root], n * sizeof(T));
  return g.Wait(rank_);
}

absl::Status ThreadCommunicator::AllReduceSum(absl::Span<float> buffer) {
  return AllReduce(buffer);
}
absl::Status ThreadCommunicator::AllReduceSum(absl::Span<double> buffer) {
  return AllReduce(buffer);
}
absl::Status ThreadCommunicator::Broadcast(absl::Span<float> buffer, int root) {
  return Bcast(buffer, root);
}
absl::Status ThreadCommunicator::Broadcast(absl::Span<double> buffer,
                                           int root) {
  return Bcast(buffer, root);
}

}  // namespace flowtape::parallel

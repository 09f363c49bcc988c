// ThreadCommunicator: a Communicator (communicator.h) whose N ranks are
// threads of one process sharing memory, and RunOnThreads, the launcher that
// runs an SPMD function on N threads.
//
// AllReduceSum: every rank publishes its buffer, then rank r sums the slice
// [n r / N, n (r + 1) / N) over ranks 0..N-1 in rank order and writes the sum
// into every rank's buffer (a reduce-scatter and all-gather in one pass; each
// element is summed by exactly one thread, in rank order, so the result is
// the same bits on every rank and in every run). Broadcast copies the root's
// buffer. Each collective is two group barriers.
//
// Waiting: a rank first spins for `spin` (the usual case on an idle machine:
// peers arrive within microseconds), then blocks on a condition variable, so
// a rank waiting for a descheduled peer on a loaded machine gives its core
// away. A rank still waiting after `timeout` fails the group
// (DeadlineExceeded naming the rank); a rank that calls Abort fails it with
// its status. Either way every rank's current and later collectives return
// the group's first failure.
//
// RunOnThreads(n, fn): runs fn(communicator) for ranks 0..n-1, rank 0 on the
// calling thread and the others on new threads, waits for all, and returns
// rank 0's result (fn returns absl::Status or absl::StatusOr<R>) or the
// group's first failure: a rank whose fn returns an error aborts the group
// with it, so peers blocked in a collective return instead of hanging. A
// thread the system cannot start (std::thread throws) fails the group with
// ResourceExhausted "rank 0: parallel: cannot start the thread of rank r of
// n: <what>"; rank 0's fn then does not run.
#ifndef FLOWTAPE_PARALLEL_THREAD_COMMUNICATOR_H_
#define FLOWTAPE_PARALLEL_THREAD_COMMUNICATOR_H_

#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "autodiff/status_macros.h"
#include "parallel/communicator.h"

namespace flowtape::parallel {

struct ThreadGroupOptions {
  absl::Duration timeout = absl::Minutes(10);    // per wait at a collective
  absl::Duration spin = absl::Microseconds(50);  // before blocking
  // InvalidArgument unless timeout > 0 and spin >= 0 (RunOnThreads checks).
  absl::Status Validate() const;
};

namespace internal {
struct Group;
}  // namespace internal

class ThreadCommunicator final : public Communicator {
 public:
  // The n communicators of one new group (ranks 0..n-1), n >= 1.
  static std::vector<std::unique_ptr<ThreadCommunicator>> MakeGroup(
      int n, const ThreadGroupOptions& options = {});

  int rank() const override { return rank_; }
  int size() const override;
  absl::Status AllReduceSum(absl::Span<float> buffer) override;
  absl::Status AllReduceSum(absl::Span<double> buffer) override;
  absl::Status Broadcast(absl::Span<float> buffer, int root) override;
  absl::Status Broadcast(absl::Span<double> buffer, int root) override;
  absl::Status Barrier() override;
  void Abort(const absl::Status& status) override;
  // The group's first failure (ok while none).
  absl::Status failure() const;

 private:
  ThreadCommunicator(std::shared_ptr<internal::Group> group, int rank)
      : group_(std::move(group)), rank_(rank) {}
  template <typename T>
  absl::Status AllReduce(absl::Span<T> buffer);
  template <typename T>
  absl::Status Bcast(absl::Span<T> buffer, int root);
  std::shared_ptr<internal::Group> group_;
  int rank_;
};

namespace internal {
absl::Status RunRanks(int n,
                      const std::function<absl::Status(Communicator&)>& fn,
                      const ThreadGroupOptions& options);
}  // namespace internal

// See the header comment. n < 1 is InvalidArgument.
template <typename F>
auto RunOnThreads(int n, F&& fn, const ThreadGroupOptions& options = {}) {
  using Out = std::invoke_result_t<F&, Communicator&>;
  if constexpr (std::is_same_v<Out, absl::Status>) {
    return internal::RunRanks(n, fn, options);
  } else {
    using R = typename Out::value_type;
    std::optional<R> result;
    absl::Status s = internal::RunRanks(
        n,
        [&](Communicator& c) -> absl::Status {
          FT_ASSIGN_OR_RETURN(R r, fn(c));
          if (c.rank() == 0) result.emplace(std::move(r));
          return absl::OkStatus();
        },
        options);
    if (!s.ok()) return Out(s);
    return Out(*std::move(result));
  }
}

}  // namespace flowtape::parallel

#endif  // FLOWTAPE_PARALLEL_THREAD_COMMUNICATOR_H_

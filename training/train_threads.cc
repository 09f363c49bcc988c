#include "training/train_threads.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "parallel/thread_communicator.h"

namespace flowtape::training {

absl::StatusOr<int> ThreadCount(const TrainOptions& o, int64_t train_rows) {
  const int64_t batch =
      std::max<int64_t>(1, std::min(o.batch_size, train_rows));
  if (o.threads < 0 || o.threads > kMaxThreads)
    return absl::InvalidArgumentError(
        absl::StrCat("train_nll: threads must be in [0, ", kMaxThreads,
                     "], got ", o.threads));
  if (o.threads > 0)
    return static_cast<int>(std::min<int64_t>(o.threads, batch));
  int requested = 1;
  if (const char* env = std::getenv("FLOWTAPE_NUM_THREADS");
      env != nullptr && *env != '\0') {
    if (!absl::SimpleAtoi(env, &requested) || requested < 1 ||
        requested > kMaxThreads)
      return absl::InvalidArgumentError(
          absl::StrCat("FLOWTAPE_NUM_THREADS must be an integer in [1, ",
                       kMaxThreads, "], got '", env, "'"));
  }
  const int64_t cap =
      std::max<int64_t>(1, batch / std::max<int64_t>(1, o.min_rows_per_thread));
  return static_cast<int>(std::min<int64_t>(requested, cap));
}

absl::StatusOr<ThreadedTraining> TrainNllThreads(const ReplicaFactory& make,
                                                 const TrainData& data,
                                                 const TrainOptions& options) {
  if (options.communicator != nullptr)
    return absl::InvalidArgumentError(
        "train_nll_threads: options.communicator must be null (the threads "
        "make their own)");
  const int64_t rows =
      data.train.defined() && data.train.rank() > 0 ? data.train.dim(0) : 0;
  FT_ASSIGN_OR_RETURN(int threads, ThreadCount(options, rows));
  if (!(options.peer_timeout_seconds > 0))
    return absl::InvalidArgumentError(absl::StrCat(
        "train_nll_threads: peer_timeout_seconds must be > 0, got ",
        options.peer_timeout_seconds));
  parallel::ThreadGroupOptions group;
  group.timeout = absl::Seconds(options.peer_timeout_seconds);
  std::vector<Replica> replicas(threads);
  absl::StatusOr<TrainResult> r = parallel::RunOnThreads(
      threads,
      [&](parallel::Communicator& comm) -> absl::StatusOr<TrainResult> {
        FT_ASSIGN_OR_RETURN(Replica replica, make(comm.rank()));
        if (replica.model == nullptr || !replica.nll ||
            replica.optimizer == nullptr)
          return absl::InvalidArgumentError(absl::StrCat(
              "train_nll_threads: the factory's replica ", comm.rank(),
              " lacks a model, an nll or an optimizer"));
        replicas[comm.rank()] = replica;
        TrainOptions mine = options;
        mine.communicator = &comm;
        return TrainNllOutcome(*replica.model, replica.nll, *replica.optimizer,
                               data, mine);
      },
      group);
  if (!r.ok()) return r.status();
  if (!r->model_status.ok())
    return absl::FailedPreconditionError(
        absl::StrCat("train_nll: ", r->message));
  return ThreadedTraining{*std::move(r), replicas[0]};
}

}  // namespace flowtape::training

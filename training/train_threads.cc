#include "training/train_threads.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"
#include "parallel/thread_communicator.h"

namespace flowtape::training {

absl::StatusOr<int> ThreadCount(int threads, int64_t batch,
                                int64_t min_rows_per_thread) {
  batch = std::max<int64_t>(1, batch);
  if (threads < 0 || threads > kMaxThreads)
    return absl::InvalidArgumentError(absl::StrCat(
        "threads must be in [0, ", kMaxThreads, "], got ", threads));
  if (threads > 0) return static_cast<int>(std::min<int64_t>(threads, batch));
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
      std::max<int64_t>(1, batch / std::max<int64_t>(1, min_rows_per_thread));
  return static_cast<int>(std::min<int64_t>(requested, cap));
}

absl::StatusOr<int> ThreadCount(const TrainOptions& o, int64_t train_rows) {
  absl::StatusOr<int> n = ThreadCount(
      o.threads, std::min(o.batch_size, train_rows), o.min_rows_per_thread);
  if (!n.ok())
    return absl::Status(n.status().code(),
                        absl::StrCat("train_nll: ", n.status().message()));
  return n;
}

absl::StatusOr<ReplicaThreads> PlanReplicaThreads(
    const parallel::Communicator* communicator, int threads, int64_t batch,
    int64_t min_rows_per_thread, double peer_timeout_seconds,
    absl::string_view op) {
  if (communicator != nullptr)
    return absl::InvalidArgumentError(
        absl::StrCat(op,
                     ": options.communicator must be null (the threads make "
                     "their own)"));
  ReplicaThreads plan;
  absl::StatusOr<int> n = ThreadCount(threads, batch, min_rows_per_thread);
  if (!n.ok())
    return absl::Status(n.status().code(),
                        absl::StrCat(op, ": ", n.status().message()));
  plan.threads = *n;
  if (!(peer_timeout_seconds > 0))
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": peer_timeout_seconds must be > 0, got ", peer_timeout_seconds));
  plan.group.timeout = absl::Seconds(peer_timeout_seconds);
  return plan;
}

absl::StatusOr<ReplicaThreads> PlanReplicaThreads(const TrainOptions& o,
                                                  int64_t batch,
                                                  absl::string_view op) {
  return PlanReplicaThreads(o.communicator, o.threads, batch,
                            o.min_rows_per_thread, o.peer_timeout_seconds, op);
}

absl::StatusOr<ThreadedTraining> TrainNllThreads(const ReplicaFactory& make,
                                                 const TrainData& data,
                                                 const TrainOptions& options) {
  const int64_t rows =
      data.train.defined() && data.train.rank() > 0 ? data.train.dim(0) : 0;
  FT_ASSIGN_OR_RETURN(
      ReplicaThreads plan,
      PlanReplicaThreads(options, std::min(options.batch_size, rows),
                         "train_nll_threads"));
  FT_ASSIGN_OR_RETURN(
      auto run,
      (RunReplicaThreads<Replica, TrainOptions, TrainResult>(
          plan, make,
          [](const Replica& r) {
            return r.model != nullptr && r.nll && r.optimizer != nullptr;
          },
          "train_nll_threads", "a model, an nll or an optimizer", options,
          [&data](const Replica& r, const TrainOptions& o) {
            return TrainNllOutcome(*r.model, r.nll, *r.optimizer, data, o);
          })));
  if (!run.first.model_status.ok())
    return absl::FailedPreconditionError(
        absl::StrCat("train_nll: ", run.first.message));
  return ThreadedTraining{std::move(run.first), std::move(run.second)};
}

absl::StatusOr<ThreadedReverseKl> TrainReverseKlThreads(
    const ReverseKlReplicaFactory& make, const ReverseKlOptions& options) {
  FT_ASSIGN_OR_RETURN(
      ReplicaThreads plan,
      PlanReplicaThreads(options.communicator, options.threads,
                         options.batch_size, options.min_rows_per_thread,
                         options.peer_timeout_seconds,
                         "train_reverse_kl_threads"));
  FT_ASSIGN_OR_RETURN(
      auto run,
      (RunReplicaThreads<ReverseKlReplica, ReverseKlOptions, ReverseKlResult>(
          plan, make,
          [](const ReverseKlReplica& r) {
            return r.model != nullptr && r.log_p && r.optimizer != nullptr;
          },
          "train_reverse_kl_threads", "a model, a log density or an optimizer",
          options,
          [](const ReverseKlReplica& r, const ReverseKlOptions& o) {
            return TrainReverseKl(*r.model, r.log_p, *r.optimizer, o);
          })));
  return ThreadedReverseKl{std::move(run.first), std::move(run.second)};
}

}  // namespace flowtape::training

// Data-parallel training on the cores of one machine: N replicas on N
// threads (parallel::ThreadCommunicator), each running a training loop on
// its own model, loss and optimizer under the group's communicator (train.h
// and training/data_parallel.h, "Data parallel"). TrainNllThreads runs
// TrainNllOutcome, TrainReverseKlThreads TrainReverseKl (reverse_kl.h);
// TrainFlowMatchingThreads (train_flow_matching.h) is built the same way on
// PlanReplicaThreads.
//
// Thread count: options.threads in [1, kMaxThreads] runs exactly that many
// (at most the global batch size). options.threads == 0 takes
// FLOWTAPE_NUM_THREADS (1 when unset; at most kMaxThreads) and caps it at
// floor(B / min_rows_per_thread) (at least 1), B the global batch: a replica
// needs enough rows for its step to outweigh the per-step synchronisation
// (benchmarks/parallel_bench: a 64-D MAF at B = 256 is not faster on two
// threads; at B = 4096 it is ~1.9x).
//
// The training loops themselves train the one replica they are given:
// called without a communicator, TrainNll, TrainFlowMatching and
// TrainReverseKl refuse options.threads > 1 (InvalidArgument naming the
// runner here) rather than silently training on one thread.
//
// The factory is called once per rank, on that rank's thread, concurrently:
// it must build an independent replica (its own parameters and optimizer;
// shared read-only data is fine). The replicas' initial values do not
// matter beyond rank 0's: rank 0's state is broadcast before training.
#ifndef FLOWTAPE_TRAINING_TRAIN_THREADS_H_
#define FLOWTAPE_TRAINING_TRAIN_THREADS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "autodiff/status_macros.h"
#include "flows/flow_model.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "parallel/communicator.h"
#include "parallel/thread_communicator.h"
#include "training/reverse_kl.h"
#include "training/train.h"

namespace flowtape::training {

struct Replica {
  std::shared_ptr<const nn::Module> model;
  NllFn nll;  // may refer to *model (kept alive by `model`)
  std::shared_ptr<nn::Optimizer> optimizer;
};
using ReplicaFactory = std::function<absl::StatusOr<Replica>(int rank)>;

struct ThreadedTraining {
  TrainResult result;  // rank 0's
  Replica replica;     // rank 0's: the trained model
};

// The most replicas (threads) a run may ask for, by options.threads or
// FLOWTAPE_NUM_THREADS.
inline constexpr int kMaxThreads = 4096;

// The number of replicas for a global batch of `batch` rows (see above).
// InvalidArgument for a malformed FLOWTAPE_NUM_THREADS or threads outside
// [0, kMaxThreads].
absl::StatusOr<int> ThreadCount(int threads, int64_t batch,
                                int64_t min_rows_per_thread);
// The number TrainNllThreads runs for these options and data.
absl::StatusOr<int> ThreadCount(const TrainOptions& options,
                                int64_t train_rows);

// How a runner runs its replicas: the count and the group's options.
struct ReplicaThreads {
  int threads = 1;
  parallel::ThreadGroupOptions group;
};
// InvalidArgument (prefixed "<op>: ") for a communicator (the runner makes
// its own), the errors of ThreadCount, peer_timeout_seconds <= 0.
absl::StatusOr<ReplicaThreads> PlanReplicaThreads(
    const parallel::Communicator* communicator, int threads, int64_t batch,
    int64_t min_rows_per_thread, double peer_timeout_seconds,
    absl::string_view op);
absl::StatusOr<ReplicaThreads> PlanReplicaThreads(const TrainOptions& options,
                                                  int64_t batch,
                                                  absl::string_view op);

// The runners' common part: plan.threads replicas, rank r's built by
// make(r) (InvalidArgument "<op>: the factory's replica r lacks <parts>"
// unless complete(replica)) and trained by train(replica, options with the
// rank's communicator and the thread count); rank 0's result and replica.
template <typename ReplicaT, typename OptionsT, typename ResultT>
absl::StatusOr<std::pair<ResultT, ReplicaT>> RunReplicaThreads(
    const ReplicaThreads& plan,
    const std::function<absl::StatusOr<ReplicaT>(int rank)>& make,
    const std::function<bool(const ReplicaT&)>& complete, absl::string_view op,
    absl::string_view parts, const OptionsT& options,
    const std::function<absl::StatusOr<ResultT>(const ReplicaT&,
                                                const OptionsT&)>& train) {
  std::vector<ReplicaT> replicas(plan.threads);
  absl::StatusOr<ResultT> r = parallel::RunOnThreads(
      plan.threads,
      [&](parallel::Communicator& comm) -> absl::StatusOr<ResultT> {
        FT_ASSIGN_OR_RETURN(ReplicaT replica, make(comm.rank()));
        if (!complete(replica))
          return absl::InvalidArgumentError(absl::StrCat(
              op, ": the factory's replica ", comm.rank(), " lacks ", parts));
        replicas[comm.rank()] = replica;
        OptionsT mine = options;
        mine.communicator = &comm;
        mine.threads = plan.threads;
        return train(replica, mine);
      },
      plan.group);
  if (!r.ok()) return r.status();
  return std::make_pair(*std::move(r), replicas[0]);
}

// Errors: those of TrainNll (a final model that fails the check is
// FailedPrecondition), the factory's, InvalidArgument for a replica without
// a model, nll or optimizer; options.communicator must be null.
absl::StatusOr<ThreadedTraining> TrainNllThreads(const ReplicaFactory& make,
                                                 const TrainData& data,
                                                 const TrainOptions& options);

struct ReverseKlReplica {
  std::shared_ptr<const flows::FlowModel> model;
  LogDensityFn log_p;
  std::shared_ptr<nn::Optimizer> optimizer;
};
using ReverseKlReplicaFactory =
    std::function<absl::StatusOr<ReverseKlReplica>(int rank)>;
struct ThreadedReverseKl {
  ReverseKlResult result;    // rank 0's
  ReverseKlReplica replica;  // rank 0's: the trained model
};

// TrainReverseKl on N replicas (N from options.threads, batch_size and
// min_rows_per_thread as above). Errors: those of TrainReverseKl, the
// factory's, InvalidArgument for a replica without a model, log density or
// optimizer; options.communicator must be null.
absl::StatusOr<ThreadedReverseKl> TrainReverseKlThreads(
    const ReverseKlReplicaFactory& make, const ReverseKlOptions& options);

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_TRAIN_THREADS_H_

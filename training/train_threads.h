// Data-parallel NLL training on the cores of one machine: N replicas on N
// threads (parallel::ThreadCommunicator), each running TrainNllOutcome
// (train.h, "Data parallel") on its own model, nll and optimizer.
//
// Thread count: options.threads in [1, kMaxThreads] runs exactly that many
// (at most the global batch size). options.threads == 0 takes
// FLOWTAPE_NUM_THREADS (1 when unset; at most kMaxThreads) and caps it at
// floor(B / min_rows_per_thread) (at least 1), B the global batch: a replica
// needs enough rows for its step to outweigh the per-step synchronisation
// (benchmarks/parallel_bench: a 64-D MAF at B = 256 is not faster on two
// threads; at B = 4096 it is ~1.9x).
//
// The factory is called once per rank, on that rank's thread, concurrently:
// it must build an independent replica (its own parameters and optimizer;
// shared read-only data is fine). The replicas' initial values do not
// matter beyond rank 0's: rank 0's state is broadcast before training.
#ifndef FLOWTAPE_TRAINING_TRAIN_THREADS_H_
#define FLOWTAPE_TRAINING_TRAIN_THREADS_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "nn/module.h"
#include "nn/optim.h"
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

// The number of replicas TrainNllThreads runs for these options and data
// (see above). InvalidArgument for a malformed FLOWTAPE_NUM_THREADS or
// threads outside [0, kMaxThreads].
absl::StatusOr<int> ThreadCount(const TrainOptions& options,
                                int64_t train_rows);

// Errors: those of TrainNll (a final model that fails the check is
// FailedPrecondition), the factory's, InvalidArgument for a replica without
// a model, nll or optimizer; options.communicator must be null.
absl::StatusOr<ThreadedTraining> TrainNllThreads(const ReplicaFactory& make,
                                                 const TrainData& data,
                                                 const TrainOptions& options);

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_TRAIN_THREADS_H_

// The data-parallel machinery shared by the training loops (TrainNll,
// TrainFlowMatching, TrainReverseKl): one rank's view of a global batch of B
// rows split over a Communicator's N ranks, and the collectives each loop
// makes around its step.
//
//   shard:          rank r takes rows [B r / N, B (r + 1) / N) of every
//                   global batch (b_r rows, uneven when N does not divide
//                   B), and weighs its gradient by w_r = b_r / B;
//   Reduce:         after this rank's Backward of its shard's mean loss,
//                     g <- sum_r w_r g_r,   l_k <- sum_r w_r l_k,r
//                   for every parameter gradient g and every reported loss
//                   l_k (parallel/tensor_collectives.h: buckets in the
//                   model's dtype, summed in rank order, the same bits on
//                   every rank), i.e. the gradient and loss of the global
//                   batch's mean; the NaN guard's decision, clipping and the
//                   optimizer step are then identical on every rank;
//   BroadcastState: rank 0's tensors (NanGuard::tensors(): parameters,
//                   buffers, optimizer state, a parameter EMA) on every rank;
//   ShareVerdict:   rank 0's Status (a model check, a checkpoint write) on
//                   every rank.
// BatchOrder is the row order every rank follows: epochs of
// data::Permutation(n, Rng(seed, kOrderStream)), B rows per batch, a new
// permutation when fewer than B rows remain.
//
// With N = 1 (parallel::SoloCommunicator) the shard is the batch and every
// collective is free, so a loop written against this is also the
// single-process loop.
#ifndef FLOWTAPE_TRAINING_DATA_PARALLEL_H_
#define FLOWTAPE_TRAINING_DATA_PARALLEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "autodiff/rng.h"
#include "autodiff/tensor.h"
#include "parallel/communicator.h"
#include "parallel/tensor_collectives.h"
#include "training/train.h"

namespace flowtape::training {

// Rng streams of the loops (with the run's seed).
inline constexpr uint64_t kOrderStream = ~uint64_t{0};      // row order
inline constexpr uint64_t kInitStream = ~uint64_t{0} - 1;   // init pass
inline constexpr uint64_t kCheckStream = ~uint64_t{0} - 2;  // model check
// Per-rank draws that cannot be shared (TrainReverseKl's stochastic layers
// with N > 1): stream kRankStream + r.
inline constexpr uint64_t kRankStream = uint64_t{1} << 32;

class DataParallel {
 public:
  // `op` prefixes messages ("train_nll"). InvalidArgument when the global
  // batch has fewer rows than there are ranks.
  static absl::StatusOr<DataParallel> Create(parallel::Communicator& comm,
                                             std::vector<Tensor> params,
                                             int64_t batch, size_t bucket_bytes,
                                             absl::string_view op);

  parallel::Communicator& comm() const { return *comm_; }
  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }
  bool lead() const { return comm_->rank() == 0; }
  int64_t batch() const { return batch_; }
  int64_t begin() const { return begin_; }  // this rank's shard
  int64_t end() const { return end_; }
  double weight() const { return weight_; }  // (end - begin) / batch

  // Rank 0's values of `tensors` on every rank.
  absl::Status BroadcastState(const std::vector<Tensor>& tensors);
  // The weighted all-reduce above: `losses` hold this rank's shard means on
  // entry and the global means on return; gradients likewise. Records the
  // time and bytes in r (ranks, allreduce_seconds, allreduce_bytes_per_step).
  // Internal when the losses are finite but a parameter has a gradient on
  // some ranks only (the replicas' graphs differ). Free when N = 1.
  absl::Status Reduce(absl::Span<double> losses, TrainResult* r);
  // Rank 0's verdict on every rank (others get its code and a message
  // naming rank 0); the communicator's own failure is the outer Status.
  absl::StatusOr<absl::Status> ShareVerdict(const absl::Status& s);
  // Rank 0's verdict as a Status (either failure).
  absl::Status AgreeWithRankZero(const absl::Status& s);
  // Mean nll over all rows of x: EvaluateNll (train.h) when N = 1, else its
  // data-parallel form (chunks split over ranks; the same value for any N).
  absl::StatusOr<double> Evaluate(const NllFn& nll, const Tensor& x,
                                  const Tensor& context, int64_t batch_size);

 private:
  DataParallel(parallel::Communicator& comm, std::vector<Tensor> params,
               int64_t batch, size_t bucket_bytes, absl::string_view op);
  parallel::Communicator* comm_;
  std::vector<Tensor> params_;
  int64_t batch_, begin_, end_;
  double weight_;
  std::string op_;
  parallel::GradientAllReduce reducer_;
};

// A training loop trains the one replica it is given: `threads` > 1 (the
// thread runners' option, train_threads.h) is InvalidArgument unless the
// call runs under a communicator of exactly that many ranks (as the runner
// makes), naming `runner`, the entry point that runs the replicas.
absl::Status CheckThreadsOption(int threads,
                                const parallel::Communicator* communicator,
                                absl::string_view op, absl::string_view runner);

// The shared row order (see above); rows >= batch >= 1.
class BatchOrder {
 public:
  BatchOrder(int64_t rows, int64_t batch, uint64_t seed);
  // Rows [begin, end) of the next global batch.
  std::vector<int64_t> Next(int64_t begin, int64_t end);
  std::vector<int64_t> Next() { return Next(0, batch_); }
  // The first `count` rows of the batch Next() returns, without advancing
  // (valid before the first Next; count <= batch).
  std::vector<int64_t> Peek(int64_t count);
  // Advances past `batches` global batches (as that many Next() calls, the
  // same permutations drawn): a resumed run's position in its epochs.
  void Skip(int64_t batches);

 private:
  void Refill();
  int64_t rows_, batch_, cursor_ = 0;
  Rng rng_;
  std::vector<int64_t> order_;
};

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_DATA_PARALLEL_H_

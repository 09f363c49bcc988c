#include "training/data_parallel.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/status_macros.h"
#include "data/preprocess.h"

namespace flowtape::training {

absl::StatusOr<DataParallel> DataParallel::Create(parallel::Communicator& comm,
                                                  std::vector<Tensor> params,
                                                  int64_t batch,
                                                  size_t bucket_bytes,
                                                  absl::string_view op) {
  if (batch < comm.size())
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": a global batch of ", batch,
                     " rows cannot be split across ", comm.size(), " ranks"));
  return DataParallel(comm, std::move(params), batch, bucket_bytes, op);
}

DataParallel::DataParallel(parallel::Communicator& comm,
                           std::vector<Tensor> params, int64_t batch,
                           size_t bucket_bytes, absl::string_view op)
    : comm_(&comm),
      params_(params),
      batch_(batch),
      begin_(batch * comm.rank() / comm.size()),
      end_(batch * (comm.rank() + 1) / comm.size()),
      weight_(static_cast<double>(end_ - begin_) / batch),
      op_(op),
      reducer_(std::move(params), bucket_bytes) {}

absl::Status DataParallel::BroadcastState(const std::vector<Tensor>& tensors) {
  if (size() == 1) return absl::OkStatus();
  return parallel::BroadcastTensors(*comm_, tensors, 0);
}

absl::Status DataParallel::Reduce(absl::Span<double> losses, TrainResult* r) {
  r->ranks = size();
  if (size() == 1) return absl::OkStatus();
  for (double& l : losses) l *= weight_;
  FT_RETURN_IF_ERROR(reducer_.Run(*comm_, weight_, losses));
  r->allreduce_seconds += reducer_.last_seconds();
  r->allreduce_bytes_per_step = reducer_.last_bytes();
  for (double l : losses)
    if (!std::isfinite(l)) return absl::OkStatus();
  for (size_t k = 0; k < params_.size(); ++k)
    if (int c = reducer_.defined_count(k); c != 0 && c != size())
      return absl::InternalError(
          absl::StrCat(op_, ": parameter ", k, " has a gradient on ", c, " of ",
                       size(), " ranks (the replicas' graphs differ)"));
  return absl::OkStatus();
}

absl::StatusOr<absl::Status> DataParallel::ShareVerdict(const absl::Status& s) {
  if (size() == 1) return s;
  double code[1] = {static_cast<double>(s.code())};
  FT_RETURN_IF_ERROR(comm_->Broadcast(absl::MakeSpan(code), 0));
  if (rank() == 0 || code[0] == 0) return s;
  return absl::Status(static_cast<absl::StatusCode>(code[0]),
                      absl::StrCat(op_, ": rank 0 reported an error"));
}

absl::Status DataParallel::AgreeWithRankZero(const absl::Status& s) {
  FT_ASSIGN_OR_RETURN(absl::Status verdict, ShareVerdict(s));
  return verdict;
}

absl::StatusOr<double> DataParallel::Evaluate(const NllFn& nll, const Tensor& x,
                                              const Tensor& context,
                                              int64_t batch_size) {
  if (size() == 1) return EvaluateNll(nll, x, context, batch_size);
  return EvaluateNll(*comm_, nll, x, context, batch_size);
}

absl::Status CheckThreadsOption(int threads,
                                const parallel::Communicator* communicator,
                                absl::string_view op,
                                absl::string_view runner) {
  if (threads <= 1) return absl::OkStatus();
  if (communicator == nullptr)
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": threads = ", threads,
        " but this call trains one replica on the calling thread; ", runner,
        " (training/train_threads.h) runs replicas on threads"));
  if (communicator->size() != threads)
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": threads = ", threads, " but the communicator has ",
                     communicator->size(), " ranks"));
  return absl::OkStatus();
}

BatchOrder::BatchOrder(int64_t rows, int64_t batch, uint64_t seed)
    : rows_(rows), batch_(batch), rng_(seed, kOrderStream) {
  FT_CHECK(rows >= batch && batch >= 1, "batch_order: a batch of ", batch,
           " from ", rows, " rows");
  order_ = data::Permutation(rows_, rng_);
}

void BatchOrder::Refill() {
  if (cursor_ + batch_ <= rows_) return;
  order_ = data::Permutation(rows_, rng_);
  cursor_ = 0;
}

std::vector<int64_t> BatchOrder::Next(int64_t begin, int64_t end) {
  Refill();
  std::vector<int64_t> index(order_.begin() + cursor_ + begin,
                             order_.begin() + cursor_ + end);
  cursor_ += batch_;
  return index;
}

void BatchOrder::Skip(int64_t batches) {
  for (int64_t i = 0; i < batches; ++i) {
    Refill();
    cursor_ += batch_;
  }
}

std::vector<int64_t> BatchOrder::Peek(int64_t count) {
  Refill();
  return std::vector<int64_t>(order_.begin() + cursor_,
                              order_.begin() + cursor_ + count);
}

}  // namespace flowtape::training

// Communicator: the collective operations of data-parallel training, over a
// group of `size()` ranks that all call the same operations in the same order
// (SPMD). Implementations: ThreadCommunicator (thread_communicator.h, ranks
// are threads of one process) and mpi::MpiCommunicator (mpi/mpi_communicator.h,
// ranks are the processes of an MPI job).
//
//   AllReduceSum(buf):  buf_r <- s  on every rank r, where element-wise
//                       s = (...((buf_0 + buf_1) + buf_2) + ...) + buf_{N-1}
//                       summed in rank order, so every rank receives the same
//                       bits and a run is reproducible bit for bit (the
//                       result depends on N, not on timing).
//   Broadcast(buf, root): buf_r <- buf_root on every rank.
//   Barrier():          returns once every rank has entered it.
// Every rank passes a buffer of the same length and element type; a length
// that differs between ranks is a programming error (implementations check it
// where they can, and fail loudly).
//
// Errors: a collective returns a non-ok Status (and so do all later ones)
// when a peer failed (Abort) or did not arrive within the communicator's
// timeout (DeadlineExceeded). After an error the group is unusable: each rank
// should return its error. Abort(status) marks this rank failed so that peers
// waiting for it stop waiting and report `status`.
#ifndef FLOWTAPE_PARALLEL_COMMUNICATOR_H_
#define FLOWTAPE_PARALLEL_COMMUNICATOR_H_

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace flowtape::parallel {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;  // 0 .. size() - 1
  virtual int size() const = 0;

  virtual absl::Status AllReduceSum(absl::Span<float> buffer) = 0;
  virtual absl::Status AllReduceSum(absl::Span<double> buffer) = 0;
  virtual absl::Status Broadcast(absl::Span<float> buffer, int root) = 0;
  virtual absl::Status Broadcast(absl::Span<double> buffer, int root) = 0;
  virtual absl::Status Barrier() = 0;
  // Fails the group with `status` (this rank gave up); idempotent, first
  // status wins.
  virtual void Abort(const absl::Status& status) = 0;
};

// A group of one: collectives are no-ops (rank 0 of size 1).
class SoloCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  absl::Status AllReduceSum(absl::Span<float>) override { return status_; }
  absl::Status AllReduceSum(absl::Span<double>) override { return status_; }
  absl::Status Broadcast(absl::Span<float>, int) override { return status_; }
  absl::Status Broadcast(absl::Span<double>, int) override { return status_; }
  absl::Status Barrier() override { return status_; }
  void Abort(const absl::Status& status) override {
    if (status_.ok()) status_ = status;
  }

 private:
  absl::Status status_;
};

}  // namespace flowtape::parallel

#endif  // FLOWTAPE_PARALLEL_COMMUNICATOR_H_

// MpiCommunicator: a Communicator (parallel/communicator.h) whose ranks are
// the processes of an MPI job (Open MPI; launched with mpirun), and
// CommunicatorFromEnvironment, the one call a binary makes to train on
// whichever group it was launched in.
//
// AllReduceSum (n elements, N ranks): rank q owns the slice
// S_q = [n q / N, n (q + 1) / N). An all-to-all sends every rank's part of
// S_q to rank q, which sums it in rank order,
//   s = (...((buf_0 + buf_1) + buf_2) + ...) + buf_{N-1}   (element-wise),
// and an all-gather returns the summed slices to every rank: the same bits on
// every rank, and the same bits as the threads backend and as summing the
// ranks' buffers one after the other in one process. Each rank sends and
// receives 2 (N - 1) / N * n elements (a ring all-reduce's volume).
// Broadcast and Barrier are MPI_Ibcast and MPI_Ibarrier.
//
// Timeout: MPI has none, so every collective is non-blocking, polled
// (yielding the core for 20 ms, then sleeping up to 1 ms between polls:
// a large message needs both sides polling) until it completes, a peer reports
// a failure, or `timeout` passes (DeadlineExceeded naming this rank, the
// collective and the waited time: a peer died, hung or stopped calling
// collectives). Abort(s) sends s to every peer on a control channel; a peer
// polling a collective receives it and returns it (naming the failed rank).
// After a failure every later collective returns the first failure; the job
// cannot continue, and MpiEnvironment skips MPI_Finalize so that mpirun ends
// every process. Communicators use MPI_ERRORS_RETURN: an MPI error is a Status
// naming the call and MPI's message. Buffers longer than 2^31 - 1 elements, and
// lengths that differ between ranks (MPI reports a truncation), are errors.
// Collectives run on the communicator's own copy of the data (copied in, and
// out on success): requests a failure leaves pending never touch the
// caller's memory, and a failed communicator's buffers are never freed.
//
// MpiEnvironment: MPI_Init_thread (MPI_THREAD_FUNNELED: collectives from the
// thread that created the environment) on construction, MPI_Finalize on
// destruction; at most one per process, ever (MPI cannot be re-initialised).
//
// CommunicatorFromEnvironment(): launched by mpirun (OMPI_COMM_WORLD_SIZE is
// set), the process-wide MpiCommunicator over MPI_COMM_WORLD (initialising
// MPI on first use; finalised at exit), with the timeout
// FLOWTAPE_MPI_TIMEOUT_SECONDS (default 600); otherwise nullptr, so a binary
// runs alone without MPI ever being initialised. Pass the result as
// TrainOptions::communicator.
#ifndef FLOWTAPE_PARALLEL_MPI_MPI_COMMUNICATOR_H_
#define FLOWTAPE_PARALLEL_MPI_MPI_COMMUNICATOR_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parallel/communicator.h"

namespace flowtape::parallel::mpi {

// True iff this process was started by Open MPI's mpirun.
bool LaunchedByMpirun();

class MpiEnvironment {
 public:
  // FailedPrecondition if MPI was initialised before in this process;
  // Internal if MPI_Init_thread fails or cannot give MPI_THREAD_FUNNELED.
  static absl::StatusOr<std::unique_ptr<MpiEnvironment>> Create();
  ~MpiEnvironment();  // MPI_Finalize, unless a communicator failed
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

  int world_rank() const { return rank_; }
  int world_size() const { return size_; }

 private:
  MpiEnvironment(int rank, int size) : rank_(rank), size_(size) {}
  int rank_, size_;
};

struct MpiOptions {
  absl::Duration timeout = absl::Minutes(10);  // per collective
  // InvalidArgument unless timeout > 0 (MpiCommunicator::Create checks).
  absl::Status Validate() const;
};

class MpiCommunicator final : public Communicator {
 public:
  // Over all ranks of MPI_COMM_WORLD (duplicated: its messages never meet
  // the caller's). `env` must outlive the communicator.
  static absl::StatusOr<std::unique_ptr<MpiCommunicator>> Create(
      MpiEnvironment& env, const MpiOptions& options = {});
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  absl::Status AllReduceSum(absl::Span<float> buffer) override;
  absl::Status AllReduceSum(absl::Span<double> buffer) override;
  absl::Status Broadcast(absl::Span<float> buffer, int root) override;
  absl::Status Broadcast(absl::Span<double> buffer, int root) override;
  absl::Status Barrier() override;
  void Abort(const absl::Status& status) override;
  // The first failure (ok while none).
  const absl::Status& failure() const { return failure_; }

  struct Handles;  // MPI handles (mpi.h stays out of this header)

 private:
  MpiCommunicator(std::unique_ptr<Handles> h, int rank, int size,
                  const MpiOptions& options);
  template <typename T>
  absl::Status AllReduce(absl::Span<T> buffer);
  template <typename T>
  absl::Status Bcast(absl::Span<T> buffer, int root);
  // Polls the pending requests until done, failure or timeout.
  absl::Status Wait(const char* what);
  absl::Status Fail(absl::Status s);

  std::unique_ptr<Handles> h_;
  int rank_, size_;
  MpiOptions options_;
  absl::Status failure_;
};

// See the header comment. Errors: those of MpiEnvironment::Create and
// MpiCommunicator::Create, InvalidArgument for a malformed
// FLOWTAPE_MPI_TIMEOUT_SECONDS.
absl::StatusOr<Communicator*> CommunicatorFromEnvironment();

}  // namespace flowtape::parallel::mpi

#endif  // FLOWTAPE_PARALLEL_MPI_MPI_COMMUNICATOR_H_

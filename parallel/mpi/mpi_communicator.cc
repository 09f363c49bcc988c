#include "parallel/mpi/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/status_macros.h"

namespace flowtape::parallel::mpi {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kAbortTag = 1;  // on the control communicator

// Set once any communicator of the process failed: MPI_Finalize would wait
// for peers that may be gone, so the environment skips it.
std::atomic<bool> g_failed{false};

std::string MpiError(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "unknown";
  return std::string(text, len);
}

absl::Status Check(int code, const char* call) {
  if (code == MPI_SUCCESS) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("mpi: ", call, " failed: ", MpiError(code)));
}

template <typename T>
MPI_Datatype Type() {
  return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

}  // namespace

bool LaunchedByMpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE"); }

absl::StatusOr<std::unique_ptr<MpiEnvironment>> MpiEnvironment::Create() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized || finalized)
    return absl::FailedPreconditionError(
        "mpi: MPI was already initialised in this process (one "
        "MpiEnvironment per process)");
  int provided = 0;
  FT_RETURN_IF_ERROR(
      Check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided),
            "MPI_Init_thread"));
  if (provided < MPI_THREAD_FUNNELED)
    return absl::InternalError(
        "mpi: the MPI library does not support MPI_THREAD_FUNNELED");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return std::unique_ptr<MpiEnvironment>(new MpiEnvironment(rank, size));
}

MpiEnvironment::~MpiEnvironment() {
  if (!g_failed.load()) MPI_Finalize();
}

struct MpiCommunicator::Handles {
  MPI_Comm data = MPI_COMM_NULL, control = MPI_COMM_NULL;
  std::vector<MPI_Request> pending;  // the current collective's requests
  // Everything a pending collective reads or writes lives here, never in
  // the caller's memory: after a failure its requests stay pending, and
  // these are kept (leaked) for them.
  std::vector<char> staging, parts;  // the data; the all-to-all's receipts
  std::vector<int> counts, displs, recv_counts, recv_displs;
  std::vector<MPI_Request> abort_sends;
  std::string abort_message;  // kept alive for abort_sends
  bool told_peers = false;    // Abort sent the failure, or it came from one
};

absl::Status MpiOptions::Validate() const {
  if (timeout <= absl::ZeroDuration())
    return absl::InvalidArgumentError(
        absl::StrCat("mpi: the timeout must be positive, got ",
                     absl::FormatDuration(timeout)));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<MpiCommunicator>> MpiCommunicator::Create(
    MpiEnvironment& env, const MpiOptions& options) {
  FT_RETURN_IF_ERROR(options.Validate());
  auto h = std::make_unique<Handles>();
  for (MPI_Comm* c : {&h->data, &h->control}) {
    FT_RETURN_IF_ERROR(Check(MPI_Comm_dup(MPI_COMM_WORLD, c), "MPI_Comm_dup"));
    MPI_Comm_set_errhandler(*c, MPI_ERRORS_RETURN);
  }
  return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(
      std::move(h), env.world_rank(), env.world_size(), options));
}

MpiCommunicator::MpiCommunicator(std::unique_ptr<Handles> h, int rank, int size,
                                 const MpiOptions& options)
    : h_(std::move(h)), rank_(rank), size_(size), options_(options) {}

MpiCommunicator::~MpiCommunicator() {
  if (!failure_.ok()) {  // requests may be pending: keep their memory
    h_.release();
    return;
  }
  MPI_Comm_free(&h_->data);
  MPI_Comm_free(&h_->control);
}

absl::Status MpiCommunicator::Fail(absl::Status s) {
  if (failure_.ok()) failure_ = std::move(s);
  g_failed.store(true);
  return failure_;
}

void MpiCommunicator::Abort(const absl::Status& status) {
  Fail(absl::Status(status.code(),
                    absl::StrCat("rank ", rank_, ": ", status.message())))
      .IgnoreError();
  if (h_->told_peers || size_ == 1) return;
  h_->told_peers = true;
  // The first failure: its code as 4 bytes, then its message; to every peer,
  // without waiting for them (small messages go out eagerly).
  const int code = static_cast<int>(failure_.code());
  h_->abort_message.assign(reinterpret_cast<const char*>(&code), sizeof(code));
  h_->abort_message += std::string(failure_.message());
  for (int q = 0; q < size_; ++q) {
    if (q == rank_) continue;
    MPI_Request r;
    if (MPI_Isend(h_->abort_message.data(),
                  static_cast<int>(h_->abort_message.size()), MPI_CHAR, q,
                  kAbortTag, h_->control, &r) == MPI_SUCCESS)
      h_->abort_sends.push_back(r);
  }
  // Give the sends a moment to leave (bounded: a dead peer never answers).
  const Clock::time_point until = Clock::now() + std::chrono::seconds(1);
  int done = 0;
  while (!h_->abort_sends.empty() && Clock::now() < until &&
         MPI_Testall(static_cast<int>(h_->abort_sends.size()),
                     h_->abort_sends.data(), &done,
                     MPI_STATUSES_IGNORE) == MPI_SUCCESS &&
         !done)
    std::this_thread::sleep_for(std::chrono::microseconds(100));
}

absl::Status MpiCommunicator::Wait(const char* what) {
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline =
      start + absl::ToChronoNanoseconds(options_.timeout);
  auto nap = std::chrono::microseconds(0);
  for (int64_t i = 0;; ++i) {
    int done = 0;
    if (int rc = MPI_Testall(static_cast<int>(h_->pending.size()),
                             h_->pending.data(), &done, MPI_STATUSES_IGNORE);
        rc != MPI_SUCCESS)
      return Fail(absl::InternalError(absl::StrCat(
          "mpi: rank ", rank_, ": ", what, " failed: ", MpiError(rc))));
    if (done) {
      h_->pending.clear();
      return absl::OkStatus();
    }
    // A peer's Abort?
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(MPI_ANY_SOURCE, kAbortTag, h_->control, &flag, &st) ==
            MPI_SUCCESS &&
        flag) {
      int len = 0;
      MPI_Get_count(&st, MPI_CHAR, &len);
      std::string msg(std::max<int>(len, 0), '\0');
      MPI_Recv(msg.data(), len, MPI_CHAR, st.MPI_SOURCE, kAbortTag, h_->control,
               MPI_STATUS_IGNORE);
      int code = static_cast<int>(absl::StatusCode::kAborted);
      if (msg.size() >= sizeof(code)) {
        std::memcpy(&code, msg.data(), sizeof(code));
        msg.erase(0, sizeof(code));
      }
      if (code == 0) code = static_cast<int>(absl::StatusCode::kAborted);
      h_->told_peers = true;  // the failed rank told them
      return Fail(absl::Status(
          static_cast<absl::StatusCode>(code),
          absl::StrCat("mpi: rank ", rank_, " stopped at ", what, ": rank ",
                       st.MPI_SOURCE, " failed: ", msg)));
    }
    const Clock::time_point now = Clock::now();
    if (now >= deadline)
      return Fail(absl::DeadlineExceededError(absl::StrCat(
          "mpi: rank ", rank_, " waited ",
          std::chrono::duration<double>(now - start).count(), " s at ", what,
          " for its peers (timeout ", absl::FormatDuration(options_.timeout),
          "): a peer died, hung or stopped calling collectives")));
    // Poll, yielding the core, for 20 ms (a large message moves in many
    // fragments, each needing both sides to poll: sleeping here would cost
    // bandwidth), then sleep, doubling up to 1 ms: a rank waiting for a slow
    // or descheduled peer gives its core away.
    if (now - start < std::chrono::milliseconds(20)) {
      std::this_thread::yield();
    } else {
      nap = std::min<std::chrono::microseconds>(
          std::chrono::microseconds(1000),
          std::max<std::chrono::microseconds>(nap * 2,
                                              std::chrono::microseconds(1)));
      std::this_thread::sleep_for(nap);
    }
  }
}

template <typename T>
absl::Status MpiCommunicator::AllReduce(absl::Span<T> buffer) {
  if (!failure_.ok()) return failure_;
  if (size_ == 1) return absl::OkStatus();
  if (buffer.size() > static_cast<size_t>(INT_MAX))
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("mpi: all_reduce_sum of ", buffer.size(),
                     " elements (at most 2^31 - 1 per call)")));
  const int64_t n = static_cast<int64_t>(buffer.size());
  std::vector<int>&counts = h_->counts, &displs = h_->displs,
  &recv_counts = h_->recv_counts, &recv_displs = h_->recv_displs;
  for (std::vector<int>* v : {&counts, &displs, &recv_counts, &recv_displs})
    v->resize(size_);
  for (int q = 0; q < size_; ++q) {
    displs[q] = static_cast<int>(n * q / size_);
    counts[q] = static_cast<int>(n * (q + 1) / size_) - displs[q];
  }
  const int mine = counts[rank_];
  for (int q = 0; q < size_; ++q) {
    recv_counts[q] = mine;
    recv_displs[q] = q * mine;
  }
  h_->staging.resize(n * sizeof(T));
  h_->parts.resize(static_cast<size_t>(size_) * mine * sizeof(T));
  T* data = reinterpret_cast<T*>(h_->staging.data());
  T* parts = reinterpret_cast<T*>(h_->parts.data());
  std::copy(buffer.begin(), buffer.end(), data);
  // Reduce-scatter: rank q receives every rank's slice S_q...
  MPI_Request r;
  if (absl::Status s =
          Check(MPI_Ialltoallv(data, counts.data(), displs.data(), Type<T>(),
                               parts, recv_counts.data(), recv_displs.data(),
                               Type<T>(), h_->data, &r),
                "MPI_Ialltoallv");
      !s.ok())
    return Fail(s);
  h_->pending.assign(1, r);
  FT_RETURN_IF_ERROR(Wait("all_reduce_sum"));
  // ... and sums it in rank order.
  T* out = data + displs[rank_];
  std::copy(parts, parts + mine, out);
  for (int q = 1; q < size_; ++q) {
    const T* x = parts + static_cast<size_t>(q) * mine;
    for (int i = 0; i < mine; ++i) out[i] += x[i];
  }
  // All-gather the summed slices.
  if (absl::Status s =
          Check(MPI_Iallgatherv(MPI_IN_PLACE, 0, Type<T>(), data, counts.data(),
                                displs.data(), Type<T>(), h_->data, &r),
                "MPI_Iallgatherv");
      !s.ok())
    return Fail(s);
  h_->pending.assign(1, r);
  FT_RETURN_IF_ERROR(Wait("all_reduce_sum"));
  std::copy(data, data + n, buffer.begin());
  return absl::OkStatus();
}

template <typename T>
absl::Status MpiCommunicator::Bcast(absl::Span<T> buffer, int root) {
  FT_CHECK(root >= 0 && root < size_, "broadcast: root ", root, " of ", size_,
           " ranks");
  if (!failure_.ok()) return failure_;
  if (size_ == 1) return absl::OkStatus();
  if (buffer.size() > static_cast<size_t>(INT_MAX))
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("mpi: broadcast of ", buffer.size(),
                     " elements (at most 2^31 - 1 per call)")));
  h_->staging.resize(buffer.size() * sizeof(T));
  T* data = reinterpret_cast<T*>(h_->staging.data());
  std::copy(buffer.begin(), buffer.end(), data);
  MPI_Request r;
  if (absl::Status s = Check(MPI_Ibcast(data, static_cast<int>(buffer.size()),
                                        Type<T>(), root, h_->data, &r),
                             "MPI_Ibcast");
      !s.ok())
    return Fail(s);
  h_->pending.assign(1, r);
  FT_RETURN_IF_ERROR(Wait("broadcast"));
  std::copy(data, data + buffer.size(), buffer.begin());
  return absl::OkStatus();
}

absl::Status MpiCommunicator::Barrier() {
  if (!failure_.ok()) return failure_;
  if (size_ == 1) return absl::OkStatus();
  MPI_Request r;
  if (absl::Status s = Check(MPI_Ibarrier(h_->data, &r), "MPI_Ibarrier");
      !s.ok())
    return Fail(s);
  h_->pending.assign(1, r);
  return Wait("barrier");
}

absl::Status MpiCommunicator::AllReduceSum(absl::Span<float> buffer) {
  return AllReduce(buffer);
}
absl::Status MpiCommunicator::AllReduceSum(absl::Span<double> buffer) {
  return AllReduce(buffer);
}
absl::Status MpiCommunicator::Broadcast(absl::Span<float> buffer, int root) {
  return Bcast(buffer, root);
}
absl::Status MpiCommunicator::Broadcast(absl::Span<double> buffer, int root) {
  return Bcast(buffer, root);
}

absl::StatusOr<Communicator*> CommunicatorFromEnvironment() {
  if (!LaunchedByMpirun()) return nullptr;
  struct Process {
    std::unique_ptr<MpiEnvironment> env;
    std::unique_ptr<MpiCommunicator> comm;
    absl::Status status;
  };  // (members die in reverse order: comm, then env's MPI_Finalize)
  static Process* process = [] {
    static Process p;
    MpiOptions options;
    if (const char* t = std::getenv("FLOWTAPE_MPI_TIMEOUT_SECONDS")) {
      double seconds = 0.0;
      if (!absl::SimpleAtod(t, &seconds) || !std::isfinite(seconds) ||
          seconds <= 0.0) {
        p.status = absl::InvalidArgumentError(absl::StrCat(
            "mpi: FLOWTAPE_MPI_TIMEOUT_SECONDS must be a positive number of "
            "seconds, got \"",
            t, "\""));
        return &p;
      }
      options.timeout = absl::Seconds(seconds);
    }
    absl::StatusOr<std::unique_ptr<MpiEnvironment>> env =
        MpiEnvironment::Create();
    if (!env.ok()) {
      p.status = env.status();
      return &p;
    }
    p.env = *std::move(env);
    absl::StatusOr<std::unique_ptr<MpiCommunicator>> comm =
        MpiCommunicator::Create(*p.env, options);
    if (!comm.ok()) {
      p.status = comm.status();
      return &p;
    }
    p.comm = *std::move(comm);
    return &p;
  }();
  if (!process->status.ok()) return process->status;
  return process->comm.get();
}

}  // namespace flowtape::parallel::mpi

// Maximum-likelihood training of a flow: minibatch NLL descent with a
// validation split, early stopping, a progress line, a NaN/inf guard,
// periodic checkpoints, and data parallelism over a Communicator.
//
// Objective: minimise E_batch[nll(batch)], nll = -mean_i log p(x_i) in nats
// (FlowModel::Nll by default; image pipelines pass an NllFn that dequantises,
// applies the logit transform and subtracts its log-det, see
// data/preprocess.h). Each step: draw the next global minibatch of B rows of
// a shuffled epoch, loss = nll(batch), Backward, optional gradient-norm
// clipping, optimizer Step, tape Reset.
//
// Validation: every eval_every steps the mean NLL over the whole validation
// set (NoGradScope, EvaluateNll: chunks of eval_batch_size rows, chunk k's
// noise from Rng(12345, k), so every evaluation sees the same noise, and the
// same noise for any number of ranks).
// Early stopping: stop after `patience` evaluations without a new best; the
// model (parameters and buffers) of the best evaluation is restored at the
// end (restore_best).
//
// NaN/inf guard: before the forward pass of every guard_every-th step the
// whole state is copied into a preallocated ModuleState (module_state.h):
// parameters, buffers (spectral-norm u, v, ActNorm's flag) and optimizer
// state. Once that step's loss is finite the copy is the latest good
// snapshot. A non-finite loss or gradient stops training and restores the
// latest good snapshot (diverged = true, steps = the updates it had), at most
// guard_every - 1 steps before the last finite loss; guard_every = 1 restores
// the state of exactly that step. (The copy costs the bandwidth of ~3x the
// parameters with Adam, ~4% of a 64-D MAF step at batch 256 if taken every
// step, whether or not its buffers are preallocated: benchmarks/flows_bench
// Guard cases; every 10th step makes it ~0.4%.)
//
// Usable model: every run ends by checking that the final model scores and
// samples finite values (TrainResult::model_status; options.check_model, by
// default for a FlowModel: 64 samples, their log-densities and those of 64
// training rows all finite; for another module: nll of 64 training rows).
// Checkpoints are written only of a model that passes the check (a periodic
// checkpoint of one that does not is skipped, so the file keeps the last
// usable state). After a divergence the checkpoint is rewritten from the
// restored state if it passes; if it does not, a checkpoint of the state
// whose loss (or gradient) was not finite is deleted (an older one, which
// passed the check when written, is kept). TrainNll returns a model
// that fails the check as an error Status (FailedPrecondition, naming why);
// TrainNllOutcome returns it in TrainResult.
//
// Data parallel (options.communicator with size N > 1): every rank runs this
// same loop on its own replica (own model, nll and optimizer, on its own
// thread-local tape; see parallel/communicator.h) over the same TrainData:
//   - the global minibatch (B rows, the same permutation on every rank) is
//     split into contiguous shards, rank r taking rows [B r/N, B (r+1)/N);
//   - rank r's gradient is scaled by w_r = b_r / B (b_r its shard's rows), so
//     the all-reduced sum_r w_r grad(mean nll over shard r) is the gradient
//     of the global-batch mean, uneven shards included; the reduction runs in
//     buckets in the model's dtype, summing in rank order (the same bits on
//     every rank), and carries the weighted loss, so the reported loss, the
//     NaN guard's decision, clipping and the optimizer step are identical on
//     every rank;
//   - before the first step rank 0 runs the data-dependent initialisation on
//     the global first batch (options.initialize, by default one no-grad
//     nll pass, which initialises lazily-initialised layers such as ActNorm)
//     and then broadcasts its parameters, buffers and optimizer state, so all
//     ranks start from rank 0's model. Buffers must then evolve identically
//     given identical parameters (true of spectral-norm vectors and ActNorm);
//   - validation: the validation rows are cut into chunks of
//     eval_batch_size rows (chunk k drawing its noise from its own stream)
//     whatever N is; each rank evaluates a contiguous share of the chunks and
//     the per-chunk sums are summed in chunk order on every rank, so the
//     validation NLL, and early stopping, are bit-identical for any N, a
//     stochastic nll included (ranks without a chunk idle: with M validation
//     rows every rank works when eval_batch_size <= M / N); the model check
//     runs on rank 0 and its verdict is shared;
//   - only rank 0 logs and writes checkpoints (a failed write fails every
//     rank); a rank returning an error aborts the group (Communicator::Abort);
//   - randomness: the permutation from Rng(seed, 2^64 - 1) on every rank; the
//     nll's rng (dequantisation noise, stochastic estimators) at step s on
//     rank r is Rng(seed, s * 2^20 + r), a fresh stream per step (so a
//     resumed run draws what the uninterrupted one draws). A rank draws the
//     noise of its own shard: with a stochastic training nll the trajectory
//     depends on N (validation does not, see above).
// The shard, the weighted all-reduce, the broadcast and rank 0's verdicts
// are training/data_parallel.h, shared with TrainFlowMatching and
// TrainReverseKl. With N = 1 (or no communicator) this is the
// single-process loop. With a
// deterministic nll, N ranks reproduce single-process training up to the
// rounding of the summation order (tests: 1e-12 in float64 after 20 steps).
//
// Using threads in an experiment (train_threads.h runs N replicas from a
// factory on N threads and returns rank 0's model):
//   auto make = [&](int rank) -> absl::StatusOr<training::Replica> {
//     Rng init(seed);  // any model: rank 0's is broadcast
//     FT_ASSIGN_OR_RETURN(auto m, models::MakeModel(flow, config, init));
//     nn::AdamOptions adam_options;
//     adam_options.lr = lr;
//     FT_ASSIGN_OR_RETURN(auto adam, nn::Adam::Create(*m, adam_options));
//     return training::Replica{m, training::ModelNll(*m), adam};
//   };
//   options.threads = absl::GetFlag(FLAGS_threads);  // 0: FLOWTAPE_NUM_THREADS
//   FT_ASSIGN_OR_RETURN(auto run, training::TrainNllThreads(make, data,
//   options));
//   // run.replica.model is the trained model, run.result the TrainResult.
//
// Using MPI (one process per rank, launched by mpirun; the same binary runs
// alone when not): options.communicator =
// parallel::mpi::CommunicatorFromEnvironment()
// (parallel/mpi/mpi_communicator.h; nullptr outside mpirun). Every process
// loads the same TrainData; only rank 0's model, checkpoint and log matter.
//
// Resume (options.resume_from): a checkpoint written by this loop carries,
// beside the model's and optimizer's tensors (nn/checkpoint.h), the training
// state as the metadata entry "flowtape.train_state" (kTrainStateKey), so a
// run killed at any moment and restarted with the same options plus
// resume_from = its checkpoint_path continues exactly where the checkpoint
// was written: the final parameters, losses, val_history, best_val_nll,
// best_step, steps and message are bit-identical to those of the
// uninterrupted run (with the same number of ranks; elapsed and seconds
// continue from the saved clock). A checkpoint is written at the end of
// step s (after its validation, logging and early-stopping decision). The
// record (training/train_state.h gives its layout) holds the step (batches
// consumed: BatchOrder::Skip(s) restores the epoch position and
// permutation; the nll's per-step streams need no state), the data-order
// key (seed, global batch, training rows, fingerprints of the training and
// of the validation data), the ranks that wrote it, whether the run had
// ended (early stop, divergence, bad inverse), the early-stopping state with
// the best model's parameters and buffers, the NaN guard's last good
// snapshot and its update count, the progress window, the clock, and every
// TrainResult history.
// The file therefore holds up to three copies of the parameters (current,
// guard, best). nn::LoadCheckpoint reads it as any checkpoint (metadata is
// ignored). Resuming (rank 0 reads the file; its state and the record are
// broadcast, so any number of ranks can resume, bit-identically with the
// same number) skips the initialisation pass, and a record of a run that
// had ended returns that run's result (restore_best applied, the model
// check rerun) without training. Errors, nothing changed: NotFound for a
// missing file (unless resume_missing_ok: a fresh run), the checkpoint's
// own errors (unreadable, corrupt, a model or optimizer whose names or
// shapes differ: nn::RestoreFromTensors), InvalidArgument for a file
// without a training state, a record from an unsupported version or written
// by another loop (TrainFlowMatching), and
// options or data that change the data order (seed, batch size, training
// rows or values, validation values), a step beyond max_steps, a saved
// snapshot whose size differs from the model's state; DataLoss for a
// malformed record. Options that do not change the data order may differ
// (max_steps, patience, eval_every, eval_batch_size, logging,
// checkpointing, clipping, guard_every): the run is then the one they give
// from the saved state. The learning-rate schedule (nn/schedule.h) is a
// function of the optimizer's step count, restored with its state.
//
// Progress line (rank 0, every log_every steps):
//   step 200/1000  loss 1.2345  val 1.3000 (best 1.2900)  85.1 steps/s  ETA
//   0:09
#ifndef FLOWTAPE_TRAINING_TRAIN_H_
#define FLOWTAPE_TRAINING_TRAIN_H_

#include <cstdint>
#include <functional>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "autodiff/tensor.h"
#include "flows/flow_model.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "parallel/communicator.h"

namespace flowtape::training {

// The progress line of the training loops (format above): step, windowed
// mean loss, `val_text` (e.g. "  val 1.3000 (best 1.2900)" or empty), rate
// and the ETA of the remaining steps.
std::string ProgressLine(int64_t step, int64_t max_steps, double loss,
                         const std::string& val_text, double steps_per_s);

// Mean NLL in nats of a minibatch (scalar tensor, differentiable in the
// parameters). `context` is undefined for unconditional data.
using NllFn =
    std::function<Tensor(const Tensor& batch, const Tensor& context, Rng& rng)>;
// FlowModel::Nll (passing the rng on to stochastic flows).
NllFn ModelNll(const flows::FlowModel& model);

struct TrainData {
  Tensor train;  // [N, ...]
  Tensor val;    // [M, ...]; undefined = no validation (no early stopping)
  Tensor train_context, val_context;  // [N, K] / [M, K] or undefined
};

// OK iff a training loop can use `d`: a nonempty training set, context rows
// matching data rows, a context on both splits or on neither, every value
// finite. InvalidArgument naming the problem, prefixed "<op>: ".
absl::Status ValidateTrainData(const TrainData& d, absl::string_view op);

struct TrainOptions {
  int64_t batch_size = 256;
  int64_t max_steps = 1000;
  int64_t eval_every = 100;  // validation every N steps (and at the end)
  int64_t eval_batch_size = 1024;
  int64_t patience = 0;  // evaluations without improvement; 0 = never stop
  bool restore_best = true;
  double clip_grad_norm = 0.0;   // 0 = no clipping
  int64_t log_every = 100;       // 0 = silent
  int64_t checkpoint_every = 0;  // 0 = never; needs checkpoint_path
  std::string checkpoint_path;
  uint64_t seed = 0;
  std::ostream* log = &std::cerr;

  // The NaN guard's snapshot interval in steps (see above; >= 1).
  int64_t guard_every = 10;

  // Data parallel: this rank's group (nullptr = one process). Not owned.
  parallel::Communicator* communicator = nullptr;
  // Gradient all-reduce bucket size (bytes per AllReduceSum call).
  size_t bucket_bytes = size_t{1} << 20;
  // Data-dependent initialisation on the global first batch, before the
  // first step (rank 0; then broadcast). Unset: one no-grad nll pass on
  // rank 0 inside a flows::InitializationPassScope (ActNorm layers whose
  // flag is unset initialise from it; a non-finite loss is an error).
  std::function<absl::Status(const Tensor& x, const Tensor& context)>
      initialize;
  // The final model check (see above); unset = the default for the model.
  std::function<absl::Status(Rng& rng)> check_model;

  // Invertibility check (flows/invertibility.h; the model must be a
  // FlowModel): every invertibility_every steps (0 = never) rank 0 runs
  // InvertibilityReport on the first invertibility_rows validation rows
  // (training rows without a validation set) as the flow's input, and logs
  // a warning when a round trip is not finite or the model's condition
  // number Lip(f) Lip(f^-1) passes max_inverse_condition (or Lip(f^-1)
  // passes max_inverse_lipschitz; 0 = no limit). stop_on_bad_inverse stops
  // training there instead (TrainResult::bad_inverse, the warning as the
  // message; the model is kept as it is).
  int64_t invertibility_every = 0;
  int64_t invertibility_rows = 16;
  double max_inverse_condition = 0.0;
  double max_inverse_lipschitz = 0.0;
  bool stop_on_bad_inverse = false;

  // TrainNllThreads (train_threads.h): replicas to run. 0 = the value of
  // FLOWTAPE_NUM_THREADS (1 when unset), capped so that every replica gets at
  // least min_rows_per_thread rows of the global batch; > 0 = exactly that
  // many (at most the batch size). TrainNll trains the one model it is
  // given and does not read FLOWTAPE_NUM_THREADS: threads > 1 is
  // InvalidArgument there unless options.communicator has exactly that many
  // ranks (as under TrainNllThreads), never a silent single-thread run.
  int threads = 0;
  int64_t min_rows_per_thread = 1024;
  // TrainNllThreads: a rank waiting longer than this at a collective fails
  // the run (DeadlineExceeded).
  double peer_timeout_seconds = 600.0;

  // Resume from this checkpoint of TrainNll (see "Resume" above); empty =
  // a fresh run. resume_missing_ok: a missing file starts a fresh run (so a
  // restart command can always pass resume_from = checkpoint_path).
  std::string resume_from;
  bool resume_missing_ok = false;

  // InvalidArgument naming the first bad option: batch sizes or eval_every
  // < 1, guard_every < 1, invertibility_every < 0, invertibility_rows < 1,
  // a negative or NaN inverse limit, checkpoint_every without a path.
  // (TrainNll calls it, its message prefixed "train_nll: ".)
  absl::Status Validate() const;
};

struct TrainResult {
  int64_t steps = 0;  // updates applied (diverged: those of the restored state)
  double last_loss = 0.0;     // last finite training loss
  double best_val_nll = 0.0;  // (train loss mean if no val set)
  int64_t best_step = 0;
  std::vector<double> losses;   // per step
  std::vector<double> elapsed;  // per step: seconds since the loop started
  std::vector<std::pair<int64_t, double>> val_history;  // (step, val NLL)
  bool stopped_early = false;
  bool diverged = false;  // NaN/inf guard fired
  std::string message;    // why training stopped
  double seconds = 0.0;   // in the training loop (not the final check)
  // OK iff the final model scores and samples finite values; else why not.
  absl::Status model_status;
  // Data parallel: ranks, seconds spent in gradient all-reduces (this
  // rank, waiting included) and bytes all-reduced per step.
  int ranks = 1;
  double allreduce_seconds = 0.0;
  int64_t allreduce_bytes_per_step = 0;
  // The invertibility check (rank 0): (step, the model's condition number)
  // per check, and whether it stopped training.
  std::vector<std::pair<int64_t, double>> inverse_condition_history;
  bool bad_inverse = false;
};

// Errors: InvalidArgument for threads > 1 without a communicator of that
// many ranks (one model trains on one thread: TrainNllThreads runs replicas
// on threads), an empty training set, batch_size <= 0, context
// rows that do not match, a context for the training but not the validation
// data (or the reverse), a non-finite value in the data or context (naming
// the first bad row), checkpoint_every without a path, a global batch smaller
// than the number of ranks; a failed checkpoint write or initialisation is
// returned as its Status, and so is a communicator's (a failed or timed-out
// peer); resume errors as under "Resume" above. A final model that fails
// the check is FailedPrecondition.
absl::StatusOr<TrainResult> TrainNll(const nn::Module& model, const NllFn& nll,
                                     nn::Optimizer& optimizer,
                                     const TrainData& data,
                                     const TrainOptions& options);
absl::StatusOr<TrainResult> TrainNll(const flows::FlowModel& model,
                                     nn::Optimizer& optimizer,
                                     const TrainData& data,
                                     const TrainOptions& options);
// The same loop, returning a model that fails the final check as a result
// (model_status not ok, message saying why) rather than an error.
absl::StatusOr<TrainResult> TrainNllOutcome(const nn::Module& model,
                                            const NllFn& nll,
                                            nn::Optimizer& optimizer,
                                            const TrainData& data,
                                            const TrainOptions& options);

// The default model check: for a FlowModel, n samples (with the first n rows
// of `context` if it is defined), their log-densities and those of the first
// n rows of x must be finite; for another module, nll of those rows.
absl::Status CheckModelUsable(const nn::Module& model, const NllFn& nll,
                              const Tensor& x, const Tensor& context, Rng& rng,
                              int64_t n = 64);

// Mean of nll over all rows of x, without recording (NoGradScope), in
// chunks: chunk k holds rows [k b, min((k + 1) b, M)), b = batch_size, and
// is scored with Rng(seed, k) (a stream of its own):
//   mean = (sum_k |chunk k| nll(chunk k)) / M, summed in chunk order.
double EvaluateNll(const NllFn& nll, const Tensor& x, const Tensor& context,
                   int64_t batch_size, uint64_t seed = 12345);
// Data parallel: the K chunks above are split over the N ranks (rank r
// scores chunks [K r/N, K (r+1)/N)), the per-chunk sums are all-reduced
// (each entry from one rank, exactly) and summed in chunk order: the same
// bits as EvaluateNll, on every rank, for any N.
absl::StatusOr<double> EvaluateNll(parallel::Communicator& comm,
                                   const NllFn& nll, const Tensor& x,
                                   const Tensor& context, int64_t batch_size,
                                   uint64_t seed = 12345);

// The metadata key of the training state in TrainNll's checkpoints.
inline constexpr char kTrainStateKey[] = "flowtape.train_state";

// Global L2 norm of the accumulated gradients (inf/NaN if any entry is).
double GradNorm(const std::vector<Tensor>& params);

// A copy of every parameter value, and its restoration (same module).
std::vector<std::vector<double>> SnapshotParameters(const nn::Module& model);
void RestoreParameters(const nn::Module& model,
                       const std::vector<std::vector<double>>& snapshot);

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_TRAIN_H_

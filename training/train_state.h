// TrainState: the training-state record that TrainNll and TrainFlowMatching
// write into their checkpoints (metadata entry kTrainStateKey, train.h), and
// the resume step that reads it back on every rank.
//
// A record taken at the end of step s (after its validation, logging and
// early-stopping decision) holds what the model's and optimizer's tensors do
// not: restarted from it with the same options, a loop continues exactly
// where the checkpoint was written. Layout (version 2, little-endian; the
// snapshots are ModuleState bytes, each tensor's values in host order):
//   char[8] "FTTRAIN\0", uint64 version, string loop ("train_nll" or
//   "train_flow_matching"),
//   int64 step s (batches consumed: BatchOrder::Skip(s) restores the epoch
//   position and permutation), uint64 seed, int64 global batch, int64
//   training rows, uint64 fingerprints of the training and of the
//   validation data (each with its context: dtype, shape and bytes), int64
//   ranks that wrote it,
//   bool finished (early stop, divergence, bad inverse), int64 evaluations
//   since the best, int64 the NaN guard's update count, int64 + double the
//   progress window,
//   the TrainResult histories and flags (steps, last_loss, best_val_nll,
//   best_step, losses, elapsed, val_history, stopped_early, diverged,
//   message, seconds, allreduce_seconds, inverse_condition_history,
//   bad_inverse),
//   string guard (the NaN guard's good snapshot; empty when finished),
//   string best (the best evaluation's parameters and buffers; empty =
//   none), string ema (the parameter EMA; empty = none), and the loss
//   stream's Rng::Position (count 0 or 6, then the words).
// Strings and lists are a uint64 count, then the items; a bool is one byte.
#ifndef FLOWTAPE_TRAINING_TRAIN_STATE_H_
#define FLOWTAPE_TRAINING_TRAIN_STATE_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "autodiff/tensor.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "training/data_parallel.h"
#include "training/module_state.h"
#include "training/nan_guard.h"
#include "training/train.h"

namespace flowtape::training {

// What a loop carries from step to step besides its TrainResult.
struct LoopCounters {
  int64_t evals_since_best = 0;  // validations since the best one
  int64_t window = 0;            // steps in the progress line's window
  double window_loss = 0.0;      // their summed loss
};

struct TrainState {
  std::string loop;  // the writer: "train_nll" or "train_flow_matching"
  int64_t step = 0;  // loop steps done = global batches consumed
  uint64_t seed = 0;
  int64_t batch = 0, rows = 0;
  uint64_t train_hash = 0, val_hash = 0;
  int64_t ranks = 1;
  bool finished = false;  // early stop, divergence or bad inverse
  LoopCounters counters;
  int64_t guard_updates = 0;
  TrainResult result;         // its histories, flags, message and clocks
  std::string guard, best;    // ModuleState bytes (best: empty = none)
  std::string ema;            // ModuleState bytes of a parameter EMA, or empty
  std::vector<uint64_t> rng;  // the loss stream's Rng::Position, or empty
};

// The run's part of its records: loop, seed, batch, rows, ranks and the
// data's fingerprints (computed here: call it once per run).
TrainState RunRecord(absl::string_view loop, const TrainOptions& o,
                     int64_t batch, const TrainData& data, int ranks);
// `run` (RunRecord's) after `step` steps: the loop's counters, its result,
// and copies of the guard's good snapshot (unless finished) and of `best`
// (when r.best_step > 0). A loop with an EMA or a loss stream adds them.
TrainState StepRecord(const TrainState& run, int64_t step, bool finished,
                      const LoopCounters& counters, const TrainResult& r,
                      const NanGuard& guard, const ModuleState* best);

std::string EncodeState(const TrainState& s);
// DataLoss naming the first malformed field; InvalidArgument for another
// version.
absl::StatusOr<TrainState> DecodeState(absl::string_view in);

// What a loop resumes into: the states whose saved sizes must match.
struct ResumeTarget {
  const nn::Module* model = nullptr;
  nn::Optimizer* optimizer = nullptr;
  NanGuard* guard = nullptr;
  ModuleState* best = nullptr;  // null without validation data
  ModuleState* ema = nullptr;   // of a parameter EMA; null without one
  Rng* rng = nullptr;           // the loss stream, for a loop that keeps one
};

// Rank 0 reads `o.resume_from` and checks the record against this run
// (written by `loop`, the same seed, batch, data, a step within max_steps,
// snapshots of this model's sizes), then loads the model and optimizer;
// the record's bytes reach every rank (any number of ranks). nullopt: no
// file and o.resume_missing_ok. Errors (the same on every rank, nothing
// changed): train.h's "Resume" list, each prefixed with
// "<loop>: resume from '<file>': ".
absl::StatusOr<std::optional<TrainState>> ReadResume(
    DataParallel& dp, absl::string_view loop, const ResumeTarget& into,
    const TrainData& data, const TrainOptions& o, int64_t batch);

// Puts ReadResume's record `t` into `into` on this rank: the guard's good
// snapshot (unless the run had ended), the best model, the EMA (written
// back into its module) and the loss stream's position; `order` skips
// t.step batches. Logs "resumed from <file> after step s" to `log` (may be
// null). InternalError naming `loop` when a snapshot's size differs here
// (replicas that disagree).
absl::Status ApplyRecord(absl::string_view loop, const TrainState& t,
                         const ResumeTarget& into, BatchOrder& order,
                         const std::string& file, std::ostream* log);

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_TRAIN_STATE_H_

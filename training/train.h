// Maximum-likelihood training of a flow: minibatch NLL descent with a
// validation split, early stopping, a progress line, a NaN/inf guard and
// periodic checkpoints.
//
// Objective: minimise E_batch[nll(batch)], nll = -mean_i log p(x_i) in nats
// (FlowModel::Nll by default; image pipelines pass an NllFn that dequantises,
// applies the logit transform and subtracts its log-det, see
// data/preprocess.h). Each step: draw the next minibatch of a shuffled epoch,
// loss = nll(batch), Backward, optional gradient-norm clipping, optimizer Step,
// tape Reset.
//
// Validation: every eval_every steps the mean NLL over the whole validation
// set (NoGradScope, fixed rng seed so every evaluation sees the same noise).
// Early stopping: stop after `patience` evaluations without a new best; the
// parameters of the best evaluation are restored at the end (restore_best).
// NaN/inf guard: a non-finite loss or gradient stops training with a message
// and restores the last parameters whose loss was finite, and the optimizer
// state that went with them (diverged = true, steps = the updates those
// parameters had; this is an outcome, not an error Status). If the checkpoint
// on disk is newer than them, it is rewritten from them, so a checkpoint
// never outlives a divergence with parameters whose loss was not finite.
// Progress line (every log_every steps):
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

#include "absl/status/statusor.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "autodiff/tensor.h"
#include "flows/flow_model.h"

namespace flowtape::training {

// Mean NLL in nats of a minibatch (scalar tensor, differentiable in the
// parameters). `context` is undefined for unconditional data.
using NllFn =
    std::function<Tensor(const Tensor& batch, const Tensor& context, Rng& rng)>;
// FlowModel::Nll.
NllFn ModelNll(const flows::FlowModel& model);

struct TrainData {
  Tensor train;  // [N, ...]
  Tensor val;    // [M, ...]; undefined = no validation (no early stopping)
  Tensor train_context, val_context;  // [N, K] / [M, K] or undefined
};

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
};

struct TrainResult {
  int64_t steps = 0;  // updates applied (diverged: those of the restored state)
  double last_loss = 0.0;     // last finite training loss
  double best_val_nll = 0.0;  // (train loss mean if no val set)
  int64_t best_step = 0;
  std::vector<double> losses;                           // per step
  std::vector<std::pair<int64_t, double>> val_history;  // (step, val NLL)
  bool stopped_early = false;
  bool diverged = false;  // NaN/inf guard fired
  std::string message;    // why training stopped
  double seconds = 0.0;
};

// Errors: InvalidArgument for an empty training set, batch_size <= 0, context
// rows that do not match, a context for the training but not the validation
// data (or the reverse), a non-finite value in the data or context (naming
// the first bad row), checkpoint_every without a path; a failed checkpoint
// write is returned as its Status.
absl::StatusOr<TrainResult> TrainNll(const nn::Module& model, const NllFn& nll,
                                     nn::Optimizer& optimizer,
                                     const TrainData& data,
                                     const TrainOptions& options);
absl::StatusOr<TrainResult> TrainNll(const flows::FlowModel& model,
                                     nn::Optimizer& optimizer,
                                     const TrainData& data,
                                     const TrainOptions& options);

// Mean of nll over all rows of x in chunks of batch_size, without recording
// (NoGradScope). Chunk means are weighted by their sizes.
double EvaluateNll(const NllFn& nll, const Tensor& x, const Tensor& context,
                   int64_t batch_size, uint64_t seed = 12345);

// Global L2 norm of the accumulated gradients (inf/NaN if any entry is).
double GradNorm(const std::vector<Tensor>& params);

// A copy of every parameter value, and its restoration (same module).
std::vector<std::vector<double>> SnapshotParameters(const nn::Module& model);
void RestoreParameters(const nn::Module& model,
                       const std::vector<std::vector<double>>& snapshot);

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_TRAIN_H_

// Flow-matching training: minibatch descent on a regression loss (the CFM
// loss, flows/matching/cfm.h) with validation by the flow's NLL, an
// exponential moving average (EMA) of the parameters, the whole-state NaN
// guard, checkpoints, and data parallelism over a Communicator.
//
// Each step: the next minibatch x1 of a shuffled epoch (rows, and their
// context), loss = loss_fn(x1, c, rng) (a Status from it ends training
// with that Status), Backward, optional clipping, optimizer Step, then
//   ema <- d ema + (1 - d) theta,  d = min(ema_decay, (1 + k) / (10 + k))
// (k = the update count; the warm-up keeps early averages from remembering
// the initialisation), every parameter in its own dtype. ema_decay = 0 is
// no EMA (the model keeps its raw parameters).
//
// Validation: the loss is not a likelihood, so every eval_every steps (and at
// the end) the model, with its parameters swapped for the EMA, is scored by
// mean NLL on the validation set (training/train.h's EvaluateNll of `nll`:
// fixed seed, no tape). The model is any module with a likelihood: a
// FlowModel (nll = FlowModel::Nll), a density on a manifold (e.g. the
// sphere's SphereCnf inside a ManifoldFlowModel, nll = -mean log q), or an
// image pipeline (nll = the dequantised, logit-transformed NLL, with the
// loss regressing the field on the transformed images). Early stopping
// (patience) and restore_best as in TrainNll, on that NLL; the best
// evaluation's weights are the EMA weights it scored.
//
// Result: on return the model holds the EMA weights (the best evaluation's
// with restore_best and a validation set), i.e. the model that was
// evaluated; `ema`, when the caller passes one, holds the last EMA.
//
// NaN guard (as TrainNll, module_state.h): before the forward pass of every
// guard_every-th step the parameters, buffers, optimizer state and the EMA
// are copied; a non-finite loss or gradient restores the latest copy whose
// loss was finite (diverged = true) and ends training. A checkpoint written
// of the state whose loss was not finite is rewritten from the restored
// state (deleted if that fails the usability check).
//
// Checkpoints at the end of every checkpoint_every-th step (after its
// validation and early-stopping decision), of a model that passes the
// usability check (options.check_model if set, else CheckModelUsable on the
// EMA weights): `checkpoint_path` holds the raw parameters and the
// optimizer (nn/checkpoint.h) with TrainNll's training-state record
// (training/train_state.h), which here also carries the EMA and the
// position of the loss's random stream; with an EMA,
// `checkpoint_path + ".ema"` (written first) holds the EMA weights as a
// checkpoint of the same model (loadable with nn::LoadCheckpoint as the
// trained model). LoadFlowMatchingCheckpoint restores all three.
//
// Resume (options.resume_from) as TrainNll's (train.h, "Resume", with its
// errors): a run killed at any moment and restarted with the same options
// plus resume_from = its checkpoint_path ends with the final parameters,
// EMA, optimizer state and histories of the uninterrupted run, bit for bit
// (with the same number of ranks). The record, not the ".ema" file, is the
// EMA that resumes (a kill between the two writes leaves them apart). A
// record of TrainNll, or one whose EMA is absent or of another size
// (ema_decay = 0 against > 0), is InvalidArgument.
//
// Data parallel (options.communicator with N > 1 ranks; training/
// data_parallel.h, as TrainNll): every rank runs this loop on its own
// replica over the same TrainData and the same global batches; rank r's
// loss covers rows [B r / N, B (r + 1) / N) of each and its gradient is
// weighted by its share of the rows, the all-reduced gradient and loss are
// the global batch's, so the NaN guard, clipping, the optimizer step and the
// EMA update are identical on every rank. Rank 0's parameters, buffers,
// optimizer state and EMA are broadcast before the first step; validation
// rows are split over the ranks; only rank 0 logs, checks the model (its
// verdict shared) and writes checkpoints. Randomness: the loss's draws
// come from one stream, Rng(seed, 0), on every rank, and every rank draws
// for the whole global batch (x0, t, the coupling over all B rows) and
// keeps its rows, so N ranks reproduce one process exactly (up to the
// rounding of the summation order; tests: 1e-12 in float64 after 20
// steps), at the price of drawing (and coupling: exact OT is O(B^3))
// the whole batch on every rank. The loss must therefore be a
// ShardedFlowMatchingLossFn (FlowMatching::LossOfRows); a plain
// FlowMatchingLossFn is accepted only with N = 1. Validation is TrainNll's
// (EvaluateNll's chunks, the same value for any N).
// TrainFlowMatchingThreads runs N replicas on N threads (thread count as
// TrainNllThreads, train_threads.h) and returns rank 0's.
//
// Progress line (rank 0, every log_every steps), as TrainNll's:
//   step 200/1000  loss 1.2345  val 1.3000 (best 1.2900)  85.1 steps/s  ETA
//   0:09
// (loss: the mean CFM loss of the window; val: the EMA model's NLL).
// Errors (InvalidArgument): those of TrainNll's data and option checks,
// ema_decay not in [0, 1), threads > 1 without a communicator of that size
// (use TrainFlowMatchingThreads), a FlowMatchingLossFn under N > 1 ranks. A
// final model that fails the usability check is FailedPrecondition.
#ifndef FLOWTAPE_TRAINING_TRAIN_FLOW_MATCHING_H_
#define FLOWTAPE_TRAINING_TRAIN_FLOW_MATCHING_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "flows/flow_model.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "training/train.h"
#include "training/train_threads.h"

namespace flowtape::training {

// An EMA of a module's parameters, kept as buffers ("p0", "p1", ... in
// Module::Parameters() order) so ModuleState and checkpoints handle it.
class ParameterEma : public nn::Module {
 public:
  // Starts at the module's current parameters (in their dtypes).
  explicit ParameterEma(const nn::Module& module);
  // ema <- decay ema + (1 - decay) theta.
  void Update(double decay);
  // Exchanges the module's parameter values with the EMA's (twice: undone).
  void Swap();

 private:
  std::vector<Tensor> params_, shadow_;
};

struct FlowMatchingTrainOptions : TrainOptions {
  double ema_decay = 0.999;  // 0: no EMA
  // InvalidArgument naming the first bad option: batch_size,
  // eval_batch_size, eval_every or guard_every < 1, ema_decay outside
  // [0, 1), checkpoint_every without a path.
  absl::Status Validate() const;
};

// The minibatch loss (FlowMatching::Loss): x1 [B, ...], context or undefined.
using FlowMatchingLossFn = std::function<absl::StatusOr<Tensor>(
    const Tensor& x1, const Tensor& context, Rng& rng)>;
// The loss of rows [begin, end) of the global minibatch x1 [B, ...]: the
// mean over those rows, with every draw made from `rng` for all B rows as
// the whole-batch loss makes them (FlowMatching::LossOfRows), so that the
// weighted sum over any split of [0, B) is the whole batch's loss.
using ShardedFlowMatchingLossFn = std::function<absl::StatusOr<Tensor>(
    const Tensor& x1, const Tensor& context, Rng& rng, int64_t begin,
    int64_t end)>;

// `ema`: optional caller-owned EMA of `model` (a resumed one); null = one
// starting at the model's parameters. `nll` scores validation rows (and the
// final check, unless options.check_model is set).
absl::StatusOr<TrainResult> TrainFlowMatching(
    const nn::Module& model, const NllFn& nll, const FlowMatchingLossFn& loss,
    nn::Optimizer& optimizer, const TrainData& data,
    const FlowMatchingTrainOptions& options, ParameterEma* ema = nullptr);
// Data parallel: the loss of this rank's rows (see above).
absl::StatusOr<TrainResult> TrainFlowMatching(
    const nn::Module& model, const NllFn& nll,
    const ShardedFlowMatchingLossFn& loss, nn::Optimizer& optimizer,
    const TrainData& data, const FlowMatchingTrainOptions& options,
    ParameterEma* ema = nullptr);
// A FlowModel, validated by FlowModel::Nll.
absl::StatusOr<TrainResult> TrainFlowMatching(
    const flows::FlowModel& model, const FlowMatchingLossFn& loss,
    nn::Optimizer& optimizer, const TrainData& data,
    const FlowMatchingTrainOptions& options, ParameterEma* ema = nullptr);

struct FlowMatchingReplica {
  std::shared_ptr<const nn::Module> model;
  NllFn nll;                       // may refer to *model
  ShardedFlowMatchingLossFn loss;  // may refer to *model
  std::shared_ptr<nn::Optimizer> optimizer;
  std::shared_ptr<ParameterEma> ema;  // of *model; null = a fresh one
};
using FlowMatchingReplicaFactory =
    std::function<absl::StatusOr<FlowMatchingReplica>(int rank)>;
struct ThreadedFlowMatching {
  TrainResult result;           // rank 0's
  FlowMatchingReplica replica;  // rank 0's: the trained model
};

// N replicas from `make` (called once per rank, on that rank's thread,
// concurrently; each builds an independent replica) on N threads, N as
// TrainNllThreads (train_threads.h: options.threads, else
// FLOWTAPE_NUM_THREADS capped by min_rows_per_thread). Errors: those of
// TrainFlowMatching, the factory's, InvalidArgument for a replica lacking a
// model, nll, loss or optimizer, or options.communicator set.
absl::StatusOr<ThreadedFlowMatching> TrainFlowMatchingThreads(
    const FlowMatchingReplicaFactory& make, const TrainData& data,
    const FlowMatchingTrainOptions& options);

// Restores what TrainFlowMatching's checkpoints hold: the raw parameters and
// optimizer from `path`, and the EMA from `path + ".ema"` when `ema` is given.
absl::Status LoadFlowMatchingCheckpoint(const std::string& path,
                                        nn::Module& model,
                                        nn::Optimizer* optimizer,
                                        ParameterEma* ema);

}  // namespace flowtape::training

#endif  // FLOWTAPE_TRAINING_TRAIN_FLOW_MATCHING_H_

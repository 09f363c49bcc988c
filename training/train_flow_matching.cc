#include "training/train_flow_matching.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "data/preprocess.h"
#include "nn/checkpoint.h"
#include "parallel/thread_communicator.h"
#include "training/data_parallel.h"
#include "training/module_state.h"
#include "training/nan_guard.h"
#include "training/train_state.h"

namespace flowtape::training {
namespace {

absl::Status Validate(const TrainData& d, const FlowMatchingTrainOptions& o) {
  FT_RETURN_IF_ERROR(ValidateTrainData(d, "train_flow_matching"));
  if (absl::Status s = o.Validate(); !s.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("train_flow_matching: ", s.message()));
  return absl::OkStatus();
}

Tensor Rows(const Tensor& x, const std::vector<int64_t>& index) {
  return x.defined() ? data::TakeRows(x, index) : Tensor();
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since)
      .count();
}

// The EMA swapped into the model for the lifetime of the scope.
class EmaScope {
 public:
  explicit EmaScope(ParameterEma* ema) : ema_(ema) {
    if (ema_ != nullptr) ema_->Swap();
  }
  ~EmaScope() {
    if (ema_ != nullptr) ema_->Swap();
  }

 private:
  ParameterEma* ema_;
};

}  // namespace

ParameterEma::ParameterEma(const nn::Module& module)
    : params_(module.Parameters()) {
  for (size_t i = 0; i < params_.size(); ++i)
    shadow_.push_back(
        RegisterBuffer(absl::StrCat("p", i), params_[i].Detach()));
}

void ParameterEma::Update(double decay) {
  for (size_t i = 0; i < params_.size(); ++i)
    VisitDType(params_[i].dtype(), [&](auto zero) {
      using T = decltype(zero);
      const T* p = params_[i].template data<T>();
      T* s = shadow_[i].template mutable_data<T>();
      for (int64_t k = 0; k < params_[i].numel(); ++k)
        s[k] = static_cast<T>(decay * s[k] + (1 - decay) * p[k]);
    });
}

void ParameterEma::Swap() {
  for (size_t i = 0; i < params_.size(); ++i) {
    FT_CHECK(params_[i].dtype() == shadow_[i].dtype(),
             "parameter_ema: the module changed dtype after the EMA was made");
    VisitDType(params_[i].dtype(), [&](auto zero) {
      using T = decltype(zero);
      T* p = params_[i].template mutable_data<T>();
      T* s = shadow_[i].template mutable_data<T>();
      std::swap_ranges(p, p + params_[i].numel(), s);
    });
  }
}

absl::Status LoadFlowMatchingCheckpoint(const std::string& path,
                                        nn::Module& model,
                                        nn::Optimizer* optimizer,
                                        ParameterEma* ema) {
  FT_RETURN_IF_ERROR(nn::LoadCheckpoint(path, model, optimizer));
  if (ema == nullptr) return absl::OkStatus();
  // The model's parameters go to the EMA's slots and back: the file's
  // values land in the EMA, the raw parameters stay.
  ema->Swap();
  absl::Status s = nn::LoadCheckpoint(path + ".ema", model);
  ema->Swap();
  return s;
}

absl::Status FlowMatchingTrainOptions::Validate() const {
  if (batch_size <= 0 || eval_batch_size <= 0 || eval_every <= 0 ||
      guard_every < 1)
    return absl::InvalidArgumentError(absl::StrCat(
        "batch_size, eval_batch_size, eval_every and guard_every must be >= "
        "1, got ",
        batch_size, ", ", eval_batch_size, ", ", eval_every, ", ",
        guard_every));
  if (!(ema_decay >= 0 && ema_decay < 1))
    return absl::InvalidArgumentError(
        absl::StrCat("ema_decay must be in [0, 1), got ", ema_decay));
  if (checkpoint_every > 0 && checkpoint_path.empty())
    return absl::InvalidArgumentError(
        "checkpoint_every is set but checkpoint_path is empty");
  return absl::OkStatus();
}

absl::StatusOr<TrainResult> TrainFlowMatching(const flows::FlowModel& model,
                                              const FlowMatchingLossFn& loss_fn,
                                              nn::Optimizer& optimizer,
                                              const TrainData& data,
                                              const FlowMatchingTrainOptions& o,
                                              ParameterEma* ema) {
  return TrainFlowMatching(model, ModelNll(model), loss_fn, optimizer, data, o,
                           ema);
}

absl::StatusOr<TrainResult> TrainFlowMatching(const nn::Module& model,
                                              const NllFn& nll,
                                              const FlowMatchingLossFn& loss_fn,
                                              nn::Optimizer& optimizer,
                                              const TrainData& data,
                                              const FlowMatchingTrainOptions& o,
                                              ParameterEma* ema) {
  if (o.communicator != nullptr && o.communicator->size() > 1) {
    const absl::Status s = absl::InvalidArgumentError(
        "train_flow_matching: a FlowMatchingLossFn draws for the rows it is "
        "given, so ranks would not reproduce one process: pass a "
        "ShardedFlowMatchingLossFn");
    o.communicator->Abort(s);
    return s;
  }
  ShardedFlowMatchingLossFn sharded =
      [&loss_fn](const Tensor& x1, const Tensor& c, Rng& rng, int64_t begin,
                 int64_t end) -> absl::StatusOr<Tensor> {
    FT_CHECK(begin == 0 && end == x1.dim(0),
             "train_flow_matching: a whole-batch loss given rows ", begin, "..",
             end);
    return loss_fn(x1, c, rng);
  };
  return TrainFlowMatching(model, nll, sharded, optimizer, data, o, ema);
}

namespace {

absl::StatusOr<TrainResult> Train(parallel::Communicator& comm,
                                  const nn::Module& model, const NllFn& nll,
                                  const ShardedFlowMatchingLossFn& loss_fn,
                                  nn::Optimizer& optimizer,
                                  const TrainData& data,
                                  const FlowMatchingTrainOptions& o,
                                  ParameterEma* ema) {
  const bool lead = comm.rank() == 0;
  std::ostream* log = o.log_every > 0 && lead ? o.log : nullptr;
  const std::vector<Tensor> params = model.Parameters();
  const int64_t n = data.train.dim(0), batch = std::min(o.batch_size, n);
  FT_ASSIGN_OR_RETURN(DataParallel dp,
                      DataParallel::Create(comm, params, batch, o.bucket_bytes,
                                           "train_flow_matching"));
  const bool has_val = data.val.defined() && data.val.dim(0) > 0;
  const bool checkpoints = o.checkpoint_every > 0;
  std::unique_ptr<ParameterEma> own_ema;
  if (o.ema_decay > 0 && ema == nullptr) {
    own_ema = std::make_unique<ParameterEma>(model);
    ema = own_ema.get();
  }
  ParameterEma* averaged = o.ema_decay > 0 ? ema : nullptr;
  // The loss's draws: one stream, the same on every rank (each draws for
  // the whole global batch and keeps its rows).
  BatchOrder order(n, batch, o.seed);
  Rng rng(o.seed, 0);
  TrainResult r;
  r.ranks = dp.size();
  r.best_val_nll = std::numeric_limits<double>::infinity();

  // The NaN guard restores the EMA with the model and the optimizer.
  NanGuard guard(model, optimizer, averaged, o.guard_every);
  std::optional<ModuleState> best, ema_state;
  if (has_val) best.emplace(model, nullptr);
  if (averaged != nullptr) ema_state.emplace(*averaged, nullptr);
  ResumeTarget into;
  into.model = &model;
  into.optimizer = &optimizer;
  into.guard = &guard;
  into.best = best ? &*best : nullptr;
  into.ema = ema_state ? &*ema_state : nullptr;
  into.rng = &rng;
  std::optional<TrainState> resumed;
  if (!o.resume_from.empty()) {
    FT_ASSIGN_OR_RETURN(
        resumed, ReadResume(dp, "train_flow_matching", into, data, o, batch));
  }
  // Model, optimizer and EMA start as rank 0's (a resumed run's: the file's).
  FT_RETURN_IF_ERROR(dp.BroadcastState(guard.tensors()));
  guard.Reset();
  int64_t first_step = 1;
  LoopCounters counters;
  double clock = 0.0;
  bool finished = false;
  if (resumed) {
    const TrainState& t = *resumed;
    r = t.result;
    r.ranks = dp.size();
    first_step = t.step + 1;
    counters = t.counters;
    clock = r.seconds;
    finished = t.finished;
    FT_RETURN_IF_ERROR(
        ApplyRecord("train_flow_matching", t, into, order, o.resume_from, log));
  }
  // Can the model (holding the weights to check) sample and score? Rank 0
  // decides for all.
  auto check_usable = [&]() -> absl::StatusOr<absl::Status> {
    absl::Status usable;
    if (lead) {
      Rng check_rng(o.seed, kCheckStream);
      usable = o.check_model ? o.check_model(check_rng)
                             : CheckModelUsable(model, nll, data.train,
                                                data.train_context, check_rng);
    }
    return dp.ShareVerdict(usable);
  };
  // Writes the checkpoint files (rank 0) of a usable model (the EMA weights
  // are checked) with the training state after `step` loop steps; returns
  // the check's verdict, or a failed write.
  std::optional<TrainState> run;  // the records' constant part, on rank 0
  auto save = [&](int64_t step, bool ended) -> absl::StatusOr<absl::Status> {
    absl::Status usable, written;
    {
      EmaScope swap(averaged);
      FT_ASSIGN_OR_RETURN(usable, check_usable());
      if (usable.ok() && averaged != nullptr && lead)
        written = nn::SaveCheckpoint(o.checkpoint_path + ".ema", model);
    }
    if (usable.ok() && written.ok() && lead) {
      if (!run)
        run = RunRecord("train_flow_matching", o, batch, data, dp.size());
      TrainState t = StepRecord(*run, step, ended, counters, r, guard,
                                best ? &*best : nullptr);
      if (ema_state) {
        ema_state->Capture();
        t.ema.assign(ema_state->data().begin(), ema_state->data().end());
      }
      const Rng::Position at = rng.position();
      t.rng.assign(at.begin(), at.end());
      written = nn::SaveCheckpoint(o.checkpoint_path, model, &optimizer,
                                   {{kTrainStateKey, EncodeState(t)}});
    }
    FT_RETURN_IF_ERROR(dp.AgreeWithRankZero(written));
    return usable;
  };
  // As in the uninterrupted run, the checkpoint holds the resumed step (the
  // same on every rank: under mpirun their checkpoint paths differ).
  int64_t saved_updates = resumed ? resumed->step : -1;
  const auto start = std::chrono::steady_clock::now();

  for (int64_t step = first_step; !finished && step <= o.max_steps; ++step) {
    const std::vector<int64_t> index = order.Next();
    guard.BeforeStep(step);
    optimizer.ZeroGrad();
    absl::StatusOr<Tensor> loss =
        loss_fn(Rows(data.train, index), Rows(data.train_context, index), rng,
                dp.begin(), dp.end());
    if (!loss.ok()) {
      Tape::Get().Reset();
      return loss.status();
    }
    double value = loss->item();
    if (std::isfinite(value)) Backward(*loss);
    Tape::Get().Reset();
    // Gradients and loss: weighted sums over ranks, the same on each.
    FT_RETURN_IF_ERROR(dp.Reduce(absl::MakeSpan(&value, 1), &r));
    double gnorm = std::numeric_limits<double>::quiet_NaN();
    if (std::isfinite(value)) {
      guard.Finite(step);
      r.last_loss = value;
      gnorm = o.clip_grad_norm > 0 ? nn::ClipGradNorm(params, o.clip_grad_norm)
                                   : GradNorm(params);
    }
    if (!std::isfinite(value) || !std::isfinite(gnorm)) {
      optimizer.ZeroGrad();
      r.steps = guard.Restore();
      r.diverged = true;
      r.message = guard.Message(step, value, gnorm);
      // A checkpoint of the condemned state is rewritten from the restored
      // one, as a record of the ended run (or deleted if that cannot sample
      // and score).
      if (checkpoints && saved_updates == step - 1) {
        r.seconds = clock + Seconds(start);
        FT_ASSIGN_OR_RETURN(absl::Status usable, save(step - 1, true));
        if (!usable.ok() && lead) {
          std::remove(o.checkpoint_path.c_str());
          std::remove((o.checkpoint_path + ".ema").c_str());
        }
      }
      break;
    }
    optimizer.Step();
    if (averaged != nullptr)
      averaged->Update(std::min(o.ema_decay, (1.0 + step) / (10.0 + step)));
    r.steps = step;
    r.losses.push_back(value);
    r.elapsed.push_back(clock + Seconds(start));
    counters.window_loss += value;
    ++counters.window;

    const bool last = step == o.max_steps;
    std::string val_text;
    if (has_val && (step % o.eval_every == 0 || last)) {
      absl::StatusOr<double> v;
      {
        EmaScope swap(averaged);
        v = dp.Evaluate(nll, data.val, data.val_context, o.eval_batch_size);
        if (v.ok() && *v < r.best_val_nll) best->Capture();
      }
      if (!v.ok()) return v.status();
      r.val_history.emplace_back(step, *v);
      if (*v < r.best_val_nll) {
        r.best_val_nll = *v;
        r.best_step = step;
        counters.evals_since_best = 0;
      } else {
        ++counters.evals_since_best;
      }
      val_text = absl::StrFormat("  val %.4f (best %.4f)", *v, r.best_val_nll);
      if (o.patience > 0 && counters.evals_since_best >= o.patience) {
        r.stopped_early = true;
        r.message = absl::StrCat(
            "early stop at step ", step, ": no better validation NLL for ",
            o.patience, " evaluations (best at step ", r.best_step, ")");
      }
    }
    if (log && (step % o.log_every == 0 || last || r.stopped_early)) {
      *log << ProgressLine(step, o.max_steps,
                           counters.window_loss / counters.window, val_text,
                           (step - first_step + 1) / Seconds(start))
           << std::endl;
      counters.window_loss = 0.0;
      counters.window = 0;
    }
    if (checkpoints && step % o.checkpoint_every == 0) {
      r.seconds = clock + Seconds(start);
      FT_ASSIGN_OR_RETURN(absl::Status usable, save(step, r.stopped_early));
      if (usable.ok()) {
        saved_updates = step;
      } else if (log) {
        *log << "step " << step
             << ": checkpoint not written: " << usable.message() << std::endl;
      }
    }
    if (r.stopped_early) break;
  }
  if (r.message.empty())
    r.message = absl::StrCat("finished ", r.steps, " steps");
  // The model becomes the evaluated one: the EMA (a copy: `ema` keeps it),
  // or the best evaluation's.
  if (averaged != nullptr) {
    averaged->Swap();
    averaged->Update(0.0);  // the EMA again: the model's values
  }
  if (has_val && o.restore_best && !r.diverged && r.best_step > 0)
    best->Restore();
  if (!has_val) r.best_val_nll = r.last_loss;
  r.seconds = clock + Seconds(start);
  FT_ASSIGN_OR_RETURN(r.model_status, check_usable());
  if (!r.model_status.ok()) {
    r.message = absl::StrCat(r.message, "; ", r.model_status.message());
    if (log) *log << r.message << std::endl;
    return absl::FailedPreconditionError(
        absl::StrCat("train_flow_matching: ", r.message));
  }
  if (log && (r.stopped_early || r.diverged)) *log << r.message << std::endl;
  return r;
}

}  // namespace

absl::StatusOr<TrainResult> TrainFlowMatching(
    const nn::Module& model, const NllFn& nll,
    const ShardedFlowMatchingLossFn& loss_fn, nn::Optimizer& optimizer,
    const TrainData& data, const FlowMatchingTrainOptions& o,
    ParameterEma* ema) {
  absl::Status s = Validate(data, o);
  if (s.ok())
    s = CheckThreadsOption(o.threads, o.communicator, "train_flow_matching",
                           "TrainFlowMatchingThreads");
  if (!s.ok()) {
    if (o.communicator != nullptr) o.communicator->Abort(s);
    return s;
  }
  parallel::SoloCommunicator solo;
  parallel::Communicator& comm =
      o.communicator != nullptr ? *o.communicator : solo;
  absl::StatusOr<TrainResult> r =
      Train(comm, model, nll, loss_fn, optimizer, data, o, ema);
  if (!r.ok()) comm.Abort(r.status());  // peers waiting for this rank stop
  return r;
}

absl::StatusOr<ThreadedFlowMatching> TrainFlowMatchingThreads(
    const FlowMatchingReplicaFactory& make, const TrainData& data,
    const FlowMatchingTrainOptions& options) {
  const int64_t rows =
      data.train.defined() && data.train.rank() > 0 ? data.train.dim(0) : 0;
  FT_ASSIGN_OR_RETURN(
      ReplicaThreads plan,
      PlanReplicaThreads(options, std::min(options.batch_size, rows),
                         "train_flow_matching_threads"));
  FT_ASSIGN_OR_RETURN(auto run,
                      (RunReplicaThreads<FlowMatchingReplica,
                                         FlowMatchingTrainOptions, TrainResult>(
                          plan, make,
                          [](const FlowMatchingReplica& r) {
                            return r.model != nullptr && r.nll && r.loss &&
                                   r.optimizer != nullptr;
                          },
                          "train_flow_matching_threads",
                          "a model, an nll, a loss or an optimizer", options,
                          [&data](const FlowMatchingReplica& r,
                                  const FlowMatchingTrainOptions& o) {
                            return TrainFlowMatching(*r.model, r.nll, r.loss,
                                                     *r.optimizer, data, o,
                                                     r.ema.get());
                          })));
  return ThreadedFlowMatching{std::move(run.first), std::move(run.second)};
}

}  // namespace flowtape::training

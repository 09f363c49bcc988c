#include "training/train.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autodiff/check.h"
#include "autodiff/eigen.h"
#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "data/preprocess.h"
#include "flows/flow.h"
#include "flows/invertibility.h"
#include "nn/checkpoint.h"
#include "training/data_parallel.h"
#include "training/module_state.h"
#include "training/nan_guard.h"
#include "training/train_state.h"

namespace flowtape::training {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Rows `index` of x (any dtype; undefined stays undefined).
Tensor Rows(const Tensor& x, const std::vector<int64_t>& index) {
  if (!x.defined()) return Tensor();
  std::vector<int64_t> dims = x.shape().dims();
  dims[0] = static_cast<int64_t>(index.size());
  Tensor out = Tensor::Empty(Shape(dims), x.dtype());
  const size_t row = x.numel() / x.dim(0) * DTypeSize(x.dtype());
  const char* src = static_cast<const char*>(x.raw_data());
  char* dst = x.dtype() == kFloat32
                  ? reinterpret_cast<char*>(out.mutable_data<float>())
                  : reinterpret_cast<char*>(out.mutable_data<double>());
  for (size_t i = 0; i < index.size(); ++i) {
    FT_CHECK(index[i] >= 0 && index[i] < x.dim(0), "train_nll: row ", index[i],
             " out of range for ", x.shape().ToString());
    std::memcpy(dst + i * row, src + index[i] * row, row);
  }
  return out;
}

std::vector<std::vector<double>> Snapshot(const std::vector<Tensor>& ts) {
  std::vector<std::vector<double>> s;
  for (const Tensor& t : ts) s.push_back(t.ToVector());
  return s;
}

void Restore(std::vector<Tensor> ts,
             const std::vector<std::vector<double>>& snapshot,
             const char* who) {
  FT_CHECK(ts.size() == snapshot.size(), who, ": ", snapshot.size(),
           " tensors for ", ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    FT_CHECK(static_cast<int64_t>(snapshot[i].size()) == ts[i].numel(), who,
             ": size mismatch at tensor ", i);
    VisitDType(ts[i].dtype(), [&](auto zero) {
      using T = decltype(zero);
      std::copy(snapshot[i].begin(), snapshot[i].end(),
                ts[i].mutable_data<T>());
    });
  }
}

// OK iff every entry of t (rows along axis 0) is finite.
absl::Status CheckFinite(const Tensor& t, const char* what,
                         absl::string_view op) {
  if (!t.defined() || t.rank() == 0) return absl::OkStatus();
  const int64_t row = t.numel() / std::max<int64_t>(t.dim(0), 1);
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(t[i]))
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": ", what, " row ", i / row, " has ", t[i],
                       " at entry ", i % row, " (every value must be finite)"));
  return absl::OkStatus();
}

absl::Status Validate(const TrainData& d, const TrainOptions& o) {
  FT_RETURN_IF_ERROR(ValidateTrainData(d, "train_nll"));
  if (absl::Status s = o.Validate(); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("train_nll: ", s.message()));
  return absl::OkStatus();
}

// |chunk k| nll(chunk k): chunk k of x holds rows [k b, min((k + 1) b, M)),
// scored without recording with its own stream Rng(seed, k).
double ChunkSum(const NllFn& nll, const Tensor& x, const Tensor& context,
                int64_t k, int64_t batch_size, uint64_t seed) {
  NoGradScope no_grad;
  const int64_t start = k * batch_size;
  const int64_t len = std::min(batch_size, x.dim(0) - start);
  std::vector<int64_t> index(len);
  for (int64_t i = 0; i < len; ++i) index[i] = start + i;
  Rng rng(seed, static_cast<uint64_t>(k));
  return nll(Rows(x, index), Rows(context, index), rng).item() * len;
}

int64_t Chunks(const Tensor& x, int64_t batch_size) {
  return (x.dim(0) + batch_size - 1) / batch_size;
}

bool AllFinite(const Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(t[i])) return false;
  return true;
}

// Counts the non-finite rows of t (axis 0).
int64_t BadRows(const Tensor& t) {
  const int64_t n = t.dim(0), row = t.numel() / std::max<int64_t>(n, 1);
  int64_t bad = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < row; ++j)
      if (!std::isfinite(t[i * row + j])) {
        ++bad;
        break;
      }
  return bad;
}

}  // namespace

absl::Status TrainOptions::Validate() const {
  if (batch_size <= 0 || eval_batch_size <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("batch sizes must be positive, got ", batch_size, " and ",
                     eval_batch_size));
  if (eval_every <= 0)
    return absl::InvalidArgumentError("eval_every must be >= 1");
  if (guard_every < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("guard_every must be >= 1, got ", guard_every));
  if (invertibility_every < 0 || invertibility_rows < 1 ||
      !(max_inverse_condition >= 0) || !(max_inverse_lipschitz >= 0))
    return absl::InvalidArgumentError(
        "invertibility_every must be >= 0, invertibility_rows >= 1 and the "
        "inverse limits >= 0");
  if (checkpoint_every > 0 && checkpoint_path.empty())
    return absl::InvalidArgumentError(
        "checkpoint_every is set but checkpoint_path is empty");
  return absl::OkStatus();
}

absl::Status ValidateTrainData(const TrainData& d, absl::string_view op) {
  if (!d.train.defined() || d.train.rank() == 0 || d.train.dim(0) == 0)
    return absl::InvalidArgumentError(absl::StrCat(op, ": empty training set"));
  auto rows_match = [](const Tensor& x, const Tensor& c) {
    return !c.defined() || (x.defined() && c.dim(0) == x.dim(0));
  };
  if (!rows_match(d.train, d.train_context) ||
      !rows_match(d.val, d.val_context))
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": context rows do not match the data rows"));
  const bool has_val = d.val.defined() && d.val.rank() > 0 && d.val.dim(0) > 0;
  if (has_val && d.train_context.defined() != d.val_context.defined())
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": ", d.train_context.defined() ? "train" : "validation",
        " data has a context but ",
        d.train_context.defined() ? "validation" : "train",
        " data has none (a conditional flow needs both)"));
  const std::pair<Tensor, const char*> tensors[] = {
      {d.train, "training data"},
      {d.train_context, "training context"},
      {d.val, "validation data"},
      {d.val_context, "validation context"}};
  for (const auto& [t, what] : tensors)
    FT_RETURN_IF_ERROR(CheckFinite(t, what, op));
  return absl::OkStatus();
}

std::string ProgressLine(int64_t step, int64_t max_steps, double loss,
                         const std::string& val_text, double steps_per_s) {
  const int64_t eta =
      static_cast<int64_t>((max_steps - step) / steps_per_s + 0.5);
  const std::string eta_text =
      eta >= 3600 ? absl::StrFormat("%d:%02d:%02d", eta / 3600, (eta / 60) % 60,
                                    eta % 60)
                  : absl::StrFormat("%d:%02d", eta / 60, eta % 60);
  return absl::StrFormat("step %d/%d  loss %.4f%s  %.1f steps/s  ETA %s", step,
                         max_steps, loss, val_text, steps_per_s, eta_text);
}

absl::Status CheckModelUsable(const nn::Module& model, const NllFn& nll,
                              const Tensor& x, const Tensor& context, Rng& rng,
                              int64_t n) {
  NoGradScope no_grad;
  TapeScope scope;
  n = std::min(n, x.dim(0));
  std::vector<int64_t> index(n);
  for (int64_t i = 0; i < n; ++i) index[i] = i;
  const Tensor rows = Rows(x, index), c = Rows(context, index);
  const auto* flow = dynamic_cast<const flows::FlowModel*>(&model);
  if (flow == nullptr) {
    const double v = nll(rows, c, rng).item();
    if (std::isfinite(v)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        "the model cannot score: nll of ", n, " training rows is ", v));
  }
  // FlowModel::Sample, with the base's draws (float64) in the model's dtype.
  const Tensor samples =
      flow->flow()
          ->Inverse(Cast(flow->base()->Sample(n, rng), model.dtype()), c, &rng)
          .value;
  if (int64_t bad = BadRows(samples); bad > 0)
    return absl::FailedPreconditionError(
        absl::StrCat("the model cannot sample: ", bad, " of ", n,
                     " samples are not finite"));
  if (!AllFinite(flow->LogProb(samples, c, &rng)))
    return absl::FailedPreconditionError(
        absl::StrCat("the model cannot score its own samples: log-densities "
                     "of ",
                     n, " samples are not all finite"));
  if (!AllFinite(flow->LogProb(rows, c, &rng)))
    return absl::FailedPreconditionError(
        absl::StrCat("the model cannot score: log-densities of ", n,
                     " training rows are not all finite"));
  return absl::OkStatus();
}

// Read in place, in the gradient's dtype, summed in double (vectorised).
double GradNorm(const std::vector<Tensor>& params) {
  double sq = 0.0;
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    VisitDType(g.dtype(), [&](auto zero) {
      using T = decltype(zero);
      sq += Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(g.data<T>(),
                                                                 g.numel())
                .template cast<double>()
                .square()
                .sum();
    });
  }
  return std::sqrt(sq);
}

NllFn ModelNll(const flows::FlowModel& model) {
  return [&model](const Tensor& x, const Tensor& context, Rng& rng) {
    return model.Nll(x, context, &rng);
  };
}

std::vector<std::vector<double>> SnapshotParameters(const nn::Module& model) {
  return Snapshot(model.Parameters());
}

void RestoreParameters(const nn::Module& model,
                       const std::vector<std::vector<double>>& snapshot) {
  Restore(model.Parameters(), snapshot, "restore_parameters");
}

double EvaluateNll(const NllFn& nll, const Tensor& x, const Tensor& context,
                   int64_t batch_size, uint64_t seed) {
  double total = 0.0;
  for (int64_t k = 0, n = Chunks(x, batch_size); k < n; ++k)
    total += ChunkSum(nll, x, context, k, batch_size, seed);
  return total / x.dim(0);
}

absl::StatusOr<double> EvaluateNll(parallel::Communicator& comm,
                                   const NllFn& nll, const Tensor& x,
                                   const Tensor& context, int64_t batch_size,
                                   uint64_t seed) {
  const int64_t chunks = Chunks(x, batch_size), r = comm.rank(),
                size = comm.size();
  // One entry per chunk, written by the one rank that scores it: the
  // all-reduce adds zeros to it (exact), whatever the number of ranks.
  std::vector<double> sums(chunks, 0.0);
  for (int64_t k = chunks * r / size; k < chunks * (r + 1) / size; ++k)
    sums[k] = ChunkSum(nll, x, context, k, batch_size, seed);
  FT_RETURN_IF_ERROR(comm.AllReduceSum(absl::MakeSpan(sums)));
  double total = 0.0;
  for (double v : sums) total += v;
  return total / x.dim(0);
}

absl::StatusOr<TrainResult> TrainNll(const flows::FlowModel& model,
                                     nn::Optimizer& optimizer,
                                     const TrainData& data,
                                     const TrainOptions& options) {
  return TrainNll(model, ModelNll(model), optimizer, data, options);
}

absl::StatusOr<TrainResult> TrainNll(const nn::Module& model, const NllFn& nll,
                                     nn::Optimizer& optimizer,
                                     const TrainData& data,
                                     const TrainOptions& options) {
  FT_ASSIGN_OR_RETURN(TrainResult r,
                      TrainNllOutcome(model, nll, optimizer, data, options));
  if (!r.model_status.ok())
    return absl::FailedPreconditionError(
        absl::StrCat("train_nll: ", r.message));
  return r;
}

namespace {

// The invertibility check of TrainOptions: rank 0 measures and shares its
// verdict; the warning text, empty when the inverse is fine.
absl::StatusOr<std::string> CheckInverse(DataParallel& dp,
                                         const flows::FlowModel& model,
                                         const TrainData& data,
                                         const TrainOptions& o, int64_t step,
                                         TrainResult* r) {
  absl::Status verdict;
  if (dp.lead()) {
    const bool has_val = data.val.defined() && data.val.dim(0) > 0;
    const Tensor& x = has_val ? data.val : data.train;
    const Tensor& c = has_val ? data.val_context : data.train_context;
    const int64_t rows = std::min(o.invertibility_rows, x.dim(0));
    flows::InvertibilityOptions io;
    if (c.defined()) io.context = Narrow(c, 0, 0, rows);
    io.seed = o.seed;
    FT_ASSIGN_OR_RETURN(
        flows::Invertibility report,
        flows::InvertibilityReport(*model.flow(), Narrow(x, 0, 0, rows), io));
    r->inverse_condition_history.emplace_back(step, report.model.max_condition);
    const std::string alarm = flows::InvertibilityAlarm(
        report, o.max_inverse_condition, o.max_inverse_lipschitz);
    if (!alarm.empty())
      verdict = absl::FailedPreconditionError(
          absl::StrCat("step ", step, ": ", alarm));
  }
  FT_ASSIGN_OR_RETURN(absl::Status shared, dp.ShareVerdict(verdict));
  return std::string(shared.message());
}

absl::StatusOr<TrainResult> Train(parallel::Communicator& comm,
                                  const nn::Module& model, const NllFn& nll,
                                  nn::Optimizer& optimizer,
                                  const TrainData& data,
                                  const TrainOptions& o) {
  const int rank = comm.rank(), size = comm.size();
  std::ostream* log = o.log_every > 0 && rank == 0 ? o.log : nullptr;
  const std::vector<Tensor> params = model.Parameters();
  const int64_t n = data.train.dim(0);
  const int64_t batch = std::min(o.batch_size, n);
  FT_ASSIGN_OR_RETURN(
      DataParallel dp,
      DataParallel::Create(comm, params, batch, o.bucket_bytes, "train_nll"));
  const bool has_val = data.val.defined() && data.val.dim(0) > 0;
  const bool checkpoints = o.checkpoint_every > 0;
  const auto* flow_model = dynamic_cast<const flows::FlowModel*>(&model);
  if (o.invertibility_every > 0 && flow_model == nullptr)
    return absl::InvalidArgumentError(
        "train_nll: invertibility_every needs a FlowModel");
  BatchOrder order(n, batch, o.seed);
  TrainResult r;
  r.ranks = size;
  r.best_val_nll = std::numeric_limits<double>::infinity();
  NanGuard guard(model, optimizer, nullptr, o.guard_every);
  // The best validated state (allocated only when there is validation data).
  std::optional<ModuleState> best;
  if (has_val) best.emplace(model, nullptr);
  ResumeTarget into;
  into.model = &model;
  into.optimizer = &optimizer;
  into.guard = &guard;
  into.best = best ? &*best : nullptr;
  std::optional<TrainState> resumed;
  if (!o.resume_from.empty()) {
    FT_ASSIGN_OR_RETURN(resumed,
                        ReadResume(dp, "train_nll", into, data, o, batch));
  }
  if (!resumed) {
    absl::Status s;
    if (rank == 0) {
      const std::vector<int64_t> first = order.Peek(batch);
      const Tensor x = Rows(data.train, first),
                   c = Rows(data.train_context, first);
      if (o.initialize) {
        s = o.initialize(x, c);
      } else {
        NoGradScope no_grad;
        flows::InitializationPassScope pass;
        Rng init_rng(o.seed, kInitStream);
        const double loss = nll(x, c, init_rng).item();
        if (!std::isfinite(loss))
          s = absl::InvalidArgumentError(absl::StrCat(
              "train_nll: the initialisation pass on the first batch gave a "
              "non-finite loss (",
              loss, ")"));
      }
      Tape::Get().Reset();
    }
    FT_RETURN_IF_ERROR(dp.AgreeWithRankZero(s));
  }
  FT_RETURN_IF_ERROR(dp.BroadcastState(guard.tensors()));
  guard.Reset();
  // Updates held by the checkpoint on disk, and the step that diverged.
  int64_t saved_updates = -1, diverged_at = 0;
  int64_t first_step = 1;
  LoopCounters counters;
  double clock = 0.0;
  bool finished = false;
  if (resumed) {
    const TrainState& t = *resumed;
    r = t.result;
    r.ranks = size;
    r.model_status = absl::OkStatus();
    first_step = t.step + 1;
    counters = t.counters;
    clock = r.seconds;
    finished = t.finished;
    // As in the uninterrupted run, the checkpoint holds this step (the same
    // on every rank: under mpirun their checkpoint paths differ).
    saved_updates = t.step;
    FT_RETURN_IF_ERROR(
        ApplyRecord("train_nll", t, into, order, o.resume_from, log));
  }
  // Can the model sample and score? Rank 0 decides for all (the outer
  // Status is the communicator's).
  auto check_usable = [&]() -> absl::StatusOr<absl::Status> {
    absl::Status usable;
    if (rank == 0) {
      Rng check_rng(o.seed, kCheckStream);
      usable = o.check_model ? o.check_model(check_rng)
                             : CheckModelUsable(model, nll, data.train,
                                                data.train_context, check_rng);
    }
    return dp.ShareVerdict(usable);
  };
  // Rank 0 writes the model, the optimizer and the training state after
  // `step` loop steps (a failed write fails every rank).
  std::optional<TrainState> run;  // the records' constant part, on rank 0
  auto save = [&](int64_t step, bool ended) -> absl::Status {
    absl::Status s;
    if (rank == 0) {
      if (!run) run = RunRecord("train_nll", o, batch, data, size);
      TrainState t = StepRecord(*run, step, ended, counters, r, guard,
                                best ? &*best : nullptr);
      s = nn::SaveCheckpoint(o.checkpoint_path, model, &optimizer,
                             {{kTrainStateKey, EncodeState(t)}});
    }
    return dp.AgreeWithRankZero(s);
  };
  const auto start = Clock::now();

  for (int64_t step = first_step; !finished && step <= o.max_steps; ++step) {
    const std::vector<int64_t> index = order.Next(dp.begin(), dp.end());
    guard.BeforeStep(step);
    optimizer.ZeroGrad();
    // A fresh stream per step and rank: a resumed run draws the same noise.
    Rng rng(o.seed, (static_cast<uint64_t>(step) << 20) + rank);
    Tensor loss =
        nll(Rows(data.train, index), Rows(data.train_context, index), rng);
    double value = loss.item();
    if (std::isfinite(value)) Backward(loss);
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
      optimizer.ZeroGrad();  // no non-finite gradient left behind
      r.steps = guard.Restore();
      diverged_at = step;
      r.diverged = true;
      r.message = guard.Message(step, value, gnorm);
      break;
    }
    optimizer.Step();
    r.steps = step;
    r.losses.push_back(value);
    r.elapsed.push_back(clock + Seconds(start));
    counters.window_loss += value;
    ++counters.window;

    if (o.invertibility_every > 0 && step % o.invertibility_every == 0) {
      FT_ASSIGN_OR_RETURN(std::string alarm,
                          CheckInverse(dp, *flow_model, data, o, step, &r));
      if (!alarm.empty() && rank == 0 && o.log != nullptr)
        *o.log << alarm << std::endl;
      if (!alarm.empty() && o.stop_on_bad_inverse) {
        r.bad_inverse = true;
        r.message = alarm;
      }
    }

    const bool last = step == o.max_steps;
    std::string val_text;
    if (!r.bad_inverse && has_val && (step % o.eval_every == 0 || last)) {
      FT_ASSIGN_OR_RETURN(
          const double v,
          dp.Evaluate(nll, data.val, data.val_context, o.eval_batch_size));
      r.val_history.emplace_back(step, v);
      if (v < r.best_val_nll) {
        r.best_val_nll = v;
        r.best_step = step;
        best->Capture();
        counters.evals_since_best = 0;
      } else {
        ++counters.evals_since_best;
      }
      val_text = absl::StrFormat("  val %.4f (best %.4f)", v, r.best_val_nll);
      if (o.patience > 0 && counters.evals_since_best >= o.patience) {
        r.stopped_early = true;
        r.message = absl::StrCat(
            "early stop at step ", step, ": no better ", "validation NLL for ",
            o.patience, " evaluations (best at step ", r.best_step, ")");
      }
    }
    if (log && !r.bad_inverse &&
        (step % o.log_every == 0 || last || r.stopped_early)) {
      *log << ProgressLine(step, o.max_steps,
                           counters.window_loss / counters.window, val_text,
                           (step - first_step + 1) / Seconds(start))
           << std::endl;
      counters.window_loss = 0.0;
      counters.window = 0;
    }
    const bool stop = r.stopped_early || r.bad_inverse;
    if (checkpoints && step % o.checkpoint_every == 0) {
      // Only a model that can sample and score is written.
      FT_ASSIGN_OR_RETURN(absl::Status usable, check_usable());
      if (usable.ok()) {
        r.seconds = clock + Seconds(start);
        FT_RETURN_IF_ERROR(save(step, stop));
        saved_updates = step;
      } else if (log) {
        *log << "step " << step
             << ": checkpoint not written: " << usable.message() << std::endl;
      }
    }
    if (stop) break;
  }
  if (r.message.empty())
    r.message = absl::StrCat("finished ", r.steps, " steps");
  if (has_val && o.restore_best && !r.diverged && r.best_step > 0 &&
      r.best_step != r.steps)
    best->Restore();
  if (!has_val) r.best_val_nll = r.last_loss;

  r.seconds = clock + Seconds(start);  // the steps, not the final check
  FT_ASSIGN_OR_RETURN(r.model_status, check_usable());
  if (!r.model_status.ok())
    r.message = absl::StrCat(r.message, "; ", r.model_status.message());
  // After a divergence the checkpoint holds the restored state if it is
  // usable (a record of the ended run); if not, a checkpoint of the state
  // whose loss (or gradient) was not finite is deleted.
  if (r.diverged && !finished && checkpoints &&
      (r.model_status.ok() || saved_updates == diverged_at - 1)) {
    if (r.model_status.ok()) {
      FT_RETURN_IF_ERROR(save(diverged_at - 1, true));
    } else {
      absl::Status s;
      if (rank == 0 && std::remove(o.checkpoint_path.c_str()) == 0)
        r.message = absl::StrCat(r.message, "; deleted the checkpoint ",
                                 o.checkpoint_path, " of step ", saved_updates);
      FT_RETURN_IF_ERROR(dp.AgreeWithRankZero(s));
    }
  }
  if (log && (r.stopped_early || r.diverged || !r.model_status.ok()))
    *log << r.message << std::endl;
  return r;
}

}  // namespace

absl::StatusOr<TrainResult> TrainNllOutcome(const nn::Module& model,
                                            const NllFn& nll,
                                            nn::Optimizer& optimizer,
                                            const TrainData& data,
                                            const TrainOptions& options) {
  absl::Status s = Validate(data, options);
  if (s.ok())
    s = CheckThreadsOption(options.threads, options.communicator, "train_nll",
                           "TrainNllThreads");
  if (!s.ok()) {
    if (options.communicator != nullptr) options.communicator->Abort(s);
    return s;
  }
  parallel::SoloCommunicator solo;
  parallel::Communicator& comm =
      options.communicator != nullptr ? *options.communicator : solo;
  absl::StatusOr<TrainResult> r =
      Train(comm, model, nll, optimizer, data, options);
  if (!r.ok()) comm.Abort(r.status());
  return r;
}

}  // namespace flowtape::training

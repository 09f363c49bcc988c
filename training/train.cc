#include "training/train.h"

#include <chrono>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autodiff/check.h"
#include "autodiff/grad.h"
#include "nn/checkpoint.h"
#include "autodiff/tape.h"
#include "data/preprocess.h"

namespace flowtape::training {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

std::string FormatDuration(double s) {
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600)
    return absl::StrFormat("%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60);
  return absl::StrFormat("%d:%02d", t / 60, t % 60);
}

Tensor Rows(const Tensor& x, const std::vector<int64_t>& index) {
  return x.defined() ? data::TakeRows(x, index) : Tensor();
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
    std::copy(snapshot[i].begin(), snapshot[i].end(), ts[i].mutable_data());
  }
}

// The optimizer's state buffers (shared storage: writing restores them).
std::vector<Tensor> StateOf(const nn::Optimizer& optimizer) {
  std::vector<Tensor> ts;
  for (const auto& [name, t] : optimizer.NamedState()) ts.push_back(t);
  return ts;
}

// OK iff every entry of t (rows along axis 0) is finite.
absl::Status CheckFinite(const Tensor& t, const char* what) {
  if (!t.defined() || t.rank() == 0) return absl::OkStatus();
  const int64_t row = t.numel() / std::max<int64_t>(t.dim(0), 1);
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(t[i]))
      return absl::InvalidArgumentError(
          absl::StrCat("train_nll: ", what, " row ", i / row, " has ", t[i],
                       " at entry ", i % row, " (every value must be finite)"));
  return absl::OkStatus();
}

absl::Status Validate(const TrainData& d, const TrainOptions& o) {
  if (!d.train.defined() || d.train.rank() == 0 || d.train.dim(0) == 0)
    return absl::InvalidArgumentError("train_nll: empty training set");
  if (o.batch_size <= 0 || o.eval_batch_size <= 0)
    return absl::InvalidArgumentError(
        absl::StrCat("train_nll: batch sizes must be positive, got ",
                     o.batch_size, " and ", o.eval_batch_size));
  if (o.eval_every <= 0)
    return absl::InvalidArgumentError("train_nll: eval_every must be >= 1");
  auto rows_match = [](const Tensor& x, const Tensor& c) {
    return !c.defined() || (x.defined() && c.dim(0) == x.dim(0));
  };
  if (!rows_match(d.train, d.train_context) ||
      !rows_match(d.val, d.val_context))
    return absl::InvalidArgumentError(
        "train_nll: context rows do not match the data rows");
  const bool has_val = d.val.defined() && d.val.rank() > 0 && d.val.dim(0) > 0;
  if (has_val && d.train_context.defined() != d.val_context.defined())
    return absl::InvalidArgumentError(absl::StrCat(
        "train_nll: ", d.train_context.defined() ? "train" : "validation",
        " data has a context but ",
        d.train_context.defined() ? "validation" : "train",
        " data has none (a conditional flow needs both)"));
  const std::pair<Tensor, const char*> tensors[] = {
      {d.train, "training data"},
      {d.train_context, "training context"},
      {d.val, "validation data"},
      {d.val_context, "validation context"}};
  for (const auto& [t, what] : tensors)
    if (absl::Status s = CheckFinite(t, what); !s.ok()) return s;
  if (o.checkpoint_every > 0 && o.checkpoint_path.empty())
    return absl::InvalidArgumentError(
        "train_nll: checkpoint_every is set but checkpoint_path is empty");
  return absl::OkStatus();
}

}  // namespace

double GradNorm(const std::vector<Tensor>& params) {
  double sq = 0.0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    for (int64_t i = 0; i < g.numel(); ++i) sq += g[i] * g[i];
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
  NoGradScope no_grad;
  Rng rng(seed);
  const int64_t n = x.dim(0);
  double total = 0.0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t len = std::min(batch_size, n - start);
    std::vector<int64_t> index(len);
    for (int64_t i = 0; i < len; ++i) index[i] = start + i;
    total += nll(Rows(x, index), Rows(context, index), rng).item() * len;
  }
  return total / n;
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
                                     const TrainOptions& o) {
  if (absl::Status s = Validate(data, o); !s.ok()) return s;
  std::ostream* log = o.log_every > 0 ? o.log : nullptr;
  const std::vector<Tensor> params = model.Parameters();
  const int64_t n = data.train.dim(0);
  const int64_t batch = std::min(o.batch_size, n);
  const bool has_val = data.val.defined() && data.val.dim(0) > 0;
  Rng rng(o.seed);
  TrainResult r;
  r.best_val_nll = std::numeric_limits<double>::infinity();
  // The last parameters (and optimizer state) whose loss was finite, after
  // good_updates updates; the checkpoint on disk holds saved_updates.
  auto last_good = SnapshotParameters(model);
  auto last_good_state = Snapshot(StateOf(optimizer));
  int64_t good_updates = 0, saved_updates = -1;
  auto best = last_good;
  int64_t evals_since_best = 0;
  std::vector<int64_t> order;
  int64_t cursor = n;  // forces a fresh permutation on the first step
  double window_loss = 0.0;
  int64_t window = 0;
  const auto start = Clock::now();

  for (int64_t step = 1; step <= o.max_steps; ++step) {
    if (cursor + batch > n) {
      order = data::Permutation(n, rng);
      cursor = 0;
    }
    std::vector<int64_t> index(order.begin() + cursor,
                               order.begin() + cursor + batch);
    cursor += batch;

    optimizer.ZeroGrad();
    Tensor loss =
        nll(Rows(data.train, index), Rows(data.train_context, index), rng);
    const double value = loss.item();
    double gnorm = 0.0;
    if (std::isfinite(value)) {
      // The current parameters (step - 1 updates) have a finite loss.
      last_good = SnapshotParameters(model);
      last_good_state = Snapshot(StateOf(optimizer));
      good_updates = step - 1;
      r.last_loss = value;
      Backward(loss);
      gnorm = o.clip_grad_norm > 0 ? nn::ClipGradNorm(params, o.clip_grad_norm)
                                   : GradNorm(params);
    }
    Tape::Get().Reset();
    if (!std::isfinite(value) || !std::isfinite(gnorm)) {
      optimizer.ZeroGrad();  // no non-finite gradient left behind
      RestoreParameters(model, last_good);
      Restore(StateOf(optimizer), last_good_state, "train_nll");
      r.steps = good_updates;
      r.diverged = true;
      r.message = absl::StrCat(
          "stopped at step ", step, ": non-finite ",
          std::isfinite(value) ? "gradient" : "loss", " (loss ", value,
          ", grad norm ", gnorm, "); restored the parameters after ",
          good_updates, " updates, the last with a finite loss");
      if (log) *log << r.message << "\n";
      // Never leave a checkpoint of parameters whose loss was not finite.
      if (o.checkpoint_every > 0 && saved_updates > good_updates)
        if (absl::Status s =
                nn::SaveCheckpoint(o.checkpoint_path, model, &optimizer);
            !s.ok())
          return s;
      break;
    }
    optimizer.Step();
    r.steps = step;
    r.losses.push_back(value);
    window_loss += value;
    ++window;

    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0) {
      if (absl::Status s =
              nn::SaveCheckpoint(o.checkpoint_path, model, &optimizer);
          !s.ok())
        return s;
      saved_updates = step;
    }

    const bool last = step == o.max_steps;
    std::string val_text;
    if (has_val && (step % o.eval_every == 0 || last)) {
      double v =
          EvaluateNll(nll, data.val, data.val_context, o.eval_batch_size);
      r.val_history.emplace_back(step, v);
      if (v < r.best_val_nll) {
        r.best_val_nll = v;
        r.best_step = step;
        best = SnapshotParameters(model);
        evals_since_best = 0;
      } else {
        ++evals_since_best;
      }
      val_text = absl::StrFormat("  val %.4f (best %.4f)", v, r.best_val_nll);
      if (o.patience > 0 && evals_since_best >= o.patience) {
        r.stopped_early = true;
        r.message = absl::StrCat(
            "early stop at step ", step, ": no better ", "validation NLL for ",
            o.patience, " evaluations (best at step ", r.best_step, ")");
      }
    }
    if (log && (step % o.log_every == 0 || last || r.stopped_early)) {
      double elapsed = Seconds(start), rate = step / elapsed;
      *log << absl::StrFormat("step %d/%d  loss %.4f%s  %.1f steps/s  ETA %s",
                              step, o.max_steps, window_loss / window, val_text,
                              rate, FormatDuration((o.max_steps - step) / rate))
           << std::endl;
      window_loss = 0.0;
      window = 0;
    }
    if (r.stopped_early) break;
  }
  if (r.message.empty())
    r.message = absl::StrCat("finished ", r.steps, " steps");
  if (has_val && o.restore_best && !r.diverged && r.best_step > 0 &&
      r.best_step != r.steps)
    RestoreParameters(model, best);
  if (!has_val) r.best_val_nll = r.last_loss;
  r.seconds = Seconds(start);
  if (log && (r.stopped_early || r.diverged)) *log << r.message << std::endl;
  return r;
}

}  // namespace flowtape::training

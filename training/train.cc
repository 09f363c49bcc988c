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

// The training state of TrainNll's checkpoints (train.h, "Resume").
constexpr char kStateMagic[8] = {'F', 'T', 'T', 'R', 'A', 'I', 'N', '\0'};
constexpr uint32_t kStateVersion = 1;

struct TrainState {
  int64_t step = 0;  // loop steps done = global batches consumed
  uint64_t seed = 0;
  int64_t batch = 0, rows = 0;
  uint64_t train_hash = 0, val_hash = 0;
  int64_t ranks = 1;
  bool finished = false;  // early stop, divergence or bad inverse
  int64_t evals_since_best = 0, guard_updates = 0, window = 0;
  double window_loss = 0.0;
  TrainResult result;       // its histories, flags, message and clocks
  std::string guard, best;  // ModuleState bytes (best: empty = none)
};

// A 64-bit fingerprint of a tensor's dtype, shape and bytes (over 8-byte
// words, then the tail bytes: h = ((h ^ w) * FNV prime), then h ^= h >> 29,
// so a difference in any bit reaches every later bit); undefined tensors
// hash to a constant.
uint64_t Fingerprint(const Tensor& t, uint64_t h) {
  constexpr uint64_t kPrime = 1099511628211ULL;
  auto mix = [&](uint64_t v) {
    h = (h ^ v) * kPrime;
    h ^= h >> 29;
  };
  if (!t.defined()) {
    mix(0x5eed);
    return h;
  }
  mix(static_cast<uint64_t>(t.dtype()) + 1);
  for (int64_t d : t.shape().dims()) mix(static_cast<uint64_t>(d));
  const size_t n = t.numel() * DTypeSize(t.dtype());
  const char* p = static_cast<const char*>(t.raw_data());
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    mix(w);
  }
  for (; i < n; ++i) mix(static_cast<unsigned char>(p[i]));
  return h;
}

constexpr uint64_t kFnvBasis = 14695981039346656037ULL;

uint64_t TrainHash(const TrainData& d) {
  return Fingerprint(d.train_context, Fingerprint(d.train, kFnvBasis));
}
uint64_t ValHash(const TrainData& d) {
  return Fingerprint(d.val_context, Fingerprint(d.val, kFnvBasis));
}

class Writer {
 public:
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>(v >> 8 * i));
  }
  void I64(int64_t v) { U64(static_cast<uint64_t>(v)); }
  void F64(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    U64(bits);
  }
  void Bool(bool b) { out_.push_back(b ? 1 : 0); }
  void Bytes(const char* p, size_t n) {
    U64(n);
    out_.append(p, n);
  }
  void Str(const std::string& v) { Bytes(v.data(), v.size()); }
  void Doubles(const std::vector<double>& v) {
    U64(v.size());
    for (double x : v) F64(x);
  }
  void Pairs(const std::vector<std::pair<int64_t, double>>& v) {
    U64(v.size());
    for (const auto& [k, x] : v) {
      I64(k);
      F64(x);
    }
  }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}
  bool U64(uint64_t* v) {
    if (in_.size() - pos_ < 8) return false;
    *v = 0;
    for (int i = 0; i < 8; ++i)
      *v |= static_cast<uint64_t>(static_cast<unsigned char>(in_[pos_ + i]))
            << 8 * i;
    pos_ += 8;
    return true;
  }
  bool I64(int64_t* v) {
    uint64_t u;
    if (!U64(&u)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool F64(double* v) {
    uint64_t bits;
    if (!U64(&bits)) return false;
    std::memcpy(v, &bits, 8);
    return true;
  }
  bool Bool(bool* b) {
    if (pos_ >= in_.size()) return false;
    const unsigned char c = in_[pos_++];
    *b = c == 1;
    return c <= 1;
  }
  bool Str(std::string* v) {
    uint64_t n;
    if (!U64(&n) || n > in_.size() - pos_) return false;
    v->assign(in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  // A count of items of `item` bytes each that the rest can hold.
  bool Count(uint64_t* n, size_t item) {
    return U64(n) && *n <= (in_.size() - pos_) / item;
  }
  bool Doubles(std::vector<double>* v) {
    uint64_t n;
    if (!Count(&n, 8)) return false;
    v->resize(n);
    for (double& x : *v) F64(&x);
    return true;
  }
  bool Pairs(std::vector<std::pair<int64_t, double>>* v) {
    uint64_t n;
    if (!Count(&n, 16)) return false;
    v->resize(n);
    for (auto& [k, x] : *v) {
      I64(&k);
      F64(&x);
    }
    return true;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  absl::string_view in_;
  size_t pos_ = 0;
};

std::string EncodeState(const TrainState& s) {
  Writer w;
  w.out().append(kStateMagic, 8);
  w.U64(kStateVersion);
  w.I64(s.step);
  w.U64(s.seed);
  w.I64(s.batch);
  w.I64(s.rows);
  w.U64(s.train_hash);
  w.U64(s.val_hash);
  w.I64(s.ranks);
  w.Bool(s.finished);
  w.I64(s.evals_since_best);
  w.I64(s.guard_updates);
  w.I64(s.window);
  w.F64(s.window_loss);
  const TrainResult& r = s.result;
  w.I64(r.steps);
  w.F64(r.last_loss);
  w.F64(r.best_val_nll);
  w.I64(r.best_step);
  w.Doubles(r.losses);
  w.Doubles(r.elapsed);
  w.Pairs(r.val_history);
  w.Bool(r.stopped_early);
  w.Bool(r.diverged);
  w.Str(r.message);
  w.F64(r.seconds);
  w.F64(r.allreduce_seconds);
  w.Pairs(r.inverse_condition_history);
  w.Bool(r.bad_inverse);
  w.Str(s.guard);
  w.Str(s.best);
  return std::move(w.out());
}

// DataLoss naming the first malformed field; InvalidArgument for another
// version.
absl::StatusOr<TrainState> DecodeState(absl::string_view in) {
  auto bad = [](absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat("malformed training state: ", what));
  };
  if (in.size() < 8 || std::memcmp(in.data(), kStateMagic, 8) != 0)
    return bad("bad magic");
  Reader rd(in.substr(8));
  uint64_t version = 0;
  if (!rd.U64(&version)) return bad("no version");
  if (version != kStateVersion)
    return absl::InvalidArgumentError(absl::StrCat(
        "training state version ", version,
        " is not supported (this build reads version ", kStateVersion, ")"));
  TrainState s;
  TrainResult& r = s.result;
  if (!rd.I64(&s.step) || !rd.U64(&s.seed) || !rd.I64(&s.batch) ||
      !rd.I64(&s.rows) || !rd.U64(&s.train_hash) || !rd.U64(&s.val_hash) ||
      !rd.I64(&s.ranks) || !rd.Bool(&s.finished) ||
      !rd.I64(&s.evals_since_best) || !rd.I64(&s.guard_updates) ||
      !rd.I64(&s.window) || !rd.F64(&s.window_loss))
    return bad("header cut short");
  if (!rd.I64(&r.steps) || !rd.F64(&r.last_loss) || !rd.F64(&r.best_val_nll) ||
      !rd.I64(&r.best_step) || !rd.Doubles(&r.losses) ||
      !rd.Doubles(&r.elapsed) || !rd.Pairs(&r.val_history) ||
      !rd.Bool(&r.stopped_early) || !rd.Bool(&r.diverged) ||
      !rd.Str(&r.message) || !rd.F64(&r.seconds) ||
      !rd.F64(&r.allreduce_seconds) ||
      !rd.Pairs(&r.inverse_condition_history) || !rd.Bool(&r.bad_inverse))
    return bad("result cut short");
  if (!rd.Str(&s.guard) || !rd.Str(&s.best)) return bad("snapshots cut short");
  if (!rd.done()) return bad("trailing bytes");
  // Values the loop relies on.
  if (s.step < 0 || s.batch < 1 || s.rows < 1 || s.ranks < 1 ||
      s.evals_since_best < 0 || s.window < 0 || r.steps < 0 ||
      r.steps > s.step || s.guard_updates < 0 || s.guard_updates > s.step ||
      r.best_step < 0 || r.best_step > s.step ||
      static_cast<int64_t>(r.losses.size()) != s.step ||
      r.losses.size() != r.elapsed.size() ||
      (r.best_step > 0 && s.best.empty()))
    return bad(absl::StrCat("inconsistent counters (step ", s.step,
                            ", updates ", r.steps, ", losses ", r.losses.size(),
                            ", best step ", r.best_step, ")"));
  return s;
}

// Rank 0 reads `o.resume_from` (checks the record against this run, then
// loads the model and optimizer); the record's bytes reach every rank.
// nullopt: no checkpoint to resume (resume_missing_ok).
absl::StatusOr<std::optional<TrainState>> ReadResume(
    DataParallel& dp, const nn::Module& model, nn::Optimizer& optimizer,
    const TrainData& data, const TrainOptions& o, int64_t batch,
    const NanGuard& guard, const ModuleState* best) {
  const std::string where =
      absl::StrCat("train_nll: resume from '", o.resume_from, "': ");
  absl::Status s;
  std::string bytes;
  bool missing = false;
  if (dp.lead()) {
    missing = !std::ifstream(o.resume_from).good();
    if (missing && !o.resume_missing_ok)
      s = absl::NotFoundError(absl::StrCat(
          where, "no such file (resume_missing_ok starts a fresh run)"));
    absl::StatusOr<nn::NamedTensors> entries;
    nn::Metadata meta;
    if (s.ok() && !missing) {
      entries = nn::ReadTensorFile(o.resume_from, &meta);
      if (!entries.ok())
        s = absl::Status(entries.status().code(),
                         absl::StrCat(where, entries.status().message()));
    }
    if (s.ok() && !missing) {
      auto it = meta.find(kTrainStateKey);
      absl::StatusOr<TrainState> state =
          it == meta.end()
              ? absl::InvalidArgumentError(
                    "the checkpoint has no training state (it was not "
                    "written by TrainNll)")
              : DecodeState(it->second);
      if (!state.ok()) {
        s = absl::Status(state.status().code(),
                         absl::StrCat(where, state.status().message()));
      } else {
        const TrainState& t = *state;
        const bool has_val = data.val.defined() && data.val.dim(0) > 0;
        std::string mismatch;
        if (t.seed != o.seed)
          mismatch = absl::StrCat("seed ", t.seed, " there, ", o.seed, " here");
        else if (t.batch != batch)
          mismatch =
              absl::StrCat("batch size ", t.batch, " there, ", batch, " here");
        else if (t.rows != data.train.dim(0))
          mismatch = absl::StrCat(t.rows, " training rows there, ",
                                  data.train.dim(0), " here");
        else if (t.train_hash != TrainHash(data))
          mismatch = "the training data (or its context) differ";
        else if (t.val_hash != ValHash(data))
          mismatch = "the validation data (or its context) differ";
        if (!mismatch.empty()) {
          s = absl::InvalidArgumentError(absl::StrCat(
              where,
              "the checkpoint was written for other options or data (they "
              "change the data order or the validation): ",
              mismatch));
        } else if (t.step > o.max_steps) {
          s = absl::InvalidArgumentError(
              absl::StrCat(where, "the checkpoint is at step ", t.step,
                           ", beyond max_steps = ", o.max_steps));
        } else if (!t.finished && t.guard.size() != guard.good_data().size()) {
          s = absl::InvalidArgumentError(absl::StrCat(
              where, "the NaN guard's snapshot has ", t.guard.size(),
              " bytes but this model and optimizer's state has ",
              guard.good_data().size()));
        } else if (!t.best.empty() &&
                   (!has_val || t.best.size() != best->data().size())) {
          s = absl::InvalidArgumentError(absl::StrCat(
              where, "the best model's snapshot has ", t.best.size(),
              " bytes but this model's parameters and buffers have ",
              has_val ? best->data().size() : 0));
        } else {
          // Checks every name, shape and value before changing anything.
          s = nn::RestoreFromTensors(absl::StrCat(where, "checkpoint"),
                                     *entries, const_cast<nn::Module&>(model),
                                     &optimizer);
          if (s.ok()) bytes = it->second;
        }
      }
    }
  }
  FT_RETURN_IF_ERROR(dp.AgreeWithRankZero(s));
  if (dp.size() > 1) {
    // Rank 0's record: its length, then 4 bytes per double (exact).
    double n[1] = {missing ? -1.0 : static_cast<double>(bytes.size())};
    FT_RETURN_IF_ERROR(dp.comm().Broadcast(absl::MakeSpan(n), 0));
    missing = n[0] < 0;
    if (!missing) {
      const size_t len = static_cast<size_t>(n[0]);
      std::vector<double> packed((len + 3) / 4, 0.0);
      if (dp.lead())
        for (size_t i = 0; i < len; ++i)
          packed[i / 4] += static_cast<double>(
              static_cast<uint64_t>(static_cast<unsigned char>(bytes[i]))
              << 8 * (i % 4));
      FT_RETURN_IF_ERROR(dp.comm().Broadcast(absl::MakeSpan(packed), 0));
      if (!dp.lead()) {
        bytes.resize(len);
        for (size_t i = 0; i < len; ++i)
          bytes[i] = static_cast<char>(static_cast<uint64_t>(packed[i / 4]) >>
                                       8 * (i % 4));
      }
    }
  }
  if (missing) return std::nullopt;
  FT_ASSIGN_OR_RETURN(TrainState state, DecodeState(bytes));
  return state;
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
  std::optional<TrainState> resumed;
  if (!o.resume_from.empty()) {
    FT_ASSIGN_OR_RETURN(resumed,
                        ReadResume(dp, model, optimizer, data, o, batch, guard,
                                   best ? &*best : nullptr));
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
  int64_t first_step = 1, evals_since_best = 0, window = 0;
  double window_loss = 0.0, clock = 0.0;
  bool finished = false;
  if (resumed) {
    const TrainState& t = *resumed;
    r = t.result;
    r.ranks = size;
    r.model_status = absl::OkStatus();
    first_step = t.step + 1;
    evals_since_best = t.evals_since_best;
    window = t.window;
    window_loss = t.window_loss;
    clock = r.seconds;
    finished = t.finished;
    order.Skip(t.step);
    if (!finished &&
        !guard.SetGood(t.guard.data(), t.guard.size(), t.guard_updates))
      return absl::InternalError(
          "train_nll: resume: the replicas' states differ in size");
    if (!t.best.empty() && !best->SetData(t.best.data(), t.best.size()))
      return absl::InternalError(
          "train_nll: resume: the replicas' states differ in size");
    if (o.resume_from == o.checkpoint_path) saved_updates = r.steps;
    if (log)
      *log << "resumed from " << o.resume_from << " after step " << t.step
           << (finished ? " (the run had ended)" : "") << std::endl;
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
  std::optional<std::pair<uint64_t, uint64_t>> hashes;  // once, on rank 0
  auto save = [&](int64_t step, bool ended) -> absl::Status {
    absl::Status s;
    if (rank == 0) {
      if (!hashes) hashes.emplace(TrainHash(data), ValHash(data));
      TrainState t;
      t.step = step;
      t.seed = o.seed;
      t.batch = batch;
      t.rows = n;
      t.train_hash = hashes->first;
      t.val_hash = hashes->second;
      t.ranks = size;
      t.finished = ended;
      t.evals_since_best = evals_since_best;
      t.guard_updates = guard.good_updates();
      t.window = window;
      t.window_loss = window_loss;
      t.result = r;
      t.result.model_status = absl::OkStatus();
      if (!ended)
        t.guard.assign(guard.good_data().begin(), guard.good_data().end());
      if (has_val && r.best_step > 0)
        t.best.assign(best->data().begin(), best->data().end());
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
    window_loss += value;
    ++window;

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
    if (log && !r.bad_inverse &&
        (step % o.log_every == 0 || last || r.stopped_early)) {
      *log << ProgressLine(step, o.max_steps, window_loss / window, val_text,
                           (step - first_step + 1) / Seconds(start))
           << std::endl;
      window_loss = 0.0;
      window = 0;
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

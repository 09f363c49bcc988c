#include "training/train_state.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autodiff/dtype.h"
#include "autodiff/rng.h"
#include "autodiff/status_macros.h"
#include "nn/checkpoint.h"

namespace flowtape::training {
namespace {

constexpr char kStateMagic[8] = {'F', 'T', 'T', 'R', 'A', 'I', 'N', '\0'};
constexpr uint32_t kStateVersion = 2;

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

constexpr uint64_t kFnvBasis = 14695981039346656037ULL;

// Fingerprints of the training data and context, and of the validation
// data and context.
uint64_t TrainHash(const TrainData& d) {
  return Fingerprint(d.train_context, Fingerprint(d.train, kFnvBasis));
}
uint64_t ValHash(const TrainData& d) {
  return Fingerprint(d.val_context, Fingerprint(d.val, kFnvBasis));
}

}  // namespace

TrainState RunRecord(absl::string_view loop, const TrainOptions& o,
                     int64_t batch, const TrainData& data, int ranks) {
  TrainState t;
  t.loop = std::string(loop);
  t.seed = o.seed;
  t.batch = batch;
  t.rows = data.train.dim(0);
  t.train_hash = TrainHash(data);
  t.val_hash = ValHash(data);
  t.ranks = ranks;
  return t;
}

TrainState StepRecord(const TrainState& run, int64_t step, bool finished,
                      const LoopCounters& counters, const TrainResult& r,
                      const NanGuard& guard, const ModuleState* best) {
  TrainState t = run;
  t.step = step;
  t.finished = finished;
  t.counters = counters;
  t.guard_updates = guard.good_updates();
  t.result = r;
  t.result.model_status = absl::OkStatus();
  if (!finished)
    t.guard.assign(guard.good_data().begin(), guard.good_data().end());
  if (best != nullptr && r.best_step > 0)
    t.best.assign(best->data().begin(), best->data().end());
  return t;
}

std::string EncodeState(const TrainState& s) {
  Writer w;
  w.out().append(kStateMagic, 8);
  w.U64(kStateVersion);
  w.Str(s.loop);
  w.I64(s.step);
  w.U64(s.seed);
  w.I64(s.batch);
  w.I64(s.rows);
  w.U64(s.train_hash);
  w.U64(s.val_hash);
  w.I64(s.ranks);
  w.Bool(s.finished);
  w.I64(s.counters.evals_since_best);
  w.I64(s.guard_updates);
  w.I64(s.counters.window);
  w.F64(s.counters.window_loss);
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
  w.Str(s.ema);
  w.U64(s.rng.size());
  for (uint64_t v : s.rng) w.U64(v);
  return std::move(w.out());
}

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
  if (!rd.Str(&s.loop) || !rd.I64(&s.step) || !rd.U64(&s.seed) ||
      !rd.I64(&s.batch) || !rd.I64(&s.rows) || !rd.U64(&s.train_hash) ||
      !rd.U64(&s.val_hash) || !rd.I64(&s.ranks) || !rd.Bool(&s.finished) ||
      !rd.I64(&s.counters.evals_since_best) || !rd.I64(&s.guard_updates) ||
      !rd.I64(&s.counters.window) || !rd.F64(&s.counters.window_loss))
    return bad("header cut short");
  if (!rd.I64(&r.steps) || !rd.F64(&r.last_loss) || !rd.F64(&r.best_val_nll) ||
      !rd.I64(&r.best_step) || !rd.Doubles(&r.losses) ||
      !rd.Doubles(&r.elapsed) || !rd.Pairs(&r.val_history) ||
      !rd.Bool(&r.stopped_early) || !rd.Bool(&r.diverged) ||
      !rd.Str(&r.message) || !rd.F64(&r.seconds) ||
      !rd.F64(&r.allreduce_seconds) ||
      !rd.Pairs(&r.inverse_condition_history) || !rd.Bool(&r.bad_inverse))
    return bad("result cut short");
  if (!rd.Str(&s.guard) || !rd.Str(&s.best) || !rd.Str(&s.ema))
    return bad("snapshots cut short");
  uint64_t words = 0;
  if (!rd.Count(&words, 8) || (words != 0 && words != 6))
    return bad("rng position cut short or not 6 words");
  s.rng.resize(words);
  for (uint64_t& v : s.rng) rd.U64(&v);
  if (!rd.done()) return bad("trailing bytes");
  // Values the loop relies on.
  if (s.step < 0 || s.batch < 1 || s.rows < 1 || s.ranks < 1 ||
      s.counters.evals_since_best < 0 || s.counters.window < 0 || r.steps < 0 ||
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

namespace {

// Why the record `t` cannot resume this run (InvalidArgument), or OK.
absl::Status CheckRecord(const TrainState& t, absl::string_view loop,
                         const ResumeTarget& into, const TrainData& data,
                         const TrainOptions& o, int64_t batch) {
  const bool has_val = data.val.defined() && data.val.dim(0) > 0;
  auto size = [](const ModuleState* m) {
    return m != nullptr ? m->data().size() : 0;
  };
  std::string mismatch;
  if (t.seed != o.seed)
    mismatch = absl::StrCat("seed ", t.seed, " there, ", o.seed, " here");
  else if (t.batch != batch)
    mismatch = absl::StrCat("batch size ", t.batch, " there, ", batch, " here");
  else if (t.rows != data.train.dim(0))
    mismatch = absl::StrCat(t.rows, " training rows there, ", data.train.dim(0),
                            " here");
  else if (t.train_hash != TrainHash(data))
    mismatch = "the training data (or its context) differ";
  else if (t.val_hash != ValHash(data))
    mismatch = "the validation data (or its context) differ";
  if (t.loop != loop)
    return absl::InvalidArgumentError(
        absl::StrCat("the checkpoint's training state was written by ", t.loop,
                     ", not ", loop));
  if (!mismatch.empty())
    return absl::InvalidArgumentError(absl::StrCat(
        "the checkpoint was written for other options or data (they change "
        "the data order or the validation): ",
        mismatch));
  if (t.step > o.max_steps)
    return absl::InvalidArgumentError(
        absl::StrCat("the checkpoint is at step ", t.step,
                     ", beyond max_steps = ", o.max_steps));
  if (t.ema.size() != size(into.ema))
    return absl::InvalidArgumentError(
        absl::StrCat("the parameter EMA's snapshot has ", t.ema.size(),
                     " bytes but this run's EMA has ", size(into.ema),
                     " (ema_decay = 0 keeps none)"));
  if (!t.finished && t.guard.size() != into.guard->good_data().size())
    return absl::InvalidArgumentError(
        absl::StrCat("the NaN guard's snapshot has ", t.guard.size(),
                     " bytes but this model and optimizer's state has ",
                     into.guard->good_data().size()));
  if (!t.best.empty() && (!has_val || t.best.size() != size(into.best)))
    return absl::InvalidArgumentError(
        absl::StrCat("the best model's snapshot has ", t.best.size(),
                     " bytes but this model's parameters and buffers have ",
                     has_val ? size(into.best) : 0));
  if (!t.finished && into.rng != nullptr) {
    Rng probe = *into.rng;
    Rng::Position at{};
    if (t.rng.size() == at.size())
      std::copy(t.rng.begin(), t.rng.end(), at.begin());
    if (t.rng.size() != at.size() || !probe.Seek(at))
      return absl::InvalidArgumentError(
          "the record lacks a valid position of the loss stream");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::optional<TrainState>> ReadResume(
    DataParallel& dp, absl::string_view loop, const ResumeTarget& into,
    const TrainData& data, const TrainOptions& o, int64_t batch) {
  const std::string where =
      absl::StrCat(loop, ": resume from '", o.resume_from, "': ");
  auto prefixed = [&where](const absl::Status& e) {
    return absl::Status(e.code(), absl::StrCat(where, e.message()));
  };
  absl::Status s;
  std::string bytes;
  bool missing = false;
  if (dp.lead()) {
    // Only a file that is not there is missing (an unreadable one is an
    // error, not a fresh start).
    struct stat st;
    missing = ::stat(o.resume_from.c_str(), &st) != 0 && errno == ENOENT;
    nn::Metadata meta;
    absl::StatusOr<nn::NamedTensors> entries;
    if (missing) {
      if (!o.resume_missing_ok)
        s = absl::NotFoundError(absl::StrCat(
            where, "no such file (resume_missing_ok starts a fresh run)"));
    } else if (entries = nn::ReadTensorFile(o.resume_from, &meta);
               !entries.ok()) {
      s = prefixed(entries.status());
    } else if (auto it = meta.find(kTrainStateKey); it == meta.end()) {
      s = prefixed(absl::InvalidArgumentError(
          "the checkpoint has no training state (it was not written by a "
          "training loop)"));
    } else if (absl::StatusOr<TrainState> t = DecodeState(it->second);
               !t.ok()) {
      s = prefixed(t.status());
    } else if (s = CheckRecord(*t, loop, into, data, o, batch); !s.ok()) {
      s = prefixed(s);
    } else {
      // Checks every name, shape and value before changing anything.
      s = nn::RestoreFromTensors(absl::StrCat(where, "checkpoint"), *entries,
                                 const_cast<nn::Module&>(*into.model),
                                 into.optimizer);
      if (s.ok()) bytes = it->second;
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

absl::Status ApplyRecord(absl::string_view loop, const TrainState& t,
                         const ResumeTarget& into, BatchOrder& order,
                         const std::string& file, std::ostream* log) {
  order.Skip(t.step);
  Rng::Position at{};
  if (t.rng.size() == at.size())
    std::copy(t.rng.begin(), t.rng.end(), at.begin());
  const bool ok =
      (t.finished ||
       (into.guard->SetGood(t.guard.data(), t.guard.size(), t.guard_updates) &&
        (into.rng == nullptr || into.rng->Seek(at)))) &&
      (t.best.empty() || into.best->SetData(t.best.data(), t.best.size())) &&
      (into.ema == nullptr || into.ema->SetData(t.ema.data(), t.ema.size()));
  if (!ok)
    return absl::InternalError(
        absl::StrCat(loop, ": resume: the replicas' states differ"));
  if (into.ema != nullptr) into.ema->Restore();
  if (log != nullptr)
    *log << "resumed from " << file << " after step " << t.step
         << (t.finished ? " (the run had ended)" : "") << std::endl;
  return absl::OkStatus();
}

}  // namespace flowtape::training

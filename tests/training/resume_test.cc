// Resuming TrainNll from its checkpoint (train.h, "Resume"): a run stopped
// after K steps and resumed to N reproduces the uninterrupted N-step run bit
// for bit (parameters, buffers, optimizer state, losses, validation
// history, best step, message), with a stochastic nll (dequantisation noise
// from the step's stream), across a NaN-guard restore whose snapshot is
// older than the checkpoint, across early stopping (whose best model is
// restored from the saved snapshot), on 1 and on 2 threads. A bad resume
// (missing file, no or corrupt training state, another version, options or
// data that change the data order, a model of another shape) is a Status
// naming the problem and leaves the model untouched. Validation with a
// stochastic flow gives the same NLL history on 1, 2 and 3 threads.
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "gtest/gtest.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "parallel/thread_communicator.h"
#include "tests/training/rows.h"
#include "training/data_parallel.h"
#include "training/train.h"
#include "training/train_state.h"
#include "training/train_threads.h"

namespace flowtape::training {
namespace {

using fixtures::Rows;
using fixtures::RowsData;

// A MAF; `seed` changes its initial parameters (a resumed model's must not
// matter).
std::shared_ptr<flows::FlowModel> Maf(uint64_t seed = 11, int64_t hidden = 16) {
  Rng rng(seed);
  models::ModelConfig c;
  c.event = Shape{4};
  c.layers = 2;
  c.hidden = {hidden, hidden};
  return models::MakeModel("maf", c, rng).value();
}

std::shared_ptr<nn::Optimizer> Adam(const nn::Module& m) {
  nn::AdamOptions options;
  options.lr = 3e-2;
  return nn::Adam::Create(m, options).value();
}

// The NaN of a poisoned step: the first two rows of its global batch.
struct Poison {
  std::vector<double> rows;  // 2 x 4 values
};

// The model's NLL of the rows with dequantisation-like noise drawn from
// `rng` (so the run depends on the nll's streams); NaN for the training
// batch that starts with the poisoned rows.
NllFn NoisyNll(const flows::FlowModel& m, std::shared_ptr<Poison> poison) {
  return [&m, poison](const Tensor& x, const Tensor& c, Rng& rng) {
    Tensor noise = Tensor::Rand(x.shape(), rng) - 0.5;
    Tensor v = m.Nll(x + 0.05 * noise, c, &rng);
    if (poison != nullptr && Tape::Get().grad_enabled() && x.dim(0) >= 2) {
      bool same = true;
      for (int64_t j = 0; j < 8; ++j) same &= x[j] == poison->rows[j];
      if (same) return v * std::nan("");
    }
    return v;
  };
}

// The first two rows of the global batch of `step` (TrainNll's row order).
std::vector<double> RowsOfStep(const TrainData& d, int64_t batch, uint64_t seed,
                               int64_t step) {
  BatchOrder order(d.train.dim(0), batch, seed);
  order.Skip(step - 1);
  const std::vector<int64_t> index = order.Next();
  std::vector<double> rows;
  for (int64_t i : {index[0], index[1]})
    for (int64_t j = 0; j < 4; ++j) rows.push_back(d.train[i * 4 + j]);
  return rows;
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name);
}

TrainOptions Options(const std::string& path) {
  TrainOptions o;
  o.batch_size = 64;
  o.max_steps = 40;  // 5 epochs of 512 rows
  o.eval_every = 5;
  o.eval_batch_size = 30;
  o.log_every = 0;
  o.seed = 5;
  o.guard_every = 4;
  o.checkpoint_every = 10;
  o.checkpoint_path = path;
  return o;
}

// Parameters, buffers and optimizer state.
std::vector<double> Flat(const nn::Module& m, const nn::Optimizer* opt) {
  std::vector<double> v;
  for (const Tensor& p : m.Parameters())
    for (double x : p.ToVector()) v.push_back(x);
  for (const auto& [name, b] : m.NamedBuffers())
    for (double x : b.ToVector()) v.push_back(x);
  if (opt != nullptr)
    for (const auto& [name, s] : opt->NamedState())
      for (double x : s.ToVector()) v.push_back(x);
  return v;
}

void ExpectSameRun(const TrainResult& got, const TrainResult& want) {
  EXPECT_EQ(got.steps, want.steps);
  EXPECT_EQ(got.losses, want.losses);
  EXPECT_EQ(got.val_history, want.val_history);
  EXPECT_EQ(got.best_step, want.best_step);
  EXPECT_EQ(got.best_val_nll, want.best_val_nll);
  EXPECT_EQ(got.last_loss, want.last_loss);
  EXPECT_EQ(got.stopped_early, want.stopped_early);
  EXPECT_EQ(got.diverged, want.diverged);
  EXPECT_EQ(got.message, want.message);
  EXPECT_EQ(got.elapsed.size(), want.elapsed.size());
  EXPECT_TRUE(got.model_status.ok()) << got.model_status;
}

struct Outcome {
  TrainResult result;
  std::vector<double> state;  // Flat(model, optimizer)
};

// One process: trains a fresh MAF (initial parameters from `model_seed`).
absl::StatusOr<Outcome> TrainOnce(const TrainData& data, const TrainOptions& o,
                                  std::shared_ptr<Poison> poison,
                                  uint64_t model_seed = 11) {
  auto m = Maf(model_seed);
  auto opt = Adam(*m);
  FT_ASSIGN_OR_RETURN(TrainResult r,
                      TrainNll(*m, NoisyNll(*m, poison), *opt, data, o));
  return Outcome{r, Flat(*m, opt.get())};
}

// The uninterrupted run against one stopped after `k` steps (max_steps = k,
// as a process killed after its checkpoint at step k) and resumed into a
// model built from other initial values.
void CheckResumeMatches(TrainOptions o, int64_t k,
                        std::shared_ptr<Poison> poison = nullptr) {
  const TrainData data = RowsData();
  const std::string ref_path = o.checkpoint_path + ".ref";
  TrainOptions ref = o;
  ref.checkpoint_path = ref_path;
  const Outcome want = TrainOnce(data, ref, poison).value();

  TrainOptions first = o;
  first.max_steps = k;
  ASSERT_TRUE(TrainOnce(data, first, poison).ok());
  TrainOptions rest = o;
  rest.resume_from = o.checkpoint_path;
  const Outcome got = TrainOnce(data, rest, poison, /*model_seed=*/99).value();
  ExpectSameRun(got.result, want.result);
  EXPECT_EQ(got.state, want.state);
  // Both leave the same checkpoint behind.
  auto model_a = Maf(), model_b = Maf();
  auto opt_a = Adam(*model_a), opt_b = Adam(*model_b);
  ASSERT_TRUE(nn::LoadCheckpoint(ref_path, *model_a, opt_a.get()).ok());
  ASSERT_TRUE(
      nn::LoadCheckpoint(o.checkpoint_path, *model_b, opt_b.get()).ok());
  EXPECT_EQ(Flat(*model_a, opt_a.get()), Flat(*model_b, opt_b.get()));
}

TEST(Resume, StoppedAndResumedRunIsBitIdentical) {
  TrainOptions o = Options(TempPath("plain.ckpt"));
  o.max_steps = 200;
  o.checkpoint_every = 20;
  const Outcome want = TrainOnce(RowsData(), o, nullptr).value();
  ASSERT_EQ(want.result.steps, 200);
  ASSERT_FALSE(want.result.stopped_early);
  // restore_best: the final model is the best one, restored on resume from
  // the saved snapshot.
  ASSERT_LT(want.result.best_step, 200);
  for (int64_t k : {20, 100, 180, 200}) {
    SCOPED_TRACE(testing::Message() << "resumed at " << k);
    CheckResumeMatches(o, k);
  }
}

TEST(Resume, AcrossANanGuardRestore) {
  // Step 33's batch turns NaN; the guard's last good snapshot is the state
  // before step 29 (every 4 steps), older than the checkpoint at step 30:
  // the resumed run restores the snapshot saved with the checkpoint.
  TrainOptions o = Options(TempPath("nan.ckpt"));
  auto poison = std::make_shared<Poison>();
  poison->rows = RowsOfStep(RowsData(), o.batch_size, o.seed, 33);
  const Outcome want = TrainOnce(RowsData(), o, poison).value();
  ASSERT_TRUE(want.result.diverged);
  ASSERT_EQ(want.result.steps, 28);
  ASSERT_EQ(want.result.losses.size(), 32u);
  CheckResumeMatches(o, 30, poison);
  CheckResumeMatches(o, 20, poison);
}

TEST(Resume, AcrossEarlyStopping) {
  TrainOptions o = Options(TempPath("early.ckpt"));
  o.max_steps = 400;
  o.eval_every = 2;
  o.patience = 3;
  o.checkpoint_every = 2;
  const Outcome want = TrainOnce(RowsData(), o, nullptr).value();
  ASSERT_TRUE(want.result.stopped_early) << want.result.message;
  const int64_t stop = want.result.losses.size();
  ASSERT_LT(want.result.best_step, stop);
  // Before the last best, between it and the stop, and at the stop (the
  // checkpoint of the ended run: its result, no training).
  for (int64_t k :
       {want.result.best_step - 2, want.result.best_step + 2, stop}) {
    if (k < 2) continue;
    SCOPED_TRACE(testing::Message() << "resumed at " << k << " of " << stop);
    CheckResumeMatches(o, k);
  }
}

TEST(Resume, OnTwoThreads) {
  const TrainData data = RowsData();
  const std::string path = TempPath("threads.ckpt");
  auto run = [&](const TrainOptions& o,
                 uint64_t model_seed) -> absl::StatusOr<Outcome> {
    std::shared_ptr<nn::Optimizer> opt0;
    std::mutex mu;
    ReplicaFactory make = [&](int rank) -> absl::StatusOr<Replica> {
      auto m = Maf(model_seed + rank);
      auto opt = Adam(*m);
      if (rank == 0) {
        std::lock_guard<std::mutex> lock(mu);
        opt0 = opt;
      }
      return Replica{m, NoisyNll(*m, nullptr), opt};
    };
    FT_ASSIGN_OR_RETURN(ThreadedTraining t, TrainNllThreads(make, data, o));
    return Outcome{t.result, Flat(*t.replica.model, opt0.get())};
  };
  TrainOptions o = Options(path);
  o.threads = 2;
  TrainOptions ref = o;
  ref.checkpoint_path = path + ".ref";
  const Outcome want = run(ref, 11).value();
  ASSERT_EQ(want.result.ranks, 2);
  TrainOptions first = o;
  first.max_steps = 20;
  ASSERT_TRUE(run(first, 11).ok());
  TrainOptions rest = o;
  rest.resume_from = path;
  const Outcome got = run(rest, 99).value();
  ExpectSameRun(got.result, want.result);
  EXPECT_EQ(got.state, want.state);
}

TEST(Resume, MissingFile) {
  TrainOptions o = Options(TempPath("missing.ckpt"));
  std::remove(o.checkpoint_path.c_str());
  o.resume_from = o.checkpoint_path;
  absl::StatusOr<Outcome> r = TrainOnce(RowsData(), o, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "missing.ckpt"));
  // resume_missing_ok: a fresh run, the same as one without resume_from.
  o.resume_missing_ok = true;
  const Outcome fresh = TrainOnce(RowsData(), o, nullptr).value();
  TrainOptions plain = Options(TempPath("missing_ref.ckpt"));
  const Outcome want = TrainOnce(RowsData(), plain, nullptr).value();
  ExpectSameRun(fresh.result, want.result);
  EXPECT_EQ(fresh.state, want.state);
  // Something there that cannot be read is an error, not a fresh start.
  TrainOptions unreadable = o;
  unreadable.resume_from = TempPath("a_directory");
  ::mkdir(unreadable.resume_from.c_str(), 0755);
  r = TrainOnce(RowsData(), unreadable, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(), "a_directory"))
      << r.status();
}

// A checkpoint of 10 steps at `path`, its entries and metadata.
void WriteTenSteps(const std::string& path, nn::NamedTensors* entries,
                   nn::Metadata* meta) {
  TrainOptions o = Options(path);
  o.max_steps = 10;
  ASSERT_TRUE(TrainOnce(RowsData(), o, nullptr).ok());
  *entries = nn::ReadTensorFile(path, meta).value();
  ASSERT_EQ(meta->count(kTrainStateKey), 1u);
}

// Resuming `o` fails with `code` and a message containing `needle`; the
// model keeps its parameters.
void ExpectResumeFails(const TrainOptions& o, const TrainData& data,
                       absl::StatusCode code, const std::string& needle,
                       int64_t hidden = 16) {
  auto m = Maf(99, hidden);
  auto opt = Adam(*m);
  const std::vector<double> before = Flat(*m, opt.get());
  absl::StatusOr<TrainResult> r =
      TrainNll(*m, NoisyNll(*m, nullptr), *opt, data, o);
  ASSERT_FALSE(r.ok()) << needle;
  EXPECT_EQ(r.status().code(), code) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), needle)) << r.status();
  EXPECT_EQ(Flat(*m, opt.get()), before);
}

TEST(Resume, CorruptOrForeignTrainingStateIsAnError) {
  const std::string path = TempPath("bad.ckpt"), bad = TempPath("bad2.ckpt");
  nn::NamedTensors entries;
  nn::Metadata meta;
  WriteTenSteps(path, &entries, &meta);
  TrainOptions o = Options(bad);
  o.checkpoint_every = 0;
  o.resume_from = bad;
  const std::string record = meta[kTrainStateKey];
  auto with_record = [&](const std::string& value) {
    nn::Metadata m = meta;
    m[kTrainStateKey] = value;
    ASSERT_TRUE(nn::WriteTensorFile(bad, entries, m).ok());
  };
  with_record(record.substr(0, record.size() - 3));
  ExpectResumeFails(o, RowsData(), absl::StatusCode::kDataLoss, "cut short");
  with_record(record + "x");
  ExpectResumeFails(o, RowsData(), absl::StatusCode::kDataLoss,
                    "trailing bytes");
  with_record("FTTRAIX" + record.substr(7));
  ExpectResumeFails(o, RowsData(), absl::StatusCode::kDataLoss, "bad magic");
  std::string v3 = record;
  v3[8] = 3;  // the version
  with_record(v3);
  ExpectResumeFails(o, RowsData(), absl::StatusCode::kInvalidArgument,
                    "version 3 is not supported");
  const TrainState good = DecodeState(record).value();
  TrainState t = good;
  t.step = 50;  // 50 losses are not there
  with_record(EncodeState(t));
  ExpectResumeFails(o, RowsData(), absl::StatusCode::kDataLoss,
                    "inconsistent counters");
  t = good;
  t.loop = "train_flow_matching";
  with_record(EncodeState(t));
  ExpectResumeFails(o, RowsData(), absl::StatusCode::kInvalidArgument,
                    "written by train_flow_matching, not train_nll");
  t = good;
  t.ema = "12345678";  // this run keeps no EMA
  with_record(EncodeState(t));
  ExpectResumeFails(o, RowsData(), absl::StatusCode::kInvalidArgument,
                    "EMA's snapshot has 8 bytes");
  t = good;
  t.rng = {1, 2, 3};
  with_record(EncodeState(t));
  ExpectResumeFails(o, RowsData(), absl::StatusCode::kDataLoss, "not 6 words");
  // A plain checkpoint has no training state.
  {
    auto m = Maf();
    ASSERT_TRUE(nn::SaveCheckpoint(bad, *m).ok());
  }
  ExpectResumeFails(o, RowsData(), absl::StatusCode::kInvalidArgument,
                    "no training state");
}

TEST(Resume, MismatchedOptionsDataOrModelIsAnError) {
  const std::string path = TempPath("mismatch.ckpt");
  nn::NamedTensors entries;
  nn::Metadata meta;
  WriteTenSteps(path, &entries, &meta);
  TrainOptions o = Options(path);
  o.resume_from = path;
  o.checkpoint_every = 0;
  const TrainData data = RowsData();
  TrainOptions seed = o;
  seed.seed = 6;
  ExpectResumeFails(seed, data, absl::StatusCode::kInvalidArgument,
                    "seed 5 there, 6 here");
  TrainOptions batch = o;
  batch.batch_size = 32;
  ExpectResumeFails(batch, data, absl::StatusCode::kInvalidArgument,
                    "batch size 64 there, 32 here");
  TrainData fewer = data;
  fewer.train = Rows(500, 1);
  ExpectResumeFails(o, fewer, absl::StatusCode::kInvalidArgument,
                    "512 training rows there, 500 here");
  TrainData other = data;
  other.train = Rows(512, 3);
  ExpectResumeFails(o, other, absl::StatusCode::kInvalidArgument,
                    "the training data");
  TrainData other_val = data;
  other_val.val = Rows(100, 4);
  ExpectResumeFails(o, other_val, absl::StatusCode::kInvalidArgument,
                    "the validation data");
  TrainOptions shorter = o;
  shorter.max_steps = 5;
  ExpectResumeFails(shorter, data, absl::StatusCode::kInvalidArgument,
                    "beyond max_steps");
  // A model of another width: the snapshot sizes (or the checkpoint's
  // shapes) differ.
  ExpectResumeFails(o, data, absl::StatusCode::kInvalidArgument, "bytes",
                    /*hidden=*/8);
  // Options that keep the data order may change: a longer run resumes.
  TrainOptions longer = o;
  longer.max_steps = 12;
  longer.patience = 5;
  auto m = Maf(99);
  auto opt = Adam(*m);
  TrainResult r =
      TrainNll(*m, NoisyNll(*m, nullptr), *opt, data, longer).value();
  EXPECT_EQ(r.steps, 12);
  EXPECT_EQ(r.losses.size(), 12u);
}

// Validation of a stochastic flow (stochastic layers draw from the rng):
// the same NLL for any number of ranks.
std::shared_ptr<flows::FlowModel> Snf(uint64_t seed) {
  Rng rng(seed);
  models::ModelConfig c;
  c.event = Shape{4};
  c.layers = 2;
  c.hidden = {16};
  return models::MakeModel("snf", c, rng).value();
}

TEST(Validation, StochasticFlowIsTheSameOnAnyNumberOfRanks) {
  const TrainData data = RowsData();
  auto alone = Snf(3);
  const NllFn nll = ModelNll(*alone);
  const double want = EvaluateNll(nll, data.val, Tensor(), 12);
  // It is stochastic: another seed gives other noise.
  ASSERT_NE(EvaluateNll(nll, data.val, Tensor(), 12, 777), want);
  for (int n : {1, 2, 3}) {
    std::vector<double> got(n);
    ASSERT_TRUE(parallel::RunOnThreads(
                    n,
                    [&](parallel::Communicator& comm) -> absl::Status {
                      auto m = Snf(3);
                      FT_ASSIGN_OR_RETURN(got[comm.rank()],
                                          EvaluateNll(comm, ModelNll(*m),
                                                      data.val, Tensor(), 12));
                      return absl::OkStatus();
                    })
                    .ok());
    for (int r = 0; r < n; ++r) EXPECT_EQ(got[r], want) << n << " ranks";
  }

  // In training: the validation history of 1, 2 and 3 threads (SGD with
  // lr = 0 keeps the model, so only validation can differ).
  std::vector<std::pair<int64_t, double>> first;
  for (int threads : {1, 2, 3}) {
    ReplicaFactory make = [&](int) -> absl::StatusOr<Replica> {
      auto m = Snf(3);
      nn::SgdOptions frozen;
      frozen.lr = 0.0;
      FT_ASSIGN_OR_RETURN(auto sgd, nn::Sgd::Create(*m, frozen));
      return Replica{m, ModelNll(*m), sgd};
    };
    TrainOptions o;
    o.batch_size = 60;
    o.max_steps = 6;
    o.eval_every = 2;
    o.eval_batch_size = 12;  // 9 chunks of the 100 validation rows
    o.log_every = 0;
    o.threads = threads;
    ThreadedTraining t = TrainNllThreads(make, data, o).value();
    ASSERT_EQ(t.result.val_history.size(), 3u);
    if (threads == 1) first = t.result.val_history;
    for (size_t i = 0; i < first.size(); ++i)
      EXPECT_NEAR(t.result.val_history[i].second, first[i].second, 1e-12)
          << threads << " threads";
  }
}

}  // namespace
}  // namespace flowtape::training

// TrainFlowMatching's resume (train_flow_matching.h): a run restarted from
// any of its checkpoints (a fresh process's model, optimizer and EMA, built
// from another seed) ends with the uninterrupted run's parameters, EMA,
// optimizer state and histories, bit for bit: in one process and on two
// ranks, and from the record of a run that had ended. Records of the other
// loop, or with or without an EMA against this run's, are errors.
#include <cstdio>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "flows/cnf/dynamics.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "flows/matching/cfm.h"
#include "flows/matching/cfm_flow.h"
#include "gtest/gtest.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "training/train_flow_matching.h"
#include "training/train_state.h"

namespace flowtape::training {
namespace {

using flows::matching::AffinePath;
using flows::matching::FlowMatching;

std::string Tmp(const std::string& name) {
  return absl::StrCat(std::getenv("TEST_TMPDIR"), "/", name);
}

TrainData Data() {
  Rng rng(1);
  TrainData d;
  d.train = Tensor::Randn({300, 2}, rng) * 0.5 + 1.0;
  d.val = Tensor::Randn({64, 2}, rng) * 0.5 + 1.0;
  return d;
}

FlowMatchingTrainOptions Options() {
  FlowMatchingTrainOptions o;
  o.batch_size = 64;  // 5 batches per epoch: resumes land mid-epoch
  o.max_steps = 24;
  o.eval_every = 5;
  o.ema_decay = 0.9;
  o.guard_every = 4;
  o.log_every = 0;
  o.seed = 3;
  return o;
}

// A replica from `seed` (its initial parameters), trained on rows
// [begin, end) of each batch.
FlowMatchingReplica Replica(uint64_t seed) {
  Rng rng(seed);
  auto velocity =
      flows::cnf::ConcatSquashNet::Create(2, {16}, nn::Activation::kTanh, rng)
          .value();
  flows::cnf::CnfOptions co;
  co.ode.rtol = co.ode.atol = 1e-5;
  auto model = std::make_shared<flows::FlowModel>(
      flows::StandardNormal::Create(Shape({2})).value(),
      flows::matching::MakeFlowMatchingCnf(velocity, co).value());
  auto objective =
      FlowMatching::Create(velocity, AffinePath::OptimalTransport().value())
          .value();
  FlowMatchingReplica r;
  r.model = model;
  r.nll = ModelNll(*model);
  r.loss = [objective](const Tensor& x, const Tensor& c, Rng& g, int64_t b,
                       int64_t e) {
    return objective->LossOfRows(x, c, g, b, e);
  };
  r.optimizer = nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/2e-2}).value();
  r.ema = std::make_shared<ParameterEma>(*model);
  return r;
}

// Everything a run ends with, as exact values: parameters (the EMA
// weights), the EMA (the raw parameters' average), optimizer state, the
// losses, validation history, best step, steps and message.
std::vector<std::string> Outcome(const FlowMatchingReplica& rep,
                                 const TrainResult& r) {
  std::vector<std::string> v;
  auto put = [&v](double x) { v.push_back(absl::StrFormat("%a", x)); };
  for (const Tensor& p : rep.model->Parameters())
    for (double x : p.ToVector()) put(x);
  rep.ema->Swap();
  for (const Tensor& p : rep.model->Parameters())
    for (double x : p.ToVector()) put(x);
  rep.ema->Swap();
  for (const auto& [name, t] : rep.optimizer->NamedState())
    for (double x : t.ToVector()) put(x);
  for (double x : r.losses) put(x);
  for (const auto& [step, x] : r.val_history) {
    put(static_cast<double>(step));
    put(x);
  }
  v.push_back(
      absl::StrCat("steps ", r.steps, " best ", r.best_step, " ", r.message));
  return v;
}

// Trains `o` on `threads` replicas (seeded `seed`); copies the checkpoint
// written at the end of each step in `copy_at` to Tmp(prefix + step).
absl::StatusOr<std::vector<std::string>> Train(FlowMatchingTrainOptions o,
                                               int threads, uint64_t seed,
                                               const std::set<int64_t>& copy_at,
                                               const std::string& prefix) {
  o.threads = threads;
  auto calls = std::make_shared<int64_t>(0);
  const std::string ckpt = o.checkpoint_path;
  auto make = [&](int rank) -> absl::StatusOr<FlowMatchingReplica> {
    FlowMatchingReplica r = Replica(seed);
    if (rank == 0 && !copy_at.empty()) {
      auto loss = r.loss;
      r.loss = [=](const Tensor& x, const Tensor& c, Rng& g, int64_t b,
                   int64_t e) {
        // Before step s + 1's loss, the file holds step s's checkpoint.
        if (copy_at.count((*calls)++) > 0) {
          std::ifstream in(ckpt, std::ios::binary);
          std::ofstream out(Tmp(absl::StrCat(prefix, *calls - 1)),
                            std::ios::binary);
          out << in.rdbuf();
        }
        return loss(x, c, g, b, e);
      };
    }
    return r;
  };
  FT_ASSIGN_OR_RETURN(ThreadedFlowMatching t,
                      TrainFlowMatchingThreads(make, Data(), o));
  return Outcome(t.replica, t.result);
}

void ExpectResumesExactly(int threads) {
  const std::string tag = absl::StrCat("t", threads, "_");
  FlowMatchingTrainOptions o = Options();
  o.checkpoint_every = 1;
  o.checkpoint_path = Tmp(tag + "run.ckpt");
  const std::set<int64_t> at = {1, 7, 12, 23};
  const std::vector<std::string> want =
      Train(o, threads, /*seed=*/5, at, tag + "at").value();
  ASSERT_GT(want.size(), 100u);
  for (int64_t k : at) {
    FlowMatchingTrainOptions again = o;
    again.resume_from = Tmp(absl::StrCat(tag, "at", k));
    again.checkpoint_path = Tmp(absl::StrCat(tag, "again", k));
    absl::StatusOr<std::vector<std::string>> got =
        Train(again, threads, /*seed=*/99, {}, "");
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), want.size()) << "resumed at " << k;
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ((*got)[i], want[i]) << "resumed at " << k << ", value " << i;
  }
  // The final checkpoint (an ended run's record) returns its result.
  FlowMatchingTrainOptions done = o;
  done.resume_from = o.checkpoint_path;
  done.checkpoint_path = Tmp(tag + "done.ckpt");
  absl::StatusOr<std::vector<std::string>> got =
      Train(done, threads, /*seed=*/98, {}, "");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, want);
}

TEST(FlowMatchingResume, FromAnyCheckpointEndsAsTheUninterruptedRun) {
  ExpectResumesExactly(1);
}

TEST(FlowMatchingResume, TwoRanksResumeExactly) { ExpectResumesExactly(2); }

TEST(FlowMatchingResume, ForeignRecordsAreErrors) {
  FlowMatchingTrainOptions o = Options();
  o.max_steps = 4;
  o.checkpoint_every = 2;
  o.checkpoint_path = Tmp("foreign.ckpt");
  ASSERT_TRUE(Train(o, 1, 5, {}, "").ok());
  nn::Metadata meta;
  const nn::NamedTensors entries =
      nn::ReadTensorFile(o.checkpoint_path, &meta).value();
  const TrainState good = DecodeState(meta[kTrainStateKey]).value();
  EXPECT_EQ(good.loop, "train_flow_matching");
  EXPECT_EQ(good.rng.size(), 6u);
  EXPECT_FALSE(good.ema.empty());
  auto fails = [&](TrainState t, FlowMatchingTrainOptions again,
                   const std::string& needle) {
    nn::Metadata m = meta;
    m[kTrainStateKey] = EncodeState(t);
    const std::string path = Tmp("foreign2.ckpt");
    ASSERT_TRUE(nn::WriteTensorFile(path, entries, m).ok());
    again.resume_from = path;
    again.checkpoint_every = 0;
    absl::StatusOr<std::vector<std::string>> r = Train(again, 1, 5, {}, "");
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(r.status().message(), needle)) << r.status();
  };
  TrainState t = good;
  t.loop = "train_nll";
  fails(t, o, "written by train_nll, not train_flow_matching");
  FlowMatchingTrainOptions no_ema = o;
  no_ema.ema_decay = 0;
  fails(good, no_ema, "the parameter EMA's snapshot has");
  t = good;
  t.rng.clear();
  fails(t, o, "position of the loss stream");
  t = good;
  t.rng[3] = 7;  // no such word in a block
  fails(t, o, "position of the loss stream");
}

}  // namespace
}  // namespace flowtape::training

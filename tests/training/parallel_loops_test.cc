// Data parallelism in TrainFlowMatching and TrainReverseKl: N replicas on N
// threads reproduce one process on the same global batches to 1e-12 in
// float64 after 20 steps, with even (2) and uneven (3: 21 + 21 + 22) shards,
// and the replicas hold the same bits; flow matching with independent and
// exact-OT pairs (the coupling of the global batch) and a parameter EMA;
// FlowMatching::LossOfRows splits the loss and its gradient exactly; the
// reverse-KL NaN guard decides for all ranks; a training loop asked for
// threads it does not run is an error.
#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "autodiff/grad.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/cnf/dynamics.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "flows/matching/cfm.h"
#include "flows/matching/cfm_flow.h"
#include "gtest/gtest.h"
#include "models/zoo.h"
#include "nn/optim.h"
#include "parallel/thread_communicator.h"
#include "training/energies.h"
#include "training/reverse_kl.h"
#include "training/train.h"
#include "training/train_flow_matching.h"
#include "training/train_threads.h"

namespace flowtape::training {
namespace {

using flows::matching::AffinePath;
using flows::matching::CouplingKind;
using flows::matching::FlowMatching;

std::vector<double> Flat(const nn::Module& m) {
  std::vector<double> v;
  for (const Tensor& p : m.Parameters())
    for (double x : p.ToVector()) v.push_back(x);
  for (const auto& [name, b] : m.NamedBuffers())
    for (double x : b.ToVector()) v.push_back(x);
  return v;
}

double MaxAbsDiff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0.0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

// ----------------------------------------------------------------------------
// Flow matching.

// Two Gaussians at (+-1.5, 0), sd 0.5.
Tensor TwoGaussians(int64_t n, uint64_t seed) {
  Rng rng(seed);
  Tensor x = Tensor::Zeros({n, 2});
  double* p = x.mutable_data<double>();
  for (int64_t i = 0; i < n; ++i) {
    p[2 * i] = (rng.Bernoulli(0.5) ? 1.5 : -1.5) + 0.5 * rng.Normal();
    p[2 * i + 1] = 0.5 * rng.Normal();
  }
  return x;
}

struct FmRig {
  std::shared_ptr<flows::FlowModel> model;
  std::shared_ptr<FlowMatching> objective;
};

FmRig MakeFm(CouplingKind coupling) {
  Rng rng(3);
  auto velocity = flows::cnf::ConcatSquashNet::Create(
                      2, {16, 16}, nn::Activation::kTanh, rng)
                      .value();
  flows::cnf::CnfOptions o;
  o.ode.rtol = o.ode.atol = 1e-5;
  FmRig s;
  s.model = std::make_shared<flows::FlowModel>(
      flows::StandardNormal::Create(Shape({2})).value(),
      flows::matching::MakeFlowMatchingCnf(velocity, o).value());
  flows::matching::FlowMatchingOptions fo;
  fo.coupling = coupling;
  s.objective =
      FlowMatching::Create(velocity, AffinePath::OptimalTransport().value(), fo)
          .value();
  return s;
}

ShardedFlowMatchingLossFn ShardedLoss(std::shared_ptr<FlowMatching> fm) {
  return [fm](const Tensor& x, const Tensor& c, Rng& rng, int64_t begin,
              int64_t end) { return fm->LossOfRows(x, c, rng, begin, end); };
}

FlowMatchingTrainOptions FmOptions() {
  FlowMatchingTrainOptions o;
  o.batch_size = 64;  // 2 ranks: 32 + 32; 3 ranks: 21 + 21 + 22
  o.max_steps = 20;   // 2.5 epochs of 512 rows
  o.eval_every = 10;
  o.eval_batch_size = 16;
  o.restore_best = false;
  o.log_every = 0;
  o.seed = 7;
  o.ema_decay = 0.9;
  o.bucket_bytes = 1024;  // several buckets
  return o;
}

TrainData FmData() {
  TrainData d;
  d.train = TwoGaussians(512, 1);
  d.val = TwoGaussians(24, 2);
  return d;
}

void CheckFlowMatchingMatchesOneProcess(CouplingKind coupling) {
  const TrainData data = FmData();
  FmRig alone = MakeFm(coupling);
  const std::vector<double> initial = Flat(*alone.model);
  auto adam_ptr =
      nn::Adam::Create(*alone.model, nn::AdamOptions{/*lr=*/1e-2}).value();
  nn::Adam& adam = *adam_ptr;
  // The whole-batch loss of one process: FlowMatching::Loss.
  FlowMatchingLossFn whole = [fm = alone.objective](const Tensor& x,
                                                    const Tensor& c, Rng& rng) {
    return fm->Loss(x, c, rng);
  };
  const TrainResult want =
      TrainFlowMatching(*alone.model, whole, adam, data, FmOptions()).value();
  ASSERT_EQ(want.steps, 20);
  const std::vector<double> trained = Flat(*alone.model);
  ASSERT_GT(MaxAbsDiff(trained, initial), 1e-3);  // it moved

  for (int threads : {2, 3}) {
    SCOPED_TRACE(testing::Message() << threads << " threads");
    std::mutex mu;
    std::vector<std::shared_ptr<flows::FlowModel>> models(threads);
    FlowMatchingReplicaFactory make =
        [&](int rank) -> absl::StatusOr<FlowMatchingReplica> {
      FmRig s = MakeFm(coupling);
      {
        std::lock_guard<std::mutex> lock(mu);
        models[rank] = s.model;
      }
      return FlowMatchingReplica{
          s.model, ModelNll(*s.model), ShardedLoss(s.objective),
          nn::Adam::Create(*s.model, nn::AdamOptions{/*lr=*/1e-2}).value(),
          nullptr};
    };
    FlowMatchingTrainOptions o = FmOptions();
    o.threads = threads;
    ThreadedFlowMatching run = TrainFlowMatchingThreads(make, data, o).value();
    EXPECT_EQ(run.result.ranks, threads);
    EXPECT_EQ(run.result.steps, 20);
    EXPECT_GT(run.result.allreduce_bytes_per_step, 0);
    EXPECT_EQ(run.replica.model, models[0]);
    // The EMA weights the model holds on return.
    EXPECT_LE(MaxAbsDiff(Flat(*models[0]), trained), 1e-12);
    for (int r = 1; r < threads; ++r)
      EXPECT_EQ(Flat(*models[r]), Flat(*models[0]));
    ASSERT_EQ(run.result.losses.size(), want.losses.size());
    for (size_t i = 0; i < want.losses.size(); ++i)
      EXPECT_NEAR(run.result.losses[i], want.losses[i], 1e-12) << "step " << i;
    // Validation splits the rows over ranks: the adaptive ODE solver then
    // takes other steps, so the NLL agrees to the solver's tolerance only.
    ASSERT_EQ(run.result.val_history.size(), want.val_history.size());
    for (size_t i = 0; i < want.val_history.size(); ++i)
      EXPECT_NEAR(run.result.val_history[i].second, want.val_history[i].second,
                  1e-3);
  }
}

TEST(ParallelFlowMatching, IndependentPairsMatchOneProcess) {
  CheckFlowMatchingMatchesOneProcess(CouplingKind::kIndependent);
}

TEST(ParallelFlowMatching, ExactOtPairsMatchOneProcess) {
  // The coupling is of the global batch: a rank's pairs can take x0 rows
  // from anywhere in it.
  CheckFlowMatchingMatchesOneProcess(CouplingKind::kExactOt);
}

TEST(ParallelFlowMatching, LossOfRowsSplitsTheLossAndItsGradient) {
  // sum_r (b_r / N) LossOfRows(rows of part r) = Loss, value and gradient,
  // for a split into uneven parts, with every part drawing from the same
  // rng state.
  for (CouplingKind kind : {CouplingKind::kIndependent, CouplingKind::kExactOt,
                            CouplingKind::kSinkhorn}) {
    FmRig s = MakeFm(kind);
    const Tensor x = TwoGaussians(23, 5);
    const std::vector<Tensor> params = s.model->Parameters();
    auto value_and_grad = [&](int64_t begin, int64_t end) {
      Rng rng(9);
      Tensor loss =
          s.objective->LossOfRows(x, Tensor(), rng, begin, end).value();
      std::vector<Tensor> g = Grad({loss}, params);
      std::vector<double> out = {loss.item()};
      for (const Tensor& t : g)
        for (double v : t.ToVector()) out.push_back(v);
      Tape::Get().Reset();
      return out;
    };
    Rng rng(9);
    const double whole_loss =
        s.objective->Loss(x, Tensor(), rng).value().item();
    Tape::Get().Reset();
    const std::vector<double> whole = value_and_grad(0, 23);
    EXPECT_EQ(whole[0], whole_loss);
    std::vector<double> sum(whole.size(), 0.0);
    for (auto [begin, end] :
         {std::pair<int64_t, int64_t>{0, 7}, {7, 15}, {15, 23}}) {
      const std::vector<double> part = value_and_grad(begin, end);
      for (size_t i = 0; i < sum.size(); ++i)
        sum[i] += part[i] * (end - begin) / 23.0;
    }
    EXPECT_LE(MaxAbsDiff(sum, whole), 1e-13);
    EXPECT_GT(std::abs(whole[1]), 1e-8);
  }
  FmRig s = MakeFm(CouplingKind::kIndependent);
  Rng rng(1);
  EXPECT_EQ(s.objective->LossOfRows(TwoGaussians(8, 1), Tensor(), rng, 5, 5)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParallelFlowMatching, AWholeBatchLossCannotBeSplit) {
  // A FlowMatchingLossFn draws for the rows it is given: refused under a
  // communicator of several ranks, on every rank.
  const TrainData data = FmData();
  FmRig s = MakeFm(CouplingKind::kIndependent);
  auto adam_ptr =
      nn::Adam::Create(*s.model, nn::AdamOptions{/*lr=*/1e-2}).value();
  nn::Adam& adam = *adam_ptr;
  FlowMatchingLossFn whole = [fm = s.objective](const Tensor& x,
                                                const Tensor& c, Rng& rng) {
    return fm->Loss(x, c, rng);
  };
  absl::Status st = parallel::RunOnThreads(
      2, [&](parallel::Communicator& comm) -> absl::Status {
        FmRig mine = MakeFm(CouplingKind::kIndependent);
        auto my_adam_ptr =
            nn::Adam::Create(*mine.model, nn::AdamOptions{/*lr=*/1e-2}).value();
        nn::Adam& my_adam = *my_adam_ptr;
        FlowMatchingTrainOptions o = FmOptions();
        o.communicator = &comm;
        FlowMatchingLossFn loss = [fm = mine.objective](
                                      const Tensor& x, const Tensor& c,
                                      Rng& rng) { return fm->Loss(x, c, rng); };
        return TrainFlowMatching(*mine.model, loss, my_adam, data, o).status();
      });
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("ShardedFlowMatchingLossFn"), std::string::npos)
      << st;
  // threads > 1 on the one-replica loop.
  FlowMatchingTrainOptions o = FmOptions();
  o.threads = 2;
  st = TrainFlowMatching(*s.model, whole, adam, data, o).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("TrainFlowMatchingThreads"), std::string::npos)
      << st;
  // A replica without a loss.
  FlowMatchingReplicaFactory no_loss =
      [](int) -> absl::StatusOr<FlowMatchingReplica> {
    FmRig r = MakeFm(CouplingKind::kIndependent);
    return FlowMatchingReplica{
        r.model, ModelNll(*r.model), nullptr,
        nn::Adam::Create(*r.model, nn::AdamOptions{}).value(), nullptr};
  };
  o.threads = 2;
  EXPECT_EQ(TrainFlowMatchingThreads(no_loss, data, o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ----------------------------------------------------------------------------
// Reverse KL.

std::shared_ptr<flows::FlowModel> Maf2d() {
  Rng rng(11);
  models::ModelConfig c;
  c.event = Shape{2};
  c.layers = 3;
  c.hidden = {16, 16};
  return models::MakeModel("maf", c, rng).value();
}

ReverseKlOptions RkOptions() {
  ReverseKlOptions o;
  o.batch_size = 64;
  o.steps = 20;
  o.anneal_steps = 10;
  o.log_every = 0;
  o.seed = 4;
  o.bucket_bytes = 2048;
  return o;
}

TEST(ParallelReverseKl, MatchesOneProcess) {
  const LogDensityFn log_p = EnergyLogDensity(Energy::kU1);
  auto alone = Maf2d();
  const std::vector<double> initial = Flat(*alone);
  auto adam_ptr =
      nn::Adam::Create(*alone, nn::AdamOptions{/*lr=*/1e-2}).value();
  nn::Adam& adam = *adam_ptr;
  const ReverseKlResult want =
      TrainReverseKl(*alone, log_p, adam, RkOptions()).value();
  ASSERT_EQ(want.steps, 20);
  const std::vector<double> trained = Flat(*alone);
  ASSERT_GT(MaxAbsDiff(trained, initial), 1e-3);

  for (int threads : {2, 3}) {
    SCOPED_TRACE(testing::Message() << threads << " threads");
    std::mutex mu;
    std::vector<std::shared_ptr<flows::FlowModel>> models(threads);
    ReverseKlReplicaFactory make =
        [&](int rank) -> absl::StatusOr<ReverseKlReplica> {
      auto m = Maf2d();
      {
        std::lock_guard<std::mutex> lock(mu);
        models[rank] = m;
      }
      return ReverseKlReplica{
          m, log_p, nn::Adam::Create(*m, nn::AdamOptions{/*lr=*/1e-2}).value()};
    };
    ReverseKlOptions o = RkOptions();
    o.threads = threads;
    ThreadedReverseKl run = TrainReverseKlThreads(make, o).value();
    EXPECT_EQ(run.result.ranks, threads);
    EXPECT_EQ(run.result.steps, 20);
    EXPECT_EQ(run.replica.model, models[0]);
    EXPECT_LE(MaxAbsDiff(Flat(*models[0]), trained), 1e-12);
    for (int r = 1; r < threads; ++r)
      EXPECT_EQ(Flat(*models[r]), Flat(*models[0]));
    ASSERT_EQ(run.result.free_energy.size(), want.free_energy.size());
    for (size_t i = 0; i < want.free_energy.size(); ++i)
      EXPECT_NEAR(run.result.free_energy[i], want.free_energy[i], 1e-12)
          << "step " << i;
  }
}

TEST(ParallelReverseKl, TheNanGuardDecidesForAllRanks) {
  // Rank 1's target turns NaN at its 6th evaluation: every rank stops at
  // step 6 and restores the state before step 5, the last whose free
  // energy was finite, after 4 updates (guard every step); the replicas
  // stay identical and equal 4 steps of one process.
  std::mutex mu;
  std::vector<std::shared_ptr<flows::FlowModel>> models(2);
  ReverseKlReplicaFactory make =
      [&](int rank) -> absl::StatusOr<ReverseKlReplica> {
    auto m = Maf2d();
    {
      std::lock_guard<std::mutex> lock(mu);
      models[rank] = m;
    }
    auto calls = std::make_shared<int>(0);
    LogDensityFn log_p = [rank, calls](const Tensor& x) {
      Tensor v = -PotentialEnergy(Energy::kU1, x);
      return ++*calls == 6 && rank == 1 ? v * std::nan("") : v;
    };
    return ReverseKlReplica{
        m, log_p, nn::Adam::Create(*m, nn::AdamOptions{/*lr=*/1e-2}).value()};
  };
  ReverseKlOptions o = RkOptions();
  o.threads = 2;
  ThreadedReverseKl run = TrainReverseKlThreads(make, o).value();
  EXPECT_TRUE(run.result.diverged);
  EXPECT_EQ(run.result.steps, 4);
  EXPECT_EQ(run.result.free_energy.size(), 5u);
  EXPECT_NE(run.result.message.find("stopped at step 6: non-finite free "
                                    "energy; restored the parameters after 4 "
                                    "updates"),
            std::string::npos)
      << run.result.message;
  EXPECT_EQ(Flat(*models[1]), Flat(*models[0]));
  auto alone = Maf2d();
  auto adam_ptr =
      nn::Adam::Create(*alone, nn::AdamOptions{/*lr=*/1e-2}).value();
  nn::Adam& adam = *adam_ptr;
  ReverseKlOptions four = RkOptions();
  four.steps = 4;
  ASSERT_TRUE(
      TrainReverseKl(*alone, EnergyLogDensity(Energy::kU1), adam, four).ok());
  EXPECT_LE(MaxAbsDiff(Flat(*models[0]), Flat(*alone)), 1e-12);
}

TEST(ParallelReverseKl, OptionErrors) {
  auto m = Maf2d();
  auto adam_ptr = nn::Adam::Create(*m, nn::AdamOptions{/*lr=*/1e-2}).value();
  nn::Adam& adam = *adam_ptr;
  const LogDensityFn log_p = EnergyLogDensity(Energy::kU1);
  ReverseKlOptions o = RkOptions();
  o.threads = 3;
  absl::Status st = TrainReverseKl(*m, log_p, adam, o).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("TrainReverseKlThreads"), std::string::npos)
      << st;
  o.threads = 0;
  o.guard_every = 0;
  EXPECT_EQ(TrainReverseKl(*m, log_p, adam, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  // More ranks than samples per step.
  o = RkOptions();
  o.batch_size = 2;
  o.threads = 3;
  ReverseKlReplicaFactory make = [&](int) -> absl::StatusOr<ReverseKlReplica> {
    auto r = Maf2d();
    return ReverseKlReplica{r, log_p,
                            nn::Adam::Create(*r, nn::AdamOptions{}).value()};
  };
  // threads > 0 is capped at the batch: 2 ranks of one sample each.
  EXPECT_EQ(TrainReverseKlThreads(make, o).value().result.ranks, 2);
  o.communicator = nullptr;
  ReverseKlReplicaFactory empty = [](int) -> absl::StatusOr<ReverseKlReplica> {
    return ReverseKlReplica{};
  };
  EXPECT_EQ(TrainReverseKlThreads(empty, RkOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flowtape::training

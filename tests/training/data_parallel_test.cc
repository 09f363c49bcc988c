// Data-parallel NLL training: N replicas on N threads reproduce
// single-process training on the same global batches (a MAF, and RealNVP
// with ActNorm, whose data-dependent initialisation must come from the
// global first batch), to 1e-12 in float64 after 20 steps, with uneven
// shards; the replicas stay bit-identical to each other; the NaN guard's
// decision is collective; the thread count follows its rule.
#include <cmath>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/actnorm.h"
#include "flows/coupling.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "flows/sequential.h"
#include "gtest/gtest.h"
#include "models/zoo.h"
#include "nn/optim.h"
#include "parallel/thread_communicator.h"
#include "tests/training/rows.h"
#include "training/train.h"
#include "training/train_threads.h"

namespace flowtape::training {
namespace {

using fixtures::RowsData;

using ModelMaker = std::function<std::shared_ptr<flows::FlowModel>()>;

std::shared_ptr<flows::FlowModel> Maf() {
  Rng rng(11);
  models::ModelConfig c;
  c.event = Shape{4};
  c.layers = 2;
  c.hidden = {16, 16};
  return models::MakeModel("maf", c, rng).value();
}

// ActNorm before each of two RealNVP couplings: the ActNorms initialise from
// the first batch they see.
std::shared_ptr<flows::FlowModel> ActNormRealNvp() {
  Rng rng(12);
  flows::CouplingOptions coupling;
  coupling.event = Shape{4};
  coupling.hidden = {16};
  coupling.transform.kind = flows::ElementwiseKind::kAffine;
  auto seq = std::make_shared<flows::Sequential>();
  for (bool flip : {false, true}) {
    coupling.flip = flip;
    seq->Add(flows::ActNorm::Create(4).value());
    seq->Add(flows::Coupling::Create(coupling, rng).value());
  }
  return std::make_shared<flows::FlowModel>(
      flows::StandardNormal::Create(Shape{4}).value(), seq);
}

TrainOptions Options() {
  TrainOptions o;
  o.batch_size = 64;  // 2 ranks: 32 + 32; 3 ranks: 21 + 21 + 22
  o.max_steps = 20;   // 2.5 epochs of 512 rows: two fresh permutations
  o.eval_every = 5;
  o.eval_batch_size = 40;
  o.restore_best = false;
  o.log_every = 0;
  o.seed = 5;
  o.bucket_bytes = 4096;  // many buckets, some splitting a tensor
  return o;
}

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

using OptimizerMaker =
    std::function<std::shared_ptr<nn::Optimizer>(const nn::Module&)>;

std::shared_ptr<nn::Optimizer> Adam(const nn::Module& m) {
  return nn::Adam::Create(m, nn::AdamOptions{/*lr=*/1e-2}).value();
}
std::shared_ptr<nn::Optimizer> Momentum(const nn::Module& m) {
  return nn::Sgd::Create(m, nn::SgdOptions{/*lr=*/1e-2, /*momentum=*/0.9})
      .value();
}

void CheckMatchesOneProcess(const ModelMaker& make_model,
                            const OptimizerMaker& make_optimizer) {
  const TrainData data = RowsData();
  auto alone = make_model();
  auto optimizer = make_optimizer(*alone);
  TrainResult want = TrainNll(*alone, *optimizer, data, Options()).value();
  ASSERT_EQ(want.steps, 20);
  const std::vector<double> trained = Flat(*alone);
  ASSERT_GT(MaxAbsDiff(trained, Flat(*make_model())), 1e-3);  // it moved

  for (int threads : {2, 3}) {
    SCOPED_TRACE(testing::Message() << threads << " threads");
    std::mutex mu;
    std::vector<std::shared_ptr<flows::FlowModel>> models(threads);
    ReplicaFactory make = [&](int rank) -> absl::StatusOr<Replica> {
      auto m = make_model();
      {
        std::lock_guard<std::mutex> lock(mu);
        models[rank] = m;
      }
      return Replica{m, ModelNll(*m), make_optimizer(*m)};
    };
    TrainOptions o = Options();
    o.threads = threads;
    ThreadedTraining run = TrainNllThreads(make, data, o).value();
    EXPECT_EQ(run.result.ranks, threads);
    EXPECT_EQ(run.result.steps, 20);
    EXPECT_GT(run.result.allreduce_bytes_per_step, 0);
    EXPECT_EQ(run.replica.model, models[0]);
    EXPECT_LE(MaxAbsDiff(Flat(*models[0]), trained), 1e-12);
    // Every replica holds the same bits.
    for (int r = 1; r < threads; ++r)
      EXPECT_EQ(Flat(*models[r]), Flat(*models[0]));
    ASSERT_EQ(run.result.losses.size(), want.losses.size());
    for (size_t i = 0; i < want.losses.size(); ++i)
      EXPECT_NEAR(run.result.losses[i], want.losses[i], 1e-12) << "step " << i;
    ASSERT_EQ(run.result.val_history.size(), want.val_history.size());
    for (size_t i = 0; i < want.val_history.size(); ++i)
      EXPECT_NEAR(run.result.val_history[i].second, want.val_history[i].second,
                  1e-12);
  }
}

TEST(DataParallel, MafMatchesOneProcess) { CheckMatchesOneProcess(Maf, Adam); }

// SGD with momentum, not Adam: Adam's step g / (sqrt(v) + eps) magnifies the
// rounding of a vanishing gradient by up to lr / eps = 1e6, and ActNorm's
// bias gradient vanishes at its data-dependent initialisation (the mean of
// centred outputs), so two summation orders legitimately differ by ~1e-11
// after 20 Adam steps.
TEST(DataParallel, ActNormRealNvpMatchesOneProcess) {
  CheckMatchesOneProcess(ActNormRealNvp, Momentum);
}

TEST(DataParallel, Float32MatchesOneProcess) {
  // The all-reduce runs in the model's dtype: float32 replicas agree with one
  // float32 process to float32 rounding.
  auto make = [] {
    auto m = Maf();
    m->To(kFloat32);
    return m;
  };
  TrainData data = RowsData();
  {
    NoGradScope no_grad;
    data.train = Cast(data.train, kFloat32).Detach();
    data.val = Cast(data.val, kFloat32).Detach();
  }
  auto alone = make();
  auto optimizer = Momentum(*alone);
  ASSERT_TRUE(TrainNll(*alone, *optimizer, data, Options()).ok());
  std::shared_ptr<flows::FlowModel> rank0;
  ReplicaFactory factory = [&](int rank) -> absl::StatusOr<Replica> {
    auto m = make();
    if (rank == 0) rank0 = m;
    return Replica{m, ModelNll(*m), Momentum(*m)};
  };
  TrainOptions o = Options();
  o.threads = 3;
  ThreadedTraining run = TrainNllThreads(factory, data, o).value();
  EXPECT_EQ(run.result.allreduce_bytes_per_step % 4, 0);
  EXPECT_EQ(rank0->dtype(), kFloat32);
  EXPECT_LE(MaxAbsDiff(Flat(*rank0), Flat(*alone)), 1e-4);
  EXPECT_GT(MaxAbsDiff(Flat(*rank0), Flat(*make())), 1e-3);
}

TEST(DataParallel, TheNanGuardDecidesForAllRanks) {
  // Rank 1's loss turns NaN at its 6th step (the parameters after 5
  // updates): every rank stops there and restores the state whose loss was
  // last finite, after 4 updates (the replicas stay identical).
  const TrainData data = RowsData();
  std::mutex mu;
  std::vector<std::shared_ptr<flows::FlowModel>> models(2);
  ReplicaFactory make = [&](int rank) -> absl::StatusOr<Replica> {
    auto m = Maf();
    {
      std::lock_guard<std::mutex> lock(mu);
      models[rank] = m;
    }
    auto calls = std::make_shared<int>(0);
    NllFn nll = [m, rank, calls](const Tensor& x, const Tensor& c, Rng& rng) {
      Tensor v = m->Nll(x, c, &rng);
      return ++*calls == 6 && rank == 1 ? v * std::nan("") : v;
    };
    return Replica{m, nll,
                   nn::Adam::Create(*m, nn::AdamOptions{/*lr=*/1e-2}).value()};
  };
  TrainOptions o = Options();
  o.threads = 2;
  o.eval_every = 1000;
  o.guard_every = 1;
  ThreadedTraining run = TrainNllThreads(make, data, o).value();
  EXPECT_TRUE(run.result.diverged);
  EXPECT_EQ(run.result.steps, 4);
  EXPECT_TRUE(run.result.model_status.ok());
  EXPECT_EQ(Flat(*models[1]), Flat(*models[0]));
  // The same as 4 steps of one process.
  auto alone = Maf();
  auto adam = nn::Adam::Create(*alone, nn::AdamOptions{/*lr=*/1e-2}).value();
  TrainOptions four = Options();
  four.max_steps = 4;
  four.eval_every = 1000;
  ASSERT_TRUE(TrainNll(*alone, *adam, data, four).ok());
  EXPECT_LE(MaxAbsDiff(Flat(*models[0]), Flat(*alone)), 1e-12);
}

TEST(DataParallel, AFailingFactoryFailsTheRun) {
  ReplicaFactory make = [](int rank) -> absl::StatusOr<Replica> {
    if (rank == 1) return absl::NotFoundError("no weights for rank 1");
    auto m = Maf();
    return Replica{m, ModelNll(*m),
                   nn::Adam::Create(*m, nn::AdamOptions{}).value()};
  };
  TrainOptions o = Options();
  o.threads = 2;
  absl::StatusOr<ThreadedTraining> run = TrainNllThreads(make, RowsData(), o);
  EXPECT_EQ(run.status().code(), absl::StatusCode::kNotFound);
}

// A replica without an optimizer is refused, naming the rank and the part.
TEST(DataParallel, AnIncompleteReplicaIsRefused) {
  ReplicaFactory make = [](int rank) -> absl::StatusOr<Replica> {
    auto m = Maf();
    if (rank == 1) return Replica{m, ModelNll(*m), nullptr};
    return Replica{m, ModelNll(*m),
                   nn::Adam::Create(*m, nn::AdamOptions{}).value()};
  };
  TrainOptions o = Options();
  o.threads = 2;
  absl::StatusOr<ThreadedTraining> run = TrainNllThreads(make, RowsData(), o);
  EXPECT_EQ(run.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(run.status().message().find(
                "train_nll_threads: the factory's replica 1 lacks a model, an "
                "nll or an optimizer"),
            std::string::npos)
      << run.status();
}

TEST(DataParallel, TrainNllRefusesThreadsItDoesNotRun) {
  // TrainNll trains the one model it is given: threads > 1 is an error
  // naming the runner, not a silent single-thread run; under a communicator
  // it must match the group's size.
  const TrainData data = RowsData();
  auto m = Maf();
  auto adam_ptr = nn::Adam::Create(*m, nn::AdamOptions{/*lr=*/1e-2}).value();
  nn::Adam& adam = *adam_ptr;
  TrainOptions o = Options();
  o.max_steps = 2;
  o.threads = 4;
  absl::Status s = TrainNll(*m, adam, data, o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("TrainNllThreads"), std::string::npos) << s;
  o.threads = 1;
  EXPECT_TRUE(TrainNll(*m, adam, data, o).ok());
  absl::Status group = parallel::RunOnThreads(
      2, [&](parallel::Communicator& comm) -> absl::Status {
        auto mine = Maf();
        auto my_adam_ptr =
            nn::Adam::Create(*mine, nn::AdamOptions{/*lr=*/1e-2}).value();
        nn::Adam& my_adam = *my_adam_ptr;
        TrainOptions t = Options();
        t.max_steps = 2;
        t.communicator = &comm;
        t.threads = 3;
        return TrainNll(*mine, my_adam, data, t).status();
      });
  EXPECT_EQ(group.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(group.message().find("the communicator has 2 ranks"),
            std::string::npos)
      << group;
}

TEST(DataParallel, ThreadCountRule) {
  TrainOptions o;
  o.batch_size = 4096;
  o.min_rows_per_thread = 1024;
  unsetenv("FLOWTAPE_NUM_THREADS");
  EXPECT_EQ(ThreadCount(o, 100000).value(), 1);
  setenv("FLOWTAPE_NUM_THREADS", "8", 1);
  EXPECT_EQ(ThreadCount(o, 100000).value(), 4);  // 4096 / 1024
  o.batch_size = 256;
  EXPECT_EQ(ThreadCount(o, 100000).value(), 1);  // too few rows to split
  o.threads = 2;                                 // explicit: honoured
  EXPECT_EQ(ThreadCount(o, 100000).value(), 2);
  o.threads = 0;
  setenv("FLOWTAPE_NUM_THREADS", "two", 1);
  EXPECT_EQ(ThreadCount(o, 100000).status().code(),
            absl::StatusCode::kInvalidArgument);
  unsetenv("FLOWTAPE_NUM_THREADS");
  o.threads = -1;
  EXPECT_FALSE(ThreadCount(o, 100000).ok());
  // More threads than kMaxThreads: refused, not one thread per row.
  o.batch_size = 1000000;
  o.threads = kMaxThreads;
  EXPECT_EQ(ThreadCount(o, 1000000).value(), kMaxThreads);
  o.threads = kMaxThreads + 1;
  absl::StatusOr<int> many = ThreadCount(o, 1000000);
  EXPECT_EQ(many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(many.status().message().find("[0, 4096]"), std::string::npos)
      << many.status();
}

}  // namespace
}  // namespace flowtape::training

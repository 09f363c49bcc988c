// Training loops: NLL training reaches the analytic optimum of a Gaussian
// fit, early stopping keeps the best validation parameters, checkpoints
// restore the trained model, the NaN guard restores the last good
// parameters, and reverse-KL training on U1 lowers KL(q || p) (with log Z from
// quadrature). The Rezende & Mohamed energies are checked by hand and by
// finite differences.
#include <cmath>
#include <memory>
#include <sstream>

#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "flows/distribution.h"
#include "flows/flow.h"
#include "flows/flow_model.h"
#include "gtest/gtest.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "tests/gradcheck.h"
#include "training/energies.h"
#include "training/reverse_kl.h"
#include "training/train.h"

namespace flowtape::training {
namespace {

constexpr double kPi = 3.14159265358979323846;

// z = (x - b) exp(-s) per coordinate: log|dz/dx| = -sum s.
class AffineFlow : public flows::Flow {
 public:
  AffineFlow(int64_t d, double b0 = 0.0) {
    b_ = RegisterParameter("shift", Tensor::Full(Shape{d}, b0));
    s_ = RegisterParameter("log_scale", Tensor::Zeros(Shape{d}));
  }
  flows::FlowResult Forward(const Tensor& x, const Tensor&,
                            Rng* /*rng*/) const override {
    Tensor ld = BroadcastTo(-Sum(s_), Shape{x.dim(0)});
    return {(x - b_) * Exp(-s_), ld};
  }
  flows::FlowResult Inverse(const Tensor& z, const Tensor&,
                            Rng* /*rng*/) const override {
    Tensor ld = BroadcastTo(Sum(s_), Shape{z.dim(0)});
    return {z * Exp(s_) + b_, ld};
  }
  std::string name() const override { return "affine"; }
  Tensor b_, s_;
};

std::shared_ptr<flows::FlowModel> AffineModel(int64_t d, double b0 = 0.0) {
  return std::make_shared<flows::FlowModel>(
      flows::StandardNormal::Create(Shape{d}).value(),
      std::make_shared<AffineFlow>(d, b0));
}

// N(mean, diag(std^2)) rows.
Tensor Gaussian(int64_t n, double m0, double s0, double m1, double s1,
                Rng& rng) {
  Tensor x = Tensor::Randn(Shape{n, 2}, rng);
  double* d = x.mutable_data<double>();
  for (int64_t i = 0; i < n; ++i) {
    d[2 * i] = m0 + s0 * d[2 * i];
    d[2 * i + 1] = m1 + s1 * d[2 * i + 1];
  }
  return x;
}

TrainData D(Tensor train, Tensor val) {
  TrainData d;
  d.train = train;
  d.val = val;
  return d;
}

TEST(TrainNll, ReachesTheGaussianEntropyAndCheckpoints) {
  Rng rng(1);
  TrainData data = D(Gaussian(4000, 2.0, 0.5, -1.0, 3.0, rng),
                     Gaussian(1000, 2.0, 0.5, -1.0, 3.0, rng));
  auto model = AffineModel(2);
  auto adam = nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/0.05}).value();
  adam->set_schedule(nn::CosineAnnealingLr(0.05, 600));
  std::ostringstream log;
  TrainOptions o;
  o.batch_size = 200;
  o.max_steps = 600;
  o.eval_every = 100;
  o.log_every = 200;
  o.log = &log;
  o.restore_best = false;
  o.checkpoint_every = 300;
  o.checkpoint_path = std::string(std::getenv("TEST_TMPDIR")) + "/ckpt.bin";
  double before = EvaluateNll(ModelNll(*model), data.val, Tensor(), 512);
  TrainResult r = TrainNll(*model, *adam, data, o).value();
  EXPECT_EQ(r.steps, 600);
  EXPECT_FALSE(r.diverged);
  // The fit is the maximum-likelihood Gaussian: shift = mean, scale = std.
  auto* flow = static_cast<AffineFlow*>(model->flow().get());
  EXPECT_NEAR(flow->b_[0], 2.0, 0.05);
  EXPECT_NEAR(flow->b_[1], -1.0, 0.15);
  EXPECT_NEAR(std::exp(flow->s_[0]), 0.5, 0.02);
  EXPECT_NEAR(std::exp(flow->s_[1]), 3.0, 0.1);
  // Validation NLL as low as that of the true density on the same points.
  double truth = 0;
  for (int64_t i = 0; i < 1000; ++i) {
    double u = (data.val[2 * i] - 2.0) / 0.5, v = (data.val[2 * i + 1] + 1) / 3;
    truth += (0.5 * (u * u + v * v) + std::log(1.5) + std::log(2 * kPi)) / 1000;
  }
  EXPECT_GT(before, truth + 1.0);
  EXPECT_NEAR(r.val_history.back().second, truth, 0.01);
  EXPECT_EQ(r.val_history.size(), 6u);
  EXPECT_NE(log.str().find("step 600/600  loss"), std::string::npos);
  EXPECT_NE(log.str().find("steps/s  ETA"), std::string::npos);
  // The checkpoint of step 600 reproduces the trained parameters.
  auto fresh = AffineModel(2);
  ASSERT_TRUE(nn::LoadCheckpoint(o.checkpoint_path, *fresh).ok());
  EXPECT_EQ(SnapshotParameters(*fresh), SnapshotParameters(*model));
}

TEST(TrainNll, EarlyStoppingRestoresTheBestValidationParameters) {
  // The model starts at the validation mean; training data pull it away, so
  // the validation NLL only gets worse after the first evaluation.
  Rng rng(2);
  TrainData data = D(Gaussian(2000, 0.0, 1.0, 0.0, 1.0, rng),
                     Gaussian(500, 4.0, 1.0, 4.0, 1.0, rng));
  auto model = AffineModel(2, 4.0);
  auto adam = nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/0.05}).value();
  TrainOptions o;
  o.batch_size = 100;
  o.max_steps = 1000;
  o.eval_every = 10;
  o.patience = 3;
  o.log_every = 0;
  TrainResult r = TrainNll(*model, *adam, data, o).value();
  EXPECT_TRUE(r.stopped_early);
  EXPECT_EQ(r.best_step, 10);
  EXPECT_EQ(r.steps, 40);
  double now = EvaluateNll(ModelNll(*model), data.val, Tensor(), 1024);
  EXPECT_DOUBLE_EQ(now, r.best_val_nll);
  EXPECT_LT(r.best_val_nll, r.val_history.back().second);
}

TEST(TrainNll, NanGuardRestoresTheLastGoodParameters) {
  Rng rng(3);
  TrainData data = D(Gaussian(1000, 1.0, 1.0, 1.0, 1.0, rng), Tensor());
  auto model = AffineModel(2);
  auto adam = nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/0.01}).value();
  int calls = 0;
  std::vector<std::vector<double>> at_step6;
  NllFn nll = [&](const Tensor& x, const Tensor& c, Rng&) {
    if (flows::InInitializationPass()) return model->Nll(x, c);  // not a step
    ++calls;
    if (calls == 6) at_step6 = SnapshotParameters(*model);
    if (calls == 7)  // a parameter blows up
      model->Parameters()[0].mutable_data<double>()[1] = std::nan("");
    return model->Nll(x, c);
  };
  std::ostringstream log;
  TrainOptions o;
  o.batch_size = 50;
  o.max_steps = 100;
  o.log = &log;
  o.guard_every = 1;
  TrainResult r = TrainNll(*model, nll, *adam, data, o).value();
  EXPECT_TRUE(r.diverged);
  // Step 6 evaluated the parameters after 5 updates: those are restored.
  EXPECT_EQ(r.steps, 5);
  EXPECT_EQ(r.losses.size(), 6u);
  EXPECT_EQ(adam->step_count(), 5);
  EXPECT_EQ(SnapshotParameters(*model), at_step6);
  EXPECT_NE(log.str().find("stopped at step 7: non-finite loss (loss nan"),
            std::string::npos)
      << log.str();
  EXPECT_NE(log.str().find("restored the state after 5 updates"),
            std::string::npos)
      << log.str();
  for (double v : model->Parameters()[0].ToVector())
    EXPECT_TRUE(std::isfinite(v));
}

TEST(TrainNll, NanGuardRestoresTheLatestGoodSnapshot) {
  // Snapshots before steps 1, 4, 7, 10: the NaN at step 10 (the parameters
  // after 9 updates) restores the one before step 7 (after 6 updates), and
  // the NaN at step 9 restores the one before step 7 too.
  for (int bad_call : {9, 10}) {
    Rng rng(3);
    TrainData data = D(Gaussian(1000, 1.0, 1.0, 1.0, 1.0, rng), Tensor());
    auto model = AffineModel(2);
    auto adam = nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/0.01}).value();
    int calls = 0;
    std::vector<std::vector<double>> at_step7;
    NllFn nll = [&](const Tensor& x, const Tensor& c, Rng& r) {
      if (flows::InInitializationPass()) return model->Nll(x, c, &r);
      ++calls;
      if (calls == 7) at_step7 = SnapshotParameters(*model);
      if (calls == bad_call)
        model->Parameters()[0].mutable_data<double>()[1] = NAN;
      return model->Nll(x, c, &r);
    };
    TrainOptions o;
    o.batch_size = 50;
    o.max_steps = 100;
    o.log_every = 0;
    o.guard_every = 3;
    TrainResult r = TrainNll(*model, nll, *adam, data, o).value();
    EXPECT_TRUE(r.diverged);
    EXPECT_EQ(r.steps, 6);
    EXPECT_EQ(adam->step_count(), 6);
    EXPECT_EQ(SnapshotParameters(*model), at_step7);
    EXPECT_NE(r.message.find("after 6 updates, the last snapshot (every 3 "
                             "steps) with a finite loss"),
              std::string::npos)
        << r.message;
  }
  // guard_every < 1 is refused.
  auto model = AffineModel(2);
  auto adam = nn::Adam::Create(*model, {}).value();
  TrainOptions o;
  o.guard_every = 0;
  Rng rng(1);
  EXPECT_EQ(
      TrainNll(*model, *adam, D(Gaussian(10, 0, 1, 0, 1, rng), Tensor()), o)
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
}

// One parameter b and the loss sqrt(1 - b), NaN for b > 1: gradient descent
// walks b up until the loss breaks.
class Root : public nn::Module {
 public:
  Root() { b = RegisterParameter("b", Tensor::Zeros(Shape{1})); }
  Tensor Loss() const { return Sum(Sqrt(1.0 - b)); }
  Tensor b;
};

TEST(TrainNll, DivergenceNeverLeavesACheckpointWithoutAFiniteLoss) {
  // SGD (lr 1, momentum 0.9), gradient -1 / (2 sqrt(1 - b)):
  //   b: 0 -> 0.5 (buffer -0.5) -> 0.5 + 0.45 + 1/sqrt(2) = 1.657 (NaN loss).
  Root root;
  auto sgd = nn::Sgd::Create(root, nn::SgdOptions{/*lr=*/1.0, /*momentum=*/0.9})
                 .value();
  NllFn nll = [&](const Tensor&, const Tensor&, Rng&) { return root.Loss(); };
  TrainOptions o;
  o.batch_size = 2;
  o.max_steps = 10;
  o.log_every = 0;
  o.guard_every = 1;
  o.checkpoint_every = 1;
  o.checkpoint_path =
      std::string(std::getenv("TEST_TMPDIR")) + "/diverged_ckpt.bin";
  TrainResult r =
      TrainNll(root, nll, *sgd, D(Tensor::Zeros(Shape{4, 1}), Tensor()), o)
          .value();
  ASSERT_TRUE(r.diverged);
  EXPECT_EQ(r.steps, 1);
  EXPECT_NE(r.message.find("stopped at step 3: non-finite loss"),
            std::string::npos)
      << r.message;
  EXPECT_NE(r.message.find("after 1 updates"), std::string::npos) << r.message;
  EXPECT_DOUBLE_EQ(root.b[0], 0.5);
  EXPECT_EQ(sgd->step_count(), 1);
  // The file was written at step 2 with b = 1.657; it now holds b = 0.5 and
  // the optimizer state of that point (one update, momentum buffer -0.5).
  Root loaded;
  auto sgd2 =
      nn::Sgd::Create(loaded, nn::SgdOptions{/*lr=*/1.0, /*momentum=*/0.9})
          .value();
  ASSERT_TRUE(nn::LoadCheckpoint(o.checkpoint_path, loaded, sgd2.get()).ok());
  EXPECT_DOUBLE_EQ(loaded.b[0], 0.5);
  EXPECT_DOUBLE_EQ(loaded.Loss().item(), std::sqrt(0.5));
  EXPECT_EQ(sgd2->step_count(), 1);
  int buffers = 0;
  for (const auto& [name, t] : sgd2->NamedState()) {
    if (name == "step") continue;
    EXPECT_DOUBLE_EQ(t[0], -0.5) << name;
    ++buffers;
  }
  EXPECT_EQ(buffers, 1);
}

TEST(TrainNll, BadDataAreErrorsNamingTheRow) {
  auto model = AffineModel(2);
  auto adam = nn::Adam::Create(*model, {}).value();
  TrainOptions o;
  o.log_every = 0;
  TrainData data = D(Tensor::Zeros(Shape{4, 2}), Tensor::Zeros(Shape{3, 2}));
  data.train.mutable_data<double>()[5] = std::nan("");
  absl::Status s = TrainNll(*model, *adam, data, o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("training data row 2 has nan at entry 1"),
            std::string::npos)
      << s;
  data.train = Tensor::Zeros(Shape{4, 2});
  data.val.mutable_data<double>()[0] = INFINITY;
  s = TrainNll(*model, *adam, data, o).status();
  EXPECT_NE(s.message().find("validation data row 0 has inf"),
            std::string::npos)
      << s;
  // A context for one split only: a conditional flow needs both.
  data.val = Tensor::Zeros(Shape{3, 2});
  data.train_context = Tensor::Zeros(Shape{4, 1});
  s = TrainNll(*model, *adam, data, o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("train data has a context but validation"),
            std::string::npos)
      << s;
  data.train_context = Tensor();
  data.val_context = Tensor::Zeros(Shape{3, 1});
  EXPECT_FALSE(TrainNll(*model, *adam, data, o).ok());
  data.train_context = Tensor::Full(Shape{4, 1}, -INFINITY);
  s = TrainNll(*model, *adam, data, o).status();
  EXPECT_NE(s.message().find("training context row 0 has -inf"),
            std::string::npos)
      << s;
}

TEST(TrainNll, BadOptionsAreErrors) {
  auto model = AffineModel(2);
  auto adam = nn::Adam::Create(*model, {}).value();
  TrainOptions o;
  EXPECT_FALSE(TrainNll(*model, *adam, TrainData{}, o).ok());
  TrainData data = D(Tensor::Zeros(Shape{4, 2}), Tensor());
  data.train_context = Tensor::Zeros(Shape{3, 1});
  EXPECT_FALSE(TrainNll(*model, *adam, data, o).ok());
  data.train_context = Tensor();
  o.checkpoint_every = 10;
  EXPECT_FALSE(TrainNll(*model, *adam, data, o).ok());
}

TEST(Energies, MatchHandComputedValuesAndFiniteDifferences) {
  // U1 at (0, 1): ((1 - 2)/0.4)^2/2 - log(2 exp(-(2/0.6)^2/2)).
  const double u1 = 0.5 * 6.25 - std::log(2.0) + 0.5 * (2 / 0.6) * (2 / 0.6);
  Tensor z = Tensor::FromVector(Shape{2, 2}, {0.0, 1.0, 0.5, -0.3});
  EXPECT_NEAR(PotentialEnergy(Energy::kU1, z)[0], u1, 1e-12);
  // U2 at (0.5, -0.3): w1 = sin(pi / 4).
  const double w1 = std::sin(kPi / 4);
  EXPECT_NEAR(PotentialEnergy(Energy::kU2, z)[1],
              0.5 * std::pow((-0.3 - w1) / 0.4, 2), 1e-12);
  const double w2 = 3 * std::exp(-0.5 * std::pow(-0.5 / 0.6, 2));
  EXPECT_NEAR(PotentialEnergy(Energy::kU3, z)[1],
              -std::log(std::exp(-0.5 * std::pow((-0.3 - w1) / 0.35, 2)) +
                        std::exp(-0.5 * std::pow((-0.3 - w1 + w2) / 0.35, 2))),
              1e-12);
  const double w3 = 3 / (1 + std::exp(0.5 / 0.3));
  EXPECT_NEAR(PotentialEnergy(Energy::kU4, z)[1],
              -std::log(std::exp(-0.5 * std::pow((-0.3 - w1) / 0.4, 2)) +
                        std::exp(-0.5 * std::pow((-0.3 - w1 + w3) / 0.35, 2))),
              1e-12);
  for (Energy e : {Energy::kU1, Energy::kU2, Energy::kU3, Energy::kU4}) {
    Tensor p = Tensor::FromVector(Shape{3, 2}, {0.3, 0.7, -1.2, 0.4, 2.1, -1});
    double err = testing::GradientError(
        [e](const std::vector<Tensor>& in) {
          return Sum(PotentialEnergy(e, in[0]));
        },
        {p});
    EXPECT_LT(err, 1e-6) << EnergyName(e);
  }
  EXPECT_EQ(*ParseEnergy("U3"), Energy::kU3);
  EXPECT_FALSE(ParseEnergy("u5").ok());
}

TEST(Energies, QuadratureNormalizerConverges) {
  // Refining the grid and widening the box leaves log Z of U1 unchanged.
  double coarse = LogNormalizer(Energy::kU1, 4.0, 200);
  double fine = LogNormalizer(Energy::kU1, 6.0, 600);
  EXPECT_NEAR(coarse, fine, 1e-4);
}

TEST(ReverseKl, LowersTheKlToU1) {
  auto model = AffineModel(2);
  LogDensityFn log_p = EnergyLogDensity(Energy::kU1);
  const double log_z = LogNormalizer(Energy::kU1);
  Rng eval(9);
  const double kl_before = FreeEnergy(*model, log_p, 20000, eval) + log_z;
  auto adam = nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/0.02}).value();
  ReverseKlOptions o;
  o.batch_size = 128;
  o.steps = 300;
  o.log_every = 0;
  ReverseKlResult r = TrainReverseKl(*model, log_p, *adam, o).value();
  EXPECT_EQ(r.steps, 300);
  EXPECT_FALSE(r.diverged);
  const double kl_after = FreeEnergy(*model, log_p, 20000, eval) + log_z;
  // A Gaussian cannot fit the bimodal ring, but it gets much closer.
  EXPECT_GT(kl_before, 1.0);
  EXPECT_LT(kl_after, kl_before - 0.5);
  EXPECT_GT(kl_after, -0.05);  // KL >= 0 up to Monte Carlo error
}

TEST(ReverseKl, NanGuardRestoresTheLastGoodParameters) {
  auto model = AffineModel(2);
  auto adam = nn::Adam::Create(*model, nn::AdamOptions{/*lr=*/0.05}).value();
  int calls = 0;
  std::vector<std::vector<double>> at_step3;
  LogDensityFn log_p = [&](const Tensor& x) {
    if (++calls == 3) at_step3 = SnapshotParameters(*model);
    Tensor u = PotentialEnergy(Energy::kU1, x);
    return calls == 4 ? u * std::nan("") : -u;  // the target breaks
  };
  ReverseKlOptions o;
  o.batch_size = 16;
  o.steps = 50;
  o.log_every = 0;
  ReverseKlResult r = TrainReverseKl(*model, log_p, *adam, o).value();
  EXPECT_TRUE(r.diverged);
  // Step 4's free energy is NaN: the parameters step 3 evaluated (after 2
  // updates), the last with a finite free energy, are restored.
  EXPECT_EQ(r.steps, 2);
  EXPECT_EQ(r.free_energy.size(), 3u);
  EXPECT_EQ(SnapshotParameters(*model), at_step3);
  EXPECT_NE(r.message.find("stopped at step 4: non-finite free energy; "
                           "restored the parameters after 2 updates"),
            std::string::npos)
      << r.message;
}

}  // namespace
}  // namespace flowtape::training

// TrainOptions' invertibility check: a flow with a deliberately
// ill-conditioned affine coupling is warned about (or stopped on), with the
// coupling named; a well-conditioned one trains silently.
#include <memory>
#include <sstream>
#include <string>

#include "autodiff/ops.h"
#include "flows/coupling.h"
#include "flows/distribution.h"
#include "flows/flow_model.h"
#include "flows/sequential.h"
#include "gtest/gtest.h"
#include "nn/optim.h"
#include "training/train.h"

namespace flowtape::training {
namespace {

// Four affine couplings on [4] with random weights; `log_scale_gain`
// multiplies coupling 2's log-scale outputs (odd columns of its last layer).
std::shared_ptr<flows::FlowModel> Model(double log_scale_gain) {
  Rng rng(8);
  flows::CouplingOptions o;
  o.event = Shape{4};
  o.hidden = {16};
  o.activation = nn::Activation::kTanh;
  o.transform.scale_bound = 40;
  auto seq = std::make_shared<flows::Sequential>();
  for (int i = 0; i < 4; ++i) {
    o.flip = i % 2 == 1;
    auto c = flows::Coupling::Create(o, rng).value();
    for (Tensor p : c->Parameters()) {
      double* v = p.mutable_data<double>();
      for (int64_t k = 0; k < p.numel(); ++k) v[k] += 0.4 * rng.Normal();
    }
    if (i == 2) {
      auto params = c->Parameters();
      Tensor w = params[params.size() - 2], b = params.back();
      for (int64_t j = 1; j < w.dim(1); j += 2) {
        b.mutable_data<double>()[j] *= log_scale_gain;
        for (int64_t r = 0; r < w.dim(0); ++r)
          w.mutable_data<double>()[r * w.dim(1) + j] *= log_scale_gain;
      }
    }
    seq->Add(c);
  }
  return std::make_shared<flows::FlowModel>(
      flows::StandardNormal::Create(Shape{4}).value(), seq);
}

struct Outcome {
  TrainResult result;
  std::string log;
};

Outcome Train(double log_scale_gain, bool stop) {
  auto model = Model(log_scale_gain);
  Rng rng(1);
  TrainData data;
  data.train = Tensor::Randn({256, 4}, rng);
  data.val = Tensor::Randn({64, 4}, rng);
  std::ostringstream log;
  TrainOptions o;
  o.batch_size = 64;
  o.max_steps = 6;
  o.log_every = 0;
  o.log = &log;
  o.clip_grad_norm = 1.0;
  o.invertibility_every = 2;
  o.max_inverse_condition = 1e8;
  o.stop_on_bad_inverse = stop;
  auto sgd = nn::Sgd::Create(*model, nn::SgdOptions{/*lr=*/1e-6}).value();
  auto r = TrainNllOutcome(*model, ModelNll(*model), *sgd, data, o);
  EXPECT_TRUE(r.ok()) << r.status();
  return {r.ok() ? *r : TrainResult(), log.str()};
}

int Count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos;
       at = s.find(what, at + 1))
    ++n;
  return n;
}

TEST(InvertibilityCheck, WarnsAndNamesTheIllConditionedLayer) {
  const Outcome run = Train(25.0, /*stop=*/false);
  EXPECT_EQ(run.result.steps, 6);
  EXPECT_FALSE(run.result.bad_inverse);
  ASSERT_EQ(run.result.inverse_condition_history.size(), 3u);
  for (const auto& [step, condition] : run.result.inverse_condition_history)
    EXPECT_GT(condition, 1e8) << step;
  EXPECT_EQ(Count(run.log, "bad inverse"), 3) << run.log;
  EXPECT_NE(run.log.find("worst layer 2 affine_coupling"), std::string::npos)
      << run.log;
}

TEST(InvertibilityCheck, StopsOnABadInverse) {
  const Outcome run = Train(25.0, /*stop=*/true);
  EXPECT_EQ(run.result.steps, 2);
  EXPECT_TRUE(run.result.bad_inverse);
  EXPECT_NE(run.result.message.find("step 2: bad inverse: condition"),
            std::string::npos)
      << run.result.message;
}

TEST(InvertibilityCheck, AWellConditionedFlowTrainsSilently) {
  const Outcome run = Train(1.0, /*stop=*/true);
  EXPECT_EQ(run.result.steps, 6);
  EXPECT_FALSE(run.result.bad_inverse);
  ASSERT_EQ(run.result.inverse_condition_history.size(), 3u);
  for (const auto& [step, condition] : run.result.inverse_condition_history)
    EXPECT_LT(condition, 1e8) << step;
  EXPECT_EQ(run.log.find("bad inverse"), std::string::npos) << run.log;
}

TEST(InvertibilityCheck, NeedsAFlowModelAndValidLimits) {
  auto model = Model(1.0);
  Rng rng(1);
  TrainData data;
  data.train = Tensor::Randn({32, 4}, rng);
  auto sgd = nn::Sgd::Create(*model, nn::SgdOptions{/*lr=*/1e-6}).value();
  TrainOptions o;
  o.log_every = 0;
  o.max_steps = 1;
  o.invertibility_every = 1;
  const flows::Flow& flow = *model->flow();
  NllFn nll = [&](const Tensor& x, const Tensor&, Rng&) {
    const Tensor z = flow.Forward(x).value;
    return Mean(Sum(z * z, 1));
  };
  EXPECT_EQ(TrainNll(flow, nll, *sgd, data, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.max_inverse_condition = -1;
  EXPECT_EQ(TrainNll(*model, *sgd, data, o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flowtape::training

// The training loops' options validate themselves: a default is valid, and
// each bad option is InvalidArgument naming it.
#include <cmath>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "training/reverse_kl.h"
#include "training/train.h"
#include "training/train_flow_matching.h"

namespace flowtape::training {
namespace {

void ExpectBad(const absl::Status& s, const std::string& what) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(what), std::string::npos) << s;
}

TEST(TrainOptions, ValidateNamesTheBadOption) {
  EXPECT_TRUE(TrainOptions{}.Validate().ok());
  TrainOptions o;
  o.guard_every = 0;
  ExpectBad(o.Validate(), "guard_every must be >= 1, got 0");
  o = TrainOptions{};
  o.eval_batch_size = 0;
  ExpectBad(o.Validate(), "batch sizes must be positive");
  o = TrainOptions{};
  o.max_inverse_condition = NAN;
  ExpectBad(o.Validate(), "inverse limits >= 0");
  o = TrainOptions{};
  o.checkpoint_every = 5;
  ExpectBad(o.Validate(), "checkpoint_path is empty");
}

TEST(FlowMatchingTrainOptions, ValidateNamesTheBadOption) {
  EXPECT_TRUE(FlowMatchingTrainOptions{}.Validate().ok());
  FlowMatchingTrainOptions o;
  o.ema_decay = 1.0;
  ExpectBad(o.Validate(), "ema_decay must be in [0, 1), got 1");
  o = FlowMatchingTrainOptions{};
  o.eval_every = 0;
  ExpectBad(o.Validate(), "eval_every and guard_every must be >= 1");
}

TEST(ReverseKlOptions, ValidateNamesTheBadOption) {
  EXPECT_TRUE(ReverseKlOptions{}.Validate().ok());
  ReverseKlOptions o;
  o.steps = 0;
  ExpectBad(o.Validate(), "batch_size and steps must be positive");
  o = ReverseKlOptions{};
  o.beta0 = 2.0;
  ExpectBad(o.Validate(), "beta0 in [0, 1], got 0 and 2");
  o = ReverseKlOptions{};
  o.clip_grad_norm = NAN;
  ExpectBad(o.Validate(), "clip_grad_norm must be >= 0, got nan");
}

}  // namespace
}  // namespace flowtape::training

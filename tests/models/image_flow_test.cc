// TrainImageFlow's final model check goes through the image pipeline: a
// vector flow on flattened images (MAF) and an image flow (RealNVP) both
// train and pass it (the flow never sees raw pixel rows); a stochastic flow
// (residual flow, Russian-roulette log-det) gets an rng in its
// initialisation pass.
#include "models/image_flow.h"

#include <cmath>
#include <string>

#include "gtest/gtest.h"

namespace flowtape::models {
namespace {

void TrainBriefly(const std::string& flow) {
  ModelConfig z;
  z.hidden = {16};
  z.channels = 4;
  z.layers = flow == "resflow" ? 1 : 2;
  Rng rng(0);
  auto f = MakeImageFlow(flow, z, Shape{1, 4, 4}, 16, rng);
  ASSERT_TRUE(f.ok()) << f.status();
  Tensor pixels = Tensor::Zeros({40, 1, 4, 4});
  for (int64_t i = 0; i < pixels.numel(); ++i)
    pixels.mutable_data<double>()[i] = rng.UniformInt(16);
  ImageRunConfig c;
  c.zoo = z;
  c.steps = 3;
  c.batch = 8;
  auto r = TrainImageFlow(*f, pixels, c, rng);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->model_status.ok()) << r->model_status;
  EXPECT_EQ(r->steps, 3);
}

TEST(TrainImageFlow, VectorFlowOnFlattenedImages) { TrainBriefly("maf"); }

TEST(TrainImageFlow, ImageFlow) { TrainBriefly("realnvp"); }

TEST(TrainImageFlow, StochasticFlow) { TrainBriefly("resflow"); }

// steps = 0 would reach the cosine schedule (t_max = 0) and NaN lr the
// optimizer: both are a Status naming the field before any training.
TEST(TrainImageFlow, BadRunConfigIsAStatus) {
  ModelConfig z;
  z.hidden = {16};
  z.layers = 2;
  Rng rng(0);
  auto f = MakeImageFlow("maf", z, Shape{1, 4, 4}, 16, rng);
  ASSERT_TRUE(f.ok()) << f.status();
  const Tensor pixels = Tensor::Zeros({40, 1, 4, 4});
  ImageRunConfig c;
  c.zoo = z;
  c.steps = 0;
  auto r = TrainImageFlow(*f, pixels, c, rng);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("steps = 0"), std::string::npos)
      << r.status();
  EXPECT_FALSE(ImageAdam(*f, c).ok());
  c.steps = 10;
  c.lr = std::nan("");
  auto adam = ImageAdam(*f, c);
  EXPECT_NE(adam.status().message().find("lr = nan"), std::string::npos)
      << adam.status();
  c.lr = 1e-3;
  c.batch = 0;
  EXPECT_NE(c.Validate().message().find("batch = 0"), std::string::npos);
  c.batch = 8;
  EXPECT_TRUE(c.Validate().ok());
  EXPECT_TRUE(ImageAdam(*f, c).ok());
}

}  // namespace
}  // namespace flowtape::models

// TrainImageFlow's final model check goes through the image pipeline: a
// vector flow on flattened images (MAF) and an image flow (RealNVP) both
// train and pass it (the flow never sees raw pixel rows); a stochastic flow
// (residual flow, Russian-roulette log-det) gets an rng in its
// initialisation pass.
#include "models/image_flow.h"

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

}  // namespace
}  // namespace flowtape::models

// NanGuard restores the model, its buffers, the optimizer's state and the
// second module together, to the last snapshot whose step had a finite loss.
#include "training/nan_guard.h"

#include <cmath>
#include <limits>

#include "autodiff/tensor.h"
#include "gtest/gtest.h"
#include "nn/module.h"
#include "nn/optim.h"

namespace flowtape::training {
namespace {

struct Toy : nn::Module {
  Toy() {
    w = RegisterParameter("w", Tensor::Zeros(Shape{2}));
    b = RegisterBuffer("b", Tensor::Zeros(Shape{1}));
  }
  // One "update": every value becomes `v`.
  void Set(double v) {
    w.mutable_data<double>()[0] = w.mutable_data<double>()[1] = v;
    b.mutable_data<double>()[0] = -v;
  }
  Tensor w, b;
};

// Runs steps 1..n (the loss of step `bad` is not finite) with the guard's
// protocol; the state after k updates holds k everywhere. Returns the
// number of updates the guard restored.
int64_t RunSteps(int64_t every, int64_t bad, Toy& model, Toy& also,
                 nn::Sgd& sgd) {
  NanGuard guard(model, sgd, &also, every);
  for (int64_t step = 1;; ++step) {
    guard.BeforeStep(step);
    if (step == bad) return guard.Restore();
    guard.Finite(step);
    model.Set(step);
    also.Set(10.0 * step);
  }
}

TEST(NanGuard, RestoresTheLastSnapshotWithAFiniteLoss) {
  for (int64_t every : {1, 3}) {
    for (int64_t bad : {2, 7, 8, 10}) {
      Toy model, also;
      auto sgd =
          nn::Sgd::Create(model, nn::SgdOptions{/*lr=*/0.1, /*momentum=*/0.9})
              .value();
      const int64_t updates = RunSteps(every, bad, model, also, *sgd);
      // The snapshot of the bad step itself was never promoted.
      const int64_t want = every * ((bad - 2) / every);
      EXPECT_EQ(updates, want) << "every " << every << " bad " << bad;
      EXPECT_EQ(model.w[0], want);
      EXPECT_EQ(model.w[1], want);
      EXPECT_EQ(model.b[0], -want);
      EXPECT_EQ(also.w[0], 10.0 * want);
      EXPECT_EQ(also.b[0], -10.0 * want);
    }
  }
}

TEST(NanGuard, MessageNamesTheStepTheCauseAndTheSnapshot) {
  Toy model;
  auto sgd = nn::Sgd::Create(model, nn::SgdOptions{/*lr=*/0.1}).value();
  NanGuard guard(model, *sgd, nullptr, 3);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(guard.Message(5, 1.5, nan),
            "stopped at step 5: non-finite gradient (loss 1.5, grad norm "
            "nan); restored the state after 0 updates, the last snapshot "
            "(every 3 steps) with a finite loss");
}

}  // namespace
}  // namespace flowtape::training

// The harness must fail on broken flows: each defect below is planted in an
// otherwise correct toy flow (z = x e^s + context . c) and the check that
// should see it must report a failure, while the intact flow passes all.
#include <memory>

#include "autodiff/ops.h"
#include "flows/flow.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "tests/flows/harness.h"

namespace flowtape::testing {
namespace {

using flows::Flow;
using flows::FlowResult;

enum class Defect {
  kNone,
  kWrongLogdet,         // logdet off by 0.1
  kBadInverse,          // inverse scaled by 1.001
  kMixesSamples,        // z depends on the batch mean
  kUnusedParameter,     // a parameter that does nothing
  kDetachedGradient,    // forward logdet cut from the tape
  kBadInverseGradient,  // inverse logdet cut from the tape
  kIgnoresContext,
};

class Toy : public Flow {
 public:
  Toy(int64_t d, int64_t k, Defect defect) : defect_(defect) {
    s_ = RegisterParameter("s", Tensor::Zeros({d}));
    if (k > 0) c_ = RegisterParameter("c", Tensor::Ones({k, 1}));
    if (defect == Defect::kUnusedParameter)
      RegisterParameter("unused", Tensor::Zeros({1}));
  }
  FlowResult Forward(const Tensor& x, const Tensor& ctx) const override {
    Tensor z = x * Exp(s_) + Shift(ctx);
    if (defect_ == Defect::kMixesSamples) z = z + 0.1 * Mean(x, 0, true);
    Tensor ld =
        defect_ == Defect::kDetachedGradient ? Sum(s_.Detach()) : Sum(s_);
    if (defect_ == Defect::kWrongLogdet) ld = ld + 0.1;
    return {z, Tensor::Zeros({x.dim(0)}) + ld};
  }
  FlowResult Inverse(const Tensor& z, const Tensor& ctx) const override {
    Tensor x = (z - Shift(ctx)) * Exp(-s_);
    if (defect_ == Defect::kBadInverse) x = x * 1.001;
    Tensor ld =
        defect_ == Defect::kBadInverseGradient ? Sum(s_.Detach()) : Sum(s_);
    return {x, Tensor::Zeros({z.dim(0)}) - ld};
  }
  std::string name() const override { return "toy"; }

 private:
  Tensor Shift(const Tensor& ctx) const {
    if (!ctx.defined() || defect_ == Defect::kIgnoresContext)
      return Tensor::Scalar(0.0);
    return MatMul(ctx, c_);  // [N, 1]
  }
  Defect defect_;
  Tensor s_, c_;
};

FlowCase ToyCase(Defect defect, int64_t d = 2, int64_t k = 0) {
  return FlowCase(
             "toy",
             [=](Rng&) -> std::shared_ptr<Flow> {
               return std::make_shared<Toy>(d, k, defect);
             },
             {d}, k)
      .Perturb(0.3);
}

int Failures(void (*check)(const FlowCase&), const FlowCase& c) {
  ::testing::TestPartResultArray results;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::
            INTERCEPT_ONLY_CURRENT_THREAD,
        &results);
    check(c);
  }
  return results.size();
}

TEST(HarnessSelfTest, IntactFlowPassesEverything) {
  for (const FlowCase& c :
       {ToyCase(Defect::kNone), ToyCase(Defect::kNone, 2, 3),
        ToyCase(Defect::kNone, 600)}) {
    EXPECT_EQ(Failures(CheckRoundTrip, c), 0);
    EXPECT_EQ(Failures(CheckLogdetIsJacobian, c), 0);
    EXPECT_EQ(Failures(CheckLogdetsCancel, c), 0);
    if (c.event_shape.numel() <= 2) {
      EXPECT_EQ(Failures(CheckDensityIntegratesToOne, c), 0);
    }
    EXPECT_EQ(Failures(CheckGradients, c), 0);
    EXPECT_EQ(Failures(CheckInverseGradients, c), 0);
    EXPECT_EQ(Failures(CheckContextMatters, c), 0);
  }
}

TEST(HarnessSelfTest, CatchesWrongLogdet) {
  FlowCase c = ToyCase(Defect::kWrongLogdet);
  EXPECT_GT(Failures(CheckLogdetIsJacobian, c), 0);
  EXPECT_GT(Failures(CheckLogdetsCancel, c), 0);
  EXPECT_GT(Failures(CheckDensityIntegratesToOne, c), 0);
}

TEST(HarnessSelfTest, CatchesBadInverse) {
  EXPECT_GT(Failures(CheckRoundTrip, ToyCase(Defect::kBadInverse)), 0);
}

TEST(HarnessSelfTest, CatchesSampleMixing) {
  // Both ways of checking independence: full Jacobian and per-sample.
  EXPECT_GT(Failures(CheckLogdetIsJacobian, ToyCase(Defect::kMixesSamples)), 0);
  EXPECT_GT(
      Failures(CheckLogdetIsJacobian, ToyCase(Defect::kMixesSamples, 600)), 0);
}

TEST(HarnessSelfTest, CatchesGradientDefects) {
  EXPECT_GT(Failures(CheckGradients, ToyCase(Defect::kUnusedParameter)), 0);
  EXPECT_GT(Failures(CheckGradients, ToyCase(Defect::kDetachedGradient)), 0);
  EXPECT_EQ(Failures(CheckGradients, ToyCase(Defect::kBadInverseGradient)), 0);
  EXPECT_GT(
      Failures(CheckInverseGradients, ToyCase(Defect::kBadInverseGradient)), 0);
}

TEST(HarnessSelfTest, CatchesIgnoredContext) {
  EXPECT_GT(
      Failures(CheckContextMatters, ToyCase(Defect::kIgnoresContext, 2, 3)), 0);
}

}  // namespace
}  // namespace flowtape::testing

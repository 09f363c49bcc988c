// The harness must fail on broken flows: each defect below is planted in an
// otherwise correct toy flow (z = x e^s + context . c) and the check that
// should see it must report a failure, while the intact flow passes all.
// Float32Factory builds the float32 checks' flows (and only theirs).
#include <cmath>
#include <functional>
#include <memory>

#include "autodiff/dtype.h"
#include "autodiff/ops.h"
#include "flows/flow.h"
#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"
#include "tests/flows/bijection_checks.h"
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
  kNanInverse,  // inverse NaN outside [-2.5, 2.5] (a missing tail)
  kNanLogdet,   // forward logdet NaN
  kInverseIgnoresContext,
  kInverseCutFromZ,  // inverse value detached from z (no gradient w.r.t. z)
  kFirstOrderOnly,   // logdet term x^2 whose gradient 2x is a constant
  // Defects of the float32 path only (the float64 flow is intact):
  kFloat32WrongLogdet,  // forward logdet off by 0.01
  kFloat32BadInverse,   // inverse scaled by 1.001
  kFloat32Shifted,      // z shifted by 0.001, consistently in both directions
  // Sampling breaks once training has moved every s_i below -0.4 (data of
  // scale 2 pull s to -log 2): the inverse is NaN there.
  kNanSamplesAfterTraining,
  // The log-det is NaN where some |s_i| > 1: an aggressive step there is
  // undone, and the samples of the last good parameters are fine.
  kNanLossBeyondOne,
  // A buffer the forward pass writes, NaN once some |s_i| > 1 (the log-det
  // NaN there too), which the inverse adds: undoing such a step must
  // restore the buffer with the parameters, or the samples stay NaN.
  kNanBufferBeyondOne,
};

class Toy : public Flow {
 public:
  Toy(int64_t d, int64_t k, Defect defect) : defect_(defect) {
    s_ = RegisterParameter("s", Tensor::Zeros({d}));
    if (k > 0) c_ = RegisterParameter("c", Tensor::Ones({k, 1}));
    if (defect == Defect::kUnusedParameter)
      RegisterParameter("unused", Tensor::Zeros({1}));
    if (defect == Defect::kNanBufferBeyondOne)
      b_ = RegisterBuffer("b", Tensor::Zeros({1}));
  }
  FlowResult Forward(const Tensor& x, const Tensor& ctx,
                     Rng* /*rng*/) const override {
    const bool f32 = x.dtype() == kFloat32;
    Tensor z = x * Exp(s_) + Shift(ctx, x.dtype());
    if (f32 && defect_ == Defect::kFloat32Shifted) z = z + 1e-3;
    if (defect_ == Defect::kMixesSamples) z = z + 0.1 * Mean(x, 0, true);
    Tensor ld =
        defect_ == Defect::kDetachedGradient ? Sum(s_.Detach()) : Sum(s_);
    if (defect_ == Defect::kWrongLogdet) ld = ld + 0.1;
    if (defect_ == Defect::kNanLogdet) ld = ld + std::nan("");
    if (f32 && defect_ == Defect::kFloat32WrongLogdet) ld = ld + 0.01;
    if (defect_ == Defect::kNanLossBeyondOne && Max(Abs(s_)).item() > 1)
      ld = ld + std::nan("");
    if (defect_ == Defect::kNanBufferBeyondOne) {
      const double v = Max(Abs(s_)).item() > 1 ? std::nan("") : 0.0;
      Tensor b = b_;  // a handle on the buffer's storage
      VisitDType(b.dtype(), [&](auto zero) {
        b.mutable_data<decltype(zero)>()[0] = static_cast<decltype(zero)>(v);
      });
      ld = ld + Sum(b_);
    }
    if (defect_ == Defect::kFirstOrderOnly) {
      Tensor xd = x.Detach();  // value x^2, gradient 2x, Hessian 0
      ld = ld + 0.1 * Sum(2.0 * x * xd - xd * xd, 1);
    }
    return {z, Tensor::Zeros({x.dim(0)}, x.dtype()) + ld};
  }
  FlowResult Inverse(const Tensor& z, const Tensor& ctx,
                     Rng* /*rng*/) const override {
    const bool f32 = z.dtype() == kFloat32;
    Tensor zz = defect_ == Defect::kInverseCutFromZ ? z.Detach() : z;
    if (f32 && defect_ == Defect::kFloat32Shifted) zz = zz - 1e-3;
    Tensor shift = defect_ == Defect::kInverseIgnoresContext
                       ? Tensor::Scalar(0.0, z.dtype())
                       : Shift(ctx, z.dtype());
    Tensor x = (zz - shift) * Exp(-s_);
    if (defect_ == Defect::kBadInverse) x = x * 1.001;
    if (f32 && defect_ == Defect::kFloat32BadInverse) x = x * 1.001;
    if (defect_ == Defect::kNanSamplesAfterTraining && Max(s_).item() < -0.4)
      x = x + std::nan("");
    if (defect_ == Defect::kNanInverse) x = x + 0.0 * Sqrt(2.5 - Abs(z));
    if (defect_ == Defect::kNanBufferBeyondOne) x = x + Sum(b_);
    Tensor ld =
        defect_ == Defect::kBadInverseGradient ? Sum(s_.Detach()) : Sum(s_);
    return {x, Tensor::Zeros({z.dim(0)}, z.dtype()) - ld};
  }
  std::string name() const override { return "toy"; }

 private:
  Tensor Shift(const Tensor& ctx, DType dtype) const {
    if (!ctx.defined() || defect_ == Defect::kIgnoresContext)
      return Tensor::Scalar(0.0, dtype);
    return MatMul(ctx, c_);  // [N, 1]
  }
  Defect defect_;
  Tensor s_, c_, b_;
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

int Failures(const std::function<void()>& check) {
  ::testing::TestPartResultArray results;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::
            INTERCEPT_ONLY_CURRENT_THREAD,
        &results);
    check();
  }
  return results.size();
}
int Failures(void (*check)(const FlowCase&), const FlowCase& c) {
  return Failures([&] { check(c); });
}
int Failures(void (*check)(const FlowCase&, DType), const FlowCase& c,
             DType dtype = kFloat64) {
  return Failures([&] { check(c, dtype); });
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
    EXPECT_EQ(Failures(CheckHessianVectorProducts, c), 0);
    EXPECT_EQ(Failures(CheckContextMatters, c), 0);
    for (DType dtype : {kFloat64, kFloat32}) {
      EXPECT_EQ(Failures(CheckSamplesFiniteAfterTraining, c, dtype), 0);
    }
    EXPECT_EQ(Failures(CheckRoundTrip, c, kFloat32), 0);
    EXPECT_EQ(Failures(CheckLogdetIsJacobian, c, kFloat32), 0);
    EXPECT_EQ(Failures(CheckLogdetsCancel, c, kFloat32), 0);
    if (c.event_shape.numel() <= 2) {
      EXPECT_EQ(Failures(CheckDensityIntegratesToOne, c, kFloat32), 0);
    }
    EXPECT_EQ(Failures(CheckFloat32AgreesWithFloat64, c), 0);
  }
}

// Each float32 check fails on a defect of the float32 path that every
// float64 check misses.
TEST(HarnessSelfTest, CatchesFloat32WrongLogdet) {
  FlowCase c = ToyCase(Defect::kFloat32WrongLogdet);
  EXPECT_EQ(Failures(CheckLogdetIsJacobian, c), 0);
  EXPECT_EQ(Failures(CheckLogdetsCancel, c), 0);
  EXPECT_EQ(Failures(CheckDensityIntegratesToOne, c), 0);
  EXPECT_GT(Failures(CheckLogdetIsJacobian, c, kFloat32), 0);
  EXPECT_GT(Failures(CheckLogdetsCancel, c, kFloat32), 0);
  EXPECT_GT(Failures(CheckDensityIntegratesToOne, c, kFloat32), 0);
  EXPECT_GT(Failures(CheckFloat32AgreesWithFloat64, c), 0);
}

TEST(HarnessSelfTest, CatchesFloat32BadInverse) {
  FlowCase c = ToyCase(Defect::kFloat32BadInverse);
  EXPECT_EQ(Failures(CheckRoundTrip, c), 0);
  EXPECT_GT(Failures(CheckRoundTrip, c, kFloat32), 0);
  EXPECT_GT(Failures(CheckFloat32AgreesWithFloat64, c), 0);
}

TEST(HarnessSelfTest, CatchesFloat32ComputingAnotherFunction) {
  // A consistent bijection in float32, only not the float64 one.
  FlowCase c = ToyCase(Defect::kFloat32Shifted);
  EXPECT_EQ(Failures(CheckRoundTrip, c, kFloat32), 0);
  EXPECT_EQ(Failures(CheckLogdetIsJacobian, c, kFloat32), 0);
  EXPECT_EQ(Failures(CheckLogdetsCancel, c, kFloat32), 0);
  EXPECT_GT(Failures(CheckFloat32AgreesWithFloat64, c), 0);
}

// Float32Factory: the float32 checks build the case with it, the float64
// checks with the case's own factory, and Float32AgreesWithFloat64 runs it
// in both dtypes (here it builds a flow that mixes samples: another function
// than the case's own, in both dtypes).
TEST(HarnessSelfTest, Float32FactoryBuildsTheFloat32Checks) {
  const FlowFactory intact = ToyCase(Defect::kNone).make;
  FlowCase broken64 = ToyCase(Defect::kBadInverse).Float32Factory(intact, "");
  EXPECT_GT(Failures(CheckRoundTrip, broken64), 0);
  EXPECT_EQ(Failures(CheckRoundTrip, broken64, kFloat32), 0);
  FlowCase broken32 =
      ToyCase(Defect::kNone)
          .Float32Factory(ToyCase(Defect::kFloat32BadInverse).make, "");
  EXPECT_EQ(Failures(CheckRoundTrip, broken32), 0);
  EXPECT_GT(Failures(CheckRoundTrip, broken32, kFloat32), 0);
  EXPECT_GT(Failures(CheckFloat32AgreesWithFloat64, broken32), 0);
  FlowCase other = ToyCase(Defect::kNone)
                       .Float32Factory(ToyCase(Defect::kMixesSamples).make, "");
  EXPECT_EQ(Failures(CheckFloat32AgreesWithFloat64, other), 0);
  EXPECT_EQ(Failures(CheckFloat32AgreesWithFloat64, ToyCase(Defect::kNone)), 0);
}

TEST(HarnessSelfTest, CatchesNonFiniteSamplesAfterTraining) {
  FlowCase c = ToyCase(Defect::kNanSamplesAfterTraining, 1).InputScale(2);
  for (DType dtype : {kFloat64, kFloat32}) {
    EXPECT_GT(Failures(CheckSamplesFiniteAfterTraining, c, dtype), 0);
    // Without the training steps the samples are finite: the steps matter.
    EXPECT_EQ(Failures(CheckSamplesFiniteAfterTraining, FlowCase(c).TrainLr(0),
                       dtype),
              0);
  }
  EXPECT_EQ(Failures(CheckRoundTrip, c), 0);
}

TEST(HarnessSelfTest, AStepThatBreaksTheLossIsUndone) {
  // lr 50 throws s beyond 1 (a NaN loss) on the first step; the check undoes
  // it like a NaN guard, and the samples of the parameters before are fine.
  FlowCase c = ToyCase(Defect::kNanLossBeyondOne).TrainLr(50);
  for (DType dtype : {kFloat64, kFloat32}) {
    EXPECT_EQ(Failures(CheckSamplesFiniteAfterTraining, c, dtype), 0);
  }
}

TEST(HarnessSelfTest, AStepThatBreaksABufferIsUndoneWithIt) {
  // lr 50: the second forward pass writes NaN into the buffer (and the
  // loss); the training loop's guard restores parameters and buffers, so
  // the samples are finite. Restoring the parameters alone would leave
  // them NaN.
  FlowCase c = ToyCase(Defect::kNanBufferBeyondOne).TrainLr(50);
  for (DType dtype : {kFloat64, kFloat32}) {
    EXPECT_EQ(Failures(CheckSamplesFiniteAfterTraining, c, dtype), 0);
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

TEST(HarnessSelfTest, CatchesNanInverse) {
  // z = Forward(x) reaches beyond 2.5 but the base samples do not: only
  // Inverse(Forward(x)) is NaN.
  FlowCase c = ToyCase(Defect::kNanInverse).InputScale(4.0);
  EXPECT_GT(Failures(CheckRoundTrip, c), 0);
}

TEST(HarnessSelfTest, CatchesNanLogdet) {
  FlowCase c = ToyCase(Defect::kNanLogdet);
  EXPECT_GT(Failures(CheckLogdetIsJacobian, c), 0);
  EXPECT_GT(Failures(CheckLogdetsCancel, c), 0);
  EXPECT_GT(Failures(CheckGradients, c), 0);  // the NLL is NaN
  EXPECT_GT(Failures(CheckHessianVectorProducts, c), 0);
  // The direct checks of bijection_checks.h report +inf, never 0.
  Toy flow(2, 0, Defect::kNanLogdet);
  Tensor x = Tensor::FromVector({2, 2}, {0.3, -1.0, 2.0, 0.5});
  EXPECT_EQ(LogdetError(flow, x), INFINITY);
  EXPECT_EQ(AntisymmetryError(flow, x), INFINITY);
  EXPECT_EQ(ParamGradError(flow, x), INFINITY);
  Toy inverse_nan(2, 0, Defect::kNanInverse);
  EXPECT_EQ(RoundTripError(inverse_nan, x * 4.0), INFINITY);
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
  EXPECT_GT(Failures(CheckContextMatters,
                     ToyCase(Defect::kInverseIgnoresContext, 2, 3)),
            0);
}

TEST(HarnessSelfTest, CatchesInverseInputGradientDefect) {
  FlowCase c = ToyCase(Defect::kInverseCutFromZ);
  EXPECT_EQ(Failures(CheckGradients, c), 0);
  EXPECT_GT(Failures(CheckInverseGradients, c), 0);
}

TEST(HarnessSelfTest, CatchesWrongSecondDerivative) {
  FlowCase c = ToyCase(Defect::kFirstOrderOnly);
  EXPECT_EQ(Failures(CheckGradients, c), 0);  // first order is right
  EXPECT_GT(Failures(CheckHessianVectorProducts, c), 0);
}

}  // namespace
}  // namespace flowtape::testing

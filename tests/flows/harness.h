// The flow harness: one parameterised GoogleTest suite that every Flow in
// flowtape runs through. Given a factory, the event shape and an optional
// context dimension it checks, on random parameters and inputs:
//   RoundTrip:        Inverse(Forward(x)) == x and Forward(Inverse(z)) == z,
//                     every value finite
//   LogdetIsJacobian: Forward and Inverse logdets equal log|det J| of the
//                     brute-force autodiff Jacobian (Eigen LU), which must
//                     be block diagonal: samples are treated independently
//                     (full Jacobian up to N*D = 512, else per sample)
//   LogdetsCancel:    Forward(x).logdet == -Inverse(Forward(x).value).logdet
//   DensityIntegratesToOne (events of 1 or 2 numbers): with a standard
//                     normal base, sum of p(x) over a grid on [-L, L]^d times
//                     the cell volume is 1
//   GradientsMatchFiniteDifferences: the NLL gradient w.r.t. every flow
//                     parameter (central differences, in place) and w.r.t.
//                     x and the context (tests/gradcheck.h); every parameter
//                     tensor influences the NLL
//   InverseGradientsMatchFiniteDifferences: the same (parameters, z and the
//                     context) for a loss of the generative direction,
//                     mean(sum(Inverse(z) * r) + Inverse logdet) (sampling /
//                     reverse-KL training)
//   NllHessianVectorProductsMatchFiniteDifferences: the double-backward H v
//                     of the NLL w.r.t. x and the context equals central
//                     differences of its gradient along v (random v);
//                     skipped for FirstOrderOnly() cases (ODE adjoint)
//   ContextMatters (context_dim > 0): changing the context changes z
//                     (Forward) and x (Inverse).
// Float32: the case is also converted to float32 after construction and
// perturbation (Module::To; inputs rounded), and
//   RoundTripFloat32, LogdetIsJacobianFloat32, LogdetsCancelFloat32,
//   DensityIntegratesToOneFloat32: the checks above in float32, with the
//                     tolerances of Float32Tolerances (derivative checks
//                     stay float64: finite differences need its precision)
//   Float32AgreesWithFloat64: the float32 flow and the float64 flow at the
//                     same (float32-rounded) parameters and inputs give the
//                     same z, x and log-dets in both directions
//   SamplesFiniteAfterTraining (float64 and float32): 20 aggressive Adam
//                     steps (train_lr = 1: every parameter may move by ~20)
//                     on 64 rows of N(0, s^2) data, batch 32, through the
//                     library's guarded loop (training::TrainNllOutcome,
//                     guard_every = 1: a non-finite loss or gradient stops
//                     it and restores the whole state of the last finite
//                     step); the run must end with a model that passes its
//                     usability check, Sample() and the samples' log-dets
//                     must be finite and the generative pass report no
//                     error.
// A family that computes in float64 only says why with Float64Only(reason):
// its float32 tests are skipped with that reason. A case whose float64
// settings float32 cannot meet (an ODE rtol below float32's floor,
// ode/solver.h) gives its float32 tests another factory with
// Float32Factory(make, reason): the same architecture and parameter draws
// with settings float32 can reach (Float32AgreesWithFloat64 then runs that
// factory in both dtypes).
// NaN is a failure everywhere: a NaN value, log-det, loss, gradient or H v
// never passes a tolerance.
//
// Adding a flow is one line in a test file of its family:
//   FLOWTAPE_FLOW_CASES(Coupling,
//       FlowCase("realnvp_2d", MakeRealNvp2d, {2}),
//       FlowCase("realnvp_cond", MakeCond, {3}, /*context_dim=*/2),
//       FlowCase("planar", MakePlanar, {2}).InverseTol(1e-10));
// A factory is `std::shared_ptr<flows::Flow>(Rng&)` (building in float64).
// Unless Perturb(0) is set, the harness adds N(0, 0.1^2) noise to every
// parameter after construction, so flows that start at the identity are
// tested away from it.
// The test target must depend on //tests/flows:harness (alwayslink).
#ifndef FLOWTAPE_TESTS_FLOWS_HARNESS_H_
#define FLOWTAPE_TESTS_FLOWS_HARNESS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>

#include "autodiff/dtype.h"
#include "autodiff/tensor.h"
#include "flows/flow.h"
#include "gtest/gtest.h"
#include "nn/module.h"
#include "tests/float32_tolerance.h"

namespace flowtape::testing {

using FlowFactory = std::function<std::shared_ptr<flows::Flow>(Rng&)>;

struct FlowCase {
  FlowCase(std::string name, FlowFactory make, Shape event_shape,
           int64_t context_dim = 0)
      : name(std::move(name)),
        make(std::move(make)),
        event_shape(event_shape),
        context_dim(context_dim) {}

  std::string name;  // letters, digits and '_' (a test name)
  FlowFactory make;
  Shape event_shape;  // e.g. {2} or {C, H, W}
  int64_t context_dim = 0;

  // Tolerances and sizes (chainable setters below).
  double inverse_tol = 1e-10;   // max |x - x'| of the round trips
  double logdet_tol = 1e-9;     // |logdet - log|det J|| per sample
  double integral_tol = 1e-4;   // |integral - 1|
  double grad_tol = 1e-6;       // relative error, as in tests/gradcheck.h
  double hvp_tol = 1e-5;        // relative error of H v
  double quadrature_bound = 8;  // grid on [-L, L]^d
  int quadrature_points = 0;    // per axis (0: 4000 in 1-D, 400 in 2-D)
  double input_scale = 1.0;     // x ~ N(0, input_scale^2)
  double perturb = 0.1;         // parameter noise after construction
  int64_t batch = 4;
  int max_grad_entries = 300;  // parameter entries checked by differences
  // False for flows whose gradients are not themselves differentiable (the
  // ODE adjoint): the Hessian-vector test is skipped, the rest still runs.
  bool second_order = true;
  // k of Float32Tolerances: > 1 for maps that amplify rounding (steep
  // numeric inverses), stated per case with its reason.
  double float32_condition = 1;
  double train_lr = 1.0;  // SamplesFiniteAfterTraining's Adam step
  // Non-empty: the family computes in float64 only, for this reason; the
  // float32 tests are skipped with it.
  std::string float64_only;
  // Non-null: the float32 tests build the case with this factory (it must
  // draw the same parameters from the Rng), for float32_factory_reason.
  FlowFactory float32_make;
  std::string float32_factory_reason;

  FlowCase& InverseTol(double v) {
    inverse_tol = v;
    return *this;
  }
  FlowCase& LogdetTol(double v) {
    logdet_tol = v;
    return *this;
  }
  FlowCase& IntegralTol(double v) {
    integral_tol = v;
    return *this;
  }
  FlowCase& GradTol(double v) {
    grad_tol = v;
    return *this;
  }
  FlowCase& HvpTol(double v) {
    hvp_tol = v;
    return *this;
  }
  FlowCase& Quadrature(double bound, int points) {
    quadrature_bound = bound;
    quadrature_points = points;
    return *this;
  }
  FlowCase& InputScale(double v) {
    input_scale = v;
    return *this;
  }
  FlowCase& Perturb(double v) {
    perturb = v;
    return *this;
  }
  FlowCase& Batch(int64_t v) {
    batch = v;
    return *this;
  }
  FlowCase& MaxGradEntries(int v) {
    max_grad_entries = v;
    return *this;
  }
  FlowCase& FirstOrderOnly() {
    second_order = false;
    return *this;
  }
  FlowCase& Float32Condition(double k) {
    float32_condition = k;
    return *this;
  }
  FlowCase& TrainLr(double v) {
    train_lr = v;
    return *this;
  }
  FlowCase& Float64Only(std::string reason) {
    float64_only = std::move(reason);
    return *this;
  }
  FlowCase& Float32Factory(FlowFactory make, std::string reason) {
    float32_make = std::move(make);
    float32_factory_reason = std::move(reason);
    return *this;
  }
};

// The float32 tolerances: tests/float32_tolerance.h's rules (errors
// relative to 1 + |b| against the float64 reference b) for a case with event
// size D and condition factor k (FlowCase::float32_condition, 1 unless a map
// amplifies rounding):
//   value  = Float32Tol(D, k)    = k 2^10 eps sqrt(D)   ~ 1.2e-4 k sqrt(D)
//     an entry goes through tens to hundreds of roundings (conditioner
//     layers, the elementwise map, every step of a stack) and a
//     D-dimensional mixing. The worst relative round-trip error measured
//     over the harness's cases is ~100 eps sqrt(D) (glow_2x4x4, spline_2d).
//   logdet = Float32SumTol(D, k) = k 2^10 eps D         ~ 1.2e-4 k D
//     a log-det sums D per-entry log-scales; the brute-force reference (an
//     LU of the float32 autodiff Jacobian) carries errors of the same size.
//     Measured worst: ~40 eps D (spline_2d's Jacobian, image splines'
//     forward vs inverse).
//   integral = max(integral_tol, 4 logdet)
//     the quadrature of exp(log p) inherits log p's error as a relative
//     error of the integral (plus the case's own discretisation error).
struct Float32Tolerances {
  double value, logdet, integral;
  explicit Float32Tolerances(const FlowCase& c);
};

inline void PrintTo(const FlowCase& c, std::ostream* os) { *os << c.name; }

// Adds N(0, scale^2) noise to every parameter of `m`.
void PerturbParameters(const nn::Module& m, Rng& rng, double scale);

// log|det a| of a square row-major n x n matrix (Eigen, full-pivot LU).
double LogAbsDetOf(const double* a, int64_t n);

// The checks behind the suite's tests (each reports gtest failures; the
// harness's own test runs them on deliberately broken flows). `dtype`
// selects the case's precision and tolerances (float64: the case's own).
void CheckRoundTrip(const FlowCase& c, DType dtype = kFloat64);
void CheckLogdetIsJacobian(const FlowCase& c, DType dtype = kFloat64);
void CheckLogdetsCancel(const FlowCase& c, DType dtype = kFloat64);
// Event of 1 or 2 numbers only.
void CheckDensityIntegratesToOne(const FlowCase& c, DType dtype = kFloat64);
void CheckFloat32AgreesWithFloat64(const FlowCase& c);
void CheckSamplesFiniteAfterTraining(const FlowCase& c, DType dtype = kFloat64);
void CheckGradients(const FlowCase& c);
// The generative direction's parameter gradients (sampling, reverse KL):
// loss = mean_i [sum(Inverse(z_i) * r_i) + Inverse(z_i).logdet], r random.
void CheckInverseGradients(const FlowCase& c);
void CheckHessianVectorProducts(const FlowCase& c);
void CheckContextMatters(const FlowCase& c);  // context_dim > 0 only

class FlowHarness : public ::testing::TestWithParam<FlowCase> {};

}  // namespace flowtape::testing

#define FLOWTAPE_FLOW_CASES(prefix, ...)                                \
  using ::flowtape::testing::FlowHarness;                               \
  INSTANTIATE_TEST_SUITE_P(                                             \
      prefix, FlowHarness, ::testing::Values(__VA_ARGS__),              \
      [](const ::testing::TestParamInfo<::flowtape::testing::FlowCase>& \
             info) { return info.param.name; })

#endif  // FLOWTAPE_TESTS_FLOWS_HARNESS_H_

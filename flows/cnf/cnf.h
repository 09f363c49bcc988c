// Continuous normalizing flow (FFJORD, Grathwohl et al. 2019) with the RNODE
// optimal-transport regularisers (Finlay et al. 2020), optionally conditional
// and with a learnable integration time.
//
// The flow is the time-T map of dz/dt = f(t, z, c; theta), integrated
// together with the log-density change and, optionally, two regularisers:
//   dz/dt = f,   dl/dt = tr(df/dz),   dK/dt = |f|^2,   dJ/dt = |df/dz|_F^2
// from l = K = J = 0. Forward(x, c) (data -> base) solves t: 0 -> T from
// z = x and returns logdet = l(T) = int_0^T tr(df/dz) dt = log|det dz(T)/dx|.
// Inverse(z, c) solves t: T -> 0 and returns l(0) = -int tr = log|det dx/dz|.
// The solve runs in x's dtype (float32 or float64, the dtype the dynamics
// were converted to with Module::To); ode/solver.h gives float32's rtol floor.
//
// Context (conditional CNF): c [N, K], K = dynamics().context_dim(), is a
// per-sample input of f, constant in time (dynamics.h: concatenated to the
// hyper-net / MLP input). It is listed as an ODE parameter when it requires
// grad, so both gradient modes give dL/dc (the adjoint also when c is
// computed from listed parameters, ode/solve.h). K = 0: no context.
//
// Integration time: fixed by default (CnfOptions::t_end, integrated over
// [0, T] as above). With train_t (FFJORD's train_T), T = sqrt_end_time^2
// where sqrt_end_time is a parameter of the Cnf (initialised to
// sqrt(t_end)), and the solve runs in rescaled time s = t / T in [0, 1]:
//   d[z, l, K, J]/ds = T [f, tr(df/dz), |f|^2, |df/dz|_F^2] at t = s T,
// the same solution (z(s=1) = z(t=T), same l, K, J) with T an ordinary
// parameter of the field, so both gradient modes give dL/dT (including the
// path through f's time input, which therefore must be differentiable:
// TimeMlp and ConcatSquashNet are). Step sizes and tolerances then apply in
// s, so a train_t solve takes different steps than a fixed-T one.
//
// Trace estimators:
//   kExactVjp:   d VJPs with the unit vectors e_i: tr = sum_i (e_i' J)_i and
//                |J|_F^2 = sum_i |e_i' J|^2 (exact).
//   kExact:      the dynamics' closed-form trace when they have one
//                (CnfDynamics::ValueAndTrace; ConcatSquashNet without
//                context and with <= 2 hidden layers: one extra [N, h] x
//                [h, h] product instead of d backward passes), else, and
//                whenever the regularisers need |J|_F^2, as kExactVjp.
//   kHutchinson: one VJP with noise eps (Gaussian or Rademacher, [N, d]),
//                tr ~ (eps' J) eps and |J|_F^2 ~ |eps' J|^2, both unbiased.
//                eps is drawn from the pass's `rng` (Forward/Inverse's
//                argument; a null rng fails loudly) once per pass and reused
//                by every evaluation, forward and backward (the adjoint sees
//                the same ODE).
//
// What a pass returns (FlowResult, flows/flow.h): value, logdet, status and
// these extras, each [N] in x's dtype:
//   "kinetic", "jacobian"  K(T) = int |f|^2 dt and J(T) = int |df/dz|_F^2 dt
//                          (the paper's equations; |t_end| times the
//                          time-mean), when regularized();
//   "regularization"       the per-sample RNODE penalty
//                          w_K K(T) + w_J J(T), when a lambda is > 0: the
//                          training loss is NLL + mean(regularization),
//                          mean(regularization) = RNODE's term;
//   "nfe", "accepted_steps", "rejected_steps"
//                          the forward solve's evaluations of the augmented
//                          field (rejected steps included) and step counts,
//                          one number broadcast to every sample (so a
//                          composition of CNFs sums them to its total).
// The weights w_K, w_J are lambda_kinetic, lambda_jacobian in the units of
// CnfOptions::regularizer_units (d = dim):
//   kIntegral:   w_K = lambda_kinetic, w_J = lambda_jacobian
//                (the paper's equations as written);
//   kPerDimMean: w_K = lambda_kinetic / (2 d), w_J = lambda_jacobian / d
//                (the reference code, cfinlay/ffjord-rnode, integrates
//                0.5 mean_i f_i^2 and mean_i (eps' df/dz)_i^2; the paper's
//                lambda = 0.01 is in these units).
// The adjoint's backward solve happens later, inside Backward/Grad, so its
// cost cannot be in the result: set options.ode.stats to a caller-owned
// ode::OdeStatsSink and read it after the backward pass (ode/solve.h); the
// sink also collects a failed backward solve's status.
//
// Transport(x, c, forward) is the map alone: dz/dt = f over the same
// interval as Forward (forward = true) or Inverse (false), without the
// log-density, the regularisers or a trace estimator (no rng needed); the
// result has value, status and the "nfe" / step extras, and logdet is
// undefined (NaN when status fails). This is the sampling solve when the
// density is not wanted (FlowModel::Sample runs it through InverseValue). Its
// error norm covers z alone, so its steps follow the curvature of the paths;
// Inverse's also control l(t) = int tr(df/dz), which varies along straight
// paths too (an affine map's divergence changes with t): at the default
// rtol = atol = 1e-5 a straight affine map takes 3 dopri5 steps (20 NFE)
// by Transport and 6 (38 NFE) by Inverse (tests/flows/cnf/cnf_test.cc).
//
// Failures come back in FlowResult::status with NaN value and logdet (no
// extras): a solve that fails (too many steps, blow-up, float32 options
// below the rtol floor) and wrong shapes of x ([N, dim] expected) or of the
// context (InvalidArgument naming both shapes).
//
// Gradients flow by the ODE options (adjoint by default, or discretise-then-
// optimise). Construction: Cnf::Create validates the options (InvalidArgument
// naming the field).
#ifndef FLOWTAPE_FLOWS_CNF_CNF_H_
#define FLOWTAPE_FLOWS_CNF_CNF_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/functional.h"
#include "autodiff/tensor.h"
#include "flows/cnf/dynamics.h"
#include "flows/flow.h"
#include "ode/solve.h"

namespace flowtape::flows::cnf {

enum class TraceEstimator { kExact, kExactVjp, kHutchinson };
// Units of lambda_kinetic / lambda_jacobian (see the header comment).
enum class RegularizerUnits { kIntegral, kPerDimMean };

// Names of the FlowResult extras (see the header comment).
inline constexpr char kKinetic[] = "kinetic";
inline constexpr char kJacobian[] = "jacobian";
inline constexpr char kRegularization[] = "regularization";
inline constexpr char kNfe[] = "nfe";
inline constexpr char kAcceptedSteps[] = "accepted_steps";
inline constexpr char kRejectedSteps[] = "rejected_steps";

struct CnfOptions {
  // InvalidArgument naming the field: t_end finite and nonzero (> 0 with
  // train_t), lambdas finite and >= 0, ode options valid (float64 floor;
  // a float32 pass checks float32's when it runs).
  absl::Status Validate() const;

  double t_end = 1.0;  // T (fixed), or the initial T with train_t
  // Learnable T = sqrt_end_time^2 (FFJORD's train_T; see the header comment).
  bool train_t = false;
  TraceEstimator trace = TraceEstimator::kExact;
  Noise noise = Noise::kGaussian;
  double lambda_kinetic = 0.0;
  double lambda_jacobian = 0.0;
  RegularizerUnits regularizer_units = RegularizerUnits::kIntegral;
  bool regularize = false;  // track K and J even with zero weights
  std::string name;  // Cnf::name(); empty: "rnode" if regularized, "ffjord"
  ode::OdeOptions ode = DefaultOde();

  static ode::OdeOptions DefaultOde() {  // FFJORD's tolerances
    ode::OdeOptions o;
    o.rtol = 1e-5;
    o.atol = 1e-5;
    return o;
  }
};

class Cnf : public Flow {
 public:
  static absl::StatusOr<std::shared_ptr<Cnf>> Create(
      std::shared_ptr<CnfDynamics> dynamics, const CnfOptions& options);

  FlowResult Forward(const Tensor& x, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  FlowResult Inverse(const Tensor& z, const Tensor& context = Tensor(),
                     Rng* rng = nullptr) const override;
  // z only, no log-density (see the header comment).
  FlowResult Transport(const Tensor& x, const Tensor& context = Tensor(),
                       bool forward = false) const;
  // Transport(z, context, false): sampling skips the log-density.
  FlowResult InverseValue(const Tensor& z, const Tensor& context = Tensor(),
                          Rng* /*rng*/ = nullptr) const override {
    return Transport(z, context, false);
  }
  bool analytic_inverse() const override { return false; }
  std::string name() const override;

  const CnfOptions& options() const { return options_; }
  const std::shared_ptr<CnfDynamics>& dynamics() const { return dynamics_; }
  int64_t context_dim() const { return dynamics_->context_dim(); }
  // The integration time T: t_end, or sqrt_end_time^2 with train_t.
  double end_time() const;
  // The parameter behind a learnable T (undefined when T is fixed).
  const Tensor& sqrt_end_time() const { return sqrt_end_time_; }
  // K and J are integrated (a lambda > 0 or options().regularize).
  bool regularized() const;

 private:
  Cnf(std::shared_ptr<CnfDynamics> dynamics, const CnfOptions& options);
  // forward: t 0 -> T (data -> base); else T -> 0.
  // density: integrate l (and K, J) along with z.
  FlowResult Run(const Tensor& x, const Tensor& context, bool forward,
                 bool density, Rng* rng) const;
  std::shared_ptr<CnfDynamics> dynamics_;
  CnfOptions options_;
  Tensor sqrt_end_time_;
};

// FFJORD's configuration (Grathwohl et al. 2019): ConcatSquash dynamics with
// tanh, T = 1, rtol = atol = 1e-5, adjoint gradients; exact trace for
// dim <= 8, else Hutchinson with Gaussian noise (FFJORD's image setting);
// with `rnode`, RNODE's lambda_kinetic = lambda_jacobian = 0.01 in the
// reference code's units (kPerDimMean). context_dim > 0: a conditional CNF
// (the context enters ConcatSquash's hyper-nets); train_t: learnable T
// (FFJORD's train_T, on by default in some of its scripts; off here).
absl::StatusOr<std::shared_ptr<Cnf>> MakeFfjord(
    int64_t dim, const std::vector<int64_t>& hidden, bool rnode, Rng& rng,
    int64_t context_dim = 0, bool train_t = false);

}  // namespace flowtape::flows::cnf

#endif  // FLOWTAPE_FLOWS_CNF_CNF_H_

// ODE solver over Boost.Odeint on a flat state vector y in R^n, stored as
// float or double (T): the state, f's evaluations and the stored solutions
// are in T, the step arithmetic (Runge-Kutta sums, error norm) in double
// with one rounding to T per stored value, and time is always double.
//
// Solves dy/dt = f(t, y), y(times[0]) = y0 and returns y at every requested
// time (times[0] included, its value is y0). `times` must be strictly
// monotone: increasing (forward in time) or decreasing (backward in time);
// a single time returns y0 unchanged.
//
// Methods:
//   kDopri5: Dormand-Prince 5(4) with Odeint's controlled stepper
//            (controlled_runge_kutta<runge_kutta_dopri5>, FSAL). The step
//            size is clamped to land exactly on each requested time (no
//            interpolation) and to |dt| <= max_dt. First step: Hairer's
//            heuristic (1 extra evaluation) unless first_step > 0.
//   kRk4, kEuler: fixed step. Each interval [t_i, t_{i+1}] is cut into
//            ceil(|t_{i+1} - t_i| / step_size) equal steps.
//
// Error control (dopri5). With e = Odeint's embedded error estimate, y_0 and
// y_1 the state before and after the step, and the weights
//   w_i = atol + rtol * max(|y_0i|, |y_1i|)
// the step is accepted when err <= 1, where
//   kRms (default, as torchdiffeq): err = sqrt(mean_i (e_i / w_i)^2)
//   kMax (Odeint's default_error_checker with a_dxdt = 0): err = max_i e_i/w_i
// Only the first `error_control_size` components enter the norm when it is
// > 0 (a seminorm; the adjoint uses it to exclude parameter adjoints).
// Step adjustment is Odeint's default_step_adjuster: shrink by
// max(0.9 err^(-1/3), 0.2) on rejection, grow by 0.9 err^(-1/5) (<= 5x) on
// acceptance when err < 0.5.
//
// Precision floor (dopri5): rtol >= MinRtol(dtype), the unit roundoff
// u = eps / 2 of the state type (2^-24 = 6.0e-8 for float32, 2^-53 = 1.1e-16
// for float64): a relative accuracy below u is one the state cannot hold.
// Such options are InvalidArgument rather than silently raised. Measured on
// dy/dt = A y (tests/ode/solver_test.cc, |y| ~ 1, t in [0, 2]): float32
// tracks float64's error and step count down to rtol ~ 1e-6; from rtol ~ u
// its error stalls at 3e-8..2e-7 (float64 keeps improving), and tighter
// still only costs steps (rtol 1e-9: 1.2x the steps and 5x the rejections
// of float64; 1e-10: 4-12x the steps). FFJORD's rtol = atol = 1e-5 is far
// from the floor: there float32 and float64 take the same steps and agree to
// rounding. atol has no floor; atol = 0 is pure relative control.
//
// Counters: every evaluation of f (rejected steps included), accepted and
// rejected steps. Errors (absl::Status): more than max_steps steps, step size
// underflow (|dt| < 1e-14 max(1, |t|)), a non-finite state, bad times or
// options.
#ifndef FLOWTAPE_ODE_SOLVER_H_
#define FLOWTAPE_ODE_SOLVER_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/dtype.h"

namespace flowtape::ode {

enum class Method { kDopri5, kRk4, kEuler };
enum class ErrorNorm { kRms, kMax };

absl::StatusOr<Method> ParseMethod(const std::string& name);
const char* MethodName(Method m);

struct SolverOptions {
  // InvalidArgument naming the field: rtol > 0 (>= MinRtol(state) for
  // dopri5), atol >= 0, max_dt > 0, step_size > 0 and finite (fixed-step
  // methods), max_steps > 0, error_control_size >= 0.
  absl::Status Validate(DType state = kFloat64) const;

  Method method = Method::kDopri5;
  double rtol = 1e-7;
  double atol = 1e-9;
  ErrorNorm norm = ErrorNorm::kRms;
  int64_t error_control_size = 0;  // > 0: seminorm over the first components
  double first_step = 0.0;         // 0: automatic
  double max_dt = std::numeric_limits<double>::infinity();
  double step_size = 0.1;      // fixed-step methods
  int64_t max_steps = 100000;  // accepted + rejected, per solve
};

// The unit roundoff of the state type: the smallest rtol dopri5 accepts.
double MinRtol(DType state);

struct SolverCounters {
  int64_t nfe = 0;  // evaluations of f
  int64_t accepted = 0;
  int64_t rejected = 0;
  SolverCounters& operator+=(const SolverCounters& o) {
    nfe += o.nfe;
    accepted += o.accepted;
    rejected += o.rejected;
    return *this;
  }
};

// f(t, y, dydt): writes dy/dt (same size as y).
template <typename T>
using VectorField = std::function<void(double t, const std::vector<T>& y,
                                       std::vector<T>& dydt)>;
// Called when the solve reaches times[i] (i >= 1), after y(times[i]) has been
// stored; may change y (the adjoint's jumps). The FSAL derivative is then
// recomputed (one evaluation of f) before the next interval.
template <typename T>
using ObservationHook =
    std::function<void(int64_t i, double t, std::vector<T>& y)>;

struct Step {
  double t, dt;  // an accepted step from t to t + dt
};

// Solves and returns y(times[i]) for every i. `steps`, when given, receives
// every accepted step (for replay on the tape). Counters accumulate.
// T = float or double (instantiated in solver.cc).
template <typename T>
absl::StatusOr<std::vector<std::vector<T>>> Integrate(
    const VectorField<T>& f, const std::vector<T>& y0,
    const std::vector<double>& times, const SolverOptions& options,
    SolverCounters* counters = nullptr, std::vector<Step>* steps = nullptr,
    const ObservationHook<T>& hook = nullptr);

// The equal steps a fixed-step method takes from t0 to t1 (at least one).
std::vector<Step> FixedSteps(double t0, double t1, double step_size);

// Checks times (finite, strictly monotone, non-empty) and
// options.Validate(state).
absl::Status ValidateSolve(const std::vector<double>& times,
                           const SolverOptions& options,
                           DType state = kFloat64);

}  // namespace flowtape::ode

#endif  // FLOWTAPE_ODE_SOLVER_H_

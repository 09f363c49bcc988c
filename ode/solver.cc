#include "ode/solver.h"

#include <algorithm>
#include <boost/numeric/odeint.hpp>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "autodiff/status_macros.h"

namespace flowtape::ode {
namespace odeint = boost::numeric::odeint;

absl::StatusOr<Method> ParseMethod(const std::string& name) {
  if (name == "dopri5") return Method::kDopri5;
  if (name == "rk4") return Method::kRk4;
  if (name == "euler") return Method::kEuler;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown ODE method '", name, "' (want dopri5, rk4, euler)"));
}

const char* MethodName(Method m) {
  switch (m) {
    case Method::kDopri5:
      return "dopri5";
    case Method::kRk4:
      return "rk4";
    case Method::kEuler:
      return "euler";
  }
  return "?";
}

double MinRtol(DType state) {
  return VisitDType(state, [](auto zero) {
    return 0.5 * std::numeric_limits<decltype(zero)>::epsilon();
  });
}

namespace {

// Weighted norm of v with weights atol + rtol * max(|a_i|, |b_i|) over the
// first `size` components (all when size <= 0).
template <typename T>
double WeightedNorm(const std::vector<T>& v, const std::vector<T>& a,
                    const std::vector<T>& b, const SolverOptions& o) {
  const size_t n = o.error_control_size > 0
                       ? std::min<size_t>(v.size(), o.error_control_size)
                       : v.size();
  double acc = 0.0;
  for (size_t i = 0; i < n; ++i) {
    double w = o.atol + o.rtol * std::max(std::fabs(double{a[i]}),
                                          std::fabs(double{b[i]}));
    double r = std::fabs(double{v[i]}) / w;
    acc = o.norm == ErrorNorm::kMax ? std::max(acc, r) : acc + r * r;
  }
  if (o.norm == ErrorNorm::kMax || n == 0) return acc;
  return std::sqrt(acc / static_cast<double>(n));
}

// Odeint ErrorChecker: the documented weighted norm. Needs the proposed new
// state, which Odeint's try_step (version 4) writes before asking for the
// error, so the checker reads it through a pointer.
template <typename T>
class ErrorChecker {
 public:
  using State = std::vector<T>;
  ErrorChecker(const SolverOptions* o, const State* x_new)
      : o_(o), x_new_(x_new) {}
  template <class Algebra>
  double error(Algebra&, const State& x_old, const State&, State& x_err,
               double) const {
    return WeightedNorm(x_err, x_old, *x_new_, *o_);
  }

 private:
  const SolverOptions* o_;
  const State* x_new_;
};

// Coefficients, stage sums and time in double whatever the state type.
template <typename T>
using Controlled = odeint::controlled_runge_kutta<
    odeint::runge_kutta_dopri5<std::vector<T>, double, std::vector<T>, double>,
    ErrorChecker<T>, odeint::default_step_adjuster<double, double>,
    odeint::initially_resizer, odeint::explicit_error_stepper_fsal_tag>;

template <typename T>
bool AllFinite(const std::vector<T>& y) {
  for (T v : y)
    if (!std::isfinite(v)) return false;
  return true;
}

// Hairer, Norsett & Wanner (1993) II.4 starting step, order 5; f0 = f(t0, y0).
template <typename T>
double InitialStep(const VectorField<T>& f, double t0, const std::vector<T>& y0,
                   const std::vector<T>& f0, double direction,
                   const SolverOptions& o, SolverCounters& c) {
  SolverOptions rms = o;
  rms.norm = ErrorNorm::kRms;
  double d0 = WeightedNorm(y0, y0, y0, rms);
  double d1 = WeightedNorm(f0, y0, y0, rms);
  double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
  std::vector<T> y1(y0.size()), f1(y0.size()), df(y0.size());
  for (size_t i = 0; i < y0.size(); ++i)
    y1[i] = static_cast<T>(y0[i] + direction * h0 * f0[i]);
  f(t0 + direction * h0, y1, f1);
  ++c.nfe;
  for (size_t i = 0; i < y0.size(); ++i) df[i] = f1[i] - f0[i];
  double d2 = WeightedNorm(df, y0, y0, rms) / h0;
  double h1 = std::max(d1, d2) <= 1e-15
                  ? std::max(1e-6, h0 * 1e-3)
                  : std::pow(0.01 / std::max(d1, d2), 1.0 / 5.0);
  return std::min({100 * h0, h1, o.max_dt});
}

absl::Status StepError(const char* what, double t, const SolverOptions& o) {
  return absl::InternalError(
      absl::StrCat("ode (", MethodName(o.method), "): ", what, " at t=", t));
}

// Adaptive dopri5 from t to t_end (y, dxdt updated in place). dt carries the
// proposed step across intervals.
template <typename T>
absl::Status AdaptiveInterval(const VectorField<T>& f, double& t, double t_end,
                              std::vector<T>& y, std::vector<T>& dxdt,
                              double& dt, const SolverOptions& o,
                              SolverCounters& c, int64_t& steps_taken,
                              std::vector<Step>* steps) {
  using State = std::vector<T>;
  const double dir = t_end > t ? 1.0 : -1.0;
  State y_new(y.size()), dxdt_new(y.size());
  Controlled<T> ctrl(ErrorChecker<T>(&o, &y_new));
  auto sys = [&](const State& x, State& dx, double tt) {
    ++c.nfe;
    f(tt, x, dx);
  };
  while (dir * (t_end - t) > 0) {
    if (steps_taken >= o.max_steps)
      return absl::ResourceExhaustedError(
          absl::StrCat("ode (dopri5): more than max_steps=", o.max_steps,
                       " steps before reaching t=", t_end, " (at t=", t, ")"));
    double remaining = std::fabs(t_end - t);
    double h = std::min({std::fabs(dt), o.max_dt});
    // Land exactly on t_end; never leave a sliver behind.
    bool last = h * (1 + 1e-8) >= remaining;
    if (last) h = remaining;
    if (h < 1e-14 * std::max(1.0, std::fabs(t)))
      return absl::OutOfRangeError(absl::StrCat(
          "ode (dopri5): step size underflow (dt=", h, ") at t=", t));
    double t_try = t, dt_try = dir * h;
    ++steps_taken;
    if (ctrl.try_step(sys, y, dxdt, t_try, y_new, dxdt_new, dt_try) ==
        odeint::success) {
      ++c.accepted;
      if (steps != nullptr) steps->push_back({t, dir * h});
      t = last ? t_end : t_try;
      y.swap(y_new);
      dxdt.swap(dxdt_new);
      if (!AllFinite(y)) return StepError("non-finite state", t, o);
      // Keep the controller's proposal unless this step was clamped short.
      dt = last ? std::max(std::fabs(dt_try), std::fabs(dt)) : dt_try;
    } else {
      ++c.rejected;
      if (!std::isfinite(dt_try)) return StepError("non-finite error", t, o);
      dt = dt_try;
    }
  }
  return absl::OkStatus();
}

// Fixed-step rk4/euler over one interval with equal steps.
template <typename T>
absl::Status FixedInterval(const VectorField<T>& f, double& t, double t_end,
                           std::vector<T>& y, const SolverOptions& o,
                           SolverCounters& c, int64_t& steps_taken,
                           std::vector<Step>* steps) {
  using State = std::vector<T>;
  auto sys = [&](const State& x, State& dx, double tt) {
    ++c.nfe;
    f(tt, x, dx);
  };
  odeint::runge_kutta4<State, double, State, double> rk4;
  odeint::euler<State, double, State, double> euler;
  for (const Step& st : FixedSteps(t, t_end, o.step_size)) {
    if (steps_taken >= o.max_steps)
      return absl::ResourceExhaustedError(
          absl::StrCat("ode (", MethodName(o.method),
                       "): more than max_steps=", o.max_steps, " steps"));
    ++steps_taken;
    if (o.method == Method::kRk4)
      rk4.do_step(sys, y, st.t, st.dt);
    else
      euler.do_step(sys, y, st.t, st.dt);
    ++c.accepted;
    if (steps != nullptr) steps->push_back(st);
    if (!AllFinite(y)) return StepError("non-finite state", st.t + st.dt, o);
  }
  t = t_end;
  return absl::OkStatus();
}

}  // namespace

std::vector<Step> FixedSteps(double t0, double t1, double step_size) {
  const double span = t1 - t0;
  const int64_t n = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(std::fabs(span) / step_size - 1e-9)));
  const double h = span / static_cast<double>(n);
  std::vector<Step> steps;
  for (int64_t k = 0; k < n; ++k)
    steps.push_back({t0 + h * static_cast<double>(k), h});
  return steps;
}

absl::Status SolverOptions::Validate(DType state) const {
  if (!(rtol > 0) || !(atol >= 0) || !std::isfinite(rtol) ||
      !std::isfinite(atol))
    return absl::InvalidArgumentError(absl::StrCat(
        "ode: need finite rtol > 0 and atol >= 0, got ", rtol, ", ", atol));
  if (method == Method::kDopri5 && rtol < MinRtol(state))
    return absl::InvalidArgumentError(absl::StrCat(
        "ode: rtol ", rtol, " is below the ", DTypeName(state), " floor ",
        MinRtol(state), " (the unit roundoff of the state type): use ",
        state == kFloat32 ? "float64 or " : "", "a looser rtol"));
  if (!(max_dt > 0))
    return absl::InvalidArgumentError("ode: max_dt must be positive");
  if (method != Method::kDopri5 && !(step_size > 0 && std::isfinite(step_size)))
    return absl::InvalidArgumentError("ode: step_size must be positive");
  if (max_steps <= 0)
    return absl::InvalidArgumentError("ode: max_steps must be positive");
  if (error_control_size < 0)
    return absl::InvalidArgumentError("ode: error_control_size must be >= 0");
  return absl::OkStatus();
}

absl::Status ValidateSolve(const std::vector<double>& times,
                           const SolverOptions& o, DType state) {
  if (times.empty()) return absl::InvalidArgumentError("ode: no times given");
  for (double t : times)
    if (!std::isfinite(t))
      return absl::InvalidArgumentError("ode: non-finite time");
  if (times.size() >= 2) {
    const bool up = times[1] > times[0];
    for (size_t i = 1; i < times.size(); ++i)
      if (up ? !(times[i] > times[i - 1]) : !(times[i] < times[i - 1]))
        return absl::InvalidArgumentError(
            absl::StrCat("ode: times must be strictly monotone; times[", i - 1,
                         "]=", times[i - 1], ", times[", i, "]=", times[i]));
  }
  return o.Validate(state);
}

template <typename T>
absl::StatusOr<std::vector<std::vector<T>>> Integrate(
    const VectorField<T>& f, const std::vector<T>& y0,
    const std::vector<double>& times, const SolverOptions& o,
    SolverCounters* counters, std::vector<Step>* steps,
    const ObservationHook<T>& hook) {
  using State = std::vector<T>;
  FT_RETURN_IF_ERROR(ValidateSolve(times, o, kDTypeOf<T>));
  if (!AllFinite(y0))
    return absl::InvalidArgumentError("ode: non-finite initial state");
  SolverCounters local;
  SolverCounters& c = counters != nullptr ? *counters : local;
  std::vector<State> out{y0};
  if (times.size() == 1) return out;
  State y = y0, dxdt(y0.size());
  double t = times[0], dt = 0.0;
  int64_t steps_taken = 0;
  const bool adaptive = o.method == Method::kDopri5;
  if (adaptive) {
    f(t, y, dxdt);
    ++c.nfe;
    const double dir = times[1] > times[0] ? 1.0 : -1.0;
    dt =
        o.first_step > 0 ? o.first_step : InitialStep(f, t, y, dxdt, dir, o, c);
    dt *= dir;
  }
  for (size_t i = 1; i < times.size(); ++i) {
    absl::Status s =
        adaptive ? AdaptiveInterval(f, t, times[i], y, dxdt, dt, o, c,
                                    steps_taken, steps)
                 : FixedInterval(f, t, times[i], y, o, c, steps_taken, steps);
    FT_RETURN_IF_ERROR(s);
    out.push_back(y);
    if (hook) {
      hook(static_cast<int64_t>(i), t, y);
      if (adaptive && i + 1 < times.size()) {  // FSAL reset
        f(t, y, dxdt);
        ++c.nfe;
      }
    }
  }
  return out;
}

#define FLOWTAPE_ODE_INSTANTIATE_INTEGRATE(T)                            \
  template absl::StatusOr<std::vector<std::vector<T>>> Integrate<T>(     \
      const VectorField<T>&, const std::vector<T>&,                      \
      const std::vector<double>&, const SolverOptions&, SolverCounters*, \
      std::vector<Step>*, const ObservationHook<T>&);
FLOWTAPE_ODE_INSTANTIATE_INTEGRATE(float)
FLOWTAPE_ODE_INSTANTIATE_INTEGRATE(double)
#undef FLOWTAPE_ODE_INSTANTIATE_INTEGRATE

}  // namespace flowtape::ode

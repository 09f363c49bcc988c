#include "ode/solve.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"
#include "autodiff/tape.h"
#include "ode/adjoint.h"
#include "ode/runge_kutta.h"

namespace flowtape::ode {

void OdeStatsSink::AddForward(const SolverCounters& c) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.forward += c;
  ++stats_.solves;
}

void OdeStatsSink::AddBackward(const SolverCounters& c,
                               const absl::Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.backward += c;
  ++stats_.backward_solves;
  if (stats_.backward_status.ok()) stats_.backward_status = status;
}

OdeStats OdeStatsSink::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void OdeStatsSink::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_ = OdeStats();
}

absl::Status OdeOptions::Validate(DType state) const {
  FT_RETURN_IF_ERROR(SolverOptions::Validate(state));
  if (adjoint_rtol > 0 || adjoint_atol > 0) {
    SolverOptions backward = *this;
    if (adjoint_rtol > 0) backward.rtol = adjoint_rtol;
    if (adjoint_atol > 0) backward.atol = adjoint_atol;
    if (absl::Status s = backward.Validate(state); !s.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("adjoint tolerances: ", s.message()));
  }
  if (!std::isfinite(adjoint_rtol) || !std::isfinite(adjoint_atol))
    return absl::InvalidArgumentError("ode: non-finite adjoint tolerance");
  return absl::OkStatus();
}

namespace internal {

template <typename T>
Tensor StateTensor(const Shape& shape, const std::vector<T>& v, size_t begin) {
  Tensor t = Tensor::Empty(shape, kDTypeOf<T>);
  FT_CHECK(begin + shape.numel() <= v.size(), "ode: state of ", v.size(),
           " values read at ", begin, " as ", shape.ToString());
  std::copy(v.begin() + begin, v.begin() + begin + shape.numel(),
            t.mutable_data<T>());
  return t;
}

template <typename T>
std::vector<T> TensorState(const Tensor& t) {
  const T* p = t.data<T>();
  return std::vector<T>(p, p + t.numel());
}

template <typename T>
VectorField<T> ValueField(const OdeFn& f, const Shape& shape) {
  return [&f, shape](double t, const std::vector<T>& y, std::vector<T>& dydt) {
    TapeScope scope;
    NoGradScope no_grad;
    Tensor out = f(t, StateTensor(shape, y));
    FT_CHECK(out.shape() == shape && out.dtype() == kDTypeOf<T>,
             "ode: f(t, y) is ", DTypeName(out.dtype()), " ",
             out.shape().ToString(), ", y is ", DTypeName(kDTypeOf<T>), " ",
             shape.ToString());
    const T* p = out.data<T>();
    std::copy(p, p + shape.numel(), dydt.begin());
  };
}

#define FLOWTAPE_ODE_INSTANTIATE_STATE(T)                                      \
  template Tensor StateTensor<T>(const Shape&, const std::vector<T>&, size_t); \
  template std::vector<T> TensorState<T>(const Tensor&);                       \
  template VectorField<T> ValueField<T>(const OdeFn&, const Shape&);
FLOWTAPE_ODE_INSTANTIATE_STATE(float)
FLOWTAPE_ODE_INSTANTIATE_STATE(double)
#undef FLOWTAPE_ODE_INSTANTIATE_STATE

}  // namespace internal

namespace {

// Discretise-then-optimise: replay the accepted steps with tensor ops.
template <typename T>
absl::StatusOr<OdeSolution> DiscreteSolve(const OdeFn& f, const Tensor& y0,
                                          const std::vector<double>& times,
                                          const OdeOptions& o) {
  OdeSolution sol{{y0}, {}};
  std::vector<Step> steps;
  if (o.method == Method::kDopri5) {
    auto ys = Integrate<T>(internal::ValueField<T>(f, y0.shape()),
                           internal::TensorState<T>(y0), times, o, &sol.forward,
                           &steps);
    FT_RETURN_IF_ERROR(ys.status());
  } else {
    for (size_t i = 1; i < times.size(); ++i) {
      std::vector<Step> s = FixedSteps(times[i - 1], times[i], o.step_size);
      steps.insert(steps.end(), s.begin(), s.end());
    }
    if (static_cast<int64_t>(steps.size()) > o.max_steps)
      return absl::ResourceExhaustedError(
          absl::StrCat("ode (", MethodName(o.method),
                       "): more than max_steps=", o.max_steps, " steps"));
    sol.forward.accepted += static_cast<int64_t>(steps.size());
  }
  Tensor y = y0;
  size_t next = 1;
  for (size_t k = 0; k < steps.size(); ++k) {
    y = RkStep(f, o.method, steps[k].t, steps[k].dt, y, &sol.forward.nfe);
    // Steps of the next interval start exactly at the requested time.
    double t_end = k + 1 < steps.size() ? steps[k + 1].t : times.back();
    if (next < times.size() && (t_end == times[next] || k + 1 == steps.size()))
      sol.ys.push_back(y), ++next;
  }
  FT_CHECK(sol.ys.size() == times.size(), "ode: replay lost requested times");
  return sol;
}

template <typename T>
absl::StatusOr<OdeSolution> ValueSolve(const OdeFn& f, const Tensor& y0,
                                       const std::vector<double>& times,
                                       const OdeOptions& o) {
  OdeSolution sol;
  FT_ASSIGN_OR_RETURN(
      std::vector<std::vector<T>> ys,
      Integrate<T>(internal::ValueField<T>(f, y0.shape()),
                   internal::TensorState<T>(y0), times, o, &sol.forward));
  for (const auto& y : ys)
    sol.ys.push_back(internal::StateTensor(y0.shape(), y));
  return sol;
}

}  // namespace

absl::StatusOr<OdeSolution> OdeSolve(const OdeFn& f, const Tensor& y0,
                                     const std::vector<double>& times,
                                     const std::vector<Tensor>& params,
                                     const OdeOptions& options) {
  FT_RETURN_IF_ERROR(ValidateSolve(times, options, y0.dtype()));
  FT_RETURN_IF_ERROR(options.Validate(y0.dtype()));
  bool needs_grad = false;
  if (Tape::Get().grad_enabled()) {
    needs_grad = y0.requires_grad();
    for (const Tensor& p : params) needs_grad = needs_grad || p.requires_grad();
  }
  auto sol = VisitDType(y0.dtype(), [&](auto zero) {
    using T = decltype(zero);
    if (needs_grad && options.gradient == Gradient::kDiscretize)
      return DiscreteSolve<T>(f, y0, times, options);
    if (needs_grad && options.gradient == Gradient::kAdjoint)
      return internal::AdjointSolve<T>(f, y0, times, params, options);
    return ValueSolve<T>(f, y0, times, options);
  });
  if (sol.ok() && options.stats != nullptr)
    options.stats->AddForward(sol->forward);
  return sol;
}

}  // namespace flowtape::ode

#include "ode/solve.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/tape.h"
#include "ode/adjoint.h"
#include "ode/runge_kutta.h"

namespace flowtape::ode {
namespace internal {

VectorField ValueField(const OdeFn& f, const Shape& shape, DType dtype) {
  return [&f, shape, dtype](double t, const std::vector<double>& y,
                            std::vector<double>& dydt) {
    TapeScope scope;
    NoGradScope no_grad;
    Tensor out = f(t, Tensor::FromVector(shape, y, dtype));
    FT_CHECK(out.shape() == shape, "ode: f(t, y) has shape ",
             out.shape().ToString(), ", y has ", shape.ToString());
    const std::vector<double> v = out.ToVector();
    std::copy(v.begin(), v.end(), dydt.begin());
  };
}

}  // namespace internal

namespace {

std::vector<Tensor> ToTensors(const std::vector<std::vector<double>>& ys,
                              const Shape& shape, DType dtype) {
  std::vector<Tensor> out;
  for (const auto& y : ys) out.push_back(Tensor::FromVector(shape, y, dtype));
  return out;
}

// Discretise-then-optimise: replay the accepted steps with tensor ops.
absl::StatusOr<OdeSolution> DiscreteSolve(const OdeFn& f, const Tensor& y0,
                                          const std::vector<double>& times,
                                          const OdeOptions& o,
                                          std::shared_ptr<OdeStats> stats) {
  std::vector<Step> steps;
  if (o.method == Method::kDopri5) {
    auto ys = Integrate(internal::ValueField(f, y0.shape(), y0.dtype()), y0.ToVector(),
                        times, o, &stats->forward, &steps);
    if (!ys.ok()) return ys.status();
  } else {
    for (size_t i = 1; i < times.size(); ++i) {
      std::vector<Step> s = FixedSteps(times[i - 1], times[i], o.step_size);
      steps.insert(steps.end(), s.begin(), s.end());
    }
    if (static_cast<int64_t>(steps.size()) > o.max_steps)
      return absl::ResourceExhaustedError(
          absl::StrCat("ode (", MethodName(o.method),
                       "): more than max_steps=", o.max_steps, " steps"));
    stats->forward.accepted += static_cast<int64_t>(steps.size());
  }
  OdeSolution sol{{y0}, stats};
  Tensor y = y0;
  size_t next = 1;
  for (size_t k = 0; k < steps.size(); ++k) {
    y = RkStep(f, o.method, steps[k].t, steps[k].dt, y, &stats->forward.nfe);
    // Steps of the next interval start exactly at the requested time.
    double t_end = k + 1 < steps.size() ? steps[k + 1].t : times.back();
    if (next < times.size() && (t_end == times[next] || k + 1 == steps.size()))
      sol.ys.push_back(y), ++next;
  }
  FT_CHECK(sol.ys.size() == times.size(), "ode: replay lost requested times");
  return sol;
}

}  // namespace

absl::StatusOr<OdeSolution> OdeSolve(const OdeFn& f, const Tensor& y0,
                                     const std::vector<double>& times,
                                     const std::vector<Tensor>& params,
                                     const OdeOptions& options) {
  if (absl::Status s = ValidateSolve(times, options); !s.ok()) return s;
  bool needs_grad = false;
  if (Tape::Get().grad_enabled()) {
    needs_grad = y0.requires_grad();
    for (const Tensor& p : params) needs_grad = needs_grad || p.requires_grad();
  }
  auto stats = std::make_shared<OdeStats>();
  if (needs_grad && options.gradient == Gradient::kDiscretize)
    return DiscreteSolve(f, y0, times, options, stats);
  if (needs_grad && options.gradient == Gradient::kAdjoint)
    return internal::AdjointSolve(f, y0, times, params, options);
  auto ys = Integrate(internal::ValueField(f, y0.shape(), y0.dtype()), y0.ToVector(), times,
                      options, &stats->forward);
  if (!ys.ok()) return ys.status();
  return OdeSolution{ToTensors(*ys, y0.shape(), y0.dtype()), stats};
}

}  // namespace flowtape::ode

// OdeSolve: neural-ODE solves on tensors, differentiable two ways.
//
//   dy/dt = f(t, y; theta),  y(times[0]) = y0,   returns y(times[i]) for all i.
//
// y is a tensor of any shape (a batch [N, D] typically); the solver sees it
// flattened (ode/solver.h documents methods, error norm and errors). `params`
// lists every tensor f depends on that needs gradients (module parameters,
// or tape tensors such as a conditioning input). Listed tensors may be
// computed from each other (w and c = 2 w): the adjoint returns partial
// derivatives, so each path is counted once.
//
// Gradients (when y0 or a param requires grad and recording is on):
//   kAdjoint (Chen et al. 2018): the forward solve runs without a tape; the
//     outputs are one tape node whose backward integrates, from times.back()
//     to times[0], the augmented state s = [y, a, g] with
//         dy/dt = f,   da/dt = -a' df/dy,   dg/dt = -a' df/dtheta,
//     a(times.back()) = dL/dy(times.back()), g = 0. At each earlier requested
//     time t_i, y is reset to the saved forward value y(t_i), a += dL/dy(t_i)
//     and the FSAL derivative is recomputed. Each backward evaluation records
//     f and one VJP inside a TapeScope (memory O(one evaluation)). With
//     `seminorm`, the error norm covers [y, a] only; adjoint_rtol/atol
//     (when > 0) replace rtol/atol for this backward solve. The adjoint
//     gradients are constants: running its backward under Grad(...,
//     create_graph=true) aborts (use kDiscretize for higher order). If the
//     backward solve fails, gradients are NaN and stats->backward_status
//     holds the error.
//   kDiscretize (discretise-then-optimise): the accepted steps of the solve
//     are replayed with tensor ops on the tape, so backprop gives the exact
//     gradient of the discrete solution (step sizes held fixed). Adaptive
//     solves run twice (Odeint to choose the steps, then the replay); fixed-
//     step solves only once, on the tape. Memory O(steps).
//   kNone: values only (constants).
//
// f is called with recording enabled when gradients are being built (the
// replay and the adjoint VJPs) and disabled for plain evaluations, so a
// dynamics function can skip graph work it does not need.
#ifndef FLOWTAPE_ODE_SOLVE_H_
#define FLOWTAPE_ODE_SOLVE_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "ode/solver.h"

namespace flowtape::ode {

enum class Gradient { kAdjoint, kDiscretize, kNone };

struct OdeOptions : SolverOptions {
  Gradient gradient = Gradient::kAdjoint;
  // Backward (adjoint) tolerances; <= 0 means same as forward.
  double adjoint_rtol = 0.0;
  double adjoint_atol = 0.0;
  bool seminorm = false;
};

// Cost counters of one solve, updated by its backward pass later.
struct OdeStats {
  SolverCounters forward;
  SolverCounters backward;
  absl::Status backward_status;
};

using OdeFn = std::function<Tensor(double t, const Tensor& y)>;

struct OdeSolution {
  std::vector<Tensor> ys;  // y(times[i]), each shaped like y0
  std::shared_ptr<OdeStats> stats;
};

absl::StatusOr<OdeSolution> OdeSolve(const OdeFn& f, const Tensor& y0,
                                     const std::vector<double>& times,
                                     const std::vector<Tensor>& params,
                                     const OdeOptions& options);

}  // namespace flowtape::ode

#endif  // FLOWTAPE_ODE_SOLVE_H_

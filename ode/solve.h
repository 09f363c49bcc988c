// OdeSolve: neural-ODE solves on tensors, differentiable two ways.
//
//   dy/dt = f(t, y; theta),  y(times[0]) = y0,   returns y(times[i]) for all i.
//
// y is a tensor of any shape (a batch [N, D] typically) and dtype: the solver
// integrates it flattened in that dtype, float32 or float64, and f is called
// with (and must return) tensors of it (ode/solver.h documents methods, error
// norm, errors and float32's rtol floor). `params`
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
//     backward solve fails, gradients are NaN and the error goes to the
//     options' stats sink (below), the only channel a backward pass has.
//   kDiscretize (discretise-then-optimise): the accepted steps of the solve
//     are replayed with tensor ops on the tape, so backprop gives the exact
//     gradient of the discrete solution (step sizes held fixed). Adaptive
//     solves run twice (Odeint to choose the steps, then the replay); fixed-
//     step solves only once, on the tape. Memory O(steps).
//   kNone: values only (constants).
//
// f is called with recording enabled when gradients are being built (the
// replay and the adjoint VJPs) and disabled for plain evaluations, so a
// dynamics function can skip graph work it does not need. A plain
// evaluation runs inside a TapeScope that is rewound once its result has
// been read: f may record scratch work (its own VJPs) and return a tape
// tensor.
//
// Cost counters: OdeSolution::forward holds the solve's own counters. The
// adjoint's backward solve runs later, inside Backward/Grad, and reports to
// OdeOptions::stats, an optional OdeStatsSink the caller owns: every solve
// run with those options adds its forward counters when it runs and its
// backward counters (and a failed backward solve's status) when its backward
// pass runs. The caller reads and resets the sink between steps; one sink
// may be shared by solves on several threads (it locks).
#ifndef FLOWTAPE_ODE_SOLVE_H_
#define FLOWTAPE_ODE_SOLVE_H_

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "ode/solver.h"

namespace flowtape::ode {

enum class Gradient { kAdjoint, kDiscretize, kNone };

// Counters of forward solves and of adjoint backward solves.
struct OdeStats {
  SolverCounters forward;
  SolverCounters backward;
  int64_t solves = 0;            // forward solves added
  int64_t backward_solves = 0;   // adjoint backward passes added
  absl::Status backward_status;  // the first failed backward solve, or ok
};

// A caller-owned accumulator of OdeStats (see the header comment).
class OdeStatsSink {
 public:
  void AddForward(const SolverCounters& c);
  void AddBackward(const SolverCounters& c, const absl::Status& status);
  OdeStats Get() const;
  void Reset();

 private:
  mutable std::mutex mu_;
  OdeStats stats_;
};

struct OdeOptions : SolverOptions {
  // SolverOptions::Validate plus adjoint_rtol >= MinRtol(state) when set.
  absl::Status Validate(DType state = kFloat64) const;

  Gradient gradient = Gradient::kAdjoint;
  // Backward (adjoint) tolerances; <= 0 means same as forward.
  double adjoint_rtol = 0.0;
  double adjoint_atol = 0.0;
  bool seminorm = false;
  // Optional: receives the counters of every solve run with these options,
  // the adjoint's backward solves included.
  std::shared_ptr<OdeStatsSink> stats;
};

using OdeFn = std::function<Tensor(double t, const Tensor& y)>;

struct OdeSolution {
  std::vector<Tensor> ys;  // y(times[i]), each shaped and typed like y0
  SolverCounters forward;  // this solve's (the replay's NFE included)
};

absl::StatusOr<OdeSolution> OdeSolve(const OdeFn& f, const Tensor& y0,
                                     const std::vector<double>& times,
                                     const std::vector<Tensor>& params,
                                     const OdeOptions& options);

}  // namespace flowtape::ode

#endif  // FLOWTAPE_ODE_SOLVE_H_

// One explicit Runge-Kutta step written with tensor ops (differentiable):
//
//   k_i = f(t + c_i h, y + h sum_{j<i} a_ij k_j),   y_next = y + h sum_i b_i
//   k_i
//
// with the tableaus Odeint uses: Dormand-Prince 5(4) (the 5th-order
// solution; b_7 = 0 so 6 evaluations), classic RK4 (4), explicit Euler (1).
// Replaying a solver's accepted steps with RkStep gives the discrete solution
// on the tape (discretise-then-optimise).
#ifndef FLOWTAPE_ODE_RUNGE_KUTTA_H_
#define FLOWTAPE_ODE_RUNGE_KUTTA_H_

#include <cstdint>

#include "autodiff/tensor.h"
#include "ode/solve.h"
#include "ode/solver.h"

namespace flowtape::ode {

// Adds the number of evaluations of f to *nfe when given.
Tensor RkStep(const OdeFn& f, Method method, double t, double h,
              const Tensor& y, int64_t* nfe = nullptr);

}  // namespace flowtape::ode

#endif  // FLOWTAPE_ODE_RUNGE_KUTTA_H_

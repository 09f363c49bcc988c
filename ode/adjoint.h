// Internal pieces of OdeSolve (ode/solve.h) shared by its .cc files:
// the value-only vector field of a tensor OdeFn and the continuous adjoint.
#ifndef FLOWTAPE_ODE_ADJOINT_H_
#define FLOWTAPE_ODE_ADJOINT_H_

#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "ode/solve.h"
#include "ode/solver.h"

namespace flowtape::ode::internal {

// f as a flat vector field, evaluated without recording (inside a TapeScope,
// so any tape work f does internally is dropped).
VectorField ValueField(const OdeFn& f, const Shape& shape, DType dtype);

// OdeSolve with Gradient::kAdjoint when recording is needed: one tape node
// [T, numel(y0)] whose backward rule runs the adjoint solve.
absl::StatusOr<OdeSolution> AdjointSolve(const OdeFn& f, const Tensor& y0,
                                         const std::vector<double>& times,
                                         const std::vector<Tensor>& params,
                                         const OdeOptions& options);

}  // namespace flowtape::ode::internal

#endif  // FLOWTAPE_ODE_ADJOINT_H_

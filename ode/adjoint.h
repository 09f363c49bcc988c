// Internal pieces of OdeSolve (ode/solve.h) shared by its .cc files:
// the value-only vector field of a tensor OdeFn, state <-> tensor copies and
// the continuous adjoint. T = float or double, the dtype of y0.
#ifndef FLOWTAPE_ODE_ADJOINT_H_
#define FLOWTAPE_ODE_ADJOINT_H_

#include <vector>

#include "absl/status/statusor.h"
#include "autodiff/tensor.h"
#include "ode/solve.h"
#include "ode/solver.h"

namespace flowtape::ode::internal {

// A constant tensor of `shape` and dtype T holding v[begin, begin + numel).
template <typename T>
Tensor StateTensor(const Shape& shape, const std::vector<T>& v,
                   size_t begin = 0);
// The values of a dtype-T tensor.
template <typename T>
std::vector<T> TensorState(const Tensor& t);

// f as a flat vector field, evaluated without recording (inside a TapeScope,
// so any tape work f does internally is dropped).
template <typename T>
VectorField<T> ValueField(const OdeFn& f, const Shape& shape);

// OdeSolve with Gradient::kAdjoint when recording is needed: one tape node
// [T, numel(y0)] whose backward rule runs the adjoint solve.
template <typename T>
absl::StatusOr<OdeSolution> AdjointSolve(const OdeFn& f, const Tensor& y0,
                                         const std::vector<double>& times,
                                         const std::vector<Tensor>& params,
                                         const OdeOptions& options);

}  // namespace flowtape::ode::internal

#endif  // FLOWTAPE_ODE_ADJOINT_H_

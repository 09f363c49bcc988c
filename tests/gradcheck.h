// Gradient checker for tests: analytic gradients (tape) against central finite
// differences, first and second order.
//
// CheckGradient(f, inputs): f maps tensors to a scalar tensor. For each input
// x_i compares Grad(f, x_i) with (f(x + h e_j) - f(x - h e_j)) / 2h, reporting
// the worst relative error max|a - n| / max(1, |n|).
// HessianVectorError(f, inputs): compares the create_graph double backward
// H v with (grad(x + h v) - grad(x - h v)) / 2h for a random v, and the
// create_graph gradient itself with (grad(x + h v) + grad(x - h v)) / 2 (the
// plain gradient at x to O(h^2); GradientError checks that one against f).
#ifndef FLOWTAPE_TESTS_GRADCHECK_H_
#define FLOWTAPE_TESTS_GRADCHECK_H_

#include <functional>
#include <string>
#include <vector>

#include "autodiff/tensor.h"

namespace flowtape::testing {

using ScalarFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Worst relative error of the first-order gradient over all inputs.
double GradientError(const ScalarFn& f, const std::vector<Tensor>& inputs,
                     double h = 1e-6);

// Worst relative error of Hessian-vector products (random direction, seed).
double HessianVectorError(const ScalarFn& f, const std::vector<Tensor>& inputs,
                          uint64_t seed = 7, double h = 1e-5);

}  // namespace flowtape::testing

#endif  // FLOWTAPE_TESTS_GRADCHECK_H_

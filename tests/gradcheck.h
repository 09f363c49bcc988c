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
// HessianVectorErrorWithParameters(f, inputs, params): the same jointly over
// a module's parameters (leaves f reads in place, nn::Module::Parameters())
// and the inputs: H v over (params, inputs) for a random v, against central
// differences of the first-order gradient with the parameters moved in
// place along v (and restored exactly). v has an N(0, 1) entry per
// parameter, so with hundreds of parameters the step along it, h |v|, is
// ~10x that of an input-only check: the default h is 10x smaller (on the
// torus and sphere flows' tests the worst error is 6e-7 at h = 1e-6, and
// 6e-5, from truncation, at h = 1e-5; rounding, ~1e-16 |g| / h, stays
// below).
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

// The same over (params, inputs); params must be float64 leaves.
double HessianVectorErrorWithParameters(const ScalarFn& f,
                                        const std::vector<Tensor>& inputs,
                                        const std::vector<Tensor>& params,
                                        uint64_t seed = 7, double h = 1e-6);

}  // namespace flowtape::testing

#endif  // FLOWTAPE_TESTS_GRADCHECK_H_

// Elementwise increasing maps with a numeric inverse: the shared machinery of
// the monotone families (dsf.h, sos_polynomial.h, bernstein.h, umnn.h), which
// give u = f(v; theta) and log f'(v; theta) in closed form (ops) and invert by
// root finding.
//
// Shapes as in elementwise.h: v, u [N, K], theta [N, K, P].
//   Forward:  u = f(v; theta),            logabsdet = log f'(v; theta)
//   Inverse:  v solves f(v; theta) = u,   logabsdet = -log f'(v; theta)
// The root is found on values, in float64 whatever the dtype: a bracket
// [lo, hi] with f(lo) <= u <= f(hi) is grown from [-1, 1] by doubling (at
// most 128 times, so |v| < 2^128), then safeguarded Newton (a Newton step
// leaving the bracket is replaced by bisection) until the step or the bracket
// is below 1e-15 (1 + |v|), at most 300 iterations; each iteration evaluates
// only the entries not yet solved (as a batch [m, 1]). Two Newton steps from
// the root are then recorded on the tape,
//   v <- v - (f(v; theta) - u) exp(-log f'(v; theta))
// (as in planar.h): the first makes dv/d(u, theta) the implicit-function
// derivative (1, -df/dtheta) / f', the second makes second derivatives exact
// too (Newton converges quadratically). A family whose log-derivative is
// not exactly that of its computed f (UMNN's quadrature) gets derivatives of
// the inverse exact up to that discrepancy.
//
// Failure is data, never an abort: an entry whose u or evaluation is not
// finite, or that has no bracket or no convergence, gets NaN value and
// log-det, and `status` (InvalidArgument) names the map, the first such entry
// and why.
#ifndef FLOWTAPE_FLOWS_MONOTONE_INVERSE_H_
#define FLOWTAPE_FLOWS_MONOTONE_INVERSE_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "autodiff/tensor.h"

namespace flowtape::flows {

struct MonotoneEval {
  Tensor value;     // [N, K]: f(v; theta)
  Tensor logderiv;  // [N, K]: log f'(v; theta)
};
// Evaluates an increasing map with ops (differentiable in v and theta, in
// their dtype).
using MonotoneMap =
    std::function<MonotoneEval(const Tensor& v, const Tensor& params)>;

struct MonotoneResult {
  Tensor value;      // [N, K]: u (forward) or v (inverse)
  Tensor logabsdet;  // [N, K]: log|d value / d input|
  absl::Status status;
};

// Forward: one evaluation. Inverse: the root finding above. `name` prefixes
// the status message.
MonotoneResult ApplyMonotone(const std::string& name, const MonotoneMap& f,
                             const Tensor& in, const Tensor& params,
                             bool inverse);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_MONOTONE_INVERSE_H_

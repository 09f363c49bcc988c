// Deep sigmoidal flow (Huang, Krueger, Lacoste & Courville 2018, "Neural
// Autoregressive Flows", eq. 8): the elementwise map of NAF, a sigmoid
// network with one hidden layer of H units, positive slopes and convex
// output weights, read back through the logit:
//   u = sigma^-1( sum_j w_j sigma(a_j v + b_j) ),   j = 1..H
//   a_j = softplus(pa_j + log(e - 1))    (> 0; 1 at pa_j = 0)
//   b_j = pb_j + c_j,  c_j = -2 + 4 (j - 1) / (H - 1)   (c = 0 if H = 1)
//   w = softmax(pw)
// theta per entry: [pa (H) | pb (H) | pw (H)], P = 3 H. The fixed offsets c
// spread the units over [-2, 2]: with a conditioner whose last layer starts
// at zero, identical units would get identical gradients forever and the
// map would stay one sigmoid, i.e. affine. So theta = 0 is not the identity
// but u = logit(mean_j sigma(v + c_j)), increasing with slope 1 in both
// tails.
//
// Evaluated in log space (x_j = a_j v + b_j, S = sum_j w_j sigma(x_j), and
// 1 - S = sum_j w_j sigma(-x_j)):
//   log S      = logsumexp_j(log w_j + log sigma(x_j))
//   log(1 - S) = logsumexp_j(log w_j + log sigma(-x_j))
//   u          = log S - log(1 - S)
//   log du/dv  = logsumexp_j(log w_j + log a_j + log sigma(x_j)
//                + log sigma(-x_j)) - log S - log(1 - S)
// exact, and finite for every finite v (no 1 - S cancellation). u runs over
// all of R (u ~ min_j a_j v as v -> +-inf), so the map is a bijection of R;
// its inverse is numeric (monotone_inverse.h). Direction and log-det as in
// elementwise.h; float32 or float64 (the input's dtype).
#ifndef FLOWTAPE_FLOWS_DSF_H_
#define FLOWTAPE_FLOWS_DSF_H_

#include <cstdint>

#include "absl/status/status.h"
#include "autodiff/tensor.h"
#include "flows/monotone_inverse.h"

namespace flowtape::flows {

struct DsfOptions {
  int64_t units = 8;  // H
  int64_t num_params() const { return 3 * units; }
  // InvalidArgument unless units >= 1.
  absl::Status Validate() const;
};

// The map and its log-derivative (v [N, K], params [N, K, 3H]).
MonotoneEval DsfEval(const Tensor& v, const Tensor& params,
                     const DsfOptions& options);
// Forward u = f(v) or the numeric inverse.
MonotoneResult Dsf(const Tensor& in, const Tensor& params,
                   const DsfOptions& options, bool inverse);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_DSF_H_

// Bernstein polynomial flow (Sick, Hothorn & Duerr 2021, "Deep transformation
// models"; Ramasinghe et al. 2021; Arpogaus et al. 2022, zuko's BPF): a
// degree-M polynomial in Bernstein form with increasing coefficients, which
// is then increasing, on [-B, B], continued by linear tails.
//   z = (v + B) / (2B) in [0, 1] for |v| <= B
//   u = sum_{k=0..M} beta_k b_{k,M}(z),  b_{k,M}(z) = C(M,k) z^k (1-z)^(M-k)
//   du/dv = (M / 2B) sum_{k=0..M-1} d_{k+1} b_{k,M-1}(z) > 0
//   beta_0 = -B + p_0,  beta_k = beta_{k-1} + d_k  (a cumulative softplus)
//   d_k = (2B / M) softplus(p_{k-1} + log(e - 1))   for k = 2..M-1
//   d_1 = d_2,  d_M = d_{M-1}
//   v < -B:  u = beta_0 + s_0 (v + B),  v > B:  u = beta_M + s_M (v - B),
//   s_0 = M d_1 / 2B, s_M = M d_M / 2B   (the end slopes)
// theta per entry: p = [p_0 | p_1 .. p_{M-2}], P = M - 1 (M >= 4). Tying the
// end differences (d_1 = d_2, d_M = d_{M-1}) makes the second derivative
// vanish at z = 0 and z = 1 (f'' ~ d_2 - d_1), so the map is C^2 across
// +-B. theta = 0 gives beta_k = -B + 2Bk/M, whose Bernstein polynomial is
// z -> -B + 2Bz: the identity everywhere.
// Ramasinghe et al. squash all of R into [0, 1] with a sigmoid; the
// polynomial's image (beta_0, beta_M) is then bounded, so a normal base
// sample would have no preimage. As in Arpogaus et al. and zuko, the squash
// here is affine on [-B, B] with linear tails, a bijection of R; its
// inverse is numeric (monotone_inverse.h; Newton is exact in the tails).
// Direction and log-det as in elementwise.h; float32 or float64.
#ifndef FLOWTAPE_FLOWS_BERNSTEIN_H_
#define FLOWTAPE_FLOWS_BERNSTEIN_H_

#include <cstdint>

#include "absl/status/status.h"
#include "autodiff/tensor.h"
#include "flows/monotone_inverse.h"

namespace flowtape::flows {

struct BernsteinOptions {
  int64_t degree = 10;  // M
  double bound = 4.0;   // B
  int64_t num_params() const { return degree - 1; }
  // InvalidArgument unless 4 <= degree <= 64 (below 4 the tied differences
  // leave only affine maps) and 0 < bound < inf.
  absl::Status Validate() const;
};

// The map and its log-derivative (v [N, K], params [N, K, M - 1]).
MonotoneEval BernsteinEval(const Tensor& v, const Tensor& params,
                           const BernsteinOptions& options);
// Forward u = f(v) or the numeric inverse.
MonotoneResult Bernstein(const Tensor& in, const Tensor& params,
                         const BernsteinOptions& options, bool inverse);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_BERNSTEIN_H_

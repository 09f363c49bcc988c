// Unconstrained monotonic neural network (Wehenkel & Louppe 2019,
// "Unconstrained Monotonic Neural Networks", eq. 1): an increasing map as the
// integral of a positive function that a small network gives, integrated by
// Clenshaw-Curtis quadrature.
//   u = b + integral_0^v g(t) dt
//   g(t) = softplus(h(t) + log(e - 1)) > 0,   (g = 1 where h = 0)
//   h(t) = d + sum_{j=1..H} c_j tanh((1 + pa_j) t + pb_j + o_j),
//   o_j = -2 + 4 (j - 1) / (H - 1)   (o = 0 if H = 1)
// theta per entry: [pa (H) | pb (H) | c (H) | d | b], P = 3 H + 2: the
// weights of the integrand's one-hidden-layer tanh network, per entry, from
// the conditioner (a hypernetwork, where UMNN's integrand net also reads the
// conditioner's embedding). theta = 0 is the identity (h = 0, g = 1); the
// fixed offsets o make the hidden units differ there, so they do not move in
// lockstep under a zero-initialised conditioner.
// UMNN's positive function is ELU(h) + 1, which is only C^1 at h = 0 and
// limits Clenshaw-Curtis to algebraic convergence; softplus is analytic, so
// the quadrature converges geometrically in the number of nodes.
//
// Quadrature: Clenshaw-Curtis with Q = n + 1 nodes (n = `intervals`, even;
// default 48, 49 nodes) on [-1, 1], mapped to [0, v]:
//   x_i = cos(i pi / n),  s_i = (1 + x_i) / 2,  i = 0..n
//   integral_0^v g(t) dt ~= v sum_i (w_i / 2) g(v s_i)
// with weights w_i (Waldvogel 2006; Trefethen's clencurt): w_0 = w_n =
// 1 / (n^2 - 1), and for 0 < i < n,
//   w_i = (2/n) (1 - sum_{j=1}^{n/2 - 1} 2 cos(2 j theta_i) / (4 j^2 - 1)
//                - cos(n theta_i) / (n^2 - 1)),   theta_i = i pi / n
// exact for polynomials of degree <= n. The integral is a sum of ops, so
// gradients through it (w.r.t. v and theta, any order) are exact for the
// computed u. The log-derivative is UMNN's:
//   log du/dv = log g(v)        (the integrand at v, not the quadrature's
//                                derivative: they differ by the quadrature
//                                error, < 1e-10 for the maps in the tests)
// u is onto R (g tends to positive constants in both tails), so the map is a
// bijection; its inverse is numeric (monotone_inverse.h, Newton with g).
// Direction and log-det as in elementwise.h; float32 or float64.
#ifndef FLOWTAPE_FLOWS_UMNN_H_
#define FLOWTAPE_FLOWS_UMNN_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "autodiff/tensor.h"
#include "flows/monotone_inverse.h"

namespace flowtape::flows {

struct UmnnOptions {
  int64_t units = 8;       // H
  int64_t intervals = 48;  // n: n + 1 Clenshaw-Curtis nodes
  int64_t num_params() const { return 3 * units + 2; }
  // InvalidArgument unless units >= 1 and intervals is even in [2, 1024].
  absl::Status Validate() const;
};

// Clenshaw-Curtis nodes x_i = cos(i pi / n) and weights on [-1, 1], n even.
struct Quadrature {
  std::vector<double> nodes, weights;
};
Quadrature ClenshawCurtis(int64_t n);

// The map and its log-derivative (v [N, K], params [N, K, 3H + 2]).
MonotoneEval UmnnEval(const Tensor& v, const Tensor& params,
                      const UmnnOptions& options);
// Forward u = f(v) or the numeric inverse.
MonotoneResult Umnn(const Tensor& in, const Tensor& params,
                    const UmnnOptions& options, bool inverse);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_UMNN_H_

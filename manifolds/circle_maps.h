// Circle maps: monotone diffeomorphisms of S^1 = [0, 2 pi) applied
// elementwise to angles (Rezende et al. 2020, "Normalizing flows on tori and
// spheres"). They are the elementwise maps of the flows on the
// torus (torus_flows.h) and of the azimuth in RecursiveSphereFlow.
//
// Shapes: theta, out [N, K] (angles; inputs are first wrapped to [0, 2 pi),
// outputs lie in [0, 2 pi)); params [N, K, P], dimension-major. Every map is
// g followed by a rotation, f(theta) = wrap(g(theta) + phi), where g is a
// lift with g(0) = 0, g(2 pi) = 2 pi, g' > 0, and phi (the last parameter)
// is free. Forward applies f; inverse applies f^-1. logabsdet [N, K] is
// log f'(theta) forward and log (f^-1)'(y) = -log f'(f^-1(y)) inverse.
// All-zero parameters give the identity.
//
// kMobius (components M, P = 3M): [v_x (M) | v_y (M) | logits (M-1) | phi].
//   w_j = v_j / sqrt(1 + |v_j|^2) (|w_j| < 1 always), written w = a + i b.
//   The Moebius map of the disk restricted to the circle,
//     h_w(z) = (1 - |w|^2) (z - w) / |z - w|^2 - w = (z - w) / (1 - conj(w) z),
//   maps 0 to arg h_w(1), not 0; the paper's fix subtracts that angle:
//     g_w(theta) = arg h_w(e^{i theta}) - arg h_w(1)
//                = theta - 2 arg(q(theta)) + 2 arg(q(0)),
//     q(theta) = 1 - conj(w) e^{i theta}
//              = (1 - a cos - b sin) + i (b cos - a sin),
//   smooth in theta (Re q > 0, so arg q is in (-pi/2, pi/2): no branch), and
//     g_w'(theta) = (1 - |w|^2) / |q(theta)|^2
//                 = (1 - |w|^2) / (1 - 2 (a cos + b sin) + |w|^2).
//   With rho = softmax(0, logits), g = sum_j rho_j g_{w_j} (a convex
//   combination of monotone lifts fixing 0 and 2 pi: one again).
//   Inverse, M = 1: h_w^-1 = h_{-w}; with c = arg h_w(1) = -2 arg(1 - w*)
//   (w* = conj(w)) and s = t + c,
//     theta = wrap(s - 2 arg(1 + w* e^{i s})).
//   Inverse, M > 1: bisection for g(theta) = t in double on [-1, 2 pi + 1]
//   (g is monotone on R with g(x + 2 pi) = g(x) + 2 pi), then two recorded
//   Newton steps (exact first and second derivatives w.r.t. t and the
//   parameters); a non-finite parameter or target, or a residual above
//   1e-8, sets the status (values NaN).
// kSpline (bins K, P = 3K + 1): [width logits (K) | height logits (K) |
//   derivative pre-activations (K) | phi]. The rational-quadratic spline of
//   flows/rq_spline.h on [0, 2 pi] (widths, heights and inner derivatives as
//   there, with B = pi and knots shifted by pi), except that the boundary
//   derivatives are one free value, delta_0 = delta_K = m_d + softplus(u_0 +
//   log(e^(1 - m_d) - 1)) (the first derivative pre-activation; u_1..u_(K-1)
//   are the inner knots'). Equal boundary derivatives make g' continuous
//   across theta = 0 = 2 pi: g is a C^1 circle diffeomorphism.
// float32 or float64: the result has theta's dtype (params must share it).
#ifndef FLOWTAPE_MANIFOLDS_CIRCLE_MAPS_H_
#define FLOWTAPE_MANIFOLDS_CIRCLE_MAPS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "autodiff/tensor.h"

namespace flowtape::manifolds {

enum class CircleMapKind { kMobius, kSpline };

struct CircleMapOptions {
  CircleMapKind kind = CircleMapKind::kSpline;
  int64_t components = 1;  // kMobius: M
  int64_t bins = 8;        // kSpline: K
  double min_bin_width = 1e-3;
  double min_bin_height = 1e-3;
  double min_derivative = 1e-3;
  // P, the parameters per entry: 3M (kMobius) or 3K + 1 (kSpline).
  int64_t params_per_entry() const;
  std::string name() const;  // "mobius" or "circle_spline"
  // InvalidArgument unless M >= 1 (kMobius), or K >= 2 and the minima are as
  // in RqSplineOptions::Validate (kSpline).
  absl::Status Validate() const;
};

struct CircleMapResult {
  Tensor value;         // [N, K] in [0, 2 pi)
  Tensor logabsdet;     // [N, K]
  absl::Status status;  // not ok: a bisection failed (values NaN)
};

// theta [N, K], params [N, K, P]; the options must be valid (FT_CHECK).
CircleMapResult ApplyCircleMap(const CircleMapOptions& options,
                               const Tensor& theta, const Tensor& params,
                               bool inverse);

}  // namespace flowtape::manifolds

#endif  // FLOWTAPE_MANIFOLDS_CIRCLE_MAPS_H_

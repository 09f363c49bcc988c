// Rational-quadratic spline (Durkan et al. 2019, "Neural Spline Flows"): the
// elementwise monotone bijection of neural spline flows, with linear
// (identity) tails outside [-B, B].
//
// K bins between knots (x_k, y_k), k = 0..K, with x_0 = y_0 = -B and
// x_K = y_K = B, and positive derivatives delta_k at the knots
// (delta_0 = delta_K = 1, so the spline joins the identity tails smoothly).
// Per element the 3K-1 unconstrained parameters are
//   [K width logits | K height logits | K-1 inner derivative pre-activations]
//   widths  w = 2B (m_w + (1 - K m_w) softmax(width logits)), m_w the minimum
//   heights h = 2B (m_h + (1 - K m_h) softmax(height logits))
//   delta_k = m_d + softplus(u_k + log(e^(1 - m_d) - 1))   (= 1 at u = 0)
// so all-zero parameters give the identity. In bin k, with s = h_k / w_k and
// xi = (x - x_k) / w_k in [0, 1]:
//   y  = y_k + h_k (s xi^2 + delta_k xi (1-xi)) / den,
//   den = s + (delta_k + delta_k+1 - 2 s) xi (1-xi)
//   dy/dx = s^2 (delta_k+1 xi^2 + 2 s xi (1-xi) + delta_k (1-xi)^2) / den^2
// The inverse takes the root of the quadratic a xi^2 + b xi + c = 0 with
//   a = h_k (s - delta_k) + (y - y_k) (delta_k + delta_k+1 - 2 s)
//   b = h_k delta_k - (y - y_k) (delta_k + delta_k+1 - 2 s)
//   c = -s (y - y_k),   xi = 2c / (-b - sqrt(b^2 - 4 a c))
// (the stable form of the root in [0, 1]).
//
// Everything is whole-tensor ops on [N, D] and [N, D, K] tensors (the bin
// search produces a constant one-hot selector), so gradients w.r.t. inputs and
// parameters, of any order, come from the tape. float32 or float64: the
// result has the input's dtype (params must share it).
#ifndef FLOWTAPE_FLOWS_RQ_SPLINE_H_
#define FLOWTAPE_FLOWS_RQ_SPLINE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "autodiff/tensor.h"

namespace flowtape::flows {

struct RqSplineOptions {
  int64_t bins = 8;
  double bound = 3.0;  // B
  double min_bin_width = 1e-3;
  double min_bin_height = 1e-3;
  double min_derivative = 1e-3;
  int64_t num_params() const { return 3 * bins - 1; }
  // OK iff bins >= 2 (one bin is the identity whatever its parameters),
  // 0 < bound < inf, 0 <= K * min_bin_width < 1, 0 <= K * min_bin_height < 1
  // and 0 < min_derivative < 1 (RqSpline aborts on invalid options).
  absl::Status Validate() const;
};

// Knot positions and derivatives, each [N, D, K+1].
struct RqKnots {
  Tensor x, y, derivative;
};
RqKnots RqSplineKnots(const Tensor& params, const RqSplineOptions& options);

struct RqSplineResult {
  Tensor value;      // [N, D]: y (forward) or x (inverse)
  Tensor logabsdet;  // [N, D]: log|d value / d input| per element
};
// input [N, D], params [N, D, 3K-1]. Forward maps x -> y; inverse y -> x.
RqSplineResult RqSpline(const Tensor& input, const Tensor& params,
                        const RqSplineOptions& options, bool inverse = false);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_RQ_SPLINE_H_

// Sum-of-squares polynomial flow (Jaini, Selby & Yu 2019, "Sum-of-Squares
// Polynomial Flow", eq. 9): the integral of a sum of R squared polynomials
// of degree L, a polynomial of degree 2L + 1 that is increasing because its
// derivative is a sum of squares. As in zuko's SOSPF, the polynomials are
// 1 + (free part) in the scaled variable s = t / B and averaged:
//   u = c + integral_0^v g(t) dt,   g(t) = (1/R) sum_{k=1..R} q_k(t / B)^2
//   q_k(s) = sum_{l=0..L} alpha_kl s^l,
//   alpha_kl = a_kl + [l = 0] + [l = 1] o_k,  o_k = -1/2 + (k - 1) / (R - 1)
//   (o = 0 if R = 1)
// theta per entry: [a (R x (L+1), row-major) | c], P = R (L + 1) + 1. In
// closed form, with x = v / B (|v| <= B under linear tails, below) and
// M_lm = sum_k alpha_kl alpha_km,
//   u          = c + (B / R) sum_{l,m} M_lm x^(l+m+1) / (l + m + 1)
//   log du/dv  = log g(v) = log((1/R) sum_k q_k(x)^2)        (exact)
// The fixed offsets o (in [-1/2, 1/2]) make the R squares differ when the
// conditioner's last layer starts at zero (identical squares would get
// identical gradients forever). theta = 0 is u = v + mean(o^2) v^3 / (3 B^2)
// (on [-B, B] under linear tails), the identity for R = 1.
// Linear tails (the default, `linear_tails`): the polynomial is used on
// [-B, B] only and continued affinely with its end slopes,
//   u(v) = u(+-B) + g(+-B) (v -+ B),   log du/dv = log g(+-B)   for +-v > B,
// so the map is C^1, grows linearly and its powers x^j have |x| <= 1. The
// bare polynomial grows like |v|^(2L+1): stacked layers compose the degrees
// (7^8 for eight degree-7 layers), so a point a little outside the data is
// sent to |v| ~ 1e6 after a few layers and the next layer's x^(2L+1)
// overflows float32 (u = inf, log g = inf, NaN losses and gradients).
// zuko's SOSPF bounds the inputs instead with a soft clip between layers,
// which leaves the flow's image bounded; the tails keep a bijection of R.
// g >= 0 vanishes only where every q_k does (the log-det is then -inf: a
// measure-zero set of parameters). u is onto R (tails of slope g(+-B) > 0;
// without them: odd degree, positive leading coefficient), so the map is a
// bijection; its inverse is numeric
// (monotone_inverse.h). Direction and log-det as in elementwise.h; float32
// or float64 (the input's dtype).
#ifndef FLOWTAPE_FLOWS_SOS_POLYNOMIAL_H_
#define FLOWTAPE_FLOWS_SOS_POLYNOMIAL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "autodiff/tensor.h"
#include "flows/monotone_inverse.h"

namespace flowtape::flows {

struct SosOptions {
  int64_t polynomials = 3;  // R
  int64_t degree = 3;       // L
  double scale = 4.0;       // B
  // Affine beyond +-B with the end slopes g(+-B) (see above); false: the
  // bare polynomial on all of R.
  bool linear_tails = true;
  int64_t num_params() const { return polynomials * (degree + 1) + 1; }
  // InvalidArgument unless polynomials >= 1, degree >= 0 and
  // 0 < scale < inf.
  absl::Status Validate() const;
};

// The map and its log-derivative (v [N, K], params [N, K, P]).
MonotoneEval SosEval(const Tensor& v, const Tensor& params,
                     const SosOptions& options);
// Forward u = f(v) or the numeric inverse.
MonotoneResult SosPolynomial(const Tensor& in, const Tensor& params,
                             const SosOptions& options, bool inverse);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_SOS_POLYNOMIAL_H_

// Elementwise bijections u = tau(v; theta): the transform that coupling
// layers (coupling.h) and autoregressive flows (autoregressive.h) share. Such
// a flow is a conditioner, which computes theta from the entries it may see,
// plus one of these maps applied to every transformed entry independently.
//
// Shapes: v, u [N, K]; theta [N, K, P], dimension-major (theta[n, k, :]
// belongs to entry k). tau is the normalizing direction (data -> base);
// `inverse` applies tau^-1. The result carries log|d out / d in| per entry,
// [N, K] (so the inverse's is minus the forward's at the same point).
//
//   kAdditive       P = 1, theta = t:       u = v + t, log-det 0
//                   (NICE, Dinh et al. 2014)
//   kAffine         P = 2, theta = (t, r):  u = v e^s + t,
//                   s = B tanh(r / B)       (B = scale_bound: a soft clamp
//                   of the log-scale; RealNVP, Dinh et al. 2017)
//   kAffineSigmoid  P = 2, theta = (t, r):  u = v e^s + t,
//                   s = log sigmoid(r + 2)  (scale in (0, 1): Glow, whose
//                   (v + t') sigmoid(r + 2) is this with t = t' e^s)
//   kAffineMaf      P = 2, theta = (mu, alpha): u = (v - mu) e^-alpha
//                   (unbounded; MAF, Papamakarios et al. 2017)
//   kSpline         P = 3 bins - 1: the rational-quadratic spline of
//                   rq_spline.h on [-B, B], identity tails (Durkan et al.
//                   2019)
// Monotone maps with a numeric inverse (monotone_inverse.h: bracketed
// Newton; a failed inverse sets ElementwiseResult::status):
//   kDsf            P = 3 units: deep sigmoidal flow, dsf.h (NAF, Huang et
//                   al. 2018)
//   kSos            P = R (L + 1) + 1: sum-of-squares polynomial,
//                   sos_polynomial.h (Jaini et al. 2019)
//   kBernstein      P = M - 1: Bernstein polynomial with linear tails,
//                   bernstein.h (Sick et al. 2021, Arpogaus et al. 2022)
//   kUmnn           P = 3 units + 2: integral of a positive network by
//                   Clenshaw-Curtis quadrature, umnn.h (Wehenkel & Louppe
//                   2019)
// theta = 0 is the identity for every kind but kAffineSigmoid (scale
// sigmoid(2) = 0.88), kDsf and kSos (whose fixed offsets break the symmetry
// of their units; see their headers). float32 or float64: the result has
// v's dtype.
#ifndef FLOWTAPE_FLOWS_ELEMENTWISE_H_
#define FLOWTAPE_FLOWS_ELEMENTWISE_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "autodiff/tensor.h"
#include "flows/bernstein.h"
#include "flows/dsf.h"
#include "flows/rq_spline.h"
#include "flows/sos_polynomial.h"
#include "flows/umnn.h"

namespace flowtape::flows {

enum class ElementwiseKind {
  kAdditive,
  kAffine,
  kAffineSigmoid,
  kAffineMaf,
  kSpline,
  kDsf,
  kSos,
  kBernstein,
  kUmnn
};

struct ElementwiseOptions {
  ElementwiseOptions() = default;
  explicit ElementwiseOptions(ElementwiseKind k) : kind(k) {}
  ElementwiseKind kind = ElementwiseKind::kAffine;
  double scale_bound = 3.0;    // kAffine: B
  RqSplineOptions spline;      // kSpline
  DsfOptions dsf;              // kDsf
  SosOptions sos;              // kSos
  BernsteinOptions bernstein;  // kBernstein
  UmnnOptions umnn;            // kUmnn
  // P, the parameters per entry.
  int64_t params_per_entry() const;
  // "additive", "affine", "affine_sigmoid", "affine_maf", "spline", "dsf",
  // "sos", "bernstein" or "umnn".
  std::string name() const;
  // InvalidArgument unless 0 < scale_bound < inf (kAffine) and the options
  // of the chosen kind's map are valid (kSpline, kDsf, kSos, kBernstein,
  // kUmnn).
  absl::Status Validate() const;
};

struct ElementwiseResult {
  ElementwiseResult(Tensor v, Tensor lad, absl::Status s = absl::OkStatus())
      : value(std::move(v)), logabsdet(std::move(lad)), status(std::move(s)) {}
  Tensor value;      // [N, K]: u (forward) or v (inverse)
  Tensor logabsdet;  // [N, K]: log|d value / d input| per entry
  // Not ok when a numeric inverse failed (its entries are then NaN).
  absl::Status status;
};

// in [N, K], params [N, K, P]; the options must be valid.
ElementwiseResult ApplyElementwise(const ElementwiseOptions& options,
                                   const Tensor& in, const Tensor& params,
                                   bool inverse);

}  // namespace flowtape::flows

#endif  // FLOWTAPE_FLOWS_ELEMENTWISE_H_

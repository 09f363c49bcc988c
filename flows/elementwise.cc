#include "flows/elementwise.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {
namespace {

// Parameter p of every entry, [N, K].
Tensor Param(const Tensor& params, int64_t p) {
  return Reshape(Narrow(params, 2, p, 1), {params.dim(0), params.dim(1)});
}

}  // namespace

int64_t ElementwiseOptions::params_per_entry() const {
  switch (kind) {
    case ElementwiseKind::kAdditive:
      return 1;
    case ElementwiseKind::kSpline:
      return spline.num_params();
    case ElementwiseKind::kDsf:
      return dsf.num_params();
    case ElementwiseKind::kSos:
      return sos.num_params();
    case ElementwiseKind::kBernstein:
      return bernstein.num_params();
    case ElementwiseKind::kUmnn:
      return umnn.num_params();
    default:
      return 2;
  }
}

std::string ElementwiseOptions::name() const {
  switch (kind) {
    case ElementwiseKind::kAdditive:
      return "additive";
    case ElementwiseKind::kAffine:
      return "affine";
    case ElementwiseKind::kAffineSigmoid:
      return "affine_sigmoid";
    case ElementwiseKind::kAffineMaf:
      return "affine_maf";
    case ElementwiseKind::kSpline:
      return "spline";
    case ElementwiseKind::kDsf:
      return "dsf";
    case ElementwiseKind::kSos:
      return "sos";
    case ElementwiseKind::kBernstein:
      return "bernstein";
    case ElementwiseKind::kUmnn:
      return "umnn";
  }
  return "?";
}

absl::Status ElementwiseOptions::Validate() const {
  if (kind == ElementwiseKind::kAffine &&
      !(scale_bound > 0 && std::isfinite(scale_bound)))
    return absl::InvalidArgumentError(
        absl::StrCat("elementwise affine: scale_bound = ", scale_bound,
                     " must be positive and finite"));
  switch (kind) {
    case ElementwiseKind::kSpline:
      return spline.Validate();
    case ElementwiseKind::kDsf:
      return dsf.Validate();
    case ElementwiseKind::kSos:
      return sos.Validate();
    case ElementwiseKind::kBernstein:
      return bernstein.Validate();
    case ElementwiseKind::kUmnn:
      return umnn.Validate();
    default:
      return absl::OkStatus();
  }
}

ElementwiseResult ApplyElementwise(const ElementwiseOptions& o,
                                   const Tensor& in, const Tensor& params,
                                   bool inverse) {
  FT_CHECK(in.rank() == 2 && params.rank() == 3 && params.dim(0) == in.dim(0) &&
               params.dim(1) == in.dim(1) &&
               params.dim(2) == o.params_per_entry(),
           "elementwise ", o.name(), ": input ", in.shape().ToString(),
           " with params ", params.shape().ToString(), " (want [N, K, ",
           o.params_per_entry(), "])");
  if (o.kind == ElementwiseKind::kSpline) {
    RqSplineResult r = RqSpline(in, params, o.spline, inverse);
    return {r.value, r.logabsdet};
  }
  MonotoneResult m;
  switch (o.kind) {
    case ElementwiseKind::kDsf:
      m = Dsf(in, params, o.dsf, inverse);
      return {m.value, m.logabsdet, m.status};
    case ElementwiseKind::kSos:
      m = SosPolynomial(in, params, o.sos, inverse);
      return {m.value, m.logabsdet, m.status};
    case ElementwiseKind::kBernstein:
      m = Bernstein(in, params, o.bernstein, inverse);
      return {m.value, m.logabsdet, m.status};
    case ElementwiseKind::kUmnn:
      m = Umnn(in, params, o.umnn, inverse);
      return {m.value, m.logabsdet, m.status};
    default:
      break;
  }
  Tensor t = Param(params, 0);
  if (o.kind == ElementwiseKind::kAdditive)
    return {inverse ? in - t : in + t, Tensor::Zeros(in.shape(), in.dtype())};
  Tensor r = Param(params, 1);
  if (o.kind == ElementwiseKind::kAffineMaf) {  // t = mu, r = alpha
    if (inverse) return {in * Exp(r) + t, r};
    Tensor neg_r = -r;
    return {(in - t) * Exp(neg_r), neg_r};
  }
  Tensor s = o.kind == ElementwiseKind::kAffine
                 ? o.scale_bound * Tanh(r * (1.0 / o.scale_bound))
                 : LogSigmoid(r + 2.0);
  if (inverse) {
    Tensor neg_s = -s;
    return {(in - t) * Exp(neg_s), neg_s};
  }
  return {in * Exp(s) + t, s};
}

}  // namespace flowtape::flows

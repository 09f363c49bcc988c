#include "flows/spline.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"

namespace flowtape::flows {

namespace {

absl::Status Validate(const SplineCouplingOptions& o) {
  bool hidden_ok = true;
  for (int64_t h : o.hidden) hidden_ok &= h >= 1;
  if (o.dim < 2 || (o.parity != 0 && o.parity != 1) || o.context_dim < 0 ||
      !hidden_ok)
    return absl::InvalidArgumentError(absl::StrCat(
        "spline_coupling: need dim >= 2, parity 0 or 1, context_dim >= 0 and "
        "hidden sizes >= 1; got dim ",
        o.dim, ", parity ", o.parity, ", context_dim ", o.context_dim,
        ", hidden [", absl::StrJoin(o.hidden, ", "), "]"));
  return ValidateRqSplineOptions(o.spline);
}

}  // namespace

absl::StatusOr<std::shared_ptr<SplineCoupling>> SplineCoupling::Create(
    const SplineCouplingOptions& options, Rng& rng) {
  if (absl::Status s = Validate(options); !s.ok()) return s;
  return std::make_shared<SplineCoupling>(options, rng);
}

SplineCoupling::SplineCoupling(const SplineCouplingOptions& options, Rng& rng)
    : options_(options) {
  absl::Status valid = Validate(options);
  FT_CHECK(valid.ok(), valid.message());
  const int64_t d = options.dim;
  id_size_ = d / 2;
  tr_size_ = d - id_size_;
  id_start_ = options.parity == 0 ? 0 : tr_size_;
  tr_start_ = options.parity == 0 ? id_size_ : 0;
  std::vector<int64_t> sizes = {id_size_ + options.context_dim};
  sizes.insert(sizes.end(), options.hidden.begin(), options.hidden.end());
  sizes.push_back(tr_size_ * options.spline.num_params());
  net_ = RegisterModule(
      "net", std::make_shared<nn::MLP>(sizes, options.activation, rng,
                                       /*zero_last=*/true));
}

FlowResult SplineCoupling::Apply(const Tensor& in, const Tensor& context,
                                 bool inverse) const {
  FT_CHECK(in.rank() == 2 && in.dim(1) == options_.dim, name(), ": input ",
           in.shape().ToString(), " for dim ", options_.dim);
  FT_CHECK(context.defined() == (options_.context_dim > 0), name(),
           ": context ", context.shape().ToString(), " but context_dim ",
           options_.context_dim);
  const int64_t n = in.dim(0);
  Tensor a = Narrow(in, 1, id_start_, id_size_);
  Tensor b = Narrow(in, 1, tr_start_, tr_size_);
  Tensor h = (*net_)(context.defined() ? Concat({a, context}, 1) : a);
  Tensor params = Reshape(h, {n, tr_size_, options_.spline.num_params()});
  RqSplineResult r = RqSpline(b, params, options_.spline, inverse);
  Tensor out =
      options_.parity == 0 ? Concat({a, r.value}, 1) : Concat({r.value, a}, 1);
  return {out, Sum(r.logabsdet, 1)};
}

FlowResult SplineCoupling::Forward(const Tensor& x,
                                   const Tensor& context, Rng* /*rng*/) const {
  return Apply(x, context, /*inverse=*/false);
}

FlowResult SplineCoupling::Inverse(const Tensor& z,
                                   const Tensor& context, Rng* /*rng*/) const {
  return Apply(z, context, /*inverse=*/true);
}

absl::StatusOr<std::shared_ptr<SplineAutoregressive>>
SplineAutoregressive::Create(const MadeOptions& made,
                             const RqSplineOptions& spline, Rng& rng,
                             bool inverted) {
  if (absl::Status s = ValidateRqSplineOptions(spline); !s.ok()) return s;
  if (absl::Status s = ValidateMadeOptions(WithParams(made, spline)); !s.ok())
    return s;
  return std::make_shared<SplineAutoregressive>(made, spline, rng, inverted);
}

SplineAutoregressive::SplineAutoregressive(MadeOptions made,
                                           const RqSplineOptions& spline,
                                           Rng& rng, bool inverted)
    : MadeAutoregressive(WithParams(made, spline), inverted, rng),
      spline_(spline) {
  absl::Status valid = ValidateRqSplineOptions(spline);
  FT_CHECK(valid.ok(), valid.message());
}

FlowResult SplineAutoregressive::Transform(const Tensor& in,
                                           const Tensor& params,
                                           bool inverse) const {
  RqSplineResult r = RqSpline(in, params, spline_, inverse);
  return {r.value, Sum(r.logabsdet, 1)};
}

}  // namespace flowtape::flows

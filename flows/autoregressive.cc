#include "flows/autoregressive.h"

#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"

namespace flowtape::flows {
namespace {

MadeOptions ForTransform(MadeOptions made, const ElementwiseOptions& t) {
  made.params_per_dim = t.params_per_entry();
  made.zero_last = true;
  return made;
}

}  // namespace

absl::Status AutoregressiveOptions::Validate() const {
  FT_RETURN_IF_ERROR(transform.Validate());
  return ForTransform(made, transform).Validate();
}

absl::StatusOr<std::shared_ptr<Autoregressive>> Autoregressive::Create(
    const AutoregressiveOptions& options, Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  FT_ASSIGN_OR_RETURN(
      std::shared_ptr<Made> made,
      Made::Create(ForTransform(options.made, options.transform), rng));
  return std::shared_ptr<Autoregressive>(
      new Autoregressive(options, std::move(made)));
}

Autoregressive::Autoregressive(const AutoregressiveOptions& options,
                               std::shared_ptr<Made> made)
    : o_(options), made_(RegisterModule("made", std::move(made))) {}

std::string Autoregressive::name() const {
  const char* suffix = o_.inverted ? "iaf" : "maf";
  if (o_.transform.kind == ElementwiseKind::kAffineMaf) return suffix;
  return o_.transform.name() + "_" + suffix;
}

Tensor Autoregressive::Params(const Tensor& v, const Tensor& context) const {
  Tensor h = (*made_)(v, context);
  return Reshape(h, {v.dim(0), made_->dim(), made_->params_per_dim()});
}

FlowResult Autoregressive::Transform(const Tensor& in, const Tensor& params,
                                     bool inverse) const {
  ElementwiseResult r = ApplyElementwise(o_.transform, in, params, inverse);
  FlowResult out(r.value, Sum(r.logabsdet, 1));
  out.status = r.status;
  return out;
}

FlowResult Autoregressive::OnePass(const Tensor& v,
                                   const Tensor& context) const {
  return Transform(v, Params(v, context), /*inverse=*/false);
}

FlowResult Autoregressive::SequentialPasses(const Tensor& u,
                                            const Tensor& context) const {
  FT_CHECK(u.rank() == 2 && u.dim(1) == made_->dim(), name(), ": input ",
           u.shape().ToString(), " for dim ", made_->dim());
  // After pass k the dimensions at positions <= k are exact, so after D passes
  // all are, and the last pass's parameters are those of the exact v_<i.
  Tensor v = Tensor::Zeros(u.shape(), u.dtype());
  FlowResult r;
  for (int64_t k = 0; k < made_->dim(); ++k) {
    r = Transform(u, Params(v, context), /*inverse=*/true);
    v = r.value;
  }
  return r;
}

FlowResult Autoregressive::Forward(const Tensor& x, const Tensor& context,
                                   Rng*) const {
  return o_.inverted ? SequentialPasses(x, context) : OnePass(x, context);
}

FlowResult Autoregressive::Inverse(const Tensor& z, const Tensor& context,
                                   Rng*) const {
  return o_.inverted ? OnePass(z, context) : SequentialPasses(z, context);
}

}  // namespace flowtape::flows

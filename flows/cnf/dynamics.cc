#include "flows/cnf/dynamics.h"

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"

namespace flowtape::flows::cnf {
namespace internal {

// h' = (h W + b) * sigmoid(u w_g + b_g) + u w_b; u [1, hyper_in] (shared by
// the batch) or [N, hyper_in], h [N, in].
class ConcatSquashLinear : public nn::Module {
 public:
  ConcatSquashLinear(int64_t in, int64_t out, Rng& rng, int64_t hyper_in) {
    layer_ =
        RegisterModule("layer", std::make_shared<nn::Linear>(in, out, rng));
    gate_ = RegisterModule("hyper_gate",
                           std::make_shared<nn::Linear>(hyper_in, out, rng));
    hyper_bias_ = RegisterModule(
        "hyper_bias",
        std::make_shared<nn::Linear>(hyper_in, out, rng, /*bias=*/false));
  }
  Tensor operator()(const Tensor& u, const Tensor& h) const {
    Tensor gate = Sigmoid((*gate_)(u)), shift = (*hyper_bias_)(u);
    if (u.dim(0) > 1) return (*layer_)(h)*gate + shift;  // per sample
    // u shared by the batch: the gate folds into the weights,
    // h' = h (W diag(g)) + (b g + c), so the batch sees one product and one
    // bias instead of three [N, out] passes (and its VJPs likewise).
    return MatMul(h, layer_->weight() * gate) + (layer_->bias() * gate + shift);
  }

 private:
  std::shared_ptr<nn::Linear> layer_, gate_, hyper_bias_;
};

}  // namespace internal

namespace {

absl::Status CheckSizes(const char* who, int64_t dim,
                        const std::vector<int64_t>& hidden,
                        int64_t context_dim) {
  if (dim < 1)
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": dim must be >= 1, got ", dim));
  for (int64_t h : hidden)
    if (h < 1)
      return absl::InvalidArgumentError(
          absl::StrCat(who, ": hidden widths must be >= 1, got ", h));
  if (context_dim < 0)
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": context_dim must be >= 0, got ", context_dim));
  return absl::OkStatus();
}

void CheckInputs(const char* op, const Tensor& t, const Tensor& z, int64_t dim,
                 const Tensor& context, int64_t context_dim) {
  FT_CHECK(t.numel() == 1, op, ": t must be a scalar, got ",
           t.shape().ToString());
  FT_CHECK(z.rank() == 2 && z.dim(1) == dim, op, ": z ", z.shape().ToString(),
           " vs dim ", dim);
  if (context_dim == 0) {
    FT_CHECK(!context.defined(), op, ": context ", context.shape().ToString(),
             " given to unconditional dynamics");
  } else {
    FT_CHECK(context.defined() && context.rank() == 2 &&
                 context.dim(0) == z.dim(0) && context.dim(1) == context_dim,
             op, ": context ",
             context.defined() ? context.shape().ToString() : "undefined",
             " vs [", z.dim(0), ", ", context_dim, "]");
  }
}

// t as a [n, 1] column (differentiable in t).
Tensor TimeColumn(const Tensor& t, int64_t n) {
  return BroadcastTo(Reshape(t, {1, 1}), Shape({n, 1}));
}

}  // namespace

Tensor CnfDynamics::operator()(const Tensor& t, const Tensor& z,
                               const Tensor& context) const {
  FT_CHECK(!context.defined(), "cnf dynamics: this net takes no context");
  FT_CHECK(!t.requires_grad(),
           "cnf dynamics: a differentiable t (learnable T) needs an override "
           "of operator()(Tensor t, z, context)");
  return (*this)(t.item(), z);
}

absl::StatusOr<std::shared_ptr<TimeMlp>> TimeMlp::Create(
    int64_t dim, const std::vector<int64_t>& hidden, nn::Activation act,
    Rng& rng, int64_t context_dim) {
  FT_RETURN_IF_ERROR(CheckSizes("time_mlp", dim, hidden, context_dim));
  return std::shared_ptr<TimeMlp>(
      new TimeMlp(dim, hidden, act, rng, context_dim));
}

TimeMlp::TimeMlp(int64_t dim, const std::vector<int64_t>& hidden,
                 nn::Activation act, Rng& rng, int64_t context_dim)
    : dim_(dim), context_dim_(context_dim) {
  std::vector<int64_t> sizes{dim + 1 + context_dim};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(dim);
  mlp_ = RegisterModule("mlp", std::make_shared<nn::MLP>(sizes, act, rng));
}

Tensor TimeMlp::operator()(double t, const Tensor& z) const {
  FT_CHECK(z.rank() == 2 && z.dim(1) == dim_, "time_mlp: z ",
           z.shape().ToString(), " vs dim ", dim_);
  FT_CHECK(context_dim_ == 0, "time_mlp: conditional net called without ",
           "its context");
  return (*mlp_)(Concat({z, Tensor::Full({z.dim(0), 1}, t, z.dtype())}, 1));
}

Tensor TimeMlp::operator()(const Tensor& t, const Tensor& z,
                           const Tensor& context) const {
  CheckInputs("time_mlp", t, z, dim_, context, context_dim_);
  std::vector<Tensor> in{z, TimeColumn(t, z.dim(0))};
  if (context.defined()) in.push_back(context);
  return (*mlp_)(Concat(in, 1));
}

absl::StatusOr<std::shared_ptr<ConcatSquashNet>> ConcatSquashNet::Create(
    int64_t dim, const std::vector<int64_t>& hidden, nn::Activation act,
    Rng& rng, int64_t context_dim) {
  FT_RETURN_IF_ERROR(CheckSizes("concat_squash", dim, hidden, context_dim));
  return std::shared_ptr<ConcatSquashNet>(
      new ConcatSquashNet(dim, hidden, act, rng, context_dim));
}

ConcatSquashNet::ConcatSquashNet(int64_t dim,
                                 const std::vector<int64_t>& hidden,
                                 nn::Activation act, Rng& rng,
                                 int64_t context_dim)
    : dim_(dim), context_dim_(context_dim), act_(act) {
  std::vector<int64_t> sizes{dim};
  sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(dim);
  for (size_t i = 0; i + 1 < sizes.size(); ++i)
    layers_.push_back(
        RegisterModule(absl::StrCat("layer", i),
                       std::make_shared<internal::ConcatSquashLinear>(
                           sizes[i], sizes[i + 1], rng, 1 + context_dim)));
}

Tensor ConcatSquashNet::operator()(double t, const Tensor& z) const {
  FT_CHECK(context_dim_ == 0, "concat_squash: conditional net called ",
           "without its context");
  return (*this)(Tensor::Full({1, 1}, t, z.dtype()), z, Tensor());
}

Tensor ConcatSquashNet::operator()(const Tensor& t, const Tensor& z,
                                   const Tensor& context) const {
  CheckInputs("concat_squash", t, z, dim_, context, context_dim_);
  Tensor u = t.rank() == 2 ? t : Reshape(t, {1, 1});
  if (context.defined()) u = Concat({TimeColumn(t, z.dim(0)), context}, 1);
  Tensor h = z;
  for (size_t i = 0; i < layers_.size(); ++i) {
    h = (*layers_[i])(u, h);
    if (i + 1 < layers_.size()) h = nn::Apply(act_, h);
  }
  return h;
}

}  // namespace flowtape::flows::cnf

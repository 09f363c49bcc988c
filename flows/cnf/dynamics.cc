#include "flows/cnf/dynamics.h"

#include <algorithm>

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
    layer_ = RegisterModule("layer", nn::Linear::Create(in, out, rng).value());
    gate_ = RegisterModule("hyper_gate",
                           nn::Linear::Create(hyper_in, out, rng).value());
    hyper_bias_ = RegisterModule(
        "hyper_bias",
        nn::Linear::Create(hyper_in, out, rng, /*bias=*/false).value());
  }
  Tensor operator()(const Tensor& u, const Tensor& h) const {
    if (u.dim(0) > 1)  // per-sample u
      return (*layer_)(h)*Sigmoid((*gate_)(u)) + (*hyper_bias_)(u);
    // u shared by the batch: the gate folds into the weights,
    // h' = h (W diag(g)) + (b g + c), so the batch sees one product and one
    // bias instead of three [N, out] passes (and its VJPs likewise).
    Tensor w, b;
    Fold(u, &w, &b);
    return Affine(h, w, b);
  }
  // The folded weight W diag(g) [in, out] and bias b g + c [1, out] for a
  // u [1, hyper_in] shared by the batch.
  void Fold(const Tensor& u, Tensor* w, Tensor* b) const {
    Tensor gate = Sigmoid((*gate_)(u));
    *w = layer_->weight() * gate;
    *b = layer_->bias() * gate + (*hyper_bias_)(u);
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
  FT_CHECK(t.numel() == 1 ||
               (t.rank() == 2 && t.dim(0) == z.dim(0) && t.dim(1) == 1),
           op, ": t must be a scalar or [N, 1] for z ", z.shape().ToString(),
           ", got ", t.shape().ToString());
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

bool HasDerivative(nn::Activation act) {
  return act == nn::Activation::kTanh || act == nn::Activation::kSigmoid ||
         act == nn::Activation::kSoftplus || act == nn::Activation::kRelu;
}

// sigma'(a) from the pre-activation a and h = sigma(a), differentiable, for
// the activations HasDerivative accepts.
Tensor ActivationDerivative(nn::Activation act, const Tensor& a,
                            const Tensor& h) {
  switch (act) {
    case nn::Activation::kTanh:
      return 1.0 - Square(h);
    case nn::Activation::kSigmoid:
      return h * (1.0 - h);
    case nn::Activation::kSoftplus:
      return Sigmoid(a);
    default:  // kRelu
      return Step(a);
  }
}

// t (a scalar, or already per-sample [n, 1]) as a [n, 1] column
// (differentiable in t).
Tensor TimeColumn(const Tensor& t, int64_t n) {
  if (t.rank() == 2 && t.dim(0) == n && t.numel() == n) return t;
  return BroadcastTo(Reshape(t, {1, 1}), Shape({n, 1}));
}

}  // namespace

Tensor CnfDynamics::ValueAndTrace(const Tensor&, const Tensor&, const Tensor&,
                                  Tensor*) const {
  FT_CHECK(false, "cnf dynamics: no closed-form trace");
  return Tensor();
}

Tensor CnfDynamics::operator()(const Tensor& t, const Tensor& z,
                               const Tensor& context) const {
  FT_CHECK(!context.defined(), "cnf dynamics: this net takes no context");
  FT_CHECK(t.numel() == 1,
           "cnf dynamics: per-sample times [N, 1] need an override of "
           "operator()(Tensor t, z, context), got t ",
           t.shape().ToString());
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
  mlp_ = RegisterModule("mlp", nn::MLP::Create(sizes, act, rng).value());
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

void ConcatSquashNet::ZeroOutput() {
  for (const auto& [name, p] : layers_.back()->NamedParameters()) {
    if (name.rfind("hyper_gate", 0) == 0) continue;
    Tensor value = p;
    VisitDType(value.dtype(), [&](auto zero) {
      using T = decltype(zero);
      std::fill_n(value.mutable_data<T>(), value.numel(), T(0));
    });
  }
}

bool ConcatSquashNet::has_closed_form_trace() const {
  return context_dim_ == 0 && layers_.size() <= 3 && HasDerivative(act_);
}

Tensor ConcatSquashNet::ValueAndTrace(const Tensor& t, const Tensor& z,
                                      const Tensor& context,
                                      Tensor* trace) const {
  FT_CHECK(has_closed_form_trace(),
           "concat_squash: no closed-form trace for this net");
  const size_t num = layers_.size();
  CheckInputs("concat_squash", t, z, dim_, context, context_dim_);
  FT_CHECK(t.numel() == 1, "concat_squash: the closed-form trace takes one ",
           "t for the batch, got ", t.shape().ToString());
  Tensor u = Reshape(t, {1, 1});
  std::vector<Tensor> w(num), slope;  // A_l; S_l
  Tensor h = z;
  for (size_t i = 0; i < num; ++i) {
    Tensor b;
    layers_[i]->Fold(u, &w[i], &b);
    Tensor a = Affine(h, w[i], b);
    if (i + 1 == num) {
      h = a;
      break;
    }
    h = nn::Apply(act_, a);
    slope.push_back(ActivationDerivative(act_, a, h));
  }
  const int64_t n = z.dim(0);
  if (num == 1) {
    Tensor tr = Sum(w[0] * Tensor::Eye(dim_, z.dtype()));
    *trace = BroadcastTo(Reshape(tr, {1, 1}), Shape({n, 1}));
  } else if (num == 2) {
    const int64_t h1 = w[0].dim(1);
    Tensor diag = Sum(MatMul(w[1], w[0]) * Tensor::Eye(h1, z.dtype()), 1, true);
    *trace = MatMul(slope[0], diag);
  } else {
    Tensor m = w[1] * Transpose(MatMul(w[2], w[0]));  // [h1, h2]
    *trace = Sum(slope[0] * MatMulT(slope[1], m, false, true), 1, true);
  }
  return h;
}

Tensor ConcatSquashNet::operator()(const Tensor& t, const Tensor& z,
                                   const Tensor& context) const {
  CheckInputs("concat_squash", t, z, dim_, context, context_dim_);
  // u [1, 1] shared by the batch, or [N, 1 (+ K)] per sample.
  Tensor u = t.numel() == 1 ? Reshape(t, {1, 1}) : t;
  if (context.defined()) u = Concat({TimeColumn(t, z.dim(0)), context}, 1);
  Tensor h = z;
  for (size_t i = 0; i < layers_.size(); ++i) {
    h = (*layers_[i])(u, h);
    if (i + 1 < layers_.size()) h = nn::Apply(act_, h);
  }
  return h;
}

}  // namespace flowtape::flows::cnf

#include "flows/coupling.h"

#include "absl/strings/str_cat.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "flows/scaling.h"
#include "flows/sequential.h"

namespace flowtape::flows {
namespace {
bool Contiguous(const std::vector<int64_t>& idx) {
  for (size_t i = 1; i < idx.size(); ++i)
    if (idx[i] != idx[0] + static_cast<int64_t>(i)) return false;
  return true;
}
}  // namespace

int ParamsPerFeature(CouplingKind kind) {
  return kind == CouplingKind::kAdditive ? 1 : 2;
}

Tensor LogScale(CouplingKind kind, const Tensor& raw, double scale_bound) {
  switch (kind) {
    case CouplingKind::kAffineTanh:
      return scale_bound * Tanh(raw * (1.0 / scale_bound));
    case CouplingKind::kAffineSigmoid:
      return LogSigmoid(raw + 2.0);
    case CouplingKind::kAdditive:
      break;
  }
  FT_CHECK(false, "coupling: additive coupling has no scale");
  return Tensor();
}

std::vector<bool> HalfMask(int64_t d, bool flip) {
  std::vector<bool> m(d);
  for (int64_t i = 0; i < d; ++i) m[i] = (i < (d + 1) / 2) != flip;
  return m;
}

std::vector<bool> ParityMask(int64_t d, bool flip) {
  std::vector<bool> m(d);
  for (int64_t i = 0; i < d; ++i) m[i] = (i % 2 == 0) != flip;
  return m;
}

Coupling::Coupling(std::vector<bool> identity_mask, Net net, CouplingKind kind,
                   int64_t context_dim, double scale_bound)
    : net_(std::move(net)),
      kind_(kind),
      dim_(static_cast<int64_t>(identity_mask.size())),
      context_dim_(context_dim),
      scale_bound_(scale_bound) {
  FT_CHECK(net_.module != nullptr, "coupling: null conditioner");
  FT_CHECK(scale_bound > 0, "coupling: scale_bound must be positive, got ",
           scale_bound);
  RegisterModule("net", net_.module);
  for (int64_t i = 0; i < dim_; ++i) (identity_mask[i] ? a_ : b_).push_back(i);
  FT_CHECK(!a_.empty() && !b_.empty(), "coupling: mask of ", dim_,
           " features must keep at least one and transform at least one");
  merge_.resize(dim_);
  for (size_t i = 0; i < a_.size(); ++i) merge_[a_[i]] = i;
  for (size_t i = 0; i < b_.size(); ++i) merge_[b_[i]] = a_.size() + i;
  a_contiguous_ = Contiguous(a_);
  b_contiguous_ = Contiguous(b_);
  // Cheapest reassembly of [z_a, z_b] into the original feature order.
  merge_kind_ = Merge::kGather;
  if (a_contiguous_ && b_contiguous_)
    merge_kind_ = a_[0] == 0 ? Merge::kAB : Merge::kBA;
}

std::string Coupling::name() const {
  return kind_ == CouplingKind::kAdditive ? "additive_coupling"
                                          : "affine_coupling";
}

Tensor Coupling::Gather(const Tensor& x, const std::vector<int64_t>& idx,
                        bool contiguous) const {
  return contiguous ? Narrow(x, 1, idx[0], static_cast<int64_t>(idx.size()))
                    : IndexSelect(x, 1, idx);
}

FlowResult Coupling::Apply(const Tensor& x, const Tensor& context,
                           bool inverse) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == dim_, name(), ": input ",
           x.shape().ToString(), " vs ", dim_, " features");
  FT_CHECK(context_dim_ == 0 ? !context.defined()
                             : context.defined() && context.rank() == 2 &&
                                   context.dim(1) == context_dim_,
           name(), ": context ", context.shape().ToString(), " vs context_dim ",
           context_dim_);
  const int64_t n = x.dim(0), nb = static_cast<int64_t>(b_.size());
  Tensor xa = Gather(x, a_, a_contiguous_), xb = Gather(x, b_, b_contiguous_);
  Tensor h = net_(WithContext(xa, context));
  FT_CHECK(h.rank() == 2 && h.dim(0) == n &&
               h.dim(1) == ParamsPerFeature(kind_) * nb,
           name(), ": conditioner output ", h.shape().ToString(), ", want [", n,
           ", ", ParamsPerFeature(kind_) * nb, "]");
  Tensor zb, logdet;
  if (kind_ == CouplingKind::kAdditive) {
    zb = inverse ? xb - h : xb + h;
    logdet = Tensor::Zeros({n});
  } else {
    Tensor t = Narrow(h, 1, 0, nb);
    Tensor log_s = LogScale(kind_, Narrow(h, 1, nb, nb), scale_bound_);
    zb = inverse ? (xb - t) * Exp(-log_s) : xb * Exp(log_s) + t;
    logdet = Sum(log_s, 1);
    if (inverse) logdet = -logdet;
  }
  switch (merge_kind_) {
    case Merge::kAB:
      return {Concat({xa, zb}, 1), logdet};
    case Merge::kBA:
      return {Concat({zb, xa}, 1), logdet};
    case Merge::kGather:
      break;
  }
  return {IndexSelect(Concat({xa, zb}, 1), 1, merge_), logdet};
}

FlowResult Coupling::Forward(const Tensor& x, const Tensor& context, Rng* /*rng*/) const {
  return Apply(x, context, /*inverse=*/false);
}

FlowResult Coupling::Inverse(const Tensor& z, const Tensor& context, Rng* /*rng*/) const {
  return Apply(z, context, /*inverse=*/true);
}

std::shared_ptr<Coupling> MlpCoupling(std::vector<bool> identity_mask,
                                      const std::vector<int64_t>& hidden,
                                      CouplingKind kind, Rng& rng,
                                      int64_t context_dim, nn::Activation act) {
  int64_t na = 0;
  for (bool m : identity_mask) na += m;
  const int64_t nb = static_cast<int64_t>(identity_mask.size()) - na;
  Net net =
      MlpNet(na + context_dim, hidden, ParamsPerFeature(kind) * nb, rng, act);
  return std::make_shared<Coupling>(std::move(identity_mask), std::move(net),
                                    kind, context_dim);
}

std::shared_ptr<Flow> RealNvp(int64_t d, int layers,
                              const std::vector<int64_t>& hidden, Rng& rng,
                              int64_t context_dim) {
  auto s = std::make_shared<Sequential>();
  for (int i = 0; i < layers; ++i)
    s->Add(MlpCoupling(HalfMask(d, i % 2 == 1), hidden,
                       CouplingKind::kAffineTanh, rng, context_dim));
  return s;
}

std::shared_ptr<Flow> Nice(int64_t d, int layers,
                           const std::vector<int64_t>& hidden, Rng& rng,
                           int64_t context_dim) {
  auto s = std::make_shared<Sequential>();
  for (int i = 0; i < layers; ++i)
    s->Add(MlpCoupling(HalfMask(d, i % 2 == 1), hidden, CouplingKind::kAdditive,
                       rng, context_dim));
  s->Add(std::make_shared<Scaling>(Shape({d})));
  return s;
}

}  // namespace flowtape::flows

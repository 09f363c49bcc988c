#include "flows/coupling.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"

namespace flowtape::flows {
namespace {

bool Contiguous(const std::vector<int64_t>& idx) {
  for (size_t i = 1; i < idx.size(); ++i)
    if (idx[i] != idx[0] + static_cast<int64_t>(i)) return false;
  return true;
}

Tensor Gather(const Tensor& x, const std::vector<int64_t>& idx,
              bool contiguous) {
  return contiguous ? Narrow(x, 1, idx[0], static_cast<int64_t>(idx.size()))
                    : IndexSelect(x, 1, idx);
}

}  // namespace

absl::Status CouplingOptions::Validate() const {
  auto bad = [](auto... msg) {
    return absl::InvalidArgumentError(absl::StrCat("coupling: ", msg...));
  };
  bool sizes_ok = event.rank() == 1 || event.rank() == 3;
  for (int i = 0; sizes_ok && i < event.rank(); ++i) sizes_ok = event[i] >= 1;
  if (!sizes_ok)
    return bad("event ", event.ToString(), " must be [D] or [C, H, W]");
  if (mask == CouplingMask::kCheckerboard) {
    if (event.rank() != 3 || event[1] * event[2] < 2)
      return bad(
          "a checkerboard mask needs an image [C, H, W] of >= 2 "
          "pixels, got event ",
          event.ToString());
  } else if (event[0] < 2) {
    return bad("event ", event.ToString(),
               " has fewer than 2 entries on axis 1 to split");
  }
  bool hidden_ok = !hidden.empty();
  for (int64_t h : hidden) hidden_ok &= h >= 1;
  if (!hidden_ok)
    return bad("need at least one hidden size, all >= 1; got [",
               absl::StrJoin(hidden, ", "), "]");
  if (context_dim < 0) return bad("context_dim = ", context_dim, " < 0");
  return transform.Validate();
}

absl::StatusOr<std::shared_ptr<Coupling>> Coupling::Create(
    const CouplingOptions& options, Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<Coupling>(new Coupling(options, rng));
}

Coupling::Coupling(const CouplingOptions& o, Rng& rng) : o_(o) {
  const int64_t p = o.transform.params_per_entry(), k = o.context_dim;
  const bool image = o.event.rank() == 3;
  if (o.mask == CouplingMask::kCheckerboard) {
    const int64_t c = o.event[0], h = o.event[1], w = o.event[2];
    std::vector<double> m(h * w);
    for (int64_t i = 0; i < h * w; ++i)
      m[i] = ((i / w + i % w) % 2 == 0) != o.flip ? 1.0 : 0.0;
    pixel_mask_ = RegisterBuffer("pixel_mask", Tensor::FromVector({h, w}, m));
    merge_kind_ = Merge::kPixels;
    net_ = ConvNet(c + k, o.hidden, c * p, rng, o.activation);
  } else {
    const int64_t n = o.event[0];
    for (int64_t i = 0; i < n; ++i) {
      const bool pass =
          o.mask == CouplingMask::kHalf ? i < (n + 1) / 2 : i % 2 == 0;
      (pass != o.flip ? a_ : b_).push_back(i);
    }
    merge_.resize(n);
    for (size_t i = 0; i < a_.size(); ++i) merge_[a_[i]] = i;
    for (size_t i = 0; i < b_.size(); ++i) merge_[b_[i]] = a_.size() + i;
    // Cheapest reassembly of [z_a, z_b] into the original order.
    merge_kind_ = Merge::kGather;
    if (Contiguous(a_) && Contiguous(b_))
      merge_kind_ = a_[0] == 0 ? Merge::kAB : Merge::kBA;
    const int64_t na = a_.size(), nb = b_.size();
    net_ = image ? ConvNet(na + k, o.hidden, nb * p, rng, o.activation)
                 : MlpNet(na + k, o.hidden, nb * p, rng, o.activation);
  }
  RegisterModule("conditioner", net_.module);
}

std::string Coupling::name() const { return o_.transform.name() + "_coupling"; }

Tensor Coupling::Params(const Tensor& h, int64_t k) const {
  const int64_t n = h.dim(0), p = o_.transform.params_per_entry();
  if (h.rank() == 2) return Reshape(h, {n, k, p});
  const int64_t hw = h.dim(2) * h.dim(3);
  if (p == 1) return Reshape(h, {n, k * hw, 1});
  // [N, k P, H, W] -> [N, k, P, HW] -> [N, k, HW, P] -> [N, k HW, P].
  Tensor t = Permute(Reshape(h, {n, k, p, hw}), {0, 1, 3, 2});
  return Reshape(t, {n, k * hw, p});
}

FlowResult Coupling::Apply(const Tensor& x, const Tensor& context,
                           bool inverse) const {
  bool shape_ok = x.rank() == o_.event.rank() + 1;
  for (int i = 0; shape_ok && i < o_.event.rank(); ++i)
    shape_ok = x.dim(i + 1) == o_.event[i];
  FT_CHECK(shape_ok, name(), ": input ", x.shape().ToString(), " for event ",
           o_.event.ToString());
  FT_CHECK(o_.context_dim == 0 ? !context.defined()
                               : context.defined() && context.rank() == 2 &&
                                     context.dim(1) == o_.context_dim,
           name(), ": context ", context.shape().ToString(), " vs context_dim ",
           o_.context_dim);
  const int64_t n = x.dim(0), p = o_.transform.params_per_entry();
  if (merge_kind_ == Merge::kPixels) {
    const int64_t c = o_.event[0];
    Tensor h = net_(WithContext(x * pixel_mask_, context));
    FT_CHECK(h.shape() == Shape({n, c * p, x.dim(2), x.dim(3)}), name(),
             ": conditioner output ", h.shape().ToString());
    ElementwiseResult r = ApplyElementwise(o_.transform, Reshape(x, {n, -1}),
                                           Params(h, c), inverse);
    Tensor lad = Where(pixel_mask_, Tensor::Zeros({}, x.dtype()),
                       Reshape(r.logabsdet, x.shape().dims()));
    FlowResult out(Where(pixel_mask_, x, Reshape(r.value, x.shape().dims())),
                   Sum(Reshape(lad, {n, -1}), 1));
    out.status = r.status;
    return out;
  }
  const bool contiguous = merge_kind_ != Merge::kGather;
  Tensor xa = Gather(x, a_, contiguous), xb = Gather(x, b_, contiguous);
  Tensor h = net_(WithContext(xa, context));
  const int64_t nb = b_.size(), kb = xb.numel() / n;
  FT_CHECK(h.rank() == x.rank() && h.dim(0) == n && h.dim(1) == nb * p, name(),
           ": conditioner output ", h.shape().ToString(), " for ", nb,
           " transformed entries of ", p, " parameters");
  ElementwiseResult r = ApplyElementwise(o_.transform, Reshape(xb, {n, kb}),
                                         Params(h, nb), inverse);
  Tensor zb = Reshape(r.value, xb.shape().dims());
  FlowResult out;
  out.logdet = Sum(r.logabsdet, 1);
  out.status = r.status;
  switch (merge_kind_) {
    case Merge::kAB:
      out.value = Concat({xa, zb}, 1);
      break;
    case Merge::kBA:
      out.value = Concat({zb, xa}, 1);
      break;
    default:
      out.value = IndexSelect(Concat({xa, zb}, 1), 1, merge_);
  }
  return out;
}

FlowResult Coupling::Forward(const Tensor& x, const Tensor& context,
                             Rng*) const {
  return Apply(x, context, /*inverse=*/false);
}

FlowResult Coupling::Inverse(const Tensor& z, const Tensor& context,
                             Rng*) const {
  return Apply(z, context, /*inverse=*/true);
}

}  // namespace flowtape::flows

#include "flows/made.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "autodiff/check.h"
#include "autodiff/ops.h"
#include "autodiff/status_macros.h"

namespace flowtape::flows {
namespace {

std::vector<int64_t> MakeOrder(const MadeOptions& o, Rng& rng) {
  const int64_t d = o.dim;
  if (!o.order.empty()) return o.order;  // a permutation (validated)
  std::vector<int64_t> ord(d);
  std::iota(ord.begin(), ord.end(), 1);
  if (o.ordering == Ordering::kReversed) std::reverse(ord.begin(), ord.end());
  if (o.ordering == Ordering::kRandom) rng.Shuffle(ord);
  return ord;
}

// Degrees of one hidden layer of `n` units given the previous layer's minimum.
// Degree 0 units see no input (only the context, if any).
std::vector<int64_t> HiddenLayerDegrees(int64_t n, int64_t d, int64_t min_deg,
                                        int64_t prev_min, HiddenDegrees kind,
                                        Rng& rng) {
  const int64_t hi = d - 1;
  const int64_t lo = std::min(std::max(prev_min, min_deg), hi);
  std::vector<int64_t> m(n);
  for (int64_t k = 0; k < n; ++k)
    m[k] = kind == HiddenDegrees::kSequential
               ? std::min(min_deg, hi) + k % (hi - std::min(min_deg, hi) + 1)
               : lo + rng.UniformInt(hi - lo + 1);
  return m;
}

// mask[a, b] = 1 iff allowed(in_deg[a], out_deg[b]).
template <typename F>
Tensor Mask(const std::vector<int64_t>& in_deg,
            const std::vector<int64_t>& out_deg, F allowed) {
  const int64_t a = in_deg.size(), b = out_deg.size();
  Tensor m = Tensor::Zeros({a, b});
  double* p = m.mutable_data<double>();
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      p[i * b + j] = allowed(in_deg[i], out_deg[j]) ? 1.0 : 0.0;
  return m;
}

}  // namespace

absl::Status MadeOptions::Validate() const {
  const MadeOptions& o = *this;
  bool hidden_ok = !o.hidden.empty();
  for (int64_t h : o.hidden) hidden_ok &= h >= 1;
  if (o.dim < 1 || o.params_per_dim < 1 || !hidden_ok || o.context_dim < 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "made: need dim >= 1, params_per_dim >= 1, context_dim >= 0 and at "
        "least one hidden layer of size >= 1; got dim ",
        o.dim, ", params_per_dim ", o.params_per_dim, ", context_dim ",
        o.context_dim, ", hidden [", absl::StrJoin(o.hidden, ", "), "]"));
  if (!o.order.empty()) {
    std::vector<int64_t> sorted = o.order;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < o.dim; ++i)
      if (static_cast<int64_t>(sorted.size()) != o.dim || sorted[i] != i + 1)
        return absl::InvalidArgumentError(
            absl::StrCat("made: order [", absl::StrJoin(o.order, ", "),
                         "] is not a permutation of 1..", o.dim));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Made>> Made::Create(const MadeOptions& options,
                                                   Rng& rng) {
  FT_RETURN_IF_ERROR(options.Validate());
  return std::shared_ptr<Made>(new Made(options, rng));
}

Made::Made(const MadeOptions& options, Rng& rng) : options_(options) {
  const int64_t d = options.dim, p = options.params_per_dim;
  const std::vector<int64_t> order = MakeOrder(options, rng);
  std::vector<double> order_values(order.begin(), order.end());
  order_ = RegisterBuffer("order", Tensor::FromVector({d}, order_values));
  std::vector<int64_t> prev = order;
  // With a context, degree-0 hidden units carry it to the first dimension.
  const int64_t min_deg = options.context_dim > 0 ? 0 : 1;
  for (size_t l = 0; l < options.hidden.size(); ++l) {
    // The context counts as inputs of degree 0.
    const int64_t prev_min =
        l == 0 ? min_deg : *std::min_element(prev.begin(), prev.end());
    std::vector<int64_t> m = HiddenLayerDegrees(
        options.hidden[l], d, min_deg, prev_min, options.hidden_degrees, rng);
    // Units in degree order: every mask's columns are runs of rows that
    // move monotonically (a staircase), so MaskedAffine skips its zeros.
    std::sort(m.begin(), m.end());
    Tensor mask = Mask(prev, m, [](int64_t a, int64_t b) { return b >= a; });
    layers_.push_back(RegisterModule(
        absl::StrCat("layer", l), nn::MaskedLinear::Create(mask, rng).value()));
    prev = m;
  }
  std::vector<int64_t> out_deg(d * p);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t q = 0; q < p; ++q) out_deg[i * p + q] = order[i];
  Tensor mask = Mask(prev, out_deg, [](int64_t a, int64_t b) { return b > a; });
  layers_.push_back(
      RegisterModule(absl::StrCat("layer", layers_.size()),
                     nn::MaskedLinear::Create(mask, rng).value()));
  if (options.zero_last)
    for (auto& [name, param] : layers_.back()->NamedParameters())
      std::fill_n(param.mutable_data<double>(), param.numel(), 0.0);
  for (size_t l = 0; options.context_dim > 0 && l < options.hidden.size(); ++l)
    context_.push_back(RegisterModule(
        absl::StrCat("context", l),
        nn::Linear::Create(options.context_dim, options.hidden[l], rng,
                           /*bias=*/false)
            .value()));
}

std::vector<int64_t> Made::order() const {
  std::vector<int64_t> out(options_.dim);
  for (int64_t i = 0; i < options_.dim; ++i)
    out[i] = static_cast<int64_t>(std::llround(order_[i]));
  return out;
}

Tensor Made::operator()(const Tensor& x, const Tensor& context) const {
  FT_CHECK(x.rank() == 2 && x.dim(1) == options_.dim, "made: input ",
           x.shape().ToString(), " for dim ", options_.dim);
  FT_CHECK(context.defined() == !context_.empty(),
           "made: context given to an unconditional MADE or missing");
  FT_CHECK(!context.defined() ||
               (context.rank() == 2 && context.dim(0) == x.dim(0) &&
                context.dim(1) == options_.context_dim),
           "made: context ", context.shape().ToString(), " for input ",
           x.shape().ToString(), " and context_dim ", options_.context_dim);
  Tensor h = x;
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (l > 0) h = nn::Apply(options_.activation, h);
    h = (*layers_[l])(h);
    if (l < context_.size()) h = h + (*context_[l])(context);
  }
  return h;
}

}  // namespace flowtape::flows
